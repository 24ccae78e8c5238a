//! What an image-classification family offers its loader: a net from pixel
//! values to logits, and the builder the registry holds for it.

use std::path::Path;

use tch::{nn, Tensor};

use crate::core::weights::WeightShapes;
use crate::Result;

/// An image classifier: logits [batch, labels] for pixel_values
/// [batch, 3, H, W].
pub trait ImageClassifierNet: Send {
    fn forward(&self, pixel_values: &Tensor) -> Tensor;
}

/// Builds a family's classifier from its config.json (checked against the
/// checkpoint's `shapes` first) at a checkpoint's root with `num_labels`
/// labels.
pub type ImageClassifierBuilder = fn(
    root: nn::Path,
    config_file: &Path,
    shapes: &WeightShapes,
    num_labels: i64,
) -> Result<Box<dyn ImageClassifierNet>>;
