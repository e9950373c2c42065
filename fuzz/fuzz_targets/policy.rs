//! Fuzz target: the policy loader, on an environment policy and `registries.yaml` split at the
//! first NUL (`ferry::fuzzing::policy` says what must hold; the test suite runs it over
//! `fuzz/seeds/policy` too).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferry::fuzzing::policy(data));
