//! report::prune: how `ferry prune` prints — the plan (what goes, what stays and why), what was deleted, skipped and failed, as text, JSON or an Actions step summary.

use std::io::Write;

use super::{count, write_json, Format, Report};
use crate::prune::{PruneReport, RepoReport};

impl Report for PruneReport {
    fn write(&self, out: &mut dyn Write, format: Format) -> std::io::Result<()> {
        if format == Format::Json {
            return write_json(out, self);
        }
        for r in &self.repositories {
            write_repo(out, r, self.dry_run)?;
        }
        if self.repositories.is_empty() {
            writeln!(
                out,
                "prune: no repository falls to this shard{}",
                self.shard
                    .map(|s| format!(" ({}/{})", s.index, s.count))
                    .unwrap_or_default()
            )?;
        }
        Ok(())
    }

    /// A failure naming the first repository or delete that failed.
    fn result(&self) -> crate::Result<()> {
        let first = self.repositories.iter().find_map(|r| {
            r.error
                .as_ref()
                .map(|e| format!("{}: {e}", r.repository))
                .or_else(|| {
                    r.failed
                        .first()
                        .map(|f| format!("{} {}: {}", r.repository, f.what, f.why))
                })
        });
        match first {
            None => Ok(()),
            Some(first) => Err(crate::Error::Prune {
                failed: self.failures(),
                first,
            }),
        }
    }
}

fn write_repo(out: &mut dyn Write, r: &RepoReport, dry_run: bool) -> std::io::Result<()> {
    let tags_going = r.plan.tag_deletes().count();
    let manifests_going = r.plan.manifest_deletes().count();
    writeln!(
        out,
        "prune {}: {} ({}): {} listed; {} {} and {}, keeping {} and {}",
        r.policy,
        r.repository,
        r.deletes_by,
        count(r.tags_listed as u64, "tag", "tags"),
        if dry_run { "would delete" } else { "deleting" },
        count(tags_going as u64, "tag", "tags"),
        count(manifests_going as u64, "manifest", "manifests"),
        count((r.plan.tags.len() - tags_going) as u64, "tag", "tags"),
        count(
            (r.plan.manifests.len() - manifests_going) as u64,
            "manifest",
            "manifests"
        ),
    )?;
    if let Some(e) = &r.error {
        return writeln!(out, "  failed: {e}");
    }
    let verb = |delete: bool| match (delete, dry_run) {
        (true, true) => "would delete",
        (true, false) => "delete",
        (false, _) => "keep",
    };
    for t in &r.plan.tags {
        writeln!(out, "  {:<12} tag {}: {}", verb(t.delete), t.what, t.why)?;
    }
    for m in &r.plan.manifests {
        writeln!(
            out,
            "  {:<12} {}: {}",
            verb(m.delete),
            m.what.short(),
            m.why
        )?;
    }
    if !r.untagged_listed {
        writeln!(
            out,
            "  untagged manifests: not listed (this registry's API lists tags only); they are left to the registry's own cleanup"
        )?;
    }
    for s in &r.skipped {
        writeln!(out, "  skipped {}: {}", s.what, s.why)?;
    }
    for f in &r.failed {
        writeln!(out, "  failed {}: {}", f.what, f.why)?;
    }
    if !dry_run {
        writeln!(
            out,
            "  done: {} deleted, {} skipped, {} failed, {}",
            r.deleted.len(),
            r.skipped.len(),
            r.failed.len(),
            count(r.requests, "request", "requests")
        )?;
    }
    Ok(())
}

/// The run as a GitHub Actions step summary: one row per repository, then what failed.
pub fn prune_markdown(report: &PruneReport) -> String {
    let mut s = format!(
        "### ferry prune{}{}\n\n| repository | tags listed | tags deleted | manifests deleted | kept (tags / manifests) | skipped | failed |\n|---|---:|---:|---:|---:|---:|---:|\n",
        if report.dry_run { " (dry run)" } else { "" },
        report
            .shard
            .map(|s| format!(" (shard {}/{})", s.index, s.count))
            .unwrap_or_default()
    );
    for r in &report.repositories {
        let tags_going = r.plan.tag_deletes().count();
        let manifests_going = r.plan.manifest_deletes().count();
        s += &format!(
            "| `{}` | {} | {} | {} | {} / {} | {} | {} |\n",
            r.repository,
            r.tags_listed,
            tags_going,
            manifests_going,
            r.plan.tags.len() - tags_going,
            r.plan.manifests.len() - manifests_going,
            r.skipped.len(),
            r.failed.len() + usize::from(r.error.is_some()),
        );
    }
    let failures: Vec<String> = report
        .repositories
        .iter()
        .flat_map(|r| {
            r.error
                .iter()
                .map(move |e| format!("{}: {e}", r.repository))
                .chain(
                    r.failed
                        .iter()
                        .map(move |f| format!("{} {}: {}", r.repository, f.what, f.why)),
                )
        })
        .collect();
    if !failures.is_empty() {
        s += "\n**Failures**\n\n";
        for f in failures {
            s += &format!("- `{}`\n", f.replace('`', "'"));
        }
    }
    s + "\n"
}

/// Appends [`prune_markdown`] to the file `$GITHUB_STEP_SUMMARY` names, when it names one.
pub fn append_step_summary(report: &PruneReport) -> crate::Result<()> {
    match std::env::var("GITHUB_STEP_SUMMARY") {
        Ok(path) if !path.is_empty() => {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?;
            Ok(f.write_all(prune_markdown(report).as_bytes())?)
        }
        _ => Ok(()),
    }
}
