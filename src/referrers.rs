//! referrers: finds what is attached to an image (OCI referrers API, the fallback tag, cosign's `.sig`/`.att`/`.sbom` tags) and keeps the fallback index at destinations that lack the API.
//!
//! Discovery reads; [`merge_fallback`] is pure. Copying what was found is the copy engine's job
//! (`Engine::copy_attached`), so attached artifacts get the same byte-exact, read-once treatment
//! as images.

use std::collections::HashSet;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::digest::Digest;
use crate::manifest::{Manifest, OCI_INDEX};
use crate::reference::Tag;
use crate::registry::{ManifestRef, RegistryError, Repo};

/// cosign's legacy tag suffixes and the artifact type each stands for (cosign's OCI 1.1 types).
pub const COSIGN_TAGS: [(&str, &str); 3] = [
    ("sig", COSIGN_SIGNATURE),
    ("att", COSIGN_ATTESTATION),
    ("sbom", COSIGN_SBOM),
];
/// A cosign signature.
pub const COSIGN_SIGNATURE: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
/// A cosign attestation (DSSE envelopes of in-toto statements).
pub const COSIGN_ATTESTATION: &str = "application/vnd.dev.cosign.artifact.att.v1+json";
/// A cosign SBOM.
pub const COSIGN_SBOM: &str = "application/vnd.dev.cosign.artifact.sbom.v1+json";
/// BuildKit's annotation naming an attestation manifest inside an image index.
pub const BUILDKIT_REFERENCE_TYPE: &str = "vnd.docker.reference.type";
/// Default depth of referrers of referrers followed (a signature on an SBOM on an image is 2).
pub const DEFAULT_DEPTH: u32 = 3;
/// Most artifacts attached to one image that ferry follows (a guard against loops and floods).
const MAX_ATTACHED: usize = 256;
/// The empty descriptor's media type, which some writers put in a fallback index as an artifact type.
const EMPTY_TYPE: &str = "application/vnd.oci.empty.v1+json";

/// Which attached artifacts travel with an image (`referrers:` in a policy).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Filter {
    /// Off: nothing attached is looked for or copied.
    pub enabled: bool,
    /// Only these artifact types (empty: all).
    pub artifact_types: Vec<String>,
    /// How deep referrers of referrers are followed.
    pub depth: u32,
}

impl Default for Filter {
    fn default() -> Self {
        Filter {
            enabled: true,
            artifact_types: Vec::new(),
            depth: DEFAULT_DEPTH,
        }
    }
}

impl Filter {
    /// Nothing attached is copied.
    pub fn off() -> Self {
        Filter {
            enabled: false,
            ..Filter::default()
        }
    }

    /// Whether an artifact of this type is wanted.
    pub fn allows(&self, artifact_type: Option<&str>) -> bool {
        self.enabled
            && (self.artifact_types.is_empty()
                || artifact_type.is_some_and(|t| self.artifact_types.iter().any(|w| w == t)))
    }
}

/// `referrers:` as written in a policy: `false`, `true`, or a map.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
#[schemars(rename = "Referrers")]
pub enum RawFilter {
    /// `false` leaves signatures, attestations and SBOMs behind; `true` (the default) copies them all.
    Switch(bool),
    /// Only some artifact types, or a different depth.
    Detailed(RawFilterMap),
}

/// `referrers: {artifact_types: [...], depth: N}`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "ReferrersFilter")]
pub struct RawFilterMap {
    /// Copy only attached artifacts of these types (e.g. `application/vnd.dev.cosign.artifact.sig.v1+json`). Default: every type.
    #[serde(default)]
    pub artifact_types: Vec<String>,
    /// How deep to follow referrers of referrers (a signature on an SBOM on an image is 2).
    #[schemars(extend("default" = DEFAULT_DEPTH), range(min = 1))]
    pub depth: Option<u32>,
}

impl From<RawFilter> for Filter {
    fn from(r: RawFilter) -> Self {
        match r {
            RawFilter::Switch(true) => Filter::default(),
            RawFilter::Switch(false) => Filter::off(),
            RawFilter::Detailed(RawFilterMap {
                artifact_types,
                depth,
            }) => Filter {
                enabled: true,
                artifact_types,
                depth: depth.unwrap_or(DEFAULT_DEPTH),
            },
        }
    }
}

/// How an artifact was found, which decides how it is published at a destination.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Found {
    /// Through the referrers API or the fallback tag: it names its subject.
    Referrer,
    /// Under a cosign tag (`sha256-HEX.sig`): published under the same tag.
    CosignTag(Tag),
}

/// An artifact attached to a manifest of the image, read (and verified) at the source.
#[derive(Clone, Debug)]
pub struct Attached {
    /// The manifest it is attached to.
    pub subject: Digest,
    /// Its manifest, as served.
    pub manifest: Manifest,
    /// Its artifact type (`artifactType`, else the config's media type).
    pub artifact_type: Option<String>,
    /// How it was found.
    pub found: Found,
    /// Its descriptor for a referrers index: media type, digest, size, artifactType, annotations.
    pub entry: Value,
    /// 1 for an artifact on the image, 2 for one on that artifact, ...
    pub depth: u32,
}

/// `sha256-HEX`: the tag of the referrers fallback index of `d`.
pub fn fallback_tag(d: &Digest) -> Tag {
    Tag::parse(&format!("{}-{}", d.algorithm(), d.hex())).expect("a digest makes a valid tag")
}

/// `sha256-HEX.SUFFIX`: cosign's legacy tag for `d`.
pub fn cosign_tag(d: &Digest, suffix: &str) -> Tag {
    Tag::parse(&format!("{}-{}.{suffix}", d.algorithm(), d.hex()))
        .expect("a digest makes a valid tag")
}

/// True for a tag that names something attached to a digest rather than an image:
/// `sha256-HEX` (a fallback index) and `sha256-HEX.sig`/`.att`/`.sbom` (cosign).
pub fn is_attachment_tag(tag: &str) -> bool {
    let Some(rest) = tag.strip_prefix("sha256-") else {
        return false;
    };
    let (hex, suffix) = rest.split_at(rest.len().min(64));
    hex.len() == 64
        && hex.bytes().all(|b| b.is_ascii_hexdigit())
        && (suffix.is_empty()
            || COSIGN_TAGS
                .iter()
                .any(|(s, _)| suffix.strip_prefix('.') == Some(s)))
}

/// What a manifest says of itself, for a referrers index entry.
pub fn describe(m: &Manifest) -> (Option<String>, Value) {
    let doc: Value = serde_json::from_slice(&m.bytes).unwrap_or(Value::Null);
    let artifact_type = doc["artifactType"]
        .as_str()
        .or_else(|| doc["config"]["mediaType"].as_str())
        .map(str::to_owned);
    let mut entry =
        json!({"mediaType": m.media_type, "digest": m.digest.as_str(), "size": m.bytes.len()});
    if let Some(t) = &artifact_type {
        entry["artifactType"] = json!(t);
    }
    if let Some(a) = doc.get("annotations").filter(|a| a.is_object()) {
        entry["annotations"] = a.clone();
    }
    (artifact_type, entry)
}

/// The digests an index's entries name, with their raw JSON, skipping malformed ones.
fn index_entries(index: &Manifest) -> Vec<(Digest, Value)> {
    let doc: Value = serde_json::from_slice(&index.bytes).unwrap_or(Value::Null);
    doc["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| Some((Digest::parse(e["digest"].as_str()?).ok()?, e.clone())))
        .collect()
}

/// The manifests of an image that can carry attachments: the root, unless it was rebuilt by a
/// platform filter (what was attached to the original index does not name the new one), and
/// every child, BuildKit attestation manifests included (`cosign sign --recursive` and
/// `skopeo copy --all --sign-by-…` sign each entry).
pub fn subjects(root: &Manifest, filtered: bool) -> Vec<Digest> {
    let mut out = Vec::new();
    if !filtered {
        out.push(root.digest.clone());
    }
    out.extend(index_entries(root).into_iter().map(|(d, _)| d));
    out
}

/// An index's platform images: its children that are not BuildKit attestation manifests.
pub fn platforms(root: &Manifest) -> Vec<Digest> {
    index_entries(root)
        .into_iter()
        .filter(|(_, e)| {
            e["annotations"][BUILDKIT_REFERENCE_TYPE].as_str() != Some("attestation-manifest")
        })
        .map(|(d, _)| d)
        .collect()
}

/// A tag's manifest, or `None` when the tag does not exist.
async fn get_tag(repo: &dyn Repo, tag: &Tag) -> Result<Option<Manifest>, RegistryError> {
    match repo
        .manifest_get(&ManifestRef::Tag(tag.clone()), None)
        .await
    {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// The referrers of `subject`: from the API, else from the fallback tag.
pub async fn list(repo: &dyn Repo, subject: &Digest) -> Result<Vec<Value>, RegistryError> {
    list_in(repo, subject, None).await
}

/// A tag that may exist: `tags`, when the repository's attachment tags are known, says;
/// otherwise it has to be asked for.
fn may_exist(tags: Option<&HashSet<String>>, tag: &Tag) -> bool {
    tags.is_none_or(|t| t.contains(tag.as_str()))
}

/// [`list`], where `tags` (when known) are the repository's attachment tags: a fallback tag
/// not among them is not asked for.
async fn list_in(
    repo: &dyn Repo,
    subject: &Digest,
    tags: Option<&HashSet<String>>,
) -> Result<Vec<Value>, RegistryError> {
    let fallback = fallback_tag(subject);
    let index = match repo.referrers(subject).await? {
        Some(i) => Some(i),
        None if may_exist(tags, &fallback) => get_tag(repo, &fallback).await?,
        None => None,
    };
    Ok(index
        .map(|i| index_entries(&i).into_iter().map(|(_, e)| e).collect())
        .unwrap_or_default())
}

/// Everything attached to `subjects` in `src`, breadth first, following referrers of referrers
/// to `filter.depth`. Each artifact's manifest is read by digest (so verified) once.
pub async fn discover(
    src: &dyn Repo,
    subjects: &[Digest],
    filter: &Filter,
) -> Result<Vec<Attached>, RegistryError> {
    discover_in(src, subjects, filter, None).await
}

/// [`discover`], where `tags` (when known: a listing of the repository this run already made)
/// are the repository's attachment tags, so the cosign and fallback tags it lacks are not
/// asked for one by one.
pub async fn discover_in(
    src: &dyn Repo,
    subjects: &[Digest],
    filter: &Filter,
    tags: Option<&HashSet<String>>,
) -> Result<Vec<Attached>, RegistryError> {
    let mut out: Vec<Attached> = Vec::new();
    if !filter.enabled {
        return Ok(out);
    }
    let mut seen: HashSet<Digest> = subjects.iter().cloned().collect();
    let mut level: Vec<Digest> = subjects.to_vec();
    for depth in 1..=filter.depth.max(1) {
        let found = futures::future::try_join_all(
            level
                .iter()
                .map(|subject| discover_one(src, subject, filter, depth, tags)),
        )
        .await?;
        let mut next = Vec::new();
        for a in found.into_iter().flatten() {
            if seen.insert(a.manifest.digest.clone()) {
                next.push(a.manifest.digest.clone());
                out.push(a);
            }
        }
        if next.is_empty() || out.len() >= MAX_ATTACHED {
            break;
        }
        level = next;
    }
    out.truncate(MAX_ATTACHED);
    Ok(out)
}

async fn discover_one(
    src: &dyn Repo,
    subject: &Digest,
    filter: &Filter,
    depth: u32,
    tags: Option<&HashSet<String>>,
) -> Result<Vec<Attached>, RegistryError> {
    // The referrers list and cosign's three tags are independent: ask for them at once.
    let cosign = futures::future::try_join_all(
        COSIGN_TAGS
            .iter()
            .filter(|(_, t)| filter.allows(Some(t)))
            .map(|(suffix, artifact_type)| (cosign_tag(subject, suffix), artifact_type))
            .filter(|(tag, _)| may_exist(tags, tag))
            .map(|(tag, artifact_type)| async move {
                Ok::<_, RegistryError>(get_tag(src, &tag).await?.map(|m| (tag, *artifact_type, m)))
            }),
    );
    let (entries, cosign) = futures::future::try_join(list_in(src, subject, tags), cosign).await?;
    let mut out = Vec::new();
    for entry in entries {
        let Some(digest) = entry["digest"].as_str().and_then(|d| Digest::parse(d).ok()) else {
            continue;
        };
        // The index's artifactType may be missing or wrong (GHCR's fallback tags): the
        // manifest's own word decides.
        let m = src
            .manifest_get(
                &ManifestRef::Digest(digest),
                entry["mediaType"].as_str().filter(|t| !t.is_empty()),
            )
            .await?;
        let (artifact_type, own) = describe(&m);
        if !filter.allows(artifact_type.as_deref()) {
            continue;
        }
        // Keep the index's annotations when the manifest has none of its own.
        let mut entry_out = own;
        if entry_out.get("annotations").is_none() {
            if let Some(a) = entry.get("annotations").filter(|a| a.is_object()) {
                entry_out["annotations"] = a.clone();
            }
        }
        out.push(Attached {
            subject: subject.clone(),
            manifest: m,
            artifact_type,
            found: Found::Referrer,
            entry: entry_out,
            depth,
        });
    }
    for (tag, artifact_type, m) in cosign.into_iter().flatten() {
        let (_, entry) = describe(&m);
        out.push(Attached {
            subject: subject.clone(),
            manifest: m,
            artifact_type: Some(artifact_type.to_owned()),
            found: Found::CosignTag(tag),
            entry,
            depth,
        });
    }
    Ok(out)
}

/// The fallback index for a subject after adding `entries` (each described from its manifest)
/// to what a destination has, or `None` when it already lists them all as well as they can be.
/// Existing entries are kept, in their order; one that lacks its `artifactType` (or carries the
/// empty type some writers put there) or annotations gets them from the manifest's own entry.
pub fn merge_fallback(existing: Option<&Manifest>, entries: &[Value]) -> Option<Bytes> {
    let mut doc = existing
        .and_then(|m| serde_json::from_slice::<Value>(&m.bytes).ok())
        .filter(|d| d["manifests"].is_array())
        .unwrap_or_else(|| json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}));
    let list = doc["manifests"].as_array_mut().expect("checked above");
    let mut have: HashSet<String> = list
        .iter()
        .filter_map(|e| e["digest"].as_str().map(str::to_owned))
        .collect();
    let mut added = false;
    for old in list.iter_mut() {
        let Some(new) = entries.iter().find(|e| e["digest"] == old["digest"]) else {
            continue;
        };
        let placeholder = old["artifactType"].as_str().is_none_or(|t| t == EMPTY_TYPE);
        if placeholder
            && new["artifactType"].is_string()
            && new["artifactType"] != old["artifactType"]
        {
            old["artifactType"] = new["artifactType"].clone();
            added = true;
        }
        if old.get("annotations").is_none() && new["annotations"].is_object() {
            old["annotations"] = new["annotations"].clone();
            added = true;
        }
    }
    for e in entries {
        if let Some(d) = e["digest"].as_str() {
            if have.insert(d.to_owned()) {
                list.push(e.clone());
                added = true;
            }
        }
    }
    added.then(|| Bytes::from(serde_json::to_vec(&doc).expect("JSON values serialise")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(doc: Value) -> Manifest {
        Manifest::parse(Bytes::from(serde_json::to_vec(&doc).unwrap()), None).unwrap()
    }

    fn d(n: u8) -> String {
        format!("sha256:{}", format!("{n:02x}").repeat(32))
    }

    #[test]
    fn tags_for_a_digest() {
        let x = Digest::parse(&d(0xab)).unwrap();
        assert_eq!(
            fallback_tag(&x).as_str(),
            format!("sha256-{}", "ab".repeat(32))
        );
        assert_eq!(
            cosign_tag(&x, "sig").as_str(),
            format!("sha256-{}.sig", "ab".repeat(32))
        );
    }

    #[test]
    fn attachment_tags() {
        let hex = "ab".repeat(32);
        for (t, want) in [
            (format!("sha256-{hex}"), true),
            (format!("sha256-{hex}.sig"), true),
            (format!("sha256-{hex}.att"), true),
            (format!("sha256-{hex}.sbom"), true),
            (format!("sha256-{hex}.other"), false),
            (format!("sha256-{}", &hex[1..]), false),
            ("sha-abc1234".to_owned(), false),
            ("v1.2.3".to_owned(), false),
        ] {
            assert_eq!(is_attachment_tag(&t), want, "{t}");
        }
    }

    #[test]
    fn filters_by_artifact_type() {
        let all = Filter::default();
        assert!(all.allows(None) && all.allows(Some("x")));
        let some: Filter = serde_json::from_value::<RawFilter>(
            json!({"artifact_types": [COSIGN_SIGNATURE], "depth": 1}),
        )
        .unwrap()
        .into();
        assert!(some.allows(Some(COSIGN_SIGNATURE)));
        assert!(!some.allows(Some(COSIGN_SBOM)) && !some.allows(None));
        assert_eq!(some.depth, 1);
        let off: Filter = serde_json::from_value::<RawFilter>(json!(false))
            .unwrap()
            .into();
        assert!(!off.allows(Some(COSIGN_SIGNATURE)));
    }

    #[test]
    fn describes_artifacts_and_images() {
        let art = manifest(
            json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "artifactType": "application/spdx+json",
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": d(1), "size": 2},
            "layers": [], "subject": {"mediaType": "x", "digest": d(2), "size": 3},
            "annotations": {"a": "b"}}),
        );
        let (t, e) = describe(&art);
        assert_eq!(t.as_deref(), Some("application/spdx+json"));
        assert_eq!(e["annotations"]["a"], "b");
        assert_eq!(e["size"], art.bytes.len());
        let sig = manifest(
            json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": d(1), "size": 2}, "layers": []}),
        );
        assert_eq!(
            describe(&sig).0.as_deref(),
            Some("application/vnd.oci.image.config.v1+json")
        );
    }

    #[test]
    fn subjects_skip_attestation_manifests_and_filtered_roots() {
        let index = manifest(
            json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
                {"mediaType": "m", "digest": d(1), "size": 1, "platform": {"os": "linux", "architecture": "amd64"}},
                {"mediaType": "m", "digest": d(2), "size": 1, "annotations": {"vnd.docker.reference.type": "attestation-manifest", "vnd.docker.reference.digest": d(1)}},
            ]}),
        );
        let s = subjects(&index, false);
        assert_eq!(
            s.len(),
            3,
            "the root, the image, and its attestation manifest"
        );
        assert_eq!(s[0], index.digest);
        assert_eq!(s[1].as_str(), d(1));
        assert_eq!(s[2].as_str(), d(2));
        assert_eq!(subjects(&index, true).len(), 2);
        let p = platforms(&index);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].as_str(), d(1));
    }

    #[test]
    fn fallback_merge_keeps_existing_entries_and_adds_missing_ones() {
        let old =
            json!({"mediaType": "m", "digest": d(1), "size": 1, "annotations": {"keep": "me"}});
        let new = json!({"mediaType": "m", "digest": d(2), "size": 2, "artifactType": "t"});
        // Nothing there: a new index.
        let fresh = merge_fallback(None, std::slice::from_ref(&new)).unwrap();
        let v: Value = serde_json::from_slice(&fresh).unwrap();
        assert_eq!(v["mediaType"], OCI_INDEX);
        assert_eq!(v["manifests"].as_array().unwrap().len(), 1);
        // An existing index: merged, old entry untouched and first.
        let existing = manifest(
            json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [old.clone()]}),
        );
        let merged = merge_fallback(Some(&existing), &[new.clone(), old.clone()]).unwrap();
        let v: Value = serde_json::from_slice(&merged).unwrap();
        assert_eq!(v["manifests"][0], old);
        assert_eq!(v["manifests"][1], new);
        // Everything already listed: nothing to write.
        let both = Manifest::parse(merged, None).unwrap();
        assert!(merge_fallback(Some(&both), &[new.clone(), old.clone()]).is_none());
        // An entry without its artifact type (or with the empty type) and annotations gets them
        // from the manifest's own description; the others stay as they were.
        for bare in [
            json!({"mediaType": "m", "digest": d(2), "size": 2}),
            json!({"mediaType": "m", "digest": d(2), "size": 2, "artifactType": EMPTY_TYPE}),
        ] {
            let existing = manifest(
                json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [old.clone(), bare]}),
            );
            let described = json!({"mediaType": "m", "digest": d(2), "size": 2, "artifactType": "t", "annotations": {"a": "b"}});
            let v: Value =
                serde_json::from_slice(&merge_fallback(Some(&existing), &[described]).unwrap())
                    .unwrap();
            assert_eq!(v["manifests"][0], old);
            assert_eq!(v["manifests"][1]["artifactType"], "t");
            assert_eq!(v["manifests"][1]["annotations"]["a"], "b");
            assert_eq!(v["manifests"].as_array().unwrap().len(), 2);
        }
    }
}
