//! Generation settings, one type for every generative model: what a
//! generation_config.json, a config.json, a `task_specific_params` entry or
//! a request says ([`GenerationSettings`], every field optional), and what
//! one generation runs with once they are resolved ([`GenerationParams`]).
//! The two pipelines resolve them differently, as transformers does:
//! [`resolve_text_generation`] as TextGenerationPipeline,
//! [`resolve_text2text`] as Text2TextGenerationPipeline (summarization,
//! translation).

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use crate::core::config::{is_present, read_json};
use crate::{ModelError, Result};

/// Hypotheses (inputs times `num_beams`) decoded together at most; more
/// inputs are split into several batches, but one input never is.
pub const MAX_BATCH_ROWS: usize = 64;

/// One id or a list of ids, as generation_config.json allows.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum TokenIds {
    One(i64),
    Many(Vec<i64>),
}

impl TokenIds {
    pub fn to_vec(&self) -> Vec<i64> {
        match self {
            TokenIds::One(id) => vec![*id],
            TokenIds::Many(ids) => ids.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EarlyStopping {
    /// Stop once `num_beams` hypotheses are finished.
    True,
    /// Stop when the heuristic says no running beam can do better.
    False,
    /// Canonical beam search: stop only when no beam can do better.
    Never,
}

/// `early_stopping` as generation configs write it: a bool or "never".
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum EarlyStoppingValue {
    Bool(bool),
    Text(String),
}

impl EarlyStoppingValue {
    pub fn parse(&self) -> Result<EarlyStopping> {
        match self {
            EarlyStoppingValue::Bool(true) => Ok(EarlyStopping::True),
            EarlyStoppingValue::Bool(false) => Ok(EarlyStopping::False),
            EarlyStoppingValue::Text(t) => match t.as_str() {
                "true" | "True" => Ok(EarlyStopping::True),
                "false" | "False" => Ok(EarlyStopping::False),
                "never" => Ok(EarlyStopping::Never),
                other => Err(invalid(format!(
                    "early_stopping `{other}`: expected true, false or never"
                ))),
            },
        }
    }
}

/// Generation settings as a file or a request gives them; absent: unset.
/// Field names are transformers' GenerationConfig's.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct GenerationSettings {
    pub max_length: Option<usize>,
    pub max_new_tokens: Option<usize>,
    pub min_length: Option<usize>,
    pub min_new_tokens: Option<usize>,
    pub do_sample: Option<bool>,
    pub temperature: Option<f32>,
    pub top_k: Option<usize>,
    pub top_p: Option<f32>,
    pub repetition_penalty: Option<f32>,
    pub no_repeat_ngram_size: Option<usize>,
    pub num_beams: Option<usize>,
    pub num_return_sequences: Option<usize>,
    pub length_penalty: Option<f64>,
    pub early_stopping: Option<EarlyStoppingValue>,
    pub bad_words_ids: Option<Vec<Vec<i64>>>,
    pub forced_bos_token_id: Option<i64>,
    pub forced_eos_token_id: Option<TokenIds>,
    pub eos_token_id: Option<TokenIds>,
    pub pad_token_id: Option<i64>,
    pub bos_token_id: Option<i64>,
    pub renormalize_logits: Option<bool>,
}

impl GenerationSettings {
    /// Sets every value `other` has.
    pub fn update(&mut self, other: &GenerationSettings) {
        macro_rules! take {
            ($($field:ident),*) => {$(
                if other.$field.is_some() {
                    self.$field = other.$field.clone();
                }
            )*};
        }
        take!(
            max_length,
            max_new_tokens,
            min_length,
            min_new_tokens,
            do_sample,
            temperature,
            top_k,
            top_p,
            repetition_penalty,
            no_repeat_ngram_size,
            num_beams,
            num_return_sequences,
            length_penalty,
            early_stopping,
            bad_words_ids,
            forced_bos_token_id,
            forced_eos_token_id,
            eos_token_id,
            pad_token_id,
            bos_token_id,
            renormalize_logits
        );
    }

    /// These settings without the values equal to GenerationConfig's
    /// defaults (a model's config only overrides the pipeline's defaults
    /// where it departs from them).
    pub fn departures(&self) -> GenerationSettings {
        let mut s = self.clone();
        s.max_length = s.max_length.filter(|&v| v != DEFAULT_MAX_LENGTH);
        s.min_length = s.min_length.filter(|&v| v != 0);
        s.num_beams = s.num_beams.filter(|&v| v != 1);
        s.num_return_sequences = s.num_return_sequences.filter(|&v| v != 1);
        s.length_penalty = s.length_penalty.filter(|&v| v != 1.0);
        s.early_stopping = s.early_stopping.filter(|v| *v != EarlyStoppingValue::Bool(false));
        s.no_repeat_ngram_size = s.no_repeat_ngram_size.filter(|&v| v != 0);
        s
    }

    fn eos_token_ids(&self) -> Option<Vec<i64>> {
        self.eos_token_id.as_ref().map(TokenIds::to_vec)
    }
}

/// GenerationConfig's default `max_length`.
const DEFAULT_MAX_LENGTH: usize = 20;

/// A model's own generation settings: its generation_config.json (or,
/// without one and where the pipeline falls back to it, config.json), and
/// config.json's `task_specific_params`, by task.
#[derive(Debug, Clone, Default)]
pub struct ModelSettings {
    pub file: GenerationSettings,
    pub task_specific: HashMap<String, serde_json::Value>,
}

impl ModelSettings {
    /// Reads `dir`'s generation_config.json, or `fallback_to_config`'s
    /// config.json when there is none and the caller wants it (encoder-decoder
    /// checkpoints written before generation_config.json existed keep their
    /// settings there); and config.json's `task_specific_params`.
    pub fn from_dir(dir: &Path, config_file: &Path, fallback_to_config: bool) -> Result<Self> {
        let generation_file = dir.join("generation_config.json");
        let file: GenerationSettings = if is_present(&generation_file) {
            read_json(&generation_file)?
        } else if fallback_to_config {
            read_json(config_file)?
        } else {
            GenerationSettings::default()
        };
        #[derive(Deserialize)]
        struct TaskParams {
            #[serde(default)]
            task_specific_params: Option<HashMap<String, serde_json::Value>>,
        }
        let extra: TaskParams = read_json(config_file)?;
        Ok(ModelSettings {
            file,
            task_specific: extra.task_specific_params.unwrap_or_default(),
        })
    }

    /// The `task_specific_params` entry of `task` (None when there is
    /// none), and its `prefix` ("" without one). An entry that is not a
    /// valid settings object is the model's fault: FAILED_PRECONDITION.
    pub fn task(&self, task: &str) -> Result<(Option<GenerationSettings>, String)> {
        let Some(value) = self.task_specific.get(task) else {
            return Ok((None, String::new()));
        };
        let settings = serde_json::from_value(value.clone())
            .map_err(|e| ModelError::Unsupported(format!("task_specific_params.{task}: {e}")))?;
        let prefix = value
            .get("prefix")
            .and_then(|p| p.as_str())
            .unwrap_or_default()
            .to_string();
        Ok((Some(settings), prefix))
    }
}

/// The settings of one generation, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationParams {
    /// The most new tokens (an encoder-decoder's decoder start token is
    /// not new: its `max_length` is this plus one).
    pub max_new_tokens: usize,
    /// The shortest sequence, prompt (or start token) included, before EOS
    /// may come (MinLengthLogitsProcessor).
    pub min_length: usize,
    /// The fewest new tokens before EOS may come (MinNewTokensLengthLogitsProcessor).
    pub min_new_tokens: usize,
    pub do_sample: bool,
    pub temperature: f32,
    /// 0: off.
    pub top_k: usize,
    /// 1.0: off.
    pub top_p: f32,
    pub repetition_penalty: f32,
    /// 0: off.
    pub no_repeat_ngram_size: usize,
    pub bad_words_ids: Vec<Vec<i64>>,
    pub forced_bos_token_id: Option<i64>,
    pub forced_eos_token_id: Option<i64>,
    pub eos_token_ids: Vec<i64>,
    /// `renormalize_logits`: log-softmax again after the processors.
    pub renormalize: bool,
    /// 1: greedy or sampling.
    pub num_beams: usize,
    pub num_return_sequences: usize,
    pub length_penalty: f64,
    pub early_stopping: EarlyStopping,
    /// Seed of the sampling RNG (unused when not sampling).
    pub seed: u64,
    /// SuppressTokensLogitsProcessor's tokens, banned at every step.
    pub suppress_tokens: Vec<i64>,
    /// SuppressTokensAtBeginLogitsProcessor's tokens, banned for the
    /// first new token.
    pub begin_suppress_tokens: Vec<i64>,
    /// WhisperTimeStampLogitsProcessor's rules; None: no timestamp tokens.
    pub timestamps: Option<TimestampRules>,
}

/// What WhisperTimeStampLogitsProcessor needs: the token ids of
/// `<|notimestamps|>` and of the first timestamp `<|0.00|>` (the ones after
/// it are the later times), EOS, and how late the first timestamp may be.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimestampRules {
    pub no_timestamps_token_id: i64,
    pub timestamp_begin: i64,
    pub eos_token_id: i64,
    pub max_initial_timestamp_index: Option<i64>,
}

impl Default for GenerationParams {
    /// GenerationConfig's defaults: greedy, 20 tokens, no processors.
    fn default() -> Self {
        GenerationParams {
            max_new_tokens: DEFAULT_MAX_LENGTH,
            min_length: 0,
            min_new_tokens: 0,
            do_sample: false,
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            repetition_penalty: 1.0,
            no_repeat_ngram_size: 0,
            bad_words_ids: vec![],
            forced_bos_token_id: None,
            forced_eos_token_id: None,
            eos_token_ids: vec![],
            renormalize: false,
            num_beams: 1,
            num_return_sequences: 1,
            length_penalty: 1.0,
            early_stopping: EarlyStopping::False,
            seed: 0,
            suppress_tokens: vec![],
            begin_suppress_tokens: vec![],
            timestamps: None,
        }
    }
}

fn invalid(message: impl Into<String>) -> ModelError {
    ModelError::InvalidInput(message.into())
}

/// Refuses a NaN or infinite float setting in a request, naming it.
/// transformers refuses them where it applies a setting (its warpers and
/// processors check `temperature > 0`, `penalty > 0`); NaN is never a
/// setting, so it is refused here even where the setting would go unused
/// (temperature when decoding greedily).
fn check_finite(request: &GenerationSettings) -> Result<()> {
    let floats = [
        ("temperature", request.temperature.map(f64::from)),
        ("top_p", request.top_p.map(f64::from)),
        ("repetition_penalty", request.repetition_penalty.map(f64::from)),
        ("length_penalty", request.length_penalty),
    ];
    match floats.into_iter().find(|(_, v)| v.is_some_and(|v| !v.is_finite())) {
        Some((name, Some(value))) => Err(invalid(format!("{name} must be a finite number, not {value}"))),
        _ => Ok(()),
    }
}

/// pipeline("text-generation")'s own defaults (its `_default_generation_config`).
const PIPELINE_MAX_NEW_TOKENS: usize = 256;
const PIPELINE_TEMPERATURE: f32 = 0.7;
/// GenerationConfig's default top_k.
const DEFAULT_TOP_K: usize = 50;

/// The settings of a text generation as TextGenerationPipeline resolves
/// them: the request's, over the model's `task_specific_params
/// ["text-generation"]`, over its generation_config.json, over the
/// pipeline's defaults (sampling at temperature 0.7, 256 new tokens unless
/// the model sets max_new_tokens or a max_length other than 20).
/// `prompt_len` turns a `max_length` into new tokens; `window` is the
/// model's context (a request may not ask for more). `seed` seeds sampling.
pub fn resolve_text_generation(
    model: &ModelSettings,
    request: &GenerationSettings,
    prompt_len: usize,
    window: usize,
    default_eos: i64,
    seed: u64,
) -> Result<GenerationParams> {
    check_finite(request)?;
    let (task, _) = model.task("text-generation").unwrap_or_default();
    let mut files = model.file.clone();
    if let Some(task) = &task {
        files.update(task);
    }
    let do_sample = request.do_sample.or(files.do_sample).unwrap_or(true);
    let temperature = request
        .temperature
        .or(files.temperature)
        .unwrap_or(PIPELINE_TEMPERATURE);
    let top_p = request.top_p.or(files.top_p).unwrap_or(1.0);
    let repetition_penalty = request.repetition_penalty.or(files.repetition_penalty).unwrap_or(1.0);
    let top_k = request.top_k.or(files.top_k).unwrap_or(DEFAULT_TOP_K);
    let no_repeat_ngram_size = request.no_repeat_ngram_size.or(files.no_repeat_ngram_size).unwrap_or(0);
    let min_new_tokens = request.min_new_tokens.or(files.min_new_tokens).unwrap_or(0);
    let file_max_length = files.max_length.filter(|&m| m != DEFAULT_MAX_LENGTH);
    let max_new_tokens = match (
        request.max_new_tokens,
        request.max_length,
        files.max_new_tokens,
        file_max_length,
    ) {
        (Some(n), _, _, _) => n,
        (None, Some(total), _, _) => total.saturating_sub(prompt_len),
        (None, None, Some(n), _) => n,
        (None, None, None, Some(total)) => total.saturating_sub(prompt_len),
        (None, None, None, None) => PIPELINE_MAX_NEW_TOKENS,
    };
    let eos_token_ids = files.eos_token_ids().unwrap_or_else(|| vec![default_eos]);
    let num_return_sequences = request.num_return_sequences.unwrap_or(1);

    // A request may not ask for more than the context window; defaults are
    // cut short by the window instead (finish reason "length").
    if let Some(asked) = request.max_new_tokens.or(request.max_length) {
        if asked == 0 {
            return Err(invalid("max_new_tokens must be at least 1"));
        }
        if asked > window {
            return Err(invalid(format!(
                "max_new_tokens {asked} is over the cap of {window} (the model's context window)"
            )));
        }
    }
    let max_new_tokens = max_new_tokens.max(1);
    if do_sample && temperature <= 0.0 {
        return Err(invalid(
            "temperature must be > 0 when sampling (use do_sample=false for greedy)",
        ));
    }
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(invalid(format!("top_p must be in (0, 1], got {top_p}")));
    }
    if repetition_penalty <= 0.0 {
        return Err(invalid(format!(
            "repetition_penalty must be > 0, got {repetition_penalty}"
        )));
    }
    if num_return_sequences == 0 {
        return Err(invalid("num_return_sequences must be at least 1"));
    }
    if num_return_sequences > 1 && !do_sample {
        return Err(invalid(
            "greedy decoding gives one sequence per prompt: set do_sample=true for num_return_sequences > 1",
        ));
    }
    Ok(GenerationParams {
        max_new_tokens,
        min_new_tokens,
        do_sample,
        temperature: if do_sample { temperature } else { 1.0 },
        top_k: if do_sample { top_k } else { 0 },
        top_p: if do_sample { top_p } else { 1.0 },
        repetition_penalty,
        no_repeat_ngram_size,
        eos_token_ids,
        num_return_sequences,
        seed,
        ..GenerationParams::default()
    })
}

/// The settings of a generation as Text2TextGenerationPipeline resolves
/// them: GenerationConfig's defaults, under the pipeline's own
/// (max_new_tokens 256, num_beams 4), under the model's generation config
/// where it departs from the defaults (a max_length of its own then
/// replaces the pipeline's max_new_tokens), under the task's
/// `task_specific_params`, under the request's. Lengths in the settings
/// count the decoder's start token, as transformers' do.
pub fn resolve_text2text(
    model: &GenerationSettings,
    task: Option<&GenerationSettings>,
    request: &GenerationSettings,
) -> Result<GenerationParams> {
    check_finite(request)?;
    let mut s = GenerationSettings {
        max_length: Some(DEFAULT_MAX_LENGTH),
        max_new_tokens: Some(256),
        num_beams: Some(4),
        ..Default::default()
    };
    s.update(&model.departures());
    if s.max_new_tokens == Some(256) && s.max_length != Some(DEFAULT_MAX_LENGTH) {
        s.max_new_tokens = None;
    }
    if let Some(task) = task {
        s.update(task);
    }
    s.update(request);
    let max_length = match s.max_new_tokens {
        Some(n) => n + 1,
        None => s.max_length.unwrap_or(DEFAULT_MAX_LENGTH),
    };
    let min_length = s.min_length.unwrap_or(0);
    let num_beams = s.num_beams.unwrap_or(1);
    let num_return_sequences = s.num_return_sequences.unwrap_or(1);
    if num_beams == 0 || num_beams > MAX_BATCH_ROWS {
        return Err(invalid(format!(
            "num_beams must be from 1 to {MAX_BATCH_ROWS} (got {num_beams})"
        )));
    }
    if max_length < 2 {
        return Err(invalid(
            "max_length must leave room for one new token (at least 2: it counts the start token)",
        ));
    }
    // A min_length the request asks for that it cannot reach is refused;
    // one from the model's or the task's settings (bart-large-cnn's 56
    // under a request for 30 new tokens) holds back EOS up to max_length,
    // where generation stops, as transformers does (it only warns).
    if min_length > max_length && request.min_length.is_some() {
        return Err(invalid(format!(
            "min_length ({min_length}) is more than max_length ({max_length})"
        )));
    }
    if num_return_sequences == 0 || num_return_sequences > num_beams {
        return Err(invalid(format!(
            "num_return_sequences ({num_return_sequences}) must be from 1 to num_beams ({num_beams})"
        )));
    }
    let eos_token_ids = s.eos_token_ids().unwrap_or_default();
    let early_stopping = match &s.early_stopping {
        Some(v) => v.parse()?,
        None => EarlyStopping::False,
    };
    Ok(GenerationParams {
        max_new_tokens: max_length - 1,
        min_length,
        num_beams,
        num_return_sequences,
        length_penalty: s.length_penalty.unwrap_or(1.0),
        early_stopping,
        no_repeat_ngram_size: s.no_repeat_ngram_size.unwrap_or(0),
        repetition_penalty: s.repetition_penalty.unwrap_or(1.0),
        // NoBadWordsLogitsProcessor drops an EOS "bad word".
        bad_words_ids: s
            .bad_words_ids
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|w| !(w.len() == 1 && eos_token_ids.contains(&w[0])))
            .collect(),
        forced_bos_token_id: s.forced_bos_token_id,
        forced_eos_token_id: s.forced_eos_token_id.as_ref().and_then(|t| t.to_vec().first().copied()),
        eos_token_ids,
        renormalize: s.renormalize_logits.unwrap_or(false),
        ..GenerationParams::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(json: serde_json::Value) -> GenerationSettings {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn text2text_takes_the_models_departures_then_the_task_then_the_request() {
        // A BART-like config: its own max_length replaces the pipeline's
        // 256 new tokens; values equal to GenerationConfig's defaults do not
        // override the pipeline's num_beams 4.
        let model = settings(serde_json::json!({
            "max_length": 142, "min_length": 56, "num_beams": 1, "length_penalty": 2.0,
            "no_repeat_ngram_size": 3, "early_stopping": true, "eos_token_id": 2,
            "forced_eos_token_id": 2, "repetition_penalty": 1.2
        }));
        let p = resolve_text2text(&model, None, &GenerationSettings::default()).unwrap();
        assert_eq!((p.max_new_tokens, p.min_length, p.num_beams), (141, 56, 4));
        assert_eq!((p.length_penalty, p.early_stopping), (2.0, EarlyStopping::True));
        assert_eq!((p.forced_eos_token_id, p.eos_token_ids.clone()), (Some(2), vec![2]));
        // transformers applies a configured repetition penalty to beam search too.
        assert_eq!(p.repetition_penalty, 1.2);
        let task = settings(serde_json::json!({"max_length": 60, "num_beams": 2}));
        let asked = GenerationSettings {
            max_new_tokens: Some(100),
            ..Default::default()
        };
        let p = resolve_text2text(&model, Some(&task), &asked).unwrap();
        assert_eq!((p.max_new_tokens, p.num_beams), (100, 2));
        let p = resolve_text2text(&model, Some(&task), &GenerationSettings::default()).unwrap();
        assert_eq!(p.max_new_tokens, 59);
        // The model's min_length over the length asked for: generation
        // stops at max_length (transformers warns).
        let short = GenerationSettings {
            max_new_tokens: Some(30),
            ..Default::default()
        };
        let p = resolve_text2text(&model, None, &short).unwrap();
        assert_eq!((p.max_new_tokens, p.min_length), (30, 56));
        // The same min_length asked for by the request is refused.
        let impossible = GenerationSettings {
            min_length: Some(56),
            ..short
        };
        let refused = resolve_text2text(&model, None, &impossible).unwrap_err().to_string();
        assert!(
            refused.contains("min_length (56) is more than max_length (31)"),
            "{refused}"
        );
        // Without settings of its own, the pipeline's defaults.
        let p = resolve_text2text(&GenerationSettings::default(), None, &GenerationSettings::default()).unwrap();
        assert_eq!((p.max_new_tokens, p.num_beams, p.do_sample), (256, 4, false));
    }

    #[test]
    fn text2text_refuses_settings_that_cannot_run() {
        let none = GenerationSettings::default();
        let refused = |asked: GenerationSettings| resolve_text2text(&none, None, &asked).unwrap_err().to_string();
        assert!(refused(GenerationSettings {
            num_beams: Some(65),
            ..Default::default()
        })
        .contains("num_beams"));
        assert!(refused(GenerationSettings {
            max_new_tokens: Some(0),
            ..Default::default()
        })
        .contains("max_length"));
        assert!(refused(GenerationSettings {
            num_beams: Some(2),
            num_return_sequences: Some(3),
            ..Default::default()
        })
        .contains("num_return_sequences"));
        assert!(refused(GenerationSettings {
            early_stopping: Some(EarlyStoppingValue::Text("soon".into())),
            ..Default::default()
        })
        .contains("early_stopping"));
        for length_penalty in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert!(refused(GenerationSettings {
                length_penalty: Some(length_penalty),
                ..Default::default()
            })
            .contains("length_penalty must be a finite number"));
        }
    }

    #[test]
    fn nan_and_infinite_floats_are_refused_by_name_even_when_greedy() {
        let model = ModelSettings::default();
        for do_sample in [true, false] {
            for value in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                let refused = |asked: GenerationSettings| {
                    let asked = GenerationSettings {
                        do_sample: Some(do_sample),
                        ..asked
                    };
                    match resolve_text_generation(&model, &asked, 8, 1024, 0, 7) {
                        Err(ModelError::InvalidInput(message)) => message,
                        other => panic!("{value} accepted: {other:?}"),
                    }
                };
                let temperature = refused(GenerationSettings {
                    temperature: Some(value),
                    ..Default::default()
                });
                assert!(
                    temperature.starts_with("temperature must be a finite number"),
                    "{temperature}"
                );
                let top_p = refused(GenerationSettings {
                    top_p: Some(value),
                    ..Default::default()
                });
                assert!(top_p.starts_with("top_p "), "{top_p}");
                let penalty = refused(GenerationSettings {
                    repetition_penalty: Some(value),
                    ..Default::default()
                });
                assert!(penalty.starts_with("repetition_penalty "), "{penalty}");
            }
        }
    }

    #[test]
    fn text_generation_takes_the_request_then_the_task_then_the_file_then_the_pipeline() {
        let mut model = ModelSettings {
            file: settings(serde_json::json!({"max_length": 20, "top_k": 40, "eos_token_id": [5, 6]})),
            ..Default::default()
        };
        model.task_specific.insert(
            "text-generation".into(),
            serde_json::json!({"do_sample": true, "max_length": 50}),
        );
        let none = GenerationSettings::default();
        let p = resolve_text_generation(&model, &none, 8, 1024, 0, 7).unwrap();
        // The task's max_length 50 counts the 8 prompt tokens; sampling at
        // the pipeline's temperature with the file's top_k and EOS ids.
        assert_eq!(
            (p.max_new_tokens, p.do_sample, p.temperature, p.top_k),
            (42, true, 0.7, 40)
        );
        assert_eq!((p.eos_token_ids.clone(), p.seed), (vec![5, 6], 7));
        let asked = GenerationSettings {
            do_sample: Some(false),
            max_new_tokens: Some(3),
            ..Default::default()
        };
        let p = resolve_text_generation(&model, &asked, 8, 1024, 0, 7).unwrap();
        // Greedy: the warpers are off.
        assert_eq!(
            (p.max_new_tokens, p.do_sample, p.temperature, p.top_k, p.top_p),
            (3, false, 1.0, 0, 1.0)
        );
        // A file max_length of 20 is GenerationConfig's default: the pipeline's 256 new tokens.
        let p = resolve_text_generation(&ModelSettings::default(), &none, 8, 1024, 0, 7).unwrap();
        assert_eq!((p.max_new_tokens, p.eos_token_ids.clone()), (256, vec![0]));
    }

    #[test]
    fn text_generation_refuses_what_the_window_or_the_search_cannot_give() {
        let model = ModelSettings::default();
        let refused = |asked: GenerationSettings| {
            resolve_text_generation(&model, &asked, 8, 1024, 0, 7)
                .unwrap_err()
                .to_string()
        };
        assert!(refused(GenerationSettings {
            max_new_tokens: Some(2000),
            ..Default::default()
        })
        .contains("1024"));
        assert!(refused(GenerationSettings {
            max_new_tokens: Some(0),
            ..Default::default()
        })
        .contains("at least 1"));
        assert!(refused(GenerationSettings {
            temperature: Some(0.0),
            ..Default::default()
        })
        .contains("temperature"));
        assert!(refused(GenerationSettings {
            do_sample: Some(false),
            num_return_sequences: Some(2),
            ..Default::default()
        })
        .contains("do_sample"));
    }
}
