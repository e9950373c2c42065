//! cloud::google_external: Google workload identity federation (`"type": "external_account"` credential files) — an OIDC token from a file or URL exchanged at Google's STS, then optionally for a service account's access token.
//!
//! gcp_auth reads service-account keys, gcloud user credentials and the metadata server, but not
//! the credential configuration that `google-github-actions/auth`, `gcloud iam
//! workload-identity-pools create-cred-config` and GKE-less Kubernetes setups write. Without it,
//! OIDC to Google (no long-lived key) would need a `docker login` with a token minted by another
//! tool. This is the part of AIP-4117 those setups use: `credential_source` `file` or `url`
//! (with `headers` and a `text` or `json` format), the token exchange, and
//! `service_account_impersonation_url`. AWS and executable sources are refused by name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Deserialize;

use super::CloudError;
use crate::credential::Secret;
use crate::transport::{one_line, read_capped};

/// What a token, error or subject-token response may be, at most.
const MAX_BODY: usize = 64 << 10;
/// Each request to the token endpoints, at most.
const TIMEOUT: Duration = Duration::from_secs(30);
/// The STS grant and token types (RFC 8693).
const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// An `external_account` credential configuration, as written.
#[derive(Deserialize)]
struct File {
    #[serde(rename = "type")]
    kind: String,
    audience: String,
    subject_token_type: String,
    token_url: String,
    service_account_impersonation_url: Option<String>,
    #[serde(default)]
    service_account_impersonation: Impersonation,
    credential_source: Source,
}

#[derive(Default, Deserialize)]
struct Impersonation {
    token_lifetime_seconds: Option<u64>,
}

#[derive(Deserialize)]
struct Source {
    file: Option<PathBuf>,
    url: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    format: Option<Format>,
    environment_id: Option<String>,
    executable: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Format {
    #[serde(rename = "type")]
    kind: String,
    subject_token_field_name: Option<String>,
}

/// Where the subject token comes from.
enum Subject {
    File(PathBuf),
    /// A URL and its headers (GitHub's `Authorization: Bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN`).
    Url(String, Vec<(String, Secret)>),
}

/// A validated `external_account` configuration. Its headers are secrets: no `Debug`.
pub struct ExternalAccount {
    audience: String,
    subject_token_type: String,
    token_url: String,
    impersonation_url: Option<String>,
    lifetime: Duration,
    subject: Subject,
    /// `None`: the token is the whole body; `Some(field)`: a field of a JSON body.
    json_field: Option<String>,
    client: reqwest::Client,
}

fn fail(operation: &'static str, detail: impl AsRef<str>) -> CloudError {
    CloudError {
        service: "google oauth",
        operation,
        detail: one_line(detail.as_ref()),
    }
}

/// True when a credential file is an `external_account` configuration (others are gcp_auth's).
pub fn is_external_account(json: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Kind {
        #[serde(rename = "type")]
        kind: Option<String>,
    }
    serde_json::from_slice::<Kind>(json)
        .is_ok_and(|k| k.kind.as_deref() == Some("external_account"))
}

impl ExternalAccount {
    /// Reads a configuration; `path` only names it in errors.
    pub fn parse(path: &Path, json: &[u8]) -> Result<Self, CloudError> {
        let op = "read external_account credentials";
        let f: File = serde_json::from_slice(json)
            .map_err(|e| fail(op, format!("{}: {e}", path.display())))?;
        if f.kind != "external_account" {
            return Err(fail(
                op,
                format!("{}: type is {:?}", path.display(), f.kind),
            ));
        }
        let src = f.credential_source;
        if src.environment_id.is_some() || src.executable.is_some() {
            return Err(fail(
                op,
                format!(
                    "{}: only file and url credential sources are supported (AWS and executable sources are not)",
                    path.display()
                ),
            ));
        }
        let subject = match (src.file, src.url) {
            (Some(file), None) => Subject::File(file),
            (None, Some(url)) => Subject::Url(
                url,
                src.headers
                    .into_iter()
                    .map(|(k, v)| (k, Secret::new(v)))
                    .collect(),
            ),
            _ => {
                return Err(fail(
                    op,
                    format!(
                        "{}: credential_source needs exactly one of file or url",
                        path.display()
                    ),
                ))
            }
        };
        let json_field = match src.format {
            None => None,
            Some(Format { kind, .. }) if kind == "text" => None,
            Some(Format {
                kind,
                subject_token_field_name: Some(field),
            }) if kind == "json" => Some(field),
            Some(Format { kind, .. }) => {
                return Err(fail(
                    op,
                    format!(
                        "{}: credential_source.format {kind:?}: expected text, or json with subject_token_field_name",
                        path.display()
                    ),
                ))
            }
        };
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            // Tokens are posted to the configured endpoints only, never re-sent elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| fail(op, e.to_string()))?;
        Ok(ExternalAccount {
            audience: f.audience,
            subject_token_type: f.subject_token_type,
            token_url: f.token_url,
            impersonation_url: f.service_account_impersonation_url,
            lifetime: Duration::from_secs(
                f.service_account_impersonation
                    .token_lifetime_seconds
                    .unwrap_or(3600),
            ),
            subject,
            json_field,
            client,
        })
    }

    /// An access token for `scope`, and when it expires.
    pub async fn token(&self, scope: &str) -> Result<(Secret, SystemTime), CloudError> {
        let subject = self.subject_token().await?;
        let (federated, expires) = self.exchange(&subject, scope).await?;
        match &self.impersonation_url {
            None => Ok((federated, expires)),
            Some(url) => self.impersonate(url, &federated, scope).await,
        }
    }

    /// The workload's own token (an OIDC JWT), from the file or the URL.
    async fn subject_token(&self) -> Result<Secret, CloudError> {
        let op = "read the subject token";
        let body = match &self.subject {
            Subject::File(path) => tokio::fs::read(path)
                .await
                .map_err(|e| fail(op, format!("{}: {e}", path.display())))?,
            Subject::Url(url, headers) => {
                let mut req = self.client.get(url);
                for (k, v) in headers {
                    req = req.header(k, v.expose());
                }
                let resp = req.send().await.map_err(|e| fail(op, describe(e)))?;
                let status = resp.status();
                let body = read_capped(resp, MAX_BODY).await;
                if !status.is_success() {
                    return Err(fail(op, format!("{} answered {status}", host_of(url))));
                }
                body
            }
        };
        let token = match &self.json_field {
            None => String::from_utf8_lossy(&body).trim().to_owned(),
            Some(field) => serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get(field)?.as_str().map(str::to_owned))
                .ok_or_else(|| fail(op, format!("no string field {field:?} in the JSON")))?,
        };
        if token.is_empty() {
            return Err(fail(op, "empty"));
        }
        Ok(Secret::new(token))
    }

    /// RFC 8693 token exchange at Google's STS: the subject token for a federated access token.
    async fn exchange(
        &self,
        subject: &Secret,
        scope: &str,
    ) -> Result<(Secret, SystemTime), CloudError> {
        let op = "exchange the subject token (STS)";
        let form = [
            ("grant_type", GRANT_TYPE),
            ("audience", self.audience.as_str()),
            ("scope", scope),
            ("requested_token_type", ACCESS_TOKEN_TYPE),
            ("subject_token", subject.expose()),
            ("subject_token_type", self.subject_token_type.as_str()),
        ];
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let resp = self
            .client
            .post(&self.token_url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| fail(op, describe(e)))?;
        #[derive(Deserialize)]
        struct Answer {
            access_token: String,
            expires_in: Option<u64>,
        }
        let a: Answer = json_answer(op, resp).await?;
        let expires = SystemTime::now() + Duration::from_secs(a.expires_in.unwrap_or(3600));
        Ok((Secret::new(a.access_token), expires))
    }

    /// The federated token for a service account's own access token (IAM Credentials API).
    async fn impersonate(
        &self,
        url: &str,
        federated: &Secret,
        scope: &str,
    ) -> Result<(Secret, SystemTime), CloudError> {
        let op = "impersonate the service account";
        let resp = self
            .client
            .post(url)
            .bearer_auth(federated.expose())
            .json(&serde_json::json!({
                "scope": [scope],
                "lifetime": format!("{}s", self.lifetime.as_secs()),
            }))
            .send()
            .await
            .map_err(|e| fail(op, describe(e)))?;
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Answer {
            access_token: String,
            expire_time: Option<String>,
        }
        let a: Answer = json_answer(op, resp).await?;
        let expires = a
            .expire_time
            .and_then(|t| humantime::parse_rfc3339_weak(&t).ok())
            .unwrap_or_else(|| SystemTime::now() + self.lifetime);
        Ok((Secret::new(a.access_token), expires))
    }
}

/// A JSON answer, or an error naming the status and Google's own error text (never a token).
async fn json_answer<T: for<'de> Deserialize<'de>>(
    op: &'static str,
    resp: reqwest::Response,
) -> Result<T, CloudError> {
    let status = resp.status();
    let body = read_capped(resp, MAX_BODY).await;
    if !status.is_success() {
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        // STS: {"error", "error_description"}; IAM: {"error": {"message", "status"}}.
        let text = [
            v["error"].as_str(),
            v["error_description"].as_str(),
            v["error"]["status"].as_str(),
            v["error"]["message"].as_str(),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(": ");
        return Err(fail(op, format!("{status} {text}").trim_end()));
    }
    serde_json::from_slice(&body).map_err(|e| fail(op, format!("unreadable answer: {e}")))
}

/// A request error: the host it was for, then [`crate::transport::describe`] (which leaves URLs
/// out: a credential source's URL may carry a token).
fn describe(e: reqwest::Error) -> String {
    let host = e.url().and_then(|u| u.host_str().map(str::to_owned));
    let what = crate::transport::describe(&e);
    match host {
        Some(h) => format!("{h}: {what}"),
        None => what,
    }
}

fn host_of(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| "the credential source".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: serde_json::Value) -> Result<ExternalAccount, CloudError> {
        ExternalAccount::parse(Path::new("cred.json"), v.to_string().as_bytes())
    }

    fn base(source: serde_json::Value) -> serde_json::Value {
        serde_json::json!({
            "type": "external_account",
            "audience": "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/gh",
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            "token_url": "https://sts.googleapis.com/v1/token",
            "credential_source": source,
        })
    }

    #[test]
    fn external_accounts_are_told_from_other_credential_files() {
        assert!(is_external_account(
            base(serde_json::json!({"file": "/t"}))
                .to_string()
                .as_bytes()
        ));
        assert!(!is_external_account(br#"{"type": "service_account"}"#));
        assert!(!is_external_account(b"not json"));
    }

    #[test]
    fn sources_and_formats_are_validated() {
        let ok = |s| parse(base(s)).map(|_| ()).map_err(|e| e.detail);
        assert!(ok(serde_json::json!({"file": "/var/run/token"})).is_ok());
        assert!(ok(serde_json::json!({
            "url": "https://token.actions.example/x?audience=y",
            "headers": {"Authorization": "Bearer abc"},
            "format": {"type": "json", "subject_token_field_name": "value"}
        }))
        .is_ok());
        let err = |s| ok(s).unwrap_err();
        assert!(
            err(serde_json::json!({"environment_id": "aws1", "region_url": "x"}))
                .contains("AWS and executable sources are not")
        );
        assert!(err(serde_json::json!({"file": "/a", "url": "https://b"})).contains("exactly one"));
        assert!(
            err(serde_json::json!({"file": "/a", "format": {"type": "json"}}))
                .contains("subject_token_field_name")
        );
    }

    #[tokio::test]
    async fn a_file_token_is_read_trimmed_and_a_json_field_picked() {
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("t");
        std::fs::write(&text, "eyJ.a.b\n").unwrap();
        let acct = parse(base(serde_json::json!({"file": text}))).unwrap();
        assert_eq!(acct.subject_token().await.unwrap().expose(), "eyJ.a.b");
        let json = dir.path().join("j");
        std::fs::write(&json, r#"{"value": "eyJ.c.d"}"#).unwrap();
        let acct = parse(base(serde_json::json!({
            "file": json,
            "format": {"type": "json", "subject_token_field_name": "value"}
        })))
        .unwrap();
        assert_eq!(acct.subject_token().await.unwrap().expose(), "eyJ.c.d");
    }
}
