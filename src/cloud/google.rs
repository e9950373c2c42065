//! cloud::google: OAuth access tokens for Artifact Registry and gcr.io — workload identity federation (`external_account` files) or gcp_auth (service-account JSON in `GOOGLE_APPLICATION_CREDENTIALS`, gcloud user credentials, the metadata server) — sent as `oauth2accesstoken` Basic credentials.

use std::sync::Arc;
use std::time::SystemTime;

use super::{CloudError, Issued};
use crate::credential::{Credential, Secret};

/// The scope registries accept.
pub const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// The user name Google's registries expect with an access token.
pub const USERNAME: &str = "oauth2accesstoken";

/// Where tokens come from, found on first use.
#[derive(Default)]
pub struct Google {
    provider: tokio::sync::OnceCell<Provider>,
}

enum Provider {
    /// A workload identity federation configuration (gcp_auth cannot read those).
    External(super::google_external::ExternalAccount),
    /// Everything else gcp_auth finds.
    Gcp(Arc<dyn gcp_auth::TokenProvider>),
}

/// The application-default credential file: `GOOGLE_APPLICATION_CREDENTIALS`, else gcloud's.
fn credential_file() -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS").filter(|p| !p.is_empty()) {
        return Some(p.into());
    }
    let config = std::env::var_os("CLOUDSDK_CONFIG")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".config/gcloud"))
        })?;
    Some(config.join("application_default_credentials.json"))
}

async fn find() -> Result<Provider, CloudError> {
    if let Some(path) = credential_file() {
        if let Ok(json) = tokio::fs::read(&path).await {
            if super::google_external::is_external_account(&json) {
                tracing::debug!(file = %path.display(), "google credentials: workload identity federation");
                return super::google_external::ExternalAccount::parse(&path, &json)
                    .map(Provider::External);
            }
        }
    }
    gcp_auth::provider()
        .await
        .map(Provider::Gcp)
        .map_err(|e| error("find credentials", &e))
}

fn error(operation: &'static str, e: &gcp_auth::Error) -> CloudError {
    let mut detail = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        source = s.source();
    }
    CloudError {
        service: "google oauth",
        operation,
        detail: crate::transport::one_line(&detail),
    }
}

impl Google {
    /// An access token as registry credentials, with its expiry.
    pub async fn authorization(&self) -> Result<Issued, CloudError> {
        let (token, expires) = match self.provider.get_or_try_init(find).await? {
            Provider::External(account) => account.token(SCOPE).await?,
            Provider::Gcp(provider) => {
                let token = provider
                    .token(&[SCOPE])
                    .await
                    .map_err(|e| error("token", &e))?;
                let expires = SystemTime::UNIX_EPOCH
                    + std::time::Duration::from_secs(token.expires_at().timestamp().max(0) as u64);
                (Secret::new(token.as_str()), expires)
            }
        };
        tracing::debug!("google access token issued");
        Ok(Issued {
            credential: Credential::Basic {
                username: USERNAME.to_owned(),
                password: token,
            },
            expires: Some(expires),
        })
    }
}
