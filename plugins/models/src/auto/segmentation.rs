//! Loading an image segmenter (SegFormer, Mask2Former, panoptic DETR) with its image
//! processor and labels.

use std::path::Path;

use tch::{nn::VarStore, Device, Kind, Tensor};

use crate::auto::vision::{build_loaded, open};
use crate::auto::Build;

use crate::core::precision::Precision;
use crate::core::weights::var_store_bytes;
use crate::vision::image::ImageProcessor;
use crate::vision::segmenter::{QueryStyle, SegmenterNet, SegmenterOutput, Subtask};
use crate::Result;

/// A loaded segmentation model with its image processor and labels.
pub struct ImageSegmenter {
    net: Box<dyn SegmenterNet>,
    _vs: VarStore,
    pub processor: ImageProcessor,
    pub labels: Vec<String>,
    pub device: Device,
    /// What it computes in; its outputs come back in float32.
    pub precision: Precision,
    pub memory_bytes: u64,
}

impl ImageSegmenter {
    /// The model's output for pixel_values [N, 3, H, W].
    pub fn forward(&self, pixel_values: &Tensor) -> SegmenterOutput {
        match self.net.forward(&pixel_values.to_kind(self.precision.kind())) {
            SegmenterOutput::Semantic(logits) => SegmenterOutput::Semantic(logits.to_kind(Kind::Float)),
            SegmenterOutput::Queries { classes, masks, style } => SegmenterOutput::Queries {
                classes: classes.to_kind(Kind::Float),
                masks: masks.to_kind(Kind::Float),
                style,
            },
        }
    }

    /// How its query outputs are post-processed; None for per-pixel logits
    /// (packed as [`SegmenterOutput::packed`] makes them).
    pub fn query_style(&self) -> Option<QueryStyle> {
        self.net.query_style()
    }

    /// The subtasks the model supports, pipeline()'s default first.
    pub fn subtasks(&self) -> &'static [Subtask] {
        self.net.subtasks()
    }

    /// Whether an image processed to `height` x `width` can run.
    pub fn check_input(&self, height: usize, width: usize) -> Result<()> {
        self.net.check_input(height, width)
    }
}

pub fn load_image_segmenter(dir: &Path, device: Device, precision: Precision) -> Result<ImageSegmenter> {
    let opened = open(dir, "image-segmentation", "for image segmentation", true)?;
    let Build::Segmenter(build) = opened.build else {
        return Err(opened.not_a("an image segmenter"));
    };
    let processor = ImageProcessor::from_dir(dir)?;
    let num_labels = opened.labels.len() as i64;
    let (net, vs) = build_loaded(dir, device, precision, |root, shapes| {
        build(root, &opened.config_file, shapes, num_labels)
    })?;
    Ok(ImageSegmenter {
        net,
        memory_bytes: var_store_bytes(&vs),
        _vs: vs,
        processor,
        labels: opened.labels,
        device,
        precision,
    })
}
