//! Media nodes: loudness, resizing, mesh normalising, video assembly.

use modalities::{Media, Mesh, Rational, Video};
use serde_json::json;

use crate::node::{as_image, output, Inputs, Node, NodeSpec, Outputs, Port, StepContext};
use crate::types::{Base, PortType, Value};

const NUMBER: PortType = PortType::one(Base::Number);
const INTEGER: PortType = PortType::one(Base::Integer);

/// `audio.loudness`: integrated loudness (EBU R128) brought to a target.
pub struct Loudness;

pub fn loudness() -> Box<dyn Node> {
    Box::new(Loudness)
}

impl Node for Loudness {
    fn spec(&self) -> NodeSpec {
        NodeSpec {
            name: "audio.loudness",
            doc:
                "normalises integrated loudness (EBU R128) to a target, peaks kept below full scale",
            inputs: vec![
                Port::required("audio", PortType::one(Base::Audio), "the audio"),
                Port::with_default("target", NUMBER, json!(-16.0), "target loudness in LUFS"),
            ],
            outputs: vec![Port::output(
                "audio",
                PortType::one(Base::Audio),
                "the normalised audio",
            )],
            uses_pack: false,
        }
    }
    fn run(&self, _: &StepContext, inputs: &Inputs) -> Result<Outputs, String> {
        let audio = inputs.audio("audio")?;
        let target = inputs.number("target")?;
        if !(-70.0..=0.0).contains(&target) {
            return Err(format!("target: {target} LUFS is not in [-70, 0]"));
        }
        let mut meter = ebur128::EbuR128::new(
            u32::from(audio.channels),
            audio.sample_rate,
            ebur128::Mode::I,
        )
        .map_err(|e| e.to_string())?;
        meter
            .add_frames_f32(&audio.samples)
            .map_err(|e| e.to_string())?;
        let measured = meter.loudness_global().map_err(|e| e.to_string())?;
        let mut out = audio.clone();
        // Silence (or audio too short to gate) has no loudness to match.
        if measured.is_finite() {
            let peak = audio.samples.iter().fold(0f32, |m, s| m.max(s.abs()));
            let mut gain = 10f64.powf((target - measured) / 20.0) as f32;
            if peak * gain > 0.99 {
                gain = 0.99 / peak;
            }
            out.samples.iter_mut().for_each(|s| *s *= gain);
        }
        Ok(output("audio", Value::Media(Media::Audio(out))))
    }
}

/// `image.resize`: to a width and height (either may be left out to keep
/// the aspect ratio).
pub struct Resize;

pub fn resize() -> Box<dyn Node> {
    Box::new(Resize)
}

impl Node for Resize {
    fn spec(&self) -> NodeSpec {
        NodeSpec {
            name: "image.resize",
            doc: "resizes an image (Catmull-Rom); a missing side keeps the aspect ratio",
            inputs: vec![
                Port::required("image", PortType::one(Base::Image), "the image"),
                Port::optional("width", INTEGER, "pixels"),
                Port::optional("height", INTEGER, "pixels"),
            ],
            outputs: vec![Port::output(
                "image",
                PortType::one(Base::Image),
                "the resized image",
            )],
            uses_pack: false,
        }
    }
    fn run(&self, _: &StepContext, inputs: &Inputs) -> Result<Outputs, String> {
        let image = inputs.image("image")?;
        let side = |name| inputs.get(name).map(|_| inputs.integer(name)).transpose();
        let (w, h) = match (side("width")?, side("height")?) {
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
        if w < 1 || h < 1 || w > 16384 || h > 16384 {
            return Err(format!("{w} x {h} is not a size in 1..=16384"));
        }
        let resized = image
            .resized(w as u32, h as u32)
            .map_err(|e| e.to_string())?;
        Ok(output("image", Value::Media(Media::Image(resized))))
    }
}

/// `mesh.normalize`: centred on the origin, scaled into the unit cube.
pub struct MeshNormalize;

pub fn mesh_normalize() -> Box<dyn Node> {
    Box::new(MeshNormalize)
}

pub fn normalize_mesh(mesh: &Mesh) -> Mesh {
    let mut out = mesh.clone();
    if let Some([lo, hi]) = mesh.bbox() {
        let center: [f32; 3] = std::array::from_fn(|i| (lo[i] + hi[i]) / 2.0);
        let extent = (0..3).map(|i| hi[i] - lo[i]).fold(0f32, f32::max);
        let scale = if extent > 0.0 { 1.0 / extent } else { 1.0 };
        for p in &mut out.positions {
            *p = std::array::from_fn(|i| (p[i] - center[i]) * scale);
        }
    }
    out
}

impl Node for MeshNormalize {
    fn spec(&self) -> NodeSpec {
        NodeSpec {
            name: "mesh.normalize",
            doc: "centres a mesh on the origin and scales it into the unit cube",
            inputs: vec![Port::required(
                "mesh",
                PortType::one(Base::Mesh),
                "the mesh",
            )],
            outputs: vec![Port::output(
                "mesh",
                PortType::one(Base::Mesh),
                "the normalised mesh",
            )],
            uses_pack: false,
        }
    }
    fn run(&self, _: &StepContext, inputs: &Inputs) -> Result<Outputs, String> {
        Ok(output(
            "mesh",
            Value::Media(Media::Mesh(normalize_mesh(inputs.mesh("mesh")?))),
        ))
    }
}

/// `video.concat`: clips one after another (resized to the first clip's
/// size, at the first clip's frame rate).
pub struct Concat;

pub fn concat() -> Box<dyn Node> {
    Box::new(Concat)
}

impl Node for Concat {
    fn spec(&self) -> NodeSpec {
        NodeSpec {
            name: "video.concat",
            doc: "joins clips in order, at the first clip's size and frame rate",
            inputs: vec![Port::required(
                "clips",
                PortType::list_of(Base::Video),
                "the clips",
            )],
            outputs: vec![Port::output(
                "video",
                PortType::one(Base::Video),
                "the joined video",
            )],
            uses_pack: false,
        }
    }
    fn run(&self, _: &StepContext, inputs: &Inputs) -> Result<Outputs, String> {
        let clips = inputs.list("clips")?;
        let mut frames = Vec::new();
        let mut first: Option<&Video> = None;
        for clip in clips {
            let Value::Media(Media::Video(v)) = clip else {
                return Err("clips: not a list of videos".into());
            };
            let size = first.map_or((v.width, v.height), |f| (f.width, f.height));
            first.get_or_insert(v);
            for f in &v.frames {
                frames.push(f.resized(size.0, size.1).map_err(|e| e.to_string())?);
            }
        }
        let first = first.ok_or("clips: the list is empty")?;
        let video = Video::new(first.fps, frames, None).map_err(|e| e.to_string())?;
        Ok(output("video", Value::Media(Media::Video(video))))
    }
}

/// `video.mux`: a video with an audio track; the video is held on its last
/// frame or cut so both end together.
pub struct Mux;

pub fn mux() -> Box<dyn Node> {
    Box::new(Mux)
}

impl Node for Mux {
    fn spec(&self) -> NodeSpec {
        NodeSpec {
            name: "video.mux",
            doc: "adds an audio track; the video is held or cut to the audio's length",
            inputs: vec![
                Port::required("video", PortType::one(Base::Video), "the picture"),
                Port::required("audio", PortType::one(Base::Audio), "the sound"),
            ],
            outputs: vec![Port::output(
                "video",
                PortType::one(Base::Video),
                "the video with sound",
            )],
            uses_pack: false,
        }
    }
    fn run(&self, _: &StepContext, inputs: &Inputs) -> Result<Outputs, String> {
        let video = inputs.video("video")?;
        let audio = inputs.audio("audio")?;
        let want = (audio.duration_s() * video.fps.as_f64()).ceil().max(1.0) as usize;
        let mut frames = video.frames.clone();
        frames.truncate(want);
        while frames.len() < want {
            frames.push(frames[frames.len() - 1].clone());
        }
        let out = Video::new(video.fps, frames, Some(audio.clone())).map_err(|e| e.to_string())?;
        Ok(output("video", Value::Media(Media::Video(out))))
    }
}

/// `video.from_frames`: images as frames at a frame rate.
pub struct FromFrames;

pub fn from_frames() -> Box<dyn Node> {
    Box::new(FromFrames)
}

impl Node for FromFrames {
    fn spec(&self) -> NodeSpec {
        NodeSpec {
            name: "video.from_frames",
            doc: "makes a video of images, each shown for `seconds`, at `fps`",
            inputs: vec![
                Port::required("frames", PortType::list_of(Base::Image), "the images"),
                Port::with_default("fps", NUMBER, json!(8), "frames per second"),
                Port::with_default("seconds", NUMBER, json!(1.0), "how long each image shows"),
            ],
            outputs: vec![Port::output(
                "video",
                PortType::one(Base::Video),
                "the video",
            )],
            uses_pack: false,
        }
    }
    fn run(&self, _: &StepContext, inputs: &Inputs) -> Result<Outputs, String> {
        let fps = inputs.number("fps")?;
        let seconds = inputs.number("seconds")?;
        if !(fps > 0.0 && fps <= 240.0 && seconds > 0.0 && seconds <= 600.0) {
            return Err(format!("fps {fps} or seconds {seconds} out of range"));
        }
        let rate = Rational::new((fps * 1000.0).round() as u32, 1000).map_err(|e| e.to_string())?;
        let each = (seconds * fps).round().max(1.0) as usize;
        let mut frames = Vec::new();
        let mut size = None;
        for item in inputs.list("frames")? {
            let Value::Media(m) = item else {
                return Err("frames: not images".into());
            };
            let image = as_image(m, "frames")?;
            let (w, h) = *size.get_or_insert((image.width, image.height));
            let image = image.resized(w, h).map_err(|e| e.to_string())?;
            frames.extend(std::iter::repeat_n(image, each));
        }
        let video = Video::new(rate, frames, None).map_err(|e| e.to_string())?;
        Ok(output("video", Value::Media(Media::Video(video))))
    }
}
