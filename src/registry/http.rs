//! registry::http: the OCI distribution API over HTTP(S) — auth retries, strict digest checks, streamed blob uploads, mounts.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use reqwest::header::{
    HeaderMap, ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LINK, LOCATION,
    RANGE, RETRY_AFTER, WWW_AUTHENTICATE,
};
use reqwest::{Method, Response, StatusCode};
use url::Url;

use super::{BlobStream, ManifestInfo, ManifestRef, Mount, RegistryError, Repo, RepoStats, Result};
use crate::auth::{Auth, Scope};
use crate::digest::Digest;
use crate::manifest::{self, Manifest};
use crate::reference::{Registry, Repository, Tag};
use crate::transport::retry::{parse_retry_after, retryable_status, Attempts};
use crate::transport::{describe, one_line, read_capped, HostGate, Transport};

/// Page size asked for when listing tags, unless the transport options say otherwise (ECR
/// refuses more than 1000).
pub const TAGS_PAGE_SIZE: usize = 1000;
/// Largest error body read from a registry.
const MAX_ERROR_BODY: usize = 64 << 10;

/// One repository on a registry, reached over HTTP(S).
pub struct HttpRepo {
    registry: Registry,
    repository: Repository,
    base: String,
    client: reqwest::Client,
    gate: Arc<HostGate>,
    auth: Arc<Auth>,
    scopes: Vec<Scope>,
    requests: AtomicU64,
    /// Upload sessions a refused mount (202) already opened, used by the next upload of that blob.
    pending_uploads: Mutex<HashMap<Digest, Url>>,
    /// The largest manifest (or referrers index) read from this registry.
    max_manifest: usize,
    /// Items asked for per page of a list (`?n=`).
    page_size: usize,
    /// See [`Repo::probes_by_mount`]: decided once, from the registry's kind.
    probes_by_mount: bool,
}

/// What a request carries as its body.
enum Body {
    None,
    Bytes(Bytes),
    /// A stream can be sent only once: a 401 on it is final.
    Stream(Option<reqwest::Body>),
}

impl Body {
    fn take(&mut self) -> Option<Option<reqwest::Body>> {
        match self {
            Body::None => Some(None),
            Body::Bytes(b) => Some(Some(reqwest::Body::from(b.clone()))),
            Body::Stream(s) => s.take().map(Some),
        }
    }
}

impl HttpRepo {
    /// A handle on `registry/repository`; `push` asks tokens for pull and push, otherwise pull only.
    pub fn new(
        transport: &Transport,
        auth: Arc<Auth>,
        registry: Registry,
        repository: Repository,
        push: bool,
    ) -> Result<Self> {
        let scopes = vec![if push {
            Scope::push(repository.as_str())
        } else {
            Scope::pull(repository.as_str())
        }];
        let max_manifest = transport.max_manifest_bytes(&registry);
        let page_size = transport.list_page_size(TAGS_PAGE_SIZE);
        // Distribution (Docker Hub, GHCR, and the registries ferry cannot name) mounts; ECR
        // mounts only where an account setting allows it, and Artifact Registry does not say.
        let probes_by_mount = matches!(
            crate::cloud::Kind::of(registry.as_str()),
            crate::cloud::Kind::DockerHub | crate::cloud::Kind::Ghcr | crate::cloud::Kind::Other
        );
        Ok(HttpRepo {
            base: transport.base_url(&registry),
            client: transport.client(&registry)?,
            gate: transport.gate(&registry),
            registry,
            repository,
            auth,
            scopes,
            requests: AtomicU64::new(0),
            pending_uploads: Mutex::default(),
            max_manifest,
            page_size,
            probes_by_mount,
        })
    }

    fn host(&self) -> String {
        self.registry.to_string()
    }

    fn url(&self, tail: &str) -> Result<Url> {
        Url::parse(&format!("{}/v2/{}/{}", self.base, self.repository, tail)).map_err(|e| {
            RegistryError::Protocol {
                host: self.host(),
                detail: format!("bad url: {e}"),
            }
        })
    }

    /// [`Self::send`] within this repository's own scopes.
    async fn send_repo(
        &self,
        method: Method,
        url: Url,
        headers: HeaderMap,
        body: Body,
    ) -> Result<Response> {
        self.send(method, url, &self.scopes, headers, body).await
    }

    /// Sends a request through the registry's gate, with auth and retries.
    ///
    /// - A 401 from this registry (not from a host it redirected to) is answered once: the
    ///   challenge is learnt and a fresh token fetched. A 403 while using cloud-issued
    ///   credentials (ECR's "token expired") renews them once. No other auth failure is retried.
    /// - 408/429/5xx answers and connection failures are retried with backoff and jitter, within
    ///   the registry's attempt cap and time budget; `Retry-After` is honoured, and a 429 pauses
    ///   every request to the registry, not just this one.
    /// - A streamed body can be sent only once: its failures go back to the caller marked
    ///   transient ([`RegistryError::is_transient`]), which re-streams from the source.
    async fn send(
        &self,
        method: Method,
        url: Url,
        scopes: &[Scope],
        headers: HeaderMap,
        mut body: Body,
    ) -> Result<Response> {
        let host = self.host();
        let counted = method == Method::GET && url.path().contains("/manifests/");
        let mut attempts = Attempts::new(self.gate.retry());
        let mut auth_header = self.auth.header(&self.client, &host, scopes).await?;
        let mut auth_retried = false;
        let mut renewed = false;
        loop {
            let replayable = !matches!(body, Body::Stream(_));
            let Some(payload) = body.take() else {
                return Err(RegistryError::Interrupted {
                    host,
                    detail: "an upload must be sent again after its credentials were renewed"
                        .into(),
                });
            };
            let mut rb = self
                .client
                .request(method.clone(), url.clone())
                .headers(headers.clone());
            if let Some(h) = &auth_header {
                rb = rb.header(AUTHORIZATION, h.clone());
            }
            if let Some(p) = payload {
                rb = rb.body(p);
            }
            let admission = self.gate.admit(counted).await;
            self.requests.fetch_add(1, Ordering::Relaxed);
            let started = std::time::Instant::now();
            let sent = rb.send().await;
            drop(admission);
            tracing::trace!(
                %method,
                host,
                path = url.path(),
                status = sent.as_ref().map_or(0, |r| r.status().as_u16()),
                ms = started.elapsed().as_millis() as u64,
                "request"
            );
            let resp = match sent {
                Ok(r) => r,
                Err(e) => {
                    let detail = describe(&e);
                    if !crate::transport::is_transient(&e) {
                        return Err(RegistryError::Connect { host, detail });
                    }
                    if replayable {
                        if let Some(d) = attempts.next_delay(None) {
                            self.log_retry(&method, &url, &detail, &attempts, d);
                            tokio::time::sleep(d).await;
                            continue;
                        }
                    }
                    if attempts.made() > 1 {
                        tracing::warn!(%method, host, path = url.path(), "gave up after {} attempts: {detail}", attempts.made());
                    }
                    return Err(if replayable {
                        RegistryError::Connect { host, detail }
                    } else {
                        RegistryError::Interrupted { host, detail }
                    });
                }
            };
            self.gate.observe(resp.headers());
            let status = resp.status();
            let same_host = resp.url().host_str() == url.host_str()
                && resp.url().port_or_known_default() == url.port_or_known_default();
            if status == StatusCode::UNAUTHORIZED && !auth_retried && same_host {
                auth_retried = true;
                // Credentials that were sent and refused may have expired: ask for them again.
                if auth_header.is_some() {
                    self.auth.invalidate(&host).await;
                }
                let www = resp
                    .headers()
                    .get(WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                match self
                    .auth
                    .on_unauthorized(
                        &self.client,
                        &host,
                        scopes,
                        www.as_deref(),
                        auth_header.is_some(),
                    )
                    .await?
                {
                    Some(h) => {
                        auth_header = Some(h);
                        continue;
                    }
                    None => return Ok(resp),
                }
            }
            // ECR answers an expired token with 403 (no body on a HEAD): renew cloud-issued
            // credentials once.
            if status == StatusCode::FORBIDDEN
                && !renewed
                && same_host
                && auth_header.is_some()
                && self.auth.renewable(&host).await
            {
                tracing::debug!(host, "credentials refused (403): renewing them once");
                renewed = true;
                self.auth.invalidate(&host).await;
                auth_header = self.auth.header(&self.client, &host, scopes).await?;
                continue;
            }
            if retryable_status(status.as_u16()) {
                let retry_after = resp
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, std::time::SystemTime::now()));
                if status == StatusCode::TOO_MANY_REQUESTS {
                    self.gate
                        .pause(retry_after.unwrap_or(crate::transport::retry::BASE_DELAY));
                }
                if !replayable {
                    let detail = registry_error_text(&read_capped(resp, MAX_ERROR_BODY).await);
                    return Err(RegistryError::Interrupted {
                        host,
                        detail: format!("{method} answered {}: {detail}", status.as_u16()),
                    });
                }
                if let Some(d) = attempts.next_delay(retry_after) {
                    let detail = registry_error_text(&read_capped(resp, MAX_ERROR_BODY).await);
                    self.log_retry(
                        &method,
                        &url,
                        &format!("{} {detail}", status.as_u16()),
                        &attempts,
                        d,
                    );
                    tokio::time::sleep(d).await;
                    continue;
                }
                tracing::warn!(%method, host, path = url.path(), "gave up after {} attempts: still {}", attempts.made(), status.as_u16());
            }
            return Ok(resp);
        }
    }

    fn log_retry(
        &self,
        method: &Method,
        url: &Url,
        why: &str,
        attempts: &Attempts,
        delay: Duration,
    ) {
        // Each retry at debug; a request that finally fails says so once, at warn.
        tracing::debug!(
            registry = %self.registry,
            %method,
            path = url.path(),
            attempt = attempts.made(),
            delay_ms = delay.as_millis() as u64,
            "{why}: retrying"
        );
    }

    /// Turns an unexpected answer into an error naming the host, method, path and the registry's own words.
    async fn fail(&self, method: &Method, what: &str, resp: Response) -> RegistryError {
        let status = resp.status().as_u16();
        let path = resp.url().path().to_owned();
        let body = read_capped(resp, MAX_ERROR_BODY).await;
        let detail = registry_error_text(&body);
        let host = self.host();
        match status {
            // Refused credentials and missing ones need different fixes: say which it was, and
            // where the refused ones came from (or where ferry looked).
            401 => RegistryError::Unauthorized {
                detail: match (detail.is_empty(), self.auth.origin(&host)) {
                    (_, Some(o)) if detail.is_empty() => {
                        format!("the credentials from {o} were refused")
                    }
                    (_, Some(o)) => format!("{detail} (the credentials from {o} were refused)"),
                    (true, None) => {
                        format!("authentication required: {}", self.auth.none_found(&host))
                    }
                    (false, None) => format!("{detail}: {}", self.auth.none_found(&host)),
                },
                host,
            },
            403 => RegistryError::Denied {
                detail: match (detail.is_empty(), self.auth.origin(&host)) {
                    (true, None) => "forbidden".into(),
                    (true, Some(o)) => format!("forbidden to the credentials from {o}"),
                    (false, None) => detail,
                    (false, Some(o)) => format!("{detail} (credentials from {o})"),
                },
                host,
            },
            404 => RegistryError::NotFound {
                what: what.to_owned(),
                place: if detail.is_empty() {
                    self.name()
                } else {
                    format!("{} ({detail})", self.name())
                },
            },
            _ => RegistryError::Status {
                host,
                method: method.to_string(),
                path,
                status,
                detail,
            },
        }
    }

    /// A blob answer's body; a break midway is [`RegistryError::Interrupted`] (worth a resume).
    fn blob_body(&self, resp: Response) -> BlobStream {
        let host = self.host();
        resp.bytes_stream()
            .map_err(move |e| RegistryError::Interrupted {
                host: host.clone(),
                detail: format!("blob download cut short: {}", describe(&e)),
            })
            .boxed()
    }

    fn accept(extra: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        let value = match extra {
            Some(x) if !manifest::ACCEPT.contains(x) && !x.contains(',') => {
                format!("{}, {x}", manifest::ACCEPT)
            }
            _ => manifest::ACCEPT.to_owned(),
        };
        h.insert(ACCEPT, value.parse().expect("accept header is ascii"));
        h
    }

    fn header_digest(&self, headers: &HeaderMap) -> Result<Option<Digest>> {
        match headers
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
        {
            None => Ok(None),
            Some(v) => Digest::parse(v.trim())
                .map(Some)
                .map_err(|e| RegistryError::Protocol {
                    host: self.host(),
                    detail: format!("Docker-Content-Digest: {e}"),
                }),
        }
    }

    async fn start_upload(&self) -> Result<Url> {
        let url = self.url("blobs/uploads/")?;
        let resp = self
            .send_repo(Method::POST, url, HeaderMap::new(), Body::None)
            .await?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(self.fail(&Method::POST, "upload", resp).await);
        }
        self.location(&resp)
    }

    fn location(&self, resp: &Response) -> Result<Url> {
        let loc = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| RegistryError::Protocol {
                host: self.host(),
                detail: "upload answer has no Location".into(),
            })?;
        // Use the Location verbatim: it may name another host and carry state in its query.
        resp.url().join(loc).map_err(|e| RegistryError::Protocol {
            host: self.host(),
            detail: format!("bad upload Location: {e}"),
        })
    }
}

impl HttpRepo {
    /// Sends a manifest request. A 404 is `Ok(None)` where `absent_ok` (a HEAD asking whether it
    /// exists); any other answer but 200 is the registry's error.
    async fn manifest_request(
        &self,
        method: Method,
        r: &ManifestRef,
        accept: HeaderMap,
        absent_ok: bool,
    ) -> Result<Option<Response>> {
        let url = self.url(&format!("manifests/{r}"))?;
        let resp = self
            .send_repo(method.clone(), url, accept, Body::None)
            .await?;
        match resp.status() {
            StatusCode::OK => Ok(Some(resp)),
            StatusCode::NOT_FOUND if absent_ok => Ok(None),
            _ => Err(self.fail(&method, &format!("manifest {r}"), resp).await),
        }
    }

    /// `GET /v2/` with the registry's challenge answered: whether these credentials are
    /// accepted (`ferry login`). A registry that asks for none accepts any.
    pub async fn ping(&self) -> Result<()> {
        let url =
            Url::parse(&format!("{}/v2/", self.base)).map_err(|e| RegistryError::Protocol {
                host: self.host(),
                detail: format!("bad url: {e}"),
            })?;
        let resp = self
            .send(Method::GET, url, &[], HeaderMap::new(), Body::None)
            .await?;
        match resp.status() {
            StatusCode::OK => Ok(()),
            _ => Err(self
                .fail(&Method::GET, "the registry API (/v2/)", resp)
                .await),
        }
    }

    /// Every repository the registry lists in its catalog (`GET /v2/_catalog`, following `Link`
    /// pages). Registries without one (GHCR, Docker Hub) answer 401/404: `None`.
    pub async fn catalog(&self) -> Result<Option<Vec<String>>> {
        let url = Url::parse(&format!("{}/v2/_catalog", self.base)).map_err(|e| {
            RegistryError::Protocol {
                host: self.host(),
                detail: format!("bad url: {e}"),
            }
        })?;
        #[derive(serde::Deserialize)]
        struct Catalog {
            #[serde(default)]
            repositories: Option<Vec<String>>,
        }
        self.list_pages(
            url,
            &[Scope::catalog()],
            "catalog",
            // A registry without a catalog says so before it lists anything.
            |status, empty| {
                empty
                    && matches!(
                        status,
                        StatusCode::NOT_FOUND | StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
                    )
            },
            |page: Catalog| page.repositories.unwrap_or_default(),
        )
        .await
    }

    /// Follows a paginated list (`?n=` and `Link: <…>; rel="next"` on the same host), returning
    /// every page's items. When `end(status, nothing_yet)` says an answer's status ends the list,
    /// what came before is the list, and `None` if nothing did. `what` names the list in errors.
    async fn list_pages<P: serde::de::DeserializeOwned>(
        &self,
        mut url: Url,
        scopes: &[Scope],
        what: &str,
        end: impl Fn(StatusCode, bool) -> bool,
        items: impl Fn(P) -> Vec<String>,
    ) -> Result<Option<Vec<String>>> {
        url.query_pairs_mut()
            .append_pair("n", &self.page_size.to_string());
        let mut all = Vec::new();
        loop {
            let resp = self
                .send(
                    Method::GET,
                    url.clone(),
                    scopes,
                    HeaderMap::new(),
                    Body::None,
                )
                .await?;
            match resp.status() {
                StatusCode::OK => {}
                status if end(status, all.is_empty()) => {
                    return Ok((!all.is_empty()).then_some(all))
                }
                _ => return Err(self.fail(&Method::GET, what, resp).await),
            }
            let next = resp
                .headers()
                .get(LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(next_link)
                .and_then(|l| resp.url().join(&l).ok());
            let body = read_capped(resp, 16 << 20).await;
            let page: P = serde_json::from_slice(&body).map_err(|e| RegistryError::Protocol {
                host: self.host(),
                detail: format!("bad {what}: {e}"),
            })?;
            all.extend(items(page));
            match next {
                Some(n) if n.host_str() == url.host_str() => url = n,
                _ => return Ok(Some(all)),
            }
        }
    }
}

/// Pulls `code: message` pairs out of a registry error body, on one line.
fn registry_error_text(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Envelope {
        errors: Vec<Item>,
    }
    #[derive(serde::Deserialize)]
    struct Item {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    match serde_json::from_slice::<Envelope>(body) {
        Ok(e) if !e.errors.is_empty() => one_line(
            &e.errors
                .iter()
                .map(|i| {
                    if i.message.is_empty() {
                        i.code.clone()
                    } else {
                        format!("{}: {}", i.code, i.message)
                    }
                })
                .collect::<Vec<_>>()
                .join("; "),
        ),
        _ => one_line(&String::from_utf8_lossy(body)),
    }
}

#[async_trait]
impl Repo for HttpRepo {
    fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    fn mount_key(&self) -> Option<(String, Repository)> {
        Some((self.registry.to_string(), self.repository.clone()))
    }

    fn probes_by_mount(&self) -> bool {
        self.probes_by_mount
    }

    async fn manifest_head(&self, r: &ManifestRef) -> Result<Option<ManifestInfo>> {
        let Some(resp) = self
            .manifest_request(Method::HEAD, r, Self::accept(None), true)
            .await?
        else {
            return Ok(None);
        };
        let headers = resp.headers();
        let media_type = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let size = headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        match self.header_digest(headers)? {
            Some(digest) => Ok(Some(ManifestInfo {
                digest,
                media_type,
                size,
            })),
            // Old registries omit the header: fetch and hash instead.
            None => {
                let m = self.manifest_get(r, None).await?;
                Ok(Some(ManifestInfo {
                    digest: m.digest,
                    media_type: Some(m.media_type),
                    size: Some(m.bytes.len() as u64),
                }))
            }
        }
    }

    async fn manifest_get(&self, r: &ManifestRef, extra_accept: Option<&str>) -> Result<Manifest> {
        let resp = self
            .manifest_request(Method::GET, r, Self::accept(extra_accept), false)
            .await?
            .expect("a 404 is an error when absent is not allowed");
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let header_digest = self.header_digest(resp.headers())?;
        let body = read_capped(resp, self.max_manifest + 1).await;
        if body.len() > self.max_manifest {
            return Err(RegistryError::Protocol {
                host: self.host(),
                detail: format!(
                    "manifest {r} is over {} bytes (raise max_manifest_bytes for this registry in registries.yaml)",
                    self.max_manifest
                ),
            });
        }
        let bytes = Bytes::from(body);
        let actual = Digest::of(&bytes);
        // By digest, the bytes must hash to it. By tag, the bytes decide what the digest is: a
        // Docker-Content-Digest that disagrees is the registry's mistake (or a proxy's), noted.
        let expected = match r {
            ManifestRef::Digest(d) => Some(d.clone()),
            ManifestRef::Tag(_) => {
                if let Some(h) = header_digest.filter(|h| *h != actual) {
                    tracing::warn!(registry = %self.registry, manifest = %r, "Docker-Content-Digest says {h}, but the bytes hash to {actual}: using the bytes' digest");
                }
                None
            }
        };
        if let Some(expected) = expected.filter(|e| *e != actual) {
            return Err(RegistryError::DigestMismatch {
                expected,
                actual,
                len: bytes.len() as u64,
            });
        }
        Ok(Manifest::parse(bytes, content_type.as_deref())?)
    }

    async fn manifest_put(&self, r: &ManifestRef, m: &Manifest) -> Result<()> {
        let url = self.url(&format!("manifests/{r}"))?;
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            m.media_type.parse().map_err(|_| RegistryError::Protocol {
                host: self.host(),
                detail: "media type is not a header value".into(),
            })?,
        );
        let resp = self
            .send_repo(Method::PUT, url, headers, Body::Bytes(m.bytes.clone()))
            .await?;
        if !matches!(
            resp.status(),
            StatusCode::CREATED | StatusCode::OK | StatusCode::ACCEPTED
        ) {
            return Err(self
                .fail(&Method::PUT, &format!("manifest {r}"), resp)
                .await);
        }
        if let Some(stored) = self.header_digest(resp.headers())? {
            if stored != m.digest {
                return Err(RegistryError::Protocol {
                    host: self.host(),
                    detail: format!(
                        "stored manifest {r} as {stored}, not the {} it was sent as",
                        m.digest
                    ),
                });
            }
        }
        Ok(())
    }

    async fn blob_head(&self, d: &Digest) -> Result<Option<u64>> {
        let url = self.url(&format!("blobs/{d}"))?;
        let resp = self
            .send_repo(Method::HEAD, url, HeaderMap::new(), Body::None)
            .await?;
        match resp.status() {
            StatusCode::OK => Ok(resp
                .headers()
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .or(Some(0))),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self.fail(&Method::HEAD, &format!("blob {d}"), resp).await),
        }
    }

    async fn blob_get(&self, d: &Digest) -> Result<BlobStream> {
        let url = self.url(&format!("blobs/{d}"))?;
        let resp = self
            .send_repo(Method::GET, url, HeaderMap::new(), Body::None)
            .await?;
        if resp.status() != StatusCode::OK {
            return Err(self.fail(&Method::GET, &format!("blob {d}"), resp).await);
        }
        Ok(self.blob_body(resp))
    }

    /// `Range: bytes=N-`. Only a 206 whose `Content-Range` starts at N is taken as the tail; a
    /// 200 is the whole blob (start 0), and anything else ranged (another start, a 416) is
    /// dropped for a plain GET of the whole blob.
    async fn blob_get_from(&self, d: &Digest, offset: u64) -> Result<(BlobStream, u64)> {
        if offset == 0 {
            return Ok((self.blob_get(d).await?, 0));
        }
        let url = self.url(&format!("blobs/{d}"))?;
        let mut headers = HeaderMap::new();
        headers.insert(
            RANGE,
            format!("bytes={offset}-")
                .parse()
                .expect("a range is a header value"),
        );
        let resp = self
            .send_repo(Method::GET, url, headers, Body::None)
            .await?;
        match resp.status() {
            StatusCode::OK => return Ok((self.blob_body(resp), 0)),
            StatusCode::PARTIAL_CONTENT => {
                let start = resp
                    .headers()
                    .get(CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(range_start);
                if start == Some(offset) {
                    return Ok((self.blob_body(resp), offset));
                }
                tracing::debug!(registry = %self.registry, blob = %d, ?start, offset, "a range answer starts elsewhere: reading the whole blob");
            }
            StatusCode::RANGE_NOT_SATISFIABLE => {
                tracing::debug!(registry = %self.registry, blob = %d, offset, "range refused (416): reading the whole blob");
            }
            _ => return Err(self.fail(&Method::GET, &format!("blob {d}"), resp).await),
        }
        Ok((self.blob_get(d).await?, 0))
    }

    async fn blob_put(&self, d: &Digest, size: u64, body: BlobStream) -> Result<()> {
        let pending = self.pending_uploads.lock().expect("uploads lock").remove(d);
        let mut url = match pending {
            Some(u) => u,
            None => self.start_upload().await?,
        };
        url.query_pairs_mut().append_pair("digest", d.as_str());
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            "application/octet-stream".parse().expect("static header"),
        );
        headers.insert(CONTENT_LENGTH, size.into());
        let stream = reqwest::Body::wrap_stream(body);
        let resp = self
            .send_repo(Method::PUT, url, headers, Body::Stream(Some(stream)))
            .await?;
        if !matches!(
            resp.status(),
            StatusCode::CREATED | StatusCode::OK | StatusCode::NO_CONTENT
        ) {
            return Err(self.fail(&Method::PUT, &format!("blob {d}"), resp).await);
        }
        Ok(())
    }

    async fn blob_mount(&self, d: &Digest, from: &Repository) -> Result<Mount> {
        let mut url = self.url("blobs/uploads/")?;
        url.query_pairs_mut()
            .append_pair("mount", d.as_str())
            .append_pair("from", from.as_str());
        // From this very repository (a probe): its own token covers the pull.
        let scopes: Vec<Scope> = if from == &self.repository {
            vec![self.scopes[0].clone()]
        } else {
            vec![self.scopes[0].clone(), Scope::pull(from.as_str())]
        };
        let resp = match self
            .send(Method::POST, url, &scopes, HeaderMap::new(), Body::None)
            .await
        {
            // Not allowed to read the other repository: upload instead.
            Err(RegistryError::Denied { .. }) => return Ok(Mount::Refused),
            other => other?,
        };
        match resp.status() {
            StatusCode::CREATED => Ok(Mount::Mounted),
            StatusCode::ACCEPTED => {
                // The registry opened an ordinary upload instead: keep it for the upload that follows.
                if let Ok(loc) = self.location(&resp) {
                    self.pending_uploads
                        .lock()
                        .expect("uploads lock")
                        .insert(d.clone(), loc);
                }
                Ok(Mount::Refused)
            }
            status => {
                tracing::debug!(registry = %self.registry, %status, "mount refused");
                Ok(Mount::Refused)
            }
        }
    }

    async fn tags_list(&self) -> Result<Vec<Tag>> {
        #[derive(serde::Deserialize)]
        struct TagList {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let url = self.url("tags/list")?;
        let names = self
            .list_pages(
                url,
                &self.scopes,
                "tag list",
                |status, _| status == StatusCode::NOT_FOUND,
                |page: TagList| page.tags.unwrap_or_default(),
            )
            .await?
            .unwrap_or_default();
        Ok(names.iter().filter_map(|t| Tag::parse(t).ok()).collect())
    }

    async fn delete(&self, r: &ManifestRef) -> Result<bool> {
        let url = self.url(&format!("manifests/{r}"))?;
        // Token servers grant DELETE under its own action.
        let scopes = [Scope::delete(self.repository.as_str())];
        let resp = self
            .send(Method::DELETE, url, &scopes, HeaderMap::new(), Body::None)
            .await?;
        match resp.status() {
            StatusCode::ACCEPTED | StatusCode::OK | StatusCode::NO_CONTENT => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            // 405: deletes are off (distribution's `storage.delete.enabled`) or not offered.
            // 400 for a tag: distribution before 3.0 deletes manifests by digest only.
            status
                if status == StatusCode::METHOD_NOT_ALLOWED
                    || (status == StatusCode::BAD_REQUEST && matches!(r, ManifestRef::Tag(_))) =>
            {
                let body = read_capped(resp, MAX_ERROR_BODY).await;
                let words = registry_error_text(&body);
                Err(RegistryError::Unsupported {
                    place: self.name(),
                    what: format!("delete {}", super::deletable(r)),
                    detail: format!(
                        "DELETE answered {}{}",
                        status.as_u16(),
                        if words.is_empty() {
                            String::new()
                        } else {
                            format!(": {words}")
                        }
                    ),
                })
            }
            _ => Err(self
                .fail(&Method::DELETE, &format!("manifest {r}"), resp)
                .await),
        }
    }

    async fn referrers(&self, d: &Digest) -> Result<Option<Manifest>> {
        let _probe = self.gate.referrers_probe().await;
        if !self.gate.may_have_referrers_api() {
            return Ok(None);
        }
        let url = self.url(&format!("referrers/{d}"))?;
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, manifest::OCI_INDEX.parse().expect("static header"));
        let resp = self
            .send_repo(Method::GET, url, headers, Body::None)
            .await?;
        match resp.status() {
            StatusCode::OK => {
                self.gate.has_referrers_api();
                let body = read_capped(resp, self.max_manifest).await;
                Ok(Some(Manifest::parse(
                    Bytes::from(body),
                    Some(manifest::OCI_INDEX),
                )?))
            }
            // 404 is the spec's "no API" (a registry with the API never answers 404 there);
            // some registries answer unknown routes otherwise. Either way, for the whole run.
            StatusCode::NOT_FOUND
            | StatusCode::METHOD_NOT_ALLOWED
            | StatusCode::NOT_IMPLEMENTED => {
                self.gate.no_referrers_api();
                Ok(None)
            }
            _ => Err(self.fail(&Method::GET, "referrers", resp).await),
        }
    }

    fn stats(&self) -> RepoStats {
        RepoStats {
            requests: self.requests.load(Ordering::Relaxed),
            token_requests: self.auth.token_requests(),
        }
    }
}

/// Where a `Content-Range: bytes START-END/TOTAL` answer starts.
fn range_start(header: &str) -> Option<u64> {
    let spec = header.trim().strip_prefix("bytes")?.trim_start();
    let (start, _) = spec.split_once('-')?;
    start.trim().parse().ok()
}

/// The `rel="next"` target of a `Link` header.
fn next_link(header: &str) -> Option<String> {
    header
        .split(',')
        .find(|part| part.contains("rel=\"next\"") || part.contains("rel=next"))
        .and_then(|part| {
            let start = part.find('<')? + 1;
            let end = part.find('>')?;
            Some(part[start..end].to_owned())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_error_bodies() {
        let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"x"}}]}"#;
        assert_eq!(
            registry_error_text(body),
            "MANIFEST_UNKNOWN: manifest unknown"
        );
        assert_eq!(registry_error_text(b"plain\ntext"), "plain text");
    }

    #[test]
    fn reads_where_a_range_starts() {
        assert_eq!(
            range_start("bytes 644245094-1073741823/1073741824"),
            Some(644245094)
        );
        assert_eq!(range_start("bytes 0-9/10"), Some(0));
        assert_eq!(range_start("bytes */10"), None);
        assert_eq!(range_start("items 5-9/10"), None);
    }

    #[test]
    fn finds_next_link() {
        assert_eq!(
            next_link(r#"</v2/x/tags/list?n=2&last=b>; rel="next""#).as_deref(),
            Some("/v2/x/tags/list?n=2&last=b")
        );
        assert_eq!(next_link(r#"</a>; rel="prev""#), None);
    }
}
