//! The inferd plugin for text tasks. Each task has its own module with the
//! pipeline() logic; the models come from `inferd-models`.

pub mod classification;
pub mod common;
pub mod embeddings;
pub mod fill_mask;
pub mod question_answering;
pub mod text2text;
pub mod text_generation;
pub mod token_classification;
pub mod zero_shot;

use inferd_models::auto::{load_causal_lm, load_text_model, CausalModel, Head, TextModel, CAUSAL_LM_ARCHITECTURES};
use inferd_models::device::parse_device;
use inferd_models::seq2seq::{load_seq2seq, Seq2SeqModel, SEQ2SEQ_ARCHITECTURES};
use inferd_sdk::proto::task_request::Body as Request;
use inferd_sdk::proto::task_response::Body as Response;
use inferd_sdk::proto::{LoadedModel, Manifest, TaskRequest, TaskSpec};
use inferd_sdk::{export_plugin, Error, LoadContext, Task};

use crate::embeddings::SentenceConfig;

/// The tasks this plugin serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Classification,
    ZeroShot,
    FillMask,
    Tokens,
    QuestionAnswering,
    FeatureExtraction,
    Generation,
    Summarization,
    Translation,
}

struct TaskDef {
    kind: Kind,
    name: &'static str,
    aliases: &'static [&'static str],
    default_model: &'static str,
    /// The encoder head; `None` for decoder-only language models.
    head: Option<Head>,
    rpc: &'static str,
    description: &'static str,
}

const TASKS: &[TaskDef] = &[
    TaskDef {
        kind: Kind::Classification,
        name: "text-classification",
        aliases: &["sentiment-analysis"],
        default_model: "distilbert/distilbert-base-uncased-finetuned-sst-2-english",
        head: Some(Head::SequenceClassification),
        rpc: "Inference/Classify",
        description: "Classify a text or a text pair",
    },
    TaskDef {
        kind: Kind::ZeroShot,
        name: "zero-shot-classification",
        aliases: &[],
        default_model: "facebook/bart-large-mnli",
        head: Some(Head::SequenceClassification),
        rpc: "Inference/ZeroShotClassify",
        description: "Score candidate labels with an NLI model",
    },
    TaskDef {
        kind: Kind::FillMask,
        name: "fill-mask",
        aliases: &[],
        default_model: "distilbert/distilroberta-base",
        head: Some(Head::MaskedLm),
        rpc: "Inference/FillMask",
        description: "Predict the words behind mask tokens",
    },
    TaskDef {
        kind: Kind::Tokens,
        name: "token-classification",
        aliases: &["ner"],
        default_model: "dbmdz/bert-large-cased-finetuned-conll03-english",
        head: Some(Head::TokenClassification),
        rpc: "Inference/ClassifyTokens",
        description: "Tag tokens (named entities), with word aggregation",
    },
    TaskDef {
        kind: Kind::QuestionAnswering,
        name: "question-answering",
        aliases: &[],
        default_model: "distilbert/distilbert-base-cased-distilled-squad",
        head: Some(Head::QuestionAnswering),
        rpc: "Inference/AnswerQuestion",
        description: "Extract the answer to a question from a context",
    },
    TaskDef {
        kind: Kind::FeatureExtraction,
        name: "feature-extraction",
        aliases: &[],
        default_model: "distilbert/distilbert-base-cased",
        head: Some(Head::Features),
        rpc: "Inference/Embed",
        description: "Token embeddings and pooled sentence embeddings",
    },
    TaskDef {
        kind: Kind::Generation,
        name: "text-generation",
        aliases: &[],
        default_model: "openai-community/gpt2",
        head: None,
        rpc: "Inference/Generate or Inference/GenerateStream",
        description: "Continue a prompt, greedy or sampled, optionally streamed",
    },
    TaskDef {
        kind: Kind::Summarization,
        name: "summarization",
        aliases: &[],
        default_model: "sshleifer/distilbart-cnn-12-6",
        head: None,
        rpc: "Inference/Summarize",
        description: "Summarize texts with an encoder-decoder model (greedy or beam search)",
    },
    TaskDef {
        kind: Kind::Translation,
        name: "translation",
        aliases: &[],
        default_model: "google-t5/t5-base",
        head: None,
        rpc: "Inference/Translate",
        description: "Translate texts with an encoder-decoder model (T5 task prefixes)",
    },
];

impl TaskDef {
    fn architectures(&self) -> Vec<String> {
        match (self.kind, self.head) {
            (Kind::Summarization | Kind::Translation, _) => {
                SEQ2SEQ_ARCHITECTURES.iter().map(|a| a.to_string()).collect()
            }
            (_, Some(head)) => head.architectures(),
            (_, None) => CAUSAL_LM_ARCHITECTURES.iter().map(|a| a.to_string()).collect(),
        }
    }
}

enum Loaded {
    Encoder { model: TextModel, sentence: SentenceConfig },
    Causal(CausalModel),
    Seq2Seq(Seq2SeqModel),
}

/// One loaded model, serving one task.
pub struct TextTask {
    def: &'static TaskDef,
    loaded: Loaded,
}

impl Task for TextTask {
    fn manifest() -> Manifest {
        Manifest {
            name: "text".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Text tasks on BERT, DistilBERT, RoBERTa and BART models (LibTorch)".into(),
            tasks: TASKS
                .iter()
                .map(|t| TaskSpec {
                    name: t.name.into(),
                    aliases: t.aliases.iter().map(|a| a.to_string()).collect(),
                    default_model: t.default_model.into(),
                    architectures: t.architectures(),
                    needs_model: true,
                    description: format!("{} ({})", t.description, t.rpc),
                })
                .collect(),
        }
    }

    fn load(ctx: &LoadContext) -> Result<Self, Error> {
        let def = TASKS
            .iter()
            .find(|t| t.name == ctx.task)
            .ok_or_else(|| Error::unimplemented(format!("the text plugin has no task {}", ctx.task)))?;
        let device = parse_device(&ctx.device)?;
        let dir = ctx
            .model_dir
            .as_deref()
            .ok_or_else(|| Error::invalid_argument(format!("task {} needs a model source", ctx.task)))?;
        let loaded = match def.head {
            None if matches!(def.kind, Kind::Summarization | Kind::Translation) => {
                let mut model = load_seq2seq(dir, device)?;
                model.max_input_tokens = inferd_sdk::env_limit("INFERD_MAX_INPUT_TOKENS", model.max_input_tokens)?;
                Loaded::Seq2Seq(model)
            }
            None => Loaded::Causal(load_causal_lm(dir, device)?),
            Some(head) => {
                let model = load_text_model(dir, device, head)?;
                if def.kind == Kind::FillMask && model.tokenizer.mask_token().is_none() {
                    return Err(Error::failed_precondition(
                        "this tokenizer has no mask token (tokenizer_config.json `mask_token`)",
                    ));
                }
                Loaded::Encoder {
                    model,
                    sentence: SentenceConfig::from_dir(dir),
                }
            }
        };
        Ok(TextTask { def, loaded })
    }

    fn describe(&self) -> LoadedModel {
        match &self.loaded {
            Loaded::Causal(model) => LoadedModel {
                memory_bytes: model.memory_bytes,
                labels: vec![],
            },
            Loaded::Seq2Seq(model) => LoadedModel {
                memory_bytes: model.memory_bytes,
                labels: vec![],
            },
            Loaded::Encoder { model, .. } => LoadedModel {
                memory_bytes: model.memory_bytes,
                labels: match self.def.kind {
                    Kind::Classification | Kind::ZeroShot | Kind::Tokens => model.labels.clone(),
                    _ => vec![],
                },
            },
        }
    }

    fn run_stream(
        &mut self,
        batch: Vec<TaskRequest>,
        emit: &mut dyn FnMut(usize, Option<Response>) -> bool,
    ) -> Vec<Result<Response, Error>> {
        let def = self.def;
        if let Loaded::Seq2Seq(model) = &self.loaded {
            // Every request's inputs are decoded together; between decoding
            // steps, each request's client is asked whether it still waits.
            let mut keep_going = |i: usize| emit(i, None);
            let bodies = batch.into_iter().map(|request| request.body);
            return match def.kind {
                Kind::Summarization => {
                    let requests = bodies
                        .map(|body| match body {
                            Some(Request::Summarize(r)) => Ok(r),
                            _ => Err(wrong_rpc(def)),
                        })
                        .collect();
                    wrap(
                        text2text::summarize(model, requests, &mut keep_going),
                        Response::Summarize,
                    )
                }
                Kind::Translation => {
                    let requests = bodies
                        .map(|body| match body {
                            Some(Request::Translate(r)) => Ok(r),
                            _ => Err(wrong_rpc(def)),
                        })
                        .collect();
                    wrap(
                        text2text::translate(model, requests, &mut keep_going),
                        Response::Translate,
                    )
                }
                _ => unreachable!("encoder-decoder models serve summarization or translation"),
            };
        }
        let Loaded::Causal(model) = &mut self.loaded else {
            return self.run(batch);
        };
        // Keep each accepted request's index in the batch, for `emit`.
        let mut slots: Vec<Option<Result<Response, Error>>> = Vec::with_capacity(batch.len());
        let mut accepted = Vec::new();
        let mut positions = Vec::new();
        for (i, request) in batch.into_iter().enumerate() {
            match request.body {
                Some(Request::Generate(r)) => {
                    accepted.push((r, request.stream));
                    positions.push(i);
                    slots.push(None);
                }
                _ => slots.push(Some(Err(wrong_rpc(def)))),
            }
        }
        let mut emit_at = |k: usize, chunk: Option<Response>| emit(positions[k], chunk);
        let mut answers = text_generation::generate(model, accepted, &mut emit_at).into_iter();
        slots
            .into_iter()
            .map(|slot| slot.unwrap_or_else(|| answers.next().expect("one answer each").map(Response::Generate)))
            .collect()
    }

    fn run(&mut self, batch: Vec<TaskRequest>) -> Vec<Result<Response, Error>> {
        let def = self.def;
        let (model, sentence) = match &mut self.loaded {
            Loaded::Encoder { model, sentence } => (model, &*sentence),
            Loaded::Causal(_) | Loaded::Seq2Seq(_) => return self.run_stream(batch, &mut |_, _| true),
        };
        match def.kind {
            Kind::Generation | Kind::Summarization | Kind::Translation => {
                unreachable!("generative models are not Loaded::Encoder")
            }
            Kind::Classification => dispatch(
                def,
                batch,
                |b| match b {
                    Request::Classify(r) => Some(r),
                    _ => None,
                },
                |rs| wrap(classification::classify(model, &rs), Response::Classify),
            ),
            Kind::ZeroShot => dispatch(
                def,
                batch,
                |b| match b {
                    Request::ZeroShot(r) => Some(r),
                    _ => None,
                },
                |rs| wrap(zero_shot::zero_shot(model, &rs), Response::ZeroShot),
            ),
            Kind::FillMask => dispatch(
                def,
                batch,
                |b| match b {
                    Request::FillMask(r) => Some(r),
                    _ => None,
                },
                |rs| wrap(fill_mask::fill_mask(model, &rs), Response::FillMask),
            ),
            Kind::Tokens => dispatch(
                def,
                batch,
                |b| match b {
                    Request::ClassifyTokens(r) => Some(r),
                    _ => None,
                },
                |rs| {
                    wrap(
                        token_classification::classify_tokens(model, &rs),
                        Response::ClassifyTokens,
                    )
                },
            ),
            Kind::QuestionAnswering => dispatch(
                def,
                batch,
                |b| match b {
                    Request::AnswerQuestion(r) => Some(r),
                    _ => None,
                },
                |rs| wrap(question_answering::answer(model, &rs), Response::AnswerQuestion),
            ),
            Kind::FeatureExtraction => dispatch(
                def,
                batch,
                |b| match b {
                    Request::Embed(r) => Some(r),
                    _ => None,
                },
                |rs| wrap(embeddings::embed(model, sentence, &rs), Response::Embed),
            ),
        }
    }
}

fn wrap<T>(results: Vec<Result<T, Error>>, into: fn(T) -> Response) -> Vec<Result<Response, Error>> {
    results.into_iter().map(|r| r.map(into)).collect()
}

/// Runs the requests this task understands together (so they share forward
/// passes where the task allows); any other request fails alone, naming the
/// RPC this model answers.
fn dispatch<R>(
    def: &TaskDef,
    batch: Vec<TaskRequest>,
    accept: impl Fn(Request) -> Option<R>,
    run: impl FnOnce(Vec<R>) -> Vec<Result<Response, Error>>,
) -> Vec<Result<Response, Error>> {
    let mut slots: Vec<Option<Result<Response, Error>>> = Vec::with_capacity(batch.len());
    let mut accepted = Vec::new();
    for request in batch {
        match request.body.and_then(&accept) {
            Some(r) => {
                accepted.push(r);
                slots.push(None);
            }
            None => slots.push(Some(Err(wrong_rpc(def)))),
        }
    }
    let mut answers = run(accepted).into_iter();
    slots
        .into_iter()
        .map(|slot| slot.unwrap_or_else(|| answers.next().expect("one answer per accepted request")))
        .collect()
}

fn wrong_rpc(def: &TaskDef) -> Error {
    Error::failed_precondition(format!("this model serves {}; call {}", def.name, def.rpc))
}

export_plugin!(TextTask);
