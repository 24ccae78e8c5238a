//! What a generative model offers the generation engine: the two decoder
//! traits (decoder-only and encoder-decoder) and the state an
//! encoder-decoder keeps between steps. The model families implement these;
//! `generation/` drives them without naming any family.

use tch::{Device, Tensor};

use crate::core::layers::KvCache;

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
    /// `tokens` [rows] at decoder position `position`.
    fn step(&self, tokens: &[i64], position: i64, state: &mut DecoderState) -> Tensor;
    fn decoder_layers(&self) -> usize;
    fn decoder_start_token_id(&self) -> i64;
    fn device(&self) -> Device;
}

/// What an encoder-decoder keeps between steps. Its rows are hypotheses,
/// `beams` consecutive rows per input.
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
        DecoderState {
            rows: memory.size()[0] as usize * beams,
            memory,
            memory_padding,
            self_attn: (0..layers).map(|_| KvCache::default()).collect(),
            cross_attn: (0..layers).map(|_| None).collect(),
            alignment: None,
        }
    }

    /// Keeps the inputs `items` (their current positions, in order) and the
    /// hypotheses `rows` (current row numbers, in their new order: the
    /// kept inputs' beams, input after input).
    pub fn select(&mut self, items: &[i64], rows: &[i64]) {
        let device = self.memory.device();
        let unchanged = rows.len() == self.rows && rows.iter().enumerate().all(|(i, &r)| r == i as i64);
        if !unchanged {
            let index = Tensor::from_slice(rows).to_device(device);
            for cache in &mut self.self_attn {
                cache.select_rows(&index);
            }
            if let Some(history) = self.alignment.as_mut().and_then(|a| a.history.as_mut()) {
                *history = history.index_select(0, &index);
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
