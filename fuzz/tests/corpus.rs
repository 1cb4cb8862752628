//! Every input kept in `fuzz/corpus/<target>/` (seeds, and each input that once crashed a
//! target) runs through its target on every `cargo test`, without libFuzzer: a fixed crash
//! stays fixed, and a target that cannot run at all fails here first.

use std::path::Path;

#[test]
fn every_corpus_input_runs_through_its_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for target in outpost_fuzz::TARGETS {
        let dir = root.join(target.name);
        let mut inputs: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e} (every target keeps a corpus)", dir.display()))
            .map(|entry| entry.expect("corpus directory entry").path())
            .collect();
        inputs.sort();
        assert!(!inputs.is_empty(), "{} is empty", dir.display());
        for input in inputs {
            let data = std::fs::read(&input).expect("corpus file is readable");
            (target.run)(&data);
        }
    }
}

#[test]
fn every_target_has_a_binary() {
    let bins = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz_targets");
    for target in outpost_fuzz::TARGETS {
        let bin = bins.join(format!("{}.rs", target.name));
        assert!(bin.is_file(), "{} is missing", bin.display());
    }
}
