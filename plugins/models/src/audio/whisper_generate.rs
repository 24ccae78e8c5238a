//! Whisper's `generate` as transformers 4.57.6 runs it for the
//! automatic-speech-recognition pipeline, on the one generation engine:
//! - the decoder prompt (`_retrieve_init_tokens`): the start of transcript,
//!   the language (asked for, or detected from the first window when a
//!   multilingual model is given none), the task, and `<|notimestamps|>`
//!   unless timestamps are wanted; the old `forced_decoder_ids` where no
//!   language or task is given;
//! - the lengths (`_set_max_new_tokens_and_length`) and Whisper's logits
//!   processors (suppressed tokens, at the first step and always, and the
//!   timestamp rules), which `generation/processors.rs` applies;
//! - the windows (`generate`'s seek loop): 30 s of features at a time; a
//!   window whose output ends inside a segment (two timestamps, then more)
//!   is decoded again from that segment's start, as long audio is; each
//!   window's tokens are cut into segments (`_retrieve_segment`).
//!
//! The windows of all inputs still being transcribed are decoded together,
//! each with its own prompt and settings; an input's next window, and a new
//! input's first, join the running decode as soon as they are ready
//! (continuous batching).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;
use tch::{Kind, Tensor};

use crate::audio::whisper::WhisperForConditionalGeneration;
use crate::audio::whisper_text::{alignment_matrix, language_code, token_timestamps};
use crate::core::decoding::{DecoderState, Seq2SeqLm};
use crate::core::device::upload;
use crate::generation::search::Found;
use crate::generation::seq2seq::{generate_joined, Arrival, Owned};
use crate::generation::settings::{GenerationParams, GenerationSettings, TimestampRules, MAX_BATCH_ROWS};
use crate::{ModelError, Result};

/// Seconds per timestamp token, and per encoder position.
pub const TIME_PRECISION: f64 = 0.02;
/// Feature frames per encoder position (the two convolutions' strides).
const INPUT_STRIDE: i64 = 2;
/// Windows encoded together at most on a GPU: the encoder's attention
/// holds heads x 1500 x 1500 scores per window. On the CPU one at a time
/// is faster (whisper-base, one thread: 0.67 s a window alone, 0.71-0.86 s
/// each in fours), the work being the same and the memory smaller.
const ENCODE_BATCH: usize = 8;

/// The Whisper keys of generation_config.json (or, without one, of
/// config.json, as transformers builds a generation config from it), with
/// the settings every generative model has.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct WhisperGenerationConfig {
    #[serde(flatten)]
    pub settings: GenerationSettings,
    pub decoder_start_token_id: Option<i64>,
    pub suppress_tokens: Option<Vec<i64>>,
    pub begin_suppress_tokens: Option<Vec<i64>>,
    pub no_timestamps_token_id: Option<i64>,
    /// "<|en|>" -> its token id.
    pub lang_to_id: Option<BTreeMap<String, i64>>,
    /// "transcribe", "translate" -> their token ids.
    pub task_to_id: Option<BTreeMap<String, i64>>,
    pub is_multilingual: Option<bool>,
    /// [position, token] pairs (token null: the language, to detect).
    pub forced_decoder_ids: Option<Vec<(i64, Option<i64>)>>,
    pub max_initial_timestamp_index: Option<i64>,
    /// [layer, head] pairs of cross-attention that follow the audio.
    pub alignment_heads: Option<Vec<(usize, usize)>>,
    pub return_timestamps: Option<bool>,
}

impl WhisperGenerationConfig {
    /// The end-of-text token `generate` stops at: the first EOS id, else
    /// the BOS id (Whisper's are the same token).
    pub fn eos_token_id(&self) -> Option<i64> {
        let eos = self
            .settings
            .eos_token_id
            .as_ref()
            .and_then(|t| t.to_vec().first().copied());
        eos.or(self.settings.bos_token_id)
    }

    /// Whether the checkpoint has timestamp tokens.
    pub fn has_timestamps(&self) -> bool {
        self.no_timestamps_token_id.is_some()
    }

    /// Whether it can be told a language or a task.
    pub fn is_multilingual(&self) -> bool {
        self.is_multilingual.unwrap_or(self.lang_to_id.is_some())
    }
}

/// What a request asks of Whisper.
#[derive(Debug, Clone, Default)]
pub struct WhisperOptions {
    /// A language name ("french") or code ("fr"), any case; None: the
    /// model's own, or detected.
    pub language: Option<String>,
    /// "transcribe" or "translate".
    pub task: Option<String>,
    /// Segment timestamps (the timestamp tokens).
    pub timestamps: bool,
    /// Word timestamps too: each token timed by the alignment heads'
    /// cross-attention (the timestamp tokens are on as well, as the
    /// pipeline turns them on for "word").
    pub words: bool,
    /// The request's generation settings (num_beams, max_new_tokens, ...).
    pub settings: GenerationSettings,
    /// Sampling temperature; None or 0: no sampling (Whisper's `generate`
    /// samples only when given a temperature above 0).
    pub temperature: Option<f32>,
    pub seed: u64,
}

fn invalid(message: impl Into<String>) -> ModelError {
    ModelError::InvalidInput(message.into())
}

/// One request's decoding, resolved: the prompt (with a slot for the
/// language still to detect) and the settings.
#[derive(Debug, Clone)]
pub struct Plan {
    prompt: Vec<Option<i64>>,
    pub params: GenerationParams,
    pub timestamps: bool,
    pub words: bool,
}

impl Plan {
    /// Whether the language is detected from the audio.
    pub fn detects_language(&self) -> bool {
        self.prompt.contains(&None)
    }

    /// The prompt with `language` in its slot.
    fn prompt(&self, language: Option<i64>) -> Vec<i64> {
        self.prompt
            .iter()
            .map(|t| t.or(language).expect("a detected language"))
            .collect()
    }
}

/// The pipeline's defaults (`_default_generation_config`): 256 new tokens
/// and 5 beams, under what the model's generation config sets otherwise.
const PIPELINE_NUM_BEAMS: usize = 5;
const PIPELINE_MAX_NEW_TOKENS: usize = 256;
/// GenerationConfig's default max_length.
const DEFAULT_MAX_LENGTH: usize = 20;

/// Resolves a request as the pipeline and Whisper's `generate` do.
/// `max_target_positions` bounds the prompt and the new tokens together.
pub fn plan(config: &WhisperGenerationConfig, options: &WhisperOptions, max_target_positions: usize) -> Result<Plan> {
    let start = config
        .decoder_start_token_id
        .ok_or_else(|| ModelError::Unsupported("generation_config.json has no decoder_start_token_id".into()))?;
    if options.words && config.alignment_heads.is_none() {
        return Err(invalid(
            "this model's generation config has no alignment_heads, which word timestamps need: ask for segment \
             timestamps (\"true\") instead",
        ));
    }
    let mut options = options.clone();
    options.timestamps |= options.words;
    let options = &options;
    if options.timestamps && !config.has_timestamps() {
        return Err(invalid(
            "this model has no timestamp tokens (no no_timestamps_token_id in its generation config): \
             ask for the text alone",
        ));
    }
    if !config.is_multilingual() && (options.language.is_some() || options.task.is_some()) {
        return Err(invalid(
            "this is an English-only model: it cannot be given a language or a task (it transcribes English); \
             use a multilingual checkpoint to transcribe or translate other languages",
        ));
    }
    let language = options
        .language
        .as_deref()
        .map(|l| language_id(config, l))
        .transpose()?;
    let task = options.task.as_deref().map(|t| task_id(config, t)).transpose()?;

    // `_retrieve_init_tokens`.
    let mut prompt: Vec<Option<i64>> = vec![Some(start)];
    if task.is_none() && language.is_none() {
        if let Some(forced) = &config.forced_decoder_ids {
            let mut forced = forced.as_slice();
            let mut position = 1;
            while let Some((&(at, token), rest)) = forced.split_first() {
                if at != position {
                    break;
                }
                prompt.push(token);
                forced = rest;
                position += 1;
            }
            if !forced.is_empty() && prompt.len() > 1 {
                return Err(ModelError::Unsupported(format!(
                    "forced_decoder_ids {:?} do not follow Whisper's prompt (positions 1, 2, ...)",
                    config.forced_decoder_ids
                )));
            }
        }
    }
    let language_undefined = prompt.get(1).is_none_or(|t| t.is_none());
    let detect = language.is_none() && config.lang_to_id.is_some() && language_undefined;
    if language.is_some() || detect {
        if prompt.len() > 1 {
            prompt[1] = language;
        } else {
            prompt.push(language);
        }
    }
    if let Some(task) = task {
        prompt.push(Some(task));
    } else if let (Some(_), Some(tasks)) = (language, &config.task_to_id) {
        if !prompt.iter().flatten().any(|t| tasks.values().any(|v| v == t)) {
            let transcribe = tasks
                .get("transcribe")
                .ok_or_else(|| ModelError::Unsupported("task_to_id has no \"transcribe\"".into()))?;
            prompt.push(Some(*transcribe));
        }
    }
    if let Some(no_timestamps) = config.no_timestamps_token_id {
        let last = prompt.last().copied().flatten();
        if !options.timestamps && last != Some(no_timestamps) {
            prompt.push(Some(no_timestamps));
        } else if options.timestamps && last == Some(no_timestamps) {
            prompt.pop();
        }
    }
    // The language slot stays when it is to be detected; other holes go.
    let mut kept_slot = false;
    prompt.retain(|t| {
        let keep = t.is_some() || (detect && !kept_slot);
        kept_slot |= t.is_none() && keep;
        keep
    });

    let params = resolve(config, options, prompt.len(), max_target_positions)?;
    Ok(Plan {
        prompt,
        params,
        timestamps: options.timestamps,
        words: options.words,
    })
}

/// The settings of one decoding: the pipeline's defaults under the model's
/// under the request's, the lengths as `_set_max_new_tokens_and_length`
/// works them out, and Whisper's processors.
fn resolve(
    config: &WhisperGenerationConfig,
    options: &WhisperOptions,
    prompt_len: usize,
    max_target_positions: usize,
) -> Result<GenerationParams> {
    let mut s = GenerationSettings {
        max_length: Some(DEFAULT_MAX_LENGTH),
        max_new_tokens: Some(PIPELINE_MAX_NEW_TOKENS),
        num_beams: Some(PIPELINE_NUM_BEAMS),
        ..Default::default()
    };
    // Values equal to GenerationConfig's defaults do not override the
    // pipeline's.
    s.update(&config.settings.departures());
    if s.max_new_tokens == Some(PIPELINE_MAX_NEW_TOKENS) && s.max_length != Some(DEFAULT_MAX_LENGTH) {
        s.max_new_tokens = None;
    }
    s.update(&options.settings);
    let total = match s.max_new_tokens {
        Some(new) => {
            if new + prompt_len > max_target_positions {
                return Err(invalid(format!(
                    "max_new_tokens {new} and the {prompt_len} prompt tokens exceed the model's \
                     {max_target_positions} decoder positions: ask for at most {} new tokens",
                    max_target_positions.saturating_sub(prompt_len)
                )));
            }
            new + prompt_len
        }
        None => {
            let initial = (max_target_positions / 2 - 1).min(prompt_len - 1);
            (s.max_length.unwrap_or(DEFAULT_MAX_LENGTH) + initial).min(max_target_positions)
        }
    };
    if total <= prompt_len {
        return Err(invalid(format!(
            "the lengths leave no room for a new token after the {prompt_len} prompt tokens"
        )));
    }
    let sampling = options.temperature.is_some_and(|t| t > 0.0);
    if let Some(t) = options.temperature {
        if !t.is_finite() || t < 0.0 {
            return Err(invalid(format!("temperature must be a finite number >= 0, not {t}")));
        }
    }
    let num_beams = if sampling { 1 } else { s.num_beams.unwrap_or(1) };
    if num_beams == 0 || num_beams > crate::generation::settings::MAX_BATCH_ROWS {
        return Err(invalid(format!(
            "num_beams must be from 1 to {} (got {num_beams})",
            crate::generation::settings::MAX_BATCH_ROWS
        )));
    }
    let eos = config.eos_token_id();
    let timestamps = match (options.timestamps, config.no_timestamps_token_id) {
        (true, Some(no_timestamps)) => Some(TimestampRules {
            no_timestamps_token_id: no_timestamps,
            timestamp_begin: no_timestamps + 1,
            eos_token_id: eos.unwrap_or(0),
            max_initial_timestamp_index: config.max_initial_timestamp_index,
        }),
        _ => None,
    };
    Ok(GenerationParams {
        max_new_tokens: total - prompt_len,
        num_beams,
        do_sample: sampling,
        temperature: if sampling {
            options.temperature.unwrap_or(1.0)
        } else {
            1.0
        },
        length_penalty: s.length_penalty.unwrap_or(1.0),
        early_stopping: match &s.early_stopping {
            Some(v) => v.parse()?,
            None => crate::generation::EarlyStopping::False,
        },
        repetition_penalty: s.repetition_penalty.unwrap_or(1.0),
        no_repeat_ngram_size: s.no_repeat_ngram_size.unwrap_or(0),
        eos_token_ids: eos.into_iter().collect(),
        suppress_tokens: config.suppress_tokens.clone().unwrap_or_default(),
        begin_suppress_tokens: config.begin_suppress_tokens.clone().unwrap_or_default(),
        timestamps,
        seed: options.seed,
        ..GenerationParams::default()
    })
}

/// The token of `language` (a name, an alias or a code, any case, or the
/// token itself), as `_retrieve_init_tokens`' `language_to_id` finds it.
fn language_id(config: &WhisperGenerationConfig, language: &str) -> Result<i64> {
    let languages = config
        .lang_to_id
        .as_ref()
        .ok_or_else(|| invalid("this model's generation config has no lang_to_id: it cannot be given a language"))?;
    let lower = language.to_lowercase();
    let token = if languages.contains_key(&lower) {
        lower.clone()
    } else if let Some(code) = language_code(&lower) {
        format!("<|{code}|>")
    } else {
        return Err(invalid(format!(
            "unsupported language `{language}`: give a language name (\"french\") or code (\"fr\")"
        )));
    };
    languages.get(&token).copied().ok_or_else(|| {
        invalid(format!(
            "{token} is not one of this model's languages ({} of them, e.g. {})",
            languages.len(),
            languages.keys().take(5).cloned().collect::<Vec<_>>().join(", ")
        ))
    })
}

fn task_id(config: &WhisperGenerationConfig, task: &str) -> Result<i64> {
    if task != "transcribe" && task != "translate" {
        return Err(invalid(format!(
            "task `{task}`: expected \"transcribe\" or \"translate\""
        )));
    }
    config
        .task_to_id
        .as_ref()
        .and_then(|tasks| tasks.get(task).copied())
        .ok_or_else(|| {
            invalid(format!(
                "this model's generation config has no task_to_id entry for {task}"
            ))
        })
}

/// A stretch of a transcript: its times in seconds and its tokens (text
/// and, with timestamps, the timestamp tokens around it).
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub start: f64,
    pub end: f64,
    pub tokens: Vec<i64>,
    /// With word timestamps, each token's time in seconds.
    pub token_times: Vec<f32>,
    /// Where the window it was decoded in starts, in seconds.
    pub offset: f64,
}

/// One input's transcript: its segments (their tokens together are what
/// the pipeline decodes) and the language token its prompt had.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Transcript {
    pub segments: Vec<Segment>,
    pub language: Option<i64>,
}

impl Transcript {
    /// Every segment's tokens, in order (`generate`'s output sequence).
    pub fn tokens(&self) -> Vec<i64> {
        self.segments.iter().flat_map(|s| s.tokens.iter().copied()).collect()
    }

    /// With word timestamps, every segment's token times, in order.
    pub fn token_times(&self) -> Vec<f32> {
        self.segments
            .iter()
            .flat_map(|s| s.token_times.iter().copied())
            .collect()
    }
}

/// One input to transcribe: its log-mel features [mel bins, frames] (3000
/// frames, 30 s, for short audio; more for long audio, decoded window after
/// window) and its plan.
pub struct Audio<'a> {
    pub features: &'a Tensor,
    pub plan: &'a Plan,
    /// Feature frames holding audio (the rest is padding), which bound the
    /// alignment of word timestamps: the pipeline's `num_frames` (samples
    /// over hop length) or the attention mask's length.
    pub num_frames: i64,
}

/// Who waits for a transcription: asked whether to go on, told of each
/// decoded window.
pub trait Listener {
    /// Asked before every window and every step; false ends input `i` with
    /// the segments it has.
    fn keep_going(&mut self, i: usize) -> bool;

    /// Input `i`'s window was decoded: `transcript.segments[new..]` came
    /// from it (none when its output was empty).
    fn decoded(&mut self, _i: usize, _transcript: &Transcript, _new: usize) {}
}

/// A closure is asked whether to go on, and hears of nothing else.
impl<F: FnMut(usize) -> bool> Listener for F {
    fn keep_going(&mut self, i: usize) -> bool {
        self(i)
    }
}

/// Transcribes every input, their windows decoded together, telling
/// `listener` of each window as it is decoded.
pub fn transcribe(
    model: &WhisperForConditionalGeneration,
    config: &WhisperGenerationConfig,
    inputs: &[Audio],
    listener: &mut dyn Listener,
) -> Vec<Transcript> {
    let mut first: Option<Vec<AudioInput>> = Some(
        inputs
            .iter()
            .map(|a| AudioInput {
                features: a.features.shallow_clone(),
                plan: Arc::new(a.plan.clone()),
                num_frames: a.num_frames,
            })
            .collect(),
    );
    let mut transcripts = vec![Transcript::default(); inputs.len()];
    transcribe_joined(
        model,
        config,
        MAX_BATCH_ROWS,
        &mut |_| first.take().unwrap_or_default(),
        listener,
        &mut |i, transcript| transcripts[i] = transcript,
    );
    transcripts
}

/// One input to transcribe, owned ([`transcribe_joined`]).
pub struct AudioInput {
    pub features: Tensor,
    pub plan: Arc<Plan>,
    pub num_frames: i64,
}

/// Transcribes inputs that join the running decode between its steps
/// (continuous batching): before each step `arrivals(rows)` gives the new
/// inputs (`rows`: the hypotheses decoding or waiting to), numbered in
/// arrival order from 0. Each input's windows are decoded one after the
/// other, each joining the running decode as soon as the one before is
/// done, within `max_rows` hypotheses (see `seq2seq::generate_joined`).
/// `listener` is asked whether input `i` goes on before its every window
/// and step, and told of each decoded window; `on_done(i, transcript)` as
/// soon as input `i` is transcribed (or stopped).
pub fn transcribe_joined(
    model: &WhisperForConditionalGeneration,
    config: &WhisperGenerationConfig,
    max_rows: usize,
    arrivals: &mut dyn FnMut(usize) -> Vec<AudioInput>,
    listener: &mut dyn Listener,
    on_done: &mut dyn FnMut(usize, Transcript),
) {
    let _guard = tch::no_grad_guard();
    let windows = RefCell::new(Windows {
        model,
        config,
        listener,
        on_done,
        inputs: vec![],
        ready: vec![],
        owners: vec![],
    });
    generate_joined(
        model,
        max_rows,
        config.alignment_heads.as_deref(),
        &mut |rows| {
            let new = arrivals(rows);
            windows.borrow_mut().next_windows(new)
        },
        &mut |w| {
            let mut windows = windows.borrow_mut();
            let i = windows.owners[w];
            windows.listener.keep_going(i)
        },
        &mut |w, found| windows.borrow_mut().decoded(w, found),
    );
}

/// An input being transcribed: where its next window starts, its
/// transcript so far, and its prompt once settled (on the first window).
struct Transcribing {
    input: AudioInput,
    params: Arc<GenerationParams>,
    seek: i64,
    max_frames: i64,
    transcript: Transcript,
    prompt: Option<Vec<i64>>,
}

/// The inputs of a joined transcription and their windows.
struct Windows<'a> {
    model: &'a WhisperForConditionalGeneration,
    config: &'a WhisperGenerationConfig,
    listener: &'a mut dyn Listener,
    on_done: &'a mut dyn FnMut(usize, Transcript),
    inputs: Vec<Transcribing>,
    /// Inputs whose next window is to start.
    ready: Vec<usize>,
    /// Each window's input, by its arrival number in the decode.
    owners: Vec<usize>,
}

impl Windows<'_> {
    /// Takes in `new` inputs, and starts the next window of every input
    /// ready for one: encoded, its language detected on the first window
    /// where asked, and its prompt settled.
    fn next_windows(&mut self, new: Vec<AudioInput>) -> Vec<Arrival> {
        for input in new {
            self.ready.push(self.inputs.len());
            self.inputs.push(Transcribing {
                max_frames: input.features.size()[1],
                params: Arc::new(input.plan.params.clone()),
                input,
                seek: 0,
                transcript: Transcript::default(),
                prompt: None,
            });
        }
        let mut active = Vec::new();
        for i in std::mem::take(&mut self.ready) {
            if self.inputs[i].seek < self.inputs[i].max_frames && self.listener.keep_going(i) {
                active.push(i);
            } else {
                self.done(i);
            }
        }
        if active.is_empty() {
            return vec![];
        }
        let window = self.model.config.input_frames();
        let cuts: Vec<Tensor> = active
            .iter()
            .map(|&i| {
                let t = &self.inputs[i];
                let frames = (t.max_frames - t.seek).min(window);
                let cut = t.input.features.narrow(1, t.seek, frames);
                cut.constant_pad_nd([0, window - frames])
            })
            .collect();
        let states = encode(self.model, &cuts);
        // The prompt is settled on the first window, the language detected
        // from it where asked.
        let undecided: Vec<usize> = (0..active.len())
            .filter(|&k| self.inputs[active[k]].prompt.is_none())
            .collect();
        let detecting: Vec<usize> = undecided
            .iter()
            .copied()
            .filter(|&k| self.inputs[active[k]].input.plan.detects_language())
            .collect();
        let detected = detect_languages(
            self.model,
            self.config,
            &detecting.iter().map(|&k| &states[k]).collect::<Vec<_>>(),
        );
        let mut detected = detecting.iter().zip(detected).collect::<BTreeMap<_, _>>();
        for &k in &undecided {
            let t = &mut self.inputs[active[k]];
            let language = detected.remove(&k);
            let prompt = t.input.plan.prompt(language);
            t.transcript.language = language.or_else(|| language_in(self.config, &prompt));
            t.prompt = Some(prompt);
        }
        active
            .iter()
            .zip(states)
            .map(|(&i, states)| {
                self.owners.push(i);
                let t = &self.inputs[i];
                Arrival {
                    input: Owned::Encoded(states),
                    prompt: t.prompt.clone().expect("settled"),
                    params: Arc::clone(&t.params),
                    aligned: t.input.plan.words,
                }
            })
            .collect()
    }

    /// Input `i` is transcribed, or stopped: handed over, and its features
    /// let go (a joined decode may run on long after).
    fn done(&mut self, i: usize) {
        let input = &mut self.inputs[i];
        input.input.features = Tensor::new();
        let transcript = std::mem::take(&mut input.transcript);
        (self.on_done)(i, transcript);
    }

    /// Window `w` was decoded: its tokens cut into segments (with word
    /// times where asked), its input moved on, and the next window made
    /// ready, or the input done.
    fn decoded(&mut self, w: usize, found: Vec<Found>) {
        let i = self.owners[w];
        let window = self.model.config.input_frames();
        let timestamp_begin = self.config.no_timestamps_token_id.map_or(i64::MAX, |n| n + 1);
        let t = &mut self.inputs[i];
        let Some((sequence, alignment)) = found.first() else {
            // Ended before it began (its client went away).
            self.done(i);
            return;
        };
        let prompt_len = t.prompt.as_ref().map_or(0, Vec::len);
        let mut tokens = &sequence[prompt_len.min(sequence.len())..];
        let plan = &t.input.plan;
        let times = plan
            .words
            .then(|| {
                // As transformers crops, Python's slicing included: past
                // the audio, a negative end counts from the end.
                let frames = (t.input.num_frames - t.seek).div_euclid(2);
                let times = word_times(
                    alignment.as_ref(),
                    frames,
                    prompt_len,
                    self.model.config.median_filter_width,
                );
                times.map(|mut times| {
                    times.resize(sequence.len().max(times.len()), *times.last().unwrap_or(&0.0));
                    times
                })
            })
            .transpose()
            .unwrap_or_else(|e| {
                tracing::warn!("word timestamps of input {i}: {e}");
                None
            });
        if let Some((last, rest)) = tokens.split_last() {
            if plan.params.eos_token_ids.contains(last) {
                tokens = rest;
            }
        }
        let frames = (t.max_frames - t.seek).min(window);
        let (mut segments, advance) = segments_of(tokens, t.seek, frames, timestamp_begin);
        if let Some(times) = times {
            // Each segment's tokens' times, after the prompt's, moved to
            // the window's place in the audio (f32, as transformers adds).
            let offset = (t.seek as f64 * TIME_PRECISION / INPUT_STRIDE as f64) as f32;
            let mut at = prompt_len;
            for segment in &mut segments {
                let end = (at + segment.tokens.len()).min(times.len());
                segment.token_times = times[at.min(end)..end].iter().map(|t| t + offset).collect();
                at += segment.tokens.len();
            }
        }
        let new = t.transcript.segments.len();
        t.transcript.segments.extend(segments);
        t.seek += advance.max(1);
        self.listener.decoded(i, &t.transcript, new);
        if self.inputs[i].seek < self.inputs[i].max_frames {
            self.ready.push(i);
        } else {
            self.done(i);
        }
    }
}

/// `_extract_token_timestamps` for one sequence: its new tokens' kept
/// cross-attention [steps, heads, source] cut to the `frames` encoder
/// positions holding audio, standardised, median-filtered and averaged over
/// the heads, then aligned by dynamic time warping; the times of the
/// prompt's tokens (0), of each new token, and of the last again.
fn word_times(
    alignment: Option<&Tensor>,
    frames: i64,
    prompt_len: usize,
    median_filter_width: i64,
) -> Result<Vec<f32>> {
    let Some(alignment) = alignment else {
        return Ok(vec![0.0; prompt_len + 1]);
    };
    let source = alignment.size()[2];
    let end = if frames >= 0 {
        frames.min(source)
    } else {
        (source + frames).max(0)
    };
    if end == 0 {
        return Ok(vec![0.0; prompt_len + alignment.size()[0] as usize + 1]);
    }
    let weights = alignment
        .permute([1, 0, 2])
        .narrow(2, 0, end)
        .to_device(tch::Device::Cpu);
    let matrix = alignment_matrix(&weights, median_filter_width)?;
    token_timestamps(&matrix, prompt_len, TIME_PRECISION)
}

/// Encoder states [1, 1500, d] of each window [mel bins, 3000].
fn encode(model: &WhisperForConditionalGeneration, windows: &[Tensor]) -> Vec<Tensor> {
    let mut states = Vec::with_capacity(windows.len());
    let batch = if model.device().is_cuda() { ENCODE_BATCH } else { 1 };
    for batch in windows.chunks(batch) {
        let encoded = model.encode_features(&upload(&Tensor::stack(batch, 0), model.device()));
        states.extend((0..batch.len() as i64).map(|k| encoded.narrow(0, k, 1)));
    }
    states
}

/// `detect_language`: after the start token alone, the likeliest of the
/// language tokens, for each window's encoder states.
fn detect_languages(
    model: &WhisperForConditionalGeneration,
    config: &WhisperGenerationConfig,
    states: &[&Tensor],
) -> Vec<i64> {
    let Some(languages) = &config.lang_to_id else {
        return vec![];
    };
    if states.is_empty() {
        return vec![];
    }
    let memory = Tensor::cat(&states.iter().map(|s| s.shallow_clone()).collect::<Vec<_>>(), 0);
    let mut state = DecoderState::new(memory, None, 1, model.decoder_layers());
    let start = model.decoder_start_token_id();
    let logits = model.step(&vec![start; states.len()], &mut state).to_kind(Kind::Float);
    let ids: Vec<i64> = languages.values().copied().collect();
    let index = Tensor::from_slice(&ids).to_device(logits.device());
    let candidates = logits.index_select(1, &index).to_device(tch::Device::Cpu);
    let candidates = Vec::<f32>::try_from(candidates.reshape([-1])).expect("f32 logits");
    // The likeliest; of equal ones, the lowest id (argmax's first).
    candidates
        .chunks(ids.len())
        .map(|row| {
            let best = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            ids.iter()
                .zip(row)
                .filter(|(_, &l)| l == best)
                .map(|(&id, _)| id)
                .min()
                .unwrap_or(ids[0])
        })
        .collect()
}

/// The language token a prompt holds, if any.
fn language_in(config: &WhisperGenerationConfig, prompt: &[i64]) -> Option<i64> {
    let languages = config.lang_to_id.as_ref()?;
    prompt.iter().copied().find(|t| languages.values().any(|v| v == t))
}

/// `_retrieve_segment`: a window's tokens (prompt and EOS removed) cut into
/// segments at each pair of timestamps, and how many feature frames the
/// window moves on by (to the last segment's end when the output stops
/// inside a segment, otherwise past the window's `frames`). `seek` is the
/// window's first frame.
pub fn segments_of(tokens: &[i64], seek: i64, frames: i64, timestamp_begin: i64) -> (Vec<Segment>, i64) {
    let time_offset = seek as f64 * TIME_PRECISION / INPUT_STRIDE as f64;
    let at = |token: i64| time_offset + (token - timestamp_begin) as f64 * TIME_PRECISION;
    let is_timestamp: Vec<bool> = tokens.iter().map(|&t| t >= timestamp_begin).collect();
    let n = tokens.len();
    let single_timestamp_ending = n >= 2 && !is_timestamp[n - 2] && is_timestamp[n - 1];
    let mut slices: Vec<usize> = (1..n).filter(|&k| is_timestamp[k - 1] && is_timestamp[k]).collect();
    if slices.is_empty() {
        // No pair: the whole window is one segment, ending at its last
        // timestamp if it has one (other than <|0.00|>), else at its end.
        let mut end = ((frames as f64 * 0.01 / TIME_PRECISION) as i64) as f64;
        if let Some(&last) = tokens.iter().rev().find(|&&t| t >= timestamp_begin) {
            if last != timestamp_begin {
                end = (last - timestamp_begin) as f64;
            }
        }
        let segment = Segment {
            start: time_offset,
            end: time_offset + end * TIME_PRECISION,
            tokens: tokens.to_vec(),
            token_times: vec![],
            offset: time_offset,
        };
        return (vec![segment], frames);
    }
    if single_timestamp_ending {
        slices.push(n);
    } else {
        // Keep the last pair's second timestamp in the last segment.
        *slices.last_mut().expect("a slice") += 1;
    }
    let mut segments = Vec::with_capacity(slices.len());
    let mut last_slice = 0;
    for (k, &current) in slices.iter().enumerate() {
        let is_last = k == slices.len() - 1;
        let sliced = &tokens[last_slice..current];
        let end_token = if !is_last || single_timestamp_ending {
            sliced[sliced.len() - 1]
        } else {
            sliced[sliced.len() - 2]
        };
        segments.push(Segment {
            start: at(sliced[0]),
            end: at(end_token),
            tokens: sliced.to_vec(),
            token_times: vec![],
            offset: time_offset,
        });
        last_slice = current;
    }
    let advance = if single_timestamp_ending {
        frames
    } else {
        // Past the last complete segment; what follows is decoded again.
        (tokens[last_slice - 2] - timestamp_begin) * INPUT_STRIDE
    };
    (segments, advance)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: serde_json::Value) -> WhisperGenerationConfig {
        serde_json::from_value(json).unwrap()
    }

    /// openai/whisper-tiny's ids (multilingual), a few languages.
    fn multilingual() -> WhisperGenerationConfig {
        config(serde_json::json!({
            "decoder_start_token_id": 50258, "eos_token_id": 50257, "pad_token_id": 50257,
            "begin_suppress_tokens": [220, 50257], "suppress_tokens": [1, 2, 7],
            "no_timestamps_token_id": 50363, "max_initial_timestamp_index": 50, "max_length": 448,
            "forced_decoder_ids": [[1, null], [2, 50359]], "is_multilingual": true,
            "lang_to_id": {"<|en|>": 50259, "<|de|>": 50261, "<|fr|>": 50265},
            "task_to_id": {"translate": 50358, "transcribe": 50359}
        }))
    }

    fn english_only() -> WhisperGenerationConfig {
        config(serde_json::json!({
            "decoder_start_token_id": 50257, "eos_token_id": 50256, "pad_token_id": 50256,
            "begin_suppress_tokens": [220, 50256], "suppress_tokens": [1, 2],
            "no_timestamps_token_id": 50362, "max_initial_timestamp_index": 50, "max_length": 448,
            "forced_decoder_ids": [[1, 50362]], "is_multilingual": false
        }))
    }

    fn options(language: Option<&str>, task: Option<&str>, timestamps: bool) -> WhisperOptions {
        WhisperOptions {
            language: language.map(String::from),
            task: task.map(String::from),
            timestamps,
            ..Default::default()
        }
    }

    #[test]
    fn prompts_follow_retrieve_init_tokens() {
        let multi = multilingual();
        let prompt = |o: WhisperOptions| {
            let p = plan(&multi, &o, 448).unwrap();
            p.prompt.clone()
        };
        // No language, no task: forced_decoder_ids' slot is detected, its
        // transcribe kept, <|notimestamps|> added.
        assert_eq!(
            prompt(options(None, None, false)),
            vec![Some(50258), None, Some(50359), Some(50363)]
        );
        assert_eq!(prompt(options(None, None, true)), vec![Some(50258), None, Some(50359)]);
        // A language by name or code: forced_decoder_ids are ignored, the
        // task defaults to transcribe.
        assert_eq!(
            prompt(options(Some("French"), None, false)),
            vec![Some(50258), Some(50265), Some(50359), Some(50363)]
        );
        assert_eq!(
            prompt(options(Some("fr"), Some("translate"), true)),
            vec![Some(50258), Some(50265), Some(50358)]
        );
        // A task alone: the language is detected.
        assert_eq!(
            prompt(options(None, Some("translate"), false)),
            vec![Some(50258), None, Some(50358), Some(50363)]
        );
        let english = english_only();
        let p = plan(&english, &options(None, None, false), 448).unwrap();
        assert_eq!(p.prompt, vec![Some(50257), Some(50362)]);
        assert!(!p.detects_language());
        let p = plan(&english, &options(None, None, true), 448).unwrap();
        assert_eq!(p.prompt, vec![Some(50257)]);
    }

    #[test]
    fn lengths_and_beams_follow_the_pipeline() {
        let multi = multilingual();
        // The pipeline's 5 beams; max_length 448 plus the prompt less one,
        // within the 448 positions.
        let p = plan(&multi, &options(None, None, false), 448).unwrap();
        assert_eq!((p.params.num_beams, p.params.max_new_tokens), (5, 444));
        let mut asked = options(None, None, false);
        asked.settings.num_beams = Some(1);
        asked.settings.max_new_tokens = Some(10);
        let p = plan(&multi, &asked, 448).unwrap();
        assert_eq!((p.params.num_beams, p.params.max_new_tokens), (1, 10));
        asked.settings.max_new_tokens = Some(445);
        let err = plan(&multi, &asked, 448).unwrap_err().to_string();
        assert!(err.contains("at most 444 new tokens"), "{err}");
        // A smaller model: max_length 448 is cut to its positions.
        let p = plan(&multi, &options(None, None, true), 64).unwrap();
        assert_eq!(p.params.max_new_tokens, 64 - 3);
        assert_eq!(p.params.timestamps.unwrap().timestamp_begin, 50364);
        assert_eq!(p.params.begin_suppress_tokens, vec![220, 50257]);
    }

    #[test]
    fn bad_requests_say_what_to_do() {
        let refused = |c: &WhisperGenerationConfig, o| plan(c, &o, 448).unwrap_err().to_string();
        let multi = multilingual();
        assert!(refused(&multi, options(Some("klingon"), None, false)).contains("unsupported language `klingon`"));
        assert!(refused(&multi, options(Some("italian"), None, false)).contains("<|it|> is not one of"));
        assert!(refused(&multi, options(None, Some("summarize"), false)).contains("task `summarize`"));
        let english = english_only();
        assert!(refused(&english, options(None, Some("translate"), false)).contains("English-only"));
        assert!(refused(&english, options(Some("en"), None, false)).contains("English-only"));
        let mut no_timestamps = english_only();
        no_timestamps.no_timestamps_token_id = None;
        assert!(refused(&no_timestamps, options(None, None, true)).contains("no timestamp tokens"));
    }

    #[test]
    fn windows_are_cut_into_segments_like_retrieve_segment() {
        // Timestamps from 100 (<|0.00|>); text below.
        let begin = 100;
        // No timestamps: one segment, the whole window.
        let (segments, advance) = segments_of(&[5, 6, 7], 0, 3000, begin);
        assert_eq!(advance, 3000);
        assert_eq!((segments[0].start, segments[0].end), (0.0, 30.0));
        // Pairs, then a single timestamp at the end: all of it, to the end.
        let tokens = [100, 5, 6, 150, 150, 7, 8, 230];
        let (segments, advance) = segments_of(&tokens, 0, 3000, begin);
        assert_eq!(advance, 3000);
        assert_eq!(segments.len(), 2);
        assert_eq!(segments[0].tokens, vec![100, 5, 6, 150]);
        assert_eq!((segments[0].start, segments[0].end), (0.0, 1.0));
        assert_eq!(segments[1].tokens, vec![150, 7, 8, 230]);
        assert!((segments[1].end - 2.6).abs() < 1e-12);
        // Ending on a pair: the window moves to the last segment's end (in
        // frames, two per timestamp step), the pair's second kept.
        let tokens = [100, 5, 150, 150, 7, 200, 200];
        let (segments, advance) = segments_of(&tokens, 1000, 3000, begin);
        assert_eq!(advance, 200);
        assert_eq!(segments[1].tokens, vec![150, 7, 200, 200]);
        assert!((segments[1].start - 11.0).abs() < 1e-12 && (segments[1].end - 12.0).abs() < 1e-12);
    }
}
