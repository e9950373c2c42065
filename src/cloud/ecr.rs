//! cloud::ecr: Amazon ECR through aws-sdk-ecr: registry names, `GetAuthorizationToken` credentials, repository settings (existence, creation, tag immutability), and deletes for `ferry prune` (`BatchDeleteImage`, untagged images).

use std::collections::HashMap;
use std::time::SystemTime;

use aws_sdk_ecr::error::ProvideErrorMetadata;
use aws_sdk_ecr::types::{
    ImageScanningConfiguration, ImageTagMutability, ImageTagMutabilityExclusionFilter,
    ImageTagMutabilityExclusionFilterType,
};
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::{CloudError, Issued};
use crate::credential::{Credential, Secret};
use crate::pattern::Pattern;

/// An ECR registry: its account and region, from `ACCOUNT.dkr.ecr.REGION.amazonaws.com`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EcrRegistry {
    /// The 12-digit account id (the registry id).
    pub account: String,
    /// The AWS region.
    pub region: String,
}

impl EcrRegistry {
    /// Parses an ECR host name (also FIPS and China partitions).
    pub fn parse(host: &str) -> Option<EcrRegistry> {
        let host = host.to_ascii_lowercase();
        let rest = host
            .strip_suffix(".amazonaws.com")
            .or_else(|| host.strip_suffix(".amazonaws.com.cn"))?;
        let mut parts = rest.split('.');
        let (account, dkr, ecr, region) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let ok = parts.next().is_none()
            && account.len() == 12
            && account.bytes().all(|b| b.is_ascii_digit())
            && dkr == "dkr"
            && matches!(ecr, "ecr" | "ecr-fips")
            && !region.is_empty()
            && region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        ok.then(|| EcrRegistry {
            account: account.to_owned(),
            region: region.to_owned(),
        })
    }
}

/// ECR's tag mutability setting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Mutability {
    /// Tags move freely (ECR's default).
    #[default]
    Mutable,
    /// No tag ever moves once set.
    Immutable,
    /// Tags move, except those matching the exclusion filters.
    MutableWithExclusion,
    /// No tag moves, except those matching the exclusion filters.
    ImmutableWithExclusion,
}

impl Mutability {
    /// The name ECR uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Mutability::Mutable => "MUTABLE",
            Mutability::Immutable => "IMMUTABLE",
            Mutability::MutableWithExclusion => "MUTABLE_WITH_EXCLUSION",
            Mutability::ImmutableWithExclusion => "IMMUTABLE_WITH_EXCLUSION",
        }
    }

    /// Parses ECR's names (any case, `-` or `_`).
    pub fn parse(s: &str) -> Option<Mutability> {
        match s.to_ascii_uppercase().replace('-', "_").as_str() {
            "MUTABLE" => Some(Mutability::Mutable),
            "IMMUTABLE" => Some(Mutability::Immutable),
            "MUTABLE_WITH_EXCLUSION" => Some(Mutability::MutableWithExclusion),
            "IMMUTABLE_WITH_EXCLUSION" => Some(Mutability::ImmutableWithExclusion),
            _ => None,
        }
    }

    fn to_sdk(self) -> ImageTagMutability {
        ImageTagMutability::from(self.as_str())
    }
}

impl std::fmt::Display for Mutability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A repository's settings that matter to a copier.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RepoSettings {
    /// Tag mutability.
    pub mutability: Mutability,
    /// Wildcard filters (`*` only) that flip mutability for matching tags.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exclusions: Vec<String>,
    /// Scan on push.
    pub scan_on_push: bool,
}

impl RepoSettings {
    /// True when a tag, once set, can never point elsewhere in this repository.
    pub fn is_immutable(&self, tag: &str) -> bool {
        let excluded = || {
            self.exclusions
                .iter()
                .filter_map(|f| Pattern::parse(f).ok())
                .any(|p| p.matches(tag))
        };
        match self.mutability {
            Mutability::Mutable => false,
            Mutability::Immutable => true,
            Mutability::MutableWithExclusion => excluded(),
            Mutability::ImmutableWithExclusion => !excluded(),
        }
    }

    /// How the setting reads in an error: `tag mutability IMMUTABLE` or with its exclusions.
    pub fn describe(&self) -> String {
        if self.exclusions.is_empty() {
            format!("tag mutability {}", self.mutability)
        } else {
            format!(
                "tag mutability {} (exclusions: {})",
                self.mutability,
                self.exclusions.join(", ")
            )
        }
    }
}

/// ECR API clients, one per region, built on first use from the default AWS credential chain
/// (environment, profile, SSO, web identity); `AWS_ENDPOINT_URL(_ECR)` is honoured by aws-config.
#[derive(Default)]
pub struct Ecr {
    clients: tokio::sync::Mutex<HashMap<String, aws_sdk_ecr::Client>>,
    calls: std::sync::atomic::AtomicU64,
}

fn sdk_error<E: ProvideErrorMetadata + std::error::Error + 'static>(
    operation: &'static str,
    e: &aws_sdk_ecr::error::SdkError<E>,
) -> CloudError {
    let detail = match e.as_service_error() {
        Some(s) => match (s.code(), s.message()) {
            (Some(c), Some(m)) => format!("{c}: {m}"),
            (Some(c), None) => c.to_owned(),
            _ => s.to_string(),
        },
        None => aws_sdk_ecr::error::DisplayErrorContext(e).to_string(),
    };
    CloudError {
        service: "ecr",
        operation,
        detail: crate::transport::one_line(&detail),
    }
}

impl Ecr {
    async fn client(&self, region: &str) -> aws_sdk_ecr::Client {
        let mut clients = self.clients.lock().await;
        if let Some(c) = clients.get(region) {
            return c.clone();
        }
        let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(region.to_owned()))
            .load()
            .await;
        let c = aws_sdk_ecr::Client::new(&conf);
        clients.insert(region.to_owned(), c.clone());
        c
    }

    /// ECR API calls made so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn count(&self) {
        self.calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Registry credentials (`AWS:<password>`, about 12 h) from `GetAuthorizationToken`.
    pub async fn authorization(&self, r: &EcrRegistry) -> Result<Issued, CloudError> {
        const OP: &str = "GetAuthorizationToken";
        self.count();
        let out = self
            .client(&r.region)
            .await
            .get_authorization_token()
            .send()
            .await
            .map_err(|e| sdk_error(OP, &e))?;
        let err = |detail: &str| CloudError {
            service: "ecr",
            operation: OP,
            detail: detail.to_owned(),
        };
        let data = out
            .authorization_data()
            .first()
            .ok_or_else(|| err("no authorization data in the answer"))?;
        let decoded = data
            .authorization_token()
            .and_then(|t| base64::engine::general_purpose::STANDARD.decode(t).ok())
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| err("the authorization token is not base64 of user:password"))?;
        let (username, password) = decoded
            .split_once(':')
            .ok_or_else(|| err("the authorization token is not user:password"))?;
        let expires = data
            .expires_at()
            .and_then(|t| SystemTime::try_from(*t).ok());
        tracing::debug!(registry = %r.account, region = %r.region, "ecr authorization token issued");
        Ok(Issued {
            credential: Credential::Basic {
                username: username.to_owned(),
                password: Secret::new(password),
            },
            expires,
        })
    }

    /// A repository's settings, or `None` if it does not exist.
    pub async fn describe(
        &self,
        r: &EcrRegistry,
        repository: &str,
    ) -> Result<Option<RepoSettings>, CloudError> {
        const OP: &str = "DescribeRepositories";
        self.count();
        let out = self
            .client(&r.region)
            .await
            .describe_repositories()
            .registry_id(&r.account)
            .repository_names(repository)
            .send()
            .await;
        let out = match out {
            Ok(o) => o,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_repository_not_found_exception()) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(sdk_error(OP, &e)),
        };
        Ok(out.repositories().first().map(|repo| RepoSettings {
            mutability: repo
                .image_tag_mutability()
                .and_then(|m| Mutability::parse(m.as_str()))
                .unwrap_or_default(),
            exclusions: repo
                .image_tag_mutability_exclusion_filters()
                .iter()
                .map(|f| f.filter().to_owned())
                .collect(),
            scan_on_push: repo
                .image_scanning_configuration()
                .is_some_and(|c| c.scan_on_push()),
        }))
    }

    /// Creates a repository with these settings (an existing one is left as it is and described).
    pub async fn create(
        &self,
        r: &EcrRegistry,
        repository: &str,
        settings: &RepoSettings,
    ) -> Result<RepoSettings, CloudError> {
        const OP: &str = "CreateRepository";
        self.count();
        let mut req = self
            .client(&r.region)
            .await
            .create_repository()
            .registry_id(&r.account)
            .repository_name(repository)
            .image_tag_mutability(settings.mutability.to_sdk())
            .image_scanning_configuration(
                ImageScanningConfiguration::builder()
                    .scan_on_push(settings.scan_on_push)
                    .build(),
            );
        for f in &settings.exclusions {
            req = req.image_tag_mutability_exclusion_filters(
                ImageTagMutabilityExclusionFilter::builder()
                    .filter_type(ImageTagMutabilityExclusionFilterType::Wildcard)
                    .filter(f)
                    .build()
                    .map_err(|e| CloudError {
                        service: "ecr",
                        operation: OP,
                        detail: e.to_string(),
                    })?,
            );
        }
        match req.send().await {
            Ok(_) => {
                tracing::info!(registry = %r.account, region = %r.region, repository, settings = %settings.describe(), "created ecr repository");
                Ok(settings.clone())
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_repository_already_exists_exception()) =>
            {
                self.describe(r, repository)
                    .await?
                    .ok_or_else(|| sdk_error(OP, &e))
            }
            Err(e) => Err(sdk_error(OP, &e)),
        }
    }

    /// Deletes images by tag (the image goes with its last tag) or by digest (with every tag),
    /// up to [`DELETE_BATCH`] per `BatchDeleteImage` call. Per id: deleted (`true`), already
    /// gone (`false`), or ECR's failure code and reason.
    pub async fn batch_delete(
        &self,
        r: &EcrRegistry,
        repository: &str,
        ids: &[EcrImageId],
    ) -> Result<Vec<Result<bool, String>>, CloudError> {
        const OP: &str = "BatchDeleteImage";
        let client = self.client(&r.region).await;
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(DELETE_BATCH) {
            self.count();
            let mut req = client
                .batch_delete_image()
                .registry_id(&r.account)
                .repository_name(repository);
            for id in chunk {
                let b = aws_sdk_ecr::types::ImageIdentifier::builder();
                req = req.image_ids(match id {
                    EcrImageId::Tag(t) => b.image_tag(t).build(),
                    EcrImageId::Digest(d) => b.image_digest(d).build(),
                });
            }
            let answer = req.send().await.map_err(|e| sdk_error(OP, &e))?;
            for id in chunk {
                let failure = answer.failures().iter().find(|f| {
                    f.image_id().is_some_and(|i| match id {
                        EcrImageId::Tag(t) => i.image_tag() == Some(t.as_str()),
                        EcrImageId::Digest(d) => i.image_digest() == Some(d.as_str()),
                    })
                });
                out.push(match failure {
                    None => Ok(true),
                    Some(f) => match f.failure_code().map(|c| c.as_str()) {
                        Some("ImageNotFound") | Some("ImageTagDoesNotMatchDigest") => Ok(false),
                        code => Err(format!(
                            "{}: {}",
                            code.unwrap_or("failure"),
                            f.failure_reason().unwrap_or("no reason given")
                        )),
                    },
                });
            }
        }
        Ok(out)
    }

    /// Every image of a repository no tag names, with when it was pushed (`DescribeImages`,
    /// every page).
    pub async fn untagged(
        &self,
        r: &EcrRegistry,
        repository: &str,
    ) -> Result<Vec<(String, Option<SystemTime>)>, CloudError> {
        const OP: &str = "DescribeImages";
        let client = self.client(&r.region).await;
        let mut out = Vec::new();
        let mut next: Option<String> = None;
        loop {
            self.count();
            let answer = client
                .describe_images()
                .registry_id(&r.account)
                .repository_name(repository)
                .filter(
                    aws_sdk_ecr::types::DescribeImagesFilter::builder()
                        .tag_status(aws_sdk_ecr::types::TagStatus::Untagged)
                        .build(),
                )
                .max_results(1000)
                .set_next_token(next.take())
                .send()
                .await
                .map_err(|e| sdk_error(OP, &e))?;
            for d in answer.image_details() {
                // The filter is ECR's; a stand-in may ignore it, so it is checked here too.
                if !d.image_tags().is_empty() {
                    continue;
                }
                if let Some(digest) = d.image_digest() {
                    let pushed = d
                        .image_pushed_at()
                        .and_then(|t| SystemTime::try_from(*t).ok());
                    out.push((digest.to_owned(), pushed));
                }
            }
            match answer.next_token() {
                Some(t) if !t.is_empty() => next = Some(t.to_owned()),
                _ => return Ok(out),
            }
        }
    }
}

/// Image ids per `BatchDeleteImage` call: ECR's limit.
pub const DELETE_BATCH: usize = 100;

/// An image as `BatchDeleteImage` names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EcrImageId {
    /// By tag.
    Tag(String),
    /// By digest.
    Digest(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ecr_names() {
        assert!(EcrRegistry::parse("123456789012.dkr.ecr.eu-west-1.amazonaws.com").is_some());
        assert!(EcrRegistry::parse("123456789012.dkr.ecr.eu-west-1.amazonaws.com.evil").is_none());
        assert!(EcrRegistry::parse("x23456789012.dkr.ecr.eu-west-1.amazonaws.com").is_none());
        assert!(EcrRegistry::parse("123456789012.dkr.s3.eu-west-1.amazonaws.com").is_none());
        assert!(EcrRegistry::parse("123456789012.dkr.ecr.EU_WEST.amazonaws.com").is_none());
    }

    #[test]
    fn immutability_with_exclusions() {
        let s = |m, ex: &[&str]| RepoSettings {
            mutability: m,
            exclusions: ex.iter().map(|e| e.to_string()).collect(),
            scan_on_push: false,
        };
        assert!(!s(Mutability::Mutable, &[]).is_immutable("prod"));
        assert!(s(Mutability::Immutable, &["prod"]).is_immutable("prod"));
        let iwe = s(
            Mutability::ImmutableWithExclusion,
            &["prod", "ferry-history-*"],
        );
        assert!(!iwe.is_immutable("prod"));
        assert!(!iwe.is_immutable("ferry-history-prod"));
        assert!(iwe.is_immutable("v1.2.3"));
        let mwe = s(Mutability::MutableWithExclusion, &["v*"]);
        assert!(mwe.is_immutable("v1.2.3"));
        assert!(!mwe.is_immutable("prod"));
        assert_eq!(
            iwe.describe(),
            "tag mutability IMMUTABLE_WITH_EXCLUSION (exclusions: prod, ferry-history-*)"
        );
        assert_eq!(
            Mutability::parse("immutable-with-exclusion"),
            Some(Mutability::ImmutableWithExclusion)
        );
    }
}
