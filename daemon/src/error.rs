//! The daemon's error type, and the one place where errors become gRPC
//! statuses. Conditions met in several places (at load and at inference,
//! in the registry and in the handlers) are built by the constructors
//! below, so that the same condition always gets the same code.

use inferd_sdk::Code;
use tonic::Status;

#[derive(Debug, Clone, thiserror::Error)]
pub enum DaemonError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Unimplemented(String),
    #[error("{0}")]
    ResourceExhausted(String),
    /// RESOURCE_EXHAUSTED for a while: the daemon or a model's queue is
    /// full. Unlike a request over a work limit, the same request may pass
    /// later: the status carries gRPC's retry pushback
    /// (`grpc-retry-pushback-ms`), and HTTP answers 429 with Retry-After.
    #[error("{0}")]
    Busy(String),
    #[error("{0}")]
    DeadlineExceeded(String),
    #[error("{0}")]
    Internal(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    PermissionDenied(String),
}

impl DaemonError {
    /// The same error (and code) with its message rewritten.
    pub fn map_message(self, f: impl FnOnce(String) -> String) -> Self {
        use DaemonError::*;
        match self {
            InvalidArgument(m) => InvalidArgument(f(m)),
            NotFound(m) => NotFound(f(m)),
            AlreadyExists(m) => AlreadyExists(f(m)),
            FailedPrecondition(m) => FailedPrecondition(f(m)),
            Unavailable(m) => Unavailable(f(m)),
            Unimplemented(m) => Unimplemented(f(m)),
            ResourceExhausted(m) => ResourceExhausted(f(m)),
            Busy(m) => Busy(f(m)),
            DeadlineExceeded(m) => DeadlineExceeded(f(m)),
            Internal(m) => Internal(f(m)),
            Unauthenticated(m) => Unauthenticated(f(m)),
            PermissionDenied(m) => PermissionDenied(f(m)),
        }
    }

    /// No plugin serves `task`: UNIMPLEMENTED, whether met at LoadModel or at
    /// an inference RPC (the task is not implemented by this daemon).
    pub fn no_plugin_for(task: &str, served: &[String]) -> Self {
        DaemonError::Unimplemented(format!(
            "no plugin serves task `{task}` (tasks served: {})",
            served.join(", ")
        ))
    }

    /// No model of that name is loaded: NOT_FOUND, for inference and model
    /// management alike.
    pub fn model_not_loaded(name: &str, loaded: &[&str]) -> Self {
        DaemonError::NotFound(format!(
            "model `{name}` is not loaded (loaded: {})",
            if loaded.is_empty() {
                "none".to_string()
            } else {
                loaded.join(", ")
            }
        ))
    }

    /// A model unloaded after the request found it: NOT_FOUND, as for a
    /// request that comes after the unload.
    pub fn model_unloaded(name: &str) -> Self {
        DaemonError::NotFound(format!("model `{name}` was unloaded; load it again to use it"))
    }

    /// A model asked for a task it does not serve: FAILED_PRECONDITION, the
    /// code plugins also give when an RPC reaches a model of another task.
    pub fn wrong_task(model: &str, serves: &str, asked: &str) -> Self {
        DaemonError::FailedPrecondition(format!("model `{model}` serves task {serves}, not {asked}"))
    }

    /// A model still loading: UNAVAILABLE (retry shortly), whatever was asked
    /// of it.
    pub fn still_loading(model: &str, then: &str) -> Self {
        DaemonError::Unavailable(format!("model `{model}` is still loading; {then}"))
    }

    /// A checkpoint whose architecture no plugin supports for the task:
    /// FAILED_PRECONDITION, as plugins answer for an architecture they lack.
    pub fn unsupported_architecture(source: &str, architecture: &str, task: &str, supported: &[String]) -> Self {
        DaemonError::FailedPrecondition(format!(
            "model {source} is a {architecture}, which no plugin supports for task {task} (supported: {})",
            supported.join(", ")
        ))
    }

    /// A request message tonic could not decode (not protobuf, a field of the
    /// wrong type, a string that is not UTF-8, a message cut short):
    /// INVALID_ARGUMENT, where tonic says INTERNAL. `rpc` is the request's
    /// path, `detail` what the decoder found.
    pub fn undecodable_request(rpc: &str, detail: &str) -> Self {
        DaemonError::InvalidArgument(format!(
            "the request to {rpc} is not a valid protobuf message of that RPC ({detail}); strings must be UTF-8 \
             and the message must match the inferd.v1 proto definitions"
        ))
    }

    /// A request message over the size limit: RESOURCE_EXHAUSTED (gRPC's
    /// convention, as grpc-go and grpc-java answer), where tonic says
    /// OUT_OF_RANGE.
    pub fn request_too_large(limit: usize) -> Self {
        DaemonError::ResourceExhausted(format!(
            "request message is larger than the limit of {limit} bytes; send fewer inputs per request or raise \
             --max-request-bytes"
        ))
    }
}

/// Longest message a client is shown: room for a list of supported
/// architectures, not for a LibTorch backtrace (kilobytes).
const MAX_CLIENT_MESSAGE_CHARS: usize = 1000;

/// What a client is shown of `status`, met while serving `what` (e.g.
/// "request 12"), once the daemon's log has the full message under that
/// name. A panic or a LibTorch error can carry kilobytes of C++ frames and
/// addresses, on lines of their own or, in a panic message that
/// Debug-formats the error, after `\n` escapes: the client gets the first
/// line (at most 1000 characters) and where to find the rest. INTERNAL
/// statuses always name `what`, so that a report can be matched with the
/// log.
pub fn for_client(status: Status, what: &str) -> Status {
    let internal = status.code() == tonic::Code::Internal;
    let message = status.message().trim();
    let first = first_line(message, internal);
    let cut = first.len() < message.len();
    if !cut && !internal {
        return status;
    }
    let ellipsis = if cut { " ..." } else { "" };
    Status::new(
        status.code(),
        format!("{first}{ellipsis} ({what}; the daemon's log has the full message)"),
    )
}

/// The text before the first line break (and, when `escaped`, before the
/// first `\n` escape), trimmed and cut to [`MAX_CLIENT_MESSAGE_CHARS`] on a
/// character boundary. Escapes are only looked for in INTERNAL messages: an
/// input error may quote a text with a line break in it.
fn first_line(message: &str, escaped: bool) -> &str {
    let breaks: &[&str] = if escaped {
        &["\n", "\r", "\\n", "\\r"]
    } else {
        &["\n", "\r"]
    };
    let end = breaks
        .iter()
        .filter_map(|pattern| message.find(pattern))
        .min()
        .unwrap_or(message.len());
    let line = message[..end].trim_end();
    match line.char_indices().nth(MAX_CLIENT_MESSAGE_CHARS) {
        Some((at, _)) => line[..at].trim_end(),
        None => line,
    }
}

impl From<inferd_sdk::Error> for DaemonError {
    fn from(e: inferd_sdk::Error) -> Self {
        let m = e.message;
        match e.code {
            Code::InvalidArgument => DaemonError::InvalidArgument(m),
            Code::FailedPrecondition => DaemonError::FailedPrecondition(m),
            Code::NotFound => DaemonError::NotFound(m),
            Code::Unimplemented => DaemonError::Unimplemented(m),
            Code::ResourceExhausted => DaemonError::ResourceExhausted(m),
            Code::Internal => DaemonError::Internal(m),
        }
    }
}

impl From<DaemonError> for Status {
    fn from(e: DaemonError) -> Self {
        match e {
            DaemonError::InvalidArgument(m) => Status::invalid_argument(m),
            DaemonError::NotFound(m) => Status::not_found(m),
            DaemonError::AlreadyExists(m) => Status::already_exists(m),
            DaemonError::FailedPrecondition(m) => Status::failed_precondition(m),
            DaemonError::Unavailable(m) => Status::unavailable(m),
            DaemonError::Unimplemented(m) => Status::unimplemented(m),
            DaemonError::ResourceExhausted(m) => Status::resource_exhausted(m),
            DaemonError::Busy(m) => {
                let mut metadata = tonic::metadata::MetadataMap::new();
                metadata.insert(RETRY_PUSHBACK, tonic::metadata::MetadataValue::from(RETRY_AFTER_MS));
                Status::with_metadata(tonic::Code::ResourceExhausted, m, metadata)
            }
            DaemonError::DeadlineExceeded(m) => Status::deadline_exceeded(m),
            DaemonError::Internal(m) => Status::internal(m),
            DaemonError::Unauthenticated(m) => Status::unauthenticated(m),
            DaemonError::PermissionDenied(m) => Status::permission_denied(m),
        }
    }
}

pub type Result<T, E = DaemonError> = std::result::Result<T, E>;

/// The trailer by which a gRPC server tells a retrying client how long to
/// wait (gRPC's retry design, A6).
const RETRY_PUSHBACK: &str = "grpc-retry-pushback-ms";
/// How long a busy daemon asks clients to wait before retrying.
const RETRY_AFTER_MS: i64 = 1000;

/// Whether `status` says the daemon was busy ([`DaemonError::Busy`]): the
/// same request may pass if sent again. Other RESOURCE_EXHAUSTED statuses
/// are requests over a work limit, refused however often they are sent.
pub fn is_busy(status: &Status) -> bool {
    status.code() == tonic::Code::ResourceExhausted && status.metadata().contains_key(RETRY_PUSHBACK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_condition_maps_to_its_one_code() {
        let code = |e: DaemonError| Status::from(e).code();
        let served = ["text-classification".to_string()];
        assert_eq!(
            code(DaemonError::no_plugin_for("tts", &served)),
            tonic::Code::Unimplemented
        );
        assert_eq!(code(DaemonError::model_not_loaded("m", &[])), tonic::Code::NotFound);
        assert_eq!(code(DaemonError::model_unloaded("m")), tonic::Code::NotFound);
        assert_eq!(
            code(DaemonError::wrong_task("m", "a", "b")),
            tonic::Code::FailedPrecondition
        );
        assert_eq!(code(DaemonError::still_loading("m", "retry")), tonic::Code::Unavailable);
        assert_eq!(
            code(DaemonError::unsupported_architecture("s", "X", "t", &served)),
            tonic::Code::FailedPrecondition
        );
        // The code a plugin gives for a condition is the one the daemon gives.
        for (sdk, grpc) in [
            (inferd_sdk::Error::unimplemented("x"), tonic::Code::Unimplemented),
            (
                inferd_sdk::Error::failed_precondition("x"),
                tonic::Code::FailedPrecondition,
            ),
            (inferd_sdk::Error::not_found("x"), tonic::Code::NotFound),
            (inferd_sdk::Error::invalid_argument("x"), tonic::Code::InvalidArgument),
            (inferd_sdk::Error::internal("x"), tonic::Code::Internal),
        ] {
            assert_eq!(code(sdk.into()), grpc);
        }
    }

    /// A panic message as tch writes it: the LibTorch error Debug-formatted,
    /// its C++ frames after `\n` escapes, all on one line.
    fn torch_panic() -> String {
        let frames: String = (0..40)
            .map(|i| {
                format!(
                    "\\nframe #{i}: at::native::index_select_out_cpu_ + 0x{:x} (0x7f3c2a1b{i:04x} in libtorch_cpu.so)",
                    0x96 + i
                )
            })
            .collect();
        format!(
            "plugin panicked in run: called `Result::unwrap()` on an `Err` value: Torch(\"index out of range in \
             self\\nException raised from operator() at aten/src/ATen/native/TensorAdvancedIndexing.cpp:1193 (most \
             recent call first):{frames}\")"
        )
    }

    #[test]
    fn a_client_sees_the_first_line_of_an_internal_error_and_where_the_rest_is() {
        let shown = for_client(Status::internal(torch_panic()), "request 12");
        assert_eq!(shown.code(), tonic::Code::Internal);
        let message = shown.message();
        assert!(
            message.starts_with("plugin panicked in run: called `Result::unwrap()` on an `Err` value: Torch(\"index out of range in self ..."),
            "{message}"
        );
        assert!(
            message.ends_with("(request 12; the daemon's log has the full message)"),
            "{message}"
        );
        assert!(!message.contains("frame #") && !message.contains("0x7f"), "{message}");
        // Real line breaks, as a LibTorch error's Display writes them.
        let shown = for_client(
            Status::internal("Internal torch error: shape mismatch\nException raised from ...\nframe #0: 0x7f00"),
            "request 3",
        );
        assert_eq!(
            shown.message(),
            "Internal torch error: shape mismatch ... (request 3; the daemon's log has the full message)"
        );
        // A one-line INTERNAL message is kept whole, with the request named.
        let shown = for_client(Status::internal("model m stopped before answering"), "request 4");
        assert_eq!(
            shown.message(),
            "model m stopped before answering (request 4; the daemon's log has the full message)"
        );
    }

    #[test]
    fn other_codes_keep_one_line_messages_and_their_escapes() {
        let message = "inputs[0] \"a\\nb\" has no tokens";
        let shown = for_client(Status::invalid_argument(message), "request 1");
        assert_eq!((shown.code(), shown.message()), (tonic::Code::InvalidArgument, message));
        let long = "x".repeat(5000);
        let shown = for_client(Status::failed_precondition(long), "request 2");
        assert_eq!(shown.code(), tonic::Code::FailedPrecondition);
        assert!(shown.message().starts_with(&"x".repeat(MAX_CLIENT_MESSAGE_CHARS)));
        assert!(
            shown.message().len() < MAX_CLIENT_MESSAGE_CHARS + 100,
            "{}",
            shown.message()
        );
    }
}
