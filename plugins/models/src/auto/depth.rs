//! Loading a depth estimator (GLPN, DPT) with its image processor.

use std::path::Path;

use tch::{nn::VarStore, Device, Tensor};

use crate::auto::Build;
use crate::core::checks::build_fallibly;
use crate::core::config::{config_path, CommonConfig};
use crate::core::weights::{var_store_bytes, Checkpoint};
use crate::vision::depth::DepthNet;
use crate::vision::image::ImageProcessor;
use crate::{ModelError, Result};

/// A loaded depth estimator with its image processor.
pub struct DepthEstimator {
    net: Box<dyn DepthNet>,
    _vs: VarStore,
    pub processor: ImageProcessor,
    pub device: Device,
    pub memory_bytes: u64,
}

impl DepthEstimator {
    /// predicted_depth [N, h, w] for pixel_values [N, 3, H, W].
    pub fn forward(&self, pixel_values: &Tensor) -> Tensor {
        self.net.forward(pixel_values)
    }

    /// Whether an image processed to `height` x `width` can run.
    pub fn check_input(&self, height: usize, width: usize) -> Result<()> {
        self.net.check_input(height, width)
    }
}

pub fn load_depth_estimator(dir: &Path, device: Device) -> Result<DepthEstimator> {
    let config_file = config_path(dir)?;
    let architecture = CommonConfig::from_dir(dir)?.architecture(&config_file)?;
    let Build::DepthEstimator(build) =
        crate::auto::find(&architecture, "depth-estimation", "for depth estimation")?.build
    else {
        return Err(ModelError::Unsupported(format!(
            "{architecture} is not a depth estimator"
        )));
    };
    let processor = ImageProcessor::from_dir(dir)?;
    let checkpoint = Checkpoint::open(dir)?;
    let mut vs = VarStore::new(device);
    let net = build_fallibly(|| build(vs.root(), &config_file, checkpoint.shapes()))?;
    checkpoint.load_into(&mut vs)?;
    Ok(DepthEstimator {
        net,
        memory_bytes: var_store_bytes(&vs),
        _vs: vs,
        processor,
        device,
    })
}
