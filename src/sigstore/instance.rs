//! sigstore::instance: a self-contained, offline Sigstore instance for the demo and the tests: it owns a Fulcio-like CA (root and
//! intermediate), a CT log, a Rekor v1 log and a Rekor v2 log (each an in-memory RFC 6962
//! Merkle tree), and an RFC 3161 timestamp authority, and it produces Sigstore bundles, cosign 2
//! `.sig` annotations and the `trusted_root.json` naming its keys. Everything it makes verifies
//! with `sigstore-verify` against [`Instance::trusted_root_json`]; nothing here talks to a
//! network. Keys are generated fresh by [`Instance::new`], so an instance's bundles verify only
//! against that instance's trusted root.
//!
//! What is real: certificate chains (X.509, ECDSA P-256), the Fulcio extensions, the embedded SCT
//! (an RFC 6962 precertificate signature by the CT log key), log entries (canonicalized
//! `hashedrekord`/`dsse` bodies appended to a Merkle tree, with inclusion proofs, signed
//! checkpoints in the signed-note format and inclusion promises), and RFC 3161 timestamp tokens
//! (CMS `SignedData` over a `TSTInfo`, signed by a TSA certificate chaining to the TSA root).
//! What is not: there is no OIDC, no HTTP API, no persistence, and no consistency proofs between
//! checkpoints.

use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use cms::cert::CertificateChoices;
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{
    CertificateSet, EncapsulatedContentInfo, SignedData, SignerIdentifier, SignerInfo, SignerInfos,
};
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use p256::elliptic_curve::rand_core::{OsRng, RngCore};
use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use x509_cert::attr::Attribute;
use x509_cert::der::asn1::{
    BitString, GeneralizedTime, Ia5String, OctetString, SetOfVec, UtcTime, Utf8StringRef,
};
use x509_cert::der::oid::ObjectIdentifier;
use x509_cert::der::{Any, DateTime, Decode, Encode, Tag};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages,
    SubjectAltName, SubjectKeyIdentifier,
};
use x509_cert::ext::Extension;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::time::{Time, Validity};
use x509_cert::{Certificate, TbsCertificate, Version};

const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const SHA256_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const KP_CODE_SIGNING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.3");
const KP_TIME_STAMPING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.8");
const CT_PRECERT_SCTS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.11129.2.4.2");
const ID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
const ID_CT_TST_INFO: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.1.4");
const ID_CONTENT_TYPE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.3");
const ID_MESSAGE_DIGEST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");
const ID_SIGNING_CERTIFICATE_V2: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.2.47");
/// The TSA policy OID stamped into every `TSTInfo` (an arbitrary arc under Sigstore's).
const TSA_POLICY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.57264.2");

/// The OIDC issuer Fulcio records for GitHub Actions workload identities.
pub use super::GITHUB_ISSUER as GITHUB_ACTIONS_ISSUER;

const TRUSTED_ROOT_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.trustedroot+json;version=0.1";
const REKOR_V1_HOST: &str = "rekor.ferry.test";
const REKOR_V2_HOST: &str = "log2025.rekor.ferry.test";
const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// Default lifetime of a keyless leaf certificate. Fulcio's is ten minutes; an hour keeps a
/// [`Credential`] usable through a slow test run.
const LEAF_LIFETIME_SECS: i64 = 3600;
const YEAR_SECS: i64 = 365 * 24 * 3600;

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

fn b64(data: impl AsRef<[u8]>) -> String {
    B64.encode(data)
}

fn unix(secs: i64) -> Duration {
    Duration::from_secs(u64::try_from(secs).expect("time after 1970"))
}

/// RFC 3339 (`2025-01-02T03:04:05Z`) for a unix time, as trusted roots spell `validFor`.
fn rfc3339(secs: i64) -> String {
    DateTime::from_unix_duration(unix(secs))
        .expect("representable time")
        .to_string()
}

/// An X.509 `Time`: UTCTime before 2050, GeneralizedTime from then on (RFC 5280 §4.1.2.5).
fn x509_time(secs: i64) -> Time {
    if secs < 2_524_608_000 {
        Time::UtcTime(UtcTime::from_unix_duration(unix(secs)).expect("UTCTime"))
    } else {
        Time::GeneralTime(GeneralizedTime::from_unix_duration(unix(secs)).expect("GeneralizedTime"))
    }
}

/// JSON in the RFC 8785 canonical form Rekor uses for entry bodies and promises: keys sorted,
/// no whitespace. (Every string here is ASCII, where serde_json's escaping agrees with JCS.)
fn canonical(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let fields: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::from(k.as_str()), canonical(&map[k])))
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(canonical).collect();
            format!("[{}]", items.join(","))
        }
        other => other.to_string(),
    }
}

fn der<T: Encode>(value: &T) -> Vec<u8> {
    value.to_der().expect("DER encodes")
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = b64(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    bytes[0] = (bytes[0] & 0x7f) | 0x01; // positive, no leading zero
    SerialNumber::new(&bytes).expect("16-byte serial")
}

fn extension(oid: ObjectIdentifier, critical: bool, value_der: Vec<u8>) -> Extension {
    Extension {
        extn_id: oid,
        critical,
        extn_value: OctetString::new(value_der).expect("extension value"),
    }
}

/// A leaf's key usage (digital signature, critical) and extended key usage (`eku`).
fn signing_extensions(eku: ObjectIdentifier, eku_critical: bool) -> [Extension; 2] {
    [
        extension(
            ObjectIdentifier::new_unwrap("2.5.29.15"),
            true,
            KeyUsage(KeyUsages::DigitalSignature.into())
                .to_der()
                .expect("key usage"),
        ),
        extension(
            ObjectIdentifier::new_unwrap("2.5.29.37"),
            eku_critical,
            ExtendedKeyUsage(vec![eku]).to_der().expect("EKU"),
        ),
    ]
}

fn ecdsa_sha256() -> AlgorithmIdentifierOwned {
    AlgorithmIdentifierOwned {
        oid: ECDSA_WITH_SHA256,
        parameters: None,
    }
}

// ---------------------------------------------------------------------------------------------
// Keys and certificates
// ---------------------------------------------------------------------------------------------

/// An ECDSA P-256 key with its DER SubjectPublicKeyInfo.
#[derive(Clone)]
struct Key {
    signing: SigningKey,
    spki: Vec<u8>,
}

impl Key {
    fn generate() -> Key {
        let signing = SigningKey::random(&mut OsRng);
        let spki = signing
            .verifying_key()
            .to_public_key_der()
            .expect("P-256 SPKI")
            .as_bytes()
            .to_vec();
        Key { signing, spki }
    }

    /// ECDSA P-256 / SHA-256 over `message`, DER-encoded, as every Sigstore service signs.
    fn sign(&self, message: &[u8]) -> Vec<u8> {
        let signature: Signature = self.signing.sign(message);
        signature.to_der().as_bytes().to_vec()
    }

    /// SHA-256 of the SubjectPublicKeyInfo: the log ID of a Rekor or CT log with this key.
    fn id(&self) -> [u8; 32] {
        sha256(&self.spki)
    }

    /// A subject key identifier (RFC 5280 §4.2.1.2 allows any method; this is SHA-256/160).
    fn ski(&self) -> Vec<u8> {
        self.id()[..20].to_vec()
    }

    fn spki_owned(&self) -> SubjectPublicKeyInfoOwned {
        SubjectPublicKeyInfoOwned::from_der(&self.spki).expect("own SPKI parses")
    }
}

/// A certificate authority (or TSA signing certificate): its key and certificate.
struct Ca {
    key: Key,
    der: Vec<u8>,
    name: Name,
    serial: SerialNumber,
}

/// What a certificate is issued by: the issuer's name and key, for the signature and AKI.
struct IssuerRef<'a> {
    name: &'a Name,
    key: &'a Key,
}

struct CertSpec<'a> {
    subject: Name,
    subject_key: &'a Key,
    serial: SerialNumber,
    not_before: i64,
    not_after: i64,
    extensions: Vec<Extension>,
}

fn tbs_certificate(spec: &CertSpec<'_>, issuer: &IssuerRef<'_>) -> TbsCertificate {
    let mut extensions = vec![
        extension(
            ObjectIdentifier::new_unwrap("2.5.29.14"),
            false,
            SubjectKeyIdentifier(OctetString::new(spec.subject_key.ski()).expect("ski"))
                .to_der()
                .expect("SKI"),
        ),
        extension(
            ObjectIdentifier::new_unwrap("2.5.29.35"),
            false,
            AuthorityKeyIdentifier {
                key_identifier: Some(OctetString::new(issuer.key.ski()).expect("aki")),
                ..Default::default()
            }
            .to_der()
            .expect("AKI"),
        ),
    ];
    extensions.extend(spec.extensions.iter().cloned());
    TbsCertificate {
        version: Version::V3,
        serial_number: spec.serial.clone(),
        signature: ecdsa_sha256(),
        issuer: issuer.name.clone(),
        validity: Validity {
            not_before: x509_time(spec.not_before),
            not_after: x509_time(spec.not_after),
        },
        subject: spec.subject.clone(),
        subject_public_key_info: spec.subject_key.spki_owned(),
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(extensions),
    }
}

fn sign_certificate(tbs: TbsCertificate, issuer_key: &Key) -> Vec<u8> {
    let signature = issuer_key.sign(&tbs.to_der().expect("TBS encodes"));
    Certificate {
        tbs_certificate: tbs,
        signature_algorithm: ecdsa_sha256(),
        signature: BitString::from_bytes(&signature).expect("signature bits"),
    }
    .to_der()
    .expect("certificate encodes")
}

fn ca_extensions(path_len: Option<u8>) -> Vec<Extension> {
    vec![
        extension(
            ObjectIdentifier::new_unwrap("2.5.29.19"),
            true,
            BasicConstraints {
                ca: true,
                path_len_constraint: path_len,
            }
            .to_der()
            .expect("basic constraints"),
        ),
        extension(
            ObjectIdentifier::new_unwrap("2.5.29.15"),
            true,
            KeyUsage(KeyUsages::KeyCertSign | KeyUsages::CRLSign)
                .to_der()
                .expect("key usage"),
        ),
    ]
}

impl Ca {
    /// A self-signed root CA.
    fn root(subject: &str, not_before: i64, not_after: i64) -> Ca {
        Ca::make(subject, not_before, not_after, ca_extensions(None), None)
    }

    /// A certificate issued by `self` for a fresh key, with `extensions` after SKI and AKI.
    fn issue(
        &self,
        subject: &str,
        not_before: i64,
        not_after: i64,
        extensions: Vec<Extension>,
    ) -> Ca {
        Ca::make(subject, not_before, not_after, extensions, Some(self))
    }

    /// A certificate for a fresh key, signed by `issuer` (itself when `None`).
    fn make(
        subject: &str,
        not_before: i64,
        not_after: i64,
        extensions: Vec<Extension>,
        issuer: Option<&Ca>,
    ) -> Ca {
        let key = Key::generate();
        let name = Name::from_str(subject).expect("subject DN");
        let serial = random_serial();
        let spec = CertSpec {
            subject: name.clone(),
            subject_key: &key,
            serial: serial.clone(),
            not_before,
            not_after,
            extensions,
        };
        let (issuer_ref, signing_key) = match issuer {
            Some(ca) => (ca.issuer_ref(), &ca.key),
            None => (
                IssuerRef {
                    name: &name,
                    key: &key,
                },
                &key,
            ),
        };
        let tbs = tbs_certificate(&spec, &issuer_ref);
        let der = sign_certificate(tbs, signing_key);
        Ca {
            key,
            der,
            name,
            serial,
        }
    }

    fn issuer_ref(&self) -> IssuerRef<'_> {
        IssuerRef {
            name: &self.name,
            key: &self.key,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Transparency logs
// ---------------------------------------------------------------------------------------------

fn leaf_hash(data: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

fn node_hash(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The largest power of two strictly below `n` (n > 1), RFC 6962 §2.1's `k`.
fn split_point(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// RFC 6962 Merkle Tree Hash of `leaves` (already leaf-hashed).
fn tree_hash(leaves: &[[u8; 32]]) -> [u8; 32] {
    match leaves.len() {
        0 => sha256(b""),
        1 => leaves[0],
        n => {
            let k = split_point(n);
            node_hash(&tree_hash(&leaves[..k]), &tree_hash(&leaves[k..]))
        }
    }
}

/// RFC 6962 §2.1.1 audit path of leaf `m`, deepest sibling first.
fn audit_path(m: usize, leaves: &[[u8; 32]]) -> Vec<[u8; 32]> {
    let n = leaves.len();
    if n <= 1 {
        return Vec::new();
    }
    let k = split_point(n);
    if m < k {
        let mut path = audit_path(m, &leaves[..k]);
        path.push(tree_hash(&leaves[k..]));
        path
    } else {
        let mut path = audit_path(m - k, &leaves[k..]);
        path.push(tree_hash(&leaves[..k]));
        path
    }
}

/// An append-only transparency log held in memory: its key and the leaf hashes of its entries.
struct Log {
    key: Key,
    /// The signer name on checkpoint signature lines (a host name, as Rekor uses).
    name: String,
    /// The checkpoint origin line.
    origin: String,
    leaves: Vec<[u8; 32]>,
}

/// One entry appended to a log, with what a bundle needs to prove it.
struct Logged {
    index: u64,
    tree_size: u64,
    root: [u8; 32],
    hashes: Vec<[u8; 32]>,
    checkpoint: String,
}

impl Log {
    fn new(name: &str, origin: String) -> Log {
        Log {
            key: Key::generate(),
            name: name.to_string(),
            origin,
            leaves: Vec::new(),
        }
    }

    fn append(&mut self, body: &[u8]) -> Logged {
        self.leaves.push(leaf_hash(body));
        let index = self.leaves.len() - 1;
        let tree = &self.leaves[..];
        let root = tree_hash(tree);
        Logged {
            index: index as u64,
            tree_size: tree.len() as u64,
            root,
            hashes: audit_path(index, tree),
            checkpoint: self.checkpoint(tree.len() as u64, &root),
        }
    }

    /// A signed note over the tree head: `origin\nsize\nbase64(root)\n`, a blank line, then
    /// `— name base64(keyhint || signature)`. The key hint is the first four bytes of the log ID,
    /// which is what verifiers match against the trusted root.
    fn checkpoint(&self, size: u64, root: &[u8; 32]) -> String {
        let body = format!("{}\n{}\n{}\n", self.origin, size, b64(root));
        let mut signed = self.key.id()[..4].to_vec();
        signed.extend(self.key.sign(body.as_bytes()));
        format!("{body}\n\u{2014} {} {}\n", self.name, b64(signed))
    }
}

// ---------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------

/// The subject alternative name a keyless certificate is issued to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum San {
    /// An `rfc822Name`, as Fulcio issues for email identities.
    Email(String),
    /// A `uniformResourceIdentifier`, as Fulcio issues for workload identities.
    Uri(String),
}

/// A keyless signing identity: what Fulcio would have read from an OIDC token.
#[derive(Clone, Debug)]
pub struct Identity {
    /// The certificate's SAN.
    pub san: San,
    /// The OIDC issuer, recorded in extensions `1.3.6.1.4.1.57264.1.1` and `.1.8`.
    pub issuer: String,
    /// Further Fulcio claims, as (n, value) for OID `1.3.6.1.4.1.57264.1.n`. Numbers 2 to 6 are
    /// written as raw strings (Fulcio's deprecated GitHub extensions), the rest as DER
    /// UTF8Strings. [`Identity::github_workflow`] fills these in as Fulcio does for GitHub.
    pub claims: Vec<(u32, String)>,
    /// Certificate notBefore, unix seconds; `None` means one minute before issuance.
    pub not_before: Option<i64>,
    /// Certificate notAfter, unix seconds; `None` means an hour after issuance.
    pub not_after: Option<i64>,
}

impl Identity {
    /// An email identity (`SAN rfc822Name`) from `issuer`.
    pub fn email(email: &str, issuer: &str) -> Identity {
        Identity::new(San::Email(email.to_string()), issuer)
    }

    /// A URI identity (`SAN uniformResourceIdentifier`) from `issuer`.
    pub fn uri(uri: &str, issuer: &str) -> Identity {
        Identity::new(San::Uri(uri.to_string()), issuer)
    }

    fn new(san: San, issuer: &str) -> Identity {
        Identity {
            san,
            issuer: issuer.to_string(),
            claims: Vec::new(),
            not_before: None,
            not_after: None,
        }
    }

    /// A GitHub Actions workflow identity as Fulcio issues it: SAN
    /// `https://github.com/{repository}/{workflow_path}@{git_ref}`, issuer
    /// [`GITHUB_ACTIONS_ISSUER`], and the GitHub claims (`.1.2`–`.1.6`, `.1.9`–`.1.22`) for a
    /// `push` run of commit `sha` on a GitHub-hosted runner in a public repository.
    ///
    /// `repository` is `owner/name`, `workflow_path` e.g. `.github/workflows/release.yml`,
    /// `git_ref` e.g. `refs/heads/main`.
    pub fn github_workflow(
        repository: &str,
        workflow_path: &str,
        git_ref: &str,
        sha: &str,
    ) -> Identity {
        let repo_uri = format!("https://github.com/{repository}");
        let signer_uri = format!("{repo_uri}/{workflow_path}@{git_ref}");
        let owner = repository.split('/').next().unwrap_or(repository);
        let workflow_name = workflow_path
            .rsplit('/')
            .next()
            .and_then(|f| f.split('.').next())
            .unwrap_or(workflow_path);
        let mut identity = Identity::uri(&signer_uri, GITHUB_ACTIONS_ISSUER);
        identity.claims = vec![
            (2, "push".to_string()),
            (3, sha.to_string()),
            (4, workflow_name.to_string()),
            (5, repository.to_string()),
            (6, git_ref.to_string()),
            (9, signer_uri.clone()),
            (10, sha.to_string()),
            (11, "github-hosted".to_string()),
            (12, repo_uri.clone()),
            (13, sha.to_string()),
            (14, git_ref.to_string()),
            (15, "100000001".to_string()),
            (16, format!("https://github.com/{owner}")),
            (17, "200000002".to_string()),
            (18, signer_uri),
            (19, sha.to_string()),
            (20, "push".to_string()),
            (21, format!("{repo_uri}/actions/runs/1/attempts/1")),
            (22, "public".to_string()),
        ];
        identity
    }

    /// Set the certificate validity window (unix seconds), e.g. to issue an expired certificate.
    pub fn valid_between(mut self, not_before: i64, not_after: i64) -> Identity {
        self.not_before = Some(not_before);
        self.not_after = Some(not_after);
        self
    }

    /// Add or replace the Fulcio claim `1.3.6.1.4.1.57264.1.n`.
    pub fn with_claim(mut self, n: u32, value: &str) -> Identity {
        self.claims.retain(|(k, _)| *k != n);
        self.claims.push((n, value.to_string()));
        self
    }

    /// The SAN value (email address or URI), as a verification policy names it.
    pub fn san_value(&self) -> &str {
        match &self.san {
            San::Email(v) | San::Uri(v) => v,
        }
    }
}

/// A signing key, with a Fulcio-like certificate chain when keyless.
#[derive(Clone)]
pub struct Credential {
    key: Key,
    /// Leaf certificate DER (keyless only).
    certificate: Option<Vec<u8>>,
    /// The issuing chain, intermediate first, root last (keyless only).
    chain: Vec<Vec<u8>>,
}

impl Credential {
    /// ECDSA P-256 / SHA-256 signature over `data`, DER-encoded.
    pub fn sign(&self, data: &[u8]) -> Vec<u8> {
        self.key.sign(data)
    }

    /// The public key as DER SubjectPublicKeyInfo.
    pub fn public_key_der(&self) -> Vec<u8> {
        self.key.spki.clone()
    }

    /// The public key as PEM (`-----BEGIN PUBLIC KEY-----`), as `cosign.pub` holds it.
    pub fn public_key_pem(&self) -> String {
        pem("PUBLIC KEY", &self.key.spki)
    }

    /// The private key as PKCS#8 PEM (unencrypted).
    pub fn private_key_pem(&self) -> String {
        self.key
            .signing
            .to_pkcs8_pem(LineEnding::LF)
            .expect("PKCS#8 encodes")
            .to_string()
    }

    /// The leaf certificate DER, for keyless signers.
    pub fn certificate_der(&self) -> Option<&[u8]> {
        self.certificate.as_deref()
    }

    /// The leaf certificate PEM, for keyless signers.
    pub fn certificate_pem(&self) -> Option<String> {
        self.certificate
            .as_deref()
            .map(|der| pem("CERTIFICATE", der))
    }

    /// The issuing chain PEM (intermediate, then root), for keyless signers; empty otherwise.
    pub fn chain_pem(&self) -> String {
        self.chain
            .iter()
            .map(|der| pem("CERTIFICATE", der))
            .collect()
    }

    /// The PEM of what verifies this signer's signatures: the certificate if keyless, else the
    /// public key. This is what Rekor v1 entries record.
    fn verifier_pem(&self) -> String {
        self.certificate_pem()
            .unwrap_or_else(|| self.public_key_pem())
    }
}

/// Media type (and shape) of a produced bundle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BundleVersion {
    /// `application/vnd.dev.sigstore.bundle+json;version=0.1`: certificate chain material;
    /// verifiers require an inclusion promise.
    V01,
    /// `application/vnd.dev.sigstore.bundle+json;version=0.2`: certificate chain material;
    /// verifiers require an inclusion proof.
    V02,
    /// `application/vnd.dev.sigstore.bundle.v0.3+json`: a single leaf certificate; verifiers
    /// require an inclusion proof.
    V03,
}

impl BundleVersion {
    /// The bundle's `mediaType`.
    pub fn media_type(self) -> &'static str {
        match self {
            BundleVersion::V01 => "application/vnd.dev.sigstore.bundle+json;version=0.1",
            BundleVersion::V02 => "application/vnd.dev.sigstore.bundle+json;version=0.2",
            BundleVersion::V03 => "application/vnd.dev.sigstore.bundle.v0.3+json",
        }
    }
}

/// How a DSSE envelope is recorded in Rekor v1.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DsseKind {
    /// `dsse 0.0.1`, as sigstore-python, sigstore-js and `gh attestation` log.
    #[default]
    Dsse,
    /// `intoto 0.0.2`, as cosign 2's `attest` logs (signature double-base64, verifier PEM).
    Intoto,
}

/// Which transparency log records the signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rekor {
    /// Rekor v1: `hashedrekord 0.0.1` (message signatures) or `dsse 0.0.1` (DSSE), with an
    /// integrated time; the bundle carries the inclusion promise (SET) and/or the inclusion proof
    /// with a signed checkpoint, as chosen.
    V1 {
        /// Include the inclusion promise (signed entry timestamp).
        promise: bool,
        /// Include the inclusion proof and checkpoint.
        proof: bool,
    },
    /// Rekor v2: `hashedrekord 0.0.2` for both message signatures and DSSE (over the PAE), no
    /// integrated time and no promise; an inclusion proof with a checkpoint signed by the v2 log
    /// key. Verifiers need an RFC 3161 timestamp alongside (set [`Options::timestamp`]).
    V2,
    /// No log entry. Such a bundle verifies only with a timestamp and a policy that skips the
    /// transparency log.
    None,
}

/// How [`Instance::sign_message`] and [`Instance::sign_dsse`] shape a bundle.
#[derive(Clone, Debug)]
pub struct Options {
    /// The bundle's media type.
    pub bundle_version: BundleVersion,
    /// The transparency log entry.
    pub rekor: Rekor,
    /// Add an RFC 3161 timestamp over the signature from the instance's TSA.
    pub timestamp: bool,
    /// The Rekor v1 entry kind for DSSE envelopes (ignored for message signatures and Rekor v2).
    pub dsse_kind: DsseKind,
    /// The Rekor v1 integrated time and the TSA's genTime, unix seconds; `None` means now.
    /// Verifiers reject times in the future, and times before [`Instance::valid_from`] (a year
    /// before the instance was made) fall outside the log and TSA keys' validity.
    pub integrated_time: Option<i64>,
}

impl Default for Options {
    /// A v0.3 bundle with a Rekor v1 entry carrying both proof and promise, no timestamp.
    fn default() -> Options {
        Options {
            bundle_version: BundleVersion::V03,
            rekor: Rekor::V1 {
                promise: true,
                proof: true,
            },
            timestamp: false,
            dsse_kind: DsseKind::Dsse,
            integrated_time: None,
        }
    }
}

impl Options {
    /// A bundle of `version` with a Rekor v1 entry carrying proof and promise.
    pub fn v1(version: BundleVersion) -> Options {
        Options {
            bundle_version: version,
            ..Options::default()
        }
    }

    /// A v0.3 bundle with a Rekor v2 entry and an RFC 3161 timestamp, as current Sigstore clients
    /// produce.
    pub fn rekor_v2() -> Options {
        Options {
            bundle_version: BundleVersion::V03,
            rekor: Rekor::V2,
            timestamp: true,
            dsse_kind: DsseKind::Dsse,
            integrated_time: None,
        }
    }
}

/// What cosign 2 attaches to a keyless (or key) `.sig` layer for a signed payload.
#[derive(Clone, Debug)]
pub struct Cosign2Sig {
    /// `dev.cosignproject.cosign/signature`: base64 signature over the payload.
    pub signature: String,
    /// `dev.sigstore.cosign/certificate`: the leaf certificate PEM (keyless only).
    pub certificate: Option<String>,
    /// `dev.sigstore.cosign/chain`: the issuing chain PEM (keyless only).
    pub chain: Option<String>,
    /// `dev.sigstore.cosign/bundle`: `{"SignedEntryTimestamp", "Payload": {"body",
    /// "integratedTime", "logIndex", "logID"}}` for the Rekor v1 `hashedrekord` entry.
    pub bundle: String,
}

impl Cosign2Sig {
    /// The layer annotations, in the names cosign 2 writes.
    pub fn annotations(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![("dev.cosignproject.cosign/signature", self.signature.clone())];
        if let Some(cert) = &self.certificate {
            out.push(("dev.sigstore.cosign/certificate", cert.clone()));
        }
        if let Some(chain) = &self.chain {
            out.push(("dev.sigstore.cosign/chain", chain.clone()));
        }
        out.push(("dev.sigstore.cosign/bundle", self.bundle.clone()));
        out
    }
}

/// A test Sigstore instance: Fulcio CA, CT log, Rekor v1 and v2 logs and a TSA, all in memory.
pub struct Instance {
    /// Start and end of every key's and CA's validity, unix seconds.
    valid_from: i64,
    valid_until: i64,
    fulcio_root: Ca,
    fulcio_intermediate: Ca,
    ct_log: Key,
    rekor_v1: Log,
    rekor_v2: Log,
    tsa_root: Ca,
    tsa_leaf: Ca,
    tsa_serial: u64,
}

impl Default for Instance {
    fn default() -> Instance {
        Instance::new()
    }
}

impl Instance {
    /// A fresh instance: new random keys, CAs valid from a year ago to ten years ahead.
    pub fn new() -> Instance {
        let now = now_secs();
        let (valid_from, valid_until) = (now - YEAR_SECS, now + 10 * YEAR_SECS);
        let fulcio_root = Ca::root(
            "CN=ferry-test-fulcio-root,O=ferry.test",
            valid_from,
            valid_until,
        );
        let fulcio_intermediate = fulcio_root.issue(
            "CN=ferry-test-fulcio-intermediate,O=ferry.test",
            valid_from,
            valid_until,
            ca_extensions(Some(0)),
        );
        let tsa_root = Ca::root(
            "CN=ferry-test-tsa-root,O=ferry.test",
            valid_from,
            valid_until,
        );
        let tsa_leaf = tsa_root.issue(
            "CN=ferry-test-tsa,O=ferry.test",
            valid_from,
            valid_until,
            signing_extensions(KP_TIME_STAMPING, true).to_vec(),
        );
        let mut tree_id = [0u8; 8];
        OsRng.fill_bytes(&mut tree_id);
        let tree_id = u64::from_be_bytes(tree_id) >> 2;
        Instance {
            valid_from,
            valid_until,
            fulcio_root,
            fulcio_intermediate,
            ct_log: Key::generate(),
            rekor_v1: Log::new(REKOR_V1_HOST, format!("{REKOR_V1_HOST} - {tree_id}")),
            rekor_v2: Log::new(REKOR_V2_HOST, REKOR_V2_HOST.to_string()),
            tsa_root,
            tsa_leaf,
            tsa_serial: 0,
        }
    }

    /// The `trusted_root.json` (media type
    /// `application/vnd.dev.sigstore.trustedroot+json;version=0.1`) naming this instance's
    /// Rekor v1 and v2 keys, Fulcio chain (intermediate, root), CT log key and TSA chain
    /// (leaf, root).
    pub fn trusted_root_json(&self) -> String {
        let valid_for = json!({ "start": rfc3339(self.valid_from) });
        let log = |url: &str, key: &Key| {
            json!({
                "baseUrl": url,
                "hashAlgorithm": "SHA2_256",
                "publicKey": {
                    "rawBytes": b64(&key.spki),
                    "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                    "validFor": valid_for,
                },
                "logId": { "keyId": b64(key.id()) },
            })
        };
        let chain = |certs: &[&[u8]]| {
            let certs: Vec<Value> = certs
                .iter()
                .map(|der| json!({ "rawBytes": b64(der) }))
                .collect();
            json!({ "certificates": certs })
        };
        let root = json!({
            "mediaType": TRUSTED_ROOT_MEDIA_TYPE,
            "tlogs": [
                log(&format!("https://{REKOR_V1_HOST}"), &self.rekor_v1.key),
                log(&format!("https://{REKOR_V2_HOST}"), &self.rekor_v2.key),
            ],
            "certificateAuthorities": [{
                "subject": { "organization": "ferry.test", "commonName": "ferry-test-fulcio" },
                "uri": "https://fulcio.ferry.test",
                "certChain": chain(&[&self.fulcio_intermediate.der, &self.fulcio_root.der]),
                "validFor": valid_for,
            }],
            "ctlogs": [log("https://ctfe.ferry.test/test", &self.ct_log)],
            "timestampAuthorities": [{
                "subject": { "organization": "ferry.test", "commonName": "ferry-test-tsa" },
                "uri": "https://tsa.ferry.test/api/v1/timestamp",
                "certChain": chain(&[&self.tsa_leaf.der, &self.tsa_root.der]),
                "validFor": valid_for,
            }],
        });
        serde_json::to_string_pretty(&root).expect("JSON")
    }

    /// The Fulcio root certificate, PEM.
    pub fn fulcio_root_pem(&self) -> String {
        pem("CERTIFICATE", &self.fulcio_root.der)
    }

    /// The Rekor v1 log's public key, PEM (what cosign calls the Rekor public key).
    pub fn rekor_public_key_pem(&self) -> String {
        pem("PUBLIC KEY", &self.rekor_v1.key.spki)
    }

    /// The CT log's public key, PEM.
    pub fn ctlog_public_key_pem(&self) -> String {
        pem("PUBLIC KEY", &self.ct_log.spki)
    }

    /// A keyless signer for `id`: a fresh P-256 key and a leaf certificate issued by the
    /// intermediate, as Fulcio issues them (empty subject, critical SAN, critical
    /// digitalSignature key usage, codeSigning EKU, the issuer in `.1.1` and `.1.8`, the
    /// identity's further claims) with one embedded SCT from this instance's CT log.
    pub fn keyless(&self, id: &Identity) -> Credential {
        let now = now_secs();
        let not_before = id.not_before.unwrap_or(now - 60);
        let not_after = id.not_after.unwrap_or(now + LEAF_LIFETIME_SECS);
        let key = Key::generate();

        let san = match &id.san {
            San::Email(v) => GeneralName::Rfc822Name(Ia5String::new(v).expect("ASCII email")),
            San::Uri(v) => {
                GeneralName::UniformResourceIdentifier(Ia5String::new(v).expect("ASCII URI"))
            }
        };
        let fulcio = |n: u32| ObjectIdentifier::new_unwrap(&format!("1.3.6.1.4.1.57264.1.{n}"));
        let utf8 = |s: &str| {
            Utf8StringRef::new(s)
                .expect("UTF8String")
                .to_der()
                .expect("DER")
        };
        let [key_usage, eku] = signing_extensions(KP_CODE_SIGNING, false);
        let mut extensions = vec![
            key_usage,
            eku,
            extension(
                ObjectIdentifier::new_unwrap("2.5.29.17"),
                true,
                SubjectAltName(vec![san]).to_der().expect("SAN"),
            ),
            extension(fulcio(1), false, id.issuer.as_bytes().to_vec()),
            extension(fulcio(8), false, utf8(&id.issuer)),
        ];
        let mut claims = id.claims.clone();
        claims.sort_by_key(|(n, _)| *n);
        for (n, value) in &claims {
            let der = if (2..=6).contains(n) {
                value.as_bytes().to_vec()
            } else {
                utf8(value)
            };
            extensions.push(extension(fulcio(*n), false, der));
        }

        let spec = CertSpec {
            subject: Name::default(),
            subject_key: &key,
            serial: random_serial(),
            not_before,
            not_after,
            extensions,
        };
        let issuer = self.fulcio_intermediate.issuer_ref();
        let mut tbs = tbs_certificate(&spec, &issuer);
        // RFC 6962 §3.2: the log signs the precertificate's TBS, which is the final TBS without
        // the SCT list extension; verifiers rebuild it by removing that extension.
        let precert_tbs = tbs.to_der().expect("TBS encodes");
        let sct_time_ms = (now.max(self.valid_from) as u64) * 1000;
        let sct = self.sct(&precert_tbs, sct_time_ms);
        let mut list = Vec::new();
        list.extend((sct.len() as u16 + 2).to_be_bytes());
        list.extend((sct.len() as u16).to_be_bytes());
        list.extend(&sct);
        tbs.extensions.as_mut().expect("extensions").push(extension(
            CT_PRECERT_SCTS,
            false,
            OctetString::new(list)
                .expect("SCT list")
                .to_der()
                .expect("DER"),
        ));
        let der = sign_certificate(tbs, &self.fulcio_intermediate.key);
        Credential {
            key,
            certificate: Some(der),
            chain: vec![
                self.fulcio_intermediate.der.clone(),
                self.fulcio_root.der.clone(),
            ],
        }
    }

    /// A serialized RFC 6962 `SignedCertificateTimestamp` by the CT log for a precertificate.
    fn sct(&self, precert_tbs: &[u8], timestamp_ms: u64) -> Vec<u8> {
        let issuer_key_hash = sha256(&self.fulcio_intermediate.key.spki);
        let mut signed = vec![0u8, 0u8]; // version v1, signature_type certificate_timestamp
        signed.extend(timestamp_ms.to_be_bytes());
        signed.extend(1u16.to_be_bytes()); // entry_type precert_entry
        signed.extend(issuer_key_hash);
        signed.extend(&(precert_tbs.len() as u32).to_be_bytes()[1..]); // uint24 length
        signed.extend(precert_tbs);
        signed.extend(0u16.to_be_bytes()); // no extensions
        let signature = self.ct_log.sign(&signed);

        let mut sct = vec![0u8]; // version v1
        sct.extend(self.ct_log.id());
        sct.extend(timestamp_ms.to_be_bytes());
        sct.extend(0u16.to_be_bytes()); // no extensions
        sct.extend([4u8, 3u8]); // sha256, ecdsa
        sct.extend((signature.len() as u16).to_be_bytes());
        sct.extend(signature);
        sct
    }

    /// A managed-key signer: a fresh P-256 key and no certificate.
    pub fn managed_key(&self) -> Credential {
        Credential {
            key: Key::generate(),
            certificate: None,
            chain: Vec::new(),
        }
    }

    /// A bundle (JSON) with a `messageSignature` over `artifact` by `signer`, logged as a
    /// `hashedrekord` entry, shaped by `opts`.
    pub fn sign_message(&mut self, signer: &Credential, artifact: &[u8], opts: &Options) -> String {
        let signature = signer.sign(artifact);
        let digest = sha256(artifact);
        let entry = self.log_hashedrekord(signer, &digest, &signature, opts);
        let content = json!({
            "messageSignature": {
                "messageDigest": { "algorithm": "SHA2_256", "digest": b64(digest) },
                "signature": b64(&signature),
            }
        });
        self.bundle(signer, &signature, entry, content, opts)
    }

    /// A bundle (JSON) with a `dsseEnvelope` holding `payload` signed by `signer`, logged as a
    /// `dsse 0.0.1` or `intoto 0.0.2` entry (Rekor v1, per [`Options::dsse_kind`]) or a
    /// `hashedrekord 0.0.2` entry over the PAE (Rekor v2, which is what sigstore-verify accepts
    /// for DSSE in Rekor v2).
    /// sigstore-verify accepts DSSE bundles only with an in-toto statement payload
    /// (`application/vnd.in-toto+json`) whose subject names the artifact's digest.
    pub fn sign_dsse(
        &mut self,
        signer: &Credential,
        payload_type: &str,
        payload: &[u8],
        opts: &Options,
    ) -> String {
        let pae = pae(payload_type, payload);
        let signature = signer.sign(&pae);
        let envelope = json!({
            "payload": b64(payload),
            "payloadType": payload_type,
            "signatures": [{ "sig": b64(&signature), "keyid": "" }],
        });
        let envelope_hash = hex::encode(sha256(canonical(&envelope).as_bytes()));
        let payload_hash = hex::encode(sha256(payload));
        let entry = match opts.rekor {
            Rekor::V1 { .. } if opts.dsse_kind == DsseKind::Intoto => {
                let body = json!({
                    "apiVersion": "0.0.2",
                    "kind": "intoto",
                    "spec": {
                        "content": {
                            "envelope": {
                                "payloadType": payload_type,
                                "signatures": [{
                                    "publicKey": b64(signer.verifier_pem()),
                                    "sig": b64(b64(&signature)),
                                }],
                            },
                            "hash": { "algorithm": "sha256", "value": envelope_hash },
                            "payloadHash": { "algorithm": "sha256", "value": payload_hash },
                        },
                    },
                });
                self.log_entry(canonical(&body).into_bytes(), "intoto", "0.0.2", opts)
            }
            Rekor::V1 { .. } => {
                let body = json!({
                    "apiVersion": "0.0.1",
                    "kind": "dsse",
                    "spec": {
                        "envelopeHash": { "algorithm": "sha256", "value": envelope_hash },
                        "payloadHash": { "algorithm": "sha256", "value": payload_hash },
                        "signatures": [{
                            "signature": b64(&signature),
                            "verifier": b64(signer.verifier_pem()),
                        }],
                    },
                });
                self.log_entry(canonical(&body).into_bytes(), "dsse", "0.0.1", opts)
            }
            Rekor::V2 | Rekor::None => {
                self.log_hashedrekord(signer, &sha256(&pae), &signature, opts)
            }
        };
        self.bundle(
            signer,
            &signature,
            entry,
            json!({ "dsseEnvelope": envelope }),
            opts,
        )
    }

    /// Signature, certificate, chain and `dev.sigstore.cosign/bundle` annotation for a cosign 2
    /// `.sig` layer whose blob is `payload` (the simple-signing JSON), logged as a Rekor v1
    /// `hashedrekord 0.0.1` entry over SHA-256 of the payload, integrated now.
    pub fn cosign2_sig_annotations(&mut self, signer: &Credential, payload: &[u8]) -> Cosign2Sig {
        let signature = signer.sign(payload);
        let integrated_time = now_secs();
        let body = self.hashedrekord_v1_body(signer, &sha256(payload), &signature);
        let logged = self.rekor_v1.append(&body);
        let log_id = self.rekor_v1.key.id();
        let set = self.inclusion_promise(&body, integrated_time, logged.index, &log_id);
        let bundle = json!({
            "SignedEntryTimestamp": b64(set),
            "Payload": {
                "body": b64(&body),
                "integratedTime": integrated_time,
                "logIndex": logged.index,
                "logID": hex::encode(log_id),
            },
        });
        Cosign2Sig {
            signature: b64(&signature),
            certificate: signer.certificate_pem(),
            chain: signer.certificate.as_ref().map(|_| signer.chain_pem()),
            bundle: bundle.to_string(),
        }
    }

    /// What cosign 2's `attest` pushes as a `.att` layer: the DSSE envelope (the layer's bytes)
    /// and, keyless, the certificate, chain and Rekor bundle (`intoto 0.0.2`) as annotations.
    pub fn cosign2_att(
        &mut self,
        signer: &Credential,
        payload_type: &str,
        payload: &[u8],
    ) -> (Vec<u8>, Vec<(&'static str, String)>) {
        let opts = Options {
            bundle_version: BundleVersion::V01,
            rekor: Rekor::V1 {
                promise: true,
                proof: false,
            },
            dsse_kind: DsseKind::Intoto,
            ..Options::default()
        };
        let bundle: Value =
            serde_json::from_str(&self.sign_dsse(signer, payload_type, payload, &opts))
                .expect("JSON");
        let entry = &bundle["verificationMaterial"]["tlogEntries"][0];
        let number = |v: &Value| {
            v.as_str()
                .and_then(|s| s.parse::<i64>().ok())
                .expect("a number")
        };
        let log_id = B64
            .decode(entry["logId"]["keyId"].as_str().expect("log id"))
            .expect("base64");
        let rekor = json!({
            "SignedEntryTimestamp": entry["inclusionPromise"]["signedEntryTimestamp"],
            "Payload": {
                "body": entry["canonicalizedBody"],
                "integratedTime": number(&entry["integratedTime"]),
                "logIndex": number(&entry["logIndex"]),
                "logID": hex::encode(log_id),
            },
        });
        let mut annotations = vec![("dev.sigstore.cosign/bundle", rekor.to_string())];
        if let Some(cert) = signer.certificate_pem() {
            annotations.push(("dev.sigstore.cosign/certificate", cert));
            annotations.push(("dev.sigstore.cosign/chain", signer.chain_pem()));
        }
        (bundle["dsseEnvelope"].to_string().into_bytes(), annotations)
    }

    /// An RFC 3161 `TimeStampResp` (status granted, with the token) from the instance's TSA over
    /// SHA-256 of `signature`, stamped `gen_time` (unix seconds), as bundles carry it.
    pub fn timestamp(&mut self, signature: &[u8], gen_time: i64) -> Vec<u8> {
        self.tsa_serial += 1;
        let seq = |content: Vec<u8>| {
            Any::new(Tag::Sequence, content)
                .expect("SEQUENCE")
                .to_der()
                .expect("DER")
        };
        let sha256_alg = AlgorithmIdentifierOwned {
            oid: SHA256_OID,
            parameters: None,
        };

        // TSTInfo ::= SEQUENCE { version, policy, messageImprint, serialNumber, genTime, .. }
        let mut tst = der(&1u8);
        tst.extend(der(&TSA_POLICY));
        let mut imprint = der(&sha256_alg);
        imprint.extend(der(
            &OctetString::new(sha256(signature).to_vec()).expect("imprint")
        ));
        tst.extend(seq(imprint));
        tst.extend(der(&self.tsa_serial));
        tst.extend(der(
            &GeneralizedTime::from_unix_duration(unix(gen_time)).expect("genTime")
        ));
        let tst_info = seq(tst);

        // signingCertificateV2 ::= SEQUENCE { certs SEQUENCE OF ESSCertIDv2 { certHash } }
        let ess_cert_id = seq(der(
            &OctetString::new(sha256(&self.tsa_leaf.der).to_vec()).expect("hash")
        ));
        let signing_cert_v2 = seq(seq(ess_cert_id));
        let attribute = |oid: ObjectIdentifier, value_der: Vec<u8>| Attribute {
            oid,
            values: SetOfVec::try_from(vec![Any::from_der(&value_der).expect("attribute value")])
                .expect("SET OF"),
        };
        let signed_attrs = SetOfVec::try_from(vec![
            attribute(ID_CONTENT_TYPE, der(&ID_CT_TST_INFO)),
            attribute(
                ID_MESSAGE_DIGEST,
                der(&OctetString::new(sha256(&tst_info).to_vec()).expect("digest")),
            ),
            attribute(ID_SIGNING_CERTIFICATE_V2, signing_cert_v2),
        ])
        .expect("attributes");
        let signature_value = self.tsa_leaf.key.sign(&der(&signed_attrs));

        let signer_info = SignerInfo {
            version: CmsVersion::V1,
            sid: SignerIdentifier::IssuerAndSerialNumber(cms::cert::IssuerAndSerialNumber {
                issuer: self.tsa_root.name.clone(),
                serial_number: self.tsa_leaf.serial.clone(),
            }),
            digest_alg: sha256_alg.clone(),
            signed_attrs: Some(signed_attrs),
            signature_algorithm: ecdsa_sha256(),
            signature: OctetString::new(signature_value).expect("signature"),
            unsigned_attrs: None,
        };
        let leaf = Certificate::from_der(&self.tsa_leaf.der).expect("TSA certificate");
        let signed_data = SignedData {
            version: CmsVersion::V3,
            digest_algorithms: SetOfVec::try_from(vec![sha256_alg]).expect("digest algorithms"),
            encap_content_info: EncapsulatedContentInfo {
                econtent_type: ID_CT_TST_INFO,
                econtent: Some(Any::new(Tag::OctetString, tst_info).expect("eContent")),
            },
            certificates: Some(CertificateSet(
                SetOfVec::try_from(vec![CertificateChoices::Certificate(leaf)])
                    .expect("certificates"),
            )),
            crls: None,
            signer_infos: SignerInfos(SetOfVec::try_from(vec![signer_info]).expect("signer infos")),
        };
        let token = der(&ContentInfo {
            content_type: ID_SIGNED_DATA,
            content: Any::from_der(&der(&signed_data)).expect("SignedData"),
        });
        // TimeStampResp ::= SEQUENCE { status PKIStatusInfo, timeStampToken }
        let mut resp = seq(der(&0u8));
        resp.extend(token);
        seq(resp)
    }

    // -----------------------------------------------------------------------------------------

    fn hashedrekord_v1_body(
        &self,
        signer: &Credential,
        digest: &[u8; 32],
        signature: &[u8],
    ) -> Vec<u8> {
        let body = json!({
            "apiVersion": "0.0.1",
            "kind": "hashedrekord",
            "spec": {
                "data": { "hash": { "algorithm": "sha256", "value": hex::encode(digest) } },
                "signature": {
                    "content": b64(signature),
                    "publicKey": { "content": b64(signer.verifier_pem()) },
                },
            },
        });
        canonical(&body).into_bytes()
    }

    /// Log a `hashedrekord` entry for `signature` over the data with SHA-256 `digest`, in the
    /// log `opts` names (0.0.1 for Rekor v1, 0.0.2 for Rekor v2).
    fn log_hashedrekord(
        &mut self,
        signer: &Credential,
        digest: &[u8; 32],
        signature: &[u8],
        opts: &Options,
    ) -> Option<Value> {
        match opts.rekor {
            Rekor::None => None,
            Rekor::V1 { .. } => {
                let body = self.hashedrekord_v1_body(signer, digest, signature);
                self.log_entry(body, "hashedrekord", "0.0.1", opts)
            }
            Rekor::V2 => {
                let verifier = match &signer.certificate {
                    Some(cert) => json!({
                        "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                        "x509Certificate": { "rawBytes": b64(cert) },
                    }),
                    None => json!({
                        "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                        "publicKey": { "rawBytes": b64(&signer.key.spki) },
                    }),
                };
                let body = json!({
                    "apiVersion": "0.0.2",
                    "kind": "hashedrekord",
                    "spec": {
                        "hashedRekordV002": {
                            "data": { "algorithm": "SHA2_256", "digest": b64(digest) },
                            "signature": { "content": b64(signature), "verifier": verifier },
                        },
                    },
                });
                self.log_entry(canonical(&body).into_bytes(), "hashedrekord", "0.0.2", opts)
            }
        }
    }

    /// Append `body` to the log `opts.rekor` names and build the bundle's `tlogEntries` item.
    fn log_entry(
        &mut self,
        body: Vec<u8>,
        kind: &str,
        version: &str,
        opts: &Options,
    ) -> Option<Value> {
        let (v1, promise, proof) = match opts.rekor {
            Rekor::None => return None,
            Rekor::V1 { promise, proof } => (true, promise, proof),
            Rekor::V2 => (false, false, true),
        };
        let log = if v1 {
            &mut self.rekor_v1
        } else {
            &mut self.rekor_v2
        };
        let logged = log.append(&body);
        let log_id = log.key.id();
        let mut entry = json!({
            "logIndex": logged.index.to_string(),
            "logId": { "keyId": b64(log_id) },
            "kindVersion": { "kind": kind, "version": version },
        });
        if v1 {
            let integrated_time = opts.integrated_time.unwrap_or_else(now_secs);
            entry["integratedTime"] = integrated_time.to_string().into();
            if promise {
                let set = self.inclusion_promise(&body, integrated_time, logged.index, &log_id);
                entry["inclusionPromise"] = json!({ "signedEntryTimestamp": b64(set) });
            }
        }
        if proof {
            let hashes: Vec<String> = logged.hashes.iter().map(b64).collect();
            entry["inclusionProof"] = json!({
                "logIndex": logged.index.to_string(),
                "rootHash": b64(logged.root),
                "treeSize": logged.tree_size.to_string(),
                "hashes": hashes,
                "checkpoint": { "envelope": logged.checkpoint },
            });
        }
        entry["canonicalizedBody"] = b64(&body).into();
        Some(entry)
    }

    /// The Rekor v1 signed entry timestamp: the log key's signature over the canonical JSON of
    /// `{body, integratedTime, logID, logIndex}`.
    fn inclusion_promise(
        &self,
        body: &[u8],
        integrated_time: i64,
        index: u64,
        log_id: &[u8; 32],
    ) -> Vec<u8> {
        let payload = json!({
            "body": b64(body),
            "integratedTime": integrated_time,
            "logID": hex::encode(log_id),
            "logIndex": index,
        });
        self.rekor_v1.key.sign(canonical(&payload).as_bytes())
    }

    fn bundle(
        &mut self,
        signer: &Credential,
        signature: &[u8],
        entry: Option<Value>,
        content: Value,
        opts: &Options,
    ) -> String {
        let material = match (&signer.certificate, opts.bundle_version) {
            (None, _) => json!({ "publicKey": { "hint": b64(sha256(&signer.key.spki)) } }),
            (Some(cert), BundleVersion::V03) => json!({ "certificate": { "rawBytes": b64(cert) } }),
            (Some(cert), _) => {
                let certs: Vec<Value> = std::iter::once(cert)
                    .chain(&signer.chain)
                    .map(|der| json!({ "rawBytes": b64(der) }))
                    .collect();
                json!({ "x509CertificateChain": { "certificates": certs } })
            }
        };
        let mut material = material;
        material["tlogEntries"] = Value::Array(entry.into_iter().collect());
        material["timestampVerificationData"] = if opts.timestamp {
            let gen_time = opts.integrated_time.unwrap_or_else(now_secs);
            let token = self.timestamp(signature, gen_time);
            json!({ "rfc3161Timestamps": [{ "signedTimestamp": b64(token) }] })
        } else {
            json!({})
        };
        let mut bundle = json!({
            "mediaType": opts.bundle_version.media_type(),
            "verificationMaterial": material,
        });
        if let (Value::Object(bundle), Value::Object(content)) = (&mut bundle, content) {
            bundle.extend(content);
        }
        serde_json::to_string_pretty(&bundle).expect("JSON")
    }

    /// The in-toto statement (v1) naming `artifact` by SHA-256 under `name`, with an empty
    /// predicate of `predicate_type`: a payload [`Instance::sign_dsse`] can sign and
    /// sigstore-verify binds to `artifact`.
    pub fn in_toto_statement(name: &str, artifact: &[u8], predicate_type: &str) -> Vec<u8> {
        json!({
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{ "name": name, "digest": { "sha256": hex::encode(sha256(artifact)) } }],
            "predicateType": predicate_type,
            "predicate": {},
        })
        .to_string()
        .into_bytes()
    }

    /// The in-toto payload type.
    pub const IN_TOTO: &'static str = IN_TOTO_PAYLOAD_TYPE;

    /// Unix seconds from which this instance's keys and CAs are valid.
    pub fn valid_from(&self) -> i64 {
        self.valid_from
    }

    /// Unix seconds until which this instance's CAs are valid.
    pub fn valid_until(&self) -> i64 {
        self.valid_until
    }
}

/// DSSE pre-authentication encoding: `DSSEv1 len(type) type len(payload) payload`.
fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merkle_paths_verify_for_every_leaf() {
        for n in 1..20usize {
            let leaves: Vec<[u8; 32]> = (0..n).map(|i| leaf_hash(&[i as u8])).collect();
            let root = tree_hash(&leaves);
            for m in 0..n {
                let path = audit_path(m, &leaves);
                // RFC 9162 §2.1.3.2 verification.
                let (mut fnode, mut snode) = (m, n - 1);
                let mut r = leaves[m];
                for p in &path {
                    if fnode % 2 == 1 || fnode == snode {
                        r = node_hash(p, &r);
                        while fnode % 2 == 0 && fnode != 0 {
                            fnode >>= 1;
                            snode >>= 1;
                        }
                    } else {
                        r = node_hash(&r, p);
                    }
                    fnode >>= 1;
                    snode >>= 1;
                }
                assert_eq!(r, root, "n={n} m={m}");
            }
        }
    }
}
