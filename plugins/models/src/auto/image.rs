//! Loading an image classifier (ViT, ConvNeXT) with its image processor
//! and labels.

use std::path::Path;

use tch::{nn::VarStore, Device, Tensor};

use crate::auto::Build;
use crate::core::checks::{build_fallibly, check_labels};
use crate::core::config::{config_path, CommonConfig};
use crate::core::weights::{var_store_bytes, Checkpoint};
use crate::vision::classifier::ImageClassifierNet;
use crate::vision::image::ImageProcessor;
use crate::{ModelError, Result};

/// A loaded image classifier with its image processor and labels.
pub struct ImageClassifier {
    net: Box<dyn ImageClassifierNet>,
    _vs: VarStore,
    pub processor: ImageProcessor,
    pub config: CommonConfig,
    pub labels: Vec<String>,
    pub device: Device,
    pub memory_bytes: u64,
}

impl ImageClassifier {
    /// Logits [batch, labels] for pixel_values [batch, 3, H, W].
    pub fn forward(&self, pixel_values: &Tensor) -> Tensor {
        self.net.forward(pixel_values)
    }
}

pub fn load_image_classifier(dir: &Path, device: Device) -> Result<ImageClassifier> {
    let config_file = config_path(dir)?;
    let common = CommonConfig::from_dir(dir)?;
    let architecture = common.architecture(&config_file)?;
    let labels = common.labels(2);
    let num_labels = labels.len() as i64;
    let mut vs = VarStore::new(device);
    let Build::ImageClassifier(build) =
        crate::auto::find(&architecture, "image-classification", "for image classification")?.build
    else {
        return Err(ModelError::Unsupported(format!(
            "{architecture} is not an image classifier"
        )));
    };
    check_labels(&config_file, labels.len())?;
    let checkpoint = Checkpoint::open(dir)?;
    let net = build_fallibly(|| build(vs.root(), &config_file, checkpoint.shapes(), num_labels))?;
    checkpoint.load_into(&mut vs)?;
    let processor = ImageProcessor::from_dir(dir)?;
    Ok(ImageClassifier {
        net,
        memory_bytes: var_store_bytes(&vs),
        _vs: vs,
        processor,
        config: common,
        labels,
        device,
    })
}
