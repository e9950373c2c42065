//! Fuzz target: the policy loader. The input is split at the first NUL into an environment
//! policy (`prod.yaml`) and `registries.yaml`; loading must never panic, only return errors.
#![no_main]

use ferry::policy::{Overrides, Policies};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
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
});
