//! Picking and loading an architecture from config.json, like transformers'
//! `AutoModelFor*` classes.

use std::path::Path;

use tch::{nn::VarStore, Device, Tensor};

use crate::config::{config_path, read_json, CommonConfig};
use crate::tokenizer::{EncodedBatch, TextTokenizer};
use crate::weights::{var_store_bytes, Checkpoint};
use crate::{bert, distilbert, ModelError, Result};

/// Architectures `load_sequence_classifier` accepts.
pub const SEQUENCE_CLASSIFICATION_ARCHITECTURES: &[&str] = &[
    "BertForSequenceClassification",
    "DistilBertForSequenceClassification",
];

enum Classifier {
    Bert(bert::BertForSequenceClassification),
    DistilBert(distilbert::DistilBertForSequenceClassification),
}

/// A loaded `*ForSequenceClassification` model with its tokenizer and labels.
pub struct SequenceClassifier {
    model: Classifier,
    _vs: VarStore,
    pub tokenizer: TextTokenizer,
    pub config: CommonConfig,
    pub labels: Vec<String>,
    pub device: Device,
    pub memory_bytes: u64,
}

impl SequenceClassifier {
    /// Logits [batch, num_labels] for an encoded batch.
    pub fn logits(&self, batch: &EncodedBatch) -> Tensor {
        let _guard = tch::no_grad_guard();
        match &self.model {
            Classifier::Bert(m) => m.forward(batch),
            Classifier::DistilBert(m) => m.forward(batch),
        }
    }
}

/// The architecture named in config.json (its first `architectures` entry).
pub fn architecture_of(dir: &Path) -> Result<String> {
    let common = CommonConfig::from_dir(dir)?;
    common.architectures.first().cloned().ok_or_else(|| {
        ModelError::bad_file(
            dir.join("config.json"),
            "no `architectures` entry names the model class",
        )
    })
}

pub fn load_sequence_classifier(dir: &Path, device: Device) -> Result<SequenceClassifier> {
    let config_file = config_path(dir)?;
    let common = CommonConfig::from_dir(dir)?;
    let architecture = architecture_of(dir)?;
    let labels = common.labels(2);
    let num_labels = labels.len() as i64;
    let mut vs = VarStore::new(device);
    let (model, positions, pad_id) = match architecture.as_str() {
        "BertForSequenceClassification" => {
            let cfg: bert::Config = read_json(&config_file)?;
            let m = bert::BertForSequenceClassification::new(vs.root(), &cfg, num_labels);
            (
                Classifier::Bert(m),
                cfg.max_position_embeddings,
                cfg.pad_token_id,
            )
        }
        "DistilBertForSequenceClassification" => {
            let cfg: distilbert::Config = read_json(&config_file)?;
            let m =
                distilbert::DistilBertForSequenceClassification::new(vs.root(), &cfg, num_labels);
            (
                Classifier::DistilBert(m),
                cfg.max_position_embeddings,
                cfg.pad_token_id,
            )
        }
        other => {
            return Err(ModelError::Unsupported(format!(
                "architecture {other} for sequence classification (supported: {})",
                SEQUENCE_CLASSIFICATION_ARCHITECTURES.join(", ")
            )))
        }
    };
    Checkpoint::open(dir)?.load_into(&mut vs, &[])?;
    let tokenizer = TextTokenizer::from_dir(dir, positions as usize, pad_id.unwrap_or(0))?;
    Ok(SequenceClassifier {
        model,
        memory_bytes: var_store_bytes(&vs),
        _vs: vs,
        tokenizer,
        config: common,
        labels,
        device,
    })
}
