//! `anyforge codec encode|decode`: media to discrete codes and back.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use encoders::{Codec, CodecLimits, Codes};
use modalities::{Kind, Media, Sampling};

#[derive(Subcommand)]
pub enum CodecCommand {
    /// Encode a media file into a codes JSON file (docs/codes.md).
    Encode(EncodeArgs),
    /// Decode a codes JSON file into media; the format comes from OUT's extension.
    Decode(DecodeArgs),
    /// Fit a codebook codec (patch_kmeans for images, mel_kmeans for audio)
    /// to your own media files, and write its folder.
    Fit(FitArgs),
}

/// The codec types `fit` makes.
#[derive(Clone, Copy, clap::ValueEnum)]
enum FitType {
    /// Images: square RGB patches coded by their nearest codebook patch.
    PatchKmeans,
    /// Audio: log-mel frames coded by their nearest codebook frame.
    MelKmeans,
}

#[derive(Args)]
pub struct FitArgs {
    #[arg(long = "type", value_enum)]
    codec_type: FitType,
    /// Image or audio files to fit to.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// The codec folder to write (config.json, model.safetensors).
    #[arg(long)]
    out: PathBuf,
    /// Codebook entries [default: 256 for patches, 512 for mel frames].
    #[arg(long)]
    codes: Option<usize>,
    /// patch_kmeans: pixels per patch side.
    #[arg(long, default_value_t = 4)]
    patch: usize,
    /// k-means iterations at most.
    #[arg(long, default_value_t = 30)]
    iterations: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// A JSON file of decoding limits (see `modalities::Limits`).
    #[arg(long)]
    limits: Option<PathBuf>,
}

#[derive(Args)]
pub struct EncodeArgs {
    /// A codec folder (config.json + weights, or tokenizer.json) or mesh[:BINS].
    #[arg(long)]
    codec: String,
    input: PathBuf,
    #[arg(long)]
    out: PathBuf,
    /// Video: encode frames at this rate (default: every frame).
    #[arg(long, conflicts_with = "frames")]
    fps: Option<f64>,
    /// Video: encode this many evenly spaced frames.
    #[arg(long)]
    frames: Option<u32>,
    /// Images and video frames: resize to WIDTHxHEIGHT first (sides must
    /// suit the codec, e.g. multiples of 16 for Janus-Pro's VQ).
    #[arg(long, value_parser = parse_size)]
    size: Option<(u32, u32)>,
    /// A JSON file of decoding limits (see `modalities::Limits`).
    #[arg(long)]
    limits: Option<PathBuf>,
    /// A JSON file of codec limits (see `encoders::CodecLimits`).
    #[arg(long)]
    codec_limits: Option<PathBuf>,
}

#[derive(Args)]
pub struct DecodeArgs {
    #[arg(long)]
    codec: String,
    codes: PathBuf,
    #[arg(long)]
    out: PathBuf,
    /// Largest codes file read, in bytes.
    #[arg(long, default_value_t = 256 << 20)]
    max_codes_bytes: u64,
    /// A JSON file of codec limits (see `encoders::CodecLimits`).
    #[arg(long)]
    codec_limits: Option<PathBuf>,
}

fn parse_size(text: &str) -> Result<(u32, u32), String> {
    let (w, h) = text
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("{text:?} is not WIDTHxHEIGHT"))?;
    match (w.parse(), h.parse()) {
        (Ok(w), Ok(h)) if w > 0 && h > 0 => Ok((w, h)),
        _ => Err(format!(
            "{text:?} is not WIDTHxHEIGHT with positive integers"
        )),
    }
}

pub fn run(command: CodecCommand) -> Result<()> {
    match command {
        CodecCommand::Encode(args) => encode(args),
        CodecCommand::Decode(args) => decode(args),
        CodecCommand::Fit(args) => fit(args),
    }
}

fn fit(args: FitArgs) -> Result<()> {
    use encoders::image::patch::{PatchCodec, PatchConfig};
    use encoders::mel::{MelCodec, MelConfig};
    let limits = crate::media::load_limits(args.limits.as_deref())?;
    let media = args
        .inputs
        .iter()
        .map(|path| {
            modalities::read_media(path, Sampling::All, &limits)
                .with_context(|| path.display().to_string())
        })
        .collect::<Result<Vec<Media>>>()?;
    let wrong = |path: &Path, want: &str| anyhow::anyhow!("{}: not {want}", path.display());
    let codes = match args.codec_type {
        FitType::PatchKmeans => {
            let images = media
                .into_iter()
                .zip(&args.inputs)
                .map(|(m, path)| match m {
                    Media::Image(i) => Ok(i),
                    _ => Err(wrong(path, "an image")),
                })
                .collect::<Result<Vec<_>>>()?;
            let config = PatchConfig::new(args.patch, args.codes.unwrap_or(256));
            let codec = PatchCodec::fit(&images, config, args.seed, args.iterations)?;
            codec.save(&args.out)?;
            codec.config().codes
        }
        FitType::MelKmeans => {
            let audio = media
                .into_iter()
                .zip(&args.inputs)
                .map(|(m, path)| match m {
                    Media::Audio(a) => Ok(a),
                    _ => Err(wrong(path, "audio")),
                })
                .collect::<Result<Vec<_>>>()?;
            let config = MelConfig {
                codes: args.codes.unwrap_or(512),
                ..MelConfig::default()
            };
            let codec = MelCodec::fit(&audio, config, args.seed, args.iterations)?;
            codec.save(&args.out)?;
            codec.config().codes
        }
    };
    println!(
        "{}",
        serde_json::json!({"out": args.out, "codes": codes, "inputs": args.inputs.len()})
    );
    Ok(())
}

fn open_for(spec: &str, kind: Kind, limits: Option<&Path>) -> Result<Box<dyn Codec>> {
    let limits = match limits {
        None => CodecLimits::default(),
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
            serde_json::from_str(&text)
                .with_context(|| format!("{}: invalid codec limits", path.display()))?
        }
    };
    let codec = encoders::open_with(spec, &limits).with_context(|| format!("codec {spec}"))?;
    Ok(encoders::for_kind_with(codec, kind, &limits)?)
}

fn encode(args: EncodeArgs) -> Result<()> {
    let limits = crate::media::load_limits(args.limits.as_deref())?;
    let sampling = match (args.fps, args.frames) {
        (Some(fps), _) => {
            if !(fps > 0.0 && fps <= 1000.0) {
                bail!("--fps must be between 0 and 1000, got {fps}");
            }
            Sampling::Fps(encoders::codes::Fps::Number(fps).to_rational()?)
        }
        (None, Some(n)) => Sampling::Frames(n),
        (None, None) => Sampling::All,
    };
    let mut media = modalities::read_media(&args.input, sampling, &limits)
        .with_context(|| args.input.display().to_string())?;
    if let Some((w, h)) = args.size {
        media = match media {
            Media::Image(i) => Media::Image(i.resized(w, h)?),
            Media::Video(mut v) => {
                v.frames = v
                    .frames
                    .iter()
                    .map(|f| f.resized(w, h))
                    .collect::<Result<_, _>>()?;
                Media::Video(v)
            }
            other => bail!("--size applies to images and video, not {}", other.kind()),
        };
    }
    let codec = open_for(&args.codec, media.kind(), args.codec_limits.as_deref())?;
    let codes = codec
        .encode(&media)
        .with_context(|| args.input.display().to_string())?;
    codes.write(&args.out)?;
    Ok(())
}

fn decode(args: DecodeArgs) -> Result<()> {
    let codes = Codes::read(&args.codes, args.max_codes_bytes)?;
    let codec = open_for(&args.codec, codes.kind(), args.codec_limits.as_deref())?;
    let media = codec
        .decode(&codes)
        .with_context(|| args.codes.display().to_string())?;
    media
        .write(&args.out)
        .with_context(|| args.out.display().to_string())?;
    Ok(())
}
