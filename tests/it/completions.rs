//! Shell completions and man pages generated from the CLI definition: bash loads the script and
//! completes subcommands, nested subcommands, flags and values; every shell gets a script; the
//! man pages cover every command and render without warnings where groff is installed.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::ferry;

fn stdout_of(cmd: &mut Command) -> String {
    let out = cmd.output().expect("ferry runs");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// What bash offers after `line` (the cursor at its end), with ferry's completion script loaded
/// exactly as a user loads it: `source <(ferry completions bash)`.
fn bash_completes(script: &Path, line: &str) -> Vec<String> {
    let words: Vec<&str> = line.split(' ').collect();
    let program = format!(
        r#"set -e
source {script}
spec=$(complete -p ferry)
fn=$(sed -E 's/.*-F ([^ ]+).*/\1/' <<<"$spec")
COMP_LINE={line:?}
COMP_POINT=${{#COMP_LINE}}
COMP_WORDS=({words})
COMP_CWORD={cword}
"$fn" ferry {cur:?} {prev:?}
printf '%s\n' "${{COMPREPLY[@]}}"
"#,
        script = shell_quote(script),
        words = words
            .iter()
            .map(|w| format!("{w:?}"))
            .collect::<Vec<_>>()
            .join(" "),
        cword = words.len() - 1,
        cur = words[words.len() - 1],
        prev = words[words.len().saturating_sub(2)],
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &program])
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "bash failed on {line:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

fn shell_quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

#[test]
fn bash_loads_the_script_and_completes_subcommands() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("ferry.bash");
    std::fs::write(&script, stdout_of(ferry().args(["completions", "bash"]))).unwrap();

    let top = bash_completes(&script, "ferry ");
    for sub in [
        "copy",
        "promote",
        "rollback",
        "status",
        "history",
        "verify",
        "mirror",
        "policy",
        "demo",
        "completions",
        "man",
    ] {
        assert!(top.contains(&sub.to_owned()), "{sub} missing from {top:?}");
    }
    assert_eq!(bash_completes(&script, "ferry pro"), ["promote"]);
    assert_eq!(bash_completes(&script, "ferry ro"), ["rollback"]);
    let policy = bash_completes(&script, "ferry policy ");
    assert!(
        policy.contains(&"check".to_owned()) && policy.contains(&"schema".to_owned()),
        "{policy:?}"
    );
    assert_eq!(
        bash_completes(&script, "ferry promote --dry"),
        ["--dry-run"]
    );
    let shells = bash_completes(&script, "ferry completions ");
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        assert!(
            shells.contains(&shell.to_owned()),
            "{shell} missing: {shells:?}"
        );
    }
    assert_eq!(
        bash_completes(&script, "ferry policy schema --kind mi"),
        ["mirror"]
    );
}

#[test]
fn every_shell_gets_a_script_naming_every_subcommand() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = stdout_of(ferry().args(["completions", shell]));
        for sub in ["promote", "rollback", "mirror", "schema"] {
            assert!(script.contains(sub), "{shell}: no {sub}");
        }
    }
    let out = ferry().args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
}

#[test]
fn man_pages_cover_every_command() {
    let page = stdout_of(ferry().arg("man"));
    assert!(
        page.starts_with(".ie") || page.contains(".TH ferry 1"),
        "{page:.200}"
    );
    assert!(page.contains("promote") && page.contains("rollback"));

    let dir = tempfile::tempdir().unwrap();
    stdout_of(ferry().arg("man").arg("--out").arg(dir.path()));
    let mut pages: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    for want in [
        "ferry.1",
        "ferry-copy.1",
        "ferry-promote.1",
        "ferry-rollback.1",
        "ferry-mirror.1",
        "ferry-policy.1",
        "ferry-policy-check.1",
        "ferry-policy-schema.1",
        "ferry-completions.1",
        "ferry-man.1",
    ] {
        assert!(
            pages.contains(&want.to_owned()),
            "{want} missing: {pages:?}"
        );
    }
    let promote = std::fs::read_to_string(dir.path().join("ferry-promote.1")).unwrap();
    assert!(promote.contains("dry\\-run"), "flags are documented");

    // Rendered as `man` would, when groff is here: no warnings, and the text reads right.
    if let Some(groff) = which("groff") {
        let out = Command::new(groff)
            .args(["-man", "-Tutf8", "-ww"])
            .arg(dir.path().join("ferry-promote.1"))
            .output()
            .unwrap();
        assert!(out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.trim().is_empty(), "groff warned: {stderr}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("ferry-promote"), "{text:.300}");
    } else {
        println!("groff not installed: man pages checked as text only");
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}
