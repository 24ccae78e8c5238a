//! Text tokenisation with the checkpoint's tokenizer.json, truncated and padded
//! the way transformers' fast tokenizers do with `truncation=True`.

use std::path::Path;

use serde::Deserialize;
use tch::{Device, Tensor};
use tokenizers::Tokenizer;
pub use tokenizers::{Encoding, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::core::config::{is_present, read_json, read_model_file, TOKENIZER_LIMIT};
use crate::{ModelError, Result};

/// A special token as tokenizer_config.json writes it: a string, or an
/// AddedToken object with `content`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum TokenSpec {
    Plain(String),
    Added { content: String },
}

impl TokenSpec {
    fn content(&self) -> &str {
        match self {
            TokenSpec::Plain(s) => s,
            TokenSpec::Added { content } => content,
        }
    }
}

/// Values from tokenizer_config.json that change how text is encoded or decoded.
#[derive(Debug, Default, Deserialize)]
struct TokenizerConfig {
    #[serde(default)]
    model_max_length: Option<f64>,
    #[serde(default)]
    clean_up_tokenization_spaces: Option<bool>,
    #[serde(default)]
    tokenizer_class: Option<String>,
    #[serde(default)]
    mask_token: Option<TokenSpec>,
    #[serde(default)]
    unk_token: Option<TokenSpec>,
    #[serde(default)]
    cls_token: Option<TokenSpec>,
}

/// A tokenizer with the model's maximum length applied.
pub struct TextTokenizer {
    inner: Tokenizer,
    max_length: usize,
    /// The longest input the model's positions allow.
    positions: usize,
    pad_id: i64,
    /// Cutting at `max_length`, as `truncation=True` does.
    truncation: TruncationParams,
    /// What `encode` does unless asked otherwise: `truncation`, or nothing
    /// (`disable_truncation`).
    default_truncation: Option<TruncationParams>,
    clean_up_spaces: bool,
    mask_token: Option<(String, u32)>,
    unk_id: Option<u32>,
    cls_id: Option<u32>,
}

/// The refusal of an input kept whole (`truncation=false`) that is longer
/// than the model's positions.
pub(crate) fn longer_than_positions(tokens: usize, positions: usize, max_length: usize) -> ModelError {
    ModelError::InvalidInput(format!(
        "the input is {tokens} tokens long, more than this model's {positions} positions; send truncation=true \
         (or leave truncation out) to cut it at {max_length} tokens"
    ))
}

/// A padded batch of encoded texts, as tensors on the model's device.
pub struct EncodedBatch {
    /// [batch, seq] token ids.
    pub input_ids: Tensor,
    /// [batch, seq] 1 for real tokens, 0 for padding.
    pub attention_mask: Tensor,
    /// [batch, seq] segment ids (0 for the first text, 1 for the pair).
    pub token_type_ids: Tensor,
}

impl TextTokenizer {
    /// Loads `tokenizer.json` from `dir` (or, for T5 checkpoints without
    /// one, builds it from `spiece.model` as transformers converts it). The
    /// maximum length is the smaller of
    /// tokenizer_config.json's `model_max_length` and `model_limit` (the
    /// longest input the model's position embeddings allow).
    pub fn from_dir(dir: &Path, model_limit: usize, pad_id: i64) -> Result<Self> {
        let path = dir.join("tokenizer.json");
        let mut inner = if is_present(&path) {
            let bytes = read_model_file(&path, TOKENIZER_LIMIT)?;
            Tokenizer::from_bytes(bytes).map_err(|e| ModelError::bad_file(&path, e))?
        } else if is_present(&dir.join("spiece.model")) {
            crate::text::sentencepiece::t5_tokenizer(dir)?
        } else {
            return Err(ModelError::MissingFile {
                dir: dir.to_path_buf(),
                what: "tokenizer.json".into(),
                expected: "the tokenizer saved by a fast (Rust-backed) transformers tokenizer (or T5's spiece.model)"
                    .into(),
            });
        };
        let config_path = dir.join("tokenizer_config.json");
        let config: TokenizerConfig = if is_present(&config_path) {
            read_json(&config_path)?
        } else {
            TokenizerConfig::default()
        };
        let max_length = match config.model_max_length {
            // transformers writes a huge sentinel (1e30) when there is no limit.
            Some(m) if m > 0.0 && m < 1e9 => (m as usize).min(model_limit),
            _ => model_limit,
        };
        let truncation = TruncationParams {
            max_length,
            strategy: TruncationStrategy::LongestFirst,
            stride: 0,
            direction: TruncationDirection::Right,
        };
        inner
            .with_truncation(Some(truncation.clone()))
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        inner.with_padding(None);
        let token = |spec: &Option<TokenSpec>| {
            spec.as_ref()
                .and_then(|t| inner.token_to_id(t.content()).map(|id| (t.content().to_string(), id)))
        };
        let mask_token = token(&config.mask_token);
        let unk_id = token(&config.unk_token).map(|(_, id)| id);
        let cls_id = token(&config.cls_token).map(|(_, id)| id);
        // transformers' default for the BERT family is to clean up; others default to false.
        let clean_up_spaces = config.clean_up_tokenization_spaces.unwrap_or_else(|| {
            config
                .tokenizer_class
                .as_deref()
                .is_some_and(|c| c.starts_with("Bert") || c.starts_with("DistilBert"))
        });
        Ok(TextTokenizer {
            inner,
            max_length,
            positions: model_limit,
            pad_id,
            default_truncation: Some(truncation.clone()),
            truncation,
            clean_up_spaces,
            mask_token,
            unk_id,
            cls_id,
        })
    }

    /// The mask token and its id, if the tokenizer has one.
    pub fn mask_token(&self) -> Option<(&str, u32)> {
        self.mask_token.as_ref().map(|(t, id)| (t.as_str(), *id))
    }

    pub fn unk_id(&self) -> Option<u32> {
        self.unk_id
    }

    pub fn cls_id(&self) -> Option<u32> {
        self.cls_id
    }

    pub fn pad_id(&self) -> i64 {
        self.pad_id
    }

    /// Encodes with character (not byte) offsets, truncated to the model's
    /// maximum, or with `truncation` when given (restoring the default
    /// afterwards). Overflowing windows (with a stride) are in the result's
    /// `get_overflowing()`.
    pub fn encode_with(
        &mut self,
        text: &str,
        pair: Option<&str>,
        truncation: Option<TruncationParams>,
    ) -> Result<Encoding> {
        let custom = truncation.is_some();
        if custom {
            self.inner
                .with_truncation(truncation)
                .map_err(|e| ModelError::InvalidInput(e.to_string()))?;
        }
        let encoding = match pair {
            Some(pair) => self.inner.encode_char_offsets((text, pair), true),
            None => self.inner.encode_char_offsets(text, true),
        };
        if custom {
            self.restore_truncation()?;
        }
        encoding.map_err(|e| ModelError::InvalidInput(e.to_string()))
    }

    fn restore_truncation(&mut self) -> Result<()> {
        self.inner
            .with_truncation(self.default_truncation.clone())
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        Ok(())
    }

    /// Encodes as pipeline()'s `truncation` asks: true cuts at the model's
    /// maximum (tokenizer_config.json's model_max_length, never past the
    /// positions); false leaves the input whole and refuses one longer than
    /// the position table; None does what the tokenizer does by default
    /// (cut, unless `disable_truncation`).
    pub fn encode_truncating(&mut self, text: &str, pair: Option<&str>, truncation: Option<bool>) -> Result<Encoding> {
        let params = match truncation {
            None => return self.encode(text, pair),
            Some(true) => Some(self.truncation.clone()),
            Some(false) => None,
        };
        let encoding = self.encode_cut(params, text, pair)?;
        if encoding.len() > self.positions {
            return Err(longer_than_positions(encoding.len(), self.positions, self.max_length));
        }
        Ok(encoding)
    }

    /// Encodes with `truncation` in place of the default for this one call.
    fn encode_cut(&mut self, truncation: Option<TruncationParams>, text: &str, pair: Option<&str>) -> Result<Encoding> {
        self.inner
            .with_truncation(truncation)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        let encoding = match pair {
            Some(pair) => self.inner.encode((text, pair), true),
            None => self.inner.encode(text, true),
        };
        self.restore_truncation()?;
        encoding.map_err(|e| ModelError::InvalidInput(e.to_string()))
    }

    /// Token ids of a text without special tokens (truncated to the model's
    /// maximum, as the tokenizer is configured; `encode_untruncated` is not).
    pub fn ids_without_special_tokens(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .inner
            .encode(text, false)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// `tokenizer.decode(ids, skip_special_tokens)` as transformers computes
    /// it, including its `clean_up_tokenization_spaces` step.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.decode_with(ids, skip_special_tokens, self.clean_up_spaces)
    }

    /// `decode` with an explicit `clean_up_tokenization_spaces`.
    pub fn decode_with(&self, ids: &[u32], skip_special_tokens: bool, clean_up: bool) -> Result<String> {
        let text = self
            .inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        Ok(if clean_up { clean_up_tokenization(&text) } else { text })
    }

    /// Never truncate (models without a length limit, such as T5, whose
    /// pipeline() does not truncate).
    pub fn disable_truncation(&mut self) -> Result<()> {
        self.default_truncation = None;
        self.restore_truncation()
    }

    /// Token ids of a text with special tokens, not truncated.
    pub fn encode_untruncated(&mut self, text: &str) -> Result<Vec<u32>> {
        Ok(self.encode_cut(None, text, None)?.get_ids().to_vec())
    }

    /// `all_special_ids`: the added tokens marked special.
    pub fn special_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self
            .inner
            .get_added_tokens_decoder()
            .into_iter()
            .filter(|(_, token)| token.special)
            .map(|(id, _)| id)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// `convert_ids_to_tokens([id])`.
    pub fn id_to_token(&self, id: u32) -> String {
        self.inner.id_to_token(id).unwrap_or_default()
    }

    /// `convert_tokens_to_string(tokens)`: the decoder applied to tokens.
    pub fn tokens_to_string(&self, tokens: &[String]) -> Result<String> {
        match self.inner.get_decoder() {
            Some(decoder) => {
                use tokenizers::Decoder;
                decoder
                    .decode(tokens.to_vec())
                    .map_err(|e| ModelError::Tokenizer(e.to_string()))
            }
            None => Ok(tokens.join(" ")),
        }
    }

    /// The model's continuing-subword prefix ("##" for WordPiece), which
    /// pipeline() uses to tell word pieces from words.
    pub fn continuing_subword_prefix(&self) -> Option<String> {
        use tokenizers::ModelWrapper;
        let prefix = match self.inner.get_model() {
            ModelWrapper::WordPiece(wp) => Some(wp.continuing_subword_prefix.clone()),
            ModelWrapper::BPE(bpe) => bpe.continuing_subword_prefix.clone(),
            _ => None,
        };
        prefix.filter(|p| !p.is_empty())
    }

    /// The id of a vocabulary token (added tokens included).
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// Tokens in the vocabulary, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Encodes one text or text pair with special tokens, truncated.
    pub fn encode(&self, text: &str, pair: Option<&str>) -> Result<Encoding> {
        let encoding = match pair {
            Some(pair) => self.inner.encode((text, pair), true),
            None => self.inner.encode(text, true),
        };
        encoding.map_err(|e| ModelError::Tokenizer(e.to_string()))
    }

    /// Pads encodings (on the right) into batch tensors.
    ///
    /// (Token type ids are kept as the tokenizer made them; models without
    /// token types ignore them.)
    pub fn pad(&self, encodings: &[Encoding], device: Device) -> EncodedBatch {
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
        }
    }
}

/// transformers' `clean_up_tokenization`: removes the spaces a word-level
/// decoder leaves before punctuation and English contractions.
pub fn clean_up_tokenization(text: &str) -> String {
    text.replace(" .", ".")
        .replace(" ?", "?")
        .replace(" !", "!")
        .replace(" ,", ",")
        .replace(" ' ", "'")
        .replace(" n't", "n't")
        .replace(" 'm", "'m")
        .replace(" 's", "'s")
        .replace(" 've", "'ve")
        .replace(" 're", "'re")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_up_matches_transformers() {
        assert_eq!(
            clean_up_tokenization("hello , world ! it 's ok ."),
            "hello, world! it's ok."
        );
        assert_eq!(clean_up_tokenization("do n't"), "don't");
    }
}
