//! What the targets that load models share: the fixture models (tiny
//! random checkpoints built by tests/fixtures/make_fixtures.py into
//! target/fixtures, the end-to-end tests' own), and the small work budgets
//! and single LibTorch thread they run under.

use std::path::PathBuf;
use std::sync::Once;

/// The work budgets (`INFERD_MAX_*`, read when a model loads), small enough
/// that one request runs in milliseconds whatever it asks: a request past
/// them is answered RESOURCE_EXHAUSTED (or INVALID_ARGUMENT), which the
/// targets accept.
const BUDGETS: &[(&str, &str)] = &[
    ("INFERD_MAX_INPUTS", "64"),
    ("INFERD_MAX_SEQUENCES", "4"),
    ("INFERD_MAX_GENERATION_TOKENS", "128"),
    ("INFERD_MAX_CANDIDATE_LABELS", "8"),
    ("INFERD_MAX_ZERO_SHOT_TOKENS", "2048"),
    ("INFERD_MAX_FILL_MASK_CANDIDATES", "64"),
    ("INFERD_MAX_EMBEDDING_BYTES", "262144"),
    ("INFERD_MAX_QA_WINDOWS", "8"),
    ("INFERD_MAX_REQUEST_PIXELS", "65536"),
    ("INFERD_MAX_AUDIO_SECONDS", "4"),
    ("INFERD_MAX_REQUEST_AUDIO_SECONDS", "8"),
    ("INFERD_MAX_INPUT_TOKENS", "256"),
    ("INFERD_MAX_SPEECH_TEXTS", "4"),
];

/// Sets the budgets and LibTorch's threads (one: a fuzzer runs one input
/// at a time, and its speed is what counts), once per process, before
/// any model loads.
pub fn prepare() {
    static PREPARED: Once = Once::new();
    PREPARED.call_once(|| {
        for (var, value) in BUDGETS {
            std::env::set_var(var, value);
        }
        tch::set_num_threads(1);
    });
}

pub use inferd_tests::fixtures_dir;

/// The directory of the fixture model `name` (panics, saying how to build
/// them, when the fixtures are missing).
pub fn model_dir(name: &str) -> PathBuf {
    PathBuf::from(inferd_tests::fixture_model(name))
}
