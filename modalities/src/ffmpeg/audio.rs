//! Audio through FFmpeg: decoding what symphonia cannot (Opus, audio tracks
//! of video containers) and encoding MP3, Opus, AAC and FLAC.

use std::path::Path;

use ff::format::sample::Type as SampleLayout;
use ff::format::Sample;
use ffmpeg_next as ff;

use super::{decoder_for, encode_and_write, init, is_again, open_input, stage};
use crate::limits::check;
use crate::{Audio, Format, Limits, MediaError, Result};

/// Decodes the best audio stream of a file to interleaved f32.
pub(crate) fn decode_file(path: &Path, format: Format, limits: &Limits) -> Result<Audio> {
    let mut input = open_input(path, format, limits)?;
    let stream = input
        .streams()
        .best(ff::media::Type::Audio)
        .ok_or_else(|| MediaError::malformed(format, "no audio stream"))?;
    let index = stream.index();
    let mut decoder = decoder_for(&stream, format)?
        .audio()
        .map_err(|e| MediaError::malformed(format, e))?;
    let (sample_rate, channels) = (decoder.rate(), decoder.channels());
    limits.check_audio_format(sample_rate, channels)?;
    let max_frames = limits.max_audio_frames(sample_rate);
    let mut samples = Vec::new();
    let mut frame = ff::frame::Audio::empty();
    let mut receive = |decoder: &mut ff::decoder::Audio, samples: &mut Vec<f32>| -> Result<()> {
        loop {
            match decoder.receive_frame(&mut frame) {
                Ok(()) => {
                    if frame.channels() != channels {
                        return Err(MediaError::malformed(
                            format,
                            "channel count changes mid-stream",
                        ));
                    }
                    let total = samples.len() as u64 / u64::from(channels) + frame.samples() as u64;
                    check("audio length (sample frames)", total, max_frames)?;
                    append_interleaved(&frame, samples)
                        .map_err(|r| MediaError::malformed(format, r))?;
                }
                Err(e) if is_again(&e) || matches!(e, ff::Error::Eof) => return Ok(()),
                Err(e) => return Err(MediaError::malformed(format, e)),
            }
        }
    };
    for (stream, packet) in input.packets() {
        if stream.index() != index {
            continue;
        }
        // A corrupt packet is skipped, as players do; the stream goes on.
        if decoder.send_packet(&packet).is_ok() {
            receive(&mut decoder, &mut samples)?;
        }
    }
    decoder
        .send_eof()
        .map_err(|e| MediaError::malformed(format, e))?;
    receive(&mut decoder, &mut samples)?;
    if samples.is_empty() {
        return Err(MediaError::malformed(format, "no audio could be decoded"));
    }
    Audio::new(sample_rate, channels, samples)
}

/// Appends one decoded frame, in any sample format, as interleaved f32.
fn append_interleaved(
    frame: &ff::frame::Audio,
    out: &mut Vec<f32>,
) -> std::result::Result<(), String> {
    let channels = usize::from(frame.channels());
    let n = frame.samples();
    let format = frame.format();
    out.reserve(n * channels);
    if format.is_planar() {
        // FFmpeg sets only the first line size for planar audio, so planes
        // are reached through the typed accessor, which sizes them by samples.
        match format {
            Sample::U8(_) => {
                push_planar(frame, channels, out, |v: u8| (f32::from(v) - 128.0) / 128.0)
            }
            Sample::I16(_) => push_planar(frame, channels, out, |v: i16| f32::from(v) / 32768.0),
            Sample::I32(_) => push_planar(frame, channels, out, |v: i32| {
                (f64::from(v) / 2_147_483_648.0) as f32
            }),
            Sample::F32(_) => push_planar(frame, channels, out, |v: f32| v),
            Sample::F64(_) => push_planar(frame, channels, out, |v: f64| v as f32),
            other => return Err(format!("unsupported sample format {other:?}")),
        }
        return Ok(());
    }
    let width = format.bytes();
    let data = frame.data(0);
    let bytes = data
        .get(..n * channels * width)
        .ok_or("frame shorter than its sample count")?;
    let values = bytes.chunks_exact(width);
    match format {
        Sample::U8(_) => out.extend(values.map(|b| (f32::from(b[0]) - 128.0) / 128.0)),
        Sample::I16(_) => {
            out.extend(values.map(|b| f32::from(i16::from_ne_bytes([b[0], b[1]])) / 32768.0))
        }
        Sample::I32(_) => out.extend(values.map(|b| {
            (f64::from(i32::from_ne_bytes([b[0], b[1], b[2], b[3]])) / 2_147_483_648.0) as f32
        })),
        Sample::F32(_) => out.extend(values.map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]]))),
        Sample::F64(_) => {
            out.extend(values.map(|b| {
                f64::from_ne_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
            }))
        }
        other => return Err(format!("unsupported sample format {other:?}")),
    }
    Ok(())
}

fn push_planar<T: ff::frame::audio::Sample + Copy>(
    frame: &ff::frame::Audio,
    channels: usize,
    out: &mut Vec<f32>,
    to_f32: impl Fn(T) -> f32,
) {
    let planes: Vec<&[T]> = (0..channels).map(|c| frame.plane::<T>(c)).collect();
    for i in 0..frame.samples() {
        out.extend(planes.iter().map(|p| to_f32(p[i])));
    }
}

/// The encoder and container for each audio output format.
pub(crate) fn codec_for(format: Format) -> Option<(&'static str, &'static str)> {
    Some(match format {
        Format::Mp3 => ("libmp3lame", "mp3"),
        Format::Opus => ("libopus", "ogg"),
        Format::Aac => ("aac", "adts"),
        Format::Mp4 => ("aac", "ipod"),
        Format::Flac => ("flac", "flac"),
        _ => return None,
    })
}

/// Encodes `audio` into a file of the given container through FFmpeg.
pub(crate) fn encode_file(audio: &Audio, path: &Path, format: Format) -> Result<()> {
    init()?;
    let (codec, container) = codec_for(format)
        .ok_or_else(|| MediaError::Unsupported(format!("cannot write audio as {format}")))?;
    let mut octx =
        ff::format::output_as(path, container).map_err(|e| MediaError::encode(format, e))?;
    let mut track = AudioTrack::new(&mut octx, codec, audio, format)?;
    octx.write_header()
        .map_err(stage(format, "writing the header"))?;
    track.encode_until(&mut octx, None)?;
    octx.write_trailer()
        .map_err(stage(format, "writing the trailer"))
}

/// An audio stream being encoded into an output container, fed
/// progressively so it interleaves with video.
pub(crate) struct AudioTrack {
    encoder: ff::encoder::Audio,
    stream_index: usize,
    sample_format: Sample,
    rate: u32,
    channels: usize,
    frame_size: usize,
    /// Audio at the encoder's rate and channel count, interleaved.
    samples: Vec<f32>,
    /// Next sample frame to encode.
    cursor: usize,
    format: Format,
    done: bool,
}

impl AudioTrack {
    pub(crate) fn new(
        octx: &mut ff::format::context::Output,
        codec_name: &str,
        audio: &Audio,
        format: Format,
    ) -> Result<AudioTrack> {
        let codec = ff::encoder::find_by_name(codec_name).ok_or_else(|| {
            MediaError::encode(format, format!("FFmpeg has no {codec_name} encoder"))
        })?;
        let caps = codec.audio().map_err(|e| MediaError::encode(format, e))?;
        let sample_format = choose_sample_format(caps.formats().map(|f| f.collect::<Vec<_>>()))
            .ok_or_else(|| MediaError::encode(format, "no usable sample format"))?;
        let rates: Option<Vec<i32>> = caps.rates().map(|r| r.collect());
        let rate = choose_rate(audio.sample_rate, rates.as_deref());
        // Lossy encoders here take mono or stereo; FLAC keeps up to 8 channels.
        let max_channels = if format == Format::Flac { 8 } else { 2 };
        let channels = audio.channels.min(max_channels);
        let prepared = audio.with_channels(channels).resample(rate)?;

        let global_header = octx
            .format()
            .flags()
            .contains(ff::format::Flags::GLOBAL_HEADER);
        let mut stream = octx
            .add_stream(codec)
            .map_err(|e| MediaError::encode(format, e))?;
        let stream_index = stream.index();
        let mut ctx = ff::codec::context::Context::new_with_codec(codec)
            .encoder()
            .audio()
            .map_err(|e| MediaError::encode(format, e))?;
        ctx.set_rate(rate as i32);
        ctx.set_channel_layout(ff::ChannelLayout::default(i32::from(channels)));
        ctx.set_format(sample_format);
        ctx.set_time_base(ff::Rational(1, rate as i32));
        if format != Format::Flac {
            ctx.set_bit_rate(if channels == 1 { 96_000 } else { 160_000 });
        }
        if global_header {
            ctx.set_flags(ff::codec::Flags::GLOBAL_HEADER);
        }
        let encoder = ctx
            .open_as(codec)
            .map_err(stage(format, "opening the audio encoder"))?;
        stream.set_parameters(&encoder);
        stream.set_time_base(ff::Rational(1, rate as i32));
        let frame_size = match encoder.frame_size() as usize {
            0 => 1024,
            n => n,
        };
        Ok(AudioTrack {
            encoder,
            stream_index,
            sample_format,
            rate,
            channels: usize::from(channels),
            frame_size,
            samples: prepared.samples,
            cursor: 0,
            format,
            done: false,
        })
    }

    /// Encodes up to `seconds` of audio, or all of it and flushes on `None`.
    pub(crate) fn encode_until(
        &mut self,
        octx: &mut ff::format::context::Output,
        seconds: Option<f64>,
    ) -> Result<()> {
        if self.done {
            return Ok(());
        }
        let total = self.samples.len() / self.channels;
        let until = match seconds {
            Some(s) => ((s * f64::from(self.rate)) as usize).min(total),
            None => total,
        };
        let time_base = ff::Rational(1, self.rate as i32);
        while self.cursor < until && (self.cursor + self.frame_size <= until || seconds.is_none()) {
            let n = self.frame_size.min(total - self.cursor);
            let chunk =
                &self.samples[self.cursor * self.channels..(self.cursor + n) * self.channels];
            let mut frame = ff::frame::Audio::new(
                self.sample_format,
                n,
                ff::ChannelLayout::default(self.channels as i32),
            );
            frame.set_rate(self.rate);
            fill_frame(&mut frame, self.sample_format, chunk, self.channels);
            frame.set_pts(Some(self.cursor as i64));
            encode_and_write(
                &mut self.encoder,
                Some(&frame),
                octx,
                self.stream_index,
                time_base,
                self.format,
            )?;
            self.cursor += n;
        }
        if seconds.is_none() {
            encode_and_write(
                &mut self.encoder,
                None,
                octx,
                self.stream_index,
                time_base,
                self.format,
            )?;
            self.done = true;
        }
        Ok(())
    }
}

fn choose_sample_format(supported: Option<Vec<Sample>>) -> Option<Sample> {
    let preference = [
        Sample::F32(SampleLayout::Planar),
        Sample::F32(SampleLayout::Packed),
        Sample::I16(SampleLayout::Packed),
        Sample::I16(SampleLayout::Planar),
        Sample::I32(SampleLayout::Packed),
        Sample::I32(SampleLayout::Planar),
    ];
    match supported {
        None => Some(preference[1]),
        Some(list) => preference.into_iter().find(|p| list.contains(p)),
    }
}

/// The source rate when the encoder takes it, else the nearest higher rate
/// it takes (48 kHz for Opus), else its highest.
fn choose_rate(source: u32, supported: Option<&[i32]>) -> u32 {
    let Some(list) = supported.filter(|l| !l.is_empty()) else {
        return source;
    };
    let mut rates: Vec<u32> = list.iter().filter(|&&r| r > 0).map(|&r| r as u32).collect();
    rates.sort_unstable();
    if rates.contains(&source) {
        return source;
    }
    rates
        .iter()
        .copied()
        .find(|&r| r > source)
        .or(rates.last().copied())
        .unwrap_or(source)
}

fn fill_frame(frame: &mut ff::frame::Audio, format: Sample, interleaved: &[f32], channels: usize) {
    let clamp = |s: f32| s.clamp(-1.0, 1.0);
    let to_i16 = |s: f32| (clamp(s) * 32767.0).round() as i16;
    let to_i32 = |s: f32| (f64::from(clamp(s)) * 2_147_483_647.0).round() as i32;
    if format.is_planar() {
        // See `append_interleaved`: planes beyond the first need the typed accessor.
        for c in 0..channels {
            let channel = interleaved.iter().skip(c).step_by(channels);
            match format {
                Sample::I16(_) => frame
                    .plane_mut::<i16>(c)
                    .iter_mut()
                    .zip(channel)
                    .for_each(|(d, &s)| *d = to_i16(s)),
                Sample::I32(_) => frame
                    .plane_mut::<i32>(c)
                    .iter_mut()
                    .zip(channel)
                    .for_each(|(d, &s)| *d = to_i32(s)),
                _ => frame
                    .plane_mut::<f32>(c)
                    .iter_mut()
                    .zip(channel)
                    .for_each(|(d, &s)| *d = clamp(s)),
            }
        }
        return;
    }
    let width = format.bytes();
    let data = frame.data_mut(0);
    for (dst, &s) in data.chunks_exact_mut(width).zip(interleaved) {
        match format {
            Sample::I16(_) => dst.copy_from_slice(&to_i16(s).to_ne_bytes()),
            Sample::I32(_) => dst.copy_from_slice(&to_i32(s).to_ne_bytes()),
            _ => dst.copy_from_slice(&clamp(s).to_ne_bytes()),
        }
    }
}
