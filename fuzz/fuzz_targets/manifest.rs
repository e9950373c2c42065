//! Fuzz target: manifests and indexes as registries serve them, bytes plus a Content-Type
//! (`ferry::fuzzing::manifest` says what must hold; the test suite runs it over
//! `fuzz/seeds/manifest` too).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferry::fuzzing::manifest(data));
