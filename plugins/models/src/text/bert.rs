//! BERT (Devlin et al.): embeddings, a stack of post-norm transformer
//! encoder layers, the pooler, and task heads. Weight names follow
//! transformers' `modeling_bert.py`.
//!
//! RoBERTa is the same network with position ids counted from the padding
//! index (see `roberta.rs`), so it is built from this file's modules.

use serde::Deserialize;
use tch::{nn::Path, Tensor};

use crate::core::checks::{ConfigCheck, MAX_TABLE, MAX_WIDTH};
use crate::core::config::read_json;
use crate::core::layers::{
    attention, merge_heads, padding_bias, Activation, Embedding, FusedLinear, LayerNorm, Linear, Variables,
};
use crate::text::encoder::{with_head, Encoder, EncoderNet, EncoderSpec, HiddenStates, Projection};
use crate::text::tokenizer::EncodedBatch;
use crate::Result;

fn default_vocab_size() -> i64 {
    30522
}
fn default_hidden_size() -> i64 {
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
fn default_positions() -> i64 {
    512
}
fn default_type_vocab() -> i64 {
    2
}
fn default_eps() -> f64 {
    1e-12
}

/// `BertConfig`, with transformers' defaults.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    #[serde(default = "default_vocab_size")]
    pub vocab_size: i64,
    #[serde(default = "default_hidden_size")]
    pub hidden_size: i64,
    #[serde(default = "default_layers")]
    pub num_hidden_layers: i64,
    #[serde(default = "default_heads")]
    pub num_attention_heads: i64,
    #[serde(default = "default_intermediate")]
    pub intermediate_size: i64,
    #[serde(default)]
    pub hidden_act: Activation,
    #[serde(default = "default_positions")]
    pub max_position_embeddings: i64,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: i64,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub pad_token_id: Option<i64>,
    #[serde(default)]
    pub position_embedding_type: Option<String>,
}

impl Config {
    /// Every size within its bound and equal to the checkpoint's
    /// (`core::checks`), before anything is built from them.
    pub fn validate(&self, file: &std::path::Path, shapes: &crate::core::weights::WeightShapes) -> Result<()> {
        let c = ConfigCheck::new(file, shapes);
        let words = "embeddings.word_embeddings.weight";
        c.matches("vocab_size", self.vocab_size, MAX_TABLE, words, 0)?;
        c.matches("hidden_size", self.hidden_size, MAX_WIDTH, words, 1)?;
        let positions = "embeddings.position_embeddings.weight";
        c.matches(
            "max_position_embeddings",
            self.max_position_embeddings,
            MAX_TABLE,
            positions,
            0,
        )?;
        let types = "embeddings.token_type_embeddings.weight";
        c.matches("type_vocab_size", self.type_vocab_size, MAX_TABLE, types, 0)?;
        c.layers("num_hidden_layers", self.num_hidden_layers, "encoder.layer")?;
        c.divides(
            "num_attention_heads",
            self.num_attention_heads,
            "hidden_size",
            self.hidden_size,
        )?;
        let intermediate = "encoder.layer.0.intermediate.dense.weight";
        c.matches("intermediate_size", self.intermediate_size, MAX_WIDTH, intermediate, 0)?;
        if let Some(pad) = self.pad_token_id {
            c.token("pad_token_id", pad, self.vocab_size)?;
        }
        Ok(())
    }
}

/// How position ids are numbered.
#[derive(Debug, Clone, Copy)]
pub enum Positions {
    /// 0, 1, 2, ... (BERT).
    Absolute,
    /// padding_idx + 1, + 2, ... over non-padding tokens, padding_idx on
    /// padding (RoBERTa's `create_position_ids_from_input_ids`); token type
    /// ids are all zero, as RoBERTa's tokenizer does not return them.
    AfterPadding(i64),
}

struct Embeddings {
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    norm: LayerNorm,
    positions: Positions,
}

impl Embeddings {
    fn new(p: Path, cfg: &Config, positions: Positions) -> Self {
        let h = cfg.hidden_size;
        Embeddings {
            word: Embedding::new(&p / "word_embeddings", cfg.vocab_size, h),
            position: Embedding::new(&p / "position_embeddings", cfg.max_position_embeddings, h),
            token_type: Embedding::new(&p / "token_type_embeddings", cfg.type_vocab_size, h),
            norm: LayerNorm::new(&p / "LayerNorm", h, cfg.layer_norm_eps),
            positions,
        }
    }

    fn forward(&self, input_ids: &Tensor, token_type_ids: &Tensor) -> Tensor {
        let positions = match self.positions {
            Positions::Absolute => {
                let seq = input_ids.size()[1];
                Tensor::arange(seq, (tch::Kind::Int64, input_ids.device())).unsqueeze(0)
            }
            Positions::AfterPadding(pad) => {
                let mask = input_ids.ne(pad).to_kind(tch::Kind::Int64);
                mask.cumsum(1, tch::Kind::Int64) * &mask + pad
            }
        };
        // RoBERTa's tokenizer returns no token types: the model sees zeros.
        let token_types = match self.positions {
            Positions::Absolute => token_type_ids.shallow_clone(),
            Positions::AfterPadding(_) => token_type_ids.zeros_like(),
        };
        let x =
            self.word.forward(input_ids) + self.position.forward(&positions) + self.token_type.forward(&token_types);
        self.norm.forward(&x)
    }
}

struct SelfAttention {
    /// query, key and value.
    qkv: FusedLinear,
    output: Linear,
    norm: LayerNorm,
    heads: i64,
}

impl SelfAttention {
    fn new(p: Path, cfg: &Config) -> Self {
        let h = cfg.hidden_size;
        let s = &p / "self";
        let o = &p / "output";
        SelfAttention {
            qkv: FusedLinear::new(&[&s / "query", &s / "key", &s / "value"], h, h),
            output: Linear::new(&o / "dense", h, h),
            norm: LayerNorm::new(&o / "LayerNorm", h, cfg.layer_norm_eps),
            heads: cfg.num_attention_heads,
        }
    }

    /// Every position, or with `first_only` position 0 alone ([batch, 1,
    /// hidden]; its keys and values still cover every position).
    fn forward(&self, x: &Tensor, bias: &Tensor, first_only: bool) -> Tensor {
        let (q, k, v, x) = self.qkv.attention_inputs(x, self.heads, first_only);
        let mut out = self.output.forward(&merge_heads(&attention(&q, &k, &v, Some(bias))));
        out += &x;
        self.norm.forward(&out)
    }
}

struct Layer {
    attention: SelfAttention,
    intermediate: Linear,
    output: Linear,
    norm: LayerNorm,
    act: Activation,
}

impl Layer {
    fn new(p: Path, cfg: &Config) -> Self {
        Layer {
            attention: SelfAttention::new(&p / "attention", cfg),
            intermediate: Linear::new(&p / "intermediate" / "dense", cfg.hidden_size, cfg.intermediate_size),
            output: Linear::new(&p / "output" / "dense", cfg.intermediate_size, cfg.hidden_size),
            norm: LayerNorm::new(&p / "output" / "LayerNorm", cfg.hidden_size, cfg.layer_norm_eps),
            act: cfg.hidden_act,
        }
    }

    fn forward(&self, x: &Tensor, bias: &Tensor, first_only: bool) -> Tensor {
        let x = self.attention.forward(x, bias, first_only);
        let h = self.act.forward(&self.intermediate.forward(&x));
        let mut out = self.output.forward(&h);
        out += &x;
        self.norm.forward(&out)
    }
}

/// `BertModel`: returns the last hidden states and, when it has a pooler, the
/// pooled [CLS] vector.
pub struct BertModel {
    embeddings: Embeddings,
    layers: Vec<Layer>,
    pooler: Option<Linear>,
}

impl BertModel {
    pub fn new(p: Path, cfg: &Config, with_pooler: bool) -> Self {
        Self::with_positions(p, cfg, with_pooler, Positions::Absolute)
    }

    pub fn with_positions(p: Path, cfg: &Config, with_pooler: bool, positions: Positions) -> Self {
        let encoder = &p / "encoder" / "layer";
        BertModel {
            embeddings: Embeddings::new(&p / "embeddings", cfg, positions),
            layers: (0..cfg.num_hidden_layers)
                .map(|i| Layer::new(&encoder / i, cfg))
                .collect(),
            pooler: with_pooler.then(|| Linear::new(&p / "pooler" / "dense", cfg.hidden_size, cfg.hidden_size)),
        }
    }

    /// Hidden states [batch, seq, hidden].
    pub fn forward(&self, batch: &EncodedBatch) -> Tensor {
        self.run(batch, false)
    }

    /// The first position's hidden states [batch, 1, hidden], for heads that
    /// read only it: the last layer computes that position alone.
    pub fn forward_first(&self, batch: &EncodedBatch) -> Tensor {
        self.run(batch, true)
    }

    fn run(&self, batch: &EncodedBatch, first_only: bool) -> Tensor {
        let bias = padding_bias(&batch.attention_mask, tch::Kind::Float);
        let mut x = self.embeddings.forward(&batch.input_ids, &batch.token_type_ids);
        let last = self.layers.len().saturating_sub(1);
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(&x, &bias, first_only && i == last);
        }
        x
    }

    /// The word embedding matrix (tied to masked-LM decoders).
    pub fn word_embeddings(&self) -> &Tensor {
        self.embeddings.word.weight()
    }

    /// tanh(W h_[CLS] + b); panics if built without a pooler.
    pub fn pool(&self, hidden: &Tensor) -> Tensor {
        let pooler = self.pooler.as_ref().expect("model built with a pooler");
        pooler.forward(&hidden.select(1, 0)).tanh()
    }
}

/// `BertForSequenceClassification`: pooled output -> linear classifier.
pub struct BertForSequenceClassification {
    bert: BertModel,
    classifier: Linear,
}

impl BertForSequenceClassification {
    pub fn new(p: Path, cfg: &Config, num_labels: i64) -> Self {
        BertForSequenceClassification {
            bert: BertModel::new(&p / "bert", cfg, true),
            classifier: Linear::new(&p / "classifier", cfg.hidden_size, num_labels),
        }
    }

    /// Logits [batch, num_labels].
    pub fn forward(&self, batch: &EncodedBatch) -> Tensor {
        let hidden = self.bert.forward_first(batch);
        self.classifier.forward(&self.bert.pool(&hidden))
    }
}

/// `BertOnlyMLMHead` (`cls.predictions`): transform, then the decoder whose
/// weight is the word embedding matrix (tied, as transformers saves it).
pub struct MaskedLmHead {
    dense: Linear,
    norm: LayerNorm,
    act: Activation,
    decoder_weight: Tensor,
    bias: Tensor,
}

impl MaskedLmHead {
    pub fn new(p: Path, cfg: &Config, word_embeddings: &Tensor) -> Self {
        let t = &p / "transform";
        MaskedLmHead {
            dense: Linear::new(&t / "dense", cfg.hidden_size, cfg.hidden_size),
            norm: LayerNorm::new(&t / "LayerNorm", cfg.hidden_size, cfg.layer_norm_eps),
            act: cfg.hidden_act,
            decoder_weight: word_embeddings.shallow_clone(),
            bias: p.zeros_var("bias", &[cfg.vocab_size]),
        }
    }

    /// Vocabulary logits [batch, seq, vocab].
    pub fn forward(&self, hidden: &Tensor) -> Tensor {
        let h = self.norm.forward(&self.act.forward(&self.dense.forward(hidden)));
        h.linear(&self.decoder_weight, Some(&self.bias))
    }
}

impl HiddenStates for BertModel {
    fn hidden_states(&self, batch: &EncodedBatch) -> Tensor {
        self.forward(batch)
    }
}

impl EncoderNet for BertForSequenceClassification {
    fn forward(&self, batch: &EncodedBatch) -> Tensor {
        BertForSequenceClassification::forward(self, batch)
    }
}

impl Projection for MaskedLmHead {
    fn project(&self, hidden: &Tensor) -> Tensor {
        self.forward(hidden)
    }
}

/// BERT for an encoder task: its head at transformers' weight names.
pub fn build(spec: &EncoderSpec) -> Result<Encoder> {
    let cfg: Config = read_json(spec.config_file)?;
    cfg.validate(spec.config_file, spec.shapes)?;
    let root = &spec.root;
    let net = with_head(
        spec,
        cfg.hidden_size,
        || BertModel::new(spec.base("bert"), &cfg, false),
        || Box::new(BertForSequenceClassification::new(root.clone(), &cfg, spec.num_labels)),
        |encoder| MaskedLmHead::new(root / "cls" / "predictions", &cfg, encoder.word_embeddings()),
    );
    Ok(Encoder {
        net,
        positions: cfg.max_position_embeddings,
        pad_token_id: cfg.pad_token_id.unwrap_or(0),
        reads_token: None,
    })
}
