//! The one error type of the media layer.

use std::path::PathBuf;

use crate::format::Format;

/// Everything that can go wrong reading, writing or converting media.
///
/// Messages are written to be shown to a user as they are: each names the
/// problem and, where there is one, the limit or field involved.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// Names its path itself, so callers need not add it again.
    #[error("{}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("unrecognised content: {0}")]
    UnknownFormat(String),
    #[error("{what} is {value}, over the limit of {limit}")]
    LimitExceeded {
        what: &'static str,
        value: u64,
        limit: u64,
    },
    #[error("invalid {format} data: {reason}")]
    Malformed { format: Format, reason: String },
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("encoding {format}: {reason}")]
    Encode { format: Format, reason: String },
}

impl MediaError {
    pub(crate) fn malformed(format: Format, reason: impl std::fmt::Display) -> Self {
        MediaError::Malformed {
            format,
            reason: reason.to_string(),
        }
    }

    pub(crate) fn encode(format: Format, reason: impl std::fmt::Display) -> Self {
        MediaError::Encode {
            format,
            reason: reason.to_string(),
        }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        MediaError::Io {
            path: path.into(),
            error: source,
        }
    }
}

pub type Result<T, E = MediaError> = std::result::Result<T, E>;
