//! registry_error: why a store operation failed ([`RegistryError`]), one line, lowercase, never carrying a secret.
//!
//! A leaf below `transport` and `auth`, which fail with it before any store is involved (a client
//! that cannot be built, a token server that refuses), and below `registry`, which re-exports it.

use std::sync::Arc;

use crate::credential::CredentialError;
use crate::digest::Digest;
use crate::manifest::ManifestError;

/// Why a store operation failed. Messages are one line, lowercase, and never carry secrets.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The manifest or blob does not exist.
    #[error("{what} not found in {place}")]
    NotFound {
        /// What was looked for: `manifest v1`, `blob sha256:…`.
        what: String,
        /// Where: `host/repo` or `ocidir://path`, with the registry's own words if any.
        place: String,
    },
    /// Credentials were missing or refused.
    #[error("unauthorized at {host}: {detail}")]
    Unauthorized {
        /// The registry host.
        host: String,
        /// The registry's words.
        detail: String,
    },
    /// Authenticated, but not allowed.
    #[error("access denied at {host}: {detail}")]
    Denied {
        /// The registry host.
        host: String,
        /// The registry's words.
        detail: String,
    },
    /// Any other unexpected HTTP answer.
    #[error("{method} {path} at {host} answered {status}: {detail}")]
    Status {
        /// The registry host.
        host: String,
        /// HTTP method.
        method: String,
        /// URL path (no query: upload URLs carry state tokens).
        path: String,
        /// HTTP status code.
        status: u16,
        /// The registry's error code and message, if any.
        detail: String,
    },
    /// Could not reach the registry.
    #[error("cannot reach {host}: {detail}")]
    Connect {
        /// The registry host.
        host: String,
        /// What went wrong, from the innermost error.
        detail: String,
    },
    /// The token server failed.
    #[error("token request to {realm} failed: {detail}")]
    Token {
        /// The realm's host and path.
        realm: String,
        /// What went wrong.
        detail: String,
    },
    /// Reading credentials failed.
    #[error(transparent)]
    Credentials(#[from] CredentialError),
    /// Bytes did not hash to the digest that named them.
    #[error("digest mismatch for {expected}: content hashes to {actual} ({len} bytes)")]
    DigestMismatch {
        /// The digest that was asked for.
        expected: Digest,
        /// What the bytes hash to.
        actual: Digest,
        /// How many bytes were read.
        len: u64,
    },
    /// A blob's length differs from its descriptor.
    #[error("size mismatch for {digest}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// The blob.
        digest: Digest,
        /// From the descriptor.
        expected: u64,
        /// Actually read.
        actual: u64,
    },
    /// A manifest could not be used.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The registry broke the protocol.
    #[error("protocol error from {host}: {detail}")]
    Protocol {
        /// The registry host.
        host: String,
        /// What was wrong.
        detail: String,
    },
    /// A filesystem error in an OCI layout.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The transfer was cancelled because another part of it failed.
    #[error("transfer aborted: {0}")]
    Aborted(Arc<RegistryError>),
    /// A cloud API call for this registry failed.
    #[error("{host}: {detail}")]
    Cloud {
        /// The registry.
        host: String,
        /// The API's error.
        detail: String,
    },
    /// The repository does not exist, and ferry may not create it.
    #[error("NAME_UNKNOWN: repository {repository} does not exist at {registry} (set `create_repositories: true` for this registry in registries.yaml to have ferry create it)")]
    RepositoryUnknown {
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
    },
    /// The store cannot do this at all (a registry without tag deletes, an API it lacks).
    #[error("{place} cannot {what}: {detail}")]
    Unsupported {
        /// `host/repo` or `ocidir://path`.
        place: String,
        /// `delete a tag alone`, `delete manifests`.
        what: String,
        /// The store's words, or why.
        detail: String,
    },
    /// A streamed request was cut short or refused midway; sending it again may work.
    #[error("transfer to {host} interrupted: {detail}")]
    Interrupted {
        /// The registry host.
        host: String,
        /// What happened.
        detail: String,
    },
}

impl RegistryError {
    /// True when the error means "it is not there".
    pub fn is_not_found(&self) -> bool {
        matches!(self, RegistryError::NotFound { .. })
    }

    /// True for a streamed transfer cut short by something another attempt may cure (a lost
    /// connection, throttling, a server error): the caller sends it again from the source.
    /// Requests without streamed bodies were already retried where they were sent.
    pub fn is_transient(&self) -> bool {
        match self {
            RegistryError::Interrupted { .. } => true,
            RegistryError::Aborted(inner) => inner.is_transient(),
            _ => false,
        }
    }
}
