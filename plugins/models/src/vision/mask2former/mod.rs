//! Mask2Former (Cheng et al.) for universal segmentation: a Swin backbone,
//! the pixel decoder (`pixel_decoder`: deformable attention over the three
//! coarsest maps, an FPN down to a quarter of the input), and the
//! transformer decoder (`decoder`: learned queries with masked attention).
//! Each query gives class logits (the labels and "no object") and a mask
//! over the mask features; semantic, instance and panoptic segmentation are
//! all read from them (`vision::mask_queries`).
//!
//! Reproduces transformers' `Mask2FormerForUniversalSegmentation`
//! (`modeling_mask2former.py`), with its weight names, for the Swin
//! backbones its checkpoints use (facebook/mask2former-swin-*).

mod decoder;
mod pixel_decoder;

use serde::Deserialize;
use tch::{nn::Path, Tensor};

use crate::core::checks::{ConfigCheck, MAX_LAYERS, MAX_SPATIAL, MAX_WIDTH};
use crate::core::config::read_json;
use crate::core::layers::{Activation, Linear};
use crate::core::weights::WeightShapes;
use crate::vision::backbones::swin::{SwinBackbone, SwinConfig};
use crate::vision::segmenter::{QueryStyle, SegmenterNet, SegmenterOutput};
use crate::{ModelError, Result};

use decoder::{DecoderShape, TransformerDecoder};
use pixel_decoder::{PixelDecoder, PixelDecoderShape, GROUPS, LEVELS};

/// The most object queries a model may have.
const MAX_QUERIES: i64 = 4096;

/// `Mask2FormerConfig`, with transformers' defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Config {
    /// None: transformers' default Swin (Swin-B's depths with Swin-T's width).
    pub backbone_config: Option<SwinConfig>,
    /// A timm or hub backbone by name, which inferd does not load.
    pub backbone: Option<String>,
    pub use_timm_backbone: bool,
    pub feature_size: i64,
    pub mask_feature_size: i64,
    pub hidden_dim: i64,
    pub encoder_feedforward_dim: i64,
    pub activation_function: Activation,
    pub encoder_layers: i64,
    pub decoder_layers: i64,
    pub num_attention_heads: i64,
    pub dim_feedforward: i64,
    pub pre_norm: bool,
    pub enforce_input_projection: bool,
    pub common_stride: i64,
    pub num_queries: i64,
    pub feature_strides: Vec<i64>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            backbone_config: None,
            backbone: None,
            use_timm_backbone: false,
            feature_size: 256,
            mask_feature_size: 256,
            hidden_dim: 256,
            encoder_feedforward_dim: 1024,
            activation_function: Activation::Relu,
            encoder_layers: 6,
            decoder_layers: 10,
            num_attention_heads: 8,
            dim_feedforward: 2048,
            pre_norm: false,
            enforce_input_projection: false,
            common_stride: 4,
            num_queries: 100,
            feature_strides: vec![4, 8, 16, 32],
        }
    }
}

/// The Swin transformers builds when a config names no backbone.
fn default_backbone() -> SwinConfig {
    SwinConfig {
        depths: vec![2, 2, 18, 2],
        out_features: Some((1..=4).map(|i| format!("stage{i}")).collect()),
        ..SwinConfig::default()
    }
}

const PIXEL: &str = "model.pixel_level_module.decoder";
const TRANSFORMER: &str = "model.transformer_module";

impl Config {
    fn swin(&self) -> SwinConfig {
        self.backbone_config.clone().unwrap_or_else(default_backbone)
    }

    /// The FPN steps between the deformable levels' finest stride and the
    /// common stride: log2 of their ratio.
    fn fpn_levels(&self) -> i64 {
        let strides = &self.feature_strides[self.feature_strides.len().saturating_sub(LEVELS)..];
        let finest = strides.iter().copied().min().unwrap_or(1).max(1);
        let log2 = |v: i64| (v as f64).log2();
        (log2(finest) - log2(self.common_stride.max(1))) as i64
    }

    pub fn validate(&self, file: &std::path::Path, shapes: &WeightShapes, num_labels: i64) -> Result<()> {
        if self.use_timm_backbone || self.backbone.is_some() {
            return Err(ModelError::Unsupported(format!(
                "Mask2Former with a backbone loaded by name ({:?}); inferd loads the Swin backbone the \
                 checkpoint holds (backbone_config)",
                self.backbone.as_deref().unwrap_or("timm")
            )));
        }
        let swin = self.swin();
        swin.validate(file, shapes, "model.pixel_level_module.encoder")?;
        let c = ConfigCheck::new(file, shapes);
        let stages = swin.depths.len();
        if stages < LEVELS {
            return Err(ModelError::bad_file(
                file,
                format!("the backbone has {stages} stages, but Mask2Former reads {LEVELS} levels"),
            ));
        }
        c.same_length(&[
            ("feature_strides", self.feature_strides.len()),
            ("the backbone's stages", stages),
        ])?;
        for (i, &stride) in self.feature_strides.iter().enumerate() {
            c.size(&format!("feature_strides[{i}]"), stride, MAX_SPATIAL)?;
        }
        c.size("common_stride", self.common_stride, MAX_SPATIAL)?;
        let fpn = self.fpn_levels();
        if fpn < 0 || fpn as usize > stages - LEVELS {
            return Err(ModelError::bad_file(
                file,
                format!(
                    "common_stride = {} with feature_strides {:?} asks for {fpn} FPN levels, but the backbone has \
                     {} maps finer than the deformable levels",
                    self.common_stride,
                    self.feature_strides,
                    stages - LEVELS
                ),
            ));
        }
        let fs = self.feature_size;
        c.matches(
            "feature_size",
            fs,
            MAX_WIDTH,
            &format!("{PIXEL}.input_projections.0.0.weight"),
            0,
        )?;
        c.divides("the group norms' 32 groups", GROUPS, "feature_size", fs)?;
        c.divides("num_attention_heads", self.num_attention_heads, "feature_size", fs)?;
        c.anchor(
            "num_attention_heads",
            self.num_attention_heads,
            self.num_attention_heads * LEVELS as i64 * 4 * 2,
            " (heads x 3 levels x 4 points x 2)",
            &format!("{PIXEL}.encoder.layers.0.self_attn.sampling_offsets.weight"),
            0,
        )?;
        c.layers(
            "encoder_layers",
            self.encoder_layers,
            &format!("{PIXEL}.encoder.layers"),
        )?;
        c.matches(
            "encoder_feedforward_dim",
            self.encoder_feedforward_dim,
            MAX_WIDTH,
            &format!("{PIXEL}.encoder.layers.0.fc1.weight"),
            0,
        )?;
        c.matches(
            "mask_feature_size",
            self.mask_feature_size,
            MAX_WIDTH,
            &format!("{PIXEL}.mask_projection.weight"),
            0,
        )?;
        let hidden = self.hidden_dim;
        c.matches(
            "hidden_dim",
            hidden,
            MAX_WIDTH,
            &format!("{TRANSFORMER}.queries_features.weight"),
            1,
        )?;
        if hidden != fs || self.enforce_input_projection {
            // transformers keeps those projections in a plain list: they are
            // neither loaded nor saved, so no checkpoint holds them.
            return Err(ModelError::Unsupported(
                "Mask2Former whose transformer decoder projects its inputs (hidden_dim differs from feature_size, \
                 or enforce_input_projection): transformers saves no weights for those projections"
                    .into(),
            ));
        }
        c.matches(
            "num_queries",
            self.num_queries,
            MAX_QUERIES,
            &format!("{TRANSFORMER}.queries_features.weight"),
            0,
        )?;
        c.divides("num_attention_heads", self.num_attention_heads, "hidden_dim", hidden)?;
        c.size("decoder_layers", self.decoder_layers, MAX_LAYERS)?;
        if self.decoder_layers > 1 {
            c.layers(
                "decoder_layers - 1",
                self.decoder_layers - 1,
                &format!("{TRANSFORMER}.decoder.layers"),
            )?;
            c.matches(
                "dim_feedforward",
                self.dim_feedforward,
                MAX_WIDTH,
                &format!("{TRANSFORMER}.decoder.layers.0.fc1.weight"),
                0,
            )?;
        }
        c.anchor(
            "mask_feature_size",
            self.mask_feature_size,
            self.mask_feature_size,
            "",
            &format!("{TRANSFORMER}.decoder.mask_predictor.mask_embedder.2.0.weight"),
            0,
        )?;
        c.anchor(
            "id2label",
            num_labels,
            num_labels + 1,
            " (one row per label and one for no object)",
            "class_predictor.weight",
            0,
        )?;
        Ok(())
    }
}

/// `Mask2FormerForUniversalSegmentation`.
pub struct Mask2FormerForUniversalSegmentation {
    backbone: SwinBackbone,
    pixel_decoder: PixelDecoder,
    decoder: TransformerDecoder,
    class_predictor: Linear,
}

impl Mask2FormerForUniversalSegmentation {
    pub fn new(p: Path, cfg: &Config, num_labels: i64) -> Self {
        let swin = cfg.swin();
        let m = &p / "model";
        let pixel = &m / "pixel_level_module";
        let channels = swin.channels();
        Mask2FormerForUniversalSegmentation {
            backbone: SwinBackbone::new(&(&pixel / "encoder"), &swin),
            pixel_decoder: PixelDecoder::new(
                &(&pixel / "decoder"),
                &PixelDecoderShape {
                    channels: &channels,
                    feature_size: cfg.feature_size,
                    mask_feature_size: cfg.mask_feature_size,
                    heads: cfg.num_attention_heads,
                    encoder_layers: cfg.encoder_layers,
                    encoder_ffn: cfg.encoder_feedforward_dim,
                    fpn_levels: cfg.fpn_levels() as usize,
                },
            ),
            decoder: TransformerDecoder::new(
                &(&m / "transformer_module"),
                &DecoderShape {
                    hidden: cfg.hidden_dim,
                    mask_feature_size: cfg.mask_feature_size,
                    heads: cfg.num_attention_heads,
                    queries: cfg.num_queries,
                    layers: cfg.decoder_layers - 1,
                    ffn: cfg.dim_feedforward,
                    act: cfg.activation_function,
                    pre_norm: cfg.pre_norm,
                },
            ),
            class_predictor: Linear::new(&p / "class_predictor", cfg.hidden_dim, num_labels + 1),
        }
    }

    /// Class logits [B, Q, labels + 1] and mask logits [B, Q, H / 4, W / 4]
    /// for pixel_values [B, 3, H, W].
    pub fn forward(&self, pixel_values: &Tensor) -> (Tensor, Tensor) {
        let _guard = tch::no_grad_guard();
        let features = self.backbone.forward(pixel_values);
        let pixels = self.pixel_decoder.forward(&features);
        let out = self.decoder.forward(&pixels);
        (self.class_predictor.forward(&out.queries), out.masks)
    }
}

impl SegmenterNet for Mask2FormerForUniversalSegmentation {
    fn forward(&self, pixel_values: &Tensor) -> SegmenterOutput {
        let (classes, masks) = Mask2FormerForUniversalSegmentation::forward(self, pixel_values);
        SegmenterOutput::Queries {
            classes,
            masks,
            style: QueryStyle::Mask2Former,
        }
    }

    fn query_style(&self) -> Option<QueryStyle> {
        Some(QueryStyle::Mask2Former)
    }
}

/// `Mask2FormerForUniversalSegmentation`, for image segmentation.
pub fn build(
    root: Path,
    config_file: &std::path::Path,
    shapes: &WeightShapes,
    num_labels: i64,
) -> Result<Box<dyn SegmenterNet>> {
    let cfg: Config = read_json(config_file)?;
    cfg.validate(config_file, shapes, num_labels)?;
    Ok(Box::new(Mask2FormerForUniversalSegmentation::new(
        root, &cfg, num_labels,
    )))
}
