//! login: `ferry login` and `ferry logout` — a login is checked against the registry (its 401 challenge answered, Basic or token) before it is stored where Docker's tools read it, and removed again on logout.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use crate::auth::store::{self, Place};
use crate::auth::{Auth, Credential, CredentialStore, Secret};
use crate::error::{Error, Result};
use crate::reference::{Registry, Repository};
use crate::registry::http::HttpRepo;
use crate::transport::{Transport, TransportOptions};

/// Checks that `registry` accepts this login: `GET /v2/`, its challenge answered with these
/// credentials and nothing else (no config file, no anonymous token instead), then stores it in
/// Docker's `config` (or the credential helper it names for the registry). Nothing is written
/// when the registry refuses. `helper_dir` stands for `$PATH` in tests.
pub async fn login(
    transport: TransportOptions,
    registry: &Registry,
    username: &str,
    password: &Secret,
    config: &Path,
    helper_dir: Option<&Path>,
) -> Result<Place> {
    let credential = Credential::Basic {
        username: username.to_owned(),
        password: password.clone(),
    };
    let auth = Auth::new(CredentialStore::from_files(Vec::new()))
        .with_overrides(HashMap::from([(registry.to_string(), credential)]))
        .strict();
    let refused = |e| Error::Login {
        registry: registry.to_string(),
        source: Box::new(e),
    };
    let repo = HttpRepo::new(
        &Transport::new(transport),
        Arc::new(auth),
        registry.clone(),
        Repository::parse("ferry-login").expect("a valid name"),
        false,
    )
    .map_err(refused)?;
    repo.ping().await.map_err(refused)?;
    tracing::info!(registry = %registry, "login accepted");
    Ok(store::store(
        config,
        registry.as_str(),
        username,
        password,
        helper_dir,
    )?)
}

/// Removes the login for `registry` from Docker's `config` and the helper it names; the places
/// it was removed from (none: there was no login).
pub fn logout(registry: &Registry, config: &Path, helper_dir: Option<&Path>) -> Result<Vec<Place>> {
    Ok(store::remove(config, registry.as_str(), helper_dir)?)
}
