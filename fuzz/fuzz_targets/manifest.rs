//! Fuzz target: manifests and indexes as registries serve them (bytes plus a Content-Type).
//! Parsing must never panic; what parses keeps its exact bytes and digest; platform filtering
//! and referrer helpers cope with whatever parsed.
#![no_main]

use bytes::Bytes;
use ferry::digest::Digest;
use ferry::manifest::{filter_index, Manifest, Platform};
use libfuzzer_sys::fuzz_target;

const TYPES: [Option<&str>; 4] = [
    None,
    Some("application/vnd.oci.image.index.v1+json"),
    Some("application/vnd.oci.image.manifest.v1+json"),
    Some("application/vnd.docker.distribution.manifest.v1+prettyjws"),
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let content_type = TYPES[selector as usize % TYPES.len()];
    let bytes = Bytes::copy_from_slice(body);
    let Ok(m) = Manifest::parse(bytes.clone(), content_type) else {
        return;
    };
    assert_eq!(m.bytes, bytes, "never re-serialised");
    assert_eq!(m.digest, Digest::of(body));
    let amd64 = Platform::parse("linux/amd64").unwrap();
    if let Ok(Some(filtered)) = filter_index(&m, &[amd64]) {
        let _ = Manifest::parse(filtered, Some(&m.media_type));
    }
    let _ = ferry::referrers::subjects(&m, false);
    let _ = ferry::referrers::describe(&m);
    let _ = ferry::referrers::merge_fallback(Some(&m), &[]);
});
