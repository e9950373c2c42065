//! ferry: move container images between registries by digest, byte-exact, read once and fanned out.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod auth;
pub mod cli;
pub mod cloud;
pub mod copy;
pub mod credential;
pub mod demo;
pub mod digest;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod gate;
pub mod generate;
pub mod history;
pub mod inspect;
pub mod login;
pub mod manifest;
pub mod mirror;
pub mod outcome;
pub mod pattern;
pub mod policy;
pub mod promote;
pub mod prune;
pub mod reference;
pub mod referrers;
pub mod registry;
pub mod registry_error;
pub mod report;
pub mod retention;
pub mod sample;
pub mod sigstore;
pub mod transport;

pub use error::{Error, Result};
