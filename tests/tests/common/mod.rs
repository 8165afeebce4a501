//! Helpers shared by the end-to-end tests: running the independent tools
//! (ffmpeg, sox, ImageMagick) that make fixtures, and comparing media.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use modalities::{Audio, Image};

/// Runs a fixture tool and fails the test, with its stderr, if it fails.
pub fn tool(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("{program} is needed for this test (scripts/setup-debian.sh installs it): {e}")
        });
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn ffmpeg(args: &[&str]) {
    let mut all = vec!["-v", "error", "-y", "-nostdin"];
    all.extend_from_slice(args);
    tool("ffmpeg", &all);
}

/// `ffprobe` one stream field, e.g. ("v:0", "codec_name").
pub fn ffprobe(path: &Path, stream: &str, field: &str) -> String {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            stream,
            "-show_entries",
            &format!("stream={field}"),
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .expect("ffprobe");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Decodes any audio file to mono-interleaved f32 with FFmpeg's CLI, an
/// implementation independent of ours (used to check what we write).
pub fn ffmpeg_decode_audio(path: &Path) -> (u32, u16, Vec<f32>) {
    let rate: u32 = ffprobe(path, "a:0", "sample_rate").parse().expect("rate");
    let channels: u16 = ffprobe(path, "a:0", "channels").parse().expect("channels");
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-i"])
        .arg(path)
        .args(["-f", "f32le", "-"])
        .output()
        .expect("ffmpeg");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let samples = out
        .stdout
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    (rate, channels, samples)
}

pub struct TempDir(pub tempfile::TempDir);

impl TempDir {
    pub fn new() -> TempDir {
        TempDir(tempfile::tempdir().expect("tempdir"))
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }
    pub fn str(&self, name: &str) -> String {
        self.path(name).to_string_lossy().into_owned()
    }
}

/// Peak signal-to-noise ratio of two same-sized images, in dB.
pub fn psnr(a: &Image, b: &Image) -> f64 {
    assert_eq!(
        (a.width, a.height, a.channels),
        (b.width, b.height, b.channels),
        "image shapes differ"
    );
    let mse = a
        .pixels
        .iter()
        .zip(&b.pixels)
        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
        .sum::<f64>()
        / a.pixels.len() as f64;
    if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (255.0f64.powi(2) / mse).log10()
    }
}

pub fn rms(samples: &[f32]) -> f32 {
    (samples.iter().map(|x| x * x).sum::<f32>() / samples.len().max(1) as f32).sqrt()
}

/// The frequency of a pure tone in the first channel, from the time between
/// its first and last zero crossings (so leading or trailing silence, such
/// as codec priming, does not count). Hysteresis at ±0.1 ignores codec noise.
pub fn tone_hz(audio: &Audio) -> f64 {
    let mut state = 0i8;
    let mut crossings = Vec::new();
    for (i, &s) in audio
        .samples
        .iter()
        .step_by(usize::from(audio.channels))
        .enumerate()
    {
        let now = if s > 0.1 {
            1
        } else if s < -0.1 {
            -1
        } else {
            state
        };
        if state != 0 && now != state {
            crossings.push(i);
        }
        state = now;
    }
    let (Some(first), Some(last)) = (crossings.first(), crossings.last()) else {
        return 0.0;
    };
    let seconds = (last - first) as f64 / f64::from(audio.sample_rate);
    (crossings.len() - 1) as f64 / 2.0 / seconds
}

/// The fixtures committed under `tests/fixtures`.
pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(rel)
}

/// A CRC-32 (PNG chunks need one to be well-formed enough to reach the check under test).
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A PNG chunk: length, type, data, CRC.
pub fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc32(&body).to_be_bytes());
    out
}

/// Fails with the largest per-sample difference, never the whole buffers.
pub fn assert_pixels_close(got: &Image, want: &Image, max_diff: u8, what: &str) {
    assert_eq!(
        (got.width, got.height, got.channels),
        (want.width, want.height, want.channels),
        "{what}: shape"
    );
    let (worst, count) =
        got.pixels
            .iter()
            .zip(&want.pixels)
            .fold((0u8, 0usize), |(w, c), (a, b)| {
                let d = a.abs_diff(*b);
                (w.max(d), c + usize::from(d > max_diff))
            });
    assert!(
        count == 0,
        "{what}: {count} samples differ by more than {max_diff} (worst {worst})"
    );
}

/// Inserts an EXIF APP1 segment carrying only an Orientation tag after a
/// JPEG's SOI marker, as cameras write it.
pub fn with_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let mut tiff = b"II*\0\x08\0\0\0".to_vec();
    tiff.extend_from_slice(&1u16.to_le_bytes()); // one IFD entry
    tiff.extend_from_slice(&0x0112u16.to_le_bytes()); // Orientation
    tiff.extend_from_slice(&3u16.to_le_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_le_bytes()); // count
    tiff.extend_from_slice(&orientation.to_le_bytes());
    tiff.extend_from_slice(&[0, 0]);
    tiff.extend_from_slice(&0u32.to_le_bytes()); // no next IFD
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xff, 0xe1]);
    out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}
