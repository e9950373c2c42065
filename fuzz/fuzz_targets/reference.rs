//! Fuzz target: image references and digests as users type them (`ferry::fuzzing::reference`
//! says what must hold; the test suite runs it over `fuzz/seeds/reference` too).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferry::fuzzing::reference(data));
