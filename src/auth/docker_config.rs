//! docker_config: TEMPORARY STUB (replaced by the real module).
#![allow(missing_docs)]
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);
impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}
impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    Basic { username: String, password: Secret },
    IdentityToken(Secret),
}
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("x")]
    X,
}
#[derive(Clone, Debug, Default)]
pub struct CredentialStore;
impl CredentialStore {
    pub fn from_env() -> Self {
        CredentialStore
    }
    pub fn lookup(&self, _h: &str) -> Result<Option<Credential>, CredentialError> {
        Ok(None)
    }
}
