//! BART (Lewis et al.): a post-norm transformer encoder-decoder with learned
//! positions offset by 2 and a layer norm on the embeddings. The same model
//! serves zero-shot classification (`BartForSequenceClassification`, the head
//! on the decoder state of the last </s>) and, through the generation module,
//! summarization. Weight names follow transformers' `modeling_bart.py`.

use serde::Deserialize;
use tch::{nn::Path, Kind, Tensor};

use crate::core::checks::{ConfigCheck, MAX_TABLE, MAX_WIDTH};
use crate::core::config::read_json;
use crate::core::decoding::{DecoderState, Seq2SeqLm, Seq2SeqNet, Step};
use crate::core::layers::{
    attention, causal_bias, cross_attention, kept_in_order, merge_heads, padding_bias, split_heads, Activation,
    Embedding, KvCache, LayerNorm, Linear, Variables,
};
use crate::core::split_linear::{self, Layout};
use crate::core::weights::WeightShapes;
use crate::text::encoder::{Encoder, EncoderNet, EncoderSpec, Head};
use crate::text::tokenizer::EncodedBatch;
use crate::{ModelError, Result};

/// nn.LayerNorm's default epsilon, which BART uses everywhere.
const LAYER_NORM_EPS: f64 = 1e-5;
/// BartLearnedPositionalEmbedding's offset.
const POSITION_OFFSET: i64 = 2;

fn default_vocab_size() -> i64 {
    50265
}
fn default_positions() -> i64 {
    1024
}
fn default_layers() -> i64 {
    12
}
fn default_ffn() -> i64 {
    4096
}
fn default_heads() -> i64 {
    16
}
fn default_d_model() -> i64 {
    1024
}
fn default_pad() -> i64 {
    1
}
fn default_eos() -> i64 {
    2
}

/// `BartConfig`, with transformers' defaults.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    #[serde(default = "default_vocab_size")]
    pub vocab_size: i64,
    #[serde(default = "default_positions")]
    pub max_position_embeddings: i64,
    #[serde(default = "default_layers")]
    pub encoder_layers: i64,
    #[serde(default = "default_ffn")]
    pub encoder_ffn_dim: i64,
    #[serde(default = "default_heads")]
    pub encoder_attention_heads: i64,
    #[serde(default = "default_layers")]
    pub decoder_layers: i64,
    #[serde(default = "default_ffn")]
    pub decoder_ffn_dim: i64,
    #[serde(default = "default_heads")]
    pub decoder_attention_heads: i64,
    #[serde(default)]
    pub activation_function: Activation,
    #[serde(default = "default_d_model")]
    pub d_model: i64,
    #[serde(default)]
    pub scale_embedding: bool,
    #[serde(default = "default_pad")]
    pub pad_token_id: i64,
    #[serde(default = "default_eos")]
    pub eos_token_id: i64,
    #[serde(default = "default_eos")]
    pub decoder_start_token_id: i64,
}

/// The longest sinusoidal position table Marian computes at load (its
/// positions are no weights to check against): 2^16 rows.
const MAX_SINUSOIDAL_POSITIONS: i64 = 1 << 16;
/// ... and at most 2^26 values (256 MB of f32) in all.
const MAX_SINUSOIDAL_VALUES: i64 = 1 << 26;

impl Config {
    /// Every size within its bound and equal to the checkpoint's
    /// (`core::checks`), before anything is built from them.
    pub fn validate(&self, file: &std::path::Path, shapes: &WeightShapes, variant: Variant) -> Result<()> {
        let c = ConfigCheck::new(file, shapes);
        c.matches("vocab_size", self.vocab_size, MAX_TABLE, "shared.weight", 0)?;
        c.matches("d_model", self.d_model, MAX_WIDTH, "shared.weight", 1)?;
        match variant {
            Variant::Bart => {
                c.size("max_position_embeddings", self.max_position_embeddings, MAX_TABLE)?;
                c.anchor(
                    "max_position_embeddings",
                    self.max_position_embeddings,
                    self.max_position_embeddings + POSITION_OFFSET,
                    " (max_position_embeddings + 2 rows)",
                    "encoder.embed_positions.weight",
                    0,
                )?;
            }
            Variant::Marian => c.size(
                "max_position_embeddings",
                self.max_position_embeddings,
                // Computed in a Vec at load: bounded in values too.
                MAX_SINUSOIDAL_POSITIONS.min(MAX_SINUSOIDAL_VALUES / self.d_model),
            )?,
        }
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
}

/// Multi-head attention with q/k/v/out projections (self- or cross-attention).
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
            k: Linear::new(&p / "k_proj", dim, dim),
            v: Linear::new(&p / "v_proj", dim, dim),
            out: Linear::new(&p / "out_proj", dim, dim),
            heads,
        }
    }

    /// Attends from `x` to `memory` (x itself for self-attention).
    fn forward(&self, x: &Tensor, memory: &Tensor, bias: Option<&Tensor>) -> Tensor {
        let q = split_heads(&self.q.forward(x), self.heads);
        let k = split_heads(&self.k.forward(memory), self.heads);
        let v = split_heads(&self.v.forward(memory), self.heads);
        self.out.forward(&merge_heads(&attention(&q, &k, &v, bias)))
    }

    /// Self-attention of new decoder tokens over every earlier one (kept in
    /// `cache`) and themselves.
    /// `bias` hides the left padding of rows that joined later.
    fn step_self(&self, x: &Tensor, cache: &mut KvCache, bias: Option<&Tensor>) -> Tensor {
        let q = split_heads(&self.q.forward(x), self.heads);
        let (k, v) = cache.append(
            split_heads(&self.k.forward(x), self.heads),
            split_heads(&self.v.forward(x), self.heads),
        );
        self.out.forward(&merge_heads(&attention(&q, &k, &v, bias)))
    }

    /// The keys and values of the encoder states `memory` [items, src, d],
    /// [items, heads, src, head_dim] each.
    fn memory_keys_values(&self, memory: &Tensor) -> (Tensor, Tensor) {
        kept_in_order((
            split_heads(&self.k.forward(memory), self.heads),
            split_heads(&self.v.forward(memory), self.heads),
        ))
    }

    /// Cross-attention of each hypothesis to its input's encoder states
    /// (`memory` [items, src, d]), whose keys and values are computed on
    /// the first step (unless given before) and kept.
    fn step_cross(
        &self,
        x: &Tensor,
        memory: &Tensor,
        padding: Option<&Tensor>,
        cached: &mut Option<(Tensor, Tensor)>,
    ) -> Tensor {
        let (k, v) = cached.get_or_insert_with(|| self.memory_keys_values(memory));
        let q = split_heads(&self.q.forward(x), self.heads);
        self.out.forward(&cross_attention(&q, k, v, padding, None))
    }
}

struct EncoderLayer {
    self_attn: Attention,
    self_attn_norm: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    final_norm: LayerNorm,
    act: Activation,
}

impl EncoderLayer {
    fn new(p: Path, cfg: &Config) -> Self {
        let d = cfg.d_model;
        EncoderLayer {
            self_attn: Attention::new(&p / "self_attn", d, cfg.encoder_attention_heads),
            self_attn_norm: LayerNorm::new(&p / "self_attn_layer_norm", d, LAYER_NORM_EPS),
            fc1: Linear::new(&p / "fc1", d, cfg.encoder_ffn_dim),
            fc2: Linear::new(&p / "fc2", cfg.encoder_ffn_dim, d),
            final_norm: LayerNorm::new(&p / "final_layer_norm", d, LAYER_NORM_EPS),
            act: cfg.activation_function,
        }
    }

    fn forward(&self, x: &Tensor, bias: Option<&Tensor>) -> Tensor {
        let x = self.self_attn_norm.forward(&(self.self_attn.forward(x, x, bias) + x));
        let h = self.fc2.forward(&self.act.forward(&self.fc1.forward(&x)));
        self.final_norm.forward(&(h + x))
    }
}

struct DecoderLayer {
    self_attn: Attention,
    self_attn_norm: LayerNorm,
    cross_attn: Attention,
    cross_attn_norm: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    final_norm: LayerNorm,
    act: Activation,
}

impl DecoderLayer {
    fn new(p: Path, cfg: &Config) -> Self {
        let d = cfg.d_model;
        DecoderLayer {
            self_attn: Attention::new(&p / "self_attn", d, cfg.decoder_attention_heads),
            self_attn_norm: LayerNorm::new(&p / "self_attn_layer_norm", d, LAYER_NORM_EPS),
            cross_attn: Attention::new(&p / "encoder_attn", d, cfg.decoder_attention_heads),
            cross_attn_norm: LayerNorm::new(&p / "encoder_attn_layer_norm", d, LAYER_NORM_EPS),
            fc1: Linear::new(&p / "fc1", d, cfg.decoder_ffn_dim),
            fc2: Linear::new(&p / "fc2", cfg.decoder_ffn_dim, d),
            final_norm: LayerNorm::new(&p / "final_layer_norm", d, LAYER_NORM_EPS),
            act: cfg.activation_function,
        }
    }

    /// One decoding step for the newest token of each row.
    fn step(
        &self,
        x: &Tensor,
        step: &Step,
        memory: &Tensor,
        memory_padding: Option<&Tensor>,
        self_cache: &mut KvCache,
        cross: &mut Option<(Tensor, Tensor)>,
    ) -> Tensor {
        let mut h = self.self_attn.step_self(x, self_cache, step.bias.as_ref());
        h += x;
        let x = self.self_attn_norm.forward(&h);
        let mut h = self.cross_attn.step_cross(&x, memory, memory_padding, cross);
        h += &x;
        let x = self.cross_attn_norm.forward(&h);
        let mut h = self.fc2.forward(&self.act.forward(&self.fc1.forward(&x)));
        h += &x;
        self.final_norm.forward(&h)
    }

    fn forward(&self, x: &Tensor, self_bias: &Tensor, memory: &Tensor, memory_bias: &Tensor) -> Tensor {
        let x = self
            .self_attn_norm
            .forward(&(self.self_attn.forward(x, x, Some(self_bias)) + x));
        let x = self
            .cross_attn_norm
            .forward(&(self.cross_attn.forward(&x, memory, Some(memory_bias)) + x));
        let h = self.fc2.forward(&self.act.forward(&self.fc1.forward(&x)));
        self.final_norm.forward(&(h + x))
    }
}

/// BART and its relatives differ only in their embeddings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// Learned positions offset by 2, a layer norm on the embeddings.
    Bart,
    /// MarianMTModel: fixed sinusoidal positions, no embedding norm.
    Marian,
}

/// Token embeddings (shared, scaled) plus positions, then (BART) layer norm.
struct Embed {
    /// [positions (+ offset), d_model]
    positions: Tensor,
    offset: i64,
    norm: Option<LayerNorm>,
}

/// MarianSinusoidalPositionalEmbedding: sin of the even columns' angles in
/// the first half, cos of the odd ones' in the second (f64, then f32).
fn sinusoidal(positions: i64, dim: i64, device: tch::Device) -> Tensor {
    let half = dim / 2 + dim % 2;
    let mut table = vec![0f32; (positions * dim) as usize];
    for pos in 0..positions {
        let angle = |j: i64| pos as f64 / 10000f64.powf((2 * (j / 2)) as f64 / dim as f64);
        let row = &mut table[(pos * dim) as usize..((pos + 1) * dim) as usize];
        for (k, j) in (0..dim).step_by(2).enumerate() {
            row[k] = angle(j).sin() as f32;
        }
        for (k, j) in (1..dim).step_by(2).enumerate() {
            row[half as usize + k] = angle(j).cos() as f32;
        }
    }
    Tensor::from_slice(&table).view([positions, dim]).to_device(device)
}

impl Embed {
    fn new(p: &Path, cfg: &Config, variant: Variant) -> Self {
        match variant {
            Variant::Bart => Embed {
                positions: Embedding::new(
                    p / "embed_positions",
                    cfg.max_position_embeddings + POSITION_OFFSET,
                    cfg.d_model,
                )
                .weight()
                .shallow_clone(),
                offset: POSITION_OFFSET,
                norm: Some(LayerNorm::new(p / "layernorm_embedding", cfg.d_model, LAYER_NORM_EPS)),
            },
            Variant::Marian => Embed {
                positions: sinusoidal(cfg.max_position_embeddings, cfg.d_model, p.device()).to_kind(p.kind()),
                offset: 0,
                norm: None,
            },
        }
    }

    /// Embedded tokens [batch, seq, d] at positions 0..seq.
    fn forward(&self, tokens: &Tensor) -> Tensor {
        let seq = tokens.size()[1];
        self.normed(tokens + self.positions.narrow(0, self.offset, seq).unsqueeze(0))
    }

    /// Embedded tokens [rows, 1, d], each row's at its own `positions` [rows].
    fn forward_at(&self, tokens: &Tensor, positions: &Tensor) -> Tensor {
        self.normed(tokens + self.positions.index_select(0, &(positions + self.offset)).unsqueeze(1))
    }

    fn normed(&self, x: Tensor) -> Tensor {
        match &self.norm {
            Some(norm) => norm.forward(&x),
            None => x,
        }
    }
}

/// `BartModel`: encoder and decoder sharing one token embedding.
pub struct BartModel {
    shared: Embedding,
    embed_scale: f64,
    encoder_embed: Embed,
    encoder_layers: Vec<EncoderLayer>,
    decoder_embed: Embed,
    decoder_layers: Vec<DecoderLayer>,
    pub config: Config,
}

impl BartModel {
    pub fn new(p: Path, cfg: &Config) -> Self {
        Self::with_variant(p, cfg, Variant::Bart)
    }

    pub fn with_variant(p: Path, cfg: &Config, variant: Variant) -> Self {
        let enc = &p / "encoder";
        let dec = &p / "decoder";
        BartModel {
            shared: Embedding::new(&p / "shared", cfg.vocab_size, cfg.d_model),
            embed_scale: if cfg.scale_embedding {
                (cfg.d_model as f64).sqrt()
            } else {
                1.0
            },
            encoder_embed: Embed::new(&enc, cfg, variant),
            encoder_layers: (0..cfg.encoder_layers)
                .map(|i| EncoderLayer::new(&enc / "layers" / i, cfg))
                .collect(),
            decoder_embed: Embed::new(&dec, cfg, variant),
            decoder_layers: (0..cfg.decoder_layers)
                .map(|i| DecoderLayer::new(&dec / "layers" / i, cfg))
                .collect(),
            config: cfg.clone(),
        }
    }

    /// Encoder states [batch, seq, d_model].
    pub fn encode(&self, input_ids: &Tensor, attention_mask: &Tensor) -> Tensor {
        self.encode_padded(input_ids, Some(&padding_bias(attention_mask, Kind::Float)))
    }

    /// Encoder states [batch, seq, d_model], given the inputs' additive
    /// padding bias (None: no padding).
    fn encode_padded(&self, input_ids: &Tensor, padding: Option<&Tensor>) -> Tensor {
        let mut x = self
            .encoder_embed
            .forward(&(self.shared.forward(input_ids) * self.embed_scale));
        for layer in &self.encoder_layers {
            x = layer.forward(&x, padding);
        }
        x
    }

    /// Decoder states [batch, tgt, d_model] for decoder inputs attending
    /// causally to themselves and to the (masked) encoder states.
    pub fn decode(&self, decoder_ids: &Tensor, memory: &Tensor, memory_mask: &Tensor) -> Tensor {
        let tgt = decoder_ids.size()[1];
        // The decoder inputs have no padding of their own: only causality.
        let self_bias = causal_bias(&decoder_ids.ones_like(), tgt);
        let memory_bias = padding_bias(memory_mask, Kind::Float);
        let mut x = self
            .decoder_embed
            .forward(&(self.shared.forward(decoder_ids) * self.embed_scale));
        for layer in &self.decoder_layers {
            x = layer.forward(&x, &self_bias, memory, &memory_bias);
        }
        x
    }

    /// Decoder states [rows, 1, d_model] for each row's newest token, at
    /// its position, with the caches of earlier steps.
    fn decode_step(&self, tokens: &Tensor, state: &mut DecoderState) -> Tensor {
        let step = state.begin_step();
        let mut x = self
            .decoder_embed
            .forward_at(&(self.shared.forward(tokens) * self.embed_scale), &step.positions);
        for (i, layer) in self.decoder_layers.iter().enumerate() {
            x = layer.step(
                &x,
                &step,
                &state.memory,
                state.memory_padding.as_ref(),
                &mut state.self_attn[i],
                &mut state.cross_attn[i],
            );
        }
        x
    }

    /// `shift_tokens_right`: the decoder inputs for teacher forcing.
    pub fn shift_right(&self, input_ids: &Tensor) -> Tensor {
        let (b, _) = input_ids.size2().expect("2-d ids");
        let start = Tensor::full(
            [b, 1],
            self.config.decoder_start_token_id,
            (Kind::Int64, input_ids.device()),
        );
        let shifted = Tensor::cat(&[start, input_ids.narrow(1, 0, input_ids.size()[1] - 1)], 1);
        shifted.masked_fill(&shifted.eq(-100), self.config.pad_token_id)
    }
}

/// `BartForSequenceClassification`: the decoder state at the last </s> of
/// each input, through dense, tanh and out_proj.
pub struct BartForSequenceClassification {
    model: BartModel,
    dense: Linear,
    out_proj: Linear,
}

impl BartForSequenceClassification {
    pub fn new(p: Path, cfg: &Config, num_labels: i64) -> Self {
        let head = &p / "classification_head";
        BartForSequenceClassification {
            model: BartModel::new(&p / "model", cfg),
            dense: Linear::new(&head / "dense", cfg.d_model, cfg.d_model),
            out_proj: Linear::new(&head / "out_proj", cfg.d_model, num_labels),
        }
    }

    /// Logits [batch, num_labels].
    pub fn forward(&self, batch: &EncodedBatch) -> Tensor {
        let ids = &batch.input_ids;
        let memory = self.model.encode(ids, &batch.attention_mask);
        let hidden = self
            .model
            .decode(&self.model.shift_right(ids), &memory, &batch.attention_mask);
        // Index of the last </s> in each row.
        let seq = ids.size()[1];
        let positions = Tensor::arange(seq, (Kind::Int64, ids.device())).unsqueeze(0);
        let last_eos = positions
            .masked_fill(&ids.ne(self.model.config.eos_token_id), -1)
            .amax([1], false);
        let d = self.model.config.d_model;
        let index = last_eos.view([-1, 1, 1]).expand([-1, 1, d], false);
        let sentence = hidden.gather(1, &index, false).squeeze_dim(1);
        self.out_proj.forward(&self.dense.forward(&sentence).tanh())
    }
}

/// `BartForConditionalGeneration`: the decoder's states through the shared
/// (tied) embedding, plus `final_logits_bias`.
pub struct BartForConditionalGeneration {
    model: BartModel,
    final_logits_bias: Tensor,
    device: tch::Device,
}

impl BartForConditionalGeneration {
    pub fn new(p: Path, cfg: &Config, variant: Variant) -> Self {
        BartForConditionalGeneration {
            model: BartModel::with_variant(&p / "model", cfg, variant),
            final_logits_bias: p.zeros_var("final_logits_bias", &[1, cfg.vocab_size]),
            device: p.device(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.model.config
    }
}

impl Seq2SeqLm for BartForConditionalGeneration {
    fn encode(&self, input_ids: &Tensor, padding: Option<&Tensor>) -> Tensor {
        self.model.encode_padded(input_ids, padding)
    }

    fn decoder_layers(&self) -> usize {
        self.model.decoder_layers.len()
    }

    fn step(&self, tokens: &[i64], state: &mut DecoderState) -> Tensor {
        let ids = Tensor::from_slice(tokens).to_device(self.device).unsqueeze(1);
        let hidden = self.model.decode_step(&ids, state).squeeze_dim(1);
        split_linear::linear(&hidden, self.model.shared.weight(), None, Layout::OutIn) + &self.final_logits_bias
    }

    fn cross_keys_values(&self, state: &mut DecoderState) {
        for (layer, cached) in self.model.decoder_layers.iter().zip(&mut state.cross_attn) {
            *cached = Some(layer.cross_attn.memory_keys_values(&state.memory));
        }
    }

    fn decoder_start_token_id(&self) -> i64 {
        self.model.config.decoder_start_token_id
    }

    fn device(&self) -> tch::Device {
        self.device
    }
}

impl EncoderNet for BartForSequenceClassification {
    fn forward(&self, batch: &EncodedBatch) -> Tensor {
        BartForSequenceClassification::forward(self, batch)
    }
}

/// BART for sequence classification (the only encoder head it has here:
/// zero-shot classification and text classification).
pub fn build_classifier(spec: &EncoderSpec) -> Result<Encoder> {
    let cfg: Config = read_json(spec.config_file)?;
    cfg.validate(spec.config_file, spec.shapes, Variant::Bart)?;
    if spec.head != Head::SequenceClassification {
        return Err(ModelError::Unsupported(format!("BART with a {:?} head", spec.head)));
    }
    Ok(Encoder {
        net: Box::new(BartForSequenceClassification::new(
            spec.root.clone(),
            &cfg,
            spec.num_labels,
        )),
        positions: cfg.max_position_embeddings,
        pad_token_id: cfg.pad_token_id,
        reads_token: Some(("eos_token_id", cfg.eos_token_id)),
    })
}

fn build_generator(
    root: Path,
    config_file: &std::path::Path,
    shapes: &WeightShapes,
    variant: Variant,
) -> Result<Seq2SeqNet> {
    let cfg: Config = read_json(config_file)?;
    cfg.validate(config_file, shapes, variant)?;
    Ok(Seq2SeqNet {
        positions: Some(cfg.max_position_embeddings.max(1) as usize),
        net: Box::new(BartForConditionalGeneration::new(root, &cfg, variant)),
    })
}

/// `BartForConditionalGeneration`, for summarization.
pub fn build_bart(root: Path, config_file: &std::path::Path, shapes: &WeightShapes) -> Result<Seq2SeqNet> {
    build_generator(root, config_file, shapes, Variant::Bart)
}

/// `MarianMTModel`, for translation.
pub fn build_marian(root: Path, config_file: &std::path::Path, shapes: &WeightShapes) -> Result<Seq2SeqNet> {
    build_generator(root, config_file, shapes, Variant::Marian)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::weights::WeightShapes;
    use std::path::Path;

    #[test]
    fn bart_and_marian_layer_counts_and_positions_are_checked_against_the_checkpoint() {
        let mut tensors = vec![
            ("model.shared.weight", vec![40, 8]),
            ("model.encoder.embed_positions.weight", vec![34, 8]),
            ("model.encoder.layers.0.fc1.weight", vec![16, 8]),
            ("model.decoder.layers.0.fc1.weight", vec![16, 8]),
            ("model.decoder.layers.1.fc1.weight", vec![16, 8]),
        ];
        let shapes = WeightShapes::from_shapes(tensors.clone());
        let config = |edit: serde_json::Value| -> Config {
            crate::core::checks::edited(
                serde_json::json!({
                    "vocab_size": 40, "max_position_embeddings": 32, "encoder_layers": 1, "decoder_layers": 2,
                    "encoder_ffn_dim": 16, "decoder_ffn_dim": 16, "encoder_attention_heads": 2,
                    "decoder_attention_heads": 2, "d_model": 8
                }),
                edit,
            )
        };
        let file = Path::new("config.json");
        config(serde_json::json!({}))
            .validate(file, &shapes, Variant::Bart)
            .unwrap();
        let refused = |edit, variant| config(edit).validate(file, &shapes, variant).unwrap_err().to_string();
        let err = refused(serde_json::json!({"decoder_layers": 100_000_000}), Variant::Bart);
        assert!(err.contains("decoder_layers = 100000000"), "{err}");
        let err = refused(serde_json::json!({"encoder_layers": 2}), Variant::Bart);
        assert!(err.contains("has 1 layers (encoder.layers.0 .. 0)"), "{err}");
        let err = refused(serde_json::json!({"max_position_embeddings": 64}), Variant::Bart);
        assert!(err.contains("(max_position_embeddings + 2 rows)"), "{err}");
        let err = refused(serde_json::json!({"decoder_attention_heads": 3}), Variant::Bart);
        assert!(err.contains("decoder_attention_heads = 3"), "{err}");
        let err = refused(serde_json::json!({"decoder_start_token_id": 40}), Variant::Bart);
        assert!(err.contains("decoder_start_token_id = 40"), "{err}");
        // Marian's positions are computed, not weights: bounded instead.
        tensors.remove(1);
        let marian = WeightShapes::from_shapes(tensors);
        config(serde_json::json!({"max_position_embeddings": 512}))
            .validate(file, &marian, Variant::Marian)
            .unwrap();
        let err = config(serde_json::json!({"max_position_embeddings": 1 << 30}))
            .validate(file, &marian, Variant::Marian)
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_position_embeddings = 1073741824"), "{err}");
    }
}
