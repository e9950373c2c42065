//! cloud::google: OAuth access tokens for Artifact Registry and gcr.io through gcp_auth (service-account JSON in `GOOGLE_APPLICATION_CREDENTIALS`, gcloud user credentials, the metadata server), sent as `oauth2accesstoken` Basic credentials.

use std::sync::Arc;
use std::time::SystemTime;

use super::{CloudError, Issued};
use crate::auth::{Credential, Secret};

/// The scope registries accept.
pub const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// The user name Google's registries expect with an access token.
pub const USERNAME: &str = "oauth2accesstoken";

/// gcp_auth's provider, found on first use.
#[derive(Default)]
pub struct Google {
    provider: tokio::sync::OnceCell<Arc<dyn gcp_auth::TokenProvider>>,
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
        let provider = self
            .provider
            .get_or_try_init(|| async {
                gcp_auth::provider()
                    .await
                    .map_err(|e| error("find credentials", &e))
            })
            .await?;
        let token = provider
            .token(&[SCOPE])
            .await
            .map_err(|e| error("token", &e))?;
        let expires = SystemTime::UNIX_EPOCH
            + std::time::Duration::from_secs(token.expires_at().timestamp().max(0) as u64);
        tracing::debug!("google access token issued");
        Ok(Issued {
            credential: Credential::Basic {
                username: USERNAME.to_owned(),
                password: Secret::new(token.as_str()),
            },
            expires: Some(expires),
        })
    }
}
