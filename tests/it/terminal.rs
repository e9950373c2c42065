//! Logs and terminal: colour escapes only on a terminal (or when `CLICOLOR_FORCE` asks, unless
//! `NO_COLOR` says no), and a reader that stops early (`ferry demo | head -1`) ends ferry quietly
//! with exit 0: no panic, no error.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use crate::support::ferry;

/// `ferry -v demo` into a new directory, stdout and stderr to pipes, with `env` set and every
/// other colour or log variable removed: (stdout, stderr).
fn demo_logged(env: &[(&str, &str)]) -> (Vec<u8>, Vec<u8>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = ferry();
    cmd.args(["-v", "demo", "--dir"])
        .arg(dir.path().join("demo"))
        .env_remove("NO_COLOR")
        .env_remove("CLICOLOR_FORCE")
        .env_remove("RUST_LOG")
        .envs(env.iter().copied());
    let out = cmd.output().expect("ferry runs");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.stderr.is_empty(), "-v logs nothing to stderr");
    (out.stdout, out.stderr)
}

fn has_escape(bytes: &[u8]) -> bool {
    bytes.contains(&0x1b)
}

#[test]
fn no_colour_on_a_pipe() {
    let (stdout, stderr) = demo_logged(&[]);
    assert!(!has_escape(&stdout), "escape on stdout");
    assert!(
        !has_escape(&stderr),
        "escape on stderr:\n{}",
        String::from_utf8_lossy(&stderr)
    );
}

#[test]
fn clicolor_force_colours_a_pipe_and_no_color_wins() {
    let (stdout, stderr) = demo_logged(&[("CLICOLOR_FORCE", "1")]);
    assert!(has_escape(&stderr), "CLICOLOR_FORCE=1: no escape on stderr");
    assert!(!has_escape(&stdout), "escape on stdout");
    let (_, stderr) = demo_logged(&[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")]);
    assert!(
        !has_escape(&stderr),
        "NO_COLOR=1 with CLICOLOR_FORCE=1: escape on stderr"
    );
}

/// Runs `cmd` with stdout to a reader that takes `lines` lines (0: none) and then closes the
/// pipe; ferry must exit 0 with nothing on stderr.
fn reader_stops_early(mut cmd: Command, lines: usize) {
    let mut child = cmd
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ferry starts");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    for _ in 0..lines {
        let mut line = String::new();
        out.read_line(&mut line).expect("a line");
        assert!(!line.is_empty(), "{cmd:?}: no output");
    }
    drop(out);
    let done = child.wait_with_output().expect("ferry ends");
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert!(!stderr.contains("panicked"), "{cmd:?} panicked:\n{stderr}");
    assert_eq!(done.status.code(), Some(0), "{cmd:?}: stderr:\n{stderr}");
    assert!(stderr.is_empty(), "{cmd:?}: stderr:\n{stderr}");
}

#[test]
fn demo_into_a_reader_that_stops_early_exits_0() {
    for lines in [1, 0] {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cmd = ferry();
        cmd.args(["demo", "--dir"]).arg(dir.path().join("demo"));
        reader_stops_early(cmd, lines);
    }
}

#[test]
fn man_and_completions_into_a_reader_that_stops_early_exit_0() {
    for lines in [1, 0] {
        let mut cmd = ferry();
        cmd.arg("man");
        reader_stops_early(cmd, lines);
        let mut cmd = ferry();
        cmd.args(["completions", "bash"]);
        reader_stops_early(cmd, lines);
    }
}
