//! gate: the evidence an environment can require before an image comes in — an in-toto attestation of a predicate type (with pinned fields), and a cosign signature that verifies against a public key.
//!
//! [`gather`] reads the evidence at the source (referrers, fallback tags, cosign tags, BuildKit
//! attestation manifests); [`check`] is pure and says what is missing.

use std::collections::BTreeMap;
use std::path::PathBuf;

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
pub const COSIGN_SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// Largest attestation or signature payload read.
const MAX_EVIDENCE_BYTES: usize = 4 << 20;

/// `require.attestation`: an attestation of this predicate type, with these fields.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AttestationRule {
    /// `https://slsa.dev/provenance/v1`, ...
    pub predicate_type: String,
    /// Pinned values, by dotted path into the statement (`predicate.buildDefinition.externalParameters.workflow.repository`) or JSON pointer.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, String>,
}

/// `require.signature`: a cosign signature by this key.
#[derive(Clone, Debug, Serialize)]
pub struct SignatureRule {
    /// The PEM public key file, as resolved.
    pub public_key: PathBuf,
    /// The key.
    #[serde(skip)]
    pub key: VerifyingKey,
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
    /// Just the predicate type (e.g. `https://slsa.dev/provenance/v1`).
    Type(String),
    /// A predicate type with pinned fields.
    Detailed(RawAttestationMap),
}

/// `{predicate_type: ..., fields: {...}}`.
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
}

impl RawAttestations {
    /// The rules.
    pub fn into_rules(self) -> Vec<AttestationRule> {
        let list = match self {
            RawAttestations::One(a) => vec![a],
            RawAttestations::Many(v) => v,
        };
        list.into_iter()
            .map(|a| match a {
                RawAttestation::Type(t) => AttestationRule {
                    predicate_type: t,
                    fields: BTreeMap::new(),
                },
                RawAttestation::Detailed(RawAttestationMap {
                    predicate_type,
                    fields,
                }) => AttestationRule {
                    predicate_type,
                    fields,
                },
            })
            .collect()
    }
}

/// Reads a cosign public key (PEM, `PUBLIC KEY`, ECDSA P-256 as `cosign generate-key-pair` makes).
pub fn load_key(pem: &str) -> Result<VerifyingKey, String> {
    VerifyingKey::from_public_key_pem(pem.trim())
        .map_err(|e| format!("not an ECDSA P-256 public key in PEM form: {e}"))
}

/// An in-toto statement found at the source.
#[derive(Clone, Debug)]
pub struct Statement {
    /// Its subjects' sha256 digests (hex).
    pub subjects: Vec<String>,
    /// Its predicate type.
    pub predicate_type: String,
    /// The whole statement.
    pub doc: Value,
}

/// A cosign signature found at the source: a payload and a signature over it.
#[derive(Clone, Debug)]
pub struct SignatureCandidate {
    /// The simple-signing payload, as stored.
    pub payload: Bytes,
    /// The signature (base64 of DER ECDSA).
    pub signature: String,
}

/// Everything found at the source that a gate can use.
#[derive(Clone, Debug, Default)]
pub struct Evidence {
    /// In-toto statements (from BuildKit attestation manifests, cosign `.att`, referrers).
    pub statements: Vec<Statement>,
    /// cosign signatures (from `.sig` tags and referrers).
    pub signatures: Vec<SignatureCandidate>,
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
        let platforms = referrers::subjects(root, true);
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
    let mut all = vec![subject.digest.clone()];
    all.extend(subject.platforms.iter().cloned());
    let filter = Filter {
        depth: 1,
        ..Filter::default()
    };
    let mut manifests: Vec<Manifest> = referrers::discover(src, &all, &filter)
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
            if let Some(sig) = layer["annotations"][COSIGN_SIGNATURE_ANNOTATION].as_str() {
                evidence.signatures.push(SignatureCandidate {
                    payload: read_small_blob(src, desc, MAX_EVIDENCE_BYTES).await?,
                    signature: sig.to_owned(),
                });
                continue;
            }
            let statement = if media_type == IN_TOTO {
                Some(
                    read_small_blob(src, desc, MAX_EVIDENCE_BYTES)
                        .await?
                        .to_vec(),
                )
            } else if media_type == DSSE {
                dsse_payload(&read_json(src, desc).await?)
            } else if media_type.starts_with(SIGSTORE_BUNDLE) {
                dsse_payload(&read_json(src, desc).await?["dsseEnvelope"])
            } else {
                None
            };
            if let Some(s) = statement.and_then(|b| parse_statement(&b)) {
                evidence.statements.push(s);
            }
        }
    }
    Ok(evidence)
}

async fn read_json(src: &dyn Repo, d: &Descriptor) -> Result<Value, RegistryError> {
    Ok(
        serde_json::from_slice(&read_small_blob(src, d, MAX_EVIDENCE_BYTES).await?)
            .unwrap_or(Value::Null),
    )
}

/// The decoded payload of a DSSE envelope.
fn dsse_payload(envelope: &Value) -> Option<Vec<u8>> {
    let p = envelope["payload"].as_str()?;
    base64::engine::general_purpose::STANDARD
        .decode(p)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(p))
        .ok()
}

fn parse_statement(bytes: &[u8]) -> Option<Statement> {
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

/// What `require` finds missing in `evidence` for `subject`; empty when every rule holds.
pub fn check(require: &Require, evidence: &Evidence, subject: &Subject) -> Vec<String> {
    let mut missing = Vec::new();
    for rule in &require.attestations {
        if let Err(why) = check_attestation(rule, evidence, subject) {
            missing.push(why);
        }
    }
    if let Some(rule) = &require.signature {
        if let Err(why) = check_signature(rule, evidence, &subject.digest) {
            missing.push(why);
        }
    }
    missing
}

fn check_attestation(
    rule: &AttestationRule,
    evidence: &Evidence,
    subject: &Subject,
) -> Result<(), String> {
    let of_type: Vec<&Statement> = evidence
        .statements
        .iter()
        .filter(|s| s.predicate_type == rule.predicate_type)
        .collect();
    let mut mismatch = None;
    let covers = |d: &Digest, mismatch: &mut Option<String>| {
        of_type
            .iter()
            .filter(|s| s.subjects.iter().any(|h| h == d.hex()))
            .any(|s| {
                for (path, want) in &rule.fields {
                    let have = field(&s.doc, path).map(field_text);
                    if have.as_deref() != Some(want.as_str()) {
                        *mismatch = Some(format!(
                            "{path} is {}, not {want:?}",
                            have.map_or("missing".to_owned(), |h| format!("{h:?}"))
                        ));
                        return false;
                    }
                }
                true
            })
    };
    if covers(&subject.digest, &mut mismatch)
        || (!subject.platforms.is_empty()
            && subject.platforms.iter().all(|p| covers(p, &mut mismatch)))
    {
        return Ok(());
    }
    let what = format!(
        "no {} attestation for {}",
        rule.predicate_type, subject.digest
    );
    Err(match mismatch {
        Some(m) => format!("{what} with the pinned fields ({m})"),
        None if of_type.is_empty() => {
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
        }
        None => format!("{what} (attestations of that type name other subjects)"),
    })
}

fn check_signature(
    rule: &SignatureRule,
    evidence: &Evidence,
    digest: &Digest,
) -> Result<(), String> {
    let mut for_digest = 0;
    for c in &evidence.signatures {
        let payload: Value = serde_json::from_slice(&c.payload).unwrap_or(Value::Null);
        if payload["critical"]["image"]["docker-manifest-digest"].as_str() != Some(digest.as_str())
        {
            continue;
        }
        for_digest += 1;
        if verify(&rule.key, &c.payload, &c.signature) {
            return Ok(());
        }
    }
    let key = rule.public_key.display();
    Err(if for_digest == 0 {
        format!(
            "no cosign signature for {digest} (looked for it under sha256-….sig and as a referrer)"
        )
    } else {
        format!("no cosign signature for {digest} verifies with {key} ({for_digest} found, made with another key)")
    })
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
    use p256::ecdsa::signature::Signer;
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

    fn statement(subject: &Digest, t: &str, builder: &str) -> Statement {
        parse_statement(
            &serde_json::to_vec(
                &json!({"_type": "https://in-toto.io/Statement/v1", "predicateType": t,
                "subject": [{"name": "x", "digest": {"sha256": subject.hex()}}],
                "predicate": {"runDetails": {"builder": {"id": builder}}}}),
            )
            .unwrap(),
        )
        .unwrap()
    }

    const SLSA: &str = "https://slsa.dev/provenance/v1";

    fn rule(fields: &[(&str, &str)]) -> Require {
        Require {
            attestations: vec![AttestationRule {
                predicate_type: SLSA.into(),
                fields: fields
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            }],
            signature: None,
        }
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
                signatures: vec![],
            };
            let missing = check(&rule(&fields), &ev, &img);
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
        let pem = good
            .verifying_key()
            .to_public_key_pem(Default::default())
            .unwrap();
        let require = Require {
            attestations: vec![],
            signature: Some(SignatureRule {
                public_key: "cosign.pub".into(),
                key: load_key(&pem).unwrap(),
            }),
        };
        let img = Subject {
            digest: digest(1),
            platforms: vec![],
        };
        let payload = Bytes::from(simple_signing_payload("r/x", &digest(1)));
        let candidate = |k: &SigningKey, p: &Bytes| SignatureCandidate {
            payload: p.clone(),
            signature: sign(k, p),
        };
        let ok = Evidence {
            statements: vec![],
            signatures: vec![candidate(&other, &payload), candidate(&good, &payload)],
        };
        assert!(check(&require, &ok, &img).is_empty());
        let wrong_key = Evidence {
            statements: vec![],
            signatures: vec![candidate(&other, &payload)],
        };
        let m = check(&require, &wrong_key, &img);
        assert!(m[0].contains("made with another key"), "{m:?}");
        let elsewhere = Bytes::from(simple_signing_payload("r/x", &digest(2)));
        let wrong_digest = Evidence {
            statements: vec![],
            signatures: vec![candidate(&good, &elsewhere)],
        };
        assert!(check(&require, &wrong_digest, &img)[0].contains("no cosign signature for"));
        // A tampered payload does not verify.
        let mut c = candidate(&good, &payload);
        c.payload = Bytes::from(simple_signing_payload("r/y", &digest(1)));
        assert!(!verify(&load_key(&pem).unwrap(), &c.payload, &c.signature));
        assert!(load_key("not a key").is_err());
    }

    #[test]
    fn dsse_and_bundles_decode() {
        let st = json!({"predicateType": SLSA, "subject": [{"digest": {"sha256": "ab"}}]});
        let payload = base64::engine::general_purpose::STANDARD.encode(st.to_string());
        let env = json!({"payloadType": "application/vnd.in-toto+json", "payload": payload});
        let s = parse_statement(&dsse_payload(&env).unwrap()).unwrap();
        assert_eq!(s.predicate_type, SLSA);
        assert_eq!(s.subjects, ["ab"]);
        let bundle = json!({"dsseEnvelope": env});
        assert!(dsse_payload(&bundle["dsseEnvelope"]).is_some());
    }
}
