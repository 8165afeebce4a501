//! Workflow inputs from text (`--set`, CSV cells, JSONL values) and outputs
//! written into a folder, atomically and nowhere else.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use modalities::{Kind, Sampling};

use crate::error::{Result, WorkflowError};
use crate::types::{Base, PortType, Value};

fn bad(name: &str, reason: String) -> WorkflowError {
    WorkflowError::Input {
        name: name.into(),
        reason,
    }
}

/// A value of type `ty` from text: media are file paths (relative paths
/// from `base`), text is taken as it is, anything else is JSON.
pub fn parse_input(name: &str, raw: &str, ty: PortType, base: &Path) -> Result<Value> {
    if ty.is_media() && !ty.list {
        let path = base.join(raw);
        let media = modalities::read_media(&path, Sampling::All, &modalities::Limits::default())
            .map_err(|e| bad(name, format!("{}: {e}", path.display())))?;
        return Ok(Value::Media(media));
    }
    let literal = match ty.base {
        Base::Text if !ty.list => serde_json::Value::String(raw.into()),
        _ => serde_json::from_str(raw).map_err(|_| bad(name, format!("{raw:?} is not {ty}")))?,
    };
    Value::from_literal(&literal, ty).map_err(|e| bad(name, e))
}

/// A value of type `ty` from JSON (a JSONL row): strings go through
/// [`parse_input`] (paths, numbers written as text), the rest is literal.
pub fn json_input(name: &str, v: &serde_json::Value, ty: PortType, base: &Path) -> Result<Value> {
    match v {
        serde_json::Value::String(s) => parse_input(name, s, ty, base),
        other => Value::from_literal(other, ty).map_err(|e| bad(name, e)),
    }
}

fn extension(kind: Kind) -> &'static str {
    match kind {
        Kind::Text => "txt",
        Kind::Image => "png",
        Kind::Audio => "wav",
        Kind::Video => "mp4",
        Kind::Mesh => "glb",
    }
}

/// A file written, with its hash.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Written {
    pub path: PathBuf,
    pub sha256: String,
}

/// Writes every output into `dir` (created if needed). Names are plain
/// file names (validation refuses others); lists become `name-0.ext`, ...
pub fn write_outputs(dir: &Path, outputs: &BTreeMap<String, Value>) -> Result<Vec<Written>> {
    std::fs::create_dir_all(dir).map_err(|error| WorkflowError::Io {
        path: dir.into(),
        error,
    })?;
    let mut written = Vec::new();
    for (file, value) in outputs {
        write_one(dir, file, value, &mut written)?;
    }
    Ok(written)
}

fn write_one(dir: &Path, file: &str, value: &Value, written: &mut Vec<Written>) -> Result<()> {
    let with_ext = |kind| {
        if Path::new(file).extension().is_some() {
            file.to_string()
        } else {
            format!("{file}.{}", extension(kind))
        }
    };
    let path = match value {
        Value::List(items) => {
            let (stem, ext) = file
                .rsplit_once('.')
                .map_or((file, None), |(s, e)| (s, Some(e)));
            for (i, item) in items.iter().enumerate() {
                let name = ext.map_or(format!("{stem}-{i}"), |e| format!("{stem}-{i}.{e}"));
                write_one(dir, &name, item, written)?;
            }
            return Ok(());
        }
        Value::Media(m) => {
            let path = dir.join(with_ext(m.kind()));
            m.write(&path)?;
            path
        }
        other => {
            let path = dir.join(with_ext(Kind::Text));
            modalities::write_atomic(&path, other.as_text().unwrap_or_default().as_bytes())?;
            path
        }
    };
    let sha256 = pipelines::pack::sha256_file(&path).map_err(|error| WorkflowError::Io {
        path: path.clone(),
        error,
    })?;
    written.push(Written { path, sha256 });
    Ok(())
}
