//! Autoregressive generation, written once for every generative model:
//! batched decoding with left padding and KV caches, the logits processors
//! of transformers' `generate` (repetition penalty, n-gram blocking, minimum
//! length), greedy choice or seeded sampling (temperature, top-k, top-p), and
//! stopping at EOS, at a length limit, or when the caller says so (stop
//! sequences, a client that went away).

use serde::Deserialize;
use tch::{Device, Kind, Tensor};

use crate::layers::KvCache;

/// A model that predicts the next token from a prefix.
pub trait CausalLm {
    /// An empty KV cache for a new batch.
    fn new_cache(&self) -> Vec<KvCache>;
    /// Logits [batch, vocab] at the last position (see gpt2.rs).
    fn forward_last(
        &self,
        input_ids: &Tensor,
        position_ids: &Tensor,
        attention_mask: &Tensor,
        cache: &mut [KvCache],
    ) -> Tensor;
    /// The longest sequence (prompt + new tokens) the model can attend over.
    fn max_positions(&self) -> usize;
    fn device(&self) -> Device;
}

/// Settings of one sequence's generation.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationParams {
    pub max_new_tokens: usize,
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
    pub eos_token_ids: Vec<i64>,
    /// Seed of the sampling RNG (ignored when greedy).
    pub seed: u64,
}

/// Why a sequence ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// max_new_tokens, or the model's context window.
    Length,
    EosToken,
    StopSequence,
    /// The caller stopped it (client went away).
    Cancelled,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Length => "length",
            FinishReason::EosToken => "eos_token",
            FinishReason::StopSequence => "stop_sequence",
            FinishReason::Cancelled => "cancelled",
        }
    }
}

/// What the caller says after each new token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Continue,
    Stop(FinishReason),
}

/// One sequence to generate.
pub struct Request {
    pub prompt: Vec<i64>,
    pub params: GenerationParams,
}

/// A generated continuation (prompt not included; the EOS token included
/// when generation ended on it).
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    pub tokens: Vec<i64>,
    pub finish: FinishReason,
}

/// The generation_config.json fields inferd uses.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct GenerationConfigFile {
    pub max_length: Option<usize>,
    pub max_new_tokens: Option<usize>,
    pub min_new_tokens: Option<usize>,
    pub do_sample: Option<bool>,
    pub temperature: Option<f32>,
    pub top_k: Option<usize>,
    pub top_p: Option<f32>,
    pub repetition_penalty: Option<f32>,
    pub no_repeat_ngram_size: Option<usize>,
    pub eos_token_id: Option<TokenIds>,
    pub pad_token_id: Option<i64>,
    pub bos_token_id: Option<i64>,
}

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

/// A small, seedable RNG (SplitMix64), so that a seed gives the same
/// samples whatever other sequences share the batch.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Applies transformers' logits processors for one row, in `generate`'s
/// order: repetition penalty, n-gram blocking, minimum new tokens.
/// `history` is the row's whole input so far (left padding included, as in
/// transformers), `new_tokens` how many tokens were generated.
pub fn process_logits(scores: &mut [f32], history: &[i64], new_tokens: usize, params: &GenerationParams) {
    if params.repetition_penalty != 1.0 {
        let mut seen = history.to_vec();
        seen.sort_unstable();
        seen.dedup();
        for &t in &seen {
            if let Some(s) = scores.get_mut(t as usize) {
                *s = if *s < 0.0 {
                    *s * params.repetition_penalty
                } else {
                    *s / params.repetition_penalty
                };
            }
        }
    }
    let n = params.no_repeat_ngram_size;
    if n > 0 && history.len() + 1 >= n {
        let prefix = &history[history.len() + 1 - n..];
        for window in history.windows(n) {
            if &window[..n - 1] == prefix {
                if let Some(s) = scores.get_mut(window[n - 1] as usize) {
                    *s = f32::NEG_INFINITY;
                }
            }
        }
    }
    if new_tokens < params.min_new_tokens {
        for &eos in &params.eos_token_ids {
            if let Some(s) = scores.get_mut(eos as usize) {
                *s = f32::NEG_INFINITY;
            }
        }
    }
}

/// Applies the sampling warpers in `generate`'s order: temperature, top-k,
/// top-p (each keeping at least one token).
pub fn warp_logits(scores: &mut [f32], params: &GenerationParams) {
    if params.temperature != 1.0 {
        for s in scores.iter_mut() {
            *s /= params.temperature;
        }
    }
    if params.top_k > 0 && params.top_k < scores.len() {
        let mut sorted: Vec<f32> = scores.to_vec();
        sorted.sort_by(|a, b| b.total_cmp(a));
        let kth = sorted[params.top_k - 1];
        for s in scores.iter_mut() {
            if *s < kth {
                *s = f32::NEG_INFINITY;
            }
        }
    }
    if params.top_p < 1.0 {
        let mut order: Vec<usize> = (0..scores.len()).collect();
        order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
        let probs = softmax(&order.iter().map(|&i| scores[i]).collect::<Vec<_>>());
        let mut cumulative = 0.0f32;
        let last = order.len() - 1;
        for (rank, &i) in order.iter().enumerate() {
            cumulative += probs[rank];
            if cumulative <= 1.0 - params.top_p && rank < last {
                scores[i] = f32::NEG_INFINITY;
            }
        }
    }
}

fn softmax(x: &[f32]) -> Vec<f32> {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = x.iter().map(|&v| (v - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

/// The first index of the largest score (torch.argmax's choice on ties).
fn argmax(scores: &[f32]) -> usize {
    let mut best = 0;
    for (i, s) in scores.iter().enumerate() {
        if *s > scores[best] {
            best = i;
        }
    }
    best
}

/// Draws from softmax(scores).
fn sample(scores: &[f32], rng: &mut Rng) -> usize {
    let probs = softmax(scores);
    let u = rng.uniform() as f32;
    let mut cumulative = 0.0f32;
    let mut last_possible = 0;
    for (i, p) in probs.iter().enumerate() {
        if *p > 0.0 {
            last_possible = i;
            cumulative += p;
            if u < cumulative {
                return i;
            }
        }
    }
    last_possible
}

/// Picks the next token of a row from its raw logits.
pub fn next_token(
    logits: &mut [f32],
    history: &[i64],
    new_tokens: usize,
    params: &GenerationParams,
    rng: &mut Rng,
) -> i64 {
    process_logits(logits, history, new_tokens, params);
    if params.do_sample {
        warp_logits(logits, params);
        sample(logits, rng) as i64
    } else {
        argmax(logits) as i64
    }
}

struct Row {
    index: usize,
    /// Left padding, prompt and generated tokens.
    history: Vec<i64>,
    prompt_len: usize,
    generated: Vec<i64>,
    params: GenerationParams,
    rng: Rng,
    finish: Option<FinishReason>,
}

/// Generates continuations for `requests` in one batch. `on_token(i, token)`
/// is called for each new token of request `i`; returning `Stop` ends that
/// sequence. Finished sequences leave the batch at once.
pub fn generate(
    model: &impl CausalLm,
    requests: Vec<Request>,
    pad_id: i64,
    mut on_token: impl FnMut(usize, i64) -> Control,
) -> Vec<Generated> {
    let _guard = tch::no_grad_guard();
    let device = model.device();
    let n = requests.len();
    if n == 0 {
        return vec![];
    }
    let width = requests.iter().map(|r| r.prompt.len()).max().unwrap_or(0).max(1);
    let mut rows: Vec<Row> = requests
        .into_iter()
        .enumerate()
        .map(|(index, r)| {
            let mut history = vec![pad_id; width - r.prompt.len()];
            history.extend(&r.prompt);
            Row {
                index,
                history,
                prompt_len: r.prompt.len(),
                generated: vec![],
                rng: Rng::new(r.params.seed),
                params: r.params,
                finish: None,
            }
        })
        .collect();
    // Left padding: [pad pad a b c]; positions count real tokens only.
    let mask_values: Vec<i64> = rows
        .iter()
        .flat_map(|r| (0..width).map(move |i| i64::from(i >= width - r.prompt_len)))
        .collect();
    let ids: Vec<i64> = rows.iter().flat_map(|r| r.history.clone()).collect();
    let mut input_ids = Tensor::from_slice(&ids)
        .view([n as i64, width as i64])
        .to_device(device);
    let mut mask = Tensor::from_slice(&mask_values)
        .view([n as i64, width as i64])
        .to_device(device);
    let mut positions = (mask.cumsum(1, Kind::Int64) - 1).masked_fill(&mask.eq(0), 1);
    let mut cache = model.new_cache();
    let mut active: Vec<usize> = (0..n).collect();
    let max_positions = model.max_positions();
    while !active.is_empty() {
        let logits = model
            .forward_last(&input_ids, &positions, &mask, &mut cache)
            .to_kind(Kind::Float)
            .to_device(Device::Cpu);
        let vocab = logits.size()[1] as usize;
        let flat = Vec::<f32>::try_from(logits.flatten(0, -1)).expect("f32 logits");
        let mut next = Vec::with_capacity(active.len());
        for (slot, &r) in active.iter().enumerate() {
            let row = &mut rows[r];
            let mut scores = flat[slot * vocab..(slot + 1) * vocab].to_vec();
            let token = next_token(
                &mut scores,
                &row.history,
                row.generated.len(),
                &row.params,
                &mut row.rng,
            );
            row.history.push(token);
            row.generated.push(token);
            next.push(token);
            let control = on_token(row.index, token);
            row.finish = if let Control::Stop(reason) = control {
                Some(reason)
            } else if row.params.eos_token_ids.contains(&token) {
                Some(FinishReason::EosToken)
            } else if row.generated.len() >= row.params.max_new_tokens
                || row.prompt_len + row.generated.len() >= max_positions
            {
                Some(FinishReason::Length)
            } else {
                None
            };
        }
        let keep: Vec<usize> = (0..active.len())
            .filter(|&slot| rows[active[slot]].finish.is_none())
            .collect();
        if keep.is_empty() {
            break;
        }
        let next_ids = Tensor::from_slice(&next).view([-1, 1]).to_device(device);
        let last_positions = positions.select(1, positions.size()[1] - 1).unsqueeze(1) + 1;
        mask = Tensor::cat(
            &[mask, Tensor::ones([active.len() as i64, 1], (Kind::Int64, device))],
            1,
        );
        input_ids = next_ids;
        positions = last_positions;
        if keep.len() < active.len() {
            let rows_t = Tensor::from_slice(&keep.iter().map(|&k| k as i64).collect::<Vec<_>>()).to_device(device);
            for layer in cache.iter_mut() {
                layer.select_rows(&rows_t);
            }
            mask = mask.index_select(0, &rows_t);
            input_ids = input_ids.index_select(0, &rows_t);
            positions = positions.index_select(0, &rows_t);
            active = keep.iter().map(|&k| active[k]).collect();
        }
    }
    rows.into_iter()
        .map(|r| Generated {
            tokens: r.generated,
            finish: r.finish.unwrap_or(FinishReason::Length),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> GenerationParams {
        GenerationParams {
            max_new_tokens: 10,
            min_new_tokens: 0,
            do_sample: false,
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            repetition_penalty: 1.0,
            no_repeat_ngram_size: 0,
            eos_token_ids: vec![0],
            seed: 0,
        }
    }

    #[test]
    fn repetition_penalty_divides_positive_and_multiplies_negative_scores() {
        let mut p = params();
        p.repetition_penalty = 2.0;
        let mut scores = vec![1.0, -1.0, 4.0];
        process_logits(&mut scores, &[0, 1, 1], 0, &p);
        assert_eq!(scores, vec![0.5, -2.0, 4.0]);
    }

    #[test]
    fn ngrams_seen_before_are_blocked() {
        let mut p = params();
        p.no_repeat_ngram_size = 2;
        let mut scores = vec![0.0; 5];
        // History 1 2 3 1: the bigram (1, 2) exists, so 2 cannot follow 1.
        process_logits(&mut scores, &[1, 2, 3, 1], 0, &p);
        assert_eq!(scores[2], f32::NEG_INFINITY);
        assert_eq!(scores.iter().filter(|s| s.is_infinite()).count(), 1);
    }

    #[test]
    fn eos_is_suppressed_until_min_new_tokens() {
        let mut p = params();
        p.min_new_tokens = 2;
        let mut scores = vec![5.0, 1.0];
        process_logits(&mut scores, &[1], 1, &p);
        assert_eq!(scores[0], f32::NEG_INFINITY);
        let mut scores = vec![5.0, 1.0];
        process_logits(&mut scores, &[1], 2, &p);
        assert_eq!(scores[0], 5.0);
    }

    #[test]
    fn top_k_and_top_p_keep_the_right_tokens() {
        let mut p = params();
        p.top_k = 2;
        let mut scores = vec![1.0, 3.0, 2.0, 0.0];
        warp_logits(&mut scores, &p);
        assert_eq!(scores.iter().filter(|s| s.is_finite()).count(), 2);
        assert!(scores[1].is_finite() && scores[2].is_finite());

        let mut p = params();
        p.top_p = 0.5;
        // Probabilities ~ [0.64, 0.24, 0.09, 0.03]: only the first is needed for 0.5.
        let mut scores = vec![3.0, 2.0, 1.0, 0.0];
        warp_logits(&mut scores, &p);
        assert_eq!(scores.iter().filter(|s| s.is_finite()).count(), 1);
        let mut p = params();
        p.top_p = 0.7;
        let mut scores = vec![3.0, 2.0, 1.0, 0.0];
        warp_logits(&mut scores, &p);
        assert_eq!(scores.iter().filter(|s| s.is_finite()).count(), 2);
    }

    #[test]
    fn sampling_follows_the_distribution_and_the_seed() {
        let scores = vec![0.0f32, (3.0f32).ln()];
        let mut rng = Rng::new(7);
        let draws = 20_000;
        let ones = (0..draws).filter(|_| sample(&scores, &mut rng) == 1).count();
        let freq = ones as f64 / draws as f64;
        assert!((freq - 0.75).abs() < 0.015, "frequency {freq}");
        let a: Vec<usize> = {
            let mut r = Rng::new(42);
            (0..20).map(|_| sample(&scores, &mut r)).collect()
        };
        let b: Vec<usize> = {
            let mut r = Rng::new(42);
            (0..20).map(|_| sample(&scores, &mut r)).collect()
        };
        assert_eq!(a, b);
    }
}
