//! The bodies of inferd's fuzz targets (issue 20, item 6): what a hostile
//! client or a hostile model directory can hand the daemon, one function
//! per way in. Each takes arbitrary bytes, runs them through the real
//! code, and asserts what must hold whatever the bytes (a decoded image is
//! as large as its header said, a plugin never answers INTERNAL, ...): a
//! failed assertion, a panic that escapes, a hang or a runaway allocation
//! is a finding.
//!
//! `fuzz/` (cargo fuzz, nightly) runs each body under libFuzzer, and
//! `tests/replay.rs` runs every file of the committed corpora
//! (`fuzz/corpus/<target>/`) through its body on stable, as part of the
//! test command.
//!
//! Every body bounds its own work (image sizes, audio lengths, the
//! plugins' work budgets), so that one input runs in milliseconds: a slow
//! input is then a finding too.

mod fixtures;
mod plugin;

mod audio;
mod config;
mod image;
mod payload;
mod requests;
mod safetensors;
mod sentencepiece;

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Once;

pub use audio::audio;
pub use config::config;
pub use image::image;
pub use payload::payload;
pub use requests::requests;
pub use safetensors::safetensors;
pub use sentencepiece::sentencepiece;

/// A target's body: one input, checked; a failure panics.
pub type Body = fn(&[u8]);

/// Every target: its name (that of its corpus folder and its cargo fuzz
/// binary) and its body.
pub const TARGETS: &[(&str, Body)] = &[
    ("payload", payload),
    ("safetensors", safetensors),
    ("config", config),
    ("sentencepiece", sentencepiece),
    ("audio", audio),
    ("image", image),
    ("requests", requests),
];

thread_local! {
    /// The message and place of the last panic on this thread.
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Runs `body` on one input for libFuzzer (the fuzz targets' entry).
///
/// libFuzzer's Rust harness aborts on any panic, even one the code under
/// test catches on purpose (audio decoding takes a panic in symphonia as a
/// header it could not read; the plugin glue turns a panic into INTERNAL,
/// which the bodies check for). Here, as on stable, only a panic that
/// escapes the body is a crash: caught ones pass quietly, and an escaping
/// one prints its message and aborts, which libFuzzer reports.
pub fn fuzz(body: Body, data: &[u8]) {
    static QUIET: Once = Once::new();
    QUIET.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            LAST_PANIC.with(|last| *last.borrow_mut() = Some(info.to_string()));
        }))
    });
    if catch_unwind(AssertUnwindSafe(|| body(data))).is_err() {
        let message = LAST_PANIC.with(|last| last.borrow_mut().take());
        eprintln!("{}", message.unwrap_or_else(|| "a panic without a message".into()));
        std::process::abort();
    }
}
