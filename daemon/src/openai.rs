//! The OpenAI-compatible HTTP API (`--http-listen`), so that the `openai`
//! client and the tools built on it work unchanged: models, embeddings,
//! completions (streamed as server-sent events), audio transcriptions and
//! translations, and speech. Each endpoint builds the inferd.v1 request of
//! its task and calls the same handler as gRPC (queues, batching, limits);
//! gRPC statuses become OpenAI's error JSON with the matching HTTP code.
//! The port also serves KServe v2 over HTTP (`kserve_rest`), with its
//! probes /v2/health/live and /v2/health/ready, and /metrics.
//!
//! An endpoint is a handler that parses its body, calls one
//! `InferenceService` RPC and shapes the answer; adding one is a route and
//! such a function.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::multipart::MultipartRejection;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Multipart, Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine;
use inferd_proto::v1::inference_server::Inference;
use inferd_proto::v1::{
    AudioInput, EmbedRequest, GenerateRequest, GenerateStreamResponse, SynthesizeRequest, TranscribeRequest,
    TranscriptionChunk,
};
use serde::Deserialize;
use serde_json::{json, Value as Json};
use tokio_stream::{Stream, StreamExt};

use crate::access::{self, Keys};
use crate::error::is_busy;
use crate::metrics::Scraped;
use crate::readiness::Readiness;
use crate::registry::Registry;
use crate::server::InferenceService;

pub struct Api {
    pub inference: Arc<InferenceService>,
    pub kserve: Arc<crate::server::KserveService>,
    pub registry: Arc<Registry>,
    pub readiness: Arc<Readiness>,
    pub keys: Keys,
    pub max_request_bytes: usize,
    /// How long a client may take to send a request's body.
    pub body_timeout: std::time::Duration,
    pub max_in_flight: usize,
}

/// The routes (KServe v2 REST's among them), with the API key checked
/// on all but the probes and metrics.
pub fn router(api: Arc<Api>) -> Router {
    let limit = api.max_request_bytes;
    let kserve = crate::kserve_rest::router(api.kserve.clone());
    Router::new()
        .route("/v1/models", get(list_models))
        .route("/v1/models/{*id}", get(get_model))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/completions", post(completions))
        .route("/v1/audio/transcriptions", post(transcriptions))
        .route("/v1/audio/translations", post(translations))
        .route("/v1/audio/speech", post(speech))
        .route("/v2/health/live", get(|| async { StatusCode::OK }))
        .route("/v2/health/ready", get(ready))
        .route("/metrics", get(metrics))
        .fallback(|request: Request| async move {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!(
                    "no endpoint {} {}; inferd serves /v1/models, /v1/embeddings, /v1/completions, \
                     /v1/audio/transcriptions, /v1/audio/translations, /v1/audio/speech and KServe v2 under /v2",
                    request.method(),
                    request.uri().path()
                ),
            )
        })
        .with_state(api.clone())
        .merge(kserve)
        .layer(axum::middleware::from_fn_with_state(api.body_timeout, body_in_time))
        .layer(axum::middleware::from_fn_with_state(api, check_key))
        .layer(DefaultBodyLimit::max(limit))
}

/// Whether a path is open without a key: the probes and metrics.
fn open_path(path: &str) -> bool {
    path.starts_with("/v2/health/")
        || path == "/metrics"
        || (path.starts_with("/v2/models/") && path.ends_with("/ready"))
}

/// An error in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    param: Option<&'static str>,
    code: Option<&'static str>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            param: None,
            code: None,
        }
    }

    fn bad(param: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            param: Some(param),
            code: None,
        }
    }

    fn kind(&self) -> &'static str {
        match self.status {
            StatusCode::UNAUTHORIZED => "authentication_error",
            StatusCode::FORBIDDEN => "permission_error",
            StatusCode::NOT_FOUND => "not_found_error",
            StatusCode::TOO_MANY_REQUESTS => "rate_limit_error",
            StatusCode::PAYLOAD_TOO_LARGE | StatusCode::BAD_REQUEST => "invalid_request_error",
            s if s.is_server_error() => "server_error",
            _ => "invalid_request_error",
        }
    }

    fn json(&self) -> Json {
        json!({"error": {
            "message": self.message,
            "type": self.kind(),
            "param": self.param,
            "code": self.code,
        }})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.json())).into_response();
        if self.status == StatusCode::TOO_MANY_REQUESTS || self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// A gRPC status as the HTTP code the OpenAI API would answer: 429 (which
/// clients retry) only where the daemon was busy; a request over a work
/// limit would be refused again, and is a bad request.
pub fn http_status(status: &tonic::Status) -> StatusCode {
    use tonic::Code::*;
    match status.code() {
        ResourceExhausted if !is_busy(status) => StatusCode::BAD_REQUEST,
        InvalidArgument | FailedPrecondition | OutOfRange => StatusCode::BAD_REQUEST,
        NotFound => StatusCode::NOT_FOUND,
        AlreadyExists | Aborted => StatusCode::CONFLICT,
        PermissionDenied => StatusCode::FORBIDDEN,
        Unauthenticated => StatusCode::UNAUTHORIZED,
        ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        Ok | Unknown | Internal | DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<tonic::Status> for ApiError {
    fn from(status: tonic::Status) -> Self {
        let mut error = ApiError::new(http_status(&status), status.message());
        // inferd.v1's NOT_FOUND is a model that is not loaded.
        error.code = match status.code() {
            tonic::Code::NotFound => Some("model_not_found"),
            tonic::Code::ResourceExhausted if is_busy(&status) => Some("rate_limit_exceeded"),
            _ => None,
        };
        error
    }
}

impl From<crate::error::DaemonError> for ApiError {
    fn from(e: crate::error::DaemonError) -> Self {
        tonic::Status::from(e).into()
    }
}

async fn check_key(State(api): State<Arc<Api>>, request: Request, next: Next) -> Response {
    if !open_path(request.uri().path()) {
        let authorization = request.headers().get(header::AUTHORIZATION).map(HeaderValue::as_bytes);
        if let Err(e) = api.keys.check(access::Right::Use, authorization) {
            return ApiError::from(e).into_response();
        }
    }
    next.run(request).await
}

/// Gives the request's body `timeout` to arrive (from now, once the key is
/// checked): a client that sends it slowly would hold its connection, one
/// of `MAX_CONNECTIONS`, for as long as it liked.
async fn body_in_time(State(timeout): State<std::time::Duration>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let late = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let body = axum::body::Body::new(BodyInTime {
        inner: body,
        deadline: Box::pin(tokio::time::sleep(timeout)),
        timeout,
        late: late.clone(),
    });
    let response = next.run(Request::from_parts(parts, body)).await;
    // The handler's extractor turned the body's error into its own answer.
    if late.load(std::sync::atomic::Ordering::Relaxed) {
        return ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body took more than {} s to arrive (--http-body-timeout-seconds)",
                timeout.as_secs()
            ),
        )
        .into_response();
    }
    response
}

/// A request body that fails once its deadline passes before its end.
struct BodyInTime {
    inner: axum::body::Body,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
    timeout: std::time::Duration,
    /// Set once the deadline has passed.
    late: Arc<std::sync::atomic::AtomicBool>,
}

impl http_body::Body for BodyInTime {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        use std::future::Future;
        use std::task::Poll;
        let this = &mut *self;
        if let Poll::Ready(frame) = std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        match this.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => {
                this.late.store(true, std::sync::atomic::Ordering::Relaxed);
                Poll::Ready(Some(Err(axum::Error::new(format!(
                    "the request body took more than {} s to arrive",
                    this.timeout.as_secs()
                )))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

async fn ready(State(api): State<Arc<Api>>) -> StatusCode {
    if api.readiness.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

async fn metrics(State(api): State<Arc<Api>>) -> impl IntoResponse {
    let registry: &dyn Scraped = &*api.registry;
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        registry
            .metrics()
            .render(&registry.gauges(), api.max_in_flight, registry.memory()),
    )
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn model_object(info: &inferd_proto::v1::ModelInfo) -> Json {
    json!({
        "id": info.name,
        "object": "model",
        "created": 0,
        "owned_by": "inferd",
        "task": info.task,
        "also_tasks": info.also_tasks,
    })
}

async fn list_models(State(api): State<Arc<Api>>) -> axum::Json<Json> {
    let data: Vec<Json> = api.registry.list().iter().map(model_object).collect();
    axum::Json(json!({"object": "list", "data": data}))
}

async fn get_model(State(api): State<Arc<Api>>, Path(id): Path<String>) -> Result<axum::Json<Json>, ApiError> {
    Ok(axum::Json(model_object(&api.registry.info(&id)?)))
}

/// A request's body, as the extractor gave it.
type BodyBytes = Result<Bytes, BytesRejection>;

/// A JSON body as `T`; its errors are 400s naming what is wrong (413 when
/// it is larger than --max-request-bytes).
fn parse<T: for<'de> Deserialize<'de>>(body: BodyBytes) -> Result<T, ApiError> {
    let body = body.map_err(|e| {
        let message = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            "the body is larger than the daemon accepts (--max-request-bytes)".to_string()
        } else {
            e.body_text()
        };
        ApiError::new(e.status(), message)
    })?;
    serde_json::from_slice(&body).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("the JSON body: {e}")))
}

/// One string or a list of them.
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
    /// Token ids (one list or several), which inferd does not take.
    Tokens(#[allow(dead_code)] Vec<Json>),
}

impl OneOrMany {
    fn texts(self, param: &'static str) -> Result<Vec<String>, ApiError> {
        match self {
            OneOrMany::One(text) => Ok(vec![text]),
            OneOrMany::Many(texts) if !texts.is_empty() => Ok(texts),
            OneOrMany::Many(_) => Err(ApiError::bad(param, format!("`{param}` is an empty list"))),
            OneOrMany::Tokens(_) => Err(ApiError::bad(
                param,
                format!("`{param}` must be text (a string or a list of strings); token ids are not accepted"),
            )),
        }
    }
}

#[derive(Deserialize)]
struct EmbeddingsBody {
    model: String,
    input: OneOrMany,
    encoding_format: Option<String>,
    dimensions: Option<u32>,
}

async fn embeddings(State(api): State<Arc<Api>>, body: BodyBytes) -> Result<axum::Json<Json>, ApiError> {
    let body: EmbeddingsBody = parse(body)?;
    let base64 = match body.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::bad(
                "encoding_format",
                format!("encoding_format must be \"float\" or \"base64\", not {other:?}"),
            ))
        }
    };
    // The upper bound is the model's width, known from the answer; zero
    // is refused before the model runs.
    if body.dimensions == Some(0) {
        return Err(ApiError::bad("dimensions", "dimensions must be at least 1"));
    }
    let request = EmbedRequest {
        model: body.model.clone(),
        inputs: body.input.texts("input")?,
        ..Default::default()
    };
    let answer = api.inference.embed(tonic::Request::new(request)).await?.into_inner();
    let mut data = Vec::new();
    for (index, result) in answer.results.into_iter().enumerate() {
        let mut vector = result.embedding;
        if let Some(dimensions) = body.dimensions {
            vector = shorten(vector, dimensions)?;
        }
        let embedding = if base64 {
            let bytes: Vec<u8> = vector.iter().flat_map(|v| v.to_le_bytes()).collect();
            json!(base64::engine::general_purpose::STANDARD.encode(bytes))
        } else {
            json!(vector)
        };
        data.push(json!({"object": "embedding", "index": index, "embedding": embedding}));
    }
    Ok(axum::Json(json!({
        "object": "list",
        "data": data,
        "model": body.model,
        // inferd does not count an embedding's tokens.
        "usage": {"prompt_tokens": 0, "total_tokens": 0},
    })))
}

/// The first `dimensions` values, scaled back to unit length (what OpenAI's
/// `dimensions` does to a normalized embedding).
fn shorten(vector: Vec<f32>, dimensions: u32) -> Result<Vec<f32>, ApiError> {
    let d = dimensions as usize;
    if d == 0 || d > vector.len() {
        return Err(ApiError::bad(
            "dimensions",
            format!("dimensions must be from 1 to {}, the model's", vector.len()),
        ));
    }
    let mut short = vector;
    short.truncate(d);
    let norm = short.iter().map(|v| v * v).sum::<f32>().sqrt();
    if norm > 0.0 {
        short.iter_mut().for_each(|v| *v /= norm);
    }
    Ok(short)
}

#[derive(Deserialize)]
struct CompletionsBody {
    model: String,
    prompt: OneOrMany,
    max_tokens: Option<u32>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    n: Option<u32>,
    stream: Option<bool>,
    stop: Option<OneOrMany>,
    seed: Option<u64>,
    echo: Option<bool>,
    logprobs: Option<Json>,
    best_of: Option<u32>,
    suffix: Option<String>,
    frequency_penalty: Option<f32>,
    presence_penalty: Option<f32>,
    logit_bias: Option<Json>,
}

impl CompletionsBody {
    /// The inferd.v1 request: OpenAI's defaults (16 new tokens), sampling
    /// as the model's generation_config says unless `temperature` is given
    /// (0: greedy).
    fn request(self) -> Result<(GenerateRequest, bool), ApiError> {
        let unsupported = [
            ("logprobs", self.logprobs.as_ref().is_some_and(|v| !v.is_null())),
            ("best_of", self.best_of.is_some_and(|b| b > 1)),
            ("suffix", self.suffix.as_ref().is_some_and(|s| !s.is_empty())),
            ("frequency_penalty", self.frequency_penalty.is_some_and(|p| p != 0.0)),
            ("presence_penalty", self.presence_penalty.is_some_and(|p| p != 0.0)),
            (
                "logit_bias",
                self.logit_bias
                    .as_ref()
                    .is_some_and(|b| b.as_object().is_some_and(|o| !o.is_empty())),
            ),
        ];
        if let Some((param, _)) = unsupported.iter().find(|(_, set)| *set) {
            return Err(ApiError::bad(param, format!("`{param}` is not supported by inferd")));
        }
        let do_sample = self.temperature.map(|t| t > 0.0);
        let request = GenerateRequest {
            model: self.model,
            inputs: self.prompt.texts("prompt")?,
            max_new_tokens: Some(self.max_tokens.unwrap_or(16)),
            do_sample,
            temperature: self.temperature.filter(|t| *t > 0.0),
            top_p: self.top_p,
            num_return_sequences: self.n,
            stop: match self.stop {
                Some(stop) => stop.texts("stop")?,
                None => vec![],
            },
            seed: self.seed,
            return_full_text: Some(self.echo.unwrap_or(false)),
            ..Default::default()
        };
        Ok((request, self.stream.unwrap_or(false)))
    }
}

/// inferd's finish reasons as OpenAI names them.
fn finish_reason(reason: &str) -> &str {
    match reason {
        "eos_token" | "stop_sequence" => "stop",
        other => other,
    }
}

async fn completions(State(api): State<Arc<Api>>, body: BodyBytes) -> Result<Response, ApiError> {
    let body: CompletionsBody = parse(body)?;
    let (request, stream) = body.request()?;
    let id = format!("cmpl-{:x}", rand_id());
    let model = request.model.clone();
    if stream {
        if request.inputs.len() != 1 || request.num_return_sequences.unwrap_or(1) != 1 {
            return Err(ApiError::bad(
                "stream",
                "a streamed completion takes one prompt and n = 1",
            ));
        }
        let echo = request.return_full_text == Some(true);
        let prompt = request.inputs[0].clone();
        let mut chunks = api
            .inference
            .generate_stream(tonic::Request::new(request))
            .await?
            .into_inner();
        // A request the model refuses is an HTTP error, not an event.
        let first = match chunks.next().await {
            Some(Err(status)) => return Err(status.into()),
            first => first,
        };
        let chunks = tokio_stream::iter(first).chain(chunks);
        return Ok(stream_completion(id, model, echo.then_some(prompt), chunks).into_response());
    }
    let answer = api.inference.generate(tonic::Request::new(request)).await?.into_inner();
    let mut choices = Vec::new();
    let (mut prompt_tokens, mut completion_tokens) = (0, 0);
    for result in answer.results {
        prompt_tokens += result.sequences.first().map_or(0, |s| s.prompt_tokens);
        for sequence in result.sequences {
            completion_tokens += sequence.generated_tokens;
            choices.push(json!({
                "text": sequence.generated_text,
                "index": choices.len(),
                "logprobs": null,
                "finish_reason": finish_reason(&sequence.finish_reason),
            }));
        }
    }
    Ok(axum::Json(json!({
        "id": id,
        "object": "text_completion",
        "created": now(),
        "model": model,
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }))
    .into_response())
}

/// A completion as server-sent events: a chunk per piece of text, the last
/// with its finish reason, then `[DONE]`. When the client goes away the
/// body is dropped, and with it the generation's stream, which stops it.
fn stream_completion(
    id: String,
    model: String,
    echo: Option<String>,
    chunks: impl Stream<Item = Result<GenerateStreamResponse, tonic::Status>> + Send + 'static,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let created = now();
    let event = move |text: &str, finish: Option<&str>| {
        let chunk = json!({
            "id": id,
            "object": "text_completion",
            "created": created,
            "model": model,
            "choices": [{"text": text, "index": 0, "logprobs": null, "finish_reason": finish}],
        });
        Ok(Event::default().data(chunk.to_string()))
    };
    let first = echo.map(|prompt| event(&prompt, None));
    let mut finished = false;
    let body = chunks.map_while(move |chunk| {
        if finished {
            return None;
        }
        Some(match chunk {
            Ok(chunk) if !chunk.finish_reason.is_empty() => {
                finished = true;
                event(&chunk.text, Some(finish_reason(&chunk.finish_reason)))
            }
            Ok(chunk) => event(&chunk.text, None),
            Err(status) => {
                finished = true;
                Ok(Event::default().data(ApiError::from(status).json().to_string()))
            }
        })
    });
    let done = tokio_stream::once(Ok(Event::default().data("[DONE]")));
    Sse::new(tokio_stream::iter(first).chain(body).chain(done))
}

fn rand_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(now());
    hasher.finish()
}

/// A transcription's form fields.
#[derive(Default)]
struct TranscriptionForm {
    file: Option<Vec<u8>>,
    model: String,
    language: String,
    prompt: String,
    response_format: String,
    temperature: Option<f32>,
    granularities: Vec<String>,
}

async fn read_form(form: Result<Multipart, MultipartRejection>) -> Result<TranscriptionForm, ApiError> {
    let mut form = form.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    let mut out = TranscriptionForm::default();
    let too_big = |e: axum::extract::multipart::MultipartError| {
        let status = e.status();
        let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "the upload is larger than the daemon accepts (--max-request-bytes)".to_string()
        } else {
            format!("the multipart form: {}", e.body_text())
        };
        ApiError::new(status, message)
    };
    while let Some(field) = form.next_field().await.map_err(too_big)? {
        let name = field.name().unwrap_or_default().to_string();
        if name == "file" {
            out.file = Some(field.bytes().await.map_err(too_big)?.to_vec());
            continue;
        }
        let value = field.text().await.map_err(too_big)?;
        match name.as_str() {
            "model" => out.model = value,
            "language" => out.language = value,
            "prompt" => out.prompt = value,
            "response_format" => out.response_format = value,
            "temperature" => {
                out.temperature = Some(
                    value
                        .parse()
                        .map_err(|_| ApiError::bad("temperature", "temperature must be a number"))?,
                )
            }
            "timestamp_granularities[]" | "timestamp_granularities" => out.granularities.push(value),
            _ => {}
        }
    }
    Ok(out)
}

#[derive(Clone, Copy, PartialEq)]
enum Format {
    Json,
    Text,
    Srt,
    Vtt,
    VerboseJson,
}

async fn transcriptions(
    State(api): State<Arc<Api>>,
    form: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    transcribe(api, form, false).await
}

async fn translations(
    State(api): State<Arc<Api>>,
    form: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    transcribe(api, form, true).await
}

async fn transcribe(
    api: Arc<Api>,
    form: Result<Multipart, MultipartRejection>,
    translate: bool,
) -> Result<Response, ApiError> {
    let form = read_form(form).await?;
    let file = form
        .file
        .ok_or_else(|| ApiError::bad("file", "the form has no `file` (the audio file)"))?;
    if form.model.is_empty() {
        return Err(ApiError::bad("model", "the form has no `model`"));
    }
    if !form.prompt.is_empty() {
        return Err(ApiError::bad("prompt", "`prompt` is not supported by inferd"));
    }
    let format = match form.response_format.as_str() {
        "" | "json" => Format::Json,
        "text" => Format::Text,
        "srt" => Format::Srt,
        "vtt" => Format::Vtt,
        "verbose_json" => Format::VerboseJson,
        other => {
            return Err(ApiError::bad(
                "response_format",
                format!("response_format must be json, text, srt, vtt or verbose_json, not {other:?}"),
            ))
        }
    };
    let mut words = false;
    for granularity in &form.granularities {
        match granularity.as_str() {
            "word" => words = true,
            "segment" => {}
            other => {
                return Err(ApiError::bad(
                    "timestamp_granularities",
                    format!("timestamp_granularities are word and segment, not {other:?}"),
                ))
            }
        }
    }
    if words && format != Format::VerboseJson {
        return Err(ApiError::bad(
            "timestamp_granularities",
            "timestamp_granularities need response_format verbose_json",
        ));
    }
    let model = api.registry.model(&form.model)?;
    // A lazy model knows its architecture once loaded.
    api.registry.loaded(&model).await?;
    let whisper = model.architecture().starts_with("Whisper");
    if translate && !whisper {
        return Err(ApiError::bad(
            "model",
            format!(
                "model {} cannot translate: /v1/audio/translations needs a Whisper model",
                form.model
            ),
        ));
    }
    // Segments come from Whisper's timestamps; a CTC model's are its words.
    let timed = format != Format::Json && format != Format::Text;
    let return_timestamps = match (timed, whisper && !words) {
        (false, _) => "",
        (true, true) => "true",
        (true, false) => "word",
    };
    let request = TranscribeRequest {
        model: form.model.clone(),
        inputs: vec![AudioInput { data: file }],
        return_timestamps: return_timestamps.into(),
        language: form.language.clone(),
        task: if translate { "translate".into() } else { String::new() },
        return_language: whisper && format == Format::VerboseJson && form.language.is_empty(),
        temperature: form.temperature,
        ..Default::default()
    };
    let answer = api
        .inference
        .transcribe(tonic::Request::new(request))
        .await?
        .into_inner();
    let result = answer.results.into_iter().next().unwrap_or_default();
    let text_response =
        |content_type: &'static str, text: String| ([(header::CONTENT_TYPE, content_type)], text).into_response();
    Ok(match format {
        Format::Json => axum::Json(json!({"text": result.text})).into_response(),
        Format::Text => text_response("text/plain; charset=utf-8", format!("{}\n", result.text)),
        Format::Srt => text_response("text/plain; charset=utf-8", subtitles(&result.chunks, false)),
        Format::Vtt => text_response("text/vtt; charset=utf-8", subtitles(&result.chunks, true)),
        Format::VerboseJson => {
            // Whisper's detected language, else the one asked for; null
            // when neither is known (an English-only model).
            let language = result
                .chunks
                .iter()
                .map(|c| c.language.clone())
                .find(|l| !l.is_empty())
                .or(Some(form.language))
                .filter(|l| !l.is_empty());
            let duration = result.chunks.last().and_then(|c| c.timestamp.get(1)).copied();
            let timed: Vec<Json> = result
                .chunks
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let (start, end) = span(c);
                    if words {
                        json!({"word": c.text.trim(), "start": start, "end": end})
                    } else {
                        json!({"id": i, "seek": 0, "start": start, "end": end, "text": c.text, "tokens": []})
                    }
                })
                .collect();
            let mut body = json!({
                "task": if translate { "translate" } else { "transcribe" },
                "language": language,
                "duration": duration,
                "text": result.text,
            });
            body[if words { "words" } else { "segments" }] = Json::Array(timed);
            axum::Json(body).into_response()
        }
    })
}

/// A chunk's start and end in seconds (its end may be open: the start).
fn span(chunk: &TranscriptionChunk) -> (f64, f64) {
    let start = chunk.timestamp.first().copied().unwrap_or(0.0);
    (start, chunk.timestamp.get(1).copied().unwrap_or(start))
}

/// The chunks as SubRip (srt) or WebVTT cues.
fn subtitles(chunks: &[TranscriptionChunk], vtt: bool) -> String {
    let time = |seconds: f64| {
        let ms = (seconds.max(0.0) * 1000.0).round() as u64;
        let (h, m, s, ms) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
        if vtt {
            format!("{h:02}:{m:02}:{s:02}.{ms:03}")
        } else {
            format!("{h:02}:{m:02}:{s:02},{ms:03}")
        }
    };
    let mut out = String::from(if vtt { "WEBVTT\n\n" } else { "" });
    for (i, chunk) in chunks.iter().enumerate() {
        let (start, end) = span(chunk);
        if !vtt {
            out.push_str(&format!("{}\n", i + 1));
        }
        out.push_str(&format!("{} --> {}\n{}\n\n", time(start), time(end), chunk.text.trim()));
    }
    out
}

#[derive(Deserialize)]
struct SpeechBody {
    model: String,
    input: String,
    voice: Option<Json>,
    response_format: Option<String>,
    speed: Option<f32>,
    /// inferd's own: the seed of SpeechT5's random dropout (absent: a
    /// random one), for a repeatable voice (`extra_body` in the openai client).
    seed: Option<u64>,
}

async fn speech(State(api): State<Arc<Api>>, body: BodyBytes) -> Result<Response, ApiError> {
    let body: SpeechBody = parse(body)?;
    let pcm = match body.response_format.as_deref() {
        None | Some("wav") => false,
        Some("pcm") => true,
        Some(other) => {
            return Err(ApiError::bad(
                "response_format",
                format!("response_format must be wav or pcm (inferd writes no {other})"),
            ))
        }
    };
    if body.speed.is_some_and(|s| s != 1.0) {
        return Err(ApiError::bad("speed", "only speed 1.0 is supported"));
    }
    // A lazy model knows its speakers once loaded.
    api.registry.loaded(&api.registry.model(&body.model)?).await?;
    let info = api.registry.info(&body.model)?;
    let voice = match &body.voice {
        None => String::new(),
        Some(Json::String(v)) => v.clone(),
        Some(Json::Object(o)) => o.get("id").and_then(Json::as_str).unwrap_or_default().to_string(),
        Some(_) => return Err(ApiError::bad("voice", "voice must be a string")),
    };
    let speaker = match voice.as_str() {
        "" | "default" => String::new(),
        v if info.speakers.iter().any(|s| s == v) => voice.clone(),
        v => {
            return Err(ApiError::bad(
                "voice",
                format!(
                    "model {} has no voice {v:?}; its voices: default{}",
                    body.model,
                    info.speakers.iter().map(|s| format!(", {s}")).collect::<String>()
                ),
            ))
        }
    };
    let request = SynthesizeRequest {
        model: body.model,
        inputs: vec![body.input],
        speaker,
        audio_format: "pcm16".into(),
        seed: body.seed,
        ..Default::default()
    };
    let answer = api
        .inference
        .synthesize(tonic::Request::new(request))
        .await?
        .into_inner();
    let speech = answer.results.into_iter().next().unwrap_or_default();
    let (content_type, audio) = if pcm {
        ("audio/pcm", wav_samples(&speech.audio).to_vec())
    } else {
        ("audio/wav", speech.audio)
    };
    let mut response = Response::new(Body::from(audio));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    for (name, value) in [
        ("x-sampling-rate", u64::from(speech.sampling_rate)),
        ("x-seed", speech.seed),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value.to_string()) {
            response.headers_mut().insert(name, value);
        }
    }
    Ok(response)
}

/// The samples of a WAV file: its `data` chunk.
fn wav_samples(wav: &[u8]) -> &[u8] {
    let mut at = 12;
    while at + 8 <= wav.len() {
        let size = u32::from_le_bytes(wav[at + 4..at + 8].try_into().expect("4 bytes")) as usize;
        if &wav[at..at + 4] == b"data" {
            return &wav[at + 8..(at + 8 + size).min(wav.len())];
        }
        at += 8 + size + size % 2;
    }
    &[]
}

/// Connections served at once; more wait to be accepted.
const MAX_CONNECTIONS: usize = 1024;

/// How long a client may take to send a request's headers.
const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves the API on `listener` until `shutdown` resolves; then waits
/// for the requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    tls: Option<Arc<crate::tls::Reloadable>>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        let (slot, stream, peer) = tokio::select! {
            accepted = async {
                let slot = slots.clone().acquire_owned().await.expect("the semaphore is never closed");
                (slot, listener.accept().await)
            } => match accepted {
                (slot, Ok((stream, peer))) => (slot, stream, peer),
                (_, Err(e)) => {
                    tracing::warn!("HTTP API: accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let acceptor = tls.as_ref().map(|tls| tls.acceptor(b"http/1.1"));
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _slot = slot;
            let mut builder = hyper::server::conn::http1::Builder::new();
            // A client that sends its headers slowly neither holds the
            // connection nor delays a shutdown for long.
            builder
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT);
            let served = match acceptor {
                Some(acceptor) => match crate::tls::handshake(&acceptor, stream, peer).await {
                    Some(stream) => {
                        watcher
                            .watch(builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service))
                            .await
                    }
                    None => return,
                },
                None => {
                    watcher
                        .watch(builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service))
                        .await
                }
            };
            if let Err(e) = served {
                tracing::debug!(%peer, "HTTP API connection: {e}");
            }
        });
    }
    graceful.shutdown().await;
}

/// Binds the HTTP API's address (so a taken port fails at start-up).
pub async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen for the HTTP API on {addr}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_probes_and_metrics_are_open_without_a_key() {
        for open in [
            "/v2/health/live",
            "/v2/health/ready",
            "/metrics",
            "/v2/models/m/ready",
            "/v2/models/m/versions/1/ready",
        ] {
            assert!(open_path(open), "{open}");
        }
        for closed in [
            "/v1/models",
            "/v1/embeddings",
            "/v2",
            "/v2/models/m",
            "/v2/models/m/infer",
            "/v2/models/ready/infer",
        ] {
            assert!(!open_path(closed), "{closed}");
        }
    }

    #[test]
    fn statuses_map_to_the_codes_openai_clients_know() {
        let http = |code| http_status(&tonic::Status::new(code, "x"));
        assert_eq!(http(tonic::Code::InvalidArgument), StatusCode::BAD_REQUEST);
        assert_eq!(http(tonic::Code::NotFound), StatusCode::NOT_FOUND);
        assert_eq!(http(tonic::Code::Unavailable), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(http(tonic::Code::Unauthenticated), StatusCode::UNAUTHORIZED);
        assert_eq!(http(tonic::Code::Internal), StatusCode::INTERNAL_SERVER_ERROR);
        // A busy daemon asks to be tried again; a request over a work limit
        // is a bad request, which clients do not retry.
        let busy = tonic::Status::from(crate::error::DaemonError::Busy("queue full".into()));
        assert_eq!(http_status(&busy), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(ApiError::from(busy).code, Some("rate_limit_exceeded"));
        let over = tonic::Status::from(crate::error::DaemonError::ResourceExhausted(
            "over max_sequences".into(),
        ));
        assert_eq!(http_status(&over), StatusCode::BAD_REQUEST);
        assert_eq!(ApiError::from(over).code, None);
    }

    #[test]
    fn shortened_embeddings_are_unit_length() {
        let short = shorten(vec![3.0, 4.0, 12.0], 2).unwrap();
        assert_eq!(short, vec![0.6, 0.8]);
        assert!(shorten(vec![1.0], 2).is_err());
        assert!(shorten(vec![1.0], 0).is_err());
    }

    #[test]
    fn subtitles_number_srt_cues_and_head_vtt_ones() {
        let chunks = vec![
            TranscriptionChunk {
                text: " Hello there.".into(),
                timestamp: vec![0.0, 1.5],
                language: String::new(),
            },
            TranscriptionChunk {
                text: " Bye.".into(),
                timestamp: vec![61.25, 3661.0],
                language: String::new(),
            },
        ];
        assert_eq!(
            subtitles(&chunks, false),
            "1\n00:00:00,000 --> 00:00:01,500\nHello there.\n\n2\n00:01:01,250 --> 01:01:01,000\nBye.\n\n"
        );
        assert!(subtitles(&chunks, true).starts_with("WEBVTT\n\n00:00:00.000 --> 00:00:01.500\nHello there.\n"));
    }

    #[test]
    fn the_samples_of_a_wav_are_its_data_chunk() {
        let mut wav = b"RIFF\0\0\0\0WAVEfmt \x02\0\0\0abLIST\x01\0\0\0x\0data\x04\0\0\0wxyz".to_vec();
        assert_eq!(wav_samples(&wav), b"wxyz");
        wav.truncate(wav.len() - 2);
        assert_eq!(wav_samples(&wav), b"wx");
    }
}
