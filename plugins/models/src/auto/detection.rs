//! Loading an object detector (DETR) with its image processor and labels.

use std::path::Path;

use tch::{nn::VarStore, Device, Kind, Tensor};

use crate::auto::vision::{build_loaded, open};
use crate::auto::Build;

use crate::core::precision::Precision;
use crate::core::weights::var_store_bytes;
use crate::vision::detector::{post_process, DetectorNet, Found, QueryOutputs};
use crate::vision::image::ImageProcessor;
use crate::Result;

/// A loaded object detector with its image processor and labels.
pub struct ObjectDetector {
    net: Box<dyn DetectorNet>,
    _vs: VarStore,
    pub processor: ImageProcessor,
    pub labels: Vec<String>,
    pub device: Device,
    /// What it computes in; its outputs come back in float32.
    pub precision: Precision,
    pub memory_bytes: u64,
}

impl ObjectDetector {
    /// Class logits and boxes for pixel_values [N, 3, H, W] (and their
    /// pixel_mask [N, H, W] when padded).
    pub fn forward(&self, pixel_values: &Tensor, pixel_mask: Option<&Tensor>) -> QueryOutputs {
        let output = self
            .net
            .forward(&pixel_values.to_kind(self.precision.kind()), pixel_mask);
        QueryOutputs {
            logits: output.logits.to_kind(Kind::Float),
            boxes: output.boxes.to_kind(Kind::Float),
        }
    }

    /// The objects of the first image of `output` scoring above
    /// `threshold`, their boxes in pixels of a `width` x `height` image.
    pub fn post_process(&self, output: &QueryOutputs, threshold: f32, width: u32, height: u32) -> Vec<Found> {
        post_process(&output.logits.get(0), &output.boxes.get(0), threshold, width, height)
    }
}

pub fn load_object_detector(dir: &Path, device: Device, precision: Precision) -> Result<ObjectDetector> {
    let opened = open(dir, "object-detection", "for object detection", true)?;
    let Build::ObjectDetector(build) = opened.build else {
        return Err(opened.not_a("an object detector"));
    };
    let processor = ImageProcessor::from_dir(dir)?;
    let num_labels = opened.labels.len() as i64;
    let (net, vs) = build_loaded(dir, device, precision, |root, shapes| {
        build(root, &opened.config_file, shapes, num_labels)
    })?;
    Ok(ObjectDetector {
        net,
        memory_bytes: var_store_bytes(&vs),
        _vs: vs,
        processor,
        labels: opened.labels,
        device,
        precision,
    })
}
