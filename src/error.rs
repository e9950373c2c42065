//! error: the crate's top-level error, with the context a one-line message needs, its exit codes, the per-target failure reports carry ([`TargetError`]), and how any error prints on one line with its causes.

use std::sync::Arc;

use crate::digest::Digest;
use crate::history::HistoryError;
use crate::reference::{InvalidReference, Tag};
use crate::registry::RegistryError;

/// Exit code: everything succeeded.
pub const EXIT_OK: u8 = 0;
/// Exit code: some work failed (a destination, a registry, bad content).
pub const EXIT_FAILED: u8 = 1;
/// Exit code: bad usage or configuration; nothing was attempted.
pub const EXIT_USAGE: u8 = 2;
/// Exit code: a policy gate refused.
pub const EXIT_GATE: u8 = 3;

fn plural_targets(n: usize) -> String {
    if n == 1 {
        "1 target".to_owned()
    } else {
        format!("{n} targets")
    }
}

/// What can stop a ferry command as a whole.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A reference could not be parsed.
    #[error(transparent)]
    Reference(#[from] InvalidReference),
    /// A policy file is wrong.
    #[error(transparent)]
    Policy(#[from] crate::policy::PolicyError),
    /// Flags or configuration were wrong.
    #[error("{0}")]
    Usage(String),
    /// The source image could not be read.
    #[error("failed to read {reference}: {source}")]
    Source {
        /// The source reference.
        reference: String,
        /// The cause.
        #[source]
        source: Box<RegistryError>,
    },
    /// Some destinations failed (their errors are in the report).
    #[error("{failed} of {total} destinations failed")]
    Partial {
        /// How many failed.
        failed: usize,
        /// How many there were.
        total: usize,
    },
    /// A flag's value does not parse; nothing was attempted.
    #[error("{flag} {value}")]
    Flag {
        /// The flag (`--to`).
        flag: &'static str,
        /// Its value as given.
        value: String,
        /// Why it does not parse.
        #[source]
        source: crate::digest::InvalidDigest,
    },
    /// A Sigstore bundle did not verify (`ferry verify-bundle`).
    #[error("bundle {bundle} does not verify: {reason}")]
    Bundle {
        /// The bundle's file.
        bundle: String,
        /// Why, in one line.
        reason: String,
    },
    /// A policy gate refused; nothing was written.
    #[error("refused: {0}")]
    Gate(String),
    /// Some targets of a promotion or rollback failed (their errors are in the report); the
    /// first one's is the cause.
    #[error("{failed} of {total} targets failed; {first_target}")]
    Targets {
        /// How many failed.
        failed: usize,
        /// How many there were.
        total: usize,
        /// The first target that failed.
        first_target: String,
        /// Why it failed.
        #[source]
        source: TargetError,
    },
    /// `ferry status`: the environment's targets disagree, or disagree with its history.
    #[error("{environment} has drifted: {}", drift.join("; "))]
    Drifted {
        /// The environment.
        environment: String,
        /// What is out of line, one entry each.
        drift: Vec<String>,
    },
    /// `ferry status`: some targets could not be read, so whether they agree is unknown.
    #[error("{environment} is unknown at {}: {}", plural_targets(unreadable.len()), unreadable.join("; "))]
    StatusUnknown {
        /// The environment.
        environment: String,
        /// Each unreadable target and why.
        unreadable: Vec<String>,
    },
    /// Some images of a mirror run failed (their errors are in the report); the first
    /// failure is the cause.
    #[error("{failed} of {total} images failed; first: {first}")]
    Images {
        /// How many failures there were (an image failing at two targets counts twice).
        failed: usize,
        /// How many images there were.
        total: usize,
        /// The first failure: `SOURCE:TAG -> TARGET`, or `SOURCE:TAG` when the source failed.
        first: String,
        /// Why it failed.
        #[source]
        source: TargetError,
    },
    /// `ferry prune`: some repositories could not be pruned, or some deletes failed (all are
    /// in the report).
    #[error("{failed} prune failures; first: {first}")]
    Prune {
        /// Failed repositories plus failed deletes.
        failed: usize,
        /// The first: `REPOSITORY: WHY` or `REPOSITORY WHAT: WHY`.
        first: String,
    },
    /// A target could not be opened or read before anything was written.
    #[error("{target}")]
    Target {
        /// The target repository.
        target: String,
        /// The cause.
        #[source]
        source: Box<RegistryError>,
    },
    /// A target's tags could not be planned.
    #[error("{target}: {reason}")]
    TargetPlan {
        /// The target repository.
        target: String,
        /// Why.
        reason: String,
    },
    /// The upstream environment's gate (`promote_from`) could not be read.
    #[error("cannot check the {environment} gate")]
    GateUnreadable {
        /// The upstream environment.
        environment: String,
        /// The cause.
        #[source]
        source: Box<Error>,
    },
    /// The source tag moved between pinning and tagging; no tag was moved.
    #[error(
        "source tag {tag} drifted during the promotion: pinned {pinned}, now {}; no tag was moved",
        now.as_ref().map_or("missing".to_owned(), ToString::to_string)
    )]
    SourceDrifted {
        /// The source tag.
        tag: Tag,
        /// The digest pinned.
        pinned: Digest,
        /// What it names now (`None`: gone).
        now: Option<Digest>,
    },
    /// Tags the policy moves that a target never lets move; nothing was written.
    #[error("{}; nothing was written", refusals.join("; "))]
    Immutable {
        /// One message per refused tag.
        refusals: Vec<String>,
    },
    /// An environment's history could be read at none of its targets.
    #[error("cannot read {environment}'s history at any target")]
    History {
        /// The environment.
        environment: String,
        /// The first target's error.
        #[source]
        source: Box<HistoryError>,
    },
    /// A registry's catalog could not be read (mirror discovery).
    #[error("{registry}: cannot read the catalog")]
    Catalog {
        /// The registry.
        registry: String,
        /// The cause.
        #[source]
        source: Box<RegistryError>,
    },
    /// `ferry demo` checks itself: a gate it shows refusing did not refuse.
    #[error("the demo's {check} did not refuse")]
    DemoCheck {
        /// Which gate (`gate`, `signature gate`).
        check: &'static str,
    },
    /// A registry refused a login (`ferry login`); nothing was stored.
    #[error("cannot log in to {registry}")]
    Login {
        /// The registry.
        registry: String,
        /// The cause.
        #[source]
        source: Box<RegistryError>,
    },
    /// A login could not be stored in, or removed from, Docker's config or credential helper.
    #[error(transparent)]
    Store(#[from] crate::auth::store::StoreError),
    /// Writing the report failed.
    #[error("failed to write output: {0}")]
    Output(#[from] std::io::Error),
}

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Reference(_) | Error::Policy(_) | Error::Usage(_) | Error::Flag { .. } => {
                EXIT_USAGE
            }
            Error::Gate(_) | Error::Bundle { .. } => EXIT_GATE,
            Error::Source { .. }
            | Error::Partial { .. }
            | Error::Targets { .. }
            | Error::Drifted { .. }
            | Error::StatusUnknown { .. }
            | Error::Images { .. }
            | Error::Prune { .. }
            | Error::Target { .. }
            | Error::TargetPlan { .. }
            | Error::GateUnreadable { .. }
            | Error::SourceDrifted { .. }
            | Error::Immutable { .. }
            | Error::History { .. }
            | Error::Catalog { .. }
            | Error::DemoCheck { .. }
            | Error::Login { .. }
            | Error::Store(_)
            | Error::Output(_) => EXIT_FAILED,
        }
    }
}

/// The real error behind a [`TargetError`], shared: reports are cloned, and one failure (a
/// source that served bad content) can fail several targets.
pub type Cause = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// Where the work at one target failed. Stages with words print them before the cause
/// (`content: …`); the others print the cause alone, which says enough.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Opening the target's store, or reading its settings (ECR).
    Open,
    /// Reading what the target holds, and whether its tag may move.
    Check,
    /// The source, for one image: it is gone, or could not be read.
    Source,
    /// Listing the source repository's tags: `cannot list tags`.
    ListTags,
    /// Blobs: HEAD, mount, upload.
    Blobs,
    /// Manifests, put by digest.
    Manifests,
    /// The tag, written and read back.
    Tag,
    /// A promotion's content, copied by the copy engine: `content`.
    Content,
    /// One attached artifact's content: `attached KIND DIGEST`.
    AttachedContent {
        /// Its artifact type (`artifact` when it has none).
        kind: String,
        /// Its manifest's digest.
        digest: Digest,
    },
    /// Attached artifacts' cosign tags and fallback indexes at the target.
    AttachedTags,
    /// Attached artifacts as a whole (the source's could not be read): `attached artifacts`.
    Attached,
    /// Keeping the digest a tag names under a backup tag: `cannot keep FROM as BACKUP`.
    Backup {
        /// The digest the tag named.
        from: Digest,
        /// The backup tag.
        backup: Tag,
    },
    /// A rollback's re-copy of an image the target lacks part of:
    /// `DIGEST is incomplete here (MISSING) and the source cannot supply it`.
    Recopy {
        /// The image.
        digest: Digest,
        /// The first thing missing (`blob sha256:…`).
        missing: String,
    },
    /// The environment's history ledger at the target.
    History,
}

impl Stage {
    /// What the stage says before its cause; `None` for stages whose cause says enough.
    pub fn words(&self) -> Option<String> {
        match self {
            Stage::ListTags => Some("cannot list tags".to_owned()),
            Stage::Content => Some("content".to_owned()),
            Stage::AttachedContent { kind, digest } => Some(format!("attached {kind} {digest}")),
            Stage::Attached => Some("attached artifacts".to_owned()),
            Stage::Backup { from, backup } => Some(format!("cannot keep {from} as {backup}")),
            Stage::Recopy { digest, missing } => Some(format!(
                "{digest} is incomplete here ({missing}) and the source cannot supply it"
            )),
            Stage::Open
            | Stage::Check
            | Stage::Source
            | Stage::Blobs
            | Stage::Manifests
            | Stage::Tag
            | Stage::AttachedTags
            | Stage::History => None,
        }
    }
}

/// Why the work at one target (a destination of a copy, a target of a promotion or a mirror)
/// failed: where, and the real error. Prints as the stage's words, or as the cause when the
/// stage has none (then [`ErrorChain`] does not repeat it); reports print it with
/// [`ErrorChain`], and JSON holds that line.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{}", describe(.stage, .source))]
pub struct TargetError {
    /// Where it failed.
    pub stage: Stage,
    /// The cause.
    #[source]
    pub source: Cause,
}

fn describe(stage: &Stage, source: &Cause) -> String {
    stage.words().unwrap_or_else(|| source.to_string())
}

impl TargetError {
    /// A failure at `stage` because of `source`.
    pub fn new(stage: Stage, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        TargetError {
            stage,
            source: Arc::new(source),
        }
    }

    /// A failure at `stage` because of a cause shared with other targets.
    pub fn shared(stage: Stage, source: Cause) -> Self {
        TargetError { stage, source }
    }
}

impl serde::Serialize for TargetError {
    /// The error's line with its causes, as the text report prints it.
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(&ErrorChain(self))
    }
}

/// A result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error and its causes on one line: the error, then `: cause` for each source (as nextest's
/// `DisplayErrorChain` does). A cause the message above it already ends with is not repeated:
/// some errors (a registry's I/O error, a history store error) print their cause inline.
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut last = self.0.to_string();
        f.write_str(&last)?;
        let mut cause = self.0.source();
        while let Some(c) = cause {
            let text = c.to_string();
            if !last.ends_with(&text) {
                write!(f, ": {text}")?;
            }
            last = text;
            cause = c.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shaped like `copy::tag::TagError::Put` (which `error` may not import).
    #[derive(Debug, thiserror::Error)]
    #[error("failed to tag v1")]
    struct Put {
        #[source]
        source: RegistryError,
    }

    fn tag_failure() -> TargetError {
        let put = Put {
            source: RegistryError::Connect {
                host: "r.example".into(),
                detail: "connection refused".into(),
            },
        };
        TargetError::new(Stage::Tag, put)
    }

    #[test]
    fn a_target_error_prints_its_stage_then_each_cause_once() {
        let tag = tag_failure();
        assert_eq!(
            ErrorChain(&tag).to_string(),
            "failed to tag v1: cannot reach r.example: connection refused"
        );
        let content = TargetError::new(Stage::Content, tag.clone());
        assert_eq!(
            ErrorChain(&content).to_string(),
            "content: failed to tag v1: cannot reach r.example: connection refused"
        );
        assert_eq!(
            serde_json::to_value(&content).unwrap(),
            serde_json::json!(
                "content: failed to tag v1: cannot reach r.example: connection refused"
            )
        );
        // The chain is walkable down to the registry's error.
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&content);
        let mut found = false;
        while let Some(c) = cause {
            found |= c.downcast_ref::<RegistryError>().is_some();
            cause = c.source();
        }
        assert!(found);
    }

    #[test]
    fn a_failed_promotion_names_its_first_target_and_exits_1() {
        let e = Error::Targets {
            failed: 1,
            total: 2,
            first_target: "r.example/acme/api".into(),
            source: tag_failure(),
        };
        assert_eq!(e.exit_code(), EXIT_FAILED);
        assert_eq!(
            ErrorChain(&e).to_string(),
            "1 of 2 targets failed; r.example/acme/api: failed to tag v1: cannot reach r.example: connection refused"
        );
    }
}
