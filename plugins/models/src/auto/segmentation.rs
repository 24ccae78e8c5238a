//! Loading an image segmenter (SegFormer) with its image processor and
//! labels.

use std::path::Path;

use tch::{nn::VarStore, Device, Tensor};

use crate::auto::Build;
use crate::core::checks::{build_fallibly, check_labels};
use crate::core::config::{config_path, CommonConfig};
use crate::core::weights::{var_store_bytes, Checkpoint};
use crate::vision::image::ImageProcessor;
use crate::vision::segmenter::SegmenterNet;
use crate::{ModelError, Result};

/// A loaded segmentation model with its image processor and labels.
pub struct ImageSegmenter {
    net: Box<dyn SegmenterNet>,
    _vs: VarStore,
    pub processor: ImageProcessor,
    pub labels: Vec<String>,
    pub device: Device,
    pub memory_bytes: u64,
}

impl ImageSegmenter {
    /// Class logits [N, labels, h, w] for pixel_values [N, 3, H, W].
    pub fn semantic_logits(&self, pixel_values: &Tensor) -> Tensor {
        self.net.semantic_logits(pixel_values)
    }

    /// Whether an image processed to `height` x `width` can run.
    pub fn check_input(&self, height: usize, width: usize) -> Result<()> {
        self.net.check_input(height, width)
    }
}

pub fn load_image_segmenter(dir: &Path, device: Device) -> Result<ImageSegmenter> {
    let config_file = config_path(dir)?;
    let common = CommonConfig::from_dir(dir)?;
    let architecture = common.architecture(&config_file)?;
    let labels = common.labels(2);
    let Build::Segmenter(build) =
        crate::auto::find(&architecture, "image-segmentation", "for image segmentation")?.build
    else {
        return Err(ModelError::Unsupported(format!(
            "{architecture} is not an image segmenter"
        )));
    };
    check_labels(&config_file, labels.len())?;
    let processor = ImageProcessor::from_dir(dir)?;
    let checkpoint = Checkpoint::open(dir)?;
    let mut vs = VarStore::new(device);
    let net = build_fallibly(|| build(vs.root(), &config_file, checkpoint.shapes(), labels.len() as i64))?;
    checkpoint.load_into(&mut vs)?;
    Ok(ImageSegmenter {
        net,
        memory_bytes: var_store_bytes(&vs),
        _vs: vs,
        processor,
        labels,
        device,
    })
}
