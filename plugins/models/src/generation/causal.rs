//! Decoder-only generation (GPT-2): every prompt of a batch decoded
//! together with left padding and KV caches, each row with its own settings,
//! its tokens chosen by the shared processors and sampling
//! (`processors.rs`, `sampling.rs`), and stopping at EOS, at a length
//! limit, or when the caller says so (stop sequences, a client that went
//! away). Finished rows leave the batch at once, and new ones join it
//! between steps (continuous batching, [`generate_joined`]).

use tch::{Device, Kind, Tensor};

use crate::core::decoding::CausalLm;
use crate::core::layers::KvCache;
use crate::generation::processors::Row;
use crate::generation::sampling::{choose, Choice, Rng};
use crate::generation::settings::GenerationParams;

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
    /// The left-padded width the logits processors see the prompt at: the
    /// longest prompt of its own request (`prompt.len()` or more), as
    /// transformers pads a batch of that request's prompts. The prefill
    /// pads it among whatever arrives with it, which a repetition penalty,
    /// a banned n-gram or min_length must not see: each request gets the
    /// tokens it gets alone.
    pub width: usize,
}

impl Request {
    /// A request of one prompt.
    pub fn new(prompt: Vec<i64>, params: GenerationParams) -> Self {
        let width = prompt.len();
        Request { prompt, params, width }
    }
}

/// A generated continuation (prompt not included; the EOS token included
/// when generation ended on it).
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    pub tokens: Vec<i64>,
    pub finish: FinishReason,
}

struct Sequence {
    /// Left padding, prompt and generated tokens.
    history: Vec<i64>,
    /// The prompt's length with its group's left padding: where the
    /// generated tokens start in `history`.
    width: usize,
    /// The prompt's length with its own request's left padding: how much
    /// of `history`'s padding the logits processors see.
    request_width: usize,
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
    model: &dyn CausalLm,
    requests: Vec<Request>,
    pad_id: i64,
    mut on_token: impl FnMut(usize, i64) -> Control,
) -> Vec<Generated> {
    let n = requests.len();
    let mut first = Some(requests);
    let mut done: Vec<Option<Generated>> = (0..n).map(|_| None).collect();
    generate_joined(
        model,
        pad_id,
        &mut |_| first.take().unwrap_or_default(),
        &mut on_token,
        &mut |i, generated| done[i] = Some(generated),
    );
    done.into_iter().map(|g| g.expect("every sequence finished")).collect()
}

/// The decode of a batch that sequences join and leave between steps
/// (continuous batching). Before each step `arrivals(running)` gives the
/// sequences that join now (`running` are decoding); they are numbered in
/// arrival order from 0, run their prompts together (a prefill, left
/// padded among themselves), choose their first token, and join the
/// running rows, the shorter side's keys and values padded on the left.
/// Each sequence's tokens are those it gets alone: its rows attend only to
/// its own positions. `on_token(i, token)` is called for each new token of
/// sequence `i` (`Stop` ends it); `on_finish(i, generated)` as soon as it
/// ends. Returns when nothing runs and nothing arrives.
pub fn generate_joined(
    model: &dyn CausalLm,
    pad_id: i64,
    arrivals: &mut dyn FnMut(usize) -> Vec<Request>,
    on_token: &mut dyn FnMut(usize, i64) -> Control,
    on_finish: &mut dyn FnMut(usize, Generated),
) {
    let _guard = tch::no_grad_guard();
    let mut rows: Vec<Sequence> = Vec::new();
    let mut running: Option<Decoding> = None;
    loop {
        let arrived = arrivals(running.as_ref().map_or(0, |r| r.active.len()));
        let any_arrived = !arrived.is_empty();
        if any_arrived {
            let first = rows.len();
            rows.extend(arrived.into_iter().map(|r| Sequence {
                history: r.prompt.clone(),
                width: r.prompt.len(),
                request_width: r.width.max(r.prompt.len()),
                prompt_len: r.prompt.len(),
                generated: vec![],
                rng: Rng::new(r.params.seed),
                params: r.params,
                finish: None,
            }));
            let group = prefill(model, &mut rows, first, pad_id, on_token, on_finish);
            running = match (running, group) {
                (Some(r), Some(g)) => Some(r.merge(g)),
                (r, g) => r.or(g),
            };
        }
        let Some(mut decoding) = running.take() else {
            // Arrivals that all ended in their prefill: others may wait
            // their turn (the rest of a held batch), so ask again.
            if any_arrived {
                continue;
            }
            return;
        };
        let logits = model.forward_last(
            &decoding.input_ids,
            &decoding.positions,
            &decoding.mask,
            &mut decoding.cache,
        );
        running = decoding.advance(model, &mut rows, &logits, on_token, on_finish);
    }
}

/// The rows decoding now and their tensors: the next input token and
/// position of each row, the attention mask over every position so far
/// (the next one included) and the keys and values of the positions before.
struct Decoding {
    /// Indices into the sequences, one per tensor row.
    active: Vec<usize>,
    input_ids: Tensor,
    positions: Tensor,
    mask: Tensor,
    cache: Vec<KvCache>,
}

impl Decoding {
    /// Chooses each row's token from `logits` [rows, vocab] (computed with
    /// `self.cache`, which the forward pass grew), and moves on by one
    /// position; None when every row has finished.
    fn advance(
        mut self,
        model: &dyn CausalLm,
        rows: &mut [Sequence],
        logits: &Tensor,
        on_token: &mut dyn FnMut(usize, i64) -> Control,
        on_finish: &mut dyn FnMut(usize, Generated),
    ) -> Option<Decoding> {
        let (next, keep) = choose_all(model, rows, &self.active, logits, on_token, on_finish);
        let device = self.mask.device();
        let count = self.active.len() as i64;
        self.mask = Tensor::cat(&[&self.mask, &Tensor::ones([count, 1], (Kind::Int64, device))], 1);
        self.positions = &self.positions + 1;
        self.input_ids = Tensor::from_slice(&next).view([-1, 1]).to_device(device);
        self.keep(&keep)
    }

    /// Keeps the rows at `slots` (in order); None when none is left.
    fn keep(mut self, slots: &[usize]) -> Option<Decoding> {
        if slots.is_empty() {
            return None;
        }
        if slots.len() < self.active.len() {
            let device = self.mask.device();
            let index = Tensor::from_slice(&slots.iter().map(|&k| k as i64).collect::<Vec<_>>()).to_device(device);
            for layer in self.cache.iter_mut() {
                layer.select_rows(&index);
            }
            self.mask = self.mask.index_select(0, &index);
            self.input_ids = self.input_ids.index_select(0, &index);
            self.positions = self.positions.index_select(0, &index);
            self.active = slots.iter().map(|&k| self.active[k]).collect();
            self.trim();
        }
        Some(self)
    }

    /// Drops the leading positions that are padding in every row (left by
    /// rows that have left, or by the longer side of a merge), so that a
    /// decode that runs on as requests come and go does not attend over
    /// ever more padding.
    fn trim(&mut self) {
        let used = Vec::<i64>::try_from(self.mask.sum_dim_intlist(0, false, Kind::Int64).to_device(Device::Cpu))
            .expect("mask column sums");
        let unused = used.iter().take_while(|&&n| n == 0).count() as i64;
        if unused == 0 {
            return;
        }
        let length = self.mask.size()[1];
        self.mask = self.mask.narrow(1, unused, length - unused);
        for layer in self.cache.iter_mut() {
            layer.drop_first(unused);
        }
    }

    /// These rows and `other`'s in one batch: the shorter history padded on
    /// the left (masked, so no row sees it).
    fn merge(self, other: Decoding) -> Decoding {
        let length = self.mask.size()[1].max(other.mask.size()[1]);
        let pad_mask = |m: &Tensor| m.constant_pad_nd([length - m.size()[1], 0]);
        let mask = Tensor::cat(&[pad_mask(&self.mask), pad_mask(&other.mask)], 0);
        let rows = [self.mask.size()[0] as usize, other.mask.size()[0] as usize];
        let cache = self
            .cache
            .into_iter()
            .zip(other.cache)
            .map(|(mut a, b)| {
                a.merge_rows(b, rows, length - 1);
                a
            })
            .collect();
        let mut active = self.active;
        active.extend(other.active);
        let mut merged = Decoding {
            active,
            input_ids: Tensor::cat(&[self.input_ids, other.input_ids], 0),
            positions: Tensor::cat(&[self.positions, other.positions], 0),
            mask,
            cache,
        };
        merged.trim();
        merged
    }
}

/// Runs the prompts of the sequences from `first` on (left padded among
/// themselves) through a fresh cache, chooses their first tokens, and
/// gives the ones still going as a [`Decoding`].
fn prefill(
    model: &dyn CausalLm,
    rows: &mut [Sequence],
    first: usize,
    pad_id: i64,
    on_token: &mut dyn FnMut(usize, i64) -> Control,
    on_finish: &mut dyn FnMut(usize, Generated),
) -> Option<Decoding> {
    let device = model.device();
    let group: Vec<usize> = (first..rows.len()).collect();
    let width = group.iter().map(|&i| rows[i].prompt_len).max().unwrap_or(0).max(1);
    // Left padding: [pad pad a b c]; positions count real tokens only.
    for &i in &group {
        let row = &mut rows[i];
        let mut history = vec![pad_id; width - row.prompt_len];
        history.extend(&row.history);
        row.history = history;
        row.width = width;
    }
    let n = group.len() as i64;
    let mask_values: Vec<i64> = group
        .iter()
        .flat_map(|&i| {
            let pad = width - rows[i].prompt_len;
            (0..width).map(move |k| i64::from(k >= pad))
        })
        .collect();
    let ids: Vec<i64> = group.iter().flat_map(|&i| rows[i].history.clone()).collect();
    let input_ids = Tensor::from_slice(&ids).view([n, width as i64]).to_device(device);
    let mask = Tensor::from_slice(&mask_values)
        .view([n, width as i64])
        .to_device(device);
    let positions = (mask.cumsum(1, Kind::Int64) - 1).masked_fill(&mask.eq(0), 1);
    let mut cache = model.new_cache();
    let logits = model.forward_last(&input_ids, &positions, &mask, &mut cache);
    let last_positions = positions.select(1, width as i64 - 1).unsqueeze(1);
    Decoding {
        active: group,
        input_ids,
        positions: last_positions,
        mask,
        cache,
    }
    .advance(model, rows, &logits, on_token, on_finish)
}

/// Chooses the next token of each row in `active` from `logits` [rows,
/// vocab]: the tokens, and the slots of the rows that go on (the others
/// are finished and reported).
fn choose_all(
    model: &dyn CausalLm,
    rows: &mut [Sequence],
    active: &[usize],
    logits: &Tensor,
    on_token: &mut dyn FnMut(usize, i64) -> Control,
    on_finish: &mut dyn FnMut(usize, Generated),
) -> (Vec<i64>, Vec<usize>) {
    // The scores stay on the model's device; only the tokens come back.
    let scores = logits.to_kind(Kind::Float);
    let chosen = {
        let mut each: Vec<Option<&mut Sequence>> = rows.iter_mut().map(Some).collect();
        let mut choices: Vec<Choice> = active
            .iter()
            .map(|&r| {
                let row = each[r].take().expect("each row once");
                Choice {
                    row: Row {
                        sequence: &row.history[row.width.saturating_sub(row.request_width)..],
                        prompt_len: row.request_width.min(row.width),
                    },
                    params: &row.params,
                    rng: &mut row.rng,
                }
            })
            .collect();
        choose(&scores, &mut choices)
    };
    let max_positions = model.max_positions();
    let mut next = Vec::with_capacity(active.len());
    let mut keep = Vec::with_capacity(active.len());
    for (slot, (&r, token)) in active.iter().zip(chosen).enumerate() {
        let row = &mut rows[r];
        row.history.push(token);
        row.generated.push(token);
        next.push(token);
        let control = on_token(r, token);
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
        match row.finish {
            Some(finish) => on_finish(
                r,
                Generated {
                    tokens: std::mem::take(&mut row.generated),
                    finish,
                },
            ),
            None => keep.push(slot),
        }
    }
    (next, keep)
}
