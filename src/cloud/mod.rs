//! cloud: the big registries known by name (ECR, Artifact Registry/GCR, Docker Hub, GHCR) and the cloud APIs behind them: ECR's repository and token API, Google's OAuth tokens.

pub mod ecr;
pub mod google;
pub mod google_external;

use std::time::SystemTime;

use crate::credential::Credential;

pub use ecr::{Ecr, EcrRegistry, Mutability, RepoSettings};
pub use google::Google;

/// What kind of registry a name is, for auth and quirks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `ACCOUNT.dkr.ecr.REGION.amazonaws.com`
    Ecr(EcrRegistry),
    /// `*-docker.pkg.dev`, `gcr.io`, `*.gcr.io`
    Google,
    /// `docker.io`
    DockerHub,
    /// `ghcr.io`
    Ghcr,
    /// Anything else.
    Other,
}

impl Kind {
    /// Recognises a registry by its name (as written in references; endpoints do not matter).
    pub fn of(registry: &str) -> Kind {
        let host = registry.split(':').next().unwrap_or(registry);
        if let Some(r) = EcrRegistry::parse(host) {
            return Kind::Ecr(r);
        }
        if host.ends_with("-docker.pkg.dev") || host == "gcr.io" || host.ends_with(".gcr.io") {
            return Kind::Google;
        }
        match host {
            "docker.io" | "index.docker.io" | "registry-1.docker.io" => Kind::DockerHub,
            "ghcr.io" => Kind::Ghcr,
            _ => Kind::Other,
        }
    }
}

/// Why a cloud API call failed: one line, no secrets.
#[derive(Debug, thiserror::Error)]
#[error("{service} {operation} failed: {detail}")]
pub struct CloudError {
    /// `ecr` or `google oauth`.
    pub service: &'static str,
    /// The API operation.
    pub operation: &'static str,
    /// What went wrong.
    pub detail: String,
}

/// A credential from a cloud API, with when it stops working (`None`: unknown).
pub struct Issued {
    /// The credential.
    pub credential: Credential,
    /// Its expiry as the API gave it.
    pub expires: Option<SystemTime>,
}

/// Lazily built clients for the cloud APIs a run needs.
#[derive(Default)]
pub struct Cloud {
    /// ECR, per region.
    pub ecr: Ecr,
    /// Google OAuth.
    pub google: Google,
}

impl std::fmt::Debug for Cloud {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cloud").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries_are_known_by_name() {
        assert_eq!(
            Kind::of("123456789012.dkr.ecr.us-east-1.amazonaws.com"),
            Kind::Ecr(EcrRegistry {
                account: "123456789012".into(),
                region: "us-east-1".into()
            })
        );
        assert_eq!(
            Kind::of("123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com"),
            Kind::Ecr(EcrRegistry {
                account: "123456789012".into(),
                region: "us-gov-west-1".into()
            })
        );
        assert_eq!(
            Kind::of("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn"),
            Kind::Ecr(EcrRegistry {
                account: "123456789012".into(),
                region: "cn-north-1".into()
            })
        );
        assert_eq!(
            Kind::of("12345.dkr.ecr.us-east-1.amazonaws.com"),
            Kind::Other
        );
        assert_eq!(Kind::of("public.ecr.aws"), Kind::Other);
        assert_eq!(Kind::of("europe-west1-docker.pkg.dev"), Kind::Google);
        assert_eq!(Kind::of("gcr.io"), Kind::Google);
        assert_eq!(Kind::of("eu.gcr.io"), Kind::Google);
        assert_eq!(Kind::of("docker.io"), Kind::DockerHub);
        assert_eq!(Kind::of("ghcr.io"), Kind::Ghcr);
        assert_eq!(Kind::of("127.0.0.1:5000"), Kind::Other);
    }
}
