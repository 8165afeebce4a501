//! The mel codec: audio as log-mel frames (80 bins at 16 kHz, hop 256:
//! 62.5 frames a second), each replaced by the nearest of `codes` frames
//! fitted by k-means; decoding turns codes back into log-mel frames, the
//! mel bands into STFT magnitudes (non-negative least squares), and the
//! magnitudes into a waveform by Griffin-Lim. No network: small enough to
//! fit to a voice in seconds (the starter pack's speech codec).
//!
//! On disk: `config.json` (`codec_type: mel_kmeans` and the fields of
//! [`MelConfig`]) and `model.safetensors` with `codebook` `[codes, n_mels]`.

mod spectrum;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use modalities::{Audio, Kind, Media};
use serde::{Deserialize, Serialize};

use crate::codes::{AudioCodes, Codes};
use crate::error::{CodecError, Result};
use crate::limits::{check, CodecLimits};
use crate::weights::Checkpoint;
use crate::{Codec, Structure};
use spectrum::{griffin_lim, mel_filters, Stft};

/// Floor under mel energies before the log.
const LOG_FLOOR: f32 = 1e-5;

/// A code whose mean log-mel lies within this of the floor's (ln 1e-5 =
/// -11.5) decodes as silence. The starter pack's teacher: silence on the
/// floor, its quietest speech (stop closures) at -8 and above.
const SILENCE_MARGIN: f32 = 2.5;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MelConfig {
    /// Always `mel_kmeans`.
    pub codec_type: String,
    pub sample_rate: u32,
    pub n_fft: usize,
    pub hop: usize,
    pub n_mels: usize,
    pub fmin: f32,
    pub fmax: f32,
    pub codes: usize,
    /// Griffin-Lim iterations when decoding.
    pub griffin_lim_iterations: usize,
}

impl Default for MelConfig {
    fn default() -> Self {
        MelConfig {
            codec_type: "mel_kmeans".into(),
            sample_rate: 16_000,
            n_fft: 1024,
            hop: 256,
            n_mels: 80,
            fmin: 0.0,
            fmax: 8000.0,
            codes: 512,
            griffin_lim_iterations: 32,
        }
    }
}

impl MelConfig {
    fn check(&self, path: &Path) -> Result<()> {
        let ok = self.sample_rate >= 1000
            && self.n_fft.is_power_of_two()
            && (16..=8192).contains(&self.n_fft)
            && (1..=self.n_fft).contains(&self.hop)
            && (1..=256).contains(&self.n_mels)
            && self.fmin >= 0.0
            && self.fmax > self.fmin
            && self.fmax <= self.sample_rate as f32 / 2.0
            && (2..=65_536).contains(&self.codes)
            && self.griffin_lim_iterations <= 1000;
        if !ok {
            return Err(CodecError::config(
                path,
                format!("inconsistent mel codec settings: {self:?}"),
            ));
        }
        Ok(())
    }
}

pub struct MelCodec {
    config: MelConfig,
    /// `codes` rows of `n_mels` log-mel values.
    codebook: Vec<f32>,
    /// `n_mels` rows of `n_fft / 2 + 1` weights.
    filters: Vec<Vec<f32>>,
    stft: Stft,
    max_seconds: f64,
}

pub fn load(
    dir: &Path,
    config: &serde_json::Value,
    limits: &CodecLimits,
) -> Result<Box<dyn Codec>> {
    let mut codec = MelCodec::load(dir, config)?;
    codec.max_seconds = limits.max_audio_seconds;
    Ok(Box::new(codec))
}

impl MelCodec {
    fn new(config: MelConfig, codebook: Vec<f32>) -> MelCodec {
        MelCodec {
            filters: mel_filters(
                config.sample_rate,
                config.n_fft,
                config.n_mels,
                config.fmin,
                config.fmax,
            ),
            stft: Stft::new(config.n_fft, config.hop),
            config,
            codebook,
            max_seconds: CodecLimits::default().max_audio_seconds,
        }
    }

    pub fn load(dir: &Path, config: &serde_json::Value) -> Result<MelCodec> {
        let path = dir.join("config.json");
        let config: MelConfig =
            serde_json::from_value(config.clone()).map_err(|e| CodecError::config(&path, e))?;
        config.check(&path)?;
        let codebook = Checkpoint::open(dir, &Device::Cpu)?
            .get("codebook", &[config.codes, config.n_mels])?
            .flatten_all()?
            .to_vec1::<f32>()?;
        Ok(MelCodec::new(config, codebook))
    }

    pub fn config(&self) -> &MelConfig {
        &self.config
    }

    /// The codes that decode as silence (see [`SILENCE_MARGIN`]).
    pub fn silent_codes(&self) -> Vec<u32> {
        let quiet = LOG_FLOOR.ln() + SILENCE_MARGIN;
        self.codebook
            .chunks(self.config.n_mels.max(1))
            .enumerate()
            .filter(|(_, row)| row.iter().sum::<f32>() / (row.len() as f32) < quiet)
            .map(|(code, _)| code as u32)
            .collect()
    }

    /// Fits the codebook to the log-mel frames of `audio` by k-means, seeded.
    pub fn fit(
        audio: &[Audio],
        config: MelConfig,
        seed: u64,
        iterations: usize,
    ) -> Result<MelCodec> {
        config.check(Path::new("(mel codec settings)"))?;
        let codec = MelCodec::new(config, Vec::new());
        let mut frames = Vec::new();
        for a in audio {
            frames.extend(codec.log_mel(a)?.into_iter().flatten());
        }
        let n_mels = codec.config.n_mels;
        let clusters = crate::kmeans::fit(&frames, n_mels, codec.config.codes, iterations, seed)?;
        Ok(MelCodec {
            codebook: clusters.centroids,
            ..codec
        })
    }

    /// Writes `config.json` and `model.safetensors` into `dir`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| modalities::MediaError::io(dir, e))?;
        let path = dir.join("config.json");
        let text =
            serde_json::to_string_pretty(&self.config).map_err(|e| CodecError::config(&path, e))?;
        std::fs::write(&path, text).map_err(|e| modalities::MediaError::io(&path, e))?;
        let codebook = Tensor::from_vec(
            self.codebook.clone(),
            (self.config.codes, self.config.n_mels),
            &Device::Cpu,
        )?;
        candle_core::safetensors::save(
            &HashMap::from([("codebook".to_string(), codebook)]),
            dir.join("model.safetensors"),
        )?;
        Ok(())
    }

    /// Log-mel frames of `audio` (mixed to mono, resampled to the codec's rate).
    pub fn log_mel(&self, audio: &Audio) -> Result<Vec<Vec<f32>>> {
        check(
            "the audio's duration in seconds",
            audio.duration_s(),
            self.max_seconds,
        )?;
        let mono = audio.with_channels(1).resample(self.config.sample_rate)?;
        Ok(self
            .stft
            .forward(&mono.samples)
            .iter()
            .map(|frame| {
                let magnitude: Vec<f32> = frame.iter().map(|c| c.norm()).collect();
                self.filters
                    .iter()
                    .map(|f| {
                        let e: f32 = f.iter().zip(&magnitude).map(|(w, m)| w * m).sum();
                        e.max(LOG_FLOOR).ln()
                    })
                    .collect()
            })
            .collect())
    }

    pub fn encode_audio(&self, audio: &Audio) -> Result<AudioCodes> {
        let frames: Vec<f32> = self.log_mel(audio)?.into_iter().flatten().collect();
        let codes = crate::kmeans::nearest(&frames, self.config.n_mels, &self.codebook)?;
        Ok(AudioCodes {
            sample_rate: self.config.sample_rate,
            codes: vec![codes],
            start: 0,
        })
    }

    pub fn decode_audio(&self, codes: &AudioCodes) -> Result<Audio> {
        let [level] = codes.codes.as_slice() else {
            return Err(CodecError::Codes(format!(
                "the mel codec has one level of codes, not {}",
                codes.codes.len()
            )));
        };
        if level.is_empty() {
            return Err(CodecError::Codes("no codes".into()));
        }
        let c = &self.config;
        let seconds = (level.len() * c.hop) as f64 / f64::from(c.sample_rate);
        check(
            "the decoded audio's duration in seconds",
            seconds,
            self.max_seconds,
        )?;
        let mels = level
            .iter()
            .enumerate()
            .map(|(at, &code)| {
                self.codebook
                    .get(code as usize * c.n_mels..(code as usize + 1) * c.n_mels)
                    .map(|row| row.iter().map(|v| v.exp()).collect::<Vec<f32>>())
                    .ok_or_else(|| {
                        CodecError::Codes(format!(
                            "code {code} at position {at} is outside the codebook of {}",
                            c.codes
                        ))
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        let magnitude = self.mel_to_magnitude(&mels)?;
        let len = (level.len() - 1) * c.hop;
        let samples = griffin_lim(&self.stft, &magnitude, len, c.griffin_lim_iterations, 0);
        Ok(Audio::new(c.sample_rate, 1, samples)?)
    }

    /// STFT magnitudes whose mel bands are `mels`: non-negative least
    /// squares by multiplicative updates (they keep every value >= 0).
    fn mel_to_magnitude(&self, mels: &[Vec<f32>]) -> Result<Vec<Vec<f32>>> {
        let bins = self.stft.bins();
        let m = Tensor::from_vec(
            self.filters.iter().flatten().copied().collect::<Vec<f32>>(),
            (self.config.n_mels, bins),
            &Device::Cpu,
        )?;
        let y = Tensor::from_vec(
            mels.iter().flatten().copied().collect::<Vec<f32>>(),
            (mels.len(), self.config.n_mels),
            &Device::Cpu,
        )?;
        let numerator = y.matmul(&m)?; // [frames, bins] = Y M
        let gram = m.t()?.matmul(&m)?; // [bins, bins] = M^T M
        let mut s = (numerator.clone() + 1e-6)?;
        for _ in 0..30 {
            let denominator = (s.matmul(&gram)? + 1e-9)?;
            s = (s * numerator.broadcast_div(&denominator)?)?;
        }
        Ok(s.to_vec2::<f32>()?)
    }
}

impl Codec for MelCodec {
    fn kind(&self) -> Kind {
        Kind::Audio
    }

    fn vocab_size(&self) -> usize {
        self.config.codes
    }

    fn structure(&self) -> Structure {
        Structure::Audio {
            sample_rate: self.config.sample_rate,
            hop: self.config.hop,
            strides: vec![1],
        }
    }

    fn encode(&self, media: &Media) -> Result<Codes> {
        Ok(Codes::Audio(self.encode_audio(crate::audio_input(media)?)?))
    }

    fn decode(&self, codes: &Codes) -> Result<Media> {
        Ok(Media::Audio(self.decode_audio(codes.audio()?)?))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Vowel-like sounds: harmonic series with a few pitches and envelopes.
    fn voices() -> Vec<Audio> {
        (0..6)
            .map(|k| {
                let f0 = 110.0 + 30.0 * k as f32;
                let samples = (0..16_000)
                    .map(|i| {
                        let t = i as f32 / 16_000.0;
                        let envelope = (std::f32::consts::PI * t).sin();
                        (1..8)
                            .map(|h| {
                                let h = h as f32;
                                (2.0 * std::f32::consts::PI * f0 * h * t).sin() / h
                            })
                            .sum::<f32>()
                            * 0.2
                            * envelope
                    })
                    .collect();
                Audio::new(16_000, 1, samples).unwrap()
            })
            .collect()
    }

    #[test]
    fn a_fitted_codec_round_trips_close_in_log_mel_and_saves_and_loads() {
        let audio = voices();
        let config = MelConfig {
            codes: 64,
            ..MelConfig::default()
        };
        let codec = MelCodec::fit(&audio, config, 3, 30).unwrap();
        let codes = codec.encode_audio(&audio[2]).unwrap();
        assert_eq!(
            codes.codes[0].len(),
            1 + 16_000 / 256,
            "62.5 frames a second"
        );
        let back = codec.decode_audio(&codes).unwrap();
        assert_eq!(back.sample_rate, 16_000);
        assert!(
            (back.duration_s() - 1.0).abs() < 0.02,
            "{}",
            back.duration_s()
        );
        // The decoded sound's log-mel frames against the input's.
        let (a, b) = (
            codec.log_mel(&audio[2]).unwrap(),
            codec.log_mel(&back).unwrap(),
        );
        let loud: Vec<(f32, f32)> = a
            .iter()
            .flatten()
            .zip(b.iter().flatten())
            .filter(|(x, _)| **x > -6.0)
            .map(|(x, y)| (*x, *y))
            .collect();
        let mean = loud.iter().map(|(x, y)| (x - y).abs()).sum::<f32>() / loud.len() as f32;
        eprintln!(
            "mel codec: mean log-mel error {mean:.3} over {} bins",
            loud.len()
        );
        assert!(
            mean < 0.6,
            "mean log-mel error {mean} over {} bins",
            loud.len()
        );

        let dir = tempfile::tempdir().unwrap();
        codec.save(dir.path()).unwrap();
        let opened = crate::open(dir.path().to_str().unwrap()).unwrap();
        assert_eq!(opened.vocab_size(), 64);
        assert_eq!(
            opened.encode(&Media::Audio(audio[2].clone())).unwrap(),
            Codes::Audio(codes)
        );
    }

    #[test]
    fn silence_codes_as_silent_codes_and_speech_as_none() {
        // The voices with half a second of silence after each.
        let audio: Vec<Audio> = voices()
            .into_iter()
            .map(|a| {
                let mut samples = a.samples;
                samples.extend(std::iter::repeat_n(0.0, 8_000));
                Audio::new(16_000, 1, samples).unwrap()
            })
            .collect();
        let config = MelConfig {
            codes: 32,
            ..MelConfig::default()
        };
        let codec = MelCodec::fit(&audio, config, 3, 30).unwrap();
        let silent = codec.silent_codes();
        assert!(!silent.is_empty());
        let codes = |a: &Audio| codec.encode_audio(a).unwrap().codes.remove(0);
        let quiet = Audio::new(16_000, 1, vec![0.0; 4_000]).unwrap();
        assert!(codes(&quiet).iter().all(|c| silent.contains(c)));
        // The middle of a voice, where its envelope is loud.
        let voice = &audio[1].samples[4_000..12_000];
        let voice = Audio::new(16_000, 1, voice.to_vec()).unwrap();
        let spoken = codes(&voice);
        let n = spoken.len();
        assert!(
            spoken[2..n - 2].iter().all(|c| !silent.contains(c)),
            "{spoken:?} against {silent:?}"
        );
    }

    #[test]
    fn bad_codes_are_named() {
        let codec = MelCodec::fit(
            &voices()[..2],
            MelConfig {
                codes: 8,
                ..MelConfig::default()
            },
            1,
            5,
        )
        .unwrap();
        let bad = AudioCodes {
            sample_rate: 16_000,
            codes: vec![vec![1, 9]],
            start: 0,
        };
        let e = codec.decode_audio(&bad).unwrap_err().to_string();
        assert!(e.contains("code 9 at position 1"), "{e}");
        let levels = AudioCodes {
            sample_rate: 16_000,
            codes: vec![vec![1], vec![2]],
            start: 0,
        };
        assert!(codec
            .decode_audio(&levels)
            .unwrap_err()
            .to_string()
            .contains("one level"));
    }
}
