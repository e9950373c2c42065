//! Integration tests for `ferry mirror` against real registries: 10 repositories × 20 tags to three registries, an incremental re-run counted in the access logs, four concurrent shards against one unsharded run, and `existing: backup`.

use crate::support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ferry::copy::{CopyOptions, Engine};
use ferry::reference::ImageRef;
use ferry::report::Progress;
use ferry::sample::{ImageSpec, LayerSpec, Layout};
use serde_json::Value;
use support::bed::{stderr, Bed};
use support::registry::{Mode, TestRegistry};

const REPOS: usize = 10;
const TAGS: usize = 20;

fn repo(i: usize) -> String {
    format!("acme/svc-{i:02}")
}

fn tag(j: usize) -> String {
    if j.is_multiple_of(2) {
        format!("v1.{}.0", j / 2)
    } else {
        format!("sha-{:07x}", j * 7919)
    }
}

/// Seeds `src` with REPOS × TAGS tags over five small images, in one process (fast).
fn seed(src: &TestRegistry, bed: &Bed) -> BTreeMap<(String, String), String> {
    let layout = Layout::create(&bed.layout("images")).unwrap();
    let mut digests = Vec::new();
    for s in 0..5u64 {
        let w = layout
            .add_image(&ImageSpec {
                tag: format!("img{s}"),
                seed: 100 + s,
                base_layers: vec![LayerSpec {
                    seed: 0xba5e,
                    size: 8 << 10,
                }],
                own_layers: vec![LayerSpec {
                    seed: s,
                    size: 4 << 10,
                }],
                ..ImageSpec::default()
            })
            .unwrap();
        digests.push(w.digest.to_string());
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let engine = Engine::new(CopyOptions::default());
    let mut want = BTreeMap::new();
    rt.block_on(async {
        for i in 0..REPOS {
            for j in 0..TAGS {
                let s = (i + j) % 5;
                let from = ImageRef::parse(&format!(
                    "ocidir://{}:img{s}",
                    bed.layout("images").display()
                ))
                .unwrap();
                let to =
                    ImageRef::parse(&format!("{}/{}:{}", src.host(), repo(i), tag(j))).unwrap();
                let r = engine
                    .copy(&from, &[to], &Progress::hidden(1))
                    .await
                    .unwrap();
                assert_eq!(r.failed(), 0);
                want.insert((repo(i), tag(j)), digests[s].clone());
            }
        }
    });
    want
}

/// A mirror policy; without `listed`, the repositories come from the source's catalog.
fn write_policy(dir: &Path, src: &TestRegistry, targets: &[&TestRegistry], listed: bool) {
    std::fs::create_dir_all(dir).unwrap();
    let repos: Vec<String> = (0..REPOS).map(|i| format!("svc-{i:02}")).collect();
    let repositories = if listed {
        format!("repositories: [{}]\n", repos.join(", "))
    } else {
        String::new()
    };
    let mut text = format!(
        "version: 1\nkind: mirror\nname: nightly\nsource: {}/acme\n{repositories}tags:\n  include: ['^v\\d+\\.\\d+\\.\\d+$', '^sha-']\nexisting: overwrite\ntargets:\n",
        src.host(),
    );
    for t in targets {
        text += &format!("  - registry: {}\n    prefix: mirror/\n", t.host());
    }
    std::fs::write(dir.join("nightly.yaml"), text).unwrap();
}

fn mirror(bed: &Bed, dir: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["mirror", "--output", "json"];
    args.extend(extra);
    let out = bed
        .command(&args)
        .env("FERRY_POLICIES", dir)
        .output()
        .unwrap();
    if !out.status.success() {
        eprintln!(
            "ferry mirror {extra:?} failed: {}",
            stderr(&out).lines().last().unwrap_or_default()
        );
    }
    serde_json::from_slice(&out.stdout).unwrap()
}

/// (repository, tag) → digest, read from the registry's storage.
fn tags_in(r: &TestRegistry) -> BTreeMap<(String, String), String> {
    let root: PathBuf = r.storage_dir().join("docker/registry/v2/repositories");
    let mut out = BTreeMap::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.file_name().is_some_and(|n| n == "_manifests") {
                let repo = dir.strip_prefix(&root).unwrap().display().to_string();
                if let Ok(tags) = std::fs::read_dir(p.join("tags")) {
                    for t in tags.flatten() {
                        let link = t.path().join("current/link");
                        if let Ok(d) = std::fs::read_to_string(link) {
                            out.insert(
                                (repo.clone(), t.file_name().to_string_lossy().into_owned()),
                                d.trim().to_owned(),
                            );
                        }
                    }
                }
            } else if p.is_dir()
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('_'))
            {
                stack.push(p);
            }
        }
    }
    out
}

#[test]
fn mirrors_incrementally_and_shards_agree() {
    let src = TestRegistry::start(Mode::Plain);
    let a: Vec<TestRegistry> = (0..3).map(|_| TestRegistry::start(Mode::Plain)).collect();
    let b: Vec<TestRegistry> = (0..3).map(|_| TestRegistry::start(Mode::Plain)).collect();
    let bed = Bed::new(&[]);
    let want = seed(&src, &bed);
    let expected: BTreeMap<(String, String), String> = want
        .iter()
        .map(|((r, t), d)| ((r.replace("acme/", "mirror/"), t.clone()), d.clone()))
        .collect();

    // 1. Cold: everything to three registries.
    let dir_a = bed.dir.path().join("policies-a");
    write_policy(&dir_a, &src, &[&a[0], &a[1], &a[2]], true);
    let started = std::time::Instant::now();
    let cold = mirror(&bed, &dir_a, &[]);
    if cold["totals"]["failed"] != 0 {
        for r in &a {
            for l in r
                .log_text()
                .lines()
                .filter(|l| l.contains("level=error") && !l.contains("status=404"))
                .take(4)
            {
                eprintln!("REGLOG {l}");
            }
        }
    }
    eprintln!("cold run: {:?} {}", started.elapsed(), cold["totals"]);
    assert_eq!(cold["totals"]["copied"], REPOS * TAGS * 3);
    assert_eq!(cold["totals"]["failed"], 0);
    for r in &a {
        assert_eq!(tags_in(r), expected);
    }

    // 2. Nothing changed: no blob request, at most tags + tag-list pages per registry.
    let before: Vec<usize> = std::iter::once(&src)
        .chain(&a)
        .map(|r| r.access_log().len())
        .collect();
    let started = std::time::Instant::now();
    let again = mirror(&bed, &dir_a, &[]);
    eprintln!("no-op run: {:?}", started.elapsed());
    assert_eq!(again["totals"]["up_to_date"], REPOS * TAGS * 3);
    for (k, r) in std::iter::once(&src).chain(&a).enumerate() {
        let log = r.access_log();
        let new = &log[before[k]..];
        let blobs = new.iter().filter(|e| e.path.contains("/blobs/")).count();
        let gets = new
            .iter()
            .filter(|e| e.method == "GET" && e.path.contains("/manifests/"))
            .count();
        let lists = new.iter().filter(|e| e.path.contains("/tags/list")).count();
        eprintln!(
            "registry {k}: {} requests ({lists} tag-list pages, {gets} manifest GETs, {blobs} blob requests) for {} tags",
            new.len(),
            REPOS * TAGS
        );
        assert_eq!(blobs, 0, "registry {k}");
        assert_eq!(gets, 0, "registry {k}");
        assert!(
            new.len() <= REPOS * TAGS + lists,
            "registry {k}: {}",
            new.len()
        );
    }

    // 3. Four shards at once, to fresh registries, repositories from the catalog: the same
    //    state, no tag written twice.
    let dir_b = bed.dir.path().join("policies-b");
    write_policy(&dir_b, &src, &[&b[0], &b[1], &b[2]], false);
    let children: Vec<_> = (1..=4)
        .map(|k| {
            bed.command(&["mirror", "--output", "json", "--shard", &format!("{k}/4")])
                .env("FERRY_POLICIES", &dir_b)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut repos_seen = 0;
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        repos_seen += v["repositories"].as_u64().unwrap();
    }
    assert_eq!(
        repos_seen as usize, REPOS,
        "every repository in exactly one shard"
    );
    for r in &b {
        assert_eq!(tags_in(r), expected);
        let mut puts: BTreeMap<String, usize> = BTreeMap::new();
        for e in r.access_log() {
            if e.method == "PUT" && e.path.contains("/manifests/") && !e.path.contains("sha256:") {
                *puts.entry(e.path.clone()).or_default() += 1;
            }
        }
        assert!(
            puts.values().all(|n| *n == 1),
            "a tag written twice: {puts:?}"
        );
    }
}

#[test]
fn backup_keeps_the_old_digest_and_skip_leaves_it() {
    let src = TestRegistry::start(Mode::Plain);
    let dest = TestRegistry::start(Mode::Plain);
    let bed = Bed::new(&[]);
    let (w1, from1) = bed.image("one", 1);
    let (w2, from2) = bed.image("two", 2);
    let copy = |from: &str, to: String| {
        let out = bed.ferry(&["copy", from, &to]);
        assert!(out.status.success(), "{}", stderr(&out));
    };
    copy(&from1, format!("{}/acme/svc-00:v1.0.0", src.host()));
    let dir = bed.dir.path().join("policies");
    std::fs::create_dir_all(&dir).unwrap();
    let policy = |existing: &str| {
        std::fs::write(
            dir.join("nightly.yaml"),
            format!(
                "version: 1\nkind: mirror\nname: nightly\nsource: {}/acme\nrepositories: [svc-00]\nexisting: {existing}\ntargets:\n  - registry: {}\n    prefix: mirror/\n",
                src.host(),
                dest.host()
            ),
        )
        .unwrap();
    };
    policy("backup");
    mirror(&bed, &dir, &[]);

    // The source tag moves to another image.
    copy(&from2, format!("{}/acme/svc-00:v1.0.0", src.host()));
    policy("skip");
    let skipped = mirror(&bed, &dir, &[]);
    assert_eq!(skipped["totals"]["skipped"], 1, "{skipped}");
    assert_eq!(
        tags_in(&dest)[&("mirror/svc-00".to_owned(), "v1.0.0".to_owned())],
        w1.digest.as_str()
    );

    policy("backup");
    let summary = bed.dir.path().join("summary.md");
    let out = bed
        .command(&["mirror", "--output", "json"])
        .env("FERRY_POLICIES", &dir)
        .env("GITHUB_STEP_SUMMARY", &summary)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let moved: Value = serde_json::from_slice(&out.stdout).unwrap();
    let md = std::fs::read_to_string(&summary).unwrap();
    assert!(
        md.contains("### ferry mirror nightly")
            && md.contains(&format!("| `{}` | 1 | 0 | 0 | 0 |", dest.host())),
        "{md}"
    );
    assert_eq!(moved["totals"]["copied"], 1, "{moved}");
    let state = tags_in(&dest);
    let backup = format!(
        "v1.0.0-backup-{}",
        &w1.digest["sha256:".len().."sha256:".len() + 12]
    );
    assert_eq!(
        state[&("mirror/svc-00".to_owned(), "v1.0.0".to_owned())],
        w2.digest.as_str()
    );
    assert_eq!(
        state[&("mirror/svc-00".to_owned(), backup.clone())],
        w1.digest.as_str(),
        "the old digest stays reachable as {backup}"
    );
}
