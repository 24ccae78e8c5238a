//! Replays the committed fuzz corpora (`fuzz/corpus/<target>/`) through the
//! targets' bodies on stable, one test per target: every input that once
//! found a bug, and the inputs that cover what the fuzzer reached, keep
//! passing. A failure names the target and the file (reproduce it with
//! `cargo fuzz run <target> <file>` in fuzz/, or this test).

use std::path::{Path, PathBuf};

fn corpus(target: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("the repository");
    let dir = root.join("fuzz/corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("the corpus of {target} is missing at {}: {e}", dir.display()))
        .map(|entry| entry.expect("a corpus entry").path())
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "the corpus of {target} at {} is empty",
        dir.display()
    );
    files
}

fn replay(target: &str) {
    let (_, body) = inferd_fuzzing::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .unwrap_or_else(|| panic!("no target {target}"));
    for file in corpus(target) {
        let data = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let replayed = std::panic::catch_unwind(|| body(&data));
        assert!(replayed.is_ok(), "{target} fails on {}", file.display());
    }
}

macro_rules! replays {
    ($($target:ident),*) => {$(
        #[test]
        fn $target() {
            replay(stringify!($target));
        }
    )*};
}

replays!(payload, safetensors, config, sentencepiece, audio, image, requests);

#[test]
fn every_target_has_a_replay_test() {
    let replayed = [
        "payload",
        "safetensors",
        "config",
        "sentencepiece",
        "audio",
        "image",
        "requests",
    ];
    for (name, _) in inferd_fuzzing::TARGETS {
        assert!(replayed.contains(name), "{name} is not replayed");
    }
}
