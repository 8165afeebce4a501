//! The encoders crate's error types.

use std::path::PathBuf;

use modalities::MediaError;

/// Loading tensors from a checkpoint folder (shared with the backbone).
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("{}: {reason}", path.display())]
    BadFile { path: PathBuf, reason: String },
    #[error("missing tensor {name} in {}", dir.display())]
    MissingTensor { name: String, dir: PathBuf },
    #[error("tensor {name} has shape {actual:?}, expected {expected:?}")]
    TensorShape {
        name: String,
        actual: Vec<usize>,
        expected: Vec<usize>,
    },
    #[error("{}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("tensor computation: {0}")]
    Tensor(#[from] candle_core::Error),
}

impl WeightsError {
    pub fn io(path: impl Into<PathBuf>, error: std::io::Error) -> Self {
        WeightsError::Io {
            path: path.into(),
            error,
        }
    }
    pub fn bad_file(path: impl Into<PathBuf>, reason: impl std::fmt::Display) -> Self {
        WeightsError::BadFile {
            path: path.into(),
            reason: reason.to_string(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error("{}: {reason}", path.display())]
    Config { path: PathBuf, reason: String },
    #[error("unknown codec {0:?}: {1}")]
    UnknownCodec(String, String),
    /// Codes that cannot be decoded: out of range, wrong grid, empty.
    #[error("bad codes: {0}")]
    Codes(String),
    /// Media this codec cannot encode as given (wrong kind or size).
    #[error("cannot encode: {0}")]
    Input(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A request over a configured limit (see `CodecLimits`).
    #[error("limit: {0}")]
    Limit(String),
    #[error(transparent)]
    Media(#[from] MediaError),
    #[error("tensor computation: {0}")]
    Tensor(#[from] candle_core::Error),
}

impl CodecError {
    pub fn config(path: impl Into<PathBuf>, reason: impl std::fmt::Display) -> Self {
        CodecError::Config {
            path: path.into(),
            reason: reason.to_string(),
        }
    }
}

pub type Result<T, E = CodecError> = std::result::Result<T, E>;
