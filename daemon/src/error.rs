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
    #[error("{0}")]
    DeadlineExceeded(String),
    #[error("{0}")]
    Internal(String),
}

impl DaemonError {
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
            DaemonError::DeadlineExceeded(m) => Status::deadline_exceeded(m),
            DaemonError::Internal(m) => Status::internal(m),
        }
    }
}

pub type Result<T, E = DaemonError> = std::result::Result<T, E>;

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
}
