//! Encoder-decoder generation (summarization, translation) as transformers
//! 4.57.6 `generate` does it, for a batch of inputs decoded together: the
//! inputs are padded and encoded once, the decoder steps every hypothesis of
//! every input at once, with cached self-attention keys and values and
//! cross-attention keys and values computed once per input (not per beam).
//! Tokens are chosen greedily or by beam search (`_beam_search`: num_beams,
//! length_penalty, early_stopping true/false/"never", num_return_sequences),
//! after the logits processors these models configure: no_repeat_ngram_size,
//! bad_words_ids, min_length, forced_bos_token_id and forced_eos_token_id.
//! Each input's search is its own, as in transformers' batched search, and
//! an input whose search is over (or whose client went away) leaves the
//! batch at once, so the others no longer compute its rows.
//! Lengths count the decoder's start token, as transformers' do.

use tch::{Device, Kind, Tensor};

use crate::layers::{padding_bias, KvCache};

/// A model that encodes sources once and then decodes step by step.
pub trait Seq2SeqLm {
    /// Encoder states [items, source, d] of the right-padded inputs
    /// `input_ids` [items, source]; `padding` is their additive padding bias
    /// [items, 1, 1, source], None when no input is padded.
    fn encode(&self, input_ids: &Tensor, padding: Option<&Tensor>) -> Tensor;
    /// Logits [rows, vocab] (f32) after feeding each row's newest token
    /// `tokens` [rows] at decoder position `position`.
    fn step(&self, tokens: &[i64], position: i64, state: &mut DecoderState) -> Tensor;
    fn decoder_layers(&self) -> usize;
    fn decoder_start_token_id(&self) -> i64;
    fn device(&self) -> Device;
}

/// What the decoder keeps between steps. Its rows are hypotheses, `beams`
/// consecutive rows per input.
pub struct DecoderState {
    /// Encoder states [items, source, d].
    pub memory: Tensor,
    /// The encoder states' padding bias [items, 1, 1, source]; None when no
    /// input is padded.
    pub memory_padding: Option<Tensor>,
    /// Self-attention keys and values per layer, [rows, heads, steps, head_dim].
    pub self_attn: Vec<KvCache>,
    /// Cross-attention keys and values per layer, [items, heads, source,
    /// head_dim], computed on the first step.
    pub cross_attn: Vec<Option<(Tensor, Tensor)>>,
    rows: usize,
}

impl DecoderState {
    fn new(memory: Tensor, memory_padding: Option<Tensor>, beams: usize, layers: usize) -> Self {
        DecoderState {
            rows: memory.size()[0] as usize * beams,
            memory,
            memory_padding,
            self_attn: (0..layers).map(|_| KvCache::default()).collect(),
            cross_attn: (0..layers).map(|_| None).collect(),
        }
    }

    /// Keeps the inputs `items` (their current positions, in order) and the
    /// hypotheses `rows` (current row numbers, in their new order: the
    /// kept inputs' beams, input after input).
    fn select(&mut self, items: &[i64], rows: &[i64]) {
        let device = self.memory.device();
        let unchanged = rows.len() == self.rows && rows.iter().enumerate().all(|(i, &r)| r == i as i64);
        if !unchanged {
            let index = Tensor::from_slice(rows).to_device(device);
            for cache in &mut self.self_attn {
                cache.select_rows(&index);
            }
            self.rows = rows.len();
        }
        // Inputs only ever leave, so fewer means a different selection.
        if items.len() as i64 != self.memory.size()[0] {
            let index = Tensor::from_slice(items).to_device(device);
            self.memory = self.memory.index_select(0, &index);
            self.memory_padding = self.memory_padding.as_ref().map(|b| b.index_select(0, &index));
            for (k, v) in self.cross_attn.iter_mut().flatten() {
                *k = k.index_select(0, &index);
                *v = v.index_select(0, &index);
            }
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

/// One input to generate from: its encoder token ids and its settings.
pub struct Source<'a> {
    pub input_ids: &'a [i64],
    pub params: &'a Seq2SeqParams,
}

/// Hypotheses (inputs times `num_beams`) decoded together at most; more
/// inputs are split into several batches, but one input never is.
pub const MAX_BATCH_ROWS: usize = 64;

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
/// (start token first, EOS included when reached), best first. Sources with
/// the same `num_beams` are decoded together, sorted by length, within
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
    let _guard = tch::no_grad_guard();
    let beams = |i: usize| sources[i].params.num_beams.max(1);
    let mut order: Vec<usize> = (0..sources.len()).collect();
    order.sort_by_key(|&i| (beams(i), sources[i].input_ids.len()));
    let mut results = vec![Vec::new(); sources.len()];
    for group in order.chunk_by(|&a, &b| beams(a) == beams(b)) {
        let lengths: Vec<usize> = group.iter().map(|&i| sources[i].input_ids.len()).collect();
        for bounds in batch_bounds(&lengths, beams(group[0])) {
            let chosen = &group[bounds];
            let wanted: Vec<usize> = chosen.iter().copied().filter(|&i| keep_going(i)).collect();
            if wanted.is_empty() {
                continue;
            }
            let outputs = decode_together(model, sources, &wanted, keep_going);
            for (&i, sequences) in wanted.iter().zip(outputs) {
                results[i] = sequences;
            }
        }
    }
    results
}

/// Encodes the sources `chosen` (all with the same `num_beams`) as one
/// padded batch and decodes them together.
fn decode_together(
    model: &dyn Seq2SeqLm,
    sources: &[Source],
    chosen: &[usize],
    keep_going: &mut dyn FnMut(usize) -> bool,
) -> Vec<Vec<Vec<i64>>> {
    let device = model.device();
    let beams = sources[chosen[0]].params.num_beams.max(1);
    let longest = chosen.iter().map(|&i| sources[i].input_ids.len()).max().unwrap_or(0);
    let (mut ids, mut mask) = (Vec::new(), Vec::new());
    for &i in chosen {
        let input = sources[i].input_ids;
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
    let memory = model.encode(&ids, padding.as_ref());
    let mut state = DecoderState::new(memory, padding, beams, model.decoder_layers());

    let start = model.decoder_start_token_id();
    let mut searches: Vec<Search> = chosen.iter().map(|&i| Search::new(start, sources[i].params)).collect();
    // The searches still running, in the decoder state's order.
    let mut active: Vec<usize> = (0..chosen.len()).collect();
    let mut position = 0;
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
    searches.into_iter().map(Search::into_sequences).collect()
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

/// One input's search: greedy (one hypothesis) or beam search.
enum Search<'a> {
    Greedy {
        params: &'a Seq2SeqParams,
        sequence: Vec<i64>,
    },
    Beams(BeamSearch<'a>),
}

impl<'a> Search<'a> {
    fn new(start: i64, params: &'a Seq2SeqParams) -> Self {
        debug_assert!(params.max_length >= 2, "room for the start token and one more");
        if params.num_beams <= 1 {
            Search::Greedy {
                params,
                sequence: vec![start],
            }
        } else {
            Search::Beams(BeamSearch::new(start, params))
        }
    }

    /// The newest token of each hypothesis, the decoder's next inputs.
    fn newest_tokens(&self) -> Vec<i64> {
        let newest = |s: &Vec<i64>| *s.last().expect("start token");
        match self {
            Search::Greedy { sequence, .. } => vec![newest(sequence)],
            Search::Beams(search) => search.running.iter().map(newest).collect(),
        }
    }

    /// One step, from this input's scores [hypotheses * vocab]: the
    /// hypothesis each new one continues, or None when the search is over.
    fn advance(&mut self, scores: &mut [f32], vocab: usize) -> Option<Vec<usize>> {
        match self {
            Search::Greedy { params, sequence } => {
                process(scores, sequence, params);
                let next = top_k(scores, 1)[0] as i64;
                sequence.push(next);
                let over = params.eos_token_ids.contains(&next) || sequence.len() >= params.max_length;
                (!over).then(|| vec![0])
            }
            Search::Beams(search) => search.advance(scores, vocab),
        }
    }

    /// The sequences found, best first.
    fn into_sequences(self) -> Vec<Vec<i64>> {
        match self {
            Search::Greedy { sequence, .. } => vec![sequence],
            Search::Beams(search) => search
                .finished
                .into_iter()
                .take(search.params.num_return_sequences.max(1))
                .map(|h| h.tokens)
                .collect(),
        }
    }
}

struct Hypothesis {
    tokens: Vec<i64>,
    score: f32,
    finished: bool,
}

const LARGE_NEGATIVE: f32 = -1.0e9;

/// transformers' `_beam_search` for one input.
struct BeamSearch<'a> {
    params: &'a Seq2SeqParams,
    running: Vec<Vec<i64>>,
    running_scores: Vec<f32>,
    /// The best `num_beams` finished hypotheses (placeholders until then).
    finished: Vec<Hypothesis>,
    improvable: bool,
    cur_len: usize,
}

impl<'a> BeamSearch<'a> {
    fn new(start: i64, params: &'a Seq2SeqParams) -> Self {
        let beams = params.num_beams;
        BeamSearch {
            params,
            running: vec![vec![start]; beams],
            running_scores: (0..beams).map(|i| if i == 0 { 0.0 } else { LARGE_NEGATIVE }).collect(),
            finished: (0..beams)
                .map(|_| Hypothesis {
                    tokens: vec![start],
                    score: LARGE_NEGATIVE,
                    finished: false,
                })
                .collect(),
            improvable: true,
            cur_len: 1,
        }
    }

    fn penalty(&self, length: usize) -> f32 {
        (length as f64).powf(self.params.length_penalty) as f32
    }

    /// One step from the beams' log-probabilities [beams * vocab].
    fn advance(&mut self, log_probs: &mut [f32], vocab: usize) -> Option<Vec<usize>> {
        let params = self.params;
        let beams = params.num_beams;
        let keep = 2usize.max(1 + params.eos_token_ids.len()) * beams;
        for (beam, row) in log_probs.chunks_mut(vocab).enumerate() {
            process(row, &self.running[beam], params);
            if params.renormalize {
                log_softmax(row);
            }
            for lp in row.iter_mut() {
                *lp += self.running_scores[beam];
            }
        }
        let accumulated = log_probs;
        // The best `keep` continuations of all beams.
        let candidates: Vec<(usize, Vec<i64>, f32, bool)> = top_k(accumulated, keep)
            .into_iter()
            .map(|i| {
                let (beam, token) = (i / vocab, (i % vocab) as i64);
                let mut tokens = self.running[beam].clone();
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
        let parents: Vec<usize> = next.iter().map(|&k| candidates[k].0).collect();
        // Finished ones among the top `beams` join the finished list if
        // they beat its worst.
        let all_finished = self.finished.iter().all(|h| h.finished);
        let length_penalty = self.penalty(self.cur_len);
        let mut merged: Vec<Hypothesis> = std::mem::take(&mut self.finished);
        for (k, (_, tokens, score, hits)) in candidates.iter().enumerate() {
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
            params.max_length - 1
        } else {
            self.cur_len - 1
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
    if num_beams == 0 || num_beams > MAX_BATCH_ROWS {
        return Err(format!(
            "num_beams must be from 1 to {MAX_BATCH_ROWS} (got {num_beams})"
        ));
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
    /// Longer inputs are refused (DEFAULT_MAX_INPUT_TOKENS unless set).
    pub max_input_tokens: usize,
    /// The most decoder positions, start token included: the position
    /// table's size, or DEFAULT_MAX_INPUT_TOKENS for T5.
    pub max_output_length: usize,
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
        max_input_tokens: DEFAULT_MAX_INPUT_TOKENS,
        max_output_length: if positions == i64::MAX {
            DEFAULT_MAX_INPUT_TOKENS
        } else {
            positions as usize
        },
    })
}
