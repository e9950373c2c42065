//! copy::plan: what each destination needs, worked out from the source graph and what the destination already holds — pure and synchronous.

use std::collections::HashSet;

use serde::Serialize;

use crate::digest::Digest;
use crate::manifest::{Descriptor, Manifest};
use crate::reference::{ImageRef, Tag};

/// The source image, read once: the root (possibly a platform-filtered index) and every manifest under it.
#[derive(Clone, Debug)]
pub struct SourceImage {
    /// The reference as given, with the digest it resolved to.
    pub reference: ImageRef,
    /// The root manifest whose digest is copied.
    pub root: Manifest,
    /// When `--platform` filtered an index: the digest of the original index.
    pub filtered_from: Option<Digest>,
    /// Manifests under the root, children before parents (so pushing in this order never references missing content).
    pub children: Vec<Manifest>,
}

impl SourceImage {
    /// Every manifest under `root` that a destination lacking `root` must get, deepest first.
    fn manifests(&self) -> impl Iterator<Item = &Manifest> {
        self.children.iter().chain(std::iter::once(&self.root))
    }

    /// Unique blobs of the given manifests, in first-seen order.
    pub fn blobs_of<'a>(
        &'a self,
        manifests: impl IntoIterator<Item = &'a Manifest>,
    ) -> Vec<Descriptor> {
        let mut seen = HashSet::new();
        manifests
            .into_iter()
            .flat_map(|m| m.blobs.iter())
            .filter(|d| seen.insert(d.digest.clone()))
            .cloned()
            .collect()
    }

    /// All unique blobs of the image.
    pub fn all_blobs(&self) -> Vec<Descriptor> {
        self.blobs_of(self.manifests())
    }
}

/// What a destination holds, as learnt by HEAD requests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DestState {
    /// Where the destination tag points now, if it has a tag and the tag exists.
    pub tag_digest: Option<Digest>,
    /// Whether the root manifest is present by digest.
    pub root_present: bool,
    /// Child manifests present by digest (only looked up when the root is absent).
    pub children_present: HashSet<Digest>,
}

/// What happens at a destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// The tag (or the digest, without a tag) is already there.
    UpToDate,
    /// Content is complete; only the tag moves.
    TagOnly,
    /// Content must be copied, then the tag written.
    Copy,
}

/// The plan for one destination.
#[derive(Clone, Debug, Serialize)]
pub struct DestPlan {
    /// The destination as given.
    pub reference: String,
    /// What happens.
    pub action: Action,
    /// The tag written last, if the destination names one.
    pub tag: Option<Tag>,
    /// The tag's digest before, if it existed.
    pub tag_from: Option<Digest>,
    /// The digest the tag (or the copy by digest) ends at.
    pub digest: Digest,
    /// Manifests to put by digest, in this order.
    pub manifests: Vec<Digest>,
    /// Blobs to make present (each is HEAD-checked again before transfer).
    #[serde(skip)]
    pub blobs: Vec<Descriptor>,
    /// Number of blobs to make present.
    pub blob_count: usize,
    /// Their total size.
    pub blob_bytes: u64,
}

/// Plans one destination. `source.children` must already be read if `state.root_present` is false.
pub fn plan_destination(source: &SourceImage, dest: &ImageRef, state: &DestState) -> DestPlan {
    let digest = source.root.digest.clone();
    let tag = dest.tag().cloned();
    let done = match &tag {
        Some(_) => state.tag_digest.as_ref() == Some(&digest),
        None => state.root_present,
    };
    let (action, manifests, blobs) = if done {
        (Action::UpToDate, Vec::new(), Vec::new())
    } else if state.root_present {
        (Action::TagOnly, Vec::new(), Vec::new())
    } else {
        let missing: Vec<&Manifest> = source
            .children
            .iter()
            .filter(|m| !state.children_present.contains(&m.digest))
            .chain(std::iter::once(&source.root))
            .collect();
        let blobs = source.blobs_of(missing.iter().copied());
        (
            Action::Copy,
            missing.iter().map(|m| m.digest.clone()).collect(),
            blobs,
        )
    };
    DestPlan {
        reference: dest.to_string(),
        action,
        tag,
        tag_from: state.tag_digest.clone(),
        digest,
        manifests,
        blob_count: blobs.len(),
        blob_bytes: blobs.iter().map(|b| b.size).sum(),
        blobs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn d(n: u8) -> String {
        format!("sha256:{}", format!("{n:02x}").repeat(32))
    }

    fn image(config: u8, layers: &[u8]) -> Manifest {
        let ls: Vec<String> = layers
            .iter()
            .map(|l| format!(r#"{{"mediaType":"l","digest":"{}","size":{l}}}"#, d(*l)))
            .collect();
        let text = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"c","digest":"{}","size":1}},"layers":[{}]}}"#,
            d(config),
            ls.join(",")
        );
        Manifest::parse(Bytes::from(text), None).unwrap()
    }

    fn index(children: &[&Manifest]) -> Manifest {
        let es: Vec<String> = children.iter().map(|m| format!(r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":{}}}"#, m.digest, m.bytes.len())).collect();
        Manifest::parse(Bytes::from(format!(r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{}]}}"#, es.join(","))), None).unwrap()
    }

    fn source() -> SourceImage {
        let amd = image(1, &[10, 11]);
        let arm = image(2, &[10, 12]);
        let root = index(&[&amd, &arm]);
        SourceImage {
            reference: ImageRef::parse("127.0.0.1:1/src:v1").unwrap(),
            root,
            filtered_from: None,
            children: vec![amd, arm],
        }
    }

    #[test]
    fn fresh_destination_gets_everything_children_first() {
        let s = source();
        let p = plan_destination(
            &s,
            &ImageRef::parse("127.0.0.1:2/dst:prod").unwrap(),
            &DestState::default(),
        );
        assert_eq!(p.action, Action::Copy);
        assert_eq!(
            p.manifests,
            vec![
                s.children[0].digest.clone(),
                s.children[1].digest.clone(),
                s.root.digest.clone()
            ]
        );
        let blobs: Vec<_> = p.blobs.iter().map(|b| b.digest.to_string()).collect();
        assert_eq!(
            blobs,
            [d(1), d(10), d(11), d(2), d(12)],
            "shared layer 10 appears once"
        );
        assert_eq!(p.blob_bytes, 1 + 10 + 11 + 1 + 12);
        assert_eq!(p.tag.unwrap().as_str(), "prod");
    }

    #[test]
    fn present_child_is_skipped_with_its_blobs() {
        let s = source();
        let state = DestState {
            children_present: [s.children[0].digest.clone()].into(),
            ..Default::default()
        };
        let p = plan_destination(
            &s,
            &ImageRef::parse("127.0.0.1:2/dst:prod").unwrap(),
            &state,
        );
        assert_eq!(
            p.manifests,
            vec![s.children[1].digest.clone(), s.root.digest.clone()]
        );
        let blobs: Vec<_> = p.blobs.iter().map(|b| b.digest.to_string()).collect();
        assert_eq!(blobs, [d(2), d(10), d(12)]);
    }

    #[test]
    fn tag_states() {
        let s = source();
        let dest = ImageRef::parse("127.0.0.1:2/dst:prod").unwrap();
        let up = plan_destination(
            &s,
            &dest,
            &DestState {
                tag_digest: Some(s.root.digest.clone()),
                root_present: true,
                ..Default::default()
            },
        );
        assert_eq!(up.action, Action::UpToDate);
        let old = Digest::parse(&d(99)).unwrap();
        let moved = plan_destination(
            &s,
            &dest,
            &DestState {
                tag_digest: Some(old.clone()),
                root_present: true,
                ..Default::default()
            },
        );
        assert_eq!((moved.action, moved.tag_from), (Action::TagOnly, Some(old)));
        assert!(moved.blobs.is_empty() && moved.manifests.is_empty());
        let by_digest = plan_destination(
            &s,
            &ImageRef::parse("127.0.0.1:2/dst").unwrap(),
            &DestState {
                root_present: true,
                ..Default::default()
            },
        );
        assert_eq!(by_digest.action, Action::UpToDate);
    }
}
