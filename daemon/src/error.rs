//! The daemon's error type, and the one place where errors become gRPC
//! statuses.

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
