//! `inferd.v1.Models`: loading, unloading and listing models and plugins.

use std::sync::Arc;

use inferd_proto::v1::models_server::Models;
use inferd_proto::v1::{
    GetModelRequest, ListModelsRequest, ListModelsResponse, ListPluginsRequest, ListPluginsResponse, LoadModelRequest,
    ModelInfo, PluginInfo, TaskInfo, UnloadModelRequest, UnloadModelResponse,
};
use inferd_sdk::abi::ABI_VERSION;
use tonic::{Request, Response, Status};

use crate::error::{self, DaemonError};
use crate::queue_options::{Isolation, QueueOverrides};
use crate::registry::{LoadSpec, Registry};
use crate::sources::Caller;

pub struct ModelsService {
    registry: Arc<Registry>,
}

impl ModelsService {
    pub fn new(registry: Arc<Registry>) -> Self {
        ModelsService { registry }
    }
}

/// Runs blocking registry work off the async runtime.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, DaemonError> + Send + 'static) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| DaemonError::Internal(format!("task failed: {e}")))?
        .map_err(Status::from)
}

#[tonic::async_trait]
impl Models for ModelsService {
    async fn list_models(&self, _: Request<ListModelsRequest>) -> Result<Response<ListModelsResponse>, Status> {
        Ok(Response::new(ListModelsResponse {
            models: self.registry.list(),
        }))
    }

    async fn get_model(&self, request: Request<GetModelRequest>) -> Result<Response<ModelInfo>, Status> {
        Ok(Response::new(self.registry.info(&request.into_inner().name)?))
    }

    async fn load_model(&self, request: Request<LoadModelRequest>) -> Result<Response<ModelInfo>, Status> {
        let r = request.into_inner();
        if r.task.is_empty() {
            return Err(DaemonError::InvalidArgument(
                "`task` is empty: name the pipeline() task, e.g. text-classification".into(),
            )
            .into());
        }
        if let Some(o) = &r.options {
            for (name, value) in [
                ("max_batch_size", o.max_batch_size),
                ("queue_size", o.queue_size),
                ("intra_op_threads", o.intra_op_threads),
            ] {
                if value == Some(0) {
                    return Err(DaemonError::InvalidArgument(format!(
                        "options.{name} must be at least 1 (leave it unset for the daemon's default)"
                    ))
                    .into());
                }
            }
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
            if o.intra_op_threads.is_some_and(|n| n > cores) {
                return Err(DaemonError::InvalidArgument(format!(
                    "options.intra_op_threads must be at most {cores}, the cores of this machine"
                ))
                .into());
            }
        }
        let limits = r.options.as_ref().map(|o| o.limits.clone()).unwrap_or_default();
        let isolated = match r.options.as_ref().and_then(|o| o.isolation.as_deref()) {
            Some(value) => Some(
                Isolation::parse(value).map_err(|e| DaemonError::InvalidArgument(format!("options.{e}")))?
                    == Isolation::Process,
            ),
            None => None,
        };
        let vocoder = r.options.as_ref().and_then(|o| o.vocoder.clone());
        let quantize = r.options.as_ref().and_then(|o| o.quantize.clone());
        let dtype = r.options.as_ref().and_then(|o| o.dtype.clone());
        let spec = LoadSpec {
            name: r.name,
            task: r.task,
            source: r.source,
            revision: (!r.revision.is_empty()).then_some(r.revision),
            devices: r.devices,
            instances: r.instances,
            make_default: r.make_default,
            options: r
                .options
                .map(|o| QueueOverrides {
                    queue_size: o.queue_size.map(|n| n as usize),
                    max_batch_size: o.max_batch_size.map(|n| n as usize),
                    max_queue_delay_ms: o.max_queue_delay_ms.map(u64::from),
                    intra_op_threads: o.intra_op_threads.map(|n| n as usize),
                    isolated,
                })
                .unwrap_or_default(),
            limits,
            vocoder,
            quantize,
            dtype,
            caller: Caller::Client,
            also_tasks: r.also_tasks,
            lazy: false,
        };
        // The registry logs a failed load in full, under the model's name.
        let shown_as = format!(
            "LoadModel of `{}`",
            if spec.name.is_empty() { &spec.source } else { &spec.name }
        );
        let registry = self.registry.clone();
        let info = blocking(move || registry.load(spec))
            .await
            .map_err(|e| error::for_client(e, &shown_as))?;
        Ok(Response::new(info))
    }

    async fn unload_model(
        &self,
        request: Request<UnloadModelRequest>,
    ) -> Result<Response<UnloadModelResponse>, Status> {
        let name = request.into_inner().name;
        let registry = self.registry.clone();
        blocking(move || registry.unload(&name)).await?;
        Ok(Response::new(UnloadModelResponse {}))
    }

    async fn list_plugins(&self, _: Request<ListPluginsRequest>) -> Result<Response<ListPluginsResponse>, Status> {
        let plugins = self
            .registry
            .plugins
            .plugins()
            .iter()
            .map(|p| PluginInfo {
                name: p.manifest.name.clone(),
                version: p.manifest.version.clone(),
                path: p.path.display().to_string(),
                abi_version: ABI_VERSION,
                description: p.manifest.description.clone(),
                tasks: p
                    .manifest
                    .tasks
                    .iter()
                    .map(|t| TaskInfo {
                        name: t.name.clone(),
                        aliases: t.aliases.clone(),
                        default_model: t.default_model.clone(),
                        architectures: t.architectures.clone(),
                        description: t.description.clone(),
                    })
                    .collect(),
            })
            .collect();
        Ok(Response::new(ListPluginsResponse { plugins }))
    }
}
