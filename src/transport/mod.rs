//! transport: HTTP clients per registry — HTTPS with system roots plus optional CA files, plain HTTP only for loopback or when asked, never a silent fallback.

pub mod hosts;
pub mod retry;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;

use crate::reference::Registry;
use crate::registry_error::RegistryError;
pub use hosts::{HostGate, HostSettings};
pub use retry::RetryPolicy;

/// Connection timeout per attempt.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest silence tolerated while reading a response body.
pub const READ_TIMEOUT: Duration = Duration::from_secs(300);
/// Most redirects followed for one request (blob GETs are commonly redirected to storage).
pub const MAX_REDIRECTS: usize = 10;

/// How ferry connects to registries.
#[derive(Clone, Debug, Default)]
pub struct TransportOptions {
    /// Registries (host[:port]) to reach over plain HTTP although they are not loopback.
    pub plain_http: HashSet<String>,
    /// Registries reached over HTTPS even though they are loopback.
    pub force_https: HashSet<String>,
    /// Extra CA certificates (PEM) per registry host[:port].
    pub ca_files: HashMap<String, PathBuf>,
    /// Directories searched for `<host[:port]>/ca.crt` (like `/etc/docker/certs.d`).
    pub cert_dirs: Vec<PathBuf>,
    /// Per registry name: `scheme://host[:port]` that serves its API instead (mirrors, tests).
    pub endpoints: HashMap<String, String>,
    /// Per registry name: request rate, concurrency and retries (others get the defaults).
    pub hosts: HashMap<String, HostSettings>,
    /// Per registry name: the largest manifest read (others: [`crate::manifest::MAX_MANIFEST_BYTES`]).
    pub max_manifest_bytes: HashMap<String, usize>,
    /// Items asked for per page of a tag list or catalog (`?n=`); `None`: the default, 1000.
    pub list_page_size: Option<usize>,
}

impl TransportOptions {
    /// The default certificate directories Docker and containers use.
    pub fn with_default_cert_dirs(mut self) -> Self {
        self.cert_dirs
            .extend(["/etc/docker/certs.d", "/etc/containers/certs.d"].map(PathBuf::from));
        self
    }

    /// From the command line's `--plain-http HOST`, `--https HOST` and `--ca-file HOST=PATH`
    /// lists (hosts compared without case), with the default certificate directories; or what
    /// is wrong with a `--ca-file`.
    pub fn from_flags(
        plain_http: &[String],
        https: &[String],
        ca_file: &[String],
    ) -> Result<TransportOptions, String> {
        let mut ca_files = HashMap::new();
        for spec in ca_file {
            let (host, path) = spec
                .split_once('=')
                .ok_or_else(|| format!("--ca-file {spec:?}: expected HOST=PATH"))?;
            let path = PathBuf::from(path);
            if !path.is_file() {
                return Err(format!(
                    "--ca-file {host}: {} is not a readable file",
                    path.display()
                ));
            }
            ca_files.insert(host.to_ascii_lowercase(), path);
        }
        let lower = |hosts: &[String]| hosts.iter().map(|h| h.to_ascii_lowercase()).collect();
        Ok(TransportOptions {
            plain_http: lower(plain_http),
            force_https: lower(https),
            ca_files,
            ..TransportOptions::default()
        }
        .with_default_cert_dirs())
    }
}

/// Why a redirect target is refused, if it is: link-local addresses always (cloud metadata
/// services); loopback and private ranges unless the request started at such an address too.
pub fn refused_redirect(from: &url::Url, to: &url::Url) -> Option<&'static str> {
    use std::net::IpAddr;
    let ip = |u: &url::Url| match u.host() {
        Some(url::Host::Ipv4(a)) => Some(IpAddr::V4(a)),
        Some(url::Host::Ipv6(a)) => Some(IpAddr::V6(a)),
        Some(url::Host::Domain(d)) if d.eq_ignore_ascii_case("localhost") => {
            Some(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST))
        }
        _ => None,
    };
    let internal = |a: IpAddr| match a {
        IpAddr::V4(v) => v.is_private() || v.is_loopback() || v.is_unspecified(),
        IpAddr::V6(v) => {
            v.is_loopback() || v.is_unspecified() || (v.segments()[0] & 0xfe00) == 0xfc00
        }
    };
    let target = ip(to)?;
    let link_local = match target {
        IpAddr::V4(v) => v.is_link_local(),
        IpAddr::V6(v) => (v.segments()[0] & 0xffc0) == 0xfe80,
    };
    if link_local {
        return Some("a link-local address");
    }
    if internal(target) && !ip(from).is_some_and(internal) {
        return Some("a private address, from a public registry");
    }
    None
}

fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        if attempt.previous().len() >= MAX_REDIRECTS {
            return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
        }
        let first = attempt.previous().first().cloned();
        let refused = first
            .as_ref()
            .and_then(|from| refused_redirect(from, attempt.url()));
        match refused {
            Some(why) => {
                let host = attempt.url().host_str().unwrap_or("?").to_owned();
                attempt.error(format!("refused a redirect to {host}: {why}"))
            }
            None => attempt.follow(),
        }
    })
}

/// Builds and caches one HTTP client per registry.
#[derive(Debug)]
pub struct Transport {
    options: TransportOptions,
    clients: Mutex<HashMap<String, reqwest::Client>>,
    hosts: hosts::Hosts,
}

impl Transport {
    /// A transport with these options.
    pub fn new(options: TransportOptions) -> Self {
        Transport {
            hosts: hosts::Hosts::new(options.hosts.clone()),
            options,
            clients: Mutex::default(),
        }
    }

    /// The largest manifest read from this registry.
    pub fn max_manifest_bytes(&self, registry: &Registry) -> usize {
        self.options
            .max_manifest_bytes
            .get(registry.as_str())
            .copied()
            .unwrap_or(crate::manifest::MAX_MANIFEST_BYTES)
    }

    /// Items asked for per page of a tag list or catalog, at least 1.
    pub fn list_page_size(&self, default: usize) -> usize {
        self.options.list_page_size.unwrap_or(default).max(1)
    }

    /// The gate every request to this registry passes (shared by all repositories on it).
    pub fn gate(&self, registry: &Registry) -> Arc<HostGate> {
        self.hosts.gate(registry.as_str())
    }

    /// `http` for loopback registries (as crane does) and those listed as plain; `https` otherwise.
    pub fn scheme(&self, registry: &Registry) -> &'static str {
        let name = registry.as_str();
        if self.options.force_https.contains(name) {
            "https"
        } else if self.options.plain_http.contains(name) || registry.is_loopback() {
            "http"
        } else {
            "https"
        }
    }

    /// `scheme://api-host` for a registry, or its endpoint override.
    pub fn base_url(&self, registry: &Registry) -> String {
        match self.options.endpoints.get(registry.as_str()) {
            Some(e) => e.trim_end_matches('/').to_owned(),
            None => format!("{}://{}", self.scheme(registry), registry.api_host()),
        }
    }

    /// The client for a registry, with its CA certificates loaded.
    pub fn client(&self, registry: &Registry) -> Result<reqwest::Client, RegistryError> {
        let key = registry.as_str().to_owned();
        if let Some(c) = self.clients.lock().expect("client lock").get(&key) {
            return Ok(c.clone());
        }
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            // reqwest drops Authorization on any redirect that changes host, port or scheme;
            // the policy refuses redirects into link-local or (from a public registry) private
            // addresses, where cloud metadata services and internal hosts live.
            .redirect(redirect_policy());
        let mut ca_files: Vec<PathBuf> = self
            .options
            .ca_files
            .get(&key)
            .cloned()
            .into_iter()
            .collect();
        for dir in &self.options.cert_dirs {
            let candidate = dir.join(&key).join("ca.crt");
            if candidate.is_file() {
                ca_files.push(candidate);
            }
        }
        for path in ca_files {
            let pem = std::fs::read(&path).map_err(|e| RegistryError::Io {
                path: path.display().to_string(),
                source: e,
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                RegistryError::Connect {
                    host: key.clone(),
                    detail: format!("cannot load CA file {}: {}", path.display(), describe(&e)),
                }
            })?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder.build().map_err(|e| RegistryError::Connect {
            host: key.clone(),
            detail: format!("cannot build HTTP client: {}", describe(&e)),
        })?;
        self.clients
            .lock()
            .expect("client lock")
            .insert(key, client.clone());
        Ok(client)
    }
}

/// Describes a reqwest error by its innermost cause, on one line, without URLs (they can carry upload state tokens).
pub fn describe(e: &reqwest::Error) -> String {
    let mut msg = if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "connection failed".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = std::error::Error::source(e);
    let mut last = None;
    while let Some(s) = source {
        last = Some(s.to_string());
        source = s.source();
    }
    if let Some(l) = last {
        msg.push_str(": ");
        msg.push_str(&one_line(&l));
        if l.contains("UnknownIssuer") || l.contains("unknown issuer") {
            msg.push_str(" (the registry's certificate is not signed by a trusted CA: give its CA with --ca-file HOST=PEM or ca_file in registries.yaml)");
        }
    }
    msg
}

/// True when another attempt may succeed: timeouts, refused or reset connections, bodies cut
/// short. Name resolution failures and TLS/certificate errors are permanent: TLS fails closed and
/// is never retried (nor ever tried over plain HTTP).
pub fn is_transient(e: &reqwest::Error) -> bool {
    let mut chain = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        chain.push_str(&s.to_string().to_ascii_lowercase());
        chain.push(' ');
        source = s.source();
    }
    let permanent = [
        "dns error",
        "failed to lookup address",
        "name or service not known",
        "certificate",
        "tls handshake",
        "invalid peer",
        "unknownissuer",
        "builder error",
        "relative url",
    ];
    if e.is_builder() || e.is_redirect() || permanent.iter().any(|p| chain.contains(p)) {
        return false;
    }
    e.is_timeout() || e.is_connect() || e.is_request() || e.is_body()
}

/// Squashes whitespace so a message stays on one line, and caps its length.
pub fn one_line(s: &str) -> String {
    let joined = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if joined.chars().count() > 300 {
        joined.chars().take(300).collect::<String>() + "…"
    } else {
        joined
    }
}

/// Reads at most `cap` bytes of a body (error and token bodies are never trusted to be small).
pub async fn read_capped(resp: reqwest::Response, cap: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        let room = cap.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= cap {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_targets() {
        let u = |s: &str| url::Url::parse(s).unwrap();
        let public = u("https://ghcr.io/v2/x/blobs/sha256:00");
        let local = u("http://127.0.0.1:5000/v2/x/blobs/sha256:00");
        for (from, to, refused) in [
            (
                &public,
                "https://pkg-containers.githubusercontent.com/x",
                false,
            ),
            (&public, "http://169.254.169.254/latest/meta-data/", true),
            (&public, "http://[fe80::1]/x", true),
            (&public, "http://10.0.0.7/x", true),
            (&public, "http://192.168.1.1/x", true),
            (&public, "http://127.0.0.1:9000/x", true),
            (&public, "http://localhost:9000/x", true),
            (&local, "http://127.0.0.1:9001/x", false),
            (&local, "http://10.1.2.3/x", false),
            (&local, "http://169.254.169.254/x", true),
        ] {
            assert_eq!(
                refused_redirect(from, &u(to)).is_some(),
                refused,
                "{from} -> {to}"
            );
        }
    }

    #[test]
    fn loopback_is_plain_http_unless_forced() {
        let t = Transport::new(TransportOptions::default());
        assert_eq!(t.scheme(&Registry::new("127.0.0.1:5000")), "http");
        assert_eq!(t.scheme(&Registry::new("localhost")), "http");
        assert_eq!(t.scheme(&Registry::new("ghcr.io")), "https");
        assert_eq!(
            t.base_url(&Registry::new("docker.io")),
            "https://registry-1.docker.io"
        );
        let mut o = TransportOptions::default();
        o.plain_http.insert("reg.internal:5000".into());
        o.force_https.insert("127.0.0.1:5443".into());
        let t = Transport::new(o);
        assert_eq!(t.scheme(&Registry::new("reg.internal:5000")), "http");
        assert_eq!(t.scheme(&Registry::new("127.0.0.1:5443")), "https");
    }

    #[test]
    fn flags_are_checked_and_hosts_lowercased() {
        let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let o = TransportOptions::from_flags(&v(&["Reg.Internal:5000"]), &v(&["LOCALHOST"]), &[])
            .unwrap();
        assert!(o.plain_http.contains("reg.internal:5000"));
        assert!(o.force_https.contains("localhost"));
        assert!(o.cert_dirs.contains(&PathBuf::from("/etc/docker/certs.d")));
        let ca = tempfile::NamedTempFile::new().unwrap();
        let spec = format!("Ghcr.IO={}", ca.path().display());
        let o = TransportOptions::from_flags(&[], &[], &[spec]).unwrap();
        assert_eq!(o.ca_files["ghcr.io"], ca.path());
        let e = TransportOptions::from_flags(&[], &[], &v(&["ghcr.io"])).unwrap_err();
        assert_eq!(e, "--ca-file \"ghcr.io\": expected HOST=PATH");
        let e = TransportOptions::from_flags(&[], &[], &v(&["ghcr.io=/nonexistent/ca.pem"]))
            .unwrap_err();
        assert_eq!(
            e,
            "--ca-file ghcr.io: /nonexistent/ca.pem is not a readable file"
        );
    }

    #[test]
    fn one_line_squashes() {
        assert_eq!(one_line("a\n  b\tc"), "a b c");
    }
}
