//! `config`: a model directory's config.json, checked by each family
//! against the checkpoint's tensor shapes before anything is built from
//! it. The first byte picks a fixture model (one per family and head);
//! the rest is its config.json, beside the fixture's own weights, tokenizer
//! and other files, loaded by the plugin as the daemon loads a model. A
//! refused config is refused as the operator's to fix, never as INTERNAL
//! (which a LibTorch failure while building would give); an accepted one
//! gives a model no larger than its checkpoint that answers a request of
//! its task, or refuses it as a client's error.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use inferd_plugin_audio::AudioTask;
use inferd_plugin_text::TextTask;
use inferd_plugin_vision::VisionTask;
use inferd_sdk::abi::PluginTable;
use inferd_sdk::proto::api::{
    AnswerQuestionRequest, AudioInput, ClassifyImageRequest, ClassifyRequest, ClassifyTokensRequest, EmbedRequest,
    FillMaskRequest, GenerateRequest, ImageInput, QuestionInput, SegmentImageRequest, SummarizeRequest, TextInput,
    TranscribeRequest, TranslateRequest, ZeroShotClassifyRequest,
};
use inferd_sdk::proto::task_request::Body as Request;
use inferd_sdk::proto::task_response::Body as Response;
use inferd_sdk::proto::{Batch, TaskRequest};
use inferd_sdk::Code;

use crate::fixtures;
use crate::plugin::{self, Instance};

/// A fixture model of one family and head, the task it is loaded for, and
/// a request of that task.
struct Family {
    fixture: &'static str,
    task: &'static str,
    plugin: fn() -> PluginTable,
    request: fn() -> Request,
}

const FAMILIES: &[Family] = &[
    Family {
        fixture: "bert-cls",
        task: "text-classification",
        plugin: plugin::table::<TextTask>,
        request: classify,
    },
    Family {
        fixture: "distilbert-cls",
        task: "text-classification",
        plugin: plugin::table::<TextTask>,
        request: classify,
    },
    Family {
        fixture: "roberta-cls",
        task: "text-classification",
        plugin: plugin::table::<TextTask>,
        request: classify,
    },
    Family {
        fixture: "bart-mnli",
        task: "zero-shot-classification",
        plugin: plugin::table::<TextTask>,
        request: || {
            Request::ZeroShot(ZeroShotClassifyRequest {
                inputs: vec!["The weather is fine today.".into()],
                candidate_labels: vec!["weather".into(), "sport".into()],
                ..Default::default()
            })
        },
    },
    Family {
        fixture: "bert-ner",
        task: "token-classification",
        plugin: plugin::table::<TextTask>,
        request: || {
            Request::ClassifyTokens(ClassifyTokensRequest {
                inputs: vec!["Ada Lovelace lived in London.".into()],
                ..Default::default()
            })
        },
    },
    Family {
        fixture: "bert-qa",
        task: "question-answering",
        plugin: plugin::table::<TextTask>,
        request: || {
            Request::AnswerQuestion(AnswerQuestionRequest {
                inputs: vec![QuestionInput {
                    question: "Where did she live?".into(),
                    context: "Ada Lovelace lived in London.".into(),
                }],
                ..Default::default()
            })
        },
    },
    Family {
        fixture: "bert-mlm",
        task: "fill-mask",
        plugin: plugin::table::<TextTask>,
        request: || {
            Request::FillMask(FillMaskRequest {
                inputs: vec!["Paris is the [MASK] of France.".into()],
                ..Default::default()
            })
        },
    },
    Family {
        fixture: "bert-base",
        task: "feature-extraction",
        plugin: plugin::table::<TextTask>,
        request: || {
            Request::Embed(EmbedRequest {
                inputs: vec!["A sentence to embed.".into()],
                ..Default::default()
            })
        },
    },
    Family {
        fixture: "gpt2-gen",
        task: "text-generation",
        plugin: plugin::table::<TextTask>,
        request: || {
            Request::Generate(GenerateRequest {
                inputs: vec!["Once upon a time".into()],
                max_new_tokens: Some(4),
                ..Default::default()
            })
        },
    },
    Family {
        fixture: "bart-sum",
        task: "summarization",
        plugin: plugin::table::<TextTask>,
        request: summarize,
    },
    Family {
        fixture: "t5-v1_1",
        task: "summarization",
        plugin: plugin::table::<TextTask>,
        request: summarize,
    },
    Family {
        fixture: "t5-small-ish",
        task: "translation",
        plugin: plugin::table::<TextTask>,
        request: || translate("Hello, how are you?", "en", "fr"),
    },
    Family {
        fixture: "marian-fr-en",
        task: "translation",
        plugin: plugin::table::<TextTask>,
        request: || translate("Bonjour, comment allez-vous ?", "", ""),
    },
    Family {
        fixture: "vit-cls",
        task: "image-classification",
        plugin: plugin::table::<VisionTask>,
        request: classify_image,
    },
    Family {
        fixture: "convnext-cls",
        task: "image-classification",
        plugin: plugin::table::<VisionTask>,
        request: classify_image,
    },
    Family {
        fixture: "segformer-random",
        task: "image-segmentation",
        plugin: plugin::table::<VisionTask>,
        request: segment_image,
    },
    Family {
        fixture: "mask2former-random-small",
        task: "image-segmentation",
        plugin: plugin::table::<VisionTask>,
        request: segment_image,
    },
    Family {
        fixture: "detr-panoptic-random",
        task: "image-segmentation",
        plugin: plugin::table::<VisionTask>,
        request: segment_image,
    },
    Family {
        fixture: "w2v2-base",
        task: "automatic-speech-recognition",
        plugin: plugin::table::<AudioTask>,
        request: || {
            Request::Transcribe(TranscribeRequest {
                inputs: vec![AudioInput { data: tone_wav() }],
                ..Default::default()
            })
        },
    },
];

fn classify() -> Request {
    Request::Classify(ClassifyRequest {
        inputs: vec![TextInput {
            text: "What a fine day.".into(),
            text_pair: None,
        }],
        ..Default::default()
    })
}

fn summarize() -> Request {
    Request::Summarize(SummarizeRequest {
        inputs: vec!["The committee met on Monday and agreed on the budget for the coming year.".into()],
        min_length: Some(1),
        max_new_tokens: Some(4),
        ..Default::default()
    })
}

fn translate(text: &str, src_lang: &str, tgt_lang: &str) -> Request {
    Request::Translate(TranslateRequest {
        inputs: vec![text.into()],
        src_lang: src_lang.into(),
        tgt_lang: tgt_lang.into(),
        max_new_tokens: Some(4),
        ..Default::default()
    })
}

fn classify_image() -> Request {
    let image = fixtures::fixtures_dir().join("images/la_48x36.png");
    Request::ClassifyImage(ClassifyImageRequest {
        inputs: vec![ImageInput {
            data: std::fs::read(&image).unwrap_or_else(|e| panic!("{}: {e}", image.display())),
        }],
        ..Default::default()
    })
}

fn segment_image() -> Request {
    let image = fixtures::fixtures_dir().join("images/la_48x36.png");
    Request::SegmentImage(SegmentImageRequest {
        inputs: vec![ImageInput {
            data: std::fs::read(&image).unwrap_or_else(|e| panic!("{}: {e}", image.display())),
        }],
        ..Default::default()
    })
}

/// A quarter of a second of a 440 Hz tone: a 16 kHz PCM16 mono WAV.
fn tone_wav() -> Vec<u8> {
    let samples: Vec<i16> = (0..4000)
        .map(|i| ((i as f32 * 440.0 * std::f32::consts::TAU / 16000.0).sin() * 8000.0) as i16)
        .collect();
    let data: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    let mut wav = b"RIFF".to_vec();
    wav.extend((36 + data.len() as u32).to_le_bytes());
    wav.extend(b"WAVEfmt ");
    wav.extend(16u32.to_le_bytes());
    wav.extend(1u16.to_le_bytes()); // PCM
    wav.extend(1u16.to_le_bytes()); // mono
    wav.extend(16000u32.to_le_bytes());
    wav.extend((16000u32 * 2).to_le_bytes());
    wav.extend(2u16.to_le_bytes());
    wav.extend(16u16.to_le_bytes());
    wav.extend(b"data");
    wav.extend((data.len() as u32).to_le_bytes());
    wav.extend(data);
    wav
}

thread_local! {
    /// Per family, a directory of links to its fixture's files but
    /// config.json, which each input writes.
    static DIRS: RefCell<Option<(tempfile::TempDir, Vec<PathBuf>)>> = const { RefCell::new(None) };
}

fn linked_dirs() -> (tempfile::TempDir, Vec<PathBuf>) {
    let root = tempfile::tempdir().expect("a temporary directory");
    let dirs = FAMILIES
        .iter()
        .map(|family| {
            let dir = root.path().join(family.fixture);
            std::fs::create_dir(&dir).expect("a model directory");
            let fixture = fixtures::model_dir(family.fixture);
            let entries = std::fs::read_dir(&fixture).unwrap_or_else(|e| panic!("{}: {e}", fixture.display()));
            for entry in entries {
                let name = entry.expect("a fixture file").file_name();
                if name != "config.json" {
                    std::os::unix::fs::symlink(fixture.join(&name), dir.join(&name)).expect("a link");
                }
            }
            dir
        })
        .collect();
    (root, dirs)
}

pub fn config(data: &[u8]) {
    let Some((&pick, config)) = data.split_first() else {
        return;
    };
    let family = &FAMILIES[pick as usize % FAMILIES.len()];
    fixtures::prepare();
    DIRS.with(|dirs| {
        let mut dirs = dirs.borrow_mut();
        let dir = &dirs.get_or_insert_with(linked_dirs).1[pick as usize % FAMILIES.len()];
        std::fs::write(dir.join("config.json"), config).expect("config.json is written");
        loads_a_model_that_answers(family, dir);
    });
}

fn loads_a_model_that_answers(family: &Family, dir: &Path) {
    let mut instance = match Instance::load((family.plugin)(), family.task, Some(dir)) {
        Ok(instance) => instance,
        Err(e) => return assert_ne!(e.code, Code::Internal, "{}: the load failed with {e}", family.fixture),
    };
    let checkpoint = std::fs::metadata(dir.join("model.safetensors"))
        .expect("the weights")
        .len();
    let memory = instance.memory_bytes();
    assert!(
        memory <= checkpoint,
        "{}: an accepted config built {memory} bytes of weights from a checkpoint of {checkpoint}",
        family.fixture
    );
    let batch = Batch {
        requests: vec![TaskRequest {
            body: Some((family.request)()),
            stream: false,
        }],
    };
    let result = instance.run_batch(&batch, None);
    assert!(
        result.error.is_none(),
        "{}: the batch failed: {:?}",
        family.fixture,
        result.error
    );
    match result.responses.first().and_then(|r| r.body.as_ref()) {
        Some(Response::Error(error)) => {
            let code = Code::try_from(error.code).unwrap_or(Code::Internal);
            assert_ne!(
                code,
                Code::Internal,
                "{}: answered INTERNAL: {}",
                family.fixture,
                error.message
            );
        }
        Some(_) => {}
        None => panic!("{}: no answer", family.fixture),
    }
}
