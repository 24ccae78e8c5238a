//! What the soak sends: one small valid request per task, the same requests
//! abandoned by their client, and requests with the right message but values
//! the daemon must refuse.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use inferd_proto::v1::inference_client::InferenceClient;
use inferd_proto::v1::{
    AnswerQuestionRequest, AudioInput, ClassifyImageRequest, ClassifyRequest, ClassifyTokensRequest, EmbedRequest,
    FillMaskRequest, GenerateRequest, ImageInput, QuestionInput, SummarizeRequest, TextInput, TranscribeRequest,
    TranslateRequest, ZeroShotClassifyRequest,
};
use tonic::transport::Channel;
use tonic::Status;

use super::Rng;

/// Every RPC of the Inference service that runs a model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Task {
    Classify,
    ZeroShotClassify,
    FillMask,
    ClassifyTokens,
    AnswerQuestion,
    Embed,
    Generate,
    GenerateStream,
    ClassifyImage,
    Summarize,
    Translate,
    Transcribe,
}

impl Task {
    pub const ALL: [Task; 12] = [
        Task::Classify,
        Task::ZeroShotClassify,
        Task::FillMask,
        Task::ClassifyTokens,
        Task::AnswerQuestion,
        Task::Embed,
        Task::Generate,
        Task::GenerateStream,
        Task::ClassifyImage,
        Task::Summarize,
        Task::Translate,
        Task::Transcribe,
    ];

    /// The method's path, as a raw client sends it.
    pub fn path(self) -> &'static str {
        match self {
            Task::Classify => "/inferd.v1.Inference/Classify",
            Task::ZeroShotClassify => "/inferd.v1.Inference/ZeroShotClassify",
            Task::FillMask => "/inferd.v1.Inference/FillMask",
            Task::ClassifyTokens => "/inferd.v1.Inference/ClassifyTokens",
            Task::AnswerQuestion => "/inferd.v1.Inference/AnswerQuestion",
            Task::Embed => "/inferd.v1.Inference/Embed",
            Task::Generate => "/inferd.v1.Inference/Generate",
            Task::GenerateStream => "/inferd.v1.Inference/GenerateStream",
            Task::ClassifyImage => "/inferd.v1.Inference/ClassifyImage",
            Task::Summarize => "/inferd.v1.Inference/Summarize",
            Task::Translate => "/inferd.v1.Inference/Translate",
            Task::Transcribe => "/inferd.v1.Inference/Transcribe",
        }
    }
}

/// The model each task's requests name (empty: the task's default model).
#[derive(clap::Args, Clone, Debug)]
#[command(next_help_heading = "Models, one per task (empty: the task's default model)")]
pub struct Models {
    #[arg(long, default_value = "")]
    pub classify_model: String,
    #[arg(long, default_value = "")]
    pub zero_shot_model: String,
    /// A model whose mask token is `--mask-token`.
    #[arg(long, default_value = "")]
    pub fill_mask_model: String,
    #[arg(long, default_value = "[MASK]")]
    pub mask_token: String,
    #[arg(long, default_value = "")]
    pub token_classification_model: String,
    #[arg(long, default_value = "")]
    pub question_answering_model: String,
    #[arg(long, default_value = "")]
    pub embed_model: String,
    /// Serves Generate and GenerateStream.
    #[arg(long, default_value = "")]
    pub generate_model: String,
    #[arg(long, default_value = "")]
    pub image_model: String,
    #[arg(long, default_value = "")]
    pub summarize_model: String,
    /// A French-to-English model (the inputs are French).
    #[arg(long, default_value = "")]
    pub translate_model: String,
    #[arg(long, default_value = "")]
    pub transcribe_model: String,
}

impl Models {
    fn of(&self, task: Task) -> String {
        match task {
            Task::Classify => &self.classify_model,
            Task::ZeroShotClassify => &self.zero_shot_model,
            Task::FillMask => &self.fill_mask_model,
            Task::ClassifyTokens => &self.token_classification_model,
            Task::AnswerQuestion => &self.question_answering_model,
            Task::Embed => &self.embed_model,
            Task::Generate | Task::GenerateStream => &self.generate_model,
            Task::ClassifyImage => &self.image_model,
            Task::Summarize => &self.summarize_model,
            Task::Translate => &self.translate_model,
            Task::Transcribe => &self.transcribe_model,
        }
        .clone()
    }
}

const SENTENCES: [&str; 6] = [
    "The movie was a delight from start to finish.",
    "I would not recommend this restaurant to anyone.",
    "My name is Wolfgang and I live in Berlin.",
    "The council approved a plan to build three new bridges over the river.",
    "Hugging Face is a company based in New York City.",
    "The weather today is cold and rainy, and the trains are late again.",
];

const FRENCH: [&str; 3] = [
    "Bonjour, comment allez-vous ?",
    "Le chat dort sur le canapé.",
    "La réunion commence à neuf heures demain matin.",
];

/// Audio fixtures the audio plugin decodes (the others are refused on
/// purpose: empty, truncated, or a minute long).
const AUDIO_FILES: [&str; 6] = [
    "speech_16k.wav",
    "speech_16k.flac",
    "speech_16k.mp3",
    "speech_16k.ogg",
    "speech_16k_stereo.wav",
    "speech_22k.wav",
];

/// Images above this size are left out: the soak is about many small
/// requests, not decoding.
const MAX_IMAGE_BYTES: u64 = 128 * 1024;

/// The fixture images and audio (tests/fixtures/make_fixtures.py).
pub struct Media {
    images: Vec<Vec<u8>>,
    audio: Vec<Vec<u8>>,
}

impl Media {
    pub fn read(fixtures: &Path) -> Result<Media> {
        let dir = fixtures.join("images");
        let mut images = Vec::new();
        for entry in std::fs::read_dir(&dir).with_context(|| format!("read {}", dir.display()))? {
            let path = entry?.path();
            if std::fs::metadata(&path)?.len() <= MAX_IMAGE_BYTES {
                images.push(std::fs::read(&path).with_context(|| format!("read {}", path.display()))?);
            }
        }
        anyhow::ensure!(!images.is_empty(), "no images in {}", dir.display());
        let audio = AUDIO_FILES
            .iter()
            .map(|file| {
                let path = fixtures.join("audio").join(file);
                std::fs::read(&path).with_context(|| format!("read {}", path.display()))
            })
            .collect::<Result<_>>()?;
        Ok(Media { images, audio })
    }
}

/// One request, ready to send.
pub enum Request {
    Classify(ClassifyRequest),
    ZeroShotClassify(ZeroShotClassifyRequest),
    FillMask(FillMaskRequest),
    ClassifyTokens(ClassifyTokensRequest),
    AnswerQuestion(AnswerQuestionRequest),
    Embed(EmbedRequest),
    Generate(GenerateRequest),
    GenerateStream(GenerateRequest),
    ClassifyImage(ClassifyImageRequest),
    Summarize(SummarizeRequest),
    Translate(TranslateRequest),
    Transcribe(TranscribeRequest),
}

impl Request {
    /// A small request the daemon must serve.
    pub fn good(task: Task, models: &Models, media: &Media, rng: &mut Rng) -> Request {
        let model = models.of(task);
        let sentence = rng.pick(&SENTENCES).to_string();
        match task {
            Task::Classify => Request::Classify(ClassifyRequest {
                model,
                inputs: vec![TextInput {
                    text: sentence,
                    text_pair: rng.chance(0.3).then(|| rng.pick(&SENTENCES).to_string()),
                }],
                top_k: rng.chance(0.5).then_some(2),
                ..Default::default()
            }),
            Task::ZeroShotClassify => Request::ZeroShotClassify(ZeroShotClassifyRequest {
                model,
                inputs: vec![sentence],
                candidate_labels: vec!["sports".into(), "politics".into(), "food".into()],
                multi_label: rng.chance(0.5),
                ..Default::default()
            }),
            Task::FillMask => Request::FillMask(FillMaskRequest {
                model,
                inputs: vec![format!("The capital of France is {}.", models.mask_token)],
                top_k: Some(3),
                ..Default::default()
            }),
            Task::ClassifyTokens => Request::ClassifyTokens(ClassifyTokensRequest {
                model,
                inputs: vec![sentence],
                aggregation_strategy: rng.pick(&["none", "simple", "first"]).to_string(),
                ..Default::default()
            }),
            Task::AnswerQuestion => Request::AnswerQuestion(AnswerQuestionRequest {
                model,
                inputs: vec![QuestionInput {
                    question: "Where do I live?".into(),
                    context: format!("{sentence} My name is Wolfgang and I live in Berlin."),
                }],
                ..Default::default()
            }),
            Task::Embed => Request::Embed(EmbedRequest {
                model,
                inputs: vec![sentence],
                pooling: rng.pick(&["mean", "cls"]).to_string(),
                normalize: Some(true),
                ..Default::default()
            }),
            Task::Generate | Task::GenerateStream => {
                let request = GenerateRequest {
                    model,
                    inputs: vec![sentence],
                    max_new_tokens: Some(1 + rng.below(16) as u32),
                    do_sample: Some(rng.chance(0.5)),
                    seed: Some(rng.below(1 << 32)),
                    ..Default::default()
                };
                match task {
                    Task::Generate => Request::Generate(request),
                    _ => Request::GenerateStream(request),
                }
            }
            Task::ClassifyImage => Request::ClassifyImage(ClassifyImageRequest {
                model,
                inputs: vec![ImageInput {
                    data: rng.pick(&media.images).clone(),
                }],
                ..Default::default()
            }),
            Task::Summarize => Request::Summarize(SummarizeRequest {
                model,
                inputs: vec![format!("{sentence} {}", rng.pick(&SENTENCES))],
                ..Default::default()
            }),
            Task::Translate => Request::Translate(TranslateRequest {
                model,
                inputs: vec![rng.pick(&FRENCH).to_string()],
                ..Default::default()
            }),
            Task::Transcribe => Request::Transcribe(TranscribeRequest {
                model,
                inputs: vec![AudioInput {
                    data: rng.pick(&media.audio).clone(),
                }],
                ..Default::default()
            }),
        }
    }

    /// A GenerateStream request long enough to be left mid-stream.
    pub fn long_stream(models: &Models, rng: &mut Rng) -> GenerateRequest {
        GenerateRequest {
            model: models.of(Task::GenerateStream),
            inputs: vec![rng.pick(&SENTENCES).to_string()],
            max_new_tokens: Some(64),
            min_new_tokens: Some(64),
            ..Default::default()
        }
    }

    pub fn task(&self) -> Task {
        match self {
            Request::Classify(_) => Task::Classify,
            Request::ZeroShotClassify(_) => Task::ZeroShotClassify,
            Request::FillMask(_) => Task::FillMask,
            Request::ClassifyTokens(_) => Task::ClassifyTokens,
            Request::AnswerQuestion(_) => Task::AnswerQuestion,
            Request::Embed(_) => Task::Embed,
            Request::Generate(_) => Task::Generate,
            Request::GenerateStream(_) => Task::GenerateStream,
            Request::ClassifyImage(_) => Task::ClassifyImage,
            Request::Summarize(_) => Task::Summarize,
            Request::Translate(_) => Task::Translate,
            Request::Transcribe(_) => Task::Transcribe,
        }
    }

    /// Sends the request and reads its whole answer (a stream to its end).
    pub async fn send(self, client: &mut InferenceClient<Channel>, timeout: Duration) -> Result<(), Status> {
        fn with_timeout<T>(message: T, timeout: Duration) -> tonic::Request<T> {
            let mut request = tonic::Request::new(message);
            request.set_timeout(timeout);
            request
        }
        match self {
            Request::Classify(r) => client.classify(with_timeout(r, timeout)).await.map(drop),
            Request::ZeroShotClassify(r) => client.zero_shot_classify(with_timeout(r, timeout)).await.map(drop),
            Request::FillMask(r) => client.fill_mask(with_timeout(r, timeout)).await.map(drop),
            Request::ClassifyTokens(r) => client.classify_tokens(with_timeout(r, timeout)).await.map(drop),
            Request::AnswerQuestion(r) => client.answer_question(with_timeout(r, timeout)).await.map(drop),
            Request::Embed(r) => client.embed(with_timeout(r, timeout)).await.map(drop),
            Request::Generate(r) => client.generate(with_timeout(r, timeout)).await.map(drop),
            Request::GenerateStream(r) => {
                let mut stream = client.generate_stream(with_timeout(r, timeout)).await?.into_inner();
                while stream.message().await?.is_some() {}
                Ok(())
            }
            Request::ClassifyImage(r) => client.classify_image(with_timeout(r, timeout)).await.map(drop),
            Request::Summarize(r) => client.summarize(with_timeout(r, timeout)).await.map(drop),
            Request::Translate(r) => client.translate(with_timeout(r, timeout)).await.map(drop),
            Request::Transcribe(r) => client.transcribe(with_timeout(r, timeout)).await.map(drop),
        }
    }
}

/// Opens a stream and reads its first chunk; the caller then drops it.
pub async fn first_chunk(client: &mut InferenceClient<Channel>, request: GenerateRequest) -> Result<(), Status> {
    let mut stream = client.generate_stream(request).await?.into_inner();
    stream.message().await.map(drop)
}

/// A request with the right message and values the daemon must refuse with
/// a client error: empty inputs, numbers past every bound, NaN, bytes that
/// are no image or audio, a model that does not exist.
pub struct Hostile {
    pub what: &'static str,
    pub build: fn(&Models, &Media, &mut Rng) -> Request,
}

pub const HOSTILE: &[Hostile] = &[
    Hostile {
        what: "Classify, no inputs",
        build: |m, _, _| {
            Request::Classify(ClassifyRequest {
                model: m.of(Task::Classify),
                ..Default::default()
            })
        },
    },
    Hostile {
        what: "Classify, unknown model",
        build: |_, _, _| {
            Request::Classify(ClassifyRequest {
                model: "no-such-model".into(),
                inputs: vec![TextInput {
                    text: "hello".into(),
                    text_pair: None,
                }],
                ..Default::default()
            })
        },
    },
    Hostile {
        what: "ZeroShotClassify, no candidate labels",
        build: |m, _, _| {
            Request::ZeroShotClassify(ZeroShotClassifyRequest {
                model: m.of(Task::ZeroShotClassify),
                inputs: vec!["the match ended in a draw".into()],
                ..Default::default()
            })
        },
    },
    Hostile {
        what: "FillMask, top_k 0",
        build: |m, _, _| {
            Request::FillMask(FillMaskRequest {
                model: m.of(Task::FillMask),
                inputs: vec![format!("a {} b", m.mask_token)],
                top_k: Some(0),
                ..Default::default()
            })
        },
    },
    Hostile {
        what: "FillMask, no mask",
        build: |m, _, _| {
            Request::FillMask(FillMaskRequest {
                model: m.of(Task::FillMask),
                inputs: vec!["no mask here".into()],
                ..Default::default()
            })
        },
    },
    Hostile {
        what: "ClassifyTokens, empty text",
        build: |m, _, _| {
            Request::ClassifyTokens(ClassifyTokensRequest {
                model: m.of(Task::ClassifyTokens),
                inputs: vec![String::new()],
                ..Default::default()
            })
        },
    },
    Hostile {
        what: "AnswerQuestion, empty question",
        build: |m, _, _| {
            Request::AnswerQuestion(AnswerQuestionRequest {
                model: m.of(Task::AnswerQuestion),
                inputs: vec![QuestionInput {
                    question: String::new(),
                    context: "Paris is in France.".into(),
                }],
                ..Default::default()
            })
        },
    },
    Hostile {
        what: "AnswerQuestion, doc_stride u32::MAX",
        build: |m, _, _| {
            Request::AnswerQuestion(AnswerQuestionRequest {
                model: m.of(Task::AnswerQuestion),
                inputs: vec![QuestionInput {
                    question: "Where?".into(),
                    context: "Paris is in France.".into(),
                }],
                doc_stride: Some(u32::MAX),
                max_seq_len: Some(u32::MAX),
                ..Default::default()
            })
        },
    },
    Hostile {
        what: "Embed, unknown pooling",
        build: |m, _, _| {
            Request::Embed(EmbedRequest {
                model: m.of(Task::Embed),
                inputs: vec!["hello".into()],
                pooling: "median".into(),
                ..Default::default()
            })
        },
    },
    Hostile {
        what: "Generate, max_new_tokens u32::MAX",
        build: |m, _, _| {
            Request::Generate(GenerateRequest {
                model: m.of(Task::Generate),
                inputs: vec!["Hello".into()],
                max_new_tokens: Some(u32::MAX),
                ..Default::default()
            })
        },
    },
    Hostile {
        what: "Generate, num_return_sequences u32::MAX",
        build: |m, _, _| {
            Request::Generate(GenerateRequest {
                model: m.of(Task::Generate),
                inputs: vec!["Hello".into()],
                max_new_tokens: Some(4),
                do_sample: Some(true),
                num_return_sequences: Some(u32::MAX),
                ..Default::default()
            })
        },
    },
    Hostile {
        what: "GenerateStream, NaN temperature",
        build: |m, _, _| {
            Request::GenerateStream(GenerateRequest {
                model: m.of(Task::GenerateStream),
                inputs: vec!["Hello".into()],
                temperature: Some(f32::NAN),
                ..Default::default()
            })
        },
    },
    Hostile {
        what: "ClassifyImage, random bytes",
        build: |m, _, rng| {
            Request::ClassifyImage(ClassifyImageRequest {
                model: m.of(Task::ClassifyImage),
                inputs: vec![ImageInput { data: rng.bytes(512) }],
                ..Default::default()
            })
        },
    },
    Hostile {
        what: "Summarize, num_beams u32::MAX",
        build: |m, _, _| {
            Request::Summarize(SummarizeRequest {
                model: m.of(Task::Summarize),
                inputs: vec!["The council approved a plan.".into()],
                num_beams: Some(u32::MAX),
                ..Default::default()
            })
        },
    },
    Hostile {
        what: "Translate, max_length 100000",
        build: |m, _, _| {
            Request::Translate(TranslateRequest {
                model: m.of(Task::Translate),
                inputs: vec!["Bonjour.".into()],
                max_length: Some(100_000),
                ..Default::default()
            })
        },
    },
    Hostile {
        what: "Transcribe, random bytes",
        build: |m, _, rng| {
            Request::Transcribe(TranscribeRequest {
                model: m.of(Task::Transcribe),
                inputs: vec![AudioInput { data: rng.bytes(512) }],
                ..Default::default()
            })
        },
    },
    Hostile {
        what: "Transcribe, NaN chunk_length_s",
        build: |m, media, rng| {
            Request::Transcribe(TranscribeRequest {
                model: m.of(Task::Transcribe),
                inputs: vec![AudioInput {
                    data: rng.pick(&media.audio).clone(),
                }],
                chunk_length_s: Some(f64::NAN),
                ..Default::default()
            })
        },
    },
];
