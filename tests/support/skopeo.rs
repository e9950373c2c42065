//! skopeo as an independent client: reads back what ferry wrote (`inspect --raw`) and pulls it (`copy`), with no user auth files involved.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

use super::registry::TestRegistry;

/// How skopeo reaches a registry.
#[derive(Clone, Debug)]
pub enum TlsOpt {
    /// Plain HTTP (`--tls-verify=false`).
    Insecure,
    /// HTTPS trusting the CA in this directory (`--cert-dir`).
    CertDir(PathBuf),
    /// Not a registry (oci: layouts).
    None,
}

/// A permissive policy and an empty auth file, so nothing of the user's is read.
fn scratch() -> &'static (PathBuf, PathBuf) {
    static FILES: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    FILES.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("ferry-skopeo-")
            .tempdir()
            .unwrap()
            .keep();
        let policy = dir.join("policy.json");
        std::fs::write(
            &policy,
            r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
        )
        .unwrap();
        let auth = dir.join("auth.json");
        std::fs::write(&auth, "{}").unwrap();
        (policy, auth)
    })
}

fn base() -> Command {
    let (policy, auth) = scratch();
    let mut c = Command::new("skopeo");
    c.arg("--policy")
        .arg(policy)
        .env("REGISTRY_AUTH_FILE", auth)
        .env_remove("DOCKER_CONFIG");
    c
}

fn tls_args(prefix: &str, tls: &TlsOpt) -> Vec<String> {
    match tls {
        TlsOpt::Insecure => vec![format!("--{prefix}tls-verify=false")],
        TlsOpt::CertDir(d) => vec![format!("--{prefix}cert-dir={}", d.display())],
        TlsOpt::None => vec![],
    }
}

fn creds_args(prefix: &str, creds: Option<(&str, &str)>) -> Vec<String> {
    creds
        .map(|(u, p)| vec![format!("--{prefix}creds={u}:{p}")])
        .unwrap_or_default()
}

/// `skopeo inspect --raw docker://REFERENCE`: the manifest bytes exactly as served. Panics on failure.
pub fn inspect_raw(reference: &str, creds: Option<(&str, &str)>, tls: TlsOpt) -> Vec<u8> {
    let out = base()
        .arg("inspect")
        .arg("--raw")
        .args(tls_args("", &tls))
        .args(creds_args("", creds))
        .arg(format!("docker://{reference}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo inspect --raw {reference}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The digest of the manifest at `reference` as skopeo reads it: `sha256:` and the hex of its bytes.
pub fn manifest_digest(reference: &str, creds: Option<(&str, &str)>, tls: TlsOpt) -> String {
    format!("sha256:{}", sha256_hex(&inspect_raw(reference, creds, tls)))
}

/// The digest `repo:tag` at `r` points at, as skopeo reads it with the registry's own
/// credentials (None if absent).
pub fn tag_digest(r: &TestRegistry, repo: &str, tag: &str) -> Option<String> {
    let out = base()
        .arg("inspect")
        .arg("--raw")
        .args(tls_args("", &r.tls()))
        .args(creds_args("", r.creds()))
        .arg(format!("docker://{}/{repo}:{tag}", r.host()))
        .output()
        .expect("skopeo runs");
    out.status
        .success()
        .then(|| format!("sha256:{}", sha256_hex(&out.stdout)))
}

/// Whether `repo:tag` exists at `r`.
pub fn tagged(r: &TestRegistry, repo: &str, tag: &str) -> bool {
    tag_digest(r, repo, tag).is_some()
}

/// skopeo pulls the whole image behind `repo:tag` at `r` (every manifest and blob, digests
/// checked) into a scratch OCI layout; its stderr if it cannot.
pub fn pulls_completely(r: &TestRegistry, repo: &str, tag: &str) -> Result<(), String> {
    let dest = tempfile::tempdir().unwrap();
    let out = base()
        .args(["copy", "--all"])
        .args(tls_args("src-", &r.tls()))
        .args(creds_args("src-", r.creds()))
        .arg(format!("docker://{}/{repo}:{tag}", r.host()))
        .arg(format!("oci:{}:x", dest.path().display()))
        .output()
        .expect("skopeo runs");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// `skopeo copy --all --preserve-digests SRC DST` with per-side credentials and TLS.
pub fn copy(
    src: &str,
    src_creds: Option<(&str, &str)>,
    src_tls: TlsOpt,
    dst: &str,
    dst_creds: Option<(&str, &str)>,
    dst_tls: TlsOpt,
) -> Result<(), String> {
    let out = base()
        .args(["copy", "--all", "--preserve-digests", "--quiet"])
        .args(tls_args("src-", &src_tls))
        .args(creds_args("src-", src_creds))
        .args(tls_args("dest-", &dst_tls))
        .args(creds_args("dest-", dst_creds))
        .arg(src)
        .arg(dst)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Lowercase hex sha256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `skopeo list-tags docker://HOST/REPO`: the tags, as skopeo reads them (sorted here). Panics on failure.
pub fn list_tags(repository: &str, creds: Option<(&str, &str)>, tls: TlsOpt) -> Vec<String> {
    let out = base()
        .arg("list-tags")
        .args(tls_args("", &tls))
        .args(creds_args("", creds))
        .arg(format!("docker://{repository}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo list-tags {repository}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut tags: Vec<String> = doc["Tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    tags.sort();
    tags
}

/// `skopeo sync --all --preserve-digests` of a YAML source `config` to `HOST/mirror` at every
/// one of `hosts`, all at once (one process per target, as one would run them); panics if one
/// fails.
pub fn sync_to_all(config: &std::path::Path, hosts: &[String]) {
    let children: Vec<_> = hosts
        .iter()
        .map(|host| {
            Command::new("skopeo")
                .args(["sync", "--all", "--preserve-digests", "--src", "yaml"])
                .args(["--dest", "docker", "--dest-tls-verify=false"])
                .args(["--retry-times", "3"])
                .arg(config)
                .arg(format!("{host}/mirror"))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("skopeo starts")
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().expect("skopeo ends");
        assert!(
            out.status.success(),
            "skopeo sync failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
