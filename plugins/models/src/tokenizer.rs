//! Text tokenisation with the checkpoint's tokenizer.json, truncated and padded
//! the way transformers' fast tokenizers do with `truncation=True`.

use std::path::Path;

use serde::Deserialize;
use tch::{Device, Tensor};
use tokenizers::{Encoding, Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::config::read_json;
use crate::{ModelError, Result};

/// Values from tokenizer_config.json that change how text is encoded.
#[derive(Debug, Default, Deserialize)]
struct TokenizerConfig {
    #[serde(default)]
    model_max_length: Option<f64>,
}

/// A tokenizer with the model's maximum length applied.
pub struct TextTokenizer {
    inner: Tokenizer,
    max_length: usize,
    pad_id: i64,
}

/// A padded batch of encoded texts, as tensors on the model's device.
pub struct EncodedBatch {
    /// [batch, seq] token ids.
    pub input_ids: Tensor,
    /// [batch, seq] 1 for real tokens, 0 for padding.
    pub attention_mask: Tensor,
    /// [batch, seq] segment ids (0 for the first text, 1 for the pair).
    pub token_type_ids: Tensor,
    /// The encodings, before padding, one per input.
    pub encodings: Vec<Encoding>,
}

impl TextTokenizer {
    /// Loads `tokenizer.json` from `dir`. The maximum length is the smaller of
    /// tokenizer_config.json's `model_max_length` and `model_limit` (the
    /// longest input the model's position embeddings allow).
    pub fn from_dir(dir: &Path, model_limit: usize, pad_id: i64) -> Result<Self> {
        let path = dir.join("tokenizer.json");
        if !path.is_file() {
            return Err(ModelError::MissingFile {
                dir: dir.to_path_buf(),
                what: "tokenizer.json".into(),
                expected: "the tokenizer saved by a fast (Rust-backed) transformers tokenizer"
                    .into(),
            });
        }
        let mut inner = Tokenizer::from_file(&path).map_err(|e| ModelError::bad_file(&path, e))?;
        let config_path = dir.join("tokenizer_config.json");
        let config: TokenizerConfig = if config_path.is_file() {
            read_json(&config_path)?
        } else {
            TokenizerConfig::default()
        };
        let max_length = match config.model_max_length {
            // transformers writes a huge sentinel (1e30) when there is no limit.
            Some(m) if m > 0.0 && m < 1e9 => (m as usize).min(model_limit),
            _ => model_limit,
        };
        inner
            .with_truncation(Some(TruncationParams {
                max_length,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        inner.with_padding(None);
        Ok(TextTokenizer {
            inner,
            max_length,
            pad_id,
        })
    }

    pub fn max_length(&self) -> usize {
        self.max_length
    }

    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }

    /// Encodes one text or text pair with special tokens, truncated.
    pub fn encode(&self, text: &str, pair: Option<&str>) -> Result<Encoding> {
        let encoding = match pair {
            Some(pair) => self.inner.encode((text, pair), true),
            None => self.inner.encode(text, true),
        };
        encoding.map_err(|e| ModelError::Tokenizer(e.to_string()))
    }

    /// Encodes texts (with optional pairs) and pads them to the longest.
    pub fn encode_batch(
        &self,
        inputs: &[(&str, Option<&str>)],
        device: Device,
    ) -> Result<EncodedBatch> {
        let encodings = inputs
            .iter()
            .map(|(text, pair)| self.encode(text, *pair))
            .collect::<Result<Vec<_>>>()?;
        Ok(self.pad(encodings, device))
    }

    /// Pads encodings (on the right) into batch tensors.
    pub fn pad(&self, encodings: Vec<Encoding>, device: Device) -> EncodedBatch {
        let batch = encodings.len();
        let seq = encodings.iter().map(|e| e.len()).max().unwrap_or(0).max(1);
        let mut ids = vec![self.pad_id; batch * seq];
        let mut mask = vec![0i64; batch * seq];
        let mut types = vec![0i64; batch * seq];
        for (row, e) in encodings.iter().enumerate() {
            for (col, ((&id, &m), &t)) in e
                .get_ids()
                .iter()
                .zip(e.get_attention_mask())
                .zip(e.get_type_ids())
                .enumerate()
            {
                ids[row * seq + col] = id as i64;
                mask[row * seq + col] = m as i64;
                types[row * seq + col] = t as i64;
            }
        }
        let shape = [batch as i64, seq as i64];
        EncodedBatch {
            input_ids: Tensor::from_slice(&ids).view(shape).to_device(device),
            attention_mask: Tensor::from_slice(&mask).view(shape).to_device(device),
            token_type_ids: Tensor::from_slice(&types).view(shape).to_device(device),
            encodings,
        }
    }
}
