//! policy: loads `policies/*.yaml` in layers (built-in defaults → YAML → `FERRY_*` environment → flags) into validated types.
//!
//! Two kinds of file live in the policy directory: `registries.yaml` (how to reach each registry)
//! and one file per environment (`staging.yaml`, `prod.yaml`: what gets promoted where, with
//! which tags). Every file starts with `version: 1`. Unknown keys and bad values are errors that
//! name the file and the key path. Nothing here does I/O beyond reading the files.

pub mod mirror;
pub mod retention;
pub mod schema;
pub mod tags;
mod transform;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cloud::{Kind, Mutability, RepoSettings};
use crate::gate::Require;
use crate::manifest::Platform;
use crate::reference::{ImageRef, Tag};
use crate::sigstore::{TrustRoot, TrustRootSpec};
use crate::transport::{retry, HostSettings, RetryPolicy, TransportOptions};
pub use tags::{Pattern, TagRule};

/// The only policy format version this build reads.
pub const VERSION: u32 = 1;
/// The file that describes registries rather than an environment.
pub const REGISTRIES_FILE: &str = "registries.yaml";

/// A policy could not be loaded: the message names the file and the key path.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {key}{sep}{message}", sep = if key.is_empty() { "" } else { ": " })]
pub struct PolicyError {
    /// The file, as found.
    pub file: String,
    /// The key path inside it (`targets[1].registry`), or empty for the file as a whole.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl PolicyError {
    pub(crate) fn new(file: &Path, key: impl Into<String>, message: impl Into<String>) -> Self {
        PolicyError {
            file: file.display().to_string(),
            key: key.into(),
            message: message.into(),
        }
    }
}

/// An environment's name: lowercase letters, digits, `.`, `_` and `-`, usable as a tag.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Environment(String);

impl Environment {
    /// Validates an environment name.
    pub fn parse(s: &str) -> Result<Self, String> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
        if ok {
            Ok(Environment(s.to_owned()))
        } else {
            Err(format!(
                "{s:?} is not an environment name (lowercase letters, digits, '.', '_', '-')"
            ))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The prefix of environment variables that override this environment's policy: `FERRY_PROD`.
    pub fn env_prefix(&self) -> String {
        format!(
            "FERRY_{}",
            self.0.to_ascii_uppercase().replace(['-', '.'], "_")
        )
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How ferry authenticates to a registry (`auth:`).
pub use crate::auth::CredentialSource as AuthKind;

/// `registries.yaml`, one entry as written: how to reach one registry.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Registry")]
pub(crate) struct RawRegistry {
    /// `scheme://host[:port]` to send this registry's API requests to instead of its own name
    /// (e.g. `http://127.0.0.1:5001` for a local stand-in). An `http://` endpoint implies `plain_http`.
    #[schemars(regex(pattern = r"^https?://[^/?#]+/?$"))]
    endpoint: Option<String>,
    /// GHCR and Docker Hub: where `ferry prune` sends their own APIs' requests instead of
    /// `https://api.github.com` and `https://hub.docker.com` (a proxy, a stand-in).
    #[schemars(regex(pattern = r"^https?://[^?#]+$"))]
    api_endpoint: Option<String>,
    /// Plain HTTP instead of HTTPS; never a silent fallback. Loopback registries use it already.
    #[schemars(extend("default" = false))]
    plain_http: Option<bool>,
    /// An extra CA certificate (PEM) to trust for this registry, relative to this file.
    ca_file: Option<PathBuf>,
    /// How to authenticate: `auto` picks by registry name (ECR, Google, Docker Hub, GHCR, else Docker's config.json).
    #[schemars(extend("default" = "auto", "enum" = ["auto", "docker-config", "anonymous", "ecr", "google", "gcp"]))]
    auth: Option<String>,
    /// Requests and blob transfers to this registry at once. Default: the command's `--per-host`.
    #[schemars(range(min = 1))]
    max_concurrency: Option<usize>,
    /// Requests started per second, at most (ECR's PutImage allows 10/s per region). Default: unpaced.
    #[schemars(extend("exclusiveMinimum" = 0))]
    requests_per_second: Option<f64>,
    /// Attempts per request, the first included (1: never retry). 429, 5xx and dropped connections are retried.
    #[schemars(extend("default" = retry::DEFAULT_ATTEMPTS), range(min = 1))]
    retries: Option<u32>,
    /// Time one request may spend waiting between attempts, as a duration (`90s`, `2m`).
    #[schemars(extend("default" = "2m"))]
    retry_budget: Option<String>,
    /// ECR: create a missing repository (with the settings below) instead of failing with NAME_UNKNOWN.
    #[schemars(extend("default" = false))]
    create_repositories: Option<bool>,
    /// ECR: tag mutability of the repositories ferry creates.
    #[schemars(extend("default" = "mutable", "enum" = ["mutable", "immutable", "mutable_with_exclusion", "immutable_with_exclusion"]))]
    tag_mutability: Option<String>,
    /// ECR: tag filters (tag characters and `*`) excepted from `tag_mutability`; needed by the `_with_exclusion` kinds.
    #[serde(default)]
    #[schemars(inner(regex(pattern = r"^[A-Za-z0-9_.*-]+$")))]
    mutability_exclusions: Vec<String>,
    /// ECR: scan images on push in the repositories ferry creates.
    #[schemars(extend("default" = false))]
    scan_on_push: Option<bool>,
    /// The largest manifest read from this registry, in bytes (default 4 MiB); larger ones are refused.
    #[schemars(extend("default" = crate::manifest::MAX_MANIFEST_BYTES), range(min = 1))]
    max_manifest_bytes: Option<usize>,
}

/// ferry's `registries.yaml`: how each registry is reached. Keys are registry names as written in references.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Registries")]
pub(crate) struct RawRegistries {
    /// The policy format version: 1.
    #[schemars(required, extend("const" = VERSION))]
    version: Option<u32>,
    /// Registry name (`ghcr.io`, `docker.io`, `ACCOUNT.dkr.ecr.REGION.amazonaws.com`, `host:port`) to its settings.
    #[serde(default)]
    registries: BTreeMap<String, RawRegistry>,
}

/// How to reach one registry.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RegistrySettings {
    /// `scheme://host[:port]` to send its API requests to instead of its own name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// GHCR and Docker Hub: their own API's base URL, instead of the public one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_endpoint: Option<String>,
    /// Plain HTTP (also implied by an `http://` endpoint).
    pub plain_http: bool,
    /// Extra CA certificate (PEM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// How to authenticate.
    pub auth: AuthKind,
    /// Blob transfers (and requests) to this registry at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<usize>,
    /// Requests started per second, at most.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests_per_second: Option<f64>,
    /// Attempts per request, the first included.
    pub retries: u32,
    /// Time one request may spend waiting between attempts.
    #[serde(with = "humantime_serde_secs")]
    pub retry_budget: std::time::Duration,
    /// ECR: missing repositories are created with these settings (`None`: never created).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub create_repositories: Option<RepoSettings>,
    /// The largest manifest read from it (default 4 MiB).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_manifest_bytes: Option<usize>,
}

mod humantime_serde_secs {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }
}

impl Default for RegistrySettings {
    fn default() -> Self {
        RegistrySettings {
            endpoint: None,
            api_endpoint: None,
            plain_http: false,
            ca_file: None,
            auth: AuthKind::Auto,
            max_concurrency: None,
            requests_per_second: None,
            retries: retry::DEFAULT_ATTEMPTS,
            retry_budget: retry::DEFAULT_BUDGET,
            create_repositories: None,
            max_manifest_bytes: None,
        }
    }
}

/// Where an environment's image goes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct Target(ImageRef);

impl Target {
    /// The repository (no tag, no digest).
    pub fn image(&self) -> &ImageRef {
        &self.0
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.repository_name())
    }
}

impl From<Target> for String {
    fn from(t: Target) -> String {
        t.to_string()
    }
}

/// One target of an environment: a registry and repository, or an OCI layout on disk.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Target")]
pub(crate) struct RawTarget {
    /// The registry (`123456789012.dkr.ecr.us-east-1.amazonaws.com`, `us-docker.pkg.dev`, `docker.io`); with `repository`.
    registry: Option<String>,
    /// The repository in that registry (`acme/api`); with `registry`.
    repository: Option<String>,
    /// An OCI image layout directory instead of a registry, relative to this file. With `images:`, each image gets the directory `LAYOUT/<its repository>`.
    layout: Option<PathBuf>,
    /// With `images:`: prepended to each image's repository (`acme/` puts `api` at `acme/api`); ends with `/`.
    #[schemars(regex(pattern = r"^([a-z0-9._-]+/)*$"))]
    prefix: Option<String>,
    /// With `images:`: image names whose repository here is not `prefix + repository` (`{worker: jobs/worker}`).
    #[serde(default)]
    mapping: BTreeMap<String, String>,
}

/// One image of a release (`images:` entry), as written.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Image")]
pub(crate) struct RawImage {
    /// The image's name in the release (`api`): what `ferry promote ENV api:TAG` names.
    #[schemars(regex(pattern = r"^[a-z0-9][a-z0-9._-]{0,63}$"))]
    name: String,
    /// The repository it is promoted from, without tag or digest (`ghcr.io/acme/api`, `ocidir://PATH`).
    source: String,
    /// Its repository at every target, after the target's `prefix` (default: its name).
    repository: Option<String>,
}

/// A ferry environment policy (`policies/<environment>.yaml`): what is promoted there, from where, with which tags.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Environment")]
#[schemars(transform = transform::require_targets)]
#[schemars(transform = transform::source_or_images)]
pub(crate) struct RawEnv {
    /// The policy format version: 1.
    #[schemars(required, extend("const" = VERSION))]
    version: Option<u32>,
    /// The kind of policy file.
    #[allow(dead_code)]
    #[schemars(extend("const" = "environment", "default" = "environment"))]
    kind: Option<String>,
    /// The environment's name; it must match the file name (`prod` in `prod.yaml`), which is the default.
    #[schemars(regex(pattern = r"^[a-z0-9][a-z0-9._-]{0,63}$"))]
    environment: Option<String>,
    /// The repository images are promoted from, without tag or digest (`ghcr.io/acme/api`, `ocidir://PATH`); or `images:`.
    source: Option<String>,
    /// The images of a release, promoted together (instead of `source`): each with its name,
    /// source repository and target repository; targets then take `prefix` and `mapping`.
    #[serde(default)]
    images: Vec<RawImage>,
    /// Gate: the digest must be what this environment runs at all its targets right now.
    #[schemars(regex(pattern = r"^[a-z0-9][a-z0-9._-]{0,63}$"))]
    promote_from: Option<String>,
    /// Where the image goes; content reaches all of them before any tag moves.
    #[serde(default)]
    #[schemars(length(min = 1))]
    targets: Vec<RawTarget>,
    /// The tags set at every target: fixed names (which must include the environment's own name),
    /// templates with `{source_tag}` and `{environment}`, and `semver` (from `v1.2.3`: `1.2.3`, `1.2`, `1`, `latest`).
    /// Default: the environment's name alone.
    #[serde(default)]
    #[schemars(transform = transform::no_default)]
    tags: Vec<String>,
    /// Tag patterns (`*` wildcards, e.g. `v*`) that never move once set, not even with `--force`.
    #[serde(default)]
    protect: Vec<String>,
    /// Platforms copied (`OS/ARCH[/VARIANT]`, e.g. `linux/arm64/v8`); the result is a new index. Default: every platform, attestations included.
    #[serde(default)]
    #[schemars(inner(regex(pattern = r"^[^/]+/[^/]+(/[^/]+)?$")))]
    platforms: Vec<String>,
    /// Evidence the image must carry before it may come here, checked before anything is written.
    require: Option<RawRequire>,
    /// Which attached artifacts (signatures, attestations, SBOMs) travel with the image.
    #[schemars(extend("default" = true))]
    referrers: Option<crate::referrers::RawFilter>,
    /// How many of this environment's latest history records `ferry prune` never deletes the
    /// images of (what `rollback` could return to).
    #[schemars(extend("default" = DEFAULT_ROLLBACK_WINDOW), range(min = 1))]
    rollback_window: Option<usize>,
}

/// `rollback_window` when a policy does not set it.
pub const DEFAULT_ROLLBACK_WINDOW: usize = 10;

/// `require:` as written.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Require")]
struct RawRequire {
    /// In-toto attestations (predicate type, pinned fields, and who must have signed each), or a list of them.
    attestation: Option<crate::gate::RawAttestations>,
    /// A signature over the image (cosign 3 bundle or cosign 2 `.sig`) by an identity or a key.
    signature: Option<crate::gate::RawSignature>,
    /// The Sigstore trusted root keyless signatures must chain to: `public-good` (the default,
    /// embedded), `github` (GitHub's instance, for private repositories; embedded), or a
    /// `trusted_root.json` file relative to this file (`gh attestation trusted-root`, a private Sigstore).
    trusted_root: Option<String>,
}

/// One image of an environment: its name, where it comes from, where it goes.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ImagePolicy {
    /// Its name in the release (`api`); for a one-image environment, the source repository's last segment.
    pub name: String,
    /// The repository it is promoted from (no tag).
    #[serde(serialize_with = "ser_repo")]
    pub source: ImageRef,
    /// Where it goes.
    pub targets: Vec<Target>,
}

/// One environment's validated policy.
#[derive(Clone, Debug, Serialize)]
pub struct EnvPolicy {
    /// The file it came from.
    pub file: PathBuf,
    /// The environment.
    pub environment: Environment,
    /// True when the policy lists `images:`: a release, promoted and recorded as a whole.
    pub release: bool,
    /// Every image (one, for the `source:` form), in policy order.
    pub images: Vec<ImagePolicy>,
    /// The repository images are promoted from (no tag): for a release, the image of this view
    /// (see [`EnvPolicy::views`]; the policy itself holds the first image's).
    #[serde(serialize_with = "ser_repo")]
    pub source: ImageRef,
    /// The environment whose tag an image must carry before it may come here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub promote_from: Option<Environment>,
    /// Where the image goes.
    pub targets: Vec<Target>,
    /// The tags applied at every target.
    pub tags: Vec<TagRule>,
    /// Tags that never move once set.
    pub protect: Vec<Pattern>,
    /// Platforms copied (empty: all).
    #[serde(serialize_with = "ser_platforms")]
    pub platforms: Vec<Platform>,
    /// Evidence the image must carry before it may come here.
    #[serde(skip_serializing_if = "Require::is_empty")]
    pub require: Require,
    /// Which attached artifacts travel with the image.
    pub referrers: crate::referrers::Filter,
    /// The latest history records whose images `ferry prune` never deletes.
    pub rollback_window: usize,
}

fn ser_repo<S: serde::Serializer>(r: &ImageRef, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&r.repository_name())
}

fn ser_platforms<S: serde::Serializer>(p: &[Platform], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(p.iter().map(ToString::to_string))
}

impl EnvPolicy {
    /// The tag that says "this is what the environment runs": its own name.
    pub fn env_tag(&self) -> Tag {
        Tag::parse(self.environment.as_str()).expect("environment names are valid tags")
    }

    /// True when the tag may never move once set.
    pub fn is_protected(&self, tag: &Tag) -> bool {
        self.protect.iter().any(|p| p.matches(tag.as_str()))
    }

    /// One policy per image, each with that image's `source` and `targets` (and `images` holding
    /// it alone): what the one-image steps (gates, tag plans, rollback preparation) work on.
    pub fn views(&self) -> Vec<EnvPolicy> {
        self.images
            .iter()
            .map(|i| EnvPolicy {
                images: vec![i.clone()],
                source: i.source.clone(),
                targets: i.targets.clone(),
                ..self.clone()
            })
            .collect()
    }

    /// The image named `name`.
    pub fn image(&self, name: &str) -> Option<&ImagePolicy> {
        self.images.iter().find(|i| i.name == name)
    }

    /// The images' names, comma-separated, for messages.
    pub fn image_names(&self) -> String {
        self.images
            .iter()
            .map(|i| i.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Every target of every image.
    pub fn all_targets(&self) -> impl Iterator<Item = &Target> {
        self.images.iter().flat_map(|i| &i.targets)
    }

    /// The literal tags that move back on a rollback: fixed names that are not protected.
    pub fn moving_tags(&self) -> Vec<Tag> {
        self.tags
            .iter()
            .filter_map(|r| match r {
                TagRule::Literal(t) if !self.is_protected(t) => Some(t.clone()),
                _ => None,
            })
            .collect()
    }
}

/// Values given on the command line, the last layer.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--platform`: replaces the policy's platforms.
    pub platforms: Vec<String>,
}

/// Every policy in a directory, validated.
#[derive(Clone, Debug, Serialize)]
pub struct Policies {
    /// The directory.
    pub dir: PathBuf,
    /// Registry settings by registry name.
    pub registries: BTreeMap<String, RegistrySettings>,
    /// Environment policies by name.
    pub environments: BTreeMap<Environment, EnvPolicy>,
    /// Mirror policies (`kind: mirror`) by name.
    pub mirrors: BTreeMap<String, mirror::MirrorPolicy>,
    /// Retention policies (`kind: retention`) by name.
    pub retentions: BTreeMap<String, retention::RetentionPolicy>,
}

impl Policies {
    /// Only `registries.yaml` from `dir`, if there is one (for commands that need no environment).
    pub fn registries_only(dir: &Path) -> Result<Policies, PolicyError> {
        let file = dir.join(REGISTRIES_FILE);
        Ok(Policies {
            dir: dir.to_owned(),
            registries: if file.is_file() {
                load_registries(&file)?
            } else {
                BTreeMap::new()
            },
            environments: BTreeMap::new(),
            mirrors: BTreeMap::new(),
            retentions: BTreeMap::new(),
        })
    }

    /// Loads and validates every `*.yaml` in `dir`.
    pub fn load(dir: &Path, overrides: &Overrides) -> Result<Policies, PolicyError> {
        let entries = std::fs::read_dir(dir).map_err(|e| {
            PolicyError::new(dir, "", format!("cannot read the policy directory: {e}"))
        })?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
            .collect();
        files.sort();
        let mut registries = BTreeMap::new();
        let mut environments = BTreeMap::new();
        let mut mirrors: BTreeMap<String, mirror::MirrorPolicy> = BTreeMap::new();
        let mut retentions: BTreeMap<String, retention::RetentionPolicy> = BTreeMap::new();
        for file in files {
            let kind = if file.file_name().and_then(|n| n.to_str()) == Some(REGISTRIES_FILE) {
                None
            } else {
                kind_of(&file)?
            };
            if file.file_name().and_then(|n| n.to_str()) == Some(REGISTRIES_FILE) {
                registries = load_registries(&file)?;
            } else if kind.as_deref() == Some("retention") {
                let r = retention::load(&file)?;
                if let Some(other) = retentions.get(&r.name) {
                    return Err(PolicyError::new(
                        &file,
                        "name",
                        format!(
                            "retention {} is also defined in {}",
                            r.name,
                            other.file.display()
                        ),
                    ));
                }
                for (i, repo) in r.repositories.iter().enumerate() {
                    if let Some(other) = retentions.values().find(|o| o.repositories.contains(repo))
                    {
                        return Err(PolicyError::new(
                            &file,
                            format!("repositories[{i}]"),
                            format!(
                                "{} is also pruned by {} (one set of rules per repository)",
                                repo.repository_name(),
                                other.file.display()
                            ),
                        ));
                    }
                }
                retentions.insert(r.name.clone(), r);
            } else if kind.as_deref() == Some("mirror") {
                let m = mirror::load(&file)?;
                if let Some(other) = mirrors.get(&m.name) {
                    return Err(PolicyError::new(
                        &file,
                        "name",
                        format!(
                            "mirror {} is also defined in {}",
                            m.name,
                            other.file.display()
                        ),
                    ));
                }
                mirrors.insert(m.name.clone(), m);
            } else {
                let p = load_env(&file, overrides)?;
                if let Some(other) = environments.get(&p.environment) {
                    let other: &EnvPolicy = other;
                    return Err(PolicyError::new(
                        &file,
                        "environment",
                        format!(
                            "{} is also defined in {}",
                            p.environment,
                            other.file.display()
                        ),
                    ));
                }
                environments.insert(p.environment.clone(), p);
            }
        }
        for p in environments.values() {
            if let Some(from) = &p.promote_from {
                if !environments.contains_key(from) {
                    return Err(PolicyError::new(
                        &p.file,
                        "promote_from",
                        format!("no policy file defines environment {from}"),
                    ));
                }
            }
        }
        Ok(Policies {
            dir: dir.to_owned(),
            registries,
            environments,
            mirrors,
            retentions,
        })
    }

    /// The policy of one environment.
    pub fn env(&self, name: &str) -> Result<&EnvPolicy, PolicyError> {
        let known: Vec<&str> = self.environments.keys().map(|e| e.as_str()).collect();
        Environment::parse(name)
            .ok()
            .and_then(|e| self.environments.get(&e))
            .ok_or_else(|| {
                PolicyError::new(
                    &self.dir,
                    "",
                    format!(
                        "no policy for environment {name:?} (known: {})",
                        if known.is_empty() {
                            "none".to_owned()
                        } else {
                            known.join(", ")
                        }
                    ),
                )
            })
    }

    /// Transport settings from `registries.yaml`, merged over the command line's.
    pub fn transport(&self, mut base: TransportOptions) -> TransportOptions {
        for (name, r) in &self.registries {
            if let Some(e) = &r.endpoint {
                base.endpoints.insert(name.clone(), e.clone());
            }
            if r.plain_http {
                base.plain_http.insert(name.clone());
            }
            if let Some(ca) = &r.ca_file {
                base.ca_files.insert(name.clone(), ca.clone());
            }
            if let Some(m) = r.max_manifest_bytes {
                base.max_manifest_bytes.insert(name.clone(), m);
            }
            base.hosts.insert(
                name.clone(),
                HostSettings {
                    requests_per_second: r.requests_per_second,
                    max_concurrency: r.max_concurrency,
                    retry: RetryPolicy {
                        attempts: r.retries,
                        budget: r.retry_budget,
                    },
                },
            );
        }
        base
    }

    /// Registries whose `max_concurrency` is set.
    pub fn host_limits(&self) -> HashMap<String, usize> {
        self.registries
            .iter()
            .filter_map(|(n, r)| r.max_concurrency.map(|m| (n.clone(), m)))
            .collect()
    }

    /// Per registry: where credentials come from, where set.
    pub fn auth_sources(&self) -> HashMap<String, AuthKind> {
        self.registries
            .iter()
            .filter(|(_, r)| r.auth != AuthKind::Auto)
            .map(|(n, r)| (n.clone(), r.auth))
            .collect()
    }

    /// ECR registries whose missing repositories ferry creates, with the settings they get.
    pub fn ecr_create(&self) -> HashMap<String, RepoSettings> {
        self.registries
            .iter()
            .filter_map(|(n, r)| Some((n.clone(), r.create_repositories.clone()?)))
            .collect()
    }
}

/// Deserialises a layered config into `T`, naming the key path of the first problem.
fn deserialize<T: for<'de> Deserialize<'de>>(
    file: &Path,
    config: config::Config,
) -> Result<T, PolicyError> {
    serde_path_to_error::deserialize(config).map_err(|e| {
        let path = e.path().to_string();
        let key = if path == "." { String::new() } else { path };
        PolicyError::new(file, key, one_line(&e.into_inner().to_string()))
    })
}

/// `referrers:` validated: a depth of 0 would follow nothing (`referrers: false` says that).
fn referrers(
    file: &Path,
    raw: Option<crate::referrers::RawFilter>,
) -> Result<crate::referrers::Filter, PolicyError> {
    use crate::referrers::{RawFilter, RawFilterMap};
    if let Some(RawFilter::Detailed(RawFilterMap { depth: Some(0), .. })) = raw {
        return Err(PolicyError::new(
            file,
            "referrers.depth",
            "must be at least 1 (`referrers: false` leaves attached artifacts behind)",
        ));
    }
    Ok(raw.map(Into::into).unwrap_or_default())
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn build(
    file: &Path,
    builder: config::ConfigBuilder<config::builder::DefaultState>,
) -> Result<config::Config, PolicyError> {
    builder
        .build()
        .map_err(|e| PolicyError::new(file, "", one_line(&e.to_string())))
}

fn check_version(file: &Path, v: Option<u32>) -> Result<(), PolicyError> {
    match v {
        Some(VERSION) => Ok(()),
        Some(other) => Err(PolicyError::new(
            file,
            "version",
            format!("{other} is not supported (this ferry reads version {VERSION})"),
        )),
        None => Err(PolicyError::new(
            file,
            "version",
            format!("missing: every policy file starts with `version: {VERSION}`"),
        )),
    }
}

fn yaml(file: &Path) -> config::File<config::FileSourceFile, config::FileFormat> {
    config::File::from(file).format(config::FileFormat::Yaml)
}

fn load_registries(file: &Path) -> Result<BTreeMap<String, RegistrySettings>, PolicyError> {
    let config = build(file, config::Config::builder().add_source(yaml(file)))?;
    let raw: RawRegistries = deserialize(file, config)?;
    check_version(file, raw.version)?;
    let mut out = BTreeMap::new();
    for (name, r) in raw.registries {
        let key = |k: &str| format!("registries.{name}.{k}");
        let registry = ImageRef::parse(&format!("{name}/x"))
            .ok()
            .and_then(|r| r.registry().cloned())
            .filter(|r| r.as_str() == name.to_ascii_lowercase() || name == "docker.io")
            .ok_or_else(|| {
                PolicyError::new(
                    file,
                    format!("registries.{name}"),
                    "not a registry host[:port]",
                )
            })?;
        let mut plain_http = r.plain_http.unwrap_or(false);
        if let Some(e) = &r.endpoint {
            let url = url::Url::parse(e)
                .map_err(|err| PolicyError::new(file, key("endpoint"), format!("{e:?}: {err}")))?;
            match url.scheme() {
                "http" => plain_http = true,
                "https" if r.plain_http == Some(true) => {
                    return Err(PolicyError::new(
                        file,
                        key("plain_http"),
                        "contradicts the https:// endpoint",
                    ))
                }
                "https" => {}
                other => {
                    return Err(PolicyError::new(
                        file,
                        key("endpoint"),
                        format!("scheme {other:?}: expected http or https"),
                    ))
                }
            }
            if url.host_str().is_none() || !matches!(url.path(), "" | "/") || url.query().is_some()
            {
                return Err(PolicyError::new(
                    file,
                    key("endpoint"),
                    format!("{e:?}: expected scheme://host[:port] and nothing more"),
                ));
            }
        }
        if let Some(e) = &r.api_endpoint {
            let ok = url::Url::parse(e)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some());
            if ok.is_none() {
                return Err(PolicyError::new(
                    file,
                    key("api_endpoint"),
                    format!("{e:?}: expected an http:// or https:// URL"),
                ));
            }
            if !matches!(Kind::of(registry.as_str()), Kind::Ghcr | Kind::DockerHub) {
                return Err(PolicyError::new(
                    file,
                    key("api_endpoint"),
                    "applies to ghcr.io and docker.io only (their own APIs, used by ferry prune)",
                ));
            }
        }
        if r.max_concurrency == Some(0) {
            return Err(PolicyError::new(
                file,
                key("max_concurrency"),
                "must be at least 1",
            ));
        }
        let kind = Kind::of(registry.as_str());
        let auth = match r.auth.as_deref() {
            None => AuthKind::Auto,
            Some(a) => AuthKind::parse(a).ok_or_else(|| {
                PolicyError::new(
                    file,
                    key("auth"),
                    format!("unknown auth kind {a:?} (known: {})", AuthKind::NAMES),
                )
            })?,
        };
        if auth == AuthKind::Ecr && !matches!(kind, Kind::Ecr(_)) {
            return Err(PolicyError::new(
                file,
                key("auth"),
                "ecr needs an ECR registry name: ACCOUNT.dkr.ecr.REGION.amazonaws.com (point `endpoint` elsewhere if needed)",
            ));
        }
        if let Some(rps) = r.requests_per_second {
            if !(rps.is_finite() && rps > 0.0) {
                return Err(PolicyError::new(
                    file,
                    key("requests_per_second"),
                    "must be a positive number",
                ));
            }
        }
        if r.retries == Some(0) {
            return Err(PolicyError::new(
                file,
                key("retries"),
                "must be at least 1 (1: never retry)",
            ));
        }
        let retry_budget = match &r.retry_budget {
            None => retry::DEFAULT_BUDGET,
            Some(b) => humantime::parse_duration(b)
                .map_err(|e| PolicyError::new(file, key("retry_budget"), format!("{b:?}: {e}")))?,
        };
        let ecr_keys = r.create_repositories.is_some()
            || r.tag_mutability.is_some()
            || !r.mutability_exclusions.is_empty()
            || r.scan_on_push.is_some();
        if ecr_keys && !matches!(kind, Kind::Ecr(_)) {
            return Err(PolicyError::new(
                file,
                format!("registries.{name}"),
                "create_repositories, tag_mutability, mutability_exclusions and scan_on_push apply to ECR registries only",
            ));
        }
        let mutability = match r.tag_mutability.as_deref() {
            None => Mutability::Mutable,
            Some(m) => Mutability::parse(m).ok_or_else(|| {
                PolicyError::new(
                    file,
                    key("tag_mutability"),
                    format!("{m:?}: expected mutable, immutable, mutable_with_exclusion or immutable_with_exclusion"),
                )
            })?,
        };
        for (i, f) in r.mutability_exclusions.iter().enumerate() {
            if f.contains('?') || Pattern::parse(f).is_err() {
                return Err(PolicyError::new(
                    file,
                    format!("registries.{name}.mutability_exclusions[{i}]"),
                    format!("{f:?} is not an ECR wildcard filter (tag characters and '*')"),
                ));
            }
        }
        if matches!(
            mutability,
            Mutability::MutableWithExclusion | Mutability::ImmutableWithExclusion
        ) && r.mutability_exclusions.is_empty()
        {
            return Err(PolicyError::new(
                file,
                key("mutability_exclusions"),
                format!("{mutability} needs at least one filter"),
            ));
        }
        let create_repositories = r
            .create_repositories
            .unwrap_or(false)
            .then(|| RepoSettings {
                mutability,
                exclusions: r.mutability_exclusions.clone(),
                scan_on_push: r.scan_on_push.unwrap_or(false),
            });
        let ca_file = r.ca_file.map(|p| relative_to(file, &p));
        if let Some(ca) = &ca_file {
            if !ca.is_file() {
                return Err(PolicyError::new(
                    file,
                    key("ca_file"),
                    format!("{} is not a readable file", ca.display()),
                ));
            }
        }
        out.insert(
            registry.as_str().to_owned(),
            RegistrySettings {
                endpoint: r.endpoint.map(|e| e.trim_end_matches('/').to_owned()),
                api_endpoint: r.api_endpoint.map(|e| e.trim_end_matches('/').to_owned()),
                plain_http,
                ca_file,
                auth,
                max_concurrency: r.max_concurrency,
                requests_per_second: r.requests_per_second,
                retries: r.retries.unwrap_or(retry::DEFAULT_ATTEMPTS),
                retry_budget,
                create_repositories,
                max_manifest_bytes: r.max_manifest_bytes,
            },
        );
    }
    Ok(out)
}

/// A path in a policy file is relative to the file's directory; `..` is resolved lexically.
fn relative_to(file: &Path, p: &Path) -> PathBuf {
    use std::path::Component;
    let joined = if p.is_absolute() {
        p.to_owned()
    } else {
        file.parent().unwrap_or(Path::new(".")).join(p)
    };
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// A mirror or retention policy's `name`: as written, else the file's stem; letters, digits,
/// `-`, `_` and `.` only.
fn policy_name(file: &Path, name: Option<String>) -> Result<String, PolicyError> {
    let name = name.unwrap_or_else(|| {
        file.file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_owned()
    });
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(PolicyError::new(
            file,
            "name",
            format!("{name:?}: letters, digits, '-', '_' and '.' only"),
        ));
    }
    Ok(name)
}

/// A policy file's `kind` (`environment` when absent, `mirror` or `retention`).
fn kind_of(file: &Path) -> Result<Option<String>, PolicyError> {
    kind_in(
        file,
        &build(file, config::Config::builder().add_source(yaml(file)))?,
    )
}

/// The `kind` key of a parsed policy file; `file` names it in errors.
fn kind_in(file: &Path, config: &config::Config) -> Result<Option<String>, PolicyError> {
    match config.get_string("kind") {
        Ok(k) if k == "environment" || k == "mirror" || k == "retention" => Ok(Some(k)),
        Ok(k) => Err(PolicyError::new(
            file,
            "kind",
            format!("{k:?}: expected environment, mirror or retention"),
        )),
        Err(config::ConfigError::NotFound(_)) => Ok(None),
        Err(e) => Err(PolicyError::new(file, "kind", one_line(&e.to_string()))),
    }
}

/// The kind of a policy file's text, as [`Policies::load`] decides it (`registries.yaml` by name,
/// else its `kind`); text that does not parse counts as an environment.
pub(crate) fn kind_of_text(file: &Path, text: &str) -> Option<String> {
    if file.file_name().and_then(|n| n.to_str()) == Some(REGISTRIES_FILE) {
        return Some("registries".into());
    }
    let source = config::File::from_str(text, config::FileFormat::Yaml);
    let config = build(file, config::Config::builder().add_source(source)).ok()?;
    kind_in(file, &config).ok().flatten()
}

fn load_env(file: &Path, overrides: &Overrides) -> Result<EnvPolicy, PolicyError> {
    let stem = file
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_owned();
    let stem_env = Environment::parse(&stem).map_err(|e| {
        PolicyError::new(
            file,
            "",
            format!("the file name must be the environment's: {e}"),
        )
    })?;
    let mut builder = config::Config::builder()
        // Built-in defaults: every platform, no protected tags.
        .set_default("platforms", Vec::<String>::new())
        .and_then(|b| b.set_default("protect", Vec::<String>::new()))
        .map_err(|e| PolicyError::new(file, "", e.to_string()))?
        .add_source(yaml(file))
        .add_source(
            config::Environment::with_prefix(&stem_env.env_prefix())
                .prefix_separator("_")
                .separator("__")
                .list_separator(",")
                .with_list_parse_key("tags")
                .with_list_parse_key("protect")
                .with_list_parse_key("platforms")
                .try_parsing(true),
        );
    if !overrides.platforms.is_empty() {
        builder = builder
            .set_override("platforms", overrides.platforms.clone())
            .map_err(|e| PolicyError::new(file, "platforms", e.to_string()))?;
    }
    let raw: RawEnv = deserialize(file, build(file, builder)?)?;
    check_version(file, raw.version)?;

    let environment = match raw.environment.as_deref() {
        None => stem_env.clone(),
        Some(e) => {
            let env =
                Environment::parse(e).map_err(|m| PolicyError::new(file, "environment", m))?;
            if env != stem_env {
                return Err(PolicyError::new(
                    file,
                    "environment",
                    format!("{env} does not match the file name ({stem}.yaml)"),
                ));
            }
            env
        }
    };
    let release = !raw.images.is_empty();
    let promote_from = raw
        .promote_from
        .map(|p| Environment::parse(&p).map_err(|m| PolicyError::new(file, "promote_from", m)))
        .transpose()?;
    if promote_from.as_ref() == Some(&environment) {
        return Err(PolicyError::new(
            file,
            "promote_from",
            "an environment cannot promote from itself",
        ));
    }
    let images = load_images(file, raw.source, raw.images, raw.targets)?;
    let mut tags = Vec::new();
    let raw_tags = if raw.tags.is_empty() {
        vec![environment.to_string()]
    } else {
        raw.tags
    };
    for (i, t) in raw_tags.iter().enumerate() {
        let rule =
            TagRule::parse(t).map_err(|m| PolicyError::new(file, format!("tags[{i}]"), m))?;
        if tags.contains(&rule) {
            return Err(PolicyError::new(
                file,
                format!("tags[{i}]"),
                format!("{t:?} is listed twice"),
            ));
        }
        tags.push(rule);
    }
    let protect = raw
        .protect
        .iter()
        .enumerate()
        .map(|(i, p)| {
            Pattern::parse(p).map_err(|m| PolicyError::new(file, format!("protect[{i}]"), m))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let platforms = raw
        .platforms
        .iter()
        .enumerate()
        .map(|(i, p)| {
            Platform::parse(p).ok_or_else(|| {
                PolicyError::new(
                    file,
                    format!("platforms[{i}]"),
                    format!("{p:?}: expected OS/ARCH[/VARIANT]"),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let require = load_require(file, raw.require)?;
    let policy = EnvPolicy {
        file: file.to_owned(),
        environment,
        release,
        source: images[0].source.clone(),
        targets: images[0].targets.clone(),
        images,
        promote_from,
        tags,
        protect,
        platforms,
        require,
        referrers: referrers(file, raw.referrers)?,
        rollback_window: match raw.rollback_window {
            Some(0) => {
                return Err(PolicyError::new(
                    file,
                    "rollback_window",
                    "must be at least 1: prune never deletes what the environment last ran",
                ))
            }
            n => n.unwrap_or(DEFAULT_ROLLBACK_WINDOW),
        },
    };
    let env_tag = policy.env_tag();
    if !policy.tags.contains(&TagRule::Literal(env_tag.clone())) {
        return Err(PolicyError::new(
            file,
            "tags",
            format!(
                "must include the environment tag \"{env_tag}\": status and rollback follow it"
            ),
        ));
    }
    if policy.is_protected(&env_tag) {
        return Err(PolicyError::new(
            file,
            "protect",
            format!("protects the environment tag \"{env_tag}\", which must move"),
        ));
    }
    Ok(policy)
}

/// `source:` and `targets:` (one image), or `images:` and targets with a prefix or a mapping (a
/// release): every image with its source and its repository at every target.
fn load_images(
    file: &Path,
    source: Option<String>,
    raw_images: Vec<RawImage>,
    raw_targets: Vec<RawTarget>,
) -> Result<Vec<ImagePolicy>, PolicyError> {
    let release = !raw_images.is_empty();
    let mut images: Vec<(String, ImageRef, String)> = Vec::new();
    match (source, release) {
        (Some(_), true) => {
            return Err(PolicyError::new(
                file,
                "source",
                "give either source (one image) or images (a release), not both",
            ))
        }
        (None, false) => {
            return Err(PolicyError::new(
                file,
                "source",
                "missing: the repository images come from (or `images:`, for a release)",
            ))
        }
        (Some(text), false) => {
            let mut source = parse_repo(file, "source", &text)?;
            if let ImageRef::Layout(l) = &mut source {
                l.path = relative_to(file, &l.path);
            }
            let name = source
                .repository_name()
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_owned();
            images.push((name, source, String::new()));
        }
        (None, true) => {
            for (i, img) in raw_images.into_iter().enumerate() {
                let key = |k: &str| format!("images[{i}].{k}");
                if Environment::parse(&img.name).is_err() {
                    return Err(PolicyError::new(
                        file,
                        key("name"),
                        format!(
                            "{:?} is not an image name (lowercase letters, digits, '.', '_', '-')",
                            img.name
                        ),
                    ));
                }
                if images.iter().any(|(n, _, _)| n == &img.name) {
                    return Err(PolicyError::new(
                        file,
                        key("name"),
                        format!("{} is listed twice", img.name),
                    ));
                }
                let mut source = parse_repo(file, &key("source"), &img.source)?;
                if let ImageRef::Layout(l) = &mut source {
                    l.path = relative_to(file, &l.path);
                }
                let repository = img.repository.unwrap_or_else(|| img.name.clone());
                images.push((img.name, source, repository));
            }
        }
    }
    if raw_targets.is_empty() {
        return Err(PolicyError::new(
            file,
            "targets",
            "missing: at least one target",
        ));
    }
    let mut out: Vec<ImagePolicy> = images
        .iter()
        .map(|(name, source, _)| ImagePolicy {
            name: name.clone(),
            source: source.clone(),
            targets: Vec::new(),
        })
        .collect();
    for (i, t) in raw_targets.into_iter().enumerate() {
        let key = |k: &str| format!("targets[{i}]{k}");
        if release && t.repository.is_some() {
            return Err(PolicyError::new(
                file,
                key(".repository"),
                "with images:, a target takes a prefix (and a mapping), and each image its own repository",
            ));
        }
        if !release && (t.prefix.is_some() || !t.mapping.is_empty()) {
            return Err(PolicyError::new(
                file,
                key(""),
                "prefix and mapping go with images:; a one-image target names its repository",
            ));
        }
        if let Some(p) = &t.prefix {
            if !p.is_empty() && !p.ends_with('/') {
                return Err(PolicyError::new(
                    file,
                    key(".prefix"),
                    format!("{p:?} must end with '/'"),
                ));
            }
        }
        for name in t.mapping.keys() {
            if !images.iter().any(|(n, _, _)| n == name) {
                return Err(PolicyError::new(
                    file,
                    format!("targets[{i}].mapping.{name}"),
                    format!(
                        "no image is named {name} (images: {})",
                        images
                            .iter()
                            .map(|(n, _, _)| n.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
        }
        for (k, (name, _, repository)) in images.iter().enumerate() {
            let repo = match (&t.repository, t.mapping.get(name)) {
                (Some(r), _) => r.clone(),
                (None, Some(m)) => m.clone(),
                (None, None) => format!("{}{repository}", t.prefix.as_deref().unwrap_or("")),
            };
            let image = match (&t.registry, release || t.repository.is_some(), &t.layout) {
                (Some(reg), true, None) => parse_repo(file, &key(""), &format!("{reg}/{repo}"))?,
                (None, false, Some(path)) | (None, true, Some(path)) if t.repository.is_none() => {
                    let mut path = relative_to(file, path);
                    if release {
                        path = path.join(&repo);
                    }
                    parse_repo(
                        file,
                        &key(".layout"),
                        &format!("ocidir://{}", path.display()),
                    )?
                }
                (Some(_), false, None) => {
                    return Err(PolicyError::new(file, key(".repository"), "missing"))
                }
                (None, _, None) if t.repository.is_some() => {
                    return Err(PolicyError::new(file, key(".registry"), "missing"))
                }
                _ => {
                    return Err(PolicyError::new(
                        file,
                        key(""),
                        if release {
                            "expected either registry (with prefix or mapping), or layout"
                        } else {
                            "expected either registry + repository, or layout"
                        },
                    ))
                }
            };
            let target = Target(image);
            if out.iter().flat_map(|o| &o.targets).any(|o| o == &target) {
                return Err(PolicyError::new(
                    file,
                    key(""),
                    format!("{target} is listed twice"),
                ));
            }
            out[k].targets.push(target);
        }
    }
    Ok(out)
}

/// `require:`: attestation and signature rules, their keys read, and the trusted root loaded.
fn load_require(file: &Path, raw: Option<RawRequire>) -> Result<Require, PolicyError> {
    let Some(raw) = raw else {
        return Ok(Require::default());
    };
    let dir = file.parent().unwrap_or(Path::new("."));
    let under = |prefix: String, (key, msg): crate::gate::RuleError| {
        let key = if key.is_empty() {
            prefix
        } else {
            format!("{prefix}.{key}")
        };
        PolicyError::new(file, key, msg)
    };
    let attestations = match raw.attestation {
        None => Vec::new(),
        Some(a) => a
            .into_rules(dir)
            .map_err(|(i, e)| under(format!("require.attestation[{i}]"), e))?,
    };
    let signature = match raw.signature {
        None => None,
        Some(s) => Some(
            s.into_rule(dir)
                .map_err(|e| under("require.signature".to_owned(), e))?,
        ),
    };
    let trusted_root = raw
        .trusted_root
        .map(|t| TrustRootSpec::parse(&t, dir))
        .unwrap_or_default();
    let root = TrustRoot::load(&trusted_root)
        .map_err(|e| PolicyError::new(file, "require.trusted_root", e))?;
    Ok(Require {
        attestations,
        signature,
        trusted_root,
        root: Some(std::sync::Arc::new(root)),
    })
}

/// A repository reference with neither tag nor digest.
fn parse_repo(file: &Path, key: &str, text: &str) -> Result<ImageRef, PolicyError> {
    let r = ImageRef::parse(text).map_err(|e| PolicyError::new(file, key, e.to_string()))?;
    if r.tag().is_some() || r.digest().is_some() {
        return Err(PolicyError::new(
            file,
            key,
            format!("{text:?} names a tag or digest; a policy names repositories only"),
        ));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    const STAGING: &str = "version: 1\nenvironment: staging\nsource: ghcr.io/acme/api\ntargets:\n  - registry: 127.0.0.1:5000\n    repository: acme/api\ntags: [staging, \"{source_tag}\"]\n";

    fn err(files: &[(&str, &str)]) -> String {
        let d = dir_with(files);
        Policies::load(d.path(), &Overrides::default())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn one_repository_has_one_set_of_retention_rules() {
        let r = "version: 1\nkind: retention\nrepositories: [ghcr.io/acme/api]\n";
        let got = err(&[("a.yaml", r), ("b.yaml", r)]);
        assert!(
            got.contains("b.yaml: repositories[0]: ghcr.io/acme/api is also pruned by"),
            "{got}"
        );
    }

    #[test]
    fn shipped_examples_load_and_mean_what_they_say() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        let p = Policies::load(&dir, &Overrides::default()).unwrap();
        let ci = &p.retentions["ci"];
        assert_eq!(ci.rules.keep_last, Some(50));
        assert_eq!(
            ci.rules.untagged,
            crate::retention::Untagged::KeepFor(std::time::Duration::from_secs(7 * 86_400))
        );
        assert_eq!(
            p.env("prod").unwrap().rollback_window,
            DEFAULT_ROLLBACK_WINDOW
        );
        assert_eq!(
            p.registries["ghcr.io"].endpoint.as_deref(),
            Some("https://ghcr.io")
        );
        assert_eq!(p.registries["docker.io"].max_concurrency, Some(4));
        let prod = p.env("prod").unwrap();
        assert_eq!(prod.source.to_string(), "ghcr.io/acme/api");
        assert_eq!(prod.promote_from.as_ref().unwrap().as_str(), "staging");
        let targets: Vec<String> = prod.targets.iter().map(ToString::to_string).collect();
        assert_eq!(
            targets,
            [
                "123456789012.dkr.ecr.us-east-1.amazonaws.com/acme/api",
                "us-docker.pkg.dev/acme-prod/containers/api",
                "docker.io/acme/api"
            ]
        );
        assert_eq!(
            prod.tags,
            vec![
                TagRule::Literal(Tag::parse("prod").unwrap()),
                TagRule::Template("{source_tag}".into())
            ]
        );
        assert!(prod.is_protected(&Tag::parse("v1.2.3").unwrap()));
        assert!(prod.is_protected(&Tag::parse("sha-abc").unwrap()));
        assert!(!prod.is_protected(&Tag::parse("prod").unwrap()));
        assert!(prod.platforms.is_empty());
        assert!(p.env("staging").unwrap().promote_from.is_none());

        let nightly = &p.mirrors["nightly"];
        assert_eq!(nightly.source_registry.as_str(), "ghcr.io");
        assert_eq!(nightly.source_repository("api"), "acme/api");
        assert_eq!(nightly.repositories, ["api", "worker"]);
        assert_eq!(
            nightly.targets[0].repository_for("api"),
            "mirror/api",
            "ghcr.io/acme/api -> .../mirror/api"
        );
        assert_eq!(nightly.targets[1].registry.as_str(), "docker.io");
        assert_eq!(nightly.targets[1].repository_for("worker"), "acme/worker");
        assert_eq!(nightly.existing, mirror::Existing::Overwrite);
        let f = &nightly.tags;
        for (tag, ok) in [
            ("v1.2.3", true),
            ("v0.9.0", false),
            ("v1.2.3-rc1", false),
            ("sha-abc1234", true),
            ("latest", false),
        ] {
            assert_eq!(f.matches(tag), ok, "{tag}");
        }
        assert_eq!(f.newest, Some(20));
    }

    #[test]
    fn errors_name_the_file_and_key_path() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "prod.yaml",
                "version: 1\nsource: a.io/x\ntargets:\n  - registry: a.io\n    repostory: x\n",
                "prod.yaml: targets[0].repostory: unknown field `repostory`",
            ),
            (
                "prod.yaml",
                "version: 2\nsource: a.io/x\ntargets: []\n",
                "prod.yaml: version: 2 is not supported",
            ),
            (
                "prod.yaml",
                "source: a.io/x\n",
                "prod.yaml: version: missing",
            ),
            (
                "prod.yaml",
                "version: 1\nsource: a.io/x:v1\ntargets:\n  - layout: out\n",
                "prod.yaml: source: \"a.io/x:v1\" names a tag",
            ),
            (
                "prod.yaml",
                "version: 1\nsource: a.io/x\ntargets:\n  - registry: a.io\n    repository: UPPER\n",
                "prod.yaml: targets[0]: invalid reference",
            ),
            (
                "prod.yaml",
                "version: 1\nsource: a.io/x\ntargets:\n  - registry: a.io\n",
                "prod.yaml: targets[0].repository: missing",
            ),
            (
                "prod.yaml",
                "version: 1\nsource: a.io/x\ntargets:\n  - layout: a\ntags: [prod, \"{nope}\"]\n",
                "prod.yaml: tags[1]: unknown placeholder {nope}",
            ),
            (
                "prod.yaml",
                "version: 1\nsource: a.io/x\ntargets:\n  - layout: a\ntags: [live]\n",
                "prod.yaml: tags: must include the environment tag \"prod\"",
            ),
            (
                "prod.yaml",
                "version: 1\nsource: a.io/x\ntargets:\n  - layout: a\nprotect: [\"p*\"]\n",
                "prod.yaml: protect: protects the environment tag",
            ),
            (
                "prod.yaml",
                "version: 1\nsource: a.io/x\ntargets:\n  - layout: a\nplatforms: [linux]\n",
                "prod.yaml: platforms[0]: \"linux\": expected OS/ARCH",
            ),
            (
                "prod.yaml",
                "version: 1\nenvironment: staging\nsource: a.io/x\ntargets:\n  - layout: a\n",
                "prod.yaml: environment: staging does not match the file name",
            ),
            (
                "prod.yaml",
                "version: 1\nsource: a.io/x\npromote_from: qa\ntargets:\n  - layout: a\n",
                "prod.yaml: promote_from: no policy file defines environment qa",
            ),
            (
                "prod.yaml",
                "version: 1\nsource: a.io/x\ntargets:\n  - layout: a\ntags: prod\n",
                "prod.yaml: tags: invalid type",
            ),
            (
                "registries.yaml",
                "version: 1\nregistries:\n  ghcr.io:\n    max_concurency: 4\n",
                "registries.yaml: registries.ghcr.io.max_concurency: unknown field",
            ),
            (
                "registries.yaml",
                "version: 1\nregistries:\n  ghcr.io:\n    endpoint: ftp://x\n",
                "registries.yaml: registries.ghcr.io.endpoint: scheme \"ftp\"",
            ),
            (
                "registries.yaml",
                "version: 1\nregistries:\n  docker.io:\n    max_concurrency: many\n",
                "registries.yaml: registries.docker.io.max_concurrency: invalid type",
            ),
            (
                "registries.yaml",
                "version: 1\nregistries:\n  docker.io:\n    auth: kerberos\n",
                "registries.yaml: registries.docker.io.auth: unknown auth kind \"kerberos\"",
            ),
            (
                "registries.yaml",
                "version: 1\nregistries:\n  ghcr.io:\n    auth: ecr\n",
                "registries.yaml: registries.ghcr.io.auth: ecr needs an ECR registry name",
            ),
            (
                "registries.yaml",
                "version: 1\nregistries:\n  ghcr.io:\n    create_repositories: true\n",
                "registries.yaml: registries.ghcr.io: create_repositories, tag_mutability, mutability_exclusions and scan_on_push apply to ECR registries only",
            ),
            (
                "registries.yaml",
                "version: 1\nregistries:\n  123456789012.dkr.ecr.us-east-1.amazonaws.com:\n    tag_mutability: frozen\n",
                "registries.yaml: registries.123456789012.dkr.ecr.us-east-1.amazonaws.com.tag_mutability: \"frozen\": expected mutable",
            ),
            (
                "registries.yaml",
                "version: 1\nregistries:\n  123456789012.dkr.ecr.us-east-1.amazonaws.com:\n    tag_mutability: immutable_with_exclusion\n",
                "mutability_exclusions: IMMUTABLE_WITH_EXCLUSION needs at least one filter",
            ),
            (
                "registries.yaml",
                "version: 1\nregistries:\n  123456789012.dkr.ecr.us-east-1.amazonaws.com:\n    tag_mutability: immutable_with_exclusion\n    mutability_exclusions: [\"p?od\"]\n",
                "mutability_exclusions[0]: \"p?od\" is not an ECR wildcard filter",
            ),
            (
                "registries.yaml",
                "version: 1\nregistries:\n  docker.io:\n    requests_per_second: 0\n",
                "registries.yaml: registries.docker.io.requests_per_second: must be a positive number",
            ),
            (
                "registries.yaml",
                "version: 1\nregistries:\n  docker.io:\n    retries: 0\n",
                "registries.yaml: registries.docker.io.retries: must be at least 1",
            ),
            (
                "nightly.yaml",
                "version: 1\nkind: mirror\nsource: ghcr.io/acme\ntags:\n  include: ['^v(']\ntargets:\n  - registry: r.io\n",
                "nightly.yaml: tags.include[0]: \"^v(\" is not a regular expression",
            ),
            (
                "nightly.yaml",
                "version: 1\nkind: mirror\nsource: ghcr.io/acme\ntags:\n  semver: \">=one\"\ntargets:\n  - registry: r.io\n",
                "nightly.yaml: tags.semver: \">=one\"",
            ),
            (
                "nightly.yaml",
                "version: 1\nkind: mirror\nsource: ghcr.io/acme\ntags:\n  semver: \">=1.0.0 <2.0.0 || <x\"\ntargets:\n  - registry: r.io\n",
                "nightly.yaml: tags.semver: \">=1.0.0 <2.0.0 || <x\": alternative 2 (\"<x\"): ",
            ),
            (
                "nightly.yaml",
                "version: 1\nkind: mirror\nsource: ghcr.io/acme\ntargets:\n  - registry: r.io\n    prefix: mirror\n",
                "nightly.yaml: targets[0].prefix: \"mirror\" must end with '/'",
            ),
            (
                "nightly.yaml",
                "version: 1\nkind: mirror\nsource: ghcr.io/acme\nexisting: replace\ntargets:\n  - registry: r.io\n",
                "nightly.yaml: existing: \"replace\": expected skip, overwrite or backup",
            ),
            (
                "nightly.yaml",
                "version: 1\nkind: replica\nsource: ghcr.io/acme\n",
                "nightly.yaml: kind: \"replica\": expected environment, mirror or retention",
            ),
            (
                "registries.yaml",
                "version: 1\nregistries:\n  quay.io:\n    api_endpoint: https://quay.io/api/v1\n",
                "registries.yaml: registries.quay.io.api_endpoint: applies to ghcr.io and docker.io only",
            ),
            (
                "ci.yaml",
                "version: 1\nkind: retention\ntags:\n  keep_last: 3\n",
                "ci.yaml: repositories: missing: the repositories pruned",
            ),
            (
                "ci.yaml",
                "version: 1\nkind: retention\nrepositories: [ghcr.io/acme/api:v1]\n",
                "ci.yaml: repositories[0]: \"ghcr.io/acme/api:v1\" names a tag or digest",
            ),
            (
                "ci.yaml",
                "version: 1\nkind: retention\nrepositories: [ghcr.io/acme/api]\ntags:\n  keep_last: 0\n",
                "ci.yaml: tags.keep_last: must be at least 1",
            ),
            (
                "ci.yaml",
                "version: 1\nkind: retention\nrepositories: [ghcr.io/acme/api]\ntags:\n  max_age: a month\n",
                "ci.yaml: tags.max_age: \"a month\"",
            ),
            (
                "ci.yaml",
                "version: 1\nkind: retention\nrepositories: [ghcr.io/acme/api]\ntags:\n  consider: [\"sha-[0-9]\"]\n",
                "ci.yaml: tags.consider[0]: \"sha-[0-9]\" is not a tag pattern",
            ),
            (
                "ci.yaml",
                "version: 1\nkind: retention\nrepositories: [ghcr.io/acme/api]\nuntagged: sometimes\n",
                "ci.yaml: untagged: \"sometimes\": expected keep, delete or a duration",
            ),
            (
                "ci.yaml",
                "version: 1\nkind: retention\nrepositories: [ghcr.io/acme/api]\nkeep_last: 3\n",
                "ci.yaml: keep_last: unknown field",
            ),
            (
                "prod.yaml",
                "version: 1\nsource: ghcr.io/acme/api\ntargets:\n  - registry: r.io\n    repository: a\nrollback_window: 0\n",
                "prod.yaml: rollback_window: must be at least 1",
            ),
            (
                "registries.yaml",
                "version: 1\nregistries:\n  docker.io:\n    retry_budget: forever\n",
                "registries.yaml: registries.docker.io.retry_budget: \"forever\"",
            ),
        ];
        for (name, text, want) in cases {
            let got = err(&[(name, text)]);
            assert!(
                got.contains(want),
                "{name}:\n{text}\nwant: {want}\ngot:  {got}"
            );
        }
    }

    #[test]
    fn ecr_creation_limits_and_retries_load() {
        let d = dir_with(&[(
            "registries.yaml",
            "version: 1\nregistries:\n  123456789012.dkr.ecr.eu-west-1.amazonaws.com:\n    endpoint: http://127.0.0.1:9\n    create_repositories: true\n    tag_mutability: IMMUTABLE_WITH_EXCLUSION\n    mutability_exclusions: [prod, \"ferry-history-*\"]\n    scan_on_push: true\n    requests_per_second: 10\n    retries: 3\n    retry_budget: 30s\n  docker.io:\n    auth: anonymous\n",
        )]);
        let p = Policies::load(d.path(), &Overrides::default()).unwrap();
        let ecr = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";
        assert_eq!(
            p.ecr_create()[ecr],
            RepoSettings {
                mutability: Mutability::ImmutableWithExclusion,
                exclusions: vec!["prod".into(), "ferry-history-*".into()],
                scan_on_push: true,
            }
        );
        let t = p.transport(TransportOptions::default());
        assert_eq!(t.endpoints[ecr], "http://127.0.0.1:9");
        assert_eq!(
            t.hosts[ecr],
            HostSettings {
                requests_per_second: Some(10.0),
                max_concurrency: None,
                retry: RetryPolicy {
                    attempts: 3,
                    budget: std::time::Duration::from_secs(30)
                },
            }
        );
        assert_eq!(p.auth_sources()["docker.io"], AuthKind::Anonymous);
        assert!(!p.auth_sources().contains_key(ecr), "auto is the default");
    }

    #[test]
    fn environment_variables_override_files_and_flags_override_both() {
        let d = dir_with(&[("staging.yaml", STAGING)]);
        // A variable only this test uses: the prefix comes from the environment's name.
        let d2 = dir_with(&[(
            "envtest-x.yaml",
            &STAGING
                .replace("environment: staging", "environment: envtest-x")
                .replace("[staging,", "[envtest-x,"),
        )]);
        std::env::set_var("FERRY_ENVTEST_X_PLATFORMS", "linux/arm64,linux/amd64");
        std::env::set_var("FERRY_ENVTEST_X_PROTECT", "v*");
        let p = Policies::load(d2.path(), &Overrides::default()).unwrap();
        let e = p.env("envtest-x").unwrap();
        assert_eq!(e.platforms.len(), 2);
        assert_eq!(e.protect.len(), 1);
        let p = Policies::load(
            d2.path(),
            &Overrides {
                platforms: vec!["linux/s390x".into()],
            },
        )
        .unwrap();
        assert_eq!(
            p.env("envtest-x").unwrap().platforms[0].to_string(),
            "linux/s390x"
        );
        std::env::remove_var("FERRY_ENVTEST_X_PLATFORMS");
        std::env::remove_var("FERRY_ENVTEST_X_PROTECT");
        let p = Policies::load(d.path(), &Overrides::default()).unwrap();
        assert!(p.env("staging").unwrap().platforms.is_empty());
        assert!(p
            .env("prod")
            .unwrap_err()
            .to_string()
            .contains("known: staging"));
    }

    #[test]
    fn layout_targets_are_relative_to_the_policy_file() {
        let d = dir_with(&[(
            "dev.yaml",
            "version: 1\nsource: ocidir://ci\ntargets:\n  - layout: out/a\n",
        )]);
        let p = Policies::load(d.path(), &Overrides::default()).unwrap();
        let t = &p.env("dev").unwrap().targets[0];
        assert_eq!(
            t.to_string(),
            format!("ocidir://{}", d.path().join("out/a").display())
        );
        assert_eq!(
            p.env("dev").unwrap().moving_tags(),
            vec![Tag::parse("dev").unwrap()]
        );
    }

    const RELEASE: &str = "version: 1\nimages:\n  - name: api\n    source: ghcr.io/acme/api\n  - name: worker\n    source: ghcr.io/acme/worker\n    repository: jobs/worker\ntargets:\n  - registry: 127.0.0.1:5000\n    prefix: acme/\n  - registry: docker.io\n    mapping: {api: acme/api-server}\n  - layout: out\n";

    #[test]
    fn a_release_lists_images_and_targets_place_each_by_prefix_or_mapping() {
        let d = dir_with(&[("prod.yaml", RELEASE)]);
        let p = Policies::load(d.path(), &Overrides::default()).unwrap();
        let prod = p.env("prod").unwrap();
        assert!(prod.release);
        let placed: Vec<(String, Vec<String>)> = prod
            .images
            .iter()
            .map(|i| {
                (
                    format!("{} {}", i.name, i.source.repository_name()),
                    i.targets.iter().map(ToString::to_string).collect(),
                )
            })
            .collect();
        let out = d.path().join("out");
        assert_eq!(
            placed,
            [
                (
                    "api ghcr.io/acme/api".to_owned(),
                    vec![
                        "127.0.0.1:5000/acme/api".to_owned(),
                        "docker.io/acme/api-server".to_owned(),
                        format!("ocidir://{}", out.join("api").display()),
                    ]
                ),
                (
                    "worker ghcr.io/acme/worker".to_owned(),
                    vec![
                        "127.0.0.1:5000/acme/jobs/worker".to_owned(),
                        "docker.io/jobs/worker".to_owned(),
                        format!("ocidir://{}", out.join("jobs/worker").display()),
                    ]
                ),
            ]
        );
        let views = prod.views();
        assert_eq!(views.len(), 2);
        assert_eq!(views[1].source.repository_name(), "ghcr.io/acme/worker");
        assert_eq!(views[1].targets.len(), 3);
        // The one-image form is a release of one image, named after its repository.
        let d = dir_with(&[("staging.yaml", STAGING)]);
        let p = Policies::load(d.path(), &Overrides::default()).unwrap();
        let staging = p.env("staging").unwrap();
        assert!(!staging.release);
        assert_eq!(staging.images.len(), 1);
        assert_eq!(staging.images[0].name, "api");
    }

    #[test]
    fn release_policies_refuse_mixed_forms_unknown_names_and_collisions() {
        let cases: &[(&str, &str)] = &[
            (
                "version: 1\nsource: a.io/x\nimages:\n  - {name: x, source: a.io/x}\ntargets:\n  - {registry: b.io, prefix: p/}\n",
                "prod.yaml: source: give either source (one image) or images (a release), not both",
            ),
            (
                "version: 1\nimages:\n  - {name: x, source: a.io/x}\ntargets:\n  - {registry: b.io, repository: x}\n",
                "prod.yaml: targets[0].repository: with images:",
            ),
            (
                "version: 1\nsource: a.io/x\ntargets:\n  - {registry: b.io, prefix: p/}\n",
                "prod.yaml: targets[0]: prefix and mapping go with images:",
            ),
            (
                "version: 1\nimages:\n  - {name: x, source: a.io/x}\ntargets:\n  - {registry: b.io, mapping: {y: z}}\n",
                "prod.yaml: targets[0].mapping.y: no image is named y (images: x)",
            ),
            (
                "version: 1\nimages:\n  - {name: x, source: a.io/x}\n  - {name: y, source: a.io/y, repository: x}\ntargets:\n  - {registry: b.io}\n",
                "prod.yaml: targets[0]: b.io/x is listed twice",
            ),
            (
                "version: 1\nimages:\n  - {name: x, source: a.io/x}\n  - {name: x, source: a.io/y}\ntargets:\n  - {registry: b.io}\n",
                "prod.yaml: images[1].name: x is listed twice",
            ),
            (
                "version: 1\nimages:\n  - {name: x, source: a.io/x}\ntargets:\n  - {registry: b.io, prefix: p}\n",
                "prod.yaml: targets[0].prefix: \"p\" must end with '/'",
            ),
            (
                "version: 1\ntargets:\n  - {registry: b.io, repository: x}\n",
                "prod.yaml: source: missing: the repository images come from (or `images:`, for a release)",
            ),
        ];
        for (text, want) in cases {
            let got = err(&[("prod.yaml", text)]);
            let got = got
                .rsplit_once("/prod.yaml")
                .map_or(got.clone(), |(_, rest)| format!("prod.yaml{rest}"));
            assert!(got.starts_with(want), "{text}\n got: {got}\nwant: {want}");
        }
    }
}
