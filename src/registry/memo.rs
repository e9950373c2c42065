//! registry::memo: a read-through memo in front of a source store for one run, so that the gates and the copy read each manifest, referrers list and evidence blob once.
//!
//! A promotion with `require:` discovers the image's attachments for its gates, then again for
//! the copy. Wrapped in [`Memo`], the second pass is answered from memory: manifests (by digest
//! and by tag, a tag that does not exist included), referrers indexes, and the small blobs
//! [`super::read_small_blob`] verified. Everything else goes straight through. It lives as long as
//! one run: within it, a tag means what it meant when first read.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;

use super::{BlobStream, ManifestInfo, ManifestRef, Mount, Repo, RepoStats, Result};
use crate::digest::Digest;
use crate::manifest::Manifest;
use crate::reference::{Repository, Tag};
use crate::registry_error::RegistryError;

/// A manifest read, or the not-found answer (`what`, `place`) to give again.
type Read = std::result::Result<Manifest, (String, String)>;

/// A source store whose reads are remembered for the run.
pub struct Memo {
    inner: Arc<dyn Repo>,
    manifests: Mutex<HashMap<String, Read>>,
    referrers: Mutex<HashMap<Digest, Option<Manifest>>>,
    blobs: Mutex<HashMap<Digest, Bytes>>,
}

impl Memo {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Repo>) -> Memo {
        Memo {
            inner,
            manifests: Mutex::default(),
            referrers: Mutex::default(),
            blobs: Mutex::default(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[async_trait]
impl Repo for Memo {
    fn name(&self) -> String {
        self.inner.name()
    }

    fn mount_key(&self) -> Option<(String, Repository)> {
        self.inner.mount_key()
    }

    async fn manifest_head(&self, r: &ManifestRef) -> Result<Option<ManifestInfo>> {
        self.inner.manifest_head(r).await
    }

    async fn manifest_get(&self, r: &ManifestRef, extra_accept: Option<&str>) -> Result<Manifest> {
        let key = r.to_string();
        if let Some(read) = lock(&self.manifests).get(&key) {
            return read
                .clone()
                .map_err(|(what, place)| RegistryError::NotFound { what, place });
        }
        let read = match self.inner.manifest_get(r, extra_accept).await {
            Ok(m) => Ok(m),
            Err(RegistryError::NotFound { what, place }) if matches!(r, ManifestRef::Tag(_)) => {
                Err((what, place))
            }
            Err(e) => return Err(e),
        };
        lock(&self.manifests).insert(key, read.clone());
        read.map_err(|(what, place)| RegistryError::NotFound { what, place })
    }

    async fn manifest_put(&self, r: &ManifestRef, m: &Manifest) -> Result<()> {
        self.inner.manifest_put(r, m).await
    }

    async fn blob_head(&self, d: &Digest) -> Result<Option<u64>> {
        self.inner.blob_head(d).await
    }

    async fn blob_get(&self, d: &Digest) -> Result<BlobStream> {
        if let Some(b) = lock(&self.blobs).get(d).cloned() {
            return Ok(Box::pin(futures::stream::once(async move { Ok(b) })));
        }
        self.inner.blob_get(d).await
    }

    async fn blob_get_from(&self, d: &Digest, offset: u64) -> Result<(BlobStream, u64)> {
        if offset == 0 || lock(&self.blobs).contains_key(d) {
            return Ok((self.blob_get(d).await?, 0));
        }
        self.inner.blob_get_from(d, offset).await
    }

    async fn blob_put(&self, d: &Digest, size: u64, body: BlobStream) -> Result<()> {
        self.inner.blob_put(d, size, body).await
    }

    async fn blob_mount(&self, d: &Digest, from: &Repository) -> Result<Mount> {
        self.inner.blob_mount(d, from).await
    }

    async fn tags_list(&self) -> Result<Vec<Tag>> {
        self.inner.tags_list().await
    }

    async fn delete(&self, r: &ManifestRef) -> Result<bool> {
        self.inner.delete(r).await
    }

    async fn referrers(&self, d: &Digest) -> Result<Option<Manifest>> {
        if let Some(r) = lock(&self.referrers).get(d) {
            return Ok(r.clone());
        }
        let r = self.inner.referrers(d).await?;
        lock(&self.referrers).insert(d.clone(), r.clone());
        Ok(r)
    }

    fn remember_blob(&self, d: &Digest, bytes: &Bytes) {
        lock(&self.blobs).insert(d.clone(), bytes.clone());
    }

    fn stats(&self) -> RepoStats {
        self.inner.stats()
    }
}
