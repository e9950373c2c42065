//! registry::ocidir: an OCI image layout on disk as a store — blobs written to a temp file, verified, then renamed; tags live in `index.json`, replaced atomically.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use super::{BlobStream, ManifestInfo, ManifestRef, Mount, RegistryError, Repo, RepoStats, Result};
use crate::digest::{Digest, Hasher};
use crate::manifest::{self, Manifest};
use crate::reference::{Repository, Tag};

/// The annotation that names a tag in `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// An OCI image layout directory.
pub struct LayoutRepo {
    root: PathBuf,
    index_lock: Arc<tokio::sync::Mutex<()>>,
    requests: AtomicU64,
}

/// One lock per layout path in this process, so concurrent writers of `index.json` do not lose entries.
fn lock_for(root: &Path) -> Arc<tokio::sync::Mutex<()>> {
    static LOCKS: OnceLock<Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>> = OnceLock::new();
    let key = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    LOCKS
        .get_or_init(Default::default)
        .lock()
        .expect("layout locks")
        .entry(key)
        .or_default()
        .clone()
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> RegistryError + '_ {
    move |source| RegistryError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl LayoutRepo {
    /// Opens a layout at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        LayoutRepo {
            index_lock: lock_for(&root),
            root,
            requests: AtomicU64::new(0),
        }
    }

    fn blob_path(&self, d: &Digest) -> PathBuf {
        // Digest is validated: its hex is safe as a file name.
        self.root.join("blobs").join(d.algorithm()).join(d.hex())
    }

    fn index_path(&self) -> PathBuf {
        self.root.join("index.json")
    }

    async fn read_index(&self) -> Result<Value> {
        let path = self.index_path();
        match tokio::fs::read(&path).await {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| RegistryError::Io {
                path: path.display().to_string(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Ok(json!({"schemaVersion": 2, "mediaType": manifest::OCI_INDEX, "manifests": []}))
            }
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// The `index.json` entry for a tag.
    async fn find_tag(&self, tag: &Tag) -> Result<Option<(Digest, Option<String>, Option<u64>)>> {
        let index = self.read_index().await?;
        let entry = index["manifests"]
            .as_array()
            .into_iter()
            .flatten()
            .rev()
            .find(|e| e["annotations"][REF_NAME].as_str() == Some(tag.as_str()));
        let Some(e) = entry else { return Ok(None) };
        let digest = Digest::parse(e["digest"].as_str().unwrap_or_default()).map_err(|err| {
            RegistryError::Io {
                path: self.index_path().display().to_string(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, err),
            }
        })?;
        Ok(Some((
            digest,
            e["mediaType"].as_str().map(str::to_owned),
            e["size"].as_u64(),
        )))
    }

    /// For a tag that is not here: what is (no directory, no layout, or the tags it has).
    async fn what_is_here(&self) -> String {
        if tokio::fs::metadata(&self.root).await.is_err() {
            return "no such directory".into();
        }
        if tokio::fs::metadata(self.index_path()).await.is_err() {
            return "not an OCI image layout: it has no index.json".into();
        }
        let tags = self.tags_list().await.unwrap_or_default();
        // Attachments' tags (cosign's `sha256-HEX.sig`, fallback indexes) are not images to name.
        let mut names: Vec<&str> = tags
            .iter()
            .map(Tag::as_str)
            .filter(|t| !t.starts_with("sha256-"))
            .collect();
        if names.is_empty() {
            return "the layout has no image tags".into();
        }
        const SHOWN: usize = 10;
        names.sort_unstable();
        names.dedup();
        let more = names.len().saturating_sub(SHOWN);
        names.truncate(SHOWN);
        let mut text = format!("its tags: {}", names.join(", "));
        if more > 0 {
            text.push_str(&format!(" and {more} more"));
        }
        text
    }

    async fn ensure_layout(&self) -> Result<()> {
        let blobs = self.root.join("blobs").join("sha256");
        tokio::fs::create_dir_all(&blobs)
            .await
            .map_err(io_err(&blobs))?;
        let marker = self.root.join("oci-layout");
        if tokio::fs::metadata(&marker).await.is_err() {
            write_atomic(&marker, br#"{"imageLayoutVersion":"1.0.0"}"#).await?;
        }
        Ok(())
    }

    async fn write_blob_bytes(&self, d: &Digest, bytes: &[u8]) -> Result<()> {
        self.ensure_layout().await?;
        let path = self.blob_path(d);
        if tokio::fs::metadata(&path).await.is_ok() {
            return Ok(());
        }
        write_atomic(&path, bytes).await
    }
}

/// Writes a file through a temp file in the same directory and a rename, so readers never see half a file.
async fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let bytes = bytes.to_vec();
    let target = path.to_path_buf();
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(io_err(&dir))?;
        tmp.write_all(&bytes).map_err(io_err(&target))?;
        tmp.as_file().sync_all().map_err(io_err(&target))?;
        tmp.persist(&target).map_err(|e| io_err(&target)(e.error))?;
        Ok(())
    })
    .await
    .map_err(|e| RegistryError::Io {
        path: path.display().to_string(),
        source: std::io::Error::other(e),
    })?
}

#[async_trait]
impl Repo for LayoutRepo {
    fn name(&self) -> String {
        format!("{}{}", crate::reference::OCIDIR_PREFIX, self.root.display())
    }

    fn mount_key(&self) -> Option<(String, Repository)> {
        None
    }

    async fn manifest_head(&self, r: &ManifestRef) -> Result<Option<ManifestInfo>> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        match r {
            ManifestRef::Tag(t) => {
                Ok(self
                    .find_tag(t)
                    .await?
                    .map(|(digest, media_type, size)| ManifestInfo {
                        digest,
                        media_type,
                        size,
                    }))
            }
            ManifestRef::Digest(d) => match tokio::fs::metadata(self.blob_path(d)).await {
                Ok(m) => Ok(Some(ManifestInfo {
                    digest: d.clone(),
                    media_type: None,
                    size: Some(m.len()),
                })),
                Err(_) => Ok(None),
            },
        }
    }

    async fn manifest_get(&self, r: &ManifestRef, _extra_accept: Option<&str>) -> Result<Manifest> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let (digest, media_type) = match r {
            ManifestRef::Tag(t) => match self.find_tag(t).await? {
                Some((d, mt, _)) => (d, mt),
                None => {
                    return Err(RegistryError::NotFound {
                        what: format!("tag {t}"),
                        place: format!("{} ({})", self.name(), self.what_is_here().await),
                    })
                }
            },
            ManifestRef::Digest(d) => (d.clone(), None),
        };
        let path = self.blob_path(&digest);
        let bytes = match tokio::fs::read(&path).await {
            Ok(b) => Bytes::from(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(RegistryError::NotFound {
                    what: format!("manifest {digest}"),
                    place: self.name(),
                })
            }
            Err(e) => return Err(io_err(&path)(e)),
        };
        let actual = Digest::of(&bytes);
        if actual != digest {
            return Err(RegistryError::DigestMismatch {
                expected: digest,
                actual,
                len: bytes.len() as u64,
            });
        }
        Ok(Manifest::parse(bytes, media_type.as_deref())?)
    }

    async fn manifest_put(&self, r: &ManifestRef, m: &Manifest) -> Result<()> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.write_blob_bytes(&m.digest, &m.bytes).await?;
        let ManifestRef::Tag(tag) = r else {
            return Ok(());
        };
        let _guard = self.index_lock.lock().await;
        let mut index = self.read_index().await?;
        let entries = index["manifests"]
            .as_array_mut()
            .ok_or_else(|| RegistryError::Io {
                path: self.index_path().display().to_string(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "index.json has no manifests array",
                ),
            })?;
        entries.retain(|e| e["annotations"][REF_NAME].as_str() != Some(tag.as_str()));
        entries.push(json!({
            "mediaType": m.media_type,
            "digest": m.digest.as_str(),
            "size": m.bytes.len(),
            "annotations": { REF_NAME: tag.as_str() },
        }));
        let bytes = serde_json::to_vec_pretty(&index).expect("json value serialises");
        write_atomic(&self.index_path(), &bytes).await
    }

    async fn keep_untagged(&self, m: &Manifest) -> Result<()> {
        let _guard = self.index_lock.lock().await;
        let mut index = self.read_index().await?;
        let Some(entries) = index["manifests"].as_array_mut() else {
            return Err(RegistryError::Io {
                path: self.index_path().display().to_string(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "index.json has no manifests array",
                ),
            });
        };
        if entries
            .iter()
            .any(|e| e["digest"].as_str() == Some(m.digest.as_str()))
        {
            return Ok(());
        }
        entries.push(json!({
            "mediaType": m.media_type,
            "digest": m.digest.as_str(),
            "size": m.bytes.len(),
        }));
        let bytes = serde_json::to_vec_pretty(&index).expect("json value serialises");
        write_atomic(&self.index_path(), &bytes).await
    }

    async fn blob_head(&self, d: &Digest) -> Result<Option<u64>> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        Ok(tokio::fs::metadata(self.blob_path(d))
            .await
            .ok()
            .map(|m| m.len()))
    }

    async fn blob_get(&self, d: &Digest) -> Result<BlobStream> {
        Ok(self.blob_get_from(d, 0).await?.0)
    }

    async fn blob_get_from(&self, d: &Digest, offset: u64) -> Result<(BlobStream, u64)> {
        use tokio::io::AsyncSeekExt;
        self.requests.fetch_add(1, Ordering::Relaxed);
        let path = self.blob_path(d);
        let mut file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(RegistryError::NotFound {
                    what: format!("blob {d}"),
                    place: self.name(),
                })
            }
            Err(e) => return Err(io_err(&path)(e)),
        };
        if offset > 0 {
            file.seek(std::io::SeekFrom::Start(offset))
                .await
                .map_err(io_err(&path))?;
        }
        let shown = path.display().to_string();
        let stream = tokio_util::io::ReaderStream::with_capacity(file, 256 << 10)
            .map(move |r| {
                r.map_err(|source| RegistryError::Io {
                    path: shown.clone(),
                    source,
                })
            })
            .boxed();
        Ok((stream, offset))
    }

    async fn blob_put(&self, d: &Digest, size: u64, mut body: BlobStream) -> Result<()> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.ensure_layout().await?;
        let target = self.blob_path(d);
        let dir = target
            .parent()
            .expect("blob path has a parent")
            .to_path_buf();
        let tmp = tempfile::Builder::new()
            .prefix(".upload-")
            .tempfile_in(&dir)
            .map_err(io_err(&dir))?;
        let (std_file, tmp_path) = tmp.into_parts();
        let mut file = tokio::fs::File::from_std(std_file);
        let mut hasher = Hasher::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            hasher.update(&chunk);
            file.write_all(&chunk).await.map_err(io_err(&target))?;
        }
        file.sync_all().await.map_err(io_err(&target))?;
        let len = hasher.len();
        let actual = hasher.finish();
        if actual != *d {
            return Err(RegistryError::DigestMismatch {
                expected: d.clone(),
                actual,
                len,
            });
        }
        if len != size {
            return Err(RegistryError::SizeMismatch {
                digest: d.clone(),
                expected: size,
                actual: len,
            });
        }
        tmp_path
            .persist(&target)
            .map_err(|e| io_err(&target)(e.error))?;
        Ok(())
    }

    async fn blob_mount(&self, _d: &Digest, _from: &Repository) -> Result<Mount> {
        Ok(Mount::Refused)
    }

    async fn tags_list(&self) -> Result<Vec<Tag>> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let index = self.read_index().await?;
        Ok(index["manifests"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["annotations"][REF_NAME].as_str())
            .filter_map(|t| Tag::parse(t).ok())
            .collect())
    }

    async fn delete(&self, r: &ManifestRef) -> Result<bool> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let _guard = self.index_lock.lock().await;
        let mut index = self.read_index().await?;
        let Some(entries) = index["manifests"].as_array_mut() else {
            return Ok(false);
        };
        let before = entries.len();
        // A tag: its entry. A manifest: every entry naming it, tagged or not (as a registry
        // deletes a manifest with its tags). Blobs stay: other images may share them.
        entries.retain(|e| match r {
            ManifestRef::Tag(t) => e["annotations"][REF_NAME].as_str() != Some(t.as_str()),
            ManifestRef::Digest(d) => e["digest"].as_str() != Some(d.as_str()),
        });
        if entries.len() == before {
            return Ok(false);
        }
        let bytes = serde_json::to_vec_pretty(&index).expect("json value serialises");
        write_atomic(&self.index_path(), &bytes).await?;
        Ok(true)
    }

    async fn referrers(&self, _d: &Digest) -> Result<Option<Manifest>> {
        Ok(None)
    }

    fn stats(&self) -> RepoStats {
        RepoStats {
            requests: self.requests.load(Ordering::Relaxed),
            token_requests: 0,
        }
    }
}
