//! auth::store: writes and removes a registry login where Docker's tools read it — `auths.HOST.auth` in `config.json`, or the credential helper the file names for the host (`credHelpers`, then `credsStore`).
//!
//! The file is edited as a JSON document in its own key order: every key ferry does not own is
//! kept. It is replaced atomically (a temp file in the same directory, then a rename) with mode
//! 0600. Errors name the file, never a value from it.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::{Map, Value};

use super::docker_config::{call_helper, config_key, key_matches};
use super::Secret;

/// Where a login was stored, or removed from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Place {
    /// `auths` in this config file.
    File(PathBuf),
    /// This credential helper (`docker-credential-NAME`).
    Helper(String),
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Place::File(p) => write!(f, "{}", p.display()),
            Place::Helper(h) => write!(f, "docker-credential-{h}"),
        }
    }
}

/// Why a login could not be stored or removed. Never carries a secret.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The config file exists but could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The config file is not a JSON object.
    #[error("{path} is not a JSON object ({detail}); fix or move it, then log in again")]
    Parse {
        /// The file.
        path: String,
        /// Where it goes wrong (no values quoted).
        detail: String,
    },
    /// The config file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The credential helper failed.
    #[error("credential helper docker-credential-{helper} could not {verb} the login for {host}: {detail}")]
    Helper {
        /// The helper.
        helper: String,
        /// `store` or `erase`.
        verb: &'static str,
        /// The registry.
        host: String,
        /// What it said.
        detail: String,
    },
}

/// The config file as a JSON object (empty when the file does not exist).
fn read(path: &Path) -> Result<Map<String, Value>, StoreError> {
    let shown = || path.display().to_string();
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Map::new()),
        Err(source) => {
            return Err(StoreError::Read {
                path: shown(),
                source,
            })
        }
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(StoreError::Parse {
            path: shown(),
            detail: "the top level is not an object".into(),
        }),
        Err(e) => Err(StoreError::Parse {
            path: shown(),
            detail: format!("line {} column {}", e.line(), e.column()),
        }),
    }
}

/// Writes the document through a temp file (mode 0600) in the same directory and a rename, so
/// that a reader never sees half a file; the directory is made (0700) if missing. Indented with
/// tabs, as Docker writes it.
fn write(path: &Path, doc: &Map<String, Value>) -> Result<(), StoreError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let fail = |source| StoreError::Write {
        path: path.display().to_string(),
        source,
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(fail)?;
    let mut bytes = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(
        &mut bytes,
        serde_json::ser::PrettyFormatter::with_indent(b"\t"),
    );
    serde::Serialize::serialize(doc, &mut ser).map_err(|e| fail(std::io::Error::other(e)))?;
    bytes.push(b'\n');
    let mut tmp = tempfile::Builder::new()
        .prefix(".config.json-")
        .tempfile_in(dir)
        .map_err(fail)?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(fail)?;
    tmp.write_all(&bytes).map_err(fail)?;
    tmp.as_file().sync_all().map_err(fail)?;
    tmp.persist(path).map_err(|e| fail(e.error))?;
    Ok(())
}

/// The helper the document names for `host`: `credHelpers[host]`, else `credsStore`.
fn helper_for(doc: &Map<String, Value>, host: &str) -> Option<String> {
    doc.get("credHelpers")
        .and_then(Value::as_object)
        .and_then(|h| h.iter().find(|(k, _)| key_matches(k, host)))
        .and_then(|(_, v)| v.as_str())
        .or_else(|| doc.get("credsStore").and_then(Value::as_str))
        .filter(|h| !h.is_empty())
        .map(str::to_owned)
}

/// The `auths` object, made if missing (or if it was not an object).
fn auths(doc: &mut Map<String, Value>) -> &mut Map<String, Value> {
    let slot = doc
        .entry("auths")
        .or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut().expect("made an object above")
}

/// The fields of an `auths` entry that hold a login.
const LOGIN_FIELDS: [&str; 4] = ["auth", "username", "password", "identitytoken"];

/// Drops the login fields of every `auths` entry for `host`; true if any were there.
fn forget_in_file(doc: &mut Map<String, Value>, host: &str) -> bool {
    let mut removed = false;
    if let Some(auths) = doc.get_mut("auths").and_then(Value::as_object_mut) {
        for (_, entry) in auths.iter_mut().filter(|(k, _)| key_matches(k, host)) {
            if let Some(e) = entry.as_object_mut() {
                for f in LOGIN_FIELDS {
                    removed |= e.remove(f).is_some();
                }
            }
        }
    }
    removed
}

/// Stores a login for `host` as Docker does: through the helper `config` names for the host,
/// else as `auths.HOST.auth` (base64 of `user:password`) in `config`. A login left in the file
/// for the host is removed when a helper takes over (it would be read before the helper's).
/// `helper_dir` stands for `$PATH` in tests.
pub fn store(
    config: &Path,
    host: &str,
    username: &str,
    password: &Secret,
    helper_dir: Option<&Path>,
) -> Result<Place, StoreError> {
    let mut doc = read(config)?;
    let key = config_key(host);
    if let Some(helper) = helper_for(&doc, host) {
        let input = serde_json::json!({
            "ServerURL": key, "Username": username, "Secret": password.expose(),
        });
        call_helper(helper_dir, &helper, "store", input.to_string().as_bytes()).map_err(
            |detail| StoreError::Helper {
                helper: helper.clone(),
                verb: "store",
                host: host.to_owned(),
                detail,
            },
        )?;
        if forget_in_file(&mut doc, host) {
            write(config, &doc)?;
        }
        return Ok(Place::Helper(helper));
    }
    let auth = base64::engine::general_purpose::STANDARD
        .encode(format!("{username}:{}", password.expose()));
    let auths = auths(&mut doc);
    // An entry already there under another spelling of the host is the one updated.
    let key = auths
        .keys()
        .find(|k| key_matches(k, host))
        .cloned()
        .unwrap_or(key);
    let entry = auths
        .entry(key)
        .or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    let e = entry.as_object_mut().expect("made an object above");
    for f in LOGIN_FIELDS {
        e.remove(f);
    }
    e.insert("auth".into(), Value::String(auth));
    write(config, &doc)?;
    Ok(Place::File(config.to_owned()))
}

/// Removes the login for `host`: from the helper the config names for it (if any) and from
/// `auths`. The places it was removed from; empty when there was none.
pub fn remove(
    config: &Path,
    host: &str,
    helper_dir: Option<&Path>,
) -> Result<Vec<Place>, StoreError> {
    let mut doc = read(config)?;
    let mut removed = Vec::new();
    if let Some(helper) = helper_for(&doc, host) {
        let erased = call_helper(helper_dir, &helper, "erase", config_key(host).as_bytes())
            .map_err(|detail| StoreError::Helper {
                helper: helper.clone(),
                verb: "erase",
                host: host.to_owned(),
                detail,
            })?;
        if erased.is_some() {
            removed.push(Place::Helper(helper));
        }
    }
    let before = doc
        .get("auths")
        .and_then(Value::as_object)
        .map_or(0, Map::len);
    let mut changed = forget_in_file(&mut doc, host);
    // Entries left empty go too, as `docker logout` does.
    if let Some(auths) = doc.get_mut("auths").and_then(Value::as_object_mut) {
        auths.retain(|k, v| !(key_matches(k, host) && v.as_object().is_some_and(Map::is_empty)));
        changed |= auths.len() != before;
    }
    if changed {
        write(config, &doc)?;
        removed.push(Place::File(config.to_owned()));
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Credential, CredentialStore};

    fn basic(u: &str, p: &str) -> Option<Credential> {
        Some(Credential::Basic {
            username: u.into(),
            password: Secret::new(p),
        })
    }

    #[test]
    fn stores_in_a_new_file_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("docker/config.json");
        let place = store(&config, "127.0.0.1:5000", "u", &Secret::new("p:w"), None).unwrap();
        assert_eq!(place, Place::File(config.clone()));
        let mode = std::fs::metadata(&config).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            CredentialStore::from_files(vec![config.clone()])
                .lookup("127.0.0.1:5000")
                .unwrap(),
            basic("u", "p:w")
        );
        let doc: Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
        assert_eq!(doc["auths"]["127.0.0.1:5000"]["auth"], "dTpwOnc=");
    }

    #[test]
    fn merges_keeping_every_other_key_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.json");
        std::fs::write(
            &config,
            r#"{
	"proxies": {"default": {"httpProxy": "http://proxy:3128"}},
	"auths": {
		"https://ghcr.io/v1/": {"auth": "b2xkOm9sZA==", "email": "me@example.com"},
		"quay.io": {"auth": "cTpx"}
	},
	"psFormat": "table {{.ID}}",
	"currentContext": "remote"
}"#,
        )
        .unwrap();
        store(&config, "ghcr.io", "new", &Secret::new("tok"), None).unwrap();
        store(&config, "docker.io", "hub", &Secret::new("h"), None).unwrap();
        let text = std::fs::read_to_string(&config).unwrap();
        let doc: Value = serde_json::from_str(&text).unwrap();
        let keys: Vec<&String> = doc.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["proxies", "auths", "psFormat", "currentContext"]);
        let auths: Vec<&String> = doc["auths"].as_object().unwrap().keys().collect();
        assert_eq!(auths, ["https://ghcr.io/v1/", "quay.io", DOCKER_HUB]);
        assert_eq!(
            doc["auths"]["https://ghcr.io/v1/"]["email"],
            "me@example.com"
        );
        assert_eq!(doc["auths"]["quay.io"]["auth"], "cTpx");
        assert_eq!(doc["proxies"]["default"]["httpProxy"], "http://proxy:3128");
        assert_eq!(doc["psFormat"], "table {{.ID}}");
        let s = CredentialStore::from_files(vec![config.clone()]);
        assert_eq!(s.lookup("ghcr.io").unwrap(), basic("new", "tok"));
        assert_eq!(s.lookup("docker.io").unwrap(), basic("hub", "h"));
        assert!(
            text.contains("\n\t\"auths\""),
            "tab-indented like Docker:\n{text}"
        );

        let removed = remove(&config, "ghcr.io", None).unwrap();
        assert_eq!(removed, [Place::File(config.clone())]);
        let doc: Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
        // The entry keeps what is not a login (the email), so it stays.
        assert_eq!(
            doc["auths"]["https://ghcr.io/v1/"],
            serde_json::json!({"email": "me@example.com"})
        );
        assert!(remove(&config, "r.example", None).unwrap().is_empty());
        assert_eq!(remove(&config, "docker.io", None).unwrap().len(), 1);
        let doc: Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
        assert!(doc["auths"].get(DOCKER_HUB).is_none());
    }

    const DOCKER_HUB: &str = super::super::docker_config::DOCKER_HUB_KEY;

    #[test]
    fn a_broken_file_is_left_alone_and_not_quoted() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.json");
        std::fs::write(&config, r#"{"auths": {"x": {"auth": "c2VjcmV0"#).unwrap();
        let e = store(&config, "x", "u", &Secret::new("p"), None).unwrap_err();
        let shown = e.to_string();
        assert!(
            shown.contains("config.json") && !shown.contains("c2VjcmV0"),
            "{shown}"
        );
        assert_eq!(
            std::fs::read_to_string(&config).unwrap(),
            r#"{"auths": {"x": {"auth": "c2VjcmV0"#
        );
    }

    #[test]
    fn a_helper_named_for_the_host_stores_and_erases() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("helper.log");
        let helper = dir.path().join("docker-credential-fake");
        std::fs::write(
            &helper,
            format!(
                "#!/bin/sh\nprintf '%s ' \"$1\" >> {log}\ncat >> {log}\necho >> {log}\n",
                log = log.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let config = dir.path().join("config.json");
        std::fs::write(
            &config,
            r#"{"credHelpers":{"r.example":"fake"},"auths":{"r.example":{"auth":"b2xkOm9sZA=="}}}"#,
        )
        .unwrap();
        let place = store(
            &config,
            "r.example",
            "u",
            &Secret::new("p"),
            Some(dir.path()),
        )
        .unwrap();
        assert_eq!(place, Place::Helper("fake".into()));
        let doc: Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
        assert_eq!(doc["auths"]["r.example"], serde_json::json!({}));
        assert_eq!(doc["credHelpers"]["r.example"], "fake");
        let removed = remove(&config, "r.example", Some(dir.path())).unwrap();
        assert_eq!(
            removed,
            [Place::Helper("fake".into()), Place::File(config.clone())]
        );
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "store {\"ServerURL\":\"r.example\",\"Username\":\"u\",\"Secret\":\"p\"}\nerase r.example\n"
        );
        // Another host in the same file: no helper named for it, no credsStore: the file.
        let place = store(
            &config,
            "s.example",
            "u",
            &Secret::new("p"),
            Some(dir.path()),
        )
        .unwrap();
        assert_eq!(place, Place::File(config.clone()));
    }
}
