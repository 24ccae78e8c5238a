//! Loading an image classifier (ViT, ConvNeXT) with its image processor
//! and labels.

use std::path::Path;

use tch::{nn::VarStore, Device, Kind, Tensor};

use crate::auto::vision::{build_loaded, open};
use crate::auto::Build;

use crate::core::config::CommonConfig;
use crate::core::precision::Precision;
use crate::core::weights::var_store_bytes;
use crate::vision::classifier::ImageClassifierNet;
use crate::vision::image::ImageProcessor;
use crate::Result;

/// A loaded image classifier with its image processor and labels.
pub struct ImageClassifier {
    net: Box<dyn ImageClassifierNet>,
    _vs: VarStore,
    pub processor: ImageProcessor,
    pub config: CommonConfig,
    pub labels: Vec<String>,
    pub device: Device,
    /// What it computes in; its logits come back in float32.
    pub precision: Precision,
    pub memory_bytes: u64,
}

impl ImageClassifier {
    /// Logits [batch, labels] for pixel_values [batch, 3, H, W].
    pub fn forward(&self, pixel_values: &Tensor) -> Tensor {
        self.net
            .forward(&pixel_values.to_kind(self.precision.kind()))
            .to_kind(Kind::Float)
    }
}

pub fn load_image_classifier(dir: &Path, device: Device, precision: Precision) -> Result<ImageClassifier> {
    let opened = open(dir, "image-classification", "for image classification", true)?;
    let Build::ImageClassifier(build) = opened.build else {
        return Err(opened.not_a("an image classifier"));
    };
    let num_labels = opened.labels.len() as i64;
    let (net, vs) = build_loaded(dir, device, precision, |root, shapes| {
        build(root, &opened.config_file, shapes, num_labels)
    })?;
    let processor = ImageProcessor::from_dir(dir)?;
    Ok(ImageClassifier {
        net,
        memory_bytes: var_store_bytes(&vs),
        _vs: vs,
        processor,
        config: opened.config,
        labels: opened.labels,
        device,
        precision,
    })
}
