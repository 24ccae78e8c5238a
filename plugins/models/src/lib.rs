//! Model architectures written with tch, loading Hugging Face checkpoints
//! unchanged, plus what surrounds them: weight loading, tokenizers and the
//! `Auto*` style loaders that pick the architecture from config.json.
//!
//! One file per architecture family, reading top to bottom: config,
//! embeddings, layers, model, task heads.

pub mod audio;
pub mod auto;
pub mod bart;
pub mod bert;
pub mod config;
pub mod convnext;
pub mod device;
pub mod distilbert;
pub mod error;
pub mod generation;
pub mod gpt2;
pub mod image;
pub mod layers;
pub mod roberta;
pub mod scores;
pub mod sentencepiece;
pub mod seq2seq;
pub mod t5;
pub mod tokenizer;
pub mod vit;
pub mod wav2vec2;
pub mod weights;

pub use error::{ModelError, Result};
