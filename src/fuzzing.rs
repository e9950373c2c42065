//! fuzzing: the properties the fuzz targets check, as plain functions, so that `cargo fuzz` runs
//! them coverage-guided and the test suite runs them over every committed seed on each build.

use bytes::Bytes;

use crate::digest::Digest;
use crate::manifest::{filter_index, Manifest, Platform};
use crate::policy::{Overrides, Policies};
use crate::reference::ImageRef;

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

/// A fuzz target's property: it panics on an input that breaks it.
pub type Property = fn(&[u8]);

/// The fuzz targets by name, as `fuzz/fuzz_targets/NAME.rs` and `fuzz/seeds/NAME/` name them.
pub const TARGETS: [(&str, Property); 3] = [
    ("reference", reference),
    ("manifest", manifest),
    ("policy", policy),
];
