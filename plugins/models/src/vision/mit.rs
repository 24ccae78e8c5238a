//! The Mix Transformer (MiT, Xie et al., SegFormer), the encoder of GLPN and
//! SegFormer: stages of overlapping patch embeddings (a strided convolution
//! wider than its stride), efficient self-attention whose keys and values
//! come from a sequence shrunk by a strided convolution (`sr`), and Mix-FFN
//! (a depthwise 3x3 convolution between the two linear layers). Each stage
//! ends in a layer norm and gives a feature map [B, C, H / 4 .. H / 32, ..].
//! Weight names follow transformers' `SegformerEncoder` / `GLPNEncoder`
//! (`patch_embeddings.0.proj`, `block.0.1.attention.self.sr`,
//! `layer_norm.3`), under the prefix the model gives.

use serde::Deserialize;
use tch::{nn::Path, Tensor};

use crate::core::checks::{ConfigCheck, MAX_SPATIAL, MAX_WIDTH};
use crate::core::layers::{attention, merge_heads, split_heads, Activation, Conv2d, ConvSpec, LayerNorm, Linear};
use crate::core::weights::WeightShapes;
use crate::Result;

/// Every layer norm of the encoder is nn.LayerNorm's default: transformers
/// never reads the config's `layer_norm_eps`.
const LAYER_NORM_EPS: f64 = 1e-5;

/// The encoder's fields of `SegformerConfig` / `GLPNConfig`, with their
/// defaults (MiT-b0).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct MitConfig {
    pub num_channels: i64,
    pub num_encoder_blocks: i64,
    pub depths: Vec<i64>,
    pub sr_ratios: Vec<i64>,
    pub hidden_sizes: Vec<i64>,
    pub patch_sizes: Vec<i64>,
    pub strides: Vec<i64>,
    pub num_attention_heads: Vec<i64>,
    pub mlp_ratios: Vec<f64>,
    pub hidden_act: Activation,
}

impl Default for MitConfig {
    fn default() -> Self {
        MitConfig {
            num_channels: 3,
            num_encoder_blocks: 4,
            depths: vec![2, 2, 2, 2],
            sr_ratios: vec![8, 4, 2, 1],
            hidden_sizes: vec![32, 64, 160, 256],
            patch_sizes: vec![7, 3, 3, 3],
            strides: vec![4, 2, 2, 2],
            num_attention_heads: vec![1, 2, 5, 8],
            mlp_ratios: vec![4.0; 4],
            hidden_act: Activation::Gelu,
        }
    }
}

impl MitConfig {
    /// Mix-FFN's inner width of stage `i`, `int(hidden_size * mlp_ratio)`.
    fn mlp_width(&self, i: usize) -> i64 {
        (self.hidden_sizes[i] as f64 * self.mlp_ratios[i]) as i64
    }

    /// The smallest side an input may have: each stage's map must hold its
    /// key reduction's kernel (`sr_ratios`), and every stage a pixel
    /// (checked by `validate`: some side up to MAX_SPATIAL fits).
    pub fn min_side(&self) -> usize {
        let fits = |side: i64| {
            let mut side = side;
            (0..self.num_encoder_blocks as usize).all(|i| {
                let (k, s) = (self.patch_sizes[i], self.strides[i]);
                side = (side + 2 * (k / 2) - k).div_euclid(s) + 1;
                side >= self.sr_ratios[i].max(1)
            })
        };
        (1..=MAX_SPATIAL).find(|&side| fits(side)).unwrap_or(MAX_SPATIAL + 1) as usize
    }

    /// Every list one entry per stage, every size within bounds and equal
    /// to the checkpoint's, whose encoder tensors are named `{prefix}.…`.
    pub fn validate(&self, file: &std::path::Path, shapes: &WeightShapes, prefix: &str) -> Result<()> {
        let c = ConfigCheck::new(file, shapes);
        c.size("num_encoder_blocks", self.num_encoder_blocks, 16)?;
        let stages = self.num_encoder_blocks as usize;
        c.same_length(&[
            ("num_encoder_blocks", stages),
            ("depths", self.depths.len()),
            ("sr_ratios", self.sr_ratios.len()),
            ("hidden_sizes", self.hidden_sizes.len()),
            ("patch_sizes", self.patch_sizes.len()),
            ("strides", self.strides.len()),
            ("num_attention_heads", self.num_attention_heads.len()),
            ("mlp_ratios", self.mlp_ratios.len()),
        ])?;
        let first = format!("{prefix}.patch_embeddings.0.proj.weight");
        c.exactly("num_channels", self.num_channels, 3, "images are RGB")?;
        c.matches("num_channels", self.num_channels, MAX_SPATIAL, &first, 1)?;
        for i in 0..stages {
            let field = |name: &str| format!("{name}[{i}]");
            let at = |name: &str| format!("{prefix}.{name}");
            let proj = at(&format!("patch_embeddings.{i}.proj.weight"));
            c.matches(&field("hidden_sizes"), self.hidden_sizes[i], MAX_WIDTH, &proj, 0)?;
            c.matches(&field("patch_sizes"), self.patch_sizes[i], MAX_SPATIAL, &proj, 2)?;
            if self.patch_sizes[i] % 2 == 0 {
                // Padded by half the kernel, only an odd one gives side / stride.
                return Err(crate::ModelError::bad_file(
                    file,
                    format!("patch_sizes[{i}] = {}, but it must be odd", self.patch_sizes[i]),
                ));
            }
            c.size(&field("strides"), self.strides[i], MAX_SPATIAL)?;
            c.size(&field("sr_ratios"), self.sr_ratios[i], MAX_SPATIAL)?;
            c.layers(&field("depths"), self.depths[i], &at(&format!("block.{i}")))?;
            c.divides(
                &field("num_attention_heads"),
                self.num_attention_heads[i],
                &field("hidden_sizes"),
                self.hidden_sizes[i],
            )?;
            let dense1 = at(&format!("block.{i}.0.mlp.dense1.weight"));
            c.matches(&field("mlp_ratios"), self.mlp_width(i), MAX_WIDTH, &dense1, 0)?;
            if self.sr_ratios[i] > 1 {
                let sr = at(&format!("block.{i}.0.attention.self.sr.weight"));
                c.anchor(&field("sr_ratios"), self.sr_ratios[i], self.sr_ratios[i], "", &sr, 2)?;
            }
        }
        if self.min_side() > MAX_SPATIAL as usize {
            return Err(crate::ModelError::bad_file(
                file,
                "no image up to 16384 pixels a side reaches every stage's key reduction (sr_ratios) through \
                 the patch strides",
            ));
        }
        Ok(())
    }
}

/// Attention whose keys and values come from the sequence shrunk `ratio`
/// times each way by a strided convolution and a layer norm.
struct EfficientSelfAttention {
    query: Linear,
    key: Linear,
    value: Linear,
    reduction: Option<(Conv2d, LayerNorm)>,
    output: Linear,
    heads: i64,
}

impl EfficientSelfAttention {
    fn new(p: Path, hidden: i64, heads: i64, ratio: i64) -> Self {
        let s = &p / "self";
        EfficientSelfAttention {
            query: Linear::new(&s / "query", hidden, hidden),
            key: Linear::new(&s / "key", hidden, hidden),
            value: Linear::new(&s / "value", hidden, hidden),
            reduction: (ratio > 1).then(|| {
                (
                    Conv2d::new(&s / "sr", hidden, hidden, ConvSpec::new(ratio).stride(ratio)),
                    LayerNorm::new(&s / "layer_norm", hidden, LAYER_NORM_EPS),
                )
            }),
            output: Linear::new(&p / "output" / "dense", hidden, hidden),
            heads,
        }
    }

    /// `x` [B, h * w, C], the tokens of an h x w map.
    fn forward(&self, x: &Tensor, h: i64, w: i64) -> Tensor {
        let q = split_heads(&self.query.forward(x), self.heads);
        let kv = match &self.reduction {
            Some((sr, norm)) => {
                let (b, _, c) = x.size3().expect("tokens");
                let map = x.permute([0, 2, 1]).reshape([b, c, h, w]);
                norm.forward(&sr.forward(&map).reshape([b, c, -1]).permute([0, 2, 1]))
            }
            None => x.shallow_clone(),
        };
        let k = split_heads(&self.key.forward(&kv), self.heads);
        let v = split_heads(&self.value.forward(&kv), self.heads);
        self.output.forward(&merge_heads(&attention(&q, &k, &v, None)))
    }
}

/// Mix-FFN: dense1, a depthwise 3x3 convolution over the map, the
/// activation, dense2.
struct MixFfn {
    dense1: Linear,
    dwconv: Conv2d,
    dense2: Linear,
    act: Activation,
}

impl MixFfn {
    fn new(p: Path, hidden: i64, inner: i64, act: Activation) -> Self {
        MixFfn {
            dense1: Linear::new(&p / "dense1", hidden, inner),
            dwconv: Conv2d::new(&p / "dwconv" / "dwconv", inner, inner, ConvSpec::same(3).groups(inner)),
            dense2: Linear::new(&p / "dense2", inner, hidden),
            act,
        }
    }

    fn forward(&self, x: &Tensor, h: i64, w: i64) -> Tensor {
        let y = self.dense1.forward(x);
        let (b, _, c) = y.size3().expect("tokens");
        let y = self.dwconv.forward(&y.transpose(1, 2).view([b, c, h, w]));
        self.dense2
            .forward(&self.act.forward(&y.flatten(2, -1).transpose(1, 2)))
    }
}

/// A pre-norm transformer layer of efficient attention and Mix-FFN.
struct MitLayer {
    norm1: LayerNorm,
    attention: EfficientSelfAttention,
    norm2: LayerNorm,
    mlp: MixFfn,
}

impl MitLayer {
    fn forward(&self, x: &Tensor, h: i64, w: i64) -> Tensor {
        let x = self.attention.forward(&self.norm1.forward(x), h, w) + x;
        self.mlp.forward(&self.norm2.forward(&x), h, w) + x
    }
}

/// One stage: its patch embedding, layers and final norm.
struct Stage {
    proj: Conv2d,
    embed_norm: LayerNorm,
    layers: Vec<MitLayer>,
    norm: LayerNorm,
}

/// The MiT encoder.
pub struct MitEncoder {
    stages: Vec<Stage>,
}

impl MitEncoder {
    /// The encoder under `p` (`glpn/encoder`, `segformer/encoder`).
    pub fn new(p: &Path, cfg: &MitConfig) -> Self {
        let stages = (0..cfg.num_encoder_blocks as usize)
            .map(|i| {
                let hidden = cfg.hidden_sizes[i];
                let input = if i == 0 {
                    cfg.num_channels
                } else {
                    cfg.hidden_sizes[i - 1]
                };
                let embed = p / "patch_embeddings" / i as i64;
                let patch = cfg.patch_sizes[i];
                let spec = ConvSpec::new(patch).stride(cfg.strides[i]).padding(patch / 2);
                let block = p / "block" / i as i64;
                let layers = (0..cfg.depths[i])
                    .map(|j| {
                        let l = &block / j;
                        MitLayer {
                            norm1: LayerNorm::new(&l / "layer_norm_1", hidden, LAYER_NORM_EPS),
                            attention: EfficientSelfAttention::new(
                                &l / "attention",
                                hidden,
                                cfg.num_attention_heads[i],
                                cfg.sr_ratios[i],
                            ),
                            norm2: LayerNorm::new(&l / "layer_norm_2", hidden, LAYER_NORM_EPS),
                            mlp: MixFfn::new(&l / "mlp", hidden, cfg.mlp_width(i), cfg.hidden_act),
                        }
                    })
                    .collect();
                Stage {
                    proj: Conv2d::new(&embed / "proj", input, hidden, spec),
                    embed_norm: LayerNorm::new(&embed / "layer_norm", hidden, LAYER_NORM_EPS),
                    layers,
                    norm: LayerNorm::new(p / "layer_norm" / i as i64, hidden, LAYER_NORM_EPS),
                }
            })
            .collect();
        MitEncoder { stages }
    }

    /// Each stage's feature map [B, C_i, H_i, W_i] for pixel_values
    /// [B, C, H, W], from the finest (stride 4) to the coarsest.
    pub fn forward(&self, pixel_values: &Tensor) -> Vec<Tensor> {
        let mut x = pixel_values.shallow_clone();
        let mut features = Vec::with_capacity(self.stages.len());
        for stage in &self.stages {
            let map = stage.proj.forward(&x);
            let (b, _, h, w) = map.size4().expect("a feature map");
            let mut tokens = stage.embed_norm.forward(&map.flatten(2, -1).transpose(1, 2));
            for layer in &stage.layers {
                tokens = layer.forward(&tokens, h, w);
            }
            x = stage.norm.forward(&tokens).reshape([b, h, w, -1]).permute([0, 3, 1, 2]);
            // Left channels-last (the tokens' layout): the next stage's
            // patch convolution and the decoders' convolutions run faster so.
            features.push(x.shallow_clone());
        }
        features
    }
}
