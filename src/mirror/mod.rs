//! mirror: carries out mirror policies — lists and selects source tags, HEAD-checks every target, copies only what changed through the copy engine (each blob read once, fanned out), and reports per image and target.
//!
//! A run where nothing changed costs the source's tag-list pages plus one HEAD per selected tag
//! at the source and at each target: no manifest GET, no blob request. An image whose source
//! lists a cosign tag or a fallback index for its digest is looked at again for new attachments.

pub mod plan;
pub mod progress;
pub mod select;

#[cfg(test)]
mod orchestration;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use futures::stream::{self, StreamExt};
use serde::Serialize;

use crate::copy::attached::{copy_attached, DestAttached};
use crate::copy::Engine;
use crate::digest::Digest;
use crate::error::{Error, Result, Stage, TargetError};
pub use crate::outcome::Outcome;
use crate::policy::mirror::MirrorPolicy;
use crate::reference::{ImageRef, Tag};
use crate::referrers;
use crate::registry::{ManifestRef, Repo};
pub use plan::{Shard, TagStep};
use progress::Observer;

/// Images (tags or digests) worked on at once.
pub const DEFAULT_PARALLEL: usize = 8;

/// Image checks in flight per image worked on (`parallel`): with the default, 64 images are
/// HEAD-checked at once (a source HEAD, then one HEAD per target). A run where nothing changed
/// is only these checks, so they go many at a time; each registry's own limits
/// (`max_concurrency`, `requests_per_second` in registries.yaml) still gate every request.
pub const CHECKS_PER_WORKER: usize = 8;

/// How long a run waits before writing its failed images once more (see [`run`]).
const RETRY_PAUSE: std::time::Duration = std::time::Duration::from_secs(1);

/// How a mirror run goes.
#[derive(Clone, Debug)]
pub struct MirrorOptions {
    /// Read and decide, write nothing.
    pub dry_run: bool,
    /// Only this shard's tags (a stable hash of `registry/repository:tag`).
    pub shard: Option<Shard>,
    /// Stop starting new images after the first failure.
    pub fail_fast: bool,
    /// Images at once.
    pub parallel: usize,
}

impl Default for MirrorOptions {
    fn default() -> Self {
        MirrorOptions {
            dry_run: false,
            shard: None,
            fail_fast: false,
            parallel: DEFAULT_PARALLEL,
        }
    }
}

/// One image at one target.
#[derive(Clone, Debug, Serialize)]
pub struct TargetResult {
    /// The target repository.
    pub target: String,
    /// What was decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<TagStep>,
    /// What happened.
    pub outcome: Outcome,
    /// Bytes uploaded there.
    pub bytes: u64,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<TargetError>,
    /// Signatures, attestations and SBOMs attached to the image, copied with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attached: Option<DestAttached>,
}

/// One image (a tag, or an explicit digest) of one repository.
#[derive(Clone, Debug, Serialize)]
pub struct ImageResult {
    /// The mirror policy.
    pub policy: String,
    /// The source repository (`ghcr.io/acme/api`).
    pub source: String,
    /// The tag, for tagged images.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// The source digest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
    /// Per target.
    pub targets: Vec<TargetResult>,
    /// A failure at the source (then every target failed or was not attempted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<TargetError>,
}

/// Counts over images.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Copied.
    pub copied: usize,
    /// Already there.
    pub up_to_date: usize,
    /// Left alone (`existing: skip`).
    pub skipped: usize,
    /// Would be copied (dry run).
    pub planned: usize,
    /// Failed.
    pub failed: usize,
    /// Not attempted.
    pub not_attempted: usize,
    /// Bytes uploaded.
    pub bytes: u64,
}

impl Totals {
    fn add(&mut self, r: &TargetResult) {
        match r.outcome {
            Outcome::Copied => self.copied += 1,
            Outcome::UpToDate => self.up_to_date += 1,
            Outcome::Skipped => self.skipped += 1,
            Outcome::Planned => self.planned += 1,
            Outcome::Failed => self.failed += 1,
            Outcome::NotAttempted => self.not_attempted += 1,
        }
        self.bytes += r.bytes;
    }
}

/// What a mirror run did.
#[derive(Clone, Debug, Serialize)]
pub struct MirrorReport {
    /// Policies run.
    pub policies: Vec<String>,
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// The shard, if the run was sharded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
    /// Source repositories listed (every shard lists every repository, and keeps its tags).
    pub repositories: usize,
    /// Over everything.
    pub totals: Totals,
    /// Per target registry.
    pub per_target: BTreeMap<String, Totals>,
    /// Per image.
    pub images: Vec<ImageResult>,
}

impl MirrorReport {
    /// Failures in order, each with what failed (`SOURCE:TAG -> TARGET`, or `SOURCE:TAG` when
    /// the source failed for the image) and why.
    pub fn failures(&self) -> Vec<(String, &TargetError)> {
        let mut out = Vec::new();
        for i in &self.images {
            let what = match (&i.tag, &i.digest) {
                (Some(t), _) => format!("{}:{t}", i.source),
                (None, Some(d)) => format!("{}@{d}", i.source),
                _ => i.source.clone(),
            };
            if let Some(e) = &i.error {
                out.push((what, e));
                continue;
            }
            // A failed target always says why.
            for t in i.targets.iter().filter(|t| t.outcome == Outcome::Failed) {
                if let Some(e) = &t.error {
                    out.push((format!("{what} -> {}", t.target), e));
                }
            }
        }
        out
    }
}

/// One unit of work: a tag (or a digest) of a repository, to every target.
#[derive(Clone)]
struct Item<'a> {
    policy: &'a MirrorPolicy,
    name: String,
    src: Arc<dyn Repo>,
    source: ImageRef,
    what: Which,
    /// The source repository's `sha256-…` tags (fallback indexes, cosign tags), from its tag
    /// list: an image already mirrored is looked at again only if something is attached.
    attachment_tags: Arc<HashSet<String>>,
    /// The repository's targets, opened once for all its images.
    targets: Arc<[Target]>,
}

/// One target repository of a source repository.
struct Target {
    reference: ImageRef,
    repo: std::result::Result<Arc<dyn Repo>, TargetError>,
}

#[derive(Clone)]
enum Which {
    Tag(Tag),
    Digest(Digest),
}

impl Item<'_> {
    fn reference(&self) -> ManifestRef {
        match &self.what {
            Which::Tag(t) => ManifestRef::Tag(t.clone()),
            Which::Digest(d) => ManifestRef::Digest(d.clone()),
        }
    }
}

/// An image after its checks: the source digest, and each target's result or its write to come.
struct Checked<'a> {
    item: Item<'a>,
    digest: Digest,
    /// Each target's result once known; `None` while its write is still to come.
    decided: Vec<Option<TargetResult>>,
    writes: Vec<(usize, Arc<dyn Repo>, TagStep)>,
}

/// A leaf cause: the image a tag or digest named is no longer at the source.
#[derive(Debug, thiserror::Error)]
#[error("{0} is gone from the source")]
pub struct Gone(pub ManifestRef);

/// The source failed for this image: every target fails with it.
fn failed_item(item: &Item, e: TargetError) -> ImageResult {
    let mut r = every_target(item, Outcome::Failed);
    r.error = Some(e);
    r
}

fn is_failed(r: &ImageResult) -> bool {
    r.error.is_some() || r.targets.iter().any(|t| t.outcome == Outcome::Failed)
}

/// Runs mirror policies.
///
/// Per policy: every repository's tags are listed and selected (all of them, sharded or not,
/// so `newest: N` and semver ranges see the whole set); a shard keeps the selected tags whose
/// stable hash falls to it ([`plan::shard_tags`]). Then every image is checked — a HEAD at the
/// source, one per target — [`CHECKS_PER_WORKER`] × `parallel` at a time: a run where nothing
/// changed is nothing more. Images to write are grouped by (repository, digest): the first of
/// each group copies the content, groups `parallel` at a time; then the rest of every group,
/// which only write tags, `parallel` at a time. Images whose write failed are checked and
/// written once more, after [`RETRY_PAUSE`] (not with `fail_fast`).
pub async fn run(
    policies: &[&MirrorPolicy],
    engine: &Engine,
    opts: &MirrorOptions,
    progress: &dyn Observer,
) -> Result<MirrorReport> {
    let stop = AtomicBool::new(false);
    let parallel = opts.parallel.max(1);
    let mut images = Vec::new();
    let mut repositories = 0;
    for policy in policies {
        let discovered;
        let names: &[String] = if policy.repositories.is_empty() {
            discovered = discover(policy, engine).await?;
            &discovered
        } else {
            &policy.repositories
        };
        repositories += names.len();
        let listed = stream::iter(names)
            .map(|name| list_items(policy, name, engine, opts))
            .buffer_unordered(parallel)
            .collect::<Vec<_>>()
            .await;
        let mut items = Vec::new();
        for l in listed {
            match l {
                Ok(mut i) => items.append(&mut i),
                Err(failed) => images.push(failed),
            }
        }
        progress.add_images(items.len());

        // 1. Check every image: what is already everywhere is done here.
        let mut refresh: BTreeMap<(String, Digest), (Item, ImageResult)> = BTreeMap::new();
        let mut groups: BTreeMap<(String, Digest), Vec<Checked>> = BTreeMap::new();
        let mut checked = stream::iter(items)
            .map(|item| check(item, opts.dry_run))
            .buffer_unordered(parallel * CHECKS_PER_WORKER);
        while let Some(c) = checked.next().await {
            let c = match c {
                Ok(c) => c,
                Err(r) => {
                    progress.image_done(&r);
                    images.push(r);
                    continue;
                }
            };
            if !c.writes.is_empty() {
                groups
                    .entry((c.item.name.clone(), c.digest.clone()))
                    .or_default()
                    .push(c);
                continue;
            }
            let r = finish(&c.item, c.decided, &c.digest);
            // Attachments belong to the digest: looked at once per repository and digest,
            // reported with the first of its tags.
            if !opts.dry_run && has_attachments(&c.item, &c.digest) {
                if let std::collections::btree_map::Entry::Vacant(e) =
                    refresh.entry((c.item.name.clone(), c.digest.clone()))
                {
                    e.insert((c.item, r));
                    continue;
                }
            }
            progress.image_done(&r);
            images.push(r);
        }
        drop(checked);

        // 2. Attachments added since the image was mirrored (a signature, say).
        let refreshed = stream::iter(refresh)
            .map(|((_, digest), (item, mut r))| async move {
                refresh_attached(&item, &digest, engine, &mut r).await;
                progress.image_done(&r);
                r
            })
            .buffer_unordered(parallel)
            .collect::<Vec<_>>()
            .await;
        images.extend(refreshed);

        // 3. Copies: the first image of each digest brings the content, groups in parallel;
        //    then the others of the group, which only write tags, in parallel too.
        let (firsts, rest): (Vec<_>, Vec<_>) = groups
            .into_values()
            .flat_map(|g| g.into_iter().enumerate())
            .partition(|(i, _)| *i == 0);
        let mut failed = Vec::new();
        for phase in [firsts, rest] {
            let done = stream::iter(phase)
                .map(|(_, c)| {
                    let stop = &stop;
                    async move {
                        let item = c.item.clone();
                        let r = if stop.load(Ordering::Relaxed) {
                            every_target(&c.item, Outcome::NotAttempted)
                        } else {
                            write(c, engine, progress).await
                        };
                        (item, r)
                    }
                })
                .buffer_unordered(parallel)
                .collect::<Vec<_>>()
                .await;
            for (item, r) in done {
                if is_failed(&r) && !opts.fail_fast {
                    failed.push((item, r));
                    continue;
                }
                if opts.fail_fast && is_failed(&r) {
                    stop.store(true, Ordering::Relaxed);
                }
                progress.image_done(&r);
                images.push(r);
            }
        }

        // 4. Failed writes, checked and written once more after a pause: shards split a
        //    repository's tags, so two workers may write the same content to one target
        //    repository at once, which distribution's filesystem driver can fail (500,
        //    `MANIFEST_BLOB_UNKNOWN`) for one of them; content is addressed by digest, so
        //    writing it again is safe, and by then the other worker is done.
        if !failed.is_empty() {
            tracing::info!(images = failed.len(), "writing failed images once more");
            tokio::time::sleep(RETRY_PAUSE).await;
        }
        let again = stream::iter(failed)
            .map(|(item, first): (Item, ImageResult)| async move {
                let mut r = match check(item, opts.dry_run).await {
                    Err(r) => r,
                    Ok(c) if c.writes.is_empty() => finish(&c.item, c.decided, &c.digest),
                    Ok(c) => write(c, engine, progress).await,
                };
                // What the first attempt wrote is a copy, though the second finds it there.
                for (t, f) in r.targets.iter_mut().zip(&first.targets) {
                    if t.outcome == Outcome::UpToDate && f.outcome == Outcome::Copied {
                        *t = f.clone();
                    }
                }
                r
            })
            .buffer_unordered(parallel)
            .collect::<Vec<_>>()
            .await;
        for r in again {
            progress.image_done(&r);
            images.push(r);
        }
    }
    images.sort_by(|a, b| {
        (&a.policy, &a.source, &a.tag, &a.digest).cmp(&(&b.policy, &b.source, &b.tag, &b.digest))
    });
    let mut totals = Totals::default();
    let mut per_target: BTreeMap<String, Totals> = BTreeMap::new();
    for i in &images {
        for t in &i.targets {
            totals.add(t);
            let registry = t.target.split('/').next().unwrap_or_default().to_owned();
            per_target.entry(registry).or_default().add(t);
        }
    }
    Ok(MirrorReport {
        policies: policies.iter().map(|p| p.name.clone()).collect(),
        dry_run: opts.dry_run,
        shard: opts.shard,
        repositories,
        totals,
        per_target,
        images,
    })
}

/// The policy's repositories from the source registry's catalog: those under its namespace.
async fn discover(policy: &MirrorPolicy, engine: &Engine) -> Result<Vec<String>> {
    let all = engine
        .catalog(&policy.source_registry)
        .await
        .map_err(|e| Error::Catalog {
            registry: policy.source_registry.to_string(),
            source: Box::new(e),
        })?
        .ok_or_else(|| {
            Error::Usage(format!(
                "{}: {} offers no catalog; list the repositories in the policy",
                policy.file.display(),
                policy.source_registry
            ))
        })?;
    let mut names: Vec<String> = all
        .iter()
        .filter_map(|r| r.strip_prefix(&policy.source_prefix))
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .collect();
    names.sort();
    // Two source repositories must not land in one target repository.
    for t in &policy.targets {
        let mut seen = std::collections::BTreeSet::new();
        for n in &names {
            if !seen.insert(t.repository_for(n)) {
                return Err(Error::Usage(format!(
                    "{}: two repositories map to {}/{}",
                    policy.file.display(),
                    t.registry,
                    t.repository_for(n)
                )));
            }
        }
    }
    tracing::info!(registry = %policy.source_registry, repositories = names.len(), "discovered from the catalog");
    Ok(names)
}

fn target_refs(policy: &MirrorPolicy, name: &str) -> Result<Vec<ImageRef>> {
    policy
        .targets
        .iter()
        .map(|t| {
            Ok(ImageRef::parse(&format!(
                "{}/{}",
                t.registry,
                t.repository_for(name)
            ))?)
        })
        .collect()
}

/// Lists a repository's tags, selects them, and makes one item per tag and explicit digest.
async fn list_items<'a>(
    policy: &'a MirrorPolicy,
    name: &String,
    engine: &Engine,
    opts: &MirrorOptions,
) -> std::result::Result<Vec<Item<'a>>, ImageResult> {
    let source_name = format!(
        "{}/{}",
        policy.source_registry,
        policy.source_repository(name)
    );
    let failed = |e: TargetError| ImageResult {
        policy: policy.name.clone(),
        source: source_name.clone(),
        tag: None,
        digest: None,
        targets: Vec::new(),
        error: Some(e),
    };
    let source =
        ImageRef::parse(&source_name).map_err(|e| failed(TargetError::new(Stage::Source, e)))?;
    let src = engine
        .open(&source, false)
        .map_err(|e| failed(TargetError::new(Stage::Source, e)))?;
    let tags = src
        .tags_list()
        .await
        .map_err(|e| failed(TargetError::new(Stage::ListTags, e)))?;
    // Finding each image's attachments then asks only for attachment tags that exist.
    engine.know_tags(&src.name(), &tags);
    // Signatures, attestations and fallback indexes travel with their images, not as images.
    let (attached, tags): (Vec<Tag>, Vec<Tag>) = tags
        .into_iter()
        .partition(|t| policy.referrers.enabled && referrers::is_attachment_tag(t.as_str()));
    let (_, others) = policy.tags.candidates(&tags);
    let created: BTreeMap<Tag, SystemTime> = if policy.tags.needs_creation_times(&others) {
        let times = stream::iter(others)
            .map(|t| {
                let src = src.clone();
                async move {
                    let c = created_time(&*src, &t).await;
                    (t, c)
                }
            })
            .buffer_unordered(8)
            .collect::<Vec<_>>()
            .await;
        times
            .into_iter()
            .filter_map(|(t, c)| Some((t, c?)))
            .collect()
    } else {
        BTreeMap::new()
    };
    let selected = policy.tags.select(&tags, &|t| created.get(t).copied());
    let all = selected.len();
    // Selected over the whole tag list, then split: the shards together hold the selection.
    let selected = plan::shard_tags(&source_name, selected, opts.shard);
    let targets: Arc<[Target]> = target_refs(policy, name)
        .map_err(|e| failed(TargetError::new(Stage::Open, e)))?
        .into_iter()
        .map(|reference| Target {
            repo: engine
                .open(&reference, !opts.dry_run)
                .map_err(|e| TargetError::new(Stage::Open, e)),
            reference,
        })
        .collect();
    let attachment_tags: Arc<HashSet<String>> =
        Arc::new(attached.iter().map(|t| t.as_str().to_owned()).collect());
    tracing::info!(source = %source_name, tags = tags.len(), selected = all, shard = selected.len(), "listed");
    let mut items: Vec<Item> = selected
        .into_iter()
        .map(|t| Item {
            policy,
            name: name.clone(),
            src: src.clone(),
            source: source.with(Some(t.clone()), None),
            what: Which::Tag(t),
            attachment_tags: attachment_tags.clone(),
            targets: targets.clone(),
        })
        .collect();
    items.extend(
        policy
            .digests
            .iter()
            .filter(|(r, _)| r == name)
            .filter(|(_, d)| {
                opts.shard
                    .is_none_or(|s| s.owns(&plan::digest_key(&source_name, d)))
            })
            .map(|(_, d)| Item {
                policy,
                name: name.clone(),
                src: src.clone(),
                source: source.with(None, Some(d.clone())),
                what: Which::Digest(d.clone()),
                attachment_tags: attachment_tags.clone(),
                targets: targets.clone(),
            }),
    );
    Ok(items)
}

/// When an image was built: its config's `created` (the first platform's, for an index).
async fn created_time(src: &dyn Repo, tag: &Tag) -> Option<SystemTime> {
    let m = src
        .manifest_get(&ManifestRef::Tag(tag.clone()), None)
        .await
        .ok()?;
    created_of(src, m).await
}

/// When the image `m` (read from `src`) was built: its config's `created`, or the first
/// platform's for an index.
pub(crate) async fn created_of(
    src: &dyn Repo,
    mut m: crate::manifest::Manifest,
) -> Option<SystemTime> {
    if m.is_index() {
        let child = m.children.first()?.digest.clone();
        m = src
            .manifest_get(&ManifestRef::Digest(child), None)
            .await
            .ok()?;
    }
    let config = m.blobs.first()?;
    let bytes = crate::registry::read_small_blob(src, config, 1 << 20)
        .await
        .ok()?;
    #[derive(serde::Deserialize)]
    struct Config {
        created: Option<String>,
    }
    let c: Config = serde_json::from_slice(&bytes).ok()?;
    humantime::parse_rfc3339_weak(c.created?.trim()).ok()
}

/// The image with the same outcome at every target.
fn every_target(item: &Item, outcome: Outcome) -> ImageResult {
    let targets = item
        .targets
        .iter()
        .map(|t| target_result(&t.reference, outcome, None))
        .collect();
    image_result(item, targets)
}

/// A target's result with nothing written yet.
fn target_result(target: &ImageRef, outcome: Outcome, step: Option<TagStep>) -> TargetResult {
    TargetResult {
        target: target.to_string(),
        step,
        outcome,
        bytes: 0,
        error: None,
        attached: None,
    }
}

fn image_result(item: &Item, targets: Vec<TargetResult>) -> ImageResult {
    ImageResult {
        policy: item.policy.name.clone(),
        source: item.source.repository_name(),
        tag: item.source.tag().map(ToString::to_string),
        digest: item.source.digest().cloned(),
        targets,
        error: None,
    }
}

/// Checks one image: its digest at the source (one HEAD), then where each target's tag points
/// (one HEAD per target, at once), and decides. Nothing is read beyond these HEADs.
async fn check(item: Item<'_>, dry_run: bool) -> std::result::Result<Checked<'_>, ImageResult> {
    let reference = item.reference();
    let source_digest = match item.src.manifest_head(&reference).await {
        Ok(Some(info)) => info.digest,
        Ok(None) => {
            let gone = TargetError::new(Stage::Source, Gone(reference));
            return Err(failed_item(&item, gone));
        }
        Err(e) => return Err(failed_item(&item, TargetError::new(Stage::Source, e))),
    };
    let checks = futures::future::join_all(item.targets.iter().map(|t| {
        let reference = &reference;
        async move {
            let repo = t.repo.clone()?;
            let at = repo
                .manifest_head(reference)
                .await
                .map_err(|e| TargetError::new(Stage::Check, e))?
                .map(|i| i.digest);
            Ok::<_, TargetError>((repo, at))
        }
    }))
    .await;
    let mut decided: Vec<Option<TargetResult>> = Vec::new();
    let mut writes: Vec<(usize, Arc<dyn Repo>, TagStep)> = Vec::new();
    for (i, (target, c)) in item.targets.iter().zip(checks).enumerate() {
        let target = &target.reference;
        match c {
            Err(e) => {
                let mut t = target_result(target, Outcome::Failed, None);
                t.error = Some(e);
                decided.push(Some(t));
            }
            Ok((repo, at)) => {
                let step = match &item.what {
                    Which::Tag(tag) => {
                        plan::decide(tag, &source_digest, at.as_ref(), item.policy.existing)
                    }
                    Which::Digest(_) if at.is_some() => TagStep::UpToDate,
                    Which::Digest(_) => TagStep::Copy,
                };
                let outcome = match &step {
                    TagStep::UpToDate => Some(Outcome::UpToDate),
                    TagStep::Skip { .. } => Some(Outcome::Skipped),
                    _ if dry_run => Some(Outcome::Planned),
                    _ => None,
                };
                match outcome {
                    Some(o) => decided.push(Some(target_result(target, o, Some(step)))),
                    None => {
                        writes.push((i, repo, step));
                        decided.push(None);
                    }
                }
            }
        }
    }
    Ok(Checked {
        item,
        digest: source_digest,
        decided,
        writes,
    })
}

/// The image's result once every target is decided.
fn finish(item: &Item, decided: Vec<Option<TargetResult>>, digest: &Digest) -> ImageResult {
    let targets = decided
        .into_iter()
        .map(|t| t.expect("every target of an image is decided before it is reported"))
        .collect();
    let mut r = image_result(item, targets);
    r.digest = Some(digest.clone());
    r
}

/// Writes one checked image where it differs: backups first, then one copy to every target
/// that needs it (content read once, fanned out).
async fn write(c: Checked<'_>, engine: &Engine, progress: &dyn Observer) -> ImageResult {
    let Checked {
        item,
        digest: source_digest,
        mut decided,
        writes,
    } = c;
    let item = &item;
    let targets: Vec<ImageRef> = item.targets.iter().map(|t| t.reference.clone()).collect();
    let finish = |decided| finish(item, decided, &source_digest);
    // Backups first: the old digest gets its backup tag before the tag moves.
    let mut copy_to = Vec::new();
    for (i, repo, step) in writes {
        if let TagStep::Backup { from, backup } = &step {
            let kept = async {
                let old = repo
                    .manifest_get(&ManifestRef::Digest(from.clone()), None)
                    .await?;
                repo.manifest_put(&ManifestRef::Tag(backup.clone()), &old)
                    .await
            }
            .await;
            if let Err(e) = kept {
                let mut t = target_result(&targets[i], Outcome::Failed, Some(step.clone()));
                let stage = Stage::Backup {
                    from: from.clone(),
                    backup: backup.clone(),
                };
                t.error = Some(TargetError::new(stage, e));
                decided[i] = Some(t);
                continue;
            }
        }
        copy_to.push((i, step));
    }
    let dests: Vec<ImageRef> = copy_to
        .iter()
        .map(|(i, _)| match &item.what {
            Which::Tag(t) => targets[*i].with(Some(t.clone()), None),
            Which::Digest(d) => targets[*i].with(None, Some(d.clone())),
        })
        .collect();
    if dests.is_empty() {
        return finish(decided);
    }
    let source = match &item.what {
        // Pinned: the digest HEAD-checked is the one copied, even if the tag moves meanwhile.
        Which::Tag(t) => item
            .source
            .with(Some(t.clone()), Some(source_digest.clone())),
        Which::Digest(_) => item.source.clone(),
    };
    let copied = async {
        let resolved = engine.resolve(&source).await?;
        let watch = progress::ImageCopy {
            observer: progress,
            targets: dests.iter().map(ToString::to_string).collect(),
        };
        engine
            .copy_image(&resolved, &dests, &watch, &item.policy.referrers)
            .await
    }
    .await;
    match copied {
        Ok(report) => {
            for ((i, step), d) in copy_to.into_iter().zip(&report.destinations) {
                // A tag written over an existing one (with or without a backup) is still a copy.
                let outcome = match d.status {
                    Outcome::UpToDate => Outcome::Copied,
                    o => o,
                };
                let mut t = target_result(&targets[i], outcome, Some(step));
                t.bytes = d.bytes_uploaded;
                t.attached = d.attached.clone();
                t.error = d.error.clone();
                decided[i] = Some(t);
            }
        }
        Err(e) => {
            let cause: crate::error::Cause = Arc::new(e);
            for (i, step) in copy_to {
                let mut t = target_result(&targets[i], Outcome::Failed, Some(step));
                t.error = Some(TargetError::shared(Stage::Source, cause.clone()));
                decided[i] = Some(t);
            }
        }
    }
    finish(decided)
}

/// Whether the source lists a fallback index or a cosign tag for `digest`.
fn has_attachments(item: &Item<'_>, digest: &Digest) -> bool {
    if !item.policy.referrers.enabled || item.attachment_tags.is_empty() {
        return false;
    }
    let fallback = referrers::fallback_tag(digest);
    std::iter::once(fallback.as_str().to_owned())
        .chain(
            referrers::COSIGN_TAGS
                .iter()
                .map(|(suffix, _)| referrers::cosign_tag(digest, suffix).as_str().to_owned()),
        )
        .any(|t| item.attachment_tags.contains(&t))
}

/// An image already at every target whose source has things attached: copies what is new
/// (a signature added after the image was mirrored, say) to the targets where it is up to date.
async fn refresh_attached(
    item: &Item<'_>,
    digest: &Digest,
    engine: &Engine,
    result: &mut ImageResult,
) {
    let targets: Vec<ImageRef> = item.targets.iter().map(|t| t.reference.clone()).collect();
    let at: Vec<usize> = (0..targets.len())
        .filter(|&i| result.targets[i].outcome == Outcome::UpToDate)
        .collect();
    if at.is_empty() {
        return;
    }
    let dests: Vec<ImageRef> = at.iter().map(|&i| targets[i].pinned(digest)).collect();
    let skip = vec![false; dests.len()];
    let outcome = async {
        let resolved = engine.resolve(&item.source.pinned(digest)).await?;
        copy_attached(engine, &resolved, &dests, &skip, &item.policy.referrers).await
    }
    .await;
    match outcome {
        Ok(report) if report.found > 0 => {
            for (&i, a) in at.iter().zip(report.destinations) {
                let t = &mut result.targets[i];
                if let Some(e) = &a.error {
                    t.outcome = Outcome::Failed;
                    t.error = Some(e.clone());
                }
                t.attached = Some(a);
            }
        }
        Ok(_) => {}
        Err(e) => {
            let cause: crate::error::Cause = Arc::new(e);
            for &i in &at {
                result.targets[i].outcome = Outcome::Failed;
                result.targets[i].error = Some(TargetError::shared(Stage::Attached, cause.clone()));
            }
        }
    }
}
