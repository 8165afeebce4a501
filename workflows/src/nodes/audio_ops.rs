//! Audio nodes: loudness, gain, resample, trim, concat, mix, silence.

use modalities::{Audio, Media};
use serde_json::json;

use crate::node::{
    as_audio, media_output, output, spec, Inputs, Node, NodeSpec, Outputs, Port, StepContext,
};
use crate::types::{Base, PortType, Value};

const AUDIO: PortType = PortType::one(Base::Audio);
const NUMBER: PortType = PortType::one(Base::Number);
const INTEGER: PortType = PortType::one(Base::Integer);

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

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

pub struct Gain;
pub fn gain() -> Box<dyn Node> {
    Box::new(Gain)
}
impl Node for Gain {
    fn spec(&self) -> NodeSpec {
        spec(
            "audio.gain",
            "changes the level by decibels",
            vec![
                Port::required("audio", AUDIO, "the audio"),
                Port::required("db", NUMBER, "gain in dB (negative is quieter)"),
            ],
            vec![Port::output("audio", AUDIO, "the audio")],
        )
    }
    fn run(&self, _: &StepContext, inputs: &Inputs) -> Result<Outputs, String> {
        let db = inputs.number("db")?;
        if !(-100.0..=40.0).contains(&db) {
            return Err(format!("db: {db} is not in [-100, 40]"));
        }
        let mut out = inputs.audio("audio")?.clone();
        let g = 10f64.powf(db / 20.0) as f32;
        out.samples.iter_mut().for_each(|s| *s *= g);
        Ok(media_output("audio", Media::Audio(out)))
    }
}

pub struct Resample;
pub fn resample() -> Box<dyn Node> {
    Box::new(Resample)
}
impl Node for Resample {
    fn spec(&self) -> NodeSpec {
        spec(
            "audio.resample",
            "converts to another sample rate (windowed sinc)",
            vec![
                Port::required("audio", AUDIO, "the audio"),
                Port::required("rate", INTEGER, "samples per second"),
            ],
            vec![Port::output("audio", AUDIO, "the audio")],
        )
    }
    fn run(&self, _: &StepContext, inputs: &Inputs) -> Result<Outputs, String> {
        let rate = inputs.integer("rate")?;
        if !(1000..=384_000).contains(&rate) {
            return Err(format!("rate: {rate} is not in 1000..=384000"));
        }
        let out = inputs.audio("audio")?.resample(rate as u32).map_err(err)?;
        Ok(media_output("audio", Media::Audio(out)))
    }
}

pub struct Trim;
pub fn trim() -> Box<dyn Node> {
    Box::new(Trim)
}
/// The frames from `start` to `end` seconds (end: the whole).
pub fn trim_audio(a: &Audio, start: f64, end: Option<f64>) -> Result<Audio, String> {
    let ch = usize::from(a.channels);
    let at = |s: f64| ((s * f64::from(a.sample_rate)).round().max(0.0) as usize).min(a.frames());
    let (from, to) = (at(start), end.map_or(a.frames(), at));
    if to <= from {
        return Err(format!(
            "start {start} s is not before end {:?} s (length {:.3} s)",
            end,
            a.duration_s()
        ));
    }
    Audio::new(
        a.sample_rate,
        a.channels,
        a.samples[from * ch..to * ch].to_vec(),
    )
    .map_err(err)
}
impl Node for Trim {
    fn spec(&self) -> NodeSpec {
        spec(
            "audio.trim",
            "keeps the part from start to end (seconds)",
            vec![
                Port::required("audio", AUDIO, "the audio"),
                Port::with_default("start", NUMBER, json!(0.0), "seconds"),
                Port::optional("end", NUMBER, "seconds (default: the end)"),
            ],
            vec![Port::output("audio", AUDIO, "the audio")],
        )
    }
    fn run(&self, _: &StepContext, inputs: &Inputs) -> Result<Outputs, String> {
        let out = trim_audio(
            inputs.audio("audio")?,
            inputs.number("start")?,
            inputs.opt_number("end")?,
        )?;
        Ok(media_output("audio", Media::Audio(out)))
    }
}

/// The clips at the first one's rate and channel count.
fn conform(clips: &[Value]) -> Result<Vec<Audio>, String> {
    let mut out: Vec<Audio> = Vec::new();
    for c in clips {
        let Value::Media(m) = c else {
            return Err("not a list of audio".into());
        };
        let a = as_audio(m, "clips")?;
        let a = match out.first() {
            Some(f) => a
                .with_channels(f.channels)
                .resample(f.sample_rate)
                .map_err(err)?,
            None => a.clone(),
        };
        out.push(a);
    }
    if out.is_empty() {
        return Err("the list is empty".into());
    }
    Ok(out)
}

pub struct Concat;
pub fn concat() -> Box<dyn Node> {
    Box::new(Concat)
}
impl Node for Concat {
    fn spec(&self) -> NodeSpec {
        spec(
            "audio.concat",
            "plays clips one after another (at the first clip's rate and channels)",
            vec![Port::required(
                "clips",
                PortType::list_of(Base::Audio),
                "the clips",
            )],
            vec![Port::output("audio", AUDIO, "the joined audio")],
        )
    }
    fn run(&self, _: &StepContext, inputs: &Inputs) -> Result<Outputs, String> {
        let clips = conform(inputs.list("clips")?)?;
        let samples = clips
            .iter()
            .flat_map(|c| c.samples.iter().copied())
            .collect();
        Ok(media_output(
            "audio",
            Media::Audio(
                Audio::new(clips[0].sample_rate, clips[0].channels, samples).map_err(err)?,
            ),
        ))
    }
}

pub struct Mix;
pub fn mix() -> Box<dyn Node> {
    Box::new(Mix)
}
impl Node for Mix {
    fn spec(&self) -> NodeSpec {
        spec(
            "audio.mix",
            "plays tracks together (as long as the longest), scaled down if the sum clips",
            vec![Port::required(
                "tracks",
                PortType::list_of(Base::Audio),
                "the tracks",
            )],
            vec![Port::output("audio", AUDIO, "the mix")],
        )
    }
    fn run(&self, _: &StepContext, inputs: &Inputs) -> Result<Outputs, String> {
        let tracks = conform(inputs.list("tracks")?)?;
        let len = tracks.iter().map(|t| t.samples.len()).max().unwrap_or(0);
        let mut sum = vec![0f32; len];
        for t in &tracks {
            sum.iter_mut().zip(&t.samples).for_each(|(s, v)| *s += v);
        }
        let peak = sum.iter().fold(0f32, |m, s| m.max(s.abs()));
        if peak > 1.0 {
            sum.iter_mut().for_each(|s| *s /= peak);
        }
        Ok(media_output(
            "audio",
            Media::Audio(Audio::new(tracks[0].sample_rate, tracks[0].channels, sum).map_err(err)?),
        ))
    }
}

pub struct Silence;
pub fn silence() -> Box<dyn Node> {
    Box::new(Silence)
}
impl Node for Silence {
    fn spec(&self) -> NodeSpec {
        spec(
            "audio.silence",
            "makes silence (for gaps between clips)",
            vec![
                Port::required("seconds", NUMBER, "length"),
                Port::with_default("rate", INTEGER, json!(24000), "samples per second"),
                Port::with_default("channels", INTEGER, json!(1), "channels"),
            ],
            vec![Port::output("audio", AUDIO, "the silence")],
        )
    }
    fn run(&self, _: &StepContext, inputs: &Inputs) -> Result<Outputs, String> {
        let (seconds, rate, channels) = (
            inputs.number("seconds")?,
            inputs.integer("rate")?,
            inputs.integer("channels")?,
        );
        let valid = seconds > 0.0
            && seconds <= 3600.0
            && (1000..=384_000).contains(&rate)
            && (1..=8).contains(&channels);
        if !valid {
            return Err(format!(
                "{seconds} s at {rate} Hz x {channels} is out of range"
            ));
        }
        Ok(output(
            "audio",
            Value::Media(Media::Audio(Audio::silence(
                rate as u32,
                channels as u16,
                seconds,
            ))),
        ))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::node::run_node;

    fn tone(rate: u32, seconds: f64, level: f32) -> Value {
        let n = (f64::from(rate) * seconds) as usize;
        let samples = (0..n).map(|i| level * (i as f32 * 0.05).sin()).collect();
        Value::Media(Media::Audio(Audio::new(rate, 1, samples).unwrap()))
    }

    fn audio(out: Outputs) -> Audio {
        match out.into_iter().next() {
            Some((_, Value::Media(Media::Audio(a)))) => a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn trim_concat_mix_gain_and_loudness() {
        let a = audio(
            run_node(
                &Trim,
                vec![
                    ("audio", tone(8000, 1.0, 0.5)),
                    ("start", Value::Number(0.25)),
                    ("end", Value::Number(0.75)),
                ],
            )
            .unwrap(),
        );
        assert_eq!(a.frames(), 4000);
        assert!(run_node(
            &Trim,
            vec![
                ("audio", tone(8000, 1.0, 0.5)),
                ("start", Value::Number(0.9)),
                ("end", Value::Number(0.1))
            ]
        )
        .is_err());
        let joined = audio(
            run_node(
                &Concat,
                vec![(
                    "clips",
                    Value::List(vec![tone(8000, 0.5, 0.5), tone(16000, 0.5, 0.5)]),
                )],
            )
            .unwrap(),
        );
        assert_eq!(
            (joined.sample_rate, joined.frames()),
            (8000, 8000),
            "the second clip resampled to the first's rate"
        );
        let mixed = audio(
            run_node(
                &Mix,
                vec![(
                    "tracks",
                    Value::List(vec![tone(8000, 0.5, 0.9), tone(8000, 1.0, 0.9)]),
                )],
            )
            .unwrap(),
        );
        assert_eq!(mixed.frames(), 8000);
        assert!(
            mixed.samples.iter().all(|s| s.abs() <= 1.0),
            "scaled down instead of clipping"
        );
        let quiet = audio(
            run_node(
                &Gain,
                vec![("audio", tone(8000, 0.5, 0.5)), ("db", Value::Number(-6.0))],
            )
            .unwrap(),
        );
        let peak = quiet.samples.iter().fold(0f32, |m, s| m.max(s.abs()));
        assert!((peak - 0.5 * 0.501).abs() < 0.01, "{peak}");
        let loud = audio(
            run_node(
                &Loudness,
                vec![
                    ("audio", tone(16000, 2.0, 0.05)),
                    ("target", Value::Number(-20.0)),
                ],
            )
            .unwrap(),
        );
        let mut meter = ebur128::EbuR128::new(1, 16000, ebur128::Mode::I).unwrap();
        meter.add_frames_f32(&loud.samples).unwrap();
        assert!((meter.loudness_global().unwrap() + 20.0).abs() < 0.5);
        let gap = audio(run_node(&Silence, vec![("seconds", Value::Number(0.5))]).unwrap());
        assert_eq!((gap.sample_rate, gap.frames()), (24000, 12000));
    }
}
