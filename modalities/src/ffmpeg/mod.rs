//! The FFmpeg boundary. Everything that touches `ffmpeg-next` lives here:
//! opening inputs under a strict allowlist, decoding and encoding streams.

pub(crate) mod audio;
pub(crate) mod tempo;
pub(crate) mod video;

use std::path::Path;
use std::sync::OnceLock;

use ffmpeg_next as ff;

use crate::{Format, Limits, MediaError, Result};

/// Demuxers FFmpeg may use. Playlists (HLS, DASH), `concat`, image sequences,
/// raw streams and every network demuxer are refused by FFmpeg itself, so a
/// file that poses as a video can never make it open another file or a URL.
const DEMUXERS: &str = "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi,gif,ogg,mp3,aac,flac,wav";

pub(crate) fn init() -> Result<()> {
    static INIT: OnceLock<Result<(), String>> = OnceLock::new();
    INIT.get_or_init(|| {
        ff::init().map_err(|e| e.to_string())?;
        // FFmpeg logs to stderr; quiet unless asked (ANYFORGE_FFMPEG_LOG=warning|info|debug).
        let level = match std::env::var("ANYFORGE_FFMPEG_LOG").as_deref() {
            Ok("error") => ff::util::log::Level::Error,
            Ok("warning") => ff::util::log::Level::Warning,
            Ok("info") => ff::util::log::Level::Info,
            Ok("debug") => ff::util::log::Level::Debug,
            _ => ff::util::log::Level::Fatal,
        };
        ff::util::log::set_level(level);
        Ok(())
    })
    .clone()
    .map_err(|e| MediaError::Unsupported(format!("FFmpeg failed to initialise: {e}")))
}

/// Opens a local file for demuxing with only the `file` protocol and the
/// allowlisted demuxers, and with references to other files disabled.
pub(crate) fn open_input(
    path: &Path,
    format: Format,
    limits: &Limits,
) -> Result<ff::format::context::Input> {
    init()?;
    let meta = std::fs::metadata(path).map_err(|e| MediaError::io(path, e))?;
    crate::limits::check("file size", meta.len(), limits.max_file_bytes)?;
    let absolute = std::path::absolute(path).map_err(|e| MediaError::io(path, e))?;
    // The explicit `file:` prefix keeps a name such as `concat:a|b` or
    // `http://x` from being read as a protocol.
    let url = format!("file:{}", absolute.display());
    let mut options = ff::Dictionary::new();
    options.set("protocol_whitelist", "file");
    options.set("format_whitelist", DEMUXERS);
    options.set("enable_drefs", "0");
    options.set("use_absolute_path", "0");
    let input = ff::format::input_with_dictionary(&url, options)
        .map_err(|e| MediaError::malformed(format, e))?;
    let name = input.format().name().to_owned();
    if !name
        .split(',')
        .any(|n| DEMUXERS.split(',').any(|allowed| allowed == n))
    {
        return Err(MediaError::malformed(
            format,
            format!("unexpected container {name}"),
        ));
    }
    Ok(input)
}

/// Maps an FFmpeg error during encoding to one that says at which stage.
pub(crate) fn stage(format: Format, what: &'static str) -> impl Fn(ff::Error) -> MediaError {
    move |e| MediaError::encode(format, format!("{what}: {e}"))
}

pub(crate) fn rational_f64(r: ff::Rational) -> f64 {
    if r.denominator() == 0 {
        0.0
    } else {
        f64::from(r.numerator()) / f64::from(r.denominator())
    }
}

/// Whether `e` is FFmpeg's "try again" (EAGAIN).
pub(crate) fn is_again(e: &ff::Error) -> bool {
    matches!(e, ff::Error::Other { errno } if *errno == ff::util::error::EAGAIN)
}

/// A decoder for a stream, from its codec parameters.
pub(crate) fn decoder_for(stream: &ff::Stream, format: Format) -> Result<ff::decoder::Decoder> {
    ff::codec::context::Context::from_parameters(stream.parameters())
        .map(|ctx| ctx.decoder())
        .map_err(|e| MediaError::malformed(format, e))
}

/// Sends a frame to an encoder (or, given `None`, the end of the stream) and
/// writes every packet it then has ready.
pub(crate) fn encode_and_write(
    encoder: &mut ff::codec::encoder::encoder::Encoder,
    frame: Option<&ff::Frame>,
    octx: &mut ff::format::context::Output,
    stream_index: usize,
    encoder_time_base: ff::Rational,
    format: Format,
) -> Result<()> {
    match frame {
        Some(frame) => encoder
            .send_frame(frame)
            .map_err(stage(format, "encoding"))?,
        None => encoder
            .send_eof()
            .map_err(stage(format, "flushing the encoder"))?,
    }
    drain_packets(encoder, octx, stream_index, encoder_time_base, format)
}

/// Writes an encoder's pending packets to the output, rescaled to the stream.
fn drain_packets(
    encoder: &mut ff::codec::encoder::encoder::Encoder,
    octx: &mut ff::format::context::Output,
    stream_index: usize,
    encoder_time_base: ff::Rational,
    format: Format,
) -> Result<()> {
    let stream_time_base = octx
        .stream(stream_index)
        .map(|s| s.time_base())
        .ok_or_else(|| MediaError::encode(format, "output stream missing"))?;
    let mut packet = ff::Packet::empty();
    loop {
        match encoder.receive_packet(&mut packet) {
            Ok(()) if packet.size() == 0 && packet.side_data().next().is_some() => {
                packet.set_stream(stream_index);
                packet.rescale_ts(encoder_time_base, stream_time_base);
                write_side_data_packet(&mut packet, octx)
                    .map_err(stage(format, "writing final stream data"))?;
            }
            Ok(()) if packet.size() == 0 => {}
            Ok(()) => {
                // Video encoders leave the duration unset; the video encoder's
                // time base is one frame, and without a duration the muxer
                // gives the last frame zero length and players drop it.
                if packet.duration() == 0 && encoder.medium() == ff::media::Type::Video {
                    packet.set_duration(1);
                }
                packet.set_stream(stream_index);
                packet.rescale_ts(encoder_time_base, stream_time_base);
                packet
                    .write_interleaved(octx)
                    .map_err(stage(format, "writing a packet"))?;
            }
            Err(e) if is_again(&e) || matches!(e, ff::Error::Eof) => return Ok(()),
            Err(e) => return Err(stage(format, "receiving a packet")(e)),
        }
    }
}

/// Writes a packet that has no payload, only side data: the FLAC encoder's
/// last packet carries the final STREAMINFO (sample count, MD5) this way.
/// `Packet::write_interleaved` refuses empty packets, so call FFmpeg directly.
#[allow(unsafe_code)]
fn write_side_data_packet(
    packet: &mut ff::Packet,
    octx: &mut ff::format::context::Output,
) -> Result<(), ff::Error> {
    // SAFETY: both pointers come from live ffmpeg-next wrappers that we borrow
    // mutably for the duration of the call; FFmpeg takes ownership of the
    // packet's references and leaves it blank, which the wrapper handles.
    use ff::packet::Mut;
    let ret =
        unsafe { ff::ffi::av_interleaved_write_frame(octx.as_mut_ptr(), packet.as_mut_ptr()) };
    if ret < 0 {
        Err(ff::Error::from(ret))
    } else {
        Ok(())
    }
}

/// What a container holds, read from its headers and packet index.
#[derive(Debug, Clone)]
pub(crate) struct ContainerInfo {
    pub video: Option<VideoStreamInfo>,
    pub has_audio: bool,
    pub duration_s: f64,
}

#[derive(Debug, Clone)]
pub(crate) struct VideoStreamInfo {
    pub index: usize,
    pub width: u32,
    pub height: u32,
    pub fps: ff::Rational,
    pub frames: u64,
}

/// Reads stream parameters and counts video packets (demuxing only, no
/// decoding), checking the limits on size and duration.
pub(crate) fn probe(path: &Path, format: Format, limits: &Limits) -> Result<ContainerInfo> {
    let mut input = open_input(path, format, limits)?;
    let mut video = None;
    let mut has_audio = false;
    if let Some(stream) = input.streams().best(ff::media::Type::Video) {
        let decoder = decoder_for(&stream, format)?
            .video()
            .map_err(|e| MediaError::malformed(format, e))?;
        let (width, height) = (decoder.width(), decoder.height());
        limits.check_frame_size(width, height)?;
        // The average rate is measured from timestamps; the base rate is the
        // exact one (30000/1001) when they agree, as they do for constant rate.
        let (average, base) = (stream.avg_frame_rate(), stream.rate());
        let positive = |r: ff::Rational| r.numerator() > 0 && r.denominator() > 0;
        let mut fps = average;
        if !positive(average)
            || (positive(base) && (rational_f64(base) / rational_f64(average) - 1.0).abs() < 0.01)
        {
            fps = base;
        }
        if fps.numerator() <= 0 || fps.denominator() <= 0 {
            return Err(MediaError::malformed(
                format,
                "video stream has no frame rate",
            ));
        }
        video = Some(VideoStreamInfo {
            index: stream.index(),
            width,
            height,
            fps,
            frames: 0,
        });
    }
    if let Some(stream) = input.streams().best(ff::media::Type::Audio) {
        let decoder = decoder_for(&stream, format)?
            .audio()
            .map_err(|e| MediaError::malformed(format, e))?;
        limits.check_audio_format(decoder.rate(), decoder.channels())?;
        has_audio = true;
    }
    if video.is_none() && !has_audio {
        return Err(MediaError::malformed(format, "no audio or video stream"));
    }
    let mut duration_s = if input.duration() > 0 {
        input.duration() as f64 / f64::from(ff::ffi::AV_TIME_BASE)
    } else {
        0.0
    };
    if let Some(v) = video.as_mut() {
        // Counting packets is exact where headers are not (WebM has no frame count).
        let time_base = input
            .stream(v.index)
            .map(|s| s.time_base())
            .unwrap_or(ff::Rational(1, 1));
        let mut last_end = 0i64;
        let mut count = 0u64;
        for (stream, packet) in input.packets() {
            if stream.index() == v.index {
                count += 1;
                if let Some(pts) = packet.pts() {
                    last_end = last_end.max(pts + packet.duration().max(0));
                }
            }
        }
        v.frames = count;
        if duration_s <= 0.0 {
            duration_s = last_end as f64 * rational_f64(time_base);
        }
        crate::limits::check(
            "video duration (s)",
            duration_s.ceil() as u64,
            limits.max_video_seconds.ceil() as u64,
        )?;
    }
    Ok(ContainerInfo {
        video,
        has_audio,
        duration_s,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Even handed straight to FFmpeg (bypassing content detection), a
    /// playlist or concat script is refused by the demuxer allowlist.
    #[test]
    fn allowlist_refuses_playlists_even_without_detection() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target.wav");
        std::fs::write(
            &target,
            crate::Audio::silence(8000, 1, 0.1)
                .encode_wav(crate::audio::WavSample::Int16)
                .unwrap(),
        )
        .unwrap();
        let frames = vec![crate::Image::filled(16, 16, [200, 10, 10]); 3];
        let segment = crate::Video::new(crate::Rational { num: 5, den: 1 }, frames, None).unwrap();
        segment.write(&dir.path().join("seg.mp4")).unwrap();
        // Relative references in files named as their formats: without the
        // allowlist, FFmpeg opens seg.mp4 and target.wav through these.
        let scripts = [
            (
                "list.m3u8",
                "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nseg.mp4\n#EXT-X-ENDLIST\n",
            ),
            ("list.ffconcat", "ffconcat version 1.0\nfile 'target.wav'\n"),
        ];
        for (name, script) in scripts {
            let path = dir.path().join(name);
            std::fs::write(&path, script).unwrap();
            let err = open_input(&path, Format::Mp4, &Limits::default())
                .map(|_| ())
                .unwrap_err()
                .to_string();
            // Refused by FFmpeg's allowlist itself, not by our check afterwards.
            assert!(!err.contains("unexpected container"), "{name}: {err}");
        }
        // A name that looks like a protocol is still only a local file name.
        let odd = dir.path().join("concat:x|y.wav");
        std::fs::copy(&target, &odd).unwrap();
        assert!(open_input(&odd, Format::Wav, &Limits::default()).is_ok());
    }
}
