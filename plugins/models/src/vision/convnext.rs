//! ConvNeXT (Liu et al.): a patchify stem, four stages of depthwise 7x7
//! convolutions with inverted-bottleneck MLPs and layer scale, downsampling
//! between stages, global average pooling, a layer norm and a classifier.
//! Weight names follow transformers' `modeling_convnext.py`.

use serde::Deserialize;
use tch::{nn::Path, Tensor};

use crate::core::checks::{ConfigCheck, MAX_SPATIAL, MAX_WIDTH};
use crate::core::config::read_json;
use crate::core::layers::{Activation, Conv2d, ConvSpec, LayerNorm, Linear, Variables};
use crate::core::weights::WeightShapes;
use crate::vision::classifier::ImageClassifierNet;

/// The epsilon of ConvNeXT's inner layer norms (fixed in transformers).
const INNER_EPS: f64 = 1e-6;

fn default_channels() -> i64 {
    3
}
fn default_patch() -> i64 {
    4
}
fn default_sizes() -> Vec<i64> {
    vec![96, 192, 384, 768]
}
fn default_depths() -> Vec<i64> {
    vec![3, 3, 9, 3]
}
fn default_eps() -> f64 {
    1e-12
}
fn default_layer_scale() -> f64 {
    1e-6
}

/// `ConvNextConfig`, with transformers' defaults.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    #[serde(default = "default_channels")]
    pub num_channels: i64,
    #[serde(default = "default_patch")]
    pub patch_size: i64,
    #[serde(default = "default_sizes")]
    pub hidden_sizes: Vec<i64>,
    #[serde(default = "default_depths")]
    pub depths: Vec<i64>,
    #[serde(default)]
    pub hidden_act: Activation,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_layer_scale")]
    pub layer_scale_init_value: f64,
}

impl Config {
    /// Every size within its bound and equal to the checkpoint's
    /// (`core::checks`), before anything is built from them.
    pub fn validate(&self, file: &std::path::Path, shapes: &WeightShapes) -> crate::Result<()> {
        let c = ConfigCheck::new(file, shapes);
        c.list("hidden_sizes", self.hidden_sizes.len())?;
        c.same_length(&[("hidden_sizes", self.hidden_sizes.len()), ("depths", self.depths.len())])?;
        c.layers(
            "hidden_sizes (stages)",
            self.hidden_sizes.len() as i64,
            "encoder.stages",
        )?;
        let stem = "embeddings.patch_embeddings.weight";
        c.matches("hidden_sizes[0]", self.hidden_sizes[0], MAX_WIDTH, stem, 0)?;
        c.matches("num_channels", self.num_channels, MAX_SPATIAL, stem, 1)?;
        c.matches("patch_size", self.patch_size, MAX_SPATIAL, stem, 2)?;
        for (i, (&size, &depth)) in self.hidden_sizes.iter().zip(&self.depths).enumerate() {
            let stage = format!("encoder.stages.{i}.layers");
            c.layers(&format!("depths[{i}]"), depth, &stage)?;
            c.matches(
                &format!("hidden_sizes[{i}]"),
                size,
                MAX_WIDTH,
                &format!("{stage}.0.dwconv.weight"),
                0,
            )?;
        }
        Ok(())
    }
}

/// Layer norm over the channels of a [N, C, H, W] tensor.
fn norm_channels_first(norm: &LayerNorm, x: &Tensor) -> Tensor {
    norm.forward(&x.permute([0, 2, 3, 1])).permute([0, 3, 1, 2])
}

struct Block {
    dwconv: Conv2d,
    norm: LayerNorm,
    pwconv1: Linear,
    pwconv2: Linear,
    scale: Option<Tensor>,
    act: Activation,
}

impl Block {
    fn new(p: Path, cfg: &Config, dim: i64) -> Self {
        Block {
            dwconv: Conv2d::new(&p / "dwconv", dim, dim, ConvSpec::same(7).groups(dim)),
            norm: LayerNorm::new(&p / "layernorm", dim, INNER_EPS),
            pwconv1: Linear::new(&p / "pwconv1", dim, 4 * dim),
            pwconv2: Linear::new(&p / "pwconv2", 4 * dim, dim),
            scale: (cfg.layer_scale_init_value > 0.0).then(|| p.zeros_var("layer_scale_parameter", &[dim])),
            act: cfg.hidden_act,
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let h = self.dwconv.forward(x).permute([0, 2, 3, 1]);
        let mut h = self
            .pwconv2
            .forward(&self.act.forward(&self.pwconv1.forward(&self.norm.forward(&h))));
        if let Some(scale) = &self.scale {
            h *= scale;
        }
        h.permute([0, 3, 1, 2]) + x
    }
}

struct Stage {
    downsample: Option<(LayerNorm, Conv2d)>,
    blocks: Vec<Block>,
}

/// `ConvNextForImageClassification`.
pub struct ConvNextForImageClassification {
    stem: Conv2d,
    stem_norm: LayerNorm,
    stages: Vec<Stage>,
    norm: LayerNorm,
    classifier: Linear,
}

impl ConvNextForImageClassification {
    pub fn new(p: Path, cfg: &Config, num_labels: i64) -> Self {
        let c = &p / "convnext";
        let emb = &c / "embeddings";
        let sizes = &cfg.hidden_sizes;
        let mut stages = Vec::new();
        let mut prev = sizes[0];
        for (i, (&out, &depth)) in sizes.iter().zip(&cfg.depths).enumerate() {
            let s = &c / "encoder" / "stages" / i as i64;
            let stride = if i > 0 { 2 } else { 1 };
            let downsample = (prev != out || stride > 1).then(|| {
                let d = &s / "downsampling_layer";
                (
                    LayerNorm::new(&d / 0, prev, INNER_EPS),
                    Conv2d::new(&d / 1, prev, out, ConvSpec::new(2).stride(stride)),
                )
            });
            let blocks = (0..depth).map(|j| Block::new(&s / "layers" / j, cfg, out)).collect();
            stages.push(Stage { downsample, blocks });
            prev = out;
        }
        let last = *sizes.last().expect("at least one stage");
        ConvNextForImageClassification {
            stem: Conv2d::new(
                &emb / "patch_embeddings",
                cfg.num_channels,
                sizes[0],
                ConvSpec::new(cfg.patch_size).stride(cfg.patch_size),
            ),
            stem_norm: LayerNorm::new(&emb / "layernorm", sizes[0], INNER_EPS),
            stages,
            norm: LayerNorm::new(&c / "layernorm", last, cfg.layer_norm_eps),
            classifier: Linear::new(&p / "classifier", last, num_labels),
        }
    }

    /// Logits [batch, labels] for pixel_values [batch, 3, H, W].
    pub fn forward(&self, pixel_values: &Tensor) -> Tensor {
        let _guard = tch::no_grad_guard();
        let mut x = norm_channels_first(&self.stem_norm, &self.stem.forward(pixel_values));
        for stage in &self.stages {
            if let Some((norm, conv)) = &stage.downsample {
                x = conv.forward(&norm_channels_first(norm, &x));
            }
            for block in &stage.blocks {
                x = block.forward(&x);
            }
        }
        let pooled = x.mean_dim([-2i64, -1].as_slice(), false, x.kind());
        self.classifier.forward(&self.norm.forward(&pooled))
    }
}

impl ImageClassifierNet for ConvNextForImageClassification {
    fn forward(&self, pixel_values: &Tensor) -> Tensor {
        ConvNextForImageClassification::forward(self, pixel_values)
    }
}

/// `ConvNextForImageClassification`, for image classification.
pub fn build(
    root: Path,
    config_file: &std::path::Path,
    shapes: &WeightShapes,
    num_labels: i64,
) -> crate::Result<Box<dyn ImageClassifierNet>> {
    let cfg: Config = read_json(config_file)?;
    cfg.validate(config_file, shapes)?;
    Ok(Box::new(ConvNextForImageClassification::new(root, &cfg, num_labels)))
}
