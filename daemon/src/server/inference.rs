//! `inferd.v1.Inference`: each RPC finds its model, queues the request and
//! waits for the answer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use inferd_proto::v1::inference_server::Inference;
use inferd_proto::v1::{
    AnswerQuestionRequest, AnswerQuestionResponse, ClassifyImageRequest, ClassifyImageResponse, ClassifyRequest,
    ClassifyResponse, ClassifyTokensRequest, ClassifyTokensResponse, EmbedRequest, EmbedResponse, FillMaskRequest,
    FillMaskResponse, GenerateRequest, GenerateResponse, GenerateStreamResponse, RunRequest, RunResponse,
    ZeroShotClassifyRequest, ZeroShotClassifyResponse,
};
use inferd_sdk::proto::{task_request, task_response, TaskRequest};
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::error::DaemonError;
use crate::registry::{Model, Registry};

pub struct InferenceService {
    registry: Arc<Registry>,
    next_id: AtomicU64,
}

impl InferenceService {
    pub fn new(registry: Arc<Registry>) -> Self {
        InferenceService {
            registry,
            next_id: AtomicU64::new(1),
        }
    }

    /// Queues one request on `model` and waits for its answer.
    async fn call(
        &self,
        rpc: &'static str,
        model: Arc<Model>,
        body: task_request::Body,
    ) -> Result<task_response::Body, Status> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let span = tracing::info_span!("request", id, rpc, model = %model.name);
        async move {
            let started = std::time::Instant::now();
            let receiver = model.submit(
                TaskRequest {
                    body: Some(body),
                    stream: false,
                },
                None,
            )?;
            let answer = receiver
                .await
                .map_err(|_| DaemonError::Internal(format!("model {} stopped before answering", model.name)))?;
            let elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
            match answer {
                Ok(body) => {
                    tracing::debug!(elapsed_ms, "answered");
                    Ok(body)
                }
                Err(e) => {
                    tracing::info!(elapsed_ms, code = e.code.as_str_name(), "failed: {}", e.message);
                    Err(DaemonError::from(e).into())
                }
            }
        }
        .instrument(span)
        .await
    }
}

fn unexpected(rpc: &str) -> Status {
    Status::internal(format!("the plugin answered {rpc} with another task's response"))
}

/// One typed RPC: the model for the task (or the named one), the request in
/// its `TaskRequest` variant, the answer from its `TaskResponse` variant.
macro_rules! typed_rpc {
    ($self:ident, $request:ident, $rpc:literal, $task:literal, $req_variant:ident, $resp_variant:ident) => {{
        let request = $request.into_inner();
        let model = $self.registry.model_for($task, &request.model)?;
        match $self
            .call($rpc, model, task_request::Body::$req_variant(request))
            .await?
        {
            task_response::Body::$resp_variant(response) => Ok(Response::new(response)),
            _ => Err(unexpected($rpc)),
        }
    }};
}

/// The last message of a stream, from the final response.
fn final_chunk(body: task_response::Body) -> Result<GenerateStreamResponse, Status> {
    let task_response::Body::Generate(response) = body else {
        return Err(unexpected("GenerateStream"));
    };
    let sequence = response
        .results
        .into_iter()
        .next()
        .and_then(|r| r.sequences.into_iter().next())
        .ok_or_else(|| Status::internal("the plugin returned no sequence"))?;
    Ok(GenerateStreamResponse {
        token_ids: vec![],
        text: String::new(),
        finish_reason: sequence.finish_reason,
        prompt_tokens: sequence.prompt_tokens,
        generated_tokens: sequence.generated_tokens,
        generated_text: sequence.generated_text,
    })
}

type ResponseStream =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<GenerateStreamResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Inference for InferenceService {
    type GenerateStreamStream = ResponseStream;

    async fn generate(&self, request: Request<GenerateRequest>) -> Result<Response<GenerateResponse>, Status> {
        typed_rpc!(self, request, "Generate", "text-generation", Generate, Generate)
    }

    async fn generate_stream(&self, request: Request<GenerateRequest>) -> Result<Response<ResponseStream>, Status> {
        let request = request.into_inner();
        if request.inputs.len() != 1 {
            return Err(Status::invalid_argument(format!(
                "GenerateStream takes exactly one prompt in `inputs` (got {}); use Generate for several",
                request.inputs.len()
            )));
        }
        if request.num_return_sequences.unwrap_or(1) != 1 {
            return Err(Status::invalid_argument(
                "GenerateStream returns one sequence: num_return_sequences must be 1",
            ));
        }
        let model = self.registry.model_for("text-generation", &request.model)?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let span = tracing::info_span!("request", id, rpc = "GenerateStream", model = %model.name);
        let (partial_tx, mut partial_rx) = tokio::sync::mpsc::unbounded_channel();
        let task = TaskRequest {
            body: Some(task_request::Body::Generate(request)),
            stream: true,
        };
        let mut reply = model.submit(task, Some(partial_tx))?;
        let (out_tx, out_rx) = tokio::sync::mpsc::channel::<Result<GenerateStreamResponse, Status>>(32);
        // Forward partial responses, then the final one. When the client goes
        // away, `out_tx` fails; dropping the receivers tells the worker to stop.
        tokio::spawn(
            async move {
                loop {
                    tokio::select! {
                        chunk = partial_rx.recv() => match chunk {
                            Some(task_response::Body::GenerateChunk(chunk)) => {
                                if out_tx.send(Ok(chunk)).await.is_err() {
                                    tracing::info!("client went away; generation cancelled");
                                    return;
                                }
                            }
                            Some(_) => {}
                            None => break,
                        },
                        _ = out_tx.closed() => {
                            tracing::info!("client went away; generation cancelled");
                            return;
                        }
                    }
                }
                let last = match (&mut reply).await {
                    Ok(Ok(body)) => final_chunk(body),
                    Ok(Err(e)) => Err(DaemonError::from(e).into()),
                    Err(_) => Err(Status::internal("the model stopped before answering")),
                };
                let _ = out_tx.send(last).await;
            }
            .instrument(span),
        );
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(
            out_rx,
        ))))
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

    async fn embed(&self, request: Request<EmbedRequest>) -> Result<Response<EmbedResponse>, Status> {
        typed_rpc!(self, request, "Embed", "feature-extraction", Embed, Embed)
    }

    async fn run(&self, request: Request<RunRequest>) -> Result<Response<RunResponse>, Status> {
        let request = request.into_inner();
        let model = match (request.task.as_str(), request.model.as_str()) {
            ("", "") => {
                return Err(Status::invalid_argument(
                    "name a `task` (see Models/ListPlugins) or a `model`",
                ))
            }
            ("", model) => self.registry.model(model)?,
            (task, model) => self.registry.model_for(task, model)?,
        };
        match self.call("Run", model, task_request::Body::Run(request)).await? {
            task_response::Body::Run(response) => Ok(Response::new(response)),
            _ => Err(unexpected("Run")),
        }
    }
}
