//! GLPN (Kim et al., "Global-Local Path Networks for monocular depth
//! estimation"): the Mix Transformer encoder (`mit`), a decoder that goes
//! from the coarsest feature map to the finest, fusing each with the one
//! before through selective feature fusion (a sigmoid attention choosing,
//! per pixel, between the local and the global feature) and doubling the
//! size at every stage, and a head giving sigmoid(x) * max_depth at the
//! input's size. Reproduces transformers' `GLPNForDepthEstimation`
//! (`modeling_glpn.py`), with its weight names.

use serde::Deserialize;
use tch::{nn::Path, Tensor};

use crate::core::checks::{ConfigCheck, MAX_WIDTH};
use crate::core::config::read_json;
use crate::core::layers::{upsample2, BatchNorm, Conv2d, ConvSpec, NormKind};
use crate::core::weights::WeightShapes;
use crate::vision::depth::DepthNet;
use crate::vision::mit::{MitConfig, MitEncoder};
use crate::{ModelError, Result};

/// `GLPNConfig`, with transformers' defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Config {
    #[serde(flatten)]
    pub encoder: MitConfig,
    pub decoder_hidden_size: i64,
    pub max_depth: f64,
    /// Which decoder output the head reads, as a Python index (-1: the last).
    pub head_in_index: i64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            encoder: MitConfig::default(),
            decoder_hidden_size: 64,
            max_depth: 10.0,
            head_in_index: -1,
        }
    }
}

impl Config {
    pub fn validate(&self, file: &std::path::Path, shapes: &WeightShapes) -> Result<()> {
        self.encoder.validate(file, shapes, "glpn.encoder")?;
        let c = ConfigCheck::new(file, shapes);
        // The decoder doubles the size after each stage, and once more:
        // the encoder must halve it at each stage after a first stride of 4.
        for (i, &stride) in self.encoder.strides.iter().enumerate() {
            let want = if i == 0 { 4 } else { 2 };
            c.exactly(
                &format!("strides[{i}]"),
                stride,
                want,
                "GLPN's decoder doubles each stage's size",
            )?;
        }
        c.matches(
            "decoder_hidden_size",
            self.decoder_hidden_size,
            MAX_WIDTH,
            "head.head.0.weight",
            0,
        )?;
        let stages = self.encoder.num_encoder_blocks;
        c.index("head_in_index", self.head_in_index, stages, "the decoder's outputs")?;
        if !self.max_depth.is_finite() || self.max_depth <= 0.0 {
            return Err(ModelError::bad_file(
                file,
                format!("max_depth = {}, but it must be a positive number", self.max_depth),
            ));
        }
        Ok(())
    }
}

/// A 3x3 convolution, batch norm and ReLU.
struct ConvNormRelu {
    conv: Conv2d,
    norm: BatchNorm,
}

impl ConvNormRelu {
    fn new(p: &Path, input: i64, output: i64) -> Self {
        ConvNormRelu {
            conv: Conv2d::new(p / 0, input, output, ConvSpec::same(3).channels_last()),
            norm: BatchNorm::new(p / 1, output, NormKind::Eval),
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        self.norm.forward(&self.conv.forward(x)).relu()
    }
}

/// Selective feature fusion: two weights per pixel, from both features,
/// mixing the local (this stage's) and the global (the coarser stages').
struct SelectiveFeatureFusion {
    layer1: ConvNormRelu,
    layer2: ConvNormRelu,
    layer3: Conv2d,
}

impl SelectiveFeatureFusion {
    fn new(p: Path, channels: i64) -> Self {
        SelectiveFeatureFusion {
            layer1: ConvNormRelu::new(&(&p / "convolutional_layer1"), 2 * channels, channels),
            layer2: ConvNormRelu::new(&(&p / "convolutional_layer2"), channels, channels / 2),
            layer3: Conv2d::new(
                &p / "convolutional_layer3",
                channels / 2,
                2,
                ConvSpec::same(3).channels_last(),
            ),
        }
    }

    fn forward(&self, local: &Tensor, global: &Tensor) -> Tensor {
        let features = Tensor::cat(&[local, global], 1);
        let weights = self
            .layer3
            .forward(&self.layer2.forward(&self.layer1.forward(&features)))
            .sigmoid();
        local * weights.narrow(1, 0, 1) + global * weights.narrow(1, 1, 1)
    }
}

/// One decoder stage: a 1x1 convolution to the decoder's width (unless the
/// feature has it already), fusion with the coarser stages' output (not in
/// the first stage), then twice the size.
struct DecoderStage {
    convolution: Option<Conv2d>,
    fusion: Option<SelectiveFeatureFusion>,
}

/// `GLPNForDepthEstimation`.
pub struct GlpnForDepthEstimation {
    encoder: MitEncoder,
    stages: Vec<DecoderStage>,
    head_conv1: Conv2d,
    head_conv2: Conv2d,
    head_in_index: i64,
    max_depth: f64,
    /// What every side of an input must be a multiple of (the decoder
    /// doubles the coarsest map once per stage and once more), and at
    /// least (each stage's map at least its key reduction's kernel).
    side_multiple: usize,
    min_side: usize,
}

impl GlpnForDepthEstimation {
    pub fn new(p: Path, cfg: &Config) -> Self {
        let width = cfg.decoder_hidden_size;
        let decoder = &p / "decoder" / "stages";
        let stages = cfg
            .encoder
            .hidden_sizes
            .iter()
            .rev()
            .enumerate()
            .map(|(k, &input)| {
                let stage = &decoder / k as i64;
                DecoderStage {
                    convolution: (input != width)
                        .then(|| Conv2d::new(&stage / "convolution", input, width, ConvSpec::new(1).channels_last())),
                    fusion: (k > 0).then(|| SelectiveFeatureFusion::new(&stage / "fusion", width)),
                }
            })
            .collect();
        let head = &p / "head" / "head";
        GlpnForDepthEstimation {
            encoder: MitEncoder::new(&(&p / "glpn" / "encoder"), &cfg.encoder),
            stages,
            head_conv1: Conv2d::new(&head / 0, width, width, ConvSpec::same(3).channels_last()),
            head_conv2: Conv2d::new(&head / 2, width, 1, ConvSpec::same(3).channels_last()),
            head_in_index: cfg.head_in_index,
            max_depth: cfg.max_depth,
            side_multiple: 2 << cfg.encoder.num_encoder_blocks,
            min_side: cfg.encoder.min_side(),
        }
    }

    /// predicted_depth [B, H, W] for pixel_values [B, 3, H, W] (sides
    /// multiples of 32, as GLPNImageProcessor makes them).
    pub fn forward(&self, pixel_values: &Tensor) -> Tensor {
        let _guard = tch::no_grad_guard();
        let features = self.encoder.forward(pixel_values);
        let mut outputs: Vec<Tensor> = Vec::with_capacity(self.stages.len());
        for (feature, stage) in features.iter().rev().zip(&self.stages) {
            let x = match &stage.convolution {
                Some(conv) => conv.forward(feature),
                None => feature.shallow_clone(),
            };
            let x = match (&stage.fusion, outputs.last()) {
                (Some(fusion), Some(global)) => fusion.forward(&x, global),
                _ => x,
            };
            outputs.push(upsample2(&x, false));
        }
        let last = outputs.len() - 1;
        outputs[last] = upsample2(&outputs[last], false);
        let at = self.head_in_index.rem_euclid(outputs.len() as i64) as usize;
        let x = self.head_conv2.forward(&self.head_conv1.forward(&outputs[at]).relu());
        (x.sigmoid() * self.max_depth).squeeze_dim(1)
    }
}

impl DepthNet for GlpnForDepthEstimation {
    fn forward(&self, pixel_values: &Tensor) -> Tensor {
        GlpnForDepthEstimation::forward(self, pixel_values)
    }

    fn check_input(&self, height: usize, width: usize) -> Result<()> {
        let (multiple, min) = (self.side_multiple, self.min_side.max(self.side_multiple));
        if !height.is_multiple_of(multiple) || !width.is_multiple_of(multiple) || height < min || width < min {
            return Err(ModelError::InvalidInput(format!(
                "the image is {width}x{height} as processed, but this GLPN model needs sides that are multiples \
                 of {multiple} and at least {min} (is its preprocessor_config.json's size_divisor {multiple}?)"
            )));
        }
        Ok(())
    }
}

/// `GLPNForDepthEstimation`, for depth estimation.
pub fn build(root: Path, config_file: &std::path::Path, shapes: &WeightShapes) -> Result<Box<dyn DepthNet>> {
    let cfg: Config = read_json(config_file)?;
    cfg.validate(config_file, shapes)?;
    Ok(Box::new(GlpnForDepthEstimation::new(root, &cfg)))
}
