//! ferry's integration tests, one binary (`cargo test --test it`): one link step, and the test
//! bed in `tests/support` compiled once (and once more for `tests/kill`, which runs alone). Each
//! module was its own test binary before; names are `module::test`, so
//! `cargo test --test it faults::` runs one area.
//!
//! Command line and repository files (no registries):
//! - `completions`: shell completions and man pages from the clap definition.
//! - `docs`: every `docs/` page linked from README.md, every relative link and anchor resolves.
//! - `schema`: the committed policy JSON Schemas match the code and the example policies.
//! - `fuzz_seeds`: every committed fuzz seed through its target's property function.
//! - `conformance`: the vendored sigstore-conformance suite's harness against `ferry verify-bundle`,
//!   offline (70 cases, each as a file and as a digest).
//! - `layering`: no import circles among `src/` modules; only the front ends import `report`.
//! - `terminal`: log colour only on a terminal (`NO_COLOR`, `CLICOLOR_FORCE`); a closed stdout
//!   (`ferry demo | head -1`) ends ferry quietly with exit 0.
//! - `progress`: progress off a terminal (a plain line every 10 s, through a bandwidth-limited
//!   proxy: about a minute, mostly waiting) and on one (tmux at 80 and 200 columns: labelled
//!   bars that never wrap and are cleared when done; skipped without tmux).
//!
//! Against real registries (Debian's docker-registry on loopback, skopeo as a second client):
//! - `copy`: `ferry copy` in every auth mode, layouts, fan-out, byte-exact results.
//! - `mirror`: `ferry mirror` at scale, incremental re-runs, shards, `existing: backup`.
//! - `promote`: promote, status, history and rollback across plain, Basic and token auth.
//! - `prune`: retention with staging and prod in place: a dry run sends no DELETE, the prune
//!   leaves exactly the expected set (images go whole, signatures and fallback entries with
//!   them), status and rollback still work, skopeo pulls every kept image.
//! - `release`: a 4-image release to 3 targets (a gate refusing one image writes nothing, a
//!   target failing mid-copy moves no tag, rerun, rollback of all four) and a 10-image no-op
//!   rerun counted at one request per image per target.
//! - `gates`: Sigstore bundles and cosign 2 keyless signatures from a test Sigstore instance,
//!   verified against the policy's identity and trusted root; forgeries refused, nothing written.
//! - `referrers`: attestations, signatures and OCI 1.1 referrers travel with the image; gates.
//! - `verbs`: `inspect`, `digest`, `tags`, `login`/`logout` and one-off `--creds`: raw bytes
//!   and digests equal skopeo's, tag lists follow every page, logins are checked before they
//!   are stored (config.json or a credential helper), passwords never printed.
//! - `cloud`: ECR through moto, Google through a local OAuth endpoint, Docker Hub rate limits.
//!
//! Failure and resource behaviour:
//! - `faults`: a scriptable proxy injects errors, lies, redirects, cuts and huge bodies.
//! - `kill` (its own binary, `tests/kill`: it needs the machine to itself): SIGKILL at random
//!   moments never leaves a tag on incomplete content.
//! - `memory`: a 1 GiB layer to three registries keeps peak RSS under 100 MiB.
//!
//! The test bed, `support` (`tests/support`, shared with the benches by `#[path]`): registries,
//! token, OAuth and moto servers, the fault proxy, skopeo, and `Bed` (a scratch Docker config,
//! generated images, ferry as a process). Every helper lives there once.
//!
//! All of these tests share one process and run in parallel, so none may touch process-wide
//! state: no `std::env::set_var`, no current-directory change, no fixed port (servers bind port
//! 0), nothing a test must be alone for. What a run of ferry needs goes on its `Command`.

#[path = "../support/mod.rs"]
mod support;

mod cloud;
mod completions;
mod conformance;
mod copy;
mod docs;
mod faults;
mod fuzz_seeds;
mod gates;
mod layering;
mod memory;
mod mirror;
mod progress;
mod promote;
mod prune;
mod referrers;
mod release;
mod schema;
mod terminal;
mod verbs;
