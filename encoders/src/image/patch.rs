//! The patch codec: an image cut into `patch` x `patch` RGB patches, each
//! replaced by the nearest of `codes` patches. The codebook is fitted to
//! images like those it will code: exactly their distinct patches when
//! there are no more than `codes` of them (so the starter pack's
//! procedural world is coded losslessly), else by k-means
//! ([`crate::kmeans`]). Decoding is a codebook lookup.
//!
//! On disk: `config.json` (`{"codec_type": "patch_kmeans", "patch": 4,
//! "codes": 256}`) and `model.safetensors` with `codebook` `[codes,
//! patch * patch * 3]` in 0..=255.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use candle_core::{Device, Tensor};
use modalities::{Image, Kind, Media};
use serde::{Deserialize, Serialize};

use crate::codes::{Codes, ImageCodes};
use crate::error::{CodecError, Result};
use crate::limits::{check, CodecLimits};
use crate::weights::Checkpoint;
use crate::{Codec, Structure};

/// The config, as `config.json` holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchConfig {
    /// Always `patch_kmeans`.
    pub codec_type: String,
    /// Pixels per patch side.
    pub patch: usize,
    /// Codebook entries.
    pub codes: usize,
}

impl PatchConfig {
    pub fn new(patch: usize, codes: usize) -> PatchConfig {
        PatchConfig {
            codec_type: "patch_kmeans".into(),
            patch,
            codes,
        }
    }

    fn check(&self, path: &Path) -> Result<()> {
        if !(1..=64).contains(&self.patch) || !(2..=65_536).contains(&self.codes) {
            return Err(CodecError::config(
                path,
                format!(
                    "patch {} must be in 1..=64 and codes {} in 2..=65536",
                    self.patch, self.codes
                ),
            ));
        }
        Ok(())
    }

    fn dim(&self) -> usize {
        self.patch * self.patch * 3
    }
}

pub struct PatchCodec {
    config: PatchConfig,
    /// `codes` rows of `patch * patch * 3` values, row-major RGB.
    codebook: Vec<f32>,
    max_pixels: u64,
}

pub fn load(
    dir: &Path,
    config: &serde_json::Value,
    limits: &CodecLimits,
) -> Result<Box<dyn Codec>> {
    Ok(Box::new(
        PatchCodec::load(dir, config)?.with_max_pixels(limits.max_pixels),
    ))
}

impl PatchCodec {
    pub fn load(dir: &Path, config: &serde_json::Value) -> Result<PatchCodec> {
        let path = dir.join("config.json");
        let config: PatchConfig =
            serde_json::from_value(config.clone()).map_err(|e| CodecError::config(&path, e))?;
        config.check(&path)?;
        let ckpt = Checkpoint::open(dir, &Device::Cpu)?;
        let codebook = ckpt
            .get("codebook", &[config.codes, config.dim()])?
            .flatten_all()?
            .to_vec1::<f32>()?;
        Ok(PatchCodec {
            config,
            codebook,
            max_pixels: CodecLimits::default().max_pixels,
        })
    }

    pub fn with_max_pixels(mut self, max_pixels: u64) -> PatchCodec {
        self.max_pixels = max_pixels;
        self
    }

    pub fn config(&self) -> &PatchConfig {
        &self.config
    }

    /// Fits a codebook of at most `config.codes` entries to the patches of
    /// `images`: exactly their distinct patches when there are no more
    /// (the codec is then lossless on such images and has that many
    /// codes), else k-means (k-means++ starts, Lloyd iterations), seeded:
    /// the same images and seed give the same codebook.
    pub fn fit(
        images: &[Image],
        config: PatchConfig,
        seed: u64,
        iterations: usize,
    ) -> Result<PatchCodec> {
        let dim = config.dim();
        let mut rows = Vec::new();
        for image in images {
            rows.extend(patches(image, config.patch)?.into_iter().flatten());
        }
        // A world of few distinct patches (flat colours, edges on a grid)
        // is coded losslessly by a codebook of exactly those patches: k-means
        // with as many codes merges the rare ones, and a rare edge patch
        // (a small shape of two uncommon colours) is where a picture's
        // meaning is.
        if let Some(codebook) = distinct_rows(&rows, dim, config.codes) {
            let codes = codebook.len() / dim;
            return Ok(PatchCodec {
                codebook,
                config: PatchConfig { codes, ..config },
                max_pixels: CodecLimits::default().max_pixels,
            });
        }
        let clusters = crate::kmeans::fit(&rows, dim, config.codes, iterations, seed)?;
        Ok(PatchCodec {
            codebook: clusters.centroids,
            config,
            max_pixels: CodecLimits::default().max_pixels,
        })
    }

    /// Writes `config.json` and `model.safetensors` into `dir`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| modalities::MediaError::io(dir, e))?;
        let config = serde_json::to_string_pretty(&self.config)
            .map_err(|e| CodecError::config(dir.join("config.json"), e))?;
        let path = dir.join("config.json");
        std::fs::write(&path, config).map_err(|e| modalities::MediaError::io(&path, e))?;
        let codebook = Tensor::from_vec(
            self.codebook.clone(),
            (self.config.codes, self.config.dim()),
            &Device::Cpu,
        )?;
        let tensors = HashMap::from([("codebook".to_string(), codebook)]);
        candle_core::safetensors::save(&tensors, dir.join("model.safetensors"))?;
        Ok(())
    }

    pub fn encode_image(&self, image: &Image) -> Result<ImageCodes> {
        let p = self.config.patch;
        check(
            "the image's pixel count",
            f64::from(image.width) * f64::from(image.height),
            self.max_pixels as f64,
        )?;
        let rows = patches(image, p)?;
        let width = image.width as usize / p;
        let flat: Vec<f32> = rows.into_iter().flatten().collect();
        let codes = crate::kmeans::nearest(&flat, self.config.dim(), &self.codebook)?;
        Ok(ImageCodes {
            height: image.height as usize / p,
            width,
            codes: codes.chunks(width).map(<[u32]>::to_vec).collect(),
        })
    }

    pub fn decode_image(&self, codes: &ImageCodes) -> Result<Image> {
        codes.check_shape()?;
        let p = self.config.patch;
        let (w, h) = (codes.width * p, codes.height * p);
        check(
            "the decoded image's pixel count",
            (w * h) as f64,
            self.max_pixels as f64,
        )?;
        let dim = self.config.dim();
        let mut pixels = vec![0u8; w * h * 3];
        for (r, row) in codes.codes.iter().enumerate() {
            for (c, &code) in row.iter().enumerate() {
                let entry = self
                    .codebook
                    .get(code as usize * dim..(code as usize + 1) * dim)
                    .ok_or_else(|| {
                        CodecError::Codes(format!(
                            "code {code} at row {r}, column {c} is outside the codebook of {}",
                            self.config.codes
                        ))
                    })?;
                for y in 0..p {
                    for x in 0..p {
                        for ch in 0..3 {
                            let v = entry[(y * p + x) * 3 + ch];
                            pixels[((r * p + y) * w + c * p + x) * 3 + ch] =
                                v.round().clamp(0.0, 255.0) as u8;
                        }
                    }
                }
            }
        }
        Ok(Image::new(w as u32, h as u32, 3, pixels)?)
    }
}

/// The distinct rows of `rows` in order of first appearance, when there
/// are at least two and at most `limit` of them.
fn distinct_rows(rows: &[f32], dim: usize, limit: usize) -> Option<Vec<f32>> {
    let mut seen: HashSet<Vec<u32>> = HashSet::new();
    let mut distinct = Vec::new();
    for row in rows.chunks_exact(dim) {
        let key: Vec<u32> = row.iter().map(|v| v.to_bits()).collect();
        if seen.insert(key) {
            if seen.len() > limit {
                return None;
            }
            distinct.extend_from_slice(row);
        }
    }
    (seen.len() >= 2).then_some(distinct)
}

/// An RGB image's patches in raster order, each `patch * patch * 3` values.
fn patches(image: &Image, p: usize) -> Result<Vec<Vec<f32>>> {
    let (w, h) = (image.width as usize, image.height as usize);
    if !w.is_multiple_of(p) || !h.is_multiple_of(p) || w == 0 || h == 0 {
        return Err(CodecError::Input(format!(
            "the image is {w}x{h}; this codec needs sides that are multiples of {p}"
        )));
    }
    let rgb = image.to_rgb();
    let mut out = Vec::with_capacity(w * h / (p * p));
    for r in 0..h / p {
        for c in 0..w / p {
            let mut patch = Vec::with_capacity(p * p * 3);
            for y in 0..p {
                let start = ((r * p + y) * w + c * p) * 3;
                patch.extend(
                    rgb.pixels[start..start + p * 3]
                        .iter()
                        .map(|&v| f32::from(v)),
                );
            }
            out.push(patch);
        }
    }
    Ok(out)
}

impl Codec for PatchCodec {
    fn kind(&self) -> Kind {
        Kind::Image
    }

    fn vocab_size(&self) -> usize {
        self.config.codes
    }

    fn structure(&self) -> Structure {
        Structure::Image {
            downsample: self.config.patch,
        }
    }

    fn encode(&self, media: &Media) -> Result<Codes> {
        Ok(Codes::Image(self.encode_image(crate::image_input(media)?)?))
    }

    fn decode(&self, codes: &Codes) -> Result<Media> {
        Ok(Media::Image(self.decode_image(codes.image()?)?))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Images of four flat colours in 4x4 blocks, and one with a diagonal edge.
    fn images() -> Vec<Image> {
        let colours = [
            [200u8, 30, 30],
            [30, 200, 30],
            [30, 30, 200],
            [240, 240, 240],
        ];
        (0..8)
            .map(|k| {
                let mut pixels = Vec::new();
                for y in 0..16 {
                    for x in 0..16 {
                        let c = if x > y + k {
                            colours[k % 4]
                        } else {
                            colours[(x / 4 + y / 4 + k) % 4]
                        };
                        pixels.extend(c);
                    }
                }
                Image::new(16, 16, 3, pixels).unwrap()
            })
            .collect()
    }

    #[test]
    fn a_fitted_codebook_codes_its_images_closely_and_saves_and_loads() {
        let images = images();
        let codec = PatchCodec::fit(&images, PatchConfig::new(4, 16), 1, 50).unwrap();
        let again = PatchCodec::fit(&images, PatchConfig::new(4, 16), 1, 50).unwrap();
        assert_eq!(codec.codebook, again.codebook, "seeded");
        let mut err = 0f64;
        let mut n = 0f64;
        for image in &images {
            let codes = codec.encode_image(image).unwrap();
            assert_eq!((codes.height, codes.width), (4, 4));
            let back = codec.decode_image(&codes).unwrap();
            for (a, b) in image.pixels.iter().zip(&back.pixels) {
                err += (f64::from(*a) - f64::from(*b)).powi(2);
                n += 1.0;
            }
        }
        let psnr = 10.0 * (255f64.powi(2) / (err / n)).log10();
        assert!(psnr > 25.0, "PSNR {psnr:.1} dB");

        let dir = tempfile::tempdir().unwrap();
        codec.save(dir.path()).unwrap();
        let opened = crate::open(dir.path().to_str().unwrap()).unwrap();
        assert_eq!((opened.kind(), opened.vocab_size()), (Kind::Image, 16));
        assert_eq!(opened.structure(), Structure::Image { downsample: 4 });
        let codes = opened.encode(&Media::Image(images[3].clone())).unwrap();
        assert_eq!(codes, Codes::Image(codec.encode_image(&images[3]).unwrap()));
    }

    #[test]
    fn bad_sizes_and_codes_are_named() {
        let codec = PatchCodec::fit(&images(), PatchConfig::new(4, 8), 1, 10).unwrap();
        let odd = Image::new(10, 8, 3, vec![0; 10 * 8 * 3]).unwrap();
        assert!(codec
            .encode_image(&odd)
            .unwrap_err()
            .to_string()
            .contains("multiples of 4"));
        let bad = ImageCodes {
            height: 1,
            width: 1,
            codes: vec![vec![8]],
        };
        let e = codec.decode_image(&bad).unwrap_err().to_string();
        assert!(e.contains("outside the codebook of 8"), "{e}");
    }

    #[test]
    fn images_of_few_distinct_patches_get_a_lossless_codebook_of_them() {
        let images = images();
        let codec = PatchCodec::fit(&images, PatchConfig::new(4, 1000), 1, 10).unwrap();
        let distinct = codec.config().codes;
        assert!((2..1000).contains(&distinct), "{distinct} codes");
        for image in &images {
            let back = codec
                .decode_image(&codec.encode_image(image).unwrap())
                .unwrap();
            assert_eq!(back.pixels, image.pixels);
        }
        // One fewer code than distinct patches: k-means, which must merge.
        let fewer = PatchConfig::new(4, distinct - 1);
        let merged = PatchCodec::fit(&images, fewer, 1, 10).unwrap();
        assert_eq!(merged.config().codes, distinct - 1);
        assert!(images.iter().any(|image| {
            let codes = merged.encode_image(image).unwrap();
            merged.decode_image(&codes).unwrap().pixels != image.pixels
        }));
    }
}
