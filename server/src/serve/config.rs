//! `anyforge serve` settings: flags, then `ANYFORGE_*` environment
//! variables, then an optional YAML config file, then defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use pipelines::generate::EngineConfig;
use serde::Deserialize;

/// Request limits. Configuration, with defaults for a small server.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServeLimits {
    /// Largest request body (JSON or multipart), in bytes.
    pub max_body_bytes: usize,
    /// Deepest nesting of arrays and objects in a JSON body.
    pub max_json_depth: usize,
    /// Most outputs (`n`) one request may ask for.
    pub max_n: usize,
    /// Most generated tokens (`max_tokens`) of a text request.
    pub max_tokens: usize,
    /// Largest side, in pixels, of a requested image or video size.
    pub max_image_side: u32,
    /// Longest video a request may ask for, in seconds.
    pub max_video_seconds: f64,
    /// Longest speech input, in characters.
    pub max_speech_chars: usize,
    /// Decoding limits for uploaded media (images, audio, video).
    pub media: modalities::Limits,
    /// Limits on posted workflows (steps, fan-out, batch rows).
    pub workflow: workflows::WorkflowLimits,
    /// Seconds a draining server gives requests in flight before it
    /// cancels them (SIGTERM or Ctrl-C).
    pub drain_seconds: u64,
    /// Batch size, step budget, queue bound and context of the engine.
    pub engine: EngineConfig,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            max_body_bytes: 32 << 20,
            max_json_depth: 32,
            max_n: 8,
            max_tokens: 4096,
            max_image_side: 1024,
            max_video_seconds: 20.0,
            max_speech_chars: 4096,
            media: modalities::Limits {
                max_file_bytes: 32 << 20,
                max_pixels: 16 << 20,
                max_audio_seconds: 600.0,
                max_video_seconds: 60.0,
                ..modalities::Limits::default()
            },
            workflow: workflows::WorkflowLimits::default(),
            drain_seconds: 30,
            engine: EngineConfig::default(),
        }
    }
}

/// The config file (`--config FILE`, YAML): every setting of the command
/// line, and the limits.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServeFile {
    pub pack: Option<PathBuf>,
    pub addr: Option<SocketAddr>,
    pub api_key: Option<String>,
    pub allow_unauthenticated: Option<bool>,
    pub data_dir: Option<PathBuf>,
    pub limits: ServeLimits,
}

#[derive(Args)]
pub struct ServeArgs {
    /// A model pack folder (default: the config file's, else the default pack).
    #[arg(long, env = "ANYFORGE_PACK")]
    pack: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "ANYFORGE_ADDR")]
    addr: Option<SocketAddr>,
    /// Clients must send `Authorization: Bearer KEY`.
    #[arg(long, env = "ANYFORGE_API_KEY")]
    api_key: Option<String>,
    /// Allow a non-loopback address without an API key.
    #[arg(long, env = "ANYFORGE_ALLOW_UNAUTHENTICATED")]
    allow_unauthenticated: bool,
    /// A YAML file of settings (`pack`, `addr`, `api_key`, `data_dir`,
    /// `limits`); flags and environment variables win over it.
    #[arg(long, env = "ANYFORGE_CONFIG")]
    config: Option<PathBuf>,
    /// Where jobs and their files are kept across restarts [default: anyforge-data].
    #[arg(long, env = "ANYFORGE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Log lines as JSON (one object per line) instead of text.
    #[arg(long, env = "ANYFORGE_LOG_JSON")]
    pub log_json: bool,
}

/// Settings resolved from flags, environment, file and defaults.
#[derive(Debug)]
pub struct Settings {
    pub pack: PathBuf,
    pub addr: SocketAddr,
    pub api_key: Option<String>,
    pub data_dir: PathBuf,
    pub limits: ServeLimits,
}

impl ServeArgs {
    pub fn resolve(self) -> Result<Settings> {
        let file = match &self.config {
            None => ServeFile::default(),
            Some(path) => read_file(path)?,
        };
        let settings = Settings {
            pack: match self.pack.or(file.pack) {
                Some(pack) => pack,
                None => crate::assets::default_pack()?,
            },
            addr: self
                .addr
                .or(file.addr)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
            api_key: self.api_key.or(file.api_key),
            data_dir: self
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from("anyforge-data")),
            limits: file.limits,
        };
        let open = self.allow_unauthenticated || file.allow_unauthenticated == Some(true);
        if !settings.addr.ip().is_loopback() && settings.api_key.is_none() && !open {
            bail!(
                "addr {}: serving beyond this machine needs an API key (--api-key) or --allow-unauthenticated",
                settings.addr
            );
        }
        Ok(settings)
    }
}

fn read_file(path: &Path) -> Result<ServeFile> {
    let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
    let mut file: ServeFile =
        serde_saphyr::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    // Relative paths in the file are relative to the file.
    let base = path.parent().unwrap_or(Path::new("."));
    for p in [&mut file.pack, &mut file.data_dir].into_iter().flatten() {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    }
    Ok(file)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn write(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("anyforge.yaml");
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn flags_win_over_the_file_which_wins_over_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(
            dir.path(),
            "addr: 127.0.0.1:9001\ndata_dir: jobs\nlimits:\n  max_n: 2\n  media:\n    max_pixels: 1000\n",
        );
        let cli = Cli::parse_from(["x", "--config", file.to_str().unwrap()]);
        let s = cli.serve.resolve().unwrap();
        assert_eq!(s.addr.port(), 9001);
        assert_eq!(s.data_dir, dir.path().join("jobs"), "relative to the file");
        assert_eq!(s.limits.max_n, 2);
        assert_eq!(s.limits.media.max_pixels, 1000);
        assert_eq!(s.limits.max_tokens, ServeLimits::default().max_tokens);

        let cli = Cli::parse_from([
            "x",
            "--config",
            file.to_str().unwrap(),
            "--addr",
            "127.0.0.1:9002",
        ]);
        assert_eq!(cli.serve.resolve().unwrap().addr.port(), 9002);
    }

    #[test]
    fn a_bad_file_names_itself_and_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(dir.path(), "limits:\n  max_m: 2\n");
        let cli = Cli::parse_from(["x", "--config", file.to_str().unwrap()]);
        let e = format!("{:#}", cli.serve.resolve().unwrap_err());
        assert!(e.contains("anyforge.yaml") && e.contains("max_m"), "{e}");
    }

    #[test]
    fn a_public_address_needs_a_key() {
        let cli = Cli::parse_from(["x", "--addr", "0.0.0.0:8080"]);
        let e = cli.serve.resolve().unwrap_err().to_string();
        assert!(e.contains("--api-key"), "{e}");
        let cli = Cli::parse_from(["x", "--addr", "0.0.0.0:8080", "--api-key", "k"]);
        assert!(cli.serve.resolve().is_ok());
    }
}
