//! Loading a text encoder from config.json, like transformers'
//! `AutoModelFor*` classes: one [`TextModel`] type for the encoder families
//! (BERT, DistilBERT, RoBERTa, BART) with the head a task needs.

use std::path::{Path, PathBuf};

use tch::{nn::VarStore, Device, Tensor};

use crate::auto::Family;
use crate::core::config::{config_path, read_json, CommonConfig};
use crate::core::layers::Linear;
use crate::core::weights::{var_store_bytes, Checkpoint};
use crate::text::bert::{self, BertModel};
use crate::text::distilbert::{self, DistilBertModel};
use crate::text::tokenizer::{EncodedBatch, TextTokenizer};
use crate::text::{bart, roberta};
use crate::{ModelError, Result};

/// What a task needs on top of the encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head {
    /// `*ForSequenceClassification`: logits [batch, labels].
    SequenceClassification,
    /// `*ForTokenClassification`: logits [batch, seq, labels].
    TokenClassification,
    /// `*ForQuestionAnswering`: logits [batch, seq, 2] (start, end).
    QuestionAnswering,
    /// `*ForMaskedLM`: logits [batch, seq, vocab].
    MaskedLm,
    /// The base model: hidden states [batch, seq, hidden].
    Features,
}

impl Head {
    /// The task whose architectures provide this head (zero-shot
    /// classification's are text classification's).
    fn task(self) -> &'static str {
        match self {
            Head::SequenceClassification => "text-classification",
            Head::TokenClassification => "token-classification",
            Head::QuestionAnswering => "question-answering",
            Head::MaskedLm => "fill-mask",
            Head::Features => "feature-extraction",
        }
    }
}

/// Where the base model's weights sit inside a task checkpoint.
fn base_prefix(family: Family) -> &'static str {
    match family {
        Family::DistilBert => "distilbert",
        Family::Roberta => "roberta",
        Family::Bart => "model",
        _ => "bert",
    }
}

enum Encoder {
    Bert(BertModel),
    DistilBert(DistilBertModel),
}

impl Encoder {
    fn forward(&self, batch: &EncodedBatch) -> Tensor {
        match self {
            Encoder::Bert(m) => m.forward(batch),
            Encoder::DistilBert(m) => m.forward(batch),
        }
    }
}

enum Net {
    BertClassifier(bert::BertForSequenceClassification),
    DistilBertClassifier(distilbert::DistilBertForSequenceClassification),
    RobertaClassifier(BertModel, roberta::ClassificationHead),
    BartClassifier(bart::BartForSequenceClassification),
    /// Token classification and question answering: a linear layer per token.
    PerToken(Encoder, Linear),
    BertMaskedLm(BertModel, bert::MaskedLmHead),
    DistilBertMaskedLm(DistilBertModel, distilbert::MaskedLmHead),
    RobertaMaskedLm(BertModel, roberta::MaskedLmHead),
    Features(Encoder),
}

/// A loaded text model with its tokenizer and labels.
pub struct TextModel {
    net: Net,
    _vs: VarStore,
    pub tokenizer: TextTokenizer,
    pub config: CommonConfig,
    pub labels: Vec<String>,
    pub architecture: String,
    /// The head it was loaded with.
    pub head: Head,
    pub device: Device,
    pub memory_bytes: u64,
    pub dir: PathBuf,
}

impl TextModel {
    /// The head's output for an encoded batch (see [`Head`] for shapes).
    pub fn forward(&self, batch: &EncodedBatch) -> Tensor {
        let _guard = tch::no_grad_guard();
        match &self.net {
            Net::BertClassifier(m) => m.forward(batch),
            Net::DistilBertClassifier(m) => m.forward(batch),
            Net::RobertaClassifier(enc, head) => head.forward(&enc.forward_first(batch)),
            Net::BartClassifier(m) => m.forward(batch),
            Net::PerToken(enc, head) => head.forward(&enc.forward(batch)),
            Net::BertMaskedLm(enc, head) => head.forward(&enc.forward(batch)),
            Net::DistilBertMaskedLm(enc, head) => head.forward(&enc.forward(batch)),
            Net::RobertaMaskedLm(enc, head) => head.forward(&enc.forward(batch)),
            Net::Features(enc) => enc.forward(batch),
        }
    }
}

impl TextModel {
    /// Masked-LM logits [masks, vocab] at the positions where `input_ids`
    /// equals `mask_id`, in row-major order (batch, then position). Only
    /// those positions go through the vocabulary projection.
    pub fn masked_lm_logits(&self, batch: &EncodedBatch, mask_id: i64) -> Result<Tensor> {
        let _guard = tch::no_grad_guard();
        let select = |hidden: Tensor| {
            let (_, _, h) = hidden.size3().expect("3-d hidden states");
            let mask = batch.input_ids.eq(mask_id).unsqueeze(-1);
            hidden.masked_select(&mask).view([-1, h])
        };
        Ok(match &self.net {
            Net::BertMaskedLm(enc, head) => head.forward(&select(enc.forward(batch))),
            Net::DistilBertMaskedLm(enc, head) => head.forward(&select(enc.forward(batch))),
            Net::RobertaMaskedLm(enc, head) => head.forward(&select(enc.forward(batch))),
            _ => {
                return Err(ModelError::Unsupported(format!(
                    "{} has no masked-LM head",
                    self.architecture
                )))
            }
        })
    }
}

/// Loads the model in `dir` with `head` on `device`.
pub fn load_text_model(dir: &Path, device: Device, head: Head) -> Result<TextModel> {
    let config_file = config_path(dir)?;
    let common = CommonConfig::from_dir(dir)?;
    let architecture = common.architecture(&config_file)?;
    let family = crate::auto::find(&architecture, head.task(), "here")?.family;
    let labels = common.labels(if family == Family::Bart { 3 } else { 2 });
    let num_labels = labels.len() as i64;
    // A base-model checkpoint ("BertModel") has no prefix; task checkpoints do.
    let base_is_root = architecture.ends_with("Model");
    let mut vs = VarStore::new(device);
    let root = vs.root();
    let base = if base_is_root {
        root.clone()
    } else {
        &root / base_prefix(family)
    };

    let (net, positions, pad_id) = match family {
        Family::Bert | Family::Roberta => {
            let cfg: bert::Config = read_json(&config_file)?;
            let is_roberta = family == Family::Roberta;
            let pad = cfg.pad_token_id.unwrap_or(if is_roberta { 1 } else { 0 });
            let encoder = |with_pooler: bool| {
                if is_roberta {
                    roberta::model(base.clone(), &cfg, with_pooler)
                } else {
                    BertModel::new(base.clone(), &cfg, with_pooler)
                }
            };
            let net = match (head, is_roberta) {
                (Head::SequenceClassification, false) => {
                    Net::BertClassifier(bert::BertForSequenceClassification::new(root.clone(), &cfg, num_labels))
                }
                (Head::SequenceClassification, true) => Net::RobertaClassifier(
                    encoder(false),
                    roberta::ClassificationHead::new(&root / "classifier", &cfg, num_labels),
                ),
                (Head::TokenClassification, _) => Net::PerToken(
                    Encoder::Bert(encoder(false)),
                    Linear::new(&root / "classifier", cfg.hidden_size, num_labels),
                ),
                (Head::QuestionAnswering, _) => Net::PerToken(
                    Encoder::Bert(encoder(false)),
                    Linear::new(&root / "qa_outputs", cfg.hidden_size, 2),
                ),
                (Head::MaskedLm, false) => {
                    let enc = encoder(false);
                    let head = bert::MaskedLmHead::new(&root / "cls" / "predictions", &cfg, enc.word_embeddings());
                    Net::BertMaskedLm(enc, head)
                }
                (Head::MaskedLm, true) => {
                    let enc = encoder(false);
                    let head = roberta::MaskedLmHead::new(&root / "lm_head", &cfg, enc.word_embeddings());
                    Net::RobertaMaskedLm(enc, head)
                }
                (Head::Features, _) => Net::Features(Encoder::Bert(encoder(false))),
            };
            // RoBERTa numbers positions from pad + 1, so two fewer fit.
            let positions = if is_roberta {
                cfg.max_position_embeddings - pad - 1
            } else {
                cfg.max_position_embeddings
            };
            (net, positions, pad)
        }
        Family::DistilBert => {
            let cfg: distilbert::Config = read_json(&config_file)?;
            let net = match head {
                Head::SequenceClassification => Net::DistilBertClassifier(
                    distilbert::DistilBertForSequenceClassification::new(root.clone(), &cfg, num_labels),
                ),
                Head::TokenClassification => Net::PerToken(
                    Encoder::DistilBert(DistilBertModel::new(base.clone(), &cfg)),
                    Linear::new(&root / "classifier", cfg.dim, num_labels),
                ),
                Head::QuestionAnswering => Net::PerToken(
                    Encoder::DistilBert(DistilBertModel::new(base.clone(), &cfg)),
                    Linear::new(&root / "qa_outputs", cfg.dim, 2),
                ),
                Head::MaskedLm => {
                    let enc = DistilBertModel::new(base.clone(), &cfg);
                    let head = distilbert::MaskedLmHead::new(root.clone(), &cfg, enc.word_embeddings());
                    Net::DistilBertMaskedLm(enc, head)
                }
                Head::Features => Net::Features(Encoder::DistilBert(DistilBertModel::new(base.clone(), &cfg))),
            };
            (net, cfg.max_position_embeddings, cfg.pad_token_id.unwrap_or(0))
        }
        Family::Bart => {
            let cfg: bart::Config = read_json(&config_file)?;
            let net = Net::BartClassifier(bart::BartForSequenceClassification::new(root.clone(), &cfg, num_labels));
            (net, cfg.max_position_embeddings, cfg.pad_token_id)
        }
        other => {
            return Err(ModelError::Unsupported(format!(
                "{architecture} ({other:?}) has no encoder head"
            )))
        }
    };
    Checkpoint::open(dir)?.load_into(&mut vs)?;
    let tokenizer = TextTokenizer::from_dir(dir, positions.max(1) as usize, pad_id)?;
    Ok(TextModel {
        net,
        memory_bytes: var_store_bytes(&vs),
        _vs: vs,
        tokenizer,
        config: common,
        labels,
        architecture,
        head,
        device,
        dir: dir.to_path_buf(),
    })
}
