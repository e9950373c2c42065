//! history: the promotion ledger kept in the registries themselves — one small OCI artifact per environment in every target repository, appended with read-back checks and merged on read.
//!
//! The ledger is an OCI image manifest with `artifactType` [`ARTIFACT_TYPE`], the empty config
//! and one empty layer (both the 2-byte `{}` blob), and the records as a JSON array in the
//! [`RECORDS_ANNOTATION`] annotation. An append is then a single manifest PUT under the tag
//! `ferry-history-<env>`: no blob upload after the first, atomic per registry, and readable by
//! any OCI client. Every target holds a copy, so losing any one registry (the source included)
//! loses no history; reads merge the copies by record id.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::digest::Digest;
use crate::manifest::{Manifest, OCI_MANIFEST};
use crate::policy::Environment;
use crate::reference::Tag;
use crate::registry::{ManifestRef, RegistryError, Repo};

/// The ledger's artifact type.
pub const ARTIFACT_TYPE: &str = "application/vnd.ferry.history.v1+json";
/// The annotation that carries the records.
pub const RECORDS_ANNOTATION: &str = "dev.ferry.history.records";
/// The OCI empty descriptor's media type and content.
const EMPTY_TYPE: &str = "application/vnd.oci.empty.v1+json";
const EMPTY: &[u8] = b"{}";
/// Records kept per ledger (newest win); ~500 bytes each keeps the manifest far under registries' 4 MiB limit.
pub const MAX_RECORDS: usize = 500;
/// Attempts at an append that a concurrent writer overwrote.
const APPEND_ATTEMPTS: u32 = 5;

/// The tag that holds an environment's ledger.
pub fn ledger_tag(env: &Environment) -> Tag {
    Tag::parse(&format!("ferry-history-{env}")).expect("environment names make valid tags")
}

/// What a record is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// `ferry promote`.
    Promote,
    /// `ferry rollback`.
    Rollback,
}

/// One promotion or rollback.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Unique id (time, process and digest hashed).
    pub id: String,
    /// When, RFC 3339 UTC.
    pub time: String,
    /// Promote or rollback.
    pub kind: Kind,
    /// The environment.
    pub environment: String,
    /// The digest the environment now runs.
    pub digest: Digest,
    /// Where it came from (`ghcr.io/acme/api:sha-abc1234`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Per target: the environment tag's digest before.
    #[serde(default)]
    pub previous: BTreeMap<String, Option<Digest>>,
    /// Tags set at the targets.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Who: `GITHUB_ACTOR`, else the user.
    pub actor: String,
    /// The CI run, when `GITHUB_*` variables say so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci_run: Option<String>,
    /// Why a gate was overridden with `--force`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forced: Option<String>,
    /// A release: every image's digest by name (`digest` is then [`release_digest`] of them).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub images: BTreeMap<String, Digest>,
    /// A release promotion: where each image came from, by name (`ghcr.io/acme/api:v1.4.0`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sources: BTreeMap<String, String>,
}

/// A release's identity: the digest of its images' names and digests (as compact JSON), so the
/// same images at the same digests are the same release whenever they are promoted.
pub fn release_digest(images: &BTreeMap<String, Digest>) -> Digest {
    Digest::of(&serde_json::to_vec(images).expect("a map of strings serialises"))
}

impl Record {
    /// The digest `image` is at in this record: its entry in a release, else the record's own.
    pub fn digest_of(&self, image: &str) -> Option<&Digest> {
        if self.images.is_empty() {
            Some(&self.digest)
        } else {
            self.images.get(image)
        }
    }
}

impl Record {
    /// A new record stamped now, with actor and CI run from the environment.
    pub fn new(kind: Kind, environment: &Environment, digest: &Digest) -> Record {
        let now = SystemTime::now();
        let nanos = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let seed = format!("{nanos}/{}/{digest}/{environment}", std::process::id());
        Record {
            id: Digest::of(seed.as_bytes()).hex()[..16].to_owned(),
            time: humantime::format_rfc3339_millis(now).to_string(),
            kind,
            environment: environment.to_string(),
            digest: digest.clone(),
            source: None,
            previous: BTreeMap::new(),
            tags: Vec::new(),
            actor: actor(),
            ci_run: ci_run(),
            forced: None,
            images: BTreeMap::new(),
            sources: BTreeMap::new(),
        }
    }
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn actor() -> String {
    var("GITHUB_ACTOR")
        .or_else(|| var("USER"))
        .or_else(|| var("USERNAME"))
        .unwrap_or_else(|| "unknown".to_owned())
}

fn ci_run() -> Option<String> {
    let server = var("GITHUB_SERVER_URL")?;
    let repo = var("GITHUB_REPOSITORY")?;
    let run = var("GITHUB_RUN_ID")?;
    Some(match var("GITHUB_RUN_ATTEMPT") {
        Some(a) => format!("{server}/{repo}/actions/runs/{run}/attempts/{a}"),
        None => format!("{server}/{repo}/actions/runs/{run}"),
    })
}

/// Why the ledger could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The store failed.
    #[error("history at {place}: {source}")]
    Store {
        /// `host/repo`.
        place: String,
        /// The cause.
        #[source]
        source: RegistryError,
    },
    /// The ledger is not one ferry wrote.
    #[error("history at {place}: {detail}")]
    Corrupt {
        /// `host/repo`.
        place: String,
        /// What is wrong.
        detail: String,
    },
    /// Concurrent writers kept overwriting this append.
    #[error("history at {place}: record {id} was overwritten by concurrent writers {attempts} times; not recorded")]
    Lost {
        /// `host/repo`.
        place: String,
        /// The record.
        id: String,
        /// How often it was tried.
        attempts: u32,
    },
}

/// Reads one target's ledger; an absent ledger is empty.
pub async fn read(repo: &dyn Repo, env: &Environment) -> Result<Vec<Record>, HistoryError> {
    let place = repo.name();
    let m = match repo
        .manifest_get(&ManifestRef::Tag(ledger_tag(env)), None)
        .await
    {
        Ok(m) => m,
        Err(e) if e.is_not_found() => return Ok(Vec::new()),
        Err(source) => return Err(HistoryError::Store { place, source }),
    };
    decode(&m.bytes).map_err(|detail| HistoryError::Corrupt { place, detail })
}

fn decode(bytes: &[u8]) -> Result<Vec<Record>, String> {
    let v: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("ledger is not JSON: {e}"))?;
    if v["artifactType"] != ARTIFACT_TYPE {
        return Err(format!(
            "the ledger tag holds {}, not a ferry ledger",
            v["artifactType"].as_str().unwrap_or("an image")
        ));
    }
    let text = v["annotations"][RECORDS_ANNOTATION]
        .as_str()
        .ok_or("ledger has no records annotation")?;
    serde_json::from_str(text).map_err(|e| format!("ledger records do not parse: {e}"))
}

/// The ledger manifest for these records: byte-stable for the same records.
pub fn encode(records: &[Record]) -> Manifest {
    let empty = json!({
        "mediaType": EMPTY_TYPE,
        "digest": Digest::of(EMPTY).as_str(),
        "size": EMPTY.len(),
    });
    let created = records.last().map_or("", |r| r.time.as_str());
    let m = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": ARTIFACT_TYPE,
        "config": empty,
        "layers": [empty],
        "annotations": {
            "org.opencontainers.image.created": created,
            RECORDS_ANNOTATION: serde_json::to_string(records).expect("records serialise"),
        },
    });
    let bytes = Bytes::from(serde_json::to_vec(&m).expect("manifest serialises"));
    Manifest::parse(bytes, Some(OCI_MANIFEST)).expect("ferry writes valid manifests")
}

/// Readies one target's ledger for an append ahead of time (while content is still being
/// copied): its 2-byte blob stored, content and never a tag. The records themselves are read
/// only right before the write: read earlier, a promotion racing this one could append in
/// between and be overwritten by this append after it had already read its own record back.
pub async fn prepare(repo: &dyn Repo) -> Result<(), HistoryError> {
    let store = |source| HistoryError::Store {
        place: repo.name(),
        source,
    };
    let empty = Digest::of(EMPTY);
    if repo.blob_head(&empty).await.map_err(store)?.is_none() {
        let body = futures::stream::once(async { Ok(Bytes::from_static(EMPTY)) }).boxed();
        repo.blob_put(&empty, EMPTY.len() as u64, body)
            .await
            .map_err(store)?;
    }
    Ok(())
}

/// Appends a record to one target's ledger, then reads it back; retries when a concurrent writer overwrote it.
pub async fn append(
    repo: &dyn Repo,
    env: &Environment,
    record: &Record,
) -> Result<(), HistoryError> {
    prepare(repo).await?;
    append_prepared(repo, env, record).await
}

/// [`append`] to a ledger [`prepare`] readied earlier.
pub async fn append_prepared(
    repo: &dyn Repo,
    env: &Environment,
    record: &Record,
) -> Result<(), HistoryError> {
    let place = repo.name();
    let store = |source| HistoryError::Store {
        place: place.clone(),
        source,
    };
    let tag = ManifestRef::Tag(ledger_tag(env));
    for attempt in 0..APPEND_ATTEMPTS {
        let mut records = read(repo, env).await?;
        if records.iter().any(|r| r.id == record.id) {
            return Ok(());
        }
        records.push(record.clone());
        if records.len() > MAX_RECORDS {
            records.drain(..records.len() - MAX_RECORDS);
        }
        repo.manifest_put(&tag, &encode(&records))
            .await
            .map_err(store)?;
        // Registries have no compare-and-swap: read back after a moment to catch a writer who raced us.
        tokio::time::sleep(Duration::from_millis(50 + 50 * u64::from(attempt))).await;
        if read(repo, env).await?.iter().any(|r| r.id == record.id) {
            return Ok(());
        }
        tracing::warn!(
            place,
            attempt,
            "history append overwritten by a concurrent writer; retrying"
        );
    }
    Err(HistoryError::Lost {
        place,
        id: record.id.clone(),
        attempts: APPEND_ATTEMPTS,
    })
}

/// Merges the ledgers of several targets: every record once, oldest first.
///
/// Records sort by time; within the same millisecond, by their place in the ledgers (each
/// ledger is in append order), so clock resolution never reorders one writer's records.
pub fn merge(ledgers: impl IntoIterator<Item = Vec<Record>>) -> Vec<Record> {
    let mut by_id: BTreeMap<String, (Record, usize)> = BTreeMap::new();
    for ledger in ledgers {
        for (pos, r) in ledger.into_iter().enumerate() {
            let slot = by_id.entry(r.id.clone()).or_insert((r, pos));
            slot.1 = slot.1.max(pos);
        }
    }
    let mut all: Vec<(Record, usize)> = by_id.into_values().collect();
    all.sort_by(|(a, pa), (b, pb)| (&a.time, pa, &a.id).cmp(&(&b.time, pb, &b.id)));
    all.into_iter().map(|(r, _)| r).collect()
}

/// Reads every target's ledger at once; unreadable ones are returned as errors beside the merge.
pub async fn read_all(
    repos: &[Arc<dyn Repo>],
    env: &Environment,
) -> (Vec<Record>, Vec<HistoryError>) {
    let results = futures::future::join_all(repos.iter().map(|r| read(&**r, env))).await;
    let mut errors = Vec::new();
    let mut ledgers = Vec::new();
    for r in results {
        match r {
            Ok(l) => ledgers.push(l),
            Err(e) => errors.push(e),
        }
    }
    (merge(ledgers), errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, time: &str, d: u8) -> Record {
        let mut r = Record::new(
            Kind::Promote,
            &Environment::parse("prod").unwrap(),
            &Digest::of(&[d]),
        );
        r.id = id.into();
        r.time = time.into();
        r
    }

    #[test]
    fn ledger_round_trips_and_is_byte_stable() {
        let rs = vec![
            rec("a", "2026-01-01T00:00:00Z", 1),
            rec("b", "2026-01-02T00:00:00Z", 2),
        ];
        let m = encode(&rs);
        assert_eq!(m.media_type, OCI_MANIFEST);
        assert_eq!(decode(&m.bytes).unwrap(), rs);
        assert_eq!(encode(&rs).digest, m.digest);
        assert!(decode(br#"{"schemaVersion":2}"#)
            .unwrap_err()
            .contains("not a ferry ledger"));
    }

    #[test]
    fn merge_dedups_by_id_and_orders_by_time() {
        let a = vec![
            rec("x", "2026-01-02T00:00:00Z", 2),
            rec("y", "2026-01-03T00:00:00Z", 3),
        ];
        let b = vec![
            rec("w", "2026-01-01T00:00:00Z", 1),
            rec("x", "2026-01-02T00:00:00Z", 2),
        ];
        let ids: Vec<String> = merge([a, b]).into_iter().map(|r| r.id).collect();
        assert_eq!(ids, ["w", "x", "y"]);
    }

    #[test]
    fn ci_run_comes_from_github_variables() {
        // Only checks the shape: the variables may or may not be set where tests run.
        if let Some(url) = ci_run() {
            assert!(url.contains("/actions/runs/"));
        }
        assert!(!actor().is_empty());
    }
}
