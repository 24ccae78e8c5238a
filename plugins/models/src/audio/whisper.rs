//! Whisper (Radford et al.): a pre-norm transformer encoder-decoder over
//! log-mel spectrograms. The encoder reads 30 s of features through two
//! convolutions (the second halving the frames) and learned positions; the
//! decoder predicts text tokens, attending to its earlier tokens and to the
//! encoder states. Reproduces transformers' `WhisperForConditionalGeneration`
//! (`modeling_whisper.py`), with its weight names; decoding runs through the
//! shared [`Seq2SeqLm`] step and [`DecoderState`].

use serde::Deserialize;
use tch::{nn::Path, Tensor};

use crate::core::checks::{ConfigCheck, MAX_TABLE, MAX_WIDTH};
use crate::core::config::read_json;
use crate::core::decoding::{DecoderState, Seq2SeqLm, Step};
use crate::core::layers::{
    attention, cross_attention, kept_in_order, merge_heads, split_heads, Activation, Embedding, FeedForward, KvCache,
    LayerNorm, Linear, TiedHead, Variables,
};
use crate::core::weights::WeightShapes;
use crate::Result;

/// nn.LayerNorm's default epsilon, which Whisper uses everywhere.
const LAYER_NORM_EPS: f64 = 1e-5;
/// The convolutions' kernel; the second one's stride halves the frames.
const CONV_KERNEL: i64 = 3;
const CONV_STRIDE: i64 = 2;

/// `WhisperConfig`, with transformers' defaults (those of whisper-tiny).
/// `scale_embedding` is absent on purpose: transformers computes an
/// `embed_scale` from it but never multiplies by it.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct WhisperConfig {
    pub vocab_size: i64,
    pub num_mel_bins: i64,
    pub encoder_layers: i64,
    pub encoder_attention_heads: i64,
    pub encoder_ffn_dim: i64,
    pub decoder_layers: i64,
    pub decoder_attention_heads: i64,
    pub decoder_ffn_dim: i64,
    pub d_model: i64,
    pub activation_function: Activation,
    pub max_source_positions: i64,
    pub max_target_positions: i64,
    pub pad_token_id: i64,
    pub eos_token_id: i64,
    pub decoder_start_token_id: i64,
    /// Width of the median filter over the alignment heads' attention
    /// (word timestamps).
    pub median_filter_width: i64,
}

impl Default for WhisperConfig {
    fn default() -> Self {
        WhisperConfig {
            vocab_size: 51865,
            num_mel_bins: 80,
            encoder_layers: 4,
            encoder_attention_heads: 6,
            encoder_ffn_dim: 1536,
            decoder_layers: 4,
            decoder_attention_heads: 6,
            decoder_ffn_dim: 1536,
            d_model: 384,
            activation_function: Activation::Gelu,
            max_source_positions: 1500,
            max_target_positions: 448,
            pad_token_id: 50256,
            eos_token_id: 50256,
            decoder_start_token_id: 50257,
            median_filter_width: 7,
        }
    }
}

impl WhisperConfig {
    /// Every size within its bound and equal to the checkpoint's
    /// (`core::checks`), before anything is built from them.
    pub fn validate(&self, file: &std::path::Path, shapes: &WeightShapes) -> Result<()> {
        let c = ConfigCheck::new(file, shapes);
        c.matches(
            "vocab_size",
            self.vocab_size,
            MAX_TABLE,
            "decoder.embed_tokens.weight",
            0,
        )?;
        c.matches("d_model", self.d_model, MAX_WIDTH, "decoder.embed_tokens.weight", 1)?;
        c.matches("num_mel_bins", self.num_mel_bins, MAX_WIDTH, "encoder.conv1.weight", 1)?;
        c.anchor("d_model", self.d_model, self.d_model, "", "encoder.conv2.weight", 0)?;
        c.matches(
            "max_source_positions",
            self.max_source_positions,
            MAX_TABLE,
            "encoder.embed_positions.weight",
            0,
        )?;
        c.matches(
            "max_target_positions",
            self.max_target_positions,
            MAX_TABLE,
            "decoder.embed_positions.weight",
            0,
        )?;
        c.layers("encoder_layers", self.encoder_layers, "encoder.layers")?;
        c.layers("decoder_layers", self.decoder_layers, "decoder.layers")?;
        c.divides(
            "encoder_attention_heads",
            self.encoder_attention_heads,
            "d_model",
            self.d_model,
        )?;
        c.divides(
            "decoder_attention_heads",
            self.decoder_attention_heads,
            "d_model",
            self.d_model,
        )?;
        c.matches(
            "encoder_ffn_dim",
            self.encoder_ffn_dim,
            MAX_WIDTH,
            "encoder.layers.0.fc1.weight",
            0,
        )?;
        c.matches(
            "decoder_ffn_dim",
            self.decoder_ffn_dim,
            MAX_WIDTH,
            "decoder.layers.0.fc1.weight",
            0,
        )?;
        c.token("pad_token_id", self.pad_token_id, self.vocab_size)?;
        c.token("decoder_start_token_id", self.decoder_start_token_id, self.vocab_size)?;
        Ok(())
    }

    /// The frames of input features the encoder reads: two per position
    /// (3000 for 30 s at whisper's 100 frames a second).
    pub fn input_frames(&self) -> i64 {
        self.max_source_positions * CONV_STRIDE
    }
}

/// `torch.nn.Conv1d` with a bias, padded by one on each side.
struct Conv1d {
    weight: Tensor,
    bias: Tensor,
    stride: i64,
}

impl Conv1d {
    fn new(p: Path, in_channels: i64, out_channels: i64, stride: i64) -> Self {
        Conv1d {
            weight: p.zeros_var("weight", &[out_channels, in_channels, CONV_KERNEL]),
            bias: p.zeros_var("bias", &[out_channels]),
            stride,
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        x.conv1d(&self.weight, Some(&self.bias), [self.stride], [CONV_KERNEL / 2], [1], 1)
    }
}

/// `WhisperAttention`: BART's attention, except that the key projection has
/// no bias. The queries are scaled by head_dim^-0.5, the fused kernel's
/// default.
struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    heads: i64,
}

impl Attention {
    fn new(p: Path, dim: i64, heads: i64) -> Self {
        Attention {
            q: Linear::new(&p / "q_proj", dim, dim),
            k: Linear::no_bias(&p / "k_proj", dim, dim),
            v: Linear::new(&p / "v_proj", dim, dim),
            out: Linear::new(&p / "out_proj", dim, dim),
            heads,
        }
    }

    /// Self-attention of every position to every other (the encoder's).
    fn forward(&self, x: &Tensor) -> Tensor {
        let q = split_heads(&self.q.forward(x), self.heads);
        let k = split_heads(&self.k.forward(x), self.heads);
        let v = split_heads(&self.v.forward(x), self.heads);
        self.out.forward(&merge_heads(&attention(&q, &k, &v, None)))
    }

    /// Self-attention of new decoder tokens over every earlier one (kept in
    /// `cache`) and themselves.
    fn step_self(&self, x: &Tensor, cache: &mut KvCache, bias: Option<&Tensor>) -> Tensor {
        let q = split_heads(&self.q.forward(x), self.heads);
        let (k, v) = cache.append(
            split_heads(&self.k.forward(x), self.heads),
            split_heads(&self.v.forward(x), self.heads),
        );
        self.out.forward(&merge_heads(&attention(&q, &k, &v, bias)))
    }

    /// The keys and values of the encoder states `memory` [items, 1500, d],
    /// [items, heads, 1500, head_dim] each.
    fn memory_keys_values(&self, memory: &Tensor) -> (Tensor, Tensor) {
        kept_in_order((
            split_heads(&self.k.forward(memory), self.heads),
            split_heads(&self.v.forward(memory), self.heads),
        ))
    }

    /// Cross-attention of each hypothesis to its input's encoder states
    /// (`memory` [items, 1500, d]), whose keys and values are computed on
    /// the first step (unless given before) and kept. Whisper's inputs are never padded.
    /// With `kept` heads, also their attention probabilities [rows, kept,
    /// source] (the alignment heads of word timestamps).
    fn step_cross(
        &self,
        x: &Tensor,
        memory: &Tensor,
        cached: &mut Option<(Tensor, Tensor)>,
        kept: &[i64],
    ) -> (Tensor, Option<Tensor>) {
        let (k, v) = cached.get_or_insert_with(|| self.memory_keys_values(memory));
        let q = split_heads(&self.q.forward(x), self.heads);
        let probabilities = (!kept.is_empty()).then(|| {
            // Rows are `beams` hypotheses per input, keys one set per input.
            let heads = Tensor::from_slice(kept).to_device(q.device());
            let (items, rows) = (k.size()[0], q.size()[0]);
            let head_dim = q.size()[3];
            let q = q
                .index_select(1, &heads)
                .view([items, rows / items, kept.len() as i64, 1, head_dim]);
            let k = k.index_select(1, &heads).unsqueeze(1);
            let scores = q.matmul(&k.transpose(-1, -2)) * (head_dim as f64).powf(-0.5);
            scores.softmax(-1, tch::Kind::Float).view([rows, kept.len() as i64, -1])
        });
        (self.out.forward(&cross_attention(&q, k, v, None, None)), probabilities)
    }
}

/// `WhisperEncoderLayer`: pre-norm self-attention, then pre-norm FFN.
struct EncoderLayer {
    self_attn_norm: LayerNorm,
    self_attn: Attention,
    final_norm: LayerNorm,
    ffn: FeedForward,
}

impl EncoderLayer {
    fn new(p: Path, cfg: &WhisperConfig) -> Self {
        let d = cfg.d_model;
        EncoderLayer {
            self_attn_norm: LayerNorm::new(&p / "self_attn_layer_norm", d, LAYER_NORM_EPS),
            self_attn: Attention::new(&p / "self_attn", d, cfg.encoder_attention_heads),
            final_norm: LayerNorm::new(&p / "final_layer_norm", d, LAYER_NORM_EPS),
            ffn: FeedForward::new(&p, d, cfg.encoder_ffn_dim, cfg.activation_function),
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let x = self.self_attn.forward(&self.self_attn_norm.forward(x)) + x;
        self.ffn.forward(&self.final_norm.forward(&x)) + x
    }
}

/// `WhisperDecoderLayer`: pre-norm self-attention, cross-attention, FFN.
struct DecoderLayer {
    self_attn_norm: LayerNorm,
    self_attn: Attention,
    cross_attn_norm: LayerNorm,
    cross_attn: Attention,
    final_norm: LayerNorm,
    ffn: FeedForward,
}

impl DecoderLayer {
    fn new(p: Path, cfg: &WhisperConfig) -> Self {
        let d = cfg.d_model;
        DecoderLayer {
            self_attn_norm: LayerNorm::new(&p / "self_attn_layer_norm", d, LAYER_NORM_EPS),
            self_attn: Attention::new(&p / "self_attn", d, cfg.decoder_attention_heads),
            cross_attn_norm: LayerNorm::new(&p / "encoder_attn_layer_norm", d, LAYER_NORM_EPS),
            cross_attn: Attention::new(&p / "encoder_attn", d, cfg.decoder_attention_heads),
            final_norm: LayerNorm::new(&p / "final_layer_norm", d, LAYER_NORM_EPS),
            ffn: FeedForward::new(&p, d, cfg.decoder_ffn_dim, cfg.activation_function),
        }
    }

    /// One decoding step for the newest token of each row, and the
    /// cross-attention probabilities of the `kept` heads.
    fn step(
        &self,
        x: &Tensor,
        step: &Step,
        memory: &Tensor,
        self_cache: &mut KvCache,
        cross: &mut Option<(Tensor, Tensor)>,
        kept: &[i64],
    ) -> (Tensor, Option<Tensor>) {
        let mut x = self
            .self_attn
            .step_self(&self.self_attn_norm.forward(x), self_cache, step.bias.as_ref())
            + x;
        let (attended, probabilities) =
            self.cross_attn
                .step_cross(&self.cross_attn_norm.forward(&x), memory, cross, kept);
        x += attended;
        x += self.ffn.forward(&self.final_norm.forward(&x));
        (x, probabilities)
    }
}

/// `WhisperEncoder`: convolutions over the features, learned positions,
/// the layers and a final norm.
struct Encoder {
    conv1: Conv1d,
    conv2: Conv1d,
    /// [max_source_positions, d_model], all of them added to every input.
    positions: Tensor,
    layers: Vec<EncoderLayer>,
    norm: LayerNorm,
    input_frames: i64,
}

impl Encoder {
    fn new(p: Path, cfg: &WhisperConfig) -> Self {
        let d = cfg.d_model;
        Encoder {
            conv1: Conv1d::new(&p / "conv1", cfg.num_mel_bins, d, 1),
            conv2: Conv1d::new(&p / "conv2", d, d, CONV_STRIDE),
            positions: Embedding::new(&p / "embed_positions", cfg.max_source_positions, d)
                .weight()
                .shallow_clone(),
            layers: (0..cfg.encoder_layers)
                .map(|i| EncoderLayer::new(&p / "layers" / i, cfg))
                .collect(),
            norm: LayerNorm::new(&p / "layer_norm", d, LAYER_NORM_EPS),
            input_frames: cfg.input_frames(),
        }
    }

    /// Encoder states [items, max_source_positions, d_model] of features
    /// [items, num_mel_bins, input_frames].
    fn forward(&self, features: &Tensor) -> Tensor {
        let frames = features.size().last().copied();
        // transformers refuses other lengths too: the positions are a
        // fixed table, added whole.
        assert_eq!(
            frames,
            Some(self.input_frames),
            "Whisper's encoder reads {} frames of features",
            self.input_frames
        );
        // The convolutions' GELU is the exact one, whatever the config's
        // activation_function.
        let x = self.conv1.forward(features).gelu("none");
        let x = self.conv2.forward(&x).gelu("none");
        let mut x = x.transpose(1, 2) + &self.positions;
        for layer in &self.layers {
            x = layer.forward(&x);
        }
        self.norm.forward(&x)
    }
}

/// `WhisperDecoder`: token embeddings plus learned positions, the layers
/// and a final norm.
struct Decoder {
    embed_tokens: Embedding,
    /// [max_target_positions, d_model]
    positions: Tensor,
    layers: Vec<DecoderLayer>,
    norm: LayerNorm,
}

impl Decoder {
    fn new(p: Path, cfg: &WhisperConfig) -> Self {
        let d = cfg.d_model;
        Decoder {
            embed_tokens: Embedding::new(&p / "embed_tokens", cfg.vocab_size, d),
            positions: Embedding::new(&p / "embed_positions", cfg.max_target_positions, d)
                .weight()
                .shallow_clone(),
            layers: (0..cfg.decoder_layers)
                .map(|i| DecoderLayer::new(&p / "layers" / i, cfg))
                .collect(),
            norm: LayerNorm::new(&p / "layer_norm", d, LAYER_NORM_EPS),
        }
    }

    /// Decoder states [rows, 1, d_model] for each row's newest token
    /// `tokens` [rows, 1] at its position, with the caches of earlier
    /// steps. When the state records alignment, the step's cross-attention
    /// of the alignment heads is kept too.
    fn step(&self, tokens: &Tensor, state: &mut DecoderState) -> Tensor {
        let step = state.begin_step();
        let mut x = self.embed_tokens.forward(tokens) + self.positions.index_select(0, &step.positions).unsqueeze(1);
        let recording = state.alignment.as_ref().filter(|a| a.recording);
        let kept: Vec<Vec<i64>> = (0..self.layers.len())
            .map(|layer| {
                recording
                    .iter()
                    .flat_map(|a| a.heads.iter())
                    .filter(|(l, _)| *l == layer)
                    .map(|&(_, h)| h as i64)
                    .collect()
            })
            .collect();
        let mut probabilities = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            let (next, p) = layer.step(
                &x,
                &step,
                &state.memory,
                &mut state.self_attn[i],
                &mut state.cross_attn[i],
                &kept[i],
            );
            x = next;
            probabilities.extend(p);
        }
        if let Some(alignment) = state.alignment.as_mut().filter(|a| a.recording) {
            alignment.push(Tensor::cat(&probabilities, 1));
        }
        self.norm.forward(&x)
    }
}

/// `WhisperForConditionalGeneration`: the encoder, the decoder, and
/// `proj_out` tied to the decoder's token embeddings.
pub struct WhisperForConditionalGeneration {
    encoder: Encoder,
    decoder: Decoder,
    head: TiedHead,
    pub config: WhisperConfig,
    device: tch::Device,
}

impl WhisperForConditionalGeneration {
    pub fn new(p: Path, cfg: &WhisperConfig) -> Self {
        let model = &p / "model";
        let decoder = Decoder::new(&model / "decoder", cfg);
        WhisperForConditionalGeneration {
            encoder: Encoder::new(&model / "encoder", cfg),
            head: TiedHead::new(decoder.embed_tokens.weight()),
            decoder,
            config: cfg.clone(),
            device: p.device(),
        }
    }

    /// The bytes the model holds beyond its variables: its LM head's copy
    /// of the token embeddings (see `TiedHead`).
    pub fn extra_bytes(&self) -> u64 {
        self.head.copy_bytes(self.decoder.embed_tokens.weight())
    }

    /// Encoder states [items, max_source_positions, d_model] of log-mel
    /// features [items, num_mel_bins, 2 * max_source_positions] (what
    /// `WhisperFeatureExtractor` gives: 30 s, padded with silence), in the
    /// model's dtype.
    pub fn encode_features(&self, features: &Tensor) -> Tensor {
        self.encoder.forward(&features.to_kind(self.encoder.positions.kind()))
    }
}

impl Seq2SeqLm for WhisperForConditionalGeneration {
    /// `features` are log-mel features (see `encode_features`); a window is
    /// never padded, so `padding` is None.
    fn encode(&self, features: &Tensor, padding: Option<&Tensor>) -> Tensor {
        debug_assert!(padding.is_none(), "Whisper's features have no padding");
        self.encode_features(features)
    }

    fn step(&self, tokens: &[i64], state: &mut DecoderState) -> Tensor {
        let ids = Tensor::from_slice(tokens).to_device(self.device).unsqueeze(1);
        let hidden = self.decoder.step(&ids, state).squeeze_dim(1);
        self.head.logits(&hidden, self.decoder.embed_tokens.weight())
    }

    fn decoder_layers(&self) -> usize {
        self.decoder.layers.len()
    }

    fn cross_keys_values(&self, state: &mut DecoderState) {
        for (layer, cached) in self.decoder.layers.iter().zip(&mut state.cross_attn) {
            *cached = Some(layer.cross_attn.memory_keys_values(&state.memory));
        }
    }

    fn decoder_start_token_id(&self) -> i64 {
        self.config.decoder_start_token_id
    }

    fn device(&self) -> tch::Device {
        self.device
    }
}

/// `WhisperForConditionalGeneration` from the config.json at a checkpoint's
/// root, checked against the checkpoint's tensors first.
pub fn build(
    root: Path,
    config_file: &std::path::Path,
    shapes: &WeightShapes,
) -> Result<WhisperForConditionalGeneration> {
    let cfg: WhisperConfig = read_json(config_file)?;
    cfg.validate(config_file, shapes)?;
    Ok(WhisperForConditionalGeneration::new(root, &cfg))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn whisper_sizes_are_checked_against_the_checkpoint() {
        let shapes = WeightShapes::from_shapes([
            ("model.decoder.embed_tokens.weight", vec![40, 8]),
            ("model.decoder.embed_positions.weight", vec![16, 8]),
            ("model.encoder.embed_positions.weight", vec![30, 8]),
            ("model.encoder.conv1.weight", vec![8, 10, 3]),
            ("model.encoder.conv2.weight", vec![8, 8, 3]),
            ("model.encoder.layers.0.fc1.weight", vec![16, 8]),
            ("model.decoder.layers.0.fc1.weight", vec![24, 8]),
            ("model.decoder.layers.1.fc1.weight", vec![24, 8]),
        ]);
        let config = |edit: serde_json::Value| -> WhisperConfig {
            crate::core::checks::edited(
                serde_json::json!({
                    "vocab_size": 40, "num_mel_bins": 10, "d_model": 8, "encoder_layers": 1, "decoder_layers": 2,
                    "encoder_attention_heads": 2, "decoder_attention_heads": 2, "encoder_ffn_dim": 16,
                    "decoder_ffn_dim": 24, "max_source_positions": 30, "max_target_positions": 16,
                    "pad_token_id": 0, "eos_token_id": 0, "decoder_start_token_id": 1
                }),
                edit,
            )
        };
        let file = Path::new("config.json");
        config(serde_json::json!({})).validate(file, &shapes).unwrap();
        assert_eq!(config(serde_json::json!({})).input_frames(), 60);
        let refused = |edit| config(edit).validate(file, &shapes).unwrap_err().to_string();
        for (edit, says) in [
            (
                serde_json::json!({"decoder_layers": 3}),
                "has 2 layers (decoder.layers.0 .. 1)",
            ),
            (
                serde_json::json!({"encoder_layers": 1_000_000}),
                "encoder_layers = 1000000",
            ),
            (serde_json::json!({"num_mel_bins": 128}), "num_mel_bins = 128"),
            (
                serde_json::json!({"max_source_positions": 1500}),
                "max_source_positions = 1500",
            ),
            (
                serde_json::json!({"max_target_positions": 448}),
                "max_target_positions = 448",
            ),
            (
                serde_json::json!({"decoder_attention_heads": 3}),
                "decoder_attention_heads = 3",
            ),
            (
                serde_json::json!({"decoder_start_token_id": 40}),
                "decoder_start_token_id = 40",
            ),
        ] {
            let err = refused(edit);
            assert!(err.contains(says), "{err}");
        }
    }
}
