//! The warm-up: one small request of a model's task, run through a new
//! instance before the daemon declares it ready, so that the first client
//! request does not pay for what LibTorch does on first use (allocator
//! pools, kernel selection, thread start-up). [`request`] has one for each
//! of the daemon's built-in tasks; a plugin with other tasks (or inputs a
//! model needs, such as its mask token) gives its own through
//! [`crate::Task::warm_up_request`].

use crate::proto::api::{
    AnswerQuestionRequest, AudioInput, ClassifyImageRequest, ClassifyRequest, ClassifyTokensRequest,
    DetectObjectsRequest, EmbedRequest, EstimateDepthRequest, GenerateRequest, ImageInput, QuestionInput,
    SegmentImageRequest, SummarizeRequest, SynthesizeRequest, TextInput, TranscribeRequest, TranslateRequest,
    ZeroShotClassifyRequest,
};
use crate::proto::task_request::Body;
use crate::proto::TaskRequest;

/// A 64x48 RGB PNG with a colour gradient.
const IMAGE: &[u8] = include_bytes!("warm_up.png");

const TEXT: &str = "The weather in Paris was lovely this morning.";

/// The warm-up request of one of the built-in tasks (canonical names), or
/// None for tasks it does not know.
pub fn request(task: &str) -> Option<TaskRequest> {
    let texts = || vec![TEXT.to_string()];
    let images = || vec![ImageInput { data: IMAGE.to_vec() }];
    let body = match task {
        "text-classification" => Body::Classify(ClassifyRequest {
            inputs: vec![TextInput {
                text: TEXT.into(),
                text_pair: None,
            }],
            ..Default::default()
        }),
        "zero-shot-classification" => Body::ZeroShot(ZeroShotClassifyRequest {
            inputs: texts(),
            candidate_labels: vec!["weather".into(), "sport".into()],
            ..Default::default()
        }),
        "token-classification" => Body::ClassifyTokens(ClassifyTokensRequest {
            inputs: texts(),
            ..Default::default()
        }),
        "question-answering" => Body::AnswerQuestion(AnswerQuestionRequest {
            inputs: vec![QuestionInput {
                question: "Where was the weather lovely?".into(),
                context: TEXT.into(),
            }],
            ..Default::default()
        }),
        "feature-extraction" => Body::Embed(EmbedRequest {
            inputs: texts(),
            ..Default::default()
        }),
        "text-generation" => Body::Generate(GenerateRequest {
            inputs: texts(),
            max_new_tokens: Some(2),
            ..Default::default()
        }),
        // Two new tokens, so no minimum length of the model's may ask more.
        "summarization" => Body::Summarize(SummarizeRequest {
            inputs: texts(),
            max_new_tokens: Some(2),
            min_length: Some(0),
            ..Default::default()
        }),
        "translation" => Body::Translate(TranslateRequest {
            inputs: texts(),
            max_new_tokens: Some(2),
            min_length: Some(0),
            ..Default::default()
        }),
        "image-classification" => Body::ClassifyImage(ClassifyImageRequest {
            inputs: images(),
            ..Default::default()
        }),
        "object-detection" => Body::DetectObjects(DetectObjectsRequest {
            inputs: images(),
            ..Default::default()
        }),
        "depth-estimation" => Body::EstimateDepth(EstimateDepthRequest {
            inputs: images(),
            ..Default::default()
        }),
        "image-segmentation" => Body::SegmentImage(SegmentImageRequest {
            inputs: images(),
            ..Default::default()
        }),
        "automatic-speech-recognition" => Body::Transcribe(TranscribeRequest {
            inputs: vec![AudioInput {
                data: silence_wav(16_000, 1.0),
            }],
            ..Default::default()
        }),
        "text-to-speech" => Body::Synthesize(SynthesizeRequest {
            inputs: vec!["Hello.".into()],
            ..Default::default()
        }),
        _ => return None,
    };
    Some(TaskRequest {
        body: Some(body),
        stream: false,
    })
}

/// A mono 16-bit PCM WAV file of `seconds` of silence.
fn silence_wav(sample_rate: u32, seconds: f64) -> Vec<u8> {
    let samples = (f64::from(sample_rate) * seconds) as u32;
    let data = samples * 2;
    let mut wav = Vec::with_capacity(44 + data as usize);
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&1u16.to_le_bytes()); // mono
    wav.extend_from_slice(&sample_rate.to_le_bytes());
    wav.extend_from_slice(&(sample_rate * 2).to_le_bytes());
    wav.extend_from_slice(&2u16.to_le_bytes());
    wav.extend_from_slice(&16u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&data.to_le_bytes());
    wav.resize(44 + data as usize, 0);
    wav
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_task_has_a_warm_up_request_and_others_none() {
        for task in [
            "text-classification",
            "zero-shot-classification",
            "token-classification",
            "question-answering",
            "feature-extraction",
            "text-generation",
            "summarization",
            "translation",
            "image-classification",
            "object-detection",
            "depth-estimation",
            "image-segmentation",
            "automatic-speech-recognition",
            "text-to-speech",
        ] {
            assert!(request(task).and_then(|r| r.body).is_some(), "{task}");
        }
        assert!(request("word-count").is_none());
    }

    #[test]
    fn the_silence_is_a_whole_wav_file() {
        let wav = silence_wav(16_000, 1.0);
        assert_eq!(wav.len(), 44 + 32_000);
        assert_eq!(&wav[..4], b"RIFF");
        assert_eq!(
            u32::from_le_bytes(wav[4..8].try_into().unwrap()) as usize,
            wav.len() - 8
        );
        assert!(IMAGE.starts_with(b"\x89PNG"));
    }
}
