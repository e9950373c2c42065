//! Integration tests for releases (an environment of several images) against real registries: a 4-image release to 3 targets (plain, Basic, token auth) — gates refuse before any write, a target failing mid-copy moves no tag of any image, a rerun completes, rollback restores every image — checked with skopeo and the access logs.

use crate::support;

use ferry::sample::{Layout, Written};
use serde_json::Value;
use support::bed::{single_platform, stderr, Bed};
use support::faultproxy::{Action, FaultProxy, Rule};
use support::registry::{AccessEntry, Mode, TestRegistry};
use support::skopeo::{pulls_completely, tag_digest};

const IMAGES: [&str; 4] = ["api", "worker", "web", "migrate"];

/// The source (as `ghcr.io`), staging on the plain registry, prod on Basic, token, and the plain
/// registry again behind a fault proxy.
struct World {
    src: TestRegistry,
    plain: TestRegistry,
    basic: TestRegistry,
    token: TestRegistry,
    proxy: FaultProxy,
    bed: Bed,
}

impl World {
    fn new() -> World {
        let src = TestRegistry::start(Mode::Plain);
        let plain = TestRegistry::start(Mode::Plain);
        let basic = TestRegistry::start(Mode::Basic);
        let token = TestRegistry::start(Mode::Token);
        let proxy = FaultProxy::start(&plain.host());
        let bed = Bed::new(&[&basic, &token]);
        let list: String = IMAGES
            .iter()
            .map(|n| format!("  - name: {n}\n    source: ghcr.io/acme/{n}\n"))
            .collect();
        bed.policies(&[
            (
                "registries.yaml",
                format!(
                    "version: 1\nregistries:\n  ghcr.io:\n    endpoint: http://{}\n",
                    src.host()
                ),
            ),
            (
                "staging.yaml",
                format!(
                    "version: 1\nimages:\n{list}targets:\n  - registry: {}\n    prefix: staging/\ntags: [staging]\n",
                    plain.host()
                ),
            ),
            (
                "prod.yaml",
                format!(
                    "version: 1\nimages:\n{list}promote_from: staging\ntargets:\n  - registry: {}\n    prefix: acme/\n  - registry: {}\n    prefix: acme/\n  - registry: {}\n    prefix: prod/\n    mapping: {{migrate: jobs/migrate}}\ntags: [prod, \"{{source_tag}}\"]\n",
                    basic.host(),
                    token.host(),
                    proxy.host()
                ),
            ),
        ]);
        World {
            src,
            plain,
            basic,
            token,
            proxy,
            bed,
        }
    }

    /// Pushes version `v` of every image: two base layers shared by all four, one of its own.
    fn push(&self, tag: &str, v: u64) -> Vec<Written> {
        let dir = self.bed.layout(&format!("images-{tag}"));
        let layout = Layout::create(&dir).unwrap();
        IMAGES
            .iter()
            .enumerate()
            .map(|(k, n)| {
                let seed = v * 100 + k as u64;
                let spec = single_platform(
                    &format!("{n}-{tag}"),
                    seed,
                    &[(7, 1 << 20), (8 + v, 512 << 10)],
                    &[(seed * 10, 256 << 10)],
                );
                let w = layout.add_image(&spec).unwrap();
                self.bed.ferry_ok(&[
                    "copy",
                    &format!("ocidir://{}:{n}-{tag}", dir.display()),
                    &format!("{}/acme/{n}:{tag}", self.src.host()),
                ]);
                w
            })
            .collect()
    }

    fn ferry(&self, args: &[&str]) -> std::process::Output {
        self.bed.ferry_policies(args)
    }

    fn ferry_ok(&self, args: &[&str]) -> Value {
        self.bed.ferry_policies_ok(args)
    }

    /// Every prod target of every image: (registry, repository, image index).
    fn prod(&self) -> Vec<(&TestRegistry, String, usize)> {
        let mut out = Vec::new();
        for (k, n) in IMAGES.iter().enumerate() {
            out.push((&self.basic, format!("acme/{n}"), k));
            out.push((&self.token, format!("acme/{n}"), k));
            let plain = if *n == "migrate" {
                "jobs/migrate".to_owned()
            } else {
                format!("prod/{n}")
            };
            out.push((&self.plain, plain, k));
        }
        out
    }

    /// Asserts where `tag` points for every image at every prod target.
    fn assert_prod(&self, tag: &str, want: &[Option<&Written>], when: &str) {
        for (reg, repo, k) in self.prod() {
            assert_eq!(
                tag_digest(reg, &repo, tag),
                want[k].map(|w| w.digest.clone()),
                "{when}: {tag} at {}/{repo}",
                reg.host()
            );
        }
    }

    fn all(&self) -> [&TestRegistry; 4] {
        [&self.src, &self.plain, &self.basic, &self.token]
    }

    fn marks(&self) -> Vec<usize> {
        self.all().iter().map(|r| r.access_log().len()).collect()
    }

    fn writes_since(&self, marks: &[usize]) -> Vec<String> {
        self.all()
            .iter()
            .zip(marks)
            .flat_map(|(r, &m)| {
                let host = r.host();
                r.access_log()
                    .into_iter()
                    .skip(m)
                    .filter(AccessEntry::is_write)
                    .map(move |e| format!("{host} {} {}", e.method, e.path))
            })
            .collect()
    }
}

fn some(ws: &[Written]) -> Vec<Option<&Written>> {
    ws.iter().map(Some).collect()
}

#[test]
fn a_four_image_release_to_three_targets_moves_as_one() {
    let w = World::new();
    let v1 = w.push("v1", 1);
    let v2 = w.push("v2", 2);

    // staging gets every image at v1; prod takes whatever staging runs.
    w.ferry_ok(&["promote", "staging", "--tag", "v1"]);
    let r = w.ferry_ok(&["promote", "prod", "--from", "staging", "--output", "json"]);
    assert_eq!(r["images"].as_array().unwrap().len(), 4, "{r}");
    w.assert_prod("prod", &some(&v1), "first release");
    for (reg, repo, _) in w.prod() {
        pulls_completely(reg, &repo, "prod").unwrap();
    }

    // A gate refusing one image (worker v2 is not staging's) writes nothing for any image.
    let marks = w.marks();
    let out = w.ferry(&[
        "promote",
        "prod",
        "api:v1",
        "worker:v2",
        "web:v1",
        "migrate:v1",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("worker"), "{}", stderr(&out));
    assert_eq!(w.writes_since(&marks), Vec::<String>::new());

    // staging moves to v2. prod's third target refuses worker's v2 manifest once: mid-copy,
    // after other images' content is there. No tag of any image moves anywhere.
    w.ferry_ok(&["promote", "staging", "--tag", "v2"]);
    w.proxy.add(Rule {
        name: "deny worker".into(),
        method: Some("PUT".into()),
        path_contains: format!("/prod/worker/manifests/{}", v2[1].digest),
        with_header: None,
        times: 1,
        action: Action::Reply {
            code: 403,
            body: r#"{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}"#.into(),
        },
    });
    let out = w.ferry(&["promote", "prod", "--tag", "v2"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("prod/worker"), "{}", stderr(&out));
    w.assert_prod("prod", &some(&v1), "after a failed target");
    w.assert_prod("v2", &[None, None, None, None], "after a failed target");

    // The rerun completes: every image at v2 everywhere, one history record for the release.
    let marks = w.marks();
    w.ferry_ok(&["promote", "prod", "--tag", "v2"]);
    w.assert_prod("prod", &some(&v2), "rerun");
    w.assert_prod("v2", &some(&v2), "rerun");
    let src_reads = w.src.access_log()[marks[0]..]
        .iter()
        .filter(|e| e.method == "GET" && e.path.contains("/blobs/"))
        .count();
    eprintln!("rerun: {src_reads} source blob reads (the rest was there from the failed run)");
    let history = w.ferry_ok(&["history", "prod", "--output", "json"]);
    let newest = &history[0];
    assert_eq!(
        newest["images"]["worker"],
        v2[1].digest.as_str(),
        "{history}"
    );
    assert_eq!(newest["images"].as_object().unwrap().len(), 4);
    let status = w.ferry_ok(&["status", "prod", "--output", "json"]);
    assert_eq!(status["state"], "in-sync", "{status}");
    assert_eq!(status["targets"].as_array().unwrap().len(), 12);

    // Rollback restores all four images at every target, tags only.
    let marks = w.marks();
    w.ferry_ok(&["rollback", "prod"]);
    w.assert_prod("prod", &some(&v1), "rollback");
    let blobs: Vec<String> = w
        .writes_since(&marks)
        .into_iter()
        .filter(|l| l.contains("/blobs/"))
        .collect();
    assert_eq!(blobs, Vec::<String>::new(), "a rollback uploads nothing");
    let text = support::bed::said(&w.ferry(&["history", "prod"]));
    assert!(
        text.contains("rollback") && text.contains("migrate"),
        "{text}"
    );
}

/// A no-op rerun of a 10-image release to 3 targets: at most one request per image per target
/// (the environment tag's HEAD), counted in the targets' access logs; the source answers one
/// read per image to pin it.
#[test]
fn a_no_op_rerun_of_a_ten_image_release_costs_one_request_per_image_per_target() {
    const N: usize = 10;
    let src = TestRegistry::start(Mode::Plain);
    let targets: Vec<TestRegistry> = (0..3).map(|_| TestRegistry::start(Mode::Plain)).collect();
    let bed = Bed::new(&[]);
    let dir = bed.layout("images");
    let layout = Layout::create(&dir).unwrap();
    let mut list = String::new();
    for k in 0..N as u64 {
        let spec = single_platform(
            &format!("s{k}"),
            k,
            &[(7, 64 << 10)],
            &[(100 + k, 16 << 10)],
        );
        layout.add_image(&spec).unwrap();
        bed.ferry_ok(&[
            "copy",
            &format!("ocidir://{}:s{k}", dir.display()),
            &format!("{}/acme/s{k}:v1", src.host()),
        ]);
        list += &format!("  - name: s{k}\n    source: {}/acme/s{k}\n", src.host());
    }
    let mut policy = format!("version: 1\nimages:\n{list}targets:\n");
    for t in &targets {
        policy += &format!("  - registry: {}\n    prefix: prod/\n", t.host());
    }
    let policies = bed.policies(&[("prod.yaml", policy)]);
    let args = |extra: &[&str]| {
        let mut v = vec!["--policies".to_owned(), policies.display().to_string()];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let run = || {
        let a = args(&["promote", "prod", "--tag", "v1"]);
        bed.ferry_ok(&a.iter().map(String::as_str).collect::<Vec<_>>());
    };
    run();
    let marks: Vec<usize> = targets.iter().map(|t| t.access_log().len()).collect();
    let src_mark = src.access_log().len();
    run();
    let per_target: Vec<Vec<String>> = targets
        .iter()
        .zip(&marks)
        .map(|(t, &m)| {
            t.access_log()[m..]
                .iter()
                .map(|e| format!("{} {} {}", e.method, e.path, e.status))
                .collect()
        })
        .collect();
    let source = src.access_log().len() - src_mark;
    if std::env::var_os("FERRY_SHOW_REQUESTS").is_some() {
        for e in &src.access_log()[src_mark..] {
            eprintln!("source: {} {} {}", e.method, e.path, e.status);
        }
    }
    let total: usize = per_target.iter().map(Vec::len).sum();
    eprintln!(
        "no-op rerun of {N} images to 3 targets: {total} target requests ({:.2} per image per target), {source} source requests",
        total as f64 / (N * 3) as f64
    );
    for t in &per_target {
        assert!(t.len() <= N, "more than one request per image: {t:#?}");
    }
}
