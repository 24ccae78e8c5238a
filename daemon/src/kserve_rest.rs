//! The Open Inference Protocol (KServe v2) over HTTP, on the HTTP API's
//! port: the JSON form of the gRPC service in `server/kserve.rs`, which
//! answers it (each JSON request becomes a ModelInferRequest). BYTES
//! elements are JSON strings: text as it is, file bytes (images, audio)
//! base64-encoded; BYTES outputs that are not UTF-8 come back
//! base64-encoded, marked by the output parameter `"content_encoding":
//! "base64"`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine;
use inferd_proto::kserve::grpc_inference_service_server::GrpcInferenceService;
use inferd_proto::kserve::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
use inferd_proto::kserve::{
    infer_parameter::ParameterChoice, InferParameter, InferTensorContents, ModelInferRequest, ModelMetadataRequest,
    ModelReadyRequest, ServerMetadataRequest,
};
use serde_json::{json, Map, Value as Json};

use crate::openai::http_status;
use crate::server::{is_text_input, KserveService};

/// A v2 REST error: `{"error": message}` with the status's HTTP code.
#[derive(Debug)]
struct RestError(StatusCode, String);

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        (self.0, axum::Json(json!({"error": self.1}))).into_response()
    }
}

impl From<tonic::Status> for RestError {
    fn from(status: tonic::Status) -> Self {
        RestError(http_status(&status), status.message().to_string())
    }
}

fn bad(message: impl Into<String>) -> RestError {
    RestError(StatusCode::BAD_REQUEST, message.into())
}

type Result<T> = std::result::Result<T, RestError>;

pub fn router(kserve: Arc<KserveService>) -> Router {
    Router::new()
        .route("/v2", get(server_metadata))
        .route("/v2/models/{name}", get(model_metadata))
        .route("/v2/models/{name}/versions/{version}", get(model_metadata_version))
        .route("/v2/models/{name}/ready", get(model_ready))
        .route("/v2/models/{name}/versions/{version}/ready", get(model_ready_version))
        .route("/v2/models/{name}/infer", post(infer))
        .route("/v2/models/{name}/versions/{version}/infer", post(infer_version))
        .with_state(kserve)
}

async fn server_metadata(State(kserve): State<Arc<KserveService>>) -> Result<axum::Json<Json>> {
    let metadata = kserve
        .server_metadata(tonic::Request::new(ServerMetadataRequest {}))
        .await?
        .into_inner();
    Ok(axum::Json(json!({
        "name": metadata.name,
        "version": metadata.version,
        "extensions": metadata.extensions,
    })))
}

async fn model_metadata(
    State(kserve): State<Arc<KserveService>>,
    Path(name): Path<String>,
) -> Result<axum::Json<Json>> {
    metadata(&kserve, name, String::new()).await
}

async fn model_metadata_version(
    State(kserve): State<Arc<KserveService>>,
    Path((name, version)): Path<(String, String)>,
) -> Result<axum::Json<Json>> {
    metadata(&kserve, name, version).await
}

async fn metadata(kserve: &KserveService, name: String, version: String) -> Result<axum::Json<Json>> {
    let metadata = kserve
        .model_metadata(tonic::Request::new(ModelMetadataRequest { name, version }))
        .await?
        .into_inner();
    let tensors = |list: Vec<inferd_proto::kserve::model_metadata_response::TensorMetadata>| -> Vec<Json> {
        list.into_iter()
            .map(|t| json!({"name": t.name, "datatype": t.datatype, "shape": t.shape}))
            .collect()
    };
    Ok(axum::Json(json!({
        "name": metadata.name,
        "versions": metadata.versions,
        "platform": metadata.platform,
        "inputs": tensors(metadata.inputs),
        "outputs": tensors(metadata.outputs),
    })))
}

async fn model_ready(State(kserve): State<Arc<KserveService>>, Path(name): Path<String>) -> Result<Response> {
    ready(&kserve, name, String::new()).await
}

async fn model_ready_version(
    State(kserve): State<Arc<KserveService>>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Response> {
    ready(&kserve, name, version).await
}

/// 200 when ready, 503 when not (the protocol's probe), with `{"name", "ready"}`.
async fn ready(kserve: &KserveService, name: String, version: String) -> Result<Response> {
    let ready = kserve
        .model_ready(tonic::Request::new(ModelReadyRequest {
            name: name.clone(),
            version,
        }))
        .await?
        .into_inner()
        .ready;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok((status, axum::Json(json!({"name": name, "ready": ready}))).into_response())
}

async fn infer(
    State(kserve): State<Arc<KserveService>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<axum::Json<Json>> {
    run(&kserve, name, String::new(), &headers, body).await
}

async fn infer_version(
    State(kserve): State<Arc<KserveService>>,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<axum::Json<Json>> {
    run(&kserve, name, version, &headers, body).await
}

/// Triton's binary tensor extension: a JSON header then raw tensor bytes.
const BINARY_EXTENSION_HEADER: &str = "inference-header-content-length";

/// Parameters Triton's HTTP client adds for its binary extension, which
/// change nothing here (outputs come back as JSON).
const TRITON_BINARY_PARAMETERS: [&str; 2] = ["binary_data_output", "binary_data"];

async fn run(
    kserve: &KserveService,
    name: String,
    version: String,
    headers: &HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<axum::Json<Json>> {
    if headers.contains_key(BINARY_EXTENSION_HEADER) {
        return Err(bad(
            "the binary tensor extension (Inference-Header-Content-Length) is not supported: send the tensors as \
             JSON (tritonclient.http: binary_data=False on inputs and outputs), or use the gRPC protocol",
        ));
    }
    let body = body.map_err(|e| RestError(e.status(), e.body_text()))?;
    let body: Json = serde_json::from_slice(&body).map_err(|e| bad(format!("the JSON body: {e}")))?;
    let task = kserve.task_of(&name, &version)?;
    let request = infer_request(&task, name, version, &body)?;
    let response = kserve.model_infer(tonic::Request::new(request)).await?.into_inner();
    let outputs: Vec<Json> = response
        .outputs
        .into_iter()
        .map(|output| {
            let contents = output.contents.unwrap_or_default();
            let mut parameters = Map::new();
            let data = match output.datatype.as_str() {
                "FP32" => json!(contents.fp32_contents),
                "UINT32" => json!(contents.uint_contents),
                _ => {
                    let texts: Option<Vec<String>> = contents
                        .bytes_contents
                        .iter()
                        .map(|b| String::from_utf8(b.clone()).ok())
                        .collect();
                    match texts {
                        Some(texts) => json!(texts),
                        None => {
                            parameters.insert("content_encoding".into(), json!("base64"));
                            let engine = base64::engine::general_purpose::STANDARD;
                            json!(contents
                                .bytes_contents
                                .iter()
                                .map(|b| engine.encode(b))
                                .collect::<Vec<_>>())
                        }
                    }
                }
            };
            let mut tensor = json!({
                "name": output.name,
                "datatype": output.datatype,
                "shape": output.shape,
                "data": data,
            });
            if !parameters.is_empty() {
                tensor["parameters"] = Json::Object(parameters);
            }
            tensor
        })
        .collect();
    let mut answer = json!({
        "model_name": response.model_name,
        "model_version": response.model_version,
        "outputs": outputs,
    });
    if !response.id.is_empty() {
        answer["id"] = json!(response.id);
    }
    Ok(axum::Json(answer))
}

/// The gRPC request of a JSON one.
fn infer_request(task: &str, name: String, version: String, body: &Json) -> Result<ModelInferRequest> {
    let object = body.as_object().ok_or_else(|| bad("the body must be a JSON object"))?;
    let mut request = ModelInferRequest {
        model_name: name,
        model_version: version,
        id: object.get("id").and_then(Json::as_str).unwrap_or_default().to_string(),
        parameters: parameters(object.get("parameters"))?,
        ..Default::default()
    };
    let inputs = object
        .get("inputs")
        .and_then(Json::as_array)
        .ok_or_else(|| bad("`inputs` must be a list of tensors"))?;
    for input in inputs {
        let name = input["name"]
            .as_str()
            .ok_or_else(|| bad("every input needs a `name`"))?
            .to_string();
        let shape = input["shape"]
            .as_array()
            .ok_or_else(|| bad(format!("input `{name}` needs a `shape`")))?
            .iter()
            .map(|d| {
                d.as_i64()
                    .ok_or_else(|| bad(format!("input `{name}`: the shape holds {d}")))
            })
            .collect::<Result<Vec<i64>>>()?;
        let datatype = input["datatype"].as_str().unwrap_or_default().to_string();
        let mut flat = Vec::new();
        flatten(&input["data"], &mut flat);
        let text = is_text_input(task, &name);
        let engine = base64::engine::general_purpose::STANDARD;
        let bytes_contents = flat
            .iter()
            .enumerate()
            .map(|(i, element)| match (element.as_str(), text) {
                (Some(s), true) => Ok(s.as_bytes().to_vec()),
                (Some(s), false) => engine.decode(s).map_err(|_| {
                    bad(format!(
                        "input `{name}`, element {i}: file bytes must be base64-encoded"
                    ))
                }),
                (None, _) => Err(bad(format!(
                    "input `{name}`, element {i} is {element}: BYTES elements are strings"
                ))),
            })
            .collect::<Result<Vec<Vec<u8>>>>()?;
        request.inputs.push(InferInputTensor {
            name,
            datatype,
            shape,
            contents: Some(InferTensorContents {
                bytes_contents,
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    if let Some(outputs) = object.get("outputs").and_then(Json::as_array) {
        for output in outputs {
            request.outputs.push(InferRequestedOutputTensor {
                name: output["name"]
                    .as_str()
                    .ok_or_else(|| bad("every requested output needs a `name`"))?
                    .to_string(),
                ..Default::default()
            });
        }
    }
    Ok(request)
}

/// A tensor's `data`, nested or flat, in row-major order.
fn flatten(value: &Json, out: &mut Vec<Json>) {
    match value {
        Json::Array(items) => items.iter().for_each(|item| flatten(item, out)),
        Json::Null => {}
        other => out.push(other.clone()),
    }
}

fn parameters(value: Option<&Json>) -> Result<BTreeMap<String, InferParameter>> {
    let Some(value) = value else {
        return Ok(BTreeMap::new());
    };
    let object = value.as_object().ok_or_else(|| bad("`parameters` must be an object"))?;
    object
        .iter()
        .filter(|(key, _)| !TRITON_BINARY_PARAMETERS.contains(&key.as_str()))
        .map(|(key, value)| {
            let choice = match value {
                Json::Bool(b) => ParameterChoice::BoolParam(*b),
                Json::Number(n) if n.is_i64() => ParameterChoice::Int64Param(n.as_i64().unwrap_or_default()),
                Json::Number(n) if n.is_u64() => ParameterChoice::Uint64Param(n.as_u64().unwrap_or_default()),
                Json::Number(n) => ParameterChoice::DoubleParam(n.as_f64().unwrap_or_default()),
                Json::String(s) => ParameterChoice::StringParam(s.clone()),
                // A list or an object: its JSON, as the gRPC form takes it.
                other => ParameterChoice::StringParam(other.to_string()),
            };
            Ok((
                key.clone(),
                InferParameter {
                    parameter_choice: Some(choice),
                },
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_requests_become_grpc_ones_images_decoded_from_base64() {
        let body = json!({
            "id": "7",
            "parameters": {"top_k": 2, "candidate_labels": ["a", "b"], "flag": true, "t": 0.5},
            "inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": ["aGVsbG8="]}],
            "outputs": [{"name": "label"}],
        });
        let request = infer_request("image-classification", "m".into(), String::new(), &body).unwrap();
        assert_eq!(request.id, "7");
        assert_eq!(
            request.inputs[0].contents.as_ref().unwrap().bytes_contents,
            vec![b"hello".to_vec()]
        );
        assert_eq!(request.outputs[0].name, "label");
        let p = |k: &str| request.parameters[k].parameter_choice.clone().unwrap();
        assert_eq!(p("top_k"), ParameterChoice::Int64Param(2));
        assert_eq!(
            p("candidate_labels"),
            ParameterChoice::StringParam("[\"a\",\"b\"]".into())
        );
        assert_eq!(p("flag"), ParameterChoice::BoolParam(true));
        assert_eq!(p("t"), ParameterChoice::DoubleParam(0.5));

        let text = json!({"inputs": [{"name": "text", "shape": [2, 1], "datatype": "BYTES", "data": [["x"], ["y"]]}]});
        let request = infer_request("text-classification", "m".into(), String::new(), &text).unwrap();
        assert_eq!(request.inputs[0].contents.as_ref().unwrap().bytes_contents.len(), 2);

        let not_base64 = json!({"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": ["%%"]}]});
        assert!(infer_request("image-classification", "m".into(), String::new(), &not_base64).is_err());
    }
}
