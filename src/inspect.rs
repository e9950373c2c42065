//! inspect: the read-only verbs over the registry seam — what an image is (`ferry inspect`), its digest alone (`ferry digest`) and a repository's tags (`ferry tags`).
//!
//! Nothing here writes, and nothing re-serialises a manifest: `--raw` is the bytes as served.
//! Printing is `report`'s; these functions return what was found.

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;

use crate::digest::Digest;
use crate::manifest::{Descriptor, Manifest, Platform};
use crate::reference::ImageRef;
use crate::referrers::{self, Filter, Found, BUILDKIT_REFERENCE_TYPE};
use crate::registry::{ManifestRef, RegistryError, Repo};

/// Why an image could not be inspected, beyond the store's own errors.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// The store failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// `--platform` on a single image.
    #[error(
        "--platform needs a multi-platform image, and {reference} ({digest}) is a single image"
    )]
    NotAnIndex {
        /// The image.
        reference: String,
        /// Its digest.
        digest: Digest,
    },
    /// No index entry for the platform asked for.
    #[error("{reference} has no manifest for platform {wanted} (it has {have})")]
    NoSuchPlatform {
        /// The image.
        reference: String,
        /// The platform asked for.
        wanted: Platform,
        /// The platforms it has, comma separated.
        have: String,
    },
}

impl InspectError {
    /// True for a mistake in what was asked (exit 2), not a failure to read (exit 1).
    pub fn is_usage(&self) -> bool {
        !matches!(self, InspectError::Registry(_))
    }
}

/// One platform of an index.
#[derive(Clone, Debug, Serialize)]
pub struct PlatformEntry {
    /// `os/arch[/variant]`; `None` for an entry that names no platform.
    pub platform: Option<String>,
    /// The child manifest's digest.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// Its size in bytes.
    pub size: u64,
}

/// A blob an image manifest names.
#[derive(Clone, Debug, Serialize)]
pub struct BlobEntry {
    /// Its digest.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// Its size in bytes.
    pub size: u64,
}

impl From<&Descriptor> for BlobEntry {
    fn from(d: &Descriptor) -> Self {
        BlobEntry {
            digest: d.digest.clone(),
            media_type: d.media_type.clone(),
            size: d.size,
        }
    }
}

/// How an attached artifact was found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttachmentKind {
    /// An OCI 1.1 referrer (the referrers API or the `sha256-HEX` fallback tag).
    Referrer,
    /// Under a cosign tag (`sha256-HEX.sig`, `.att`, `.sbom`).
    CosignTag,
    /// A BuildKit attestation manifest inside the index.
    BuildkitAttestation,
}

/// Something attached to the image: a signature, an attestation, an SBOM.
#[derive(Clone, Debug, Serialize)]
pub struct Attachment {
    /// How it was found.
    pub kind: AttachmentKind,
    /// The manifest it is attached to.
    pub subject: Digest,
    /// Its manifest's digest.
    pub digest: Digest,
    /// Its artifact type (`artifactType`, else its config's media type), when it says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Its manifest's media type.
    pub media_type: String,
    /// Its manifest's size.
    pub size: u64,
    /// The cosign tag it was found under.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

/// What `ferry inspect` found.
#[derive(Clone, Debug, Serialize)]
pub struct Inspection {
    /// The reference as resolved (`:latest` added when it named neither tag nor digest).
    pub reference: String,
    /// The manifest's digest.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// Its size in bytes.
    pub size: u64,
    /// When `--platform` chose this manifest from an index: the index's digest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<Digest>,
    /// For an index: each entry that is an image (BuildKit attestation manifests are attachments).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<PlatformEntry>,
    /// For an image manifest: its config.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<BlobEntry>,
    /// For an image manifest: its layers (or an artifact's blobs), in order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layers: Option<Vec<BlobEntry>>,
    /// For an image manifest: the layers' total size in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layers_size: Option<u64>,
    /// Signatures, attestations and SBOMs attached to it (and, for an index, to its entries).
    pub attachments: Vec<Attachment>,
    /// The manifest's bytes as served.
    #[serde(skip)]
    pub raw: Bytes,
}

/// The manifest a reference names (no tag and no digest: `:latest`).
fn manifest_ref(r: &ImageRef) -> ManifestRef {
    match (r.digest(), r.tag()) {
        (Some(d), _) => ManifestRef::Digest(d.clone()),
        (None, Some(t)) => ManifestRef::Tag(t.clone()),
        (None, None) => {
            ManifestRef::Tag(crate::reference::Tag::parse("latest").expect("latest is a valid tag"))
        }
    }
}

/// The platform an index entry names, as `os/arch[/variant]`.
fn platform_name(d: &Descriptor) -> Option<String> {
    d.platform.as_ref().map(ToString::to_string)
}

/// The manifest `r` names as served, or with `platform`, that platform's manifest in the index
/// `r` names (with the index's digest).
pub async fn fetch(
    repo: &dyn Repo,
    r: &ImageRef,
    platform: Option<&Platform>,
) -> Result<(Manifest, Option<Digest>), InspectError> {
    let root = repo.manifest_get(&manifest_ref(r), None).await?;
    let Some(wanted) = platform else {
        return Ok((root, None));
    };
    if !root.is_index() {
        return Err(InspectError::NotAnIndex {
            reference: r.to_string(),
            digest: root.digest,
        });
    }
    let Some(child) = root
        .children
        .iter()
        .find(|c| c.platform.as_ref().is_some_and(|p| wanted.matches(p)))
    else {
        let have: Vec<String> = root
            .children
            .iter()
            .filter_map(platform_name)
            .filter(|p| !p.starts_with("unknown/"))
            .collect();
        return Err(InspectError::NoSuchPlatform {
            reference: r.to_string(),
            wanted: wanted.clone(),
            have: have.join(", "),
        });
    };
    let m = repo
        .manifest_get(
            &ManifestRef::Digest(child.digest.clone()),
            Some(child.media_type.as_str()).filter(|t| !t.is_empty()),
        )
        .await?;
    Ok((m, Some(root.digest)))
}

/// Everything `ferry inspect` shows of the manifest `r` names (or of one platform's).
pub async fn inspect(
    repo: &dyn Repo,
    r: &ImageRef,
    platform: Option<&Platform>,
) -> Result<Inspection, InspectError> {
    let (m, index) = fetch(repo, r, platform).await?;
    let doc: Value = serde_json::from_slice(&m.bytes).unwrap_or(Value::Null);
    let entries = doc["manifests"].as_array().cloned().unwrap_or_default();
    let is_attestation = |i: usize| {
        entries.get(i).is_some_and(|e| {
            e["annotations"][BUILDKIT_REFERENCE_TYPE].as_str() == Some("attestation-manifest")
        })
    };
    let mut platforms = Vec::new();
    let mut attachments = Vec::new();
    for (i, c) in m.children.iter().enumerate() {
        if is_attestation(i) {
            let subject = entries[i]["annotations"]["vnd.docker.reference.digest"]
                .as_str()
                .and_then(|d| Digest::parse(d).ok())
                .unwrap_or_else(|| m.digest.clone());
            attachments.push(Attachment {
                kind: AttachmentKind::BuildkitAttestation,
                subject,
                digest: c.digest.clone(),
                artifact_type: None,
                media_type: c.media_type.clone(),
                size: c.size,
                tag: None,
            });
            continue;
        }
        platforms.push(PlatformEntry {
            platform: platform_name(c),
            digest: c.digest.clone(),
            media_type: c.media_type.clone(),
            size: c.size,
        });
    }
    let (config, layers, layers_size) = if m.is_index() {
        (None, None, None)
    } else {
        let has_config = doc.get("config").is_some();
        let mut blobs = m.blobs.iter();
        let config = if has_config { blobs.next() } else { None };
        let layers: Vec<BlobEntry> = blobs.map(BlobEntry::from).collect();
        let total = layers.iter().map(|l| l.size).sum();
        (config.map(BlobEntry::from), Some(layers), Some(total))
    };
    let found =
        referrers::discover(repo, &referrers::subjects(&m, false), &Filter::default()).await?;
    attachments.extend(found.into_iter().map(|a| Attachment {
        kind: match a.found {
            Found::Referrer => AttachmentKind::Referrer,
            Found::CosignTag(_) => AttachmentKind::CosignTag,
        },
        tag: match &a.found {
            Found::CosignTag(t) => Some(t.to_string()),
            Found::Referrer => None,
        },
        subject: a.subject,
        digest: a.manifest.digest.clone(),
        artifact_type: a.artifact_type,
        media_type: a.manifest.media_type.clone(),
        size: a.manifest.bytes.len() as u64,
    }));
    Ok(Inspection {
        reference: r.clone().or_latest().to_string(),
        digest: m.digest.clone(),
        media_type: m.media_type.clone(),
        size: m.bytes.len() as u64,
        index,
        platforms,
        config,
        layers,
        layers_size,
        attachments,
        raw: m.bytes,
    })
}

/// The digest of the manifest `r` names. By digest: checked to exist with one HEAD. By tag: one
/// HEAD, trusting the registry's `Docker-Content-Digest` (what `crane digest` does); the manifest
/// is fetched and hashed only when the HEAD gives no digest (the store does that) or the registry
/// does not answer HEAD.
pub async fn digest(repo: &dyn Repo, r: &ImageRef) -> Result<Digest, RegistryError> {
    let at = manifest_ref(r);
    let absent = || RegistryError::NotFound {
        what: format!("manifest {at}"),
        place: repo.name(),
    };
    match repo.manifest_head(&at).await {
        Ok(Some(info)) => {
            if let ManifestRef::Digest(d) = &at {
                if info.digest != *d {
                    return Err(RegistryError::DigestMismatch {
                        expected: d.clone(),
                        actual: info.digest,
                        len: info.size.unwrap_or(0),
                    });
                }
            }
            Ok(info.digest)
        }
        Ok(None) => Err(absent()),
        // A registry that refuses HEAD on manifests (405, 501, an odd 400): GET and hash.
        Err(RegistryError::Status { status, .. }) if matches!(status, 400 | 405 | 501) => {
            tracing::debug!(manifest = %at, status, "HEAD refused: fetching the manifest");
            Ok(repo.manifest_get(&at, None).await?.digest)
        }
        Err(e) => Err(e),
    }
}

/// What `ferry tags` found: skopeo list-tags' JSON shape.
#[derive(Clone, Debug, Serialize)]
pub struct TagList {
    /// The repository: `HOST/REPO` or `ocidir://PATH`.
    #[serde(rename = "Repository")]
    pub repository: String,
    /// Every tag, sorted (byte order), once each.
    #[serde(rename = "Tags")]
    pub tags: Vec<String>,
}

/// Every tag of the repository, following the registry's pages, sorted and without repeats.
pub async fn tags(repo: &dyn Repo) -> Result<TagList, RegistryError> {
    let mut tags: Vec<String> = repo
        .tags_list()
        .await?
        .into_iter()
        .map(|t| t.to_string())
        .collect();
    tags.sort();
    tags.dedup();
    Ok(TagList {
        repository: repo.name(),
        tags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reference_without_tag_or_digest_means_latest() {
        let r = ImageRef::parse("ghcr.io/acme/api").unwrap();
        assert_eq!(manifest_ref(&r).to_string(), "latest");
        let d = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
        let r = ImageRef::parse(&format!("ghcr.io/acme/api:v1@{d}")).unwrap();
        assert_eq!(manifest_ref(&r).to_string(), d);
    }
}
