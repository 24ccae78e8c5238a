//! `requests`: every RPC of `inferd.v1.Inference`, as a client can send it.
//! The first byte picks the RPC, the model that serves it (of the fixtures
//! for its task) and whether the batch holds the request once or twice (as
//! the scheduler batches requests together); the rest is the request
//! message, decoded as the daemon decodes it and handed to the real plugin
//! as the daemon hands it over. Whatever the request, each answer is the
//! RPC's response with a result per input, or a client's error (never
//! INTERNAL, which a panic or a LibTorch error would give), a request in a
//! batch twice is answered alike both times, and partial responses belong
//! to streaming requests.

use std::cell::RefCell;
use std::collections::HashMap;

use inferd_plugin_audio::AudioTask;
use inferd_plugin_example::WordCount;
use inferd_plugin_text::TextTask;
use inferd_plugin_vision::VisionTask;
use inferd_sdk::abi::PluginTable;
use inferd_sdk::proto::api::{
    AnswerQuestionRequest, ClassifyImageRequest, ClassifyRequest, ClassifyTokensRequest, EmbedRequest, FillMaskRequest,
    GenerateRequest, RunRequest, SummarizeRequest, SynthesizeRequest, TranscribeRequest, TranslateRequest,
    ZeroShotClassifyRequest,
};
use inferd_sdk::proto::task_request::Body as Request;
use inferd_sdk::proto::task_response::Body as Response;
use inferd_sdk::proto::{Batch, TaskRequest, TaskResponse};
use inferd_sdk::Code;
use prost::{DecodeError, Message};

use crate::fixtures;
use crate::plugin::{self, Instance};

/// One RPC: the task the daemon routes it to, its request message as the
/// plugin receives it, whether it streams, and the fixture models serving
/// its task here (None for a task without a model).
struct Rpc {
    name: &'static str,
    task: &'static str,
    decode: fn(&[u8]) -> Result<Request, DecodeError>,
    stream: bool,
    models: &'static [Option<&'static str>],
}

macro_rules! decode_as {
    ($message:ident, $arm:ident) => {
        |bytes| $message::decode(bytes).map(Request::$arm)
    };
}

const RPCS: &[Rpc] = &[
    Rpc {
        name: "Generate",
        task: "text-generation",
        decode: decode_as!(GenerateRequest, Generate),
        stream: false,
        models: &[Some("gpt2-gen")],
    },
    Rpc {
        name: "GenerateStream",
        task: "text-generation",
        decode: decode_as!(GenerateRequest, Generate),
        stream: true,
        models: &[Some("gpt2-gen")],
    },
    Rpc {
        name: "Classify",
        task: "text-classification",
        decode: decode_as!(ClassifyRequest, Classify),
        stream: false,
        models: &[Some("bert-cls"), Some("bert-cls-multilabel"), Some("roberta-cls")],
    },
    Rpc {
        name: "ZeroShotClassify",
        task: "zero-shot-classification",
        decode: decode_as!(ZeroShotClassifyRequest, ZeroShot),
        stream: false,
        models: &[Some("bert-nli"), Some("bart-mnli")],
    },
    Rpc {
        name: "FillMask",
        task: "fill-mask",
        decode: decode_as!(FillMaskRequest, FillMask),
        stream: false,
        models: &[Some("bert-mlm"), Some("roberta-mlm")],
    },
    Rpc {
        name: "ClassifyTokens",
        task: "token-classification",
        decode: decode_as!(ClassifyTokensRequest, ClassifyTokens),
        stream: false,
        models: &[Some("bert-ner"), Some("roberta-ner")],
    },
    Rpc {
        name: "AnswerQuestion",
        task: "question-answering",
        decode: decode_as!(AnswerQuestionRequest, AnswerQuestion),
        stream: false,
        models: &[Some("bert-qa"), Some("roberta-qa")],
    },
    Rpc {
        name: "Embed",
        task: "feature-extraction",
        decode: decode_as!(EmbedRequest, Embed),
        stream: false,
        models: &[Some("bert-base"), Some("distilbert-base")],
    },
    Rpc {
        name: "ClassifyImage",
        task: "image-classification",
        decode: decode_as!(ClassifyImageRequest, ClassifyImage),
        stream: false,
        models: &[Some("vit-cls"), Some("convnext-cls")],
    },
    Rpc {
        name: "Summarize",
        task: "summarization",
        decode: decode_as!(SummarizeRequest, Summarize),
        stream: false,
        models: &[Some("bart-sum"), Some("t5-small-ish")],
    },
    Rpc {
        name: "Translate",
        task: "translation",
        decode: decode_as!(TranslateRequest, Translate),
        stream: false,
        models: &[Some("t5-small-ish"), Some("marian-fr-en")],
    },
    Rpc {
        name: "Transcribe",
        task: "automatic-speech-recognition",
        decode: decode_as!(TranscribeRequest, Transcribe),
        stream: false,
        models: &[Some("w2v2-base")],
    },
    Rpc {
        name: "Synthesize",
        task: "text-to-speech",
        decode: decode_as!(SynthesizeRequest, Synthesize),
        stream: false,
        models: &[Some("speecht5-random")],
    },
    Rpc {
        name: "Run",
        task: "word-count",
        decode: decode_as!(RunRequest, Run),
        stream: false,
        models: &[None],
    },
];

/// The plugin serving `task`.
fn plugin_for(task: &str) -> PluginTable {
    match task {
        "image-classification" => plugin::table::<VisionTask>(),
        "automatic-speech-recognition" | "text-to-speech" => plugin::table::<AudioTask>(),
        "word-count" => plugin::table::<WordCount>(),
        _ => plugin::table::<TextTask>(),
    }
}

thread_local! {
    /// The instances loaded so far, by task and model.
    static LOADED: RefCell<HashMap<(&'static str, Option<&'static str>), Instance>> = RefCell::new(HashMap::new());
}

pub fn requests(data: &[u8]) {
    let Some((&selector, message)) = data.split_first() else {
        return;
    };
    let twice = selector & 0x80 != 0;
    let pick = (selector & 0x7f) as usize;
    let rpc = &RPCS[pick % RPCS.len()];
    let model = rpc.models[pick / RPCS.len() % rpc.models.len()];
    // Undecodable bytes never reach a plugin: the daemon answers them
    // INVALID_ARGUMENT itself, as it does a stream of several prompts or
    // sequences.
    let Ok(body) = (rpc.decode)(message) else {
        return;
    };
    if rpc.stream && !streamable(&body) {
        return;
    }
    let request = TaskRequest {
        body: Some(body),
        stream: rpc.stream,
    };
    let batch = Batch {
        requests: vec![request; if twice { 2 } else { 1 }],
    };
    fixtures::prepare();
    LOADED.with(|loaded| {
        let mut loaded = loaded.borrow_mut();
        let instance = loaded.entry((rpc.task, model)).or_insert_with(|| {
            let dir = model.map(fixtures::model_dir);
            Instance::load(plugin_for(rpc.task), rpc.task, dir.as_deref())
                .unwrap_or_else(|e| panic!("{} ({model:?}) does not load: {e}", rpc.task))
        });
        let mut chunks = Vec::new();
        let result = instance.run_batch(&batch, rpc.stream.then_some(&mut chunks));
        assert!(
            result.error.is_none(),
            "{} failed the batch: {:?}",
            rpc.name,
            result.error
        );
        assert_eq!(
            result.responses.len(),
            batch.requests.len(),
            "{}: one answer per request",
            rpc.name
        );
        for (request, response) in batch.requests.iter().zip(&result.responses) {
            check_answer(rpc, request, response);
        }
        if let [first, second] = &result.responses[..] {
            assert_eq!(
                outcome(first),
                outcome(second),
                "{}: one request answered two ways",
                rpc.name
            );
        }
        for (index, chunk) in &chunks {
            assert!(*index < batch.requests.len(), "a partial response for request {index}");
            assert!(
                matches!(chunk.body, Some(Response::GenerateChunk(_))),
                "{}: a partial response {chunk:?}",
                rpc.name
            );
        }
    });
}

/// What the daemon lets through to a stream: one prompt, one sequence.
fn streamable(body: &Request) -> bool {
    matches!(body, Request::Generate(r) if r.inputs.len() == 1 && r.num_return_sequences.unwrap_or(1) == 1)
}

/// Whether an answer is a response, or an error with which code.
fn outcome(response: &TaskResponse) -> Result<(), i32> {
    match &response.body {
        Some(Response::Error(error)) => Err(error.code),
        _ => Ok(()),
    }
}

/// The RPC's response with a result per input, or a client's error.
fn check_answer(rpc: &Rpc, request: &TaskRequest, response: &TaskResponse) {
    let request = request.body.as_ref().expect("a request body");
    let response = response
        .body
        .as_ref()
        .unwrap_or_else(|| panic!("{}: an empty answer", rpc.name));
    if let Response::Error(error) = response {
        let code = Code::try_from(error.code).unwrap_or(Code::Internal);
        assert_ne!(
            code,
            Code::Internal,
            "{} answered INTERNAL: {}",
            rpc.name,
            error.message
        );
        return;
    }
    let (inputs, results) = match (request, response) {
        (Request::Generate(q), Response::Generate(a)) => (q.inputs.len(), a.results.len()),
        (Request::Classify(q), Response::Classify(a)) => (q.inputs.len(), a.results.len()),
        (Request::ZeroShot(q), Response::ZeroShot(a)) => (q.inputs.len(), a.results.len()),
        (Request::FillMask(q), Response::FillMask(a)) => (q.inputs.len(), a.results.len()),
        (Request::ClassifyTokens(q), Response::ClassifyTokens(a)) => (q.inputs.len(), a.results.len()),
        (Request::AnswerQuestion(q), Response::AnswerQuestion(a)) => (q.inputs.len(), a.results.len()),
        (Request::Embed(q), Response::Embed(a)) => (q.inputs.len(), a.results.len()),
        (Request::ClassifyImage(q), Response::ClassifyImage(a)) => (q.inputs.len(), a.results.len()),
        (Request::Summarize(q), Response::Summarize(a)) => (q.inputs.len(), a.results.len()),
        (Request::Translate(q), Response::Translate(a)) => (q.inputs.len(), a.results.len()),
        (Request::Transcribe(q), Response::Transcribe(a)) => (q.inputs.len(), a.results.len()),
        (Request::Synthesize(q), Response::Synthesize(a)) => (q.inputs.len(), a.results.len()),
        (Request::Run(q), Response::Run(a)) => (q.inputs.len(), a.results.len()),
        (_, response) => panic!("{} was answered with {response:?}", rpc.name),
    };
    assert_eq!(results, inputs, "{}: one result per input", rpc.name);
}
