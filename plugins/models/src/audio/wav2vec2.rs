//! Wav2Vec2ForCTC (transformers' modeling_wav2vec2.py), both layouts: the
//! base one (a group norm on the first convolution only, post-layer-norm
//! transformer) and the "stable layer norm" one of the large checkpoints
//! (a layer norm on every convolution, pre-layer-norm transformer with a
//! final norm). The positional convolution is weight-normed; its `weight_g`
//! and `weight_v` load from either the legacy names or PyTorch's
//! `parametrizations.weight.original0/1`.
//!
//! The feature extractor's normalisation is in `features.rs`, the CTC
//! tokenizer in `ctc.rs`.

use serde::Deserialize;
use tch::{Kind, Tensor};

use crate::audio::ctc::CtcNet;
use crate::core::checks::{ConfigCheck, MAX_SPATIAL, MAX_TABLE, MAX_WIDTH};
use crate::core::config::read_json;
use crate::core::layers::{attention, merge_heads, Activation, FusedLinear, LayerNorm, Linear, Variables};
use crate::core::weights::WeightShapes;
use crate::Result;

#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub conv_dim: Vec<i64>,
    pub conv_kernel: Vec<i64>,
    pub conv_stride: Vec<i64>,
    #[serde(default)]
    pub conv_bias: bool,
    #[serde(default = "group")]
    pub feat_extract_norm: String,
    #[serde(default)]
    pub do_stable_layer_norm: bool,
    pub hidden_size: i64,
    pub num_hidden_layers: usize,
    pub num_attention_heads: i64,
    pub intermediate_size: i64,
    #[serde(default = "gelu")]
    pub hidden_act: Activation,
    #[serde(default = "gelu")]
    pub feat_extract_activation: Activation,
    #[serde(default = "layer_norm_eps")]
    pub layer_norm_eps: f64,
    pub num_conv_pos_embeddings: i64,
    pub num_conv_pos_embedding_groups: i64,
    pub vocab_size: i64,
}

fn group() -> String {
    "group".into()
}

fn gelu() -> Activation {
    Activation::Gelu
}

fn layer_norm_eps() -> f64 {
    1e-5
}

impl Config {
    /// Every size within its bound and equal to the checkpoint's
    /// (`core::checks`), before anything is built from them.
    pub fn validate(&self, file: &std::path::Path, shapes: &WeightShapes) -> Result<()> {
        let c = ConfigCheck::new(file, shapes);
        c.list("conv_dim", self.conv_dim.len())?;
        c.same_length(&[
            ("conv_dim", self.conv_dim.len()),
            ("conv_kernel", self.conv_kernel.len()),
            ("conv_stride", self.conv_stride.len()),
        ])?;
        let convs = self.conv_dim.iter().zip(&self.conv_kernel).zip(&self.conv_stride);
        for (i, ((&dim, &kernel), &stride)) in convs.enumerate() {
            let conv = format!("feature_extractor.conv_layers.{i}.conv.weight");
            c.matches(&format!("conv_dim[{i}]"), dim, MAX_WIDTH, &conv, 0)?;
            c.matches(&format!("conv_kernel[{i}]"), kernel, MAX_SPATIAL, &conv, 2)?;
            c.size(&format!("conv_stride[{i}]"), stride, MAX_SPATIAL)?;
        }
        let projection = "feature_projection.projection.weight";
        c.matches("hidden_size", self.hidden_size, MAX_WIDTH, projection, 0)?;
        let layers = i64::try_from(self.num_hidden_layers).unwrap_or(i64::MAX);
        c.layers("num_hidden_layers", layers, "encoder.layers")?;
        c.divides(
            "num_attention_heads",
            self.num_attention_heads,
            "hidden_size",
            self.hidden_size,
        )?;
        let intermediate = "encoder.layers.0.feed_forward.intermediate_dense.weight";
        c.matches("intermediate_size", self.intermediate_size, MAX_WIDTH, intermediate, 0)?;
        let positional = [
            "encoder.pos_conv_embed.conv.weight_v",
            "encoder.pos_conv_embed.conv.parametrizations.weight.original1",
        ];
        c.matches_any(
            "num_conv_pos_embeddings",
            self.num_conv_pos_embeddings,
            MAX_SPATIAL,
            &positional,
            2,
        )?;
        let groups = self.num_conv_pos_embedding_groups;
        c.divides("num_conv_pos_embedding_groups", groups, "hidden_size", self.hidden_size)?;
        c.matches("vocab_size", self.vocab_size, MAX_TABLE, "lm_head.weight", 0)?;
        Ok(())
    }

    /// Input samples per output frame (the product of the strides).
    pub fn inputs_to_logits_ratio(&self) -> i64 {
        self.conv_stride.iter().product()
    }

    /// Output frames for `samples` input samples.
    pub fn frames(&self, samples: i64) -> i64 {
        self.conv_kernel
            .iter()
            .zip(&self.conv_stride)
            .fold(samples, |n, (k, s)| if n < *k { 0 } else { (n - k) / s + 1 })
    }

    /// The fewest samples that give one frame.
    pub fn min_samples(&self) -> i64 {
        self.conv_kernel
            .iter()
            .zip(&self.conv_stride)
            .rev()
            .fold(1, |n, (k, s)| (n - 1) * s + k)
    }
}

/// nn.LayerNorm and nn.GroupNorm's eps.
const TORCH_NORM_EPS: f64 = 1e-5;

enum ConvNorm {
    None,
    /// GroupNorm with one group per channel (statistics over time).
    Group {
        weight: Tensor,
        bias: Tensor,
        channels: i64,
    },
    /// LayerNorm over channels, at every time step.
    Layer(LayerNorm),
}

struct ConvLayer {
    weight: Tensor,
    bias: Option<Tensor>,
    stride: i64,
    norm: ConvNorm,
    act: Activation,
}

impl ConvLayer {
    fn new(p: tch::nn::Path, cfg: &Config, i: usize) -> Self {
        let in_dim = if i == 0 { 1 } else { cfg.conv_dim[i - 1] };
        let out = cfg.conv_dim[i];
        let conv = &p / "conv";
        let norm_path = &p / "layer_norm";
        let norm = match (cfg.feat_extract_norm.as_str(), i) {
            ("layer", _) => ConvNorm::Layer(LayerNorm::new(norm_path, out, TORCH_NORM_EPS)),
            (_, 0) => ConvNorm::Group {
                weight: norm_path.zeros_var("weight", &[out]),
                bias: norm_path.zeros_var("bias", &[out]),
                channels: out,
            },
            _ => ConvNorm::None,
        };
        ConvLayer {
            weight: conv.zeros_var("weight", &[out, in_dim, cfg.conv_kernel[i]]),
            bias: cfg.conv_bias.then(|| conv.zeros_var("bias", &[out])),
            stride: cfg.conv_stride[i],
            norm,
            act: cfg.feat_extract_activation,
        }
    }

    /// [batch, channels, time] -> [batch, channels, time']
    fn forward(&self, x: &Tensor) -> Tensor {
        let x = x.conv1d(&self.weight, self.bias.as_ref(), [self.stride], [0], [1], 1);
        let x = match &self.norm {
            ConvNorm::None => x,
            ConvNorm::Group { weight, bias, channels } => {
                x.group_norm(*channels, Some(weight), Some(bias), TORCH_NORM_EPS, false)
            }
            ConvNorm::Layer(norm) => norm.forward(&x.transpose(-2, -1)).transpose(-2, -1),
        };
        self.act.forward(&x)
    }
}

/// The weight-normed grouped convolution that adds relative positions.
struct PositionalConv {
    weight_g: Tensor,
    weight_v: Tensor,
    bias: Tensor,
    kernel: i64,
    groups: i64,
    act: Activation,
}

impl PositionalConv {
    fn new(p: tch::nn::Path, cfg: &Config) -> Self {
        let conv = &p / "conv";
        let (h, k, g) = (
            cfg.hidden_size,
            cfg.num_conv_pos_embeddings,
            cfg.num_conv_pos_embedding_groups,
        );
        PositionalConv {
            weight_g: conv.zeros_var("weight_g", &[1, 1, k]),
            weight_v: conv.zeros_var("weight_v", &[h, h / g, k]),
            bias: conv.zeros_var("bias", &[h]),
            kernel: k,
            groups: g,
            act: cfg.feat_extract_activation,
        }
    }

    /// [batch, time, hidden] -> the same shape.
    fn forward(&self, x: &Tensor) -> Tensor {
        // weight_norm(dim=2): w = g * v / ||v||, the norm over all but dim 2.
        let norm = self
            .weight_v
            .square()
            .sum_dim_intlist([0i64, 1].as_slice(), true, Kind::Float)
            .sqrt();
        let weight = (&self.weight_v * (&self.weight_g / norm)).to_kind(self.weight_v.kind());
        let y = x
            .transpose(1, 2)
            .conv1d(&weight, Some(&self.bias), [1], [self.kernel / 2], [1], self.groups);
        // An even kernel gives one frame too many: drop the last.
        let frames = y.size()[2] - if self.kernel % 2 == 0 { 1 } else { 0 };
        self.act.forward(&y.narrow(2, 0, frames)).transpose(1, 2)
    }
}

struct EncoderLayer {
    qkv: FusedLinear,
    out: Linear,
    layer_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    final_layer_norm: LayerNorm,
    heads: i64,
    act: Activation,
    pre_norm: bool,
}

impl EncoderLayer {
    fn new(p: tch::nn::Path, cfg: &Config) -> Self {
        let a = &p / "attention";
        let ff = &p / "feed_forward";
        let h = cfg.hidden_size;
        EncoderLayer {
            qkv: FusedLinear::new(&[&a / "q_proj", &a / "k_proj", &a / "v_proj"], h, h),
            out: Linear::new(&a / "out_proj", h, h),
            layer_norm: LayerNorm::new(&p / "layer_norm", h, cfg.layer_norm_eps),
            intermediate: Linear::new(&ff / "intermediate_dense", h, cfg.intermediate_size),
            output: Linear::new(&ff / "output_dense", cfg.intermediate_size, h),
            final_layer_norm: LayerNorm::new(&p / "final_layer_norm", h, cfg.layer_norm_eps),
            heads: cfg.num_attention_heads,
            act: cfg.hidden_act,
            pre_norm: cfg.do_stable_layer_norm,
        }
    }

    fn attend(&self, x: &Tensor) -> Tensor {
        let (q, k, v, _) = self.qkv.attention_inputs(x, self.heads, false);
        self.out.forward(&merge_heads(&attention(&q, &k, &v, None)))
    }

    fn feed_forward(&self, x: &Tensor) -> Tensor {
        self.output.forward(&self.act.forward(&self.intermediate.forward(x)))
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        if self.pre_norm {
            let x = x + self.attend(&self.layer_norm.forward(x));
            &x + self.feed_forward(&self.final_layer_norm.forward(&x))
        } else {
            let x = self.layer_norm.forward(&(x + self.attend(x)));
            self.final_layer_norm.forward(&(&x + self.feed_forward(&x)))
        }
    }
}

/// `Wav2Vec2ForCTC`: raw samples in, CTC logits out.
pub struct Wav2Vec2ForCtc {
    conv_layers: Vec<ConvLayer>,
    projection_norm: LayerNorm,
    projection: Linear,
    positional: PositionalConv,
    encoder_norm: LayerNorm,
    layers: Vec<EncoderLayer>,
    lm_head: Linear,
    stable: bool,
    config: Config,
}

impl Wav2Vec2ForCtc {
    pub fn new(p: tch::nn::Path, cfg: &Config) -> Self {
        let w = &p / "wav2vec2";
        let fe = &w / "feature_extractor" / "conv_layers";
        let fp = &w / "feature_projection";
        let enc = &w / "encoder";
        let last_conv = *cfg.conv_dim.last().expect("conv layers");
        Wav2Vec2ForCtc {
            conv_layers: (0..cfg.conv_dim.len())
                .map(|i| ConvLayer::new(&fe / i, cfg, i))
                .collect(),
            projection_norm: LayerNorm::new(&fp / "layer_norm", last_conv, cfg.layer_norm_eps),
            projection: Linear::new(&fp / "projection", last_conv, cfg.hidden_size),
            positional: PositionalConv::new(&enc / "pos_conv_embed", cfg),
            encoder_norm: LayerNorm::new(&enc / "layer_norm", cfg.hidden_size, cfg.layer_norm_eps),
            layers: (0..cfg.num_hidden_layers)
                .map(|i| EncoderLayer::new(&enc / "layers" / i, cfg))
                .collect(),
            lm_head: Linear::new(&p / "lm_head", cfg.hidden_size, cfg.vocab_size),
            stable: cfg.do_stable_layer_norm,
            config: cfg.clone(),
        }
    }

    /// input_values [batch, samples] -> logits [batch, frames, vocab].
    pub fn forward(&self, input_values: &Tensor) -> Tensor {
        let mut x = input_values.unsqueeze(1);
        for conv in &self.conv_layers {
            x = conv.forward(&x);
        }
        let x = self
            .projection
            .forward(&self.projection_norm.forward(&x.transpose(1, 2)));
        let mut x = &x + self.positional.forward(&x);
        if !self.stable {
            x = self.encoder_norm.forward(&x);
        }
        for layer in &self.layers {
            x = layer.forward(&x);
        }
        if self.stable {
            x = self.encoder_norm.forward(&x);
        }
        self.lm_head.forward(&x)
    }
}

impl CtcNet for Wav2Vec2ForCtc {
    fn forward(&self, input_values: &Tensor) -> Tensor {
        Wav2Vec2ForCtc::forward(self, input_values)
    }

    fn inputs_to_logits_ratio(&self) -> i64 {
        self.config.inputs_to_logits_ratio()
    }

    fn frames(&self, samples: i64) -> i64 {
        self.config.frames(samples)
    }

    fn min_samples(&self) -> i64 {
        self.config.min_samples()
    }
}

/// `Wav2Vec2ForCTC`, for speech recognition.
pub fn build(root: tch::nn::Path, config_file: &std::path::Path, shapes: &WeightShapes) -> Result<Box<dyn CtcNet>> {
    let config: Config = read_json(config_file)?;
    config.validate(config_file, shapes)?;
    Ok(Box::new(Wav2Vec2ForCtc::new(root, &config)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::weights::WeightShapes;
    use std::path::Path;
    #[test]
    fn frame_counts_follow_the_convolutions() {
        let cfg: Config = serde_json::from_value(serde_json::json!({
            "conv_dim": [8, 8, 8, 8, 8, 8, 8], "conv_kernel": [10, 3, 3, 3, 3, 2, 2],
            "conv_stride": [5, 2, 2, 2, 2, 2, 2], "hidden_size": 8, "num_hidden_layers": 1,
            "num_attention_heads": 2, "intermediate_size": 8, "num_conv_pos_embeddings": 4,
            "num_conv_pos_embedding_groups": 2, "vocab_size": 4
        }))
        .unwrap();
        assert_eq!(cfg.inputs_to_logits_ratio(), 320);
        assert_eq!(cfg.frames(160_000), 499);
        assert_eq!(cfg.min_samples(), 400);
        assert_eq!(cfg.frames(399), 0);
        assert_eq!(cfg.frames(400), 1);
    }

    #[test]
    fn wav2vec2_convolutions_and_sizes_are_checked_against_the_checkpoint() {
        let shapes = WeightShapes::from_shapes([
            ("wav2vec2.feature_extractor.conv_layers.0.conv.weight", vec![8, 1, 10]),
            ("wav2vec2.feature_extractor.conv_layers.1.conv.weight", vec![8, 8, 3]),
            ("wav2vec2.feature_projection.projection.weight", vec![16, 8]),
            (
                "wav2vec2.encoder.layers.0.feed_forward.intermediate_dense.weight",
                vec![32, 16],
            ),
            ("wav2vec2.encoder.pos_conv_embed.conv.weight_v", vec![16, 8, 4]),
            ("lm_head.weight", vec![6, 16]),
        ]);
        let config = |edit: serde_json::Value| -> Config {
            crate::core::checks::edited(
                serde_json::json!({
                    "conv_dim": [8, 8], "conv_kernel": [10, 3], "conv_stride": [5, 2], "hidden_size": 16,
                    "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32,
                    "num_conv_pos_embeddings": 4, "num_conv_pos_embedding_groups": 2, "vocab_size": 6
                }),
                edit,
            )
        };
        let file = Path::new("config.json");
        config(serde_json::json!({})).validate(file, &shapes).unwrap();
        let refused = |edit| config(edit).validate(file, &shapes).unwrap_err().to_string();
        assert!(refused(serde_json::json!({"conv_stride": [5, 0]})).contains("conv_stride[1] = 0"));
        assert!(refused(serde_json::json!({"conv_stride": [5]})).contains("conv_stride has 1"));
        assert!(refused(serde_json::json!({"conv_kernel": [10, 4]})).contains("conv_kernel[1] = 4"));
        let none = refused(serde_json::json!({"conv_dim": [], "conv_kernel": [], "conv_stride": []}));
        assert!(none.contains("conv_dim has 0 entries"), "{none}");
        assert!(refused(serde_json::json!({"num_attention_heads": 0})).contains("num_attention_heads = 0"));
        assert!(refused(serde_json::json!({"num_hidden_layers": 100_000})).contains("num_hidden_layers = 100000"));
        assert!(refused(serde_json::json!({"num_conv_pos_embedding_groups": 3})).contains("must divide"));
        assert!(refused(serde_json::json!({"vocab_size": 7})).contains("vocab_size = 7"));
    }
}
