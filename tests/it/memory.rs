//! Memory stays flat: a 1 GiB layer copied to three real registries keeps ferry's peak RSS under 100 MiB.

use crate::support;

use std::process::{Command, Stdio};
use std::time::Duration;

use ferry::sample::Layout;
use support::bed::single_platform;
use support::registry::{Mode, TestRegistry};
use support::skopeo::manifest_digest;

/// Runs a command to completion, sampling VmHWM (peak resident set) from /proc while it runs.
fn run_with_peak_rss(cmd: &mut Command) -> (std::process::ExitStatus, u64, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0;
    let status = loop {
        if let Ok(text) = std::fs::read_to_string(&status_path) {
            if let Some(kib) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            {
                peak_kib = peak_kib.max(kib);
            }
        }
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut out = String::new();
    use std::io::Read;
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status, peak_kib, out + &err)
}

#[test]
fn one_gib_layer_to_three_destinations_in_flat_memory() {
    let src = TestRegistry::start(Mode::Plain);
    let dests = [
        TestRegistry::start(Mode::Plain),
        TestRegistry::start(Mode::Plain),
        TestRegistry::start(Mode::Plain),
    ];
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::create(&dir.path().join("big")).unwrap();
    let w = layout
        .add_image(&single_platform("big", 1, &[], &[(99, 1 << 30)]))
        .unwrap();
    assert!(w.blob_bytes >= 1 << 30);
    let source = format!("{}/big/image:v1", src.host());
    let seed = support::ferry()
        .args([
            "copy",
            &format!("ocidir://{}:big", dir.path().join("big").display()),
            &source,
        ])
        .output()
        .unwrap();
    assert!(
        seed.status.success(),
        "{}",
        String::from_utf8_lossy(&seed.stderr)
    );

    let targets: Vec<String> = dests
        .iter()
        .map(|d| format!("{}/big/copy:v1", d.host()))
        .collect();
    let started = std::time::Instant::now();
    let (status, peak_kib, output) = run_with_peak_rss(
        support::ferry()
            .arg("copy")
            .arg(&source)
            .args(&targets)
            .args(["--output", "json"]),
    );
    assert!(status.success(), "{output}");
    let mib = peak_kib as f64 / 1024.0;
    eprintln!(
        "1 GiB layer to 3 destinations: peak RSS {mib:.1} MiB, {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(mib <= 100.0, "peak RSS {mib:.1} MiB");
    for d in &dests {
        assert_eq!(
            manifest_digest(&format!("{}/big/copy:v1", d.host()), None, d.tls()),
            w.digest
        );
    }
}
