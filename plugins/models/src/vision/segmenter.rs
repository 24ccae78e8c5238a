//! Segmentation models behind one trait (their outputs: class logits per
//! pixel, or per object query), and what pipeline("image-segmentation")
//! does with a semantic model's output:
//! `post_process_semantic_segmentation` (the class logits resized to the
//! image, bilinear, then each pixel's best class) and the segments, one per
//! class present, in class order, each a 0/255 mask.

use tch::{Kind, Tensor};

use crate::vision::image::{encode_grey16_png, encode_grey_png};
use crate::Result;

/// What a segmentation model's forward pass gives for pixel_values
/// [B, 3, H, W].
pub enum SegmenterOutput {
    /// Class logits per pixel [B, labels, h, w] (SegFormer).
    Semantic(Tensor),
    /// Per object query, class logits [B, Q, labels + 1] (the last: no
    /// object) and mask logits [B, Q, h, w] (Mask2Former).
    Queries { classes: Tensor, masks: Tensor },
}

/// The side transformers' image processors resize query masks to before
/// any post-processing, whatever the input's size (Mask2Former's "384 x
/// 384 for all models").
pub const QUERY_MASK_SIDE: i64 = 384;

impl SegmenterOutput {
    /// One tensor with a row per image, for running a batch: semantic
    /// logits as they are; queries as [B, Q, labels + 1 + 384 * 384], the
    /// class logits beside the mask logits resized to 384 x 384 (bilinear)
    /// and flattened (see [`crate::vision::mask_queries::QueryMasks`]).
    pub fn packed(self) -> Tensor {
        match self {
            SegmenterOutput::Semantic(logits) => logits,
            SegmenterOutput::Queries { classes, masks } => {
                let side = QUERY_MASK_SIDE;
                let resized = masks.upsample_bilinear2d([side, side], false, None, None);
                Tensor::cat(&[classes.to_kind(resized.kind()), resized.flatten(2, -1)], 2)
            }
        }
    }
}

/// pipeline()'s segmentation subtasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subtask {
    Semantic,
    Instance,
    Panoptic,
}

impl Subtask {
    pub const ALL: [Subtask; 3] = [Subtask::Semantic, Subtask::Instance, Subtask::Panoptic];

    pub fn name(self) -> &'static str {
        match self {
            Subtask::Semantic => "semantic",
            Subtask::Instance => "instance",
            Subtask::Panoptic => "panoptic",
        }
    }

    pub fn parse(name: &str) -> Option<Subtask> {
        Subtask::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// A segmentation model.
pub trait SegmenterNet: Send {
    fn forward(&self, pixel_values: &Tensor) -> SegmenterOutput;

    /// The subtasks its output supports, in the order pipeline() tries
    /// them when none is asked for (panoptic, instance, semantic).
    fn subtasks(&self) -> &'static [Subtask];

    /// Whether an image processed to `height` x `width` can run (an
    /// InvalidInput error saying why not).
    fn check_input(&self, height: usize, width: usize) -> Result<()>;
}

/// Builds a segmentation model from its config.json, checked against the
/// checkpoint's shapes, with `num_labels` classes.
pub type SegmenterBuilder = fn(
    root: tch::nn::Path,
    config_file: &std::path::Path,
    shapes: &crate::core::weights::WeightShapes,
    num_labels: i64,
) -> Result<Box<dyn SegmenterNet>>;

/// One image's label map: each pixel's class id, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelMap {
    pub width: usize,
    pub height: usize,
    pub labels: Vec<u32>,
}

/// Classes resized at once: the resized logits held are this many maps
/// of the image's size, whatever the model's number of labels (ADE20k's
/// 150 at a 12-megapixel photo's size would be 7 GB).
const CLASSES_AT_ONCE: i64 = 16;

/// `post_process_semantic_segmentation` of one image: its logits
/// [labels, h, w] resized to `height` x `width` (bilinear,
/// align_corners=False), then each pixel's best class (the first of
/// equals, as argmax picks). Each class is resized on its own, so the
/// classes are taken a chunk at a time, a later chunk winning a pixel only
/// with a strictly greater logit.
pub fn semantic_map(logits: &Tensor, width: usize, height: usize) -> LabelMap {
    let _guard = tch::no_grad_guard();
    let (labels, h, w) = logits.size3().expect("[labels, height, width] logits");
    // Contiguous first: a batch's logits may come channels-last, and
    // resizing and argmax over that layout are many times slower.
    let logits = logits.to_kind(Kind::Float).contiguous().view([1, labels, h, w]);
    let mut best: Option<(Tensor, Tensor)> = None;
    for first in (0..labels).step_by(CLASSES_AT_ONCE as usize) {
        let chunk = logits.narrow(1, first, CLASSES_AT_ONCE.min(labels - first));
        let resized = if (h, w) == (height as i64, width as i64) {
            chunk
        } else {
            chunk.upsample_bilinear2d([height as i64, width as i64], false, None, None)
        };
        let (value, class) = resized.get(0).max_dim(0, false);
        let class = class + first;
        best = Some(match best {
            Some((best_value, best_class)) => {
                let better = value.gt_tensor(&best_value);
                (
                    value.where_self(&better, &best_value),
                    class.where_self(&better, &best_class),
                )
            }
            None => (value, class),
        });
    }
    let (_, best) = best.expect("at least one label");
    let best = best.to_kind(Kind::Int).to_device(tch::Device::Cpu);
    let labels = Vec::<i32>::try_from(best.contiguous().view(-1)).expect("i32 labels");
    LabelMap {
        width,
        height,
        labels: labels.into_iter().map(|l| l as u32).collect(),
    }
}

impl LabelMap {
    /// The classes present, in ascending order (np.unique).
    pub fn classes(&self) -> Vec<u32> {
        let most = self.labels.iter().copied().max().map_or(0, |m| m as usize + 1);
        let mut present = vec![false; most];
        for &l in &self.labels {
            present[l as usize] = true;
        }
        (0..most as u32).filter(|&l| present[l as usize]).collect()
    }

    /// pipeline()'s mask of `class`: 255 where the pixel is of the class.
    pub fn mask(&self, class: u32) -> Vec<u8> {
        self.labels.iter().map(|&l| if l == class { 255 } else { 0 }).collect()
    }

    /// The label map as a greyscale PNG of class ids: 8-bit when they fit.
    pub fn png(&self) -> Vec<u8> {
        if self.labels.iter().all(|&l| l <= u8::MAX as u32) {
            let levels: Vec<u8> = self.labels.iter().map(|&l| l as u8).collect();
            encode_grey_png(self.width, self.height, &levels)
        } else {
            let levels: Vec<u16> = self.labels.iter().map(|&l| l.min(u16::MAX as u32) as u16).collect();
            encode_grey16_png(self.width, self.height, &levels)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_best_class_of_each_resized_pixel_and_its_masks() {
        // Two classes over a 1x2 map: class 1 wins on the right.
        let logits = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 2.0]).view([2, 1, 2]);
        let map = semantic_map(&logits, 2, 1);
        assert_eq!(map.labels, [0, 1]);
        assert_eq!(map.classes(), [0, 1]);
        assert_eq!(map.mask(1), [0, 255]);
        // Resized to 4 wide: the boundary falls between pixels 1 and 2.
        let wide = semantic_map(&logits, 4, 1);
        assert_eq!(wide.labels, [0, 0, 1, 1]);
        // Ties go to the first class, as argmax does.
        let tied = Tensor::from_slice(&[1.0f32, 1.0]).view([2, 1, 1]);
        assert_eq!(semantic_map(&tied, 1, 1).labels, [0]);
        // Across chunks of classes too; a strictly greater later one wins.
        let mut many = vec![0f32; 40];
        many[3] = 2.0;
        many[20] = 2.0;
        many[35] = 1.5;
        assert_eq!(
            semantic_map(&Tensor::from_slice(&many).view([40, 1, 1]), 1, 1).labels,
            [3]
        );
        many[37] = 2.5;
        assert_eq!(
            semantic_map(&Tensor::from_slice(&many).view([40, 1, 1]), 1, 1).labels,
            [37]
        );
    }
}
