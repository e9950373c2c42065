//! Fan-out benchmark: 8 multi-arch images sharing base layers copied to three registries by ferry and by skopeo in the same run, on loopback and with the source behind a throttling proxy; prints ratios ferry/skopeo.
//!
//! Run: `cargo bench --bench fanout` (writes the table to target/bench-fanout.txt too).

mod proxy;
#[path = "../tests/support/mod.rs"]
mod support;

use std::fmt::Write as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ferry::sample::{ImageSpec, LayerSpec, Layout, Written};
use support::registry::{Mode, TestRegistry};

const IMAGES: usize = 8;
const LATENCY: Duration = Duration::from_millis(10);
const THROTTLE_BYTES_PER_S: f64 = 40e6;

/// Peak resident memory (VmHWM) of a running process, in KiB.
fn vm_hwm(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Waits for all children, sampling their peaks; returns the sum of their peak RSS in KiB.
fn wait_all(mut children: Vec<Child>) -> u64 {
    let mut peaks = vec![0u64; children.len()];
    let mut done = vec![false; children.len()];
    while done.iter().any(|d| !d) {
        for (i, c) in children.iter_mut().enumerate() {
            if done[i] {
                continue;
            }
            if let Some(k) = vm_hwm(c.id()) {
                peaks[i] = peaks[i].max(k);
            }
            if let Some(status) = c.try_wait().unwrap() {
                assert!(status.success(), "a copy failed: {status}");
                done[i] = true;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    peaks.iter().sum()
}

struct Run {
    wall: Duration,
    source_bytes: u64,
    requests_per_dest_per_image: f64,
    peak_rss_kib: u64,
}

fn blob_bytes_served(reg: &TestRegistry, from: usize) -> u64 {
    reg.access_log()[from..]
        .iter()
        .filter(|e| e.method == "GET" && e.path.contains("/blobs/"))
        .map(|e| e.bytes)
        .sum()
}

fn run(
    tool: &str,
    src: &TestRegistry,
    src_host: &str,
    images: &[Written],
    counters: Option<&proxy::Counters>,
) -> Run {
    let dests: Vec<TestRegistry> = (0..3).map(|_| TestRegistry::start(Mode::Plain)).collect();
    let mark = src.access_log().len();
    let proxied_before = counters.map(|c| c.down.load(std::sync::atomic::Ordering::Relaxed));
    let mut peak = 0;
    let started = Instant::now();
    for w in images {
        let from = format!("{src_host}/bench/app:{}", w.tag);
        let to: Vec<String> = dests
            .iter()
            .map(|d| format!("{}/bench/app:{}", d.host(), w.tag))
            .collect();
        let children = if tool == "ferry" {
            vec![Command::new(support::ferry_bin())
                .arg("copy")
                .arg(&from)
                .args(&to)
                .stdout(Stdio::null())
                .spawn()
                .unwrap()]
        } else {
            to.iter()
                .map(|t| {
                    Command::new("skopeo")
                        .args([
                            "copy",
                            "--all",
                            "--preserve-digests",
                            "--quiet",
                            "--src-tls-verify=false",
                            "--dest-tls-verify=false",
                        ])
                        .arg(format!("docker://{from}"))
                        .arg(format!("docker://{t}"))
                        .stdout(Stdio::null())
                        .spawn()
                        .unwrap()
                })
                .collect()
        };
        peak = peak.max(wait_all(children));
    }
    let wall = started.elapsed();
    let requests: usize = dests.iter().map(|d| d.access_log().len()).sum();
    let source_bytes = match (counters, proxied_before) {
        (Some(c), Some(b)) => c.down.load(std::sync::atomic::Ordering::Relaxed) - b,
        _ => blob_bytes_served(src, mark),
    };
    Run {
        wall,
        source_bytes,
        requests_per_dest_per_image: requests as f64 / (3.0 * images.len() as f64),
        peak_rss_kib: peak,
    }
}

fn main() {
    let mut out = String::new();
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::create(&dir.path().join("images")).unwrap();
    let base = vec![
        LayerSpec {
            seed: 0xb1,
            size: 16 << 20,
        },
        LayerSpec {
            seed: 0xb2,
            size: 8 << 20,
        },
    ];
    let images: Vec<Written> = (0..IMAGES)
        .map(|i| {
            layout
                .add_image(&ImageSpec {
                    tag: format!("v{i}"),
                    seed: 100 + i as u64,
                    base_layers: base.clone(),
                    own_layers: vec![LayerSpec {
                        seed: 7,
                        size: 6 << 20,
                    }],
                    ..ImageSpec::default()
                })
                .unwrap()
        })
        .collect();
    let src = TestRegistry::start(Mode::Plain);
    for w in &images {
        let st = Command::new(support::ferry_bin())
            .args([
                "copy",
                &format!("ocidir://{}:{}", dir.path().join("images").display(), w.tag),
                &format!("{}/bench/app:{}", src.host(), w.tag),
            ])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success());
    }
    // Unique blob bytes across the whole set: shared base layers count once.
    let unique: u64 = {
        let mut blobs = std::collections::HashMap::new();
        for c in images.iter().flat_map(|w| &w.children) {
            let bytes =
                std::fs::read(dir.path().join("images/blobs/sha256").join(&c[7..])).unwrap();
            for b in ferry::manifest::Manifest::parse(bytes.into(), None)
                .unwrap()
                .blobs
            {
                blobs.insert(b.digest, b.size);
            }
        }
        blobs.values().sum()
    };
    writeln!(out, "ferry fan-out benchmark: {IMAGES} images (linux/amd64 + linux/arm64, attestations), ~{:.0} MiB unique blobs, 3 destinations", unique as f64 / (1 << 20) as f64).unwrap();
    writeln!(out, "skopeo: `skopeo copy --all --preserve-digests`, three destinations in parallel per image; ferry: one `ferry copy SRC D1 D2 D3` per image").unwrap();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (port, counters) = proxy::start(&rt, src.host(), LATENCY, THROTTLE_BYTES_PER_S);
    let proxied = format!("127.0.0.1:{port}");
    for (name, host, c) in [
        ("loopback", src.host(), None),
        ("throttled", proxied.clone(), Some(&*counters)),
    ] {
        let f = run("ferry", &src, &host, &images, c);
        let s = run("skopeo", &src, &host, &images, c);
        let mib = |k: u64| k as f64 / 1024.0;
        let line = format!(
            "{name:<10} ferry  wall {:>6.2}s  src-read {:.2}x  req/dest/img {:>5.1}  rss {:>6.1} MiB | skopeo wall {:>6.2}s  src-read {:.2}x  req/dest/img {:>5.1}  rss {:>6.1} MiB | ferry/skopeo: wall {:.2}  read {:.2}  req {:.2}  rss {:.2}",
            f.wall.as_secs_f64(),
            f.source_bytes as f64 / unique as f64,
            f.requests_per_dest_per_image,
            mib(f.peak_rss_kib),
            s.wall.as_secs_f64(),
            s.source_bytes as f64 / unique as f64,
            s.requests_per_dest_per_image,
            mib(s.peak_rss_kib),
            f.wall.as_secs_f64() / s.wall.as_secs_f64(),
            f.source_bytes as f64 / s.source_bytes as f64,
            f.requests_per_dest_per_image / s.requests_per_dest_per_image,
            f.peak_rss_kib as f64 / s.peak_rss_kib as f64,
        );
        println!("{line}");
        writeln!(out, "{line}").unwrap();
    }
    writeln!(out, "throttled: source behind a proxy adding {} ms each way and capping source-to-client throughput at {:.0} MB/s; src-read counts bytes through it (headers included)", LATENCY.as_millis(), THROTTLE_BYTES_PER_S / 1e6).unwrap();
    print!(
        "{}",
        out.lines()
            .skip(2)
            .filter(|l| l.starts_with("throttled:"))
            .map(|l| format!("{l}\n"))
            .collect::<String>()
    );
    let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-fanout.txt");
    std::fs::write(&target, &out).unwrap();
    eprintln!("written to {}", target.display());
}
