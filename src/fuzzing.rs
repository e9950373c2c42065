//! fuzzing: the properties the fuzz targets check, as plain functions, so that `cargo fuzz` runs
//! them coverage-guided and the test suite runs them over every committed seed on each build.

use std::sync::OnceLock;

use bytes::Bytes;
use serde_json::Value;

use crate::digest::Digest;
use crate::gate::{Evidence, DSSE, IN_TOTO};
use crate::manifest::{filter_index, Manifest, Platform};
use crate::policy::{Overrides, Policies};
use crate::reference::ImageRef;
use crate::sigstore::{self, Artifact, Signer, SubjectMatch, TrustRoot};

/// Image references and digests as users type them: parsing never panics, and what parses
/// prints back to something that parses to the same reference.
pub fn reference(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(d) = Digest::parse(s) {
        assert_eq!(d.as_str(), s, "a digest prints as it was given");
        assert_eq!(d.hex().len(), 64);
    }
    if let Ok(r) = ImageRef::parse(s) {
        let printed = r.to_string();
        let again = ImageRef::parse(&printed).expect("a printed reference parses again");
        assert_eq!(again.to_string(), printed, "printing is stable");
        // Paths built from a reference never escape: digests are strict hex.
        if let Some(d) = r.digest() {
            assert!(d.hex().bytes().all(|b| b.is_ascii_hexdigit()));
        }
    }
}

/// The Content-Types a manifest fuzz input may claim, chosen by its first byte.
const MANIFEST_TYPES: [Option<&str>; 4] = [
    None,
    Some("application/vnd.oci.image.index.v1+json"),
    Some("application/vnd.oci.image.manifest.v1+json"),
    Some("application/vnd.docker.distribution.manifest.v1+prettyjws"),
];

/// Manifests and indexes as registries serve them (the first byte picks a Content-Type): parsing
/// never panics; what parses keeps its exact bytes and digest; platform filtering and the
/// referrer helpers cope with whatever parsed.
pub fn manifest(data: &[u8]) {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let content_type = MANIFEST_TYPES[selector as usize % MANIFEST_TYPES.len()];
    let bytes = Bytes::copy_from_slice(body);
    let Ok(m) = Manifest::parse(bytes.clone(), content_type) else {
        return;
    };
    assert_eq!(m.bytes, bytes, "never re-serialised");
    assert_eq!(m.digest, Digest::of(body));
    let amd64 = Platform::parse("linux/amd64").expect("a valid platform");
    if let Ok(Some(filtered)) = filter_index(&m, &[amd64]) {
        let _ = Manifest::parse(filtered, Some(&m.media_type));
    }
    let _ = crate::referrers::subjects(&m, false);
    let _ = crate::referrers::describe(&m);
    let _ = crate::referrers::merge_fallback(Some(&m), &[]);
}

/// The policy loader: the input, split at the first NUL into an environment policy
/// (`prod.yaml`) and `registries.yaml`, loads or fails with an error, never a panic.
pub fn policy(data: &[u8]) {
    let (env, registries) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::write(dir.path().join("prod.yaml"), env).expect("write");
    if let Some(r) = registries {
        std::fs::write(dir.path().join("registries.yaml"), r).expect("write");
    }
    if let Ok(p) = Policies::load(dir.path(), &Overrides::default()) {
        let _ = p.env("prod");
    }
}

/// The layer media types a bundle fuzz input is filed under, as `gate::gather` meets them.
const EVIDENCE_TYPES: [&str; 3] = [
    "application/vnd.dev.sigstore.bundle.v0.3+json",
    DSSE,
    IN_TOTO,
];

/// Sigstore bundles, DSSE envelopes, in-toto statements and cosign 2 signature annotations as a
/// registry or a file serves them: parsing never panics and refuses in one line; what parses
/// yields its DSSE payload and goes through verification against the embedded public-good root
/// to a one-line verdict; a layer is filed as evidence exactly once, its reason in one line;
/// a JSON object, taken as a cosign 2 layer's annotations, becomes a bundle or a one-line refusal.
pub fn bundle(data: &[u8]) {
    match sigstore::parse_bundle(data) {
        Err(e) => assert!(!e.contains('\n'), "a multi-line parse error: {e:?}"),
        Ok(b) => check_bundle(&b),
    }

    let empty = Value::Object(Default::default());
    let bytes = Bytes::copy_from_slice(data);
    for media_type in EVIDENCE_TYPES {
        file_once(media_type, &empty, &bytes);
    }

    // The input as a cosign 2 `.sig` layer's annotations (the payload is the input itself).
    let Ok(annotations @ Value::Object(_)) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    file_once(EVIDENCE_TYPES[0], &annotations, &bytes);
    match sigstore::cosign2::bundle(&annotations, data) {
        Ok(None) => {}
        Err(e) => assert!(!e.contains('\n'), "a multi-line cosign 2 error: {e:?}"),
        Ok(Some(json)) => match sigstore::parse_bundle(json.as_bytes()) {
            Err(e) => assert!(!e.contains('\n'), "a multi-line parse error: {e:?}"),
            Ok(b) => check_bundle(&b),
        },
    }
}

/// A parsed bundle's payload, and its verification to a verdict (it cannot verify: no artifact
/// has the all-zero digest, and nobody can sign for the public-good root here).
fn check_bundle(b: &sigstore::ParsedBundle) {
    if let Some((payload_type, payload)) = b.dsse_payload() {
        let _ = sigstore::pae(payload_type, payload);
    }
    static ROOT: OnceLock<TrustRoot> = OnceLock::new();
    let root = ROOT.get_or_init(TrustRoot::public_good);
    let signer = Signer::Identity {
        issuer: sigstore::GITHUB_ISSUER.to_owned(),
        subject: SubjectMatch::Exact(
            "https://github.com/acme/api/.github/workflows/release.yml@refs/heads/main".to_owned(),
        ),
    };
    let zero = "0".repeat(64);
    if let Err(e) = sigstore::verify(root, b, Artifact::Sha256(&zero), &signer) {
        assert!(!e.contains('\n'), "a multi-line verification error: {e:?}");
    }
}

/// Files one layer as evidence: it lands exactly once (a signature, a statement or a reason), and
/// a reason is one line.
fn file_once(media_type: &str, annotations: &Value, bytes: &Bytes) {
    let mut ev = Evidence::default();
    ev.add(media_type, annotations, bytes.clone());
    assert_eq!(
        ev.signatures.len() + ev.statements.len() + ev.unreadable.len(),
        1,
        "a layer is filed exactly once"
    );
    for why in &ev.unreadable {
        assert!(!why.contains('\n'), "a multi-line reason: {why:?}");
    }
}

/// A fuzz target's property: it panics on an input that breaks it.
pub type Property = fn(&[u8]);

/// The fuzz targets by name, as `fuzz/fuzz_targets/NAME.rs` and `fuzz/seeds/NAME/` name them.
pub const TARGETS: [(&str, Property); 4] = [
    ("reference", reference),
    ("manifest", manifest),
    ("policy", policy),
    ("bundle", bundle),
];
