//! Loading a text encoder from config.json, like transformers'
//! `AutoModelFor*` classes: one [`TextModel`] type for the encoder families
//! (BERT, DistilBERT, RoBERTa, BART) with the head a task needs.

use std::path::{Path, PathBuf};

use tch::{nn::VarStore, Device, Kind, Tensor};

use crate::auto::Build;
use crate::core::checks::{build_fallibly, check_labels};
use crate::core::config::{config_path, CommonConfig};
use crate::core::int8::{build_quantized, Quantization};
use crate::core::precision::Precision;
use crate::core::weights::{Checkpoint, LoadedWeights};
pub use crate::text::encoder::Head;
use crate::text::encoder::{EncoderNet, EncoderSpec};
use crate::text::tokenizer::{EncodedBatch, TextTokenizer};
use crate::{ModelError, Result};

/// A loaded text model with its tokenizer and labels.
pub struct TextModel {
    net: Box<dyn EncoderNet>,
    _vs: VarStore,
    /// Its tensors, shared with other models loaded from the same files.
    _weights: LoadedWeights,
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
    /// The head's output for an encoded batch (see [`Head`] for shapes),
    /// in float32 whatever the model computes in.
    pub fn forward(&self, batch: &EncodedBatch) -> Tensor {
        let _guard = tch::no_grad_guard();
        self.net.forward(batch).to_kind(Kind::Float)
    }

    /// Masked-LM logits [masks, vocab] at the positions where `input_ids`
    /// equals `mask_id`, in row-major order (batch, then position). Only
    /// those positions go through the vocabulary projection.
    pub fn masked_lm_logits(&self, batch: &EncodedBatch, mask_id: i64) -> Result<Tensor> {
        let _guard = tch::no_grad_guard();
        self.net
            .masked_lm_logits(batch, mask_id)
            .map(|logits| logits.to_kind(Kind::Float))
            .ok_or_else(|| ModelError::Unsupported(format!("{} has no masked-LM head", self.architecture)))
    }
}

/// Loads the model in `dir` with `head` on `device` in `precision`, its
/// linear layers quantized as `quantization` asks.
pub fn load_text_model(
    dir: &Path,
    device: Device,
    head: Head,
    quantization: Quantization,
    precision: Precision,
) -> Result<TextModel> {
    let config_file = config_path(dir)?;
    let common = CommonConfig::from_dir(dir)?;
    let architecture = common.architecture(&config_file)?;
    let Build::Encoder { build, default_labels } = crate::auto::find(&architecture, head.task(), "here")?.build else {
        return Err(ModelError::Unsupported(format!("{architecture} is not a text encoder")));
    };
    let labels = common.labels(default_labels);
    check_labels(&config_file, labels.len())?;
    let checkpoint = Checkpoint::open(dir)?;
    let mut vs = VarStore::new(device);
    vs.set_kind(precision.kind());
    quantization.check(device, vs.root().kind())?;
    let (encoder, int8) = build_quantized(quantization, || {
        build_fallibly(|| {
            build(&EncoderSpec {
                root: vs.root(),
                config_file: &config_file,
                shapes: checkpoint.shapes(),
                head,
                num_labels: labels.len() as i64,
                // A base-model checkpoint ("BertModel") has no prefix; task checkpoints do.
                base_at_root: architecture.ends_with("Model"),
            })
        })
    });
    let encoder = encoder?;
    let weights = checkpoint.load_shared(&mut vs)?;
    let int8_bytes = int8.pack()?;
    let tokenizer = TextTokenizer::from_dir(dir, encoder.positions.max(1) as usize, encoder.pad_token_id)?;
    // A head that reads a token's state would index past an input that
    // lacks it.
    if let Some((field, id)) = encoder.reads_token {
        let last = tokenizer.encode("a", None)?.get_ids().last().map(|&t| i64::from(t));
        if last != Some(id) {
            let ends = last.map_or("no token".to_string(), |t| format!("token {t}"));
            return Err(ModelError::bad_file(
                &config_file,
                format!("{field} = {id}, but the tokenizer ends its inputs with {ends}"),
            ));
        }
    }
    Ok(TextModel {
        net: encoder.net,
        memory_bytes: weights.bytes + int8_bytes,
        _vs: vs,
        _weights: weights,
        tokenizer,
        config: common,
        labels,
        architecture,
        head,
        device,
        dir: dir.to_path_buf(),
    })
}
