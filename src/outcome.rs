//! outcome: what happened at one target — the one result vocabulary copy, promote and mirror report in.
//!
//! A target that has not been worked on yet has no [`Outcome`]: flows keep "not done yet" as the
//! absence of one, never as a placeholder value.

use serde::Serialize;

/// What happened at one target (a destination of a copy, a target of a promotion or a mirror).
///
/// The JSON words are the ones reports have always used (`copied`, `up-to-date`, …).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Content (and tag) were written.
    Copied,
    /// Nothing needed doing.
    UpToDate,
    /// The tag points elsewhere and the policy leaves it (mirror's `existing: skip`).
    Skipped,
    /// Dry run: this is what would happen.
    Planned,
    /// Something failed; the error says what.
    Failed,
    /// The run stopped (`--fail-fast`) before this target was attempted.
    NotAttempted,
}
