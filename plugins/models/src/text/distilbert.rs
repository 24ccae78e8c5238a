//! DistilBERT (Sanh et al.): BERT without token types and pooler, with
//! `q_lin`/`k_lin`/`v_lin` attention and a two-layer classification head.
//! Weight names follow transformers' `modeling_distilbert.py`.

use serde::Deserialize;
use tch::{nn::Path, Tensor};

use crate::core::checks::{ConfigCheck, MAX_TABLE, MAX_WIDTH};
use crate::core::config::read_json;
use crate::core::layers::{
    attention, merge_heads, padding_bias, Activation, Embedding, FusedLinear, LayerNorm, Linear, Variables,
};
use crate::core::weights::WeightShapes;
use crate::text::encoder::{with_head, Encoder, EncoderNet, EncoderSpec, HiddenStates, Projection};
use crate::text::tokenizer::EncodedBatch;
use crate::Result;

/// DistilBERT's LayerNorm epsilon is fixed in transformers, not configurable.
const LAYER_NORM_EPS: f64 = 1e-12;

fn default_vocab_size() -> i64 {
    30522
}
fn default_dim() -> i64 {
    768
}
fn default_layers() -> i64 {
    6
}
fn default_heads() -> i64 {
    12
}
fn default_hidden_dim() -> i64 {
    3072
}
fn default_positions() -> i64 {
    512
}

/// `DistilBertConfig`, with transformers' defaults.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    #[serde(default = "default_vocab_size")]
    pub vocab_size: i64,
    #[serde(default = "default_dim")]
    pub dim: i64,
    #[serde(default = "default_layers")]
    pub n_layers: i64,
    #[serde(default = "default_heads")]
    pub n_heads: i64,
    #[serde(default = "default_hidden_dim")]
    pub hidden_dim: i64,
    #[serde(default)]
    pub activation: Activation,
    #[serde(default = "default_positions")]
    pub max_position_embeddings: i64,
    #[serde(default)]
    pub pad_token_id: Option<i64>,
}

impl Config {
    /// Every size within its bound and equal to the checkpoint's
    /// (`core::checks`), before anything is built from them.
    pub fn validate(&self, file: &std::path::Path, shapes: &WeightShapes) -> Result<()> {
        let c = ConfigCheck::new(file, shapes);
        let words = "embeddings.word_embeddings.weight";
        c.matches("vocab_size", self.vocab_size, MAX_TABLE, words, 0)?;
        c.matches("dim", self.dim, MAX_WIDTH, words, 1)?;
        let positions = "embeddings.position_embeddings.weight";
        c.matches(
            "max_position_embeddings",
            self.max_position_embeddings,
            MAX_TABLE,
            positions,
            0,
        )?;
        c.layers("n_layers", self.n_layers, "transformer.layer")?;
        c.divides("n_heads", self.n_heads, "dim", self.dim)?;
        c.matches(
            "hidden_dim",
            self.hidden_dim,
            MAX_WIDTH,
            "transformer.layer.0.ffn.lin1.weight",
            0,
        )?;
        if let Some(pad) = self.pad_token_id {
            c.token("pad_token_id", pad, self.vocab_size)?;
        }
        Ok(())
    }
}

struct Embeddings {
    word: Embedding,
    position: Embedding,
    norm: LayerNorm,
}

impl Embeddings {
    fn new(p: Path, cfg: &Config) -> Self {
        Embeddings {
            word: Embedding::new(&p / "word_embeddings", cfg.vocab_size, cfg.dim),
            position: Embedding::new(&p / "position_embeddings", cfg.max_position_embeddings, cfg.dim),
            norm: LayerNorm::new(&p / "LayerNorm", cfg.dim, LAYER_NORM_EPS),
        }
    }

    fn forward(&self, input_ids: &Tensor) -> Tensor {
        let seq = input_ids.size()[1];
        let positions = Tensor::arange(seq, (tch::Kind::Int64, input_ids.device())).unsqueeze(0);
        self.norm
            .forward(&(self.word.forward(input_ids) + self.position.forward(&positions)))
    }
}

struct Block {
    /// q_lin, k_lin and v_lin.
    qkv: FusedLinear,
    out: Linear,
    sa_norm: LayerNorm,
    lin1: Linear,
    lin2: Linear,
    output_norm: LayerNorm,
    heads: i64,
    act: Activation,
}

impl Block {
    fn new(p: Path, cfg: &Config) -> Self {
        let a = &p / "attention";
        let d = cfg.dim;
        Block {
            qkv: FusedLinear::new(&[&a / "q_lin", &a / "k_lin", &a / "v_lin"], d, d),
            out: Linear::new(&a / "out_lin", d, d),
            sa_norm: LayerNorm::new(&p / "sa_layer_norm", d, LAYER_NORM_EPS),
            lin1: Linear::new(&p / "ffn" / "lin1", d, cfg.hidden_dim),
            lin2: Linear::new(&p / "ffn" / "lin2", cfg.hidden_dim, d),
            output_norm: LayerNorm::new(&p / "output_layer_norm", d, LAYER_NORM_EPS),
            heads: cfg.n_heads,
            act: cfg.activation,
        }
    }

    /// The block's output for every position, or with `first_only` for
    /// position 0 alone ([batch, 1, dim]; keys and values still see all).
    fn forward(&self, x: &Tensor, bias: &Tensor, first_only: bool) -> Tensor {
        let (q, k, v, x) = self.qkv.attention_inputs(x, self.heads, first_only);
        let mut attended = self.out.forward(&merge_heads(&attention(&q, &k, &v, Some(bias))));
        attended += &x;
        let x = self.sa_norm.forward(&attended);
        let mut h = self.lin2.forward(&self.act.forward(&self.lin1.forward(&x)));
        h += &x;
        self.output_norm.forward(&h)
    }
}

/// `DistilBertModel`: the last hidden states.
pub struct DistilBertModel {
    embeddings: Embeddings,
    layers: Vec<Block>,
}

impl DistilBertModel {
    pub fn new(p: Path, cfg: &Config) -> Self {
        let layers = &p / "transformer" / "layer";
        DistilBertModel {
            embeddings: Embeddings::new(&p / "embeddings", cfg),
            layers: (0..cfg.n_layers).map(|i| Block::new(&layers / i, cfg)).collect(),
        }
    }

    /// Hidden states [batch, seq, dim].
    pub fn forward(&self, batch: &EncodedBatch) -> Tensor {
        self.run(batch, false)
    }

    /// The first position's hidden states [batch, dim], for heads that read
    /// only it: the last layer computes that position alone.
    pub fn forward_first(&self, batch: &EncodedBatch) -> Tensor {
        self.run(batch, true).select(1, 0)
    }

    fn run(&self, batch: &EncodedBatch, first_only: bool) -> Tensor {
        let bias = padding_bias(&batch.attention_mask, tch::Kind::Float);
        let mut x = self.embeddings.forward(&batch.input_ids);
        let last = self.layers.len().saturating_sub(1);
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(&x, &bias, first_only && i == last);
        }
        x
    }
}

impl DistilBertModel {
    /// The word embedding matrix (tied to the masked-LM projector).
    pub fn word_embeddings(&self) -> &Tensor {
        self.embeddings.word.weight()
    }
}

/// The masked-LM head of `DistilBertForMaskedLM`: vocab_transform,
/// activation, vocab_layer_norm, vocab_projector (tied weight, own bias).
pub struct MaskedLmHead {
    transform: Linear,
    norm: LayerNorm,
    act: Activation,
    projector_weight: Tensor,
    projector_bias: Tensor,
}

impl MaskedLmHead {
    /// `p` is the model's root (the head's weights are not under a prefix).
    pub fn new(p: Path, cfg: &Config, word_embeddings: &Tensor) -> Self {
        MaskedLmHead {
            transform: Linear::new(&p / "vocab_transform", cfg.dim, cfg.dim),
            norm: LayerNorm::new(&p / "vocab_layer_norm", cfg.dim, LAYER_NORM_EPS),
            act: cfg.activation,
            projector_weight: word_embeddings.shallow_clone(),
            projector_bias: (&p / "vocab_projector").zeros_var("bias", &[cfg.vocab_size]),
        }
    }

    pub fn forward(&self, hidden: &Tensor) -> Tensor {
        let h = self.norm.forward(&self.act.forward(&self.transform.forward(hidden)));
        h.linear(&self.projector_weight, Some(&self.projector_bias))
    }
}

/// `DistilBertForSequenceClassification`: h_[CLS] -> pre_classifier -> ReLU -> classifier.
pub struct DistilBertForSequenceClassification {
    distilbert: DistilBertModel,
    pre_classifier: Linear,
    classifier: Linear,
}

impl DistilBertForSequenceClassification {
    pub fn new(p: Path, cfg: &Config, num_labels: i64) -> Self {
        DistilBertForSequenceClassification {
            distilbert: DistilBertModel::new(&p / "distilbert", cfg),
            pre_classifier: Linear::new(&p / "pre_classifier", cfg.dim, cfg.dim),
            classifier: Linear::new(&p / "classifier", cfg.dim, num_labels),
        }
    }

    /// Logits [batch, num_labels].
    pub fn forward(&self, batch: &EncodedBatch) -> Tensor {
        let hidden = self.distilbert.forward_first(batch);
        self.classifier.forward(&self.pre_classifier.forward(&hidden).relu())
    }
}

impl HiddenStates for DistilBertModel {
    fn hidden_states(&self, batch: &EncodedBatch) -> Tensor {
        self.forward(batch)
    }
}

impl EncoderNet for DistilBertForSequenceClassification {
    fn forward(&self, batch: &EncodedBatch) -> Tensor {
        DistilBertForSequenceClassification::forward(self, batch)
    }
}

impl Projection for MaskedLmHead {
    fn project(&self, hidden: &Tensor) -> Tensor {
        self.forward(hidden)
    }
}

/// DistilBERT for an encoder task: its head at transformers' weight names.
pub fn build(spec: &EncoderSpec) -> Result<Encoder> {
    let cfg: Config = read_json(spec.config_file)?;
    cfg.validate(spec.config_file, spec.shapes)?;
    let root = &spec.root;
    let net = with_head(
        spec,
        cfg.dim,
        || DistilBertModel::new(spec.base("distilbert"), &cfg),
        || {
            Box::new(DistilBertForSequenceClassification::new(
                root.clone(),
                &cfg,
                spec.num_labels,
            ))
        },
        |encoder| MaskedLmHead::new(root.clone(), &cfg, encoder.word_embeddings()),
    );
    Ok(Encoder {
        net,
        positions: cfg.max_position_embeddings,
        pad_token_id: cfg.pad_token_id.unwrap_or(0),
        reads_token: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::weights::WeightShapes;
    use std::path::Path;

    fn distilbert_shapes() -> WeightShapes {
        WeightShapes::from_shapes([
            ("distilbert.embeddings.word_embeddings.weight", vec![100, 16]),
            ("distilbert.embeddings.position_embeddings.weight", vec![64, 16]),
            ("distilbert.transformer.layer.0.ffn.lin1.weight", vec![32, 16]),
            ("distilbert.transformer.layer.1.ffn.lin1.weight", vec![32, 16]),
        ])
    }

    fn config(edit: serde_json::Value) -> Config {
        crate::core::checks::edited(
            serde_json::json!({
                "vocab_size": 100, "dim": 16, "n_layers": 2, "n_heads": 4, "hidden_dim": 32,
                "max_position_embeddings": 64
            }),
            edit,
        )
    }

    fn refusal(edit: serde_json::Value) -> String {
        let err = config(edit)
            .validate(Path::new("config.json"), &distilbert_shapes())
            .unwrap_err();
        err.to_string()
    }

    #[test]
    fn a_config_that_matches_its_checkpoint_passes_and_others_are_refused_naming_the_field() {
        config(serde_json::json!({}))
            .validate(Path::new("config.json"), &distilbert_shapes())
            .unwrap();
        let err = refusal(serde_json::json!({"n_layers": 1_000_000_000}));
        assert!(err.contains("n_layers = 1000000000"), "{err}");
        let err = refusal(serde_json::json!({"n_layers": 3}));
        assert!(
            err.contains("n_layers = 3, but the checkpoint has 2 layers (transformer.layer.0 .. 1)"),
            "{err}"
        );
        assert!(refusal(serde_json::json!({"n_heads": 0})).contains("n_heads = 0"));
        assert!(refusal(serde_json::json!({"n_heads": 5})).contains("must divide dim = 16"));
        assert!(refusal(serde_json::json!({"dim": 1_000_000_000})).contains("dim = 1000000000"));
        assert!(refusal(serde_json::json!({"dim": 32})).contains("word_embeddings.weight has shape [100, 16]"));
        assert!(refusal(serde_json::json!({"hidden_dim": 64})).contains("hidden_dim = 64"));
        assert!(refusal(serde_json::json!({"vocab_size": -1})).contains("vocab_size = -1"));
        assert!(refusal(serde_json::json!({"pad_token_id": 100})).contains("pad_token_id = 100"));
    }
}
