//! A Google OAuth token endpoint for tests, and the service-account JSON that points gcp_auth at it, so ferry's Artifact Registry path runs gcp_auth's real code (JWT signed with the account's RSA key, exchanged for an access token); plus workload identity federation's three ends: a GitHub-style OIDC token URL, Google's STS token exchange and the IAM Credentials impersonation call.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{KeyPair as _, UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};
use base64::Engine as _;

/// The account's e-mail, the JWT's issuer.
pub const CLIENT_EMAIL: &str = "ferry-test@ferry-test.iam.gserviceaccount.com";
/// The workload identity provider federation's tokens are exchanged for.
pub const AUDIENCE: &str =
    "//iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/ci/providers/github";
/// What GitHub's runner gives a job to ask for its OIDC token (`ACTIONS_ID_TOKEN_REQUEST_TOKEN`).
pub const OIDC_REQUEST_TOKEN: &str = "gh-oidc-request-token-7d2c1a";
/// The job's OIDC token (a JWT in real life; opaque here).
pub const OIDC_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJyZXBvOmFjbWUvYXBpIn0.oidc-sig-3f9b";

struct Shared {
    public_key: Vec<u8>,
    base: String,
    token_uri: String,
    lifetime: Duration,
    issued: Mutex<HashMap<String, Instant>>,
    /// STS tokens, valid for impersonation (and, like a principal granted access, for registries).
    federated: Mutex<HashMap<String, Instant>>,
    oidc_requests: Mutex<usize>,
    impersonations: Mutex<usize>,
}

/// A running token endpoint; stops when dropped.
pub struct OAuthServer {
    server: Arc<tiny_http::Server>,
    thread: Option<std::thread::JoinHandle<()>>,
    shared: Arc<Shared>,
    private_key_pem: String,
}

impl OAuthServer {
    /// Starts on an ephemeral loopback port; access tokens live `lifetime_s` seconds.
    pub fn start(lifetime_s: u64) -> OAuthServer {
        let key = KeyPair::generate(KeySize::Rsa2048).unwrap();
        let der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&key).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
        let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(chunk).unwrap());
            pem.push('\n');
        }
        pem.push_str("-----END PRIVATE KEY-----\n");
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let port = server.server_addr().to_ip().unwrap().port();
        let shared = Arc::new(Shared {
            public_key: key.public_key().as_ref().to_vec(),
            base: format!("http://127.0.0.1:{port}"),
            token_uri: format!("http://127.0.0.1:{port}/token"),
            lifetime: Duration::from_secs(lifetime_s),
            issued: Mutex::default(),
            federated: Mutex::default(),
            oidc_requests: Mutex::default(),
            impersonations: Mutex::default(),
        });
        let (srv, sh) = (server.clone(), shared.clone());
        let thread = std::thread::spawn(move || {
            for mut request in srv.incoming_requests() {
                let mut body = String::new();
                let _ = request.as_reader().read_to_string(&mut body);
                let authorization = request
                    .headers()
                    .iter()
                    .find(|h| h.field.equiv("Authorization"))
                    .map(|h| h.value.as_str().to_owned())
                    .unwrap_or_default();
                let url = request.url().to_owned();
                let (status, answer) = if url.starts_with("/oidc") {
                    oidc(&sh, &url, &authorization)
                } else if url == "/sts" {
                    sts(&sh, &body)
                } else if url.ends_with(":generateAccessToken") {
                    impersonate(&sh, &body, &authorization)
                } else {
                    answer(&sh, &body)
                };
                let mut r =
                    tiny_http::Response::from_data(answer.to_string()).with_status_code(status);
                r.add_header(
                    tiny_http::Header::from_bytes("Content-Type", "application/json").unwrap(),
                );
                let _ = request.respond(r);
            }
        });
        OAuthServer {
            server,
            thread: Some(thread),
            shared,
            private_key_pem: pem,
        }
    }

    /// Writes the service-account JSON (for `GOOGLE_APPLICATION_CREDENTIALS`).
    pub fn write_service_account(&self, path: &Path) {
        let json = serde_json::json!({
            "type": "service_account",
            "project_id": "ferry-test",
            "private_key_id": "0123456789abcdef",
            "private_key": self.private_key_pem,
            "client_email": CLIENT_EMAIL,
            "client_id": "1",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": self.shared.token_uri,
        });
        std::fs::write(path, serde_json::to_vec_pretty(&json).unwrap()).unwrap();
    }

    /// Writes an `external_account` configuration as `google-github-actions/auth` does: the
    /// subject token from the OIDC URL (with its bearer header), or from `token_file` as on
    /// Kubernetes; with `impersonate`, the STS token is traded for the service account's.
    pub fn write_external_account(
        &self,
        path: &Path,
        token_file: Option<&Path>,
        impersonate: bool,
    ) {
        let source = match token_file {
            Some(file) => {
                std::fs::write(file, format!("{OIDC_TOKEN}\n")).unwrap();
                serde_json::json!({ "file": file })
            }
            None => serde_json::json!({
                "url": format!("{}/oidc?api-version=2.0&audience={AUDIENCE}", self.shared.base),
                "headers": { "Authorization": format!("Bearer {OIDC_REQUEST_TOKEN}") },
                "format": { "type": "json", "subject_token_field_name": "value" },
            }),
        };
        let mut json = serde_json::json!({
            "type": "external_account",
            "audience": AUDIENCE,
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            "token_url": format!("{}/sts", self.shared.base),
            "credential_source": source,
        });
        if impersonate {
            json["service_account_impersonation_url"] = format!(
                "{}/v1/projects/-/serviceAccounts/{CLIENT_EMAIL}:generateAccessToken",
                self.shared.base
            )
            .into();
        }
        std::fs::write(path, serde_json::to_vec_pretty(&json).unwrap()).unwrap();
    }

    /// (OIDC token requests, STS tokens issued, impersonations) so far.
    pub fn federation_counts(&self) -> (usize, usize, usize) {
        (
            *self.shared.oidc_requests.lock().unwrap(),
            self.shared.federated.lock().unwrap().len(),
            *self.shared.impersonations.lock().unwrap(),
        )
    }

    /// STS tokens issued so far (secrets too).
    pub fn federated(&self) -> Vec<String> {
        self.shared
            .federated
            .lock()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    }

    /// The private key (tests check it never appears in output).
    pub fn private_key_pem(&self) -> &str {
        &self.private_key_pem
    }

    /// Access tokens issued so far.
    pub fn issued(&self) -> Vec<String> {
        self.shared.issued.lock().unwrap().keys().cloned().collect()
    }

    /// True for a token this server issued that has not expired.
    pub fn is_valid(&self, token: &str) -> bool {
        is_valid(&self.shared, token)
    }

    /// A registry token server check: user `oauth2accesstoken` with a live access token (what
    /// Artifact Registry's token exchange accepts).
    pub fn check(&self) -> super::tokenserver::Check {
        let sh = self.shared.clone();
        Arc::new(move |user: &str, password: &str| {
            user == "oauth2accesstoken" && is_valid(&sh, password)
        })
    }
}

fn is_valid(sh: &Shared, token: &str) -> bool {
    live(sh, &sh.issued, token) || live(sh, &sh.federated, token)
}

/// True for a token in `issued` that has not expired.
fn live(sh: &Shared, issued: &Mutex<HashMap<String, Instant>>, token: &str) -> bool {
    issued
        .lock()
        .unwrap()
        .get(token)
        .is_some_and(|&at| at.elapsed() < sh.lifetime)
}

fn refuse(why: &str) -> (u16, serde_json::Value) {
    eprintln!("oauth fixture refused: {why}");
    (
        400,
        serde_json::json!({ "error": "invalid_grant", "error_description": why }),
    )
}

/// GitHub's OIDC token URL: the request token as bearer, the audience in the query.
fn oidc(sh: &Shared, url: &str, authorization: &str) -> (u16, serde_json::Value) {
    if authorization != format!("Bearer {OIDC_REQUEST_TOKEN}") {
        return (401, serde_json::json!({ "message": "bad request token" }));
    }
    if !url.contains(&format!("audience={AUDIENCE}")) {
        return refuse("oidc: wrong audience");
    }
    *sh.oidc_requests.lock().unwrap() += 1;
    (200, serde_json::json!({ "count": 1, "value": OIDC_TOKEN }))
}

/// Google's STS (RFC 8693): the OIDC token for a federated access token.
fn sts(sh: &Shared, body: &str) -> (u16, serde_json::Value) {
    let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let want = [
        (
            "grant_type",
            "urn:ietf:params:oauth:grant-type:token-exchange",
        ),
        ("audience", AUDIENCE),
        (
            "requested_token_type",
            "urn:ietf:params:oauth:token-type:access_token",
        ),
        ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
        ("subject_token", OIDC_TOKEN),
        ("scope", "https://www.googleapis.com/auth/cloud-platform"),
    ];
    for (k, v) in want {
        if form.get(k).map(String::as_str) != Some(v) {
            return refuse(&format!("sts: {k}"));
        }
    }
    let mut federated = sh.federated.lock().unwrap();
    let token = format!("ya29.sts-{}-{}", federated.len(), std::process::id());
    federated.insert(token.clone(), Instant::now());
    (
        200,
        serde_json::json!({
            "access_token": token,
            "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
            "token_type": "Bearer",
            "expires_in": sh.lifetime.as_secs(),
        }),
    )
}

/// IAM Credentials generateAccessToken: a live STS token as bearer, for the account's token.
fn impersonate(sh: &Shared, body: &str, authorization: &str) -> (u16, serde_json::Value) {
    let federated = authorization.strip_prefix("Bearer ").unwrap_or_default();
    if !live(sh, &sh.federated, federated) {
        return (
            401,
            serde_json::json!({ "error": { "code": 401, "message": "Request had invalid authentication credentials.", "status": "UNAUTHENTICATED" } }),
        );
    }
    let req: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    if req["scope"][0] != "https://www.googleapis.com/auth/cloud-platform" {
        return refuse("impersonate: scope");
    }
    let mut n = sh.impersonations.lock().unwrap();
    *n += 1;
    let token = format!("ya29.sa-{}-{}", *n, std::process::id());
    sh.issued
        .lock()
        .unwrap()
        .insert(token.clone(), Instant::now());
    let expire = std::time::SystemTime::now() + sh.lifetime;
    (
        200,
        serde_json::json!({ "accessToken": token, "expireTime": humantime::format_rfc3339_seconds(expire).to_string() }),
    )
}

/// Checks a JWT-bearer grant (RS256 signature, issuer, audience) and issues an access token.
fn answer(sh: &Shared, body: &str) -> (u16, serde_json::Value) {
    let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    if form.get("grant_type").map(String::as_str)
        != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    {
        return refuse("grant_type");
    }
    let Some(jwt) = form.get("assertion") else {
        return refuse("no assertion");
    };
    let parts: Vec<&str> = jwt.split('.').collect();
    if parts.len() != 3 {
        return refuse("not a jwt");
    }
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    // gcp_auth pads its base64url (Google accepts both): take either.
    let decode = |p: &str| b64.decode(p.trim_end_matches('='));
    let (Ok(sig), Ok(claims)) = (decode(parts[2]), decode(parts[1])) else {
        return refuse("bad encoding");
    };
    let signed = format!("{}.{}", parts[0], parts[1]);
    if UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &sh.public_key)
        .verify(signed.as_bytes(), &sig)
        .is_err()
    {
        return refuse("bad signature");
    }
    let claims: serde_json::Value = serde_json::from_slice(&claims).unwrap_or_default();
    if claims["iss"] != CLIENT_EMAIL || claims["aud"] != sh.token_uri.as_str() {
        return refuse("wrong issuer or audience");
    }
    let token = format!(
        "ya29.test-{}",
        hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &sig).as_ref())
    );
    sh.issued
        .lock()
        .unwrap()
        .insert(token.clone(), Instant::now());
    (
        200,
        serde_json::json!({ "access_token": token, "expires_in": sh.lifetime.as_secs(), "token_type": "Bearer" }),
    )
}

impl Drop for OAuthServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
