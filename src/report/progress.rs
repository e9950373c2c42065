//! report::progress: what a running copy, promotion, rollback or mirror shows on stderr — bars sized to the terminal, or a plain line every ten seconds when stderr is a file or pipe — and the log writer that keeps log lines and bars apart.
//!
//! Both views read the same counters ([`Slot`]): bytes done of bytes planned per target, and
//! what the target is doing. On a terminal, indicatif draws one bar per target, labelled by its
//! name and fitted to the terminal's width ([`bar_layout`]), and clears them all when the copy is
//! over. Off a terminal (CI logs) there are no bars and no escapes: a thread prints
//! [`progress_line`] every [`LINE_INTERVAL`] while there is something to tell, so a copy that
//! finishes within the interval prints nothing. Everything goes to stderr, never stdout, whatever
//! `--output` is: stdout is the report's alone.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

use crate::copy::fanout::OnBytes;
use crate::copy::progress::Observer;
use crate::mirror::progress::Observer as MirrorObserver;
use crate::outcome::Outcome;

/// How often the plain progress line is printed when stderr is not a terminal: often enough to
/// show a CI log that a long copy is alive, rarely enough not to flood it.
pub const LINE_INTERVAL: Duration = Duration::from_secs(10);

/// The bars on stderr for the whole process, or `None` when stderr is not a terminal. One set,
/// not one per copy: a rollback re-copies to several targets at once, each with its own
/// [`Progress`], and the log writer must lift all bars off the screen to write a line.
fn terminal() -> Option<&'static MultiProgress> {
    static BARS: OnceLock<Option<MultiProgress>> = OnceLock::new();
    BARS.get_or_init(|| {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        (!multi.is_hidden()).then_some(multi)
    })
    .as_ref()
}

/// One log event on its way to stderr (a `tracing` writer: `.with_writer(LogLine::default)`).
/// It is written when dropped, in one piece, with the bars lifted off the screen and redrawn
/// after it, so a log line never leaves pieces of a bar behind or above it.
#[derive(Default)]
pub struct LogLine(Vec<u8>);

impl std::io::Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        let write = || {
            // Nowhere to report a failed write of a log line.
            let _ = std::io::stderr().lock().write_all(&self.0);
        };
        match terminal() {
            Some(bars) => bars.suspend(write),
            None => write(),
        }
    }
}

/// What one target is doing, for its bar's end and the plain line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Nothing planned for it yet (its copy has not started, or is still reading the source).
    Waiting,
    /// Its bytes are planned and moving.
    Copying,
    /// Done, with this outcome.
    Finished(Outcome),
}

/// A target's state in a few words: `waiting`, `copying 45%`, `done`, `up to date`, `failed`….
pub(crate) fn state_text(phase: Phase, done: u64, total: u64) -> String {
    match phase {
        Phase::Waiting => "waiting".to_owned(),
        Phase::Copying if total > 0 => format!("copying {}%", percent(done, total)),
        Phase::Copying => "copying".to_owned(),
        Phase::Finished(o) => match o {
            Outcome::Copied => "done",
            Outcome::UpToDate => "up to date",
            Outcome::Skipped => "skipped",
            Outcome::Planned => "planned",
            Outcome::Failed => "failed",
            Outcome::NotAttempted => "not attempted",
        }
        .to_owned(),
    }
}

/// `done` of `total` in whole percent, never over 100 (a retried blob counts its bytes twice).
fn percent(done: u64, total: u64) -> u64 {
    (done.min(total) as u128 * 100 / total.max(1) as u128) as u64
}

/// Bytes in at most eight columns, three significant digits: `999 B`, `1.50 KiB`, `12.3 MiB`,
/// `812 MiB`, `1.40 GiB`.
pub(crate) fn short_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    let u = UNITS[unit];
    // Rounding may carry into the next width (9.996 → "10.00"): choose on the rounded value.
    if format!("{v:.2}").len() <= 4 {
        format!("{v:.2} {u}")
    } else if format!("{v:.1}").len() <= 4 {
        format!("{v:.1} {u}")
    } else {
        format!("{v:.0} {u}")
    }
}

/// A time left in at most six columns: `42s`, `3m05s`, `2h10m`, `99h+`.
pub(crate) fn eta_text(left: Duration) -> String {
    let s = left.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..360_000 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => "99h+".to_owned(),
    }
}

/// The facts one plain progress line tells.
#[derive(Debug, Default)]
pub(crate) struct LineFacts {
    /// Bytes done, over all targets.
    pub done: u64,
    /// Bytes planned so far, over all targets.
    pub total: u64,
    /// Bytes per second since the previous line.
    pub rate: u64,
    /// Images done and known, for a mirror run.
    pub images: Option<(u64, u64)>,
    /// Each target's name and [`state_text`].
    pub targets: Vec<(String, String)>,
}

/// The line printed every [`LINE_INTERVAL`] off a terminal:
/// `progress: 812 MiB of 1.40 GiB, 27.0 MiB/s, ETA 23s; ecr: copying 57%, gar: done`.
pub(crate) fn progress_line(f: &LineFacts) -> String {
    let mut s = format!(
        "progress: {} of {}, {}/s",
        short_bytes(f.done.min(f.total)),
        short_bytes(f.total),
        short_bytes(f.rate)
    );
    if f.rate > 0 && f.done < f.total {
        let left = Duration::from_secs((f.total - f.done).div_ceil(f.rate));
        let _ = write!(s, ", ETA {}", eta_text(left));
    }
    if let Some((done, known)) = f.images {
        let _ = write!(s, "; {done} of {known} images");
    }
    for (i, (name, state)) in f.targets.iter().enumerate() {
        s += if i == 0 { "; " } else { ", " };
        let _ = write!(s, "{name}: {state}");
    }
    s
}

/// Columns a bar's label may not push the bar below.
const MIN_BAR: usize = 10;

/// How a bar line is laid out at some terminal width: the label's width and the template.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct BarLayout {
    /// Columns for the label (the target's name, fitted by [`fit_label`]).
    pub label: usize,
    /// The indicatif template, with `{prefix}` the fitted label.
    pub template: &'static str,
    /// Whether the template shows the bar's message (its blob count).
    pub message: bool,
}

/// The bar templates from widest to narrowest, each with the columns it takes besides the label
/// and the bar (`{done}` 17: `1023 MiB/1023 MiB`; `{rate}` 10; `{left}` 10: `ETA 59m59s`; `{msg}` 13:
/// `123/456 blobs`; one space between fields).
/// Each also has the shortest label it is chosen for: below it, a long name is better served
/// by the next narrower template.
const TEMPLATES: [(&str, usize, bool, usize); 3] = [
    (
        "{prefix} {wide_bar} {done:>17} {rate:>10} {left:>10} {msg:13}",
        55,
        true,
        32,
    ),
    (
        "{prefix} {wide_bar} {done:>17} {rate:>10} {left:>10}",
        41,
        false,
        MIN_LABEL,
    ),
    ("{prefix} {wide_bar} {done:>17}", 19, false, MIN_LABEL),
];

/// The shortest label worth a bar: below it, the template without a bar.
const MIN_LABEL: usize = 12;

/// A label this long is never shortened for the bar's sake, only to fit the terminal: a
/// `registry/repository` is what tells the bars apart.
const WHOLE_LABEL: usize = 32;

/// The widest template that fits `columns` with the longest label (or its template's shortest
/// label) and at least [`MIN_BAR`] of bar, so no bar line ever wraps; the label gets what is
/// left, up to two thirds of it or [`WHOLE_LABEL`], whichever is more (the bar deserves the
/// rest). Below every template: label and bytes, no bar.
pub(crate) fn bar_layout(columns: usize, longest: usize) -> BarLayout {
    for (template, fixed, message, shortest) in TEMPLATES {
        let Some(room) = columns.checked_sub(fixed + MIN_BAR) else {
            continue;
        };
        if room < longest.min(shortest) {
            continue;
        }
        let share = ((columns - fixed) * 2 / 3).max(WHOLE_LABEL);
        return BarLayout {
            label: longest.min(room).min(share),
            template,
            message,
        };
    }
    BarLayout {
        label: longest.min(columns.saturating_sub(18)),
        template: "{prefix} {done}",
        message: false,
    }
}

/// `name` in exactly `width` columns: padded, or shortened in the middle with `…`, keeping more
/// of the end (the repository) than of the start (the registry).
pub(crate) fn fit_label(name: &str, width: usize) -> String {
    let chars: Vec<char> = name.chars().collect();
    if chars.len() <= width {
        return format!("{name:<width$}");
    }
    if width == 0 {
        return String::new();
    }
    let keep = width - 1;
    let head = keep / 3;
    let tail = keep - head;
    let mut s: String = chars[..head].iter().collect();
    s.push('…');
    s.extend(&chars[chars.len() - tail..]);
    s
}

/// The style of a running bar: [`bar_layout`] at the terminal's width, with ferry's own compact
/// fields (`{done}`, `{rate}`, `{left}`: the time left) so their widths are known.
fn running_style(layout: &BarLayout) -> ProgressStyle {
    ProgressStyle::with_template(layout.template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key("done", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(
                w,
                "{}/{}",
                short_bytes(s.pos()),
                short_bytes(s.len().unwrap_or(0))
            );
        })
        .with_key("rate", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{}/s", short_bytes(s.per_sec() as u64));
        })
        .with_key("left", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
            let left = if s.per_sec() >= 1.0 && s.pos() < s.len().unwrap_or(0) {
                eta_text(s.eta())
            } else {
                "-".to_owned()
            };
            let _ = write!(w, "ETA {left}");
        })
        .progress_chars("=>-")
}

/// The style of a finished bar: its label and how it ended, until the bars are cleared.
fn finished_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix} {msg}").unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// One target's counters, shared by its bar (if any) and the plain line.
pub(crate) struct Slot {
    name: String,
    done: AtomicU64,
    total: AtomicU64,
    blobs_done: AtomicU64,
    blobs_total: AtomicU64,
    phase: Mutex<Phase>,
    bar: ProgressBar,
}

impl Slot {
    fn new(name: String, bar: ProgressBar) -> Self {
        Slot {
            name,
            done: AtomicU64::new(0),
            total: AtomicU64::new(0),
            blobs_done: AtomicU64::new(0),
            blobs_total: AtomicU64::new(0),
            phase: Mutex::new(Phase::Waiting),
            bar,
        }
    }

    fn phase(&self) -> Phase {
        *self.phase.lock().expect("phase")
    }

    fn set_phase(&self, p: Phase) {
        *self.phase.lock().expect("phase") = p;
    }

    fn add_total(&self, bytes: u64) {
        let total = self.total.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.bar.set_length(total);
        if self.phase() == Phase::Waiting {
            self.set_phase(Phase::Copying);
            // The rate counts from when bytes can move, not from when the bar was made.
            self.bar.reset_eta();
        }
    }

    fn add_done(&self, bytes: u64) {
        if bytes > 0 {
            self.done.fetch_add(bytes, Ordering::Relaxed);
            self.bar.inc(bytes);
        }
    }

    fn show_blobs(&self) {
        let (done, total) = (
            self.blobs_done.load(Ordering::Relaxed),
            self.blobs_total.load(Ordering::Relaxed),
        );
        self.bar.set_message(format!("{done}/{total} blobs"));
    }

    fn finish(&self, outcome: Outcome) {
        self.set_phase(Phase::Finished(outcome));
        let (done, total) = (
            self.done.load(Ordering::Relaxed),
            self.total.load(Ordering::Relaxed),
        );
        self.bar.set_style(finished_style());
        self.bar.finish_with_message(format!(
            "{}, {}",
            state_text(Phase::Finished(outcome), done, total),
            short_bytes(done.min(total))
        ));
    }

    fn state(&self) -> String {
        state_text(
            self.phase(),
            self.done.load(Ordering::Relaxed),
            self.total.load(Ordering::Relaxed),
        )
    }
}

/// Every target a command has shown, for the plain line; and, for a mirror, its image count.
#[derive(Default)]
struct Board {
    slots: Mutex<Vec<Arc<Slot>>>,
    images: Option<(AtomicU64, AtomicU64)>,
}

impl Board {
    fn facts(&self) -> LineFacts {
        let slots = self.slots.lock().expect("slots");
        let mut f = LineFacts::default();
        for s in slots.iter() {
            let (done, total) = (
                s.done.load(Ordering::Relaxed),
                s.total.load(Ordering::Relaxed),
            );
            f.done += done.min(total);
            f.total += total;
            f.targets.push((s.name.clone(), s.state()));
        }
        f.images = self
            .images
            .as_ref()
            .map(|(d, k)| (d.load(Ordering::Relaxed), k.load(Ordering::Relaxed)));
        f
    }
}

/// Prints [`progress_line`] to stderr every [`LINE_INTERVAL`] until dropped (off a terminal).
struct Ticker {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Ticker {
    fn start(board: Arc<Board>) -> Ticker {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("ferry-progress".into())
            .spawn(move || {
                let (mut then, mut done_then) = (Instant::now(), 0);
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(LINE_INTERVAL)
                {
                    let mut facts = board.facts();
                    if facts.targets.is_empty() {
                        continue;
                    }
                    let secs = then.elapsed().as_secs_f64().max(0.001);
                    facts.rate = (facts.done.saturating_sub(done_then) as f64 / secs) as u64;
                    (then, done_then) = (Instant::now(), facts.done);
                    let mut line = progress_line(&facts);
                    line.push('\n');
                    LogLine(line.into_bytes());
                }
            })
            .ok();
        Ticker {
            stop: Some(stop),
            thread,
        }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Where a command's progress goes: bars on the terminal, or the board a ticker prints.
struct Display {
    board: Arc<Board>,
    _ticker: Option<Ticker>,
}

impl Display {
    fn new(images: bool) -> Arc<Display> {
        let board = Arc::new(Board {
            slots: Mutex::default(),
            images: images.then(|| (AtomicU64::new(0), AtomicU64::new(0))),
        });
        let ticker = terminal().is_none().then(|| Ticker::start(board.clone()));
        Arc::new(Display {
            board,
            _ticker: ticker,
        })
    }

    /// A slot per name, on the board, each with a bar on the terminal.
    fn slots(&self, names: &[String]) -> Vec<Arc<Slot>> {
        let columns = console::Term::stderr().size().1 as usize;
        let longest = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
        let layout = bar_layout(columns, longest);
        let slots: Vec<Arc<Slot>> = names
            .iter()
            .map(|n| {
                let bar = match terminal() {
                    Some(multi) => {
                        let b = multi.add(ProgressBar::new(0));
                        b.set_style(running_style(&layout));
                        b.set_prefix(fit_label(n, layout.label));
                        b
                    }
                    None => ProgressBar::hidden(),
                };
                Arc::new(Slot::new(n.clone(), bar))
            })
            .collect();
        self.board
            .slots
            .lock()
            .expect("slots")
            .extend(slots.iter().cloned());
        slots
    }
}

/// Clears `slots`' bars off the terminal.
fn clear(slots: &[Arc<Slot>]) {
    for s in slots {
        s.bar.finish_and_clear();
        if let Some(multi) = terminal() {
            multi.remove(&s.bar);
        }
    }
}

/// Progress of one copy, per destination (a [`crate::copy::progress::Observer`]): bars on a
/// terminal, the plain line elsewhere; the bars are cleared when it is dropped.
pub struct Progress {
    slots: Vec<Arc<Slot>>,
    _display: Option<Arc<Display>>,
}

impl Progress {
    /// No output at all.
    pub fn hidden(n: usize) -> Self {
        Progress {
            slots: (0..n)
                .map(|i| Arc::new(Slot::new(i.to_string(), ProgressBar::hidden())))
                .collect(),
            _display: None,
        }
    }

    fn on(display: Arc<Display>, names: &[String]) -> Self {
        Progress {
            slots: display.slots(names),
            _display: Some(display),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        clear(&self.slots);
    }
}

impl Observer for Progress {
    fn plan(&self, i: usize, bytes: u64, blobs: u64) {
        if let Some(s) = self.slots.get(i) {
            s.blobs_total.store(blobs, Ordering::Relaxed);
            s.show_blobs();
            s.add_total(bytes);
        }
    }

    fn on_bytes(&self, i: usize) -> OnBytes {
        match self.slots.get(i) {
            Some(s) => {
                let s = s.clone();
                Arc::new(move |n| s.add_done(n))
            }
            None => Arc::new(|_| {}),
        }
    }

    fn blob_done(&self, i: usize, unstreamed_bytes: u64) {
        if let Some(s) = self.slots.get(i) {
            s.add_done(unstreamed_bytes);
            s.blobs_done.fetch_add(1, Ordering::Relaxed);
            s.show_blobs();
        }
    }

    fn finish(&self, i: usize, outcome: Outcome) {
        if let Some(s) = self.slots.get(i) {
            s.finish(outcome);
        }
    }
}

/// Progress of `ferry copy` to these destinations.
pub fn progress<T: ToString>(names: &[T]) -> Progress {
    Progress::on(
        Display::new(false),
        &names.iter().map(T::to_string).collect::<Vec<_>>(),
    )
}

/// Progress for promotions and rollbacks, which name their targets as they go (a rollback
/// re-copies to each target that lacks content on its own): each call makes a [`Progress`]
/// for one copy, labelled by the targets' names; the plain line tells of them all, until the
/// returned function is dropped.
pub fn target_progress() -> impl Fn(&[String]) -> Progress {
    let display = Display::new(false);
    move |names| Progress::on(display.clone(), names)
}

/// Mirror progress (a [`crate::mirror::progress::Observer`]): bytes over all images, and per
/// target registry, with the number of images done; bars on a terminal, the plain line
/// elsewhere, cleared when dropped.
pub struct MirrorProgress {
    overall: Option<Arc<Slot>>,
    targets: std::collections::BTreeMap<String, Arc<Slot>>,
    display: Option<Arc<Display>>,
}

impl MirrorProgress {
    /// No output.
    pub fn hidden() -> Self {
        MirrorProgress {
            overall: None,
            targets: Default::default(),
            display: None,
        }
    }

    fn slot(&self, target: &str) -> Option<&Arc<Slot>> {
        self.targets
            .get(target.split('/').next().unwrap_or_default())
    }

    fn show_images(&self) {
        let (Some(overall), Some(d)) = (&self.overall, &self.display) else {
            return;
        };
        if let Some((done, known)) = &d.board.images {
            overall.bar.set_message(format!(
                "{}/{} images",
                done.load(Ordering::Relaxed),
                known.load(Ordering::Relaxed)
            ));
        }
    }
}

impl Drop for MirrorProgress {
    fn drop(&mut self) {
        clear(self.overall.as_slice());
        clear(&self.targets.values().cloned().collect::<Vec<_>>());
    }
}

impl MirrorObserver for MirrorProgress {
    fn add_images(&self, n: usize) {
        if let Some((_, known)) = self.display.as_ref().and_then(|d| d.board.images.as_ref()) {
            known.fetch_add(n as u64, Ordering::Relaxed);
        }
        self.show_images();
    }

    fn add_bytes(&self, target: &str, bytes: u64) {
        if let Some(s) = self.slot(target) {
            s.add_total(bytes);
        }
        if let Some(o) = &self.overall {
            o.add_total(bytes);
        }
    }

    fn bytes_done(&self, target: &str) -> OnBytes {
        let (slot, overall) = (self.slot(target).cloned(), self.overall.clone());
        Arc::new(move |n| {
            for s in slot.iter().chain(overall.iter()) {
                s.add_done(n);
            }
        })
    }

    fn image_done(&self, _: &crate::mirror::ImageResult) {
        if let Some((done, _)) = self.display.as_ref().and_then(|d| d.board.images.as_ref()) {
            done.fetch_add(1, Ordering::Relaxed);
        }
        self.show_images();
    }
}

/// Mirror progress to these target registries.
pub fn mirror_progress(registries: &[String]) -> MirrorProgress {
    let display = Display::new(true);
    // The overall bar is for the terminal only: the plain line adds the targets up itself.
    let overall = terminal().map(|multi| {
        let mut names = vec!["all targets".to_owned()];
        names.extend(registries.iter().cloned());
        let columns = console::Term::stderr().size().1 as usize;
        let longest = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
        let layout = bar_layout(columns, longest);
        let b = multi.add(ProgressBar::new(0));
        b.set_style(running_style(&layout));
        b.set_prefix(fit_label(&names[0], layout.label));
        Arc::new(Slot::new(names[0].clone(), b))
    });
    let targets = registries
        .iter()
        .cloned()
        .zip(display.slots(registries))
        .collect();
    let p = MirrorProgress {
        overall,
        targets,
        display: Some(display),
    };
    p.show_images();
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_fit_eight_columns_with_three_significant_digits() {
        let table = [
            (0, "0 B"),
            (1023, "1023 B"),
            (1024, "1.00 KiB"),
            (1536, "1.50 KiB"),
            (12_900_000, "12.3 MiB"),
            (851_443_712, "812 MiB"),
            (1023 << 20, "1023 MiB"),
            (1_503_238_554, "1.40 GiB"),
            // 9.996 GiB rounds to 10.00, which would be five digits: one decimal instead.
            (10_733_000_000, "10.0 GiB"),
        ];
        for (n, want) in table {
            assert_eq!(short_bytes(n), want, "{n}");
        }
        for shift in 0..60 {
            for n in [(1u64 << shift) - 1, 1 << shift, (1 << shift) / 1000 * 999] {
                assert!(short_bytes(n).len() <= 8, "{n}: {}", short_bytes(n));
            }
        }
    }

    #[test]
    fn time_left_fits_six_columns() {
        let table = [
            (0, "0s"),
            (59, "59s"),
            (60, "1m00s"),
            (185, "3m05s"),
            (3599, "59m59s"),
            (7800, "2h10m"),
            (359_999, "99h59m"),
            (360_000, "99h+"),
        ];
        for (s, want) in table {
            assert_eq!(eta_text(Duration::from_secs(s)), want);
            assert!(want.len() <= 6);
        }
    }

    #[test]
    fn each_target_says_what_it_is_doing() {
        let table = [
            (Phase::Waiting, 0, 0, "waiting"),
            (Phase::Copying, 0, 0, "copying"),
            (Phase::Copying, 45, 100, "copying 45%"),
            // A retried blob streams twice: never over 100%.
            (Phase::Copying, 150, 100, "copying 100%"),
            (Phase::Finished(Outcome::Copied), 100, 100, "done"),
            (Phase::Finished(Outcome::UpToDate), 0, 0, "up to date"),
            (Phase::Finished(Outcome::Failed), 3, 100, "failed"),
            (
                Phase::Finished(Outcome::NotAttempted),
                0,
                0,
                "not attempted",
            ),
        ];
        for (phase, done, total, want) in table {
            assert_eq!(state_text(phase, done, total), want, "{phase:?}");
        }
    }

    #[test]
    fn the_plain_line_tells_bytes_rate_time_left_and_each_target() {
        let facts = LineFacts {
            done: 851_443_712,
            total: 1_503_238_554,
            rate: 27 << 20,
            images: None,
            targets: vec![
                ("ecr".into(), "copying 57%".into()),
                ("gar".into(), "done".into()),
                ("hub".into(), "waiting".into()),
            ],
        };
        assert_eq!(
            progress_line(&facts),
            "progress: 812 MiB of 1.40 GiB, 27.0 MiB/s, ETA 24s; ecr: copying 57%, gar: done, hub: waiting"
        );
        let mirror = LineFacts {
            done: 0,
            total: 2048,
            rate: 0,
            images: Some((3, 40)),
            targets: vec![("127.0.0.1:5000".into(), "copying 0%".into())],
        };
        assert_eq!(
            progress_line(&mirror),
            "progress: 0 B of 2.00 KiB, 0 B/s; 3 of 40 images; 127.0.0.1:5000: copying 0%"
        );
    }

    #[test]
    fn labels_are_padded_or_shortened_in_the_middle() {
        assert_eq!(fit_label("ecr prod", 10), "ecr prod  ");
        let ecr = "123456789012.dkr.ecr.us-east-1.amazonaws.com/acme/api";
        let fitted = fit_label(ecr, 24);
        assert_eq!(fitted, "1234567…aws.com/acme/api");
        assert_eq!(fitted.chars().count(), 24);
        assert_eq!(fit_label(ecr, 1), "…");
        assert_eq!(fit_label(ecr, 0), "");
    }

    /// The widest a bar line's fixed fields can render, by template.
    fn fixed_width(template: &str) -> usize {
        let mut w = template.matches(' ').count();
        for (field, width) in [
            ("{done:>17}", 17),
            ("{done}", 17),
            ("{rate:>10}", 10),
            ("{left:>10}", 10),
            ("{msg:13}", 13),
        ] {
            if template.contains(field) {
                w += width;
            }
        }
        w
    }

    #[test]
    fn bar_lines_never_wrap_at_any_width() {
        for columns in 20..=300 {
            for longest in [0, 5, 12, 30, 53, 120] {
                let l = bar_layout(columns, longest);
                let bar = if l.template.contains("wide_bar") {
                    MIN_BAR
                } else {
                    0
                };
                let width = l.label + fixed_width(l.template) + bar;
                assert!(
                    width <= columns || columns < 30,
                    "{columns} columns, label {longest}: {l:?} takes {width}"
                );
                assert!(l.label <= longest);
            }
        }
        // 80 columns: everything but the blob count, and room for a registry/repository.
        let l = bar_layout(80, 40);
        assert_eq!(l.template, TEMPLATES[1].0);
        assert_eq!(l.label, 29);
        // 200 columns: the blob count too, and the whole label.
        let l = bar_layout(200, 53);
        assert_eq!(l.template, TEMPLATES[0].0);
        assert_eq!(l.label, 53);
        assert!(l.message);
    }

    #[test]
    fn a_hidden_progress_counts_without_drawing() {
        let p = Progress::hidden(2);
        p.plan(0, 100, 2);
        (p.on_bytes(0))(60);
        p.blob_done(0, 40);
        p.finish(0, Outcome::Copied);
        assert_eq!(p.slots[0].state(), "done");
        assert_eq!(p.slots[1].state(), "waiting");
        p.plan(1, 100, 1);
        (p.on_bytes(1))(45);
        assert_eq!(p.slots[1].state(), "copying 45%");
    }
}
