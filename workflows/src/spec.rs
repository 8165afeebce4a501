//! The workflow file as written: parsed with locations (for errors that
//! name a line and column), under a budget against hostile YAML.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::error::WorkflowError;
use crate::types::PortType;

/// A workflow file.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkflowFile {
    /// The workflow's name.
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Values the caller provides (`--set key=value`, a batch row's columns).
    #[serde(default)]
    pub inputs: BTreeMap<String, InputSpec>,
    /// The steps; edges come from the references between them.
    pub steps: Vec<StepSpec>,
    /// What the workflow returns, by file name (`speech.mp3`; without an
    /// extension, the kind's usual one): `${{ steps.ID.outputs.PORT }}`.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, String>")]
    pub outputs: BTreeMap<String, Spanned<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// text, number, integer, boolean, image, audio, video, mesh, or a list: `image[]`.
    #[serde(rename = "type")]
    pub ty: PortType,
    /// Used when the caller gives no value; without one the input is required.
    #[serde(default)]
    #[schemars(with = "Option<serde_json::Value>")]
    pub default: Option<Spanned<serde_json::Value>>,
    #[serde(default)]
    pub description: Option<String>,
    /// The caller may leave it out: steps then run without that parameter.
    #[serde(default)]
    pub optional: bool,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    /// The step's name, unique in the workflow; others refer to it as `steps.ID`.
    #[schemars(with = "String")]
    pub id: Spanned<String>,
    /// The node to run (`anyforge workflow nodes` lists them).
    #[schemars(with = "String")]
    pub uses: Spanned<String>,
    /// The node's inputs: literals, `${{ ... }}` references, or text with references in it.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, serde_json::Value>")]
    pub with: BTreeMap<String, Spanned<serde_json::Value>>,
    /// Run the step once per element of this list (`${{ ... }}`); inside
    /// `with`, `${{ item }}` is the element and `${{ index }}` its position.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub for_each: Option<Spanned<String>>,
}

/// A place in the file, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Loc {
    pub line: usize,
    pub column: usize,
}

impl std::fmt::Display for Loc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

pub fn loc<T>(s: &Spanned<T>) -> Loc {
    Loc {
        line: s.referenced.line() as usize,
        column: s.referenced.column() as usize,
    }
}

/// Limits on what a workflow file may hold. Configuration, with defaults.
#[derive(Debug, Clone, PartialEq, serde::Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkflowLimits {
    pub max_file_bytes: usize,
    pub max_steps: usize,
    /// Most elements one `for_each` may run over.
    pub max_fan_out: usize,
    /// Steps running at once.
    pub max_concurrent: usize,
    /// Rows one batch file may hold.
    pub max_batch_rows: usize,
}

impl Default for WorkflowLimits {
    fn default() -> Self {
        WorkflowLimits {
            max_file_bytes: 1 << 20,
            max_steps: 256,
            max_fan_out: 64,
            max_concurrent: 4,
            max_batch_rows: 100_000,
        }
    }
}

/// Parses a workflow file's text. YAML budgets (aliases, nesting, events)
/// are serde-saphyr's defaults; the size and step count are ours.
pub fn parse(text: &str, limits: &WorkflowLimits) -> Result<WorkflowFile, WorkflowError> {
    if text.len() > limits.max_file_bytes {
        return Err(WorkflowError::Limit(format!(
            "the file is {} bytes, over the limit of {}",
            text.len(),
            limits.max_file_bytes
        )));
    }
    let file: WorkflowFile =
        serde_saphyr::from_str(text).map_err(|e| WorkflowError::Yaml(e.to_string()))?;
    if file.steps.len() > limits.max_steps {
        return Err(WorkflowError::Limit(format!(
            "{} steps, over the limit of {}",
            file.steps.len(),
            limits.max_steps
        )));
    }
    Ok(file)
}
