//! copy::attached: copies what is attached to an image (signatures, attestations, SBOMs) to every destination with it, then publishes it there: cosign tags as they were, referrers through the destination's API or its fallback index.
//!
//! Content before tags: every attached manifest (and its blobs) goes through the copy engine by
//! digest first; only then are cosign tags and fallback indexes written. [`Engine::copy`], the
//! image and then what is attached to it, is defined here too, on top of `engine`.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

pub use super::engine::DestAttached;
use super::engine::{CopyReport, DestReport, Engine, ImmutableTag, Resolved};
use super::progress::{Observer, Quiet, Remap};
use super::tag::{write_tag, TagError};
use crate::digest::Digest;
use crate::error::{Error, Result, Stage, TargetError};
use crate::manifest::{Manifest, ManifestError, OCI_INDEX};
use crate::outcome::Outcome;
use crate::reference::{ImageRef, Tag};
use crate::referrers::{self, Attached, Filter, Found};
use crate::registry::{ManifestRef, RegistryError, Repo};

/// Everything attached to the image, as found at the source, and what happened per destination.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AttachedReport {
    /// Artifacts found at the source.
    pub found: usize,
    /// Per destination, in the order given.
    pub destinations: Vec<DestAttached>,
}

/// The copy of an image with what is attached to it: here rather than in `engine`, which
/// this module builds on, so that `engine` does not import it back.
impl Engine {
    /// Copies `source` to every destination; per-destination failures are in the report, not the error.
    pub async fn copy(
        &self,
        source: &ImageRef,
        dests: &[ImageRef],
        progress: &dyn Observer,
    ) -> Result<CopyReport> {
        let resolved = self.resolve(source).await?;
        self.copy_image(&resolved, dests, progress, &self.options().referrers)
            .await
    }

    /// The one sequence every command copies an image with (`copy`, `promote`, a rollback's
    /// re-copy, `mirror`): its content to every destination, then what is attached to it (per
    /// `filter`) to those that did not fail. Per-destination failures are in the report.
    pub async fn copy_image(
        &self,
        resolved: &Resolved,
        dests: &[ImageRef],
        progress: &dyn Observer,
        filter: &Filter,
    ) -> Result<CopyReport> {
        let mut report = self.copy_resolved(resolved, dests, progress).await?;
        self.attach(resolved, dests, &mut report, filter).await?;
        Ok(report)
    }

    /// [`Engine::copy_image`], where destinations marked in `known` already hold the image: a
    /// tag there names its digest, and ferry (like any conforming registry, which refuses a
    /// manifest whose content is missing) tags only complete content. Their content is not
    /// checked again, so a no-op rerun asks them nothing for it; attachments are still
    /// brought up to date everywhere.
    pub async fn copy_image_known(
        &self,
        resolved: &Resolved,
        dests: &[ImageRef],
        known: &[bool],
        progress: &dyn Observer,
        filter: &Filter,
    ) -> Result<CopyReport> {
        let unknown: Vec<usize> = (0..dests.len()).filter(|&i| !known[i]).collect();
        let mut report = if unknown.is_empty() {
            CopyReport {
                source: resolved.reference.to_string(),
                digest: resolved.root.digest.clone(),
                filtered_from: resolved.filtered_from.clone(),
                dry_run: self.options().dry_run,
                source_bytes_read: 0,
                destinations: Vec::new(),
            }
        } else {
            let some: Vec<ImageRef> = unknown.iter().map(|&i| dests[i].clone()).collect();
            let sub = Remap::new(progress, unknown.clone());
            self.copy_resolved(resolved, &some, &sub).await?
        };
        let mut copied = std::mem::take(&mut report.destinations).into_iter();
        for (i, d) in dests.iter().enumerate() {
            if known[i] {
                progress.finish(i, Outcome::UpToDate);
                report.destinations.push(DestReport {
                    reference: d.to_string(),
                    digest: resolved.root.digest.clone(),
                    status: Outcome::UpToDate,
                    tag_from: None,
                    untagged: d.tag().is_none(),
                    blobs_uploaded: 0,
                    blobs_mounted: 0,
                    blobs_skipped: 0,
                    bytes_uploaded: 0,
                    requests: 0,
                    error: None,
                    plan: None,
                    attached: None,
                });
            } else {
                report
                    .destinations
                    .push(copied.next().expect("one report per copied destination"));
            }
        }
        self.attach(resolved, dests, &mut report, filter).await?;
        Ok(report)
    }

    /// Copies what is attached to the image (per `filter`) to every destination that did not
    /// fail, and folds the outcome into `report`: a destination whose attachments failed fails.
    pub async fn attach(
        &self,
        resolved: &Resolved,
        dests: &[ImageRef],
        report: &mut CopyReport,
        filter: &Filter,
    ) -> Result<()> {
        let skip: Vec<bool> = report
            .destinations
            .iter()
            .map(|d| d.status == Outcome::Failed)
            .collect();
        let attached = copy_attached(self, resolved, dests, &skip, filter).await?;
        if attached.found == 0 {
            return Ok(());
        }
        for (d, a) in report.destinations.iter_mut().zip(attached.destinations) {
            if d.status == Outcome::Failed {
                continue;
            }
            if let Some(e) = &a.error {
                d.status = Outcome::Failed;
                d.error = Some(e.clone());
            } else if d.status == Outcome::UpToDate && (a.copied + a.tags + a.fallback_indexes) > 0
            {
                d.status = Outcome::Copied;
            }
            d.attached = Some(a);
        }
        Ok(())
    }
}

/// Copies everything attached to `resolved` (per `filter`) to `dests`, skipping destinations
/// marked in `skip` (they already failed). The source is read once per artifact.
pub async fn copy_attached(
    engine: &Engine,
    resolved: &Resolved,
    dests: &[ImageRef],
    skip: &[bool],
    filter: &Filter,
) -> Result<AttachedReport> {
    let mut report = AttachedReport {
        found: 0,
        destinations: vec![DestAttached::default(); dests.len()],
    };
    if !filter.enabled {
        return Ok(report);
    }
    let source_err = |e: RegistryError| Error::Source {
        reference: resolved.reference.to_string(),
        source: Box::new(e),
    };
    let subjects = referrers::subjects(&resolved.root, resolved.filtered_from.is_some());
    let tags = engine.attachment_tags(&*resolved.src).await;
    let found = referrers::discover_in(&*resolved.src, &subjects, filter, tags.as_deref())
        .await
        .map_err(source_err)?;
    report.found = found.len();
    if found.is_empty() {
        return Ok(report);
    }
    tracing::info!(source = %resolved.reference, artifacts = found.len(), "attached artifacts found");
    let live: Vec<usize> = (0..dests.len())
        .filter(|&i| !skip.get(i).copied().unwrap_or(false))
        .collect();

    // 1. Content, by digest, through the engine (blobs read once for every destination).
    for a in &found {
        let targets: Vec<ImageRef> = live
            .iter()
            .filter(|&&i| report.destinations[i].error.is_none())
            .map(|&i| dests[i].pinned(&a.manifest.digest))
            .collect();
        let index: Vec<usize> = live
            .iter()
            .copied()
            .filter(|&i| report.destinations[i].error.is_none())
            .collect();
        if targets.is_empty() {
            break;
        }
        let artifact = Resolved {
            reference: resolved.reference.pinned(&a.manifest.digest),
            src: resolved.src.clone(),
            root: a.manifest.clone(),
            filtered_from: None,
        };
        let copy = engine.copy_resolved(&artifact, &targets, &Quiet).await?;
        for (i, d) in index.into_iter().zip(&copy.destinations) {
            let r = &mut report.destinations[i];
            match (d.status, &d.error) {
                (Outcome::Failed, Some(e)) => r.fail(TargetError::new(
                    Stage::AttachedContent {
                        kind: a.artifact_type.as_deref().unwrap_or("artifact").to_owned(),
                        digest: a.manifest.digest.clone(),
                    },
                    e.clone(),
                )),
                (status, _) => match status {
                    Outcome::UpToDate => r.present += 1,
                    Outcome::Copied | Outcome::Planned => r.copied += 1,
                    // The copy engine neither skips nor stops early, and fails with an error.
                    Outcome::Failed | Outcome::Skipped | Outcome::NotAttempted => {}
                },
            }
        }
    }
    if engine.options().dry_run {
        return Ok(report);
    }

    // 2. Tags: cosign's as they were; a fallback index where the destination has no API.
    let by_subject = group_referrers(&found);
    let publish = live
        .iter()
        .filter(|&&i| report.destinations[i].error.is_none())
        .map(|&i| {
            let (dest, found, by_subject) = (&dests[i], &found, &by_subject);
            async move { (i, publish(engine, dest, found, by_subject).await) }
        });
    for (i, r) in futures::future::join_all(publish).await {
        let d = &mut report.destinations[i];
        match r {
            Ok((tags, indexes)) => {
                d.tags = tags;
                d.fallback_indexes = indexes;
            }
            Err(e) => d.fail(TargetError::new(Stage::AttachedTags, e)),
        }
    }
    Ok(report)
}

/// Referrer entries per subject, in the order found.
fn group_referrers(found: &[Attached]) -> BTreeMap<Digest, Vec<serde_json::Value>> {
    let mut out: BTreeMap<Digest, Vec<serde_json::Value>> = BTreeMap::new();
    for a in found.iter().filter(|a| a.found == Found::Referrer) {
        out.entry(a.subject.clone())
            .or_default()
            .push(a.entry.clone());
    }
    out
}

/// Why cosign tags or a fallback index could not be written at a destination.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The destination could not be opened, or its settings read.
    #[error(transparent)]
    Open(RegistryError),
    /// A cosign tag cannot move there.
    #[error(transparent)]
    Immutable(ImmutableTag),
    /// Where a cosign tag points could not be read.
    #[error("{repository}: tag {tag}")]
    CosignTag {
        /// The destination repository.
        repository: String,
        /// The cosign tag.
        tag: Tag,
        /// The cause.
        #[source]
        source: RegistryError,
    },
    /// Whether the destination lists referrers could not be read.
    #[error("{repository}: referrers of {subject}")]
    Referrers {
        /// The destination repository.
        repository: String,
        /// The subject.
        subject: Digest,
        /// The cause.
        #[source]
        source: RegistryError,
    },
    /// The fallback index there could not be read, or the merged one is not a manifest.
    #[error("{repository}: fallback index {tag}")]
    Fallback {
        /// The destination repository.
        repository: String,
        /// The fallback tag.
        tag: Tag,
        /// The cause.
        #[source]
        source: FallbackCause,
    },
    /// A cosign tag or fallback index could not be written and read back.
    #[error("{repository}")]
    Tag {
        /// The destination repository.
        repository: String,
        /// The cause.
        #[source]
        source: TagError,
    },
}

/// Why a fallback index could not be read or built.
#[derive(Debug, thiserror::Error)]
pub enum FallbackCause {
    /// Reading the existing one failed.
    #[error(transparent)]
    Read(RegistryError),
    /// The merged index did not parse.
    #[error(transparent)]
    Parse(ManifestError),
}

/// Writes cosign tags and fallback indexes at one destination; returns how many of each.
async fn publish(
    engine: &Engine,
    dest: &ImageRef,
    found: &[Attached],
    by_subject: &BTreeMap<Digest, Vec<serde_json::Value>>,
) -> Result<(usize, usize), PublishError> {
    let where_ = dest.repository_name();
    let repo: Arc<dyn Repo> = engine.open(dest, true).map_err(PublishError::Open)?;
    let settings = engine
        .prepare_repository(dest, true)
        .await
        .map_err(PublishError::Open)?;
    let tag_err = |source| PublishError::Tag {
        repository: where_.clone(),
        source,
    };
    let fallback_err = |tag: &Tag, source| PublishError::Fallback {
        repository: where_.clone(),
        tag: tag.clone(),
        source,
    };
    let mut tags = 0;
    for a in found {
        let Found::CosignTag(tag) = &a.found else {
            continue;
        };
        let now = repo
            .manifest_head(&ManifestRef::Tag(tag.clone()))
            .await
            .map_err(|source| PublishError::CosignTag {
                repository: where_.clone(),
                tag: tag.clone(),
                source,
            })?;
        match now {
            Some(i) if i.digest == a.manifest.digest => continue,
            Some(i)
                if settings
                    .as_ref()
                    .is_some_and(|s| s.is_immutable(tag.as_str())) =>
            {
                let s = settings.as_ref().expect("checked");
                return Err(PublishError::Immutable(ImmutableTag::new(
                    dest,
                    tag.as_str(),
                    &i.digest,
                    s,
                )));
            }
            _ => {}
        }
        write_tag(&*repo, tag, &a.manifest).await.map_err(tag_err)?;
        tags += 1;
    }
    let mut indexes = 0;
    for (subject, entries) in by_subject {
        // A registry with the referrers API lists them already (it answered their PUT with
        // OCI-Subject, or indexes them anyway): nothing more to do.
        let api = repo
            .referrers(subject)
            .await
            .map_err(|source| PublishError::Referrers {
                repository: where_.clone(),
                subject: subject.clone(),
                source,
            })?;
        if api.is_some() {
            continue;
        }
        let tag = referrers::fallback_tag(subject);
        let existing = match repo
            .manifest_get(&ManifestRef::Tag(tag.clone()), None)
            .await
        {
            Ok(m) => Some(m),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(fallback_err(&tag, FallbackCause::Read(e))),
        };
        let Some(bytes) = referrers::merge_fallback(existing.as_ref(), entries) else {
            continue;
        };
        let index = Manifest::parse(bytes, Some(OCI_INDEX))
            .map_err(|e| fallback_err(&tag, FallbackCause::Parse(e)))?;
        write_tag(&*repo, &tag, &index).await.map_err(tag_err)?;
        indexes += 1;
    }
    Ok((tags, indexes))
}
