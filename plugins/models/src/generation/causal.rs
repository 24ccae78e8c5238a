//! Decoder-only generation (GPT-2): every prompt of a batch decoded
//! together with left padding and KV caches, each row with its own settings,
//! its tokens chosen by the shared processors and sampling
//! (`processors.rs`, `sampling.rs`), and stopping at EOS, at a length
//! limit, or when the caller says so (stop sequences, a client that went
//! away). Finished rows leave the batch at once.

use tch::{Device, Kind, Tensor};

use crate::core::decoding::CausalLm;
use crate::generation::processors::Row;
use crate::generation::sampling::{choose, Rng};
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
}

/// A generated continuation (prompt not included; the EOS token included
/// when generation ended on it).
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    pub tokens: Vec<i64>,
    pub finish: FinishReason,
}

struct Sequence {
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
    model: &dyn CausalLm,
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
    let mut rows: Vec<Sequence> = requests
        .into_iter()
        .enumerate()
        .map(|(index, r)| {
            let mut history = vec![pad_id; width - r.prompt.len()];
            history.extend(&r.prompt);
            Sequence {
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
            let history = Row {
                sequence: &row.history,
                prompt_len: width,
            };
            let token = choose(&mut scores, history, &row.params, &mut row.rng);
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
