//! The one registry from config.json's architecture name to how it is built
//! (the kind of model, so which loader, and the family's builder) and the
//! pipeline() tasks it serves, like transformers' `AutoModelFor*` mappings;
//! and the loaders, one per kind of loaded model. This is the only module
//! that names concrete models: a new family is a folder under its modality
//! (with its builder) plus its entries in this table.

pub mod causal;
pub mod ctc;
pub mod depth;
pub mod detection;
pub mod image;
pub mod segmentation;
pub mod seq2seq;
pub mod text;
pub mod tts;
mod vision;
pub mod vocoder;
pub mod whisper;

pub use causal::{load_causal_lm, CausalModel};
pub use ctc::{load_ctc_model, CtcModel};
pub use depth::{load_depth_estimator, DepthEstimator};
pub use detection::{load_object_detector, ObjectDetector};
pub use image::{load_image_classifier, ImageClassifier};
pub use segmentation::{load_image_segmenter, ImageSegmenter};
pub use seq2seq::{load_seq2seq, Seq2SeqModel, Seq2SeqTokenizer};
pub use text::{load_text_model, Head, TextModel};
pub use tts::{load_text_to_speech, TextToSpeechModel};
pub use vocoder::{load_vocoder, Vocoder};
pub use whisper::{is_whisper, load_whisper, WhisperModel};

use inferd_sdk::LoadContext;
use tch::Device;

use crate::audio::ctc::CtcBuilder;
use crate::audio::speecht5;
use crate::audio::wav2vec2;
use crate::audio::whisper as whisper_net;
use crate::core::decoding::{CausalBuilder, Seq2SeqBuilder};
use crate::core::precision::{HalfSupport, Precision};
use crate::text::encoder::EncoderBuilder;
use crate::text::{bart, bert, distilbert, gpt2, roberta, t5};
use crate::vision::backbones::resnet;
use crate::vision::classifier::ImageClassifierBuilder;
use crate::vision::depth::DepthBuilder;
use crate::vision::detector::DetectorBuilder;
use crate::vision::segmenter::SegmenterBuilder;
use crate::vision::{convnext, detr, dpt, glpn, mask2former, segformer, vit};
use crate::{ModelError, Result};

/// How a model of an architecture is built: the kind of model (which
/// loader) and the family's builder.
#[derive(Debug, Clone, Copy)]
pub enum Build {
    /// A text encoder with a task head; `default_labels` is the family's
    /// config default of num_labels.
    Encoder {
        build: EncoderBuilder,
        default_labels: usize,
    },
    Causal(CausalBuilder),
    Seq2Seq(Seq2SeqBuilder),
    ImageClassifier(ImageClassifierBuilder),
    Ctc(CtcBuilder),
    /// Whisper's encoder-decoder, driven by its own `generate`.
    Whisper(WhisperBuilder),
    /// DETR: an image to class logits and boxes per object query.
    ObjectDetector(DetectorBuilder),
    /// GLPN, DPT: an image to a depth map.
    DepthEstimator(DepthBuilder),
    /// SegFormer, Mask2Former: an image to class logits per pixel or per
    /// object query.
    Segmenter(SegmenterBuilder),
    /// SpeechT5: text to a spectrogram, grown by its own `generate_speech`.
    TextToSpeech(TextToSpeechBuilder),
}

/// Builds SpeechT5 for text to speech from its config.json.
pub type TextToSpeechBuilder = fn(
    root: tch::nn::Path,
    config_file: &std::path::Path,
    shapes: &crate::core::weights::WeightShapes,
) -> Result<speecht5::SpeechT5ForTextToSpeech>;

/// Builds Whisper from its config.json (see `audio/whisper.rs`).
pub type WhisperBuilder = fn(
    root: tch::nn::Path,
    config_file: &std::path::Path,
    shapes: &crate::core::weights::WeightShapes,
) -> Result<whisper_net::WhisperForConditionalGeneration>;

/// One architecture a checkpoint's config.json may name.
#[derive(Debug, Clone, Copy)]
pub struct Architecture {
    pub name: &'static str,
    /// The pipeline() tasks a model of this architecture serves.
    pub tasks: &'static [&'static str],
    pub build: Build,
}

const CLASSIFY: &[&str] = &["text-classification", "zero-shot-classification", "feature-extraction"];
const TOKENS: &[&str] = &["token-classification", "feature-extraction"];
const ANSWER: &[&str] = &["question-answering", "feature-extraction"];
const FILL: &[&str] = &["fill-mask", "feature-extraction"];
const FEATURES: &[&str] = &["feature-extraction"];
const TEXT2TEXT: &[&str] = &["summarization", "translation"];

const BERT: Build = Build::Encoder {
    build: bert::build,
    default_labels: 2,
};
const DISTILBERT: Build = Build::Encoder {
    build: distilbert::build,
    default_labels: 2,
};
const ROBERTA: Build = Build::Encoder {
    build: roberta::build,
    default_labels: 2,
};

macro_rules! architectures {
    ($($name:literal => $tasks:expr, $build:expr;)*) => {
        /// Every architecture inferd loads.
        pub const ARCHITECTURES: &[Architecture] = &[
            $(Architecture { name: $name, tasks: $tasks, build: $build },)*
        ];
    };
}

architectures! {
    "BertForSequenceClassification" => CLASSIFY, BERT;
    "BertForTokenClassification" => TOKENS, BERT;
    "BertForQuestionAnswering" => ANSWER, BERT;
    "BertForMaskedLM" => FILL, BERT;
    "BertModel" => FEATURES, BERT;
    "DistilBertForSequenceClassification" => CLASSIFY, DISTILBERT;
    "DistilBertForTokenClassification" => TOKENS, DISTILBERT;
    "DistilBertForQuestionAnswering" => ANSWER, DISTILBERT;
    "DistilBertForMaskedLM" => FILL, DISTILBERT;
    "DistilBertModel" => FEATURES, DISTILBERT;
    "RobertaForSequenceClassification" => CLASSIFY, ROBERTA;
    "RobertaForTokenClassification" => TOKENS, ROBERTA;
    "RobertaForQuestionAnswering" => ANSWER, ROBERTA;
    "RobertaForMaskedLM" => FILL, ROBERTA;
    "RobertaModel" => FEATURES, ROBERTA;
    "BartForSequenceClassification" => &["text-classification", "zero-shot-classification"],
        Build::Encoder { build: bart::build_classifier, default_labels: 3 };
    "BartForConditionalGeneration" => TEXT2TEXT, Build::Seq2Seq(bart::build_bart);
    "MarianMTModel" => TEXT2TEXT, Build::Seq2Seq(bart::build_marian);
    "T5ForConditionalGeneration" => TEXT2TEXT, Build::Seq2Seq(t5::build);
    "GPT2LMHeadModel" => &["text-generation"], Build::Causal(gpt2::build);
    "ViTForImageClassification" => &["image-classification"], Build::ImageClassifier(vit::build);
    "ConvNextForImageClassification" => &["image-classification"], Build::ImageClassifier(convnext::build);
    "ResNetForImageClassification" => &["image-classification"], Build::ImageClassifier(resnet::build);
    "DetrForObjectDetection" => &["object-detection"], Build::ObjectDetector(detr::build);
    "GLPNForDepthEstimation" => &["depth-estimation"], Build::DepthEstimator(glpn::build);
    "DPTForDepthEstimation" => &["depth-estimation"], Build::DepthEstimator(dpt::build);
    "SegformerForSemanticSegmentation" => &["image-segmentation"], Build::Segmenter(segformer::build);
    "Mask2FormerForUniversalSegmentation" => &["image-segmentation"], Build::Segmenter(mask2former::build);
    "DetrForSegmentation" => &["image-segmentation"], Build::Segmenter(detr::segmentation::build);
    "Wav2Vec2ForCTC" => &["automatic-speech-recognition"], Build::Ctc(wav2vec2::build);
    "WhisperForConditionalGeneration" => &["automatic-speech-recognition"], Build::Whisper(whisper_net::build);
    "SpeechT5ForTextToSpeech" => &["text-to-speech"], Build::TextToSpeech(speecht5::build);
}

/// How far `architecture`'s code runs in float16 and bfloat16 (LoadModel's
/// options.dtype): the text encoders, GPT-2, BART and Marian by default
/// on CUDA; T5 when asked (its activations overflow float16); the vision
/// and speech families when asked (float32 by default on CUDA too until
/// they are measured on a GPU).
pub fn half_support(architecture: &str) -> HalfSupport {
    match architecture {
        "T5ForConditionalGeneration" => HalfSupport::WhenAsked,
        a if a.starts_with("Bert")
            || a.starts_with("DistilBert")
            || a.starts_with("Roberta")
            || a.starts_with("Bart")
            || a == "MarianMTModel"
            || a == "GPT2LMHeadModel" =>
        {
            HalfSupport::Default
        }
        // Each casts its input to its dtype and its outputs to float32
        // (see the loaders); a new family joins this list once it does.
        "ViTForImageClassification"
        | "ConvNextForImageClassification"
        | "ResNetForImageClassification"
        | "DetrForObjectDetection"
        | "DetrForSegmentation"
        | "GLPNForDepthEstimation"
        | "DPTForDepthEstimation"
        | "SegformerForSemanticSegmentation"
        | "Mask2FormerForUniversalSegmentation"
        | "Wav2Vec2ForCTC"
        | "WhisperForConditionalGeneration"
        | "SpeechT5ForTextToSpeech" => HalfSupport::WhenAsked,
        _ => HalfSupport::None,
    }
}

/// The dtype a load asks for (LoadContext's `dtype`, a preference when it
/// is the daemon's default), resolved for its architecture on `device`.
pub fn precision_for(ctx: &LoadContext, device: Device) -> Result<Precision> {
    Precision::resolve(
        &ctx.dtype,
        device,
        &ctx.architecture,
        half_support(&ctx.architecture),
        ctx.dtype_is_default,
    )
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
        assert!(matches!(
            find("MarianMTModel", "translation", "").unwrap().build,
            Build::Seq2Seq(_)
        ));
        let refused = find("GPT2LMHeadModel", "summarization", "for summarization").unwrap_err();
        assert!(refused.to_string().contains("T5ForConditionalGeneration"), "{refused}");
    }
}
