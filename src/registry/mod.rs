//! registry: the one narrow seam every image store sits behind (manifest head/get/put, blob head/get/put/mount, tags, referrers).
//!
//! Two stores implement it: [`http::HttpRepo`] speaks the OCI distribution API, and
//! [`ocidir::LayoutRepo`] reads and writes an OCI image layout on disk. The copy engine only
//! ever sees [`Repo`], and unit tests can put a fake behind it.

pub mod http;
pub mod memo;
pub mod memory;
pub mod ocidir;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

use crate::digest::Digest;
use crate::manifest::Manifest;
use crate::reference::{Repository, Tag};
pub use crate::registry_error::RegistryError;

/// A stream of blob bytes. Producers yield errors to abort a transfer midway.
pub type BlobStream = BoxStream<'static, Result<Bytes, RegistryError>>;

/// How a manifest is addressed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ManifestRef {
    /// By tag: may move.
    Tag(Tag),
    /// By digest: immutable.
    Digest(Digest),
}

impl std::fmt::Display for ManifestRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ManifestRef::Tag(t) => f.write_str(t.as_str()),
            ManifestRef::Digest(d) => f.write_str(d.as_str()),
        }
    }
}

/// What a manifest HEAD tells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestInfo {
    /// The manifest's digest.
    pub digest: Digest,
    /// Its media type, when the store says.
    pub media_type: Option<String>,
    /// Its size in bytes, when the store says.
    pub size: Option<u64>,
}

/// Whether a cross-repository mount happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mount {
    /// The blob is now in the repository.
    Mounted,
    /// The store declined (HTTP 202, or unsupported); upload instead.
    Refused,
}

/// A result from a store.
pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// Counters a store keeps, for reports and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RepoStats {
    /// Requests sent to the registry (not counting the token server).
    pub requests: u64,
    /// Token requests sent to the token server.
    pub token_requests: u64,
}

/// One repository in one store: the seam between the copy engine and the world.
#[async_trait]
pub trait Repo: Send + Sync {
    /// A name for messages: `host/repo` or `ocidir://path`.
    fn name(&self) -> String;

    /// Which registry, if any, and repository this is, for cross-repository mounts.
    fn mount_key(&self) -> Option<(String, Repository)>;

    /// Whether a mount from this very repository answers "is the blob here?" in the same
    /// request that opens the upload when it is not (201: present; 202: an upload session the
    /// next [`Repo::blob_put`] uses), so a blob this run knows nothing about costs no HEAD. Only
    /// where the registry is known to implement mounts: where it does not, a 202 would hide a
    /// blob that is present and it would be sent again.
    fn probes_by_mount(&self) -> bool {
        false
    }

    /// Looks a manifest up without fetching it; `None` if absent.
    async fn manifest_head(&self, r: &ManifestRef) -> Result<Option<ManifestInfo>>;

    /// Fetches a manifest. By digest, the bytes are verified against it.
    /// `extra_accept` adds a media type (an index entry's unknown type) to the Accept list.
    async fn manifest_get(&self, r: &ManifestRef, extra_accept: Option<&str>) -> Result<Manifest>;

    /// Stores a manifest's exact bytes under a digest or a tag.
    async fn manifest_put(&self, r: &ManifestRef, m: &Manifest) -> Result<()>;

    /// Keeps an image stored by digest only reachable: an OCI layout lists it in `index.json`
    /// without a name (as skopeo's `oci:DIR` does); a registry needs nothing.
    async fn keep_untagged(&self, _m: &Manifest) -> Result<()> {
        Ok(())
    }

    /// The blob's size, or `None` if absent.
    async fn blob_head(&self, d: &Digest) -> Result<Option<u64>>;

    /// Streams a blob's bytes, unverified: the reader verifies as it goes.
    async fn blob_get(&self, d: &Digest) -> Result<BlobStream>;

    /// Streams a blob's bytes from `offset` on (to resume a cut download), unverified. Returns
    /// the stream and where it starts: `offset` where the store can seek (a registry that serves
    /// `Range`, a file), or 0 when it sends the whole blob instead (the default). The reader
    /// keeps hashing across the resume, so it never takes the tail on trust.
    async fn blob_get_from(&self, d: &Digest, offset: u64) -> Result<(BlobStream, u64)> {
        let _ = offset;
        Ok((self.blob_get(d).await?, 0))
    }

    /// Uploads a blob from a stream of exactly `size` bytes that must hash to `d`.
    async fn blob_put(&self, d: &Digest, size: u64, body: BlobStream) -> Result<()>;

    /// Asks the store to link a blob from another repository of the same registry.
    async fn blob_mount(&self, d: &Digest, from: &Repository) -> Result<Mount>;

    /// Every tag in the repository.
    async fn tags_list(&self) -> Result<Vec<Tag>>;

    /// Deletes a tag (the manifest stays) or a manifest by digest (at most registries, with
    /// every tag that names it). `Ok(false)` when it was already gone; a store that cannot
    /// delete this says [`RegistryError::Unsupported`].
    async fn delete(&self, r: &ManifestRef) -> Result<bool> {
        Err(RegistryError::Unsupported {
            place: self.name(),
            what: format!("delete {}", deletable(r)),
            detail: "this store has no deletes".into(),
        })
    }

    /// The referrers index of a manifest, or `None` where the API is not supported.
    async fn referrers(&self, d: &Digest) -> Result<Option<Manifest>>;

    /// Counters so far.
    fn stats(&self) -> RepoStats;

    /// Offered a small blob [`read_small_blob`] read and verified; a [`memo::Memo`] keeps it.
    fn remember_blob(&self, _d: &Digest, _bytes: &Bytes) {}
}

/// `a tag alone` or `manifests`: what a delete of `r` asks for, in messages.
pub fn deletable(r: &ManifestRef) -> &'static str {
    match r {
        ManifestRef::Tag(_) => "a tag alone",
        ManifestRef::Digest(_) => "manifests",
    }
}

/// A small blob (a config, an attestation) read whole, up to `cap` bytes, and verified against
/// its digest before anyone looks at it.
pub async fn read_small_blob(
    repo: &dyn Repo,
    d: &crate::manifest::Descriptor,
    cap: usize,
) -> Result<Bytes> {
    use futures::TryStreamExt;
    if d.size as usize > cap {
        return Err(RegistryError::Protocol {
            host: repo.name(),
            detail: format!(
                "blob {} is {} bytes, over the {cap}-byte cap",
                d.digest, d.size
            ),
        });
    }
    let mut stream = repo.blob_get(&d.digest).await?;
    let mut buf = Vec::with_capacity(d.size as usize);
    let mut h = crate::digest::Hasher::new();
    while let Some(chunk) = stream.try_next().await? {
        if buf.len() + chunk.len() > cap {
            return Err(RegistryError::SizeMismatch {
                digest: d.digest.clone(),
                expected: d.size,
                actual: (buf.len() + chunk.len()) as u64,
            });
        }
        h.update(&chunk);
        buf.extend_from_slice(&chunk);
    }
    let actual = h.finish();
    if actual != d.digest {
        return Err(RegistryError::DigestMismatch {
            expected: d.digest.clone(),
            actual,
            len: buf.len() as u64,
        });
    }
    let bytes = Bytes::from(buf);
    repo.remember_blob(&d.digest, &bytes);
    Ok(bytes)
}
