//! `inference.GRPCInferenceService`: the Open Inference Protocol (KServe
//! v2), on the same port as inferd.v1 and through the same handlers, so
//! the same queues, batching, limits and errors apply.
//!
//! A model's task decides its tensors (the table [`TASKS`]). Inputs are
//! BYTES tensors whose elements are the batch's inputs: texts as UTF-8,
//! images and audio as file bytes. The request's `parameters` are the
//! task's options, named as the fields of its inferd.v1 request (lists and
//! messages as JSON in a string). Outputs: `result`, one JSON document per
//! input (the inferd.v1 result, proto field names), plus the task's flat
//! tensors (`label` and `score` for a classifier, `embedding`, ...).
//!
//! The inferd.v1 request is built as protobuf JSON and converted with the
//! descriptors (prost-reflect), so a parameter is checked as the v1 field
//! it names is.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use base64::Engine;
use inferd_proto::kserve::grpc_inference_service_server::GrpcInferenceService;
use inferd_proto::kserve::model_infer_request::InferInputTensor;
use inferd_proto::kserve::model_infer_response::InferOutputTensor;
use inferd_proto::kserve::model_metadata_response::TensorMetadata;
use inferd_proto::kserve::{
    infer_parameter, model_repository_parameter, InferTensorContents, ModelInferRequest, ModelInferResponse,
    ModelMetadataRequest, ModelMetadataResponse, ModelReadyRequest, ModelReadyResponse, ModelRepositoryParameter,
    RepositoryModelLoadRequest, RepositoryModelLoadResponse, RepositoryModelUnloadRequest,
    RepositoryModelUnloadResponse, ServerLiveRequest, ServerLiveResponse, ServerMetadataRequest,
    ServerMetadataResponse, ServerReadyRequest, ServerReadyResponse,
};
use inferd_proto::v1::models_server::Models;
use inferd_proto::v1::{LoadModelRequest, UnloadModelRequest};
use inferd_sdk::proto::{TaskRequest, TaskResponse};
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, ReflectMessage, SerializeOptions, Value};
use serde_json::{json, Map, Value as Json};
use tonic::{Request, Response, Status};

use super::deadline;
use super::inference::InferenceService;
use super::models::ModelsService;
use crate::error::DaemonError;
use crate::readiness::Readiness;
use crate::registry::Registry;

/// The one version every inferd model has.
const VERSION: &str = "1";

/// The output every task has: one JSON document per input.
const RESULT: &str = "result";

/// An input tensor: its name, and the field of the inferd.v1 input message
/// its elements fill (None: the input is the string itself).
struct InputTensor {
    name: &'static str,
    field: Option<&'static str>,
    /// Text (UTF-8) rather than file bytes.
    text: bool,
    required: bool,
}

/// A flat output tensor, read from each input's result: `path` names the
/// fields from the result down; each list on the way (the last field's
/// value included) adds a dimension.
struct OutputTensor {
    name: &'static str,
    datatype: Datatype,
    path: &'static [&'static str],
    /// Dimensions per input.
    rank: usize,
}

/// How a task maps onto the inferd.v1 RPC that serves it.
struct TaskTensors {
    task: &'static str,
    rpc: &'static str,
    /// The field of inferd.plugin.v1.TaskRequest's `body` that holds it.
    body: &'static str,
    inputs: &'static [InputTensor],
    outputs: &'static [OutputTensor],
}

const TEXT: InputTensor = InputTensor {
    name: "text",
    field: None,
    text: true,
    required: true,
};

const fn field(name: &'static str, text: bool, required: bool) -> InputTensor {
    InputTensor {
        name,
        field: Some(name),
        text,
        required,
    }
}

const fn output(name: &'static str, datatype: Datatype, path: &'static [&'static str], rank: usize) -> OutputTensor {
    OutputTensor {
        name,
        datatype,
        path,
        rank,
    }
}

const LABELS: &[OutputTensor] = &[
    output("label", Datatype::Bytes, &["labels", "label"], 1),
    output("score", Datatype::Fp32, &["labels", "score"], 1),
];

const IMAGE: &[InputTensor] = &[InputTensor {
    name: "image",
    field: Some("data"),
    text: false,
    required: true,
}];

/// The built-in tasks; any other task (a plugin's own) goes through Run.
static TASKS: &[TaskTensors] = &[
    TaskTensors {
        task: "text-classification",
        rpc: "Classify",
        body: "classify",
        inputs: &[field("text", true, true), field("text_pair", true, false)],
        outputs: LABELS,
    },
    TaskTensors {
        task: "zero-shot-classification",
        rpc: "ZeroShotClassify",
        body: "zero_shot",
        inputs: &[TEXT],
        outputs: &[
            output("label", Datatype::Bytes, &["labels"], 1),
            output("score", Datatype::Fp32, &["scores"], 1),
        ],
    },
    TaskTensors {
        task: "fill-mask",
        rpc: "FillMask",
        body: "fill_mask",
        inputs: &[TEXT],
        outputs: &[
            output("token_str", Datatype::Bytes, &["masks", "candidates", "token_str"], 2),
            output("score", Datatype::Fp32, &["masks", "candidates", "score"], 2),
        ],
    },
    TaskTensors {
        task: "token-classification",
        rpc: "ClassifyTokens",
        body: "classify_tokens",
        inputs: &[TEXT],
        outputs: &[],
    },
    TaskTensors {
        task: "question-answering",
        rpc: "AnswerQuestion",
        body: "answer_question",
        inputs: &[field("question", true, true), field("context", true, true)],
        outputs: &[
            output("answer", Datatype::Bytes, &["answers", "answer"], 1),
            output("score", Datatype::Fp32, &["answers", "score"], 1),
        ],
    },
    TaskTensors {
        task: "feature-extraction",
        rpc: "Embed",
        body: "embed",
        inputs: &[TEXT],
        outputs: &[output("embedding", Datatype::Fp32, &["embedding"], 1)],
    },
    TaskTensors {
        task: "text-generation",
        rpc: "Generate",
        body: "generate",
        inputs: &[TEXT],
        outputs: &[output(
            "generated_text",
            Datatype::Bytes,
            &["sequences", "generated_text"],
            1,
        )],
    },
    TaskTensors {
        task: "image-classification",
        rpc: "ClassifyImage",
        body: "classify_image",
        inputs: IMAGE,
        outputs: LABELS,
    },
    TaskTensors {
        task: "object-detection",
        rpc: "DetectObjects",
        body: "detect_objects",
        inputs: IMAGE,
        outputs: &[],
    },
    TaskTensors {
        task: "depth-estimation",
        rpc: "EstimateDepth",
        body: "estimate_depth",
        inputs: IMAGE,
        outputs: &[output("depth", Datatype::Binary, &["depth"], 0)],
    },
    TaskTensors {
        task: "image-segmentation",
        rpc: "SegmentImage",
        body: "segment_image",
        inputs: IMAGE,
        outputs: &[],
    },
    TaskTensors {
        task: "summarization",
        rpc: "Summarize",
        body: "summarize",
        inputs: &[TEXT],
        outputs: &[output(
            "summary_text",
            Datatype::Bytes,
            &["summaries", "summary_text"],
            1,
        )],
    },
    TaskTensors {
        task: "translation",
        rpc: "Translate",
        body: "translate",
        inputs: &[TEXT],
        outputs: &[output(
            "translation_text",
            Datatype::Bytes,
            &["translations", "translation_text"],
            1,
        )],
    },
    TaskTensors {
        task: "automatic-speech-recognition",
        rpc: "Transcribe",
        body: "transcribe",
        inputs: &[InputTensor {
            name: "audio",
            field: Some("data"),
            text: false,
            required: true,
        }],
        outputs: &[output("text", Datatype::Bytes, &["text"], 0)],
    },
    TaskTensors {
        task: "text-to-speech",
        rpc: "Synthesize",
        body: "synthesize",
        inputs: &[TEXT],
        outputs: &[
            output("audio", Datatype::Binary, &["audio"], 0),
            output("sampling_rate", Datatype::Uint32, &["sampling_rate"], 0),
        ],
    },
];

/// A plugin task's tensors (inferd.v1 Run).
static RUN: TaskTensors = TaskTensors {
    task: "",
    rpc: "Run",
    body: "run",
    inputs: &[field("text", true, false), field("data", false, false)],
    outputs: &[],
};

/// Whether the input `name` of `task` is text (else file bytes); true for
/// a name the task does not take (ModelInfer refuses it anyway).
pub fn is_text_input(task: &str, name: &str) -> bool {
    tensors_of(task)
        .inputs
        .iter()
        .find(|i| i.name == name)
        .is_none_or(|i| i.text)
}

fn tensors_of(task: &str) -> &'static TaskTensors {
    TASKS.iter().find(|t| t.task == task).unwrap_or(&RUN)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Datatype {
    Bytes,
    /// BYTES from a protobuf bytes field (base64 in JSON): a PNG, a WAV.
    Binary,
    Fp32,
    Uint32,
}

impl Datatype {
    fn name(self) -> &'static str {
        match self {
            Datatype::Bytes | Datatype::Binary => "BYTES",
            Datatype::Fp32 => "FP32",
            Datatype::Uint32 => "UINT32",
        }
    }
}

static POOL: LazyLock<DescriptorPool> =
    LazyLock::new(|| DescriptorPool::decode(inferd_proto::FILE_DESCRIPTOR_SET).expect("inferd's own descriptors"));

fn message(name: &str) -> MessageDescriptor {
    POOL.get_message_by_name(name)
        .unwrap_or_else(|| panic!("{name} is in inferd's descriptors"))
}

/// The inferd.v1 request message of a task's RPC.
fn request_message(tensors: &TaskTensors) -> MessageDescriptor {
    let body = message("inferd.plugin.v1.TaskRequest")
        .get_field_by_name(tensors.body)
        .expect("a TaskRequest body field");
    match body.kind() {
        prost_reflect::Kind::Message(m) => m,
        _ => unreachable!("TaskRequest bodies are messages"),
    }
}

fn invalid(message: String) -> Status {
    DaemonError::InvalidArgument(message).into()
}

pub struct KserveService {
    inference: Arc<InferenceService>,
    models: Arc<ModelsService>,
    registry: Arc<Registry>,
    readiness: Arc<Readiness>,
}

impl KserveService {
    pub fn new(
        inference: Arc<InferenceService>,
        models: Arc<ModelsService>,
        registry: Arc<Registry>,
        readiness: Arc<Readiness>,
    ) -> Self {
        KserveService {
            inference,
            models,
            registry,
            readiness,
        }
    }

    /// The task of the model named `name` (NOT_FOUND listing the loaded
    /// ones), for `version` "" or "1".
    pub fn task_of(&self, name: &str, version: &str) -> Result<String, Status> {
        let model = self.registry.model(name)?;
        if !version.is_empty() && version != VERSION {
            return Err(DaemonError::NotFound(format!(
                "model {name} has no version {version:?}: inferd models have one version, \"1\" (or leave it empty)"
            ))
            .into());
        }
        Ok(model.task.clone())
    }
}

#[tonic::async_trait]
impl GrpcInferenceService for KserveService {
    async fn server_live(&self, _: Request<ServerLiveRequest>) -> Result<Response<ServerLiveResponse>, Status> {
        Ok(Response::new(ServerLiveResponse { live: true }))
    }

    async fn server_ready(&self, _: Request<ServerReadyRequest>) -> Result<Response<ServerReadyResponse>, Status> {
        Ok(Response::new(ServerReadyResponse {
            ready: self.readiness.is_ready(),
        }))
    }

    async fn model_ready(&self, request: Request<ModelReadyRequest>) -> Result<Response<ModelReadyResponse>, Status> {
        let request = request.into_inner();
        // Open without a key: the error does not list the loaded models.
        let unknown = || -> Status {
            let version = match request.version.as_str() {
                "" => String::new(),
                v => format!(" in version {v:?}"),
            };
            DaemonError::NotFound(format!("model `{}` is not loaded{version}", request.name)).into()
        };
        let model = self.registry.model(&request.name).map_err(|_| unknown())?;
        if !request.version.is_empty() && request.version != VERSION {
            return Err(unknown());
        }
        Ok(Response::new(ModelReadyResponse {
            ready: model.can_serve() && !self.readiness.is_draining(),
        }))
    }

    async fn server_metadata(
        &self,
        _: Request<ServerMetadataRequest>,
    ) -> Result<Response<ServerMetadataResponse>, Status> {
        Ok(Response::new(ServerMetadataResponse {
            name: "inferd".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            extensions: vec!["model_repository".into()],
        }))
    }

    async fn model_metadata(
        &self,
        request: Request<ModelMetadataRequest>,
    ) -> Result<Response<ModelMetadataResponse>, Status> {
        let request = request.into_inner();
        let task = self.task_of(&request.name, &request.version)?;
        let tensors = tensors_of(&task);
        let inputs = tensors
            .inputs
            .iter()
            .map(|input| TensorMetadata {
                name: input.name.into(),
                datatype: "BYTES".into(),
                shape: vec![-1],
            })
            .collect();
        let outputs = std::iter::once(TensorMetadata {
            name: RESULT.into(),
            datatype: "BYTES".into(),
            shape: vec![-1],
        })
        .chain(tensors.outputs.iter().map(|o| TensorMetadata {
            name: o.name.into(),
            datatype: o.datatype.name().into(),
            shape: vec![-1; 1 + o.rank],
        }))
        .collect();
        Ok(Response::new(ModelMetadataResponse {
            name: request.name,
            versions: vec![VERSION.into()],
            platform: format!("inferd/{task}"),
            inputs,
            outputs,
        }))
    }

    async fn model_infer(&self, request: Request<ModelInferRequest>) -> Result<Response<ModelInferResponse>, Status> {
        let deadline = deadline::of(&request);
        let request = request.into_inner();
        let task = self.task_of(&request.model_name, &request.model_version)?;
        let tensors = tensors_of(&task);
        let raw = !request.raw_input_contents.is_empty();
        let wanted = requested_outputs(tensors, &request)?;
        let body = build_request(tensors, &request)?;
        let answer = self
            .inference
            .call_model(tensors.rpc, &request.model_name, &task, body, deadline)
            .await?;
        let results = results_json(answer)?;
        let mut response = ModelInferResponse {
            model_name: request.model_name,
            model_version: VERSION.into(),
            id: request.id,
            ..Default::default()
        };
        for name in wanted {
            let tensor = if name == RESULT {
                Tensor::results(&results)
            } else {
                let spec = tensors.outputs.iter().find(|o| o.name == name).expect("checked");
                match Tensor::flat(spec, &results)? {
                    Some(tensor) => tensor,
                    // Not asked for by name: left out.
                    None if request.outputs.is_empty() => continue,
                    None => {
                        return Err(invalid(format!(
                            "output `{name}` has a different shape for each input of this request; read `result` \
                             instead"
                        )))
                    }
                }
            };
            tensor.into_response(&mut response, raw);
        }
        Ok(Response::new(response))
    }

    async fn repository_model_load(
        &self,
        request: Request<RepositoryModelLoadRequest>,
    ) -> Result<Response<RepositoryModelLoadResponse>, Status> {
        let request = request.into_inner();
        let name = repository_name(&request.name, &request.model_name)?;
        if request.parameters.is_empty() {
            if self.registry.model(&name).is_ok() {
                tracing::info!(model = %name, "RepositoryModelLoad: already loaded");
                return Ok(Response::new(RepositoryModelLoadResponse {
                    model_name: name,
                    is_loaded: true,
                }));
            }
            return Err(DaemonError::InvalidArgument(format!(
                "model {name} is not loaded: give its `task` and `source` (a hub id or a local directory) as \
                 parameters, and any other field of inferd.v1 LoadModelRequest (`config`: all of them as JSON)"
            ))
            .into());
        }
        let load = load_request(&name, &request.parameters)?;
        self.models.load_model(Request::new(load)).await?;
        Ok(Response::new(RepositoryModelLoadResponse {
            model_name: name,
            is_loaded: true,
        }))
    }

    async fn repository_model_unload(
        &self,
        request: Request<RepositoryModelUnloadRequest>,
    ) -> Result<Response<RepositoryModelUnloadResponse>, Status> {
        let request = request.into_inner();
        let name = repository_name(&request.name, &request.model_name)?;
        self.models
            .unload_model(Request::new(UnloadModelRequest { name: name.clone() }))
            .await?;
        Ok(Response::new(RepositoryModelUnloadResponse {
            model_name: name,
            is_unloaded: true,
        }))
    }
}

/// The model a repository request names: Triton's field wins over KServe's.
fn repository_name(triton: &str, kserve: &str) -> Result<String, Status> {
    match (triton, kserve) {
        ("", "") => Err(invalid("name the model (`model_name`)".into())),
        ("", name) | (name, _) => Ok(name.to_string()),
    }
}

/// A LoadModelRequest from a repository request's parameters: `config`
/// (the request as JSON) and/or its fields one by one.
fn load_request(
    name: &str,
    parameters: &BTreeMap<String, ModelRepositoryParameter>,
) -> Result<LoadModelRequest, Status> {
    let descriptor = message("inferd.v1.LoadModelRequest");
    let mut fields = Map::new();
    if let Some(config) = parameters.get("config") {
        let Some(model_repository_parameter::ParameterChoice::StringParam(text)) = &config.parameter_choice else {
            return Err(invalid("parameter `config` must be a string of JSON".into()));
        };
        match serde_json::from_str(text) {
            Ok(Json::Object(object)) => fields = object,
            _ => {
                return Err(invalid(
                    "parameter `config` must be a JSON object: the fields of inferd.v1 LoadModelRequest".into(),
                ))
            }
        }
    }
    for (key, value) in parameters.iter().filter(|(key, _)| *key != "config") {
        let value = match &value.parameter_choice {
            Some(model_repository_parameter::ParameterChoice::BoolParam(b)) => json!(b),
            Some(model_repository_parameter::ParameterChoice::Int64Param(i)) => json!(i),
            Some(model_repository_parameter::ParameterChoice::StringParam(s)) => json!(s),
            Some(model_repository_parameter::ParameterChoice::BytesParam(_)) | None => {
                return Err(invalid(format!(
                    "parameter `{key}`: file contents cannot be loaded; give `source`, a hub id or a directory the \
                     daemon can read"
                )))
            }
        };
        fields.insert(key.clone(), field_value(&descriptor, key, value, &["name"])?);
    }
    fields.insert("name".into(), json!(name));
    let request = to_message(&descriptor, fields, "parameters")?;
    LoadModelRequest::decode(request.encode_to_vec().as_slice())
        .map_err(|e| DaemonError::Internal(format!("LoadModelRequest: {e}")).into())
}

/// `value` for the field `key` of `descriptor`, checked to be one (and not
/// one of `reserved`); a string for a list or message field is read as
/// JSON (a plain string is a one-item list).
fn field_value(descriptor: &MessageDescriptor, key: &str, value: Json, reserved: &[&str]) -> Result<Json, Status> {
    let field = descriptor
        .get_field_by_name(key)
        .filter(|f| !reserved.contains(&f.name()))
        .ok_or_else(|| {
            let known: Vec<String> = descriptor
                .fields()
                .map(|f| f.name().to_string())
                .filter(|n| !reserved.contains(&n.as_str()))
                .collect();
            invalid(format!(
                "unknown parameter `{key}`; {} takes: {}",
                descriptor.name(),
                known.join(", ")
            ))
        })?;
    let structured = field.is_list() || field.is_map() || matches!(field.kind(), prost_reflect::Kind::Message(_));
    let value = match value {
        Json::String(text) if structured => match serde_json::from_str::<Json>(&text) {
            Ok(parsed @ (Json::Array(_) | Json::Object(_))) => parsed,
            _ if field.is_list() => json!([text]),
            _ => return Err(invalid(format!("parameter `{key}` must be JSON (an object)"))),
        },
        value => value,
    };
    // Checked alone, so that the error names it.
    let alone = Map::from_iter([(key.to_string(), value.clone())]);
    DynamicMessage::deserialize(descriptor.clone(), Json::Object(alone)).map_err(|e| {
        let kind = match field.kind() {
            prost_reflect::Kind::Message(m) => m.name().to_string(),
            prost_reflect::Kind::Enum(e) => e.name().to_string(),
            scalar => format!("{scalar:?}").to_lowercase(),
        };
        let list = if field.is_list() { "a list of " } else { "" };
        invalid(format!("parameter `{key}` must be {list}{kind}: {e}"))
    })?;
    Ok(value)
}

/// Protobuf JSON to a message of `descriptor`; its errors are the
/// client's (INVALID_ARGUMENT, saying `what`).
fn to_message(descriptor: &MessageDescriptor, fields: Map<String, Json>, what: &str) -> Result<DynamicMessage, Status> {
    DynamicMessage::deserialize(descriptor.clone(), Json::Object(fields)).map_err(|e| invalid(format!("{what}: {e}")))
}

/// The names of the outputs to send: those asked for (each must exist),
/// else all.
fn requested_outputs(tensors: &TaskTensors, request: &ModelInferRequest) -> Result<Vec<&'static str>, Status> {
    let all: Vec<&'static str> = std::iter::once(RESULT)
        .chain(tensors.outputs.iter().map(|o| o.name))
        .collect();
    if request.outputs.is_empty() {
        return Ok(all);
    }
    request
        .outputs
        .iter()
        .map(|wanted| {
            all.iter().copied().find(|name| *name == wanted.name).ok_or_else(|| {
                invalid(format!(
                    "unknown output `{}`; model {} has: {}",
                    wanted.name,
                    request.model_name,
                    all.join(", ")
                ))
            })
        })
        .collect()
}

/// The inferd.plugin.v1 task request body for a ModelInfer request.
fn build_request(
    tensors: &TaskTensors,
    request: &ModelInferRequest,
) -> Result<inferd_sdk::proto::task_request::Body, Status> {
    let descriptor = request_message(tensors);
    let inputs = read_inputs(tensors, request)?;
    let mut fields = Map::new();
    for (key, value) in &request.parameters {
        let value = match &value.parameter_choice {
            Some(infer_parameter::ParameterChoice::BoolParam(b)) => json!(b),
            Some(infer_parameter::ParameterChoice::Int64Param(i)) => json!(i),
            Some(infer_parameter::ParameterChoice::StringParam(s)) => json!(s),
            Some(infer_parameter::ParameterChoice::DoubleParam(d)) => json!(d),
            Some(infer_parameter::ParameterChoice::Uint64Param(u)) => json!(u),
            None => continue,
        };
        fields.insert(key.clone(), field_value(&descriptor, key, value, &["model", "inputs"])?);
    }
    fields.insert("model".into(), json!(request.model_name));
    fields.insert("inputs".into(), Json::Array(inputs));
    let v1 = to_message(&descriptor, fields, "parameters")?;
    let mut task_request = DynamicMessage::new(message("inferd.plugin.v1.TaskRequest"));
    task_request.set_field_by_name(tensors.body, Value::Message(v1));
    TaskRequest::decode(task_request.encode_to_vec().as_slice())
        .ok()
        .and_then(|r| r.body)
        .ok_or_else(|| DaemonError::Internal(format!("{} request did not convert", tensors.rpc)).into())
}

/// The batch's inputs as protobuf JSON (strings, or objects of the input
/// message's fields), one per element of the input tensors.
fn read_inputs(tensors: &TaskTensors, request: &ModelInferRequest) -> Result<Vec<Json>, Status> {
    let raw = !request.raw_input_contents.is_empty();
    if raw {
        if let Some(typed) = request.inputs.iter().find(|i| i.contents.is_some()) {
            return Err(invalid(format!(
                "input `{}` has `contents` while the request has `raw_input_contents`: send every input one way",
                typed.name
            )));
        }
        if request.raw_input_contents.len() != request.inputs.len() {
            return Err(invalid(format!(
                "raw_input_contents has {} entries for {} inputs: give one per input, in order",
                request.raw_input_contents.len(),
                request.inputs.len()
            )));
        }
    }
    let names: Vec<&str> = tensors.inputs.iter().map(|i| i.name).collect();
    let mut columns: Vec<(&InputTensor, Vec<Vec<u8>>)> = Vec::new();
    for (index, input) in request.inputs.iter().enumerate() {
        let Some(spec) = tensors.inputs.iter().find(|s| s.name == input.name) else {
            return Err(invalid(format!(
                "unknown input `{}`; model {} takes: {}",
                input.name,
                request.model_name,
                names.join(", ")
            )));
        };
        if columns.iter().any(|(s, _)| s.name == spec.name) {
            return Err(invalid(format!("input `{}` is given twice", input.name)));
        }
        let raw_contents = raw.then(|| request.raw_input_contents[index].as_slice());
        columns.push((spec, elements(input, raw_contents)?));
    }
    if let Some(missing) = tensors
        .inputs
        .iter()
        .find(|s| s.required && !columns.iter().any(|(c, _)| c.name == s.name))
    {
        return Err(invalid(format!(
            "input `{}` is missing; model {} takes: {} (BYTES)",
            missing.name,
            request.model_name,
            names.join(", ")
        )));
    }
    if columns.is_empty() {
        return Err(invalid(format!(
            "no inputs; model {} takes: {}",
            request.model_name,
            names.join(", ")
        )));
    }
    let count = columns[0].1.len();
    if let Some((other, values)) = columns.iter().find(|(_, v)| v.len() != count) {
        return Err(invalid(format!(
            "input `{}` has {} elements and `{}` {count}: every input needs one element per item of the batch",
            other.name,
            values.len(),
            columns[0].0.name
        )));
    }
    let engine = base64::engine::general_purpose::STANDARD;
    (0..count)
        .map(|i| {
            let mut object = Map::new();
            for (spec, values) in &columns {
                let bytes = &values[i];
                let value =
                    if spec.text {
                        Json::String(String::from_utf8(bytes.clone()).map_err(|_| {
                            invalid(format!("input `{}`, element {i}: the text is not UTF-8", spec.name))
                        })?)
                    } else {
                        Json::String(engine.encode(bytes))
                    };
                match spec.field {
                    None => return Ok(value),
                    Some(field) => object.insert(field.to_string(), value),
                };
            }
            Ok(Json::Object(object))
        })
        .collect()
}

/// A BYTES input tensor's elements, from its typed or raw contents,
/// checked against its datatype and shape.
fn elements(input: &InferInputTensor, raw: Option<&[u8]>) -> Result<Vec<Vec<u8>>, Status> {
    if input.datatype != "BYTES" {
        return Err(invalid(format!(
            "input `{}` is {}; it must be BYTES (texts as UTF-8, images and audio as their files)",
            input.name,
            if input.datatype.is_empty() {
                "without a datatype"
            } else {
                &input.datatype
            }
        )));
    }
    if let Some(d) = input.shape.iter().find(|d| **d < 0) {
        return Err(invalid(format!(
            "input `{}` has the dimension {d} in its shape",
            input.name
        )));
    }
    let expected = input
        .shape
        .iter()
        .try_fold(1u64, |n, d| n.checked_mul(*d as u64))
        .ok_or_else(|| invalid(format!("input `{}`: its shape is too large", input.name)))?;
    let values = match raw {
        Some(raw) => split_raw_bytes(raw).ok_or_else(|| {
            invalid(format!(
                "input `{}`: its raw contents are not BYTES elements (each a 4-byte little-endian length, then the \
                 bytes)",
                input.name
            ))
        })?,
        None => {
            let contents = input.contents.as_ref().map_or(&[][..], |c| &c.bytes_contents[..]);
            // Checked before anything is copied.
            if contents.len() as u64 != expected {
                return Err(invalid(format!(
                    "input `{}` has shape {:?} ({expected} elements) but {} elements",
                    input.name,
                    input.shape,
                    contents.len()
                )));
            }
            contents.to_vec()
        }
    };
    if values.len() as u64 != expected {
        return Err(invalid(format!(
            "input `{}` has shape {:?} ({expected} elements) but {} elements",
            input.name,
            input.shape,
            values.len()
        )));
    }
    Ok(values)
}

/// Raw BYTES contents: each element is its length (u32, little-endian)
/// then its bytes. None if that does not add up.
fn split_raw_bytes(mut raw: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut values = Vec::new();
    while !raw.is_empty() {
        let (len, rest) = raw.split_first_chunk::<4>()?;
        let len = u32::from_le_bytes(*len) as usize;
        if rest.len() < len {
            return None;
        }
        values.push(rest[..len].to_vec());
        raw = &rest[len..];
    }
    Some(values)
}

/// Each input's result of an inferd.v1 response, as protobuf JSON (proto
/// field names, zero values included).
fn results_json(answer: inferd_sdk::proto::task_response::Body) -> Result<Vec<Json>, Status> {
    let bytes = TaskResponse { body: Some(answer) }.encode_to_vec();
    let response = DynamicMessage::decode(message("inferd.plugin.v1.TaskResponse"), bytes.as_slice())
        .map_err(|e| DaemonError::Internal(format!("response: {e}")))?;
    let body = response
        .fields()
        .find_map(|(_, value)| value.as_message().cloned())
        .ok_or_else(|| DaemonError::Internal("an empty response".into()))?;
    let options = SerializeOptions::new()
        .use_proto_field_name(true)
        .skip_default_fields(false)
        .stringify_64_bit_integers(false);
    let results = body
        .get_field_by_name("results")
        .ok_or_else(|| DaemonError::Internal(format!("{} has no results", body.descriptor().name())))?;
    results
        .as_list()
        .unwrap_or_default()
        .iter()
        .map(|item| {
            let item = item.as_message().expect("results are messages");
            item.serialize_with_options(serde_json::value::Serializer, &options)
                .map_err(|e| DaemonError::Internal(format!("result to JSON: {e}")).into())
        })
        .collect()
}

/// An output tensor's values, of one datatype.
enum Values {
    Bytes(Vec<Vec<u8>>),
    Fp32(Vec<f32>),
    Uint32(Vec<u32>),
}

struct Tensor {
    name: &'static str,
    datatype: Datatype,
    shape: Vec<i64>,
    values: Values,
}

impl Tensor {
    /// `result`: each input's JSON document.
    fn results(results: &[Json]) -> Tensor {
        Tensor {
            name: RESULT,
            datatype: Datatype::Bytes,
            shape: vec![results.len() as i64],
            values: Values::Bytes(results.iter().map(|r| r.to_string().into_bytes()).collect()),
        }
    }

    /// A flat output; None when its shape differs between inputs.
    fn flat(spec: &OutputTensor, results: &[Json]) -> Result<Option<Tensor>, Status> {
        let mut shape: Option<Vec<i64>> = None;
        let mut leaves = Vec::new();
        for result in results {
            let mut dims = Vec::new();
            let before = leaves.len();
            collect(result, spec.path, 0, &mut dims, &mut leaves);
            // Lists of unequal lengths inside one result: not a tensor.
            if (leaves.len() - before) as i64 != dims.iter().product::<i64>() {
                return Ok(None);
            }
            match &shape {
                None => shape = Some(dims),
                Some(first) if *first != dims => return Ok(None),
                Some(_) => {}
            }
        }
        let mut shape = shape.unwrap_or_else(|| vec![0; spec.rank]);
        shape.insert(0, results.len() as i64);
        let bad = |leaf: &Json| DaemonError::Internal(format!("output {}: unexpected value {leaf}", spec.name));
        let values = match spec.datatype {
            Datatype::Bytes => Values::Bytes(
                leaves
                    .iter()
                    .map(|l| l.as_str().map(|s| s.as_bytes().to_vec()).ok_or_else(|| bad(l)))
                    .collect::<Result<_, _>>()?,
            ),
            Datatype::Binary => {
                let engine = base64::engine::general_purpose::STANDARD;
                Values::Bytes(
                    leaves
                        .iter()
                        .map(|l| l.as_str().and_then(|s| engine.decode(s).ok()).ok_or_else(|| bad(l)))
                        .collect::<Result<_, _>>()?,
                )
            }
            Datatype::Fp32 => Values::Fp32(
                leaves
                    .iter()
                    .map(|l| float(l).ok_or_else(|| bad(l)))
                    .collect::<Result<_, _>>()?,
            ),
            Datatype::Uint32 => Values::Uint32(
                leaves
                    .iter()
                    .map(|l| l.as_u64().map(|v| v as u32).ok_or_else(|| bad(l)))
                    .collect::<Result<_, _>>()?,
            ),
        };
        Ok(Some(Tensor {
            name: spec.name,
            datatype: spec.datatype,
            shape,
            values,
        }))
    }

    /// Adds this tensor to `response`, its contents typed or raw.
    fn into_response(self, response: &mut ModelInferResponse, raw: bool) {
        let mut output = InferOutputTensor {
            name: self.name.into(),
            datatype: self.datatype.name().into(),
            shape: self.shape,
            ..Default::default()
        };
        if raw {
            let bytes = match self.values {
                Values::Bytes(values) => values
                    .iter()
                    .flat_map(|v| (v.len() as u32).to_le_bytes().into_iter().chain(v.iter().copied()))
                    .collect(),
                Values::Fp32(values) => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
                Values::Uint32(values) => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            };
            response.raw_output_contents.push(bytes);
        } else {
            output.contents = Some(match self.values {
                Values::Bytes(values) => InferTensorContents {
                    bytes_contents: values,
                    ..Default::default()
                },
                Values::Fp32(values) => InferTensorContents {
                    fp32_contents: values,
                    ..Default::default()
                },
                Values::Uint32(values) => InferTensorContents {
                    uint_contents: values,
                    ..Default::default()
                },
            });
        }
        response.outputs.push(output);
    }
}

/// A float of protobuf JSON, where NaN and the infinities are strings.
fn float(value: &Json) -> Option<f32> {
    match value {
        Json::String(s) => match s.as_str() {
            "NaN" => Some(f32::NAN),
            "Infinity" => Some(f32::INFINITY),
            "-Infinity" => Some(f32::NEG_INFINITY),
            _ => None,
        },
        other => other.as_f64().map(|v| v as f32),
    }
}

/// Walks `path` from `value`: every list on the way adds a dimension (its
/// length, recorded in `dims` the first time that depth is reached), and
/// the values at the end are pushed to `leaves`.
fn collect(value: &Json, path: &[&str], depth: usize, dims: &mut Vec<i64>, leaves: &mut Vec<Json>) {
    if let Json::Array(items) = value {
        if dims.len() == depth {
            dims.push(items.len() as i64);
        }
        for item in items {
            collect(item, path, depth + 1, dims, leaves);
        }
        return;
    }
    match path.split_first() {
        None => leaves.push(value.clone()),
        Some((key, rest)) => {
            let next = value.get(*key).cloned().unwrap_or(Json::Null);
            collect(&next, rest, depth, dims, leaves)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_bytes_elements_are_length_prefixed() {
        let raw = [3u32.to_le_bytes().as_slice(), b"abc", 0u32.to_le_bytes().as_slice()].concat();
        assert_eq!(split_raw_bytes(&raw), Some(vec![b"abc".to_vec(), vec![]]));
        assert_eq!(split_raw_bytes(&raw[..5]), None, "cut inside an element");
        assert_eq!(split_raw_bytes(&[1, 0]), None, "cut inside a length");
    }

    #[test]
    fn lists_of_unequal_lengths_inside_one_result_are_not_a_tensor() {
        let results = vec![json!({"masks": [
            {"candidates": [{"token_str": "a", "score": 0.5}, {"token_str": "b", "score": 0.25}]},
            {"candidates": [{"token_str": "c", "score": 1.0}]},
        ]})];
        let spec = output("score", Datatype::Fp32, &["masks", "candidates", "score"], 2);
        assert!(Tensor::flat(&spec, &results).unwrap().is_none());
    }

    #[test]
    fn non_finite_scores_survive_protobuf_json() {
        let results = vec![json!({"labels": [{"label": "a", "score": "NaN"}, {"label": "b", "score": "-Infinity"}]})];
        let tensor = Tensor::flat(&LABELS[1], &results).unwrap().unwrap();
        assert!(matches!(tensor.values, Values::Fp32(v) if v[0].is_nan() && v[1] == f32::NEG_INFINITY));
    }

    #[test]
    fn flat_outputs_gain_a_dimension_per_list_and_give_up_on_ragged_ones() {
        let results = vec![
            json!({"labels": [{"label": "a", "score": 0.5}, {"label": "b", "score": 0.25}]}),
            json!({"labels": [{"label": "c", "score": 1.0}, {"label": "d", "score": 0.0}]}),
        ];
        let tensor = Tensor::flat(&LABELS[1], &results).unwrap().unwrap();
        assert_eq!(tensor.shape, vec![2, 2]);
        assert!(matches!(tensor.values, Values::Fp32(v) if v == vec![0.5, 0.25, 1.0, 0.0]));
        let ragged = vec![results[0].clone(), json!({"labels": [{"label": "c", "score": 1.0}]})];
        assert!(Tensor::flat(&LABELS[0], &ragged).unwrap().is_none());
    }

    #[test]
    fn every_built_in_task_names_a_request_body_that_exists() {
        for tensors in TASKS.iter().chain([&RUN]) {
            let request = request_message(tensors);
            for input in tensors.inputs {
                let inputs = request.get_field_by_name("inputs").expect("an inputs field");
                match (input.field, inputs.kind()) {
                    (Some(field), prost_reflect::Kind::Message(m)) => {
                        assert!(m.get_field_by_name(field).is_some(), "{}: {field}", tensors.task)
                    }
                    (None, prost_reflect::Kind::String) => {}
                    (field, kind) => panic!("{}: {field:?} for {kind:?}", tensors.task),
                }
            }
        }
    }
}
