//! copy::client: what every copy in a process shares — one HTTP transport, one credential and token cache, the cloud API clients, the ECR repository settings learnt, and one request gate per registry host.
//!
//! A process builds one: `copy`, `inspect` and the other one-shot commands through their single
//! [`super::Engine`], and `promote`, `rollback`, `status`, `history`, `verify` and `mirror`
//! through [`crate::promote::Context::client`], which every engine of the command reuses. So a
//! token fetched to check a gate is the one the copy and the tag flip use, and a registry's
//! transfer limit holds across everything the process does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

use super::CopyOptions;
use crate::auth::{Auth, CredentialStore};
use crate::cloud::{Cloud, Kind, RepoSettings};
use crate::reference::ImageRef;
use crate::registry::http::HttpRepo;
use crate::registry::memory::MemoryRegistry;
use crate::registry::ocidir::LayoutRepo;
use crate::registry::{RegistryError, Repo};
use crate::transport::Transport;

/// Connections, credentials and per-registry gates, built once per process.
pub struct Client {
    transport: Transport,
    auth: Arc<Auth>,
    cloud: Arc<Cloud>,
    /// ECR repositories already described or created.
    repositories: tokio::sync::Mutex<HashMap<(String, String), Option<RepoSettings>>>,
    /// Blob transfers touching each registry host at once.
    host_limits: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// Per host: its transfer limit, else `per_host`.
    limits: HashMap<String, usize>,
    per_host: usize,
    /// ECR registries whose missing repositories ferry creates, with these settings.
    ecr_create: HashMap<String, RepoSettings>,
    /// Registries answered from memory instead of the network (unit tests of orchestration).
    memory: HashMap<String, Arc<MemoryRegistry>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

impl Client {
    /// A client with the connection and credential settings of `options`, reading `creds`.
    pub fn new(options: &CopyOptions, creds: CredentialStore) -> Self {
        let cloud = Arc::new(Cloud::default());
        Client {
            transport: Transport::new(options.transport.clone()),
            auth: Arc::new(
                Auth::new(creds)
                    .with_sources(options.auth_sources.clone())
                    .with_overrides(options.credentials.clone())
                    .with_cloud(cloud.clone()),
            ),
            cloud,
            repositories: tokio::sync::Mutex::default(),
            host_limits: Mutex::default(),
            limits: options.host_limits.clone(),
            per_host: options.per_host,
            ecr_create: options.ecr_create.clone(),
            memory: HashMap::new(),
        }
    }

    /// Answers requests for `registry`'s host from it, in memory (for tests: no network).
    pub fn with_memory(mut self, registry: Arc<MemoryRegistry>) -> Self {
        self.memory.insert(registry.host().to_owned(), registry);
        self
    }

    /// Opens a store for a reference; `push` asks for write access.
    pub fn open(&self, r: &ImageRef, push: bool) -> Result<Arc<dyn Repo>, RegistryError> {
        Ok(match r {
            ImageRef::Remote(rr) if self.memory.contains_key(rr.registry.as_str()) => {
                self.memory[rr.registry.as_str()].repo(&rr.repository)
            }
            ImageRef::Remote(rr) => Arc::new(HttpRepo::new(
                &self.transport,
                self.auth.clone(),
                rr.registry.clone(),
                rr.repository.clone(),
                push,
            )?),
            ImageRef::Layout(l) => Arc::new(LayoutRepo::new(l.path.clone())),
        })
    }

    /// The repositories a registry lists in its catalog; `None` when it offers none.
    pub async fn catalog(
        &self,
        registry: &crate::reference::Registry,
    ) -> Result<Option<Vec<String>>, RegistryError> {
        let repo = HttpRepo::new(
            &self.transport,
            self.auth.clone(),
            registry.clone(),
            crate::reference::Repository::parse("catalog").expect("a valid name"),
            false,
        )?;
        repo.catalog().await
    }

    /// The cloud API clients (ECR's deletes, for `ferry prune`).
    pub fn cloud(&self) -> &Cloud {
        &self.cloud
    }

    /// The credential the registry `host` would be sent, where one is found (the token the
    /// GitHub Packages and Docker Hub APIs take, for `ferry prune`).
    pub async fn credential(&self, host: &str) -> Option<crate::credential::Credential> {
        self.auth.credential_for(host).await
    }

    /// The gate on blob transfers touching `host`: one per host for the whole process.
    pub fn host_limit(&self, host: &str) -> Arc<Semaphore> {
        self.host_limits
            .lock()
            .expect("host limits")
            .entry(host.to_owned())
            .or_insert_with(|| {
                let n = self.limits.get(host).copied().unwrap_or(self.per_host);
                Arc::new(Semaphore::new(n.max(1)))
            })
            .clone()
    }

    /// ECR: makes sure a repository exists and learns its tag settings (`None` elsewhere).
    /// A missing repository is created when `registries.yaml` allows it and `write` is set; in a
    /// dry run the settings it would get are returned. Results are kept for the run.
    pub async fn prepare_repository(
        &self,
        r: &ImageRef,
        write: bool,
    ) -> Result<Option<RepoSettings>, RegistryError> {
        let ImageRef::Remote(rr) = r else {
            return Ok(None);
        };
        let Kind::Ecr(ecr) = Kind::of(rr.registry.as_str()) else {
            return Ok(None);
        };
        let key = (rr.registry.to_string(), rr.repository.to_string());
        let mut known = self.repositories.lock().await;
        if let Some(s) = known.get(&key) {
            if s.is_some() || !write {
                return Ok(s.clone());
            }
        }
        let host = rr.registry.to_string();
        let cloud_err = |e: crate::cloud::CloudError| RegistryError::Cloud {
            host: host.clone(),
            detail: e.to_string(),
        };
        let creatable = self.ecr_create.contains_key(&host);
        let found = match self.cloud.ecr.describe(&ecr, rr.repository.as_str()).await {
            Ok(f) => f,
            // Pushing with Docker-config credentials and no AWS ones still works; ferry just
            // cannot see the repository's settings (and cannot create it).
            Err(e) if !creatable => {
                tracing::warn!(registry = %host, repository = %rr.repository, "cannot read the ECR repository's settings, so its tag immutability is not checked: {e}");
                known.insert(key, None);
                return Ok(None);
            }
            Err(e) => return Err(cloud_err(e)),
        };
        let settings = match (found, self.ecr_create.get(&host)) {
            (Some(s), _) => s,
            (None, None) => {
                return Err(RegistryError::RepositoryUnknown {
                    registry: host,
                    repository: rr.repository.to_string(),
                })
            }
            (None, Some(wanted)) if !write => {
                tracing::info!(registry = %host, repository = %rr.repository, "dry run: the repository would be created");
                known.insert(key, None);
                return Ok(Some(wanted.clone()));
            }
            (None, Some(wanted)) => self
                .cloud
                .ecr
                .create(&ecr, rr.repository.as_str(), wanted)
                .await
                .map_err(cloud_err)?,
        };
        known.insert(key, Some(settings.clone()));
        Ok(Some(settings))
    }
}
