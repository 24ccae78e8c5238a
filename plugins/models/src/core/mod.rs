//! What every model family is built from: config.json reading, devices,
//! the error type, layers (linear, norms, embeddings, activations,
//! attention, KV cache), the decoder traits the generation engine drives,
//! weight loading, the numerical helpers on score rows, and PyTorch's CPU
//! random stream (`random`).

pub mod checks;
pub mod config;
pub mod decoding;
pub mod device;
pub mod error;
pub mod int8;
pub mod layers;
pub mod math;
pub mod onednn;
pub mod precision;
pub mod random;
pub mod scores;
pub mod split_linear;
pub mod weights;
pub mod winograd;
