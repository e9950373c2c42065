//! ferry's kill test, in a test binary of its own (`cargo test --test kill`), run after `it`.
//!
//! It aims SIGKILLs inside runs it first times undisturbed, so it needs the machine to itself:
//! inside `it`, next to the gigabyte copies of `memory` and `faults`, the same test took 175 s
//! instead of 74 s on two cores, and with four test threads its kills stopped landing mid-run.
//! Everything else stays in `it`; the test bed is the same `tests/support`.
//!
//! - `kill`: SIGKILL at random moments of copy, promote and mirror never leaves a tag on
//!   incomplete content, and every rerun completes.
//! - `prune`: SIGKILL at random moments of `ferry prune` never leaves a listed tag naming a
//!   deleted or incomplete manifest, and every rerun completes and cleans up.

#[path = "../support/mod.rs"]
mod support;

mod kill;
mod prune;

/// Held by each kill test for its whole run: they aim kills inside runs they time undisturbed,
/// so they take turns rather than share the machine (the harness runs tests on threads).
pub static ALONE: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Takes the machine for one kill test (a test that panicked before does not poison it).
pub fn alone() -> std::sync::MutexGuard<'static, ()> {
    ALONE.lock().unwrap_or_else(|e| e.into_inner())
}
