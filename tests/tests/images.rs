#![allow(clippy::unwrap_used)]
//! Images written by ImageMagick and FFmpeg, read by anyforge. Each variant
//! is compared with a plain 8-bit PNG of the same pixels made by the same
//! tool ("truth"), so the test checks our decoding, not the tool's maths.

mod common;

use common::{assert_pixels_close, ffmpeg, psnr, tool, with_exif_orientation, TempDir};
use modalities::{image, Format, Image, Limits};

fn reference(dir: &TempDir) -> String {
    let path = dir.str("ref.png");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=48x32",
        "-frames:v",
        "1",
        &path,
    ]);
    path
}

fn read(path: &str) -> Image {
    Image::read(std::path::Path::new(path), &Limits::default())
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// ImageMagick writes `variant`, then the truth PNG from that very file.
fn variant_vs_truth(dir: &TempDir, name: &str, args: &[&str], truth_type: &str) -> (Image, Image) {
    let src = reference(dir);
    let out = dir.str(name);
    let mut all = vec![src.as_str()];
    all.extend_from_slice(args);
    all.push(&out);
    tool("convert", &all);
    let truth = dir.str(&format!("{name}.truth.png"));
    tool("convert", &[&out, &format!("{truth_type}:{truth}")]);
    (read(&out), read(&truth))
}

#[test]
fn png_16_bit_palette_interlaced_grey_and_alpha() {
    let dir = TempDir::new();
    let cases: [(&str, &[&str], &str); 5] = [
        (
            "rgb16.png",
            &["-depth", "16", "-define", "png:color-type=2"],
            "png24",
        ),
        (
            "palette.png",
            &[
                "-colors",
                "32",
                "-type",
                "Palette",
                "-define",
                "png:color-type=3",
            ],
            "png24",
        ),
        ("interlaced.png", &["-interlace", "PNG"], "png24"),
        (
            "grey.png",
            &["-colorspace", "Gray", "-define", "png:color-type=0"],
            "png24",
        ),
        (
            "rgba.png",
            &[
                "-alpha",
                "set",
                "-channel",
                "A",
                "-evaluate",
                "set",
                "50%",
                "+channel",
            ],
            "png32",
        ),
    ];
    for (name, args, truth) in cases {
        let (img, want) = variant_vs_truth(&dir, name, args, truth);
        assert_eq!((img.width, img.height), (48, 32), "{name}");
        // 16-bit samples round to 8 bits in either decoder: allow one level.
        let worst = img
            .pixels
            .iter()
            .zip(&want.pixels)
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap_or(0);
        assert_eq!(img.channels, want.channels, "{name}");
        assert!(worst <= 1, "{name}: max difference {worst}");
    }
}

#[test]
fn jpeg_baseline_and_progressive() {
    let dir = TempDir::new();
    for (name, args) in [
        ("baseline.jpg", &["-quality", "92"][..]),
        (
            "progressive.jpg",
            &["-quality", "92", "-interlace", "JPEG"][..],
        ),
    ] {
        let (img, want) = variant_vs_truth(&dir, name, args, "png24");
        // Two JPEG decoders (ours and libjpeg) differ in IDCT rounding.
        let p = psnr(&img, &want);
        assert!(p > 35.0, "{name}: PSNR {p:.1} dB");
    }
}

#[test]
fn jpeg_exif_orientation_is_applied() {
    let dir = TempDir::new();
    let src = reference(&dir);
    let plain = dir.str("plain.jpg");
    tool("convert", &[&src, "-quality", "95", &plain]);
    // Orientation 6: the stored pixels must be turned 90° clockwise to view.
    let rotated = dir.path("rotated.jpg");
    std::fs::write(
        &rotated,
        with_exif_orientation(&std::fs::read(&plain).unwrap(), 6),
    )
    .unwrap();
    let upright = dir.str("upright.png");
    tool(
        "convert",
        &[&plain, "-rotate", "90", &format!("png24:{upright}")],
    );
    let img = read(rotated.to_str().unwrap());
    assert_eq!(
        (img.width, img.height),
        (32, 48),
        "orientation 6 swaps width and height"
    );
    let p = psnr(&img, &read(&upright));
    assert!(p > 35.0, "PSNR against ImageMagick's rotation: {p:.1} dB");
}

#[test]
fn webp_lossless_and_lossy_from_ffmpeg() {
    let dir = TempDir::new();
    let src = reference(&dir);
    let truth = read(&src);
    let lossless = dir.str("lossless.webp");
    ffmpeg(&["-i", &src, "-c:v", "libwebp", "-lossless", "1", &lossless]);
    // libwebp converts through YUV unless told not to; lossless keeps RGB exactly.
    assert_pixels_close(&read(&lossless), &truth, 0, "lossless WebP");
    // Lossy WebP subsamples chroma; image-webp and libwebp upsample it
    // differently at hard colour edges, so test on smooth (photo-like) content.
    let smooth = dir.str("smooth.png");
    tool("convert", &[&src, "-blur", "0x1.5", &smooth]);
    let lossy = dir.str("lossy.webp");
    ffmpeg(&["-i", &smooth, "-c:v", "libwebp", "-quality", "95", &lossy]);
    let decoded = dir.str("lossy.png");
    ffmpeg(&["-i", &lossy, "-pix_fmt", "rgb24", &decoded]);
    let ours = read(&lossy);
    let vs_source = psnr(&ours, &read(&smooth));
    let vs_ffmpeg = psnr(&ours, &read(&decoded));
    assert!(
        vs_source > 33.0 && vs_ffmpeg > 30.0,
        "lossy WebP PSNR {vs_source:.1} dB to the source, {vs_ffmpeg:.1} dB to FFmpeg's decode"
    );
}

#[test]
fn gif_and_bmp() {
    let dir = TempDir::new();
    let (bmp, want) = variant_vs_truth(&dir, "ref.bmp", &[], "png24");
    assert_pixels_close(&bmp, &want, 0, "BMP");
    // An animated GIF of three frames.
    let src = reference(&dir);
    let anim = dir.str("anim.gif");
    tool(
        "convert",
        &[
            "-delay", "10", &src, "-negate", &src, "-flip", &src, "-loop", "0", &anim,
        ],
    );
    let bytes = std::fs::read(&anim).unwrap();
    let info = image::probe(&bytes, &Limits::default()).unwrap();
    assert_eq!(
        (info.format, info.width, info.height, info.frames),
        (Format::Gif, 48, 32, 3)
    );
    let first = read(&anim);
    let truth = dir.str("first.png");
    tool(
        "convert",
        &[&format!("{anim}[0]"), &format!("png24:{truth}")],
    );
    assert_pixels_close(&first, &read(&truth), 0, "GIF frame 0");
}

#[test]
fn our_writers_are_read_by_imagemagick() {
    let dir = TempDir::new();
    let src = read(&reference(&dir));
    for (ext, min_psnr) in [
        ("png", f64::INFINITY),
        ("webp", f64::INFINITY),
        ("bmp", f64::INFINITY),
        ("jpg", 35.0),
    ] {
        let ours = dir.path(&format!("ours.{ext}"));
        src.write(&ours, Some(95)).unwrap();
        let back = dir.str(&format!("ours.{ext}.png"));
        tool(
            "convert",
            &[ours.to_str().unwrap(), &format!("png24:{back}")],
        );
        let p = psnr(&read(&back), &src);
        assert!(p >= min_psnr, "{ext}: PSNR {p:.1} dB through ImageMagick");
    }
}
