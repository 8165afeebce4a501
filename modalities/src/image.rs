//! Images: 8-bit RGB or RGBA pixels, read and written with the `image` crate.

use std::io::Cursor;
use std::path::Path;

use image::{
    codecs, AnimationDecoder, DynamicImage, ExtendedColorType, ImageDecoder, ImageEncoder,
    ImageError, ImageFormat,
};
use serde::Serialize;

use crate::limits::check;
use crate::{read_bounded, write_atomic, Format, Kind, Limits, MediaError, Result};

/// Default JPEG quality when the caller does not choose one.
pub const DEFAULT_JPEG_QUALITY: u8 = 90;

/// An 8-bit image, rows top to bottom, `channels` bytes per pixel (3 = RGB,
/// 4 = RGBA). Grey and 16-bit sources are converted on decode.
#[derive(Clone, PartialEq, Eq)]
pub struct Image {
    pub width: u32,
    pub height: u32,
    pub channels: u8,
    pub pixels: Vec<u8>,
}

impl std::fmt::Debug for Image {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Image({}x{}x{})", self.width, self.height, self.channels)
    }
}

/// What `probe` reports about an image file without keeping its pixels.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImageInfo {
    pub format: Format,
    pub width: u32,
    pub height: u32,
    /// Channels in the file: 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA.
    pub channels: u8,
    /// 1 for a still image; the frame count of an animation.
    pub frames: u32,
}

impl Image {
    /// Builds an image, checking that the buffer matches the dimensions.
    pub fn new(width: u32, height: u32, channels: u8, pixels: Vec<u8>) -> Result<Image> {
        if !matches!(channels, 3 | 4) {
            return Err(MediaError::Invalid(format!(
                "images have 3 (RGB) or 4 (RGBA) channels, not {channels}"
            )));
        }
        let expected = u64::from(width) * u64::from(height) * u64::from(channels);
        if expected != pixels.len() as u64 || width == 0 || height == 0 {
            return Err(MediaError::Invalid(format!(
                "a {width}x{height}x{channels} image needs {expected} bytes, got {}",
                pixels.len()
            )));
        }
        Ok(Image {
            width,
            height,
            channels,
            pixels,
        })
    }

    /// A single-colour RGB image.
    pub fn filled(width: u32, height: u32, rgb: [u8; 3]) -> Image {
        let pixels = rgb.repeat(width as usize * height as usize);
        Image {
            width,
            height,
            channels: 3,
            pixels,
        }
    }

    pub fn has_alpha(&self) -> bool {
        self.channels == 4
    }

    /// The same image without its alpha channel.
    pub fn to_rgb(&self) -> Image {
        if self.channels == 3 {
            return self.clone();
        }
        let pixels = self
            .pixels
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect();
        Image {
            width: self.width,
            height: self.height,
            channels: 3,
            pixels,
        }
    }

    /// The image scaled to `width` x `height` (Catmull-Rom filtering; the
    /// aspect ratio is the caller's choice).
    pub fn resized(&self, width: u32, height: u32) -> Result<Image> {
        self.resized_with(width, height, image::imageops::FilterType::CatmullRom)
    }

    /// The image scaled to `width` x `height` by repeating (or dropping)
    /// pixels: flat colours and hard edges stay as they are.
    pub fn resized_nearest(&self, width: u32, height: u32) -> Result<Image> {
        self.resized_with(width, height, image::imageops::FilterType::Nearest)
    }

    fn resized_with(
        &self,
        width: u32,
        height: u32,
        filter: image::imageops::FilterType,
    ) -> Result<Image> {
        Limits::default().check_frame_size(width, height)?;
        if (width, height) == (self.width, self.height) {
            return Ok(self.clone());
        }
        let invalid = || MediaError::Invalid("pixel buffer does not match the image size".into());
        let pixels = if self.channels == 4 {
            let buf = image::RgbaImage::from_raw(self.width, self.height, self.pixels.clone())
                .ok_or_else(invalid)?;
            image::imageops::resize(&buf, width, height, filter).into_raw()
        } else {
            let buf = image::RgbImage::from_raw(self.width, self.height, self.pixels.clone())
                .ok_or_else(invalid)?;
            image::imageops::resize(&buf, width, height, filter).into_raw()
        };
        Image::new(width, height, self.channels, pixels)
    }

    /// Decodes the first frame of an image file held in memory.
    pub fn decode(bytes: &[u8], limits: &Limits) -> Result<Image> {
        let format = detect_image(bytes)?;
        let mut reader = image::ImageReader::with_format(Cursor::new(bytes), codec_format(format));
        reader.limits(decoder_limits(limits));
        let mut decoder = reader.into_decoder().map_err(|e| image_error(format, e))?;
        let (width, height) = decoder.dimensions();
        limits.check_frame_size(width, height)?;
        // EXIF orientation is applied so pixels are upright, as viewers show them.
        let orientation = decoder.orientation().map_err(|e| image_error(format, e))?;
        let mut dynamic =
            DynamicImage::from_decoder(decoder).map_err(|e| image_error(format, e))?;
        dynamic.apply_orientation(orientation);
        Ok(from_dynamic(dynamic))
    }

    pub fn read(path: &Path, limits: &Limits) -> Result<Image> {
        Image::decode(&read_bounded(path, limits)?, limits)
    }

    /// Encodes to PNG, JPEG (at `quality`, 1-100), WebP (lossless) or BMP.
    pub fn encode(&self, format: Format, quality: Option<u8>) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        let color = if self.has_alpha() {
            ExtendedColorType::Rgba8
        } else {
            ExtendedColorType::Rgb8
        };
        let (w, h) = (self.width, self.height);
        let result = match format {
            Format::Png => {
                codecs::png::PngEncoder::new(&mut out).write_image(&self.pixels, w, h, color)
            }
            Format::Jpeg => {
                let quality = quality.unwrap_or(DEFAULT_JPEG_QUALITY).clamp(1, 100);
                // JPEG has no alpha channel.
                let rgb = self.to_rgb();
                codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality).write_image(
                    &rgb.pixels,
                    w,
                    h,
                    ExtendedColorType::Rgb8,
                )
            }
            Format::Webp => codecs::webp::WebPEncoder::new_lossless(&mut out).write_image(
                &self.pixels,
                w,
                h,
                color,
            ),
            Format::Bmp => {
                codecs::bmp::BmpEncoder::new(&mut out).write_image(&self.pixels, w, h, color)
            }
            other => {
                return Err(MediaError::Unsupported(format!(
                    "cannot write images as {other}"
                )))
            }
        };
        result.map_err(|e| MediaError::encode(format, e))?;
        Ok(out)
    }

    /// Writes the image in the format named by the path's extension.
    pub fn write(&self, path: &Path, quality: Option<u8>) -> Result<()> {
        let format = match Format::for_output(path) {
            Some((format, Kind::Image)) => format,
            _ => {
                return Err(MediaError::Unsupported(format!(
                    "{}: not an image extension (png, jpg, webp, bmp)",
                    path.display()
                )))
            }
        };
        write_atomic(path, &self.encode(format, quality)?)
    }
}

/// Reads dimensions, channels and frame count. Animated frames are decoded
/// one at a time (to count them), never all kept.
pub fn probe(bytes: &[u8], limits: &Limits) -> Result<ImageInfo> {
    let format = detect_image(bytes)?;
    let mut reader = image::ImageReader::with_format(Cursor::new(bytes), codec_format(format));
    reader.limits(decoder_limits(limits));
    let decoder = reader.into_decoder().map_err(|e| image_error(format, e))?;
    let (width, height) = decoder.dimensions();
    limits.check_frame_size(width, height)?;
    let channels = decoder.color_type().channel_count();
    let frames = count_frames(format, bytes, limits)?;
    Ok(ImageInfo {
        format,
        width,
        height,
        channels,
        frames,
    })
}

fn count_frames(format: Format, bytes: &[u8], limits: &Limits) -> Result<u32> {
    let frames = match format {
        Format::Gif => {
            let decoder = codecs::gif::GifDecoder::new(Cursor::new(bytes))
                .map_err(|e| image_error(format, e))?;
            decoder.into_frames()
        }
        Format::Png => {
            let decoder = codecs::png::PngDecoder::new(Cursor::new(bytes))
                .map_err(|e| image_error(format, e))?;
            if !decoder.is_apng().map_err(|e| image_error(format, e))? {
                return Ok(1);
            }
            decoder
                .apng()
                .map_err(|e| image_error(format, e))?
                .into_frames()
        }
        Format::Webp => {
            let decoder = codecs::webp::WebPDecoder::new(Cursor::new(bytes))
                .map_err(|e| image_error(format, e))?;
            if !decoder.has_animation() {
                return Ok(1);
            }
            decoder.into_frames()
        }
        _ => return Ok(1),
    };
    let mut count = 0u32;
    for frame in frames {
        frame.map_err(|e| image_error(format, e))?;
        count += 1;
        check(
            "animation frame count",
            count.into(),
            limits.max_image_frames.into(),
        )?;
    }
    Ok(count.max(1))
}

fn detect_image(bytes: &[u8]) -> Result<Format> {
    let head = &bytes[..bytes.len().min(crate::format::SNIFF_BYTES)];
    match Format::detect(head, bytes.len() as u64, None) {
        Some(f) if f.kind() == Some(Kind::Image) => Ok(f),
        Some(f) => Err(MediaError::Invalid(format!("expected an image, found {f}"))),
        None => Err(MediaError::UnknownFormat(
            "not a PNG, JPEG, WebP, GIF or BMP image".into(),
        )),
    }
}

fn codec_format(format: Format) -> ImageFormat {
    match format {
        Format::Png => ImageFormat::Png,
        Format::Jpeg => ImageFormat::Jpeg,
        Format::Webp => ImageFormat::WebP,
        Format::Gif => ImageFormat::Gif,
        _ => ImageFormat::Bmp,
    }
}

fn decoder_limits(limits: &Limits) -> image::Limits {
    // Dimensions are checked by `Limits::check_frame_size` right after the
    // header is read (its errors name the size); the crate's allocation cap
    // bounds everything its decoders allocate. 16-bit RGBA is 8 bytes a
    // pixel; allow one output conversion on top.
    let mut l = image::Limits::no_limits();
    l.max_alloc = Some(limits.max_pixels.saturating_mul(12));
    l
}

fn image_error(format: Format, e: ImageError) -> MediaError {
    match e {
        ImageError::Limits(l) => {
            MediaError::Invalid(format!("{format} image exceeds the decoding limits: {l}"))
        }
        other => MediaError::malformed(format, other),
    }
}

/// RGBA when the image has an alpha channel that some pixel uses; RGB otherwise
/// (GIF and WebP decoders report RGBA even for opaque images).
fn from_dynamic(dynamic: DynamicImage) -> Image {
    let (width, height) = (dynamic.width(), dynamic.height());
    if dynamic.color().has_alpha() && !fully_opaque(&dynamic) {
        Image {
            width,
            height,
            channels: 4,
            pixels: dynamic.into_rgba8().into_raw(),
        }
    } else {
        Image {
            width,
            height,
            channels: 3,
            pixels: dynamic.into_rgb8().into_raw(),
        }
    }
}

fn fully_opaque(dynamic: &DynamicImage) -> bool {
    match dynamic {
        DynamicImage::ImageRgba8(buf) => buf.pixels().all(|p| p[3] == u8::MAX),
        DynamicImage::ImageLumaA8(buf) => buf.pixels().all(|p| p[1] == u8::MAX),
        DynamicImage::ImageRgba16(buf) => buf.pixels().all(|p| p[3] == u16::MAX),
        DynamicImage::ImageLumaA16(buf) => buf.pixels().all(|p| p[1] == u16::MAX),
        DynamicImage::ImageRgba32F(buf) => buf.pixels().all(|p| p[3] >= 1.0),
        _ => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn gradient(w: u32, h: u32, channels: u8) -> Image {
        let mut pixels = Vec::new();
        for y in 0..h {
            for x in 0..w {
                pixels.extend_from_slice(&[(x * 255 / w) as u8, (y * 255 / h) as u8, 128]);
                if channels == 4 {
                    pixels.push((x + y) as u8);
                }
            }
        }
        Image::new(w, h, channels, pixels).unwrap()
    }

    fn psnr(a: &Image, b: &Image) -> f64 {
        let mse: f64 = a
            .pixels
            .iter()
            .zip(&b.pixels)
            .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
            .sum::<f64>()
            / a.pixels.len() as f64;
        10.0 * (255.0f64.powi(2) / mse.max(1e-12)).log10()
    }

    #[test]
    fn lossless_round_trips_are_exact() {
        let limits = Limits::default();
        for channels in [3, 4] {
            let img = gradient(37, 21, channels);
            for format in [Format::Png, Format::Webp, Format::Bmp] {
                let back = Image::decode(&img.encode(format, None).unwrap(), &limits).unwrap();
                assert_eq!(back, img, "{format} with {channels} channels");
            }
        }
    }

    #[test]
    fn jpeg_round_trip_within_psnr() {
        let img = gradient(64, 48, 3);
        let back = Image::decode(
            &img.encode(Format::Jpeg, Some(95)).unwrap(),
            &Limits::default(),
        )
        .unwrap();
        assert_eq!((back.width, back.height, back.channels), (64, 48, 3));
        let p = psnr(&img, &back);
        assert!(p > 35.0, "PSNR {p}");
    }

    #[test]
    fn buffer_size_is_checked() {
        assert!(Image::new(2, 2, 3, vec![0; 11]).is_err());
        assert!(Image::new(2, 2, 2, vec![0; 8]).is_err());
    }

    #[test]
    fn probe_reports_file_channels() {
        let info = probe(
            &gradient(5, 4, 4).encode(Format::Png, None).unwrap(),
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(
            (
                info.format,
                info.width,
                info.height,
                info.channels,
                info.frames
            ),
            (Format::Png, 5, 4, 4, 1)
        );
    }
}
