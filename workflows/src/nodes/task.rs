//! Every generation task of the model pack as a node: `uses: text-to-image`.

use modalities::Media;
use pipelines::tasks::{TaskInputs, TaskName, TaskOptions, TaskOutput};
use serde_json::json;

use crate::node::{output, Inputs, Node, NodeSpec, Outputs, Port, StepContext};
use crate::types::{Base, PortType, Value};

pub struct TaskNode(pub TaskName);

const TEXT: PortType = PortType::one(Base::Text);
const NUMBER: PortType = PortType::one(Base::Number);
const INTEGER: PortType = PortType::one(Base::Integer);

/// The input that carries the text of the request.
fn prompt_port(task: TaskName) -> &'static str {
    if task == TaskName::TextToSpeech {
        "text"
    } else {
        "prompt"
    }
}

impl Node for TaskNode {
    fn spec(&self) -> NodeSpec {
        use TaskName::*;
        let task = self.0;
        let mut inputs = vec![
            Port::with_default(
                prompt_port(task),
                TEXT,
                json!(""),
                "the prompt, instruction or text",
            ),
            Port::optional(
                "seed",
                INTEGER,
                "the seed (default: the run's seed mixed with the step id)",
            ),
            Port::optional(
                "temperature",
                NUMBER,
                "sampling temperature (default: the pack's)",
            ),
        ];
        let image = |doc| Port::optional("image", PortType::one(Base::Image), doc);
        match task {
            Chat | Caption => {
                inputs.push(image("an image to read"));
                inputs.push(Port::optional(
                    "video",
                    PortType::one(Base::Video),
                    "a video to read",
                ));
                if task == Chat {
                    inputs.push(Port::optional(
                        "audio",
                        PortType::one(Base::Audio),
                        "audio to read",
                    ));
                }
            }
            Transcribe => inputs.push(Port::required(
                "audio",
                PortType::one(Base::Audio),
                "speech",
            )),
            TextToImage | ImageEdit | TextToVideo | ImageToVideo => {
                inputs.push(Port::optional(
                    "rows",
                    INTEGER,
                    "image height in codes (default: the pack's)",
                ));
                inputs.push(Port::optional("columns", INTEGER, "image width in codes"));
                if matches!(task, ImageEdit | ImageToVideo) {
                    inputs.push(Port::required(
                        "image",
                        PortType::one(Base::Image),
                        "the source image",
                    ));
                }
                if task == ImageEdit {
                    inputs.push(Port::optional(
                        "mask",
                        PortType::one(Base::Image),
                        "white where the edit regenerates",
                    ));
                }
                if matches!(task, TextToImage | ImageEdit) {
                    inputs.push(Port::optional(
                        "guidance_scale",
                        NUMBER,
                        "classifier-free guidance (1 is off)",
                    ));
                } else {
                    inputs.push(Port::optional(
                        "seconds",
                        NUMBER,
                        "video length (default: the pack's)",
                    ));
                }
            }
            TextToSpeech => {
                inputs.push(Port::optional("voice", TEXT, "a voice of the pack"));
                inputs.push(Port::with_default(
                    "speed",
                    NUMBER,
                    json!(1.0),
                    "speech rate, 0.5 to 2",
                ));
                inputs.push(Port::optional("seconds", NUMBER, "the longest speech"));
            }
            TextToMesh => {}
        }
        if matches!(task, Chat | Caption | Transcribe) {
            inputs.push(Port::optional("max_tokens", INTEGER, "longest answer"));
        }
        let out = task.output_kind();
        let base = match out {
            modalities::Kind::Text => Base::Text,
            modalities::Kind::Image => Base::Image,
            modalities::Kind::Audio => Base::Audio,
            modalities::Kind::Video => Base::Video,
            modalities::Kind::Mesh => Base::Mesh,
        };
        NodeSpec {
            name: task.as_str(),
            doc: "a generation task of the model pack (docs/packs.md)",
            inputs,
            outputs: vec![Port::output(
                kind_port(out),
                PortType::one(base),
                "the output",
            )],
            uses_pack: true,
        }
    }

    fn run(&self, ctx: &StepContext, inputs: &Inputs) -> Result<Outputs, String> {
        let runner = ctx.runner.ok_or("this node needs a model pack")?;
        let size = |name| inputs.get(name).map(|_| inputs.integer(name)).transpose();
        let grid = match (size("rows")?, size("columns")?) {
            (None, None) => None,
            (r, c) => {
                let d = runner.pack().defaults().image_grid;
                Some([
                    r.map_or(d[0], |v| v.max(0) as usize),
                    c.map_or(d[1], |v| v.max(0) as usize),
                ])
            }
        };
        let options = TaskOptions {
            prompt: inputs.text(prompt_port(self.0))?,
            seed: Some(match inputs.get("seed") {
                Some(_) => inputs.integer("seed")? as u64,
                None => ctx.seed,
            }),
            size: grid,
            guidance_scale: inputs.opt_number("guidance_scale")?.map(|g| g as f32),
            voice: inputs.opt_text("voice")?,
            speed: inputs.opt_number("speed")?.unwrap_or(1.0) as f32,
            seconds: inputs.opt_number("seconds")?,
            temperature: inputs.opt_number("temperature")?.map(|t| t as f32),
            max_tokens: inputs
                .get("max_tokens")
                .map(|_| inputs.integer("max_tokens"))
                .transpose()?
                .map(|n| n.max(1) as usize),
            ..TaskOptions::default()
        };
        let media = |name: &str| {
            inputs
                .get(name)
                .map(|_| inputs.media(name).cloned())
                .transpose()
        };
        let task_inputs = TaskInputs {
            image: media("image")?.and_then(|m| {
                if let Media::Image(i) = m {
                    Some(i)
                } else {
                    None
                }
            }),
            mask: media("mask")?.and_then(|m| {
                if let Media::Image(i) = m {
                    Some(i)
                } else {
                    None
                }
            }),
            audio: media("audio")?.and_then(|m| {
                if let Media::Audio(a) = m {
                    Some(a)
                } else {
                    None
                }
            }),
            video: media("video")?.and_then(|m| {
                if let Media::Video(v) = m {
                    Some(v)
                } else {
                    None
                }
            }),
            messages: Vec::new(),
        };
        (ctx.progress)(0, 1);
        let result = runner
            .run_until(self.0, &options, &task_inputs, ctx.cancel)
            .map_err(|e| e.to_string())?;
        (ctx.progress)(1, 1);
        let out = kind_port(self.0.output_kind());
        match result.outputs.into_iter().next() {
            Some(TaskOutput::Text(t)) => Ok(output(out, Value::Text(t))),
            Some(TaskOutput::Media(m)) => Ok(output(out, Value::Media(m))),
            None => Err("the task produced nothing".into()),
        }
    }
}

fn kind_port(kind: modalities::Kind) -> &'static str {
    match kind {
        modalities::Kind::Text => "text",
        modalities::Kind::Image => "image",
        modalities::Kind::Audio => "audio",
        modalities::Kind::Video => "video",
        modalities::Kind::Mesh => "mesh",
    }
}

macro_rules! task_nodes {
    ($($f:ident => $t:ident),* $(,)?) => {
        $(pub fn $f() -> Box<dyn Node> { Box::new(TaskNode(TaskName::$t)) })*
    };
}

task_nodes! {
    chat => Chat,
    caption => Caption,
    transcribe => Transcribe,
    text_to_image => TextToImage,
    image_edit => ImageEdit,
    text_to_speech => TextToSpeech,
    text_to_video => TextToVideo,
    image_to_video => ImageToVideo,
    text_to_mesh => TextToMesh,
}
