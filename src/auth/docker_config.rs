//! docker_config: reads registry credentials from Docker's config.json and containers' auth.json, including credential helpers.
//!
//! Files are read in order — `$REGISTRY_AUTH_FILE`, then `$DOCKER_CONFIG/config.json` (or
//! `~/.docker/config.json`), then `$XDG_RUNTIME_DIR/containers/auth.json` — and the first that
//! yields a credential for the host wins. Within a file: `credHelpers[host]`, then `auths`, then
//! `credsStore`. Helpers are programs (`docker-credential-NAME get`), so the config file is
//! trusted like code. No secret ever reaches a log line, an error or a `Debug` output.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde::Deserialize;

pub use crate::credential::{Credential, CredentialError, Origin, Secret};

/// Docker Hub's key in config files.
pub const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";
/// Longest a credential helper may take.
pub const HELPER_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ConfigFile {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
    #[serde(default)]
    cred_helpers: HashMap<String, String>,
    #[serde(default)]
    creds_store: Option<String>,
}

#[derive(Deserialize, Default)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

/// Docker's own config file: `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`
/// (where `docker login` and `ferry login` write).
pub fn docker_config_path() -> Option<PathBuf> {
    match std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        Some(dir) => Some(PathBuf::from(dir).join("config.json")),
        None => std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json")),
    }
}

/// True for Docker Hub's names (`docker.io` and its aliases), lowercase.
fn is_hub(host: &str) -> bool {
    matches!(
        host,
        "docker.io" | "index.docker.io" | "registry-1.docker.io"
    )
}

/// The key a config file keeps a registry's login under: Docker Hub's historical URL, else the host.
pub fn config_key(host: &str) -> String {
    let host = host.to_ascii_lowercase();
    if is_hub(&host) {
        DOCKER_HUB_KEY.to_owned()
    } else {
        host
    }
}

/// Whether a config file's key (`https://host/v1/`, `host`, Docker Hub's URL) names this
/// registry host.
pub fn key_matches(key: &str, host: &str) -> bool {
    let (k, h) = (normalise_key(key), host.to_ascii_lowercase());
    if is_hub(&h) {
        is_hub(&k)
    } else {
        k == h
    }
}

/// Where credentials are looked up.
#[derive(Clone, Debug, Default)]
pub struct CredentialStore {
    files: Vec<PathBuf>,
    helper_dir: Option<PathBuf>,
}

impl CredentialStore {
    /// The standard files, from the environment.
    pub fn from_env() -> Self {
        let mut files = Vec::new();
        if let Some(f) = std::env::var_os("REGISTRY_AUTH_FILE").filter(|f| !f.is_empty()) {
            files.push(PathBuf::from(f));
        }
        files.extend(docker_config_path());
        if let Some(run) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
            files.push(PathBuf::from(run).join("containers/auth.json"));
        }
        CredentialStore {
            files,
            helper_dir: None,
        }
    }

    /// Exactly these files, in order.
    pub fn from_files(files: Vec<PathBuf>) -> Self {
        CredentialStore {
            files,
            helper_dir: None,
        }
    }

    /// Looks credential helpers up in `dir` instead of `$PATH` (for tests).
    pub fn with_helper_dir(mut self, dir: PathBuf) -> Self {
        self.helper_dir = Some(dir);
        self
    }

    /// The files looked in, in order.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// The credential for a registry host (`ghcr.io`, `127.0.0.1:5000`, `docker.io`), if any.
    pub fn lookup(&self, host: &str) -> Result<Option<Credential>, CredentialError> {
        Ok(self.lookup_with_origin(host)?.map(|(c, _)| c))
    }

    /// The credential for a registry host and where it was found.
    pub fn lookup_with_origin(
        &self,
        host: &str,
    ) -> Result<Option<(Credential, Origin)>, CredentialError> {
        let host = host.to_ascii_lowercase();
        for path in &self.files {
            let Some(config) = read_config(path)? else {
                continue;
            };
            if let Some(c) = self.lookup_in(path, &config, &host)? {
                tracing::debug!(host, file = %path.display(), "credential found");
                return Ok(Some(c));
            }
        }
        Ok(None)
    }

    fn lookup_in(
        &self,
        path: &Path,
        config: &ConfigFile,
        host: &str,
    ) -> Result<Option<(Credential, Origin)>, CredentialError> {
        let server_url = config_key(host);
        let server_url = server_url.as_str();
        let matches_host = |key: &str| key_matches(key, host);
        let file = path.display().to_string();
        let helper_origin = |helper: &str| Origin::Helper {
            helper: helper.to_owned(),
            file: file.clone(),
        };
        if let Some((_, helper)) = config.cred_helpers.iter().find(|(k, _)| matches_host(k)) {
            return Ok(self
                .run_helper(helper, host, server_url)?
                .map(|c| (c, helper_origin(helper))));
        }
        // Prefer an exact key, then any key that normalises to the host.
        let entry = config.auths.get(server_url).or_else(|| {
            config
                .auths
                .iter()
                .find(|(k, _)| matches_host(k))
                .map(|(_, v)| v)
        });
        if let Some(e) = entry {
            if let Some(c) = entry_credential(path, host, e)? {
                return Ok(Some((c, Origin::ConfigFile(file))));
            }
        }
        if let Some(store) = &config.creds_store {
            return Ok(self
                .run_helper(store, host, server_url)?
                .map(|c| (c, helper_origin(store))));
        }
        Ok(None)
    }

    fn run_helper(
        &self,
        helper: &str,
        host: &str,
        server_url: &str,
    ) -> Result<Option<Credential>, CredentialError> {
        let fail = |detail: String| CredentialError::Helper {
            helper: helper.to_owned(),
            host: host.to_owned(),
            detail,
        };
        let Some(stdout) = call_helper(
            self.helper_dir.as_deref(),
            helper,
            "get",
            server_url.as_bytes(),
        )
        .map_err(fail)?
        else {
            return Ok(None);
        };
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct HelperAnswer {
            #[serde(default)]
            username: String,
            #[serde(default)]
            secret: String,
        }
        let answer: HelperAnswer = serde_json::from_str(&stdout)
            .map_err(|e| fail(format!("unreadable answer: {}", e.classify_name())))?;
        tracing::debug!(host, helper, "credential from helper");
        Ok(Some(if answer.username == "<token>" {
            Credential::IdentityToken(Secret::new(answer.secret))
        } else {
            Credential::Basic {
                username: answer.username,
                password: Secret::new(answer.secret),
            }
        }))
    }
}

/// Runs `docker-credential-HELPER VERB` (from `dir`, else `$PATH`) with `input` on its stdin,
/// within [`HELPER_TIMEOUT`]: its stdout, `None` when it says "credentials not found", or
/// why it failed in one line (its first line of output, capped: helpers never print secrets on
/// failure, but the line is capped anyway).
pub fn call_helper(
    dir: Option<&Path>,
    helper: &str,
    verb: &str,
    input: &[u8],
) -> Result<Option<String>, String> {
    if helper.is_empty() || helper.contains(['/', '\\']) {
        return Err("invalid helper name".into());
    }
    let program = format!("docker-credential-{helper}");
    let program = match dir {
        Some(d) => d.join(&program),
        None => PathBuf::from(program),
    };
    let mut child = Command::new(&program)
        .arg(verb)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                "helper not found on PATH".to_owned()
            } else {
                e.to_string()
            }
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(input);
    }
    let deadline = Instant::now() + HELPER_TIMEOUT;
    let status = loop {
        match child.try_wait().map_err(|e| e.to_string())? {
            Some(s) => break s,
            None if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("timed out after {}s", HELPER_TIMEOUT.as_secs()));
            }
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut stdout);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    if !status.success() {
        if stdout.contains("credentials not found") || stderr.contains("credentials not found") {
            return Ok(None);
        }
        let first = stderr
            .lines()
            .chain(stdout.lines())
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no output")
            .trim();
        return Err(format!(
            "{status}: {}",
            first.chars().take(200).collect::<String>()
        ));
    }
    Ok(Some(stdout))
}

trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}

impl ClassifyName for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "io error",
            serde_json::error::Category::Syntax => "not JSON",
            serde_json::error::Category::Data => "unexpected JSON shape",
            serde_json::error::Category::Eof => "truncated JSON",
        }
    }
}

fn read_config(path: &Path) -> Result<Option<ConfigFile>, CredentialError> {
    let shown = path.display().to_string();
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(CredentialError::Read {
                path: shown,
                source,
            })
        }
    };
    // Report where, never what: serde messages can quote values.
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| CredentialError::Parse {
            path: shown,
            detail: format!(
                "{} at line {} column {}",
                e.classify_name(),
                e.line(),
                e.column()
            ),
        })
}

fn entry_credential(
    path: &Path,
    host: &str,
    e: &AuthEntry,
) -> Result<Option<Credential>, CredentialError> {
    if let Some(t) = e.identitytoken.as_deref().filter(|t| !t.is_empty()) {
        return Ok(Some(Credential::IdentityToken(Secret::new(t))));
    }
    if let Some(auth) = e.auth.as_deref().filter(|a| !a.is_empty()) {
        let bad = || CredentialError::Parse {
            path: path.display().to_string(),
            detail: format!("the auth value for {host} is not base64 of user:password"),
        };
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| bad())?;
        let text = String::from_utf8(decoded).map_err(|_| bad())?;
        let (u, p) = text.split_once(':').ok_or_else(bad)?;
        return Ok(Some(Credential::Basic {
            username: u.to_owned(),
            password: Secret::new(p),
        }));
    }
    match (&e.username, &e.password) {
        (Some(u), Some(p)) if !u.is_empty() => Ok(Some(Credential::Basic {
            username: u.clone(),
            password: Secret::new(p.clone()),
        })),
        _ => Ok(None),
    }
}

/// `https://host/v1/`, `http://host`, `host/v2/` → `host`.
pub fn normalise_key(key: &str) -> String {
    let k = key.trim();
    let k = k
        .strip_prefix("https://")
        .or_else(|| k.strip_prefix("http://"))
        .unwrap_or(k);
    k.split('/').next().unwrap_or(k).to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn basic(u: &str, p: &str) -> Option<Credential> {
        Some(Credential::Basic {
            username: u.into(),
            password: Secret::new(p),
        })
    }

    #[test]
    fn auth_entries_in_their_forms() {
        let dir = tempfile::tempdir().unwrap();
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let f = write(
            dir.path(),
            "c.json",
            &format!(
                r#"{{"auths":{{
                "127.0.0.1:5000":{{"auth":"{}"}},
                "https://ghcr.io/v2/":{{"username":"gh","password":"tok"}},
                "https://index.docker.io/v1/":{{"auth":"{}"}},
                "quay.io":{{"identitytoken":"refresh-me"}},
                "empty.example":{{}}
            }}}}"#,
                b64("u:p:with:colons"),
                b64("hub:hubpw")
            ),
        );
        let s = CredentialStore::from_files(vec![f]);
        assert_eq!(
            s.lookup("127.0.0.1:5000").unwrap(),
            basic("u", "p:with:colons")
        );
        assert_eq!(s.lookup("ghcr.io").unwrap(), basic("gh", "tok"));
        assert_eq!(s.lookup("docker.io").unwrap(), basic("hub", "hubpw"));
        assert_eq!(
            s.lookup("registry-1.docker.io").unwrap(),
            basic("hub", "hubpw")
        );
        assert_eq!(
            s.lookup("quay.io").unwrap(),
            Some(Credential::IdentityToken(Secret::new("refresh-me")))
        );
        assert_eq!(s.lookup("empty.example").unwrap(), None);
        assert_eq!(s.lookup("other.example").unwrap(), None);
    }

    #[test]
    fn first_file_wins_and_missing_files_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(
            dir.path(),
            "a.json",
            r#"{"auths":{"r.example":{"username":"first","password":"1"}}}"#,
        );
        let b = write(
            dir.path(),
            "b.json",
            r#"{"auths":{"r.example":{"username":"second","password":"2"}}}"#,
        );
        let s = CredentialStore::from_files(vec![dir.path().join("missing.json"), a, b]);
        assert_eq!(s.lookup("r.example").unwrap(), basic("first", "1"));
    }

    #[test]
    fn errors_name_the_file_but_never_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let f = write(
            dir.path(),
            "bad.json",
            r#"{"auths": {"r.example": {"auth": "c2VjcmV0LXZhbHVl!!"}}}"#,
        );
        let e = CredentialStore::from_files(vec![f.clone()])
            .lookup("r.example")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("bad.json")
                && !e.contains("c2VjcmV0LXZhbHVl")
                && !e.contains("secret-value"),
            "{e}"
        );
        let g = write(
            dir.path(),
            "broken.json",
            r#"{"auths": {"r.example": {"auth": "hunter2"#,
        );
        let e = CredentialStore::from_files(vec![g])
            .lookup("r.example")
            .unwrap_err()
            .to_string();
        assert!(e.contains("broken.json") && !e.contains("hunter2"), "{e}");
    }

    #[test]
    fn credential_helpers() {
        let dir = tempfile::tempdir().unwrap();
        let helper = dir.path().join("docker-credential-fake");
        std::fs::write(
            &helper,
            "#!/bin/sh\nread url\ncase \"$url\" in\n  good.example) echo '{\"ServerURL\":\"good.example\",\"Username\":\"hu\",\"Secret\":\"hs\"}';;\n  tok.example) echo '{\"Username\":\"<token>\",\"Secret\":\"idt\"}';;\n  *) echo 'credentials not found in native keychain'; exit 1;;\nesac\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let f = write(
            dir.path(),
            "c.json",
            r#"{"credHelpers":{"good.example":"fake","tok.example":"fake","none.example":"fake","gone.example":"absent"},"credsStore":"fake"}"#,
        );
        let s = CredentialStore::from_files(vec![f]).with_helper_dir(dir.path().to_path_buf());
        assert_eq!(s.lookup("good.example").unwrap(), basic("hu", "hs"));
        assert_eq!(
            s.lookup("tok.example").unwrap(),
            Some(Credential::IdentityToken(Secret::new("idt")))
        );
        assert_eq!(s.lookup("none.example").unwrap(), None);
        assert_eq!(
            s.lookup("via-store.example").unwrap(),
            None,
            "credsStore answers not found"
        );
        let e = s.lookup("gone.example").unwrap_err().to_string();
        assert!(
            e.contains("docker-credential-absent") && e.contains("not found"),
            "{e}"
        );
    }
}
