//! The inferd plugin for text tasks. Each task has its own module with the
//! pipeline() logic; the models come from `inferd-models`.

pub mod classification;
pub mod common;
pub mod embeddings;
pub mod fill_mask;
pub mod limits;
pub mod question_answering;
pub mod text2text;
pub mod text_generation;
pub mod token_classification;
pub mod zero_shot;

use std::path::Path;

use inferd_models::auto::{
    architectures_for, load_causal_lm, load_seq2seq, load_text_model, precision_for, CausalModel, Head, Seq2SeqModel,
    TextModel,
};
use inferd_models::core::device::parse_device;
use inferd_models::core::int8::Quantization;
use inferd_models::core::precision::Precision;
use inferd_models::core::weights::sharing_weights_of;
use inferd_sdk::dispatch::{self, ApiRequest, ApiResponse};
use inferd_sdk::proto::api::{
    AnswerQuestionRequest, ClassifyRequest, ClassifyTokensRequest, EmbedRequest, FillMaskRequest,
    ZeroShotClassifyRequest,
};
use inferd_sdk::proto::task_response::Body as Response;
use inferd_sdk::proto::{LoadedModel, Manifest, TaskRequest, TaskSpec};
use inferd_sdk::{export_plugin, warm_up, Emitter, Error, Host, Limit, LoadContext, Task};
use tch::Device;

use crate::embeddings::SentenceConfig;
use crate::limits::{self as budget, Limits};

/// One task of this plugin: how pipeline() names it, and how a model for it
/// is loaded (which gives the instance that runs its batches).
struct TaskDef {
    name: &'static str,
    aliases: &'static [&'static str],
    default_model: &'static str,
    rpc: &'static str,
    description: &'static str,
    /// The work budgets its requests are held to (besides any the loaded
    /// instance reports itself).
    limits: &'static [Limit],
    load: Loader,
}

/// Loads a model for a task, giving the instance that runs its batches.
type Loader = fn(&Path, Device, &LoadContext) -> Result<Box<dyn Runner>, Error>;
/// An encoder task's handler: a batch of its requests, one answer each; the
/// closure asks whether request `i` is still wanted (long work asks between
/// its pieces).
type EncoderHandler<R, O> =
    fn(&mut TextModel, &EncoderConfig, &[R], &mut dyn FnMut(usize) -> bool) -> Vec<Result<O, Error>>;

const TASKS: &[TaskDef] = &[
    TaskDef {
        name: "text-classification",
        aliases: &["sentiment-analysis"],
        default_model: "distilbert/distilbert-base-uncased-finetuned-sst-2-english",
        rpc: "Inference/Classify",
        description: "Classify a text or a text pair",
        limits: &[budget::INPUTS],
        load: |dir, device, ctx| {
            encoder(
                dir,
                device,
                ctx,
                Head::SequenceClassification,
                |m, _, rs: &[ClassifyRequest], wanted| classification::classify(m, rs, wanted),
            )
        },
    },
    TaskDef {
        name: "zero-shot-classification",
        aliases: &[],
        default_model: "facebook/bart-large-mnli",
        rpc: "Inference/ZeroShotClassify",
        description: "Score candidate labels with an NLI model",
        limits: &[budget::INPUTS, budget::CANDIDATE_LABELS, budget::ZERO_SHOT_TOKENS],
        load: |dir, device, ctx| {
            encoder(
                dir,
                device,
                ctx,
                Head::SequenceClassification,
                |m, c, rs: &[ZeroShotClassifyRequest], wanted| zero_shot::zero_shot(m, &c.limits, rs, wanted),
            )
        },
    },
    TaskDef {
        name: "fill-mask",
        aliases: &[],
        default_model: "distilbert/distilroberta-base",
        rpc: "Inference/FillMask",
        description: "Predict the words behind mask tokens",
        limits: &[budget::INPUTS, budget::FILL_MASK_CANDIDATES],
        load: |dir, device, ctx| {
            let runner = EncoderTask::load(
                dir,
                device,
                ctx,
                Head::MaskedLm,
                |m, c, rs: &[FillMaskRequest], wanted| fill_mask::fill_mask(m, &c.limits, rs, wanted),
            )?;
            if runner.model.tokenizer.mask_token().is_none() {
                return Err(Error::failed_precondition(
                    "this tokenizer has no mask token (tokenizer_config.json `mask_token`)",
                ));
            }
            Ok(Box::new(runner))
        },
    },
    TaskDef {
        name: "token-classification",
        aliases: &["ner"],
        default_model: "dbmdz/bert-large-cased-finetuned-conll03-english",
        rpc: "Inference/ClassifyTokens",
        description: "Tag tokens (named entities), with word aggregation",
        limits: &[budget::INPUTS],
        load: |dir, device, ctx| {
            encoder(
                dir,
                device,
                ctx,
                Head::TokenClassification,
                |m, _, rs: &[ClassifyTokensRequest], wanted| token_classification::classify_tokens(m, rs, wanted),
            )
        },
    },
    TaskDef {
        name: "question-answering",
        aliases: &[],
        default_model: "distilbert/distilbert-base-cased-distilled-squad",
        rpc: "Inference/AnswerQuestion",
        description: "Extract the answer to a question from a context",
        limits: &[budget::INPUTS, budget::QA_WINDOWS],
        load: |dir, device, ctx| {
            encoder(
                dir,
                device,
                ctx,
                Head::QuestionAnswering,
                |m, c, rs: &[AnswerQuestionRequest], wanted| question_answering::answer(m, &c.limits, rs, wanted),
            )
        },
    },
    TaskDef {
        name: "feature-extraction",
        aliases: &[],
        default_model: "distilbert/distilbert-base-cased",
        rpc: "Inference/Embed",
        description: "Token embeddings and pooled sentence embeddings",
        limits: &[budget::INPUTS, budget::EMBEDDING_BYTES],
        load: |dir, device, ctx| {
            encoder(dir, device, ctx, Head::Features, |m, c, rs: &[EmbedRequest], wanted| {
                embeddings::embed(m, &c.sentence, &c.limits, rs, wanted)
            })
        },
    },
    TaskDef {
        name: "text-generation",
        aliases: &[],
        default_model: "openai-community/gpt2",
        rpc: "Inference/Generate or Inference/GenerateStream",
        description: "Continue a prompt, greedy or sampled, optionally streamed",
        limits: &[
            budget::SEQUENCES,
            budget::GENERATION_TOKENS,
            budget::BATCH_SEQUENCES,
            budget::BATCH_TOKENS,
        ],
        load: |dir, device, ctx| {
            Ok(Box::new(GenerationTask {
                model: load_causal_lm(
                    dir,
                    device,
                    Quantization::parse(&ctx.quantize)?,
                    precision_for(ctx, device)?,
                )?,
                limits: Limits::for_model(ctx)?,
            }))
        },
    },
    TaskDef {
        name: "summarization",
        aliases: &[],
        default_model: "sshleifer/distilbart-cnn-12-6",
        rpc: "Inference/Summarize",
        description: "Summarize texts with an encoder-decoder model (greedy or beam search)",
        limits: &[budget::INPUTS, budget::BATCH_SEQUENCES, budget::BATCH_TOKENS],
        load: |dir, device, ctx| text2text(dir, device, ctx, &text2text::SUMMARIZATION),
    },
    TaskDef {
        name: "translation",
        aliases: &[],
        default_model: "google-t5/t5-base",
        rpc: "Inference/Translate",
        description: "Translate texts with an encoder-decoder model (T5 task prefixes)",
        limits: &[budget::INPUTS, budget::BATCH_SEQUENCES, budget::BATCH_TOKENS],
        load: |dir, device, ctx| text2text(dir, device, ctx, &text2text::TRANSLATION),
    },
];

/// A loaded model serving one task.
trait Runner: Send {
    fn run(&mut self, task: &str, batch: Vec<TaskRequest>, emitter: &mut Emitter) -> Vec<Result<Response, Error>>;
    fn describe(&self) -> LoadedModel;

    /// A batch that may grow while it runs (continuous batching); by
    /// default it does not: `run`, then every answer.
    fn run_joined(&mut self, task: &str, batch: Vec<TaskRequest>, host: &mut Host) {
        let answers = self.run(task, batch, &mut host.emitter());
        for (i, answer) in answers.into_iter().enumerate() {
            host.finish(i, answer);
        }
    }

    /// The request a new instance runs before it is ready.
    fn warm_up_request(&self, task: &str) -> Option<TaskRequest> {
        warm_up::request(task)
    }
}

/// What an encoder task knows besides its model: the checkpoint's
/// sentence-transformers settings and the work limits read at load.
pub struct EncoderConfig {
    pub sentence: SentenceConfig,
    pub limits: Limits,
}

/// An encoder task: a handler over a batch of its requests.
struct EncoderTask<R, O> {
    model: TextModel,
    config: EncoderConfig,
    handle: EncoderHandler<R, O>,
}

impl<R, O> EncoderTask<R, O> {
    fn load(
        dir: &Path,
        device: Device,
        ctx: &LoadContext,
        head: Head,
        handle: EncoderHandler<R, O>,
    ) -> Result<Self, Error> {
        let config = EncoderConfig {
            sentence: SentenceConfig::from_dir(dir)?,
            limits: Limits::for_model(ctx)?,
        };
        Ok(EncoderTask {
            model: load_text_model(
                dir,
                device,
                head,
                Quantization::parse(&ctx.quantize)?,
                precision_for(ctx, device)?,
            )?,
            config,
            handle,
        })
    }
}

fn encoder<R: ApiRequest + 'static, O: ApiResponse + 'static>(
    dir: &Path,
    device: Device,
    ctx: &LoadContext,
    head: Head,
    handle: EncoderHandler<R, O>,
) -> Result<Box<dyn Runner>, Error> {
    Ok(Box::new(EncoderTask::load(dir, device, ctx, head, handle)?))
}

impl<R: ApiRequest, O: ApiResponse> Runner for EncoderTask<R, O> {
    fn run(&mut self, task: &str, batch: Vec<TaskRequest>, emitter: &mut Emitter) -> Vec<Result<Response, Error>> {
        let inputs = self.config.limits.inputs;
        dispatch::together_within(task, batch, emitter, &inputs, |requests, wanted| {
            (self.handle)(&mut self.model, &self.config, requests, wanted)
        })
    }

    /// fill-mask's warm-up names the model's own mask token.
    fn warm_up_request(&self, task: &str) -> Option<TaskRequest> {
        if self.model.head != Head::MaskedLm {
            return warm_up::request(task);
        }
        let (mask, _) = self.model.tokenizer.mask_token()?;
        Some(TaskRequest {
            body: Some(inferd_sdk::proto::task_request::Body::FillMask(FillMaskRequest {
                inputs: vec![format!("The weather in Paris was {mask} this morning.")],
                ..Default::default()
            })),
            stream: false,
        })
    }

    fn describe(&self) -> LoadedModel {
        // Labels are reported for the tasks whose answers are labels.
        let labelled = matches!(
            self.model.head,
            Head::SequenceClassification | Head::TokenClassification
        );
        LoadedModel {
            memory_bytes: self.model.memory_bytes,
            labels: if labelled { self.model.labels.clone() } else { vec![] },
            ..Default::default()
        }
    }
}

/// Text generation: every prompt of a batch decoded together, streamed.
struct GenerationTask {
    model: CausalModel,
    limits: Limits,
}

/// A joining runner's batch alone, nothing joining (outside the daemon).
fn run_alone(
    runner: &mut dyn Runner,
    task: &str,
    batch: Vec<TaskRequest>,
    emitter: &mut Emitter,
) -> Vec<Result<Response, Error>> {
    let given = batch.len();
    let ((), answers) = emitter.as_host(given, |host| runner.run_joined(task, batch, host));
    answers
        .into_iter()
        .map(|a| a.unwrap_or_else(|| Err(Error::internal("a request was left unanswered"))))
        .collect()
}

impl Runner for GenerationTask {
    fn run(&mut self, task: &str, batch: Vec<TaskRequest>, emitter: &mut Emitter) -> Vec<Result<Response, Error>> {
        run_alone(self, task, batch, emitter)
    }

    fn run_joined(&mut self, task: &str, batch: Vec<TaskRequest>, host: &mut Host) {
        dispatch::joined(task, batch, host, |requests, joiner| {
            text_generation::generate(&mut self.model, &self.limits, requests, joiner)
        })
    }

    fn describe(&self) -> LoadedModel {
        LoadedModel {
            memory_bytes: self.model.memory_bytes,
            ..Default::default()
        }
    }
}

/// Summarization or translation: the inputs of every request of a batch,
/// and of those that join it, decoded together; between decoding steps,
/// each request's client is asked whether it still waits.
struct Text2TextTask<R: 'static, O: 'static> {
    model: Seq2SeqModel,
    limits: Limits,
    /// Tokens per input: the encoder's positions unless set lower.
    input_tokens: Limit,
    task: &'static text2text::Text2Text<R, O>,
}

fn text2text<R: ApiRequest + 'static, O: ApiResponse + 'static>(
    dir: &Path,
    device: Device,
    ctx: &LoadContext,
    task: &'static text2text::Text2Text<R, O>,
) -> Result<Box<dyn Runner>, Error> {
    let mut model = load_seq2seq(
        dir,
        device,
        Quantization::parse(&ctx.quantize)?,
        precision_for(ctx, device)?,
    )?;
    let input_tokens = Limit::new("INFERD_MAX_INPUT_TOKENS", model.max_input_tokens as u64).for_model(ctx)?;
    model.max_input_tokens = input_tokens.max as usize;
    Ok(Box::new(Text2TextTask {
        model,
        limits: Limits::for_model(ctx)?,
        input_tokens,
        task,
    }))
}

impl<R: ApiRequest, O: ApiResponse> Runner for Text2TextTask<R, O> {
    fn run(&mut self, task: &str, batch: Vec<TaskRequest>, emitter: &mut Emitter) -> Vec<Result<Response, Error>> {
        run_alone(self, task, batch, emitter)
    }

    fn run_joined(&mut self, task: &str, batch: Vec<TaskRequest>, host: &mut Host) {
        dispatch::joined(task, batch, host, |requests, joiner| {
            text2text::generate(&self.model, &self.limits, self.task, requests, joiner)
        })
    }

    fn describe(&self) -> LoadedModel {
        LoadedModel {
            memory_bytes: self.model.memory_bytes,
            labels: vec![],
            limits: Limit::report(&[self.input_tokens]),
            ..Default::default()
        }
    }
}

/// One loaded model, serving one task.
pub struct TextTask {
    def: &'static TaskDef,
    runner: Box<dyn Runner>,
    /// The task's work budgets, as set for this model.
    limits: Vec<Limit>,
    /// Every text model can run its linear layers in int8.
    quantization: Quantization,
    /// What the model computes in.
    precision: Precision,
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
                    architectures: architectures_for(t.name),
                    needs_model: true,
                    description: format!("{} ({})", t.description, t.rpc),
                    ..Default::default()
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
        Ok(TextTask {
            def,
            // The instances of one model (one per task it serves) share
            // one copy of its weights.
            runner: sharing_weights_of(&ctx.model_name, || (def.load)(dir, device, ctx))?,
            limits: Limits::for_model(ctx)?.applying(def.limits),
            quantization: Quantization::parse(&ctx.quantize)?,
            precision: precision_for(ctx, device)?,
        })
    }

    fn describe(&self) -> LoadedModel {
        let mut loaded = self.runner.describe();
        loaded.limits.extend(Limit::report(&self.limits));
        loaded.quantize = self.quantization.name().into();
        loaded.dtype = self.precision.name().into();
        loaded
    }

    fn run(&mut self, batch: Vec<TaskRequest>, emitter: &mut Emitter) -> Vec<Result<Response, Error>> {
        self.runner.run(self.def.name, batch, emitter)
    }

    fn warm_up_request(&self, task: &str) -> Option<TaskRequest> {
        self.runner.warm_up_request(task)
    }

    fn run_joined(&mut self, batch: Vec<TaskRequest>, host: &mut Host) {
        self.runner.run_joined(self.def.name, batch, host)
    }
}

export_plugin!(TextTask);
