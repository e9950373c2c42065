//! Fuzz seeds as regression tests: every input under `fuzz/seeds/TARGET/` (and a local
//! `fuzz/corpus/TARGET/` or `fuzz/artifacts/TARGET/` when cargo-fuzz left one) runs through the
//! same property function its fuzz target runs, in the ordinary test build. Coverage-guided
//! fuzzing itself runs in the scheduled workflow `.github/workflows/fuzz.yml`.

use std::path::{Path, PathBuf};

fn inputs(target: &str) -> Vec<PathBuf> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut files = Vec::new();
    for dir in ["seeds", "corpus", "artifacts"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(dir).join(target)) else {
            continue;
        };
        files.extend(
            entries
                .filter_map(|e| Some(e.ok()?.path()))
                .filter(|p| p.is_file()),
        );
    }
    files.sort();
    files
}

#[test]
fn every_seed_of_every_fuzz_target_holds() {
    for (target, check) in ferry::fuzzing::TARGETS {
        let seeds = inputs(target);
        assert!(!seeds.is_empty(), "fuzz/seeds/{target} has no seeds");
        for seed in &seeds {
            let data = std::fs::read(seed).expect("a readable seed");
            let outcome = std::panic::catch_unwind(|| check(&data));
            assert!(
                outcome.is_ok(),
                "fuzz target {target} fails on {}",
                seed.display()
            );
        }
        eprintln!("fuzz target {target}: {} inputs hold", seeds.len());
    }
}

#[test]
fn every_fuzz_target_has_a_harness_and_seeds() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut harnesses: Vec<String> = std::fs::read_dir(fuzz.join("fuzz_targets"))
        .expect("fuzz/fuzz_targets")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            Some(name.strip_suffix(".rs")?.to_string())
        })
        .collect();
    harnesses.sort();
    let mut known: Vec<String> = ferry::fuzzing::TARGETS
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    known.sort();
    assert_eq!(
        harnesses, known,
        "fuzz/fuzz_targets and ferry::fuzzing::TARGETS disagree"
    );
}
