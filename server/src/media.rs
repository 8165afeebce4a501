//! `anyforge media info|convert`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Subcommand;
use modalities::{Limits, MediaError};

#[derive(Subcommand)]
pub enum MediaCommand {
    /// Print one JSON object describing a media file.
    Info {
        file: PathBuf,
        /// A JSON file of decoding limits (see `modalities::Limits`).
        #[arg(long)]
        limits: Option<PathBuf>,
    },
    /// Convert within a modality; the output format comes from OUT's extension.
    Convert {
        input: PathBuf,
        output: PathBuf,
        #[arg(long)]
        limits: Option<PathBuf>,
    },
}

pub fn run(command: MediaCommand) -> Result<()> {
    match command {
        MediaCommand::Info { file, limits } => {
            let limits = load_limits(limits.as_deref())?;
            let info =
                modalities::info(&file, &limits).with_context(|| file.display().to_string())?;
            println!("{}", serde_json::to_string(&info)?);
            Ok(())
        }
        MediaCommand::Convert {
            input,
            output,
            limits,
        } => {
            let limits = load_limits(limits.as_deref())?;
            modalities::convert(&input, &output, &limits).map_err(|e| naming(&input, e))
        }
    }
}

/// Prefixes the file name, unless the error already names its path.
fn naming(path: &Path, e: MediaError) -> anyhow::Error {
    match e {
        MediaError::Io { .. } => e.into(),
        other => anyhow::Error::new(other).context(path.display().to_string()),
    }
}

pub fn load_limits(path: Option<&Path>) -> Result<Limits> {
    let Some(path) = path else {
        return Ok(Limits::default());
    };
    let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
    serde_json::from_str(&text).with_context(|| format!("{}: invalid limits", path.display()))
}
