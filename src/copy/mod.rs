//! copy: copies an image DAG by digest from one store to many — plan first, then blobs (read once, fanned out), child manifests, the root, and the tag last.

pub mod attached;
pub mod client;
pub mod engine;
pub mod fanout;
pub mod plan;
pub mod progress;
pub mod request;
pub mod tag;

pub use client::Client;
pub use engine::{
    CopyOptions, CopyReport, DestReport, Engine, Resolved, DEFAULT_JOBS, DEFAULT_PER_HOST,
};
pub use plan::{plan_destination, Action, DestPlan, DestState, SourceImage};
