//! Video: RGB frames at an exact rational frame rate, with an optional audio
//! track. Decoded and encoded in-process through FFmpeg; frames are sampled
//! while decoding so a long video never has to sit in memory whole.

use std::path::Path;

use serde::Serialize;

use crate::ffmpeg::video::{FrameReader, VideoWriter};
use crate::limits::check;
use crate::{write_atomic_with, Audio, Format, Image, Kind, Limits, MediaError, Result};

/// An exact frame rate, `num / den` frames per second (30000/1001 for NTSC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Rational {
    pub num: u32,
    pub den: u32,
}

impl Rational {
    pub fn new(num: u32, den: u32) -> Result<Rational> {
        if num == 0 || den == 0 {
            return Err(MediaError::Invalid(format!(
                "frame rate {num}/{den} is not positive"
            )));
        }
        Ok(Rational { num, den })
    }

    pub fn as_f64(self) -> f64 {
        f64::from(self.num) / f64::from(self.den.max(1))
    }
}

impl std::fmt::Display for Rational {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.num, self.den)
    }
}

/// Which frames to keep while decoding.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampling {
    /// Every frame (refused past `Limits::max_video_frames`).
    All,
    /// This many frames, evenly spaced over the whole video.
    Frames(u32),
    /// Frames at (at most) this rate.
    Fps(Rational),
}

/// A decoded video.
#[derive(Debug, Clone, PartialEq)]
pub struct Video {
    pub width: u32,
    pub height: u32,
    pub fps: Rational,
    /// RGB frames, all `width` x `height`.
    pub frames: Vec<Image>,
    pub audio: Option<Audio>,
}

/// What `probe` reports about a video file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VideoInfo {
    pub format: Format,
    pub width: u32,
    pub height: u32,
    pub fps: f64,
    pub frames: u64,
    pub duration_s: f64,
    pub has_audio: bool,
}

impl Video {
    pub fn new(fps: Rational, frames: Vec<Image>, audio: Option<Audio>) -> Result<Video> {
        let first = frames
            .first()
            .ok_or_else(|| MediaError::Invalid("a video needs at least one frame".into()))?;
        let (width, height) = (first.width, first.height);
        if let Some(i) = frames
            .iter()
            .position(|f| f.width != width || f.height != height)
        {
            return Err(MediaError::Invalid(format!(
                "frame {i} is {}x{}, frame 0 is {width}x{height}",
                frames[i].width, frames[i].height
            )));
        }
        let frames = frames.into_iter().map(|f| f.to_rgb()).collect();
        Ok(Video {
            width,
            height,
            fps,
            frames,
            audio,
        })
    }

    pub fn duration_s(&self) -> f64 {
        self.frames.len() as f64 / self.fps.as_f64()
    }

    /// Decodes a video file (MP4, MOV, MKV, WebM, AVI or GIF), keeping the
    /// frames `sampling` selects and the audio track if there is one.
    pub fn read(path: &Path, sampling: Sampling, limits: &Limits) -> Result<Video> {
        let format = detect_video(path, limits)?;
        let info = crate::ffmpeg::probe(path, format, limits)?;
        let stream = info
            .video
            .ok_or_else(|| MediaError::malformed(format, "no video stream"))?;
        let source_fps = Rational::new(
            stream.fps.numerator() as u32,
            stream.fps.denominator() as u32,
        )?;
        let max = limits.max_video_frames;
        let (keep, fps): (Box<dyn FnMut(u64, f64) -> bool>, Rational) = match sampling {
            Sampling::All => (Box::new(|_, _| true), source_fps),
            Sampling::Frames(n) => {
                check("requested frame count", n.into(), max.into())?;
                let total = stream.frames.max(1);
                let n = u64::from(n.max(1)).min(total);
                // Evenly spaced indices from the first frame to the last.
                let targets: Vec<u64> = (0..n)
                    .map(|k| if n == 1 { 0 } else { k * (total - 1) / (n - 1) })
                    .collect();
                let fps = approximate(n as f64 / info.duration_s.max(1e-9));
                let mut next = 0usize;
                (
                    Box::new(move |index, _| {
                        let hit = targets.get(next) == Some(&index);
                        next += usize::from(hit);
                        hit
                    }),
                    fps,
                )
            }
            Sampling::Fps(rate) if rate.as_f64() >= source_fps.as_f64() => {
                (Box::new(|_, _| true), source_fps)
            }
            Sampling::Fps(rate) => {
                let step = 1.0 / rate.as_f64();
                let mut next_time = f64::NEG_INFINITY;
                (
                    Box::new(move |_, t| {
                        // Half a frame of slack so rounded timestamps do not skip.
                        if t + 1e-6 >= next_time {
                            next_time = if next_time.is_finite() {
                                next_time + step
                            } else {
                                t + step
                            };
                            true
                        } else {
                            false
                        }
                    }),
                    rate,
                )
            }
        };
        let mut keep = keep;
        let mut reader = FrameReader::open(path, format, limits)?;
        let mut frames = Vec::new();
        let mut index = 0u64;
        while let Some((frame, t)) = reader.next_frame()? {
            if keep(index, t) {
                check(
                    "video frames kept in memory",
                    frames.len() as u64 + 1,
                    max.into(),
                )
                .map_err(|e| {
                    MediaError::Invalid(format!("{e}; sample the video by frame count or fps"))
                })?;
                frames.push(frame);
            }
            index += 1;
        }
        let audio = match info.has_audio {
            true => Some(crate::ffmpeg::audio::decode_file(path, format, limits)?),
            false => None,
        };
        Video::new(fps, frames, audio).map_err(|e| MediaError::malformed(format, e))
    }

    /// Writes MP4 (H.264 yuv420p + AAC) or WebM (VP9 + Opus), by extension.
    pub fn write(&self, path: &Path) -> Result<()> {
        let format = output_format(path)?;
        write_atomic_with(path, |tmp| {
            let mut writer = VideoWriter::create(
                tmp,
                format,
                self.width,
                self.height,
                (self.fps.num, self.fps.den),
                self.audio.as_ref(),
            )?;
            for frame in &self.frames {
                writer.push(frame)?;
            }
            writer.finish()
        })
    }
}

/// Streams `input` into `output` frame by frame, re-encoding video and audio;
/// memory stays bounded by one frame (plus the audio track).
pub fn transcode(input: &Path, output: &Path, limits: &Limits) -> Result<()> {
    let in_format = detect_video(input, limits)?;
    let out_format = output_format(output)?;
    let info = crate::ffmpeg::probe(input, in_format, limits)?;
    let stream = info
        .video
        .ok_or_else(|| MediaError::malformed(in_format, "no video stream"))?;
    let audio = match info.has_audio {
        true => Some(crate::ffmpeg::audio::decode_file(input, in_format, limits)?),
        false => None,
    };
    // yuv420p needs even dimensions: drop a trailing odd row or column.
    let (width, height) = (stream.width & !1, stream.height & !1);
    if width == 0 || height == 0 {
        return Err(MediaError::Invalid(format!(
            "video {}x{} is too small to encode",
            stream.width, stream.height
        )));
    }
    let fps = (
        stream.fps.numerator() as u32,
        stream.fps.denominator() as u32,
    );
    let mut reader = FrameReader::open(input, in_format, limits)?;
    write_atomic_with(output, |tmp| {
        let mut writer = VideoWriter::create(tmp, out_format, width, height, fps, audio.as_ref())?;
        while let Some((frame, _)) = reader.next_frame()? {
            writer.push(&crop(&frame, width, height))?;
        }
        writer.finish()
    })
}

/// Probes a video file: streams, exact frame count (by demuxing) and duration.
pub fn probe(path: &Path, format: Format, limits: &Limits) -> Result<VideoInfo> {
    let info = crate::ffmpeg::probe(path, format, limits)?;
    let stream = info
        .video
        .ok_or_else(|| MediaError::malformed(format, "no video stream"))?;
    Ok(VideoInfo {
        format,
        width: stream.width,
        height: stream.height,
        fps: crate::ffmpeg::rational_f64(stream.fps),
        frames: stream.frames,
        duration_s: info.duration_s,
        has_audio: info.has_audio,
    })
}

fn crop(frame: &Image, width: u32, height: u32) -> Image {
    if frame.width == width && frame.height == height {
        return frame.clone();
    }
    let row = frame.width as usize * 3;
    let pixels = frame
        .pixels
        .chunks_exact(row)
        .take(height as usize)
        .flat_map(|r| &r[..width as usize * 3])
        .copied()
        .collect();
    Image {
        width,
        height,
        channels: 3,
        pixels,
    }
}

/// The closest rational with a denominator of at most 1001.
fn approximate(fps: f64) -> Rational {
    let den = 1000u32;
    let num = (fps * f64::from(den)).round().max(1.0) as u32;
    let g = gcd(num, den);
    Rational {
        num: num / g,
        den: den / g,
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a.max(1)
    } else {
        gcd(b, a % b)
    }
}

fn output_format(path: &Path) -> Result<Format> {
    match Format::for_output(path) {
        Some((format, Kind::Video)) => Ok(format),
        _ => Err(MediaError::Unsupported(format!(
            "{}: not a video extension (mp4, webm)",
            path.display()
        ))),
    }
}

fn detect_video(path: &Path, limits: &Limits) -> Result<Format> {
    let (format, kind) = crate::info::detect_file(path, limits)?;
    match (format, kind) {
        (Format::Gif, _) | (_, Kind::Video) => Ok(format),
        (f, k) => Err(MediaError::Invalid(format!(
            "expected a video, found {k} ({f})"
        ))),
    }
}
