//! SegFormer (Xie et al.) for semantic segmentation: the Mix Transformer
//! encoder (`mit`, shared with GLPN) and the all-MLP decode head: each
//! stage's map projected to one width, resized to the finest stage's size,
//! concatenated (coarsest first), fused by a 1x1 convolution with batch
//! norm and ReLU, and classified per pixel at the finest stage's size (a
//! quarter of the input's). Reproduces transformers' `SegformerForSemanticSegmentation`
//! (`modeling_segformer.py`), with its weight names.

use serde::Deserialize;
use tch::{nn::Path, Tensor};

use crate::core::checks::{ConfigCheck, MAX_WIDTH};
use crate::core::config::read_json;
use crate::core::layers::{BatchNorm, Conv2d, ConvSpec, Linear, NormKind};
use crate::core::weights::WeightShapes;
use crate::vision::mit::{MitConfig, MitEncoder};
use crate::vision::segmenter::{QueryStyle, SegmenterNet, SegmenterOutput};
use crate::{ModelError, Result};

/// `SegformerConfig`, with transformers' defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Config {
    #[serde(flatten)]
    pub encoder: MitConfig,
    pub decoder_hidden_size: i64,
    /// Deprecated in transformers; false changes its decode head's input.
    pub reshape_last_stage: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            encoder: MitConfig::default(),
            decoder_hidden_size: 256,
            reshape_last_stage: true,
        }
    }
}

impl Config {
    pub fn validate(&self, file: &std::path::Path, shapes: &WeightShapes, num_labels: i64) -> Result<()> {
        self.encoder.validate(file, shapes, "segformer.encoder")?;
        if !self.reshape_last_stage {
            return Err(ModelError::Unsupported(
                "SegFormer with reshape_last_stage false (deprecated in transformers)".into(),
            ));
        }
        let c = ConfigCheck::new(file, shapes);
        c.at_most("id2label", num_labels - 1, i64::from(u16::MAX))?;
        let d = self.decoder_hidden_size;
        c.matches(
            "decoder_hidden_size",
            d,
            MAX_WIDTH,
            "decode_head.linear_c.0.proj.weight",
            0,
        )?;
        let stages = self.encoder.num_encoder_blocks;
        c.anchor(
            "decoder_hidden_size",
            d,
            d * stages,
            " (times the stages)",
            "decode_head.linear_fuse.weight",
            1,
        )?;
        c.anchor(
            "id2label",
            num_labels,
            num_labels,
            " (one row per label)",
            "decode_head.classifier.weight",
            0,
        )?;
        Ok(())
    }
}

/// `SegformerForSemanticSegmentation`.
pub struct SegformerForSemanticSegmentation {
    encoder: MitEncoder,
    /// Each stage's projection to the decoder's width.
    linear_c: Vec<Linear>,
    linear_fuse: Conv2d,
    batch_norm: BatchNorm,
    classifier: Conv2d,
    min_side: usize,
}

impl SegformerForSemanticSegmentation {
    pub fn new(p: Path, cfg: &Config, num_labels: i64) -> Self {
        let d = cfg.decoder_hidden_size;
        let head = &p / "decode_head";
        let stages = cfg.encoder.num_encoder_blocks;
        SegformerForSemanticSegmentation {
            encoder: MitEncoder::new(&(&p / "segformer" / "encoder"), &cfg.encoder),
            linear_c: cfg
                .encoder
                .hidden_sizes
                .iter()
                .enumerate()
                .map(|(i, &h)| Linear::new(&head / "linear_c" / i as i64 / "proj", h, d))
                .collect(),
            linear_fuse: Conv2d::new(&head / "linear_fuse", d * stages, d, ConvSpec::new(1).no_bias()),
            batch_norm: BatchNorm::new(&head / "batch_norm", d, NormKind::Eval),
            classifier: Conv2d::new(&head / "classifier", d, num_labels, ConvSpec::new(1)),
            min_side: cfg.encoder.min_side(),
        }
    }

    /// Class logits [B, labels, H / 4, W / 4] for pixel_values [B, 3, H, W].
    pub fn forward(&self, pixel_values: &Tensor) -> Tensor {
        let _guard = tch::no_grad_guard();
        let features = self.encoder.forward(pixel_values);
        let (_, _, h0, w0) = features[0].size4().expect("a feature map");
        let mut projected: Vec<Tensor> = features
            .iter()
            .zip(&self.linear_c)
            .map(|(feature, linear)| {
                let (b, _, h, w) = feature.size4().expect("a feature map");
                let x = linear
                    .forward(&feature.flatten(2, -1).transpose(1, 2))
                    .permute([0, 2, 1])
                    .reshape([b, -1, h, w]);
                if (h, w) == (h0, w0) {
                    x
                } else {
                    x.upsample_bilinear2d([h0, w0], false, None, None)
                }
            })
            .collect();
        projected.reverse();
        let fused = self
            .batch_norm
            .forward(&self.linear_fuse.forward(&Tensor::cat(&projected, 1)))
            .relu();
        self.classifier.forward(&fused)
    }
}

impl SegmenterNet for SegformerForSemanticSegmentation {
    fn forward(&self, pixel_values: &Tensor) -> SegmenterOutput {
        SegmenterOutput::Semantic(SegformerForSemanticSegmentation::forward(self, pixel_values))
    }

    fn query_style(&self) -> Option<QueryStyle> {
        None
    }

    fn check_input(&self, height: usize, width: usize) -> Result<()> {
        if height < self.min_side || width < self.min_side {
            return Err(ModelError::InvalidInput(format!(
                "the image is {width}x{height} as processed, but this SegFormer model needs at least {0}x{0}",
                self.min_side
            )));
        }
        Ok(())
    }
}

/// `SegformerForSemanticSegmentation`, for image segmentation.
pub fn build(
    root: Path,
    config_file: &std::path::Path,
    shapes: &WeightShapes,
    num_labels: i64,
) -> Result<Box<dyn SegmenterNet>> {
    let cfg: Config = read_json(config_file)?;
    cfg.validate(config_file, shapes, num_labels)?;
    Ok(Box::new(SegformerForSemanticSegmentation::new(root, &cfg, num_labels)))
}
