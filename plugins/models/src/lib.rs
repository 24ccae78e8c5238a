//! Model architectures written with tch, loading Hugging Face checkpoints
//! unchanged, plus what surrounds them, by concern (dependencies point one
//! way: core <- text/vision/audio <- generation <- auto):
//! - `core`: layers, weights, config, devices, errors, the decoder traits;
//! - `text`, `vision`, `audio`: tokenizers and processors, and the model
//!   families of each modality, one file (or folder) per family;
//! - `generation`: the one generation engine (settings, logits processors,
//!   sampling, greedy and beam search);
//! - `auto`: the registry from config.json's architecture to a loader and
//!   the tasks it serves. Only `auto` names concrete models.
//!
//! The crate returns plain values; wire types stay in the plugins.

pub mod audio;
pub mod auto;
pub mod core;
pub mod generation;
pub mod text;
pub mod vision;

pub use crate::core::error::{ModelError, Result};
