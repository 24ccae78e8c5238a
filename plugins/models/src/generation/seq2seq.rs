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

use tch::{Device, Kind, Tensor};

use crate::core::decoding::{Alignment, DecoderState, Seq2SeqLm};
use crate::core::layers::padding_bias;
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
/// (prompt first, EOS included when reached), best first. Sources with
/// the same `num_beams` and prompt length (and, encoded beforehand, the same
/// number of source positions) are decoded together, sorted by length, within
/// MAX_BATCH_ROWS hypotheses and MAX_BATCH_SOURCE_TOKENS source tokens at a
/// time. `keep_going(i)` is asked before
/// encoding and before every step for each source `i` still being decoded;
/// false (e.g. its client went away) ends that source's search with what
/// it has: no sequences when it had not started.
pub fn generate(
    model: &dyn Seq2SeqLm,
    sources: &[Source],
    keep_going: &mut dyn FnMut(usize) -> bool,
) -> Vec<Vec<Vec<i64>>> {
    generate_aligned(model, sources, None, keep_going)
        .into_iter()
        .map(|found| found.into_iter().map(|(tokens, _)| tokens).collect())
        .collect()
}

/// [`generate`], keeping with each sequence, when `alignment_heads` are
/// given, the cross-attention probabilities of those (layer, head) pairs
/// for each of its new tokens but the last (the ones fed back to the
/// decoder), [new tokens - 1, heads, source]: what word timestamps are
/// computed from.
pub fn generate_aligned(
    model: &dyn Seq2SeqLm,
    sources: &[Source],
    alignment_heads: Option<&[(usize, usize)]>,
    keep_going: &mut dyn FnMut(usize) -> bool,
) -> Vec<Vec<Found>> {
    let _guard = tch::no_grad_guard();
    let start = model.decoder_start_token_id();
    let prompts: Vec<Vec<i64>> = sources
        .iter()
        .map(|s| {
            if s.prompt.is_empty() {
                vec![start]
            } else {
                s.prompt.clone()
            }
        })
        .collect();
    // What must agree within a batch: beams, prompt length, and the length
    // of states encoded beforehand (they are stacked, not padded).
    let key = |i: usize| {
        let encoded = match sources[i].input {
            Input::Tokens(_) => 0,
            Input::Encoded(_) => sources[i].input.len(),
        };
        (sources[i].params.num_beams.max(1), prompts[i].len(), encoded)
    };
    let mut order: Vec<usize> = (0..sources.len()).collect();
    order.sort_by_key(|&i| (key(i), sources[i].input.len()));
    let mut results: Vec<Vec<Found>> = (0..sources.len()).map(|_| Vec::new()).collect();
    for group in order.chunk_by(|&a, &b| key(a) == key(b)) {
        let lengths: Vec<usize> = group.iter().map(|&i| sources[i].input.len()).collect();
        for bounds in batch_bounds(&lengths, key(group[0]).0) {
            let chosen = &group[bounds];
            let wanted: Vec<usize> = chosen.iter().copied().filter(|&i| keep_going(i)).collect();
            if wanted.is_empty() {
                continue;
            }
            let outputs = decode_together(model, sources, &prompts, &wanted, alignment_heads, keep_going);
            for (&i, sequences) in wanted.iter().zip(outputs) {
                results[i] = sequences;
            }
        }
    }
    results
}

/// Encodes the token ids of the sources `chosen` as one padded batch, or
/// stacks their encoder states.
fn encode_together(model: &dyn Seq2SeqLm, sources: &[Source], chosen: &[usize]) -> (Tensor, Option<Tensor>) {
    let device = model.device();
    let mut ids_of = Vec::new();
    let mut states = Vec::new();
    for &i in chosen {
        match sources[i].input {
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
    for input in ids_of {
        ids.extend(
            input
                .iter()
                .copied()
                .chain(std::iter::repeat_n(0, longest - input.len())),
        );
        mask.extend((0..longest).map(|t| i64::from(t < input.len())));
    }
    let shape = [chosen.len() as i64, longest as i64];
    let ids = Tensor::from_slice(&ids).view(shape).to_device(device);
    let padding = mask
        .contains(&0)
        .then(|| padding_bias(&Tensor::from_slice(&mask).view(shape).to_device(device), Kind::Float));
    (model.encode(&ids, padding.as_ref()), padding)
}

/// Encodes the sources `chosen` (all with the same `num_beams` and prompt
/// length) together and decodes them together.
fn decode_together(
    model: &dyn Seq2SeqLm,
    sources: &[Source],
    prompts: &[Vec<i64>],
    chosen: &[usize],
    alignment_heads: Option<&[(usize, usize)]>,
    keep_going: &mut dyn FnMut(usize) -> bool,
) -> Vec<Vec<Found>> {
    let beams = sources[chosen[0]].params.num_beams.max(1);
    let (memory, padding) = encode_together(model, sources, chosen);
    let mut state = DecoderState::new(memory, padding, beams, model.decoder_layers());
    state.alignment = alignment_heads.map(|heads| Alignment::new(heads.to_vec()));

    let mut searches: Vec<Search> = chosen
        .iter()
        .map(|&i| Search::new(prompts[i].clone(), sources[i].params))
        .collect();
    // The prompt but its last token goes into the caches first (its logits
    // choose nothing); the last token's choose the first new one.
    let prompt_len = prompts[chosen[0]].len();
    let fed: Vec<Vec<i64>> = (0..prompt_len - 1)
        .map(|t| {
            chosen
                .iter()
                .flat_map(|&i| std::iter::repeat_n(prompts[i][t], beams))
                .collect()
        })
        .collect();
    for (position, tokens) in fed.iter().enumerate() {
        let _ = model.step(tokens, position as i64, &mut state);
    }
    // The searches still running, in the decoder state's order.
    let mut active: Vec<usize> = (0..chosen.len()).collect();
    let mut position = prompt_len as i64 - 1;
    loop {
        // An input whose client went away stops here, with what it has.
        let wanted: Vec<bool> = active.iter().map(|&a| keep_going(chosen[a])).collect();
        if wanted.contains(&false) {
            let items = positions(&wanted);
            if items.is_empty() {
                break;
            }
            let rows: Vec<i64> = items
                .iter()
                .flat_map(|&i| i * beams as i64..(i + 1) * beams as i64)
                .collect();
            state.select(&items, &rows);
            retain(&mut active, &wanted);
        }
        let tokens: Vec<i64> = active.iter().flat_map(|&a| searches[a].newest_tokens()).collect();
        let logits = model.step(&tokens, position, &mut state);
        position += 1;
        // Every later step feeds a new token, whose attention is kept.
        if let Some(alignment) = state.alignment.as_mut() {
            alignment.recording = true;
        }
        // Beam search ranks log-probabilities; greedy, the processed logits.
        let scores = if beams > 1 {
            logits.log_softmax(-1, Kind::Float)
        } else {
            logits.to_kind(Kind::Float)
        };
        let vocab = scores.size()[1] as usize;
        let mut scores = Vec::<f32>::try_from(scores.to_device(Device::Cpu).reshape([-1])).expect("f32 scores");
        let mut going_on = Vec::with_capacity(active.len());
        let mut rows = Vec::with_capacity(active.len() * beams);
        for (slot, (&a, item_scores)) in active.iter().zip(scores.chunks_mut(beams * vocab)).enumerate() {
            let parents = searches[a].advance(item_scores, vocab);
            if let Some(alignment) = &state.alignment {
                searches[a].keep_alignment(parents.is_none(), &|beam| alignment.row(slot * beams + beam));
            }
            going_on.push(parents.is_some());
            rows.extend(parents.iter().flatten().map(|&b| (slot * beams + b) as i64));
        }
        let items = positions(&going_on);
        if items.is_empty() {
            break;
        }
        state.select(&items, &rows);
        retain(&mut active, &going_on);
    }
    searches.into_iter().map(Search::into_found).collect()
}

/// The positions of the `true` flags.
fn positions(flags: &[bool]) -> Vec<i64> {
    (0..flags.len() as i64).filter(|&i| flags[i as usize]).collect()
}

/// Keeps the entries of `active` whose flag is true.
fn retain(active: &mut Vec<usize>, flags: &[bool]) {
    let mut flags = flags.iter();
    active.retain(|_| *flags.next().expect("one flag each"));
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
