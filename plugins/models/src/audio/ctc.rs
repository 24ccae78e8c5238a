//! Wav2Vec2CTCTokenizer: the CTC vocabulary, greedy CTC decoding with
//! character offsets, and words from characters.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::core::config::{is_present, read_json, read_json_within, TOKENIZER_LIMIT};
use crate::text::tokenizer::clean_up_tokenization;
use crate::{ModelError, Result};

/// The CTC vocabulary and decoding rules of Wav2Vec2CTCTokenizer.
#[derive(Debug, Clone)]
pub struct CtcVocab {
    tokens: Vec<String>,
    pad: Option<usize>,
    word_delimiter: Option<usize>,
    unk: String,
    lower_case: bool,
    clean_up: bool,
}

/// One character (or word) of a transcription and its frames
/// `start..end` (end exclusive).
#[derive(Debug, Clone, PartialEq)]
pub struct Piece {
    pub text: String,
    pub start: usize,
    pub end: usize,
}

#[derive(Debug, Deserialize)]
struct TokenizerConfig {
    #[serde(default = "pad")]
    pad_token: String,
    #[serde(default = "unk")]
    unk_token: String,
    #[serde(default = "delimiter")]
    word_delimiter_token: String,
    #[serde(default)]
    do_lower_case: bool,
    #[serde(default)]
    clean_up_tokenization_spaces: bool,
}

fn pad() -> String {
    "<pad>".into()
}

fn unk() -> String {
    "<unk>".into()
}

fn delimiter() -> String {
    "|".into()
}

/// A special token's content, whether written as a string or as an
/// AddedToken object.
fn token_content(value: &serde_json::Value) -> Option<String> {
    value
        .as_str()
        .map(str::to_string)
        .or_else(|| value.get("content").and_then(|c| c.as_str()).map(str::to_string))
}

impl CtcVocab {
    /// vocab.json and tokenizer_config.json of `dir`.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let vocab_path = dir.join("vocab.json");
        if !is_present(&vocab_path) {
            return Err(ModelError::MissingFile {
                dir: dir.to_path_buf(),
                what: "vocab.json".into(),
                expected: "the CTC vocabulary of a Wav2Vec2 checkpoint".into(),
            });
        }
        let vocab: HashMap<String, usize> = read_json_within(&vocab_path, TOKENIZER_LIMIT)?;
        let config_path = dir.join("tokenizer_config.json");
        let config: TokenizerConfig = if is_present(&config_path) {
            let raw: serde_json::Value = read_json(&config_path)?;
            let mut fields = serde_json::Map::new();
            for key in ["pad_token", "unk_token", "word_delimiter_token"] {
                if let Some(v) = raw.get(key).and_then(token_content) {
                    fields.insert(key.into(), v.into());
                }
            }
            for key in ["do_lower_case", "clean_up_tokenization_spaces"] {
                if let Some(v) = raw.get(key).filter(|v| v.is_boolean()) {
                    fields.insert(key.into(), v.clone());
                }
            }
            serde_json::from_value(serde_json::Value::Object(fields))
                .map_err(|e| ModelError::bad_file(&config_path, e))?
        } else {
            serde_json::from_str("{}").expect("defaults")
        };
        Self::new(vocab, &config, &vocab_path)
    }

    fn new(vocab: HashMap<String, usize>, config: &TokenizerConfig, path: &PathBuf) -> Result<Self> {
        let size = vocab.values().max().map_or(0, |m| m + 1);
        let mut tokens = vec![String::new(); size];
        for (token, id) in &vocab {
            tokens[*id] = token.clone();
        }
        if tokens.is_empty() {
            return Err(ModelError::bad_file(path, "the vocabulary is empty"));
        }
        Ok(CtcVocab {
            pad: vocab.get(&config.pad_token).copied(),
            word_delimiter: vocab.get(&config.word_delimiter_token).copied(),
            unk: config.unk_token.clone(),
            lower_case: config.do_lower_case,
            clean_up: config.clean_up_tokenization_spaces,
            tokens,
        })
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Greedy CTC decoding of per-frame token ids, as the tokenizer's
    /// `decode(ids, output_char_offsets=True)` without skipping special
    /// tokens: runs of the same id merge, blanks (the pad token) go, the
    /// word delimiter becomes a space. Returns the text (stripped) and the
    /// characters with their frames (not stripped: spaces included).
    pub fn decode(&self, ids: &[i64]) -> (String, Vec<Piece>) {
        // Runs are grouped by token string, as the tokenizer groups them
        // (ids the vocabulary lacks all read as the unknown token).
        let tokens: Vec<&str> = ids
            .iter()
            .map(|&id| {
                usize::try_from(id)
                    .ok()
                    .and_then(|i| self.tokens.get(i))
                    .filter(|t| !t.is_empty())
                    .map_or(self.unk.as_str(), String::as_str)
            })
            .collect();
        let pad = self.pad.map(|i| self.tokens[i].as_str());
        let delimiter = self.word_delimiter.map(|i| self.tokens[i].as_str());
        let mut chars = Vec::new();
        let mut start = 0;
        while start < tokens.len() {
            let token = tokens[start];
            let end = start + tokens[start..].iter().take_while(|&&t| t == token).count();
            if Some(token) != pad {
                let text = if Some(token) == delimiter { " " } else { token };
                chars.push(Piece {
                    text: text.to_string(),
                    start,
                    end,
                });
            }
            start = end;
        }
        let joined: String = chars.iter().map(|c| c.text.as_str()).collect();
        let mut text = joined.trim().to_string();
        if self.lower_case {
            text = text.to_lowercase();
        }
        if self.clean_up {
            text = clean_up_tokenization(&text);
        }
        (text, chars)
    }
}

/// Words from characters, as the tokenizer's `_get_word_offsets`: runs of
/// non-space characters, each from its first character's start to its last
/// one's end.
pub fn words(chars: &[Piece]) -> Vec<Piece> {
    let mut words: Vec<Piece> = Vec::new();
    let mut current: Option<Piece> = None;
    for c in chars {
        if c.text == " " {
            words.extend(current.take());
        } else if let Some(word) = &mut current {
            word.text.push_str(&c.text);
            word.end = c.end;
        } else {
            current = Some(c.clone());
        }
    }
    words.extend(current);
    words
}

/// What a CTC speech-recognition family offers its loader.
pub trait CtcNet: Send {
    /// Logits [batch, frames, vocab] of input_values [batch, samples].
    fn forward(&self, input_values: &tch::Tensor) -> tch::Tensor;
    /// Input samples per output frame.
    fn inputs_to_logits_ratio(&self) -> i64;
    /// The frames (logits) of `samples` input samples.
    fn frames(&self, samples: i64) -> i64;
    /// The fewest samples that give one frame.
    fn min_samples(&self) -> i64;
}

/// Builds a family's CTC model from its config.json at a checkpoint's root.
pub type CtcBuilder =
    fn(root: tch::nn::Path, config_file: &Path, shapes: &crate::core::weights::WeightShapes) -> Result<Box<dyn CtcNet>>;

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab() -> CtcVocab {
        let tokens = ["<pad>", "<s>", "</s>", "<unk>", "|", "A", "B", "C"];
        let vocab = tokens.iter().enumerate().map(|(i, t)| (t.to_string(), i)).collect();
        let config: TokenizerConfig = serde_json::from_str("{}").unwrap();
        CtcVocab::new(vocab, &config, &PathBuf::from("vocab.json")).unwrap()
    }

    #[test]
    fn ctc_decoding_merges_runs_drops_blanks_and_keeps_special_tokens() {
        let v = vocab();
        // A A _ A | | B _ _ C <s> | (pad = 0, | = 4)
        let (text, chars) = v.decode(&[4, 5, 5, 0, 5, 4, 4, 6, 0, 0, 7, 1, 4]);
        assert_eq!(text, "AA BC<s>");
        let pieces: Vec<(&str, usize, usize)> = chars.iter().map(|c| (c.text.as_str(), c.start, c.end)).collect();
        assert_eq!(
            pieces,
            vec![
                (" ", 0, 1),
                ("A", 1, 3),
                ("A", 4, 5),
                (" ", 5, 7),
                ("B", 7, 8),
                ("C", 10, 11),
                ("<s>", 11, 12),
                (" ", 12, 13)
            ]
        );
        let words = words(&chars);
        let w: Vec<(&str, usize, usize)> = words.iter().map(|c| (c.text.as_str(), c.start, c.end)).collect();
        assert_eq!(w, vec![("AA", 1, 5), ("BC<s>", 7, 12)]);
        assert_eq!(v.decode(&[0, 0]).0, "");
        assert_eq!(v.decode(&[99]).0, "<unk>");
    }
}
