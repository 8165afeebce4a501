//! The pipelines crate's error type.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("{}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{}: {reason}", path.display())]
    BadFile { path: PathBuf, reason: String },
    #[error("config: {0}")]
    Config(String),
    #[error("unsupported model_type {0:?} (supported: qwen3_moe, qwen2_moe, mixtral, olmoe, deepseek_v2, llama, qwen2, qwen3, mistral)")]
    UnsupportedModel(String),
    #[error(transparent)]
    Weights(#[from] encoders::WeightsError),
    #[error(transparent)]
    Codec(#[from] encoders::CodecError),
    #[error(transparent)]
    Media(#[from] modalities::MediaError),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("chat template: {0}")]
    Template(String),
    #[error("invalid request: {0}")]
    Request(String),
    #[error("cancelled")]
    Cancelled,
    #[error("the queue is full ({0} requests waiting); retry later")]
    Busy(usize),
    #[error("tensor computation: {0}")]
    Tensor(#[from] candle_core::Error),
}

impl PipelineError {
    pub(crate) fn io(path: impl Into<PathBuf>, error: std::io::Error) -> Self {
        PipelineError::Io {
            path: path.into(),
            error,
        }
    }
    pub(crate) fn bad_file(path: impl Into<PathBuf>, reason: impl std::fmt::Display) -> Self {
        PipelineError::BadFile {
            path: path.into(),
            reason: reason.to_string(),
        }
    }
}

pub type Result<T, E = PipelineError> = std::result::Result<T, E>;
