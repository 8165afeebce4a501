//! The image codec: the VQ tokenizer of Janus-Pro (LlamaGen VQ-16), loaded
//! from the folder `transformers` writes for `JanusVQVAE` (`config.json`
//! with `model_type: janus_vqgan`, safetensors), or from a whole Janus
//! checkpoint (`model_type: janus`, the VQ under `vq_config` and its
//! tensors under `model.vqmodel.`).
//!
//! Encoding scales pixels to [-1, 1], runs the encoder and `quant_conv`,
//! and takes the nearest codebook entry (squared distance, lowest index on
//! ties, as the reference's `argmin`) per latent position. Decoding looks
//! the entries up, L2-normalises them (as the reference does), runs
//! `post_quant_conv` and the decoder, clamps to [-1, 1] and scales to 8 bit.

pub mod patch;
mod vq;

use std::path::Path;

use candle_core::{DType, Device, Module, Tensor, D};
use modalities::{Image, Kind, Media};
use serde::Deserialize;

use crate::codes::{Codes, ImageCodes};
use crate::conv::Conv;
use crate::error::{CodecError, Result};
use crate::limits::{check, CodecLimits};
use crate::weights::Checkpoint;
use crate::{Codec, Structure};

/// `JanusVQVAEConfig`, field for field where anyforge reads it.
#[derive(Debug, Clone, Deserialize)]
pub struct VqConfig {
    #[serde(default = "defaults::embed_dim")]
    pub embed_dim: usize,
    #[serde(default = "defaults::num_embeddings")]
    pub num_embeddings: usize,
    #[serde(default)]
    pub double_latent: bool,
    #[serde(default = "defaults::latent_channels")]
    pub latent_channels: usize,
    #[serde(default = "defaults::in_channels")]
    pub in_channels: usize,
    #[serde(default = "defaults::base_channels")]
    pub base_channels: usize,
    #[serde(default = "defaults::channel_multiplier")]
    pub channel_multiplier: Vec<usize>,
    #[serde(default = "defaults::num_res_blocks")]
    pub num_res_blocks: usize,
    #[serde(default = "defaults::in_channels")]
    pub out_channels: usize,
}

/// The reference's defaults (Janus-Pro's VQ-16).
mod defaults {
    pub fn embed_dim() -> usize {
        8
    }
    pub fn num_embeddings() -> usize {
        16384
    }
    pub fn latent_channels() -> usize {
        256
    }
    pub fn in_channels() -> usize {
        3
    }
    pub fn base_channels() -> usize {
        128
    }
    pub fn channel_multiplier() -> Vec<usize> {
        vec![1, 1, 2, 2, 4]
    }
    pub fn num_res_blocks() -> usize {
        2
    }
}

impl VqConfig {
    /// Pixels per code along each side.
    pub fn downsample(&self) -> usize {
        1 << (self.channel_multiplier.len() - 1)
    }

    fn check(&self, path: &Path) -> Result<()> {
        let bad = |why: String| Err(CodecError::config(path, why));
        if self.channel_multiplier.is_empty() || self.channel_multiplier.len() > 8 {
            return bad("channel_multiplier needs 1 to 8 levels".into());
        }
        let widths = self
            .channel_multiplier
            .iter()
            .map(|m| m * self.base_channels);
        if let Some(c) = widths
            .chain([self.base_channels])
            .find(|c| *c == 0 || c % 32 != 0)
        {
            return bad(format!(
                "channel count {c} is not a positive multiple of the 32 norm groups"
            ));
        }
        if self.embed_dim == 0 || self.num_embeddings == 0 || self.latent_channels == 0 {
            return bad("embed_dim, num_embeddings and latent_channels must be positive".into());
        }
        if self.in_channels != 3 || self.out_channels != 3 {
            return bad("only RGB codecs (in_channels = out_channels = 3) are supported".into());
        }
        if self.num_embeddings > u32::MAX as usize {
            return bad("num_embeddings does not fit 32-bit codes".into());
        }
        Ok(())
    }
}

pub struct ImageVq {
    config: VqConfig,
    encoder: vq::Encoder,
    quant_conv: Conv,
    /// `[num_embeddings, embed_dim]`.
    codebook: Tensor,
    /// Squared norms of the codebook rows, `[num_embeddings]`.
    codebook_sq: Tensor,
    post_quant_conv: Conv,
    decoder: vq::Decoder,
    device: Device,
    max_pixels: u64,
}

/// The registry's loader for `janus_vqgan` and `janus` folders.
pub fn load(
    dir: &Path,
    config: &serde_json::Value,
    limits: &CodecLimits,
) -> Result<Box<dyn Codec>> {
    Ok(Box::new(
        ImageVq::load(dir, config, &Device::Cpu)?.with_max_pixels(limits.max_pixels),
    ))
}

impl ImageVq {
    pub fn load(dir: &Path, config: &serde_json::Value, device: &Device) -> Result<ImageVq> {
        let path = dir.join("config.json");
        let (vq_json, prefix) = match config.get("model_type").and_then(|t| t.as_str()) {
            Some("janus") => (
                config
                    .get("vq_config")
                    .cloned()
                    .ok_or_else(|| CodecError::config(&path, "a janus config needs vq_config"))?,
                "model.vqmodel.",
            ),
            _ => (config.clone(), ""),
        };
        let c: VqConfig =
            serde_json::from_value(vq_json).map_err(|e| CodecError::config(&path, e))?;
        c.check(&path)?;
        let ckpt = Checkpoint::open(dir, device)?;
        let w = vq::Weights {
            ckpt: &ckpt,
            prefix: prefix.to_owned(),
        };
        let codebook = w.tensor(
            "quantize.embedding.weight",
            &[c.num_embeddings, c.embed_dim],
        )?;
        Ok(ImageVq {
            encoder: vq::Encoder::load(&w, &c)?,
            quant_conv: w.conv("quant_conv", c.latent_channels, c.embed_dim, 1, 1, 0)?,
            codebook_sq: codebook.sqr()?.sum(D::Minus1)?,
            codebook,
            post_quant_conv: w.conv("post_quant_conv", c.embed_dim, c.latent_channels, 1, 1, 0)?,
            decoder: vq::Decoder::load(&w, &c)?,
            config: c,
            device: device.clone(),
            max_pixels: CodecLimits::default().max_pixels,
        })
    }

    /// The largest image encoded or decoded, in pixels.
    pub fn with_max_pixels(mut self, max_pixels: u64) -> ImageVq {
        self.max_pixels = max_pixels;
        self
    }

    pub fn config(&self) -> &VqConfig {
        &self.config
    }

    /// The grid of codes for an RGB image whose sides are multiples of the
    /// downsampling factor.
    pub fn encode_image(&self, image: &Image) -> Result<ImageCodes> {
        let f = self.config.downsample();
        let (w, h) = (image.width as usize, image.height as usize);
        check(
            "the image's pixel count",
            (w * h) as f64,
            self.max_pixels as f64,
        )?;
        if w % f != 0 || h % f != 0 {
            return Err(CodecError::Input(format!(
                "the image is {w}x{h}; this codec needs sides that are multiples of {f} \
                 (resize it, for example to {}x{})",
                (w / f).max(1) * f,
                (h / f).max(1) * f
            )));
        }
        let rgb = image.to_rgb();
        let pixels = Tensor::from_vec(rgb.pixels, (1, h, w, 3), &self.device)?
            .to_dtype(DType::F32)?
            .permute((0, 3, 1, 2))?;
        let x = ((pixels / 127.5)? - 1.0)?;
        let z = self.quant_conv.forward(&self.encoder.forward(&x)?)?;
        let (_, d, gh, gw) = z.dims4()?;
        let flat = z.permute((0, 2, 3, 1))?.reshape((gh * gw, d))?;
        let codes = self.nearest(&flat)?;
        Ok(ImageCodes {
            height: gh,
            width: gw,
            codes: codes.chunks(gw).map(<[u32]>::to_vec).collect(),
        })
    }

    /// The index of the nearest codebook row for each row of `z` `[n, d]`.
    fn nearest(&self, z: &Tensor) -> Result<Vec<u32>> {
        let cross = z.matmul(&self.codebook.t()?)?;
        let distances = (z
            .sqr()?
            .sum_keepdim(D::Minus1)?
            .broadcast_add(&self.codebook_sq)?
            - (cross * 2.0)?)?;
        let rows = distances.to_vec2::<f32>()?;
        Ok(rows
            .iter()
            .map(|row| {
                row.iter()
                    .enumerate()
                    .fold((0usize, f32::INFINITY), |best, (i, &d)| {
                        if d < best.1 {
                            (i, d)
                        } else {
                            best
                        }
                    })
                    .0 as u32
            })
            .collect())
    }

    /// Decodes to the network's output before 8-bit quantisation:
    /// `[3, height * f, width * f]`, nominally in [-1, 1] (not clamped).
    pub fn decode_tensor(&self, codes: &ImageCodes) -> Result<Tensor> {
        codes.check_shape()?;
        let f = self.config.downsample() as f64;
        let pixels = codes.height as f64 * f * codes.width as f64 * f;
        check(
            "the decoded image's pixel count",
            pixels,
            self.max_pixels as f64,
        )?;
        let n = self.config.num_embeddings;
        let flat = codes.flat();
        if let Some((at, &c)) = flat.iter().enumerate().find(|(_, &c)| c as usize >= n) {
            return Err(CodecError::Codes(format!(
                "code {c} at row {}, column {} is outside the codebook of {n}",
                at / codes.width,
                at % codes.width
            )));
        }
        let index = Tensor::from_vec(flat, codes.height * codes.width, &self.device)?;
        let entries = self.codebook.index_select(&index, 0)?;
        // F.normalize: divide by max(norm, 1e-12).
        let norms = entries
            .sqr()?
            .sum_keepdim(D::Minus1)?
            .sqrt()?
            .maximum(1e-12)?;
        let entries = entries.broadcast_div(&norms)?;
        let d = self.config.embed_dim;
        let z = entries
            .reshape((1, codes.height, codes.width, d))?
            .permute((0, 3, 1, 2))?
            .contiguous()?;
        let x = self.decoder.forward(&self.post_quant_conv.forward(&z)?)?;
        Ok(x.squeeze(0)?)
    }

    pub fn decode_image(&self, codes: &ImageCodes) -> Result<Image> {
        let x = self.decode_tensor(codes)?;
        let (_, h, w) = x.dims3()?;
        let pixels = ((x.clamp(-1f32, 1f32)? + 1.0)? * 127.5)?
            .round()?
            .permute((1, 2, 0))?
            .flatten_all()?
            .to_dtype(DType::U8)?
            .to_vec1::<u8>()?;
        Ok(Image::new(w as u32, h as u32, 3, pixels)?)
    }
}

impl Codec for ImageVq {
    fn kind(&self) -> Kind {
        Kind::Image
    }

    fn vocab_size(&self) -> usize {
        self.config.num_embeddings
    }

    fn structure(&self) -> Structure {
        Structure::Image {
            downsample: self.config.downsample(),
        }
    }

    fn encode(&self, media: &Media) -> Result<Codes> {
        Ok(Codes::Image(self.encode_image(crate::image_input(media)?)?))
    }

    fn decode(&self, codes: &Codes) -> Result<Media> {
        Ok(Media::Image(self.decode_image(codes.image()?)?))
    }
}
