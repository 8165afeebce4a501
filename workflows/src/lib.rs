//! Declarative workflows: YAML graphs of generation tasks and media
//! operations (docs/workflows.md). A file is parsed with locations
//! ([`spec`]), checked as a whole ([`validate`]), and run with cached,
//! concurrent steps ([`run`]).

pub mod batch;
mod error;
pub mod expr;
pub mod io;
pub mod node;
pub mod nodes;
pub mod run;
pub mod spec;
pub mod store;
pub mod types;
pub mod validate;

pub use error::{Issue, Result, WorkflowError};
pub use run::{Event, RunOptions, RunReport};
pub use spec::WorkflowLimits;
pub use types::{PortType, Value};
pub use validate::Workflow;

/// Parses and checks a workflow file's text.
pub fn load_str(text: &str, limits: &WorkflowLimits) -> Result<Workflow> {
    validate::validate(spec::parse(text, limits)?)
}

/// Reads, parses and checks a workflow file.
pub fn load(path: &std::path::Path, limits: &WorkflowLimits) -> Result<Workflow> {
    let meta = std::fs::metadata(path).map_err(|error| WorkflowError::Io {
        path: path.into(),
        error,
    })?;
    if meta.len() > limits.max_file_bytes as u64 {
        return Err(WorkflowError::Limit(format!(
            "{}: {} bytes, over the limit of {}",
            path.display(),
            meta.len(),
            limits.max_file_bytes
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|error| WorkflowError::Io {
        path: path.into(),
        error,
    })?;
    load_str(&text, limits)
}

/// The JSON Schema of the workflow format, with the node names filled in.
pub fn schema() -> serde_json::Value {
    let mut schema =
        serde_json::to_value(schemars::schema_for!(spec::WorkflowFile)).unwrap_or_default();
    if let Some(uses) = schema.pointer_mut("/$defs/StepSpec/properties/uses") {
        uses["enum"] = serde_json::json!(nodes::names());
    }
    schema
}
