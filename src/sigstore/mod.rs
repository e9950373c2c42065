//! sigstore: Sigstore verification — trusted roots, signer rules (an identity or a key), and the verdict on one bundle, offline.
//!
//! The cryptography (certificate chains to Fulcio, SCTs, Rekor v1 and v2 entries, inclusion
//! proofs and checkpoints, RFC 3161 timestamps, DSSE) is `sigstore-verify`'s. This module decides
//! what ferry trusts (which root, which signer) and turns the crate's verdict into one line.

pub mod cosign2;
pub mod instance;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sigstore_verify::trust_root::TrustedRoot;
use sigstore_verify::types::{Bundle, DerPublicKey, Sha256Hash, SignatureContent};
use sigstore_verify::{PublicKeyVerificationPolicy, VerificationPolicy, Verifier};

/// The public-good Sigstore instance's trusted root (sigstore.dev), as embedded.
pub const PUBLIC_GOOD_ROOT: &str = include_str!("roots/public-good.json");
/// GitHub's Sigstore instance (fulcio.githubapp.com, timestamp.githubapp.com), for private repositories.
pub const GITHUB_ROOT: &str = include_str!("roots/github.json");
/// The public-good staging instance.
pub const STAGING_ROOT: &str = include_str!("roots/staging.json");
/// When the embedded roots were taken from Sigstore's and GitHub's TUF repositories.
pub const ROOTS_DATE: &str = "2026-10-23";

/// Largest bundle read, from a file or a registry.
pub const MAX_BUNDLE_BYTES: usize = 4 << 20;

/// GitHub Actions' OIDC issuer.
pub const GITHUB_ISSUER: &str = "https://token.actions.githubusercontent.com";

/// A trusted root ready to verify with.
pub struct TrustRoot {
    name: String,
    verifier: Verifier,
}

impl fmt::Debug for TrustRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustRoot")
            .field("name", &self.name)
            .finish()
    }
}

impl TrustRoot {
    /// An embedded root by name (`public-good`, `github`, `staging`), or `None`.
    pub fn builtin(name: &str) -> Option<TrustRoot> {
        let json = match name {
            "public-good" => PUBLIC_GOOD_ROOT,
            "github" => GITHUB_ROOT,
            "staging" => STAGING_ROOT,
            _ => return None,
        };
        Some(
            TrustRoot::from_json(&format!("the embedded {name} root of {ROOTS_DATE}"), json)
                .expect("embedded trusted roots parse"),
        )
    }

    /// The public-good instance's root, embedded.
    pub fn public_good() -> TrustRoot {
        TrustRoot::builtin("public-good").expect("public-good is built in")
    }

    /// A root from `trusted_root.json` text; `name` says where it came from in messages.
    pub fn from_json(name: &str, json: &str) -> Result<TrustRoot, String> {
        let root = TrustedRoot::from_json(json).map_err(|e| format!("{name}: {e}"))?;
        let verifier = Verifier::new(&root).map_err(|e| format!("{name}: {e}"))?;
        Ok(TrustRoot {
            name: name.to_owned(),
            verifier,
        })
    }

    /// A root from a file (`trusted_root.json`, as `gh attestation trusted-root` or
    /// `cosign trusted-root create` print it).
    pub fn from_file(path: &Path) -> Result<TrustRoot, String> {
        let json = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read trusted root {}: {e}", path.display()))?;
        TrustRoot::from_json(&path.display().to_string(), &json)
    }

    /// A policy's `trusted_root:` value: a built-in name or a path.
    pub fn load(spec: &TrustRootSpec) -> Result<TrustRoot, String> {
        match spec {
            TrustRootSpec::Builtin(name) => {
                TrustRoot::builtin(name).ok_or_else(|| format!("no built-in trusted root {name:?}"))
            }
            TrustRootSpec::File(path) => TrustRoot::from_file(path),
        }
    }

    /// Where it came from.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Which trusted root a policy names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum TrustRootSpec {
    /// `public-good`, `github` or `staging`.
    Builtin(String),
    /// A `trusted_root.json` file.
    File(PathBuf),
}

impl Default for TrustRootSpec {
    fn default() -> Self {
        TrustRootSpec::Builtin("public-good".to_owned())
    }
}

impl TrustRootSpec {
    /// From a policy's text: a built-in name, else a path relative to `base`.
    pub fn parse(text: &str, base: &Path) -> TrustRootSpec {
        match text {
            "public-good" | "github" | "staging" => TrustRootSpec::Builtin(text.to_owned()),
            path => TrustRootSpec::File(base.join(path)),
        }
    }
}

impl fmt::Display for TrustRootSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrustRootSpec::Builtin(n) => write!(f, "{n}"),
            TrustRootSpec::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// How a certificate's subject (its SAN: a workflow URI, an email) must look.
#[derive(Clone, Debug)]
pub enum SubjectMatch {
    /// Exactly this.
    Exact(String),
    /// The whole of this regular expression (anchored as cosign's `--certificate-identity-regexp`
    /// is not: write `^…$`).
    Regex(regex::Regex),
}

impl SubjectMatch {
    /// Whether `subject` satisfies it.
    pub fn matches(&self, subject: &str) -> bool {
        match self {
            SubjectMatch::Exact(s) => s == subject,
            SubjectMatch::Regex(r) => r.is_match(subject),
        }
    }
}

impl fmt::Display for SubjectMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubjectMatch::Exact(s) => write!(f, "{s}"),
            SubjectMatch::Regex(r) => write!(f, "~{}", r.as_str()),
        }
    }
}

impl PartialEq for SubjectMatch {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (SubjectMatch::Exact(a), SubjectMatch::Exact(b)) => a == b,
            (SubjectMatch::Regex(a), SubjectMatch::Regex(b)) => a.as_str() == b.as_str(),
            _ => false,
        }
    }
}

/// Who must have signed: a keyless identity (issuer and subject), or a key.
#[derive(Clone, Debug, PartialEq)]
pub enum Signer {
    /// A Fulcio certificate for this OIDC issuer and subject.
    Identity {
        /// The OIDC issuer (`https://token.actions.githubusercontent.com`).
        issuer: String,
        /// The certificate's subject.
        subject: SubjectMatch,
    },
    /// A managed key (a cosign key pair's public half).
    Key {
        /// The PEM file, as resolved.
        path: PathBuf,
        /// The key (SubjectPublicKeyInfo DER).
        der: Vec<u8>,
    },
}

impl Signer {
    /// A key signer from a PEM `PUBLIC KEY` file's text.
    pub fn key(path: PathBuf, pem: &str) -> Result<Signer, String> {
        let der =
            DerPublicKey::from_pem(pem.trim()).map_err(|e| format!("not a PEM public key: {e}"))?;
        Ok(Signer::Key {
            path,
            der: der.as_bytes().to_vec(),
        })
    }

    /// A GitHub Actions workflow identity: `repository` (`owner/name`), and optionally the
    /// workflow file (`.github/workflows/release.yml`) and git ref (`refs/heads/main`,
    /// `refs/tags/v*`: `*` is any run of characters).
    pub fn github(repository: &str, workflow: Option<&str>, git_ref: Option<&str>) -> Signer {
        let mut re = format!("^https://github\\.com/{}/", regex::escape(repository));
        match workflow {
            Some(w) => re.push_str(&regex::escape(w.trim_start_matches('/'))),
            None => re.push_str("[^@]+"),
        }
        re.push('@');
        match git_ref {
            Some(r) => re.push_str(&regex::escape(r).replace("\\*", ".*")),
            None => re.push_str(".+"),
        }
        re.push('$');
        Signer::Identity {
            issuer: GITHUB_ISSUER.to_owned(),
            subject: SubjectMatch::Regex(regex::Regex::new(&re).expect("escaped regex")),
        }
    }
}

impl fmt::Display for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Signer::Identity { issuer, subject } => write!(f, "{subject} (issuer {issuer})"),
            Signer::Key { path, .. } => write!(f, "the key {}", path.display()),
        }
    }
}

impl Serialize for Signer {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        match self {
            Signer::Identity { issuer, subject } => {
                m.serialize_entry("issuer", issuer)?;
                match subject {
                    SubjectMatch::Exact(x) => m.serialize_entry("subject", x)?,
                    SubjectMatch::Regex(r) => m.serialize_entry("subject_regex", r.as_str())?,
                }
            }
            Signer::Key { path, .. } => m.serialize_entry("public_key", path)?,
        }
        m.end()
    }
}

/// What a signature is over: the bytes, or their sha256.
#[derive(Clone, Copy, Debug)]
pub enum Artifact<'a> {
    /// The artifact itself.
    Bytes(&'a [u8]),
    /// Its sha256 (32 bytes, as hex).
    Sha256(&'a str),
}

/// A bundle that verified: who signed, and when the log or a TSA says it was.
#[derive(Clone, Debug, Serialize)]
pub struct Verified {
    /// The certificate's subject, or the key's file.
    pub signer: String,
    /// The certificate's OIDC issuer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// The Rekor log index, when the bundle has a log entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_index: Option<i64>,
    /// The verified signing time (RFC 3339): the log's integrated time, or a TSA's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
}

/// A parsed bundle, with the DSSE payload it carries (if any).
#[derive(Debug)]
pub struct ParsedBundle {
    bundle: Bundle,
}

impl ParsedBundle {
    /// The DSSE envelope's payload type and payload, when it is one.
    pub fn dsse_payload(&self) -> Option<(&str, &[u8])> {
        match &self.bundle.content {
            SignatureContent::DsseEnvelope(e) => {
                Some((e.payload_type.as_str(), e.payload.as_bytes()))
            }
            _ => None,
        }
    }

    /// The crate's bundle.
    pub fn inner(&self) -> &Bundle {
        &self.bundle
    }
}

/// Parses a bundle (v0.1, v0.2 or v0.3, either media-type spelling), with a size cap; the error
/// is one line.
pub fn parse_bundle(bytes: &[u8]) -> Result<ParsedBundle, String> {
    if bytes.len() > MAX_BUNDLE_BYTES {
        return Err(format!(
            "the bundle is {} bytes, over the {} byte cap",
            bytes.len(),
            MAX_BUNDLE_BYTES
        ));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| "the bundle is not UTF-8 JSON".to_owned())?;
    let bundle = Bundle::from_json(text)
        .map_err(|e| format!("not a Sigstore bundle: {}", one_line(&e.to_string())))?;
    Ok(ParsedBundle { bundle })
}

/// Verifies `bundle` over `artifact`, signed by `signer`, against `root`; offline.
pub fn verify(
    root: &TrustRoot,
    bundle: &ParsedBundle,
    artifact: Artifact<'_>,
    signer: &Signer,
) -> Result<Verified, String> {
    let digest;
    let input: sigstore_verify::types::Artifact<'_> = match artifact {
        Artifact::Bytes(b) => b.into(),
        Artifact::Sha256(hex) => {
            digest = Sha256Hash::from_hex(hex).map_err(|e| format!("not a sha256 digest: {e}"))?;
            digest.into()
        }
    };
    let result = match signer {
        Signer::Identity { issuer, subject } => {
            let mut policy = VerificationPolicy::any_identity().require_issuer(issuer.as_str());
            if let SubjectMatch::Exact(s) = subject {
                policy = policy.require_identity(s.as_str());
            }
            let r = root
                .verifier
                .verify(input, &bundle.bundle, &policy)
                .map_err(|e| one_line(&e.to_string()))?;
            let got = r
                .identity()
                .map(|i| i.as_str().to_owned())
                .unwrap_or_default();
            if !subject.matches(&got) {
                return Err(format!("signed by {got:?}, not the required subject"));
            }
            r
        }
        Signer::Key { der, .. } => {
            let policy = PublicKeyVerificationPolicy::new(DerPublicKey::new(der.clone()));
            root.verifier
                .verify(input, &bundle.bundle, &policy)
                .map_err(|e| one_line(&e.to_string()))?
        }
    };
    let time = result
        .integrated_time()
        .or_else(|| result.verified_timestamps().iter().min().copied());
    Ok(Verified {
        signer: match signer {
            Signer::Identity { .. } => result
                .identity()
                .map(|i| i.as_str().to_owned())
                .unwrap_or_default(),
            Signer::Key { path, .. } => path.display().to_string(),
        },
        issuer: result.issuer().map(str::to_owned),
        log_index: bundle
            .bundle
            .verification_material
            .tlog_entries
            .first()
            .map(|e| e.log_index.as_i64()),
        time: time.map(|t| t.to_string()),
    })
}

/// DSSE's pre-authentication encoding of a payload: what an envelope's signatures are over.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    sigstore_verify::types::pae(payload_type, payload)
}

/// The first line of a message, without a trailing period.
pub(crate) fn one_line(s: &str) -> String {
    s.lines()
        .next()
        .unwrap_or("")
        .trim_end_matches('.')
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_roots_load() {
        for name in ["public-good", "github", "staging"] {
            assert!(TrustRoot::builtin(name).is_some(), "{name}");
        }
        assert!(TrustRoot::builtin("nope").is_none());
    }

    #[test]
    fn github_shortcut_matches_the_workflow_uri() {
        let s = Signer::github(
            "acme/api",
            Some(".github/workflows/release.yml"),
            Some("refs/tags/v*"),
        );
        let Signer::Identity { issuer, subject } = &s else {
            panic!()
        };
        assert_eq!(issuer, GITHUB_ISSUER);
        assert!(subject
            .matches("https://github.com/acme/api/.github/workflows/release.yml@refs/tags/v1.2.3"));
        assert!(!subject
            .matches("https://github.com/acme/api/.github/workflows/release.yml@refs/heads/main"));
        assert!(!subject
            .matches("https://github.com/acme/api/.github/workflows/other.yml@refs/tags/v1"));
        assert!(!subject
            .matches("https://github.com/acme/apix/.github/workflows/release.yml@refs/tags/v1"));
        assert!(!subject.matches(
            "https://github.com/evil/acme/api/.github/workflows/release.yml@refs/tags/v1"
        ));
        let any = Signer::github("acme/api", None, None);
        let Signer::Identity { subject, .. } = &any else {
            panic!()
        };
        assert!(
            subject.matches("https://github.com/acme/api/.github/workflows/ci.yml@refs/heads/main")
        );
        assert!(!subject
            .matches("https://github.com/acme/api2/.github/workflows/ci.yml@refs/heads/main"));
    }

    #[test]
    fn bad_bundles_are_one_line_refusals() {
        for bad in [
            &b"not json"[..],
            b"{}",
            b"{\"mediaType\": \"application/vnd.dev.sigstore.bundle+json;version=9.9\"}",
            b"\xff\xfe",
        ] {
            let e = parse_bundle(bad).unwrap_err();
            assert!(!e.contains('\n'), "{e}");
        }
        let big = vec![b' '; MAX_BUNDLE_BYTES + 1];
        assert!(parse_bundle(&big).unwrap_err().contains("cap"));
    }
}
