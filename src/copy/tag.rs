//! copy::tag: the one way ferry moves a tag — put the manifest under the tag, read the tag back, and check it names the digest.
//!
//! A tag is the only mutable thing ferry writes, so every tag write (an image's tag after a copy,
//! cosign tags and fallback indexes, a promotion's tag flips) is confirmed by reading it back:
//! a registry that accepted the PUT but serves something else (a concurrent writer, a cache in
//! front of it) must not be reported as done. Retries of the PUT and the HEAD are the
//! transport's; whether the tag may move at all (ECR immutability, protected tags) is decided by
//! each caller before any content is written, so it is not checked again here.

use crate::digest::Digest;
use crate::manifest::Manifest;
use crate::reference::Tag;
use crate::registry::{ManifestRef, RegistryError, Repo};

/// Why a tag could not be written and confirmed.
#[derive(Debug, thiserror::Error)]
pub enum TagError {
    /// The PUT under the tag failed.
    #[error("failed to tag {tag}")]
    Put {
        /// The tag.
        tag: Tag,
        /// The store's error.
        #[source]
        source: RegistryError,
    },
    /// The tag was written but could not be read back.
    #[error("failed to read back tag {tag}")]
    ReadBack {
        /// The tag.
        tag: Tag,
        /// The store's error.
        #[source]
        source: RegistryError,
    },
    /// The tag reads back as something other than what was written.
    #[error(
        "tag {tag} reads back as {}, not {wanted}: something else moved it",
        found.as_ref().map_or("nothing".to_owned(), ToString::to_string)
    )]
    Moved {
        /// The tag.
        tag: Tag,
        /// What it names now (`None`: absent).
        found: Option<Digest>,
        /// What was written.
        wanted: Digest,
    },
}

/// Puts `manifest` under `tag` in `repo`, reads the tag back and checks it names `manifest`'s digest.
pub async fn write_tag(repo: &dyn Repo, tag: &Tag, manifest: &Manifest) -> Result<(), TagError> {
    let r = ManifestRef::Tag(tag.clone());
    repo.manifest_put(&r, manifest)
        .await
        .map_err(|source| TagError::Put {
            tag: tag.clone(),
            source,
        })?;
    match repo.manifest_head(&r).await {
        Ok(Some(i)) if i.digest == manifest.digest => Ok(()),
        Ok(other) => Err(TagError::Moved {
            tag: tag.clone(),
            found: other.map(|i| i.digest),
            wanted: manifest.digest.clone(),
        }),
        Err(source) => Err(TagError::ReadBack {
            tag: tag.clone(),
            source,
        }),
    }
}
