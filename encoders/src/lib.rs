//! Modality codecs: media to discrete codes and back.
//!
//! Every codec implements [`Codec`]; [`open`] finds one from a codec spec
//! (a folder with `config.json` or `tokenizer.json`, or `mesh[:BINS]`)
//! through the [`REGISTRY`] table, keyed by the codec type its config
//! names. A new codec is one module plus one line in that table.
//! Codes on disk are [`Codes`] (docs/codes.md).

pub mod audio;
pub mod codes;
pub mod conv;
mod error;
pub mod image;
pub mod kmeans;
pub mod limits;
pub mod mel;
pub mod mesh;
pub mod ops;
pub mod speech_text;
pub mod text;
pub mod video;
pub mod weights;

use std::path::Path;

use modalities::{Kind, Media};

pub use crate::codes::Codes;
pub use crate::error::{CodecError, Result, WeightsError};
pub use crate::limits::CodecLimits;

/// Media to codes and back.
pub trait Codec: Send + Sync {
    /// The kind of media it encodes and decodes.
    fn kind(&self) -> Kind;
    /// Codes are `0..vocab_size()`.
    fn vocab_size(&self) -> usize;
    /// How the codes are laid out, for whoever arranges them in a sequence.
    fn structure(&self) -> Structure;
    fn encode(&self, media: &Media) -> Result<Codes>;
    fn decode(&self, codes: &Codes) -> Result<Media>;
}

/// The image an image codec was given, or an error naming what came instead.
pub(crate) fn image_input(media: &Media) -> Result<&modalities::Image> {
    match media {
        Media::Image(image) => Ok(image),
        other => Err(CodecError::Input(format!(
            "an image codec encodes images, not {}",
            other.kind()
        ))),
    }
}

/// The audio an audio codec was given, or an error naming what came instead.
pub(crate) fn audio_input(media: &Media) -> Result<&modalities::Audio> {
    match media {
        Media::Audio(audio) => Ok(audio),
        other => Err(CodecError::Input(format!(
            "an audio codec encodes audio, not {}",
            other.kind()
        ))),
    }
}

/// The shape of a codec's codes beyond their range.
#[derive(Debug, Clone, PartialEq)]
pub enum Structure {
    /// One code per `downsample` x `downsample` pixels, in a grid.
    Image { downsample: usize },
    /// One list per level; level `i` has one code per `strides[i]` steps of
    /// the finest level, which has one code per `hop` samples.
    Audio {
        sample_rate: u32,
        hop: usize,
        strides: Vec<usize>,
    },
    /// Frames, each with the image structure of the frame codec.
    Video { downsample: usize },
    /// Nine coordinate tokens per face, each in `0..bins`.
    Mesh { bins: u32 },
    /// A token sequence.
    Text,
}

/// Builds a codec from its folder and parsed `config.json`.
pub type Loader = fn(&Path, &serde_json::Value, &CodecLimits) -> Result<Box<dyn Codec>>;

/// Codec types, as `config.json` names them, and their loaders.
pub const REGISTRY: &[(&str, Loader)] = &[
    ("janus_vqgan", image::load),
    ("janus", image::load),
    ("snac", audio::load),
    ("patch_kmeans", image::patch::load),
    ("mel_kmeans", mel::load),
];

/// The codec type a config names: `codec_type` or `model_type`; a SNAC
/// config, which the `snac` package writes without either, is recognised
/// by its fields.
fn codec_type(config: &serde_json::Value) -> Option<&str> {
    let named = config
        .get("codec_type")
        .or_else(|| config.get("model_type"))
        .and_then(|t| t.as_str());
    named.or_else(|| {
        (config.get("vq_strides").is_some() && config.get("encoder_rates").is_some())
            .then_some("snac")
    })
}

/// Opens a codec from a spec: `mesh` or `mesh:BINS`, a folder with a
/// `config.json` whose type is in [`REGISTRY`], or a folder with a
/// `tokenizer.json` and no codec config (a tokenizer, or a text model's
/// checkpoint): the text codec.
pub fn open(spec: &str) -> Result<Box<dyn Codec>> {
    open_with(spec, &CodecLimits::default())
}

/// [`open`] with limits other than the defaults.
pub fn open_with(spec: &str, limits: &CodecLimits) -> Result<Box<dyn Codec>> {
    if spec == "mesh" || spec.starts_with("mesh:") {
        return Ok(Box::new(
            mesh::MeshCodec::from_spec(spec)?.with_limits(limits),
        ));
    }
    let dir = Path::new(spec);
    if !dir.is_dir() {
        return Err(CodecError::UnknownCodec(
            spec.into(),
            "not a folder, and not mesh[:BINS]".into(),
        ));
    }
    let config_path = dir.join("config.json");
    if !config_path.exists() {
        if dir.join("tokenizer.json").exists() {
            return Ok(Box::new(text::TextCodec::load(dir)?));
        }
        return Err(CodecError::config(
            &config_path,
            "missing (and no tokenizer.json for a text codec)",
        ));
    }
    let config = read_config(&config_path)?;
    let kind = codec_type(&config)
        .ok_or_else(|| CodecError::config(&config_path, "names no model_type or codec_type"))?;
    let known: Vec<&str> = REGISTRY.iter().map(|(name, _)| *name).collect();
    match REGISTRY.iter().find(|(name, _)| *name == kind) {
        Some((_, load)) => load(dir, &config, limits),
        // A text model's folder: its tokenizer is the text codec.
        None if dir.join("tokenizer.json").exists() => Ok(Box::new(text::TextCodec::load(dir)?)),
        None => Err(CodecError::UnknownCodec(
            kind.into(),
            format!(
                "{} names a codec type anyforge does not know (known: {})",
                config_path.display(),
                known.join(", ")
            ),
        )),
    }
}

/// Reads and parses a JSON config (bounded: configs are small).
pub fn read_config(path: &Path) -> Result<serde_json::Value> {
    const MAX_CONFIG_BYTES: u64 = 1 << 20;
    let size = std::fs::metadata(path)
        .map_err(|e| modalities::MediaError::io(path, e))?
        .len();
    if size > MAX_CONFIG_BYTES {
        return Err(CodecError::config(
            path,
            format!("{size} bytes is too large for a config"),
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| modalities::MediaError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| CodecError::config(path, e))
}

/// The codec for `kind` built on `codec`: video codes through an image
/// codec, one grid per frame; otherwise the codec itself when kinds match.
pub fn for_kind(codec: Box<dyn Codec>, kind: Kind) -> Result<Box<dyn Codec>> {
    for_kind_with(codec, kind, &CodecLimits::default())
}

/// [`for_kind`] with limits other than the defaults.
pub fn for_kind_with(
    codec: Box<dyn Codec>,
    kind: Kind,
    limits: &CodecLimits,
) -> Result<Box<dyn Codec>> {
    match (codec.kind(), kind) {
        (have, want) if have == want => Ok(codec),
        (Kind::Image, Kind::Video) => {
            Ok(Box::new(video::VideoCodec::new(codec, limits.max_frames)))
        }
        (have, want) => Err(CodecError::Input(format!(
            "the {have} codec cannot encode or decode {want}"
        ))),
    }
}
