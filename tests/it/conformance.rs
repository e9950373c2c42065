//! The sigstore-conformance suite's own harness (vendored under tests/conformance) drives
//! `ferry verify-bundle` through a shim that only names the program: every case, offline.

use std::process::Command;

#[test]
fn sigstore_conformance_suite_passes_every_verification_case() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/conformance");
    let out = Command::new("bash")
        .arg(format!("{dir}/run"))
        .args(["--ferry", env!("CARGO_BIN_EXE_ferry"), "-q"])
        .output()
        .expect("bash runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let summary = text
        .lines()
        .find(|l| l.starts_with("conformance: "))
        .unwrap_or_else(|| {
            panic!(
                "no summary:\n{text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    eprintln!("{summary}");
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // 70 cases, each as a file and as a digest; none skipped.
    assert_eq!(
        summary, "conformance: 140 passed, 0 failed, 0 skipped",
        "{text}"
    );
}
