//! The inferd plugin SDK.
//!
//! A plugin is a shared library (`crate-type = ["cdylib"]`) that serves one or
//! more tasks. Its author implements [`Task`] and calls [`export_plugin!`]:
//!
//! ```ignore
//! use inferd_sdk::proto::api::{RunRequest, RunResponse};
//! use inferd_sdk::{dispatch, export_plugin, proto, Emitter, Error, LoadContext, Task};
//!
//! struct Shout;
//!
//! impl Task for Shout {
//!     fn manifest() -> proto::Manifest { /* name, version, tasks */ }
//!     fn load(_ctx: &LoadContext) -> Result<Self, Error> { Ok(Shout) }
//!     fn run(&mut self, batch: Vec<proto::TaskRequest>, emitter: &mut Emitter) -> Vec<Result<proto::task_response::Body, Error>> {
//!         // Each Inference/Run request on its own; any other RPC is refused.
//!         dispatch::each("shout", batch, emitter, |request: &RunRequest| -> Result<RunResponse, Error> { /* ... */ })
//!     }
//! }
//!
//! export_plugin!(Shout);
//! ```
//!
//! [`dispatch::typed`] hands a task's handler every request of its type in a
//! batch at once (so they can share forward passes), answers requests of
//! other RPCs with a clear error, and puts the answers back in order; an
//! [`Emitter`] sends partial responses and says whether a client still waits.
//! The macro exports the C entry point described in [`abi`]; panics inside the
//! trait's functions are caught there and reported as INTERNAL errors.

pub mod abi;
pub mod dispatch;
mod fault;
pub mod files;
#[doc(hidden)]
pub mod glue;
mod limit;
pub mod values;
pub mod warm_up;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

pub use prost;

/// The payload messages of `inferd.plugin.v1` and the public API `inferd.v1`.
pub mod proto {
    pub use inferd_proto::plugin::v1::*;
    pub use inferd_proto::prost_types;
    pub use inferd_proto::v1 as api;
}

pub use dispatch::{Emitter, Host};
pub use limit::Limit;
pub use proto::error::Code;

/// What the daemon tells an instance when it loads it.
#[derive(Debug, Clone)]
pub struct LoadContext {
    /// The task this instance will serve (canonical name, not an alias).
    pub task: String,
    /// The name requests use for the model.
    pub model_name: String,
    /// The local directory with the model files; `None` for tasks that need none.
    pub model_dir: Option<PathBuf>,
    /// Text to speech: the local directory of the vocoder (LoadModel's
    /// options.vocoder, or the task's default vocoder).
    pub vocoder_dir: Option<PathBuf>,
    /// "cpu" or "cuda:N".
    pub device: String,
    /// config.json's architecture (e.g. "BertForSequenceClassification").
    pub architecture: String,
    /// Work budgets set for this model, by name (see [`Limit::for_model`]).
    pub limits: BTreeMap<String, u64>,
    /// How to quantize the weights: "" or "none", or "dynamic-int8". A task
    /// that honours it says so in `LoadedModel.quantize`; the load of one
    /// that does not is refused.
    pub quantize: String,
    /// The dtype asked for: "" (the plugin's choice: float32 on the CPU,
    /// float16 on CUDA where the architecture is safe in it) or a name
    /// [`dtype_name`] accepts. A task reports the one it runs in in
    /// `LoadedModel.dtype`; the load of one that does not match is refused.
    pub dtype: String,
    /// `dtype` is the daemon's default (--dtype), a preference: where the
    /// architecture cannot run in it, the model runs in float32.
    pub dtype_is_default: bool,
}

/// The dtypes a model may be asked to run in, by their canonical names.
pub const DTYPES: [&str; 3] = ["float32", "float16", "bfloat16"];

/// The canonical name of a dtype as LoadModel's options.dtype, --dtype or
/// a config file spell it ("float16", "fp16", "half", "bf16", ...); ""
/// for "" or "auto" (the plugin's choice). Anything else is INVALID_ARGUMENT.
pub fn dtype_name(asked: &str) -> Result<&'static str, Error> {
    Ok(match asked.trim().to_ascii_lowercase().as_str() {
        "" | "auto" => "",
        "float32" | "fp32" | "float" => "float32",
        "float16" | "fp16" | "half" => "float16",
        "bfloat16" | "bf16" => "bfloat16",
        other => {
            return Err(Error::invalid_argument(format!(
                "dtype {other:?} is not one of auto, {}",
                DTYPES.join(", ")
            )))
        }
    })
}

/// An error with the gRPC-like code the daemon will answer with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub code: Code,
    pub message: String,
}

impl Error {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Error {
            code,
            message: message.into(),
        }
    }
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(Code::InvalidArgument, message)
    }
    pub fn failed_precondition(message: impl Into<String>) -> Self {
        Self::new(Code::FailedPrecondition, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(Code::NotFound, message)
    }
    pub fn unimplemented(message: impl Into<String>) -> Self {
        Self::new(Code::Unimplemented, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(Code::Internal, message)
    }
    /// The answer for a request found no longer wanted between two pieces
    /// of its work: its client left or its deadline passed, so nobody reads
    /// it (the daemon answers an expired request DEADLINE_EXCEEDED itself).
    pub fn stopped() -> Self {
        Self::internal("stopped: the client went away or the deadline passed")
    }
    pub fn resource_exhausted(message: impl Into<String>) -> Self {
        Self::new(Code::ResourceExhausted, message)
    }
    /// A failure of the model's computation: RESOURCE_EXHAUSTED when its
    /// device ran out of memory (see [`is_out_of_memory`]), which a smaller
    /// batch or a later try may avoid; INTERNAL otherwise.
    pub fn failure(message: impl Into<String>) -> Self {
        let message = message.into();
        if is_out_of_memory(&message) {
            Self::resource_exhausted(format!("the device ran out of memory: {message}"))
        } else {
            Self::internal(message)
        }
    }
}

/// Whether an error's text is LibTorch (or CUDA, cuBLAS, cuDNN) saying an
/// allocation failed: "CUDA out of memory. Tried to allocate ...",
/// "DefaultCPUAllocator: can't allocate memory" (or "not enough memory"),
/// "CUDA error: out of memory", CUBLAS_STATUS_ALLOC_FAILED,
/// CUDNN_STATUS_ALLOC_FAILED.
pub fn is_out_of_memory(text: &str) -> bool {
    [
        "out of memory",
        "not enough memory",
        "can't allocate memory",
        "STATUS_ALLOC_FAILED",
    ]
    .iter()
    .any(|needle| text.contains(needle))
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str_name(), self.message)
    }
}

impl std::error::Error for Error {}

impl From<Error> for proto::Error {
    fn from(e: Error) -> Self {
        proto::Error {
            code: e.code as i32,
            message: e.message,
        }
    }
}

impl From<proto::Error> for Error {
    fn from(e: proto::Error) -> Self {
        Error {
            code: Code::try_from(e.code).unwrap_or(Code::Internal),
            message: e.message,
        }
    }
}

/// The text a panic carried (`panic!("...")` or a formatted message), if
/// it carried text.
pub fn panic_text(payload: &(dyn std::any::Any + Send)) -> Option<String> {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
}

/// A limit a plugin reads from the environment variable `name` at load:
/// `default` when it is not set. A value that is not a number above zero is
/// an INVALID_ARGUMENT error naming the variable, so the load fails saying
/// why.
pub fn env_limit<T>(name: &str, default: T) -> Result<T, Error>
where
    T: std::str::FromStr + PartialOrd + Default,
{
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(v) => v
            .trim()
            .parse::<T>()
            .ok()
            .filter(|n| *n > T::default())
            .ok_or_else(|| Error::invalid_argument(format!("{name}={v}: expected a number above 0"))),
    }
}

/// A task implementation: one loaded instance of a model (or of a model-less
/// task). The daemon never calls one instance from two threads at once.
pub trait Task: Sized + 'static {
    /// What this plugin serves. Called once when the daemon loads the library.
    fn manifest() -> proto::Manifest;

    /// Loads an instance for `ctx.task` from `ctx.model_dir` onto `ctx.device`.
    fn load(ctx: &LoadContext) -> Result<Self, Error>;

    /// Facts the daemon reports about the loaded instance (memory, labels).
    fn describe(&self) -> proto::LoadedModel {
        proto::LoadedModel::default()
    }

    /// The request run through a new instance (with [`Task::run`]) before
    /// the daemon declares it ready: by default [`warm_up::request`], the
    /// built-in one of `task`; None runs nothing. A refusal of it is
    /// reported and the instance still loads; an INTERNAL error (or a
    /// panic) fails the load.
    fn warm_up_request(&self, task: &str) -> Option<proto::TaskRequest> {
        warm_up::request(task)
    }

    /// Runs a batch of requests; returns exactly one result per request, in
    /// order. Requests with `stream` set want partial responses, sent with
    /// `emitter.send(i, chunk)`; `emitter.wanted(i)` is false once request
    /// `i`'s client has gone away or its deadline has passed (stop working
    /// on it: its answer is dropped). [`dispatch::typed`] does the request matching and ordering.
    fn run(
        &mut self,
        batch: Vec<proto::TaskRequest>,
        emitter: &mut Emitter,
    ) -> Vec<Result<proto::task_response::Body, Error>>;

    /// Runs a batch that may grow while it runs (continuous batching), as
    /// the daemon calls it: the task may `host.take` requests that arrived
    /// meanwhile (of its model, maybe of another RPC) and must
    /// `host.finish` every request, each as soon as its answer is ready.
    /// The default runs [`Task::run`] on the batch, takes nothing and
    /// finishes the requests when the batch is done.
    /// [`dispatch::joined`] does the request matching.
    fn run_joined(&mut self, batch: Vec<proto::TaskRequest>, host: &mut Host) {
        let answers = self.run(batch, &mut host.emitter());
        for (i, answer) in answers.into_iter().enumerate() {
            host.finish(i, answer);
        }
    }
}

/// Exports `$task` (a type implementing [`Task`]) as an inferd plugin.
#[macro_export]
macro_rules! export_plugin {
    ($task:ty) => {
        /// The inferd plugin entry point.
        #[no_mangle]
        pub extern "C" fn inferd_plugin_v1() -> *const $crate::abi::PluginTable {
            static TABLE: $crate::abi::PluginTable = $crate::abi::PluginTable {
                abi_version: $crate::abi::ABI_VERSION,
                manifest: $crate::glue::manifest::<$task>,
                load: $crate::glue::load::<$task>,
                run: $crate::glue::run::<$task>,
                run_stream: $crate::glue::run_stream::<$task>,
                unload: $crate::glue::unload::<$task>,
                free: $crate::glue::free,
                run_joined: $crate::glue::run_joined::<$task>,
            };
            &TABLE
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_out_of_memory_is_resource_exhausted_and_other_failures_internal() {
        for text in [
            "CUDA out of memory. Tried to allocate 20.00 GiB. GPU 0 has a total capacity of 139.8 GiB",
            "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you tried to \
             allocate 4503599627370496 bytes. Error code 12 (Cannot allocate memory)",
            "DefaultCPUAllocator: not enough memory: you tried to allocate 1125899906842624 bytes.",
            "CUDA error: out of memory",
            "CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`",
        ] {
            let error = Error::failure(text);
            assert_eq!(error.code, Code::ResourceExhausted, "{text}");
            assert!(error.message.starts_with("the device ran out of memory: "), "{error}");
            assert!(error.message.ends_with(text));
        }
        let error = Error::failure("mat1 and mat2 shapes cannot be multiplied (2x3 and 4x5)");
        assert_eq!(error.code, Code::Internal);
    }
}
