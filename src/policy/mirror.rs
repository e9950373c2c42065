//! policy::mirror: `kind: mirror` policies — source repositories, tag selection (regexes, a semver range, newest N, explicit digests), targets with a prefix or a mapping, and what to do with a destination tag that points elsewhere.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::tags::version_of;
use super::{build, check_version, deserialize, yaml, PolicyError};
use crate::digest::Digest;
use crate::reference::{ImageRef, Registry, Tag};

/// What happens to a destination tag that already points at another digest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Existing {
    /// Leave it; report it as skipped.
    Skip,
    /// Move it to the source's digest.
    #[default]
    Overwrite,
    /// Keep the old digest under a backup tag, then move it.
    Backup,
}

/// A regular expression from a policy, kept with its text.
#[derive(Clone, Debug)]
pub struct TagRegex(regex::Regex);

impl TagRegex {
    /// True when the tag contains a match (anchor with `^…$` for whole tags).
    pub fn is_match(&self, tag: &str) -> bool {
        self.0.is_match(tag)
    }
}

impl Serialize for TagRegex {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.as_str())
    }
}

/// Which source tags are mirrored.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TagFilter {
    /// A tag must match one of these (empty: every tag).
    pub include: Vec<TagRegex>,
    /// A tag matching any of these is left out.
    pub exclude: Vec<TagRegex>,
    /// Version tags (`1.2.3`, `v1.2.3`) must satisfy this range; other tags are not affected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub semver: Option<SemverRange>,
    /// Keep only the N highest versions, and the N most recently created other tags.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub newest: Option<usize>,
}

/// A `tags.semver` range: one or more alternatives joined by `||`; a version matches when any
/// alternative does.
///
/// Each alternative is a list of comparators written the `semver` crate's way
/// (`>=1.0.0, <10.0.0`) or the npm/Helm/regsync way, separated by spaces (`>=1.0.0 <10.0.0`).
/// An operator may stand apart from its version (`>= 1.0.0` is one comparator).
///
/// Pre-releases follow the `semver` crate (and npm): a pre-release version such as `2.0.0-beta`
/// matches an alternative only when it satisfies every comparator *and* one comparator of that
/// alternative names the same `MAJOR.MINOR.PATCH` with a pre-release. So `v2.0.0-beta` is outside
/// `>=1.0.0, <10.0.0`, while `v2.0.0-rc.2` is inside `>=2.0.0-rc.1, <3.0.0` (but `v2.1.0-rc.1`
/// is not).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SemverRange(Vec<semver::VersionReq>);

impl SemverRange {
    /// Parses any of the three spellings; the error is one line, without the range itself.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut alternatives = Vec::new();
        for (i, alt) in text.split("||").enumerate() {
            let normal = comma_form(alt);
            if normal.is_empty() {
                return Err(if text.contains("||") {
                    format!("alternative {} of `||` is empty", i + 1)
                } else {
                    "empty range".to_owned()
                });
            }
            let req = semver::VersionReq::parse(&normal).map_err(|e| {
                if text.contains("||") {
                    format!("alternative {} ({:?}): {e}", i + 1, alt.trim())
                } else {
                    e.to_string()
                }
            })?;
            alternatives.push(req);
        }
        Ok(SemverRange(alternatives))
    }

    /// True when any alternative matches.
    pub fn matches(&self, v: &semver::Version) -> bool {
        self.0.iter().any(|r| r.matches(v))
    }
}

/// One `||` alternative in the `semver` crate's comma-separated form: whitespace between
/// comparators becomes `, `, while an operator written apart from its version (`>= 1.0.0`) stays
/// attached to it. Commas already present are kept.
fn comma_form(alt: &str) -> String {
    let is_op =
        |t: &str| !t.is_empty() && t.chars().all(|c| matches!(c, '<' | '>' | '=' | '~' | '^'));
    let mut pieces: Vec<String> = Vec::new();
    for part in alt.split(',') {
        let mut pending_op = String::new();
        let mut comparators: Vec<String> = Vec::new();
        for token in part.split_whitespace() {
            if is_op(token) {
                // `> = 1.0.0`: the first operator stands alone, and the parser rejects it.
                if !pending_op.is_empty() {
                    comparators.push(std::mem::take(&mut pending_op));
                }
                pending_op = token.to_owned();
            } else {
                comparators.push(std::mem::take(&mut pending_op) + token);
            }
        }
        if !pending_op.is_empty() {
            // A dangling operator: leave it for `VersionReq::parse` to reject.
            comparators.push(pending_op);
        }
        if comparators.is_empty() && alt.contains(',') {
            // An empty piece between commas: keep it so the parser reports it.
            comparators.push(String::new());
        }
        pieces.extend(comparators);
    }
    if pieces.iter().all(String::is_empty) {
        return String::new();
    }
    pieces.join(", ")
}

impl std::fmt::Display for SemverRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" || ")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl Serialize for SemverRange {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl TagFilter {
    /// Include, exclude and the semver range, for one tag.
    pub fn matches(&self, tag: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|r| r.is_match(tag)))
            && !self.exclude.iter().any(|r| r.is_match(tag))
            && match (&self.semver, version_of(tag)) {
                (Some(req), Some(v)) => req.matches(&v),
                _ => true,
            }
    }

    /// The tags that pass [`TagFilter::matches`], split into version tags and the others.
    pub fn candidates(&self, tags: &[Tag]) -> (Vec<Tag>, Vec<Tag>) {
        tags.iter()
            .filter(|t| self.matches(t.as_str()))
            .cloned()
            .partition(|t| version_of(t.as_str()).is_some())
    }

    /// True when `newest` must order non-version tags by creation time (there are more than N).
    pub fn needs_creation_times(&self, others: &[Tag]) -> bool {
        self.newest.is_some_and(|n| others.len() > n)
    }

    /// The selection, sorted by name: every candidate, or with `newest: N` the N highest
    /// versions plus the N most recently created other tags (`created` gives their times; a tag
    /// without one counts as oldest; ties go to the greater name).
    pub fn select(&self, tags: &[Tag], created: &dyn Fn(&Tag) -> Option<SystemTime>) -> Vec<Tag> {
        let (mut versions, mut others) = self.candidates(tags);
        if let Some(n) = self.newest {
            versions.sort_by(|a, b| {
                version_of(b.as_str())
                    .cmp(&version_of(a.as_str()))
                    .then_with(|| b.cmp(a))
            });
            versions.truncate(n);
            if others.len() > n {
                others.sort_by(|a, b| created(b).cmp(&created(a)).then_with(|| b.cmp(a)));
                others.truncate(n);
            }
        }
        let mut out: Vec<Tag> = versions.into_iter().chain(others).collect();
        out.sort();
        out
    }
}

/// Where one mirror target puts each source repository.
#[derive(Clone, Debug, Serialize)]
pub struct MirrorTarget {
    /// The registry.
    pub registry: Registry,
    /// Put before each repository name (`mirror/` makes `api` into `mirror/api`).
    pub prefix: String,
    /// Names that go elsewhere than `prefix + name`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub mapping: BTreeMap<String, String>,
}

impl MirrorTarget {
    /// The destination repository for a source repository name (relative to the source prefix).
    pub fn repository_for(&self, name: &str) -> String {
        self.mapping
            .get(name)
            .cloned()
            .unwrap_or_else(|| format!("{}{name}", self.prefix))
    }
}

/// One validated mirror policy.
#[derive(Clone, Debug, Serialize)]
pub struct MirrorPolicy {
    /// The file it came from.
    pub file: PathBuf,
    /// Its name (`ferry mirror NAME`).
    pub name: String,
    /// The source registry.
    pub source_registry: Registry,
    /// The namespace under it, with a trailing `/` (or empty).
    pub source_prefix: String,
    /// Repository names under the prefix; empty: discovered from the registry's catalog.
    pub repositories: Vec<String>,
    /// Tag selection.
    pub tags: TagFilter,
    /// Digests mirrored whether or not a tag names them, as (repository name, digest).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub digests: Vec<(String, Digest)>,
    /// Where the repositories go.
    pub targets: Vec<MirrorTarget>,
    /// What happens to destination tags that point elsewhere.
    pub existing: Existing,
    /// Which attached artifacts (signatures, attestations, SBOMs) travel with the images.
    pub referrers: crate::referrers::Filter,
}

impl MirrorPolicy {
    /// The full source repository for a name.
    pub fn source_repository(&self, name: &str) -> String {
        format!("{}{name}", self.source_prefix)
    }
}

/// `tags:` of a mirror policy: which source tags are mirrored.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "TagFilter")]
struct RawTags {
    /// A tag must match one of these regular expressions (anchor them: `^v\d+\.\d+\.\d+$`). Default: every tag.
    #[serde(default)]
    include: Vec<String>,
    /// A tag matching any of these regular expressions is left out.
    #[serde(default)]
    exclude: Vec<String>,
    /// Version tags (`1.2.3`, `v1.2.3`) must be in this semver range; other tags are not affected.
    /// Comparators are separated by commas or spaces (`>=1.0.0, <2.0.0` or `>=1.0.0 <2.0.0`), and
    /// `||` joins alternatives (`<2.0.0 || >=3.0.0`). A pre-release (`v2.0.0-rc.1`) is in the range
    /// only when a comparator names the same version with a pre-release (`>=2.0.0-rc.0`).
    semver: Option<String>,
    /// Keep only the N highest versions, and the N most recently created other tags.
    #[schemars(range(min = 1))]
    newest: Option<usize>,
}

/// One registry a mirror policy copies to.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "MirrorTarget")]
struct RawTarget {
    /// The destination registry (`123456789012.dkr.ecr.us-east-1.amazonaws.com`, `docker.io`).
    #[schemars(required)]
    registry: Option<String>,
    /// Put before each repository name, ending in `/` (`mirror/` makes `api` into `mirror/api`). Default: none.
    #[schemars(regex(pattern = "^$|/$"))]
    prefix: Option<String>,
    /// Source repository names that go elsewhere than `prefix + name` (`{worker: acme/worker-mirror}`).
    #[serde(default)]
    mapping: BTreeMap<String, String>,
}

/// A ferry mirror policy (`kind: mirror`): repositories and tags copied to other registries by `ferry mirror`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Mirror")]
#[schemars(transform = super::transform::require_targets)]
pub(crate) struct RawMirror {
    /// The policy format version: 1.
    #[schemars(required, extend("const" = super::VERSION))]
    version: Option<u32>,
    /// The kind of policy file: `mirror`.
    #[allow(dead_code)]
    #[schemars(extend("const" = "mirror"))]
    kind: String,
    /// The policy's name (`ferry mirror NAME`): letters, digits, `-`, `_`, `.`. Default: the file name.
    #[schemars(regex(pattern = r"^[A-Za-z0-9._-]+$"))]
    name: Option<String>,
    /// The registry and namespace mirrored: `REGISTRY[/NAMESPACE]`, e.g. `ghcr.io/acme`.
    #[schemars(required)]
    source: Option<String>,
    /// Repository names under the source namespace. Default: discovered from the registry's catalog.
    #[serde(default)]
    repositories: Vec<String>,
    /// Which tags are mirrored. Default: every tag.
    tags: Option<RawTags>,
    /// Images also mirrored by digest, tagged or not: `REPOSITORY@sha256:HEX`.
    #[serde(default)]
    #[schemars(inner(regex(pattern = "^[^@]+@sha256:[0-9a-f]{64}$")))]
    digests: Vec<String>,
    /// Where the repositories go.
    #[serde(default)]
    #[schemars(length(min = 1))]
    targets: Vec<RawTarget>,
    /// What happens to a destination tag that already points at another digest: leave it,
    /// move it, or keep the old digest under `TAG-backup-<12 hex>` and then move it.
    #[schemars(extend("default" = "overwrite", "enum" = ["skip", "overwrite", "backup"]))]
    existing: Option<String>,
    /// Which attached artifacts (signatures, attestations, SBOMs) travel with the images.
    #[schemars(extend("default" = true))]
    referrers: Option<crate::referrers::RawFilter>,
}

fn regexes(file: &Path, key: &str, list: &[String]) -> Result<Vec<TagRegex>, PolicyError> {
    list.iter()
        .enumerate()
        .map(|(i, r)| {
            regex::Regex::new(r).map(TagRegex).map_err(|e| {
                PolicyError::new(
                    file,
                    format!("{key}[{i}]"),
                    super::one_line(&format!("{r:?} is not a regular expression: {e}")),
                )
            })
        })
        .collect()
}

/// A repository path (`acme/api`) as the reference grammar allows it.
fn check_repository(file: &Path, key: &str, registry: &str, path: &str) -> Result<(), PolicyError> {
    ImageRef::parse(&format!("{registry}/{path}"))
        .map(|_| ())
        .map_err(|e| PolicyError::new(file, key, e.to_string()))
}

/// Loads a `kind: mirror` file.
pub fn load(file: &Path) -> Result<MirrorPolicy, PolicyError> {
    let config = build(file, config::Config::builder().add_source(yaml(file)))?;
    let raw: RawMirror = deserialize(file, config)?;
    check_version(file, raw.version)?;
    let name = super::policy_name(file, raw.name)?;
    let source = raw.source.ok_or_else(|| {
        PolicyError::new(
            file,
            "source",
            "missing: the registry and namespace mirrored (e.g. ghcr.io/acme)",
        )
    })?;
    let (host, namespace) = source.split_once('/').unwrap_or((source.as_str(), ""));
    let namespace = namespace.trim_end_matches('/');
    let source_registry = ImageRef::parse(&format!("{host}/x"))
        .ok()
        .and_then(|r| r.registry().cloned())
        .filter(|r| r.as_str() == host.to_ascii_lowercase() || host == "docker.io")
        .ok_or_else(|| {
            PolicyError::new(
                file,
                "source",
                format!("{source:?}: expected REGISTRY[/NAMESPACE], e.g. ghcr.io/acme"),
            )
        })?;
    let source_prefix = if namespace.is_empty() {
        String::new()
    } else {
        format!("{namespace}/")
    };
    for (i, r) in raw.repositories.iter().enumerate() {
        check_repository(
            file,
            &format!("repositories[{i}]"),
            source_registry.as_str(),
            &format!("{source_prefix}{r}"),
        )?;
    }
    let tags = match raw.tags {
        None => TagFilter::default(),
        Some(t) => TagFilter {
            include: regexes(file, "tags.include", &t.include)?,
            exclude: regexes(file, "tags.exclude", &t.exclude)?,
            semver: t
                .semver
                .map(|s| {
                    SemverRange::parse(&s)
                        .map_err(|e| PolicyError::new(file, "tags.semver", format!("{s:?}: {e}")))
                })
                .transpose()?,
            newest: match t.newest {
                Some(0) => return Err(PolicyError::new(file, "tags.newest", "must be at least 1")),
                n => n,
            },
        },
    };
    let mut digests = Vec::new();
    for (i, d) in raw.digests.iter().enumerate() {
        let key = format!("digests[{i}]");
        let (repo, digest) = d.split_once('@').ok_or_else(|| {
            PolicyError::new(file, &key, format!("{d:?}: expected REPOSITORY@sha256:…"))
        })?;
        let digest = Digest::parse(digest)
            .map_err(|e| PolicyError::new(file, &key, format!("{d:?}: {e}")))?;
        if !raw.repositories.is_empty() && !raw.repositories.iter().any(|r| r == repo) {
            return Err(PolicyError::new(
                file,
                key,
                format!("{repo} is not one of this policy's repositories"),
            ));
        }
        digests.push((repo.to_owned(), digest));
    }
    let existing = match raw.existing.as_deref() {
        None | Some("overwrite") => Existing::Overwrite,
        Some("skip") => Existing::Skip,
        Some("backup") => Existing::Backup,
        Some(other) => {
            return Err(PolicyError::new(
                file,
                "existing",
                format!("{other:?}: expected skip, overwrite or backup"),
            ))
        }
    };
    if raw.targets.is_empty() {
        return Err(PolicyError::new(
            file,
            "targets",
            "missing: at least one registry to mirror to",
        ));
    }
    let mut targets = Vec::new();
    for (i, t) in raw.targets.into_iter().enumerate() {
        let key = |k: &str| format!("targets[{i}].{k}");
        let host = t
            .registry
            .ok_or_else(|| PolicyError::new(file, key("registry"), "missing"))?;
        let registry = ImageRef::parse(&format!("{host}/x"))
            .ok()
            .and_then(|r| r.registry().cloned())
            .ok_or_else(|| {
                PolicyError::new(file, key("registry"), format!("{host:?} is not a registry"))
            })?;
        let prefix = t.prefix.unwrap_or_default();
        if !prefix.is_empty() && !prefix.ends_with('/') {
            return Err(PolicyError::new(
                file,
                key("prefix"),
                format!("{prefix:?} must end with '/'"),
            ));
        }
        let target = MirrorTarget {
            registry,
            prefix,
            mapping: t.mapping,
        };
        let mut seen = std::collections::BTreeSet::new();
        for r in &raw.repositories {
            let to = target.repository_for(r);
            check_repository(file, &key("prefix"), target.registry.as_str(), &to)?;
            if !seen.insert(to.clone()) {
                return Err(PolicyError::new(
                    file,
                    format!("targets[{i}]"),
                    format!("two repositories map to {to}"),
                ));
            }
        }
        if target.registry == source_registry
            && raw
                .repositories
                .iter()
                .any(|r| target.repository_for(r) == format!("{source_prefix}{r}"))
        {
            return Err(PolicyError::new(
                file,
                format!("targets[{i}]"),
                "mirrors a repository onto itself",
            ));
        }
        targets.push(target);
    }
    Ok(MirrorPolicy {
        file: file.to_owned(),
        name,
        source_registry,
        source_prefix,
        repositories: raw.repositories,
        tags,
        digests,
        targets,
        existing,
        referrers: super::referrers(file, raw.referrers)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Tag {
        Tag::parse(s).unwrap()
    }

    fn filter(
        include: &[&str],
        exclude: &[&str],
        semver: Option<&str>,
        newest: Option<usize>,
    ) -> TagFilter {
        let re = |l: &[&str]| {
            l.iter()
                .map(|r| TagRegex(regex::Regex::new(r).unwrap()))
                .collect()
        };
        TagFilter {
            include: re(include),
            exclude: re(exclude),
            semver: semver.map(|s| SemverRange::parse(s).unwrap()),
            newest,
        }
    }

    #[test]
    fn filters_table() {
        let tags: Vec<Tag> = [
            "v0.9.0",
            "v1.0.0",
            "v1.2.0",
            "v1.10.0",
            "v2.0.0-rc1",
            "2.0.0",
            "sha-aaa",
            "sha-bbb",
            "sha-ccc",
            "latest",
            "v1.2.0-rc1",
        ]
        .iter()
        .map(|s| t(s))
        .collect();
        // Creation order: sha-aaa oldest, sha-ccc newest; others unknown.
        let created = |tag: &Tag| match tag.as_str() {
            "sha-aaa" => Some(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1)),
            "sha-bbb" => Some(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(2)),
            "sha-ccc" => Some(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(3)),
            _ => None,
        };
        type Case<'a> = (&'a str, TagFilter, &'a [&'a str]);
        let cases: Vec<Case> = vec![
            (
                "no filter: everything",
                filter(&[], &[], None, None),
                &[
                    "2.0.0",
                    "latest",
                    "sha-aaa",
                    "sha-bbb",
                    "sha-ccc",
                    "v0.9.0",
                    "v1.0.0",
                    "v1.10.0",
                    "v1.2.0",
                    "v1.2.0-rc1",
                    "v2.0.0-rc1",
                ],
            ),
            (
                "include regex",
                filter(&["^sha-"], &[], None, None),
                &["sha-aaa", "sha-bbb", "sha-ccc"],
            ),
            (
                "exclude regex",
                filter(&[r"^v\d"], &["-rc"], None, None),
                &["v0.9.0", "v1.0.0", "v1.10.0", "v1.2.0"],
            ),
            (
                "semver range leaves non-version tags alone",
                filter(&[], &[], Some(">=1.0.0, <2.0.0"), None),
                &[
                    "latest", "sha-aaa", "sha-bbb", "sha-ccc", "v1.0.0", "v1.10.0", "v1.2.0",
                ],
            ),
            (
                "space-separated range with || alternatives; pre-releases stay out",
                filter(&[], &["^sha-"], Some(">=1.0.0 <1.5.0 || >=2.0.0"), None),
                &["2.0.0", "latest", "v1.0.0", "v1.2.0"],
            ),
            (
                "newest by version, numerically",
                filter(&[r"^v\d+\.\d+\.\d+$"], &[], None, Some(2)),
                &["v1.10.0", "v1.2.0"],
            ),
            (
                "newest by creation time for other tags",
                filter(&["^sha-"], &[], None, Some(2)),
                &["sha-bbb", "sha-ccc"],
            ),
            (
                "the issue's example: include, exclude, semver and newest together",
                filter(
                    &[r"^v\d+\.\d+\.\d+$", "^sha-"],
                    &["-rc"],
                    Some(">=1.0.0"),
                    Some(2),
                ),
                &["sha-bbb", "sha-ccc", "v1.10.0", "v1.2.0"],
            ),
        ];
        for (name, f, want) in cases {
            let got: Vec<String> = f
                .select(&tags, &created)
                .iter()
                .map(ToString::to_string)
                .collect();
            assert_eq!(got, *want, "{name}");
        }
        let f = filter(&["^sha-"], &[], None, Some(3));
        let (_, others) = f.candidates(&tags);
        assert!(
            !f.needs_creation_times(&others),
            "3 of 3: no ordering needed"
        );
        let f = filter(&["^sha-"], &[], None, Some(2));
        assert!(f.needs_creation_times(&others));
    }

    #[test]
    fn semver_range_spellings() {
        // (range as written, versions inside, versions outside)
        let cases: &[(&str, &[&str], &[&str])] = &[
            (
                ">=1.0.0, <10.0.0",
                &["1.0.0", "9.9.9"],
                &["0.9.0", "10.0.0"],
            ),
            (">=1.0.0 <10.0.0", &["1.0.0", "9.9.9"], &["0.9.0", "10.0.0"]),
            (
                "  >=1.0.0    <10.0.0  ",
                &["1.0.0", "9.9.9"],
                &["0.9.0", "10.0.0"],
            ),
            (">=1.0.0,<10.0.0", &["1.0.0", "9.9.9"], &["0.9.0", "10.0.0"]),
            (">= 1.0.0", &["1.0.0", "20.0.0"], &["0.9.9"]),
            (
                ">= 1.0.0 < 10.0.0",
                &["1.0.0", "9.9.9"],
                &["0.9.0", "10.0.0"],
            ),
            (
                ">= 1.0.0, < 10.0.0",
                &["1.0.0", "9.9.9"],
                &["0.9.0", "10.0.0"],
            ),
            ("^2", &["2.0.0", "2.9.1"], &["1.9.9", "3.0.0"]),
            (
                "~1.2 || ^3",
                &["1.2.0", "1.2.9", "3.4.5"],
                &["1.3.0", "2.0.0", "4.0.0"],
            ),
            (
                ">=1.0.0 <2.0.0 || >=3.0.0",
                &["1.0.0", "1.9.9", "3.0.0", "12.0.0"],
                &["0.9.0", "2.0.0", "2.9.9"],
            ),
            (
                ">=1.0.0, <2.0.0||>=3.0.0, <4.0.0",
                &["1.5.0", "3.5.0"],
                &["2.5.0", "4.0.0"],
            ),
            // Pre-releases: only where a comparator of the same alternative names that
            // MAJOR.MINOR.PATCH with a pre-release.
            (">=1.0.0, <10.0.0", &[], &["2.0.0-beta", "1.0.0-rc.1"]),
            (">=1.0.0 <10.0.0", &[], &["2.0.0-beta"]),
            (
                ">=2.0.0-rc.1 <3.0.0",
                &["2.0.0-rc.1", "2.0.0-rc.2", "2.0.0", "2.5.0"],
                &["2.0.0-rc.0", "2.1.0-rc.1", "3.0.0"],
            ),
            (
                "^1 || >=2.0.0-beta.1 <2.0.0",
                &["1.4.0", "2.0.0-beta.3"],
                &["1.5.0-rc.1", "2.0.0", "2.0.0-alpha"],
            ),
        ];
        for (range, inside, outside) in cases {
            let r = SemverRange::parse(range).unwrap_or_else(|e| panic!("{range:?}: {e}"));
            for v in *inside {
                assert!(
                    r.matches(&semver::Version::parse(v).unwrap()),
                    "{v} in {range:?}"
                );
            }
            for v in *outside {
                assert!(
                    !r.matches(&semver::Version::parse(v).unwrap()),
                    "{v} not in {range:?}"
                );
            }
        }
    }

    #[test]
    fn semver_range_display_is_the_comma_form() {
        let cases = [
            (">=1.0.0", ">=1.0.0"),
            (">=1.0.0 <10.0.0", ">=1.0.0, <10.0.0"),
            (">= 1.0.0,  < 10.0.0", ">=1.0.0, <10.0.0"),
            (">=1.0.0 <2.0.0 || >=3.0.0", ">=1.0.0, <2.0.0 || >=3.0.0"),
        ];
        for (written, shown) in cases {
            assert_eq!(
                SemverRange::parse(written).unwrap().to_string(),
                shown,
                "{written:?}"
            );
        }
    }

    #[test]
    fn semver_range_errors_are_one_line() {
        // (range, start of the error)
        let cases = [
            (">=one", "unexpected character 'o'"),
            ("", "empty range"),
            ("   ", "empty range"),
            (">=1.0.0 ||", "alternative 2 of `||` is empty"),
            ("|| >=1.0.0", "alternative 1 of `||` is empty"),
            (">=1.0.0 || <x", "alternative 2 (\"<x\"): "),
            (">=1.0.0 <", "unexpected end of input"),
            ("> = 1.0.0", ""),
            (">=1.0.0,", ""),
            (">=1.0.0 | <2.0.0", ""),
            ("1.0.0 - 2.0.0", ""),
        ];
        for (range, want) in cases {
            let e = SemverRange::parse(range).expect_err(range);
            assert!(e.starts_with(want), "{range:?}: {e}");
            assert!(!e.contains('\n'), "{range:?}: {e}");
        }
    }

    #[test]
    fn targets_map_names() {
        let t = MirrorTarget {
            registry: Registry::new("r.io"),
            prefix: "mirror/".into(),
            mapping: [("worker".to_owned(), "jobs/worker".to_owned())].into(),
        };
        assert_eq!(t.repository_for("api"), "mirror/api");
        assert_eq!(t.repository_for("worker"), "jobs/worker");
    }
}
