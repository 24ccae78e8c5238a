//! transformers' logits processors and warpers, written once for every
//! generative model, applied to each row of a step's scores in
//! `_get_logits_processor`'s order: repetition penalty, n-gram blocking,
//! bad words, minimum length, minimum new tokens, forced BOS, forced EOS;
//! then Whisper's, which its `generate` adds after those: suppressed tokens
//! at the first step, at every step, and the timestamp rules; then, when
//! sampling, the warpers: temperature, top-k, top-p.
//!
//! The scores stay where the model computed them (a GPU's memory on CUDA):
//! what a processor needs of a row's history (the ids to ban or penalise,
//! a forced id, the timestamp rules' ranges) is worked out on the host from
//! the token ids, and applied with tensor operations on the scores' own
//! device; only the chosen tokens (or a beam search's best candidates)
//! come back.

use tch::{Kind, Tensor};

use crate::core::device::upload;
use crate::generation::settings::{GenerationParams, TimestampRules};

/// What the processors know of one row: its whole sequence so far (a
/// decoder-only model's left padding and prompt included, as transformers'
/// `input_ids` are; an encoder-decoder's start token and output) and how
/// many of its tokens came before generation began.
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    pub sequence: &'a [i64],
    pub prompt_len: usize,
}

impl Row<'_> {
    fn new_tokens(&self) -> usize {
        self.sequence.len().saturating_sub(self.prompt_len)
    }
}

const NEG_INF: f64 = f64::NEG_INFINITY;

/// Applies the logits processors to `scores` [rows, vocab] (float32,
/// contiguous, on any device), row `r` having the history and settings of
/// `rows[r]`. Each processor runs on every row at once where it can (one
/// upload of the (row, id) pairs it bans, one fill); the repetition
/// penalty and Whisper's timestamp rules, which read a row's scores, run
/// row by row.
pub fn process(scores: &Tensor, rows: &[(Row, &GenerationParams)]) {
    assert!(scores.is_contiguous(), "the scores are filled through a flat view");
    let vocab = scores.size()[1];
    let in_vocab = |id: &i64| (0..vocab).contains(id);
    // RepetitionPenaltyLogitsProcessor
    for (r, (row, params)) in rows.iter().enumerate() {
        if params.repetition_penalty == 1.0 {
            continue;
        }
        let mut seen: Vec<i64> = row.sequence.iter().copied().filter(in_vocab).collect();
        seen.sort_unstable();
        seen.dedup();
        if !seen.is_empty() {
            let mut scores = scores.get(r as i64);
            let index = upload(&Tensor::from_slice(&seen), scores.device());
            let penalty = f64::from(params.repetition_penalty);
            let values = scores.index_select(0, &index);
            let penalised = (&values * penalty).where_self(&values.lt(0.0), &(&values / penalty));
            let _ = scores.index_copy_(0, &index, &penalised);
        }
    }
    let mut banned = Vec::new();
    let mut forced = Vec::new();
    let mut suppressed = Vec::new();
    for (r, (row, params)) in rows.iter().enumerate() {
        let sequence = row.sequence;
        let cur_len = sequence.len();
        let ban = |list: &mut Vec<(i64, i64)>, id: i64| list.push((r as i64, id));
        // NoRepeatNGramLogitsProcessor
        let n = params.no_repeat_ngram_size;
        if n > 0 && cur_len + 1 >= n {
            let prefix = &sequence[cur_len + 1 - n..];
            for window in sequence.windows(n) {
                if window[..n - 1] == *prefix {
                    ban(&mut banned, window[n - 1]);
                }
            }
        }
        // NoBadWordsLogitsProcessor
        for bad in &params.bad_words_ids {
            if let Some((last, prefix)) = bad.split_last() {
                if sequence.ends_with(prefix) {
                    ban(&mut banned, *last);
                }
            }
        }
        // MinLengthLogitsProcessor, MinNewTokensLengthLogitsProcessor
        if cur_len < params.min_length || row.new_tokens() < params.min_new_tokens {
            for &eos in &params.eos_token_ids {
                ban(&mut banned, eos);
            }
        }
        // ForcedBOSTokenLogitsProcessor (at length 1: right after an
        // encoder-decoder's start token), ForcedEOSTokenLogitsProcessor (on
        // the last step).
        let max_length = row.prompt_len + params.max_new_tokens;
        match (params.forced_bos_token_id, params.forced_eos_token_id) {
            (Some(bos), _) if cur_len == 1 => ban(&mut forced, bos),
            (_, Some(eos)) if cur_len + 1 == max_length => ban(&mut forced, eos),
            _ => {}
        }
        // SuppressTokensAtBeginLogitsProcessor (begin_index: the prompt's
        // length), SuppressTokensLogitsProcessor, and the first rule of
        // WhisperTimeStampLogitsProcessor: never <|notimestamps|>.
        if row.new_tokens() == 0 {
            for &t in &params.begin_suppress_tokens {
                ban(&mut suppressed, t);
            }
        }
        for &t in &params.suppress_tokens {
            ban(&mut suppressed, t);
        }
        if let Some(rules) = &params.timestamps {
            ban(&mut suppressed, rules.no_timestamps_token_id);
        }
    }
    fill(scores, &banned, NEG_INF);
    forced.retain(|(_, id)| in_vocab(id));
    if !forced.is_empty() {
        let rows: Vec<i64> = forced.iter().map(|&(r, _)| r).collect();
        let rows = upload(&Tensor::from_slice(&rows), scores.device());
        let _ = scores.shallow_clone().index_fill_(0, &rows, NEG_INF);
        fill(scores, &forced, 0.0);
    }
    fill(scores, &suppressed, NEG_INF);
    for (r, (row, params)) in rows.iter().enumerate() {
        if let Some(rules) = &params.timestamps {
            let cur_len = row.sequence.len();
            timestamp_rules(
                &scores.get(r as i64),
                &row.sequence[row.prompt_len.min(cur_len)..],
                rules,
            );
        }
    }
}

/// Sets the scores at the (row, id) pairs `at` of `scores` [rows, vocab]
/// to `value`, in one operation; ids outside the vocabulary are skipped.
fn fill(scores: &Tensor, at: &[(i64, i64)], value: f64) {
    let vocab = scores.size()[1];
    let flat: Vec<i64> = at
        .iter()
        .filter(|(_, id)| (0..vocab).contains(id))
        .map(|(r, id)| r * vocab + id)
        .collect();
    if !flat.is_empty() {
        let index = upload(&Tensor::from_slice(&flat), scores.device());
        let _ = scores.view([-1]).index_fill_(0, &index, value);
    }
}

/// WhisperTimeStampLogitsProcessor on one row (its scores [vocab], a view
/// changed in place; <|notimestamps|> already banned), whose new tokens are
/// `sampled`: timestamps come in pairs (a segment's end and the next one's
/// start) after text, never go back, the first token is a timestamp (at most
/// `max_initial_timestamp_index` steps in), and when the timestamps
/// together are more likely than any single text token, a timestamp it is.
fn timestamp_rules(scores: &Tensor, sampled: &[i64], rules: &TimestampRules) {
    let vocab = scores.size()[0];
    let index = |id: i64| id.clamp(0, vocab);
    let begin = index(rules.timestamp_begin);
    let hide = |from: i64, to: i64| {
        if to > from {
            let _ = scores.narrow(0, from, to - from).fill_(NEG_INF);
        }
    };
    let is_timestamp = |t: &i64| *t >= rules.timestamp_begin;
    let last_was_timestamp = sampled.last().is_some_and(is_timestamp);
    let penultimate_was_timestamp = sampled.len() < 2 || is_timestamp(&sampled[sampled.len() - 2]);
    if last_was_timestamp {
        if penultimate_was_timestamp {
            // A pair just closed: text (or EOS) must follow.
            hide(begin, vocab);
        } else {
            // A segment's end: its pair, or EOS (transformers bans the ids
            // below EOS, the text tokens).
            hide(0, index(rules.eos_token_id));
        }
    }
    if let Some(&newest) = sampled.iter().rev().find(|t| is_timestamp(t)) {
        // Time never goes back; after text, it moves on.
        let first_allowed = if last_was_timestamp && !penultimate_was_timestamp {
            newest
        } else {
            newest + 1
        };
        hide(begin, index(first_allowed).max(begin));
    }
    if sampled.is_empty() {
        hide(0, begin);
        if let Some(m) = rules.max_initial_timestamp_index {
            hide(index(rules.timestamp_begin + m + 1), vocab);
        }
    }
    // log_softmax cancels out of the comparison: the timestamps' summed
    // probability against the likeliest text token's (in float64, on the
    // device: no value comes back).
    if begin > 0 && begin < vocab {
        let text = scores.narrow(0, 0, begin);
        let times = scores.narrow(0, begin, vocab - begin).to_kind(Kind::Double);
        let likelier = times
            .logsumexp([0i64].as_slice(), false)
            .gt_tensor(&text.max().to_kind(Kind::Double));
        let _ = text.shallow_clone().masked_fill_(&likelier, NEG_INF);
    }
}

/// Applies the sampling warpers to `scores` [rows, vocab]: temperature,
/// top-k, top-p (each keeping at least one token).
pub fn warp(scores: &Tensor, params: &GenerationParams) {
    let vocab = scores.size()[1];
    if params.temperature != 1.0 {
        let _ = scores.shallow_clone().divide_scalar_(f64::from(params.temperature));
    }
    if params.top_k > 0 && (params.top_k as i64) < vocab {
        let k = params.top_k as i64;
        let (values, _) = scores.topk(k, -1, true, true);
        let kth = values.narrow(1, k - 1, 1);
        let _ = scores.shallow_clone().masked_fill_(&scores.lt_tensor(&kth), NEG_INF);
    }
    if params.top_p < 1.0 {
        // Ascending; the tokens whose probabilities up to theirs sum to at
        // most 1 - top_p go, never the likeliest.
        let (sorted, order) = scores.sort_stable(true, -1, false);
        let cumulative = sorted.softmax(-1, Kind::Float).cumsum(-1, Kind::Float);
        let remove = cumulative.le(1.0 - f64::from(params.top_p));
        let _ = remove.narrow(1, vocab - 1, 1).fill_(0);
        let remove = remove.scatter(1, &order, &remove);
        let _ = scores.shallow_clone().masked_fill_(&remove, NEG_INF);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `super::process` on one row held in a Vec.
    fn process(scores: &mut Vec<f32>, row: Row, params: &GenerationParams) {
        let t = Tensor::from_slice(scores).view([1, -1]);
        super::process(&t, &[(row, params)]);
        *scores = Vec::<f32>::try_from(t.view([-1])).unwrap();
    }

    /// `super::warp` on one row held in a Vec.
    fn warp(scores: &mut Vec<f32>, params: &GenerationParams) {
        let t = Tensor::from_slice(scores).view([1, -1]);
        super::warp(&t, params);
        *scores = Vec::<f32>::try_from(t.view([-1])).unwrap();
    }

    fn greedy() -> GenerationParams {
        GenerationParams {
            max_new_tokens: 10,
            eos_token_ids: vec![0],
            ..GenerationParams::default()
        }
    }

    fn row(sequence: &[i64]) -> Row<'_> {
        Row {
            sequence,
            prompt_len: 0,
        }
    }

    #[test]
    fn repetition_penalty_divides_positive_and_multiplies_negative_scores() {
        let p = GenerationParams {
            repetition_penalty: 2.0,
            ..greedy()
        };
        let mut scores = vec![1.0, -1.0, 4.0];
        process(&mut scores, row(&[0, 1, 1]), &p);
        assert_eq!(scores, vec![0.5, -2.0, 4.0]);
    }

    #[test]
    fn ngrams_seen_before_are_blocked() {
        let p = GenerationParams {
            no_repeat_ngram_size: 2,
            ..greedy()
        };
        let mut scores = vec![0.0; 5];
        // History 1 2 3 1: the bigram (1, 2) exists, so 2 cannot follow 1.
        process(&mut scores, row(&[1, 2, 3, 1]), &p);
        assert_eq!(scores[2], f32::NEG_INFINITY);
        assert_eq!(scores.iter().filter(|s| s.is_infinite()).count(), 1);
    }

    #[test]
    fn eos_is_suppressed_until_min_new_tokens() {
        let p = GenerationParams {
            min_new_tokens: 2,
            ..greedy()
        };
        // A prompt of one token, then one new token: EOS still banned.
        let mut scores = vec![5.0, 1.0];
        process(
            &mut scores,
            Row {
                sequence: &[1, 1],
                prompt_len: 1,
            },
            &p,
        );
        assert_eq!(scores[0], f32::NEG_INFINITY);
        let mut scores = vec![5.0, 1.0];
        process(
            &mut scores,
            Row {
                sequence: &[1, 1, 1],
                prompt_len: 1,
            },
            &p,
        );
        assert_eq!(scores[0], 5.0);
    }

    #[test]
    fn whisper_processors_suppress_and_pair_timestamps() {
        // Vocabulary: text 0..5, EOS 5, <|notimestamps|> 6, timestamps 7..12.
        let p = GenerationParams {
            suppress_tokens: vec![1],
            begin_suppress_tokens: vec![2],
            timestamps: Some(TimestampRules {
                no_timestamps_token_id: 6,
                timestamp_begin: 7,
                eos_token_id: 5,
                max_initial_timestamp_index: Some(2),
            }),
            ..greedy()
        };
        let prompt = [9, 9];
        let run = |new: &[i64], scores: &mut Vec<f32>| {
            let sequence: Vec<i64> = prompt.iter().chain(new).copied().collect();
            process(
                scores,
                Row {
                    sequence: &sequence,
                    prompt_len: 2,
                },
                &p,
            );
            (0..scores.len()).filter(|&i| scores[i].is_finite()).collect::<Vec<_>>()
        };
        let with = |id: usize, score: f32| {
            let mut scores = vec![0.0; 12];
            scores[id] = score;
            scores
        };
        // First step: a timestamp, from <|0.00|> to the third.
        assert_eq!(run(&[], &mut vec![0.0; 12]), vec![7, 8, 9]);
        // After a segment's start: text (not 1, suppressed; EOS allowed).
        assert_eq!(run(&[8], &mut vec![0.0; 12]), vec![0, 2, 3, 4, 5]);
        // After text: its end, later than its start, once the timestamps
        // together are likelier than any text token; otherwise either.
        assert_eq!(run(&[8, 3], &mut vec![0.0; 12]), vec![9, 10, 11]);
        assert_eq!(run(&[8, 3], &mut with(3, 5.0)), vec![0, 2, 3, 4, 5, 9, 10, 11]);
        // After a segment's end: its pair (the same time or later) or EOS.
        assert_eq!(run(&[8, 3, 10], &mut vec![0.0; 12]), vec![10, 11]);
        assert_eq!(run(&[8, 3, 10], &mut with(5, 9.0)), vec![5, 10, 11]);
        // After a pair: text only.
        assert_eq!(run(&[8, 3, 10, 10], &mut vec![0.0; 12]), vec![0, 2, 3, 4, 5]);
    }

    #[test]
    fn top_k_and_top_p_keep_the_right_tokens() {
        let p = GenerationParams { top_k: 2, ..greedy() };
        let mut scores = vec![1.0, 3.0, 2.0, 0.0];
        warp(&mut scores, &p);
        assert_eq!(scores.iter().filter(|s| s.is_finite()).count(), 2);
        assert!(scores[1].is_finite() && scores[2].is_finite());

        // Probabilities ~ [0.64, 0.24, 0.09, 0.03]: only the first is needed for 0.5.
        let p = GenerationParams { top_p: 0.5, ..greedy() };
        let mut scores = vec![3.0, 2.0, 1.0, 0.0];
        warp(&mut scores, &p);
        assert_eq!(scores.iter().filter(|s| s.is_finite()).count(), 1);
        let p = GenerationParams { top_p: 0.7, ..greedy() };
        let mut scores = vec![3.0, 2.0, 1.0, 0.0];
        warp(&mut scores, &p);
        assert_eq!(scores.iter().filter(|s| s.is_finite()).count(), 2);
    }

    #[test]
    fn processors_ban_and_force_like_transformers() {
        // An encoder-decoder: the start token is the prompt; max_length 10.
        let p = GenerationParams {
            max_new_tokens: 9,
            min_length: 3,
            no_repeat_ngram_size: 2,
            bad_words_ids: vec![vec![7], vec![4, 5]],
            forced_bos_token_id: Some(0),
            forced_eos_token_id: Some(2),
            eos_token_ids: vec![2],
            ..GenerationParams::default()
        };
        let decoder = |sequence| Row {
            sequence,
            prompt_len: 1,
        };
        // Step 1: only the forced BOS survives.
        let mut s = vec![1.0; 10];
        process(&mut s, decoder(&[2]), &p);
        assert_eq!(s[0], 0.0);
        assert!(s[1..].iter().all(|v| *v == f32::NEG_INFINITY));
        // Later: repeated bigram (3, 4) -> 4 banned after 3; bad word 7; 5
        // after 4; EOS before min_length.
        let mut s = vec![1.0; 10];
        process(&mut s, decoder(&[2, 3, 4, 3, 4]), &p);
        let banned: Vec<usize> = (0..10).filter(|&i| s[i] == f32::NEG_INFINITY).collect();
        assert_eq!(banned, vec![3, 5, 7]);
        let mut s = vec![1.0; 10];
        process(&mut s, decoder(&[2, 6]), &p);
        let banned: Vec<usize> = (0..10).filter(|&i| s[i] == f32::NEG_INFINITY).collect();
        assert_eq!(banned, vec![2, 7]);
        // The last step is forced to EOS.
        let mut s = vec![1.0; 10];
        process(&mut s, decoder(&[2, 0, 5, 6, 8, 9, 1, 3, 6]), &p);
        assert_eq!(s[2], 0.0);
        assert_eq!(s.iter().filter(|v| v.is_finite()).count(), 1);
    }
}
