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
    /// object) and mask logits [B, Q, h, w] (Mask2Former, panoptic DETR).
    Queries {
        classes: Tensor,
        masks: Tensor,
        style: QueryStyle,
    },
}

/// Whose image processor post-processes a query model's output: they
/// differ in the masks' size and in instance segmentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryStyle {
    /// Mask2FormerImageProcessor: masks resized to 384 x 384 first;
    /// instance segments are the best (query, label) pairs.
    Mask2Former,
    /// DetrImageProcessor: masks at their own size; instance segments are
    /// panoptic's without fusing.
    Detr,
}

/// The side Mask2Former's image processor resizes query masks to before
/// any post-processing, whatever the input's size ("384 x 384 for all
/// models").
pub const QUERY_MASK_SIDE: i64 = 384;

impl SegmenterOutput {
    /// One tensor with a row per image, for running a batch: semantic
    /// logits as they are; queries as [B, Q, 2 + labels + 1 + h * w]: the
    /// masks' height and width (Mask2Former's resized to 384 x 384,
    /// bilinear), the class logits, the mask logits flattened (see
    /// [`crate::vision::mask_queries::QueryMasks::from_packed`]).
    pub fn packed(self) -> Tensor {
        match self {
            SegmenterOutput::Semantic(logits) => logits,
            SegmenterOutput::Queries { classes, masks, style } => {
                let masks = match style {
                    QueryStyle::Mask2Former => {
                        let side = QUERY_MASK_SIDE;
                        masks.upsample_bilinear2d([side, side], false, None, None)
                    }
                    QueryStyle::Detr => masks,
                };
                let (b, q, h, w) = masks.size4().expect("[B, Q, h, w] masks");
                let size = Tensor::from_slice(&[h as f32, w as f32])
                    .to_device(masks.device())
                    .to_kind(masks.kind())
                    .view([1, 1, 2])
                    .expand([b, q, 2], false);
                Tensor::cat(&[size, classes.to_kind(masks.kind()), masks.flatten(2, -1)], 2)
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

    /// How its query outputs are post-processed; None for per-pixel logits.
    fn query_style(&self) -> Option<QueryStyle>;

    /// The subtasks its output supports, in the order pipeline() tries
    /// them when none is asked for: every one from queries (the image
    /// processors of Mask2Former and DETR post-process all three, panoptic
    /// first), semantic from per-pixel logits.
    fn subtasks(&self) -> &'static [Subtask] {
        match self.query_style() {
            Some(_) => &[Subtask::Panoptic, Subtask::Instance, Subtask::Semantic],
            None => &[Subtask::Semantic],
        }
    }

    /// Whether an image processed to `height` x `width` can run (an
    /// InvalidInput error saying why not); any size by default.
    fn check_input(&self, _height: usize, _width: usize) -> Result<()> {
        Ok(())
    }
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

/// Maps of the image's size held at once when classes or queries are
/// resized to it (ADE20k's 150 classes at a 12-megapixel photo's size
/// would be 7 GB): at most this many, fewer for large images.
const MAPS_AT_ONCE: usize = 16;
/// Values the maps held at once come to at most (2^25, 128 MB of f32).
const VALUES_AT_ONCE: usize = 1 << 25;

/// How many maps of `pixels` pixels to resize at once.
pub(crate) fn maps_at_once(pixels: usize) -> usize {
    (VALUES_AT_ONCE / pixels.max(1)).clamp(1, MAPS_AT_ONCE)
}

/// Each pixel's best map over maps [c, H, W] given a chunk at a time, in
/// order: the index of its greatest value (the first of equals, as argmax
/// picks), a later chunk winning only with a strictly greater value.
#[derive(Default)]
pub(crate) struct RunningArgmax {
    best: Option<(Tensor, Tensor)>,
}

impl RunningArgmax {
    /// The next chunk, its first map being number `first`.
    pub fn add(&mut self, maps: &Tensor, first: i64) {
        let (value, at) = maps.max_dim(0, false);
        let at = at + first;
        self.best = Some(match self.best.take() {
            Some((best_value, best_at)) => {
                let better = value.gt_tensor(&best_value);
                (value.where_self(&better, &best_value), at.where_self(&better, &best_at))
            }
            None => (value, at),
        });
    }

    /// Each pixel's best map's index, row-major.
    pub fn finish(self) -> Vec<i64> {
        let (_, at) = self.best.expect("at least one map");
        Vec::<i64>::try_from(at.to_device(tch::Device::Cpu).flatten(0, -1)).expect("i64 indices")
    }
}

/// A map of ids per pixel as a greyscale PNG: 8-bit when they fit, else
/// 16-bit.
pub fn id_png(width: usize, height: usize, ids: &[u32]) -> Vec<u8> {
    if ids.iter().all(|&i| i <= u8::MAX as u32) {
        let levels: Vec<u8> = ids.iter().map(|&i| i as u8).collect();
        encode_grey_png(width, height, &levels)
    } else {
        let levels: Vec<u16> = ids.iter().map(|&i| i.min(u16::MAX as u32) as u16).collect();
        encode_grey16_png(width, height, &levels)
    }
}

/// `post_process_semantic_segmentation` of one image: its logits
/// [labels, h, w] resized to `height` x `width` (bilinear,
/// align_corners=False), then each pixel's best class (the first of
/// equals, as argmax picks). Each class is resized on its own, so the
/// classes are taken a chunk at a time.
pub fn semantic_map(logits: &Tensor, width: usize, height: usize) -> LabelMap {
    let _guard = tch::no_grad_guard();
    let (labels, h, w) = logits.size3().expect("[labels, height, width] logits");
    // Contiguous first: a batch's logits may come channels-last, and
    // resizing and argmax over that layout are many times slower.
    let logits = logits.to_kind(Kind::Float).contiguous().view([1, labels, h, w]);
    let chunk = maps_at_once(width * height) as i64;
    let mut best = RunningArgmax::default();
    for first in (0..labels).step_by(chunk as usize) {
        let maps = logits.narrow(1, first, chunk.min(labels - first));
        let resized = if (h, w) == (height as i64, width as i64) {
            maps
        } else {
            maps.upsample_bilinear2d([height as i64, width as i64], false, None, None)
        };
        best.add(&resized.get(0), first);
    }
    LabelMap {
        width,
        height,
        labels: best.finish().into_iter().map(|l| l as u32).collect(),
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
        id_png(self.width, self.height, &self.labels)
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
