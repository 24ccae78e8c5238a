//! `SpeechT5Tokenizer`: text to character ids through the checkpoint's
//! `spm_char.model`, a SentencePiece model of single characters, as the
//! slow tokenizer of transformers does it: numbers optionally spelt out
//! (`normalize`), added tokens (`</s>`, `<mask>`, ...) split out of the
//! text, each remaining part normalised and split into characters by
//! SentencePiece's rules, unknown characters as `<unk>`, and `</s>` at the
//! end. There is no fast tokenizer for SpeechT5.

use std::collections::HashMap;
use std::path::Path;

use tokenizers::normalizers::Precompiled;
use tokenizers::{NormalizedString, Normalizer};

use crate::core::config::is_present;
use crate::text::numbers::normalize_numbers;
use crate::text::sentencepiece::{is_python_space, token_content, SpmModel, SpmModelType, SpmTokenizerConfig};
use crate::{ModelError, Result};

/// The whitespace marker SentencePiece puts in pieces.
const SPIECE_UNDERLINE: char = '\u{2581}';

/// An added token: split out of the text before SentencePiece.
#[derive(Debug, Clone)]
struct AddedToken {
    content: String,
    id: i64,
    /// Strip the whitespace on its left (right) side.
    lstrip: bool,
    rstrip: bool,
}

pub struct SpeechT5Tokenizer {
    pieces: HashMap<String, i64>,
    charsmap: Option<Precompiled>,
    add_dummy_prefix: bool,
    remove_extra_whitespaces: bool,
    escape_whitespaces: bool,
    added: Vec<AddedToken>,
    eos_id: i64,
    unk_id: i64,
    pad_id: i64,
    /// tokenizer_config.json's `normalize`: spell numbers out by default.
    pub normalize: bool,
    /// The ids of the model's vocabulary, pieces and added tokens.
    pub vocab_size: i64,
}

impl SpeechT5Tokenizer {
    /// Loads spm_char.model and (optional) tokenizer_config.json /
    /// special_tokens_map.json from `dir`.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let path = dir.join("spm_char.model");
        if !is_present(&path) {
            return Err(ModelError::MissingFile {
                dir: dir.to_path_buf(),
                what: "spm_char.model".into(),
                expected: "SpeechT5's character SentencePiece model".into(),
            });
        }
        let model = SpmModel::from_file(&path)?;
        if model.model_type != SpmModelType::Char {
            return Err(ModelError::bad_file(
                &path,
                format!(
                    "a {:?} SentencePiece model; SpeechT5 reads characters (model_type char)",
                    model.model_type
                ),
            ));
        }
        let config = SpmTokenizerConfig::read(dir)?;
        let pieces: HashMap<String, i64> = model
            .pieces
            .iter()
            .enumerate()
            .map(|(id, (piece, _, _))| (piece.clone(), id as i64))
            .collect();
        let mut added: Vec<AddedToken> = Vec::new();
        for (id, spec) in config.added_tokens_decoder.iter().flatten() {
            let id: i64 = id
                .parse()
                .map_err(|_| ModelError::bad_file(dir.join("tokenizer_config.json"), format!("added token id {id}")))?;
            added.push(AddedToken {
                content: spec.content.clone(),
                id,
                lstrip: spec.lstrip,
                rstrip: spec.rstrip,
            });
        }
        let vocab_size = added
            .iter()
            .map(|t| t.id + 1)
            .max()
            .unwrap_or(0)
            .max(model.pieces.len() as i64);
        let find = |value, default: &str| -> Result<i64> {
            let content = token_content(value, default);
            added
                .iter()
                .find(|t| t.content == content)
                .map(|t| t.id)
                .or_else(|| pieces.get(&content).copied())
                .ok_or_else(|| ModelError::bad_file(&path, format!("it has no {content} token")))
        };
        let eos_id = find(config.eos_token.as_ref(), "</s>")?;
        let unk_id = find(config.unk_token.as_ref(), "<unk>")?;
        let pad_id = find(config.pad_token.as_ref(), "<pad>")?;
        // Special tokens the config names outside added_tokens_decoder are
        // still split out of the text.
        for (value, default, id) in [
            (config.eos_token.as_ref(), "</s>", eos_id),
            (config.unk_token.as_ref(), "<unk>", unk_id),
            (config.pad_token.as_ref(), "<pad>", pad_id),
        ] {
            if !added.iter().any(|t| t.id == id) {
                added.push(AddedToken {
                    content: token_content(value, default),
                    id,
                    lstrip: false,
                    rstrip: false,
                });
            }
        }
        added.retain(|t| !t.content.is_empty());
        let charsmap = &model.normalizer.precompiled_charsmap;
        let charsmap = if charsmap.is_empty() {
            None
        } else {
            crate::text::charsmap::check(charsmap)?;
            Some(
                Precompiled::from(charsmap)
                    .map_err(|e| ModelError::bad_file(&path, format!("precompiled_charsmap: {e}")))?,
            )
        };
        Ok(SpeechT5Tokenizer {
            pieces,
            charsmap,
            add_dummy_prefix: model.normalizer.add_dummy_prefix,
            remove_extra_whitespaces: model.normalizer.remove_extra_whitespaces,
            escape_whitespaces: model.normalizer.escape_whitespaces,
            added,
            eos_id,
            unk_id,
            pad_id,
            normalize: config.normalize.unwrap_or(false),
            vocab_size,
        })
    }

    pub fn pad_id(&self) -> i64 {
        self.pad_id
    }

    /// `tokenizer(text, normalize=normalize)["input_ids"]`: the ids of
    /// `text`, then `</s>`.
    pub fn encode(&self, text: &str, normalize: bool) -> Result<Vec<i64>> {
        let text = if normalize {
            normalize_numbers(text).map_err(ModelError::InvalidInput)?
        } else {
            text.to_string()
        };
        let mut ids = Vec::new();
        let parts = self.split_added(&text);
        for part in parts {
            match part {
                Part::Added(id) => ids.push(id),
                Part::Text(text) if text.is_empty() => {}
                Part::Text(text) => {
                    // SentencePiece merges a run of unknown characters into
                    // one unknown piece.
                    let mut after_unknown = false;
                    for piece in self.characters(&text)? {
                        match self.pieces.get(&piece) {
                            Some(&id) => ids.push(id),
                            None if after_unknown => {}
                            None => ids.push(self.unk_id),
                        }
                        after_unknown = !self.pieces.contains_key(&piece);
                    }
                }
            }
        }
        ids.push(self.eos_id);
        Ok(ids)
    }

    /// The text cut around the added tokens (leftmost, the longest at a
    /// position), with the whitespace next to a token stripped on the
    /// sides it strips.
    fn split_added(&self, text: &str) -> Vec<Part> {
        let mut parts = Vec::new();
        let (mut start, mut pos) = (0, 0);
        while pos < text.len() {
            let found = self
                .added
                .iter()
                .filter(|t| text[pos..].starts_with(&t.content))
                .max_by_key(|t| t.content.len());
            match found {
                Some(token) => {
                    parts.push(Part::Text(text[start..pos].to_string()));
                    parts.push(Part::Added(token.id));
                    pos += token.content.len();
                    start = pos;
                }
                None => pos += text[pos..].chars().next().map_or(1, char::len_utf8),
            }
        }
        parts.push(Part::Text(text[start..].to_string()));
        // Strip as the slow tokenizer does, neighbour by neighbour.
        for i in 0..parts.len() {
            let Part::Added(id) = parts[i] else { continue };
            let token = self.added.iter().find(|t| t.id == id).expect("split on it").clone();
            if token.rstrip {
                if let Some(Part::Text(right)) = parts.get_mut(i + 1) {
                    *right = right.trim_start_matches(is_python_space).to_string();
                }
            }
            if token.lstrip && i > 0 {
                if let Some(Part::Text(left)) = parts.get_mut(i - 1) {
                    *left = left.trim_end_matches(is_python_space).to_string();
                }
            }
        }
        parts
    }

    /// `sp_model.encode(text, out_type=str)` of a character model: the
    /// normalisation rules, whitespace removed at the ends and collapsed
    /// inside, a space in front, spaces as "▁", then one piece per
    /// character.
    fn characters(&self, text: &str) -> Result<Vec<String>> {
        let normalised = match &self.charsmap {
            Some(charsmap) => {
                let mut n = NormalizedString::from(text);
                charsmap
                    .normalize(&mut n)
                    .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
                n.get().to_string()
            }
            None => text.to_string(),
        };
        let mut chars: Vec<char> = Vec::with_capacity(normalised.len() + 1);
        for c in normalised.chars() {
            if self.remove_extra_whitespaces && c == ' ' && chars.last().is_none_or(|&last| last == ' ') {
                continue;
            }
            chars.push(c);
        }
        if self.remove_extra_whitespaces && chars.last() == Some(&' ') {
            chars.pop();
        }
        if chars.is_empty() {
            return Ok(vec![]);
        }
        if self.add_dummy_prefix {
            chars.insert(0, ' ');
        }
        Ok(chars
            .into_iter()
            .map(|c| {
                if self.escape_whitespaces && c == ' ' {
                    SPIECE_UNDERLINE.to_string()
                } else {
                    c.to_string()
                }
            })
            .collect())
    }
}

enum Part {
    Text(String),
    Added(i64),
}
