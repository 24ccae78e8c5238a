//! Loading an object detector (DETR) with its image processor and labels.

use std::path::Path;

use tch::{nn::VarStore, Device, Tensor};

use crate::auto::Build;
use crate::core::checks::{build_fallibly, check_labels};
use crate::core::config::{config_path, CommonConfig};
use crate::core::weights::{var_store_bytes, Checkpoint};
use crate::vision::detector::{post_process, DetectorNet, Found, QueryOutputs};
use crate::vision::image::ImageProcessor;
use crate::{ModelError, Result};

/// A loaded object detector with its image processor and labels.
pub struct ObjectDetector {
    net: Box<dyn DetectorNet>,
    _vs: VarStore,
    pub processor: ImageProcessor,
    pub labels: Vec<String>,
    pub device: Device,
    pub memory_bytes: u64,
}

impl ObjectDetector {
    /// Class logits and boxes for pixel_values [N, 3, H, W] (and their
    /// pixel_mask [N, H, W] when padded).
    pub fn forward(&self, pixel_values: &Tensor, pixel_mask: Option<&Tensor>) -> QueryOutputs {
        self.net.forward(pixel_values, pixel_mask)
    }

    /// The objects of the first image of `output` scoring above
    /// `threshold`, their boxes in pixels of a `width` x `height` image.
    pub fn post_process(&self, output: &QueryOutputs, threshold: f32, width: u32, height: u32) -> Vec<Found> {
        post_process(&output.logits.get(0), &output.boxes.get(0), threshold, width, height)
    }
}

pub fn load_object_detector(dir: &Path, device: Device) -> Result<ObjectDetector> {
    let config_file = config_path(dir)?;
    let common = CommonConfig::from_dir(dir)?;
    let architecture = common.architecture(&config_file)?;
    let labels = common.labels(2);
    let Build::ObjectDetector(build) =
        crate::auto::find(&architecture, "object-detection", "for object detection")?.build
    else {
        return Err(ModelError::Unsupported(format!(
            "{architecture} is not an object detector"
        )));
    };
    check_labels(&config_file, labels.len())?;
    let processor = ImageProcessor::from_dir(dir)?;
    let checkpoint = Checkpoint::open(dir)?;
    let mut vs = VarStore::new(device);
    let net = build_fallibly(|| build(vs.root(), &config_file, checkpoint.shapes(), labels.len() as i64))?;
    checkpoint.load_into(&mut vs)?;
    Ok(ObjectDetector {
        net,
        memory_bytes: var_store_bytes(&vs),
        _vs: vs,
        processor,
        labels,
        device,
    })
}
