//! RoBERTa (Liu et al.): BERT's network with byte-level BPE, position ids
//! counted from the padding index, and its own task heads. Weight names
//! follow transformers' `modeling_roberta.py`.

use tch::{nn::Path, Tensor};

use crate::core::checks::ConfigCheck;
use crate::core::config::read_json;
use crate::core::layers::{Activation, LayerNorm, Linear, Variables};
use crate::text::bert::{self, BertModel, Positions};
use crate::text::encoder::{with_head, Encoder, EncoderNet, EncoderSpec, Projection};
use crate::text::tokenizer::EncodedBatch;
use crate::Result;

/// RobertaConfig has BertConfig's fields (pad_token_id 1 by default).
pub type Config = bert::Config;

/// `RobertaModel`.
pub fn model(p: Path, cfg: &Config, with_pooler: bool) -> BertModel {
    let pad = cfg.pad_token_id.unwrap_or(1);
    BertModel::with_positions(p, cfg, with_pooler, Positions::AfterPadding(pad))
}

/// `RobertaClassificationHead` (`classifier`): dense, tanh, out_proj on <s>.
pub struct ClassificationHead {
    dense: Linear,
    out_proj: Linear,
}

impl ClassificationHead {
    pub fn new(p: Path, cfg: &Config, num_labels: i64) -> Self {
        ClassificationHead {
            dense: Linear::new(&p / "dense", cfg.hidden_size, cfg.hidden_size),
            out_proj: Linear::new(&p / "out_proj", cfg.hidden_size, num_labels),
        }
    }

    /// Logits [batch, num_labels] from hidden states [batch, seq, hidden].
    pub fn forward(&self, hidden: &Tensor) -> Tensor {
        self.out_proj.forward(&self.dense.forward(&hidden.select(1, 0)).tanh())
    }
}

/// `RobertaLMHead` (`lm_head`): dense, GELU, layer norm, tied decoder + bias.
pub struct MaskedLmHead {
    dense: Linear,
    norm: LayerNorm,
    decoder_weight: Tensor,
    bias: Tensor,
}

impl MaskedLmHead {
    pub fn new(p: Path, cfg: &Config, word_embeddings: &Tensor) -> Self {
        MaskedLmHead {
            dense: Linear::new(&p / "dense", cfg.hidden_size, cfg.hidden_size),
            norm: LayerNorm::new(&p / "layer_norm", cfg.hidden_size, cfg.layer_norm_eps),
            decoder_weight: word_embeddings.shallow_clone(),
            bias: p.zeros_var("bias", &[cfg.vocab_size]),
        }
    }

    pub fn forward(&self, hidden: &Tensor) -> Tensor {
        let h = self
            .norm
            .forward(&Activation::Gelu.forward(&self.dense.forward(hidden)));
        h.linear(&self.decoder_weight, Some(&self.bias))
    }
}

/// `RobertaForSequenceClassification`: the classification head on <s>, whose
/// hidden state alone the last layer computes.
pub struct RobertaForSequenceClassification(BertModel, ClassificationHead);

impl EncoderNet for RobertaForSequenceClassification {
    fn forward(&self, batch: &EncodedBatch) -> Tensor {
        self.1.forward(&self.0.forward_first(batch))
    }
}

impl Projection for MaskedLmHead {
    fn project(&self, hidden: &Tensor) -> Tensor {
        self.forward(hidden)
    }
}

/// RoBERTa for an encoder task: its head at transformers' weight names.
pub fn build(spec: &EncoderSpec) -> Result<Encoder> {
    let cfg: Config = read_json(spec.config_file)?;
    cfg.validate(spec.config_file, spec.shapes)?;
    let root = &spec.root;
    let pad = cfg.pad_token_id.unwrap_or(1);
    // Positions are numbered from pad + 1: at least one must fit the table.
    ConfigCheck::new(spec.config_file, spec.shapes).at_most("pad_token_id", pad, cfg.max_position_embeddings - 2)?;
    let base = || model(spec.base("roberta"), &cfg, false);
    let net = with_head(
        spec,
        cfg.hidden_size,
        base,
        || {
            Box::new(RobertaForSequenceClassification(
                base(),
                ClassificationHead::new(root / "classifier", &cfg, spec.num_labels),
            ))
        },
        |encoder| MaskedLmHead::new(root / "lm_head", &cfg, encoder.word_embeddings()),
    );
    Ok(Encoder {
        net,
        // Positions are numbered from pad + 1, so two fewer fit.
        positions: cfg.max_position_embeddings - pad - 1,
        pad_token_id: pad,
        reads_token: None,
    })
}
