//! Encoder-decoder generation (summarization, translation) as transformers
//! 4.57.6 `generate` does it, for a batch of inputs decoded together: the
//! inputs are padded and encoded once, the decoder steps every hypothesis of
//! every input at once, with cached self-attention keys and values and
//! cross-attention keys and values computed once per input (not per beam).
//! Tokens are chosen by the shared searches (`search.rs`: greedy, sampling
//! or `_beam_search`) after the shared logits processors (`processors.rs`).
//! Each input's search is its own, as in transformers' batched search, and
//! an input whose search is over (or whose client went away) leaves the
//! batch at once, so the others no longer compute its rows.
//! Lengths count the decoder's prompt (its start token, and Whisper's
//! language, task and timestamp tokens), as transformers' do.

use std::collections::VecDeque;
use std::sync::Arc;

use tch::{Kind, Tensor};

use crate::core::decoding::{Alignment, DecoderState, Seq2SeqLm};
use crate::core::layers::padding_bias;
use crate::generation::sampling::{choose, Choice};
use crate::generation::search::{Found, Search};
use crate::generation::settings::{GenerationParams, MAX_BATCH_ROWS};

/// What the encoder starts from.
#[derive(Clone, Copy)]
pub enum Input<'a> {
    /// A text model's token ids, encoded here (padded with others).
    Tokens(&'a [i64]),
    /// Encoder states [1, source, d] computed beforehand: Whisper encodes
    /// each window once, for language detection and for decoding.
    Encoded(&'a Tensor),
}

impl Input<'_> {
    /// Source positions.
    fn len(&self) -> usize {
        match self {
            Input::Tokens(ids) => ids.len(),
            Input::Encoded(states) => states.size()[1] as usize,
        }
    }
}

/// One input to generate from: the encoder's input, the decoder's prompt
/// and the settings.
pub struct Source<'a> {
    pub input: Input<'a>,
    /// The decoder's first tokens, fed before the first new one; empty:
    /// the model's decoder start token alone.
    pub prompt: Vec<i64>,
    pub params: &'a GenerationParams,
}

impl<'a> Source<'a> {
    /// A text input, decoded from the model's start token.
    pub fn tokens(input_ids: &'a [i64], params: &'a GenerationParams) -> Self {
        Source {
            input: Input::Tokens(input_ids),
            prompt: vec![],
            params,
        }
    }
}

/// Source tokens, padding included, encoded and decoded together at most:
/// the encoder states and every layer's cross-attention keys and values
/// grow with them (16 BART inputs of 1024 tokens).
pub const MAX_BATCH_SOURCE_TOKENS: usize = 16 * 1024;

/// Rounds of arrivals encoded between two decoding steps at most: arrivals
/// go first (their first token sooner), but a stream of them cannot hold
/// the running inputs back for more than this many encoder passes a step.
pub const MAX_PREFILLS_PER_STEP: usize = 2;

/// Splits inputs of `lengths` (sorted, shortest first) with `beams`
/// hypotheses each into consecutive batches within MAX_BATCH_ROWS and
/// MAX_BATCH_SOURCE_TOKENS (an input alone over them is a batch of its own).
fn batch_bounds(lengths: &[usize], beams: usize) -> Vec<std::ops::Range<usize>> {
    let mut bounds = Vec::new();
    let mut start = 0;
    for end in 1..=lengths.len() {
        let (count, longest) = (end - start, lengths[end - 1]);
        if count > 1 && (count * beams > MAX_BATCH_ROWS || count * longest > MAX_BATCH_SOURCE_TOKENS) {
            bounds.push(start..end - 1);
            start = end - 1;
        }
    }
    if start < lengths.len() {
        bounds.push(start..lengths.len());
    }
    bounds
}

/// Generates for each source up to `num_return_sequences` decoder sequences
/// (prompt first, EOS included when reached), best first: the sources
/// given at once to [`generate_joined`], which decodes together those with
/// the same `num_beams` and prompt length (and, encoded beforehand, the same
/// number of source positions), sorted by length, within MAX_BATCH_ROWS
/// hypotheses and MAX_BATCH_SOURCE_TOKENS source tokens. `keep_going(i)`
/// is asked before encoding and before every step for each source `i`
/// still being decoded; false (e.g. its client went away) ends that
/// source's search with what it has: no sequences when it had not started.
pub fn generate(
    model: &dyn Seq2SeqLm,
    sources: &[Source],
    keep_going: &mut dyn FnMut(usize) -> bool,
) -> Vec<Vec<Vec<i64>>> {
    let mut first = Some(
        sources
            .iter()
            .map(|s| Arrival {
                input: match s.input {
                    Input::Tokens(ids) => Owned::Tokens(ids.to_vec()),
                    Input::Encoded(states) => Owned::Encoded(states.shallow_clone()),
                },
                prompt: s.prompt.clone(),
                params: Arc::new(s.params.clone()),
                aligned: false,
            })
            .collect(),
    );
    let mut results = vec![Vec::new(); sources.len()];
    generate_joined(
        model,
        MAX_BATCH_ROWS,
        None,
        &mut |_| first.take().unwrap_or_default(),
        keep_going,
        &mut |i, found| results[i] = found.into_iter().map(|(tokens, _)| tokens).collect(),
    );
    results
}

/// One input that joins a running decode ([`generate_joined`]).
pub struct Arrival {
    pub input: Owned,
    /// The decoder's first tokens; empty: the model's start token alone.
    pub prompt: Vec<i64>,
    pub params: Arc<GenerationParams>,
    /// Whether its sequences keep the cross-attention of the alignment
    /// heads (Whisper's word timestamps).
    pub aligned: bool,
}

/// What the encoder starts from, owned ([`Input`]'s).
pub enum Owned {
    Tokens(Vec<i64>),
    Encoded(Tensor),
}

impl Arrival {
    /// A text model's token ids, decoded from the start token.
    pub fn tokens(input_ids: Vec<i64>, params: Arc<GenerationParams>) -> Self {
        Arrival {
            input: Owned::Tokens(input_ids),
            prompt: vec![],
            params,
            aligned: false,
        }
    }

    fn input(&self) -> Input<'_> {
        match &self.input {
            Owned::Tokens(ids) => Input::Tokens(ids),
            Owned::Encoded(states) => Input::Encoded(states),
        }
    }

    fn beams(&self) -> usize {
        self.params.num_beams.max(1)
    }
}

/// The decode of a batch that inputs join and leave between steps
/// (continuous batching). Before each step `arrivals(rows)` gives the
/// inputs that arrive now (`rows`: the hypotheses decoding or waiting to);
/// they are numbered in arrival order from 0 and wait, in order, until
/// their hypotheses fit beside the running ones within `max_rows` (one
/// input always fits when none runs). Those that fit are encoded together
/// (within MAX_BATCH_ROWS hypotheses and MAX_BATCH_SOURCE_TOKENS source
/// tokens at a time; encoder states given beforehand are stacked), feed
/// their prompts but the last token, and join the running inputs with the
/// same `num_beams` before their first step, which they take with them
/// (their cross-attention keys and values computed beforehand; inputs with
/// other beam counts decode beside them, a step each in turn). After a
/// prefill the caller is asked again before the next step (up to
/// MAX_PREFILLS_PER_STEP prefills between two steps), so an input that
/// arrived during another's encoder pass does not also wait for a step;
/// and once between two steps, when inputs arrive, before they start, so
/// that those the caller encoded meanwhile start with them.
/// Inputs that keep their alignment
/// (`aligned`, with `alignment_heads`) decode in batches of their own,
/// which nothing joins. Each input gets the sequences it gets alone: its
/// rows see only its own history and source. `keep_going(i)` is asked
/// before every step (false ends input `i` with what it has);
/// `on_finish(i, found)` is called as soon as input `i`'s search is over.
/// Returns when nothing runs or waits and nothing arrived at the last ask.
pub fn generate_joined(
    model: &dyn Seq2SeqLm,
    max_rows: usize,
    alignment_heads: Option<&[(usize, usize)]>,
    arrivals: &mut dyn FnMut(usize) -> Vec<Arrival>,
    keep_going: &mut dyn FnMut(usize) -> bool,
    on_finish: &mut dyn FnMut(usize, Vec<Found>),
) {
    let _guard = tch::no_grad_guard();
    let start = model.decoder_start_token_id();
    let mut batches: Vec<Batch> = Vec::new();
    let mut waiting: VecDeque<(usize, Arrival)> = VecDeque::new();
    let mut arrived_so_far = 0;
    // Inputs finished since the last ask: the caller may have more for the
    // decode (Whisper's next window), so it is asked again before the end.
    let finished = std::cell::Cell::new(0usize);
    let on_finish = &mut |i: usize, found: Vec<Found>| {
        finished.set(finished.get() + 1);
        on_finish(i, found)
    };
    let mut prefills = 0;
    let mut asked_again = false;
    loop {
        finished.set(0);
        let mut rows: usize = batches.iter().map(|b| b.state.rows()).sum();
        let waiting_rows: usize = waiting.iter().map(|(_, a)| a.beams()).sum();
        let arrived = arrivals(rows + waiting_rows);
        let count = arrived.len();
        waiting.extend((arrived_so_far..).zip(arrived));
        arrived_so_far += count;
        // What arrived while these were encoded (Whisper's windows are, in
        // `arrivals`) starts with them: asked once more before starting,
        // inputs that come together feed their prompts as one batch, and
        // no running batch copies its cross-attention keys to take them in.
        if count > 0 && !asked_again {
            asked_again = true;
            continue;
        }
        let mut admitted = Vec::new();
        while let Some((_, a)) = waiting.front() {
            if rows > 0 && rows + a.beams() > max_rows {
                break;
            }
            rows += a.beams();
            admitted.extend(waiting.pop_front());
        }
        for (_, a) in &mut admitted {
            if a.prompt.is_empty() {
                a.prompt = vec![start];
            }
            a.aligned &= alignment_heads.is_some();
        }
        // What must agree within a batch: beams, prompt length, alignment
        // and the length of states encoded beforehand (they are stacked).
        let key = |a: &Arrival| {
            let encoded = match &a.input {
                Owned::Tokens(_) => 0,
                Owned::Encoded(states) => states.size()[1],
            };
            (a.beams(), a.prompt.len(), a.aligned, encoded)
        };
        admitted.sort_by_key(|(_, a)| (key(a), a.input().len()));
        for group in admitted.chunk_by(|(_, a), (_, b)| key(a) == key(b)) {
            let (beams, _, aligned, _) = key(&group[0].1);
            let lengths: Vec<usize> = group.iter().map(|(_, a)| a.input().len()).collect();
            for bounds in batch_bounds(&lengths, beams) {
                // One no longer wanted ends before it starts, with nothing.
                let mut wanted = Vec::new();
                for (i, a) in &group[bounds] {
                    if !keep_going(*i) {
                        on_finish(*i, vec![]);
                        continue;
                    }
                    wanted.push(Start {
                        id: *i,
                        input: a.input(),
                        prompt: a.prompt.clone(),
                        params: Arc::clone(&a.params),
                    });
                }
                if wanted.is_empty() {
                    continue;
                }
                let fresh = Batch::start(model, wanted, alignment_heads.filter(|_| aligned));
                let joins = |b: &Batch| b.beams == beams && !aligned && b.state.alignment.is_none() && b.fits(&fresh);
                match batches.iter().position(joins) {
                    Some(k) => {
                        let running = batches.swap_remove(k).with_cross(model);
                        batches.push(running.merge(fresh.with_cross(model)));
                    }
                    None => batches.push(fresh),
                }
            }
        }
        if batches.is_empty() && waiting.is_empty() {
            if count == 0 && finished.get() == 0 {
                return;
            }
            // What arrived, or what was waiting, ended at once: ask again.
            continue;
        }
        if !admitted.is_empty() && prefills < MAX_PREFILLS_PER_STEP {
            prefills += 1;
            continue;
        }
        prefills = 0;
        asked_again = false;
        batches.retain_mut(|batch| batch.step(model, keep_going, on_finish));
    }
}

/// An input to start decoding: its number, encoder input, decoder prompt
/// and settings.
struct Start<'a> {
    id: usize,
    input: Input<'a>,
    prompt: Vec<i64>,
    params: Arc<GenerationParams>,
}

/// Inputs decoding together, all with the same `num_beams`: their searches
/// in the decoder state's order (`beams` rows each).
struct Batch {
    beams: usize,
    state: DecoderState,
    searches: Vec<(usize, Search)>,
}

impl Batch {
    /// Encodes the inputs together (token ids padded, or encoder states
    /// stacked) and feeds their prompts (all of one length) but the last
    /// token, whose logits choose the first new one.
    fn start(model: &dyn Seq2SeqLm, inputs: Vec<Start>, alignment_heads: Option<&[(usize, usize)]>) -> Batch {
        let beams = inputs[0].params.num_beams.max(1);
        let (memory, padding) = encode_together(model, inputs.iter().map(|s| s.input));
        let mut state = DecoderState::new(memory, padding, beams, model.decoder_layers());
        state.alignment = alignment_heads.map(|heads| Alignment::new(heads.to_vec()));
        let prompt_len = inputs[0].prompt.len();
        for t in 0..prompt_len - 1 {
            let tokens: Vec<i64> = inputs
                .iter()
                .flat_map(|s| std::iter::repeat_n(s.prompt[t], beams))
                .collect();
            let _ = model.step(&tokens, &mut state);
        }
        let searches = inputs
            .into_iter()
            .map(|s| (s.id, Search::new(s.prompt, s.params)))
            .collect();
        Batch { beams, state, searches }
    }

    /// One decoding step. An input whose `keep_going` is false ends first,
    /// with what it has; inputs whose search is over after the step are
    /// handed to `on_finish` and leave. Whether any input goes on.
    fn step(
        &mut self,
        model: &dyn Seq2SeqLm,
        keep_going: &mut dyn FnMut(usize) -> bool,
        on_finish: &mut dyn FnMut(usize, Vec<Found>),
    ) -> bool {
        let beams = self.beams;
        let wanted: Vec<bool> = self.searches.iter().map(|(i, _)| keep_going(*i)).collect();
        if wanted.contains(&false) {
            let items = positions(&wanted);
            let rows: Vec<i64> = items
                .iter()
                .flat_map(|&i| i * beams as i64..(i + 1) * beams as i64)
                .collect();
            self.leave(&wanted, on_finish);
            if items.is_empty() {
                return false;
            }
            self.state.select(&items, &rows);
        }
        let tokens: Vec<i64> = self.searches.iter().flat_map(|(_, s)| s.newest_tokens()).collect();
        let logits = model.step(&tokens, &mut self.state);
        // Every later step feeds a new token, whose attention is kept.
        if let Some(alignment) = self.state.alignment.as_mut() {
            alignment.recording = true;
        }
        // Beam search ranks log-probabilities; greedy, the processed logits.
        // They stay on the model's device: the greedy and sampled tokens,
        // or each beam search's best candidates, are all that come back.
        let scores = if beams > 1 {
            logits.log_softmax(-1, Kind::Float)
        } else {
            logits.to_kind(Kind::Float)
        };
        let chosen: Vec<Option<i64>> = if beams > 1 {
            vec![None; self.searches.len()]
        } else {
            let mut choices: Vec<Choice> = self.searches.iter_mut().filter_map(|(_, s)| s.choice()).collect();
            choose(&scores, &mut choices).into_iter().map(Some).collect()
        };
        let mut going_on = Vec::with_capacity(self.searches.len());
        let mut rows = Vec::with_capacity(self.searches.len() * beams);
        for (slot, ((_, search), token)) in self.searches.iter_mut().zip(chosen).enumerate() {
            let item_scores = scores.narrow(0, (slot * beams) as i64, beams as i64);
            let parents = search.advance(&item_scores, token);
            if let Some(alignment) = &self.state.alignment {
                search.keep_alignment(parents.is_none(), &|beam| alignment.row(slot * beams + beam));
            }
            going_on.push(parents.is_some());
            rows.extend(parents.iter().flatten().map(|&b| (slot * beams + b) as i64));
        }
        let items = positions(&going_on);
        self.leave(&going_on, on_finish);
        if items.is_empty() {
            return false;
        }
        self.state.select(&items, &rows);
        true
    }

    /// Hands the searches whose flag is false to `on_finish`, keeping the others.
    fn leave(&mut self, flags: &[bool], on_finish: &mut dyn FnMut(usize, Vec<Found>)) {
        let mut kept = Vec::with_capacity(self.searches.len());
        for ((id, search), &keep) in std::mem::take(&mut self.searches).into_iter().zip(flags) {
            if keep {
                kept.push((id, search));
            } else {
                on_finish(id, search.into_found());
            }
        }
        self.searches = kept;
    }

    /// Whether `other`'s inputs may join these: merging pads every input's
    /// source to the longest, which stays within MAX_BATCH_SOURCE_TOKENS
    /// (sources of one length, as Whisper's, are never padded).
    fn fits(&self, other: &Batch) -> bool {
        let (a, b) = (self.state.memory.size(), other.state.memory.size());
        let padded = (a[0] + b[0]) * a[1].max(b[1]);
        a[1] == b[1] || padded as usize <= MAX_BATCH_SOURCE_TOKENS
    }

    /// The batch with its cross-attention keys and values, which a batch
    /// that has not taken its first step computes here (to merge).
    fn with_cross(mut self, model: &dyn Seq2SeqLm) -> Batch {
        if self.state.cross_attn.iter().any(Option::is_none) {
            model.cross_keys_values(&mut self.state);
        }
        self
    }

    /// These inputs and `other`'s (same beams) in one batch.
    fn merge(mut self, other: Batch) -> Batch {
        self.state = self.state.merge(other.state);
        self.searches.extend(other.searches);
        self
    }
}

/// Encodes token ids as one padded batch, or stacks encoder states.
fn encode_together<'a>(model: &dyn Seq2SeqLm, inputs: impl Iterator<Item = Input<'a>>) -> (Tensor, Option<Tensor>) {
    let device = model.device();
    let mut ids_of = Vec::new();
    let mut states = Vec::new();
    for input in inputs {
        match input {
            Input::Tokens(ids) => ids_of.push(ids),
            Input::Encoded(s) => states.push(s.shallow_clone()),
        }
    }
    if !states.is_empty() {
        assert!(ids_of.is_empty(), "token ids and encoder states in one batch");
        return (Tensor::cat(&states, 0), None);
    }
    let longest = ids_of.iter().map(|ids| ids.len()).max().unwrap_or(0);
    let (mut ids, mut mask) = (Vec::new(), Vec::new());
    for input in &ids_of {
        ids.extend(
            input
                .iter()
                .copied()
                .chain(std::iter::repeat_n(0, longest - input.len())),
        );
        mask.extend((0..longest).map(|t| i64::from(t < input.len())));
    }
    let shape = [ids_of.len() as i64, longest as i64];
    let ids = Tensor::from_slice(&ids).view(shape).to_device(device);
    let padding = mask
        .contains(&0)
        .then(|| padding_bias(&Tensor::from_slice(&mask).view(shape).to_device(device), Kind::Float));
    (model.encode(&ids, padding.as_ref()), padding)
}

/// The positions of the `true` flags.
fn positions(flags: &[bool]) -> Vec<i64> {
    (0..flags.len() as i64).filter(|&i| flags[i as usize]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_stay_within_rows_and_source_tokens() {
        // Rows: 64 / 4 beams = 16 short inputs at a time.
        let short = vec![10; 40];
        assert_eq!(batch_bounds(&short, 4), vec![0..16, 16..32, 32..40]);
        assert_eq!(batch_bounds(&short, 1), vec![0..40]);
        // Tokens: 16 * 1024 padded tokens, so longer inputs go fewer at a
        // time, and an input over the budget goes alone.
        let mixed = [100, 1000, 1024, 1024, 4000, 4096, 4096, 4096, 4096, 20000];
        assert_eq!(batch_bounds(&mixed, 1), vec![0..4, 4..8, 8..9, 9..10]);
        assert_eq!(batch_bounds(&[], 4), Vec::<std::ops::Range<usize>>::new());
    }
}
