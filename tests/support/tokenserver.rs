//! A token server for distribution's token auth: checks Basic credentials, grants what is asked to the known user, lets anonymous users pull only `public/*`, and signs ES256 JWTs with an `x5c` header the registry verifies against its root bundle.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::Engine as _;
use rcgen::{CertificateParams, DnType, KeyPair, PKCS_ECDSA_P256_SHA256};

/// The service name registries and tokens agree on.
pub const SERVICE: &str = "ferry-test";
/// The issuer registries expect.
pub const ISSUER: &str = "ferry-test-issuer";

/// Decides whether a (user, password) pair may have a token.
pub type Check = Arc<dyn Fn(&str, &str) -> bool + Send + Sync>;

struct Shared {
    check: Check,
    lifetime_s: u64,
    requests: AtomicUsize,
    scopes: Mutex<Vec<String>>,
}

/// A running token server; stops when dropped.
pub struct TokenServer {
    server: Arc<tiny_http::Server>,
    thread: Option<std::thread::JoinHandle<()>>,
    shared: Arc<Shared>,
    /// The realm URL.
    pub realm: String,
}

impl TokenServer {
    /// Starts on an ephemeral loopback port; writes the signing certificate to `cert_path`.
    pub fn start(cert_path: &Path, user: &str, password: &str, lifetime_s: u64) -> TokenServer {
        let (u, p) = (user.to_owned(), password.to_owned());
        Self::start_with(
            cert_path,
            Arc::new(move |user: &str, password: &str| user == u && password == p),
            lifetime_s,
        )
    }

    /// Starts with a credential check of the caller's (e.g. `oauth2accesstoken` + a live OAuth token).
    pub fn start_with(cert_path: &Path, check: Check, lifetime_s: u64) -> TokenServer {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let signer =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        let key =
            KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8.as_ref().into(), &PKCS_ECDSA_P256_SHA256)
                .unwrap();
        let mut params = CertificateParams::new(vec!["ferry-token".to_string()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "ferry test token signer");
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(cert_path, cert.pem()).unwrap();
        let x5c = base64::engine::general_purpose::STANDARD.encode(cert.der());

        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let port = server.server_addr().to_ip().unwrap().port();
        let shared = Arc::new(Shared {
            check,
            lifetime_s,
            requests: AtomicUsize::new(0),
            scopes: Mutex::default(),
        });
        let (srv, sh) = (server.clone(), shared.clone());
        let thread = std::thread::spawn(move || {
            for request in srv.incoming_requests() {
                let response = answer(&request, &sh, &signer, &x5c);
                let _ = request.respond(response);
            }
        });
        TokenServer {
            server,
            thread: Some(thread),
            shared,
            realm: format!("http://127.0.0.1:{port}/token"),
        }
    }

    /// Token requests served so far.
    pub fn token_requests(&self) -> usize {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// Every scope asked for so far.
    pub fn scopes_seen(&self) -> Vec<String> {
        self.shared.scopes.lock().unwrap().clone()
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

type Response = tiny_http::Response<std::io::Cursor<Vec<u8>>>;

fn answer(request: &tiny_http::Request, sh: &Shared, signer: &EcdsaKeyPair, x5c: &str) -> Response {
    sh.requests.fetch_add(1, Ordering::Relaxed);
    let url = url::Url::parse(&format!("http://x{}", request.url())).unwrap();
    let query: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let scopes: Vec<String> = query
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' ').map(str::to_owned).collect::<Vec<_>>())
        .collect();
    sh.scopes.lock().unwrap().extend(scopes.iter().cloned());
    let auth = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("Authorization"))
        .map(|h| h.value.as_str().to_owned());
    let user = match auth {
        None => None,
        Some(value) => {
            let decoded = value
                .strip_prefix("Basic ")
                .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                .and_then(|b| String::from_utf8(b).ok());
            match decoded.as_deref().and_then(|d| d.split_once(':')) {
                Some((u, p)) if (sh.check)(u, p) => Some(u.to_owned()),
                _ => {
                    return tiny_http::Response::from_data(
                        br#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#
                            .to_vec(),
                    )
                    .with_status_code(401)
                }
            }
        }
    };
    let mut access: Vec<serde_json::Value> = Vec::new();
    for scope in &scopes {
        let mut parts = scope.splitn(3, ':');
        let (Some(kind), Some(name), Some(actions)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let granted: Vec<&str> = actions
            .split(',')
            .filter(|a| user.is_some() || (*a == "pull" && name.starts_with("public/")))
            .collect();
        access.push(serde_json::json!({ "type": kind, "name": name, "actions": granted }));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = serde_json::json!({ "alg": "ES256", "typ": "JWT", "x5c": [x5c] });
    let claims = serde_json::json!({
        "iss": ISSUER, "sub": user.clone().unwrap_or_default(), "aud": SERVICE,
        "exp": now + sh.lifetime_s, "nbf": now - 5, "iat": now, "jti": format!("{now}-{}", sh.requests.load(Ordering::Relaxed)),
        "access": access,
    });
    let b64 = |v: &serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    };
    let signing_input = format!("{}.{}", b64(&header), b64(&claims));
    let sig = signer
        .sign(&SystemRandom::new(), signing_input.as_bytes())
        .unwrap();
    let token = format!(
        "{signing_input}.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig.as_ref())
    );
    let body = serde_json::json!({ "token": token, "access_token": token, "expires_in": sh.lifetime_s, "issued_at": "2026-01-01T00:00:00Z" });
    let mut r = tiny_http::Response::from_data(serde_json::to_vec(&body).unwrap());
    r.add_header(tiny_http::Header::from_bytes("Content-Type", "application/json").unwrap());
    r
}
