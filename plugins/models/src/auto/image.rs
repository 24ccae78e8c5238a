//! Loading an image classifier (ViT, ConvNeXT) with its image processor
//! and labels.

use std::path::Path;

use tch::{nn::VarStore, Device, Tensor};

use crate::auto::Family;
use crate::core::config::{config_path, read_json, CommonConfig};
use crate::core::weights::{var_store_bytes, Checkpoint};
use crate::vision::image::ImageProcessor;
use crate::vision::{convnext, vit};
use crate::{ModelError, Result};

enum ImageNet {
    Vit(vit::VitForImageClassification),
    ConvNext(convnext::ConvNextForImageClassification),
}

/// A loaded image classifier with its image processor and labels.
pub struct ImageClassifier {
    net: ImageNet,
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
        match &self.net {
            ImageNet::Vit(m) => m.forward(pixel_values),
            ImageNet::ConvNext(m) => m.forward(pixel_values),
        }
    }
}

pub fn load_image_classifier(dir: &Path, device: Device) -> Result<ImageClassifier> {
    let config_file = config_path(dir)?;
    let common = CommonConfig::from_dir(dir)?;
    let architecture = common.architecture(&config_file)?;
    let labels = common.labels(2);
    let num_labels = labels.len() as i64;
    let mut vs = VarStore::new(device);
    let family = crate::auto::find(&architecture, "image-classification", "for image classification")?.family;
    let net = match family {
        Family::Vit => {
            let cfg: vit::Config = read_json(&config_file)?;
            ImageNet::Vit(vit::VitForImageClassification::new(vs.root(), &cfg, num_labels))
        }
        Family::ConvNext => {
            let cfg: convnext::Config = read_json(&config_file)?;
            ImageNet::ConvNext(convnext::ConvNextForImageClassification::new(
                vs.root(),
                &cfg,
                num_labels,
            ))
        }
        other => return Err(ModelError::Unsupported(format!("{other:?} is not an image classifier"))),
    };
    Checkpoint::open(dir)?.load_into(&mut vs)?;
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
