//! Decoding limits: every decoder checks these before it allocates.

use serde::{Deserialize, Serialize};

use crate::error::{MediaError, Result};

/// Bounds on what a decoder will accept. They are configuration (serde), with
/// defaults sized for a generation server: large enough for real media, small
/// enough that a hostile header cannot make the process allocate gigabytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest input file, in bytes.
    pub max_file_bytes: u64,
    /// Largest width or height of an image or video frame.
    pub max_dimension: u32,
    /// Largest pixel count of one image or video frame.
    pub max_pixels: u64,
    /// Most frames read from an animated image.
    pub max_image_frames: u32,
    /// Longest audio, in seconds (also bounds a video's audio track).
    pub max_audio_seconds: f64,
    /// Most audio channels.
    pub max_channels: u16,
    /// Highest audio sample rate, in Hz.
    pub max_sample_rate: u32,
    /// Longest video, in seconds.
    pub max_video_seconds: f64,
    /// Most video frames held in memory at once (a decoded `Video` value).
    pub max_video_frames: u32,
    /// Most mesh vertices.
    pub max_vertices: u64,
    /// Most mesh faces (triangles after triangulation).
    pub max_faces: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_file_bytes: 1 << 30,
            max_dimension: 16_384,
            max_pixels: 64 * 1024 * 1024,
            max_image_frames: 1_000,
            max_audio_seconds: 3_600.0,
            max_channels: 16,
            max_sample_rate: 384_000,
            max_video_seconds: 4.0 * 3_600.0,
            max_video_frames: 2_000,
            max_vertices: 10_000_000,
            max_faces: 20_000_000,
        }
    }
}

/// Fails with `LimitExceeded` when `value > limit`.
pub(crate) fn check(what: &'static str, value: u64, limit: u64) -> Result<()> {
    if value > limit {
        Err(MediaError::LimitExceeded { what, value, limit })
    } else {
        Ok(())
    }
}

impl Limits {
    pub(crate) fn check_frame_size(&self, width: u32, height: u32) -> Result<()> {
        if width == 0 || height == 0 {
            return Err(MediaError::Invalid(format!(
                "image size {width}x{height} has a zero dimension"
            )));
        }
        check("width", width.into(), self.max_dimension.into())?;
        check("height", height.into(), self.max_dimension.into())?;
        check(
            "pixel count",
            u64::from(width) * u64::from(height),
            self.max_pixels,
        )
    }

    pub(crate) fn check_audio_format(&self, sample_rate: u32, channels: u16) -> Result<()> {
        if sample_rate == 0 {
            return Err(MediaError::Invalid("audio sample rate is 0".into()));
        }
        if channels == 0 {
            return Err(MediaError::Invalid("audio has 0 channels".into()));
        }
        check(
            "sample rate",
            sample_rate.into(),
            self.max_sample_rate.into(),
        )?;
        check("channel count", channels.into(), self.max_channels.into())
    }

    /// The most sample frames (per channel) an audio stream may decode to.
    pub(crate) fn max_audio_frames(&self, sample_rate: u32) -> u64 {
        (self.max_audio_seconds * f64::from(sample_rate)).ceil() as u64
    }
}
