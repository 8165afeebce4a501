//! The audio codec: SNAC, the multi-scale neural audio codec Orpheus-style
//! text-to-speech speaks in, loaded from `config.json` and weights as the
//! `snac` package defines them.
//!
//! Encoding: mono at the codec's rate (mixed down and resampled on the way
//! in), padded on the right to whole windows, encoded, then quantised by a
//! residual stack of codebooks, each at its own time stride (coarsest
//! first). Decoding: each level's entries projected back and repeated to the
//! finest rate, summed, and decoded to a waveform.
//!
//! Weights: `model.safetensors`; a published `pytorch_model.bin` is read by
//! candle's pickle reader, which only collects tensors and runs no code.

mod layers;

use std::path::Path;

use candle_core::{Device, Module, Tensor, D};
use modalities::{Audio, Kind, Media};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use serde::Deserialize;

use crate::codes::{AudioCodes, Codes};
use crate::error::{CodecError, Result};
use crate::limits::{check, CodecLimits};
use crate::weights::Checkpoint;
use crate::{Codec, Structure};
use layers::{ConvSpec, LocalAttention, NoiseBlock, ResidualUnit, Snake, WnConv};

/// The `snac` package's constructor arguments, as its `config.json` holds them.
#[derive(Debug, Clone, Deserialize)]
pub struct SnacConfig {
    #[serde(default = "defaults::sampling_rate")]
    pub sampling_rate: u32,
    #[serde(default = "defaults::encoder_dim")]
    pub encoder_dim: usize,
    #[serde(default = "defaults::encoder_rates")]
    pub encoder_rates: Vec<usize>,
    #[serde(default)]
    pub latent_dim: Option<usize>,
    #[serde(default = "defaults::decoder_dim")]
    pub decoder_dim: usize,
    #[serde(default = "defaults::decoder_rates")]
    pub decoder_rates: Vec<usize>,
    #[serde(default = "defaults::attn_window_size")]
    pub attn_window_size: Option<usize>,
    #[serde(default = "defaults::codebook_size")]
    pub codebook_size: usize,
    #[serde(default = "defaults::codebook_dim")]
    pub codebook_dim: usize,
    #[serde(default = "defaults::vq_strides")]
    pub vq_strides: Vec<usize>,
    #[serde(default = "defaults::yes")]
    pub noise: bool,
    #[serde(default = "defaults::yes")]
    pub depthwise: bool,
}

/// The reference's defaults.
mod defaults {
    pub fn sampling_rate() -> u32 {
        44100
    }
    pub fn encoder_dim() -> usize {
        64
    }
    pub fn encoder_rates() -> Vec<usize> {
        vec![3, 3, 7, 7]
    }
    pub fn decoder_dim() -> usize {
        1536
    }
    pub fn decoder_rates() -> Vec<usize> {
        vec![7, 7, 3, 3]
    }
    pub fn attn_window_size() -> Option<usize> {
        Some(32)
    }
    pub fn codebook_size() -> usize {
        4096
    }
    pub fn codebook_dim() -> usize {
        8
    }
    pub fn vq_strides() -> Vec<usize> {
        vec![8, 4, 2, 1]
    }
    pub fn yes() -> bool {
        true
    }
}

impl SnacConfig {
    pub fn latent_dim(&self) -> usize {
        self.latent_dim
            .unwrap_or(self.encoder_dim << self.encoder_rates.len())
    }

    /// Samples per finest code.
    pub fn hop_length(&self) -> usize {
        self.encoder_rates.iter().product()
    }

    /// Finest-level steps must come in multiples of this.
    fn step_multiple(&self) -> usize {
        let a = self.vq_strides[0];
        let b = self.attn_window_size.unwrap_or(1);
        a / gcd(a, b) * b
    }

    fn check(&self, path: &Path) -> Result<()> {
        let bad = |why: &str| Err(CodecError::config(path, why));
        let rates = self.encoder_rates.iter().chain(&self.decoder_rates);
        if self.encoder_rates.is_empty()
            || self.decoder_rates.is_empty()
            || rates.clone().any(|&r| r == 0)
        {
            return bad("encoder_rates and decoder_rates need positive strides");
        }
        if self.vq_strides.is_empty()
            || self
                .vq_strides
                .iter()
                .any(|&s| s == 0 || !self.vq_strides[0].is_multiple_of(s))
        {
            return bad("vq_strides must be positive and divide the first");
        }
        if self.decoder_dim >> self.decoder_rates.len() == 0 {
            return bad("decoder_dim is too small for the number of decoder_rates");
        }
        if self.codebook_size == 0 || self.codebook_dim == 0 || self.sampling_rate == 0 {
            return bad("codebook_size, codebook_dim and sampling_rate must be positive");
        }
        if self.attn_window_size == Some(0) {
            return bad("attn_window_size must be positive or null");
        }
        Ok(())
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

struct EncoderBlock {
    units: [ResidualUnit; 3],
    snake: Snake,
    conv: WnConv,
}

struct DecoderBlock {
    snake: Snake,
    conv: WnConv,
    noise: Option<NoiseBlock>,
    units: [ResidualUnit; 3],
}

struct Quantizer {
    in_proj: WnConv,
    out_proj: WnConv,
    /// `[codebook_size, codebook_dim]`, as stored.
    codebook: Tensor,
    /// Rows L2-normalised, for choosing codes.
    codebook_unit: Tensor,
    stride: usize,
}

pub struct Snac {
    config: SnacConfig,
    enc_in: WnConv,
    enc_blocks: Vec<EncoderBlock>,
    enc_attn: Option<LocalAttention>,
    enc_out: WnConv,
    quantizers: Vec<Quantizer>,
    dec_in: Vec<WnConv>,
    dec_attn: Option<LocalAttention>,
    dec_blocks: Vec<DecoderBlock>,
    dec_snake: Snake,
    dec_out: WnConv,
    /// The decoder's noise blocks (when the config has them): seeded, or off.
    noise_seed: Option<u64>,
    device: Device,
    max_seconds: f64,
}

/// The registry's loader for `snac` folders.
pub fn load(
    dir: &Path,
    config: &serde_json::Value,
    limits: &CodecLimits,
) -> Result<Box<dyn Codec>> {
    Ok(Box::new(
        Snac::load(dir, config, &Device::Cpu)?.with_max_seconds(limits.max_audio_seconds),
    ))
}

fn l2_normalize(x: &Tensor) -> candle_core::Result<Tensor> {
    // F.normalize: x / max(|x|, 1e-12)
    let norm = x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?.maximum(1e-12)?;
    x.broadcast_div(&norm)
}

impl Snac {
    pub fn load(dir: &Path, config: &serde_json::Value, device: &Device) -> Result<Snac> {
        let path = dir.join("config.json");
        let c: SnacConfig =
            serde_json::from_value(config.clone()).map_err(|e| CodecError::config(&path, e))?;
        c.check(&path)?;
        let ckpt = Checkpoint::open_with_pickle(dir, device)?;
        let dw = |groups: usize| if c.depthwise { groups } else { 1 };

        // Encoder: conv, blocks doubling the width, attention, conv.
        let mut d = c.encoder_dim;
        let enc_in = WnConv::load(&ckpt, "encoder.block.0", ConvSpec::new(1, d, 7))?;
        let mut enc_blocks = Vec::new();
        for (i, &stride) in c.encoder_rates.iter().enumerate() {
            let name = format!("encoder.block.{}", i + 1);
            let (input, output) = (d, 2 * d);
            let units = [0, 1, 2].map(|k| {
                ResidualUnit::load(
                    &ckpt,
                    &format!("{name}.block.{k}"),
                    input,
                    [1, 3, 9][k],
                    dw(input),
                )
            });
            let [u0, u1, u2] = units;
            enc_blocks.push(EncoderBlock {
                units: [u0?, u1?, u2?],
                snake: Snake::load(&ckpt, &format!("{name}.block.3"), input)?,
                conv: WnConv::load(
                    &ckpt,
                    &format!("{name}.block.4"),
                    ConvSpec {
                        stride,
                        padding: stride.div_ceil(2),
                        ..ConvSpec::new(input, output, 2 * stride)
                    },
                )?,
            });
            d = output;
        }
        let mut next = c.encoder_rates.len() + 1;
        let enc_attn = match c.attn_window_size {
            Some(w) => {
                let attn = LocalAttention::load(&ckpt, &format!("encoder.block.{next}"), d, w)?;
                next += 1;
                Some(attn)
            }
            None => None,
        };
        let enc_out = WnConv::load(
            &ckpt,
            &format!("encoder.block.{next}"),
            ConvSpec {
                groups: dw(d),
                ..ConvSpec::new(d, d, 7)
            },
        )?;

        let latent = c.latent_dim();
        let quantizers = c
            .vq_strides
            .iter()
            .enumerate()
            .map(|(i, &stride)| {
                let name = format!("quantizer.quantizers.{i}");
                let codebook = ckpt.get(
                    &format!("{name}.codebook.weight"),
                    &[c.codebook_size, c.codebook_dim],
                )?;
                Ok(Quantizer {
                    in_proj: WnConv::load(
                        &ckpt,
                        &format!("{name}.in_proj"),
                        ConvSpec::new(latent, c.codebook_dim, 1),
                    )?,
                    out_proj: WnConv::load(
                        &ckpt,
                        &format!("{name}.out_proj"),
                        ConvSpec::new(c.codebook_dim, latent, 1),
                    )?,
                    codebook_unit: l2_normalize(&codebook)?,
                    codebook,
                    stride,
                })
            })
            .collect::<Result<Vec<_>>>()?;

        // Decoder: conv(s) to the decoder width, attention, blocks halving
        // the width, Snake, conv to one channel, tanh.
        let channels = c.decoder_dim;
        let mut dec_in = Vec::new();
        if c.depthwise {
            dec_in.push(WnConv::load(
                &ckpt,
                "decoder.model.0",
                ConvSpec {
                    groups: latent,
                    ..ConvSpec::new(latent, latent, 7)
                },
            )?);
            dec_in.push(WnConv::load(
                &ckpt,
                "decoder.model.1",
                ConvSpec::new(latent, channels, 1),
            )?);
        } else {
            dec_in.push(WnConv::load(
                &ckpt,
                "decoder.model.0",
                ConvSpec::new(latent, channels, 7),
            )?);
        }
        let mut next = dec_in.len();
        let dec_attn = match c.attn_window_size {
            Some(w) => {
                let attn =
                    LocalAttention::load(&ckpt, &format!("decoder.model.{next}"), channels, w)?;
                next += 1;
                Some(attn)
            }
            None => None,
        };
        let mut dec_blocks = Vec::new();
        let mut output = channels;
        for (i, &stride) in c.decoder_rates.iter().enumerate() {
            let name = format!("decoder.model.{next}");
            let input = channels >> i;
            output = channels >> (i + 1);
            let conv = WnConv::load_transposed(
                &ckpt,
                &format!("{name}.block.1"),
                ConvSpec {
                    stride,
                    padding: stride.div_ceil(2),
                    ..ConvSpec::new(input, output, 2 * stride)
                },
                stride % 2,
            )?;
            let noise = if c.noise {
                Some(NoiseBlock {
                    linear: WnConv::load(
                        &ckpt,
                        &format!("{name}.block.2.linear"),
                        ConvSpec {
                            bias: false,
                            ..ConvSpec::new(output, output, 1)
                        },
                    )?,
                })
            } else {
                None
            };
            let first_unit = if c.noise { 3 } else { 2 };
            let [u0, u1, u2] = [0, 1, 2].map(|k| {
                ResidualUnit::load(
                    &ckpt,
                    &format!("{name}.block.{}", first_unit + k),
                    output,
                    [1, 3, 9][k],
                    dw(output),
                )
            });
            dec_blocks.push(DecoderBlock {
                snake: Snake::load(&ckpt, &format!("{name}.block.0"), input)?,
                conv,
                noise,
                units: [u0?, u1?, u2?],
            });
            next += 1;
        }
        let dec_snake = Snake::load(&ckpt, &format!("decoder.model.{next}"), output)?;
        let dec_out = WnConv::load(
            &ckpt,
            &format!("decoder.model.{}", next + 1),
            ConvSpec::new(output, 1, 7),
        )?;
        Ok(Snac {
            config: c,
            enc_in,
            enc_blocks,
            enc_attn,
            enc_out,
            quantizers,
            dec_in,
            dec_attn,
            dec_blocks,
            dec_snake,
            dec_out,
            noise_seed: Some(0),
            device: device.clone(),
            max_seconds: CodecLimits::default().max_audio_seconds,
        })
    }

    pub fn config(&self) -> &SnacConfig {
        &self.config
    }

    /// The longest audio encoded or decoded, in seconds.
    pub fn with_max_seconds(mut self, seconds: f64) -> Snac {
        self.max_seconds = seconds;
        self
    }

    /// Seeds the decoder's noise blocks (the same seed, the same waveform);
    /// `None` turns them off for a fully deterministic decoder.
    pub fn with_noise_seed(mut self, seed: Option<u64>) -> Snac {
        self.noise_seed = seed;
        self
    }

    /// Codes per level for mono samples at the codec's rate.
    pub fn encode_samples(&self, samples: &[f32]) -> Result<Vec<Vec<u32>>> {
        if samples.is_empty() {
            return Err(CodecError::Input("the audio has no samples".into()));
        }
        let rate = f64::from(self.config.sampling_rate);
        check(
            "the audio's duration in seconds",
            samples.len() as f64 / rate,
            self.max_seconds,
        )?;
        let pad_to = self.config.hop_length() * self.config.step_multiple();
        let len = samples.len().div_ceil(pad_to) * pad_to;
        let mut padded = samples.to_vec();
        padded.resize(len, 0.0);
        let x = Tensor::from_vec(padded, (1, 1, len), &self.device)?;
        let mut z = self.enc_in.forward(&x)?;
        for block in &self.enc_blocks {
            for unit in &block.units {
                z = unit.forward(&z)?;
            }
            z = block.conv.forward(&block.snake.forward(&z)?)?;
        }
        if let Some(attn) = &self.enc_attn {
            z = attn.forward(&z)?;
        }
        let mut residual = self.enc_out.forward(&z)?;
        let mut levels = Vec::with_capacity(self.quantizers.len());
        for q in &self.quantizers {
            let (b, c, t) = residual.dims3()?;
            let pooled = if q.stride > 1 {
                let steps = t / q.stride;
                residual
                    .narrow(2, 0, steps * q.stride)?
                    .reshape((b, c, steps, q.stride))?
                    .mean(3)?
            } else {
                residual.clone()
            };
            let z_e = q.in_proj.forward(&pooled)?.squeeze(0)?.t()?.contiguous()?;
            // Nearest by cosine: L2-normalised latents against normalised entries.
            let scores = l2_normalize(&z_e)?.matmul(&q.codebook_unit.t()?)?;
            let codes: Vec<u32> = scores
                .to_vec2::<f32>()?
                .iter()
                .map(|row| {
                    row.iter()
                        .enumerate()
                        .fold((0usize, f32::NEG_INFINITY), |best, (i, &s)| {
                            if s > best.1 {
                                (i, s)
                            } else {
                                best
                            }
                        })
                        .0 as u32
                })
                .collect();
            let z_q = self.level_latent(q, &codes)?;
            residual = (residual - z_q)?;
            levels.push(codes);
        }
        Ok(levels)
    }

    /// One level's contribution to the latent, at the finest rate.
    fn level_latent(&self, q: &Quantizer, codes: &[u32]) -> Result<Tensor> {
        let index = Tensor::from_slice(codes, codes.len(), &self.device)?;
        let entries = q
            .codebook
            .index_select(&index, 0)?
            .t()?
            .unsqueeze(0)?
            .contiguous()?;
        let z = q.out_proj.forward(&entries)?;
        if q.stride == 1 {
            return Ok(z);
        }
        let (b, c, t) = z.dims3()?;
        Ok(z.unsqueeze(3)?
            .broadcast_as((b, c, t, q.stride))?
            .reshape((b, c, t * q.stride))?)
    }

    /// Checks the levels fit together and fit the codebooks.
    fn check_codes(&self, levels: &[Vec<u32>]) -> Result<usize> {
        let c = &self.config;
        if levels.len() != self.quantizers.len() {
            return Err(CodecError::Codes(format!(
                "{} levels given; this codec has {}",
                levels.len(),
                self.quantizers.len()
            )));
        }
        let steps = levels[0].len() * c.vq_strides[0];
        for (i, (level, &stride)) in levels.iter().zip(&c.vq_strides).enumerate() {
            if level.len() * stride != steps {
                return Err(CodecError::Codes(format!(
                    "level {i} has {} codes; with stride {stride} it needs {} to match level 0",
                    level.len(),
                    steps / stride
                )));
            }
            if let Some((at, &code)) = level
                .iter()
                .enumerate()
                .find(|(_, &x)| x as usize >= c.codebook_size)
            {
                return Err(CodecError::Codes(format!(
                    "code {code} at level {i}, position {at} is outside the codebook of {}",
                    c.codebook_size
                )));
            }
        }
        if steps == 0 || !steps.is_multiple_of(c.step_multiple()) {
            return Err(CodecError::Codes(format!(
                "level 0 needs a positive multiple of {} codes, got {}",
                c.step_multiple() / c.vq_strides[0],
                levels[0].len()
            )));
        }
        Ok(steps)
    }

    /// Mono samples at the codec's rate, before any clipping (the decoder
    /// ends in tanh).
    pub fn decode_samples(&self, levels: &[Vec<u32>]) -> Result<Vec<f32>> {
        self.decode_samples_at(levels, 0)
    }

    /// Decodes codes that begin `start` coarsest-level codes into a longer
    /// stream: the noise blocks draw the values of those absolute positions.
    pub fn decode_samples_at(&self, levels: &[Vec<u32>], start: usize) -> Result<Vec<f32>> {
        let steps = self.check_codes(levels)?;
        let seconds =
            (steps * self.config.hop_length()) as f64 / f64::from(self.config.sampling_rate);
        check(
            "the decoded audio's duration in seconds",
            seconds,
            self.max_seconds,
        )?;
        let mut z: Option<Tensor> = None;
        for (q, codes) in self.quantizers.iter().zip(levels) {
            let part = self.level_latent(q, codes)?;
            z = Some(match z {
                Some(acc) => (acc + part)?,
                None => part,
            });
        }
        let mut x = z.ok_or_else(|| CodecError::Codes("no levels".into()))?;
        for conv in &self.dec_in {
            x = conv.forward(&x)?;
        }
        if let Some(attn) = &self.dec_attn {
            x = attn.forward(&x)?;
        }
        // The first latent step's absolute position, scaled up block by block.
        let mut offset = start * self.config.vq_strides[0];
        for (b, block) in self.dec_blocks.iter().enumerate() {
            x = block.conv.forward(&block.snake.forward(&x)?)?;
            offset *= self.config.decoder_rates.get(b).copied().unwrap_or(1);
            if let (Some(noise), Some(seed)) = (&block.noise, self.noise_seed) {
                let t = x.dim(2)?;
                let values = noise_values(seed, b, offset, t);
                x = noise.forward(&x, &Tensor::from_vec(values, (1, 1, t), &self.device)?)?;
            }
            for unit in &block.units {
                x = unit.forward(&x)?;
            }
        }
        let x = self.dec_out.forward(&self.dec_snake.forward(&x)?)?.tanh()?;
        Ok(x.flatten_all()?.to_vec1::<f32>()?)
    }
}

/// Noise of block `block` at positions `from..from + len`: each position's
/// value comes from its own place in the block's ChaCha stream (two words a
/// value), so any window of a stream gets the values the whole stream does.
fn noise_values(seed: u64, block: usize, from: usize, len: usize) -> Vec<f32> {
    let stream = seed ^ (block as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(stream);
    rng.set_word_pos(2 * from as u128);
    (0..len).map(|_| standard_normal(&mut rng)).collect()
}

/// One standard normal value (Box-Muller), from exactly two words.
fn standard_normal(rng: &mut impl RngCore) -> f32 {
    let uniform = |r: &mut dyn RngCore| ((r.next_u32() >> 8) as f32 + 0.5) / (1u32 << 24) as f32;
    let (u1, u2) = (uniform(rng), uniform(rng));
    (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
}

impl Codec for Snac {
    fn kind(&self) -> Kind {
        Kind::Audio
    }

    fn vocab_size(&self) -> usize {
        self.config.codebook_size
    }

    fn structure(&self) -> Structure {
        Structure::Audio {
            sample_rate: self.config.sampling_rate,
            hop: self.config.hop_length(),
            strides: self.config.vq_strides.clone(),
        }
    }

    fn encode(&self, media: &Media) -> Result<Codes> {
        let audio = crate::audio_input(media)?;
        let mono = audio.with_channels(1).resample(self.config.sampling_rate)?;
        Ok(Codes::Audio(AudioCodes {
            start: 0,
            sample_rate: self.config.sampling_rate,
            codes: self.encode_samples(&mono.samples)?,
        }))
    }

    fn decode(&self, codes: &Codes) -> Result<Media> {
        let a = codes.audio()?;
        if a.sample_rate != self.config.sampling_rate {
            return Err(CodecError::Codes(format!(
                "the codes are for {} Hz; this codec runs at {} Hz",
                a.sample_rate, self.config.sampling_rate
            )));
        }
        let samples = self.decode_samples_at(&a.codes, a.start)?;
        Ok(Media::Audio(Audio::new(
            self.config.sampling_rate,
            1,
            samples,
        )?))
    }
}
