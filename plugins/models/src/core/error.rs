//! The error type of model loading and running.

use std::path::PathBuf;

use inferd_sdk::files::FileRefusal;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} is not valid: {message}")]
    BadFile { path: PathBuf, message: String },
    /// A model file refused before it was parsed: not a regular file, over
    /// its size limit, or unreadable.
    #[error("{path} {reason}")]
    UnreadableFile { path: PathBuf, reason: FileRefusal },
    #[error("model directory {dir} has no {what}; expected {expected}")]
    MissingFile {
        dir: PathBuf,
        what: String,
        expected: String,
    },
    #[error("weight `{name}` is missing from {files}")]
    MissingWeight { name: String, files: String },
    #[error("weight `{name}` has shape {found:?} in the checkpoint, the model expects {expected:?}")]
    WeightShape {
        name: String,
        found: Vec<i64>,
        expected: Vec<i64>,
    },
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("invalid input: {0}")]
    InvalidInput(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("torch: {0}")]
    Torch(#[from] tch::TchError),
}

pub type Result<T, E = ModelError> = std::result::Result<T, E>;

impl ModelError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ModelError::Io {
            path: path.into(),
            source,
        }
    }

    pub fn unreadable(path: impl Into<PathBuf>, reason: FileRefusal) -> Self {
        ModelError::UnreadableFile {
            path: path.into(),
            reason,
        }
    }

    pub fn bad_file(path: impl Into<PathBuf>, message: impl ToString) -> Self {
        ModelError::BadFile {
            path: path.into(),
            message: message.to_string(),
        }
    }
}

/// How a model error is reported to the client: problems with the model's
/// files are the operator's to fix (FAILED_PRECONDITION), problems with the
/// input are the caller's (INVALID_ARGUMENT), a device out of memory is
/// RESOURCE_EXHAUSTED, the rest are INTERNAL.
impl From<ModelError> for inferd_sdk::Error {
    fn from(e: ModelError) -> Self {
        use inferd_sdk::Code;
        let code = match &e {
            ModelError::BadFile { .. }
            | ModelError::UnreadableFile { .. }
            | ModelError::MissingFile { .. }
            | ModelError::MissingWeight { .. }
            | ModelError::WeightShape { .. }
            | ModelError::Unsupported(_) => Code::FailedPrecondition,
            ModelError::InvalidInput(_) | ModelError::Tokenizer(_) => Code::InvalidArgument,
            ModelError::Torch(e) => return inferd_sdk::Error::failure(format!("torch: {e}")),
            ModelError::Io { .. } => Code::Internal,
        };
        // A caller's input error says what is wrong with the input, no more.
        let message = match e {
            ModelError::InvalidInput(message) => message,
            other => other.to_string(),
        };
        inferd_sdk::Error::new(code, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind, Tensor};

    #[test]
    fn libtorch_running_out_of_memory_is_resource_exhausted() {
        // 4 PiB: more than any machine can give, refused by the allocator.
        let error = Tensor::f_empty([1i64 << 50], (Kind::Float, Device::Cpu)).expect_err("refused");
        let status = inferd_sdk::Error::from(ModelError::from(error));
        assert_eq!(status.code, inferd_sdk::Code::ResourceExhausted, "{status}");
        assert!(status.message.contains("DefaultCPUAllocator"), "{status}");
        let shapes = Tensor::zeros([2, 3], (Kind::Float, Device::Cpu))
            .f_matmul(&Tensor::zeros([4, 5], (Kind::Float, Device::Cpu)));
        let status = inferd_sdk::Error::from(ModelError::from(shapes.expect_err("refused")));
        assert_eq!(status.code, inferd_sdk::Code::Internal, "{status}");
    }
}
