//! Video through FFmpeg: a frame reader that decodes one frame at a time, and
//! a writer that encodes H.264/AAC MP4 or VP9/Opus WebM in-process.

use std::path::Path;

use ff::format::Pixel;
use ff::software::scaling;
use ffmpeg_next as ff;

use super::audio::AudioTrack;
use super::{decoder_for, encode_and_write, init, is_again, open_input, rational_f64};
use crate::{Audio, Format, Image, Limits, MediaError, Result};

/// Decodes the best video stream one RGB frame at a time, so a long video
/// never has to sit in memory whole.
pub(crate) struct FrameReader {
    input: ff::format::context::Input,
    stream_index: usize,
    decoder: ff::decoder::Video,
    time_base: f64,
    scaler: Option<(scaling::Context, Pixel, u32, u32)>,
    eof_sent: bool,
    frame_index: u64,
    format: Format,
    limits: Limits,
}

impl FrameReader {
    pub(crate) fn open(path: &Path, format: Format, limits: &Limits) -> Result<FrameReader> {
        let input = open_input(path, format, limits)?;
        let stream = input
            .streams()
            .best(ff::media::Type::Video)
            .ok_or_else(|| MediaError::malformed(format, "no video stream"))?;
        let stream_index = stream.index();
        let time_base = rational_f64(stream.time_base());
        let decoder = decoder_for(&stream, format)?
            .video()
            .map_err(|e| MediaError::malformed(format, e))?;
        limits.check_frame_size(decoder.width(), decoder.height())?;
        Ok(FrameReader {
            input,
            stream_index,
            decoder,
            time_base,
            scaler: None,
            eof_sent: false,
            frame_index: 0,
            format,
            limits: limits.clone(),
        })
    }

    /// The next frame and its presentation time in seconds, or `None` at the end.
    pub(crate) fn next_frame(&mut self) -> Result<Option<(Image, f64)>> {
        let mut decoded = ff::frame::Video::empty();
        loop {
            match self.decoder.receive_frame(&mut decoded) {
                Ok(()) => {
                    let seconds = match decoded.timestamp().or(decoded.pts()) {
                        Some(ts) => ts as f64 * self.time_base,
                        None => self.frame_index as f64 * 0.0,
                    };
                    self.frame_index += 1;
                    let image = self.convert_to_rgb(&decoded)?;
                    return Ok(Some((image, seconds)));
                }
                Err(ff::Error::Eof) => return Ok(None),
                Err(e) if is_again(&e) => {}
                Err(e) => return Err(MediaError::malformed(self.format, e)),
            }
            if self.eof_sent {
                return Ok(None);
            }
            // Feed the next packet of our stream, or signal the end.
            let mut fed = false;
            while let Some((stream, packet)) = self.input.packets().next() {
                if stream.index() == self.stream_index {
                    // A corrupt packet is skipped; the decoder recovers at the next key frame.
                    let _ = self.decoder.send_packet(&packet);
                    fed = true;
                    break;
                }
            }
            if !fed {
                self.decoder
                    .send_eof()
                    .map_err(|e| MediaError::malformed(self.format, e))?;
                self.eof_sent = true;
            }
        }
    }

    fn convert_to_rgb(&mut self, frame: &ff::frame::Video) -> Result<Image> {
        let (w, h, pixel) = (frame.width(), frame.height(), frame.format());
        self.limits.check_frame_size(w, h)?;
        let stale =
            !matches!(&self.scaler, Some((_, p, sw, sh)) if *p == pixel && *sw == w && *sh == h);
        if stale {
            let ctx =
                scaling::Context::get(pixel, w, h, Pixel::RGB24, w, h, scaling::Flags::BILINEAR)
                    .map_err(|e| MediaError::malformed(self.format, e))?;
            self.scaler = Some((ctx, pixel, w, h));
        }
        let Some((scaler, ..)) = self.scaler.as_mut() else {
            unreachable!("scaler set above")
        };
        let mut rgb = ff::frame::Video::empty();
        scaler
            .run(frame, &mut rgb)
            .map_err(|e| MediaError::malformed(self.format, e))?;
        Ok(packed_rgb(&rgb))
    }
}

/// Copies an RGB24 frame's rows (which may be padded) into a packed image.
fn packed_rgb(frame: &ff::frame::Video) -> Image {
    let (w, h) = (frame.width() as usize, frame.height() as usize);
    let stride = frame.stride(0);
    let data = frame.data(0);
    let mut pixels = Vec::with_capacity(w * h * 3);
    for row in 0..h {
        pixels.extend_from_slice(&data[row * stride..row * stride + w * 3]);
    }
    Image {
        width: w as u32,
        height: h as u32,
        channels: 3,
        pixels,
    }
}

/// Encodes frames into MP4 (H.264 yuv420p + AAC) or WebM (VP9 + Opus).
pub(crate) struct VideoWriter {
    output: ff::format::context::Output,
    encoder: ff::encoder::Video,
    stream_index: usize,
    time_base: ff::Rational,
    fps: f64,
    scaler: scaling::Context,
    width: u32,
    height: u32,
    frames: i64,
    audio: Option<AudioTrack>,
    format: Format,
}

impl VideoWriter {
    /// `fps` is an exact rational (numerator, denominator). Width and height
    /// must be even: yuv420p subsamples chroma by two.
    pub(crate) fn create(
        path: &Path,
        format: Format,
        width: u32,
        height: u32,
        fps: (u32, u32),
        audio: Option<&Audio>,
    ) -> Result<VideoWriter> {
        init()?;
        let (video_codec, audio_codec, container) = match format {
            Format::Mp4 => ("libx264", "aac", "mp4"),
            Format::Webm => ("libvpx-vp9", "libopus", "webm"),
            other => {
                return Err(MediaError::Unsupported(format!(
                    "cannot write video as {other}"
                )))
            }
        };
        if !width.is_multiple_of(2) || !height.is_multiple_of(2) {
            return Err(MediaError::Invalid(format!(
                "video size {width}x{height} must be even for yuv420p"
            )));
        }
        let (num, den) = fps;
        if num == 0 || den == 0 {
            return Err(MediaError::Invalid(format!(
                "frame rate {num}/{den} is not positive"
            )));
        }
        let mut output =
            ff::format::output_as(path, container).map_err(|e| MediaError::encode(format, e))?;
        let codec = ff::encoder::find_by_name(video_codec).ok_or_else(|| {
            MediaError::encode(format, format!("FFmpeg has no {video_codec} encoder"))
        })?;
        let global_header = output
            .format()
            .flags()
            .contains(ff::format::Flags::GLOBAL_HEADER);
        let mut stream = output
            .add_stream(codec)
            .map_err(|e| MediaError::encode(format, e))?;
        let stream_index = stream.index();
        let time_base = ff::Rational(den as i32, num as i32);
        let mut ctx = ff::codec::context::Context::new_with_codec(codec)
            .encoder()
            .video()
            .map_err(|e| MediaError::encode(format, e))?;
        ctx.set_width(width);
        ctx.set_height(height);
        ctx.set_format(Pixel::YUV420P);
        ctx.set_time_base(time_base);
        ctx.set_frame_rate(Some(ff::Rational(num as i32, den as i32)));
        if global_header {
            ctx.set_flags(ff::codec::Flags::GLOBAL_HEADER);
        }
        let mut options = ff::Dictionary::new();
        match format {
            Format::Mp4 => {
                options.set("preset", "medium");
                options.set("crf", "20");
            }
            _ => {
                // Constant quality, and the realtime speed settings: VP9's
                // default "good" deadline is an order of magnitude slower.
                options.set("crf", "32");
                options.set("b", "0");
                options.set("deadline", "realtime");
                options.set("cpu-used", "8");
                options.set("row-mt", "1");
            }
        }
        let encoder = ctx
            .open_as_with(codec, options)
            .map_err(|e| MediaError::encode(format, e))?;
        stream.set_parameters(&encoder);
        stream.set_time_base(time_base);
        let audio = match audio {
            Some(a) => Some(AudioTrack::new(&mut output, audio_codec, a, format)?),
            None => None,
        };
        if format == Format::Mp4 {
            // Index at the front so players can start before the download ends.
            let mut muxer = ff::Dictionary::new();
            muxer.set("movflags", "+faststart");
            output
                .write_header_with(muxer)
                .map_err(|e| MediaError::encode(format, e))?;
        } else {
            output
                .write_header()
                .map_err(|e| MediaError::encode(format, e))?;
        }
        let scaler = scaling::Context::get(
            Pixel::RGB24,
            width,
            height,
            Pixel::YUV420P,
            width,
            height,
            scaling::Flags::BILINEAR,
        )
        .map_err(|e| MediaError::encode(format, e))?;
        Ok(VideoWriter {
            output,
            encoder,
            stream_index,
            time_base,
            fps: f64::from(num) / f64::from(den),
            scaler,
            width,
            height,
            frames: 0,
            audio,
            format,
        })
    }

    pub(crate) fn push(&mut self, image: &Image) -> Result<()> {
        if image.width != self.width || image.height != self.height {
            return Err(MediaError::Invalid(format!(
                "frame {} is {}x{}, the video is {}x{}",
                self.frames, image.width, image.height, self.width, self.height
            )));
        }
        let rgb = image.to_rgb();
        let mut src = ff::frame::Video::new(Pixel::RGB24, self.width, self.height);
        let stride = src.stride(0);
        let row = self.width as usize * 3;
        let data = src.data_mut(0);
        for (y, line) in rgb.pixels.chunks_exact(row).enumerate() {
            data[y * stride..y * stride + row].copy_from_slice(line);
        }
        let mut yuv = ff::frame::Video::empty();
        self.scaler
            .run(&src, &mut yuv)
            .map_err(|e| MediaError::encode(self.format, e))?;
        yuv.set_pts(Some(self.frames));
        self.write_encoded(Some(&yuv))?;
        self.frames += 1;
        // Keep the audio track level with the video so the muxer interleaves.
        let now = self.frames as f64 / self.fps;
        if let Some(track) = self.audio.as_mut() {
            track.encode_until(&mut self.output, Some(now))?;
        }
        Ok(())
    }

    fn write_encoded(&mut self, frame: Option<&ff::Frame>) -> Result<()> {
        encode_and_write(
            &mut self.encoder,
            frame,
            &mut self.output,
            self.stream_index,
            self.time_base,
            self.format,
        )
    }

    pub(crate) fn finish(mut self) -> Result<()> {
        if self.frames == 0 {
            return Err(MediaError::Invalid(
                "a video needs at least one frame".into(),
            ));
        }
        self.write_encoded(None)?;
        if let Some(track) = self.audio.as_mut() {
            track.encode_until(&mut self.output, None)?;
        }
        self.output
            .write_trailer()
            .map_err(|e| MediaError::encode(self.format, e))
    }
}
