//! Depth estimators (GLPN, DPT) behind one trait, and what pipeline("depth-
//! estimation") does with their output: `post_process_depth_estimation`
//! (the map resized to the image, bicubic) and the `depth` picture (the map
//! scaled over its range to 0..255 and truncated, as
//! `(depth * 255).astype("uint8")` does), encoded as PNG.

use tch::{Kind, Tensor};

use crate::vision::image::{encode_grey16_png, encode_grey_png};
use crate::Result;

/// A depth model: pixel_values [B, 3, H, W] to predicted_depth [B, h, w].
pub trait DepthNet: Send {
    fn forward(&self, pixel_values: &Tensor) -> Tensor;

    /// Whether an image processed to `height` x `width` can run (an
    /// InvalidInput error saying why not): a processor config that gives
    /// sizes the network cannot take is found before the forward pass.
    fn check_input(&self, height: usize, width: usize) -> Result<()>;

    /// Makes what the network computes with beyond its weights (DPT's
    /// Winograd filters) once the weights are loaded; its bytes.
    fn prepare(&self) -> u64 {
        0
    }
}

/// Builds a depth model from its config.json, checked against the
/// checkpoint's shapes.
pub type DepthBuilder = fn(
    root: tch::nn::Path,
    config_file: &std::path::Path,
    shapes: &crate::core::weights::WeightShapes,
) -> Result<Box<dyn DepthNet>>;

/// One image's depth map, row-major f32 on the CPU.
#[derive(Debug, Clone, PartialEq)]
pub struct DepthMap {
    pub width: usize,
    pub height: usize,
    pub values: Vec<f32>,
}

/// `post_process_depth_estimation` of one image: its predicted_depth
/// [h, w] resized to `height` x `width` (bicubic, align_corners=False, the
/// values not clamped, as torch computes it).
pub fn resize_depth(depth: &Tensor, width: usize, height: usize) -> DepthMap {
    let _guard = tch::no_grad_guard();
    let (h, w) = depth.size2().expect("a [height, width] depth map");
    let resized = if (h, w) == (height as i64, width as i64) {
        depth.shallow_clone()
    } else {
        depth
            .view([1, 1, h, w])
            .upsample_bicubic2d([height as i64, width as i64], false, None, None)
            .view([height as i64, width as i64])
    };
    let values = Vec::<f32>::try_from(
        resized
            .to_kind(Kind::Float)
            .to_device(tch::Device::Cpu)
            .contiguous()
            .view(-1),
    )
    .expect("f32 values");
    DepthMap { width, height, values }
}

impl DepthMap {
    /// The smallest and largest value.
    fn range(&self) -> (f32, f32) {
        self.values
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            })
    }

    /// pipeline()'s `depth`: `(d - min) / (max - min) * 255` in f32,
    /// truncated to 8 bits. A constant map (0 / 0 in numpy, NaN, which
    /// becomes 0) is all zeros.
    pub fn levels8(&self) -> Vec<u8> {
        let (lo, hi) = self.range();
        let span = hi - lo;
        self.values
            .iter()
            .map(|&v| {
                let scaled = (v - lo) / span * 255.0;
                if scaled.is_nan() {
                    0
                } else {
                    scaled as u8
                }
            })
            .collect()
    }

    /// The same scaled to 0..65535 and rounded: 16 bits for those who want
    /// more than pipeline()'s 256 levels.
    pub fn levels16(&self) -> Vec<u16> {
        let (lo, hi) = self.range();
        let span = (hi - lo) as f64;
        self.values
            .iter()
            .map(|&v| {
                let scaled = (v - lo) as f64 / span * 65535.0;
                if scaled.is_nan() {
                    0
                } else {
                    scaled.round() as u16
                }
            })
            .collect()
    }

    /// pipeline()'s `depth` as an 8-bit greyscale PNG.
    pub fn png8(&self) -> Vec<u8> {
        encode_grey_png(self.width, self.height, &self.levels8())
    }

    /// [`DepthMap::levels16`] as a 16-bit greyscale PNG.
    pub fn png16(&self) -> Vec<u8> {
        encode_grey16_png(self.width, self.height, &self.levels16())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_picture_spans_the_range_and_truncates_like_numpy() {
        let map = DepthMap {
            width: 4,
            height: 1,
            values: vec![1.0, 2.0, 1.5, 1.999],
        };
        // (1.999 - 1) / 1 * 255 = 254.745 -> 254; 0.5 * 255 = 127.5 -> 127.
        assert_eq!(map.levels8(), [0, 255, 127, 254]);
        assert_eq!(map.levels16()[..3], [0, 65535, 32768]);
        let flat = DepthMap {
            width: 2,
            height: 1,
            values: vec![3.0, 3.0],
        };
        assert_eq!(flat.levels8(), [0, 0]);
    }

    #[test]
    fn pngs_decode_to_the_levels_at_the_maps_size() {
        let map = DepthMap {
            width: 3,
            height: 2,
            values: vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0],
        };
        let grey = image::load_from_memory(&map.png8()).unwrap();
        assert_eq!((grey.width(), grey.height()), (3, 2));
        assert_eq!(grey.to_luma8().into_raw(), map.levels8());
        let deep = image::load_from_memory(&map.png16()).unwrap().to_luma16();
        assert_eq!(deep.into_raw(), map.levels16());
    }

    #[test]
    fn resizing_is_bicubic_and_the_same_size_is_kept() {
        let depth = Tensor::from_slice(&[0f32, 1.0, 2.0, 3.0]).view([2, 2]);
        let same = resize_depth(&depth, 2, 2);
        assert_eq!(same.values, [0.0, 1.0, 2.0, 3.0]);
        let big = resize_depth(&depth, 4, 4);
        assert_eq!((big.width, big.height, big.values.len()), (4, 4, 16));
        // Bicubic overshoots past the corners' values at the border.
        assert!(big.values[0] < 0.0 && big.values[15] > 3.0, "{:?}", big.values);
    }
}
