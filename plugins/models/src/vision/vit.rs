//! ViT (Dosovitskiy et al.): the image cut into patches by a strided
//! convolution, a [CLS] token and learned positions, pre-norm transformer
//! layers, a final layer norm, and a classifier on [CLS]. Weight names follow
//! transformers' `modeling_vit.py`.

use serde::Deserialize;
use tch::{nn::Path, Tensor};

use crate::core::checks::{ConfigCheck, MAX_SPATIAL, MAX_WIDTH};
use crate::core::config::read_json;
use crate::core::layers::{attention, merge_heads, split_heads, Activation, LayerNorm, Linear, Variables};
use crate::core::weights::WeightShapes;
use crate::vision::classifier::ImageClassifierNet;

fn default_hidden() -> i64 {
    768
}
fn default_layers() -> i64 {
    12
}
fn default_heads() -> i64 {
    12
}
fn default_intermediate() -> i64 {
    3072
}
fn default_eps() -> f64 {
    1e-12
}
fn default_image_size() -> i64 {
    224
}
fn default_patch() -> i64 {
    16
}
fn default_channels() -> i64 {
    3
}
fn yes() -> bool {
    true
}

/// `ViTConfig`, with transformers' defaults.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    #[serde(default = "default_hidden")]
    pub hidden_size: i64,
    #[serde(default = "default_layers")]
    pub num_hidden_layers: i64,
    #[serde(default = "default_heads")]
    pub num_attention_heads: i64,
    #[serde(default = "default_intermediate")]
    pub intermediate_size: i64,
    #[serde(default)]
    pub hidden_act: Activation,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_image_size")]
    pub image_size: i64,
    #[serde(default = "default_patch")]
    pub patch_size: i64,
    #[serde(default = "default_channels")]
    pub num_channels: i64,
    #[serde(default = "yes")]
    pub qkv_bias: bool,
}

impl Config {
    /// Every size within its bound and equal to the checkpoint's
    /// (`core::checks`), before anything is built from them.
    pub fn validate(&self, file: &std::path::Path, shapes: &WeightShapes) -> crate::Result<()> {
        let c = ConfigCheck::new(file, shapes);
        let patches = "embeddings.patch_embeddings.projection.weight";
        c.matches("hidden_size", self.hidden_size, MAX_WIDTH, patches, 0)?;
        c.matches("num_channels", self.num_channels, MAX_SPATIAL, patches, 1)?;
        c.matches("patch_size", self.patch_size, MAX_SPATIAL, patches, 2)?;
        c.size("image_size", self.image_size, MAX_SPATIAL)?;
        c.at_least("image_size", self.image_size, "patch_size", self.patch_size)?;
        let side = self.image_size / self.patch_size;
        c.anchor(
            "image_size",
            self.image_size,
            side * side + 1,
            " ((image_size / patch_size)^2 + 1 positions)",
            "embeddings.position_embeddings",
            1,
        )?;
        c.layers("num_hidden_layers", self.num_hidden_layers, "encoder.layer")?;
        c.divides(
            "num_attention_heads",
            self.num_attention_heads,
            "hidden_size",
            self.hidden_size,
        )?;
        let intermediate = "encoder.layer.0.intermediate.dense.weight";
        c.matches("intermediate_size", self.intermediate_size, MAX_WIDTH, intermediate, 0)?;
        Ok(())
    }
}

/// A pre-norm ViT layer (also DPT's backbone's).
pub(crate) struct Layer {
    norm_before: LayerNorm,
    query: Linear,
    key: Linear,
    value: Linear,
    output: Linear,
    norm_after: LayerNorm,
    intermediate: Linear,
    out: Linear,
    heads: i64,
    act: Activation,
}

impl Layer {
    pub(crate) fn new(p: Path, cfg: &Config) -> Self {
        let h = cfg.hidden_size;
        let a = &p / "attention" / "attention";
        let qkv = |name: &str| {
            if cfg.qkv_bias {
                Linear::new(&a / name, h, h)
            } else {
                Linear::no_bias(&a / name, h, h)
            }
        };
        Layer {
            norm_before: LayerNorm::new(&p / "layernorm_before", h, cfg.layer_norm_eps),
            query: qkv("query"),
            key: qkv("key"),
            value: qkv("value"),
            output: Linear::new(&p / "attention" / "output" / "dense", h, h),
            norm_after: LayerNorm::new(&p / "layernorm_after", h, cfg.layer_norm_eps),
            intermediate: Linear::new(&p / "intermediate" / "dense", h, cfg.intermediate_size),
            out: Linear::new(&p / "output" / "dense", cfg.intermediate_size, h),
            heads: cfg.num_attention_heads,
            act: cfg.hidden_act,
        }
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Tensor {
        let n = self.norm_before.forward(x);
        let q = split_heads(&self.query.forward(&n), self.heads);
        let k = split_heads(&self.key.forward(&n), self.heads);
        let v = split_heads(&self.value.forward(&n), self.heads);
        let x = self.output.forward(&merge_heads(&attention(&q, &k, &v, None))) + x;
        let h = self.out.forward(
            &self
                .act
                .forward(&self.intermediate.forward(&self.norm_after.forward(&x))),
        );
        h + x
    }
}

/// `ViTForImageClassification`.
pub struct VitForImageClassification {
    cls_token: Tensor,
    position_embeddings: Tensor,
    patch_weight: Tensor,
    patch_bias: Tensor,
    patch_size: i64,
    layers: Vec<Layer>,
    norm: LayerNorm,
    classifier: Linear,
}

impl VitForImageClassification {
    pub fn new(p: Path, cfg: &Config, num_labels: i64) -> Self {
        let vit = &p / "vit";
        let emb = &vit / "embeddings";
        let patches = (cfg.image_size / cfg.patch_size).pow(2);
        let proj = &emb / "patch_embeddings" / "projection";
        let h = cfg.hidden_size;
        VitForImageClassification {
            cls_token: emb.zeros_var("cls_token", &[1, 1, h]),
            position_embeddings: emb.zeros_var("position_embeddings", &[1, patches + 1, h]),
            patch_weight: proj.zeros_var("weight", &[h, cfg.num_channels, cfg.patch_size, cfg.patch_size]),
            patch_bias: proj.zeros_var("bias", &[h]),
            patch_size: cfg.patch_size,
            layers: (0..cfg.num_hidden_layers)
                .map(|i| Layer::new(&vit / "encoder" / "layer" / i, cfg))
                .collect(),
            norm: LayerNorm::new(&vit / "layernorm", h, cfg.layer_norm_eps),
            classifier: Linear::new(&p / "classifier", h, num_labels),
        }
    }

    /// Logits [batch, labels] for pixel_values [batch, 3, H, W] of the
    /// configured image size.
    pub fn forward(&self, pixel_values: &Tensor) -> Tensor {
        let _guard = tch::no_grad_guard();
        let patches = pixel_values.conv2d(
            &self.patch_weight,
            Some(&self.patch_bias),
            [self.patch_size; 2],
            [0; 2],
            [1; 2],
            1,
        );
        let patches = patches.flatten(2, -1).transpose(1, 2);
        let b = patches.size()[0];
        let cls = self.cls_token.expand([b, -1, -1], false);
        let mut x = Tensor::cat(&[cls, patches], 1) + &self.position_embeddings;
        for layer in &self.layers {
            x = layer.forward(&x);
        }
        self.classifier.forward(&self.norm.forward(&x).select(1, 0))
    }
}

impl ImageClassifierNet for VitForImageClassification {
    fn forward(&self, pixel_values: &Tensor) -> Tensor {
        VitForImageClassification::forward(self, pixel_values)
    }
}

/// `VitForImageClassification`, for image classification.
pub fn build(
    root: Path,
    config_file: &std::path::Path,
    shapes: &WeightShapes,
    num_labels: i64,
) -> crate::Result<Box<dyn ImageClassifierNet>> {
    let cfg: Config = read_json(config_file)?;
    cfg.validate(config_file, shapes)?;
    Ok(Box::new(VitForImageClassification::new(root, &cfg, num_labels)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::weights::WeightShapes;
    use std::path::Path;

    #[test]
    fn vit_patch_and_image_sizes_are_checked_against_the_embeddings() {
        let shapes = WeightShapes::from_shapes([
            ("vit.embeddings.patch_embeddings.projection.weight", vec![32, 3, 8, 8]),
            ("vit.embeddings.position_embeddings", vec![1, 17, 32]),
            ("vit.encoder.layer.0.intermediate.dense.weight", vec![64, 32]),
        ]);
        let config = |edit: serde_json::Value| -> Config {
            crate::core::checks::edited(
                serde_json::json!({
                    "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 4,
                    "intermediate_size": 64, "image_size": 32, "patch_size": 8
                }),
                edit,
            )
        };
        let file = Path::new("config.json");
        config(serde_json::json!({})).validate(file, &shapes).unwrap();
        let refused = |edit| config(edit).validate(file, &shapes).unwrap_err().to_string();
        assert!(refused(serde_json::json!({"patch_size": 0})).contains("patch_size = 0"));
        assert!(refused(serde_json::json!({"patch_size": 4})).contains("patch_size = 4"));
        assert!(refused(serde_json::json!({"image_size": 64})).contains("image_size = 64"));
        assert!(refused(serde_json::json!({"image_size": 4})).contains("at least patch_size"));
        assert!(refused(serde_json::json!({"hidden_size": 1_000_000_000})).contains("hidden_size = 1000000000"));
        assert!(refused(serde_json::json!({"num_attention_heads": 0})).contains("num_attention_heads = 0"));
        assert!(refused(serde_json::json!({"num_hidden_layers": 2})).contains("num_hidden_layers = 2"));
    }
}
