//! auth: registry authentication — WWW-Authenticate challenges, Basic credentials, and bearer tokens cached per host and scope.
//!
//! Flow: a request goes out with whatever this module already knows for (host, scopes). On a
//! 401 the caller hands the challenge to [`Auth::on_unauthorized`], which records it, fetches a
//! fresh token (or picks Basic credentials) and the request is sent once more. Tokens are
//! refreshed before they expire. Secrets are only ever held in [`Secret`].

pub mod docker_config;
pub mod oneoff;
pub mod store;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use reqwest::header::HeaderValue;
use serde::Deserialize;

pub use docker_config::{Credential, CredentialStore, Origin, Secret};

use crate::cloud::{Cloud, Kind};
use crate::registry_error::RegistryError;
use crate::transport::retry::{parse_retry_after, retryable_status, Attempts, RetryPolicy};

/// Lifetime assumed when a token response gives none (the distribution token spec's default).
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

/// A token is refreshed when less than this fraction of its lifetime is left (and at least 5 s early).
const REFRESH_MARGIN_DIVISOR: u32 = 5;

/// Lifetime assumed for a cloud credential whose expiry is missing or already past.
pub const SHORT_LIVED: Duration = Duration::from_secs(60);

/// How long before its end a credential or token of this lifetime is renewed: a fifth of it, at
/// least 5 s, at most half.
pub fn refresh_margin(lifetime: Duration) -> Duration {
    (lifetime / REFRESH_MARGIN_DIVISOR)
        .max(Duration::from_secs(5))
        .min(lifetime / 2)
}

/// Well-known environment variables: `DOCKERHUB_USERNAME`/`DOCKERHUB_TOKEN` for Docker Hub,
/// `GITHUB_TOKEN` or `GH_TOKEN` for GHCR (user `GITHUB_ACTOR`, else `ferry`).
fn env_credential(kind: &Kind) -> Option<(Credential, Origin)> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match kind {
        Kind::DockerHub => Some((
            Credential::Basic {
                username: var("DOCKERHUB_USERNAME")?,
                password: Secret::new(var("DOCKERHUB_TOKEN")?),
            },
            Origin::Env("DOCKERHUB_TOKEN"),
        )),
        Kind::Ghcr => {
            let (name, token) = match var("GITHUB_TOKEN") {
                Some(t) => ("GITHUB_TOKEN", t),
                None => ("GH_TOKEN", var("GH_TOKEN")?),
            };
            Some((
                Credential::Basic {
                    username: var("GITHUB_ACTOR").unwrap_or_else(|| "ferry".into()),
                    password: Secret::new(token),
                },
                Origin::Env(name),
            ))
        }
        _ => None,
    }
}

/// The environment variables [`env_credential`] reads for a registry, for "looked in" messages.
fn env_names(kind: &Kind) -> Option<&'static str> {
    match kind {
        Kind::DockerHub => Some("DOCKERHUB_USERNAME/DOCKERHUB_TOKEN"),
        Kind::Ghcr => Some("GITHUB_TOKEN or GH_TOKEN"),
        _ => None,
    }
}

/// ECR's credentials, as messages name them.
const ECR_ORIGIN: Origin =
    Origin::Cloud("ECR GetAuthorizationToken (the AWS default credential chain)");
/// Google's, likewise.
const GOOGLE_ORIGIN: Origin = Origin::Cloud("Google OAuth (application default credentials)");

/// What a registry asked for in `WWW-Authenticate`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Challenge {
    /// `Basic realm=...`
    Basic,
    /// `Bearer realm=...,service=...,scope=...`
    Bearer {
        /// The token endpoint.
        realm: String,
        /// The service name to ask a token for.
        service: Option<String>,
    },
}

/// Parses a `WWW-Authenticate` header value.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header
        .split_once(char::is_whitespace)
        .unwrap_or((header, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let params = parse_params(rest);
    let realm = params.get("realm")?.clone();
    Some(Challenge::Bearer {
        realm,
        service: params.get("service").cloned(),
    })
}

/// Parses `key="value", key2=value2` (values may contain commas inside quotes).
fn parse_params(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let key: String = chars
            .by_ref()
            .take_while(|c| *c != '=')
            .collect::<String>()
            .trim()
            .to_ascii_lowercase();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek().copied() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
            value = value.trim().to_owned();
        }
        out.insert(key, value);
    }
    out
}

/// A token scope such as `repository:acme/api:pull,push`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope(String);

impl Scope {
    /// Listing the registry's repositories.
    pub fn catalog() -> Scope {
        Scope("registry:catalog:*".to_owned())
    }
    /// Pull access to a repository.
    pub fn pull(repository: &str) -> Scope {
        Scope(format!("repository:{repository}:pull"))
    }
    /// Pull and push access to a repository.
    pub fn push(repository: &str) -> Scope {
        Scope(format!("repository:{repository}:pull,push"))
    }
    /// Delete access to a repository (distribution's token servers grant it as `delete`).
    pub fn delete(repository: &str) -> Scope {
        Scope(format!("repository:{repository}:delete"))
    }
    /// The scope string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// True for a scope that only reads.
    pub fn is_pull_only(&self) -> bool {
        self.0.ends_with(":pull")
    }
}

struct Token {
    value: Secret,
    refresh_at: Instant,
}

type TokenSlot = Arc<tokio::sync::Mutex<Option<Token>>>;

/// Where a registry's credentials come from (`auth:` in `registries.yaml`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CredentialSource {
    /// By registry name: ECR through the AWS SDK, Google registries through gcp_auth (each falling
    /// back to the Docker config), Docker Hub and GHCR from the Docker config then their
    /// environment variables, anything else from the Docker config.
    #[default]
    Auto,
    /// Docker/podman credential files and helpers, then the well-known environment variables.
    DockerConfig,
    /// Never send credentials.
    Anonymous,
    /// ECR `GetAuthorizationToken` only.
    Ecr,
    /// Google OAuth tokens only.
    Google,
}

impl CredentialSource {
    /// Every name, for error messages.
    pub const NAMES: &'static str = "auto, docker-config, anonymous, ecr, google";

    /// Parses a name from `registries.yaml`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "auto" => Self::Auto,
            "docker-config" => Self::DockerConfig,
            "anonymous" => Self::Anonymous,
            "ecr" => Self::Ecr,
            "google" | "gcp" => Self::Google,
            _ => return None,
        })
    }
}

/// A credential and when to ask for it again (`None`: it does not expire).
struct CachedCredential {
    value: Option<Credential>,
    refresh_at: Option<Instant>,
}

type CredentialSlot = Arc<tokio::sync::Mutex<Option<CachedCredential>>>;

/// Credentials, challenges and tokens for every registry of a run.
pub struct Auth {
    store: CredentialStore,
    /// Logins given on the command line, per registry: they win over every other source.
    overrides: HashMap<String, Credential>,
    /// Never fall back to an anonymous token when credentials are refused (`ferry login`).
    strict: bool,
    sources: HashMap<String, CredentialSource>,
    cloud: Arc<Cloud>,
    creds: Mutex<HashMap<String, CredentialSlot>>,
    /// Why a registry has no credentials (a cloud API failed), for its refusals' messages.
    missing: Mutex<HashMap<String, String>>,
    /// Where each registry's credential came from; a host missing here has none.
    origins: Mutex<HashMap<String, Origin>>,
    challenges: Mutex<HashMap<String, Challenge>>,
    tokens: Mutex<HashMap<(String, Vec<Scope>), TokenSlot>>,
    token_requests: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth").finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl Auth {
    /// Uses the given credential files.
    pub fn new(store: CredentialStore) -> Self {
        Auth {
            store,
            overrides: HashMap::new(),
            strict: false,
            sources: HashMap::new(),
            cloud: Arc::default(),
            creds: Mutex::default(),
            missing: Mutex::default(),
            origins: Mutex::default(),
            challenges: Mutex::default(),
            tokens: Mutex::default(),
            token_requests: Default::default(),
        }
    }

    /// Never sends credentials to these registries (`auth: anonymous`); tokens are asked for anonymously.
    pub fn with_anonymous(mut self, hosts: impl IntoIterator<Item = String>) -> Self {
        self.sources
            .extend(hosts.into_iter().map(|h| (h, CredentialSource::Anonymous)));
        self
    }

    /// Where each registry's credentials come from (others: [`CredentialSource::Auto`]).
    pub fn with_sources(mut self, sources: HashMap<String, CredentialSource>) -> Self {
        self.sources.extend(sources);
        self
    }

    /// Uses these logins (from the command line) for their registries, whatever the
    /// registry's `auth:` source or the config files say.
    pub fn with_overrides(mut self, overrides: HashMap<String, Credential>) -> Self {
        self.overrides.extend(overrides);
        self
    }

    /// Refused credentials fail, instead of the usual retry for a pull with an anonymous token:
    /// `ferry login` must learn that a password is wrong, not that the registry is public.
    pub fn strict(mut self) -> Self {
        self.strict = true;
        self
    }

    /// The cloud API clients credentials are asked from.
    pub fn with_cloud(mut self, cloud: Arc<Cloud>) -> Self {
        self.cloud = cloud;
        self
    }

    /// Token requests made so far.
    pub fn token_requests(&self) -> u64 {
        self.token_requests
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The credential for a host: looked up once, or again before a cloud-issued one expires.
    async fn credential(&self, host: &str) -> Result<Option<Credential>, RegistryError> {
        let slot = self
            .creds
            .lock()
            .expect("creds lock")
            .entry(host.to_owned())
            .or_default()
            .clone();
        let mut cached = slot.lock().await;
        if let Some(c) = cached
            .as_ref()
            .filter(|c| c.refresh_at.is_none_or(|r| Instant::now() < r))
        {
            return Ok(c.value.clone());
        }
        let (value, expires) = self.find_credential(host).await?;
        let refresh_at = expires.map(|e| {
            let lifetime = e
                .and_then(|e| e.duration_since(SystemTime::now()).ok())
                .filter(|d| !d.is_zero())
                .unwrap_or(SHORT_LIVED);
            Instant::now() + lifetime - refresh_margin(lifetime)
        });
        if expires.is_some() {
            tracing::debug!(host, "cloud credential refreshed");
        }
        *cached = Some(CachedCredential {
            value: value.clone(),
            refresh_at,
        });
        Ok(value)
    }

    /// The credential a host would be sent, if any is found (errors reading them count as none).
    pub async fn credential_for(&self, host: &str) -> Option<Credential> {
        self.credential(host).await.ok().flatten()
    }

    /// True when a host's credentials came from a cloud API and can be asked for again.
    pub async fn renewable(&self, host: &str) -> bool {
        let slot = self.creds.lock().expect("creds lock").get(host).cloned();
        match slot {
            Some(slot) => slot
                .lock()
                .await
                .as_ref()
                .is_some_and(|c| c.refresh_at.is_some()),
            None => false,
        }
    }

    /// Why no credentials were found for a host, when a cloud API said so.
    pub fn missing_reason(&self, host: &str) -> Option<String> {
        self.missing
            .lock()
            .expect("missing lock")
            .get(host)
            .cloned()
    }

    /// Where the credential ferry sent to a host came from (`None`: it had none).
    pub fn origin(&self, host: &str) -> Option<Origin> {
        self.origins
            .lock()
            .expect("origins lock")
            .get(host)
            .cloned()
    }

    /// Says why a registry got no credentials: where ferry looked, and a cloud API's failure.
    pub fn none_found(&self, host: &str) -> String {
        if self.sources.get(host) == Some(&CredentialSource::Anonymous) {
            return "no credentials sent (auth: anonymous)".into();
        }
        let mut places: Vec<String> = self
            .store
            .files()
            .iter()
            .map(|f| f.display().to_string())
            .collect();
        if let Some(vars) = env_names(&Kind::of(host)) {
            places.push(format!("${vars}"));
        }
        let mut text = if places.is_empty() {
            "no credentials found (no docker config file is set up)".to_owned()
        } else {
            format!("no credentials found in {}", places.join(", "))
        };
        if let Some(why) = self.missing_reason(host) {
            text.push_str(&format!(", and {why}"));
        }
        text
    }

    /// Credentials were refused: who turned down which, or that there were none to send.
    pub fn refusal(&self, host: &str) -> String {
        match self.origin(host) {
            Some(o) => format!("the credentials from {o} were refused"),
            None => self.none_found(host),
        }
    }

    /// Forgets a host's credential and tokens after they were refused (a cloud credential is asked for again).
    pub async fn invalidate(&self, host: &str) {
        let slot = self.creds.lock().expect("creds lock").get(host).cloned();
        if let Some(slot) = slot {
            let mut c = slot.lock().await;
            if c.as_ref().is_some_and(|c| c.refresh_at.is_some()) {
                *c = None;
            }
        }
        let slots: Vec<TokenSlot> = self
            .tokens
            .lock()
            .expect("token lock")
            .iter()
            .filter(|((h, _), _)| h == host)
            .map(|(_, s)| s.clone())
            .collect();
        for s in slots {
            *s.lock().await = None;
        }
    }

    /// Finds a host's credential by its source; `Some(expiry)` marks one a cloud API issued.
    #[allow(clippy::type_complexity)]
    async fn find_credential(
        &self,
        host: &str,
    ) -> Result<(Option<Credential>, Option<Option<SystemTime>>), RegistryError> {
        if let Some(c) = self.overrides.get(host) {
            tracing::debug!(host, "credential from the command line");
            self.set_origin(host, Some(Origin::CommandLine));
            return Ok((Some(c.clone()), None));
        }
        let kind = Kind::of(host);
        let source = self.sources.get(host).copied().unwrap_or_default();
        let cloud_err = |e: crate::cloud::CloudError| RegistryError::Unauthorized {
            host: host.to_owned(),
            detail: e.to_string(),
        };
        let issued = match (source, &kind) {
            (CredentialSource::Anonymous, _) => return Ok((None, None)),
            (CredentialSource::DockerConfig, _) => None,
            (CredentialSource::Ecr, Kind::Ecr(r)) => {
                Some(self.cloud.ecr.authorization(r).await.map_err(cloud_err))
            }
            (CredentialSource::Ecr, _) => return Err(RegistryError::Unauthorized {
                host: host.to_owned(),
                detail:
                    "auth: ecr needs an ECR registry name (ACCOUNT.dkr.ecr.REGION.amazonaws.com)"
                        .into(),
            }),
            (CredentialSource::Google, _) | (CredentialSource::Auto, Kind::Google) => {
                Some(self.cloud.google.authorization().await.map_err(cloud_err))
            }
            (CredentialSource::Auto, Kind::Ecr(r)) => {
                Some(self.cloud.ecr.authorization(r).await.map_err(cloud_err))
            }
            (CredentialSource::Auto, _) => None,
        };
        let cloud_origin = if matches!(kind, Kind::Ecr(_)) {
            ECR_ORIGIN
        } else {
            GOOGLE_ORIGIN
        };
        let issued = match issued {
            Some(Ok(i)) => {
                self.set_origin(host, Some(cloud_origin));
                return Ok((Some(i.credential), Some(i.expires)));
            }
            Some(Err(e)) if source == CredentialSource::Auto => Some(e),
            Some(Err(e)) => return Err(e),
            None => None,
        };
        let found = self.lookup_store(host).await?;
        let found = found.or_else(|| env_credential(&kind));
        self.set_origin(host, found.as_ref().map(|(_, o)| o.clone()));
        let found = found.map(|(c, _)| c);
        match (found, issued) {
            (Some(c), Some(e)) => {
                tracing::debug!(host, error = %e, "cloud credentials unavailable: using the docker config's");
                Ok((Some(c), None))
            }
            // Public images need no credentials: go on anonymously, and say why if refused.
            (None, Some(e)) => {
                tracing::debug!(host, error = %e, "no credentials: going on anonymously");
                self.missing
                    .lock()
                    .expect("missing lock")
                    .insert(host.to_owned(), e.to_string());
                Ok((None, None))
            }
            (found, None) => Ok((found, None)),
        }
    }

    fn set_origin(&self, host: &str, origin: Option<Origin>) {
        let mut origins = self.origins.lock().expect("origins lock");
        match origin {
            Some(o) => origins.insert(host.to_owned(), o),
            None => origins.remove(host),
        };
    }

    /// Looks a host up in the Docker config (credential helpers are programs: run them off the async threads).
    async fn lookup_store(
        &self,
        host: &str,
    ) -> Result<Option<(Credential, Origin)>, RegistryError> {
        let store = self.store.clone();
        let h = host.to_owned();
        let found = tokio::task::spawn_blocking(move || store.lookup_with_origin(&h))
            .await
            .map_err(|e| RegistryError::Protocol {
                host: host.to_owned(),
                detail: format!("credential lookup panicked: {e}"),
            })??;
        tracing::debug!(host, found = found.is_some(), "credential lookup");
        Ok(found)
    }

    /// The Authorization header to send now, from what is already known (no network unless a token must be fetched or refreshed).
    pub async fn header(
        &self,
        client: &reqwest::Client,
        host: &str,
        scopes: &[Scope],
    ) -> Result<Option<HeaderValue>, RegistryError> {
        let challenge = self
            .challenges
            .lock()
            .expect("challenge lock")
            .get(host)
            .cloned();
        match challenge {
            None => Ok(None),
            Some(c) => self.header_for(client, host, scopes, &c, false).await,
        }
    }

    /// After a 401: remember the challenge and return a header to send again (`None` if there is
    /// nothing to try). `refused`: the request carried credentials, so get new ones.
    pub async fn on_unauthorized(
        &self,
        client: &reqwest::Client,
        host: &str,
        scopes: &[Scope],
        www_authenticate: Option<&str>,
        refused: bool,
    ) -> Result<Option<HeaderValue>, RegistryError> {
        let Some(challenge) = www_authenticate.and_then(parse_challenge) else {
            return Ok(None);
        };
        self.challenges
            .lock()
            .expect("challenge lock")
            .insert(host.to_owned(), challenge.clone());
        // A request sent without credentials (the challenge was not known yet) takes a token
        // another request fetched meanwhile; one whose token was refused asks for a new one.
        self.header_for(client, host, scopes, &challenge, refused)
            .await
    }

    async fn header_for(
        &self,
        client: &reqwest::Client,
        host: &str,
        scopes: &[Scope],
        challenge: &Challenge,
        force_refresh: bool,
    ) -> Result<Option<HeaderValue>, RegistryError> {
        match challenge {
            Challenge::Basic => Ok(match self.credential(host).await? {
                Some(Credential::Basic { username, password }) => {
                    Some(basic_header(&username, &password))
                }
                _ => None,
            }),
            Challenge::Bearer { realm, service } => {
                let mut key_scopes = scopes.to_vec();
                key_scopes.sort();
                key_scopes.dedup();
                let slot = self
                    .tokens
                    .lock()
                    .expect("token lock")
                    .entry((host.to_owned(), key_scopes.clone()))
                    .or_default()
                    .clone();
                // One fetch per (host, scopes) at a time: concurrent requests wait for it.
                let mut token = slot.lock().await;
                let fresh = token
                    .as_ref()
                    .is_some_and(|t| Instant::now() < t.refresh_at);
                if !fresh || force_refresh {
                    let t = self
                        .fetch_token(client, host, realm, service.as_deref(), &key_scopes)
                        .await?;
                    *token = Some(t);
                }
                let value = token.as_ref().map(|t| t.value.expose()).unwrap_or_default();
                Ok(Some(sensitive(&format!("Bearer {value}"))))
            }
        }
    }

    async fn fetch_token(
        &self,
        client: &reqwest::Client,
        host: &str,
        realm: &str,
        service: Option<&str>,
        scopes: &[Scope],
    ) -> Result<Token, RegistryError> {
        let url = url::Url::parse(realm).map_err(|e| RegistryError::Token {
            realm: realm.to_owned(),
            detail: format!("bad realm: {e}"),
        })?;
        let realm_shown = format!("{}{}", url.host_str().unwrap_or_default(), url.path());
        let token_err = |detail: String| RegistryError::Token {
            realm: realm_shown.clone(),
            detail,
        };
        if !matches!(url.scheme(), "https" | "http") {
            return Err(token_err(format!(
                "realm scheme {} is not http(s)",
                url.scheme()
            )));
        }
        let credential = self.credential(host).await?;
        let pull_only = scopes.iter().all(Scope::is_pull_only);
        match self
            .request_token(
                client,
                host,
                &url,
                &realm_shown,
                service,
                scopes,
                credential.as_ref(),
            )
            .await
        {
            Err(refused @ (RegistryError::Unauthorized { .. } | RegistryError::Denied { .. }))
                if credential.is_some() && pull_only && !self.strict =>
            {
                tracing::warn!(host, "{refused}: asking for an anonymous token to pull");
                // When that fails too, the refusal of the credentials is what to fix.
                self.request_token(client, host, &url, &realm_shown, service, scopes, None)
                    .await
                    .map_err(|_| refused)
            }
            other => other,
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn request_token(
        &self,
        client: &reqwest::Client,
        host: &str,
        url: &url::Url,
        realm_shown: &str,
        service: Option<&str>,
        scopes: &[Scope],
        credential: Option<&Credential>,
    ) -> Result<Token, RegistryError> {
        let mut url = url.clone();
        let token_err = |detail: String| RegistryError::Token {
            realm: realm_shown.to_owned(),
            detail,
        };
        // Never send a password in clear text to a realm on another machine.
        let realm_loopback = url.host_str().is_some_and(|h| {
            h == "localhost"
                || h.trim_matches(['[', ']'])
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        });
        if credential.is_some() && url.scheme() == "http" && !realm_loopback {
            return Err(token_err(
                "refusing to send credentials to a plain-http token realm".into(),
            ));
        }
        self.token_requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let request = match &credential {
            Some(Credential::IdentityToken(refresh)) => {
                let mut form = vec![
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh.expose()),
                    ("client_id", "ferry"),
                ];
                if let Some(s) = service {
                    form.push(("service", s));
                }
                let joined = scopes
                    .iter()
                    .map(Scope::as_str)
                    .collect::<Vec<_>>()
                    .join(" ");
                form.push(("scope", &joined));
                let body = url::form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(form)
                    .finish();
                client
                    .post(url.clone())
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body)
            }
            basic => {
                {
                    let mut q = url.query_pairs_mut();
                    if let Some(s) = service {
                        q.append_pair("service", s);
                    }
                    for s in scopes {
                        q.append_pair("scope", s.as_str());
                    }
                }
                let mut r = client.get(url.clone());
                if let Some(Credential::Basic { username, password }) = basic {
                    r = r.header(
                        reqwest::header::AUTHORIZATION,
                        basic_header(username, password),
                    );
                }
                r
            }
        };
        tracing::debug!(host, realm = %realm_shown, scopes = ?scopes.iter().map(Scope::as_str).collect::<Vec<_>>(), "requesting token");
        // Token servers throttle and fail like registries do: retry those, never a refusal.
        let mut attempts = Attempts::new(RetryPolicy::default());
        let resp = loop {
            let attempt = request
                .try_clone()
                .expect("token requests have string bodies");
            let (retry_after, why) = match attempt.send().await {
                Ok(r) if retryable_status(r.status().as_u16()) => (
                    r.headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| parse_retry_after(v, SystemTime::now())),
                    format!("status {}", r.status().as_u16()),
                ),
                Ok(r) => break r,
                Err(e) if !crate::transport::is_transient(&e) => {
                    return Err(token_err(crate::transport::describe(&e)))
                }
                Err(e) => (None, crate::transport::describe(&e)),
            };
            match attempts.next_delay(retry_after) {
                Some(d) => {
                    tracing::debug!(realm = %realm_shown, attempt = attempts.made(), delay_ms = d.as_millis() as u64, "token request failed ({why}); retrying");
                    tokio::time::sleep(d).await;
                }
                None => {
                    return Err(token_err(format!(
                        "{why} after {} attempts",
                        attempts.made()
                    )))
                }
            }
        };
        let status = resp.status();
        if !status.is_success() {
            let body = crate::transport::read_capped(resp, 4096).await;
            let detail = match status.as_u16() {
                401 if credential.is_some() => self.refusal(host),
                401 => format!("credentials required: {}", self.none_found(host)),
                s => format!(
                    "status {s}: {}",
                    crate::transport::one_line(&String::from_utf8_lossy(&body))
                ),
            };
            return Err(if status.as_u16() == 401 {
                RegistryError::Unauthorized {
                    host: host.to_owned(),
                    detail: format!("token server {realm_shown}: {detail}"),
                }
            } else {
                token_err(detail)
            });
        }
        let body = crate::transport::read_capped(resp, 1 << 20).await;
        let parsed: TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| token_err(format!("bad token response: {e}")))?;
        let value = parsed
            .token
            .or(parsed.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| token_err("no token in response".into()))?;
        let lifetime = parsed
            .expires_in
            .filter(|s| *s > 0)
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_TOKEN_LIFETIME);
        let margin = refresh_margin(lifetime);
        tracing::debug!(host, lifetime_s = lifetime.as_secs(), "token refreshed");
        Ok(Token {
            value: Secret::new(value),
            refresh_at: Instant::now() + lifetime - margin,
        })
    }
}

/// A Basic Authorization header, marked sensitive so it is never printed.
pub fn basic_header(username: &str, password: &Secret) -> HeaderValue {
    let raw = base64::engine::general_purpose::STANDARD
        .encode(format!("{username}:{}", password.expose()));
    sensitive(&format!("Basic {raw}"))
}

fn sensitive(s: &str) -> HeaderValue {
    let mut v = HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""));
    v.set_sensitive(true);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_challenges() {
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull,push""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into())
            })
        );
        assert_eq!(
            parse_challenge(r#"bearer realm=http://127.0.0.1:9/token, service="a\"b""#),
            Some(Challenge::Bearer {
                realm: "http://127.0.0.1:9/token".into(),
                service: Some("a\"b".into())
            })
        );
        assert_eq!(parse_challenge("Negotiate abc"), None);
        assert_eq!(parse_challenge("Bearer service=x"), None);
    }

    #[test]
    fn scopes() {
        assert_eq!(Scope::pull("a/b").as_str(), "repository:a/b:pull");
        assert_eq!(Scope::push("a/b").as_str(), "repository:a/b:pull,push");
    }

    #[tokio::test]
    async fn command_line_logins_win_over_config_files_and_sources() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.json");
        std::fs::write(
            &f,
            r#"{"auths":{"r.example":{"username":"file","password":"f"},"s.example":{"username":"file","password":"f"}}}"#,
        )
        .unwrap();
        let given = Credential::Basic {
            username: "cli".into(),
            password: Secret::new("c"),
        };
        let auth = Auth::new(CredentialStore::from_files(vec![f]))
            .with_anonymous(["r.example".to_owned()])
            .with_overrides(HashMap::from([("r.example".to_owned(), given.clone())]));
        assert_eq!(auth.credential("r.example").await.unwrap(), Some(given));
        assert_eq!(
            auth.credential("s.example").await.unwrap(),
            Some(Credential::Basic {
                username: "file".into(),
                password: Secret::new("f")
            })
        );
    }

    #[test]
    fn basic_header_is_sensitive() {
        let h = basic_header("u", &Secret::new("p"));
        assert!(h.is_sensitive());
        assert_eq!(format!("{h:?}"), "Sensitive");
    }
}
