//! `inferd.v1.Inference`: each RPC finds its model, queues the request and
//! waits for the answer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use inferd_proto::v1::inference_server::Inference;
use inferd_proto::v1::{
    AnswerQuestionRequest, AnswerQuestionResponse, ClassifyImageRequest, ClassifyImageResponse, ClassifyRequest,
    ClassifyResponse, ClassifyTokensRequest, ClassifyTokensResponse, DetectObjectsRequest, DetectObjectsResponse,
    EmbedRequest, EmbedResponse, EstimateDepthRequest, EstimateDepthResponse, FillMaskRequest, FillMaskResponse,
    GenerateRequest, GenerateResponse, GenerateStreamResponse, RunRequest, RunResponse, SegmentImageRequest,
    SegmentImageResponse, SummarizeRequest, SummarizeResponse, SynthesizeRequest, SynthesizeResponse,
    TranscribeRequest, TranscribeResponse, TranscribeStreamResponse, TranslateRequest, TranslateResponse,
    ZeroShotClassifyRequest, ZeroShotClassifyResponse,
};
use inferd_sdk::proto::{task_request, task_response, TaskRequest};
use tonic::{Request, Response, Status};
use tracing::Instrument;

use super::deadline;
use crate::error::{self, DaemonError};
use crate::metrics::ModelMetrics;
use crate::registry::{Model, Registry};

pub struct InferenceService {
    registry: Arc<Registry>,
    next_id: AtomicU64,
    max_in_flight: usize,
}

/// A request counted against the in-flight limit until dropped.
struct Admitted(Arc<Registry>);

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.metrics.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts a request's outcome in its model's metrics; a request dropped
/// before it finished (its client went away) counts as cancelled.
struct Outcome {
    metrics: Arc<ModelMetrics>,
    arrived: Instant,
    counted: bool,
}

impl Outcome {
    fn new(model: &Model) -> Self {
        Outcome {
            metrics: model.metrics.clone(),
            arrived: Instant::now(),
            counted: false,
        }
    }

    fn count<T>(mut self, result: &Result<T, Status>) {
        let code = result.as_ref().map_or_else(Status::code, |_| tonic::Code::Ok);
        self.metrics.finished(code);
        self.metrics.request_seconds.observe_duration(self.arrived.elapsed());
        self.counted = true;
    }
}

impl Drop for Outcome {
    fn drop(&mut self) {
        if !self.counted {
            self.metrics.finished(tonic::Code::Cancelled);
        }
    }
}

impl InferenceService {
    pub fn new(registry: Arc<Registry>, max_in_flight: usize) -> Self {
        InferenceService {
            registry,
            next_id: AtomicU64::new(1),
            max_in_flight: max_in_flight.max(1),
        }
    }

    /// Admits a request unless `max_in_flight` are being served already.
    fn admit(&self) -> Result<Admitted, Status> {
        let before = self.registry.metrics.in_flight.fetch_add(1, Ordering::Relaxed);
        let admitted = Admitted(self.registry.clone());
        if before >= self.max_in_flight {
            return Err(DaemonError::Busy(format!(
                "the daemon is serving {} requests, its limit (--max-in-flight); retry later",
                self.max_in_flight
            ))
            .into());
        }
        Ok(admitted)
    }

    /// The model for `task` (or the named one); a refusal is counted.
    fn route(&self, task: &str, model: &str) -> Result<Arc<Model>, Status> {
        self.counted(self.registry.model_for(task, model))
    }

    /// A model lookup's result, its failure counted as an unrouted request.
    fn counted(&self, lookup: error::Result<Arc<Model>>) -> Result<Arc<Model>, Status> {
        lookup.map_err(|e| {
            let status = Status::from(e);
            self.registry.metrics.unrouted(status.code());
            status
        })
    }

    /// Queues one request on `model` and waits for its answer, at most
    /// until `deadline`: the answer, and how long the request waited
    /// before a batch took it in (from its arrival).
    async fn call(
        &self,
        rpc: &'static str,
        task: &str,
        model: Arc<Model>,
        body: task_request::Body,
        deadline: Option<Instant>,
    ) -> Result<(task_response::Body, Duration), Status> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let span = tracing::info_span!("request", id, rpc, model = %model.name);
        let outcome = Outcome::new(&model);
        let result = async {
            let _admitted = self.admit()?;
            let request = TaskRequest {
                body: Some(body),
                stream: false,
            };
            let mut ticket = self.registry.submit(&model, task, request, None, deadline).await?;
            let answer = match deadline {
                Some(deadline) => tokio::time::timeout_at(deadline.into(), &mut ticket.reply)
                    .await
                    .map_err(|_| deadline::exceeded(outcome.arrived.elapsed()))?,
                None => (&mut ticket.reply).await,
            };
            let answer = answer.map_err(|_| stopped(&model.name))?;
            let waited = ticket
                .started
                .get()
                .map_or(Duration::ZERO, |s| s.saturating_duration_since(outcome.arrived));
            answer.map(|body| (body, waited)).map_err(Status::from)
        }
        .instrument(span.clone())
        .await;
        let elapsed_ms = outcome.arrived.elapsed().as_secs_f64() * 1e3;
        match &result {
            Ok(_) => span.in_scope(|| tracing::debug!(elapsed_ms, "answered")),
            Err(e) => span.in_scope(|| failed(e, elapsed_ms)),
        }
        outcome.count(&result);
        result.map_err(|e| error::for_client(e, &format!("request {id}")))
    }
}

impl InferenceService {
    /// A request of `task` for the model named `model`, queued and answered
    /// as the inferd.v1 RPC `rpc` would be (for the other protocols).
    pub async fn call_model(
        &self,
        rpc: &'static str,
        model: &str,
        task: &str,
        body: task_request::Body,
        deadline: Option<Instant>,
    ) -> Result<task_response::Body, Status> {
        let model = self.route(task, model)?;
        self.call(rpc, task, model, body, deadline).await.map(|(body, _)| body)
    }
}

/// Logs a request's failure, in full, in its span (which names the request
/// id the client is shown); INTERNAL ones (a panic, a LibTorch error) as
/// warnings.
fn failed(status: &Status, elapsed_ms: f64) {
    let code = status.code();
    if code == tonic::Code::Internal {
        tracing::warn!(elapsed_ms, ?code, "failed: {}", status.message());
    } else {
        tracing::info!(elapsed_ms, ?code, "failed: {}", status.message());
    }
}

fn unexpected(rpc: &str) -> Status {
    DaemonError::Internal(format!("the plugin answered {rpc} with another task's response")).into()
}

/// A request whose model stopped without answering it.
fn stopped(model: &str) -> Status {
    DaemonError::Internal(format!("model {model} stopped before answering")).into()
}

/// One typed RPC: the model for the task (or the named one), the request in
/// its `TaskRequest` variant, the answer from its `TaskResponse` variant.
macro_rules! typed_rpc {
    ($self:ident, $request:ident, $rpc:literal, $task:literal, $req_variant:ident, $resp_variant:ident) => {{
        let deadline = deadline::of(&$request);
        let request = $request.into_inner();
        let model = $self.route($task, &request.model)?;
        match $self
            .call($rpc, $task, model, task_request::Body::$req_variant(request), deadline)
            .await?
        {
            (task_response::Body::$resp_variant(response), waited) => Ok(with_queue_time(response, waited)),
            _ => Err(unexpected($rpc)),
        }
    }};
}

/// The response's metadata header that tells how long its request waited
/// in its model's queue before a batch took it in (joining a running one,
/// or starting one), in milliseconds.
pub const QUEUE_TIME_HEADER: &str = "inferd-queue-ms";

/// `message` as the RPC's response, with the queue time header.
fn with_queue_time<T>(message: T, waited: Duration) -> Response<T> {
    let mut response = Response::new(message);
    let ms = format!("{:.3}", waited.as_secs_f64() * 1e3);
    if let Ok(value) = ms.parse() {
        response.metadata_mut().insert(QUEUE_TIME_HEADER, value);
    }
    response
}

/// The last message of a GenerateStream, from the final response.
fn last_generated(body: task_response::Body) -> Result<GenerateStreamResponse, Status> {
    let task_response::Body::Generate(response) = body else {
        return Err(unexpected("GenerateStream"));
    };
    let sequence = response
        .results
        .into_iter()
        .next()
        .and_then(|r| r.sequences.into_iter().next())
        .ok_or_else(|| Status::from(DaemonError::Internal("the plugin returned no sequence".into())))?;
    Ok(GenerateStreamResponse {
        token_ids: vec![],
        text: String::new(),
        finish_reason: sequence.finish_reason,
        prompt_tokens: sequence.prompt_tokens,
        generated_tokens: sequence.generated_tokens,
        generated_text: sequence.generated_text,
    })
}

/// The last message of a TranscribeStream: the whole transcription.
fn last_transcribed(body: task_response::Body) -> Result<TranscribeStreamResponse, Status> {
    let task_response::Body::Transcribe(response) = body else {
        return Err(unexpected("TranscribeStream"));
    };
    let result = response
        .results
        .into_iter()
        .next()
        .ok_or_else(|| Status::from(DaemonError::Internal("the plugin returned no transcription".into())))?;
    Ok(TranscribeStreamResponse {
        done: true,
        result: Some(result),
        ..Default::default()
    })
}

/// The one input a streaming RPC takes.
fn one_input(rpc: &str, what: &str, got: usize, instead: &str) -> Result<(), Status> {
    if got == 1 {
        return Ok(());
    }
    Err(DaemonError::InvalidArgument(format!(
        "{rpc} takes exactly one {what} in `inputs` (got {got}); use {instead} for several"
    ))
    .into())
}

type MessageStream<T> = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send>>;

/// How a server-streaming RPC turns the plugin's responses into its
/// messages: a partial response (None: another RPC's, skipped) and the
/// final one.
struct StreamKind<T> {
    rpc: &'static str,
    task: &'static str,
    partial: fn(task_response::Body) -> Option<T>,
    last: fn(task_response::Body) -> Result<T, Status>,
}

impl InferenceService {
    /// A server-streaming RPC: the request is queued as streaming; its
    /// partial responses are forwarded as the plugin sends them, then the
    /// last message made from the final response. When the client goes
    /// away, the ticket is dropped, which tells the worker to stop; at the
    /// deadline the stream ends with DEADLINE_EXCEEDED.
    async fn stream<T: Send + 'static>(
        &self,
        kind: StreamKind<T>,
        model: &str,
        body: task_request::Body,
        deadline: Option<Instant>,
    ) -> Result<Response<MessageStream<T>>, Status> {
        let model = self.route(kind.task, model)?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let span = tracing::info_span!("request", id, rpc = kind.rpc, model = %model.name);
        let outcome = Outcome::new(&model);
        let admitted = match self.admit() {
            Ok(admitted) => admitted,
            Err(e) => {
                outcome.count::<()>(&Err(e.clone()));
                return Err(e);
            }
        };
        let (partial_tx, mut partial_rx) = tokio::sync::mpsc::unbounded_channel();
        let task = TaskRequest {
            body: Some(body),
            stream: true,
        };
        let mut ticket = match self
            .registry
            .submit(&model, kind.task, task, Some(partial_tx), deadline)
            .await
        {
            Ok(ticket) => ticket,
            Err(e) => {
                let status = Status::from(e);
                outcome.count::<()>(&Err(status.clone()));
                return Err(status);
            }
        };
        let (out_tx, out_rx) = tokio::sync::mpsc::channel::<Result<T, Status>>(32);
        tokio::spawn(
            async move {
                let _admitted = admitted;
                let expiry = async {
                    match deadline {
                        Some(d) => tokio::time::sleep_until(d.into()).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::pin!(expiry);
                loop {
                    tokio::select! {
                        _ = &mut expiry => {
                            let status = deadline::exceeded(outcome.arrived.elapsed());
                            outcome.count::<()>(&Err(status.clone()));
                            let _ = out_tx.send(Err(status)).await;
                            return;
                        }
                        chunk = partial_rx.recv() => match chunk {
                            Some(body) => {
                                let Some(message) = (kind.partial)(body) else { continue };
                                if out_tx.send(Ok(message)).await.is_err() {
                                    tracing::info!("client went away; work cancelled");
                                    return;
                                }
                            }
                            None => break,
                        },
                        _ = out_tx.closed() => {
                            tracing::info!("client went away; work cancelled");
                            return;
                        }
                    }
                }
                let last = tokio::select! {
                    answer = &mut ticket.reply => match answer {
                        Ok(Ok(body)) => (kind.last)(body),
                        Ok(Err(e)) => Err(e.into()),
                        Err(_) => Err(stopped(&model.name)),
                    },
                    _ = &mut expiry => Err(deadline::exceeded(outcome.arrived.elapsed())),
                };
                if let Err(e) = &last {
                    failed(e, outcome.arrived.elapsed().as_secs_f64() * 1e3);
                }
                outcome.count(&last);
                let _ = out_tx
                    .send(last.map_err(|e| error::for_client(e, &format!("request {id}"))))
                    .await;
            }
            .instrument(span),
        );
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(
            out_rx,
        ))))
    }
}

#[tonic::async_trait]
impl Inference for InferenceService {
    type GenerateStreamStream = MessageStream<GenerateStreamResponse>;
    type TranscribeStreamStream = MessageStream<TranscribeStreamResponse>;

    async fn generate(&self, request: Request<GenerateRequest>) -> Result<Response<GenerateResponse>, Status> {
        typed_rpc!(self, request, "Generate", "text-generation", Generate, Generate)
    }

    async fn generate_stream(
        &self,
        request: Request<GenerateRequest>,
    ) -> Result<Response<MessageStream<GenerateStreamResponse>>, Status> {
        let deadline = deadline::of(&request);
        let request = request.into_inner();
        one_input("GenerateStream", "prompt", request.inputs.len(), "Generate")?;
        if request.num_return_sequences.unwrap_or(1) != 1 {
            return Err(DaemonError::InvalidArgument(
                "GenerateStream returns one sequence: num_return_sequences must be 1".into(),
            )
            .into());
        }
        let kind = StreamKind {
            rpc: "GenerateStream",
            task: "text-generation",
            partial: |body| match body {
                task_response::Body::GenerateChunk(chunk) => Some(chunk),
                _ => None,
            },
            last: last_generated,
        };
        let model = request.model.clone();
        self.stream(kind, &model, task_request::Body::Generate(request), deadline)
            .await
    }

    async fn transcribe_stream(
        &self,
        request: Request<TranscribeRequest>,
    ) -> Result<Response<MessageStream<TranscribeStreamResponse>>, Status> {
        let deadline = deadline::of(&request);
        let request = request.into_inner();
        one_input("TranscribeStream", "audio file", request.inputs.len(), "Transcribe")?;
        let kind = StreamKind {
            rpc: "TranscribeStream",
            task: "automatic-speech-recognition",
            partial: |body| match body {
                task_response::Body::TranscribeChunk(chunk) => Some(chunk),
                _ => None,
            },
            last: last_transcribed,
        };
        let model = request.model.clone();
        self.stream(kind, &model, task_request::Body::Transcribe(request), deadline)
            .await
    }

    async fn classify(&self, request: Request<ClassifyRequest>) -> Result<Response<ClassifyResponse>, Status> {
        typed_rpc!(self, request, "Classify", "text-classification", Classify, Classify)
    }

    async fn zero_shot_classify(
        &self,
        request: Request<ZeroShotClassifyRequest>,
    ) -> Result<Response<ZeroShotClassifyResponse>, Status> {
        typed_rpc!(
            self,
            request,
            "ZeroShotClassify",
            "zero-shot-classification",
            ZeroShot,
            ZeroShot
        )
    }

    async fn fill_mask(&self, request: Request<FillMaskRequest>) -> Result<Response<FillMaskResponse>, Status> {
        typed_rpc!(self, request, "FillMask", "fill-mask", FillMask, FillMask)
    }

    async fn classify_tokens(
        &self,
        request: Request<ClassifyTokensRequest>,
    ) -> Result<Response<ClassifyTokensResponse>, Status> {
        typed_rpc!(
            self,
            request,
            "ClassifyTokens",
            "token-classification",
            ClassifyTokens,
            ClassifyTokens
        )
    }

    async fn answer_question(
        &self,
        request: Request<AnswerQuestionRequest>,
    ) -> Result<Response<AnswerQuestionResponse>, Status> {
        typed_rpc!(
            self,
            request,
            "AnswerQuestion",
            "question-answering",
            AnswerQuestion,
            AnswerQuestion
        )
    }

    async fn classify_image(
        &self,
        request: Request<ClassifyImageRequest>,
    ) -> Result<Response<ClassifyImageResponse>, Status> {
        typed_rpc!(
            self,
            request,
            "ClassifyImage",
            "image-classification",
            ClassifyImage,
            ClassifyImage
        )
    }

    async fn detect_objects(
        &self,
        request: Request<DetectObjectsRequest>,
    ) -> Result<Response<DetectObjectsResponse>, Status> {
        typed_rpc!(
            self,
            request,
            "DetectObjects",
            "object-detection",
            DetectObjects,
            DetectObjects
        )
    }

    async fn estimate_depth(
        &self,
        request: Request<EstimateDepthRequest>,
    ) -> Result<Response<EstimateDepthResponse>, Status> {
        typed_rpc!(
            self,
            request,
            "EstimateDepth",
            "depth-estimation",
            EstimateDepth,
            EstimateDepth
        )
    }

    async fn segment_image(
        &self,
        request: Request<SegmentImageRequest>,
    ) -> Result<Response<SegmentImageResponse>, Status> {
        typed_rpc!(
            self,
            request,
            "SegmentImage",
            "image-segmentation",
            SegmentImage,
            SegmentImage
        )
    }

    async fn summarize(&self, request: Request<SummarizeRequest>) -> Result<Response<SummarizeResponse>, Status> {
        typed_rpc!(self, request, "Summarize", "summarization", Summarize, Summarize)
    }

    async fn translate(&self, request: Request<TranslateRequest>) -> Result<Response<TranslateResponse>, Status> {
        typed_rpc!(self, request, "Translate", "translation", Translate, Translate)
    }

    async fn transcribe(&self, request: Request<TranscribeRequest>) -> Result<Response<TranscribeResponse>, Status> {
        typed_rpc!(
            self,
            request,
            "Transcribe",
            "automatic-speech-recognition",
            Transcribe,
            Transcribe
        )
    }

    async fn synthesize(&self, request: Request<SynthesizeRequest>) -> Result<Response<SynthesizeResponse>, Status> {
        typed_rpc!(self, request, "Synthesize", "text-to-speech", Synthesize, Synthesize)
    }

    async fn embed(&self, request: Request<EmbedRequest>) -> Result<Response<EmbedResponse>, Status> {
        typed_rpc!(self, request, "Embed", "feature-extraction", Embed, Embed)
    }

    async fn run(&self, request: Request<RunRequest>) -> Result<Response<RunResponse>, Status> {
        let deadline = deadline::of(&request);
        let request = request.into_inner();
        let model = match (request.task.as_str(), request.model.as_str()) {
            ("", "") => {
                return Err(
                    DaemonError::InvalidArgument("name a `task` (see Models/ListPlugins) or a `model`".into()).into(),
                )
            }
            ("", model) => self.counted(self.registry.model(model))?,
            (task, model) => self.route(task, model)?,
        };
        let task = match request.task.as_str() {
            "" => model.task.clone(),
            task => self.registry.canonical_task(task).unwrap_or(task).to_string(),
        };
        match self
            .call("Run", &task, model, task_request::Body::Run(request), deadline)
            .await?
        {
            (task_response::Body::Run(response), waited) => Ok(with_queue_time(response, waited)),
            _ => Err(unexpected("Run")),
        }
    }
}
