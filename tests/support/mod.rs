//! Test bed: real registries (Debian's docker-registry) started on loopback ports in several auth modes, a token server, TLS material, and skopeo as an independent client.
#![allow(dead_code)]

pub mod bed;
pub mod faultproxy;
pub mod moto;
pub mod oauth;
pub mod registry;
pub mod skopeo;
pub mod standin;
pub mod tls;
pub mod tokenserver;

use std::path::PathBuf;
use std::process::Command;

/// The ferry binary built for these tests.
pub fn ferry_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ferry"))
}

/// The ferry binary as a bare command: no test bed, for what reads no registry credentials
/// (completions, man pages, schemas, the demo). [`bed::Bed::command`] isolates the rest.
pub fn ferry() -> Command {
    Command::new(ferry_bin())
}

/// The repository's root (where Cargo.toml is): README.md, `docs/`, `policies/`, `examples/`.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}
