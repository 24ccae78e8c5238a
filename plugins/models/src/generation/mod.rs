//! The one generation engine, for every generative model (GPT-2, BART,
//! T5, Marian, and next Whisper and SpeechT5):
//! - `settings`: one settings type read from generation_config.json,
//!   config.json and `task_specific_params`, resolved with the request's as
//!   each pipeline resolves them;
//! - `processors`: transformers' logits processors and warpers, once;
//! - `sampling`: greedy choice and seeded sampling;
//! - `search`: one input's search (greedy/sampled, or beam search);
//! - `causal` and `seq2seq`: the two decode loops, for decoder-only and
//!   encoder-decoder models (`core::decoding`'s traits), which batch many
//!   inputs, keep their caches and let finished inputs leave.

pub mod causal;
pub mod processors;
pub mod sampling;
pub mod search;
pub mod seq2seq;
pub mod settings;

pub use settings::{
    resolve_text2text, resolve_text_generation, EarlyStopping, EarlyStoppingValue, GenerationParams,
    GenerationSettings, ModelSettings, TimestampRules, TokenIds,
};
