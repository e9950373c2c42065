//! gate: the evidence an environment can require before an image comes in — in-toto attestations (with pinned fields) and image signatures, each counted only when its signature verifies against a rule's identity or key.
//!
//! [`gather`] reads the evidence at the source (referrers, fallback tags, cosign tags, BuildKit
//! attestation manifests); [`check`] is pure and says what is missing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::sigstore::{ParsedBundle, Signer, SubjectMatch, TrustRoot, TrustRootSpec, Verified};
use base64::Engine as _;
use bytes::Bytes;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{DerSignature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::digest::Digest;
use crate::manifest::{Descriptor, Manifest};
use crate::referrers::{self, Filter, BUILDKIT_REFERENCE_TYPE};
use crate::registry::{read_small_blob, ManifestRef, RegistryError, Repo};

/// An in-toto statement as a layer.
pub const IN_TOTO: &str = "application/vnd.in-toto+json";
/// A DSSE envelope (cosign attestations).
pub const DSSE: &str = "application/vnd.dsse.envelope.v1+json";
/// A Sigstore bundle (GitHub's artifact attestations) starts with this media type.
pub const SIGSTORE_BUNDLE: &str = "application/vnd.dev.sigstore.bundle";
/// The layer annotation holding a cosign signature (base64 DER ECDSA).
pub const COSIGN_SIGNATURE_ANNOTATION: &str = crate::sigstore::cosign2::SIGNATURE;
/// The predicate type of cosign 3's image signatures (a bundle whose statement names the image).
pub const COSIGN_SIGN_PREDICATE: &str = "https://sigstore.dev/cosign/sign/v1";
/// Largest attestation or signature payload read.
const MAX_EVIDENCE_BYTES: usize = 4 << 20;

/// `require.attestation`: an attestation of this predicate type, with these fields, signed by this
/// signer (or, only when the policy says `signed: false`, unsigned).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AttestationRule {
    /// `https://slsa.dev/provenance/v1`, ...
    pub predicate_type: String,
    /// Pinned values, by dotted path into the statement (`predicate.buildDefinition.externalParameters.workflow.repository`) or JSON pointer.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, String>,
    /// Who must have signed it; `None` only when the policy says `signed: false` (which is
    /// how it prints).
    #[serde(flatten, serialize_with = "signer_or_unsigned")]
    pub signer: Option<Signer>,
}

/// A rule's signer as its keys, or `signed: false` when it has none.
fn signer_or_unsigned<S: serde::Serializer>(
    signer: &Option<Signer>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match signer {
        Some(signer) => signer.serialize(s),
        None => serde_json::json!({"signed": false}).serialize(s),
    }
}

/// `require.signature`: a signature over the image by this signer (a cosign 3 bundle, or a
/// cosign 2 `.sig`, keyless or by key).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SignatureRule {
    /// Who must have signed.
    #[serde(flatten)]
    pub signer: Signer,
}

/// What an environment requires (`require:`); empty means nothing.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Require {
    /// Attestations that must exist.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attestations: Vec<AttestationRule>,
    /// A signature that must verify.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<SignatureRule>,
    /// The trusted root keyless signatures chain to.
    pub trusted_root: TrustRootSpec,
    /// That root, loaded.
    #[serde(skip)]
    pub root: Option<Arc<TrustRoot>>,
}

impl Require {
    /// True when nothing is required.
    pub fn is_empty(&self) -> bool {
        self.attestations.is_empty() && self.signature.is_none()
    }
}

/// `require.attestation` as written: a predicate type, a map, or a list of either.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
#[schemars(rename = "Attestations")]
pub enum RawAttestations {
    /// One rule.
    One(RawAttestation),
    /// Several: the image must carry every one.
    Many(Vec<RawAttestation>),
}

/// One attestation rule as written.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
#[schemars(rename = "Attestation")]
pub enum RawAttestation {
    /// Just the predicate type: refused since unsigned statements would count (kept so that
    /// `policy check` can say what to add).
    Type(String),
    /// A predicate type, pinned fields, and who must have signed it.
    Detailed(RawAttestationMap),
}

/// `{predicate_type: ..., fields: {...}, repository: ...}`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "AttestationRule")]
pub struct RawAttestationMap {
    /// The in-toto predicate type the attestation must have (e.g. `https://slsa.dev/provenance/v1`).
    pub predicate_type: String,
    /// Fields of the in-toto statement that must have exactly these values, by dotted path
    /// (`predicate.runDetails.builder.id`) or JSON pointer (`/predicate/buildDefinition/buildType`).
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    /// `false` accepts unsigned statements (BuildKit's attestation manifests are unsigned); then
    /// no signer may be named. Default: the statement counts only when its signature verifies
    /// against this rule's identity or key.
    pub signed: Option<bool>,
    /// The signer's OIDC issuer (cosign's `--certificate-oidc-issuer`), with `subject` or `subject_regex`.
    pub issuer: Option<String>,
    /// The signing certificate's subject, exactly (cosign's `--certificate-identity`).
    pub subject: Option<String>,
    /// A regular expression the certificate's subject must match (cosign's `--certificate-identity-regexp`).
    pub subject_regex: Option<String>,
    /// GitHub Actions: signed by a workflow of this repository (`owner/name`); expands to the
    /// GitHub issuer and a subject regex.
    pub repository: Option<String>,
    /// With `repository`: the workflow file (`.github/workflows/release.yml`).
    pub workflow: Option<String>,
    /// With `repository`: the git ref the workflow ran on (`refs/heads/main`; `*` wildcards, e.g. `refs/tags/v*`).
    #[serde(rename = "ref")]
    pub git_ref: Option<String>,
    /// A PEM public key the statement's signature must verify with, relative to this file.
    pub public_key: Option<PathBuf>,
}

/// `require.signature` as written: who must have signed the image.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Signature")]
pub struct RawSignature {
    /// The signer's OIDC issuer, with `subject` or `subject_regex`.
    pub issuer: Option<String>,
    /// The signing certificate's subject, exactly.
    pub subject: Option<String>,
    /// A regular expression the certificate's subject must match.
    pub subject_regex: Option<String>,
    /// GitHub Actions: signed by a workflow of this repository (`owner/name`).
    pub repository: Option<String>,
    /// With `repository`: the workflow file.
    pub workflow: Option<String>,
    /// With `repository`: the git ref (`*` wildcards).
    #[serde(rename = "ref")]
    pub git_ref: Option<String>,
    /// A PEM public key (`cosign generate-key-pair`), relative to this file.
    pub public_key: Option<PathBuf>,
}

/// The signer keys a rule may carry, whichever rule it is.
#[derive(Default)]
struct SignerKeys<'a> {
    issuer: Option<&'a str>,
    subject: Option<&'a str>,
    subject_regex: Option<&'a str>,
    repository: Option<&'a str>,
    workflow: Option<&'a str>,
    git_ref: Option<&'a str>,
    public_key: Option<&'a Path>,
}

/// A rule's problem: the key it is under (relative to the rule) and what is wrong.
pub type RuleError = (String, String);

impl SignerKeys<'_> {
    fn any(&self) -> bool {
        self.issuer.is_some()
            || self.subject.is_some()
            || self.subject_regex.is_some()
            || self.repository.is_some()
            || self.workflow.is_some()
            || self.git_ref.is_some()
            || self.public_key.is_some()
    }

    /// The signer they name (`None` when they name none); `dir` resolves a key's path.
    fn signer(&self, dir: &Path) -> Result<Option<Signer>, RuleError> {
        let err = |k: &str, m: &str| Err((k.to_owned(), m.to_owned()));
        let identity =
            self.issuer.is_some() || self.subject.is_some() || self.subject_regex.is_some();
        if let Some(path) = self.public_key {
            if identity || self.repository.is_some() {
                return err(
                    "public_key",
                    "a key and an identity are alternatives: name one",
                );
            }
            let path = dir.join(path);
            let pem = std::fs::read_to_string(&path).map_err(|e| {
                (
                    "public_key".to_owned(),
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            let signer = Signer::key(path.clone(), &pem)
                .map_err(|e| ("public_key".to_owned(), format!("{}: {e}", path.display())))?;
            return Ok(Some(signer));
        }
        if let Some(repo) = self.repository {
            if identity {
                return err(
                    "repository",
                    "repository is a shortcut for issuer and subject_regex: use one or the other",
                );
            }
            let parts: Vec<&str> = repo.split('/').collect();
            if parts.len() != 2 || parts.iter().any(|p| p.is_empty()) {
                return err("repository", "must be owner/name");
            }
            return Ok(Some(Signer::github(repo, self.workflow, self.git_ref)));
        }
        if self.workflow.is_some() || self.git_ref.is_some() {
            return err(
                "workflow",
                "workflow and ref narrow repository: name the repository too",
            );
        }
        if !identity {
            return Ok(None);
        }
        let Some(issuer) = self.issuer else {
            return err("issuer", "a subject needs its OIDC issuer (e.g. https://token.actions.githubusercontent.com)");
        };
        let subject = match (self.subject, self.subject_regex) {
            (Some(_), Some(_)) => {
                return err(
                    "subject_regex",
                    "subject and subject_regex are alternatives",
                )
            }
            (Some(s), None) => SubjectMatch::Exact(s.to_owned()),
            (None, Some(r)) => SubjectMatch::Regex(regex::Regex::new(r).map_err(|e| {
                (
                    "subject_regex".to_owned(),
                    crate::sigstore::one_line(&e.to_string()),
                )
            })?),
            (None, None) => return err("subject", "an issuer needs subject or subject_regex"),
        };
        Ok(Some(Signer::Identity {
            issuer: issuer.to_owned(),
            subject,
        }))
    }
}

impl RawSignature {
    /// The rule, with a key resolved against `dir`.
    pub fn into_rule(self, dir: &Path) -> Result<SignatureRule, RuleError> {
        let keys = SignerKeys {
            issuer: self.issuer.as_deref(),
            subject: self.subject.as_deref(),
            subject_regex: self.subject_regex.as_deref(),
            repository: self.repository.as_deref(),
            workflow: self.workflow.as_deref(),
            git_ref: self.git_ref.as_deref(),
            public_key: self.public_key.as_deref(),
        };
        match keys.signer(dir)? {
            Some(signer) => Ok(SignatureRule { signer }),
            None => Err((
                String::new(),
                "names no signer: add public_key, issuer with subject or subject_regex, or repository".to_owned(),
            )),
        }
    }
}

impl RawAttestations {
    /// The rules, with keys resolved against `dir`; an error names the rule's index.
    pub fn into_rules(self, dir: &Path) -> Result<Vec<AttestationRule>, (usize, RuleError)> {
        let list = match self {
            RawAttestations::One(a) => vec![a],
            RawAttestations::Many(v) => v,
        };
        list.into_iter()
            .enumerate()
            .map(|(i, a)| a.into_rule(dir).map_err(|e| (i, e)))
            .collect()
    }
}

const NAME_A_SIGNER: &str = "name who must have signed it (repository: OWNER/NAME, issuer with subject or subject_regex, or public_key), or add signed: false to accept unsigned statements (BuildKit's attestations are unsigned)";

impl RawAttestation {
    fn into_rule(self, dir: &Path) -> Result<AttestationRule, RuleError> {
        let m = match self {
            RawAttestation::Type(t) => {
                return Err((
                    String::new(),
                    format!("{t} would count unsigned statements: {NAME_A_SIGNER}"),
                ))
            }
            RawAttestation::Detailed(m) => m,
        };
        if m.predicate_type.trim().is_empty() {
            return Err((
                "predicate_type".to_owned(),
                "an empty predicate type".to_owned(),
            ));
        }
        let keys = SignerKeys {
            issuer: m.issuer.as_deref(),
            subject: m.subject.as_deref(),
            subject_regex: m.subject_regex.as_deref(),
            repository: m.repository.as_deref(),
            workflow: m.workflow.as_deref(),
            git_ref: m.git_ref.as_deref(),
            public_key: m.public_key.as_deref(),
        };
        let signer = match m.signed {
            Some(false) if keys.any() => {
                return Err((
                    "signed".to_owned(),
                    "signed: false accepts unsigned statements, so it names no signer".to_owned(),
                ))
            }
            Some(false) => None,
            _ => match keys.signer(dir)? {
                Some(s) => Some(s),
                None => {
                    return Err((
                        String::new(),
                        format!(
                            "{} would count unsigned statements: {NAME_A_SIGNER}",
                            m.predicate_type
                        ),
                    ))
                }
            },
        };
        Ok(AttestationRule {
            predicate_type: m.predicate_type,
            fields: m.fields,
            signer,
        })
    }
}

/// How a statement's signature can be checked.
#[derive(Clone, Debug)]
pub enum Proof {
    /// None: a bare in-toto layer (BuildKit's attestation manifests).
    Unsigned,
    /// A Sigstore bundle (GitHub's artifact attestations, cosign 3).
    Bundle(Arc<ParsedBundle>),
    /// A DSSE envelope (cosign 2 `.att`): signed by a key, or keyless with the certificate and
    /// Rekor bundle in the layer's annotations (the second value).
    Dsse(Value, Value),
}

impl Proof {
    fn kind(&self) -> &'static str {
        match self {
            Proof::Unsigned => "in-toto statement",
            Proof::Bundle(_) => "sigstore bundle",
            Proof::Dsse(..) => "dsse envelope",
        }
    }
}

/// An in-toto statement found at the source, with what proves who made it.
#[derive(Clone, Debug)]
pub struct Statement {
    /// Its subjects' sha256 digests (hex).
    pub subjects: Vec<String>,
    /// Its predicate type.
    pub predicate_type: String,
    /// The whole statement.
    pub doc: Value,
    /// Its signature, if any.
    pub proof: Proof,
}

/// A cosign 2 signature found at the source: a payload and a signature over it.
#[derive(Clone, Debug)]
pub struct SignatureCandidate {
    /// The simple-signing payload, as stored.
    pub payload: Bytes,
    /// The signature (base64 of DER ECDSA).
    pub signature: String,
    /// The layer's annotations (a keyless signature's certificate and Rekor bundle).
    pub annotations: Value,
}

/// Everything found at the source that a gate can use.
#[derive(Clone, Debug, Default)]
pub struct Evidence {
    /// In-toto statements (BuildKit attestation manifests, cosign `.att`, bundles).
    pub statements: Vec<Statement>,
    /// cosign 2 signatures (from `.sig` tags and referrers).
    pub signatures: Vec<SignatureCandidate>,
    /// What was found but could not be read, and why (a malformed bundle, bad base64).
    pub unreadable: Vec<String>,
}

/// The digest a gate is about, and the platform images under it (an index's children).
#[derive(Clone, Debug)]
pub struct Subject {
    /// The image's digest as pinned.
    pub digest: Digest,
    /// Its platform images (not BuildKit attestation manifests); empty for a single image.
    pub platforms: Vec<Digest>,
}

impl Subject {
    /// From a root manifest: itself under `digest`, and its platform children.
    pub fn of(digest: &Digest, root: &Manifest) -> Subject {
        let platforms = referrers::platforms(root);
        Subject {
            digest: digest.clone(),
            platforms,
        }
    }
}

/// Reads the evidence for `subject` from `src`.
pub async fn gather(
    src: &dyn Repo,
    root: &Manifest,
    subject: &Subject,
) -> Result<Evidence, RegistryError> {
    gather_in(src, root, subject, None).await
}

/// [`gather`], where `tags` (when known) are the source repository's attachment tags, so only
/// the cosign and fallback tags that exist are asked for.
pub async fn gather_in(
    src: &dyn Repo,
    root: &Manifest,
    subject: &Subject,
    tags: Option<&std::collections::HashSet<String>>,
) -> Result<Evidence, RegistryError> {
    let mut all = vec![subject.digest.clone()];
    all.extend(subject.platforms.iter().cloned());
    let filter = Filter {
        depth: 1,
        ..Filter::default()
    };
    let mut manifests: Vec<Manifest> = referrers::discover_in(src, &all, &filter, tags)
        .await?
        .into_iter()
        .map(|a| a.manifest)
        .collect();
    // BuildKit keeps its attestations inside the index.
    let doc: Value = serde_json::from_slice(&root.bytes).unwrap_or(Value::Null);
    for e in doc["manifests"].as_array().into_iter().flatten() {
        if e["annotations"][BUILDKIT_REFERENCE_TYPE].as_str() != Some("attestation-manifest") {
            continue;
        }
        if let Some(d) = e["digest"].as_str().and_then(|d| Digest::parse(d).ok()) {
            manifests.push(
                src.manifest_get(&ManifestRef::Digest(d), e["mediaType"].as_str())
                    .await?,
            );
        }
    }
    let mut evidence = Evidence::default();
    for m in &manifests {
        let doc: Value = serde_json::from_slice(&m.bytes).unwrap_or(Value::Null);
        for layer in doc["layers"].as_array().into_iter().flatten() {
            let media_type = layer["mediaType"].as_str().unwrap_or("");
            let Some(digest) = layer["digest"].as_str().and_then(|d| Digest::parse(d).ok()) else {
                continue;
            };
            let desc = &Descriptor {
                media_type: media_type.to_owned(),
                digest,
                size: layer["size"].as_u64().unwrap_or(0),
                platform: None,
            };
            let evidential = layer["annotations"][COSIGN_SIGNATURE_ANNOTATION].is_string()
                || media_type == IN_TOTO
                || media_type == DSSE
                || media_type.starts_with(SIGSTORE_BUNDLE);
            if !evidential {
                continue;
            }
            if desc.size > MAX_EVIDENCE_BYTES as u64 {
                evidence.unreadable.push(format!(
                    "{media_type}: {} bytes, over the {MAX_EVIDENCE_BYTES} byte cap",
                    desc.size
                ));
                continue;
            }
            let bytes = read_small_blob(src, desc, MAX_EVIDENCE_BYTES).await?;
            evidence.add(media_type, &layer["annotations"], bytes);
        }
    }
    Ok(evidence)
}

impl Evidence {
    /// Files one layer's bytes: a cosign signature, a statement (bare, in DSSE, or in a bundle),
    /// or, when it cannot be read, the reason.
    pub fn add(&mut self, media_type: &str, annotations: &Value, bytes: Bytes) {
        if let Some(sig) = annotations[COSIGN_SIGNATURE_ANNOTATION].as_str() {
            self.signatures.push(SignatureCandidate {
                payload: bytes,
                signature: sig.to_owned(),
                annotations: annotations.clone(),
            });
            return;
        }
        let found = if media_type == IN_TOTO {
            Ok((bytes.to_vec(), Proof::Unsigned))
        } else if media_type == DSSE {
            serde_json::from_slice::<Value>(&bytes)
                .map_err(|_| "a DSSE envelope that is not JSON".to_owned())
                .and_then(|env| {
                    let payload =
                        dsse_payload(&env).ok_or("a DSSE envelope without a base64 payload")?;
                    Ok((payload, Proof::Dsse(env, annotations.clone())))
                })
        } else {
            crate::sigstore::parse_bundle(&bytes).and_then(|b| {
                let payload = b
                    .dsse_payload()
                    .map(|(_, p)| p.to_vec())
                    .ok_or("a message-signature bundle, not an attestation of the image")?;
                Ok((payload, Proof::Bundle(Arc::new(b))))
            })
        };
        match found {
            Ok((payload, proof)) => match parse_statement(&payload, proof) {
                Some(s) => self.statements.push(s),
                None => self
                    .unreadable
                    .push(format!("{media_type}: not an in-toto statement")),
            },
            Err(why) => self.unreadable.push(format!("{media_type}: {why}")),
        }
    }
}

/// The decoded payload of a DSSE envelope.
fn dsse_payload(envelope: &Value) -> Option<Vec<u8>> {
    let p = envelope["payload"].as_str()?;
    base64::engine::general_purpose::STANDARD
        .decode(p)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(p))
        .ok()
}

fn parse_statement(bytes: &[u8], proof: Proof) -> Option<Statement> {
    let doc: Value = serde_json::from_slice(bytes).ok()?;
    let predicate_type = doc["predicateType"].as_str()?.to_owned();
    let subjects = doc["subject"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["digest"]["sha256"].as_str().map(str::to_owned))
        .collect();
    Some(Statement {
        subjects,
        predicate_type,
        doc,
        proof,
    })
}

/// A field of a statement by dotted path or JSON pointer, as text.
fn field<'a>(doc: &'a Value, path: &str) -> Option<&'a Value> {
    if path.starts_with('/') {
        return doc.pointer(path);
    }
    path.split('.').try_fold(doc, |v, k| v.get(k))
}

fn field_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// One piece of evidence as a rule considered it, and its verdict.
#[derive(Clone, Debug, Serialize)]
pub struct Considered {
    /// The rule (`attestation https://slsa.dev/provenance/v1`, `signature`).
    pub rule: String,
    /// What it is: `sigstore bundle`, `dsse envelope`, `in-toto statement`, `cosign signature`.
    pub kind: &'static str,
    /// The statement's predicate type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub predicate_type: Option<String>,
    /// The digest it is about.
    pub subject: String,
    /// Who signed it and when, when a signature verified (`signer`, `issuer`, `log_index`, `time`).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub verified: Option<Verified>,
    /// `accepted` or `refused`.
    pub verdict: &'static str,
    /// Why.
    pub reason: String,
}

/// One rule's outcome.
#[derive(Clone, Debug, Serialize)]
pub struct RuleOutcome {
    /// The rule, in words.
    pub rule: String,
    /// Whether it held.
    pub held: bool,
    /// Why not, in one line (empty when it held).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// The gates' verdict on one image: each rule, and each piece of evidence considered.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Verdict {
    /// Every rule, in policy order.
    pub rules: Vec<RuleOutcome>,
    /// Every piece of evidence a rule looked at.
    pub evidence: Vec<Considered>,
    /// Evidence that could not be read.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unreadable: Vec<String>,
}

impl Verdict {
    /// Why the rules that failed failed; empty when every rule held.
    pub fn missing(&self) -> Vec<String> {
        self.rules
            .iter()
            .filter(|r| !r.held)
            .map(|r| r.reason.clone())
            .collect()
    }
}

/// Checks `require` against `evidence` for `subject`: pure, offline (signatures verify against
/// the trusted root in `require`).
pub fn check(require: &Require, evidence: &Evidence, subject: &Subject) -> Verdict {
    let root = require.root.clone().unwrap_or_else(|| {
        Arc::new(
            TrustRoot::load(&require.trusted_root).unwrap_or_else(|_| TrustRoot::public_good()),
        )
    });
    let mut verdict = Verdict {
        unreadable: evidence.unreadable.clone(),
        ..Verdict::default()
    };
    for rule in &require.attestations {
        let name = format!("attestation {}", rule.predicate_type);
        let result =
            check_attestation(rule, &name, evidence, subject, &root, &mut verdict.evidence);
        verdict
            .rules
            .push(outcome(name, result, &evidence.unreadable));
    }
    if let Some(rule) = &require.signature {
        let name = format!("signature by {}", rule.signer);
        let result = check_signature(
            rule,
            &name,
            evidence,
            &subject.digest,
            &root,
            &mut verdict.evidence,
        );
        verdict
            .rules
            .push(outcome(name, result, &evidence.unreadable));
    }
    verdict
}

fn outcome(rule: String, result: Result<(), String>, unreadable: &[String]) -> RuleOutcome {
    let reason = match result {
        Ok(()) => String::new(),
        Err(why) if unreadable.is_empty() => why,
        Err(why) => format!("{why}; unreadable evidence: {}", unreadable.join(", ")),
    };
    RuleOutcome {
        rule,
        held: reason.is_empty(),
        reason,
    }
}

/// Verifies a statement's signature, for `digest`, against `signer`.
fn verify_statement(
    s: &Statement,
    digest: &Digest,
    signer: &Signer,
    root: &TrustRoot,
) -> Result<Option<Verified>, String> {
    match &s.proof {
        Proof::Unsigned => Err("unsigned".to_owned()),
        Proof::Bundle(b) => crate::sigstore::verify(
            root,
            b,
            crate::sigstore::Artifact::Sha256(digest.hex()),
            signer,
        )
        .map(Some),
        Proof::Dsse(env, annotations) => {
            let keyless = crate::sigstore::cosign2::signed_bundle(
                annotations,
                crate::sigstore::cosign2::Signed::Envelope(env),
            )?;
            match keyless {
                Some(json) => {
                    let b = crate::sigstore::parse_bundle(json.as_bytes())?;
                    let artifact = crate::sigstore::Artifact::Sha256(digest.hex());
                    crate::sigstore::verify(root, &b, artifact, signer).map(Some)
                }
                None => verify_dsse(env, signer).map(|()| Some(by_key(signer))),
            }
        }
    }
}

/// What a key's verification shows: the key, no log, no time.
fn by_key(signer: &Signer) -> Verified {
    Verified {
        signer: signer.to_string(),
        issuer: None,
        log_index: None,
        time: None,
    }
}

/// A cosign 2 `.att` envelope: some signature over DSSE's pre-authentication encoding verifies
/// with the rule's key.
fn verify_dsse(env: &Value, signer: &Signer) -> Result<(), String> {
    let Signer::Key { der, .. } = signer else {
        return Err("a DSSE envelope without a certificate: only a key can verify it".to_owned());
    };
    let key = VerifyingKey::from_public_key_der(der)
        .map_err(|_| "the rule's key is not ECDSA P-256".to_owned())?;
    let payload_type = env["payloadType"].as_str().unwrap_or("");
    let payload = dsse_payload(env).ok_or("the envelope's payload is not base64")?;
    let pae = crate::sigstore::pae(payload_type, &payload);
    let b64 = base64::engine::general_purpose::STANDARD;
    let ok = env["signatures"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|sig| {
            sig["sig"]
                .as_str()
                .is_some_and(|s| verify(&key, &pae, &b64.encode(b64.decode(s).unwrap_or_default())))
        });
    if ok {
        Ok(())
    } else {
        Err("made with another key".to_owned())
    }
}

fn considered(
    rule: &str,
    kind: &'static str,
    predicate_type: Option<&str>,
    digest: &Digest,
    result: &Result<Option<Verified>, String>,
    accepted: &str,
) -> Considered {
    Considered {
        rule: rule.to_owned(),
        kind,
        predicate_type: predicate_type.map(str::to_owned),
        subject: digest.to_string(),
        verified: result.as_ref().ok().cloned().flatten(),
        verdict: if result.is_ok() {
            "accepted"
        } else {
            "refused"
        },
        reason: match result {
            Ok(_) => accepted.to_owned(),
            Err(e) => e.clone(),
        },
    }
}

fn check_attestation(
    rule: &AttestationRule,
    name: &str,
    evidence: &Evidence,
    subject: &Subject,
    root: &TrustRoot,
    log: &mut Vec<Considered>,
) -> Result<(), String> {
    let of_type: Vec<&Statement> = evidence
        .statements
        .iter()
        .filter(|s| s.predicate_type == rule.predicate_type)
        .collect();
    let mut refusals: Vec<String> = Vec::new();
    let mut covers = |d: &Digest, log: &mut Vec<Considered>| {
        let mut any = false;
        for s in of_type
            .iter()
            .filter(|s| s.subjects.iter().any(|h| h == d.hex()))
        {
            let result = check_fields(rule, s).and_then(|()| match &rule.signer {
                None => Ok(None),
                Some(signer) => verify_statement(s, d, signer, root),
            });
            let accepted = if rule.signer.is_none() {
                "signed: false accepts it unsigned"
            } else {
                "signature verified"
            };
            log.push(considered(
                name,
                s.proof.kind(),
                Some(&s.predicate_type),
                d,
                &result,
                accepted,
            ));
            match result {
                Ok(_) => any = true,
                Err(why) => refusals.push(format!("{}: {why}", s.proof.kind())),
            }
        }
        any
    };
    let on_root = covers(&subject.digest, log);
    if on_root
        || (!subject.platforms.is_empty() && subject.platforms.iter().all(|p| covers(p, log)))
    {
        return Ok(());
    }
    let signed_by = rule
        .signer
        .as_ref()
        .map(|s| format!(" signed by {s}"))
        .unwrap_or_default();
    let what = format!(
        "no {} attestation{signed_by} for {}",
        rule.predicate_type, subject.digest
    );
    refusals.sort();
    refusals.dedup();
    Err(if !refusals.is_empty() {
        format!(
            "{what} ({} refused: {})",
            refusals.len(),
            refusals.join(", ")
        )
    } else if of_type.is_empty() {
        let mut others: Vec<&str> = evidence
            .statements
            .iter()
            .map(|s| s.predicate_type.as_str())
            .collect();
        others.sort_unstable();
        others.dedup();
        if others.is_empty() {
            format!("{what} (none found)")
        } else {
            format!("{what} (found only {})", others.join(", "))
        }
    } else {
        format!("{what} (attestations of that type name other subjects)")
    })
}

/// The rule's pinned fields, against a statement.
fn check_fields(rule: &AttestationRule, s: &Statement) -> Result<(), String> {
    for (path, want) in &rule.fields {
        let have = field(&s.doc, path).map(field_text);
        if have.as_deref() != Some(want.as_str()) {
            return Err(format!(
                "{path} is {}, not {want:?}",
                have.map_or("missing".to_owned(), |h| format!("{h:?}"))
            ));
        }
    }
    Ok(())
}

fn check_signature(
    rule: &SignatureRule,
    name: &str,
    evidence: &Evidence,
    digest: &Digest,
    root: &TrustRoot,
    log: &mut Vec<Considered>,
) -> Result<(), String> {
    let mut refusals = Vec::new();
    // cosign 3: a bundle whose statement (predicate cosign/sign/v1) names the image.
    for s in evidence.statements.iter().filter(|s| {
        s.predicate_type == COSIGN_SIGN_PREDICATE && s.subjects.iter().any(|h| h == digest.hex())
    }) {
        let result = verify_statement(s, digest, &rule.signer, root);
        log.push(considered(
            name,
            s.proof.kind(),
            Some(&s.predicate_type),
            digest,
            &result,
            "signature verified",
        ));
        match result {
            Ok(_) => return Ok(()),
            Err(why) => refusals.push(why),
        }
    }
    // cosign 2: a simple-signing payload naming the image, signed keyless or by key.
    for c in &evidence.signatures {
        let payload: Value = serde_json::from_slice(&c.payload).unwrap_or(Value::Null);
        if payload["critical"]["image"]["docker-manifest-digest"].as_str() != Some(digest.as_str())
        {
            continue;
        }
        let result = verify_cosign2(c, &rule.signer, root);
        log.push(considered(
            name,
            "cosign signature",
            None,
            digest,
            &result,
            "signature verified",
        ));
        match result {
            Ok(_) => return Ok(()),
            Err(why) => refusals.push(why),
        }
    }
    refusals.sort();
    refusals.dedup();
    Err(if refusals.is_empty() {
        format!(
            "no cosign signature for {digest} (looked for bundles and sha256-….sig, by tag and as referrers)"
        )
    } else {
        format!(
            "no cosign signature for {digest} verifies as {} ({})",
            rule.signer,
            refusals.join(", ")
        )
    })
}

/// A cosign 2 `.sig`: keyless (certificate and Rekor bundle in annotations) as a v0.1 bundle,
/// or a bare signature checked with the rule's key.
fn verify_cosign2(
    c: &SignatureCandidate,
    signer: &Signer,
    root: &TrustRoot,
) -> Result<Option<Verified>, String> {
    if let Some(json) = crate::sigstore::cosign2::bundle(&c.annotations, &c.payload)? {
        let b = crate::sigstore::parse_bundle(json.as_bytes())?;
        return crate::sigstore::verify(
            root,
            &b,
            crate::sigstore::Artifact::Bytes(&c.payload),
            signer,
        )
        .map(Some);
    }
    let Signer::Key { der, .. } = signer else {
        return Err("signed by a key, not by a certificate for an identity".to_owned());
    };
    let key = VerifyingKey::from_public_key_der(der)
        .map_err(|_| "the rule's key is not ECDSA P-256".to_owned())?;
    if verify(&key, &c.payload, &c.signature) {
        Ok(Some(by_key(signer)))
    } else {
        Err("made with another key".to_owned())
    }
}

/// Whether `signature` (base64 DER ECDSA) over `payload` verifies with `key`.
pub fn verify(key: &VerifyingKey, payload: &[u8], signature: &str) -> bool {
    let Ok(der) = base64::engine::general_purpose::STANDARD.decode(signature.trim()) else {
        return false;
    };
    let Ok(sig) = DerSignature::from_bytes(&der) else {
        return false;
    };
    key.verify(payload, &sig).is_ok()
}

/// cosign's simple-signing payload for `digest` pushed as `reference`.
pub fn simple_signing_payload(reference: &str, digest: &Digest) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "critical": {
            "identity": {"docker-reference": reference},
            "image": {"docker-manifest-digest": digest.as_str()},
            "type": "cosign container image signature"
        },
        "optional": null
    }))
    .expect("JSON values serialise")
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Signer as _;
    use p256::ecdsa::SigningKey;
    use p256::pkcs8::EncodePublicKey;
    use serde_json::json;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32].into()).unwrap()
    }

    fn sign(k: &SigningKey, payload: &[u8]) -> String {
        let sig: p256::ecdsa::Signature = k.sign(payload);
        base64::engine::general_purpose::STANDARD.encode(sig.to_der().as_bytes())
    }

    fn digest(n: u8) -> Digest {
        Digest::parse(&format!("sha256:{}", format!("{n:02x}").repeat(32))).unwrap()
    }

    fn statement_bytes(subject: &Digest, t: &str, builder: &str) -> Vec<u8> {
        serde_json::to_vec(
            &json!({"_type": "https://in-toto.io/Statement/v1", "predicateType": t,
            "subject": [{"name": "x", "digest": {"sha256": subject.hex()}}],
            "predicate": {"runDetails": {"builder": {"id": builder}}}}),
        )
        .unwrap()
    }

    fn statement(subject: &Digest, t: &str, builder: &str) -> Statement {
        parse_statement(&statement_bytes(subject, t, builder), Proof::Unsigned).unwrap()
    }

    /// A cosign 2 `.att`: the statement in a DSSE envelope signed by `k`.
    fn dsse_statement(k: &SigningKey, subject: &Digest, t: &str) -> Statement {
        let b64 = base64::engine::general_purpose::STANDARD;
        let payload = statement_bytes(subject, t, "b");
        let pae = crate::sigstore::pae(IN_TOTO, &payload);
        let env = json!({"payloadType": IN_TOTO, "payload": b64.encode(&payload),
            "signatures": [{"keyid": "", "sig": sign(k, &pae)}]});
        let mut ev = Evidence::default();
        ev.add(DSSE, &Value::Null, Bytes::from(env.to_string()));
        ev.statements.pop().unwrap()
    }

    fn key_signer(k: &SigningKey) -> Signer {
        let pem = k
            .verifying_key()
            .to_public_key_pem(Default::default())
            .unwrap();
        Signer::key("cosign.pub".into(), &pem).unwrap()
    }

    fn require(attestations: Vec<AttestationRule>, signature: Option<SignatureRule>) -> Require {
        Require {
            attestations,
            signature,
            ..Require::default()
        }
    }

    const SLSA: &str = "https://slsa.dev/provenance/v1";

    /// An attestation rule that accepts unsigned statements (`signed: false`).
    fn rule(fields: &[(&str, &str)]) -> Require {
        require(
            vec![AttestationRule {
                predicate_type: SLSA.into(),
                fields: fields
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                signer: None,
            }],
            None,
        )
    }

    #[test]
    fn attestation_table() {
        let img = Subject {
            digest: digest(1),
            platforms: vec![digest(2), digest(3)],
        };
        let gh = "https://github.com/actions/runner";
        type Case<'a> = (
            &'a str,
            Vec<Statement>,
            Vec<(&'a str, &'a str)>,
            Option<&'a str>,
        );
        let cases: Vec<Case> = vec![
            (
                "on the index",
                vec![statement(&digest(1), SLSA, gh)],
                vec![],
                None,
            ),
            (
                "on every platform",
                vec![
                    statement(&digest(2), SLSA, gh),
                    statement(&digest(3), SLSA, gh),
                ],
                vec![],
                None,
            ),
            (
                "one platform missing",
                vec![statement(&digest(2), SLSA, gh)],
                vec![],
                Some("no https://slsa.dev/provenance/v1 attestation"),
            ),
            ("none", vec![], vec![], Some("(none found)")),
            (
                "another type",
                vec![statement(&digest(1), "https://spdx.dev/Document", gh)],
                vec![],
                Some("found only https://spdx.dev/Document"),
            ),
            (
                "pinned builder matches (dotted path)",
                vec![statement(&digest(1), SLSA, gh)],
                vec![("predicate.runDetails.builder.id", gh)],
                None,
            ),
            (
                "pinned builder matches (pointer)",
                vec![statement(&digest(1), SLSA, gh)],
                vec![("/predicate/runDetails/builder/id", gh)],
                None,
            ),
            (
                "pinned builder differs",
                vec![statement(&digest(1), SLSA, "evil")],
                vec![("predicate.runDetails.builder.id", gh)],
                Some("predicate.runDetails.builder.id is \"evil\""),
            ),
            (
                "another image's statement",
                vec![statement(&digest(9), SLSA, gh)],
                vec![],
                Some("name other subjects"),
            ),
        ];
        for (name, statements, fields, want) in cases {
            let ev = Evidence {
                statements,
                ..Evidence::default()
            };
            let missing = check(&rule(&fields), &ev, &img).missing();
            match want {
                None => assert!(missing.is_empty(), "{name}: {missing:?}"),
                Some(w) => assert!(
                    missing.len() == 1 && missing[0].contains(w),
                    "{name}: {missing:?}"
                ),
            }
        }
    }

    #[test]
    fn signatures_verify_only_with_the_right_key_and_digest() {
        let (good, other) = (key(7), key(8));
        let by_key = require(
            vec![],
            Some(SignatureRule {
                signer: key_signer(&good),
            }),
        );
        let img = Subject {
            digest: digest(1),
            platforms: vec![],
        };
        let payload = Bytes::from(simple_signing_payload("r/x", &digest(1)));
        let candidate = |k: &SigningKey, p: &Bytes| SignatureCandidate {
            payload: p.clone(),
            signature: sign(k, p),
            annotations: Value::Null,
        };
        let ok = Evidence {
            signatures: vec![candidate(&other, &payload), candidate(&good, &payload)],
            ..Evidence::default()
        };
        let v = check(&by_key, &ok, &img);
        assert!(v.missing().is_empty(), "{v:?}");
        assert_eq!(
            v.evidence.len(),
            2,
            "both candidates were considered: {v:?}"
        );
        assert_eq!(v.evidence[0].verdict, "refused");
        assert_eq!(v.evidence[1].verdict, "accepted");
        let wrong_key = Evidence {
            signatures: vec![candidate(&other, &payload)],
            ..Evidence::default()
        };
        let m = check(&by_key, &wrong_key, &img).missing();
        assert!(m[0].contains("made with another key"), "{m:?}");
        let elsewhere = Bytes::from(simple_signing_payload("r/x", &digest(2)));
        let wrong_digest = Evidence {
            signatures: vec![candidate(&good, &elsewhere)],
            ..Evidence::default()
        };
        assert!(
            check(&by_key, &wrong_digest, &img).missing()[0].contains("no cosign signature for")
        );
        // A tampered payload does not verify.
        let mut c = candidate(&good, &payload);
        c.payload = Bytes::from(simple_signing_payload("r/y", &digest(1)));
        let pem = good
            .verifying_key()
            .to_public_key_pem(Default::default())
            .unwrap();
        let vk = VerifyingKey::from_public_key_pem(&pem).unwrap();
        assert!(!verify(&vk, &c.payload, &c.signature));
        // A keyless rule is not satisfied by a key's signature.
        let keyless = crate::sigstore::Signer::github("acme/api", None, None);
        let r = require(vec![], Some(SignatureRule { signer: keyless }));
        assert!(check(&r, &ok, &img).missing()[0].contains("signed by a key"));
    }

    #[test]
    fn signed_attestations_count_only_when_they_verify() {
        let (good, other) = (key(7), key(8));
        let img = Subject {
            digest: digest(1),
            platforms: vec![],
        };
        let signed = |k: &SigningKey| AttestationRule {
            predicate_type: SLSA.into(),
            fields: BTreeMap::new(),
            signer: Some(key_signer(k)),
        };
        let ev = |statements: Vec<Statement>| Evidence {
            statements,
            ..Evidence::default()
        };
        // Unsigned statements do not count for a signed rule, and the refusal says why.
        let m = check(
            &require(vec![signed(&good)], None),
            &ev(vec![statement(&digest(1), SLSA, "b")]),
            &img,
        )
        .missing();
        assert!(m[0].contains("in-toto statement: unsigned"), "{m:?}");
        // A DSSE envelope by the rule's key counts; by another key it does not.
        let v = check(
            &require(vec![signed(&good)], None),
            &ev(vec![dsse_statement(&good, &digest(1), SLSA)]),
            &img,
        );
        assert!(v.missing().is_empty(), "{v:?}");
        let m = check(
            &require(vec![signed(&good)], None),
            &ev(vec![dsse_statement(&other, &digest(1), SLSA)]),
            &img,
        )
        .missing();
        assert!(m[0].contains("made with another key"), "{m:?}");
        // A tampered payload: the envelope's statement changed after signing.
        let mut t = dsse_statement(&good, &digest(1), SLSA);
        if let Proof::Dsse(env, _) = &mut t.proof {
            let b64 = base64::engine::general_purpose::STANDARD;
            env["payload"] = json!(b64.encode(statement_bytes(&digest(1), SLSA, "evil")));
        }
        assert!(
            !check(&require(vec![signed(&good)], None), &ev(vec![t]), &img)
                .missing()
                .is_empty()
        );
    }

    #[test]
    fn cosign2_keyless_attestations_verify_against_the_identity() {
        use crate::sigstore::instance::{Identity, Instance};
        let mut inst = Instance::new();
        let wf = ".github/workflows/release.yml";
        let acme = inst.keyless(&Identity::github_workflow(
            "acme/api",
            wf,
            "refs/heads/main",
            "ab",
        ));
        let img = Subject {
            digest: digest(1),
            platforms: vec![],
        };
        let (envelope, annotations) =
            inst.cosign2_att(&acme, IN_TOTO, &statement_bytes(&digest(1), SLSA, "b"));
        let annotations: serde_json::Map<String, Value> = annotations
            .into_iter()
            .map(|(k, v)| (k.to_owned(), Value::String(v)))
            .collect();
        let mut ev = Evidence::default();
        ev.add(DSSE, &Value::Object(annotations), Bytes::from(envelope));
        assert_eq!(ev.statements.len(), 1, "{ev:?}");
        let root = Arc::new(TrustRoot::from_json("test", &inst.trusted_root_json()).unwrap());
        let rule = |signer: Signer| Require {
            attestations: vec![AttestationRule {
                predicate_type: SLSA.into(),
                fields: BTreeMap::new(),
                signer: Some(signer),
            }],
            root: Some(root.clone()),
            ..Require::default()
        };
        let v = check(&rule(Signer::github("acme/api", Some(wf), None)), &ev, &img);
        assert!(v.missing().is_empty(), "{v:?}");
        assert!(v.evidence[0].verified.as_ref().unwrap().log_index.is_some());
        let m = check(&rule(Signer::github("mallory/api", None, None)), &ev, &img).missing();
        assert!(m[0].contains("not the required subject"), "{m:?}");
        // Another image's digest: the statement does not name it.
        let other = Subject {
            digest: digest(2),
            platforms: vec![],
        };
        assert!(
            !check(&rule(Signer::github("acme/api", None, None)), &ev, &other)
                .missing()
                .is_empty()
        );
    }

    #[test]
    fn rules_name_a_signer_or_say_signed_false() {
        let dir = Path::new(".");
        let parse = |yaml: &str| -> Result<Vec<AttestationRule>, (usize, RuleError)> {
            let raw: RawAttestations = serde_json::from_str(yaml).unwrap();
            raw.into_rules(dir)
        };
        let e = parse(r#""https://slsa.dev/provenance/v1""#).unwrap_err();
        assert!(e.1 .1.contains("signed: false"), "{e:?}");
        let e = parse(r#"{"predicate_type": "x"}"#).unwrap_err();
        assert!(e.1 .1.contains("repository: OWNER/NAME"), "{e:?}");
        let r = parse(r#"{"predicate_type": "x", "signed": false}"#).unwrap();
        assert!(r[0].signer.is_none());
        let e =
            parse(r#"{"predicate_type": "x", "signed": false, "repository": "a/b"}"#).unwrap_err();
        assert_eq!(e.1 .0, "signed");
        let r = parse(r#"[{"predicate_type": "x", "signed": false}, {"predicate_type": "x", "repository": "acme/api", "workflow": ".github/workflows/release.yml"}]"#).unwrap();
        assert!(
            matches!(&r[1].signer, Some(Signer::Identity { issuer, .. }) if issuer == crate::sigstore::GITHUB_ISSUER)
        );
        for (bad, key) in [
            (
                r#"{"predicate_type": "x", "issuer": "https://i"}"#,
                "subject",
            ),
            (r#"{"predicate_type": "x", "subject": "s"}"#, "issuer"),
            (
                r#"{"predicate_type": "x", "issuer": "i", "subject": "s", "subject_regex": "s"}"#,
                "subject_regex",
            ),
            (
                r#"{"predicate_type": "x", "issuer": "i", "subject_regex": "("}"#,
                "subject_regex",
            ),
            (
                r#"{"predicate_type": "x", "repository": "acme"}"#,
                "repository",
            ),
            (
                r#"{"predicate_type": "x", "repository": "a/b", "issuer": "i"}"#,
                "repository",
            ),
            (
                r#"{"predicate_type": "x", "workflow": "w.yml"}"#,
                "workflow",
            ),
            (
                r#"{"predicate_type": "x", "public_key": "k.pub", "issuer": "i", "subject": "s"}"#,
                "public_key",
            ),
            (
                r#"{"predicate_type": "x", "public_key": "/nonexistent.pub"}"#,
                "public_key",
            ),
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.1 .0, key, "{bad}: {e:?}");
            assert!(!e.1 .1.contains('\n'));
        }
    }

    #[test]
    fn dsse_and_bundles_decode() {
        let st = json!({"predicateType": SLSA, "subject": [{"digest": {"sha256": "ab"}}]});
        let payload = base64::engine::general_purpose::STANDARD.encode(st.to_string());
        let env = json!({"payloadType": "application/vnd.in-toto+json", "payload": payload});
        let s = parse_statement(
            &dsse_payload(&env).unwrap(),
            Proof::Dsse(env.clone(), Value::Null),
        )
        .unwrap();
        assert_eq!(s.predicate_type, SLSA);
        assert_eq!(s.subjects, ["ab"]);
        // Bad bundles are recorded as unreadable, in one line, not dropped silently.
        let mut ev = Evidence::default();
        ev.add(
            SIGSTORE_BUNDLE,
            &Value::Null,
            Bytes::from_static(b"{\"mediaType\": 1}"),
        );
        ev.add(
            DSSE,
            &Value::Null,
            Bytes::from_static(b"{\"payload\": \"!!\"}"),
        );
        assert_eq!(ev.unreadable.len(), 2, "{ev:?}");
        assert!(ev.statements.is_empty());
    }
}
