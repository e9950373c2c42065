//! policy::retention: `kind: retention` policies — which repositories `ferry prune` cleans, and by which rules (tags considered, `keep_last`, `max_age`, `keep` patterns, untagged manifests).
//!
//! A retention file only ever narrows what goes: the protections (what environments run or
//! could roll back to, protected tags, ledgers) come from the environment policies, at prune
//! time, never from this file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{build, check_version, deserialize, parse_repo, relative_to, yaml, PolicyError};
use crate::pattern::Pattern;
use crate::reference::ImageRef;
use crate::retention::{Rules, Untagged};

/// A ferry retention policy (`kind: retention`): what `ferry prune` deletes from some repositories, and what it keeps.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Retention")]
pub(crate) struct RawRetention {
    /// The policy format version: 1.
    #[schemars(required, extend("const" = super::VERSION))]
    version: Option<u32>,
    /// The kind of policy file: `retention`.
    #[allow(dead_code)]
    #[schemars(extend("const" = "retention"))]
    kind: String,
    /// The policy's name (`ferry prune NAME`): letters, digits, `-`, `_`, `.`. Default: the file name.
    #[schemars(regex(pattern = r"^[A-Za-z0-9._-]+$"))]
    name: Option<String>,
    /// The repositories pruned, registry included, without tag (`ghcr.io/acme/api`, `123456789012.dkr.ecr.us-east-1.amazonaws.com/acme/api`, `ocidir://PATH`).
    #[serde(default)]
    #[schemars(length(min = 1))]
    repositories: Vec<String>,
    /// Which tags go. Default: none (only untagged manifests, if `untagged` says so).
    tags: Option<RawRetentionTags>,
    /// Manifests no tag names: `keep` (the default), `delete`, or a duration (`7d`) to keep them for.
    untagged: Option<String>,
}

/// `tags:` of a retention policy, as written.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "RetentionTags")]
struct RawRetentionTags {
    /// Tag patterns (`*`, `?`) the rules apply to (`sha-*`). Default: every tag but attachment tags.
    #[serde(default)]
    consider: Vec<String>,
    /// Keep the newest N considered tags: version tags (`1.2.3`, `v1.2.3`) by semver, the others by creation time, each kind its own N.
    #[schemars(range(min = 1))]
    keep_last: Option<usize>,
    /// Keep considered tags younger than this (`30d`, `12h`). With `keep_last`, a tag goes only when it is both beyond the last N and older.
    max_age: Option<String>,
    /// Tag patterns the rules never delete (`latest`, `v*`).
    #[serde(default)]
    keep: Vec<String>,
}

/// One validated retention policy.
#[derive(Clone, Debug, Serialize)]
pub struct RetentionPolicy {
    /// The file it came from.
    pub file: PathBuf,
    /// Its name (`ferry prune NAME`).
    pub name: String,
    /// The repositories it prunes.
    #[serde(serialize_with = "ser_repos")]
    pub repositories: Vec<ImageRef>,
    /// The rules.
    pub rules: Rules,
}

fn ser_repos<S: serde::Serializer>(r: &[ImageRef], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(r.iter().map(ImageRef::repository_name))
}

/// Loads a `kind: retention` file.
pub fn load(file: &Path) -> Result<RetentionPolicy, PolicyError> {
    let config = build(file, config::Config::builder().add_source(yaml(file)))?;
    let raw: RawRetention = deserialize(file, config)?;
    check_version(file, raw.version)?;
    let name = super::policy_name(file, raw.name)?;
    if raw.repositories.is_empty() {
        return Err(PolicyError::new(
            file,
            "repositories",
            "missing: the repositories pruned, registry included (e.g. ghcr.io/acme/api)",
        ));
    }
    let mut repositories = Vec::new();
    for (i, r) in raw.repositories.iter().enumerate() {
        let key = format!("repositories[{i}]");
        let mut repo = parse_repo(file, &key, r)?;
        if let ImageRef::Layout(l) = &mut repo {
            l.path = relative_to(file, &l.path);
        }
        if repositories.contains(&repo) {
            return Err(PolicyError::new(
                file,
                &key,
                format!("{r:?} is listed twice"),
            ));
        }
        repositories.push(repo);
    }
    let patterns = |key: &str, list: &[String]| -> Result<Vec<Pattern>, PolicyError> {
        list.iter()
            .enumerate()
            .map(|(i, p)| {
                Pattern::parse(p).map_err(|e| PolicyError::new(file, format!("{key}[{i}]"), e))
            })
            .collect()
    };
    let duration = |key: &str, text: &str| -> Result<Duration, PolicyError> {
        humantime::parse_duration(text)
            .map_err(|e| PolicyError::new(file, key, format!("{text:?}: {e} (e.g. 30d, 12h)")))
    };
    let mut rules = Rules::default();
    if let Some(t) = raw.tags {
        rules.consider = patterns("tags.consider", &t.consider)?;
        rules.keep = patterns("tags.keep", &t.keep)?;
        rules.keep_last = match t.keep_last {
            Some(0) => {
                return Err(PolicyError::new(
                    file,
                    "tags.keep_last",
                    "must be at least 1 (leave it out to rank nothing)",
                ))
            }
            n => n,
        };
        rules.max_age = t
            .max_age
            .as_deref()
            .map(|a| duration("tags.max_age", a))
            .transpose()?;
    }
    rules.untagged = match raw.untagged.as_deref() {
        None | Some("keep") => Untagged::Keep,
        Some("delete") => Untagged::Delete,
        Some(d) => Untagged::KeepFor(duration("untagged", d).map_err(|_| {
            PolicyError::new(
                file,
                "untagged",
                format!("{d:?}: expected keep, delete or a duration to keep them for (7d)"),
            )
        })?),
    };
    Ok(RetentionPolicy {
        file: file.to_owned(),
        name,
        repositories,
        rules,
    })
}
