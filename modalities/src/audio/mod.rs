//! Audio: interleaved f32 samples with a sample rate and channel count.
//! Decoded with symphonia (FFmpeg for what it lacks, such as Opus), written
//! as WAV with hound and as MP3, Opus, AAC or FLAC through FFmpeg.

mod decode;

use std::path::Path;

use rubato::{
    Resampler, SincFixedIn, SincInterpolationParameters, SincInterpolationType, WindowFunction,
};
use serde::Serialize;

use crate::{write_atomic, write_atomic_with, Format, Kind, Limits, MediaError, Result};
pub use decode::probe;

/// Interleaved f32 samples in [-1, 1].
#[derive(Clone, PartialEq)]
pub struct Audio {
    pub sample_rate: u32,
    pub channels: u16,
    pub samples: Vec<f32>,
}

impl std::fmt::Debug for Audio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Audio({} Hz, {} ch, {:.3} s)",
            self.sample_rate,
            self.channels,
            self.duration_s()
        )
    }
}

/// What `probe` reports about an audio file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AudioInfo {
    pub format: Format,
    pub sample_rate: u32,
    pub channels: u16,
    pub duration_s: f64,
}

/// Sample encodings for WAV output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WavSample {
    Int16,
    Int24,
    Float32,
}

impl Audio {
    pub fn new(sample_rate: u32, channels: u16, samples: Vec<f32>) -> Result<Audio> {
        if sample_rate == 0 || channels == 0 {
            return Err(MediaError::Invalid(format!(
                "audio needs a positive sample rate and channel count, got {sample_rate} Hz and {channels}"
            )));
        }
        if !samples.len().is_multiple_of(usize::from(channels)) {
            return Err(MediaError::Invalid(format!(
                "{} samples do not divide into {channels} channels",
                samples.len()
            )));
        }
        Ok(Audio {
            sample_rate,
            channels,
            samples,
        })
    }

    /// `seconds` of silence.
    pub fn silence(sample_rate: u32, channels: u16, seconds: f64) -> Audio {
        let frames = (seconds * f64::from(sample_rate)).round() as usize;
        Audio {
            sample_rate,
            channels,
            samples: vec![0.0; frames * usize::from(channels)],
        }
    }

    /// Sample frames (samples per channel).
    pub fn frames(&self) -> usize {
        self.samples.len() / usize::from(self.channels.max(1))
    }

    pub fn duration_s(&self) -> f64 {
        self.frames() as f64 / f64::from(self.sample_rate.max(1))
    }

    pub fn decode(bytes: &[u8], limits: &Limits) -> Result<Audio> {
        decode::decode(bytes, None, limits)
    }

    pub fn read(path: &Path, limits: &Limits) -> Result<Audio> {
        let bytes = crate::read_bounded(path, limits)?;
        decode::decode(&bytes, Some(path), limits)
    }

    /// The same audio with `channels` channels: mono is averaged from all
    /// channels, a mono source is copied to every channel, and stereo from
    /// more channels averages even channels to the left and odd to the right.
    pub fn with_channels(&self, channels: u16) -> Audio {
        let (from, to) = (usize::from(self.channels), usize::from(channels.max(1)));
        if from == to {
            return self.clone();
        }
        let mut samples = Vec::with_capacity(self.frames() * to);
        for frame in self.samples.chunks_exact(from) {
            if to == 1 {
                samples.push(frame.iter().sum::<f32>() / from as f32);
            } else if from == 1 {
                samples.extend(std::iter::repeat_n(frame[0], to));
            } else {
                for c in 0..to {
                    let picked: Vec<f32> = frame.iter().skip(c % to).step_by(to).copied().collect();
                    samples.push(picked.iter().sum::<f32>() / picked.len().max(1) as f32);
                }
            }
        }
        Audio {
            sample_rate: self.sample_rate,
            channels: to as u16,
            samples,
        }
    }

    /// The audio played `speed` times faster at the same pitch (FFmpeg's
    /// `atempo`, a WSOLA time stretch); `speed` in 0.5..=2.
    pub fn time_stretched(&self, speed: f64) -> Result<Audio> {
        if !(0.5..=2.0).contains(&speed) {
            return Err(MediaError::Invalid(format!(
                "speed {speed} is not in [0.5, 2]"
            )));
        }
        let channels = usize::from(self.channels);
        let mut stretched = Vec::with_capacity(channels);
        for c in 0..channels {
            let one: Vec<f32> = self
                .samples
                .iter()
                .skip(c)
                .step_by(channels)
                .copied()
                .collect();
            stretched.push(crate::ffmpeg::tempo::atempo(&one, self.sample_rate, speed)?);
        }
        let frames = stretched.iter().map(Vec::len).min().unwrap_or(0);
        let mut samples = Vec::with_capacity(frames * channels);
        for i in 0..frames {
            samples.extend(stretched.iter().map(|ch| ch[i]));
        }
        Audio::new(self.sample_rate, self.channels, samples)
    }

    /// Resamples with a windowed-sinc resampler (rubato). The output has
    /// `round(frames * to / from)` frames, aligned with the input.
    pub fn resample(&self, sample_rate: u32) -> Result<Audio> {
        if sample_rate == self.sample_rate {
            return Ok(self.clone());
        }
        if sample_rate == 0 {
            return Err(MediaError::Invalid("cannot resample to 0 Hz".into()));
        }
        let channels = usize::from(self.channels);
        let ratio = f64::from(sample_rate) / f64::from(self.sample_rate);
        let params = SincInterpolationParameters {
            sinc_len: 128,
            f_cutoff: 0.95,
            interpolation: SincInterpolationType::Linear,
            oversampling_factor: 128,
            window: WindowFunction::BlackmanHarris2,
        };
        const CHUNK: usize = 1024;
        let mut resampler = SincFixedIn::<f32>::new(ratio, 1.0, params, CHUNK, channels)
            .map_err(|e| MediaError::Invalid(format!("resampler: {e}")))?;
        let planar: Vec<Vec<f32>> = (0..channels)
            .map(|c| {
                self.samples
                    .iter()
                    .skip(c)
                    .step_by(channels)
                    .copied()
                    .collect()
            })
            .collect();
        let frames = self.frames();
        let expected = (frames as f64 * ratio).round() as usize;
        // rubato starts its read position half a filter early (`last_index`), so
        // its first output frame is already aligned with the first input frame.
        let delay = 0;
        let mut out: Vec<Vec<f32>> = vec![Vec::with_capacity(expected + delay + CHUNK); channels];
        let mut pos = 0;
        let err = |e: rubato::ResampleError| MediaError::Invalid(format!("resampler: {e}"));
        while pos < frames || out[0].len() < expected + delay {
            let chunk: Vec<&[f32]> = planar
                .iter()
                .map(|p| &p[pos.min(frames)..(pos + CHUNK).min(frames)])
                .collect();
            let produced = if chunk[0].len() == CHUNK {
                resampler.process(&chunk, None).map_err(err)?
            } else if chunk[0].is_empty() {
                resampler
                    .process_partial::<&[f32]>(None, None)
                    .map_err(err)?
            } else {
                resampler.process_partial(Some(&chunk), None).map_err(err)?
            };
            for (o, p) in out.iter_mut().zip(produced) {
                o.extend(p);
            }
            pos += CHUNK;
        }
        let mut samples = Vec::with_capacity(expected * channels);
        for i in delay..delay + expected {
            samples.extend(out.iter().map(|ch| ch[i]));
        }
        Ok(Audio {
            sample_rate,
            channels: self.channels,
            samples,
        })
    }

    /// A WAV file in memory.
    pub fn encode_wav(&self, sample: WavSample) -> Result<Vec<u8>> {
        let (bits, sample_format) = match sample {
            WavSample::Int16 => (16, hound::SampleFormat::Int),
            WavSample::Int24 => (24, hound::SampleFormat::Int),
            WavSample::Float32 => (32, hound::SampleFormat::Float),
        };
        let spec = hound::WavSpec {
            channels: self.channels,
            sample_rate: self.sample_rate,
            bits_per_sample: bits,
            sample_format,
        };
        let mut cursor = std::io::Cursor::new(Vec::new());
        let err = |e: hound::Error| MediaError::encode(Format::Wav, e);
        let mut writer = hound::WavWriter::new(&mut cursor, spec).map_err(err)?;
        for &s in &self.samples {
            let s = s.clamp(-1.0, 1.0);
            match sample {
                WavSample::Int16 => writer.write_sample((s * 32767.0).round() as i16),
                WavSample::Int24 => writer.write_sample((s * 8_388_607.0).round() as i32),
                WavSample::Float32 => writer.write_sample(s),
            }
            .map_err(err)?;
        }
        writer.finalize().map_err(err)?;
        Ok(cursor.into_inner())
    }

    /// Writes in the format named by the extension: wav (16-bit PCM), mp3,
    /// opus/ogg, aac (ADTS), m4a (AAC in MP4) or flac.
    pub fn write(&self, path: &Path) -> Result<()> {
        match Format::for_output(path) {
            Some((Format::Wav, _)) => write_atomic(path, &self.encode_wav(WavSample::Int16)?),
            Some((format, Kind::Audio)) => write_atomic_with(path, |tmp| {
                crate::ffmpeg::audio::encode_file(self, tmp, format)
            }),
            _ => Err(MediaError::Unsupported(format!(
                "{}: not an audio extension (wav, mp3, opus, ogg, aac, m4a, flac)",
                path.display()
            ))),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    pub(crate) fn sine(rate: u32, channels: u16, seconds: f64, hz: f32) -> Audio {
        let frames = (f64::from(rate) * seconds) as usize;
        let mut samples = Vec::with_capacity(frames * usize::from(channels));
        for i in 0..frames {
            let v = 0.5 * (2.0 * std::f32::consts::PI * hz * i as f32 / rate as f32).sin();
            samples.extend(std::iter::repeat_n(v, usize::from(channels)));
        }
        Audio::new(rate, channels, samples).unwrap()
    }

    #[test]
    fn wav_round_trips() {
        let a = sine(22_050, 2, 0.25, 440.0);
        let limits = Limits::default();
        let f = Audio::decode(&a.encode_wav(WavSample::Float32).unwrap(), &limits).unwrap();
        assert_eq!(f, a);
        for (sample, tolerance) in [
            (WavSample::Int16, 1.0 / 32767.0),
            (WavSample::Int24, 1.0 / 8_388_607.0),
        ] {
            let b = Audio::decode(&a.encode_wav(sample).unwrap(), &limits).unwrap();
            assert_eq!(
                (b.sample_rate, b.channels, b.frames()),
                (a.sample_rate, a.channels, a.frames())
            );
            let worst = a
                .samples
                .iter()
                .zip(&b.samples)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f32::max);
            assert!(worst <= tolerance, "{sample:?}: {worst}");
        }
    }

    #[test]
    fn resample_keeps_length_and_pitch() {
        let a = sine(44_100, 1, 0.5, 1000.0);
        let b = a.resample(16_000).unwrap();
        assert_eq!(b.frames(), 8_000);
        // Pitch: 1 kHz crosses zero 2000 times a second. Level: RMS of a 0.5 sine.
        let body = &b.samples[400..7600];
        let crossings = body
            .windows(2)
            .filter(|w| (w[0] < 0.0) != (w[1] < 0.0))
            .count();
        assert!(
            (898..=902).contains(&crossings),
            "{crossings} zero crossings in 0.45 s"
        );
        let rms = (body.iter().map(|x| x * x).sum::<f32>() / body.len() as f32).sqrt();
        assert!((rms - 0.5 / 2f32.sqrt()).abs() < 0.01, "rms {rms}");
    }

    #[test]
    fn channel_mapping() {
        let a = Audio::new(8000, 2, vec![1.0, 0.0, 0.5, 0.5]).unwrap();
        assert_eq!(a.with_channels(1).samples, vec![0.5, 0.5]);
        let m = Audio::new(8000, 1, vec![0.25]).unwrap();
        assert_eq!(m.with_channels(2).samples, vec![0.25, 0.25]);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tempo_tests {
    use super::*;

    /// Zero crossings per second of the first channel: twice the pitch.
    fn crossings_per_second(a: &Audio) -> f64 {
        let ch = usize::from(a.channels);
        let first: Vec<f32> = a.samples.iter().step_by(ch).copied().collect();
        let n = first
            .windows(2)
            .filter(|w| (w[0] < 0.0) != (w[1] < 0.0))
            .count();
        n as f64 / a.duration_s()
    }

    #[test]
    fn time_stretch_changes_the_length_and_keeps_the_pitch() {
        let rate = 24_000;
        let samples: Vec<f32> = (0..rate * 2)
            .flat_map(|i| {
                let v = 0.5 * (2.0 * std::f32::consts::PI * 440.0 * i as f32 / rate as f32).sin();
                [v, -v]
            })
            .collect();
        let a = Audio::new(rate, 2, samples).unwrap();
        for speed in [0.5, 0.8, 1.5, 2.0] {
            let b = a.time_stretched(speed).unwrap();
            let want = a.duration_s() / speed;
            assert!(
                (b.duration_s() - want).abs() < 0.03,
                "speed {speed}: {} s, want {want}",
                b.duration_s()
            );
            let pitch = crossings_per_second(&b) / 2.0;
            assert!((pitch - 440.0).abs() < 10.0, "speed {speed}: {pitch} Hz");
            assert_eq!(b.channels, 2);
        }
        assert!(a.time_stretched(3.0).is_err());
    }
}
