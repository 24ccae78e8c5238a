//! Loading an encoder-decoder model (BART, Marian, T5) for summarization
//! and translation, with its tokenizer, its generation settings and the
//! limits on its inputs and outputs.

use std::path::Path;
use std::sync::Mutex;

use tch::{nn::VarStore, Device};

use crate::auto::Build;
use crate::core::checks::build_fallibly;
use crate::core::config::{config_path, is_present, read_json, CommonConfig};
use crate::core::decoding::Seq2SeqLm;
use crate::core::int8::{build_quantized, Quantization};
use crate::core::precision::Precision;
use crate::core::weights::{Checkpoint, LoadedWeights};
use crate::generation::{GenerationSettings, ModelSettings};
use crate::text::sentencepiece::MarianTokenizer;
use crate::text::tokenizer::{longer_than_positions, TextTokenizer};
use crate::{ModelError, Result};

/// The tokenizer of an encoder-decoder model: a tokenizer.json, or
/// Marian's SentencePiece models with their joint vocabulary.
pub enum Seq2SeqTokenizer {
    /// Locked because the tokenizers crate sets truncation on the tokenizer
    /// itself, and a request may ask for its own.
    Text(Mutex<TextTokenizer>),
    Marian {
        tokenizer: MarianTokenizer,
        /// The smaller of model_max_length and the positions.
        max_length: usize,
        positions: usize,
    },
}

impl Seq2SeqTokenizer {
    /// Token ids with the special tokens the model expects, cut as
    /// pipeline()'s `truncation` asks (see `TextTokenizer::encode_truncating`;
    /// None: at the model's maximum where it has positions, T5's inputs
    /// whole).
    pub fn encode(&self, text: &str, truncation: Option<bool>) -> Result<Vec<i64>> {
        match self {
            Seq2SeqTokenizer::Text(t) => {
                let mut t = t.lock().expect("tokenizer lock");
                Ok(t.encode_truncating(text, None, truncation)?
                    .get_ids()
                    .iter()
                    .map(|&id| id as i64)
                    .collect())
            }
            Seq2SeqTokenizer::Marian {
                tokenizer,
                max_length,
                positions,
            } => {
                if truncation != Some(false) {
                    return tokenizer.encode(text, Some(*max_length));
                }
                let ids = tokenizer.encode(text, None)?;
                if ids.len() > *positions {
                    return Err(longer_than_positions(ids.len(), *positions, *max_length));
                }
                Ok(ids)
            }
        }
    }

    /// Text without special tokens (clean-up of spaces off, as pipeline()
    /// decodes generated text).
    pub fn decode(&self, ids: &[i64]) -> Result<String> {
        match self {
            Seq2SeqTokenizer::Text(t) => {
                let ids: Vec<u32> = ids.iter().map(|&id| id as u32).collect();
                t.lock().expect("tokenizer lock").decode_with(&ids, true, false)
            }
            Seq2SeqTokenizer::Marian { tokenizer, .. } => tokenizer.decode(ids),
        }
    }
}

/// The longest input (in tokens, after any truncation) a model takes unless
/// configured otherwise, and T5's longest output. T5 has no position table,
/// so nothing else bounds its lengths, and its encoder's memory grows with
/// the square of the input's. BART and Marian truncate their inputs to
/// their position tables (1024 tokens at most in the released checkpoints),
/// so the limit only matters to them when it is set lower.
pub const DEFAULT_MAX_INPUT_TOKENS: usize = 4096;

/// A loaded encoder-decoder model with its tokenizer and generation
/// settings.
pub struct Seq2SeqModel {
    pub net: Box<dyn Seq2SeqLm + Send>,
    _vs: VarStore,
    /// Its tensors, shared with other models loaded from the same files.
    _weights: LoadedWeights,
    pub tokenizer: Seq2SeqTokenizer,
    /// generation_config.json (or, without one, config.json) and
    /// config.json's `task_specific_params`.
    pub settings: ModelSettings,
    pub architecture: String,
    pub memory_bytes: u64,
    /// The one direction a model translates, from tokenizer_config.json's
    /// `source_lang` and `target_lang` (Marian checkpoints have them).
    pub direction: Option<(String, String)>,
    /// Longer inputs are refused (DEFAULT_MAX_INPUT_TOKENS unless set).
    pub max_input_tokens: usize,
    /// The most decoder positions, start token included: the position
    /// table's size, or DEFAULT_MAX_INPUT_TOKENS for T5.
    pub max_output_length: usize,
}

impl Seq2SeqModel {
    /// The `task_specific_params` entry of `task`, and its `prefix`.
    pub fn task(&self, task: &str) -> Result<(Option<GenerationSettings>, String)> {
        self.settings.task(task)
    }
}

/// Loads the encoder-decoder checkpoint in `dir` on `device` in
/// `precision`, its linear layers quantized as `quantization` asks.
pub fn load_seq2seq(
    dir: &Path,
    device: Device,
    quantization: Quantization,
    precision: Precision,
) -> Result<Seq2SeqModel> {
    let config_file = config_path(dir)?;
    let architecture = CommonConfig::from_dir(dir)?.architecture(&config_file)?;
    let Build::Seq2Seq(build) =
        crate::auto::find(&architecture, "summarization", "for summarization and translation")?.build
    else {
        return Err(ModelError::Unsupported(format!(
            "{architecture} is not an encoder-decoder"
        )));
    };
    let mut vs = VarStore::new(device);
    vs.set_kind(precision.kind());
    quantization.check(device, vs.root().kind())?;
    let checkpoint = Checkpoint::open(dir)?;
    let (built, int8) = build_quantized(quantization, || {
        build_fallibly(|| build(vs.root(), &config_file, checkpoint.shapes()))
    });
    let built = built?;
    let net = built.net;
    // None: T5's relative positions have no table to outgrow; pipeline()
    // does not truncate its inputs.
    let positions = built.positions;
    let weights = checkpoint.load_shared(&mut vs)?;
    let int8_bytes = int8.pack()?;
    let settings = ModelSettings::from_dir(dir, &config_file, true)?;
    #[derive(serde::Deserialize)]
    struct Padding {
        #[serde(default)]
        pad_token_id: Option<i64>,
    }
    let padding: Padding = read_json(&config_file)?;
    let tokenizer = if !is_present(&dir.join("tokenizer.json")) && is_present(&dir.join("source.spm")) {
        let tokenizer = MarianTokenizer::from_dir(dir)?;
        let positions = positions.unwrap_or(usize::MAX);
        Seq2SeqTokenizer::Marian {
            // truncation=True cuts at model_max_length, as the slow
            // MarianTokenizer does, and the positions bound it.
            max_length: tokenizer.model_max_length().min(positions),
            positions,
            tokenizer,
        }
    } else {
        let mut tokenizer =
            TextTokenizer::from_dir(dir, positions.unwrap_or(usize::MAX), padding.pad_token_id.unwrap_or(1))?;
        if positions.is_none() {
            tokenizer.disable_truncation()?;
        }
        Seq2SeqTokenizer::Text(Mutex::new(tokenizer))
    };
    #[derive(serde::Deserialize, Default)]
    struct Languages {
        source_lang: Option<String>,
        target_lang: Option<String>,
    }
    let tokenizer_config = dir.join("tokenizer_config.json");
    let languages: Languages = if is_present(&tokenizer_config) {
        read_json(&tokenizer_config).unwrap_or_default()
    } else {
        Languages::default()
    };
    Ok(Seq2SeqModel {
        direction: languages.source_lang.zip(languages.target_lang),
        net,
        memory_bytes: weights.bytes + int8_bytes,
        _vs: vs,
        _weights: weights,
        tokenizer,
        settings,
        architecture,
        max_input_tokens: DEFAULT_MAX_INPUT_TOKENS,
        max_output_length: positions.unwrap_or(DEFAULT_MAX_INPUT_TOKENS),
    })
}
