//! T5ForConditionalGeneration (transformers' modeling_t5.py): pre-norm
//! encoder-decoder with RMS layer norms, unscaled attention with a learned
//! relative-position bias (bucketed, held by the first layer of each stack
//! and shared by the others), a ReLU feed-forward or, for T5 v1.1 and later,
//! a gated GELU one, and an output layer tied to the embedding (scaled by
//! d_model^-0.5) or separate.

use serde::Deserialize;
use tch::{nn::Path, Kind, Tensor};

use crate::core::checks::{ConfigCheck, MAX_TABLE, MAX_WIDTH};
use crate::core::config::read_json;
use crate::core::decoding::{DecoderState, Seq2SeqLm, Seq2SeqNet};
use crate::core::layers::{
    bias_in, cross_attention, kept_in_order, merge_heads, split_heads, Activation, Embedding, Linear, Variables,
};
use crate::core::split_linear::{self, Layout};
use crate::core::weights::WeightShapes;

fn one_hundred_twenty_eight() -> i64 {
    128
}
fn thirty_two() -> i64 {
    32
}
fn eps() -> f64 {
    1e-6
}
fn relu() -> String {
    "relu".into()
}
fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub vocab_size: i64,
    pub d_model: i64,
    pub d_kv: i64,
    pub d_ff: i64,
    pub num_layers: i64,
    pub num_decoder_layers: Option<i64>,
    pub num_heads: i64,
    #[serde(default = "thirty_two")]
    pub relative_attention_num_buckets: i64,
    #[serde(default = "one_hundred_twenty_eight")]
    pub relative_attention_max_distance: i64,
    #[serde(default = "eps")]
    pub layer_norm_epsilon: f64,
    #[serde(default = "relu")]
    pub feed_forward_proj: String,
    #[serde(default = "yes")]
    pub tie_word_embeddings: bool,
    #[serde(default)]
    pub decoder_start_token_id: i64,
}

impl Config {
    /// Every size within its bound and equal to the checkpoint's
    /// (`core::checks`), before anything is built from them.
    pub fn validate(&self, file: &std::path::Path, shapes: &WeightShapes) -> crate::Result<()> {
        let c = ConfigCheck::new(file, shapes);
        c.matches("vocab_size", self.vocab_size, MAX_TABLE, "shared.weight", 0)?;
        c.matches("d_model", self.d_model, MAX_WIDTH, "shared.weight", 1)?;
        c.layers("num_layers", self.num_layers, "encoder.block")?;
        c.layers(
            "num_decoder_layers",
            self.num_decoder_layers.unwrap_or(self.num_layers),
            "decoder.block",
        )?;
        let attention = "encoder.block.0.layer.0.SelfAttention";
        let buckets = format!("{attention}.relative_attention_bias.weight");
        c.matches("num_heads", self.num_heads, MAX_WIDTH, &buckets, 1)?;
        c.matches(
            "relative_attention_num_buckets",
            self.relative_attention_num_buckets,
            MAX_TABLE,
            &buckets,
            0,
        )?;
        c.size(
            "relative_attention_max_distance",
            self.relative_attention_max_distance,
            MAX_TABLE,
        )?;
        c.size("d_kv", self.d_kv, MAX_WIDTH)?;
        c.anchor(
            "d_kv",
            self.d_kv,
            self.d_kv * self.num_heads,
            " (num_heads x d_kv rows)",
            &format!("{attention}.q.weight"),
            0,
        )?;
        c.matches(
            "d_ff",
            self.d_ff,
            MAX_WIDTH,
            "encoder.block.0.layer.1.DenseReluDense.wo.weight",
            1,
        )?;
        c.token("decoder_start_token_id", self.decoder_start_token_id, self.vocab_size)?;
        Ok(())
    }
}

/// T5LayerNorm: x / sqrt(mean(x^2) + eps) * weight (no mean, no bias).
struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    fn new(p: Path, size: i64, eps: f64) -> Self {
        RmsNorm {
            weight: p.zeros_var("weight", &[size]),
            eps,
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        // In float32, then back in the weight's dtype, as T5LayerNorm does.
        let variance = x.to_kind(Kind::Float).square().mean_dim(-1, true, Kind::Float);
        &self.weight * (x * (variance + self.eps).rsqrt()).to_kind(self.weight.kind())
    }
}

/// The bucket of each relative position (key - query), as
/// `_relative_position_bucket` computes it (logarithm in f32).
fn bucket(relative: i64, bidirectional: bool, num_buckets: i64, max_distance: i64) -> i64 {
    let (mut buckets, mut n, distance) = (0, num_buckets, relative);
    let distance = if bidirectional {
        n /= 2;
        if distance > 0 {
            buckets += n;
        }
        distance.abs()
    } else {
        (-distance).max(0)
    };
    let max_exact = n / 2;
    if distance < max_exact {
        return buckets + distance;
    }
    // torch.log on f32, divided by Python's math.log (f64, then f32).
    let denominator = (max_distance as f64 / max_exact as f64).ln() as f32;
    let scaled = ((distance as f32 / max_exact as f32).ln() / denominator * (n - max_exact) as f32) as i64;
    buckets + (max_exact + scaled).min(n - 1)
}

struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    heads: i64,
    /// [num_buckets, heads], in the first layer of a stack.
    relative_bias: Option<Embedding>,
    bidirectional: bool,
    num_buckets: i64,
    max_distance: i64,
}

impl Attention {
    fn new(p: Path, cfg: &Config, relative_bias: bool, bidirectional: bool) -> Self {
        let inner = cfg.num_heads * cfg.d_kv;
        Attention {
            q: Linear::no_bias(&p / "q", cfg.d_model, inner),
            k: Linear::no_bias(&p / "k", cfg.d_model, inner),
            v: Linear::no_bias(&p / "v", cfg.d_model, inner),
            o: Linear::no_bias(&p / "o", inner, cfg.d_model),
            heads: cfg.num_heads,
            relative_bias: relative_bias.then(|| {
                Embedding::new(
                    &p / "relative_attention_bias",
                    cfg.relative_attention_num_buckets,
                    cfg.num_heads,
                )
            }),
            bidirectional,
            num_buckets: cfg.relative_attention_num_buckets,
            max_distance: cfg.relative_attention_max_distance,
        }
    }

    /// The position bias [1, heads, queries, keys] for queries at
    /// `first_query..first_query + queries` and keys `0..keys`.
    fn position_bias(&self, first_query: i64, queries: i64, keys: i64, device: tch::Device) -> Tensor {
        let embedding = self.relative_bias.as_ref().expect("the layer with the relative bias");
        let buckets: Vec<i64> = (first_query..first_query + queries)
            .flat_map(|q| (0..keys).map(move |k| (q, k)))
            .map(|(q, k)| bucket(k - q, self.bidirectional, self.num_buckets, self.max_distance))
            .collect();
        let index = Tensor::from_slice(&buckets).to_device(device).view([queries, keys]);
        embedding.forward(&index).permute([2, 0, 1]).unsqueeze(0)
    }

    /// softmax(q kᵀ + bias) v, unscaled as T5 is.
    fn attend(&self, x: &Tensor, k: &Tensor, v: &Tensor, bias: Option<&Tensor>) -> Tensor {
        let q = split_heads(&self.q.forward(x), self.heads);
        let bias = bias_in(bias, q.kind());
        let out = Tensor::scaled_dot_product_attention(&q, k, v, bias.as_ref(), 0.0, false, 1.0, false);
        self.o.forward(&merge_heads(&out))
    }

    /// Cross-attention of each hypothesis to its input's keys and values
    /// [items, heads, source, head_dim] (unscaled, as T5 is).
    fn attend_inputs(&self, x: &Tensor, k: &Tensor, v: &Tensor, padding: Option<&Tensor>) -> Tensor {
        let q = split_heads(&self.q.forward(x), self.heads);
        self.o.forward(&cross_attention(&q, k, v, padding, Some(1.0)))
    }

    fn keys_values(&self, memory: &Tensor) -> (Tensor, Tensor) {
        (
            split_heads(&self.k.forward(memory), self.heads),
            split_heads(&self.v.forward(memory), self.heads),
        )
    }

    /// The keys and values of the encoder states, kept for every step.
    fn memory_keys_values(&self, memory: &Tensor) -> (Tensor, Tensor) {
        kept_in_order(self.keys_values(memory))
    }
}

enum FeedForward {
    Relu {
        wi: Linear,
        wo: Linear,
    },
    Gated {
        wi_0: Linear,
        wi_1: Linear,
        wo: Linear,
        act: Activation,
    },
}

impl FeedForward {
    fn new(p: Path, cfg: &Config) -> Self {
        let d = &p / "DenseReluDense";
        if cfg.feed_forward_proj.starts_with("gated-") {
            FeedForward::Gated {
                wi_0: Linear::no_bias(&d / "wi_0", cfg.d_model, cfg.d_ff),
                wi_1: Linear::no_bias(&d / "wi_1", cfg.d_model, cfg.d_ff),
                wo: Linear::no_bias(&d / "wo", cfg.d_ff, cfg.d_model),
                act: match cfg.feed_forward_proj.as_str() {
                    "gated-gelu" => Activation::GeluTanh,
                    "gated-silu" => Activation::Silu,
                    _ => Activation::Relu,
                },
            }
        } else {
            FeedForward::Relu {
                wi: Linear::no_bias(&d / "wi", cfg.d_model, cfg.d_ff),
                wo: Linear::no_bias(&d / "wo", cfg.d_ff, cfg.d_model),
            }
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        match self {
            FeedForward::Relu { wi, wo } => wo.forward(&wi.forward(x).relu()),
            FeedForward::Gated { wi_0, wi_1, wo, act } => {
                wo.forward(&(act.forward(&wi_0.forward(x)) * wi_1.forward(x)))
            }
        }
    }
}

struct Block {
    self_attn: Attention,
    self_norm: RmsNorm,
    cross: Option<(Attention, RmsNorm)>,
    ff: FeedForward,
    ff_norm: RmsNorm,
}

impl Block {
    fn new(p: Path, cfg: &Config, first: bool, decoder: bool) -> Self {
        let l = &p / "layer";
        let eps = cfg.layer_norm_epsilon;
        let ff_index = if decoder { 2 } else { 1 };
        Block {
            self_attn: Attention::new(&l / 0 / "SelfAttention", cfg, first, !decoder),
            self_norm: RmsNorm::new(&l / 0 / "layer_norm", cfg.d_model, eps),
            cross: decoder.then(|| {
                (
                    Attention::new(&l / 1 / "EncDecAttention", cfg, false, false),
                    RmsNorm::new(&l / 1 / "layer_norm", cfg.d_model, eps),
                )
            }),
            ff: FeedForward::new(&l / ff_index, cfg),
            ff_norm: RmsNorm::new(&l / ff_index / "layer_norm", cfg.d_model, eps),
        }
    }

    fn feed_forward(&self, x: Tensor) -> Tensor {
        let h = self.ff.forward(&self.ff_norm.forward(&x));
        x + h
    }
}

/// The most memory the attention scores and biases of the inputs encoded
/// together may take; longer inputs are encoded fewer at a time.
const ATTENTION_BUDGET_BYTES: i64 = 256 << 20;

/// `T5ForConditionalGeneration`.
pub struct T5ForConditionalGeneration {
    shared: Embedding,
    encoder: Vec<Block>,
    encoder_norm: RmsNorm,
    decoder: Vec<Block>,
    decoder_norm: RmsNorm,
    /// None: tied to `shared`, the states scaled by d_model^-0.5 first.
    lm_head: Option<Linear>,
    d_model: i64,
    decoder_start: i64,
    device: tch::Device,
}

impl T5ForConditionalGeneration {
    pub fn new(p: Path, cfg: &Config) -> Self {
        let enc = &p / "encoder";
        let dec = &p / "decoder";
        let decoder_layers = cfg.num_decoder_layers.unwrap_or(cfg.num_layers);
        T5ForConditionalGeneration {
            shared: Embedding::new(&p / "shared", cfg.vocab_size, cfg.d_model),
            encoder: (0..cfg.num_layers)
                .map(|i| Block::new(&enc / "block" / i, cfg, i == 0, false))
                .collect(),
            encoder_norm: RmsNorm::new(&enc / "final_layer_norm", cfg.d_model, cfg.layer_norm_epsilon),
            decoder: (0..decoder_layers)
                .map(|i| Block::new(&dec / "block" / i, cfg, i == 0, true))
                .collect(),
            decoder_norm: RmsNorm::new(&dec / "final_layer_norm", cfg.d_model, cfg.layer_norm_epsilon),
            lm_head: (!cfg.tie_word_embeddings).then(|| Linear::no_bias(&p / "lm_head", cfg.d_model, cfg.vocab_size)),
            d_model: cfg.d_model,
            decoder_start: cfg.decoder_start_token_id,
            device: p.device(),
        }
    }

    /// Encoder states of `input_ids` [items, n] under the attention `bias`
    /// (position bias, plus padding where there is some).
    fn encode_with_bias(&self, input_ids: &Tensor, bias: &Tensor) -> Tensor {
        let mut x = self.shared.forward(input_ids);
        for block in &self.encoder {
            let normed = block.self_norm.forward(&x);
            let (k, v) = block.self_attn.keys_values(&normed);
            x = &x + block.self_attn.attend(&normed, &k, &v, Some(bias));
            x = block.feed_forward(x);
        }
        self.encoder_norm.forward(&x)
    }
}

impl Seq2SeqLm for T5ForConditionalGeneration {
    fn encode(&self, input_ids: &Tensor, padding: Option<&Tensor>) -> Tensor {
        let (items, n) = input_ids.size2().expect("2-d ids");
        let positions = self.encoder[0].self_attn.position_bias(0, n, n, self.device);
        // Each input's attention takes [heads, n, n] (its scores, and its
        // bias where padding makes it its own): encode as many inputs at
        // once as fit in the budget.
        let per_input = positions.numel() as i64 * 4;
        let at_once = (ATTENTION_BUDGET_BYTES / per_input).clamp(1, items.max(1));
        let chunks: Vec<Tensor> = (0..items)
            .step_by(at_once as usize)
            .map(|first| {
                let count = at_once.min(items - first);
                let bias = match padding {
                    Some(padding) => &positions + padding.narrow(0, first, count),
                    None => positions.shallow_clone(),
                };
                self.encode_with_bias(&input_ids.narrow(0, first, count), &bias)
            })
            .collect();
        Tensor::cat(&chunks, 0)
    }

    fn decoder_layers(&self) -> usize {
        self.decoder.len()
    }

    fn step(&self, tokens: &[i64], state: &mut DecoderState) -> Tensor {
        let ids = Tensor::from_slice(tokens).to_device(self.device).unsqueeze(1);
        let mut x = self.shared.forward(&ids);
        // Relative positions: every row's newest token is the caches' last
        // column (rows that joined later are padded on the left), so one
        // bias serves all rows, plus the padding's.
        let step = state.begin_step();
        let bias = self.decoder[0]
            .self_attn
            .position_bias(step.past, 1, step.past + 1, self.device);
        let bias = match &step.bias {
            Some(padding) => bias + padding,
            None => bias,
        };
        for (i, block) in self.decoder.iter().enumerate() {
            let normed = block.self_norm.forward(&x);
            let (k, v) = block.self_attn.keys_values(&normed);
            let (k, v) = state.self_attn[i].append(k, v);
            x = &x + block.self_attn.attend(&normed, &k, &v, Some(&bias));
            let (cross, cross_norm) = block.cross.as_ref().expect("decoder blocks attend to the encoder");
            let (k, v) = state.cross_attn[i].get_or_insert_with(|| cross.memory_keys_values(&state.memory));
            x = &x + cross.attend_inputs(&cross_norm.forward(&x), k, v, state.memory_padding.as_ref());
            x = block.feed_forward(x);
        }
        let x = self.decoder_norm.forward(&x).squeeze_dim(1);
        match &self.lm_head {
            Some(head) => head.forward(&x),
            None => {
                let x = x * (self.d_model as f64).powf(-0.5);
                split_linear::linear(&x, self.shared.weight(), None, Layout::OutIn)
            }
        }
    }

    fn cross_keys_values(&self, state: &mut DecoderState) {
        for (block, cached) in self.decoder.iter().zip(&mut state.cross_attn) {
            let (cross, _) = block.cross.as_ref().expect("decoder blocks attend to the encoder");
            *cached = Some(cross.memory_keys_values(&state.memory));
        }
    }

    fn decoder_start_token_id(&self) -> i64 {
        self.decoder_start
    }

    fn device(&self) -> tch::Device {
        self.device
    }
}

/// `T5ForConditionalGeneration`, for summarization and translation. Its
/// positions are relative: no table to outgrow.
pub fn build(root: Path, config_file: &std::path::Path, shapes: &WeightShapes) -> crate::Result<Seq2SeqNet> {
    let cfg: Config = read_json(config_file)?;
    cfg.validate(config_file, shapes)?;
    Ok(Seq2SeqNet {
        net: Box::new(T5ForConditionalGeneration::new(root, &cfg)),
        positions: None,
    })
}

#[cfg(test)]
mod tests {
    use super::bucket;

    #[test]
    fn relative_position_buckets_follow_t5() {
        // Bidirectional, 32 buckets, max distance 128 (t5-small).
        assert_eq!(bucket(0, true, 32, 128), 0);
        assert_eq!(bucket(3, true, 32, 128), 19);
        assert_eq!(bucket(-3, true, 32, 128), 3);
        assert_eq!(bucket(-8, true, 32, 128), 8);
        assert_eq!(bucket(-200, true, 32, 128), 15);
        assert_eq!(bucket(200, true, 32, 128), 31);
        // Causal: only the past, all buckets.
        assert_eq!(bucket(5, false, 32, 128), 0);
        assert_eq!(bucket(-5, false, 32, 128), 5);
        assert_eq!(bucket(-1000, false, 32, 128), 31);
    }
}
