//! What a generative model offers the generation engine: the two decoder
//! traits (decoder-only and encoder-decoder) and the state an
//! encoder-decoder keeps between steps. The model families implement these;
//! `generation/` drives them without naming any family.

use tch::{Device, Kind, Tensor};

use crate::core::layers::{masked_value, padding_bias, KvCache};

/// A model that predicts the next token from a prefix (decoder-only).
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

/// A model that encodes sources once and then decodes step by step.
pub trait Seq2SeqLm {
    /// Encoder states [items, source, d] of the encoder's `inputs`: the
    /// right-padded token ids [items, source] of a text model, the log-mel
    /// features [items, mel bins, frames] of a speech model (Whisper);
    /// `padding` is their additive padding bias [items, 1, 1, source], None
    /// when no input is padded (features never are).
    fn encode(&self, inputs: &Tensor, padding: Option<&Tensor>) -> Tensor;
    /// Logits [rows, vocab] (f32) after feeding each row's newest token
    /// `tokens` [rows], at the positions [`DecoderState::begin_step`] gives.
    fn step(&self, tokens: &[i64], state: &mut DecoderState) -> Tensor;
    /// Computes every decoder layer's cross-attention keys and values from
    /// the state's encoder states (as the first step would), so that the
    /// state can join others before its first step.
    fn cross_keys_values(&self, state: &mut DecoderState);
    fn decoder_layers(&self) -> usize;
    fn decoder_start_token_id(&self) -> i64;
    fn device(&self) -> Device;
}

/// What an encoder-decoder keeps between steps. Its rows are hypotheses,
/// `beams` consecutive rows per input. Rows of inputs that joined at
/// different steps (continuous batching, [`DecoderState::merge`]) have
/// histories of different lengths: the shorter ones are padded on the left
/// in the self-attention caches (masked), so every row's newest token is
/// the caches' last column, and each row has its own decoder position.
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
    /// Cross-attention kept for word timestamps (Whisper), when asked for.
    pub alignment: Option<Alignment>,
    rows: usize,
    /// Hypotheses per input.
    beams: usize,
    /// Each row's decoder position for the next step, [rows] (int64).
    positions: Tensor,
    /// Which columns of the self-attention caches are each row's own (1)
    /// and which are left padding (0), [rows, columns]; None while none is
    /// padding.
    history: Option<Tensor>,
    /// Columns of the self-attention caches.
    columns: i64,
}

/// What a decoder step reads of the state (see [`DecoderState::begin_step`]).
pub struct Step {
    /// Each row's position, [rows] (int64).
    pub positions: Tensor,
    /// Columns cached before this step: the newest token of every row is
    /// column `past` of the self-attention keys.
    pub past: i64,
    /// The self-attention's additive bias [rows, 1, 1, past + 1] that hides
    /// the left padding of rows that joined later; None when there is none.
    pub bias: Option<Tensor>,
}

/// Cross-attention probabilities of chosen heads, kept for word timestamps
/// (Whisper's alignment heads): each row's own history, reordered with the
/// rows as its keys and values are, so that a hypothesis's history is that
/// of the rows it descends from (transformers gathers it by beam indices).
pub struct Alignment {
    /// (layer, head) pairs whose attention is kept.
    pub heads: Vec<(usize, usize)>,
    /// Whether the current step's attention is kept (the prompt's is not).
    pub recording: bool,
    /// [rows, steps, heads, source]; None before the first kept step.
    history: Option<Tensor>,
}

impl Alignment {
    pub fn new(heads: Vec<(usize, usize)>) -> Self {
        Alignment {
            heads,
            recording: false,
            history: None,
        }
    }

    /// Keeps one step's attention [rows, heads, source].
    pub fn push(&mut self, step: Tensor) {
        let step = step.unsqueeze(1);
        self.history = Some(match self.history.take() {
            Some(h) => Tensor::cat(&[h, step], 1),
            None => step,
        });
    }

    /// Row `row`'s history [steps, heads, source], None before any step.
    pub fn row(&self, row: usize) -> Option<Tensor> {
        self.history.as_ref().map(|h| h.get(row as i64))
    }
}

impl DecoderState {
    pub fn new(memory: Tensor, memory_padding: Option<Tensor>, beams: usize, layers: usize) -> Self {
        let rows = memory.size()[0] as usize * beams;
        DecoderState {
            rows,
            beams,
            positions: Tensor::zeros([rows as i64], (Kind::Int64, memory.device())),
            history: None,
            columns: 0,
            memory,
            memory_padding,
            self_attn: (0..layers).map(|_| KvCache::default()).collect(),
            cross_attn: (0..layers).map(|_| None).collect(),
            alignment: None,
        }
    }

    /// Hypotheses (rows of the self-attention caches).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Called by the model at the start of each step: the rows' positions
    /// and the self-attention's padding bias for this step, which the state
    /// counts as taken (every row moves on by one position).
    pub fn begin_step(&mut self) -> Step {
        // The history with this step's column, every row's own.
        self.history = self
            .history
            .as_ref()
            .map(|h| Tensor::cat(&[h, &h.ones_like().narrow(1, 0, 1)], 1));
        let step = Step {
            positions: self.positions.shallow_clone(),
            past: self.columns,
            bias: self.history.as_ref().map(|h| padding_bias(h, Kind::Float)),
        };
        self.positions = &self.positions + 1;
        self.columns += 1;
        step
    }

    /// These rows and `other`'s in one state (both with the same beams and
    /// their cross-attention keys and values: past their first step or given
    /// them by [`Seq2SeqLm::cross_keys_values`]; neither keeping alignment):
    /// the shorter self-attention history padded on the left (all of it for
    /// rows before their first step), the shorter source on the right, both
    /// masked, so that every row computes what it computes alone.
    pub fn merge(self, other: DecoderState) -> DecoderState {
        assert_eq!(self.beams, other.beams, "states of one beam count merge");
        assert!(
            self.alignment.is_none() && other.alignment.is_none(),
            "no alignment kept"
        );
        let device = self.memory.device();
        // Self-attention: left padding.
        let columns = self.columns.max(other.columns);
        let history_of = |s: &DecoderState| {
            let h = s
                .history
                .as_ref()
                .map(Tensor::shallow_clone)
                .unwrap_or_else(|| Tensor::ones([s.rows as i64, s.columns], (Kind::Int64, device)));
            h.constant_pad_nd([columns - s.columns, 0])
        };
        let history = Tensor::cat(&[history_of(&self), history_of(&other)], 0);
        // The encoder's side: right padding.
        let source = self.memory.size()[1].max(other.memory.size()[1]);
        let widen = |t: &Tensor, dim: usize| {
            let short = source - t.size()[dim];
            let mut pad = vec![0i64; 2 * (t.dim() - dim)];
            let last = pad.len() - 1;
            pad[last] = short;
            if short > 0 {
                t.constant_pad_nd(pad.as_slice())
            } else {
                t.shallow_clone()
            }
        };
        let padding_of = |s: &DecoderState| {
            let items = s.memory.size()[0];
            let own = s.memory.size()[1];
            let bias = s
                .memory_padding
                .as_ref()
                .map(Tensor::shallow_clone)
                .unwrap_or_else(|| Tensor::zeros([items, 1, 1, own], (s.memory.kind(), device)));
            let hidden = Tensor::full(
                [items, 1, 1, source - own],
                masked_value(bias.kind()),
                (bias.kind(), device),
            );
            Tensor::cat(&[bias, hidden], 3)
        };
        let memory_padding = Tensor::cat(&[padding_of(&self), padding_of(&other)], 0);
        let memory = Tensor::cat(&[widen(&self.memory, 1), widen(&other.memory, 1)], 0);
        let cross_attn = self
            .cross_attn
            .iter()
            .zip(&other.cross_attn)
            .map(|(a, b)| {
                let ((ak, av), (bk, bv)) = (
                    a.as_ref().expect("keys after a step"),
                    b.as_ref().expect("keys after a step"),
                );
                Some((
                    Tensor::cat(&[widen(ak, 2), widen(bk, 2)], 0),
                    Tensor::cat(&[widen(av, 2), widen(bv, 2)], 0),
                ))
            })
            .collect();
        let rows = [self.rows, other.rows];
        let self_attn = self
            .self_attn
            .into_iter()
            .zip(other.self_attn)
            .map(|(mut a, b)| {
                a.merge_rows(b, rows, columns);
                a
            })
            .collect();
        let mut merged = DecoderState {
            memory,
            memory_padding: Some(memory_padding),
            self_attn,
            cross_attn,
            alignment: None,
            rows: self.rows + other.rows,
            beams: self.beams,
            positions: Tensor::cat(&[self.positions, other.positions], 0),
            history: Some(history),
            columns,
        };
        merged.trim();
        merged
    }

    /// Drops the padding no row uses any longer (after rows left, or on
    /// the longer side of a merge): self-attention columns that are padding
    /// in every row, source positions that are padding in every input.
    fn trim(&mut self) {
        if let Some(history) = &self.history {
            let used = column_counts(history);
            let unused = used.iter().take_while(|&&n| n == 0).count() as i64;
            if unused > 0 {
                for cache in &mut self.self_attn {
                    cache.drop_first(unused);
                }
                self.columns -= unused;
            }
            let history = history.narrow(1, unused, self.columns);
            // No padding left: no mask to carry.
            self.history = (used.iter().skip(unused as usize).any(|&n| n < self.rows as i64)).then_some(history);
        }
        if let Some(bias) = &self.memory_padding {
            let source = bias.size()[3];
            let used = column_counts(&bias.eq(0).view([-1, source]));
            let unused = used.iter().rev().take_while(|&&n| n == 0).count() as i64;
            let end = (source - unused).max(1);
            if end < source {
                self.memory = self.memory.narrow(1, 0, end);
                for (k, v) in self.cross_attn.iter_mut().flatten() {
                    *k = k.narrow(2, 0, end);
                    *v = v.narrow(2, 0, end);
                }
            }
            let items = self.memory.size()[0];
            let padded = used.iter().take(end as usize).any(|&n| n < items);
            self.memory_padding = padded.then(|| bias.narrow(3, 0, end));
        }
    }

    /// Keeps the inputs `items` (their current positions, in order) and the
    /// hypotheses `rows` (current row numbers, in their new order: the
    /// kept inputs' beams, input after input).
    pub fn select(&mut self, items: &[i64], rows: &[i64]) {
        let device = self.memory.device();
        let shrunk = rows.len() < self.rows || (items.len() as i64) < self.memory.size()[0];
        let unchanged = rows.len() == self.rows && rows.iter().enumerate().all(|(i, &r)| r == i as i64);
        if !unchanged {
            let index = Tensor::from_slice(rows).to_device(device);
            for cache in &mut self.self_attn {
                cache.select_rows(&index);
            }
            if let Some(history) = self.alignment.as_mut().and_then(|a| a.history.as_mut()) {
                *history = history.index_select(0, &index);
            }
            self.positions = self.positions.index_select(0, &index);
            self.history = self.history.as_ref().map(|h| h.index_select(0, &index));
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
        // Rows that leave may leave padding no one uses.
        if shrunk {
            self.trim();
        }
    }
}

/// The sum of each column of a 0/1 (or boolean) matrix [rows, columns].
fn column_counts(matrix: &Tensor) -> Vec<i64> {
    Vec::<i64>::try_from(matrix.sum_dim_intlist(0, false, Kind::Int64).to_device(Device::Cpu)).expect("column sums")
}

/// A built encoder-decoder, and how many input positions its encoder has
/// (None: relative positions, no table to outgrow).
pub struct Seq2SeqNet {
    pub net: Box<dyn Seq2SeqLm + Send>,
    pub positions: Option<usize>,
}

/// Builds a family's encoder-decoder from its config.json at a checkpoint's
/// root (the registry holds one per architecture).
pub type Seq2SeqBuilder = fn(
    root: tch::nn::Path,
    config_file: &std::path::Path,
    shapes: &crate::core::weights::WeightShapes,
) -> crate::Result<Seq2SeqNet>;

/// A built decoder-only language model, and its config's EOS token (the
/// generation default when generation_config.json names none).
pub struct CausalNet {
    pub net: Box<dyn CausalLm + Send>,
    pub eos_token_id: i64,
}

/// Builds a family's decoder-only language model from its config.json at a
/// checkpoint's root (the registry holds one per architecture).
pub type CausalBuilder = fn(
    root: tch::nn::Path,
    config_file: &std::path::Path,
    shapes: &crate::core::weights::WeightShapes,
) -> crate::Result<CausalNet>;
