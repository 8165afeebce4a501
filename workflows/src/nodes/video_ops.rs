//! Video nodes: frames to video, concat, mux audio, trim, set fps, thumbnail.

use modalities::{Media, Rational, Video};
use serde_json::json;

use crate::node::{
    as_image, media_output, output, spec, Inputs, Node, NodeSpec, Outputs, Port, StepContext,
};
use crate::types::{Base, PortType, Value};

const VIDEO: PortType = PortType::one(Base::Video);
const NUMBER: PortType = PortType::one(Base::Number);

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
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
                frames.push(f.resized(size.0, size.1).map_err(err)?);
            }
        }
        let first = first.ok_or("clips: the list is empty")?;
        let video = Video::new(first.fps, frames, None).map_err(err)?;
        Ok(media_output("video", Media::Video(video)))
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
        let out = Video::new(video.fps, frames, Some(audio.clone())).map_err(err)?;
        Ok(media_output("video", Media::Video(out)))
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
        let rate = Rational::new((fps * 1000.0).round() as u32, 1000).map_err(err)?;
        let each = (seconds * fps).round().max(1.0) as usize;
        let mut frames = Vec::new();
        let mut size = None;
        for item in inputs.list("frames")? {
            let Value::Media(m) = item else {
                return Err("frames: not images".into());
            };
            let image = as_image(m, "frames")?;
            let (w, h) = *size.get_or_insert((image.width, image.height));
            let image = image.resized(w, h).map_err(err)?;
            frames.extend(std::iter::repeat_n(image, each));
        }
        let video = Video::new(rate, frames, None).map_err(err)?;
        Ok(media_output("video", Media::Video(video)))
    }
}

/// The frames shown from `start` to `end` seconds.
pub fn trim_video(v: &Video, start: f64, end: Option<f64>) -> Result<Video, String> {
    let fps = v.fps.as_f64();
    let at = |s: f64| ((s * fps).round().max(0.0) as usize).min(v.frames.len());
    let (from, to) = (at(start), end.map_or(v.frames.len(), at));
    if to <= from {
        return Err(format!(
            "start {start} s is not before end {end:?} s (length {:.3} s)",
            v.duration_s()
        ));
    }
    let audio = match &v.audio {
        Some(a) => Some(crate::nodes::audio_ops::trim_audio(
            a,
            from as f64 / fps,
            Some(to as f64 / fps),
        )?),
        None => None,
    };
    Video::new(v.fps, v.frames[from..to].to_vec(), audio).map_err(err)
}

pub struct Trim;
pub fn trim() -> Box<dyn Node> {
    Box::new(Trim)
}
impl Node for Trim {
    fn spec(&self) -> NodeSpec {
        spec(
            "video.trim",
            "keeps the part from start to end (seconds), sound included",
            vec![
                Port::required("video", VIDEO, "the video"),
                Port::with_default("start", NUMBER, json!(0.0), "seconds"),
                Port::optional("end", NUMBER, "seconds (default: the end)"),
            ],
            vec![Port::output("video", VIDEO, "the video")],
        )
    }
    fn run(&self, _: &StepContext, inputs: &Inputs) -> Result<Outputs, String> {
        let out = trim_video(
            inputs.video("video")?,
            inputs.number("start")?,
            inputs.opt_number("end")?,
        )?;
        Ok(media_output("video", Media::Video(out)))
    }
}

pub struct SetFps;
pub fn set_fps() -> Box<dyn Node> {
    Box::new(SetFps)
}
impl Node for SetFps {
    fn spec(&self) -> NodeSpec {
        spec(
            "video.set_fps",
            "changes the frame rate, keeping the duration (frames repeated or dropped)",
            vec![
                Port::required("video", VIDEO, "the video"),
                Port::required("fps", NUMBER, "frames per second"),
            ],
            vec![Port::output("video", VIDEO, "the video")],
        )
    }
    fn run(&self, _: &StepContext, inputs: &Inputs) -> Result<Outputs, String> {
        let v = inputs.video("video")?;
        let fps = inputs.number("fps")?;
        if !(fps > 0.0 && fps <= 240.0) {
            return Err(format!("fps: {fps} is not in (0, 240]"));
        }
        let rate = encoders::codes::Fps::Number(fps)
            .to_rational()
            .map_err(err)?;
        let n = ((v.duration_s() * rate.as_f64()).round() as usize).max(1);
        let frames = (0..n)
            .map(|i| {
                let src = ((i as f64 / rate.as_f64()) * v.fps.as_f64()).floor() as usize;
                v.frames[src.min(v.frames.len() - 1)].clone()
            })
            .collect();
        Ok(media_output(
            "video",
            Media::Video(Video::new(rate, frames, v.audio.clone()).map_err(err)?),
        ))
    }
}

pub struct Thumbnail;
pub fn thumbnail() -> Box<dyn Node> {
    Box::new(Thumbnail)
}
impl Node for Thumbnail {
    fn spec(&self) -> NodeSpec {
        spec(
            "video.thumbnail",
            "the frame shown at a time",
            vec![
                Port::required("video", VIDEO, "the video"),
                Port::with_default("at", NUMBER, json!(0.0), "seconds"),
            ],
            vec![Port::output(
                "image",
                PortType::one(Base::Image),
                "the frame",
            )],
        )
    }
    fn run(&self, _: &StepContext, inputs: &Inputs) -> Result<Outputs, String> {
        let v = inputs.video("video")?;
        let at = inputs.number("at")?;
        if !(at >= 0.0 && at <= v.duration_s()) {
            return Err(format!(
                "at: {at} s is not within the {:.3} s video",
                v.duration_s()
            ));
        }
        let i = ((at * v.fps.as_f64()).floor() as usize).min(v.frames.len() - 1);
        Ok(output(
            "image",
            Value::Media(Media::Image(v.frames[i].clone())),
        ))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::node::run_node;
    use modalities::{Audio, Image};

    fn clip(frames: usize, fps: u32, shade: u8) -> Video {
        let frames = (0..frames)
            .map(|i| Image::filled(4, 2, [shade, i as u8, 0]))
            .collect();
        Video::new(Rational::new(fps, 1).unwrap(), frames, None).unwrap()
    }

    fn video(out: Outputs) -> Video {
        match out.into_iter().next() {
            Some((_, Value::Media(Media::Video(v)))) => v,
            other => panic!("{other:?}"),
        }
    }

    fn v(video: Video) -> Value {
        Value::Media(Media::Video(video))
    }

    #[test]
    fn concat_mux_trim_fps_and_thumbnail() {
        let joined = video(
            run_node(
                &Concat,
                vec![(
                    "clips",
                    Value::List(vec![v(clip(3, 4, 10)), v(clip(2, 4, 20))]),
                )],
            )
            .unwrap(),
        );
        assert_eq!(joined.frames.len(), 5);
        let sound = Value::Media(Media::Audio(Audio::silence(8000, 1, 2.0)));
        let muxed =
            video(run_node(&Mux, vec![("video", v(clip(3, 4, 10))), ("audio", sound)]).unwrap());
        assert_eq!(
            muxed.frames.len(),
            8,
            "held on the last frame for two seconds"
        );
        assert!(muxed.audio.is_some());
        let cut = video(
            run_node(
                &Trim,
                vec![
                    ("video", v(muxed)),
                    ("start", Value::Number(0.5)),
                    ("end", Value::Number(1.5)),
                ],
            )
            .unwrap(),
        );
        assert_eq!(cut.frames.len(), 4);
        assert!((cut.audio.unwrap().duration_s() - 1.0).abs() < 1e-3);
        let faster = video(
            run_node(
                &SetFps,
                vec![("video", v(clip(4, 4, 10))), ("fps", Value::Number(8.0))],
            )
            .unwrap(),
        );
        assert_eq!((faster.frames.len(), faster.fps.as_f64()), (8, 8.0));
        let thumb = run_node(
            &Thumbnail,
            vec![("video", v(clip(4, 4, 10))), ("at", Value::Number(0.5))],
        )
        .unwrap();
        assert_eq!(
            thumb.get("image"),
            Some(&Value::Media(Media::Image(Image::filled(4, 2, [10, 2, 0]))))
        );
        assert!(run_node(
            &Thumbnail,
            vec![("video", v(clip(4, 4, 10))), ("at", Value::Number(5.0))]
        )
        .is_err());
    }
}
