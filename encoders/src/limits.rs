//! How much work one encode or decode may ask for. Neural codecs hold
//! activations of many channels per pixel or sample, so their limits are far
//! below what the media readers accept.

use serde::{Deserialize, Serialize};

use crate::error::{CodecError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CodecLimits {
    /// Pixels of one image (or frame) encoded or decoded: 2048 x 2048.
    pub max_pixels: u64,
    /// Seconds of audio encoded or decoded.
    pub max_audio_seconds: f64,
    /// Frames of one video.
    pub max_frames: usize,
    /// Triangles of one mesh.
    pub max_faces: usize,
}

impl Default for CodecLimits {
    fn default() -> Self {
        CodecLimits {
            max_pixels: 2048 * 2048,
            max_audio_seconds: 600.0,
            max_frames: 1000,
            max_faces: 1_000_000,
        }
    }
}

/// `Err` naming `what` when `value > limit`.
pub fn check(what: &str, value: f64, limit: f64) -> Result<()> {
    if value > limit {
        Err(CodecError::Limit(format!(
            "{what} is {value}, over the limit of {limit}"
        )))
    } else {
        Ok(())
    }
}
