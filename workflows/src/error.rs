//! The workflows crate's error type.

use crate::spec::Loc;

/// One problem found in a workflow file, where it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Issue {
    pub loc: Loc,
    pub message: String,
}

impl std::fmt::Display for Issue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.loc, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    #[error("YAML: {0}")]
    Yaml(String),
    #[error("limit: {0}")]
    Limit(String),
    /// Everything validation found, one issue per line.
    #[error("{} problem(s):\n{}", .0.len(), .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Issue>),
    #[error("input {name}: {reason}")]
    Input { name: String, reason: String },
    #[error("{}: {error}", path.display())]
    Io {
        path: std::path::PathBuf,
        error: std::io::Error,
    },
    #[error(transparent)]
    Media(#[from] modalities::MediaError),
    #[error(transparent)]
    Pipeline(#[from] pipelines::PipelineError),
}

pub type Result<T, E = WorkflowError> = std::result::Result<T, E>;
