//! prune::delete: how each registry deletes — the OCI API (distribution, Artifact Registry and the rest), ECR's `BatchDeleteImage`, the GitHub Packages API (GHCR) and Docker Hub's API — and which of them can list untagged manifests.
//!
//! What each one can do decides the order `ferry prune` can keep (docs/design.md, "Deleting,
//! registry by registry"): a registry that cannot delete a tag alone is told so, and a prune
//! then lets the manifest delete take the tag with it, or reports the tag as kept.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use crate::cloud::ecr::EcrImageId;
use crate::cloud::{EcrRegistry, Kind};
use crate::copy::Client;
use crate::credential::Credential;
use crate::digest::Digest;
use crate::reference::{ImageRef, Tag};
use crate::registry::{ManifestRef, RegistryError, Repo};

/// The public APIs, when `registries.yaml` names no `api_endpoint`.
const GITHUB_API: &str = "https://api.github.com";
const HUB_API: &str = "https://hub.docker.com";
/// Versions per page of the GitHub Packages API (its maximum).
const GHCR_PAGE: usize = 100;

/// One repository's way of deleting.
pub enum Deleter {
    /// `DELETE /v2/<name>/manifests/<reference>`.
    Oci(Arc<dyn Repo>),
    /// ECR's API.
    Ecr {
        /// The registry's name, for messages.
        host: String,
        /// The registry.
        registry: EcrRegistry,
        /// The repository.
        repository: String,
        /// Where the ECR clients live.
        client: Arc<Client>,
    },
    /// The GitHub Packages REST API: a package version is a manifest, deleted with its tags.
    Ghcr(Api),
    /// Docker Hub's API for tags; manifests by digest over the OCI API.
    Hub {
        /// The Hub API.
        api: Api,
        /// The OCI side.
        repo: Arc<dyn Repo>,
    },
}

/// A registry's own REST API (GitHub's or Docker Hub's) for one repository.
pub struct Api {
    http: reqwest::Client,
    base: String,
    /// `acme` of `ghcr.io/acme/api`.
    owner: String,
    /// `api` (GHCR: a package name, slashes and all).
    name: String,
    credential: Option<Credential>,
    /// Docker Hub's JWT, or why the login failed (asked once per run).
    token: tokio::sync::Mutex<Option<Result<String, String>>>,
    /// GHCR: package versions by digest, and where the package lives (`orgs/acme`).
    versions: tokio::sync::Mutex<Option<(String, HashMap<Digest, Version>)>>,
    place: String,
    requests: AtomicU64,
}

/// One GHCR package version.
#[derive(Clone, Debug)]
pub struct Version {
    id: u64,
    tags: Vec<String>,
    created: Option<SystemTime>,
}

impl Deleter {
    /// The deleter for `r`, opened as `repo`: by the registry's name, as auth picks credentials.
    pub async fn open(
        client: &Arc<Client>,
        api_endpoints: &HashMap<String, String>,
        r: &ImageRef,
        repo: Arc<dyn Repo>,
    ) -> Deleter {
        let ImageRef::Remote(rr) = r else {
            return Deleter::Oci(repo);
        };
        let host = rr.registry.as_str();
        let (owner, name) = rr
            .repository
            .as_str()
            .split_once('/')
            .map(|(o, n)| (o.to_owned(), n.to_owned()))
            .unwrap_or_else(|| ("library".to_owned(), rr.repository.to_string()));
        let api = |default: &str, credential: Option<Credential>| Api {
            http: reqwest::Client::new(),
            base: api_endpoints
                .get(host)
                .cloned()
                .unwrap_or_else(|| default.to_owned()),
            owner: owner.clone(),
            name: name.clone(),
            credential,
            token: tokio::sync::Mutex::new(None),
            versions: tokio::sync::Mutex::new(None),
            place: repo.name(),
            requests: AtomicU64::new(0),
        };
        match Kind::of(host) {
            Kind::Ecr(registry) => Deleter::Ecr {
                host: host.to_owned(),
                registry,
                repository: rr.repository.to_string(),
                client: client.clone(),
            },
            Kind::Ghcr => {
                // GitHub's token: the one Actions provides, else the password ghcr.io is sent.
                let token = ["FERRY_GITHUB_TOKEN", "GITHUB_TOKEN", "GH_TOKEN"]
                    .iter()
                    .find_map(|v| std::env::var(v).ok().filter(|t| !t.is_empty()));
                let credential = match token {
                    Some(t) => Some(Credential::Basic {
                        username: String::new(),
                        password: crate::credential::Secret::new(t),
                    }),
                    None => client.credential(host).await,
                };
                Deleter::Ghcr(api(GITHUB_API, credential))
            }
            Kind::DockerHub => Deleter::Hub {
                api: api(HUB_API, client.credential(host).await),
                repo,
            },
            _ => Deleter::Oci(repo),
        }
    }

    /// Requests sent to APIs other than the registry's OCI API.
    pub fn api_requests(&self) -> u64 {
        match self {
            Deleter::Ghcr(a) | Deleter::Hub { api: a, .. } => a.requests.load(Ordering::Relaxed),
            // Counted for the whole process: the report takes the difference.
            Deleter::Ecr { client, .. } => client.cloud().ecr.calls(),
            Deleter::Oci(_) => 0,
        }
    }

    /// How many deletes one request carries: ECR's `BatchDeleteImage` takes 100; everywhere
    /// else, one.
    pub fn batch(&self) -> usize {
        match self {
            Deleter::Ecr { .. } => crate::cloud::ecr::DELETE_BATCH,
            _ => 1,
        }
    }

    /// Deletes tags or manifests together where the registry takes them in one request
    /// ([`Deleter::batch`] at a time), else one by one; a result per reference, in order.
    pub async fn delete_many(&self, refs: &[ManifestRef]) -> Vec<Result<bool, RegistryError>> {
        if let Deleter::Ecr { .. } = self {
            let ids = refs
                .iter()
                .map(|r| match r {
                    ManifestRef::Tag(t) => EcrImageId::Tag(t.to_string()),
                    ManifestRef::Digest(d) => EcrImageId::Digest(d.to_string()),
                })
                .collect();
            return self.ecr_many(ids).await;
        }
        let mut out = Vec::with_capacity(refs.len());
        for r in refs {
            out.push(match r {
                ManifestRef::Tag(t) => self.delete_tag(t).await,
                ManifestRef::Digest(d) => self.delete_manifest(d).await,
            });
        }
        out
    }

    /// Whether deleting an image's last tag deletes the image too (ECR): such a tag of a
    /// manifest that stays cannot go.
    pub fn last_tag_takes_the_image(&self) -> bool {
        matches!(self, Deleter::Ecr { .. })
    }

    /// What deletes tags and manifests here, for the report.
    pub fn describe(&self) -> &'static str {
        match self {
            Deleter::Oci(_) => "OCI DELETE",
            Deleter::Ecr { .. } => "ECR BatchDeleteImage",
            Deleter::Ghcr(_) => "GitHub Packages API",
            Deleter::Hub { .. } => "Docker Hub API (tags), OCI DELETE (manifests)",
        }
    }

    /// Deletes a tag alone. `Ok(false)`: it was already gone.
    pub async fn delete_tag(&self, tag: &Tag) -> Result<bool, RegistryError> {
        match self {
            Deleter::Oci(repo) => repo.delete(&ManifestRef::Tag(tag.clone())).await,
            Deleter::Ecr { .. } => self.ecr(EcrImageId::Tag(tag.to_string())).await,
            Deleter::Ghcr(api) => Err(RegistryError::Unsupported {
                place: api.place.clone(),
                what: "delete a tag alone".into(),
                detail: "the GitHub Packages API deletes a version with all its tags".into(),
            }),
            Deleter::Hub { api, .. } => api.hub_delete_tag(tag).await,
        }
    }

    /// Deletes a manifest by digest (with every tag that names it, where the registry does so).
    pub async fn delete_manifest(&self, d: &Digest) -> Result<bool, RegistryError> {
        match self {
            Deleter::Oci(repo) | Deleter::Hub { repo, .. } => {
                repo.delete(&ManifestRef::Digest(d.clone())).await
            }
            Deleter::Ecr { .. } => self.ecr(EcrImageId::Digest(d.to_string())).await,
            Deleter::Ghcr(api) => api.ghcr_delete_version(d).await,
        }
    }

    /// Manifests no tag names, with their age, where the registry can list them; `None` where
    /// it cannot (the OCI API lists tags only).
    pub async fn untagged(
        &self,
    ) -> Result<Option<Vec<(Digest, Option<SystemTime>)>>, RegistryError> {
        match self {
            Deleter::Oci(_) | Deleter::Hub { .. } => Ok(None),
            Deleter::Ecr {
                host,
                registry,
                repository,
                client,
            } => {
                let found = client
                    .cloud()
                    .ecr
                    .untagged(registry, repository)
                    .await
                    .map_err(|e| RegistryError::Cloud {
                        host: host.clone(),
                        detail: e.to_string(),
                    })?;
                Ok(Some(
                    found
                        .into_iter()
                        .filter_map(|(d, t)| Some((Digest::parse(&d).ok()?, t)))
                        .collect(),
                ))
            }
            Deleter::Ghcr(api) => {
                let versions = api.ghcr_versions(false).await?;
                Ok(Some(
                    versions
                        .iter()
                        .filter(|(_, v)| v.tags.is_empty())
                        .map(|(d, v)| (d.clone(), v.created))
                        .collect(),
                ))
            }
        }
    }

    async fn ecr(&self, id: EcrImageId) -> Result<bool, RegistryError> {
        self.ecr_many(vec![id]).await.pop().unwrap_or(Ok(false))
    }

    /// ECR: one `BatchDeleteImage` per 100 ids; per id, deleted, already gone, or refused.
    async fn ecr_many(&self, ids: Vec<EcrImageId>) -> Vec<Result<bool, RegistryError>> {
        let Deleter::Ecr {
            host,
            registry,
            repository,
            client,
        } = self
        else {
            unreachable!("only called for ECR");
        };
        match client
            .cloud()
            .ecr
            .batch_delete(registry, repository, &ids)
            .await
        {
            Ok(results) => results
                .into_iter()
                .map(|r| {
                    r.map_err(|detail| RegistryError::Cloud {
                        host: host.clone(),
                        detail: format!("ecr BatchDeleteImage refused {repository}: {detail}"),
                    })
                })
                .collect(),
            Err(e) => {
                let detail = e.to_string();
                ids.iter()
                    .map(|_| {
                        Err(RegistryError::Cloud {
                            host: host.clone(),
                            detail: detail.clone(),
                        })
                    })
                    .collect()
            }
        }
    }
}

#[derive(serde::Deserialize)]
struct RawVersion {
    id: u64,
    name: String,
    created_at: Option<String>,
    #[serde(default)]
    metadata: Option<RawMetadata>,
}

#[derive(serde::Deserialize)]
struct RawMetadata {
    #[serde(default)]
    container: Option<RawContainer>,
}

#[derive(serde::Deserialize)]
struct RawContainer {
    #[serde(default)]
    tags: Vec<String>,
}

impl Api {
    fn count(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    fn secret(&self) -> Option<&str> {
        match &self.credential {
            Some(Credential::Basic { password, .. }) => Some(password.expose()),
            Some(Credential::IdentityToken(t)) => Some(t.expose()),
            None => None,
        }
    }

    fn error(&self, what: &str, detail: impl std::fmt::Display) -> RegistryError {
        RegistryError::Cloud {
            host: self.base.clone(),
            detail: format!("{what} for {}: {detail}", self.place),
        }
    }

    async fn failed(&self, what: &str, resp: reqwest::Response) -> RegistryError {
        let status = resp.status().as_u16();
        let body = crate::transport::read_capped(resp, 4096).await;
        let words = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| {
                v["message"]
                    .as_str()
                    .or(v["detail"].as_str())
                    .map(str::to_owned)
            })
            .unwrap_or_default();
        let detail = format!(
            "answered {status}{}",
            if words.is_empty() {
                String::new()
            } else {
                format!(": {words}")
            }
        );
        match status {
            401 => RegistryError::Unauthorized {
                host: self.base.clone(),
                detail: format!("{what}: {detail}"),
            },
            403 => RegistryError::Denied {
                host: self.base.clone(),
                detail: format!("{what}: {detail}"),
            },
            _ => self.error(what, detail),
        }
    }

    /// GitHub: every version of the package (cached for the run unless `fresh`), and the path
    /// of its owner (`orgs/acme` or `users/acme`).
    async fn ghcr_versions(&self, fresh: bool) -> Result<HashMap<Digest, Version>, RegistryError> {
        let mut cached = self.versions.lock().await;
        if let (Some((_, v)), false) = (cached.as_ref(), fresh) {
            return Ok(v.clone());
        }
        let package = self.name.replace('/', "%2F");
        let mut last_err = None;
        for owner in [
            format!("orgs/{}", self.owner),
            format!("users/{}", self.owner),
        ] {
            let mut all = HashMap::new();
            let mut page = 1;
            let outcome: Result<(), RegistryError> = loop {
                let url = format!(
                    "{}/{owner}/packages/container/{package}/versions?per_page={GHCR_PAGE}&page={page}",
                    self.base
                );
                self.count();
                let mut req = self
                    .http
                    .get(&url)
                    .header("Accept", "application/vnd.github+json")
                    .header("X-GitHub-Api-Version", "2022-11-28")
                    .header("User-Agent", "ferry");
                if let Some(t) = self.secret() {
                    req = req.bearer_auth(t);
                }
                let resp = match req.send().await {
                    Ok(r) => r,
                    Err(e) => {
                        break Err(
                            self.error("listing package versions", crate::transport::describe(&e))
                        )
                    }
                };
                if !resp.status().is_success() {
                    break Err(self.failed("listing package versions", resp).await);
                }
                let more = resp
                    .headers()
                    .get("link")
                    .and_then(|l| l.to_str().ok())
                    .is_some_and(|l| l.contains("rel=\"next\""));
                let body = crate::transport::read_capped(resp, 64 << 20).await;
                let versions: Vec<RawVersion> = match serde_json::from_slice(&body) {
                    Ok(v) => v,
                    Err(e) => break Err(self.error("listing package versions", e)),
                };
                let n = versions.len();
                for v in versions {
                    let Ok(d) = Digest::parse(&v.name) else {
                        continue;
                    };
                    all.insert(
                        d,
                        Version {
                            id: v.id,
                            tags: v
                                .metadata
                                .and_then(|m| m.container)
                                .map(|c| c.tags)
                                .unwrap_or_default(),
                            created: v
                                .created_at
                                .and_then(|t| humantime::parse_rfc3339_weak(&t).ok()),
                        },
                    );
                }
                if !more || n == 0 {
                    break Ok(());
                }
                page += 1;
            };
            match outcome {
                Ok(()) => {
                    *cached = Some((owner, all.clone()));
                    return Ok(all);
                }
                // An organisation's package 404s under `orgs/` when the owner is a user.
                Err(e @ RegistryError::Cloud { .. }) if e.to_string().contains("answered 404") => {
                    last_err = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_err.unwrap_or_else(|| self.error("listing package versions", "not found")))
    }

    async fn ghcr_delete_version(&self, d: &Digest) -> Result<bool, RegistryError> {
        let mut versions = self.ghcr_versions(false).await?;
        if !versions.contains_key(d) {
            versions = self.ghcr_versions(true).await?;
        }
        let Some(v) = versions.get(d) else {
            return Ok(false);
        };
        let owner = self
            .versions
            .lock()
            .await
            .as_ref()
            .map(|(o, _)| o.clone())
            .unwrap_or_else(|| format!("orgs/{}", self.owner));
        let url = format!(
            "{}/{owner}/packages/container/{}/versions/{}",
            self.base,
            self.name.replace('/', "%2F"),
            v.id
        );
        self.count();
        let mut req = self
            .http
            .delete(&url)
            .header("Accept", "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28")
            .header("User-Agent", "ferry");
        if let Some(t) = self.secret() {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.map_err(|e| {
            self.error("deleting a package version", crate::transport::describe(&e))
        })?;
        match resp.status().as_u16() {
            200..=299 => Ok(true),
            404 => Ok(false),
            _ => Err(self.failed("deleting a package version", resp).await),
        }
    }

    /// Docker Hub: a JWT from the Hub's login, once per run.
    async fn hub_token(&self) -> Result<String, RegistryError> {
        let mut token = self.token.lock().await;
        if let Some(t) = token.as_ref() {
            return t.clone().map_err(|first| RegistryError::Unauthorized {
                host: self.base.clone(),
                detail: format!("the login failed earlier in this run ({first})"),
            });
        }
        let t = self.hub_login().await;
        *token = Some(t.as_ref().map(Clone::clone).map_err(ToString::to_string));
        t
    }

    async fn hub_login(&self) -> Result<String, RegistryError> {
        let Some(Credential::Basic { username, password }) = &self.credential else {
            return Err(RegistryError::Unauthorized {
                host: self.base.clone(),
                detail: "the Docker Hub API needs a username and password or access token (docker login docker.io)".into(),
            });
        };
        // Hub's current route first; the older login where it is not offered (404).
        let routes = [
            (
                "/v2/auth/token",
                serde_json::json!({"identifier": username, "secret": password.expose()}),
                "access_token",
            ),
            (
                "/v2/users/login",
                serde_json::json!({"username": username, "password": password.expose()}),
                "token",
            ),
        ];
        for (route, body, field) in routes {
            self.count();
            let resp = self
                .http
                .post(format!("{}{route}", self.base))
                .json(&body)
                .send()
                .await
                .map_err(|e| self.error("logging in", crate::transport::describe(&e)))?;
            if resp.status() == reqwest::StatusCode::NOT_FOUND && route == "/v2/auth/token" {
                continue;
            }
            if !resp.status().is_success() {
                return Err(self.failed("logging in", resp).await);
            }
            let answer = crate::transport::read_capped(resp, 1 << 20).await;
            return serde_json::from_slice::<serde_json::Value>(&answer)
                .ok()
                .and_then(|v| v[field].as_str().map(str::to_owned))
                .ok_or_else(|| self.error("logging in", "no token in the answer"));
        }
        Err(self.error("logging in", "no login route answered"))
    }

    async fn hub_delete_tag(&self, tag: &Tag) -> Result<bool, RegistryError> {
        let token = self.hub_token().await?;
        let url = format!(
            "{}/v2/namespaces/{}/repositories/{}/tags/{tag}",
            self.base, self.owner, self.name
        );
        self.count();
        let resp = self
            .http
            .delete(&url)
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| self.error("deleting a tag", crate::transport::describe(&e)))?;
        match resp.status().as_u16() {
            200..=299 => Ok(true),
            404 => Ok(false),
            _ => Err(self.failed(&format!("deleting tag {tag}"), resp).await),
        }
    }
}
