//! Fuzz target: Sigstore bundles, DSSE envelopes, in-toto statements and cosign 2 signature
//! annotations as registries serve them (`ferry::fuzzing::bundle` says what must hold; the test
//! suite runs it over `fuzz/seeds/bundle` too).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferry::fuzzing::bundle(data));
