//! Mirror benchmark: 50 repositories × 40 tags (2,000 tags) mirrored to three registries by `ferry mirror` and by `skopeo sync` in the same run, cold and then with nothing changed; prints requests per registry and wall time as ratios ferry/skopeo.
//!
//! Run: `cargo bench --bench mirror` (writes the table to target/bench-mirror.txt too).

#[path = "../tests/support/mod.rs"]
mod support;

use std::fmt::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ferry::copy::{CopyOptions, Engine};
use ferry::reference::ImageRef;
use ferry::report::Progress;
use ferry::sample::{ImageSpec, LayerSpec, Layout};
use support::registry::{Mode, TestRegistry};

const REPOS: usize = 50;
const TAGS: usize = 40;
const INCLUDE: &str = r"^(v\d+\.\d+\.\d+|sha-[0-9a-f]+)$";

fn tag(j: usize) -> String {
    if j.is_multiple_of(2) {
        format!("v1.{}.0", j / 2)
    } else {
        format!("sha-{:07x}", j * 7919)
    }
}

/// Seeds the source in one process: REPOS × TAGS tags over five small multi-arch images.
fn seed(src: &TestRegistry, dir: &std::path::Path) {
    let layout = Layout::create(&dir.join("images")).unwrap();
    for s in 0..5u64 {
        layout
            .add_image(&ImageSpec {
                tag: format!("img{s}"),
                seed: 100 + s,
                base_layers: vec![LayerSpec {
                    seed: 0xba5e,
                    size: 64 << 10,
                }],
                own_layers: vec![LayerSpec {
                    seed: s,
                    size: 16 << 10,
                }],
                ..ImageSpec::default()
            })
            .unwrap();
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let engine = Engine::new(CopyOptions::default());
    rt.block_on(async {
        for i in 0..REPOS {
            for j in 0..TAGS {
                let from = ImageRef::parse(&format!(
                    "ocidir://{}:img{}",
                    dir.join("images").display(),
                    (i + j) % 5
                ))
                .unwrap();
                let to =
                    ImageRef::parse(&format!("{}/acme/svc-{i:02}:{}", src.host(), tag(j))).unwrap();
                let r = engine
                    .copy(&from, &[to], &Progress::hidden(1))
                    .await
                    .unwrap();
                assert_eq!(r.failed(), 0);
            }
        }
    });
}

fn counts(regs: &[&TestRegistry]) -> Vec<usize> {
    regs.iter().map(|r| r.access_log().len()).collect()
}

fn delta(regs: &[&TestRegistry], before: &[usize]) -> Vec<usize> {
    regs.iter()
        .zip(before)
        .map(|(r, b)| r.access_log().len() - b)
        .collect()
}

fn ferry_mirror(policies: &std::path::Path) -> Duration {
    let started = Instant::now();
    let out = Command::new(support::ferry_bin())
        .args(["--policies"])
        .arg(policies)
        .args(["mirror", "--output", "json"])
        .env("DOCKER_CONFIG", policies.join("no-docker-config"))
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    let wall = started.elapsed();
    assert!(out.status.success(), "ferry mirror failed");
    wall
}

/// Three `skopeo sync` at once, one per target, as one would run them.
fn skopeo_sync(config: &std::path::Path, targets: &[&TestRegistry]) -> Duration {
    let started = Instant::now();
    let hosts: Vec<String> = targets.iter().map(|t| t.host()).collect();
    support::skopeo::sync_to_all(config, &hosts);
    started.elapsed()
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let src = TestRegistry::start(Mode::Plain);
    let f: Vec<TestRegistry> = (0..3).map(|_| TestRegistry::start(Mode::Plain)).collect();
    let s: Vec<TestRegistry> = (0..3).map(|_| TestRegistry::start(Mode::Plain)).collect();
    let started = Instant::now();
    seed(&src, dir.path());
    eprintln!("seeded {} tags in {:?}", REPOS * TAGS, started.elapsed());

    // The same selection for both: every v-tag and sha- tag of the 50 repositories.
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    let names: Vec<String> = (0..REPOS).map(|i| format!("svc-{i:02}")).collect();
    let mut policy = format!(
        "version: 1\nkind: mirror\nname: bench\nsource: {}/acme\nrepositories: [{}]\ntags:\n  include: ['{INCLUDE}']\ntargets:\n",
        src.host(),
        names.join(", ")
    );
    for t in &f {
        policy += &format!("  - registry: {}\n    prefix: mirror/\n", t.host());
    }
    std::fs::write(policies.join("bench.yaml"), policy).unwrap();
    let mut sync = format!(
        "{}:\n  tls-verify: false\n  images-by-tag-regex:\n",
        src.host()
    );
    for n in &names {
        sync += &format!("    acme/{n}: '{INCLUDE}'\n");
    }
    let sync_file = dir.path().join("sync.yaml");
    std::fs::write(&sync_file, sync).unwrap();

    let fr: Vec<&TestRegistry> = std::iter::once(&src).chain(&f).collect();
    let sr: Vec<&TestRegistry> = std::iter::once(&src).chain(&s).collect();
    let mut table = String::new();
    writeln!(
        table,
        "{} repositories × {} tags = {} tags, 3 targets, loopback\n",
        REPOS,
        TAGS,
        REPOS * TAGS
    )
    .unwrap();
    writeln!(
        table,
        "| run | tool | wall | source requests | requests per target (avg) |"
    )
    .unwrap();
    writeln!(table, "|---|---|---:|---:|---:|").unwrap();
    let mut results = Vec::new();
    for run in ["cold", "no-op"] {
        let before = counts(&fr);
        let fw = ferry_mirror(&policies);
        let fd = delta(&fr, &before);
        let before = counts(&sr);
        let sw = skopeo_sync(&sync_file, &[&s[0], &s[1], &s[2]]);
        let sd = delta(&sr, &before);
        eprintln!("{run}: ferry {fw:?} {fd:?}, skopeo {sw:?} {sd:?}");
        let avg = |d: &[usize]| d[1..].iter().sum::<usize>() as f64 / 3.0;
        writeln!(
            table,
            "| {run} | ferry | {:.2} s | {} | {:.0} |",
            fw.as_secs_f64(),
            fd[0],
            avg(&fd)
        )
        .unwrap();
        writeln!(
            table,
            "| {run} | skopeo sync ×3 | {:.2} s | {} | {:.0} |",
            sw.as_secs_f64(),
            sd[0],
            avg(&sd)
        )
        .unwrap();
        results.push((
            run,
            fw.as_secs_f64() / sw.as_secs_f64(),
            fd[0] as f64 / sd[0] as f64,
            avg(&fd) / avg(&sd),
        ));
    }
    writeln!(table).unwrap();
    for (run, wall, src_req, dst_req) in results {
        writeln!(
            table,
            "{run}: ferry/skopeo wall {wall:.3}, source requests {src_req:.3} ({:.1}× fewer), target requests {dst_req:.3} ({:.1}× fewer)",
            1.0 / src_req,
            1.0 / dst_req
        )
        .unwrap();
    }
    print!("{table}");
    let _ = std::fs::write(
        concat!(env!("CARGO_MANIFEST_DIR"), "/target/bench-mirror.txt"),
        &table,
    );
}
