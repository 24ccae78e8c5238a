//! The searches of `generate`, one per input: greedy or sampled (one
//! hypothesis, its token chosen by `sampling::choose` with the others') and transformers'
//! `_beam_search` (num_beams, length_penalty, early_stopping
//! true/false/"never", num_return_sequences). Each hypothesis starts from
//! the input's prompt (an encoder-decoder's decoder start token); lengths
//! count it, as transformers' do.

use std::sync::Arc;

use tch::{Device, Kind, Tensor};

use crate::core::device::upload;
use crate::core::math::top_k;
use crate::generation::processors::{process, Row};
use crate::generation::sampling::{Choice, Rng};
use crate::generation::settings::{EarlyStopping, GenerationParams};

/// One input's search: greedy or sampled (one hypothesis), or beam search.
pub enum Search {
    Single {
        params: Arc<GenerationParams>,
        prompt_len: usize,
        sequence: Vec<i64>,
        rng: Rng,
        /// Its cross-attention history, when kept (word timestamps).
        alignment: Option<Tensor>,
    },
    Beams(BeamSearch),
}

/// A sequence found, with its cross-attention history when it was kept.
pub type Found = (Vec<i64>, Option<Tensor>);

impl Search {
    /// A search from `prompt` with `params` (shared by the sequences of
    /// one request).
    pub fn new(prompt: Vec<i64>, params: Arc<GenerationParams>) -> Self {
        debug_assert!(params.max_new_tokens >= 1, "room for one new token");
        if params.num_beams <= 1 {
            Search::Single {
                prompt_len: prompt.len(),
                sequence: prompt,
                rng: Rng::new(params.seed),
                params,
                alignment: None,
            }
        } else {
            Search::Beams(BeamSearch::new(prompt, params))
        }
    }

    /// The newest token of each hypothesis, the decoder's next inputs.
    pub fn newest_tokens(&self) -> Vec<i64> {
        let newest = |s: &Vec<i64>| *s.last().expect("a prompt");
        match self {
            Search::Single { sequence, .. } => vec![newest(sequence)],
            Search::Beams(search) => search.running.iter().map(newest).collect(),
        }
    }

    /// The one hypothesis of a greedy or sampled search as a row to
    /// choose a token for (None for beam search).
    pub fn choice(&mut self) -> Option<Choice<'_>> {
        match self {
            Search::Single {
                params,
                prompt_len,
                sequence,
                rng,
                ..
            } => Some(Choice {
                row: Row {
                    sequence,
                    prompt_len: *prompt_len,
                },
                params,
                rng,
            }),
            Search::Beams(_) => None,
        }
    }

    /// One step, from this input's scores [hypotheses, vocab] (on the
    /// model's device; processed in place) or, for a greedy or sampled
    /// search, the token `sampling::choose` chose from its row of them: the
    /// hypothesis each new one continues, or None when the search is over.
    pub fn advance(&mut self, scores: &Tensor, chosen: Option<i64>) -> Option<Vec<usize>> {
        match self {
            Search::Single {
                params,
                prompt_len,
                sequence,
                ..
            } => {
                let next = chosen.expect("a token chosen for a single search");
                sequence.push(next);
                let over =
                    params.eos_token_ids.contains(&next) || sequence.len() >= *prompt_len + params.max_new_tokens;
                (!over).then(|| vec![0])
            }
            Search::Beams(search) => search.advance(scores),
        }
    }

    /// Takes the cross-attention history of the hypotheses that finished
    /// in the last step (or, greedy, of the one sequence once it is over)
    /// from `history(beam)`, the history of that beam's row.
    pub fn keep_alignment(&mut self, over: bool, history: &dyn Fn(usize) -> Option<Tensor>) {
        match self {
            Search::Single { alignment, .. } => {
                if over {
                    *alignment = history(0);
                }
            }
            Search::Beams(search) => {
                for h in &mut search.finished {
                    if let Some(beam) = h.origin.take() {
                        h.alignment = history(beam);
                    }
                }
            }
        }
    }

    /// The sequences found, best first.
    pub fn into_sequences(self) -> Vec<Vec<i64>> {
        self.into_found().into_iter().map(|(tokens, _)| tokens).collect()
    }

    /// The sequences found, best first, with their kept cross-attention.
    pub fn into_found(self) -> Vec<Found> {
        match self {
            Search::Single {
                sequence, alignment, ..
            } => vec![(sequence, alignment)],
            Search::Beams(search) => search
                .finished
                .into_iter()
                .take(search.params.num_return_sequences.max(1))
                .map(|h| (h.tokens, h.alignment))
                .collect(),
        }
    }
}

struct Hypothesis {
    tokens: Vec<i64>,
    score: f32,
    finished: bool,
    /// The beam it finished from, in the step just taken, until its
    /// cross-attention history is taken from that beam's row.
    origin: Option<usize>,
    alignment: Option<Tensor>,
}

const LARGE_NEGATIVE: f32 = -1.0e9;

/// transformers' `_beam_search` for one input.
pub struct BeamSearch {
    params: Arc<GenerationParams>,
    prompt_len: usize,
    /// The prompt's length plus max_new_tokens.
    max_length: usize,
    running: Vec<Vec<i64>>,
    running_scores: Vec<f32>,
    /// The best `num_beams` finished hypotheses (placeholders until then).
    finished: Vec<Hypothesis>,
    improvable: bool,
    cur_len: usize,
}

impl BeamSearch {
    fn new(prompt: Vec<i64>, params: Arc<GenerationParams>) -> Self {
        let beams = params.num_beams;
        let prompt_len = prompt.len();
        BeamSearch {
            prompt_len,
            max_length: prompt_len + params.max_new_tokens,
            running: vec![prompt.clone(); beams],
            running_scores: (0..beams).map(|i| if i == 0 { 0.0 } else { LARGE_NEGATIVE }).collect(),
            finished: (0..beams)
                .map(|_| Hypothesis {
                    tokens: prompt.clone(),
                    score: LARGE_NEGATIVE,
                    finished: false,
                    origin: None,
                    alignment: None,
                })
                .collect(),
            improvable: true,
            cur_len: prompt_len,
            params,
        }
    }

    fn penalty(&self, length: usize) -> f32 {
        (length as f64).powf(self.params.length_penalty) as f32
    }

    /// One step from the beams' log-probabilities [beams, vocab] (on the
    /// model's device): processed, renormalised when asked, added to each
    /// beam's score, and the best `keep` continuations of all beams taken
    /// there with torch.topk, as transformers does; only those come back.
    fn advance(&mut self, log_probs: &Tensor) -> Option<Vec<usize>> {
        let params = Arc::clone(&self.params);
        let params = params.as_ref();
        let beams = params.num_beams;
        let vocab = log_probs.size()[1] as usize;
        let keep = 2usize.max(1 + params.eos_token_ids.len()) * beams;
        let histories: Vec<(Row, &GenerationParams)> = self
            .running
            .iter()
            .map(|sequence| {
                let row = Row {
                    sequence,
                    prompt_len: self.prompt_len,
                };
                (row, params)
            })
            .collect();
        process(log_probs, &histories);
        let log_probs = if params.renormalize {
            log_probs.log_softmax(-1, Kind::Float)
        } else {
            log_probs.shallow_clone()
        };
        let running = upload(&Tensor::from_slice(&self.running_scores), log_probs.device()).view([-1, 1]);
        let accumulated = (log_probs + running).view([-1]);
        let (best, index) = accumulated.topk((keep as i64).min(accumulated.size()[0]), 0, true, true);
        // One copy back: the scores and their indices (exact in float64).
        let found = Tensor::cat(&[best.to_kind(Kind::Double), index.to_kind(Kind::Double)], 0);
        let found = Vec::<f64>::try_from(found.to_device(Device::Cpu)).expect("f64 candidates");
        let (best, index) = found.split_at(found.len() / 2);
        // The best `keep` continuations of all beams.
        let candidates: Vec<(usize, Vec<i64>, f32, bool)> = index
            .iter()
            .zip(best)
            .map(|(&i, &score)| {
                let (i, score) = (i as usize, score as f32);
                let (beam, token) = (i / vocab, (i % vocab) as i64);
                let mut tokens = self.running[beam].clone();
                tokens.push(token);
                let hits = tokens.len() >= self.max_length || params.eos_token_ids.contains(&token);
                (beam, tokens, score, hits)
            })
            .collect();
        // The best unfinished ones run on.
        let running_candidates: Vec<f32> = candidates
            .iter()
            .map(|(_, _, score, hits)| score + if *hits { LARGE_NEGATIVE } else { 0.0 })
            .collect();
        let next = top_k(&running_candidates, beams);
        let parents: Vec<usize> = next.iter().map(|&k| candidates[k].0).collect();
        // Finished ones among the top `beams` join the finished list if
        // they beat its worst.
        let all_finished = self.finished.iter().all(|h| h.finished);
        let length_penalty = self.penalty(self.cur_len + 1 - self.prompt_len);
        let mut merged: Vec<Hypothesis> = std::mem::take(&mut self.finished);
        for (k, (beam, tokens, score, hits)) in candidates.iter().enumerate() {
            let just_finished = *hits && k < beams;
            let mut s = score / length_penalty;
            if all_finished && params.early_stopping == EarlyStopping::True {
                s += LARGE_NEGATIVE;
            }
            if !self.improvable {
                s += LARGE_NEGATIVE;
            }
            if !just_finished {
                s += LARGE_NEGATIVE;
            }
            merged.push(Hypothesis {
                tokens: tokens.clone(),
                score: s,
                finished: just_finished,
                origin: just_finished.then_some(*beam),
                alignment: None,
            });
        }
        let scores: Vec<f32> = merged.iter().map(|h| h.score).collect();
        let best = top_k(&scores, beams);
        let mut slots: Vec<Option<Hypothesis>> = merged.into_iter().map(Some).collect();
        self.finished = best.iter().map(|&i| slots[i].take().expect("distinct")).collect();

        self.running = next.iter().map(|&k| candidates[k].1.clone()).collect();
        self.running_scores = next.iter().map(|&k| running_candidates[k]).collect();
        self.cur_len += 1;

        // Can a running beam still beat the worst finished one?
        let best_length = if params.early_stopping == EarlyStopping::Never && params.length_penalty > 0.0 {
            self.max_length - self.prompt_len
        } else {
            self.cur_len - self.prompt_len
        };
        let best_possible = self.running_scores[0] / self.penalty(best_length);
        let worst = self.finished.iter().map(|h| h.score).fold(f32::INFINITY, f32::min);
        self.improvable = self.improvable
            && self
                .finished
                .iter()
                .any(|h| best_possible > if h.finished { worst } else { LARGE_NEGATIVE });
        let all_finished = self.finished.iter().all(|h| h.finished);
        let open = !(all_finished && params.early_stopping == EarlyStopping::True);
        let can_continue = !candidates.iter().all(|c| c.3);
        (self.improvable && open && can_continue).then_some(parents)
    }
}
