//! What an object-detection family offers its loader: a net from pixel
//! values (and their padding mask) to a set of queries' class logits and
//! boxes, the builder the registry holds for it, and
//! `post_process_object_detection`, which DETR-style detectors share.

use std::path::Path;

use tch::{nn, Kind, Tensor};

use crate::core::weights::WeightShapes;
use crate::Result;

/// A detector's raw outputs: class logits [batch, queries, labels + 1]
/// (the last "no object") and boxes [batch, queries, 4] (centre x, centre
/// y, width, height, relative to the image).
pub struct QueryOutputs {
    pub logits: Tensor,
    pub boxes: Tensor,
}

/// An object detector: for pixel_values [N, 3, H, W] and their pixel_mask
/// [N, H, W] (1 on the image; None: no padding), each query's class logits
/// and box.
pub trait DetectorNet: Send {
    fn forward(&self, pixel_values: &Tensor, pixel_mask: Option<&Tensor>) -> QueryOutputs;
}

/// Builds a family's detector from its config.json (checked against the
/// checkpoint's `shapes` first) at a checkpoint's root with `num_labels`
/// labels.
pub type DetectorBuilder =
    fn(root: nn::Path, config_file: &Path, shapes: &WeightShapes, num_labels: i64) -> Result<Box<dyn DetectorNet>>;

/// One detected object: its label's probability and index, and its box's
/// corners [xmin, ymin, xmax, ymax] in pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub score: f32,
    pub label: usize,
    pub corners: [f32; 4],
}

/// `post_process_object_detection` for one image's outputs (logits
/// [queries, labels + 1], boxes [queries, 4]): each query's likeliest label
/// other than "no object" with its probability, the queries whose
/// probability passes `threshold` (strictly), in query order, with their
/// boxes in pixels of an image `width` x `height`.
pub fn post_process(logits: &Tensor, boxes: &Tensor, threshold: f32, width: u32, height: u32) -> Vec<Found> {
    let probabilities = logits.to_kind(Kind::Float).softmax(-1, Kind::Float);
    let labels = probabilities.size()[1] - 1;
    let (scores, ids) = probabilities.narrow(1, 0, labels).max_dim(-1, false);
    let boxes = boxes.to_kind(Kind::Float);
    let (cx, cy, bw, bh) = (
        boxes.select(1, 0),
        boxes.select(1, 1),
        boxes.select(1, 2),
        boxes.select(1, 3),
    );
    let corners = Tensor::stack(
        &[&cx - &bw * 0.5, &cy - &bh * 0.5, &cx + &bw * 0.5, &cy + &bh * 0.5],
        -1,
    );
    // transformers multiplies by an int32 tensor of the sizes.
    let scale =
        Tensor::from_slice(&[width as i32, height as i32, width as i32, height as i32]).to_device(boxes.device());
    let corners = (corners * scale).to_device(tch::Device::Cpu);
    let scores = Vec::<f32>::try_from(scores.to_device(tch::Device::Cpu)).expect("f32 scores");
    let ids = Vec::<i64>::try_from(ids.to_device(tch::Device::Cpu)).expect("i64 labels");
    let corners = Vec::<f32>::try_from(corners.reshape([-1])).expect("f32 boxes");
    scores
        .iter()
        .zip(&ids)
        .zip(corners.chunks(4))
        .filter(|((&score, _), _)| score > threshold)
        .map(|((&score, &id), c)| Found {
            score,
            label: id as usize,
            corners: [c[0], c[1], c[2], c[3]],
        })
        .collect()
}
