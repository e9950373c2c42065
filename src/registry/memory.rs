//! registry::memory: a registry held in memory behind the `Repo` seam, with a log of every write and failures on demand, so orchestration (promote, rollback, mirror) can be unit-tested in-process.
//!
//! It behaves as a well-behaved OCI registry would: blobs are verified against their digests
//! before they count, manifests are kept as the exact bytes given, a manifest put by digest
//! must hash to it, tags point at stored manifests, and mounts link blobs between repositories
//! of the same registry. It is not a protocol proof: the integration tests run real registries.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;

use super::{BlobStream, ManifestInfo, ManifestRef, Mount, Repo, RepoStats, Result};
use crate::digest::{Digest, Hasher};
use crate::manifest::Manifest;
use crate::reference::{Repository, Tag};
use crate::registry_error::RegistryError;

/// One write the registry took (or refused), in the order it came.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write {
    /// The repository.
    pub repository: String,
    /// What: `blob`, `mount`, `manifest` (by digest) or `tag`.
    pub kind: WriteKind,
    /// The digest, or the tag's name.
    pub what: String,
    /// False when the registry refused it (a failure asked for with [`MemoryRegistry::fail`]).
    pub done: bool,
}

/// Kinds of [`Write`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteKind {
    /// A blob upload.
    Blob,
    /// A blob linked from another repository.
    Mount,
    /// A manifest put by digest.
    Manifest,
    /// A tag or manifest deleted.
    Delete,
    /// A tag put (or moved).
    Tag,
}

/// Decides whether a write is refused.
type FailRule = Box<dyn Fn(&Write) -> bool + Send + Sync>;

#[derive(Default)]
struct Repository_ {
    blobs: HashSet<Digest>,
    manifests: HashMap<Digest, Manifest>,
    tags: BTreeMap<String, Digest>,
}

#[derive(Default)]
struct State {
    blob_bytes: HashMap<Digest, Bytes>,
    repos: HashMap<String, Repository_>,
    writes: Vec<Write>,
    /// Blob GETs, per digest.
    reads: HashMap<Digest, usize>,
    requests: u64,
}

/// A registry in memory: repositories, a write log and failure rules.
pub struct MemoryRegistry {
    host: String,
    state: Mutex<State>,
    fail: Mutex<Vec<FailRule>>,
}

impl std::fmt::Debug for MemoryRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryRegistry")
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

impl MemoryRegistry {
    /// An empty registry answering as `host`.
    pub fn new(host: &str) -> Arc<Self> {
        Arc::new(MemoryRegistry {
            host: host.to_owned(),
            state: Mutex::default(),
            fail: Mutex::default(),
        })
    }

    /// The host it answers as.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Refuses every write `rule` matches (as a registry's 500 would), from now on.
    pub fn fail(&self, rule: impl Fn(&Write) -> bool + Send + Sync + 'static) {
        self.lock_fail().push(Box::new(rule));
    }

    /// Drops every fail rule: the registry accepts writes again.
    pub fn heal(&self) {
        self.lock_fail().clear();
    }

    /// Every write so far, in order.
    pub fn writes(&self) -> Vec<Write> {
        self.lock().writes.clone()
    }

    /// How many times each blob's bytes were read (GET), over all repositories.
    pub fn reads(&self) -> HashMap<Digest, usize> {
        self.lock().reads.clone()
    }

    /// Where a tag points in a repository.
    pub fn tag(&self, repository: &str, tag: &str) -> Option<Digest> {
        self.lock().repos.get(repository)?.tags.get(tag).cloned()
    }

    /// Points a tag at a stored manifest, as another writer would (a promotion racing a prune).
    pub fn set_tag(&self, repository: &str, tag: &str, digest: &Digest) {
        if let Some(r) = self.lock().repos.get_mut(repository) {
            r.tags.insert(tag.to_owned(), digest.clone());
        }
    }

    /// Whether a repository holds a manifest and every blob and child it names, recursively.
    pub fn complete(&self, repository: &str, digest: &Digest) -> bool {
        self.graph(repository, digest).is_some()
    }

    /// The digests of a manifest, its children and their blobs as the repository holds them;
    /// `None` if any is missing.
    pub fn graph(&self, repository: &str, digest: &Digest) -> Option<HashSet<Digest>> {
        let state = self.lock();
        let repo = state.repos.get(repository)?;
        let mut seen = HashSet::new();
        let mut todo = vec![digest.clone()];
        while let Some(d) = todo.pop() {
            let m = repo.manifests.get(&d)?;
            for b in &m.blobs {
                if !repo.blobs.contains(&b.digest) {
                    return None;
                }
                seen.insert(b.digest.clone());
            }
            todo.extend(m.children.iter().map(|c| c.digest.clone()));
            seen.insert(d);
        }
        Some(seen)
    }

    /// A store for one repository.
    pub fn repo(self: &Arc<Self>, repository: &Repository) -> Arc<dyn Repo> {
        Arc::new(MemoryRepo {
            registry: self.clone(),
            repository: repository.clone(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_fail(&self) -> std::sync::MutexGuard<'_, Vec<FailRule>> {
        self.fail.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Logs a write; `Err` when a failure rule refuses it.
    fn write(&self, repository: &str, kind: WriteKind, what: &str) -> Result<()> {
        let mut w = Write {
            repository: repository.to_owned(),
            kind,
            what: what.to_owned(),
            done: true,
        };
        let refused = self.lock_fail().iter().any(|rule| rule(&w));
        w.done = !refused;
        self.lock().writes.push(w);
        if refused {
            return Err(RegistryError::Status {
                host: self.host.clone(),
                method: "PUT".into(),
                path: format!("/v2/{repository}/{what}"),
                status: 500,
                detail: "refused by the test".into(),
            });
        }
        Ok(())
    }
}

struct MemoryRepo {
    registry: Arc<MemoryRegistry>,
    repository: Repository,
}

impl MemoryRepo {
    fn not_found(&self, what: String) -> RegistryError {
        RegistryError::NotFound {
            what,
            place: self.name(),
        }
    }

    fn count(&self) {
        self.registry.lock().requests += 1;
    }

    /// A request for a blob's bytes, when this repository has it.
    fn blob(&self, d: &Digest) -> Option<Bytes> {
        self.count();
        let state = self.registry.lock();
        let here = state.repos.get(self.repository.as_str())?;
        here.blobs.contains(d).then(|| state.blob_bytes[d].clone())
    }
}

#[async_trait]
impl Repo for MemoryRepo {
    fn name(&self) -> String {
        format!("{}/{}", self.registry.host, self.repository)
    }

    fn mount_key(&self) -> Option<(String, Repository)> {
        Some((self.registry.host.clone(), self.repository.clone()))
    }

    async fn manifest_head(&self, r: &ManifestRef) -> Result<Option<ManifestInfo>> {
        self.count();
        let state = self.registry.lock();
        let Some(repo) = state.repos.get(self.repository.as_str()) else {
            return Ok(None);
        };
        let digest = match r {
            ManifestRef::Tag(t) => repo.tags.get(t.as_str()),
            ManifestRef::Digest(d) => repo.manifests.contains_key(d).then_some(d),
        };
        Ok(digest.map(|d| {
            let m = &repo.manifests[d];
            ManifestInfo {
                digest: d.clone(),
                media_type: Some(m.media_type.clone()),
                size: Some(m.bytes.len() as u64),
            }
        }))
    }

    async fn manifest_get(&self, r: &ManifestRef, _extra_accept: Option<&str>) -> Result<Manifest> {
        self.count();
        let state = self.registry.lock();
        let repo = state.repos.get(self.repository.as_str());
        let digest = match r {
            ManifestRef::Tag(t) => repo.and_then(|repo| repo.tags.get(t.as_str())),
            ManifestRef::Digest(d) => Some(d),
        };
        digest
            .and_then(|d| repo?.manifests.get(d))
            .cloned()
            .ok_or_else(|| self.not_found(format!("manifest {r}")))
    }

    async fn manifest_put(&self, r: &ManifestRef, m: &Manifest) -> Result<()> {
        self.count();
        let repository = self.repository.as_str();
        match r {
            ManifestRef::Digest(d) => {
                if Digest::of(&m.bytes) != *d {
                    return Err(RegistryError::DigestMismatch {
                        expected: d.clone(),
                        actual: Digest::of(&m.bytes),
                        len: m.bytes.len() as u64,
                    });
                }
                self.registry
                    .write(repository, WriteKind::Manifest, d.as_str())?;
            }
            ManifestRef::Tag(t) => self
                .registry
                .write(repository, WriteKind::Tag, t.as_str())?,
        }
        let mut state = self.registry.lock();
        let repo = state.repos.entry(repository.to_owned()).or_default();
        // As registries do: what a manifest names must be there first.
        if let Some(missing) = m
            .blobs
            .iter()
            .map(|b| &b.digest)
            .find(|d| !repo.blobs.contains(d))
            .or_else(|| {
                m.children
                    .iter()
                    .map(|c| &c.digest)
                    .find(|d| !repo.manifests.contains_key(d))
            })
        {
            return Err(RegistryError::Status {
                host: self.registry.host.clone(),
                method: "PUT".into(),
                path: format!("/v2/{repository}/manifests/{r}"),
                status: 400,
                detail: format!("MANIFEST_BLOB_UNKNOWN: {missing}"),
            });
        }
        repo.manifests.insert(m.digest.clone(), m.clone());
        if let ManifestRef::Tag(t) = r {
            repo.tags.insert(t.as_str().to_owned(), m.digest.clone());
        }
        Ok(())
    }

    async fn blob_head(&self, d: &Digest) -> Result<Option<u64>> {
        Ok(self.blob(d).map(|b| b.len() as u64))
    }

    async fn blob_get(&self, d: &Digest) -> Result<BlobStream> {
        let bytes = self
            .blob(d)
            .ok_or_else(|| self.not_found(format!("blob {d}")))?;
        *self.registry.lock().reads.entry(d.clone()).or_default() += 1;
        Ok(futures::stream::iter([Ok(bytes)]).boxed())
    }

    async fn blob_put(&self, d: &Digest, size: u64, mut body: BlobStream) -> Result<()> {
        self.count();
        let mut buf = Vec::with_capacity(size as usize);
        let mut h = Hasher::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            h.update(&chunk);
            buf.extend_from_slice(&chunk);
        }
        let actual = h.finish();
        if actual != *d || buf.len() as u64 != size {
            return Err(RegistryError::DigestMismatch {
                expected: d.clone(),
                actual,
                len: buf.len() as u64,
            });
        }
        self.registry
            .write(self.repository.as_str(), WriteKind::Blob, d.as_str())?;
        let mut state = self.registry.lock();
        state.blob_bytes.insert(d.clone(), Bytes::from(buf));
        state
            .repos
            .entry(self.repository.as_str().to_owned())
            .or_default()
            .blobs
            .insert(d.clone());
        Ok(())
    }

    async fn blob_mount(&self, d: &Digest, from: &Repository) -> Result<Mount> {
        self.count();
        let there = self
            .registry
            .lock()
            .repos
            .get(from.as_str())
            .is_some_and(|r| r.blobs.contains(d));
        if !there {
            return Ok(Mount::Refused);
        }
        self.registry
            .write(self.repository.as_str(), WriteKind::Mount, d.as_str())?;
        self.registry
            .lock()
            .repos
            .entry(self.repository.as_str().to_owned())
            .or_default()
            .blobs
            .insert(d.clone());
        Ok(Mount::Mounted)
    }

    async fn tags_list(&self) -> Result<Vec<Tag>> {
        self.count();
        let state = self.registry.lock();
        Ok(state
            .repos
            .get(self.repository.as_str())
            .map(|r| r.tags.keys().filter_map(|t| Tag::parse(t).ok()).collect())
            .unwrap_or_default())
    }

    async fn delete(&self, r: &ManifestRef) -> Result<bool> {
        self.count();
        let what = r.to_string();
        self.registry
            .write(self.repository.as_str(), WriteKind::Delete, &what)?;
        let mut state = self.registry.lock();
        let Some(repo) = state.repos.get_mut(self.repository.as_str()) else {
            return Ok(false);
        };
        // As distribution does: a manifest goes with every tag that names it.
        Ok(match r {
            ManifestRef::Tag(t) => repo.tags.remove(t.as_str()).is_some(),
            ManifestRef::Digest(d) => {
                repo.tags.retain(|_, v| v != d);
                repo.manifests.remove(d).is_some()
            }
        })
    }

    async fn referrers(&self, _d: &Digest) -> Result<Option<Manifest>> {
        self.count();
        // No referrers API: attachments go through `sha256-HEX` fallback tags, as at GHCR.
        Ok(None)
    }

    fn stats(&self) -> RepoStats {
        RepoStats {
            requests: self.registry.lock().requests,
            token_requests: 0,
        }
    }
}
