//! manifest: media types, the Accept list, and reading descriptors out of raw manifest bytes without ever re-serialising them.

use std::fmt;

use bytes::Bytes;
use serde::Deserialize;

use crate::digest::Digest;

/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Docker manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image manifest v2 schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker schema 1 (refused).
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
/// Docker schema 1, signed (refused).
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// The `Accept` header for manifest requests: every type ferry copies, and no schema 1, so that
/// registries never convert on the fly (which would change the digest).
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// Largest manifest ferry reads by default: registries commonly refuse larger ones on push
/// (4 MiB); `max_manifest_bytes` in `registries.yaml` raises it per registry.
pub const MAX_MANIFEST_BYTES: usize = 4 << 20;

/// What can be wrong with a manifest.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Schema 1 manifests are obsolete and cannot be copied byte-exact.
    #[error("manifest is docker schema 1 ({0}), which ferry refuses: push it again with a current client")]
    Schema1(String),
    /// Not JSON, or fields of the wrong shape.
    #[error("manifest is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The body's `mediaType` and the `Content-Type` header disagree.
    #[error("manifest mediaType {body:?} differs from Content-Type {header:?}")]
    MediaTypeMismatch {
        /// From the body.
        body: String,
        /// From the header.
        header: String,
    },
    /// Neither the body nor the header says what it is.
    #[error("manifest has no media type")]
    NoMediaType,
    /// A descriptor's digest is not a strict sha256 digest.
    #[error("manifest names an invalid digest: {0}")]
    BadDigest(#[from] crate::digest::InvalidDigest),
}

/// A platform: `os/arch[/variant]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
pub struct Platform {
    /// `linux`, `windows`, `unknown` (attestations).
    pub os: String,
    /// `amd64`, `arm64`, ...
    pub architecture: String,
    /// `v7`, `v8`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// Parses `os/arch[/variant]`.
    pub fn parse(s: &str) -> Option<Platform> {
        let mut parts = s.split('/');
        let os = parts.next().filter(|p| !p.is_empty())?;
        let architecture = parts.next().filter(|p| !p.is_empty())?;
        let variant = parts.next().map(str::to_owned);
        if parts.next().is_some() || variant.as_deref() == Some("") {
            return None;
        }
        Some(Platform {
            os: os.to_owned(),
            architecture: architecture.to_owned(),
            variant,
        })
    }

    /// Whether an index entry's platform satisfies this wanted one (no variant wanted = any variant).
    pub fn matches(&self, have: &Platform) -> bool {
        self.os == have.os
            && self.architecture == have.architecture
            && (self.variant.is_none() || self.variant == have.variant)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// A content descriptor as found in a manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Descriptor {
    /// Media type of the target.
    pub media_type: String,
    /// Digest of the target.
    pub digest: Digest,
    /// Size of the target in bytes.
    pub size: u64,
    /// For index entries.
    pub platform: Option<Platform>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    #[serde(default)]
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default)]
    platform: Option<Platform>,
}

impl TryFrom<RawDescriptor> for Descriptor {
    type Error = ManifestError;
    fn try_from(r: RawDescriptor) -> Result<Self, ManifestError> {
        Ok(Descriptor {
            media_type: r.media_type,
            digest: Digest::parse(&r.digest)?,
            size: r.size,
            platform: r.platform,
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    #[serde(default)]
    schema_version: Option<u32>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<Vec<RawDescriptor>>,
    #[serde(default)]
    config: Option<RawDescriptor>,
    #[serde(default)]
    layers: Option<Vec<RawDescriptor>>,
    /// OCI 1.1-rc artifact manifests used `blobs`.
    #[serde(default)]
    blobs: Option<Vec<RawDescriptor>>,
}

/// A manifest's raw bytes with what was learnt about them. The bytes are what is copied.
#[derive(Clone, Debug)]
pub struct Manifest {
    /// The exact bytes as served; never re-serialised.
    pub bytes: Bytes,
    /// The media type (from the body, else the `Content-Type`).
    pub media_type: String,
    /// sha256 of `bytes`.
    pub digest: Digest,
    /// Child manifests, for an index.
    pub children: Vec<Descriptor>,
    /// Config and layers (or artifact blobs), for an image manifest.
    pub blobs: Vec<Descriptor>,
}

impl Manifest {
    /// Parses raw bytes. `content_type` is the response header, if any.
    pub fn parse(bytes: Bytes, content_type: Option<&str>) -> Result<Manifest, ManifestError> {
        let raw: RawManifest = serde_json::from_slice(&bytes)?;
        let header = content_type
            .map(|c| c.split(';').next().unwrap_or(c).trim().to_owned())
            .filter(|c| !c.is_empty());
        let is_schema1 = |t: &str| t == DOCKER_SCHEMA1 || t == DOCKER_SCHEMA1_SIGNED;
        if raw.schema_version == Some(1)
            || raw.media_type.as_deref().is_some_and(is_schema1)
            || header.as_deref().is_some_and(is_schema1)
        {
            let t = raw
                .media_type
                .clone()
                .or(header.clone())
                .unwrap_or_else(|| "schemaVersion 1".into());
            return Err(ManifestError::Schema1(t));
        }
        let media_type = match (&raw.media_type, &header) {
            (Some(body), Some(h)) if body != h && is_manifest_type(h) => {
                return Err(ManifestError::MediaTypeMismatch {
                    body: body.clone(),
                    header: h.clone(),
                })
            }
            (Some(body), _) => body.clone(),
            // OCI allows mediaType to be absent; guess from the shape, then the header.
            (None, _) if raw.manifests.is_some() => OCI_INDEX.to_owned(),
            (None, _) if raw.config.is_some() => OCI_MANIFEST.to_owned(),
            (None, Some(h)) => h.clone(),
            (None, None) => return Err(ManifestError::NoMediaType),
        };
        let children = raw
            .manifests
            .unwrap_or_default()
            .into_iter()
            .map(Descriptor::try_from)
            .collect::<Result<_, _>>()?;
        let mut blobs: Vec<Descriptor> = Vec::new();
        for d in raw
            .config
            .into_iter()
            .chain(raw.layers.unwrap_or_default())
            .chain(raw.blobs.unwrap_or_default())
        {
            blobs.push(d.try_into()?);
        }
        let digest = Digest::of(&bytes);
        Ok(Manifest {
            bytes,
            media_type,
            digest,
            children,
            blobs,
        })
    }

    /// True for an index / manifest list.
    pub fn is_index(&self) -> bool {
        !self.children.is_empty() || is_index_type(&self.media_type)
    }
}

/// Index-like media types.
pub fn is_index_type(t: &str) -> bool {
    t == OCI_INDEX || t == DOCKER_LIST
}

/// Media types that name a manifest (as opposed to a blob).
pub fn is_manifest_type(t: &str) -> bool {
    matches!(
        t,
        OCI_INDEX
            | OCI_MANIFEST
            | DOCKER_LIST
            | DOCKER_MANIFEST
            | DOCKER_SCHEMA1
            | DOCKER_SCHEMA1_SIGNED
    )
}

/// Builds a new index holding only the entries for `wanted` platforms, plus the attestation
/// manifests that refer to a kept entry. Everything else in the index is kept as it was; the
/// result is a new document with a new digest. Returns `None` if no entry matches.
pub fn filter_index(index: &Manifest, wanted: &[Platform]) -> Result<Option<Bytes>, ManifestError> {
    let mut doc: serde_json::Value = serde_json::from_slice(&index.bytes)?;
    let Some(entries) = doc.get_mut("manifests").and_then(|m| m.as_array_mut()) else {
        return Ok(None);
    };
    let platform_of = |e: &serde_json::Value| {
        e.get("platform")
            .and_then(|p| serde_json::from_value::<Platform>(p.clone()).ok())
    };
    let kept: Vec<String> = entries
        .iter()
        .filter(|e| platform_of(e).is_some_and(|p| wanted.iter().any(|w| w.matches(&p))))
        .filter_map(|e| e.get("digest").and_then(|d| d.as_str()).map(str::to_owned))
        .collect();
    if kept.is_empty() {
        return Ok(None);
    }
    entries.retain(|e| {
        let digest = e.get("digest").and_then(|d| d.as_str()).unwrap_or_default();
        let refers_to = e
            .pointer("/annotations/vnd.docker.reference.digest")
            .and_then(|d| d.as_str());
        kept.iter().any(|k| k == digest) || refers_to.is_some_and(|r| kept.iter().any(|k| k == r))
    });
    Ok(Some(Bytes::from(serde_json::to_vec(&doc)?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
    const D3: &str = "sha256:3333333333333333333333333333333333333333333333333333333333333333";

    fn index() -> Bytes {
        Bytes::from(format!(
            "{{ \"schemaVersion\" :2,\n\t\"mediaType\": \"{OCI_INDEX}\", \"manifests\": [\
             {{\"mediaType\":\"{OCI_MANIFEST}\",\"digest\":\"{D1}\",\"size\":10,\"platform\":{{\"os\":\"linux\",\"architecture\":\"amd64\"}}}},\
             {{\"mediaType\":\"{OCI_MANIFEST}\",\"digest\":\"{D2}\",\"size\":11,\"platform\":{{\"os\":\"linux\",\"architecture\":\"arm64\",\"variant\":\"v8\"}}}},\
             {{\"mediaType\":\"{OCI_MANIFEST}\",\"digest\":\"{D3}\",\"size\":12,\"platform\":{{\"os\":\"unknown\",\"architecture\":\"unknown\"}},\
               \"annotations\":{{\"vnd.docker.reference.digest\":\"{D2}\",\"vnd.docker.reference.type\":\"attestation-manifest\"}}}}]}}\r\n"
        ))
    }

    #[test]
    fn parses_index_children_and_keeps_bytes() {
        let bytes = index();
        let m = Manifest::parse(bytes.clone(), Some(OCI_INDEX)).unwrap();
        assert!(m.is_index());
        assert_eq!(m.children.len(), 3);
        assert_eq!(m.bytes, bytes);
        assert_eq!(m.digest, Digest::of(&bytes));
    }

    #[test]
    fn refuses_schema1_and_mismatch() {
        let s1 = Bytes::from_static(br#"{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[]}"#);
        assert!(matches!(
            Manifest::parse(s1, None),
            Err(ManifestError::Schema1(_))
        ));
        let m = Bytes::from(format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[]}}"#
        ));
        assert!(matches!(
            Manifest::parse(m, Some(DOCKER_LIST)),
            Err(ManifestError::MediaTypeMismatch { .. })
        ));
    }

    #[test]
    fn refuses_bad_child_digest() {
        let m = Bytes::from(format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"x","digest":"sha256:../../etc/passwd","size":1}},"layers":[]}}"#
        ));
        assert!(matches!(
            Manifest::parse(m, None),
            Err(ManifestError::BadDigest(_))
        ));
    }

    #[test]
    fn image_blobs_in_order_with_unknown_types() {
        let m = Bytes::from(format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","artifactType":"application/vnd.acme.x","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{D1}","size":2}},"layers":[{{"mediaType":"application/vnd.acme.payload","digest":"{D2}","size":5}}],"subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{D3}","size":9}}}}"#
        ));
        let m = Manifest::parse(m, Some(OCI_MANIFEST)).unwrap();
        assert!(!m.is_index());
        let ds: Vec<_> = m.blobs.iter().map(|d| d.digest.as_str()).collect();
        assert_eq!(ds, [D1, D2]);
    }

    #[test]
    fn platform_filter_keeps_attestations_of_kept_entries() {
        let m = Manifest::parse(index(), None).unwrap();
        let arm = filter_index(&m, &[Platform::parse("linux/arm64").unwrap()])
            .unwrap()
            .unwrap();
        let f = Manifest::parse(arm, None).unwrap();
        let ds: Vec<_> = f.children.iter().map(|d| d.digest.as_str()).collect();
        assert_eq!(ds, [D2, D3]);
        assert_ne!(f.digest, m.digest);
        let amd = filter_index(&m, &[Platform::parse("linux/amd64").unwrap()])
            .unwrap()
            .unwrap();
        assert_eq!(Manifest::parse(amd, None).unwrap().children.len(), 1);
        assert!(filter_index(&m, &[Platform::parse("linux/s390x").unwrap()])
            .unwrap()
            .is_none());
    }

    #[test]
    fn platform_parse_and_match() {
        let p = Platform::parse("linux/arm/v7").unwrap();
        assert_eq!(p.to_string(), "linux/arm/v7");
        assert!(Platform::parse("linux").is_none());
        assert!(Platform::parse("linux/arm/v7/x").is_none());
        assert!(Platform::parse("linux/amd64")
            .unwrap()
            .matches(&Platform::parse("linux/amd64").unwrap()));
        assert!(!p.matches(&Platform::parse("linux/arm/v6").unwrap()));
    }
}
