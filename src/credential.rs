//! credential: a registry login, the secret inside it, and why one could not be read.
//!
//! A leaf below `auth` (which finds credentials), `cloud` (which mints them) and `registry_error`
//! (which carries a [`CredentialError`]), so that none of those has to import another for them.

/// A secret string whose `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// A registry login.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    /// Username and password (or a token used as the password).
    Basic {
        /// The user.
        username: String,
        /// The password or token.
        password: Secret,
    },
    /// An identity (refresh) token, exchanged at the token server with an OAuth2 refresh_token grant.
    IdentityToken(Secret),
}

/// Where a credential came from, so a refusal can say which one the registry turned down.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// An `auths` entry of this Docker or podman config file.
    ConfigFile(String),
    /// A credential helper program, named in this config file.
    Helper {
        /// `docker-credential-NAME`'s NAME.
        helper: String,
        /// The config file naming it.
        file: String,
    },
    /// Well-known environment variables (`DOCKERHUB_USERNAME`/`DOCKERHUB_TOKEN`, `GITHUB_TOKEN`).
    Env(&'static str),
    /// A cloud API (ECR's `GetAuthorizationToken`, Google OAuth).
    Cloud(&'static str),
    /// Given on the command line.
    CommandLine,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::ConfigFile(file) => write!(f, "docker config {file}"),
            Origin::Helper { helper, file } => {
                write!(
                    f,
                    "credential helper docker-credential-{helper} (named in {file})"
                )
            }
            Origin::Env(vars) => write!(f, "environment variable {vars}"),
            Origin::Cloud(what) => f.write_str(what),
            Origin::CommandLine => f.write_str("the command line"),
        }
    }
}

/// Why credentials could not be read. Never carries a secret.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// The file exists but could not be read.
    #[error("cannot read credentials file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid JSON of the expected shape.
    #[error("credentials file {path} is not valid: {detail}")]
    Parse {
        /// The file.
        path: String,
        /// What is wrong (no values quoted).
        detail: String,
    },
    /// A credential helper could not be run or failed.
    #[error("credential helper docker-credential-{helper} failed for {host}: {detail}")]
    Helper {
        /// The helper's name.
        helper: String,
        /// The registry.
        host: String,
        /// What went wrong.
        detail: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_secrets() {
        let c = Credential::Basic {
            username: "u".into(),
            password: Secret::new("hunter2"),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!format!("{:?}", Credential::IdentityToken(Secret::new("tok"))).contains("tok\""));
    }
}
