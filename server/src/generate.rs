//! `anyforge generate`: run one task of a model pack and write its output.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Args;
use modalities::{Format, Media, Sampling};
use pipelines::generate::EngineConfig;
use pipelines::pack::Pack;
use pipelines::tasks::{Runner, TaskInputs, TaskName, TaskOptions, TaskOutput};
use serde_json::{json, Value};

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// chat, caption, transcribe, text-to-image, image-edit, text-to-speech,
    /// text-to-video, image-to-video or text-to-mesh.
    #[arg(long)]
    task: TaskName,
    /// A model pack folder (default: $ANYFORGE_PACK, else the default pack).
    #[arg(long, env = "ANYFORGE_PACK")]
    pack: Option<PathBuf>,
    #[arg(long, default_value = "")]
    prompt: String,
    #[arg(long)]
    image: Option<PathBuf>,
    /// White where image-edit regenerates, black where it keeps the image.
    #[arg(long)]
    mask: Option<PathBuf>,
    #[arg(long)]
    audio: Option<PathBuf>,
    #[arg(long)]
    video: Option<PathBuf>,
    /// A voice the pack names (text-to-speech).
    #[arg(long)]
    voice: Option<String>,
    #[arg(long)]
    seed: Option<u64>,
    /// Outputs to make: FILE for one, FILE-0, FILE-1, ... for more.
    #[arg(long, default_value_t = 1)]
    n: usize,
    /// Image size in codes, ROWSxCOLUMNS (default: the pack's).
    #[arg(long, value_parser = parse_grid)]
    size: Option<[usize; 2]>,
    /// Output image size in pixels, WIDTHxHEIGHT: the image (each video
    /// frame) is scaled to it without smoothing (default: the pack's).
    #[arg(long, value_parser = parse_pixels)]
    pixels: Option<[u32; 2]>,
    /// Video length, or the longest speech, in seconds.
    #[arg(long)]
    seconds: Option<f64>,
    /// Speech rate (0.5 to 2).
    #[arg(long, default_value_t = 1.0)]
    speed: f32,
    /// Classifier-free guidance scale for images (1 turns it off).
    #[arg(long)]
    guidance_scale: Option<f32>,
    #[arg(long)]
    temperature: Option<f32>,
    #[arg(long)]
    top_k: Option<usize>,
    #[arg(long)]
    top_p: Option<f32>,
    /// Longest text answer.
    #[arg(long)]
    max_tokens: Option<usize>,
    /// Where to write the output; its extension names the format.
    #[arg(long)]
    out: PathBuf,
}

fn parse_grid(text: &str) -> Result<[usize; 2], String> {
    let (h, w) = text
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("{text:?} is not ROWSxCOLUMNS"))?;
    match (h.parse(), w.parse()) {
        (Ok(h), Ok(w)) if h > 0 && w > 0 => Ok([h, w]),
        _ => Err(format!(
            "{text:?} is not ROWSxCOLUMNS with positive integers"
        )),
    }
}

fn parse_pixels(text: &str) -> Result<[u32; 2], String> {
    let [w, h] = parse_grid(text).map_err(|_| format!("{text:?} is not WIDTHxHEIGHT in pixels"))?;
    match (u32::try_from(w), u32::try_from(h)) {
        (Ok(w), Ok(h)) => Ok([w, h]),
        _ => Err(format!("{text:?} is too large")),
    }
}

pub fn run(args: GenerateArgs) -> Result<()> {
    let want = args.task.output_kind();
    match Format::for_output(&args.out) {
        Some((_, kind)) if kind == want => {}
        Some((format, kind)) => bail!(
            "--out {}: {} writes {kind}, but {} makes {want}",
            args.out.display(),
            format,
            args.task
        ),
        None => bail!(
            "--out {}: the extension names no format anyforge writes",
            args.out.display()
        ),
    }
    let dir = match args.pack.clone() {
        Some(dir) => dir,
        None => crate::assets::default_pack()?,
    };
    let pack = Pack::load(&dir).with_context(|| format!("pack {}", dir.display()))?;
    let limits = modalities::Limits::default();
    let fps = pack.defaults().video_fps.to_rational()?;
    let read = |path: &Option<PathBuf>| -> Result<Option<Media>> {
        path.as_ref()
            .map(|p| {
                modalities::read_media(p, Sampling::Fps(fps), &limits)
                    .with_context(|| p.display().to_string())
            })
            .transpose()
    };
    let inputs = TaskInputs {
        image: read(&args.image)?
            .map(|m| expect_image(m, "--image"))
            .transpose()?,
        mask: read(&args.mask)?
            .map(|m| expect_image(m, "--mask"))
            .transpose()?,
        audio: match read(&args.audio)? {
            None => None,
            Some(Media::Audio(a)) => Some(a),
            Some(other) => bail!("--audio: the file holds {}, not audio", other.kind()),
        },
        video: match read(&args.video)? {
            None => None,
            Some(Media::Video(v)) => Some(v),
            Some(other) => bail!("--video: the file holds {}, not video", other.kind()),
        },
        messages: Vec::new(),
    };
    let options = TaskOptions {
        prompt: args.prompt.clone(),
        seed: args.seed,
        n: args.n,
        size: args.size,
        pixels: args.pixels,
        guidance_scale: args.guidance_scale,
        voice: args.voice.clone(),
        speed: args.speed,
        seconds: args.seconds,
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        max_tokens: args.max_tokens,
    };
    let runner = Runner::new(Arc::new(pack), EngineConfig::default());
    let result = runner.run(args.task, &options, &inputs)?;
    let mut outputs = Vec::new();
    for (i, (output, tokens)) in result.outputs.iter().zip(&result.tokens).enumerate() {
        let path = output_path(&args.out, i, result.outputs.len());
        let mut summary = match output {
            TaskOutput::Text(text) => {
                modalities::write_atomic(&path, text.as_bytes())?;
                json!({"kind": "text", "text": text})
            }
            TaskOutput::Media(media) => {
                media
                    .write(&path)
                    .with_context(|| path.display().to_string())?;
                properties(media)
            }
        };
        summary["path"] = json!(path);
        summary["tokens"] = json!(tokens.len());
        outputs.push(summary);
    }
    let report = json!({
        "task": result.task,
        "pack": runner.pack().manifest.name,
        "seed": result.seed,
        "prompt_tokens": result.prompt_tokens,
        "tokens_generated": result.generated_tokens(),
        "seconds": (result.seconds * 1000.0).round() / 1000.0,
        "outputs": outputs,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

fn expect_image(media: Media, flag: &str) -> Result<modalities::Image> {
    match media {
        Media::Image(i) => Ok(i),
        other => bail!("{flag}: the file holds {}, not an image", other.kind()),
    }
}

/// `out.png` for one output; `out-0.png`, `out-1.png`, ... for several.
fn output_path(out: &Path, i: usize, n: usize) -> PathBuf {
    if n == 1 {
        return out.to_path_buf();
    }
    let stem = out.file_stem().unwrap_or_default().to_string_lossy();
    let name = match out.extension() {
        Some(ext) => format!("{stem}-{i}.{}", ext.to_string_lossy()),
        None => format!("{stem}-{i}"),
    };
    out.with_file_name(name)
}

/// What a user checks about an output.
fn properties(media: &Media) -> Value {
    match media {
        Media::Image(i) => json!({"kind": "image", "width": i.width, "height": i.height}),
        Media::Audio(a) => json!({
            "kind": "audio",
            "sample_rate": a.sample_rate,
            "channels": a.channels,
            "seconds": (a.duration_s() * 1000.0).round() / 1000.0,
        }),
        Media::Video(v) => json!({
            "kind": "video",
            "width": v.width,
            "height": v.height,
            "frames": v.frames.len(),
            "fps": format!("{}/{}", v.fps.num, v.fps.den),
        }),
        Media::Mesh(m) => {
            json!({"kind": "mesh", "vertices": m.positions.len(), "faces": m.triangles.len()})
        }
        Media::Text(t) => json!({"kind": "text", "text": t.0}),
    }
}
