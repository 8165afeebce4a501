//! Image nodes: resize, crop, pad, composite with a mask, text overlay.

use modalities::{Image, Media};
use serde_json::json;

use crate::node::{media_output, spec, Inputs, Node, NodeSpec, Outputs, Port, StepContext};
use crate::types::{Base, PortType};

const IMAGE: PortType = PortType::one(Base::Image);
const INTEGER: PortType = PortType::one(Base::Integer);
const TEXT: PortType = PortType::one(Base::Text);

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// `#rrggbb` as RGB.
pub fn parse_color(s: &str) -> Result<[u8; 3], String> {
    let hex = s.strip_prefix('#').unwrap_or(s);
    let bad = || format!("color {s:?} is not #rrggbb");
    if hex.len() != 6 {
        return Err(bad());
    }
    let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|_| bad());
    Ok([byte(0)?, byte(2)?, byte(4)?])
}

fn rgb(image: &Image) -> Image {
    if image.channels == 3 {
        image.clone()
    } else {
        image.to_rgb()
    }
}

pub struct Resize;
pub fn resize() -> Box<dyn Node> {
    Box::new(Resize)
}
impl Node for Resize {
    fn spec(&self) -> NodeSpec {
        spec(
            "image.resize",
            "resizes an image (Catmull-Rom); a missing side keeps the aspect ratio",
            vec![
                Port::required("image", IMAGE, "the image"),
                Port::optional("width", INTEGER, "pixels"),
                Port::optional("height", INTEGER, "pixels"),
            ],
            vec![Port::output("image", IMAGE, "the resized image")],
        )
    }
    fn run(&self, _: &StepContext, inputs: &Inputs) -> Result<Outputs, String> {
        let image = inputs.image("image")?;
        let (w, h) = match (inputs.opt_integer("width")?, inputs.opt_integer("height")?) {
            (Some(w), Some(h)) => (w, h),
            (Some(w), None) => (
                w,
                (w as f64 * f64::from(image.height) / f64::from(image.width)).round() as i64,
            ),
            (None, Some(h)) => (
                (h as f64 * f64::from(image.width) / f64::from(image.height)).round() as i64,
                h,
            ),
            (None, None) => return Err("width or height: give at least one".into()),
        };
        if !(1..=16384).contains(&w) || !(1..=16384).contains(&h) {
            return Err(format!("{w} x {h} is not a size in 1..=16384"));
        }
        Ok(media_output(
            "image",
            Media::Image(image.resized(w as u32, h as u32).map_err(err)?),
        ))
    }
}

pub struct Crop;
pub fn crop() -> Box<dyn Node> {
    Box::new(Crop)
}
impl Node for Crop {
    fn spec(&self) -> NodeSpec {
        spec(
            "image.crop",
            "keeps a rectangle of the image",
            vec![
                Port::required("image", IMAGE, "the image"),
                Port::with_default("x", INTEGER, json!(0), "left edge"),
                Port::with_default("y", INTEGER, json!(0), "top edge"),
                Port::required("width", INTEGER, "pixels"),
                Port::required("height", INTEGER, "pixels"),
            ],
            vec![Port::output("image", IMAGE, "the cropped image")],
        )
    }
    fn run(&self, _: &StepContext, inputs: &Inputs) -> Result<Outputs, String> {
        let image = inputs.image("image")?;
        let [x, y, w, h] = ["x", "y", "width", "height"].map(|n| inputs.integer(n));
        let (x, y, w, h) = (x?, y?, w?, h?);
        if x < 0
            || y < 0
            || w < 1
            || h < 1
            || x + w > i64::from(image.width)
            || y + h > i64::from(image.height)
        {
            return Err(format!(
                "the rectangle {w} x {h} at ({x}, {y}) is not inside the {} x {} image",
                image.width, image.height
            ));
        }
        let ch = usize::from(image.channels);
        let (x, y, w, h) = (x as usize, y as usize, w as usize, h as usize);
        let mut pixels = Vec::with_capacity(w * h * ch);
        for row in y..y + h {
            let start = (row * image.width as usize + x) * ch;
            pixels.extend_from_slice(&image.pixels[start..start + w * ch]);
        }
        Ok(media_output(
            "image",
            Media::Image(Image::new(w as u32, h as u32, image.channels, pixels).map_err(err)?),
        ))
    }
}

pub struct Pad;
pub fn pad() -> Box<dyn Node> {
    Box::new(Pad)
}
impl Node for Pad {
    fn spec(&self) -> NodeSpec {
        spec(
            "image.pad",
            "adds borders of a color",
            vec![
                Port::required("image", IMAGE, "the image"),
                Port::with_default("top", INTEGER, json!(0), "pixels"),
                Port::with_default("right", INTEGER, json!(0), "pixels"),
                Port::with_default("bottom", INTEGER, json!(0), "pixels"),
                Port::with_default("left", INTEGER, json!(0), "pixels"),
                Port::with_default("color", TEXT, json!("#000000"), "#rrggbb"),
            ],
            vec![Port::output("image", IMAGE, "the padded image")],
        )
    }
    fn run(&self, _: &StepContext, inputs: &Inputs) -> Result<Outputs, String> {
        let image = rgb(inputs.image("image")?);
        let [t, r, b, l] = ["top", "right", "bottom", "left"].map(|n| inputs.integer(n));
        let (t, r, b, l) = (t?, r?, b?, l?);
        if [t, r, b, l].iter().any(|&v| !(0..=8192).contains(&v)) {
            return Err("borders are 0 to 8192 pixels".into());
        }
        let color = parse_color(&inputs.text("color")?)?;
        let (w, h) = (
            image.width as usize + (l + r) as usize,
            image.height as usize + (t + b) as usize,
        );
        let mut out = Image::filled(w as u32, h as u32, color);
        for row in 0..image.height as usize {
            let src = row * image.width as usize * 3;
            let dst = ((row + t as usize) * w + l as usize) * 3;
            out.pixels[dst..dst + image.width as usize * 3]
                .copy_from_slice(&image.pixels[src..src + image.width as usize * 3]);
        }
        Ok(media_output("image", Media::Image(out)))
    }
}

pub struct Composite;
pub fn composite() -> Box<dyn Node> {
    Box::new(Composite)
}
impl Node for Composite {
    fn spec(&self) -> NodeSpec {
        spec(
            "image.composite",
            "places an image over another at (x, y), through a mask (white shows the overlay) or its alpha",
            vec![
                Port::required("base", IMAGE, "the background"),
                Port::required("overlay", IMAGE, "placed on top"),
                Port::optional("mask", IMAGE, "resized to the overlay; white shows it"),
                Port::with_default("x", INTEGER, json!(0), "left edge of the overlay"),
                Port::with_default("y", INTEGER, json!(0), "top edge of the overlay"),
            ],
            vec![Port::output("image", IMAGE, "the composite")],
        )
    }
    fn run(&self, _: &StepContext, inputs: &Inputs) -> Result<Outputs, String> {
        let mut base = rgb(inputs.image("base")?);
        let overlay = inputs.image("overlay")?;
        let (ow, oh) = (overlay.width as usize, overlay.height as usize);
        let alpha: Vec<f32> = match inputs.opt_image("mask")? {
            Some(mask) => {
                let m = rgb(&mask.resized(overlay.width, overlay.height).map_err(err)?);
                m.pixels
                    .chunks(3)
                    .map(|p| (f32::from(p[0]) + f32::from(p[1]) + f32::from(p[2])) / 765.0)
                    .collect()
            }
            None if overlay.channels == 4 => overlay
                .pixels
                .chunks(4)
                .map(|p| f32::from(p[3]) / 255.0)
                .collect(),
            None => vec![1.0; ow * oh],
        };
        let top = rgb(overlay);
        let (x0, y0) = (inputs.integer("x")?, inputs.integer("y")?);
        let (bw, bh) = (i64::from(base.width), i64::from(base.height));
        for y in 0..oh as i64 {
            for x in 0..ow as i64 {
                let (bx, by) = (x0 + x, y0 + y);
                if bx < 0 || by < 0 || bx >= bw || by >= bh {
                    continue;
                }
                let a = alpha[(y as usize) * ow + x as usize];
                let src = ((y as usize) * ow + x as usize) * 3;
                let dst = ((by * bw + bx) as usize) * 3;
                for c in 0..3 {
                    let v = f32::from(base.pixels[dst + c]) * (1.0 - a)
                        + f32::from(top.pixels[src + c]) * a;
                    base.pixels[dst + c] = v.round().clamp(0.0, 255.0) as u8;
                }
            }
        }
        Ok(media_output("image", Media::Image(base)))
    }
}

pub struct TextOverlay;
pub fn text() -> Box<dyn Node> {
    Box::new(TextOverlay)
}
impl Node for TextOverlay {
    fn spec(&self) -> NodeSpec {
        spec(
            "image.text",
            "writes text on an image in an 8x8 bitmap font, scaled",
            vec![
                Port::required("image", IMAGE, "the image"),
                Port::required("text", TEXT, "what to write (lines split at newlines)"),
                Port::with_default("x", INTEGER, json!(8), "left edge"),
                Port::with_default("y", INTEGER, json!(8), "top edge"),
                Port::with_default("scale", INTEGER, json!(2), "pixels per font pixel"),
                Port::with_default("color", TEXT, json!("#ffffff"), "#rrggbb"),
            ],
            vec![Port::output("image", IMAGE, "the image with the text")],
        )
    }
    fn run(&self, _: &StepContext, inputs: &Inputs) -> Result<Outputs, String> {
        use font8x8::UnicodeFonts;
        let mut image = rgb(inputs.image("image")?);
        let scale = inputs.integer("scale")?;
        if !(1..=64).contains(&scale) {
            return Err(format!("scale: {scale} is not in 1..=64"));
        }
        let color = parse_color(&inputs.text("color")?)?;
        let (x0, y0) = (inputs.integer("x")?, inputs.integer("y")?);
        let (w, h) = (i64::from(image.width), i64::from(image.height));
        for (line_no, line) in inputs.text("text")?.lines().enumerate() {
            for (col, c) in line.chars().enumerate() {
                let glyph = font8x8::BASIC_FONTS
                    .get(c)
                    .or_else(|| font8x8::LATIN_FONTS.get(c))
                    .unwrap_or([0; 8]);
                for (gy, bits) in glyph.iter().enumerate() {
                    for gx in 0..8 {
                        if bits & (1 << gx) == 0 {
                            continue;
                        }
                        for sy in 0..scale {
                            for sx in 0..scale {
                                let px = x0 + (col as i64 * 8 + gx) * scale + sx;
                                let py = y0 + (line_no as i64 * 10 + gy as i64) * scale + sy;
                                if (0..w).contains(&px) && (0..h).contains(&py) {
                                    let at = ((py * w + px) * 3) as usize;
                                    image.pixels[at..at + 3].copy_from_slice(&color);
                                }
                            }
                        }
                    }
                }
            }
        }
        Ok(media_output("image", Media::Image(image)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::types::Value;

    fn run(node: &dyn Node, inputs: Vec<(&str, Value)>) -> Result<Image, String> {
        match crate::node::run_node(node, inputs)?.remove("image") {
            Some(Value::Media(Media::Image(i))) => Ok(i),
            other => panic!("{other:?}"),
        }
    }

    fn img(image: Image) -> Value {
        Value::Media(Media::Image(image))
    }

    #[test]
    fn crop_pad_composite_and_text_do_what_they_say() {
        let red = Image::filled(10, 6, [255, 0, 0]);
        let cropped = run(
            &Crop,
            vec![
                ("image", img(red.clone())),
                ("x", Value::Integer(2)),
                ("width", Value::Integer(4)),
                ("height", Value::Integer(3)),
            ],
        )
        .unwrap();
        assert_eq!((cropped.width, cropped.height), (4, 3));
        assert!(run(
            &Crop,
            vec![
                ("image", img(red.clone())),
                ("x", Value::Integer(8)),
                ("width", Value::Integer(4)),
                ("height", Value::Integer(3))
            ]
        )
        .is_err());

        let padded = run(
            &Pad,
            vec![
                ("image", img(red.clone())),
                ("left", Value::Integer(2)),
                ("color", Value::Text("#00ff00".into())),
            ],
        )
        .unwrap();
        assert_eq!((padded.width, padded.height), (12, 6));
        assert_eq!(&padded.pixels[0..3], &[0, 255, 0]);
        assert_eq!(&padded.pixels[6..9], &[255, 0, 0]);

        let blue = Image::filled(2, 2, [0, 0, 255]);
        let mut mask = Image::filled(2, 2, [0, 0, 0]);
        mask.pixels[0..3].copy_from_slice(&[255, 255, 255]);
        let out = run(
            &Composite,
            vec![
                ("base", img(red.clone())),
                ("overlay", img(blue)),
                ("mask", img(mask)),
                ("x", Value::Integer(1)),
                ("y", Value::Integer(1)),
            ],
        )
        .unwrap();
        let px = |x: usize, y: usize| &out.pixels[(y * 10 + x) * 3..][..3];
        assert_eq!(px(1, 1), &[0, 0, 255], "white mask shows the overlay");
        assert_eq!(px(2, 1), &[255, 0, 0], "black mask keeps the base");

        let black = Image::filled(40, 20, [0, 0, 0]);
        let written = run(
            &TextOverlay,
            vec![
                ("image", img(black)),
                ("text", Value::Text("Hi".into())),
                ("x", Value::Integer(0)),
                ("y", Value::Integer(0)),
                ("scale", Value::Integer(1)),
            ],
        )
        .unwrap();
        let lit = written
            .pixels
            .chunks(3)
            .filter(|p| p == &[255, 255, 255])
            .count();
        assert!(lit > 10 && lit < 128, "{lit} pixels lit");
        assert_eq!(parse_color("#0a0B0c"), Ok([10, 11, 12]));
        assert!(parse_color("red").is_err());
    }
}
