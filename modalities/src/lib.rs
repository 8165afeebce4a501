//! Media values and file I/O for the five modalities anyforge reads and
//! writes: text, image, audio, video and 3D meshes.
//!
//! Every decoder takes [`Limits`] and checks them before it allocates, so a
//! hostile header is an error, never an out-of-memory. Formats are detected
//! from content ([`Format::detect`]); the file name chooses output formats.
//! This crate has no tensor code: uploads parse without a model loaded.

pub mod audio;
mod error;
mod ffmpeg;
pub mod format;
pub mod image;
pub mod info;
mod limits;
pub mod mesh;
pub mod text;
pub mod video;

use serde::{Deserialize, Serialize};

pub use crate::audio::Audio;
pub use crate::error::{MediaError, Result};
pub use crate::format::Format;
pub use crate::image::Image;
pub use crate::info::{convert, detect_file, info, read_media, MediaInfo};
pub use crate::limits::Limits;
pub use crate::mesh::Mesh;
pub use crate::text::Text;
pub use crate::video::{Rational, Sampling, Video};

/// The five modalities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Text,
    Image,
    Audio,
    Video,
    Mesh,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Text => "text",
            Kind::Image => "image",
            Kind::Audio => "audio",
            Kind::Video => "video",
            Kind::Mesh => "mesh",
        })
    }
}

/// One media value of any modality.
#[derive(Debug, Clone, PartialEq)]
pub enum Media {
    Text(Text),
    Image(Image),
    Audio(Audio),
    Video(Video),
    Mesh(Mesh),
}

impl Media {
    /// Writes the value in the format `path`'s extension names (default
    /// quality for lossy images).
    pub fn write(&self, path: &std::path::Path) -> Result<()> {
        match self {
            Media::Text(t) => t.write(path),
            Media::Image(i) => i.write(path, None),
            Media::Audio(a) => a.write(path),
            Media::Video(v) => v.write(path),
            Media::Mesh(m) => m.write(path),
        }
    }

    pub fn kind(&self) -> Kind {
        match self {
            Media::Text(_) => Kind::Text,
            Media::Image(_) => Kind::Image,
            Media::Audio(_) => Kind::Audio,
            Media::Video(_) => Kind::Video,
            Media::Mesh(_) => Kind::Mesh,
        }
    }
}

/// Reads a whole file, refusing it before reading when it is over the limit.
pub(crate) fn read_bounded(path: &std::path::Path, limits: &Limits) -> Result<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| MediaError::io(path, e))?;
    let len = file.metadata().map_err(|e| MediaError::io(path, e))?.len();
    limits::check("file size", len, limits.max_file_bytes)?;
    let mut bytes = Vec::with_capacity(len as usize);
    // `take` guards against a file that grows while we read it.
    file.take(limits.max_file_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| MediaError::io(path, e))?;
    limits::check("file size", bytes.len() as u64, limits.max_file_bytes)?;
    Ok(bytes)
}

/// Writes a file atomically: a temporary file in the same folder, fsync,
/// rename. A failed write never leaves a half-written output behind.
pub fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| MediaError::io(dir, e))?;
    tmp.write_all(bytes).map_err(|e| MediaError::io(path, e))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| MediaError::io(path, e))?;
    tmp.persist(path)
        .map_err(|e| MediaError::io(path, e.error))?;
    Ok(())
}

/// Lets a writer that needs a path (FFmpeg) produce a file atomically: it
/// writes to a temporary file beside `path`, which is synced and renamed
/// into place only when `write` succeeds.
pub(crate) fn write_atomic_with(
    path: &std::path::Path,
    write: impl FnOnce(&std::path::Path) -> Result<()>,
) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    let suffix = path
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    let tmp = tempfile::Builder::new()
        .prefix(".anyforge-")
        .suffix(&suffix)
        .tempfile_in(dir)
        .map_err(|e| MediaError::io(dir, e))?;
    write(tmp.path())?;
    std::fs::File::open(tmp.path())
        .and_then(|f| f.sync_all())
        .map_err(|e| MediaError::io(path, e))?;
    tmp.persist(path)
        .map_err(|e| MediaError::io(path, e.error))?;
    Ok(())
}

/// Runs a third-party decoder, turning a panic inside it into an error so
/// that malformed input can never take the process down.
pub(crate) fn guard<T>(format: Format, decode: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(decode)).unwrap_or_else(|_| {
        Err(MediaError::malformed(
            format,
            "the decoder failed on malformed input",
        ))
    })
}
