//! SentencePiece tokenizers for checkpoints that ship no tokenizer.json: the
//! `.model` file parsed, the `tokenizers` equivalent built from it the way
//! transformers 4.57.6 `convert_slow_tokenizer.py` builds it (SpmConverter,
//! T5Converter), and MarianTokenizer, which transformers only has as a slow
//! tokenizer (source.spm pieces looked up in vocab.json, decoding through
//! target.spm).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use prost::Message;
use serde::Deserialize;
use serde_json::Value;
use tokenizers::decoders::metaspace::Metaspace as MetaspaceDecoder;
use tokenizers::models::unigram::Unigram;
use tokenizers::normalizers::replace::{Replace, ReplacePattern};
use tokenizers::normalizers::{NormalizerWrapper, Precompiled, Sequence, Strip};
use tokenizers::pre_tokenizers::metaspace::Metaspace;
pub use tokenizers::pre_tokenizers::metaspace::PrependScheme;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, Tokenizer};

use crate::core::config::{is_present, read_json, read_json_within, read_model_file, TOKENIZER_LIMIT};
use crate::{ModelError, Result};

/// The whitespace marker SentencePiece puts in pieces.
const SPIECE_UNDERLINE: char = '\u{2581}';

// ---------------------------------------------------------------------------
// sentencepiece_model.proto, the fields read here (field numbers checked
// against sentencepiece's sentencepiece_model_pb2.py). proto2: every scalar is
// optional with a default, applied in `SpmModel::from_bytes`.
// ---------------------------------------------------------------------------

#[derive(Clone, PartialEq, prost::Message)]
struct ModelProto {
    #[prost(message, repeated, tag = "1")]
    pieces: Vec<SentencePieceProto>,
    #[prost(message, optional, tag = "2")]
    trainer_spec: Option<TrainerSpecProto>,
    #[prost(message, optional, tag = "3")]
    normalizer_spec: Option<NormalizerSpecProto>,
    #[prost(message, optional, tag = "5")]
    denormalizer_spec: Option<NormalizerSpecProto>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SentencePieceProto {
    #[prost(string, optional, tag = "1")]
    piece: Option<String>,
    #[prost(float, optional, tag = "2")]
    score: Option<f32>,
    /// The `Type` enum, read as its varint.
    #[prost(int32, optional, tag = "3")]
    kind: Option<i32>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct TrainerSpecProto {
    #[prost(int32, optional, tag = "3")]
    model_type: Option<i32>,
    #[prost(bool, optional, tag = "35")]
    byte_fallback: Option<bool>,
    #[prost(int32, optional, tag = "40")]
    unk_id: Option<i32>,
    #[prost(int32, optional, tag = "41")]
    bos_id: Option<i32>,
    #[prost(int32, optional, tag = "42")]
    eos_id: Option<i32>,
    #[prost(int32, optional, tag = "43")]
    pad_id: Option<i32>,
    #[prost(string, optional, tag = "44")]
    unk_surface: Option<String>,
    #[prost(string, optional, tag = "45")]
    unk_piece: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct NormalizerSpecProto {
    #[prost(string, optional, tag = "1")]
    name: Option<String>,
    #[prost(bytes = "vec", optional, tag = "2")]
    precompiled_charsmap: Option<Vec<u8>>,
    #[prost(bool, optional, tag = "3")]
    add_dummy_prefix: Option<bool>,
    #[prost(bool, optional, tag = "4")]
    remove_extra_whitespaces: Option<bool>,
    #[prost(bool, optional, tag = "5")]
    escape_whitespaces: Option<bool>,
}

// ---------------------------------------------------------------------------
// The model file.
// ---------------------------------------------------------------------------

/// `ModelProto.SentencePiece.Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PieceType {
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

impl PieceType {
    fn from_proto(value: i32) -> Option<Self> {
        Some(match value {
            1 => PieceType::Normal,
            2 => PieceType::Unknown,
            3 => PieceType::Control,
            4 => PieceType::UserDefined,
            5 => PieceType::Unused,
            6 => PieceType::Byte,
            _ => return None,
        })
    }
}

/// `TrainerSpec.ModelType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpmModelType {
    Unigram,
    Bpe,
    Word,
    Char,
}

/// `NormalizerSpec`, with proto2's defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct NormalizerSpec {
    /// The rule set's name (`nmt_nfkc`, `identity`, ...).
    pub name: String,
    /// The compiled rules; empty for `identity`.
    pub precompiled_charsmap: Vec<u8>,
    pub add_dummy_prefix: bool,
    pub remove_extra_whitespaces: bool,
    pub escape_whitespaces: bool,
}

impl NormalizerSpec {
    fn from_proto(spec: Option<NormalizerSpecProto>) -> Self {
        let spec = spec.unwrap_or_default();
        NormalizerSpec {
            name: spec.name.unwrap_or_default(),
            precompiled_charsmap: spec.precompiled_charsmap.unwrap_or_default(),
            add_dummy_prefix: spec.add_dummy_prefix.unwrap_or(true),
            remove_extra_whitespaces: spec.remove_extra_whitespaces.unwrap_or(true),
            escape_whitespaces: spec.escape_whitespaces.unwrap_or(true),
        }
    }
}

/// A SentencePiece model file, parsed.
#[derive(Debug, Clone)]
pub struct SpmModel {
    /// (piece, score, type) in id order.
    pub pieces: Vec<(String, f64, PieceType)>,
    pub model_type: SpmModelType,
    /// `trainer_spec.unk_id` (default 0); `None` when negative.
    pub unk_id: Option<u32>,
    /// `trainer_spec.bos_id` (default 1); `None` when negative (disabled).
    pub bos_id: Option<u32>,
    /// `trainer_spec.eos_id` (default 2); `None` when negative (disabled).
    pub eos_id: Option<u32>,
    /// `trainer_spec.pad_id` (default -1); `None` when negative (disabled).
    pub pad_id: Option<u32>,
    pub byte_fallback: bool,
    /// What decoding writes for the `<unk>` piece itself (default " ⁇ ").
    pub unk_surface: String,
    /// The unknown piece's text (default `<unk>`).
    pub unk_piece: String,
    pub normalizer: NormalizerSpec,
    /// The rules decoding applies to its output, when the model has any.
    pub denormalizer: Option<NormalizerSpec>,
}

impl SpmModel {
    pub fn from_file(path: &Path) -> Result<Self> {
        let bytes = read_model_file(path, TOKENIZER_LIMIT)?;
        Self::from_bytes(&bytes).map_err(|e| ModelError::bad_file(path, e))
    }

    /// Parses a serialized `sentencepiece.ModelProto`.
    pub fn from_bytes(bytes: &[u8]) -> std::result::Result<Self, String> {
        let proto = ModelProto::decode(bytes).map_err(|e| format!("not a SentencePiece model: {e}"))?;
        if proto.pieces.is_empty() {
            return Err("not a SentencePiece model: it has no pieces".into());
        }
        let pieces = proto
            .pieces
            .into_iter()
            .enumerate()
            .map(|(id, p)| {
                let kind = p.kind.unwrap_or(1);
                let kind = PieceType::from_proto(kind).ok_or_else(|| format!("piece {id} has unknown type {kind}"))?;
                Ok((p.piece.unwrap_or_default(), f64::from(p.score.unwrap_or(0.0)), kind))
            })
            .collect::<std::result::Result<Vec<_>, String>>()?;
        let trainer = proto.trainer_spec.unwrap_or_default();
        let model_type = match trainer.model_type.unwrap_or(1) {
            1 => SpmModelType::Unigram,
            2 => SpmModelType::Bpe,
            3 => SpmModelType::Word,
            4 => SpmModelType::Char,
            other => return Err(format!("unknown model_type {other}")),
        };
        let id = |value: i32| u32::try_from(value).ok();
        let denormalizer = proto
            .denormalizer_spec
            .filter(|d| d.precompiled_charsmap.as_ref().is_some_and(|m| !m.is_empty()))
            .map(|d| NormalizerSpec::from_proto(Some(d)));
        Ok(SpmModel {
            pieces,
            model_type,
            unk_id: id(trainer.unk_id.unwrap_or(0)),
            bos_id: id(trainer.bos_id.unwrap_or(1)),
            eos_id: id(trainer.eos_id.unwrap_or(2)),
            pad_id: id(trainer.pad_id.unwrap_or(-1)),
            byte_fallback: trainer.byte_fallback.unwrap_or(false),
            unk_surface: trainer.unk_surface.unwrap_or_else(|| " \u{2047} ".into()),
            unk_piece: trainer.unk_piece.unwrap_or_else(|| "<unk>".into()),
            normalizer: NormalizerSpec::from_proto(proto.normalizer_spec),
            denormalizer,
        })
    }
}

// ---------------------------------------------------------------------------
// The `tokenizers` equivalent (SpmConverter).
// ---------------------------------------------------------------------------

/// The prepend scheme of SpmConverter's Metaspace (`_get_prepend_scheme`):
/// `always` with a prefix space, `first` when the slow tokenizer was
/// `legacy=False`, `never` without a prefix space.
pub fn prepend_scheme(add_prefix_space: bool, legacy: bool) -> PrependScheme {
    match (add_prefix_space, legacy) {
        (false, _) => PrependScheme::Never,
        (true, true) => PrependScheme::Always,
        (true, false) => PrependScheme::First,
    }
}

fn tokenizer_error(e: impl std::fmt::Display) -> ModelError {
    ModelError::Tokenizer(e.to_string())
}

/// SpmConverter.normalizer: the model's precompiled rules, then strip on the
/// right and turn runs of spaces into one "▁".
fn spm_normalizer(model: &SpmModel) -> Result<NormalizerWrapper> {
    let mut steps: Vec<NormalizerWrapper> = Vec::new();
    let charsmap = &model.normalizer.precompiled_charsmap;
    if !charsmap.is_empty() {
        crate::text::charsmap::check(charsmap)?;
        let precompiled =
            Precompiled::from(charsmap).map_err(|e| ModelError::Tokenizer(format!("precompiled_charsmap: {e}")))?;
        steps.push(precompiled.into());
    }
    steps.push(Strip::new(false, true).into());
    steps.push(
        Replace::new(ReplacePattern::Regex(" {2,}".into()), SPIECE_UNDERLINE.to_string())
            .map_err(tokenizer_error)?
            .into(),
    );
    Ok(Sequence::new(steps).into())
}

/// A Unigram tokenizer over `vocab` with SpmConverter's normalizer,
/// Metaspace pre-tokenizer and Metaspace decoder; no added tokens.
fn assemble(
    model: &SpmModel,
    vocab: Vec<(String, f64)>,
    unk_id: Option<usize>,
    byte_fallback: bool,
    scheme: PrependScheme,
) -> Result<Tokenizer> {
    if model.model_type != SpmModelType::Unigram {
        return Err(ModelError::Unsupported(format!(
            "SentencePiece model type {:?}: only Unigram models are converted",
            model.model_type
        )));
    }
    let unigram = Unigram::from(vocab, unk_id, byte_fallback).map_err(tokenizer_error)?;
    let mut tokenizer = Tokenizer::new(unigram);
    tokenizer.with_normalizer(Some(spm_normalizer(model)?));
    tokenizer.with_pre_tokenizer(Some(Metaspace::new(SPIECE_UNDERLINE, scheme, true)));
    tokenizer.with_decoder(Some(MetaspaceDecoder::new(SPIECE_UNDERLINE, scheme, true)));
    Ok(tokenizer)
}

/// SpmConverter.tokenizer's added tokens: control pieces (special) and
/// user-defined pieces (not special), in id order, none normalized.
fn spm_added_tokens(model: &SpmModel) -> Vec<AddedToken> {
    model
        .pieces
        .iter()
        .filter_map(|(piece, _, kind)| match kind {
            PieceType::Control => Some(AddedToken::from(piece.as_str(), true).normalized(false)),
            PieceType::UserDefined => Some(AddedToken::from(piece.as_str(), false).normalized(false)),
            _ => None,
        })
        .collect()
}

/// The `tokenizers` equivalent of the model (pieces only; no post-processor),
/// as transformers' SpmConverter builds it: Unigram over (piece, score) with
/// the trainer's unk id and no byte fallback, control and user-defined pieces
/// as added tokens, Precompiled + Strip(right) + Replace(" {2,}" -> "▁")
/// normalizer, Metaspace pre-tokenizer and decoder with `scheme` (see
/// [`prepend_scheme`]).
pub fn unigram_tokenizer(model: &SpmModel, scheme: PrependScheme) -> Result<Tokenizer> {
    let vocab = model.pieces.iter().map(|(p, s, _)| (p.clone(), *s)).collect();
    let unk_id = model.unk_id.map(|id| id as usize);
    let mut tokenizer = assemble(model, vocab, unk_id, false, scheme)?;
    let added = spm_added_tokens(model);
    if !added.is_empty() {
        tokenizer.add_tokens(&added);
    }
    Ok(tokenizer)
}

// ---------------------------------------------------------------------------
// tokenizer_config.json, the fields SentencePiece tokenizers read.
// ---------------------------------------------------------------------------

/// An AddedToken as tokenizer_config.json's `added_tokens_decoder` writes it.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct AddedTokenSpec {
    pub content: String,
    #[serde(default)]
    single_word: bool,
    #[serde(default)]
    pub lstrip: bool,
    #[serde(default)]
    pub rstrip: bool,
    #[serde(default)]
    normalized: bool,
    #[serde(default)]
    special: bool,
}

impl AddedTokenSpec {
    fn to_added_token(&self, special: bool) -> AddedToken {
        AddedToken::from(self.content.as_str(), special)
            .single_word(self.single_word)
            .lstrip(self.lstrip)
            .rstrip(self.rstrip)
            .normalized(self.normalized)
    }
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct SpmTokenizerConfig {
    #[serde(default)]
    model_max_length: Option<f64>,
    #[serde(default)]
    pub eos_token: Option<Value>,
    #[serde(default)]
    pub unk_token: Option<Value>,
    #[serde(default)]
    pub pad_token: Option<Value>,
    #[serde(default)]
    additional_special_tokens: Option<Vec<Value>>,
    #[serde(default)]
    pub added_tokens_decoder: Option<BTreeMap<String, AddedTokenSpec>>,
    // T5
    #[serde(default)]
    extra_ids: Option<usize>,
    #[serde(default)]
    legacy: Option<bool>,
    #[serde(default)]
    add_prefix_space: Option<bool>,
    // Marian
    #[serde(default)]
    separate_vocabs: Option<bool>,
    // SpeechT5: spell numbers out before tokenizing.
    #[serde(default)]
    pub normalize: Option<bool>,
}

impl SpmTokenizerConfig {
    /// tokenizer_config.json, with special_tokens_map.json filling in the
    /// special tokens it does not name; both optional.
    pub(crate) fn read(dir: &Path) -> Result<Self> {
        let path = dir.join("tokenizer_config.json");
        let mut config: SpmTokenizerConfig = if is_present(&path) {
            read_json(&path)?
        } else {
            Self::default()
        };
        let map_path = dir.join("special_tokens_map.json");
        if is_present(&map_path) {
            let map: SpmTokenizerConfig = read_json(&map_path)?;
            config.eos_token = config.eos_token.or(map.eos_token);
            config.unk_token = config.unk_token.or(map.unk_token);
            config.pad_token = config.pad_token.or(map.pad_token);
            config.additional_special_tokens = config.additional_special_tokens.or(map.additional_special_tokens);
        }
        Ok(config)
    }

    pub(crate) fn model_max_length(&self) -> usize {
        match self.model_max_length {
            // transformers writes a huge sentinel (1e30) when there is no limit.
            Some(m) if m > 0.0 && m < 1e9 => m as usize,
            _ => 512,
        }
    }
}

/// A special token's text: a string, or an AddedToken object with `content`.
pub(crate) fn token_content(value: Option<&Value>, default: &str) -> String {
    match value {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Object(o)) => o.get("content").and_then(Value::as_str).unwrap_or(default).to_string(),
        _ => default.to_string(),
    }
}

// ---------------------------------------------------------------------------
// T5 from spiece.model.
// ---------------------------------------------------------------------------

/// T5TokenizerFast for a directory with `spiece.model` and no tokenizer.json:
/// T5Tokenizer (slow) converted by T5Converter, then the special tokens
/// PreTrainedTokenizerFast adds. Reads tokenizer_config.json /
/// special_tokens_map.json when present: `extra_ids` (100), `legacy` (true),
/// `add_prefix_space` (true), eos / unk / pad tokens, additional special
/// tokens and `added_tokens_decoder`. Encodes and decodes like the
/// tokenizer.json transformers would save: the vocabulary gets
/// `<extra_id_{n-1}>` .. `<extra_id_0>` after the pieces, and the
/// post-processor appends `</s>`.
pub fn t5_tokenizer(dir: &Path) -> Result<Tokenizer> {
    let spm_path = dir.join("spiece.model");
    if !is_present(&spm_path) {
        return Err(ModelError::MissingFile {
            dir: dir.to_path_buf(),
            what: "spiece.model".into(),
            expected: "T5's SentencePiece model (or a tokenizer.json)".into(),
        });
    }
    let model = SpmModel::from_file(&spm_path)?;
    let config = SpmTokenizerConfig::read(dir)?;
    let bad_config = |message: String| ModelError::bad_file(dir.join("tokenizer_config.json"), message);

    // T5Tokenizer.__init__: the sentinels are the additional special tokens
    // unless the config names its own.
    let extra_ids = config.extra_ids.unwrap_or(100);
    let mut additional: Vec<String> = config
        .additional_special_tokens
        .iter()
        .flatten()
        .map(|v| token_content(Some(v), ""))
        .filter(|s| !s.is_empty())
        .collect();
    let sentinels = additional.iter().filter(|t| t.contains("<extra_id_")).count();
    if config.additional_special_tokens.is_none() || sentinels == 0 {
        additional.extend((0..extra_ids).map(|i| format!("<extra_id_{i}>")));
    } else if extra_ids > 0 && extra_ids != sentinels {
        return Err(bad_config(format!(
            "extra_ids is {extra_ids} but additional_special_tokens has {sentinels} <extra_id_N> tokens"
        )));
    }

    // T5Converter: pieces, then the sentinels in reverse, score 0.
    let mut vocab: Vec<(String, f64)> = model.pieces.iter().map(|(p, s, _)| (p.clone(), *s)).collect();
    vocab.extend((0..extra_ids).rev().map(|i| (format!("<extra_id_{i}>"), 0.0)));
    let scheme = prepend_scheme(config.add_prefix_space.unwrap_or(true), config.legacy.unwrap_or(true));
    let unk_id = model.unk_id.map(|id| id as usize);
    let mut tokenizer = assemble(&model, vocab, unk_id, false, scheme)?;
    let converted = spm_added_tokens(&model);
    if !converted.is_empty() {
        tokenizer.add_tokens(&converted);
    }

    // PreTrainedTokenizerFast.__init__: the config's added tokens (in id
    // order), then the special tokens not added yet; a token is special if
    // either says so.
    let eos = token_content(config.eos_token.as_ref(), "</s>");
    let unk = token_content(config.unk_token.as_ref(), "<unk>");
    let pad = token_content(config.pad_token.as_ref(), "<pad>");
    let mut special_tokens = vec![eos, unk, pad];
    special_tokens.extend(additional);
    let mut from_config: Vec<(u64, &AddedTokenSpec)> = Vec::new();
    for (id, spec) in config.added_tokens_decoder.iter().flatten() {
        let id = id
            .parse()
            .map_err(|_| bad_config(format!("added_tokens_decoder key {id:?} is not an id")))?;
        from_config.push((id, spec));
    }
    from_config.sort_by_key(|(id, _)| *id);
    let mut to_add: Vec<AddedToken> = from_config
        .iter()
        .map(|(_, spec)| spec.to_added_token(spec.special || special_tokens.contains(&spec.content)))
        .collect();
    for content in &special_tokens {
        let present = converted.iter().chain(to_add.iter()).any(|t| &t.content == content);
        if !present {
            to_add.push(AddedToken::from(content.as_str(), true).normalized(false));
        }
    }
    if !to_add.is_empty() {
        tokenizer.add_tokens(&to_add);
    }

    let eos_id = tokenizer
        .token_to_id("</s>")
        .ok_or_else(|| ModelError::bad_file(&spm_path, "it has no </s> piece"))?;
    let post_processor = TemplateProcessing::builder()
        .try_single("$A </s>")
        .and_then(|b| b.try_pair("$A </s> $B </s>"))
        .map_err(tokenizer_error)?
        .special_tokens(vec![("</s>", eos_id)])
        .build()
        .map_err(tokenizer_error)?;
    tokenizer.with_post_processor(Some(post_processor));
    Ok(tokenizer)
}

// ---------------------------------------------------------------------------
// Decoding pieces as SentencePieceProcessor.decode_pieces does.
// ---------------------------------------------------------------------------

/// SentencePieceProcessor::Decode over piece strings: control pieces vanish,
/// `<unk>` becomes the unknown surface, other pieces the model lacks are kept
/// as they are, byte pieces are joined into UTF-8 (U+FFFD per invalid byte),
/// "▁" becomes a space, and the leading "▁" of the text is dropped (of every
/// piece until the text is not empty, when the model removes extra
/// whitespace).
pub struct PieceDecoder {
    ids: HashMap<String, (u32, PieceType)>,
    unk_id: u32,
    unk_piece: String,
    unk_surface: String,
    add_dummy_prefix: bool,
    remove_extra_whitespaces: bool,
}

impl PieceDecoder {
    /// Fails for a model with denormalization rules (rare: trained with
    /// `--denormalization_rule_tsv`), which decoding would have to apply.
    pub fn new(model: &SpmModel) -> Result<Self> {
        if model.denormalizer.is_some() {
            return Err(ModelError::Unsupported(
                "a SentencePiece model with denormalization rules (denormalizer_spec)".into(),
            ));
        }
        let mut ids = HashMap::with_capacity(model.pieces.len());
        for (id, (piece, _, kind)) in model.pieces.iter().enumerate() {
            ids.entry(piece.clone()).or_insert((id as u32, *kind));
        }
        let unk_id = model
            .pieces
            .iter()
            .position(|(_, _, kind)| *kind == PieceType::Unknown)
            .ok_or_else(|| ModelError::Tokenizer("the SentencePiece model has no unknown piece".into()))?
            as u32;
        Ok(PieceDecoder {
            ids,
            unk_id,
            unk_piece: model.pieces[unk_id as usize].0.clone(),
            unk_surface: model.unk_surface.clone(),
            add_dummy_prefix: model.normalizer.add_dummy_prefix,
            remove_extra_whitespaces: model.normalizer.remove_extra_whitespaces,
        })
    }

    fn lookup(&self, piece: &str) -> (u32, PieceType) {
        self.ids
            .get(piece)
            .copied()
            .unwrap_or((self.unk_id, PieceType::Unknown))
    }

    pub fn decode_pieces(&self, pieces: &[&str]) -> String {
        let mut text = String::new();
        let mut bytes: Vec<u8> = Vec::new();
        let mut is_bos_ws = true;
        let mut bos_ws_seen = false;
        for piece in pieces {
            let (_, kind) = self.lookup(piece);
            if kind == PieceType::Byte {
                if let Some(b) = piece_to_byte(piece) {
                    bytes.push(b);
                    continue;
                }
            }
            push_bytes(&mut text, &mut bytes);
            if bos_ws_seen || !text.is_empty() {
                is_bos_ws = false;
            }
            bos_ws_seen = false;
            match kind {
                PieceType::Control => {}
                PieceType::Unknown if *piece == self.unk_piece => text.push_str(&self.unk_surface),
                PieceType::Unknown => text.push_str(piece),
                _ => {
                    let mut piece: &str = piece;
                    if is_bos_ws && (self.add_dummy_prefix || self.remove_extra_whitespaces) {
                        if let Some(rest) = piece.strip_prefix(SPIECE_UNDERLINE) {
                            piece = rest;
                            // with extra whitespace removed, every leading "▁" goes
                            bos_ws_seen = !self.remove_extra_whitespaces;
                        }
                    }
                    text.push_str(&piece.replace(SPIECE_UNDERLINE, " "));
                }
            }
        }
        push_bytes(&mut text, &mut bytes);
        text
    }
}

/// `<0xAB>` -> 0xAB.
fn piece_to_byte(piece: &str) -> Option<u8> {
    let hex = piece.strip_prefix("<0x")?.strip_suffix('>')?;
    (hex.len() == 2).then(|| u8::from_str_radix(hex, 16).ok()).flatten()
}

/// Appends byte pieces as text, one character at a time; an invalid byte
/// becomes U+FFFD on its own, as SentencePiece does.
fn push_bytes(text: &mut String, bytes: &mut Vec<u8>) {
    let mut rest: &[u8] = bytes;
    while !rest.is_empty() {
        let len = match rest[0] {
            0x00..=0x7f => 1,
            0xc0..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf7 => 4,
            _ => 0,
        };
        match rest
            .get(..len)
            .and_then(|c| std::str::from_utf8(c).ok())
            .filter(|_| len > 0)
        {
            Some(c) => {
                text.push_str(c);
                rest = &rest[len..];
            }
            None => {
                text.push(char::REPLACEMENT_CHARACTER);
                rest = &rest[1..];
            }
        }
    }
    bytes.clear();
}

// ---------------------------------------------------------------------------
// MarianTokenizer.
// ---------------------------------------------------------------------------

/// Whether Python's `str.strip()` strips `c`: Unicode whitespace plus the
/// ASCII separators U+001C..U+001F.
pub(crate) fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.strip()`.
fn python_strip(s: &str) -> &str {
    s.trim_matches(is_python_space)
}

/// MarianTokenizer (models/marian/tokenization_marian.py): source.spm splits
/// text into piece strings, vocab.json gives their ids (pieces it lacks get
/// the unk id) and `</s>` is appended; decoding maps ids back through
/// vocab.json (target_vocab.json with `separate_vocabs`), drops the special
/// tokens and joins the pieces as target.spm's decode_pieces does.
///
/// The source side is source.spm as a `tokenizers` Unigram built like
/// SpmConverter builds one (less the pieces SentencePiece never matches),
/// which gives SentencePiece's pieces for models with the default
/// whitespace handling (opus-mt's); user-defined pieces get no special
/// treatment.
pub struct MarianTokenizer {
    source: Tokenizer,
    encoder: HashMap<String, i64>,
    decoder: HashMap<i64, String>,
    target: PieceDecoder,
    /// `</s>`, `<unk>`, `<pad>` (or what tokenizer_config.json names) with
    /// their vocab.json ids: split out of the text before SentencePiece, and
    /// dropped when decoding.
    special: Vec<(String, i64)>,
    eos_id: i64,
    unk_id: i64,
    pad_id: i64,
    unk_token: String,
    model_max_length: usize,
}

/// source.spm as a Unigram that yields SentencePiece's piece strings (only
/// the strings are used: vocab.json gives the ids). Unlike SpmConverter's,
/// its vocabulary leaves out the pieces SentencePiece never matches in text:
/// control pieces (so that "<s>" in the text is "<", "s", ">" as with
/// SentencePiece), unused pieces, and byte pieces unless the model falls back
/// to bytes.
fn marian_source(model: &SpmModel, scheme: PrependScheme) -> Result<Tokenizer> {
    let mut vocab = Vec::with_capacity(model.pieces.len());
    let mut unk_id = None;
    for (id, (piece, score, kind)) in model.pieces.iter().enumerate() {
        let matched = match kind {
            PieceType::Control | PieceType::Unused => false,
            PieceType::Byte => model.byte_fallback,
            PieceType::Normal | PieceType::Unknown | PieceType::UserDefined => true,
        };
        if matched {
            if model.unk_id == Some(id as u32) {
                unk_id = Some(vocab.len());
            }
            vocab.push((piece.clone(), *score));
        }
    }
    assemble(model, vocab, unk_id, model.byte_fallback, scheme)
}

impl MarianTokenizer {
    /// Loads source.spm, target.spm, vocab.json and (optional)
    /// tokenizer_config.json from `dir`.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let require = |name: &str, expected: &str| {
            let path = dir.join(name);
            if is_present(&path) {
                Ok(path)
            } else {
                Err(ModelError::MissingFile {
                    dir: dir.to_path_buf(),
                    what: name.into(),
                    expected: expected.into(),
                })
            }
        };
        let source_path = require("source.spm", "the source language's SentencePiece model")?;
        let target_path = require("target.spm", "the target language's SentencePiece model")?;
        let vocab_path = require("vocab.json", "MarianTokenizer's vocabulary (piece -> id)")?;
        let config = SpmTokenizerConfig::read(dir)?;

        let source_model = SpmModel::from_file(&source_path)?;
        let scheme = if source_model.normalizer.add_dummy_prefix {
            PrependScheme::Always
        } else {
            PrependScheme::Never
        };
        let source = marian_source(&source_model, scheme).map_err(|e| ModelError::bad_file(&source_path, e))?;
        let target = PieceDecoder::new(&SpmModel::from_file(&target_path)?)
            .map_err(|e| ModelError::bad_file(&target_path, e))?;

        let encoder: HashMap<String, i64> = read_json_within(&vocab_path, TOKENIZER_LIMIT)?;
        let decoder = if config.separate_vocabs.unwrap_or(false) {
            let path = require("target_vocab.json", "the target vocabulary (separate_vocabs is set)")?;
            let target_vocab: HashMap<String, i64> = read_json_within(&path, TOKENIZER_LIMIT)?;
            target_vocab.into_iter().map(|(piece, id)| (id, piece)).collect()
        } else {
            encoder.iter().map(|(piece, id)| (*id, piece.clone())).collect()
        };
        let token_id = |value: Option<&Value>, default: &str| {
            let content = token_content(value, default);
            match encoder.get(&content) {
                Some(id) => Ok((content, *id)),
                None => Err(ModelError::bad_file(&vocab_path, format!("it has no {content} token"))),
            }
        };
        let eos = token_id(config.eos_token.as_ref(), "</s>")?;
        let unk = token_id(config.unk_token.as_ref(), "<unk>")?;
        let pad = token_id(config.pad_token.as_ref(), "<pad>")?;
        Ok(MarianTokenizer {
            source,
            eos_id: eos.1,
            unk_id: unk.1,
            pad_id: pad.1,
            unk_token: unk.0.clone(),
            special: vec![eos, unk, pad],
            encoder,
            decoder,
            target,
            model_max_length: config.model_max_length(),
        })
    }

    pub fn pad_id(&self) -> i64 {
        self.pad_id
    }

    pub fn eos_id(&self) -> i64 {
        self.eos_id
    }

    pub fn unk_id(&self) -> i64 {
        self.unk_id
    }

    /// tokenizer_config.json's `model_max_length` (512 when it has none).
    pub fn model_max_length(&self) -> usize {
        self.model_max_length
    }

    /// The piece strings of `text` (MarianTokenizer.tokenize): special tokens
    /// split out first, a leading `>>xx<<` language code of each part kept
    /// whole, the rest through source.spm.
    pub fn tokenize(&self, text: &str) -> Result<Vec<String>> {
        let mut tokens = Vec::new();
        for (part, is_special) in self.split_special(text) {
            if part.is_empty() {
                continue;
            }
            if is_special {
                tokens.push(part.to_string());
                continue;
            }
            let mut rest = part;
            if part.starts_with(">>") {
                if let Some(end) = part.find("<<") {
                    tokens.push(part[..end + 2].to_string());
                    rest = &part[end + 2..];
                }
            }
            if rest.is_empty() {
                continue;
            }
            let encoding = self.source.encode(rest, false).map_err(tokenizer_error)?;
            tokens.extend(encoding.get_tokens().iter().cloned());
        }
        Ok(tokens)
    }

    /// `tokenizer(text, truncation=max_length.is_some(), max_length=...)`:
    /// the pieces' ids, cut to `max_length - 1`, then `</s>`.
    pub fn encode(&self, text: &str, max_length: Option<usize>) -> Result<Vec<i64>> {
        let mut ids: Vec<i64> = self
            .tokenize(text)?
            .iter()
            .map(|token| {
                self.special
                    .iter()
                    .find(|(content, _)| content == token)
                    .map(|(_, id)| *id)
                    .or_else(|| self.encoder.get(token).copied())
                    .unwrap_or(self.unk_id)
            })
            .collect();
        if let Some(max_length) = max_length {
            ids.truncate(max_length.saturating_sub(1));
        }
        ids.push(self.eos_id);
        Ok(ids)
    }

    /// `tokenizer.decode(ids, skip_special_tokens=True)` (no clean-up, as the
    /// translation pipeline decodes).
    pub fn decode(&self, ids: &[i64]) -> Result<String> {
        let pieces: Vec<&str> = ids
            .iter()
            .filter(|id| !self.special.iter().any(|(_, s)| s == *id))
            .map(|id| self.decoder.get(id).map_or(self.unk_token.as_str(), String::as_str))
            .filter(|token| !self.special.iter().any(|(content, _)| content == token))
            .collect();
        let text = self.target.decode_pieces(&pieces).replace(SPIECE_UNDERLINE, " ");
        Ok(python_strip(&text).to_string())
    }

    /// The text cut around occurrences of the special tokens (leftmost, the
    /// longest at a position), as PreTrainedTokenizer.tokenize's trie does.
    fn split_special<'t>(&self, text: &'t str) -> Vec<(&'t str, bool)> {
        let mut parts = Vec::new();
        let mut start = 0;
        let mut pos = 0;
        while pos < text.len() {
            let found = self
                .special
                .iter()
                .map(|(content, _)| content.as_str())
                .filter(|c| !c.is_empty() && text[pos..].starts_with(c))
                .max_by_key(|c| c.len());
            match found {
                Some(token) => {
                    parts.push((&text[start..pos], false));
                    parts.push((&text[pos..pos + token.len()], true));
                    pos += token.len();
                    start = pos;
                }
                None => pos += text[pos..].chars().next().map_or(1, char::len_utf8),
            }
        }
        parts.push((&text[start..], false));
        parts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(text: &str, score: f32, kind: i32) -> SentencePieceProto {
        SentencePieceProto {
            piece: Some(text.into()),
            score: Some(score),
            kind: Some(kind),
        }
    }

    /// A tiny Unigram model: <unk>, <s>, </s>, ▁, a, b, ▁ab, <0xE2> <0x98> <0x83>.
    fn tiny_model() -> Vec<u8> {
        ModelProto {
            pieces: vec![
                piece("<unk>", 0.0, 2),
                piece("<s>", 0.0, 3),
                piece("</s>", 0.0, 3),
                piece("\u{2581}", -1.0, 1),
                piece("a", -2.0, 1),
                piece("b", -2.0, 1),
                piece("\u{2581}ab", -1.5, 1),
                piece("<0xE2>", 0.0, 6),
                piece("<0x98>", 0.0, 6),
                piece("<0x83>", 0.0, 6),
            ],
            trainer_spec: Some(TrainerSpecProto {
                model_type: Some(1),
                ..Default::default()
            }),
            normalizer_spec: None,
            denormalizer_spec: None,
        }
        .encode_to_vec()
    }

    #[test]
    fn parses_pieces_and_applies_proto2_defaults() {
        let model = SpmModel::from_bytes(&tiny_model()).unwrap();
        assert_eq!(model.pieces.len(), 10);
        assert_eq!(model.pieces[0], ("<unk>".to_string(), 0.0, PieceType::Unknown));
        assert_eq!(model.pieces[6], ("\u{2581}ab".to_string(), -1.5, PieceType::Normal));
        assert_eq!(model.pieces[7].2, PieceType::Byte);
        assert_eq!(model.model_type, SpmModelType::Unigram);
        assert_eq!(
            (model.unk_id, model.bos_id, model.eos_id, model.pad_id),
            (Some(0), Some(1), Some(2), None)
        );
        assert!(!model.byte_fallback);
        assert_eq!(model.unk_surface, " \u{2047} ");
        assert!(model.normalizer.add_dummy_prefix && model.normalizer.remove_extra_whitespaces);
        assert!(model.normalizer.precompiled_charsmap.is_empty());
        assert!(model.denormalizer.is_none());
    }

    #[test]
    fn rejects_what_is_not_a_model() {
        assert!(SpmModel::from_bytes(b"{\"not\": \"protobuf\"}").is_err());
        assert!(SpmModel::from_bytes(&[]).is_err());
    }

    #[test]
    fn unigram_tokenizer_splits_like_spm_converter() {
        let model = SpmModel::from_bytes(&tiny_model()).unwrap();
        let tokenizer = unigram_tokenizer(&model, PrependScheme::Always).unwrap();
        let encoding = tokenizer.encode("  ab  b ", false).unwrap();
        assert_eq!(encoding.get_tokens(), ["\u{2581}ab", "\u{2581}", "b"]);
        // control pieces are special added tokens
        let encoding = tokenizer.encode("a</s>", false).unwrap();
        assert_eq!(encoding.get_ids(), [3, 4, 2]);
        assert_eq!(tokenizer.decode(&[6, 3, 5, 2], true).unwrap(), "ab b");
    }

    #[test]
    fn prepend_scheme_follows_the_converter() {
        assert_eq!(prepend_scheme(true, true), PrependScheme::Always);
        assert_eq!(prepend_scheme(true, false), PrependScheme::First);
        assert_eq!(prepend_scheme(false, true), PrependScheme::Never);
    }

    #[test]
    fn decode_pieces_like_sentencepiece() {
        let model = SpmModel::from_bytes(&tiny_model()).unwrap();
        let decoder = PieceDecoder::new(&model).unwrap();
        // first piece's leading "▁" dropped, control pieces invisible
        assert_eq!(
            decoder.decode_pieces(&["<s>", "\u{2581}ab", "\u{2581}", "b", "</s>"]),
            "ab b"
        );
        // <unk> is the unknown surface; pieces the model lacks stay as they are
        assert_eq!(decoder.decode_pieces(&["<unk>", "\u{2581}zz"]), " \u{2047} \u{2581}zz");
        // byte pieces are UTF-8; a stray byte is U+FFFD on its own
        assert_eq!(
            decoder.decode_pieces(&["a", "<0xE2>", "<0x98>", "<0x83>", "b"]),
            "a\u{2603}b"
        );
        assert_eq!(
            decoder.decode_pieces(&["a", "<0xE2>", "<0x98>", "b"]),
            "a\u{fffd}\u{fffd}b"
        );
        assert_eq!(decoder.decode_pieces(&[]), "");
    }

    #[test]
    fn python_strip_strips_what_python_does() {
        assert_eq!(python_strip(" \t\u{1f}a b\u{3000}\n"), "a b");
        assert_eq!(python_strip("\u{200b}a"), "\u{200b}a");
    }
}
