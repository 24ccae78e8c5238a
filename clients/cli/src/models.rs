//! Model and plugin management: `models list|get|load|unload` and `plugins`.

use anyhow::Result;
use inferd_proto::v1::{
    GetModelRequest, ListModelsRequest, ListPluginsRequest, LoadModelRequest, ModelOptions, UnloadModelRequest,
};

use crate::connect::{status, Models};
use crate::output::Output;

/// Manage models.
#[derive(clap::Subcommand)]
pub enum ModelsCommand {
    /// List loaded models.
    List,
    /// Show one model.
    Get { name: String },
    /// Load a model from a hub id or a local directory.
    Load(Box<Load>),
    /// Unload a model and free its memory.
    Unload { name: String },
}

#[derive(clap::Args)]
pub struct Load {
    /// Hub id (org/name) or local directory.
    source: String,
    /// pipeline() task, e.g. text-classification.
    #[arg(long)]
    task: String,
    /// Another task the model serves with the same weights, e.g.
    /// translation for a T5 loaded for summarization (repeatable).
    #[arg(long = "also-task", value_name = "TASK")]
    also_tasks: Vec<String>,
    /// Name for requests (default: the source).
    #[arg(long)]
    name: Option<String>,
    #[arg(long)]
    revision: Option<String>,
    /// Device(s): cpu, cuda, cuda:N.
    #[arg(long = "device")]
    devices: Vec<String>,
    #[arg(long, default_value_t = 1)]
    instances: u32,
    /// Make it the default model of its task.
    #[arg(long)]
    default: bool,
    /// Most requests one instance runs together (default: the daemon's).
    #[arg(long)]
    max_batch_size: Option<u32>,
    /// Milliseconds a request may wait for others to join its batch.
    #[arg(long)]
    max_queue_delay_ms: Option<u32>,
    /// Requests waiting before new ones are refused.
    #[arg(long)]
    queue_size: Option<u32>,
    /// LibTorch threads per operation on each instance.
    #[arg(long)]
    intra_op_threads: Option<u32>,
    /// A work budget for this model's requests, NAME=VALUE (repeatable),
    /// e.g. max_sequences=64; the README's Limits table lists the names.
    #[arg(long = "limit", value_name = "NAME=VALUE", value_parser = parse_limit)]
    limits: Vec<(String, u64)>,
    /// Text to speech: the vocoder, a hub id or local directory (default:
    /// microsoft/speecht5_hifigan, as pipeline() uses).
    #[arg(long)]
    vocoder: Option<String>,
    /// Where the instances run: in-process, or process (each in a child
    /// process, restarted when it dies; default: the daemon's).
    #[arg(long, value_parser = ["in-process", "process"])]
    isolation: Option<String>,
    /// Run a text model's linear layers in int8 on the CPU (dynamic
    /// quantization: faster, slightly less accurate; default: none).
    #[arg(long, value_parser = ["dynamic-int8", "none"])]
    quantize: Option<String>,
    /// What the model computes in (default: the daemon's --dtype, auto:
    /// float32 on the CPU, float16 on CUDA where the architecture is safe
    /// in it).
    #[arg(long, value_parser = ["auto", "float32", "float16", "bfloat16"])]
    dtype: Option<String>,
}

fn parse_limit(arg: &str) -> Result<(String, u64), String> {
    let (name, value) = arg
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=VALUE, got {arg:?}"))?;
    let value = value
        .parse()
        .map_err(|_| format!("{name}: expected a whole number, got {value:?}"))?;
    Ok((name.to_string(), value))
}

impl ModelsCommand {
    pub async fn run(self, mut client: Models, out: &Output) -> Result<()> {
        match self {
            ModelsCommand::List => {
                let models = client
                    .list_models(ListModelsRequest {})
                    .await
                    .map_err(status)?
                    .into_inner()
                    .models;
                out.models(&models)
            }
            ModelsCommand::Get { name } => {
                let model = client
                    .get_model(GetModelRequest { name })
                    .await
                    .map_err(status)?
                    .into_inner();
                out.models(&[model])
            }
            ModelsCommand::Load(load) => {
                let model = client.load_model((*load).request()).await.map_err(status)?.into_inner();
                out.models(&[model])
            }
            ModelsCommand::Unload { name } => {
                client
                    .unload_model(UnloadModelRequest { name: name.clone() })
                    .await
                    .map_err(status)?;
                out.unloaded(&name);
                Ok(())
            }
        }
    }
}

impl Load {
    fn request(self) -> LoadModelRequest {
        LoadModelRequest {
            name: self.name.unwrap_or_default(),
            source: self.source,
            revision: self.revision.unwrap_or_default(),
            task: self.task,
            devices: self.devices,
            instances: self.instances,
            make_default: self.default,
            options: Some(ModelOptions {
                max_batch_size: self.max_batch_size,
                max_queue_delay_ms: self.max_queue_delay_ms,
                queue_size: self.queue_size,
                intra_op_threads: self.intra_op_threads,
                limits: self.limits.into_iter().collect(),
                vocoder: self.vocoder,
                isolation: self.isolation,
                quantize: self.quantize,
                dtype: self.dtype,
            }),
            also_tasks: self.also_tasks,
        }
    }
}

/// Lists the loaded plugins and their tasks.
pub async fn plugins(mut client: Models, out: &Output) -> Result<()> {
    let plugins = client
        .list_plugins(ListPluginsRequest {})
        .await
        .map_err(status)?
        .into_inner()
        .plugins;
    out.plugins(&plugins)
}
