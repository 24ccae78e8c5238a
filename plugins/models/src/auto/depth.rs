//! Loading a depth estimator (GLPN, DPT) with its image processor.

use std::path::Path;

use tch::{nn::VarStore, Device, Kind, Tensor};

use crate::auto::vision::{build_loaded, open};
use crate::auto::Build;

use crate::core::precision::Precision;
use crate::core::weights::var_store_bytes;
use crate::vision::depth::DepthNet;
use crate::vision::image::ImageProcessor;
use crate::Result;

/// A loaded depth estimator with its image processor.
pub struct DepthEstimator {
    net: Box<dyn DepthNet>,
    _vs: VarStore,
    pub processor: ImageProcessor,
    pub device: Device,
    /// What it computes in; its depth comes back in float32.
    pub precision: Precision,
    pub memory_bytes: u64,
}

impl DepthEstimator {
    /// predicted_depth [N, h, w] for pixel_values [N, 3, H, W].
    pub fn forward(&self, pixel_values: &Tensor) -> Tensor {
        self.net
            .forward(&pixel_values.to_kind(self.precision.kind()))
            .to_kind(Kind::Float)
    }

    /// Whether an image processed to `height` x `width` can run.
    pub fn check_input(&self, height: usize, width: usize) -> Result<()> {
        self.net.check_input(height, width)
    }
}

pub fn load_depth_estimator(dir: &Path, device: Device, precision: Precision) -> Result<DepthEstimator> {
    let opened = open(dir, "depth-estimation", "for depth estimation", false)?;
    let Build::DepthEstimator(build) = opened.build else {
        return Err(opened.not_a("a depth estimator"));
    };
    let processor = ImageProcessor::from_dir(dir)?;
    let (net, vs) = build_loaded(dir, device, precision, |root, shapes| {
        build(root, &opened.config_file, shapes)
    })?;
    let prepared = net.prepare();
    Ok(DepthEstimator {
        net,
        memory_bytes: var_store_bytes(&vs) + prepared,
        _vs: vs,
        processor,
        device,
        precision,
    })
}
