//! copy::engine: carries out copy plans — resolves the source once, HEAD-checks destinations, moves blobs, then manifests, then tags, and reports per destination.
//!
//! What is attached to an image is `copy::attached`'s, and so is [`Engine::copy`] (the image, then
//! what is attached to it): that module builds on this one, which does not import it back.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::stream::{self, StreamExt};
use serde::Serialize;
use tokio::sync::OwnedSemaphorePermit;

use super::client::Client;
use super::fanout::{fanout, Kept, OnBytes, Reopen, Stopped, DEFAULT_QUEUE_BYTES, KEPT_COPY};
use super::plan::{plan_destination, Action, DestPlan, DestState, SourceImage};
use super::progress::Observer;
use super::tag::write_tag;
use crate::auth::{Credential, CredentialSource, CredentialStore};
use crate::cloud::RepoSettings;
use crate::digest::Digest;
use crate::error::{Cause, Error, Result, Stage, TargetError};
use crate::manifest::{filter_index, Descriptor, Manifest, Platform};
use crate::outcome::Outcome;
use crate::reference::ImageRef;
use crate::referrers::Filter;
use crate::registry::{ManifestRef, Mount, RegistryError, Repo};
use crate::transport::retry::{Attempts, RetryPolicy};
use crate::transport::TransportOptions;

/// Default number of blobs in flight at once, over all registries.
pub const DEFAULT_JOBS: usize = 8;
/// Default number of blob transfers touching one registry host at once.
pub const DEFAULT_PER_HOST: usize = 6;
/// Manifests fetched or HEAD-checked at once per image.
const MANIFEST_CONCURRENCY: usize = 8;

/// How a copy runs.
#[derive(Clone, Debug)]
pub struct CopyOptions {
    /// Copy only these platforms of an index (the result is a new index). Empty: everything.
    pub platforms: Vec<Platform>,
    /// Read and plan, but write nothing.
    pub dry_run: bool,
    /// Blobs in flight at once (default [`DEFAULT_JOBS`]).
    pub jobs: usize,
    /// Blob transfers per registry host at once (default [`DEFAULT_PER_HOST`]).
    pub per_host: usize,
    /// Memory per destination queue before spilling to disk (default [`DEFAULT_QUEUE_BYTES`]).
    pub queue_bytes: usize,
    /// How to connect.
    pub transport: TransportOptions,
    /// Per registry host: blob transfers at once, instead of `per_host`.
    pub host_limits: HashMap<String, usize>,
    /// Per registry: where credentials come from (others: by registry name).
    pub auth_sources: HashMap<String, CredentialSource>,
    /// ECR registries whose missing repositories ferry creates, with these settings.
    pub ecr_create: HashMap<String, RepoSettings>,
    /// Which attached artifacts (signatures, attestations, SBOMs) travel with an image.
    pub referrers: Filter,
    /// Per registry: a login from the command line, used before any other source.
    pub credentials: HashMap<String, Credential>,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            platforms: Vec::new(),
            dry_run: false,
            jobs: DEFAULT_JOBS,
            per_host: DEFAULT_PER_HOST,
            queue_bytes: DEFAULT_QUEUE_BYTES,
            transport: TransportOptions::default(),
            host_limits: HashMap::new(),
            auth_sources: HashMap::new(),
            ecr_create: HashMap::new(),
            referrers: Filter::default(),
            credentials: HashMap::new(),
        }
    }
}

/// What happened at one destination.
#[derive(Clone, Debug, Serialize)]
pub struct DestReport {
    /// The destination as given.
    pub reference: String,
    /// The digest it now holds (or would).
    pub digest: Digest,
    /// The outcome (`status` in JSON, as it always was).
    pub status: Outcome,
    /// Where the tag pointed before, if it existed and moved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag_from: Option<Digest>,
    /// The destination named no tag: the image is there by digest only.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub untagged: bool,
    /// Blobs uploaded from the source.
    pub blobs_uploaded: u64,
    /// Blobs linked from another repository of the same registry.
    pub blobs_mounted: u64,
    /// Blobs already present.
    pub blobs_skipped: u64,
    /// Bytes uploaded.
    pub bytes_uploaded: u64,
    /// Requests sent to this destination.
    pub requests: u64,
    /// The error, if it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<TargetError>,
    /// In a dry run: the plan.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<DestPlan>,
    /// What happened to the signatures, attestations and SBOMs attached to the image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attached: Option<DestAttached>,
}

/// What happened to the attached artifacts at one destination.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DestAttached {
    /// Artifacts whose content was written (or, in a dry run, would be).
    pub copied: usize,
    /// Artifacts already there.
    pub present: usize,
    /// cosign tags written.
    pub tags: usize,
    /// Fallback indexes written (for destinations without the referrers API).
    pub fallback_indexes: usize,
    /// The first failure, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<TargetError>,
}

impl DestAttached {
    /// Keeps the first failure: `copy::attached` fills these in, artifact by artifact.
    pub(super) fn fail(&mut self, e: TargetError) {
        if self.error.is_none() {
            self.error = Some(e);
        }
    }
}

/// What a copy did, for every destination.
#[derive(Clone, Debug, Serialize)]
pub struct CopyReport {
    /// The source as given.
    pub source: String,
    /// The digest copied.
    pub digest: Digest,
    /// When `--platform` made a new index: the original index's digest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filtered_from: Option<Digest>,
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// Bytes read from the source's blobs.
    pub source_bytes_read: u64,
    /// Per destination, in the order given.
    pub destinations: Vec<DestReport>,
}

impl CopyReport {
    /// How many destinations failed.
    pub fn failed(&self) -> usize {
        self.destinations
            .iter()
            .filter(|d| d.status == Outcome::Failed)
            .count()
    }
}

#[derive(Default)]
struct Counters {
    uploaded: AtomicU64,
    mounted: AtomicU64,
    skipped: AtomicU64,
    bytes: AtomicU64,
}

struct Dest {
    reference: ImageRef,
    repo: Option<Arc<dyn Repo>>,
    /// ECR: the repository's tag settings.
    settings: Option<RepoSettings>,
    error: Mutex<Option<TargetError>>,
    counters: Counters,
}

/// A transient error, carried to several destinations.
fn clone_transient(e: &RegistryError) -> RegistryError {
    RegistryError::Interrupted {
        host: match e {
            RegistryError::Connect { host, .. }
            | RegistryError::Interrupted { host, .. }
            | RegistryError::Status { host, .. } => host.clone(),
            _ => "source".into(),
        },
        detail: e.to_string(),
    }
}

/// Why a tag cannot be written: the repository never moves it, and it points elsewhere.
#[derive(Debug, thiserror::Error)]
#[error("tag {tag} already points at {at} in {repository}, whose {settings} forbids moving it")]
pub struct ImmutableTag {
    /// The tag.
    pub tag: String,
    /// What it points at.
    pub at: Digest,
    /// The repository (`host/repo`).
    pub repository: String,
    /// Its tag settings, described (`tag mutability IMMUTABLE`).
    pub settings: String,
}

impl ImmutableTag {
    /// `tag` in `repo` points at `at`, and `settings` never let it move.
    pub fn new(repo: &ImageRef, tag: &str, at: &Digest, settings: &RepoSettings) -> Self {
        ImmutableTag {
            tag: tag.to_owned(),
            at: at.clone(),
            repository: repo.repository_name(),
            settings: settings.describe(),
        }
    }
}

/// Why a blob or a manifest did not reach a destination.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    /// The upload kept failing transiently.
    #[error("failed to upload blob {digest} after {attempts} attempts")]
    Retries {
        /// The blob.
        digest: Digest,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        #[source]
        source: RegistryError,
    },
    /// The upload failed.
    #[error("failed to upload blob {digest}")]
    Upload {
        /// The blob.
        digest: Digest,
        /// The cause.
        #[source]
        source: RegistryError,
    },
    /// The source could not serve the blob.
    #[error("failed to read blob from source {store}")]
    SourceRead {
        /// The source store.
        store: String,
        /// The cause.
        #[source]
        source: RegistryError,
    },
    /// The source's bytes were wrong (a digest mismatch, say).
    #[error("source {store} served bad content")]
    BadContent {
        /// The source store.
        store: String,
        /// The cause.
        #[source]
        source: Arc<RegistryError>,
    },
    /// A spill file (where a blob waits for a slow destination) could not be used.
    #[error("failed to buffer a blob on ferry's local disk for a slow destination")]
    Spill {
        /// The cause.
        #[source]
        source: Arc<RegistryError>,
    },
    /// A manifest could not be put by digest.
    #[error("failed to put manifest {digest}")]
    ManifestPut {
        /// The manifest.
        digest: Digest,
        /// The cause.
        #[source]
        source: RegistryError,
    },
}

impl Dest {
    fn fail(&self, e: TargetError) {
        let mut slot = self.error.lock().expect("dest error lock");
        if slot.is_none() {
            *slot = Some(e);
        }
    }
    fn failed(&self) -> bool {
        self.error.lock().expect("dest error lock").is_some()
    }
    fn repo(&self) -> &Arc<dyn Repo> {
        self.repo
            .as_ref()
            .expect("only live destinations are asked for their repo")
    }
}

/// A source read once: its store, its root manifest (after any platform filter).
pub struct Resolved {
    /// The source as given.
    pub reference: ImageRef,
    /// Its store, opened for reading.
    pub src: Arc<dyn Repo>,
    /// The root manifest copied: the source's own, or the platform-filtered index.
    pub root: Manifest,
    /// When a platform filter made a new index: the source index's digest.
    pub filtered_from: Option<Digest>,
}

impl Resolved {
    /// The digest the source reference itself resolved to (before any platform filter).
    pub fn source_digest(&self) -> &Digest {
        self.filtered_from.as_ref().unwrap_or(&self.root.digest)
    }
}

/// The platforms an index offers (`linux/arm64/v8`), BuildKit's attestation entries left out.
fn index_platforms(index: &Manifest) -> Vec<String> {
    let doc: serde_json::Value = serde_json::from_slice(&index.bytes).unwrap_or_default();
    doc["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let p = &e["platform"];
            let (os, arch) = (p["os"].as_str()?, p["architecture"].as_str()?);
            if os == "unknown" {
                return None;
            }
            Some(match p["variant"].as_str() {
                Some(v) => format!("{os}/{arch}/{v}"),
                None => format!("{os}/{arch}"),
            })
        })
        .collect()
}

/// What [`Engine::check_complete`] found.
pub struct Completeness {
    /// The root manifest, when the store has it.
    pub root: Option<Manifest>,
    /// What is missing (`manifest sha256:…`, `blob sha256:…`); empty when the image is complete.
    pub missing: Vec<String>,
}

/// Copies images for one run: per-run options (dry run, platforms, jobs, referrers), and what
/// the run learnt (blobs present where). Connections, credentials and per-registry gates are
/// the [`Client`]'s, shared by every engine of the process.
pub struct Engine {
    client: Arc<Client>,
    options: CopyOptions,
    present: Mutex<HashSet<(String, Digest)>>,
    /// Per blob: the repositories (registry host, repository) this run knows hold it, so a
    /// destination on the same registry mounts it from one of them instead of receiving it
    /// again, whichever image brought it there.
    holders: Mutex<HashMap<Digest, Vec<(String, crate::reference::Repository)>>>,
    blob_locks: Mutex<HashMap<Digest, Arc<tokio::sync::Mutex<()>>>>,
    source_bytes: AtomicU64,
    /// Per source repository: its attachment tags (`sha256-…`, `….sig`), listed once per run,
    /// so that finding what is attached to each image asks only for tags that exist.
    attachment_tags: Mutex<HashMap<String, AttachmentTags>>,
}

/// The tags among `tags` that attachments live under.
fn attachment_set(tags: &[crate::reference::Tag]) -> HashSet<String> {
    tags.iter()
        .map(|t| t.as_str())
        .filter(|t| crate::referrers::is_attachment_tag(t))
        .map(str::to_owned)
        .collect()
}

/// A repository's attachment tags, once listed (`None`: it could not be listed).
type AttachmentTags = Arc<tokio::sync::OnceCell<Option<Arc<HashSet<String>>>>>;

impl Engine {
    /// An engine with a client of its own, credentials from the environment's Docker config files.
    pub fn new(options: CopyOptions) -> Self {
        Self::with_credentials(options, CredentialStore::from_env())
    }

    /// An engine with a client of its own reading explicit credential files.
    pub fn with_credentials(options: CopyOptions, creds: CredentialStore) -> Self {
        let client = Arc::new(Client::new(&options, creds));
        Self::with_client(client, options)
    }

    /// An engine for one run on a client the process already has: its tokens, connections
    /// and registry gates are reused. The client's connection settings win over `options`'.
    pub fn with_client(client: Arc<Client>, options: CopyOptions) -> Self {
        Engine {
            client,
            options,
            present: Mutex::default(),
            holders: Mutex::default(),
            blob_locks: Mutex::default(),
            source_bytes: AtomicU64::new(0),
            attachment_tags: Mutex::default(),
        }
    }

    /// The attachment tags of `repo`, from one tag listing per repository per run (or from
    /// [`Engine::know_tags`]); `None` when it cannot be listed, and each tag is then asked for.
    pub async fn attachment_tags(&self, repo: &dyn Repo) -> Option<Arc<HashSet<String>>> {
        self.tags_cell(&repo.name())
            .get_or_init(|| async {
            match repo.tags_list().await {
                Ok(tags) => Some(Arc::new(attachment_set(&tags))),
                Err(e) => {
                    tracing::debug!(repository = %repo.name(), "tags not listed ({e}); attachment tags are asked for one by one");
                    None
                }
            }
        })
        .await
        .clone()
    }

    /// The once-per-run slot of one repository's attachment tags.
    fn tags_cell(&self, repo_name: &str) -> AttachmentTags {
        self.attachment_tags
            .lock()
            .expect("attachment tags")
            .entry(repo_name.to_owned())
            .or_default()
            .clone()
    }

    /// Tells the engine the tags of a repository (by [`Repo::name`]) a caller has just listed
    /// (mirror lists its sources anyway), so finding attachments there lists nothing again.
    pub fn know_tags(&self, repo_name: &str, tags: &[crate::reference::Tag]) {
        let _ = self
            .tags_cell(repo_name)
            .set(Some(Arc::new(attachment_set(tags))));
    }

    /// ECR: makes sure a repository exists and learns its tag settings (`None` elsewhere); see
    /// [`Client::prepare_repository`].
    pub async fn prepare_repository(
        &self,
        r: &ImageRef,
        write: bool,
    ) -> Result<Option<RepoSettings>, RegistryError> {
        self.client.prepare_repository(r, write).await
    }

    /// The repositories a registry lists in its catalog; `None` when it offers none.
    pub async fn catalog(
        &self,
        registry: &crate::reference::Registry,
    ) -> Result<Option<Vec<String>>, RegistryError> {
        self.client.catalog(registry).await
    }

    /// Opens a store for a reference; `push` asks for write access.
    pub fn open(&self, r: &ImageRef, push: bool) -> Result<Arc<dyn Repo>, RegistryError> {
        self.client.open(r, push)
    }

    /// Reads the source's root once (filtered to the chosen platforms, if any): everything after is by digest.
    pub async fn resolve(&self, source: &ImageRef) -> Result<Resolved> {
        let source_err = |e: RegistryError| Error::Source {
            reference: source.to_string(),
            source: Box::new(e),
        };
        let src = self.open(source, false).map_err(source_err)?;
        let root_ref = match (source.digest(), source.tag()) {
            (Some(d), _) => ManifestRef::Digest(d.clone()),
            (None, Some(t)) => ManifestRef::Tag(t.clone()),
            (None, None) => {
                return Err(Error::Usage(format!(
                    "source {source} names neither a tag nor a digest"
                )))
            }
        };
        let mut root = src
            .manifest_get(&root_ref, None)
            .await
            .map_err(source_err)?;
        let mut filtered_from = None;
        if !self.options.platforms.is_empty() {
            if !root.is_index() {
                return Err(Error::Usage(format!(
                    "--platform needs a multi-platform source, and {source} ({}) is a single image",
                    root.digest
                )));
            }
            let Some(bytes) =
                filter_index(&root, &self.options.platforms).map_err(|e| source_err(e.into()))?
            else {
                let wanted: Vec<String> = self
                    .options
                    .platforms
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                return Err(Error::Usage(format!(
                    "{source} has no manifest for platform {} (it has {})",
                    wanted.join(", "),
                    index_platforms(&root).join(", ")
                )));
            };
            filtered_from = Some(root.digest.clone());
            root =
                Manifest::parse(bytes, Some(&root.media_type)).map_err(|e| source_err(e.into()))?;
        }
        tracing::info!(source = %source, digest = %root.digest, "resolved source");
        Ok(Resolved {
            reference: source.clone(),
            src,
            root,
            filtered_from,
        })
    }

    /// How this engine copies.
    pub fn options(&self) -> &CopyOptions {
        &self.options
    }

    /// Copies an already resolved source to every destination.
    pub async fn copy_resolved(
        &self,
        resolved: &Resolved,
        dests: &[ImageRef],
        progress: &dyn Observer,
    ) -> Result<CopyReport> {
        let source = &resolved.reference;
        let source_err = |e: RegistryError| Error::Source {
            reference: source.to_string(),
            source: Box::new(e),
        };
        let src = resolved.src.clone();
        let root = resolved.root.clone();
        let filtered_from = resolved.filtered_from.clone();

        let push = !self.options.dry_run;
        let dests: Vec<Dest> = futures::future::join_all(dests.iter().map(|d| async move {
            let (repo, settings, error) = match self.open(d, push) {
                Ok(r) => match self.prepare_repository(d, push).await {
                    Ok(s) => (Some(r), s, None),
                    Err(e) => (Some(r), None, Some(TargetError::new(Stage::Open, e))),
                },
                Err(e) => (None, None, Some(TargetError::new(Stage::Open, e))),
            };
            Dest {
                reference: d.clone(),
                repo,
                settings,
                error: Mutex::new(error),
                counters: Counters::default(),
            }
        }))
        .await;

        // 1. What does each destination hold? (One HEAD in the common "already there" case.)
        let mut states: Vec<DestState> =
            futures::future::join_all(dests.iter().map(|d| self.precheck(d, &root.digest))).await;

        // 2. Read the rest of the source graph only if someone needs content.
        let needs_content = dests
            .iter()
            .zip(&states)
            .any(|(d, s)| !d.failed() && !s.root_present);
        let children = if needs_content {
            self.read_children(&*src, &root).await.map_err(source_err)?
        } else {
            Vec::new()
        };
        let image = SourceImage {
            reference: source.pinned(&root.digest),
            root,
            filtered_from,
            children,
        };
        if needs_content && !image.children.is_empty() {
            let children = &image.children;
            let checks = dests
                .iter()
                .zip(states.iter_mut())
                .filter(|(d, s)| !d.failed() && !s.root_present)
                .map(|(d, s)| async move {
                    let present = stream::iter(children)
                        .map(|m| async move {
                            (
                                m.digest.clone(),
                                d.repo()
                                    .manifest_head(&ManifestRef::Digest(m.digest.clone()))
                                    .await,
                            )
                        })
                        .buffer_unordered(MANIFEST_CONCURRENCY)
                        .collect::<Vec<_>>()
                        .await;
                    for (digest, r) in present {
                        match r {
                            Ok(Some(_)) => {
                                s.children_present.insert(digest);
                            }
                            Ok(None) => {}
                            Err(e) => d.fail(TargetError::new(Stage::Check, e)),
                        }
                    }
                });
            futures::future::join_all(checks).await;
        }

        // 3. The plan: pure.
        let plans: Vec<DestPlan> = dests
            .iter()
            .zip(&states)
            .map(|(d, s)| plan_destination(&image, &d.reference, s))
            .collect();
        for (i, p) in plans.iter().enumerate() {
            progress.plan(i, p.blob_bytes, p.blob_count as u64);
        }
        if self.options.dry_run {
            return Ok(self.report(&image, &dests, &plans, progress, true));
        }

        // 4. Blobs: each read at most once, fanned out to every destination that lacks it.
        let mut wanted: Vec<(Descriptor, Vec<usize>)> = Vec::new();
        let mut slot: HashMap<Digest, usize> = HashMap::new();
        for (i, p) in plans.iter().enumerate() {
            if p.action != Action::Copy || dests[i].failed() {
                continue;
            }
            for b in &p.blobs {
                let at = *slot.entry(b.digest.clone()).or_insert_with(|| {
                    wanted.push((b.clone(), Vec::new()));
                    wanted.len() - 1
                });
                wanted[at].1.push(i);
            }
        }
        stream::iter(wanted)
            .map(|(blob, who)| self.transfer(&src, blob, who, &dests, progress))
            .buffer_unordered(self.options.jobs.max(1))
            .collect::<Vec<()>>()
            .await;

        // 5. Manifests by digest, children first, then the tag, then read it back.
        let writes = dests
            .iter()
            .zip(&plans)
            .filter(|(d, p)| !d.failed() && p.action != Action::UpToDate)
            .map(|(d, p)| async {
                if let Err(e) = self.write_manifests(d, p, &image).await {
                    d.fail(e);
                }
            });
        futures::future::join_all(writes).await;
        Ok(self.report(&image, &dests, &plans, progress, false))
    }

    async fn precheck(&self, d: &Dest, root: &Digest) -> DestState {
        let mut state = DestState::default();
        if d.failed() {
            return state;
        }
        let repo = d.repo();
        if let Some(tag) = d.reference.tag() {
            match repo.manifest_head(&ManifestRef::Tag(tag.clone())).await {
                Ok(info) => state.tag_digest = info.map(|i| i.digest),
                Err(e) => {
                    d.fail(TargetError::new(Stage::Check, e));
                    return state;
                }
            }
            if state.tag_digest.as_ref() == Some(root) {
                state.root_present = true;
                return state;
            }
            if let (Some(at), Some(settings)) = (&state.tag_digest, &d.settings) {
                if settings.is_immutable(tag.as_str()) {
                    d.fail(TargetError::new(
                        Stage::Check,
                        ImmutableTag::new(&d.reference, tag.as_str(), at, settings),
                    ));
                    return state;
                }
            }
        }
        match repo.manifest_head(&ManifestRef::Digest(root.clone())).await {
            Ok(info) => state.root_present = info.is_some(),
            Err(e) => d.fail(TargetError::new(Stage::Check, e)),
        }
        state
    }

    /// Whether a store holds the whole image `digest`: every manifest is read (and verified) and every blob HEAD-checked.
    pub async fn check_complete(
        &self,
        repo: &dyn Repo,
        digest: &Digest,
    ) -> Result<Completeness, RegistryError> {
        let absent = |what: String| Completeness {
            root: None,
            missing: vec![what],
        };
        let root = match repo
            .manifest_get(&ManifestRef::Digest(digest.clone()), None)
            .await
        {
            Ok(m) => m,
            Err(e) if e.is_not_found() => return Ok(absent(format!("manifest {digest}"))),
            Err(e) => return Err(e),
        };
        let children = match self.read_children(repo, &root).await {
            Ok(c) => c,
            Err(RegistryError::NotFound { what, .. }) => return Ok(absent(what)),
            Err(e) => return Err(e),
        };
        let image = SourceImage {
            reference: ImageRef::parse("ocidir://unused").expect("a valid reference"),
            root,
            filtered_from: None,
            children,
        };
        let heads = stream::iter(image.all_blobs())
            .map(|b| async move { (repo.blob_head(&b.digest).await, b) })
            .buffer_unordered(MANIFEST_CONCURRENCY)
            .collect::<Vec<_>>()
            .await;
        let mut missing = Vec::new();
        for (r, b) in heads {
            if r?.is_none() {
                missing.push(format!("blob {}", b.digest));
            }
        }
        Ok(Completeness {
            root: Some(image.root),
            missing,
        })
    }

    /// Every manifest under the root, read by digest and verified, deepest first.
    async fn read_children(
        &self,
        src: &dyn Repo,
        root: &Manifest,
    ) -> Result<Vec<Manifest>, RegistryError> {
        let mut levels: Vec<Vec<Manifest>> = Vec::new();
        let mut next: Vec<Descriptor> = root.children.clone();
        let mut seen: HashSet<Digest> = HashSet::new();
        while !next.is_empty() {
            next.retain(|d| seen.insert(d.digest.clone()));
            let fetched: Vec<Manifest> = stream::iter(&next)
                .map(|d| async move {
                    src.manifest_get(&ManifestRef::Digest(d.digest.clone()), Some(&d.media_type))
                        .await
                })
                .buffered(MANIFEST_CONCURRENCY)
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .collect::<Result<_, _>>()?;
            next = fetched
                .iter()
                .flat_map(|m| m.children.iter().cloned())
                .collect();
            levels.push(fetched);
        }
        Ok(levels.into_iter().rev().flatten().collect())
    }

    /// A transfer slot at each of `hosts`, taken in sorted order so transfers never deadlock.
    async fn host_permits(&self, hosts: impl Iterator<Item = String>) -> Vec<OwnedSemaphorePermit> {
        let mut hosts: Vec<String> = hosts.collect();
        hosts.sort();
        hosts.dedup();
        let mut permits = Vec::with_capacity(hosts.len());
        for h in &hosts {
            let gate = self.client.host_limit(h);
            permits.push(gate.acquire_owned().await.expect("semaphore never closed"));
        }
        permits
    }

    /// Makes one blob present at every listed destination: HEAD, then mount, then one read fanned out to the rest.
    async fn transfer(
        &self,
        src: &Arc<dyn Repo>,
        blob: Descriptor,
        who: Vec<usize>,
        dests: &[Dest],
        progress: &dyn Observer,
    ) {
        let blob = &blob;
        let _serial = self.content_lock(&blob.digest).await;
        let live: Vec<usize> = who.into_iter().filter(|&i| !dests[i].failed()).collect();

        // Present already? (Known from this run, or by HEAD.)
        let heads = futures::future::join_all(live.iter().map(|&i| async move {
            let key = (dests[i].repo().name(), blob.digest.clone());
            if self.present.lock().expect("present").contains(&key) {
                return (i, Ok(true));
            }
            // Another repository of its registry holds it: the mount answers whether or not
            // it is here already, so the HEAD would only cost a request.
            // (From the source's own repository only where a refused mount proves absence.)
            let repo = dests[i].repo();
            let mountable = repo.mount_key().is_some_and(|(host, own)| {
                (repo.probes_by_mount()
                    && src.mount_key().is_some_and(|(h, r)| h == host && r != own))
                    || self.known_holder(&host, &own, &blob.digest).is_some()
            });
            if mountable {
                return (i, Ok(false));
            }
            if let (true, Some((_, own))) = (repo.probes_by_mount(), repo.mount_key()) {
                // One request instead of a HEAD and then an upload's POST (see probes_by_mount).
                let probe = repo.blob_mount(&blob.digest, &own).await;
                return (i, probe.map(|m| m == Mount::Mounted));
            }
            (i, repo.blob_head(&blob.digest).await.map(|s| s.is_some()))
        }))
        .await;
        let mut missing = Vec::new();
        for (i, r) in heads {
            match r {
                Ok(true) => {
                    self.mark_present(&dests[i], &blob.digest);
                    dests[i].counters.skipped.fetch_add(1, Ordering::Relaxed);
                    progress.blob_done(i, blob.size);
                }
                Ok(false) => missing.push(i),
                Err(e) => dests[i].fail(TargetError::new(Stage::Blobs, e)),
            }
        }

        // Mount from a repository of the same registry known to hold it (the source, or one this run wrote or found it in).
        let mut upload = Vec::new();
        for i in missing {
            let repo = dests[i].repo();
            let candidate = repo.mount_key().and_then(|(host, own)| {
                let from_src = src
                    .mount_key()
                    .filter(|(h, r)| *h == host && *r != own)
                    .map(|(_, r)| r);
                // Else any repository of that registry this run put or found it in: another
                // destination of this image, or another image's (mirror, a release).
                from_src.or_else(|| self.known_holder(&host, &own, &blob.digest))
            });
            if let Some(from) = candidate {
                match repo.blob_mount(&blob.digest, &from).await {
                    Ok(Mount::Mounted) => {
                        self.mark_present(&dests[i], &blob.digest);
                        dests[i].counters.mounted.fetch_add(1, Ordering::Relaxed);
                        progress.blob_done(i, blob.size);
                        continue;
                    }
                    Ok(Mount::Refused) => {}
                    Err(e) => {
                        dests[i].fail(TargetError::new(Stage::Blobs, e));
                        continue;
                    }
                }
            }
            upload.push(i);
        }
        if upload.is_empty() {
            return;
        }

        // One read, many writes; a transient failure sends the blob again to those it failed for,
        // within the retry budget: from the verified copy the first read kept on local disk, or
        // (when none could be kept, or the read itself broke for good) from the source again.
        let mut attempts = Attempts::new(RetryPolicy::default());
        let mut kept: Option<Kept> = None;
        loop {
            let again = self
                .stream_blob(src, blob, &upload, dests, progress, &mut kept)
                .await;
            if again.is_empty() {
                return;
            }
            let (first, why) = &again[0];
            match attempts.next_delay(None) {
                Some(d) => {
                    tracing::debug!(
                        blob = %blob.digest,
                        destinations = again.len(),
                        attempt = attempts.made(),
                        delay_ms = d.as_millis() as u64,
                        "transfer to {} failed ({why}): sending the blob again from {}",
                        dests[*first].reference,
                        if kept.is_some() { "a local copy" } else { "the source" }
                    );
                    tokio::time::sleep(d).await;
                    upload = again.into_iter().map(|(i, _)| i).collect();
                }
                None => {
                    for (i, e) in again {
                        let e = ContentError::Retries {
                            digest: blob.digest.clone(),
                            attempts: attempts.made(),
                            source: e,
                        };
                        dests[i].fail(TargetError::new(Stage::Blobs, e));
                    }
                    return;
                }
            }
        }
    }

    /// One read of a blob, fanned out to `upload`: from `kept` when a previous read left a
    /// verified local copy, else from the source (resumed where it breaks, and kept in `kept`
    /// for any retry). Returns the destinations that failed transiently (to try again);
    /// permanent failures are recorded on the destination.
    async fn stream_blob(
        &self,
        src: &Arc<dyn Repo>,
        blob: &Descriptor,
        upload: &[usize],
        dests: &[Dest],
        progress: &dyn Observer,
        kept: &mut Option<Kept>,
    ) -> Vec<(usize, RegistryError)> {
        // Before any host slot is taken: the replay takes its own (the source's not among them).
        if let Some(local) = kept.clone() {
            return self
                .replay_blob(&local, blob, upload, dests, progress, kept)
                .await;
        }
        let hosts = upload
            .iter()
            .filter_map(|&i| dests[i].repo().mount_key().map(|(h, _)| h))
            .chain(src.mount_key().map(|(h, _)| h));
        let permits = self.host_permits(hosts).await;
        let body = match src.blob_get(&blob.digest).await {
            Ok(b) => b,
            Err(e) if e.is_transient() => {
                return upload.iter().map(|&i| (i, clone_transient(&e))).collect()
            }
            Err(e) => {
                let cause: Cause = Arc::new(ContentError::SourceRead {
                    store: src.name(),
                    source: e,
                });
                for &i in upload {
                    dests[i].fail(TargetError::shared(Stage::Blobs, cause.clone()));
                }
                return Vec::new();
            }
        };
        let callbacks: Vec<OnBytes> = upload.iter().map(|&i| progress.on_bytes(i)).collect();
        let (producer, streams) = fanout(
            body,
            blob.digest.clone(),
            blob.size,
            callbacks,
            self.options.queue_bytes,
        );
        let reopen: Reopen = {
            let (src, digest) = (src.clone(), blob.digest.clone());
            Arc::new(move |at| {
                let (src, digest) = (src.clone(), digest.clone());
                Box::pin(async move { src.blob_get_from(&digest, at).await })
            })
        };
        // Should every upload fail midway, the producer asks whether to read on into its copy:
        // yes when one of them will be sent again.
        let (wanted, asked) = tokio::sync::oneshot::channel();
        let producer = producer
            .resuming(reopen, RetryPolicy::default())
            .keeping(asked);
        let puts = upload.iter().zip(streams).map(|(&i, s)| async move {
            (
                i,
                dests[i].repo().blob_put(&blob.digest, blob.size, s).await,
            )
        });
        let puts = async {
            let results = futures::future::join_all(puts).await;
            let _ = wanted.send(
                results
                    .iter()
                    .any(|(_, r)| r.as_ref().is_err_and(RegistryError::is_transient)),
            );
            results
        };
        let (read, results) = tokio::join!(producer.run(), puts);
        drop(permits);
        let mut again = Vec::new();
        // Each destination's own outcome, when the source is not to blame for it.
        let settle = |i: usize, r: Result<(), RegistryError>, again: &mut Vec<_>| match r {
            Ok(()) => self.uploaded(dests, i, blob, progress),
            Err(e) if e.is_transient() => again.push((i, e)),
            Err(e) => {
                let e = ContentError::Upload {
                    digest: blob.digest.clone(),
                    source: e,
                };
                dests[i].fail(TargetError::new(Stage::Blobs, e))
            }
        };
        match read {
            Ok(stats) => {
                self.source_bytes.fetch_add(stats.read, Ordering::Relaxed);
                if stats.resumed > 0 {
                    tracing::debug!(blob = %blob.digest, resumed = stats.resumed, read = stats.read, "source download resumed after a cut");
                }
                *kept = stats.kept;
                for (i, r) in results {
                    settle(i, r, &mut again);
                }
            }
            // Every destination stopped reading: each one's own error says why (a full disk, a
            // registry that went away); the source only stopped because nobody was listening.
            Err(Stopped::Abandoned) => {
                for (i, r) in results {
                    settle(i, r, &mut again);
                }
            }
            // ferry's own spill file failed: neither the source's nor a destination's fault.
            Err(Stopped::Spill(e)) => {
                let cause: Cause = Arc::new(ContentError::Spill { source: e });
                for (i, r) in results {
                    match r {
                        Ok(()) => settle(i, Ok(()), &mut again),
                        Err(_) => dests[i].fail(TargetError::shared(Stage::Blobs, cause.clone())),
                    }
                }
            }
            // The source stream broke off: everyone who did not finish gets it again.
            Err(Stopped::Source(e)) if e.is_transient() => {
                for (i, r) in results {
                    match r {
                        Ok(()) => {
                            self.mark_present(&dests[i], &blob.digest);
                            dests[i].counters.uploaded.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => again.push((i, clone_transient(&e))),
                    }
                }
            }
            Err(Stopped::Source(e)) => {
                let cause: Cause = Arc::new(ContentError::BadContent {
                    store: src.name(),
                    source: e,
                });
                for &i in upload {
                    dests[i].fail(TargetError::shared(Stage::Blobs, cause.clone()));
                }
            }
        }
        again
    }

    /// Sends a blob again from the verified copy a previous read kept, to `upload`; the source is
    /// not asked. The copy is verified again as it is read: should it fail (ferry's own disk),
    /// it is dropped and every unfinished destination is tried again from the source.
    async fn replay_blob(
        &self,
        local: &Kept,
        blob: &Descriptor,
        upload: &[usize],
        dests: &[Dest],
        progress: &dyn Observer,
        kept: &mut Option<Kept>,
    ) -> Vec<(usize, RegistryError)> {
        let hosts = upload
            .iter()
            .filter_map(|&i| dests[i].repo().mount_key().map(|(h, _)| h));
        let permits = self.host_permits(hosts).await;
        let callbacks: Vec<OnBytes> = upload.iter().map(|&i| progress.on_bytes(i)).collect();
        let (producer, streams) = fanout(
            local.stream(),
            blob.digest.clone(),
            blob.size,
            callbacks,
            self.options.queue_bytes,
        );
        let puts = upload.iter().zip(streams).map(|(&i, s)| async move {
            (
                i,
                dests[i].repo().blob_put(&blob.digest, blob.size, s).await,
            )
        });
        let (read, results) = tokio::join!(producer.run(), futures::future::join_all(puts));
        drop(permits);
        let mut again = Vec::new();
        let broken = match read {
            Ok(_) | Err(Stopped::Abandoned) => None,
            Err(Stopped::Source(e) | Stopped::Spill(e)) => Some(e),
        };
        if let Some(e) = &broken {
            tracing::warn!(blob = %blob.digest, "{KEPT_COPY} could not be read back ({e}): reading the source again");
            *kept = None;
        }
        for (i, r) in results {
            match (r, &broken) {
                (Ok(()), _) => self.uploaded(dests, i, blob, progress),
                (Err(_), Some(e)) => again.push((
                    i,
                    RegistryError::Interrupted {
                        host: KEPT_COPY.into(),
                        detail: e.to_string(),
                    },
                )),
                (Err(e), None) if e.is_transient() => again.push((i, e)),
                (Err(e), None) => {
                    let e = ContentError::Upload {
                        digest: blob.digest.clone(),
                        source: e,
                    };
                    dests[i].fail(TargetError::new(Stage::Blobs, e))
                }
            }
        }
        again
    }

    /// Destination `i` now holds the uploaded blob: counted and reported.
    fn uploaded(&self, dests: &[Dest], i: usize, blob: &Descriptor, progress: &dyn Observer) {
        self.mark_present(&dests[i], &blob.digest);
        dests[i].counters.uploaded.fetch_add(1, Ordering::Relaxed);
        dests[i]
            .counters
            .bytes
            .fetch_add(blob.size, Ordering::Relaxed);
        progress.blob_done(i, 0);
    }

    /// Held while content with this digest is written anywhere in this run.
    async fn content_lock(&self, digest: &Digest) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = self
            .blob_locks
            .lock()
            .expect("blob locks")
            .entry(digest.clone())
            .or_default()
            .clone();
        lock.lock_owned().await
    }

    fn mark_present(&self, d: &Dest, digest: &Digest) {
        self.present
            .lock()
            .expect("present")
            .insert((d.repo().name(), digest.clone()));
        if let Some(key) = d.repo().mount_key() {
            let mut holders = self.holders.lock().expect("holders");
            let known = holders.entry(digest.clone()).or_default();
            if !known.contains(&key) {
                known.push(key);
            }
        }
    }

    /// A repository on `host`, other than `own`, that this run knows holds `digest`.
    fn known_holder(
        &self,
        host: &str,
        own: &crate::reference::Repository,
        digest: &Digest,
    ) -> Option<crate::reference::Repository> {
        self.holders
            .lock()
            .expect("holders")
            .get(digest)?
            .iter()
            .find(|(h, r)| h == host && r != own)
            .map(|(_, r)| r.clone())
    }

    /// Puts the manifests a destination lacks (children first), then the tag, then reads the tag back.
    async fn write_manifests(
        &self,
        d: &Dest,
        p: &DestPlan,
        image: &SourceImage,
    ) -> Result<(), TargetError> {
        let repo = d.repo();
        let by_digest: HashMap<&Digest, &Manifest> = image
            .children
            .iter()
            .chain(std::iter::once(&image.root))
            .map(|m| (&m.digest, m))
            .collect();
        // Writes of the same content are never concurrent within a run: registries on plain
        // filesystems (distribution's driver) do not write their link files atomically.
        for digest in &p.manifests {
            let _serial = self.content_lock(digest).await;
            repo.manifest_put(&ManifestRef::Digest(digest.clone()), by_digest[digest])
                .await
                .map_err(|source| {
                    let e = ContentError::ManifestPut {
                        digest: digest.clone(),
                        source,
                    };
                    TargetError::new(Stage::Manifests, e)
                })?;
        }
        let Some(tag) = &p.tag else {
            // By digest only: a store that would lose an untagged image (an OCI layout lists
            // what it keeps in index.json) records it without a name.
            return repo.keep_untagged(&image.root).await.map_err(|source| {
                let e = ContentError::ManifestPut {
                    digest: image.root.digest.clone(),
                    source,
                };
                TargetError::new(Stage::Manifests, e)
            });
        };
        let _serial = self.content_lock(&image.root.digest).await;
        write_tag(&**repo, tag, &image.root)
            .await
            .map_err(|e| TargetError::new(Stage::Tag, e))
    }

    fn report(
        &self,
        image: &SourceImage,
        dests: &[Dest],
        plans: &[DestPlan],
        progress: &dyn Observer,
        dry_run: bool,
    ) -> CopyReport {
        let destinations = dests
            .iter()
            .zip(plans)
            .enumerate()
            .map(|(i, (d, p))| {
                let error = d.error.lock().expect("dest error lock").clone();
                let status = match (&error, p.action, dry_run) {
                    (Some(_), _, _) => Outcome::Failed,
                    (None, Action::UpToDate, _) => Outcome::UpToDate,
                    (None, _, true) => Outcome::Planned,
                    (None, _, false) => Outcome::Copied,
                };
                progress.finish(i, status);
                DestReport {
                    reference: d.reference.to_string(),
                    digest: image.root.digest.clone(),
                    status,
                    tag_from: p.tag_from.clone().filter(|f| *f != image.root.digest),
                    untagged: p.tag.is_none(),
                    blobs_uploaded: d.counters.uploaded.load(Ordering::Relaxed),
                    blobs_mounted: d.counters.mounted.load(Ordering::Relaxed),
                    blobs_skipped: d.counters.skipped.load(Ordering::Relaxed),
                    bytes_uploaded: d.counters.bytes.load(Ordering::Relaxed),
                    requests: d.repo.as_ref().map_or(0, |r| r.stats().requests),
                    error,
                    plan: dry_run.then(|| p.clone()),
                    attached: None,
                }
            })
            .collect();
        CopyReport {
            source: image.reference.to_string(),
            digest: image.root.digest.clone(),
            filtered_from: image.filtered_from.clone(),
            dry_run,
            source_bytes_read: self.source_bytes.load(Ordering::Relaxed),
            destinations,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_index_lists_its_platforms_without_attestations() {
        let doc = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
            {"mediaType": "m", "digest": format!("sha256:{}", "a".repeat(64)), "size": 1, "platform": {"os": "linux", "architecture": "amd64"}},
            {"mediaType": "m", "digest": format!("sha256:{}", "b".repeat(64)), "size": 1, "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
            {"mediaType": "m", "digest": format!("sha256:{}", "c".repeat(64)), "size": 1, "platform": {"os": "unknown", "architecture": "unknown"}},
        ]});
        let m =
            crate::manifest::Manifest::parse(bytes::Bytes::from(doc.to_string()), None).unwrap();
        assert_eq!(
            super::index_platforms(&m),
            ["linux/amd64", "linux/arm64/v8"]
        );
    }
}
