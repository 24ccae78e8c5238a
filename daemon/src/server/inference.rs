//! `inferd.v1.Inference`: each RPC finds its model, queues the request and
//! waits for the answer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use inferd_proto::v1::inference_server::Inference;
use inferd_proto::v1::{ClassifyRequest, ClassifyResponse, RunRequest, RunResponse};
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
            let receiver = model.submit(TaskRequest { body: Some(body) })?;
            let answer = receiver.await.map_err(|_| {
                DaemonError::Internal(format!("model {} stopped before answering", model.name))
            })?;
            let elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
            match answer {
                Ok(body) => {
                    tracing::debug!(elapsed_ms, "answered");
                    Ok(body)
                }
                Err(e) => {
                    tracing::info!(
                        elapsed_ms,
                        code = e.code.as_str_name(),
                        "failed: {}",
                        e.message
                    );
                    Err(DaemonError::from(e).into())
                }
            }
        }
        .instrument(span)
        .await
    }
}

fn unexpected(rpc: &str) -> Status {
    Status::internal(format!(
        "the plugin answered {rpc} with another task's response"
    ))
}

#[tonic::async_trait]
impl Inference for InferenceService {
    async fn classify(
        &self,
        request: Request<ClassifyRequest>,
    ) -> Result<Response<ClassifyResponse>, Status> {
        let request = request.into_inner();
        let model = self
            .registry
            .model_for("text-classification", &request.model)?;
        match self
            .call("Classify", model, task_request::Body::Classify(request))
            .await?
        {
            task_response::Body::Classify(response) => Ok(Response::new(response)),
            _ => Err(unexpected("Classify")),
        }
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
        match self
            .call("Run", model, task_request::Body::Run(request))
            .await?
        {
            task_response::Body::Run(response) => Ok(Response::new(response)),
            _ => Err(unexpected("Run")),
        }
    }
}
