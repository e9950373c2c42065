//! Test bed: real registries (Debian's docker-registry) started on loopback ports in several auth modes, a token server, TLS material, and skopeo as an independent client.
#![allow(dead_code)]

pub mod bed;
pub mod faultproxy;
pub mod moto;
pub mod oauth;
pub mod registry;
pub mod skopeo;
pub mod tls;
pub mod tokenserver;

use std::path::PathBuf;

/// The ferry binary built for these tests.
pub fn ferry_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ferry"))
}
