//! report: the text or JSON account of what a command did; progress while it runs is in [`progress`].

pub mod progress;
pub mod prune;

use serde::Serialize;
use std::io::Write;
use std::sync::atomic::Ordering;

use crate::copy::{Action, CopyReport};
// Defined below the engines, which also print error chains; `report::ErrorChain` still works.
pub use crate::error::ErrorChain;
use crate::outcome::Outcome;
pub use progress::{mirror_progress, progress, target_progress, LogLine, MirrorProgress, Progress};

/// Whether to colour what goes to a stream (the log on stderr): on a terminal, never on a
/// pipe or file. `NO_COLOR` set and non-empty turns colour off (no-color.org); `CLICOLOR_FORCE`
/// set and not `0` turns it on even off a terminal (bixense.com/clicolors); `NO_COLOR` wins.
pub fn use_colour(
    is_terminal: bool,
    no_color: Option<&std::ffi::OsStr>,
    clicolor_force: Option<&std::ffi::OsStr>,
) -> bool {
    if no_color.is_some_and(|v| !v.is_empty()) {
        return false;
    }
    if clicolor_force.is_some_and(|v| v != "0") {
        return true;
    }
    is_terminal
}

/// Output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A few lines for people.
    Text,
    /// One JSON document on stdout.
    Json,
}

fn status_word(s: Outcome) -> &'static str {
    match s {
        Outcome::Copied => "copied",
        Outcome::UpToDate => "up-to-date",
        Outcome::Skipped => "skipped",
        Outcome::Planned => "planned",
        Outcome::Failed => "failed",
        Outcome::NotAttempted => "not-attempted",
    }
}

/// Writes one pretty JSON document and a newline.
pub fn write_json<T: serde::Serialize + ?Sized>(
    out: &mut dyn Write,
    value: &T,
) -> std::io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)
}

/// Writes a copy report in the chosen format.
pub fn write_copy(out: &mut dyn Write, report: &CopyReport, format: Format) -> std::io::Result<()> {
    if format == Format::Json {
        return write_json(out, report);
    }
    match &report.filtered_from {
        Some(from) => writeln!(
            out,
            "{} -> {} (new index for the chosen platforms, filtered from {from})",
            report.source, report.digest
        )?,
        None => writeln!(out, "{} -> {}", report.source, report.digest)?,
    }
    for d in &report.destinations {
        let attached = d
            .attached
            .as_ref()
            .map(|a| {
                format!(
                    "; attached: {} copied, {} present, {}, {}",
                    a.copied,
                    a.present,
                    count(a.tags as u64, "cosign tag", "cosign tags"),
                    count(
                        a.fallback_indexes as u64,
                        "fallback index",
                        "fallback indexes"
                    )
                )
            })
            .unwrap_or_default();
        match (&d.error, &d.plan) {
            (Some(e), _) => writeln!(out, "  failed      {}: {}", d.reference, ErrorChain(e))?,
            (None, Some(p)) => {
                let what = match p.action {
                    Action::UpToDate => "up to date".to_owned(),
                    Action::TagOnly => "content present; tag only".to_owned(),
                    Action::Copy => format!(
                        "{}, {} ({}) to check and copy",
                        count(p.manifests.len() as u64, "manifest", "manifests"),
                        count(p.blob_count as u64, "blob", "blobs"),
                        count(p.blob_bytes, "byte", "bytes")
                    ),
                };
                let tag = match (&p.tag, &p.tag_from) {
                    (Some(t), Some(from)) if *from != p.digest => {
                        format!("; tag {t}: {from} -> {}", p.digest)
                    }
                    (Some(t), None) => format!("; tag {t}: (new) -> {}", p.digest),
                    _ => String::new(),
                };
                writeln!(
                    out,
                    "  {:<11} {}{}: {what}{tag}{attached}",
                    status_word(d.status),
                    d.reference,
                    untagged_note(d)
                )?
            }
            (None, None) => writeln!(
                out,
                "  {:<11} {}{} ({} uploaded, {} mounted, {} present; {}; {}{attached})",
                status_word(d.status),
                d.reference,
                untagged_note(d),
                d.blobs_uploaded,
                d.blobs_mounted,
                d.blobs_skipped,
                count(d.bytes_uploaded, "byte", "bytes"),
                count(d.requests, "request", "requests")
            )?,
        }
    }
    Ok(())
}

/// After a destination that named no tag: says so, and how to tag it.
fn untagged_note(d: &crate::copy::DestReport) -> &'static str {
    if d.untagged {
        " (untagged: by digest only; add :TAG to tag it)"
    } else {
        ""
    }
}

/// `ferry verify`: the gates that held.
pub fn write_verify(
    out: &mut dyn Write,
    report: &crate::promote::VerifyReport,
    format: Format,
) -> std::io::Result<()> {
    if format == Format::Json {
        return write_json(out, report);
    }
    writeln!(out, "{} -> {}", report.source, report.digest)?;
    if report.rules.is_empty() {
        writeln!(out, "  {} requires nothing", report.environment)?;
    }
    for r in &report.rules {
        let by = report
            .evidence
            .iter()
            .find(|e| e.rule == r.rule && e.verdict == "accepted")
            .map(|e| {
                let v = e.verified.as_ref();
                let who = v
                    .filter(|v| !r.rule.contains(&v.signer))
                    .map(|v| format!(" by {}", v.signer))
                    .unwrap_or_default();
                let at = match (v.and_then(|v| v.log_index), v.and_then(|v| v.time.as_ref())) {
                    (Some(i), Some(t)) => format!(", log index {i}, {t}"),
                    (None, Some(t)) => format!(", {t}"),
                    _ => String::new(),
                };
                format!(": {}{who}{at}", e.kind)
            })
            .unwrap_or_default();
        writeln!(out, "  ok  {}{by}", r.rule)?;
    }
    Ok(())
}

fn short(d: &Option<crate::digest::Digest>) -> String {
    d.as_ref()
        .map_or("(none)".to_owned(), |d| d.short().to_owned())
}

/// Writes a promotion or rollback report.
pub fn write_promote(
    out: &mut dyn Write,
    r: &crate::promote::PromoteReport,
    format: Format,
) -> std::io::Result<()> {
    use crate::promote::TagAction;
    if format == Format::Json {
        return write_json(out, r);
    }
    let verb = match r.kind {
        crate::history::Kind::Promote => "promote",
        crate::history::Kind::Rollback => "rollback",
    };
    // The source and the digest on lines of their own: neither wraps on an 80-column terminal.
    writeln!(
        out,
        "{verb} {}: {}{}\n  digest {}",
        r.environment,
        r.source,
        if r.dry_run {
            " (dry run: nothing written)"
        } else {
            ""
        },
        r.digest
    )?;
    for i in &r.images {
        writeln!(
            out,
            "  image {:<16} {}  {}",
            i.name,
            i.digest.short(),
            i.source
        )?;
    }
    if let Some(g) = &r.forced_gate {
        writeln!(out, "  forced past gate: {g}")?;
    }
    for t in &r.targets {
        let content = match t.content {
            Outcome::Copied => "content copied",
            Outcome::UpToDate => "content present",
            Outcome::Planned => "content to copy",
            Outcome::Failed => "content failed",
            // Promotions copy content through the copy engine, which neither skips nor stops early.
            Outcome::Skipped | Outcome::NotAttempted => "content not copied",
        };
        let attached = t
            .attached
            .as_ref()
            .map(|a| {
                let n = (a.copied + a.present) as u64;
                format!("; {}", count(n, "attached artifact", "attached artifacts"))
            })
            .unwrap_or_default();
        writeln!(out, "  {} ({content}{attached})", t.target)?;
        for o in &t.tags {
            let p = &o.planned;
            let state = match (&o.error, o.outcome, p.action) {
                (Some(_), _, _) => "FAILED",
                (None, _, TagAction::Keep) => "kept",
                (None, Some(Outcome::Copied), TagAction::Create) => "created",
                (None, Some(Outcome::Copied), TagAction::Move) => "moved",
                (None, _, _) if r.dry_run => "would set",
                (None, _, _) => "not set",
            };
            writeln!(
                out,
                "    {:<24} {} -> {}  {state}{}",
                p.tag.as_str(),
                short(&p.from),
                p.to.short(),
                o.error
                    .as_ref()
                    .map(|e| format!(": {}", ErrorChain(e)))
                    .unwrap_or_default()
            )?;
        }
        for (tag, newer) in &t.held {
            writeln!(out, "    {:<24} held: {newer} is newer", tag.as_str())?;
        }
        if let Some(e) = &t.error {
            if t.tags.iter().all(|o| o.error.is_none()) {
                writeln!(out, "    error: {}", ErrorChain(e))?;
            }
        }
    }
    if let Some(rec) = &r.record {
        writeln!(
            out,
            "  recorded {} by {} at {}",
            rec.id, rec.actor, rec.time
        )?;
    }
    for e in &r.history_errors {
        writeln!(out, "  history not written: {e}")?;
    }
    Ok(())
}

/// Writes `ferry status`.
pub fn write_status(
    out: &mut dyn Write,
    r: &crate::promote::StatusReport,
    format: Format,
) -> std::io::Result<()> {
    if format == Format::Json {
        return write_json(out, r);
    }
    use crate::promote::State;
    let unknown = r.targets.iter().filter(|t| t.error.is_some()).count();
    let state = match r.state {
        State::InSync => "in sync".to_owned(),
        State::Drift => "DRIFT".to_owned(),
        State::Unknown => format!(
            "UNKNOWN ({unknown} of {} {} unreadable)",
            r.targets.len(),
            plural(r.targets.len(), "target", "targets")
        ),
        State::NeverPromoted => "never promoted (no target has the tag, no history)".to_owned(),
    };
    writeln!(out, "{} ({}): {state}", r.environment, r.tag)?;
    for t in &r.targets {
        match &t.error {
            Some(e) => writeln!(out, "  {:<50} UNKNOWN: {}", t.target, ErrorChain(e))?,
            None => writeln!(
                out,
                "  {:<50} {}  since {}",
                t.target,
                t.digest.as_ref().map_or("(no tag)".to_owned(), |d| {
                    format!("{} ({})", d.short(), t.tags.join(", "))
                }),
                t.since.as_deref().unwrap_or("(not in history)")
            )?,
        }
    }
    for d in &r.drift {
        writeln!(out, "  drift: {d}")?;
    }
    Ok(())
}

/// Writes `ferry history`, newest first.
pub fn write_history(
    out: &mut dyn Write,
    records: &[crate::history::Record],
    format: Format,
) -> std::io::Result<()> {
    if format == Format::Json {
        return write_json(out, records);
    }
    if records.is_empty() {
        writeln!(out, "no promotions or rollbacks recorded yet")?;
    }
    for r in records {
        let kind = match r.kind {
            crate::history::Kind::Promote => "promote ",
            crate::history::Kind::Rollback => "rollback",
        };
        writeln!(
            out,
            "{}  {kind}  {}  by {}{}{}{}",
            r.time,
            r.digest.short(),
            r.actor,
            r.source
                .as_deref()
                .map(|s| {
                    // `…:v1.1.0@sha256:…` of the digest just shown: the tag says enough.
                    let pinned = format!("@{}", r.digest);
                    let s = s.strip_suffix(pinned.as_str()).unwrap_or(s);
                    format!("  from {s}")
                })
                .unwrap_or_default(),
            r.forced
                .as_deref()
                .map(|f| format!("  FORCED: {f}"))
                .unwrap_or_default(),
            r.ci_run
                .as_deref()
                .map(|c| format!("  {c}"))
                .unwrap_or_default()
        )?;
        for (name, d) in &r.images {
            let from = r
                .sources
                .get(name)
                .map(|s| format!("  from {s}"))
                .unwrap_or_default();
            writeln!(out, "    {name:<16} {}{from}", d.short())?;
        }
    }
    Ok(())
}

/// Writes the resolved policies (`ferry policy check`).
pub fn write_policies(
    out: &mut dyn Write,
    p: &crate::policy::Policies,
    format: Format,
) -> std::io::Result<()> {
    if format == Format::Json {
        return write_json(out, p);
    }
    writeln!(out, "policies in {}", p.dir.display())?;
    for (name, r) in &p.registries {
        writeln!(
            out,
            "registry {name}: endpoint {}, auth {}, plain_http {}, max_concurrency {}",
            r.endpoint.as_deref().unwrap_or("(default)"),
            spelled(&r.auth),
            r.plain_http,
            r.max_concurrency
                .map_or("(default)".to_owned(), |m| m.to_string())
        )?;
    }
    for e in p.environments.values() {
        writeln!(out, "environment {} ({})", e.environment, e.file.display())?;
        if e.release {
            for i in &e.images {
                writeln!(out, "  image {}: {}", i.name, i.source.repository_name())?;
                for t in &i.targets {
                    writeln!(out, "    target: {t}")?;
                }
            }
        } else {
            writeln!(out, "  source: {}", e.source.repository_name())?;
        }
        if let Some(f) = &e.promote_from {
            writeln!(out, "  promote_from: {f}")?;
        }
        if !e.release {
            for t in &e.targets {
                writeln!(out, "  target: {t}")?;
            }
        }
        let list = |v: Vec<String>| {
            if v.is_empty() {
                "(none)".to_owned()
            } else {
                v.join(", ")
            }
        };
        writeln!(
            out,
            "  tags: {}",
            list(e.tags.iter().map(ToString::to_string).collect())
        )?;
        writeln!(
            out,
            "  protect: {}",
            list(e.protect.iter().map(|p| String::from(p.clone())).collect())
        )?;
        writeln!(
            out,
            "  platforms: {}",
            if e.platforms.is_empty() {
                "all".to_owned()
            } else {
                e.platforms
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        )?;
        for a in &e.require.attestations {
            let by = match &a.signer {
                Some(s) => format!("signed by {s}"),
                None => "unsigned accepted (signed: false)".to_owned(),
            };
            writeln!(out, "  require: attestation {}, {by}", a.predicate_type)?;
        }
        if let Some(s) = &e.require.signature {
            writeln!(out, "  require: signature by {}", s.signer)?;
        }
        if !e.require.is_empty() {
            writeln!(out, "  trusted root: {}", e.require.trusted_root)?;
        }
    }
    for m in p.mirrors.values() {
        writeln!(out, "mirror {} ({})", m.name, m.file.display())?;
        writeln!(
            out,
            "  source: {}/{} [{}]",
            m.source_registry,
            m.source_prefix,
            if m.repositories.is_empty() {
                "from the catalog".to_owned()
            } else {
                m.repositories.join(", ")
            }
        )?;
        for t in &m.targets {
            writeln!(out, "  target: {}/{}*", t.registry, t.prefix)?;
        }
        let f = &m.tags;
        let res =
            |v: &[crate::policy::mirror::TagRegex]| serde_json::to_string(v).unwrap_or_default();
        writeln!(
            out,
            "  tags: include {}, exclude {}, semver {}, newest {}; existing: {}",
            res(&f.include),
            res(&f.exclude),
            f.semver
                .as_ref()
                .map_or("any".to_owned(), ToString::to_string),
            f.newest.map_or("all".to_owned(), |n| n.to_string()),
            spelled(&m.existing)
        )?;
    }
    writeln!(out, "all policies valid")
}

/// Whether a report went to stdout in this process (so a failure after it adds no document).
static REPORTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// True once [`finish`] has written a report.
pub fn reported() -> bool {
    REPORTED.load(Ordering::Relaxed)
}

/// A failure as the one JSON document of a `--output json` run: `{"error": …, "exit_code": …}`.
pub fn write_error(out: &mut dyn Write, e: &crate::Error) -> std::io::Result<()> {
    let doc = serde_json::json!({
        "error": crate::error::ErrorChain(e).to_string(),
        "exit_code": e.exit_code(),
        "refused": e.exit_code() == crate::error::EXIT_GATE,
    });
    writeln!(
        out,
        "{}",
        serde_json::to_string_pretty(&doc).expect("JSON values serialise")
    )?;
    out.flush()
}

/// `n` with the singular or plural noun's form chosen.
fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 {
        one
    } else {
        many
    }
}

/// `n` and its noun, singular or plural: `1 request`, `2 requests`.
fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", plural(n as usize, one, many))
}

/// A policy value as its YAML spelling (`overwrite`, `docker-config`), not Rust's.
fn spelled<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => "?".to_owned(),
    }
}

/// Writes a mirror report: totals per target and every failure (text), or the whole report (JSON).
pub fn write_mirror(
    out: &mut dyn Write,
    report: &crate::mirror::MirrorReport,
    format: Format,
) -> std::io::Result<()> {
    if format == Format::Json {
        return write_json(out, report);
    }
    let t = &report.totals;
    writeln!(
        out,
        "{}{}: {}, {} image×target: {} copied, {} up to date, {} skipped, {} planned, {} failed{}; {} uploaded",
        report.policies.join(", "),
        report
            .shard
            .map(|s| format!(" (shard {}/{})", s.index, s.count))
            .unwrap_or_default(),
        count(report.repositories as u64, "repository", "repositories"),
        t.copied + t.up_to_date + t.skipped + t.planned + t.failed + t.not_attempted,
        t.copied,
        t.up_to_date,
        t.skipped,
        t.planned,
        t.failed,
        if t.not_attempted > 0 {
            format!(", {} not attempted", t.not_attempted)
        } else {
            String::new()
        },
        human_bytes(t.bytes)
    )?;
    // A dry run copies nothing: what it would copy is planned.
    let moved = if report.dry_run { "planned" } else { "copied" };
    for (target, t) in &report.per_target {
        writeln!(
            out,
            "  {target}: {} {moved}, {} up to date, {} skipped, {} failed, {}",
            t.copied + t.planned,
            t.up_to_date,
            t.skipped,
            t.failed,
            human_bytes(t.bytes)
        )?;
    }
    for f in mirror_failures(report) {
        writeln!(out, "  failed: {f}")?;
    }
    Ok(())
}

/// The Markdown summary GitHub Actions shows for a step (`$GITHUB_STEP_SUMMARY`).
pub fn mirror_markdown(report: &crate::mirror::MirrorReport) -> String {
    let mut s = format!(
        "### ferry mirror {}{}\n\n| target | copied | up to date | skipped | failed | uploaded |\n|---|---:|---:|---:|---:|---:|\n",
        report.policies.join(", "),
        report
            .shard
            .map(|s| format!(" (shard {}/{})", s.index, s.count))
            .unwrap_or_default()
    );
    for (target, t) in &report.per_target {
        s += &format!(
            "| `{target}` | {} | {} | {} | {} | {} |\n",
            t.copied + t.planned,
            t.up_to_date,
            t.skipped,
            t.failed,
            human_bytes(t.bytes)
        );
    }
    let t = &report.totals;
    s += &format!(
        "| **all** | {} | {} | {} | {} | {} |\n",
        t.copied + t.planned,
        t.up_to_date,
        t.skipped,
        t.failed,
        human_bytes(t.bytes)
    );
    let failures = mirror_failures(report);
    if !failures.is_empty() {
        s += "\n**Failures**\n\n";
        for f in failures {
            s += &format!("- `{}`\n", f.replace('`', "'"));
        }
    }
    s + "\n"
}

/// A mirror run's failures, one line each: `SOURCE:TAG -> TARGET: ERROR`.
fn mirror_failures(report: &crate::mirror::MirrorReport) -> Vec<String> {
    report
        .failures()
        .into_iter()
        .map(|(what, e)| format!("{what}: {}", ErrorChain(e)))
        .collect()
}

fn human_bytes(n: u64) -> String {
    indicatif::HumanBytes(n).to_string()
}

/// What a command prints and what it means for the command's result (and so its exit code).
pub trait Report {
    /// Writes the report in `format`.
    fn write(&self, out: &mut dyn Write, format: Format) -> std::io::Result<()>;

    /// The command's result: an error when the report says some of the work failed.
    fn result(&self) -> crate::Result<()> {
        Ok(())
    }
}

/// Prints `report` to stdout in `format`, then returns its [`Report::result`].
pub fn finish<R: Report + ?Sized>(report: &R, format: Format) -> crate::Result<()> {
    let mut stdout = std::io::stdout().lock();
    REPORTED.store(true, Ordering::Relaxed);
    report.write(&mut stdout, format)?;
    stdout.flush()?;
    report.result()
}

impl Report for CopyReport {
    fn write(&self, out: &mut dyn Write, format: Format) -> std::io::Result<()> {
        write_copy(out, self, format)
    }

    /// [`crate::Error::Partial`] when a destination failed.
    fn result(&self) -> crate::Result<()> {
        match self.failed() {
            0 => Ok(()),
            failed => Err(crate::Error::Partial {
                failed,
                total: self.destinations.len(),
            }),
        }
    }
}

impl Report for crate::promote::PromoteReport {
    fn write(&self, out: &mut dyn Write, format: Format) -> std::io::Result<()> {
        write_promote(out, self, format)
    }

    /// A failure naming the first failed target.
    fn result(&self) -> crate::Result<()> {
        match self
            .targets
            .iter()
            .find_map(|t| Some((&t.target, t.error.as_ref()?)))
        {
            None => Ok(()),
            Some((target, e)) => Err(crate::Error::Targets {
                failed: self.failed(),
                total: self.targets.len(),
                first_target: target.clone(),
                source: e.clone(),
            }),
        }
    }
}

impl Report for crate::promote::StatusReport {
    fn write(&self, out: &mut dyn Write, format: Format) -> std::io::Result<()> {
        write_status(out, self, format)
    }

    /// A failure listing the drift, when the environment has drifted, or naming the targets
    /// that could not be read.
    fn result(&self) -> crate::Result<()> {
        if !self.drift.is_empty() {
            return Err(crate::Error::Drifted {
                environment: self.environment.clone(),
                drift: self.drift.clone(),
            });
        }
        let unreadable: Vec<String> = self
            .targets
            .iter()
            .filter_map(|t| {
                t.error
                    .as_ref()
                    .map(|e| format!("{}: {}", t.target, ErrorChain(e)))
            })
            .collect();
        if unreadable.is_empty() {
            return Ok(());
        }
        Err(crate::Error::StatusUnknown {
            environment: self.environment.clone(),
            unreadable,
        })
    }
}

impl Report for crate::mirror::MirrorReport {
    fn write(&self, out: &mut dyn Write, format: Format) -> std::io::Result<()> {
        write_mirror(out, self, format)
    }

    /// A failure counting the failed images and naming the first.
    fn result(&self) -> crate::Result<()> {
        let failures = self.failures();
        match failures.first() {
            None => Ok(()),
            Some((first, e)) => Err(crate::Error::Images {
                failed: failures.len(),
                total: self.images.len(),
                first: first.clone(),
                source: (*e).clone(),
            }),
        }
    }
}

impl Report for crate::promote::VerifyReport {
    fn write(&self, out: &mut dyn Write, format: Format) -> std::io::Result<()> {
        write_verify(out, self, format)
    }
}

impl Report for [crate::history::Record] {
    fn write(&self, out: &mut dyn Write, format: Format) -> std::io::Result<()> {
        write_history(out, self, format)
    }
}

impl Report for crate::policy::Policies {
    fn write(&self, out: &mut dyn Write, format: Format) -> std::io::Result<()> {
        write_policies(out, self, format)
    }
}

/// `ferry inspect`: what the manifest is, its platforms or its config and layers, and what is
/// attached to it.
pub fn write_inspect(
    out: &mut dyn Write,
    i: &crate::inspect::Inspection,
    format: Format,
) -> std::io::Result<()> {
    use crate::inspect::AttachmentKind;
    if format == Format::Json {
        return write_json(out, i);
    }
    writeln!(out, "{}", i.reference)?;
    writeln!(out, "  digest:      {}", i.digest)?;
    writeln!(out, "  media type:  {}", i.media_type)?;
    writeln!(out, "  size:        {}", count(i.size, "byte", "bytes"))?;
    if let Some(index) = &i.index {
        writeln!(out, "  index:       {index}")?;
    }
    if !i.platforms.is_empty() {
        writeln!(out, "  platforms:")?;
        let width = i
            .platforms
            .iter()
            .map(|p| p.platform.as_deref().unwrap_or("-").len())
            .max()
            .unwrap_or(0);
        for p in &i.platforms {
            writeln!(
                out,
                "    {:<width$}  {}  {}",
                p.platform.as_deref().unwrap_or("-"),
                p.digest,
                count(p.size, "byte", "bytes")
            )?;
        }
    }
    if let Some(c) = &i.config {
        writeln!(
            out,
            "  config:      {} ({}, {})",
            c.digest,
            c.media_type,
            count(c.size, "byte", "bytes")
        )?;
    }
    if let (Some(layers), Some(total)) = (&i.layers, i.layers_size) {
        writeln!(
            out,
            "  layers:      {}, {} in all ({})",
            layers.len(),
            count(total, "byte", "bytes"),
            human_bytes(total)
        )?;
    }
    if i.attachments.is_empty() {
        return writeln!(out, "  attached:    none");
    }
    writeln!(out, "  attached:")?;
    for a in &i.attachments {
        let how = match a.kind {
            AttachmentKind::Referrer => "referrer".to_owned(),
            AttachmentKind::CosignTag => {
                format!("cosign tag {}", a.tag.as_deref().unwrap_or_default())
            }
            AttachmentKind::BuildkitAttestation => "buildkit attestation".to_owned(),
        };
        let subject = if a.subject == i.digest {
            String::new()
        } else {
            format!(" on {}", a.subject)
        };
        writeln!(
            out,
            "    {} {}{subject} ({how})",
            a.artifact_type.as_deref().unwrap_or(&a.media_type),
            a.digest
        )?;
    }
    Ok(())
}

impl Report for crate::inspect::Inspection {
    fn write(&self, out: &mut dyn Write, format: Format) -> std::io::Result<()> {
        write_inspect(out, self, format)
    }
}

/// `ferry tags`: one tag a line, or skopeo list-tags' JSON.
pub fn write_tags(
    out: &mut dyn Write,
    list: &crate::inspect::TagList,
    format: Format,
) -> std::io::Result<()> {
    if format == Format::Json {
        return write_json(out, list);
    }
    for t in &list.tags {
        writeln!(out, "{t}")?;
    }
    Ok(())
}

impl Report for crate::inspect::TagList {
    fn write(&self, out: &mut dyn Write, format: Format) -> std::io::Result<()> {
        write_tags(out, self, format)
    }
}

/// Appends [`mirror_markdown`] to the file `$GITHUB_STEP_SUMMARY` names, when it names one.
pub fn append_step_summary(report: &crate::mirror::MirrorReport) -> crate::Result<()> {
    match std::env::var("GITHUB_STEP_SUMMARY") {
        Ok(path) if !path.is_empty() => append_markdown(std::path::Path::new(&path), report),
        _ => Ok(()),
    }
}

/// Appends [`mirror_markdown`] to `path`, creating it if needed.
fn append_markdown(
    path: &std::path::Path,
    report: &crate::mirror::MirrorReport,
) -> crate::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    Ok(f.write_all(mirror_markdown(report).as_bytes())?)
}

#[cfg(test)]
mod report_tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::mirror::{ImageResult, MirrorReport, Outcome, TargetResult, Totals};

    #[test]
    fn colour_on_a_terminal_unless_no_color_and_anywhere_if_forced() {
        // (terminal, NO_COLOR, CLICOLOR_FORCE, colour?)
        let table: &[(bool, Option<&str>, Option<&str>, bool)] = &[
            (true, None, None, true),
            (false, None, None, false),
            (true, Some("1"), None, false),
            (true, Some(""), None, true),
            (false, None, Some("1"), true),
            (false, None, Some(""), true),
            (false, None, Some("0"), false),
            (true, None, Some("0"), true),
            (false, Some("1"), Some("1"), false),
            (true, Some("1"), Some("1"), false),
            (false, Some(""), Some("1"), true),
        ];
        for &(tty, no_color, force, want) in table {
            let os = |v: Option<&'static str>| v.map(std::ffi::OsStr::new);
            assert_eq!(
                use_colour(tty, os(no_color), os(force)),
                want,
                "terminal {tty}, NO_COLOR {no_color:?}, CLICOLOR_FORCE {force:?}"
            );
        }
    }

    fn mirror_report(failed: &[bool]) -> MirrorReport {
        let image = |i: usize, failed: bool| ImageResult {
            policy: "nightly".into(),
            source: "ghcr.io/acme/api".into(),
            tag: Some(format!("v{i}")),
            digest: None,
            targets: vec![TargetResult {
                target: "127.0.0.1:5000/m/api".into(),
                step: None,
                outcome: if failed {
                    Outcome::Failed
                } else {
                    Outcome::Copied
                },
                bytes: 0,
                error: failed.then(|| {
                    crate::error::TargetError::new(
                        crate::error::Stage::Blobs,
                        std::io::Error::other("boom"),
                    )
                }),
                attached: None,
            }],
            error: None,
        };
        MirrorReport {
            policies: vec!["nightly".into()],
            dry_run: false,
            shard: None,
            repositories: 1,
            totals: Totals::default(),
            per_target: BTreeMap::new(),
            images: failed
                .iter()
                .enumerate()
                .map(|(i, f)| image(i, *f))
                .collect(),
        }
    }

    #[test]
    fn a_mirror_run_fails_with_its_first_failure() {
        assert!(mirror_report(&[false, false]).result().is_ok());
        let e = mirror_report(&[false, true, true]).result().unwrap_err();
        assert_eq!(e.exit_code(), crate::error::EXIT_FAILED);
        assert_eq!(
            ErrorChain(&e).to_string(),
            "2 of 3 images failed; first: ghcr.io/acme/api:v1 -> 127.0.0.1:5000/m/api: boom"
        );
    }

    #[test]
    fn the_step_summary_is_appended() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("summary.md");
        std::fs::write(&path, "before\n").unwrap();
        let r = mirror_report(&[true]);
        append_markdown(&path, &r).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("before\n{}", mirror_markdown(&r)));
    }

    #[test]
    fn a_dry_run_mirror_says_planned_not_copied() {
        let mut r = mirror_report(&[false]);
        r.per_target
            .insert("127.0.0.1:5000/m".into(), Totals::default());
        let text = |r: &MirrorReport| {
            let mut out = Vec::new();
            write_mirror(&mut out, r, Format::Text).unwrap();
            String::from_utf8(out).unwrap()
        };
        assert!(
            text(&r).contains("127.0.0.1:5000/m: 0 copied,"),
            "{}",
            text(&r)
        );
        r.dry_run = true;
        assert!(
            text(&r).contains("127.0.0.1:5000/m: 0 planned,"),
            "{}",
            text(&r)
        );
    }

    #[test]
    fn drift_fails_a_status() {
        let mut r = crate::promote::StatusReport {
            environment: "prod".into(),
            tag: "prod".into(),
            state: crate::promote::State::InSync,
            agree: true,
            drift: Vec::new(),
            targets: Vec::new(),
            history_errors: Vec::new(),
        };
        assert!(r.result().is_ok());
        r.drift = vec!["a differs".into(), "b is missing".into()];
        let e = r.result().unwrap_err();
        assert_eq!(e.exit_code(), crate::error::EXIT_FAILED);
        assert_eq!(e.to_string(), "prod has drifted: a differs; b is missing");
    }

    #[test]
    fn counts_agree_with_their_nouns() {
        assert_eq!(count(1, "request", "requests"), "1 request");
        assert_eq!(count(0, "request", "requests"), "0 requests");
        assert_eq!(count(2, "repository", "repositories"), "2 repositories");
        let mut out = Vec::new();
        write_history(&mut out, &[], Format::Text).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "no promotions or rollbacks recorded yet\n"
        );
    }

    #[test]
    fn policy_values_print_as_yaml_spells_them() {
        assert_eq!(
            spelled(&crate::policy::mirror::Existing::Overwrite),
            "overwrite"
        );
        assert_eq!(spelled(&crate::policy::mirror::Existing::Backup), "backup");
    }
}
