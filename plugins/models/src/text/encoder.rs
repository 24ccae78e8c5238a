//! What a text encoder family offers the encoder tasks: the heads a task
//! may ask for, the [`EncoderNet`] a loaded model runs, and the generic
//! heads over any base encoder (a linear layer per token, a masked-LM
//! projection at the mask positions, the hidden states themselves). Each
//! family has a builder of this module's [`EncoderBuilder`] type; the
//! registry (`auto/`) holds it.

use std::path::Path;

use tch::{nn, Tensor};

use crate::core::layers::Linear;
use crate::core::weights::WeightShapes;
use crate::text::tokenizer::EncodedBatch;
use crate::Result;

/// What a task needs on top of the encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head {
    /// `*ForSequenceClassification`: logits [batch, labels].
    SequenceClassification,
    /// `*ForTokenClassification`: logits [batch, seq, labels].
    TokenClassification,
    /// `*ForQuestionAnswering`: logits [batch, seq, 2] (start, end).
    QuestionAnswering,
    /// `*ForMaskedLM`: logits [batch, seq, vocab].
    MaskedLm,
    /// The base model: hidden states [batch, seq, hidden].
    Features,
}

impl Head {
    /// The task whose architectures provide this head (zero-shot
    /// classification's are text classification's).
    pub fn task(self) -> &'static str {
        match self {
            Head::SequenceClassification => "text-classification",
            Head::TokenClassification => "token-classification",
            Head::QuestionAnswering => "question-answering",
            Head::MaskedLm => "fill-mask",
            Head::Features => "feature-extraction",
        }
    }
}

/// A loaded encoder with its head.
pub trait EncoderNet: Send {
    /// The head's output for an encoded batch (see [`Head`] for shapes).
    fn forward(&self, batch: &EncodedBatch) -> Tensor;

    /// Masked-LM logits [masks, vocab] at the positions where `input_ids`
    /// equals `mask_id`, in row-major order; None without a masked-LM head.
    fn masked_lm_logits(&self, batch: &EncodedBatch, mask_id: i64) -> Option<Tensor> {
        let _ = (batch, mask_id);
        None
    }
}

/// What a builder is asked for.
pub struct EncoderSpec<'a> {
    /// The checkpoint's root.
    pub root: nn::Path<'a>,
    pub config_file: &'a Path,
    /// The checkpoint's tensor shapes, which the config is checked against.
    pub shapes: &'a WeightShapes,
    pub head: Head,
    pub num_labels: i64,
    /// A base-model checkpoint ("BertModel"): the encoder's weights sit at
    /// the root, not under the family's prefix.
    pub base_at_root: bool,
}

impl<'a> EncoderSpec<'a> {
    /// Where the base model's weights sit: the root, or `prefix` ("bert").
    pub fn base(&self, prefix: &str) -> nn::Path<'a> {
        if self.base_at_root {
            self.root.clone()
        } else {
            &self.root / prefix
        }
    }
}

/// A built encoder: its net, how many input positions it has and its
/// padding id (for the tokenizer), and the token its head reads the state
/// of, if it reads one (BART's classifier: the last `eos_token_id` of each
/// input), as config.json's field and the id, for the loader to check that
/// the tokenizer ends every input with it.
pub struct Encoder {
    pub net: Box<dyn EncoderNet>,
    pub positions: i64,
    pub pad_token_id: i64,
    pub reads_token: Option<(&'static str, i64)>,
}

/// Builds a family's encoder for a head (the registry holds one per
/// architecture).
pub type EncoderBuilder = fn(&EncoderSpec) -> Result<Encoder>;

/// The net for `spec.head` from a family's pieces: its sequence classifier,
/// its base encoder (`hidden` wide), and its masked-LM head over that
/// encoder. Token classification and question answering put a linear layer
/// per token on the base, at transformers' names (`classifier`,
/// `qa_outputs`).
pub fn with_head<E, H>(
    spec: &EncoderSpec,
    hidden: i64,
    base: impl Fn() -> E,
    classifier: impl FnOnce() -> Box<dyn EncoderNet>,
    lm_head: impl FnOnce(&E) -> H,
) -> Box<dyn EncoderNet>
where
    E: HiddenStates + 'static,
    H: Projection + 'static,
{
    let root = &spec.root;
    match spec.head {
        Head::SequenceClassification => classifier(),
        Head::TokenClassification => Box::new(PerToken(
            base(),
            Linear::new(root / "classifier", hidden, spec.num_labels),
        )),
        Head::QuestionAnswering => Box::new(PerToken(base(), Linear::new(root / "qa_outputs", hidden, 2))),
        Head::MaskedLm => {
            let encoder = base();
            let head = lm_head(&encoder);
            Box::new(MaskedLm(encoder, head))
        }
        Head::Features => Box::new(Features(base())),
    }
}

/// A base encoder: hidden states [batch, seq, hidden].
pub trait HiddenStates: Send {
    fn hidden_states(&self, batch: &EncodedBatch) -> Tensor;
}

/// A projection of hidden states (a masked-LM head).
pub trait Projection: Send {
    fn project(&self, hidden: &Tensor) -> Tensor;
}

/// Token classification and question answering: a linear layer per token.
pub struct PerToken<E>(pub E, pub Linear);

impl<E: HiddenStates> EncoderNet for PerToken<E> {
    fn forward(&self, batch: &EncodedBatch) -> Tensor {
        self.1.forward(&self.0.hidden_states(batch))
    }
}

/// A masked-LM head over a base encoder; only the mask positions go
/// through the vocabulary projection in `masked_lm_logits`.
pub struct MaskedLm<E, H>(pub E, pub H);

impl<E: HiddenStates, H: Projection> EncoderNet for MaskedLm<E, H> {
    fn forward(&self, batch: &EncodedBatch) -> Tensor {
        self.1.project(&self.0.hidden_states(batch))
    }

    fn masked_lm_logits(&self, batch: &EncodedBatch, mask_id: i64) -> Option<Tensor> {
        let hidden = self.0.hidden_states(batch);
        let (_, _, h) = hidden.size3().expect("3-d hidden states");
        let mask = batch.input_ids.eq(mask_id).unsqueeze(-1);
        Some(self.1.project(&hidden.masked_select(&mask).view([-1, h])))
    }
}

/// The base model: its hidden states.
pub struct Features<E>(pub E);

impl<E: HiddenStates> EncoderNet for Features<E> {
    fn forward(&self, batch: &EncodedBatch) -> Tensor {
        self.0.hidden_states(batch)
    }
}
