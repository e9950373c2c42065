//! Progress while a copy runs (issue 16, point 4): off a terminal, a plain line every 10 s and
//! nothing for a copy shorter than that, no escapes; on a terminal (tmux at 80 and 200 columns),
//! one bar per target labelled by its name, never wrapped, cleared when done. Copies are made
//! slow on purpose by the fault proxy's bandwidth limit: the long tests mostly wait, so they run
//! alongside the others.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ferry::sample::Layout;
use regex::Regex;
use support::bed::{single_platform, stderr, Bed};
use support::faultproxy::FaultProxy;
use support::registry::{Mode, TestRegistry};

/// A sample image of `layers` generated layers of `size` bytes each into the bed's "images"
/// layout; returns its `ocidir://` reference.
fn image(bed: &Bed, tag: &str, layers: &[u64]) -> String {
    let own: Vec<(u64, u64)> = layers
        .iter()
        .enumerate()
        .map(|(i, &size)| (100 + i as u64, size))
        .collect();
    let layout = Layout::create(&bed.layout("images")).unwrap();
    layout
        .add_image(&single_platform(tag, 7, &[], &own))
        .unwrap();
    format!("ocidir://{}:{tag}", bed.layout("images").display())
}

/// `progress: 812 MiB of 1.40 GiB, 27.0 MiB/s, ETA 23s; TARGET: STATE`, for one target.
fn progress_line(target: &str) -> Regex {
    let bytes = r"\d+(\.\d+)? (B|KiB|MiB|GiB)";
    Regex::new(&format!(
        r"^progress: (?<done>{bytes}) of {bytes}, {bytes}/s(, ETA \w+)?; {}: (waiting|copying( \d+%)?|done)$",
        regex::escape(target)
    ))
    .unwrap()
}

/// Off a terminal, a copy of about a minute (58 MiB at 1 MiB/s, through the proxy) prints 5 or
/// 6 progress lines, 10 s apart, each with bytes done of the total, the rate and the target's
/// state, the bytes done growing; with `-v` logging into a file, and not one escape byte.
#[test]
fn a_minute_long_copy_off_a_terminal_prints_a_line_every_10_seconds() {
    const RATE: u64 = 1 << 20;
    let reg = TestRegistry::start(Mode::Plain);
    let proxy = FaultProxy::start_paced(&reg.host(), RATE);
    let bed = Bed::new(&[]);
    let mib = 1 << 20;
    let from = image(&bed, "v1", &[29 * mib, 29 * mib]);
    let to = format!("{}/acme/api:v1", proxy.host());
    let log_path = bed.dir.path().join("stderr.log");
    let log = std::fs::File::create(&log_path).unwrap();

    let started = Instant::now();
    let out = bed
        .command(&["-v", "copy", &from, &to])
        .stdin(Stdio::null())
        .stderr(Stdio::from(log))
        .output()
        .unwrap();
    let took = started.elapsed();
    let log = std::fs::read(&log_path).unwrap();
    let text = String::from_utf8_lossy(&log);
    assert!(out.status.success(), "{text}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("copied"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!log.contains(&0x1b), "an escape in the log file:\n{text}");
    assert!(!out.stdout.contains(&0x1b), "an escape on stdout");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("progress:"),
        "progress on stdout"
    );

    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("progress:"))
        .collect();
    eprintln!(
        "copy took {:.1} s; {} progress lines:\n{}",
        took.as_secs_f64(),
        lines.len(),
        lines.join("\n")
    );
    // One line per full 10 s (the last may fall within a moment of the end): 5 or 6 for a
    // copy of about a minute. A loaded machine (CI runs tests in parallel) can stretch the
    // proxy's pace; the count must then follow the time the copy really took.
    let secs = took.as_secs_f64();
    let full = (secs / 10.0).floor() as usize;
    assert!(
        (full.saturating_sub(1)..=full).contains(&lines.len()),
        "{} progress lines in {took:?}:\n{text}",
        lines.len()
    );
    if (55.0..=65.0).contains(&secs) {
        assert!((5..=6).contains(&lines.len()), "{text}");
    } else {
        eprintln!("the copy took {secs:.1} s, not about a minute: the machine is loaded");
    }
    let format = progress_line(&to);
    let mut before = 0.0;
    for l in &lines {
        let m = format
            .captures(l)
            .unwrap_or_else(|| panic!("not the progress format: {l}"));
        let (n, unit) = m["done"].split_once(' ').unwrap();
        let scale = match unit {
            "B" => 1.0,
            "KiB" => 1024.0,
            "MiB" => 1024.0 * 1024.0,
            _ => 1024.0 * 1024.0 * 1024.0,
        };
        let done = n.parse::<f64>().unwrap() * scale;
        assert!(done >= before, "bytes done went back: {l}");
        before = done;
    }
    assert!(
        lines.iter().any(|l| l.contains(" of 58.0 MiB")),
        "the total is not the image's 58 MiB:\n{}",
        lines.join("\n")
    );
}

/// A copy that finishes within 10 s prints no progress line, and `-v` into a file (as in CI)
/// carries no escape bytes.
#[test]
fn a_short_logged_copy_into_a_file_prints_no_progress_and_no_escapes() {
    let reg = TestRegistry::start(Mode::Plain);
    let bed = Bed::new(&[]);
    let from = image(&bed, "v1", &[1 << 20]);
    let log_path = bed.dir.path().join("stderr.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let out = bed
        .command(&["-v", "copy", &from, &format!("{}/acme/api:v1", reg.host())])
        .stderr(Stdio::from(log))
        .output()
        .unwrap();
    let log = std::fs::read(&log_path).unwrap();
    let text = String::from_utf8_lossy(&log);
    assert!(out.status.success(), "{text}");
    assert!(!text.is_empty(), "-v logged nothing");
    assert!(!log.contains(&0x1b), "an escape in the log file:\n{text}");
    assert!(!text.contains("progress:"), "{text}");
}

/// The two targets of the terminal test, with their bandwidths: the second is slower, so the
/// bars differ and both are on screen mid-copy.
const TARGETS: [(&str, u64); 2] = [
    ("eu.registry.example", 2 << 20),
    ("us.registry.example", 1 << 20),
];

/// Where the captured screens are kept: `promote-COLUMNS.txt` mid-copy and
/// `promote-COLUMNS-done.txt` after, as captured; `.normalized.txt` beside each, with what
/// varies from run to run (numbers, bar fill, digests) replaced, which the test compares.
fn screens_dir() -> PathBuf {
    support::root().join("tests/fixtures/screens")
}

/// `promote prod` of a 24 MiB image to [`TARGETS`] in a tmux pane `columns` wide: the screen
/// mid-copy and after ferry exited. Skips (with a message) when tmux is not installed.
#[test]
fn bars_on_a_terminal_fit_80_and_200_columns_and_are_cleared_when_done() {
    if Command::new("tmux").arg("-V").output().is_err() {
        eprintln!("SKIPPED: tmux is not installed (apt-get install tmux)");
        return;
    }
    let runs: Vec<_> = [80, 200]
        .into_iter()
        .map(|columns| std::thread::spawn(move || (columns, promote_in_tmux(columns))))
        .collect();
    for r in runs {
        let (columns, (during, after)) = r.join().unwrap();
        check_screens(columns, &during, &after);
    }
}

/// Runs the promotion in a detached tmux session on a private socket; returns the screens.
fn promote_in_tmux(columns: usize) -> (String, String) {
    let src = TestRegistry::start(Mode::Plain);
    let dests = TARGETS.map(|_| TestRegistry::start(Mode::Plain));
    let bed = Bed::new(&[]);
    // Two layers, so two connections per target: each takes a few MiB into the kernel's
    // buffers at once, which a copy of this size outgrows.
    let from = image(&bed, "v1", &[12 << 20, 12 << 20]);
    bed.ferry_ok(&["copy", &from, &format!("{}/acme/api:v1", src.host())]);
    let proxies: Vec<FaultProxy> = TARGETS
        .iter()
        .zip(&dests)
        .map(|((_, rate), dest)| FaultProxy::start_paced(&dest.host(), *rate))
        .collect();
    let mut registries = format!(
        "version: 1\nregistries:\n  ghcr.io:\n    endpoint: http://{}\n",
        src.host()
    );
    let mut targets = String::new();
    for ((name, _), p) in TARGETS.iter().zip(&proxies) {
        registries += &format!("  {name}:\n    endpoint: http://{}\n", p.host());
        targets += &format!("  - registry: {name}\n    repository: acme/api\n");
    }
    let policies = bed.policies(&[
        ("registries.yaml", registries),
        (
            "prod.yaml",
            format!("version: 1\nenvironment: prod\nsource: ghcr.io/acme/api\ntargets:\n{targets}tags: [prod]\n"),
        ),
    ]);
    // At 200 columns with -v: log lines go above the bars, which are lifted off for each.
    let mut args = vec![
        "--policies",
        policies.to_str().unwrap(),
        "promote",
        "prod",
        "ghcr.io/acme/api:v1",
    ];
    if columns >= 120 {
        args.insert(0, "-v");
    }
    let cmd = bed.command(&args);
    let script = bed.dir.path().join("run.sh");
    std::fs::write(&script, shell_script(&cmd)).unwrap();
    let tmux = Tmux {
        socket: bed.dir.path().join("tmux.sock"),
    };
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "ferry",
        "-x",
        &columns.to_string(),
        "-y",
        "24",
        &format!("sh {}", script.display()),
    ]);

    // Mid-copy: both bars on screen, and a few seconds for the rates to settle (the faster
    // target is done after about 10 s).
    let started = Instant::now();
    let mut seen = None;
    let during = loop {
        let screen = tmux.capture();
        if std::env::var_os("DEBUG_SCREENS").is_some() {
            eprintln!("{:?}\n{screen}", started.elapsed());
        }
        let bars = TARGETS
            .iter()
            .filter(|(name, _)| {
                screen
                    .lines()
                    .any(|l| l.starts_with(name) && l.contains("ETA"))
            })
            .count();
        if bars == TARGETS.len() {
            let first = *seen.get_or_insert_with(Instant::now);
            if first.elapsed() >= Duration::from_secs(4) {
                break screen;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(60) && !screen.contains("ferry exited"),
            "{columns} columns: the bars never showed:\n{screen}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let after = loop {
        let screen = tmux.capture();
        if screen.contains("ferry exited") {
            break screen;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{columns} columns: ferry never finished:\n{screen}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    (during, after)
}

/// A tmux server of the test's own, on a socket in a temporary directory; killed when dropped.
struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("tmux");
        c.arg("-f").arg("/dev/null").arg("-S").arg(&self.socket);
        c.args(args);
        c
    }

    fn run(&self, args: &[&str]) -> String {
        let out = self.command(args).output().unwrap();
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The pane as text, a line per row. (Not `-J`: indicatif fills each bar's row to the last
    /// column and lets the terminal wrap, so tmux would join every bar with the next.)
    fn capture(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "ferry"])
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.command(&["kill-server"]).output();
    }
}

/// `cmd` (program, arguments, environment) as a shell script that then says how ferry exited
/// and keeps the pane open.
fn shell_script(cmd: &Command) -> String {
    let quote = |s: &std::ffi::OsStr| format!("'{}'", s.to_string_lossy().replace('\'', r"'\''"));
    let mut s = String::new();
    for (k, v) in cmd.get_envs() {
        let k = k.to_string_lossy();
        match v {
            Some(v) => s += &format!("export {k}={}\n", quote(v)),
            None => s += &format!("unset {k}\n"),
        }
    }
    s += &quote(cmd.get_program());
    for a in cmd.get_args() {
        s += " ";
        s += &quote(a);
    }
    s += "\necho \"ferry exited $?\"\nexec sleep 600\n";
    s
}

/// What varies from run to run replaced: sizes, rates, times left, the bars' fill, blob
/// counts, the history record's id and time, runs of spaces. (The image is generated from fixed
/// seeds: its digest is the same every run.)
fn normalize(screen: &str) -> String {
    let replacements = [
        (r"\d+(\.\d+)? (B|KiB|MiB|GiB)", "SIZE"),
        (r"ETA \S+", "ETA TIME"),
        (r"[=>-]{4,}", "[BAR]"),
        (r"\d+/\d+ blobs", "N/N blobs"),
        (r"recorded [0-9a-f]+ ", "recorded ID "),
        (r"\d{4}-\d\d-\d\dT[\d:.]+Z", "TIME"),
        (r" {2,}", " "),
    ]
    .map(|(re, to)| (Regex::new(re).unwrap(), to));
    let mut out = String::new();
    for line in screen.lines() {
        let mut l = line.to_owned();
        for (re, to) in &replacements {
            l = re.replace_all(&l, *to).into_owned();
        }
        out += l.trim_end();
        out.push('\n');
    }
    out.trim_end().to_owned() + "\n"
}

/// The screens' structure: mid-copy, one bar line per target starting with its name, none
/// wider than the pane (wrapped lines are joined by the capture); after, ferry exited 0 and no
/// bar is left; at 200 columns, with -v, log lines above the bars and no piece of a bar on
/// them. The normalized screens must match the committed ones (`FERRY_UPDATE_SCREENS=1`
/// writes them instead).
fn check_screens(columns: usize, during: &str, after: &str) {
    let bar = Regex::new(r"[=>-]{4,}").unwrap();
    for (when, screen) in [("mid-copy", during), ("after", after)] {
        for l in screen.lines() {
            assert!(
                l.chars().count() <= columns,
                "{columns} columns, {when}: a line of {}:\n{l}\n\n{screen}",
                l.chars().count()
            );
        }
    }
    // A whole bar on each row: a bar too wide for the pane would wrap into two rows, neither
    // of which is whole.
    let whole = Regex::new(
        r"^(?<label>\S+) [=>-]+ +\S+ \S+/\S+ \S+ +\S+ \S+/s +ETA \S+(?<blobs> +\d+/\d+ blobs)?$",
    )
    .unwrap();
    // A log line (-v, at 200 columns): `TIME  INFO message…`.
    let log = Regex::new(r"^\d{4}-\d\d-\d\dT[\d:.]+Z +(TRACE|DEBUG|INFO|WARN|ERROR) ").unwrap();
    let mut labels = Vec::new();
    for l in during.lines().filter(|l| !l.trim().is_empty()) {
        if columns >= 120 && log.is_match(l) {
            assert!(
                !l.contains("ETA") && !bar.is_match(l),
                "{columns} columns: a piece of a bar on a log line: {l}\n\n{during}"
            );
            continue;
        }
        let m = whole
            .captures(l)
            .unwrap_or_else(|| panic!("{columns} columns: not a whole bar: {l}\n\n{during}"));
        assert_eq!(
            m.name("blobs").is_some(),
            columns >= 120,
            "{columns} columns: blob counts only on a wide terminal: {l}"
        );
        labels.push(m["label"].to_owned());
    }
    let want: Vec<String> = TARGETS
        .iter()
        .map(|(name, _)| format!("{name}/acme/api"))
        .collect();
    assert_eq!(
        labels, want,
        "{columns} columns: a bar per target:\n{during}"
    );
    assert!(after.contains("ferry exited 0"), "{after}");
    for l in after.lines() {
        assert!(
            !l.contains("ETA") && !l.contains("blobs") && !bar.is_match(l),
            "{columns} columns: a bar was left on screen: {l}\n\n{after}"
        );
    }

    let dir = screens_dir();
    let name = |suffix: &str| dir.join(format!("promote-{columns}{suffix}"));
    if std::env::var_os("FERRY_UPDATE_SCREENS").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(name(".txt"), during).unwrap();
        std::fs::write(name("-done.txt"), after).unwrap();
        std::fs::write(name(".normalized.txt"), normalize(during)).unwrap();
        std::fs::write(name("-done.normalized.txt"), normalize(after)).unwrap();
        return;
    }
    for (suffix, screen) in [(".normalized.txt", during), ("-done.normalized.txt", after)] {
        let want = read(&name(suffix));
        assert_eq!(
            normalize(screen),
            want,
            "{columns} columns: the screen differs from {} (FERRY_UPDATE_SCREENS=1 rewrites it):\n{screen}",
            name(suffix).display()
        );
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn a_promotion_on_a_pipe_has_no_bars() {
    // The same promotion as on the terminal, quickly and off it: nothing but the report and
    // no escape, since bars are for terminals only.
    let src = TestRegistry::start(Mode::Plain);
    let dest = TestRegistry::start(Mode::Plain);
    let bed = Bed::new(&[]);
    let from = image(&bed, "v1", &[64 << 10]);
    bed.ferry_ok(&["copy", &from, &format!("{}/acme/api:v1", src.host())]);
    let policies = bed.policies(&[
        (
            "registries.yaml",
            format!(
                "version: 1\nregistries:\n  ghcr.io:\n    endpoint: http://{}\n  eu.registry.example:\n    endpoint: http://{}\n",
                src.host(),
                dest.host()
            ),
        ),
        (
            "prod.yaml",
            "version: 1\nenvironment: prod\nsource: ghcr.io/acme/api\ntargets:\n  - registry: eu.registry.example\n    repository: acme/api\ntags: [prod]\n".to_owned(),
        ),
    ]);
    let out = bed.ferry(&[
        "--policies",
        policies.to_str().unwrap(),
        "promote",
        "prod",
        "ghcr.io/acme/api:v1",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
    assert!(!out.stdout.contains(&0x1b));
}
