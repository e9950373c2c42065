//! Shared-layers benchmark: 8 repositories whose images share base layers, copied to three registries through a slow source link (10 ms, 40 MB/s), by `ferry mirror`, by `ferry promote` of a release of the 8 images, and by `skopeo sync`, in the same run; prints wall time against the link floor, source bytes and bytes uploaded per target against the unique bytes, and requests (and the requests of each ferry no-op rerun).
//!
//! Run: `cargo bench --bench shared` (the table also goes to target/bench-shared.txt).

#[path = "../tests/support/mod.rs"]
mod support;

use std::fmt::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ferry::copy::{CopyOptions, Engine};
use ferry::reference::ImageRef;
use ferry::report::Progress;
use ferry::sample::{ImageSpec, LayerSpec, Layout, Platform};
use support::faultproxy::{Action, FaultProxy, Rule};
use support::registry::{Mode, TestRegistry};

const REPOS: usize = 8;
const MIB: u64 = 1 << 20;
/// The source link: 40 MB/s (decimal, as the issue measured) and 10 ms per request.
const LINK_BYTES_PER_SEC: u64 = 40_000_000;
const LINK_LATENCY: Duration = Duration::from_millis(10);

/// The source: REPOS repositories, one multi-arch image each, all on the same two base layers.
/// Returns the unique blob bytes.
fn seed(src: &TestRegistry, dir: &std::path::Path) -> u64 {
    let layout = Layout::create(&dir.join("images")).unwrap();
    for i in 0..REPOS as u64 {
        layout
            .add_image(&ImageSpec {
                tag: format!("svc{i}"),
                seed: 100 + i,
                platforms: ["linux/amd64", "linux/arm64"]
                    .iter()
                    .filter_map(|p| Platform::parse(p))
                    .collect(),
                base_layers: vec![
                    LayerSpec {
                        seed: 0xba5e,
                        size: 24 * MIB,
                    },
                    LayerSpec {
                        seed: 0xba5f,
                        size: 8 * MIB,
                    },
                ],
                own_layers: vec![LayerSpec {
                    seed: 1000 + i,
                    size: 3 * MIB,
                }],
                ..ImageSpec::default()
            })
            .unwrap();
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let engine = Engine::new(CopyOptions::default());
    rt.block_on(async {
        for i in 0..REPOS {
            let from =
                ImageRef::parse(&format!("ocidir://{}:svc{i}", dir.join("images").display()))
                    .unwrap();
            let to = ImageRef::parse(&format!("{}/acme/svc{i}:v1", src.host())).unwrap();
            let r = engine
                .copy(&from, &[to], &Progress::hidden(1))
                .await
                .unwrap();
            assert_eq!(r.failed(), 0);
        }
    });
    std::fs::read_dir(dir.join("images/blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

/// What one tool did: wall time, bytes the source sent, bytes each target took in, requests.
struct Run {
    wall: Duration,
    source_bytes: u64,
    target_bytes: Vec<u64>,
    requests: usize,
}

fn measure(source: &FaultProxy, targets: &[FaultProxy], go: impl FnOnce()) -> Run {
    let (s0, t0): (usize, Vec<usize>) = (
        source.log().len(),
        targets.iter().map(|t| t.log().len()).collect(),
    );
    let started = Instant::now();
    go();
    let wall = started.elapsed();
    let slog: Vec<_> = source.log().split_off(s0);
    let tlogs: Vec<Vec<_>> = targets
        .iter()
        .zip(t0)
        .map(|(t, n)| t.log().split_off(n))
        .collect();
    if std::env::var_os("FERRY_BENCH_REQUESTS").is_some() {
        let mut kinds = std::collections::BTreeMap::<String, usize>::new();
        let class = |side: &str, e: &support::faultproxy::Entry| {
            let p = e.path.split('?').next().unwrap_or("");
            let what = if p.contains("/blobs/uploads") {
                "blobs/uploads"
            } else if p.contains("/blobs/") {
                "blobs"
            } else if p.contains("/manifests/sha256-") {
                "manifests/<fallback tag>"
            } else if p.contains("/manifests/sha256:") {
                "manifests/<digest>"
            } else if p.contains("/manifests/") {
                "manifests/<tag>"
            } else if p.contains("/tags/list") {
                "tags/list"
            } else if p.contains("/referrers/") {
                "referrers"
            } else {
                "other"
            };
            format!("{side} {} {what} {}", e.method, e.status)
        };
        for e in &slog {
            *kinds.entry(class("source", e)).or_default() += 1;
        }
        for l in &tlogs {
            for e in l {
                *kinds.entry(class("target", e)).or_default() += 1;
            }
        }
        for (k, n) in kinds {
            eprintln!("{n:6}  {k}");
        }
    }
    Run {
        wall,
        source_bytes: slog.iter().map(|e| e.bytes_out).sum(),
        target_bytes: tlogs
            .iter()
            .map(|l| l.iter().map(|e| e.bytes_in).sum())
            .collect(),
        requests: slog.len() + tlogs.iter().map(Vec::len).sum::<usize>(),
    }
}

/// Runs ferry on the policies in `dir` (no Docker credentials), JSON out; it must succeed.
fn run_ferry(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new(support::ferry_bin())
        .arg("--policies")
        .arg(dir)
        .args(args)
        .args(["--output", "json"])
        .env("DOCKER_CONFIG", dir.join("no-docker-config"))
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "ferry {args:?} failed");
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let src = TestRegistry::start(Mode::Plain);
    let unique = seed(&src, dir.path());
    // The slow link: every source request waits 10 ms; blob bodies share 40 MB/s.
    let link = FaultProxy::start_paced(&src.host(), LINK_BYTES_PER_SEC);
    link.add(Rule {
        name: "latency".into(),
        method: None,
        path_contains: "/v2/".into(),
        with_header: None,
        times: usize::MAX,
        action: Action::Delay(LINK_LATENCY),
    });
    let floor = unique as f64 / LINK_BYTES_PER_SEC as f64;
    let names: Vec<String> = (0..REPOS).map(|i| format!("svc{i}")).collect();

    let mut results = Vec::new();
    let mut reruns = Vec::new();
    for tool in ["ferry promote", "ferry mirror", "skopeo"] {
        let regs: Vec<TestRegistry> = (0..3).map(|_| TestRegistry::start(Mode::Plain)).collect();
        let fronts: Vec<FaultProxy> = regs.iter().map(|r| FaultProxy::start(&r.host())).collect();
        let run = if tool == "ferry promote" {
            let policies = dir.path().join("policies-release");
            std::fs::create_dir_all(&policies).unwrap();
            let mut policy = "version: 1\nimages:\n".to_owned();
            for n in &names {
                policy += &format!("  - name: {n}\n    source: {}/acme/{n}\n", link.host());
            }
            policy += "targets:\n";
            for t in &fronts {
                policy += &format!("  - registry: {}\n    prefix: release/\n", t.host());
            }
            std::fs::write(policies.join("prod.yaml"), policy).unwrap();
            let promote = || run_ferry(&policies, &["promote", "prod", "--tag", "v1"]);
            let run = measure(&link, &fronts, promote);
            let again = measure(&link, &fronts, promote);
            reruns.push((tool, again));
            run
        } else if tool == "ferry mirror" {
            let policies = dir.path().join("policies");
            std::fs::create_dir_all(&policies).unwrap();
            let mut policy = format!(
                "version: 1\nkind: mirror\nname: shared\nsource: {}/acme\nrepositories: [{}]\ntargets:\n",
                link.host(),
                names.join(", ")
            );
            for t in &fronts {
                policy += &format!("  - registry: {}\n    prefix: mirror/\n", t.host());
            }
            std::fs::write(policies.join("shared.yaml"), policy).unwrap();
            let mirror = || run_ferry(&policies, &["mirror"]);
            let run = measure(&link, &fronts, mirror);
            let again = measure(&link, &fronts, mirror);
            reruns.push((tool, again));
            run
        } else {
            let mut sync = format!("{}:\n  tls-verify: false\n  images:\n", link.host());
            for n in &names {
                sync += &format!("    acme/{n}: [v1]\n");
            }
            let sync_file = dir.path().join("sync.yaml");
            std::fs::write(&sync_file, sync).unwrap();
            measure(&link, &fronts, || {
                let hosts: Vec<String> = fronts.iter().map(FaultProxy::host).collect();
                support::skopeo::sync_to_all(&sync_file, &hosts);
            })
        };
        results.push((tool, run));
    }

    let mut table = String::new();
    writeln!(
        table,
        "{REPOS} repositories sharing base layers, 2 platforms each, {:.1} MB unique; 3 targets; source link 10 ms + 40 MB/s (floor {floor:.2} s)\n",
        unique as f64 / 1e6
    )
    .unwrap();
    writeln!(
        table,
        "| tool | wall | × floor | source read × unique | uploaded per target × unique | requests |"
    )
    .unwrap();
    writeln!(table, "|---|---:|---:|---:|---:|---:|").unwrap();
    for (tool, r) in &results {
        let per_target: Vec<String> = r
            .target_bytes
            .iter()
            .map(|b| format!("{:.2}", *b as f64 / unique as f64))
            .collect();
        writeln!(
            table,
            "| {tool} | {:.2} s | {:.2} | {:.2} | {} | {} |",
            r.wall.as_secs_f64(),
            r.wall.as_secs_f64() / floor,
            r.source_bytes as f64 / unique as f64,
            per_target.join(" / "),
            r.requests
        )
        .unwrap();
    }
    let s = &results[2].1;
    for (tool, f) in &results[..2] {
        writeln!(
            table,
            "\n{tool}/skopeo: wall {:.2}, source bytes {:.2}, requests {:.2}",
            f.wall.as_secs_f64() / s.wall.as_secs_f64(),
            f.source_bytes as f64 / s.source_bytes as f64,
            f.requests as f64 / s.requests as f64
        )
        .unwrap();
    }
    for (tool, r) in &reruns {
        writeln!(
            table,
            "{tool}, no-op rerun: {:.2} s, {} requests ({:.2} per image per target, source included)",
            r.wall.as_secs_f64(),
            r.requests,
            r.requests as f64 / (REPOS * 3) as f64
        )
        .unwrap();
    }
    print!("{table}");
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-shared.txt");
    std::fs::write(out, &table).unwrap();
}
