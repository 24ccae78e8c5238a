//! Encoder-decoder generation (summarization, translation) as transformers
//! 4.57.6 `generate` does it for one input: the encoder runs once, the
//! decoder steps with cached self-attention keys and values (the
//! cross-attention ones are computed once), and tokens are chosen greedily
//! or by beam search (`_beam_search`: num_beams, length_penalty,
//! early_stopping true/false/"never", num_return_sequences), after the
//! logits processors these models configure: no_repeat_ngram_size,
//! bad_words_ids, min_length, forced_bos_token_id and forced_eos_token_id.
//! Lengths count the decoder's start token, as transformers' do.

use tch::{Device, Kind, Tensor};

use crate::layers::KvCache;

/// A model that encodes a source once and then decodes step by step.
pub trait Seq2SeqLm {
    /// Encoder states [1, source, d] of one input without padding.
    fn encode(&self, input_ids: &[i64]) -> Tensor;
    /// A decoder state for `rows` hypotheses over `memory` [1, source, d].
    fn start(&self, memory: &Tensor, rows: i64) -> DecoderState;
    /// Logits [rows, vocab] (f32) after feeding each row's newest token
    /// `tokens` [rows] at decoder position `position`.
    fn step(&self, tokens: &[i64], position: i64, state: &mut DecoderState) -> Tensor;
    fn decoder_start_token_id(&self) -> i64;
    fn device(&self) -> Device;
}

/// What the decoder keeps between steps.
pub struct DecoderState {
    /// Encoder states, one row per hypothesis.
    pub memory: Tensor,
    /// Self-attention keys and values, per layer.
    pub self_attn: Vec<KvCache>,
    /// Cross-attention keys and values, per layer, computed on the first step.
    pub cross_attn: Vec<Option<(Tensor, Tensor)>>,
}

impl DecoderState {
    pub fn new(memory: &Tensor, rows: i64, layers: usize) -> Self {
        DecoderState {
            memory: memory.expand([rows, -1, -1], false),
            self_attn: (0..layers).map(|_| KvCache::default()).collect(),
            cross_attn: (0..layers).map(|_| None).collect(),
        }
    }

    /// Keeps the hypotheses `rows` (in that order). The cross-attention
    /// cache is the same for every row of one input and stays.
    fn select_rows(&mut self, rows: &[i64], device: Device) {
        let index = Tensor::from_slice(rows).to_device(device);
        for cache in &mut self.self_attn {
            cache.select_rows(&index);
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

/// The settings of one generation, lengths counting the start token.
#[derive(Debug, Clone, PartialEq)]
pub struct Seq2SeqParams {
    pub max_length: usize,
    pub min_length: usize,
    pub num_beams: usize,
    pub num_return_sequences: usize,
    pub length_penalty: f64,
    pub early_stopping: EarlyStopping,
    pub no_repeat_ngram_size: usize,
    pub bad_words_ids: Vec<Vec<i64>>,
    pub forced_bos_token_id: Option<i64>,
    pub forced_eos_token_id: Option<i64>,
    pub eos_token_ids: Vec<i64>,
    /// `renormalize_logits`: log-softmax again after the processors.
    pub renormalize: bool,
}

/// Applies the logits processors, in transformers' order, to one row's
/// scores given the row's decoder tokens so far.
pub fn process(scores: &mut [f32], sequence: &[i64], params: &Seq2SeqParams) {
    let cur_len = sequence.len();
    let mut ban = |id: i64| {
        if let Some(s) = usize::try_from(id).ok().and_then(|i| scores.get_mut(i)) {
            *s = f32::NEG_INFINITY;
        }
    };
    // NoRepeatNGramLogitsProcessor
    let n = params.no_repeat_ngram_size;
    if n > 0 && cur_len + 1 >= n {
        let prefix = &sequence[cur_len + 1 - n..];
        for window in sequence.windows(n) {
            if window[..n - 1] == *prefix {
                ban(window[n - 1]);
            }
        }
    }
    // NoBadWordsLogitsProcessor
    for bad in &params.bad_words_ids {
        if let Some((last, prefix)) = bad.split_last() {
            if sequence.ends_with(prefix) {
                ban(*last);
            }
        }
    }
    // MinLengthLogitsProcessor
    if cur_len < params.min_length {
        for &eos in &params.eos_token_ids {
            ban(eos);
        }
    }
    // ForcedBOSTokenLogitsProcessor, ForcedEOSTokenLogitsProcessor
    let forced = match (params.forced_bos_token_id, params.forced_eos_token_id) {
        (Some(bos), _) if cur_len == 1 => Some(bos),
        (_, Some(eos)) if cur_len + 1 == params.max_length => Some(eos),
        _ => None,
    };
    if let Some(id) = forced
        .and_then(|id| usize::try_from(id).ok())
        .filter(|&i| i < scores.len())
    {
        scores.fill(f32::NEG_INFINITY);
        scores[id] = 0.0;
    }
}

/// In place, with LibTorch's log_softmax (the kernel transformers uses).
fn log_softmax(row: &mut [f32]) {
    let normalized = Tensor::from_slice(row).log_softmax(-1, Kind::Float);
    row.copy_from_slice(&Vec::<f32>::try_from(normalized).expect("f32 row"));
}

/// The indices of the `k` largest values, largest first (ties: lower index).
fn top_k(values: &[f32], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    let k = k.min(values.len());
    let cmp = |a: &usize, b: &usize| values[*b].total_cmp(&values[*a]).then(a.cmp(b));
    if k < order.len() {
        order.select_nth_unstable_by(k, cmp);
        order.truncate(k);
    }
    order.sort_by(cmp);
    order
}

/// Rows of f32 values from a [rows, vocab] tensor.
fn rows_of(t: &Tensor) -> Vec<Vec<f32>> {
    let t = t.to_kind(Kind::Float).to_device(Device::Cpu);
    (0..t.size()[0])
        .map(|i| Vec::<f32>::try_from(t.get(i)).expect("f32 row"))
        .collect()
}

/// Generates for one input; returns up to `num_return_sequences` decoder
/// sequences (start token first, EOS included when reached), best first.
/// `keep_going` is asked before every step (false: stop, e.g. the client
/// went away) and ends the search with what it has.
pub fn generate(
    model: &dyn Seq2SeqLm,
    input_ids: &[i64],
    params: &Seq2SeqParams,
    keep_going: &mut dyn FnMut() -> bool,
) -> Vec<Vec<i64>> {
    let _guard = tch::no_grad_guard();
    let memory = model.encode(input_ids);
    if params.num_beams <= 1 {
        vec![greedy(model, &memory, params, keep_going)]
    } else {
        beam_search(model, &memory, params, keep_going)
    }
}

fn greedy(
    model: &dyn Seq2SeqLm,
    memory: &Tensor,
    params: &Seq2SeqParams,
    keep_going: &mut dyn FnMut() -> bool,
) -> Vec<i64> {
    let mut state = model.start(memory, 1);
    let mut sequence = vec![model.decoder_start_token_id()];
    while sequence.len() < params.max_length && keep_going() {
        let logits = model.step(&sequence[sequence.len() - 1..], sequence.len() as i64 - 1, &mut state);
        let mut scores = rows_of(&logits).remove(0);
        process(&mut scores, &sequence, params);
        let next = top_k(&scores, 1)[0] as i64;
        sequence.push(next);
        if params.eos_token_ids.contains(&next) {
            break;
        }
    }
    sequence
}

struct Hypothesis {
    tokens: Vec<i64>,
    score: f32,
    finished: bool,
}

fn beam_search(
    model: &dyn Seq2SeqLm,
    memory: &Tensor,
    params: &Seq2SeqParams,
    keep_going: &mut dyn FnMut() -> bool,
) -> Vec<Vec<i64>> {
    const LARGE_NEGATIVE: f32 = -1.0e9;
    let beams = params.num_beams;
    let start = model.decoder_start_token_id();
    let keep = 2usize.max(1 + params.eos_token_ids.len()) * beams;
    let penalty = |length: usize| (length as f64).powf(params.length_penalty) as f32;
    let mut state = model.start(memory, beams as i64);
    let mut running: Vec<Vec<i64>> = vec![vec![start]; beams];
    let mut running_scores: Vec<f32> = (0..beams).map(|i| if i == 0 { 0.0 } else { LARGE_NEGATIVE }).collect();
    let mut finished: Vec<Hypothesis> = (0..beams)
        .map(|_| Hypothesis {
            tokens: vec![start],
            score: LARGE_NEGATIVE,
            finished: false,
        })
        .collect();
    let mut improvable = true;
    let mut cur_len = 1;
    loop {
        if !keep_going() {
            break;
        }
        let last: Vec<i64> = running.iter().map(|s| *s.last().expect("start token")).collect();
        let logits = model.step(&last, cur_len as i64 - 1, &mut state);
        let log_probs = rows_of(&logits.log_softmax(-1, Kind::Float));
        let vocab = log_probs[0].len();
        let mut accumulated = Vec::with_capacity(beams * vocab);
        for (beam, mut row) in log_probs.into_iter().enumerate() {
            process(&mut row, &running[beam], params);
            if params.renormalize {
                log_softmax(&mut row);
            }
            accumulated.extend(row.into_iter().map(|lp| lp + running_scores[beam]));
        }
        // The best `keep` continuations of all beams.
        let candidates: Vec<(usize, Vec<i64>, f32, bool)> = top_k(&accumulated, keep)
            .into_iter()
            .map(|i| {
                let (beam, token) = (i / vocab, (i % vocab) as i64);
                let mut tokens = running[beam].clone();
                tokens.push(token);
                let hits = tokens.len() >= params.max_length || params.eos_token_ids.contains(&token);
                (beam, tokens, accumulated[i], hits)
            })
            .collect();
        // The best unfinished ones run on.
        let running_candidates: Vec<f32> = candidates
            .iter()
            .map(|(_, _, score, hits)| score + if *hits { LARGE_NEGATIVE } else { 0.0 })
            .collect();
        let next = top_k(&running_candidates, beams);
        let sources: Vec<i64> = next.iter().map(|&k| candidates[k].0 as i64).collect();
        // Finished ones among the top `beams` join the finished list if
        // they beat its worst.
        let all_finished = finished.iter().all(|h| h.finished);
        let length_penalty = penalty(cur_len + 1 - 1);
        let mut merged: Vec<Hypothesis> = std::mem::take(&mut finished);
        for (k, (_, tokens, score, hits)) in candidates.iter().enumerate() {
            let just_finished = *hits && k < beams;
            let mut s = score / length_penalty;
            if all_finished && params.early_stopping == EarlyStopping::True {
                s += LARGE_NEGATIVE;
            }
            if !improvable {
                s += LARGE_NEGATIVE;
            }
            if !just_finished {
                s += LARGE_NEGATIVE;
            }
            merged.push(Hypothesis {
                tokens: tokens.clone(),
                score: s,
                finished: just_finished,
            });
        }
        let scores: Vec<f32> = merged.iter().map(|h| h.score).collect();
        let best = top_k(&scores, beams);
        let mut slots: Vec<Option<Hypothesis>> = merged.into_iter().map(Some).collect();
        finished = best.iter().map(|&i| slots[i].take().expect("distinct")).collect();

        running = next.iter().map(|&k| candidates[k].1.clone()).collect();
        running_scores = next.iter().map(|&k| running_candidates[k]).collect();
        state.select_rows(&sources, model.device());
        cur_len += 1;

        // Can a running beam still beat the worst finished one?
        let best_length = if params.early_stopping == EarlyStopping::Never && params.length_penalty > 0.0 {
            params.max_length - 1
        } else {
            cur_len - 1
        };
        let best_possible = running_scores[0] / penalty(best_length);
        let worst = finished.iter().map(|h| h.score).fold(f32::INFINITY, f32::min);
        improvable = improvable
            && finished
                .iter()
                .any(|h| best_possible > if h.finished { worst } else { LARGE_NEGATIVE });
        let all_finished = finished.iter().all(|h| h.finished);
        let open = !(all_finished && params.early_stopping == EarlyStopping::True);
        let can_continue = !candidates.iter().all(|c| c.3);
        if !(improvable && open && can_continue) {
            break;
        }
    }
    finished
        .into_iter()
        .take(params.num_return_sequences.max(1))
        .map(|h| h.tokens)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> Seq2SeqParams {
        Seq2SeqParams {
            max_length: 10,
            min_length: 3,
            num_beams: 1,
            num_return_sequences: 1,
            length_penalty: 1.0,
            early_stopping: EarlyStopping::False,
            no_repeat_ngram_size: 2,
            bad_words_ids: vec![vec![7], vec![4, 5]],
            forced_bos_token_id: Some(0),
            forced_eos_token_id: Some(2),
            eos_token_ids: vec![2],
            renormalize: false,
        }
    }

    #[test]
    fn processors_ban_and_force_like_transformers() {
        let p = params();
        // Step 1: only the forced BOS survives.
        let mut s = vec![1.0; 10];
        process(&mut s, &[2], &p);
        assert_eq!(s[0], 0.0);
        assert!(s[1..].iter().all(|v| *v == f32::NEG_INFINITY));
        // Later: repeated bigram (3, 4) -> 4 banned after 3; bad word 7; 5
        // after 4; EOS before min_length.
        let mut s = vec![1.0; 10];
        process(&mut s, &[2, 3, 4, 3, 4], &p);
        let banned: Vec<usize> = (0..10).filter(|&i| s[i] == f32::NEG_INFINITY).collect();
        assert_eq!(banned, vec![3, 5, 7]);
        let mut s = vec![1.0; 10];
        process(&mut s, &[2, 6], &p);
        let banned: Vec<usize> = (0..10).filter(|&i| s[i] == f32::NEG_INFINITY).collect();
        assert_eq!(banned, vec![2, 7]);
        // The last step is forced to EOS.
        let mut s = vec![1.0; 10];
        process(&mut s, &[2, 0, 5, 6, 8, 9, 1, 3, 6], &p);
        assert_eq!(s[2], 0.0);
        assert_eq!(s.iter().filter(|v| v.is_finite()).count(), 1);
    }

    #[test]
    fn top_k_orders_by_value_then_index() {
        assert_eq!(top_k(&[0.5, 2.0, 2.0, -1.0, 3.0], 3), vec![4, 1, 2]);
        assert_eq!(top_k(&[1.0, 1.0], 5), vec![0, 1]);
    }
}

/// Architectures `load_seq2seq` accepts.
pub const SEQ2SEQ_ARCHITECTURES: &[&str] = &[
    "BartForConditionalGeneration",
    "T5ForConditionalGeneration",
    "MarianMTModel",
];

/// `early_stopping` as generation configs write it: a bool or "never".
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(untagged)]
pub enum EarlyStoppingValue {
    Bool(bool),
    Text(String),
}

impl EarlyStoppingValue {
    pub fn parse(&self) -> Result<EarlyStopping, String> {
        match self {
            EarlyStoppingValue::Bool(true) => Ok(EarlyStopping::True),
            EarlyStoppingValue::Bool(false) => Ok(EarlyStopping::False),
            EarlyStoppingValue::Text(t) => match t.as_str() {
                "true" | "True" => Ok(EarlyStopping::True),
                "false" | "False" => Ok(EarlyStopping::False),
                "never" => Ok(EarlyStopping::Never),
                other => Err(format!("early_stopping `{other}`: expected true, false or never")),
            },
        }
    }
}

/// Generation settings as a generation_config.json, a config.json, a
/// `task_specific_params` entry or a request gives them; absent: unset.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
pub struct Seq2SeqSettings {
    pub max_length: Option<usize>,
    pub max_new_tokens: Option<usize>,
    pub min_length: Option<usize>,
    pub num_beams: Option<usize>,
    pub num_return_sequences: Option<usize>,
    pub length_penalty: Option<f64>,
    pub early_stopping: Option<EarlyStoppingValue>,
    pub no_repeat_ngram_size: Option<usize>,
    pub bad_words_ids: Option<Vec<Vec<i64>>>,
    pub forced_bos_token_id: Option<i64>,
    pub forced_eos_token_id: Option<crate::generation::TokenIds>,
    pub eos_token_id: Option<crate::generation::TokenIds>,
    pub renormalize_logits: Option<bool>,
}

impl Seq2SeqSettings {
    /// Sets every value `other` has.
    pub fn update(&mut self, other: &Seq2SeqSettings) {
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
            num_beams,
            num_return_sequences,
            length_penalty,
            early_stopping,
            no_repeat_ngram_size,
            bad_words_ids,
            forced_bos_token_id,
            forced_eos_token_id,
            eos_token_id,
            renormalize_logits
        );
    }

    /// These settings without the values equal to GenerationConfig's
    /// defaults (a model's config only overrides the pipeline's defaults
    /// where it departs from them).
    fn departures(&self) -> Seq2SeqSettings {
        let mut s = self.clone();
        s.max_length = s.max_length.filter(|&v| v != 20);
        s.min_length = s.min_length.filter(|&v| v != 0);
        s.num_beams = s.num_beams.filter(|&v| v != 1);
        s.num_return_sequences = s.num_return_sequences.filter(|&v| v != 1);
        s.length_penalty = s.length_penalty.filter(|&v| v != 1.0);
        s.early_stopping = s.early_stopping.filter(|v| *v != EarlyStoppingValue::Bool(false));
        s.no_repeat_ngram_size = s.no_repeat_ngram_size.filter(|&v| v != 0);
        s
    }
}

/// The settings of a generation as Text2TextGenerationPipeline resolves
/// them: GenerationConfig's defaults, under the pipeline's own
/// (max_new_tokens 256, num_beams 4), under the model's generation config
/// where it departs from the defaults (a max_length of its own then
/// replaces the pipeline's max_new_tokens), under the task's
/// `task_specific_params`, under the request's.
pub fn resolve(
    model: &Seq2SeqSettings,
    task: Option<&Seq2SeqSettings>,
    request: &Seq2SeqSettings,
) -> Result<Seq2SeqParams, String> {
    let mut s = Seq2SeqSettings {
        max_length: Some(20),
        max_new_tokens: Some(256),
        num_beams: Some(4),
        ..Default::default()
    };
    s.update(&model.departures());
    if s.max_new_tokens == Some(256) && s.max_length != Some(20) {
        s.max_new_tokens = None;
    }
    if let Some(task) = task {
        s.update(task);
    }
    s.update(request);
    let max_length = match s.max_new_tokens {
        Some(n) => n + 1,
        None => s.max_length.unwrap_or(20),
    };
    let min_length = s.min_length.unwrap_or(0);
    let num_beams = s.num_beams.unwrap_or(1);
    let num_return_sequences = s.num_return_sequences.unwrap_or(1);
    if num_beams == 0 {
        return Err("num_beams must be at least 1".into());
    }
    if max_length < 2 {
        return Err("max_length must leave room for one new token (at least 2: it counts the start token)".into());
    }
    if min_length > max_length {
        return Err(format!(
            "min_length ({min_length}) is more than max_length ({max_length})"
        ));
    }
    if num_return_sequences == 0 || num_return_sequences > num_beams {
        return Err(format!(
            "num_return_sequences ({num_return_sequences}) must be from 1 to num_beams ({num_beams})"
        ));
    }
    let eos_token_ids = s.eos_token_id.as_ref().map(|t| t.to_vec()).unwrap_or_default();
    let early_stopping = match &s.early_stopping {
        Some(v) => v.parse()?,
        None => EarlyStopping::False,
    };
    Ok(Seq2SeqParams {
        max_length,
        min_length,
        num_beams,
        num_return_sequences,
        length_penalty: s.length_penalty.unwrap_or(1.0),
        early_stopping,
        no_repeat_ngram_size: s.no_repeat_ngram_size.unwrap_or(0),
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
    })
}

/// The tokenizer of an encoder-decoder model: a tokenizer.json, or
/// Marian's SentencePiece models with their joint vocabulary.
pub enum Seq2SeqTokenizer {
    Text(crate::tokenizer::TextTokenizer),
    Marian {
        tokenizer: crate::sentencepiece::MarianTokenizer,
        max_length: usize,
    },
}

impl Seq2SeqTokenizer {
    /// Token ids with the special tokens the model expects, truncated to
    /// the model's positions where it has a limit.
    pub fn encode(&self, text: &str) -> crate::Result<Vec<i64>> {
        match self {
            Seq2SeqTokenizer::Text(t) => Ok(t.encode(text, None)?.get_ids().iter().map(|&id| id as i64).collect()),
            Seq2SeqTokenizer::Marian { tokenizer, max_length } => tokenizer.encode(text, Some(*max_length)),
        }
    }

    /// Text without special tokens (clean-up of spaces off, as pipeline()
    /// decodes generated text).
    pub fn decode(&self, ids: &[i64]) -> crate::Result<String> {
        match self {
            Seq2SeqTokenizer::Text(t) => {
                let ids: Vec<u32> = ids.iter().map(|&id| id as u32).collect();
                t.decode_with(&ids, true, false)
            }
            Seq2SeqTokenizer::Marian { tokenizer, .. } => tokenizer.decode(ids),
        }
    }
}

/// A loaded encoder-decoder model with its tokenizer and generation
/// settings.
pub struct Seq2SeqModel {
    pub net: Box<dyn Seq2SeqLm + Send>,
    _vs: tch::nn::VarStore,
    pub tokenizer: Seq2SeqTokenizer,
    /// generation_config.json (or, without one, config.json).
    pub settings: Seq2SeqSettings,
    /// config.json's `task_specific_params`, by task.
    pub task_settings: std::collections::HashMap<String, serde_json::Value>,
    pub architecture: String,
    pub memory_bytes: u64,
    /// The one direction a model translates, from tokenizer_config.json's
    /// `source_lang` and `target_lang` (Marian checkpoints have them).
    pub direction: Option<(String, String)>,
}

impl Seq2SeqModel {
    /// The `task_specific_params` entry of `task`, and its `prefix`.
    pub fn task(&self, task: &str) -> Result<(Option<Seq2SeqSettings>, String), String> {
        let Some(value) = self.task_settings.get(task) else {
            return Ok((None, String::new()));
        };
        let settings =
            serde_json::from_value(value.clone()).map_err(|e| format!("task_specific_params.{task}: {e}"))?;
        let prefix = value
            .get("prefix")
            .and_then(|p| p.as_str())
            .unwrap_or_default()
            .to_string();
        Ok((Some(settings), prefix))
    }
}

/// Loads the encoder-decoder checkpoint in `dir` on `device`.
pub fn load_seq2seq(dir: &std::path::Path, device: Device) -> crate::Result<Seq2SeqModel> {
    use crate::config::{config_path, read_json, CommonConfig};
    let config_file = config_path(dir)?;
    let architecture = CommonConfig::from_dir(dir)?.architecture(&config_file)?;
    let mut vs = tch::nn::VarStore::new(device);
    let (net, positions): (Box<dyn Seq2SeqLm + Send>, i64) = match architecture.as_str() {
        "BartForConditionalGeneration" => {
            let cfg: crate::bart::Config = read_json(&config_file)?;
            let positions = cfg.max_position_embeddings;
            let net = crate::bart::BartForConditionalGeneration::new(vs.root(), &cfg, crate::bart::Variant::Bart);
            (Box::new(net), positions)
        }
        "MarianMTModel" => {
            let cfg: crate::bart::Config = read_json(&config_file)?;
            let positions = cfg.max_position_embeddings;
            let net = crate::bart::BartForConditionalGeneration::new(vs.root(), &cfg, crate::bart::Variant::Marian);
            (Box::new(net), positions)
        }
        "T5ForConditionalGeneration" => {
            let cfg: crate::t5::Config = read_json(&config_file)?;
            // Relative positions: no table to outgrow; pipeline() does not
            // truncate T5 inputs.
            (
                Box::new(crate::t5::T5ForConditionalGeneration::new(vs.root(), &cfg)),
                i64::MAX,
            )
        }
        other => {
            return Err(crate::ModelError::Unsupported(format!(
                "architecture {other} for summarization and translation (supported: {})",
                SEQ2SEQ_ARCHITECTURES.join(", ")
            )))
        }
    };
    crate::weights::Checkpoint::open(dir)?.load_into(&mut vs)?;
    let generation_file = dir.join("generation_config.json");
    let settings: Seq2SeqSettings = read_json(if generation_file.is_file() {
        &generation_file
    } else {
        &config_file
    })?;
    #[derive(serde::Deserialize)]
    struct TaskParams {
        #[serde(default)]
        task_specific_params: Option<std::collections::HashMap<String, serde_json::Value>>,
        #[serde(default)]
        pad_token_id: Option<i64>,
    }
    let extra: TaskParams = read_json(&config_file)?;
    let tokenizer = if !dir.join("tokenizer.json").is_file() && dir.join("source.spm").is_file() {
        Seq2SeqTokenizer::Marian {
            tokenizer: crate::sentencepiece::MarianTokenizer::from_dir(dir)?,
            max_length: positions as usize,
        }
    } else {
        let mut tokenizer =
            crate::tokenizer::TextTokenizer::from_dir(dir, positions as usize, extra.pad_token_id.unwrap_or(1))?;
        if positions == i64::MAX {
            tokenizer.disable_truncation()?;
        }
        Seq2SeqTokenizer::Text(tokenizer)
    };
    #[derive(serde::Deserialize, Default)]
    struct Languages {
        source_lang: Option<String>,
        target_lang: Option<String>,
    }
    let tokenizer_config = dir.join("tokenizer_config.json");
    let languages: Languages = if tokenizer_config.is_file() {
        read_json(&tokenizer_config).unwrap_or_default()
    } else {
        Languages::default()
    };
    Ok(Seq2SeqModel {
        direction: languages.source_lang.zip(languages.target_lang),
        net,
        memory_bytes: crate::weights::var_store_bytes(&vs),
        _vs: vs,
        tokenizer,
        settings,
        task_settings: extra.task_specific_params.unwrap_or_default(),
        architecture,
    })
}
