//! A Google OAuth token endpoint for tests, and the service-account JSON that points gcp_auth at it, so ferry's Artifact Registry path runs gcp_auth's real code (JWT signed with the account's RSA key, exchanged for an access token).

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

struct Shared {
    public_key: Vec<u8>,
    token_uri: String,
    lifetime: Duration,
    issued: Mutex<HashMap<String, Instant>>,
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
            token_uri: format!("http://127.0.0.1:{port}/token"),
            lifetime: Duration::from_secs(lifetime_s),
            issued: Mutex::default(),
        });
        let (srv, sh) = (server.clone(), shared.clone());
        let thread = std::thread::spawn(move || {
            for mut request in srv.incoming_requests() {
                let mut body = String::new();
                let _ = request.as_reader().read_to_string(&mut body);
                let (status, answer) = answer(&sh, &body);
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
    sh.issued
        .lock()
        .unwrap()
        .get(token)
        .is_some_and(|&at| at.elapsed() < sh.lifetime)
}

/// Checks a JWT-bearer grant (RS256 signature, issuer, audience) and issues an access token.
fn answer(sh: &Shared, body: &str) -> (u16, serde_json::Value) {
    let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let refuse = |why: &str| {
        eprintln!("oauth fixture refused a grant: {why}");
        (
            400,
            serde_json::json!({ "error": "invalid_grant", "error_description": why }),
        )
    };
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
