//! Audio decoding: header checks that symphonia would otherwise trust, then
//! symphonia, then FFmpeg for codecs symphonia does not have (Opus).

use std::io::Cursor;
use std::path::Path;

use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{DecoderOptions, CODEC_TYPE_NULL};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::{Limit, MetadataOptions};
use symphonia::core::probe::Hint;

use super::{Audio, AudioInfo};
use crate::format::SNIFF_BYTES;
use crate::limits::check;
use crate::{guard, Format, Kind, Limits, MediaError, Result};

/// Most bytes of tags and cover art symphonia may buffer.
const METADATA_BYTES: usize = 8 << 20;
/// Consecutive corrupt packets tolerated before giving up.
const MAX_BAD_PACKETS: u32 = 64;

enum Decoded {
    Audio(Audio),
    /// Symphonia lacks the codec or container: try FFmpeg.
    NeedsFfmpeg,
}

pub(crate) fn decode(bytes: &[u8], path: Option<&Path>, limits: &Limits) -> Result<Audio> {
    let format = detect_audio(bytes)?;
    check_headers(bytes, format)?;
    let decoded = match format {
        // Symphonia has no Opus decoder; fuzzing found its Matroska demuxer
        // overflowing, its MP4 reader allocating what a bogus atom claims and
        // its ADTS reader stepping by zero on short streams. FFmpeg reads these.
        Format::Opus | Format::Matroska | Format::Mp4 | Format::Aac => Decoded::NeedsFfmpeg,
        _ => guard(format, || decode_symphonia(bytes, format, limits))?,
    };
    match decoded {
        Decoded::Audio(audio) => Ok(audio),
        Decoded::NeedsFfmpeg => match path {
            Some(path) => crate::ffmpeg::audio::decode_file(path, format, limits),
            None => {
                let tmp = tempfile::NamedTempFile::new()
                    .map_err(|e| MediaError::io(std::env::temp_dir(), e))?;
                std::fs::write(tmp.path(), bytes).map_err(|e| MediaError::io(tmp.path(), e))?;
                crate::ffmpeg::audio::decode_file(tmp.path(), format, limits)
            }
        },
    }
}

/// Sample rate, channels and exact duration (by decoding, bounded by limits).
pub fn probe(bytes: &[u8], path: Option<&Path>, limits: &Limits) -> Result<AudioInfo> {
    let format = detect_audio(bytes)?;
    let audio = decode(bytes, path, limits)?;
    Ok(AudioInfo {
        format,
        sample_rate: audio.sample_rate,
        channels: audio.channels,
        duration_s: audio.duration_s(),
    })
}

fn detect_audio(bytes: &[u8]) -> Result<Format> {
    let head = &bytes[..bytes.len().min(SNIFF_BYTES)];
    match Format::detect(head, bytes.len() as u64, None) {
        Some(f) if f.kind() == Some(Kind::Audio) || f == Format::Mp4 || f == Format::Matroska => {
            Ok(f)
        }
        Some(f) => Err(MediaError::Invalid(format!("expected audio, found {f}"))),
        None => Err(MediaError::UnknownFormat(
            "not a WAV, FLAC, MP3, Ogg, Opus, AAC or M4A audio file".into(),
        )),
    }
}

/// Checks the header fields that decoders use to size buffers against the
/// actual file, so a lying header is refused before anything is allocated.
fn check_headers(bytes: &[u8], format: Format) -> Result<()> {
    let u32_le = |at: usize| {
        bytes
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u16_le = |at: usize| {
        bytes
            .get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    if bytes.starts_with(b"ID3") {
        let Some(size) = bytes.get(6..10) else {
            return Err(MediaError::malformed(format, "truncated ID3 tag header"));
        };
        if size.iter().any(|b| b & 0x80 != 0) {
            return Err(MediaError::malformed(
                format,
                "ID3 tag size is not syncsafe",
            ));
        }
        let size = size.iter().fold(0u64, |acc, &b| (acc << 7) | u64::from(b)) + 10;
        if size > bytes.len() as u64 {
            return Err(MediaError::malformed(
                format,
                format!(
                    "ID3 tag claims {size} bytes but the file has {}",
                    bytes.len()
                ),
            ));
        }
    }
    if format == Format::Flac {
        check_flac_metadata(bytes)?;
    }
    if format == Format::Wav && bytes.starts_with(b"RIFF") {
        let mut at = 12usize;
        while let (Some(size), Some(id)) = (u32_le(at + 4), bytes.get(at..at + 4)) {
            let body = at + 8;
            let remaining = (bytes.len() - body) as u64;
            match id {
                b"fmt " => {
                    let (channels, rate) = (u16_le(body + 2), u32_le(body + 4));
                    let (Some(channels), Some(rate)) = (channels, rate) else {
                        return Err(MediaError::malformed(format, "truncated fmt chunk"));
                    };
                    if channels == 0 {
                        return Err(MediaError::malformed(
                            format,
                            "fmt chunk declares 0 channels",
                        ));
                    }
                    if rate == 0 {
                        return Err(MediaError::malformed(
                            format,
                            "fmt chunk declares a sample rate of 0",
                        ));
                    }
                }
                // 0xFFFFFFFF is the streaming writers' "unknown length".
                b"data" if size != u32::MAX && u64::from(size) > remaining => {
                    return Err(MediaError::malformed(
                        format,
                        format!("data chunk claims {size} bytes but only {remaining} follow"),
                    ));
                }
                b"data" => return Ok(()),
                _ => {}
            }
            at = body + size as usize + (size as usize & 1);
        }
        return Err(MediaError::malformed(format, "no data chunk"));
    }
    Ok(())
}

/// Walks FLAC's metadata blocks: each must fit in the file, and a PICTURE
/// block's inner lengths must fit in the block (fuzzing found a picture
/// claiming 4 GiB that the decoder tried to allocate).
fn check_flac_metadata(bytes: &[u8]) -> Result<()> {
    let bad = |reason: String| Err(MediaError::malformed(Format::Flac, reason));
    let mut at = 4usize;
    loop {
        let Some(header) = bytes.get(at..at + 4) else {
            return bad("truncated metadata block header".into());
        };
        let (last, kind) = (header[0] & 0x80 != 0, header[0] & 0x7f);
        let len =
            (usize::from(header[1]) << 16) | (usize::from(header[2]) << 8) | usize::from(header[3]);
        let body = at + 4;
        let Some(block) = bytes.get(body..body + len) else {
            return bad(format!(
                "metadata block of {len} bytes runs past the end of the file"
            ));
        };
        if kind == 6 {
            // PICTURE: type, mime (len + bytes), description (len + bytes),
            // width, height, depth, colours, data (len + bytes).
            let u32_at = |o: usize| {
                block
                    .get(o..o + 4)
                    .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
            };
            let mut o = 4;
            for field in ["MIME type", "description"] {
                let Some(n) = u32_at(o) else {
                    return bad(format!("picture {field} length is missing"));
                };
                o = o.saturating_add(4).saturating_add(n);
                if o > len {
                    return bad(format!(
                        "picture {field} claims {n} bytes, more than its block"
                    ));
                }
            }
            o += 16;
            match u32_at(o) {
                Some(n) if o + 4 + n <= len => {}
                Some(n) => {
                    return bad(format!(
                        "picture data claims {n} bytes, more than its block"
                    ))
                }
                None => return bad("picture data length is missing".into()),
            }
        }
        at = body + len;
        if last {
            return Ok(());
        }
    }
}

fn decode_symphonia(bytes: &[u8], format: Format, limits: &Limits) -> Result<Decoded> {
    let err = |e: SymphoniaError| MediaError::malformed(format, e);
    let source = MediaSourceStream::new(Box::new(Cursor::new(bytes.to_vec())), Default::default());
    let mut hint = Hint::new();
    hint.with_extension(match format {
        Format::Wav => "wav",
        Format::Flac => "flac",
        Format::Mp3 => "mp3",
        _ => "ogg",
    });
    let metadata = MetadataOptions {
        limit_metadata_bytes: Limit::Maximum(METADATA_BYTES),
        limit_visual_bytes: Limit::Maximum(METADATA_BYTES),
    };
    // Gapless trims encoder delay and padding (LAME and iTunes tags), so
    // durations match what was encoded.
    let options = FormatOptions {
        enable_gapless: true,
        ..FormatOptions::default()
    };
    let probed = match symphonia::default::get_probe().format(&hint, source, &options, &metadata) {
        Ok(p) => p,
        Err(SymphoniaError::Unsupported(_))
            if matches!(format, Format::Mp4 | Format::Matroska | Format::Ogg) =>
        {
            return Ok(Decoded::NeedsFfmpeg)
        }
        Err(e) => return Err(err(e)),
    };
    let mut reader = probed.format;
    let track = reader
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or_else(|| MediaError::malformed(format, "no audio track"))?;
    let track_id = track.id;
    let params = track.codec_params.clone();
    let sample_rate = params
        .sample_rate
        .ok_or_else(|| MediaError::malformed(format, "no sample rate"))?;
    // MP4 tracks may leave the layout to the codec: then the first decoded
    // packet tells, and is checked against the limits before it is kept.
    let declared = params.channels.map(|c| c.count() as u16);
    limits.check_audio_format(sample_rate, declared.unwrap_or(1))?;
    let mut channels = declared.unwrap_or(0);
    let max_frames = limits.max_audio_frames(sample_rate);
    let mut decoder =
        match symphonia::default::get_codecs().make(&params, &DecoderOptions::default()) {
            Ok(d) => d,
            Err(SymphoniaError::Unsupported(_)) => return Ok(Decoded::NeedsFfmpeg),
            Err(e) => return Err(err(e)),
        };
    // Reserve from the header's frame count only up to the limit; the
    // running total below is what actually bounds memory.
    let hinted = params.n_frames.unwrap_or(0).min(max_frames);
    let mut samples: Vec<f32> = Vec::with_capacity(
        (hinted as usize)
            .saturating_mul(usize::from(channels.max(1)))
            .min(1 << 26),
    );
    let mut buffer: Option<SampleBuffer<f32>> = None;
    let mut bad_packets = 0;
    loop {
        let packet = match reader.next_packet() {
            Ok(p) => p,
            Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                break
            }
            Err(SymphoniaError::ResetRequired) => break,
            Err(e) => return Err(err(e)),
        };
        if packet.track_id() != track_id {
            continue;
        }
        match decoder.decode(&packet) {
            Ok(decoded) => {
                bad_packets = 0;
                let spec = *decoded.spec();
                if channels == 0 {
                    channels = spec.channels.count() as u16;
                    limits.check_audio_format(sample_rate, channels)?;
                }
                if spec.channels.count() != usize::from(channels) {
                    return Err(MediaError::malformed(
                        format,
                        "channel count changes mid-stream",
                    ));
                }
                let total = (samples.len() / usize::from(channels) + decoded.frames()) as u64;
                check("audio length (sample frames)", total, max_frames)?;
                let buf = match buffer.as_mut() {
                    Some(b) if b.capacity() >= decoded.capacity() * spec.channels.count() => b,
                    _ => buffer.insert(SampleBuffer::new(decoded.capacity() as u64, spec)),
                };
                buf.copy_interleaved_ref(decoded);
                samples.extend_from_slice(buf.samples());
            }
            Err(SymphoniaError::DecodeError(_)) => {
                bad_packets += 1;
                if bad_packets > MAX_BAD_PACKETS {
                    return Err(MediaError::malformed(format, "too many corrupt packets"));
                }
            }
            Err(SymphoniaError::Unsupported(_)) => return Ok(Decoded::NeedsFfmpeg),
            Err(e) => return Err(err(e)),
        }
    }
    if samples.is_empty() {
        return Err(MediaError::malformed(format, "no audio could be decoded"));
    }
    Audio::new(sample_rate, channels, samples).map(Decoded::Audio)
}
