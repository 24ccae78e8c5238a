//! The one registry from config.json's architecture name to its family
//! (which loader builds it) and the pipeline() tasks it serves, like
//! transformers' `AutoModelFor*` mappings; and the loaders, one per kind of
//! loaded model. This is the only module that names concrete models: a new
//! family is a folder under its modality plus entries here.

pub mod causal;
pub mod ctc;
pub mod image;
pub mod seq2seq;
pub mod text;

pub use causal::{load_causal_lm, CausalModel};
pub use ctc::{load_ctc_model, CtcModel};
pub use image::{load_image_classifier, ImageClassifier};
pub use seq2seq::{load_seq2seq, Seq2SeqModel, Seq2SeqTokenizer};
pub use text::{load_text_model, Head, TextModel};

use crate::{ModelError, Result};

/// The model families, as the loaders build them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Bert,
    DistilBert,
    Roberta,
    Bart,
    Marian,
    T5,
    Gpt2,
    Vit,
    ConvNext,
    Wav2Vec2,
}

/// One architecture a checkpoint's config.json may name.
#[derive(Debug, Clone, Copy)]
pub struct Architecture {
    pub name: &'static str,
    pub family: Family,
    /// The pipeline() tasks a model of this architecture serves.
    pub tasks: &'static [&'static str],
}

const CLASSIFY: &[&str] = &["text-classification", "zero-shot-classification", "feature-extraction"];
const TOKENS: &[&str] = &["token-classification", "feature-extraction"];
const ANSWER: &[&str] = &["question-answering", "feature-extraction"];
const FILL: &[&str] = &["fill-mask", "feature-extraction"];
const FEATURES: &[&str] = &["feature-extraction"];
const TEXT2TEXT: &[&str] = &["summarization", "translation"];

macro_rules! architectures {
    ($($name:literal => $family:ident, $tasks:expr;)*) => {
        /// Every architecture inferd loads.
        pub const ARCHITECTURES: &[Architecture] = &[
            $(Architecture { name: $name, family: Family::$family, tasks: $tasks },)*
        ];
    };
}

architectures! {
    "BertForSequenceClassification" => Bert, CLASSIFY;
    "BertForTokenClassification" => Bert, TOKENS;
    "BertForQuestionAnswering" => Bert, ANSWER;
    "BertForMaskedLM" => Bert, FILL;
    "BertModel" => Bert, FEATURES;
    "DistilBertForSequenceClassification" => DistilBert, CLASSIFY;
    "DistilBertForTokenClassification" => DistilBert, TOKENS;
    "DistilBertForQuestionAnswering" => DistilBert, ANSWER;
    "DistilBertForMaskedLM" => DistilBert, FILL;
    "DistilBertModel" => DistilBert, FEATURES;
    "RobertaForSequenceClassification" => Roberta, CLASSIFY;
    "RobertaForTokenClassification" => Roberta, TOKENS;
    "RobertaForQuestionAnswering" => Roberta, ANSWER;
    "RobertaForMaskedLM" => Roberta, FILL;
    "RobertaModel" => Roberta, FEATURES;
    "BartForSequenceClassification" => Bart, &["text-classification", "zero-shot-classification"];
    "BartForConditionalGeneration" => Bart, TEXT2TEXT;
    "MarianMTModel" => Marian, TEXT2TEXT;
    "T5ForConditionalGeneration" => T5, TEXT2TEXT;
    "GPT2LMHeadModel" => Gpt2, &["text-generation"];
    "ViTForImageClassification" => Vit, &["image-classification"];
    "ConvNextForImageClassification" => ConvNext, &["image-classification"];
    "Wav2Vec2ForCTC" => Wav2Vec2, &["automatic-speech-recognition"];
}

/// The architectures that serve `task`, in the table's order.
pub fn architectures_for(task: &str) -> Vec<String> {
    ARCHITECTURES
        .iter()
        .filter(|a| a.tasks.contains(&task))
        .map(|a| a.name.to_string())
        .collect()
}

/// The registry entry of `architecture` when it serves `task`; otherwise an
/// Unsupported error that lists what does (`what` names the task for people).
pub fn find(architecture: &str, task: &str, what: &str) -> Result<&'static Architecture> {
    ARCHITECTURES
        .iter()
        .find(|a| a.name == architecture && a.tasks.contains(&task))
        .ok_or_else(|| {
            ModelError::Unsupported(format!(
                "architecture {architecture} {what} (supported: {})",
                architectures_for(task).join(", ")
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_architecture_is_listed_once_and_serves_a_task() {
        let mut names: Vec<&str> = ARCHITECTURES.iter().map(|a| a.name).collect();
        names.sort_unstable();
        let count = names.len();
        names.dedup();
        assert_eq!(names.len(), count, "an architecture is listed twice");
        assert!(ARCHITECTURES.iter().all(|a| !a.tasks.is_empty()));
    }

    #[test]
    fn tasks_find_their_architectures_and_others_are_refused() {
        assert_eq!(architectures_for("text-generation"), ["GPT2LMHeadModel"]);
        assert!(architectures_for("feature-extraction").contains(&"RobertaForMaskedLM".to_string()));
        assert!(!architectures_for("feature-extraction").contains(&"BartForSequenceClassification".to_string()));
        assert_eq!(find("MarianMTModel", "translation", "").unwrap().family, Family::Marian);
        let refused = find("GPT2LMHeadModel", "summarization", "for summarization").unwrap_err();
        assert!(refused.to_string().contains("T5ForConditionalGeneration"), "{refused}");
    }
}
