//! `pack.yaml`, field for field (docs/packs.md). Parsed into these types
//! first; the checks that need the backbone and codecs happen in `Pack::load`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use encoders::codes::Fps;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// SPDX identifier of the weights' licence.
    #[serde(alias = "license")]
    pub licence: String,
    /// The backbone checkpoint folder (Hugging Face layout), relative to the pack.
    pub backbone: PathBuf,
    #[serde(default)]
    pub modalities: Modalities,
    #[serde(default)]
    pub defaults: Defaults,
    #[serde(default)]
    pub voices: BTreeMap<String, Voice>,
    /// The text frontend of a speech model that reads phonemes: the
    /// `phonemes` template variable of text-to-speech.
    #[serde(default)]
    pub speech: Option<SpeechFrontend>,
    /// The tasks this pack serves, each with its prompt template.
    pub tasks: BTreeMap<TaskName, TaskSpec>,
    /// SHA-256 (hex) of every weight file, by path relative to the pack.
    pub sha256: BTreeMap<PathBuf, String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Modalities {
    pub image: Option<VocabBlock>,
    pub audio: Option<AudioBlock>,
    pub video: Option<Markers>,
    pub mesh: Option<MeshBlock>,
}

/// How a modality's codes reach the backbone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// Each code is a backbone token id: `first_token + code`.
    Vocab,
    /// Written as plain text the tokenizer already knows (LLaMA-Mesh).
    Text,
}

/// Begin and end marker tokens, by their text in the tokenizer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Markers {
    pub begin: String,
    pub end: String,
}

/// Image codes in the vocabulary, between two markers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VocabBlock {
    /// The codec folder (with its `config.json`), relative to the pack.
    pub codec: PathBuf,
    pub layout: Layout,
    pub first_token: u32,
    pub begin: String,
    pub end: String,
    /// The one grid (rows, columns of codes) the model makes, for a model
    /// trained on one image size: requests name an output size in pixels
    /// instead, and the image is scaled to it without smoothing.
    #[serde(default)]
    pub grid: Option<[usize; 2]>,
    /// Tokens that open each row of codes, top row first (the last one
    /// opens any further rows): a model trained with them knows which row
    /// it is drawing from the nearest one, instead of counting codes.
    #[serde(default)]
    pub row_markers: Vec<String>,
}

/// Text to phonemes: a CMUdict-format lexicon and the letter-to-sound
/// rules learned from it (JSON, as `anyforge train` writes them), both
/// relative to the pack.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpeechFrontend {
    pub lexicon: PathBuf,
    pub rules: PathBuf,
}

/// Which token range an audio code uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Slots {
    /// One range per codebook level.
    #[default]
    Level,
    /// One range per position in a frame (Orpheus: 7 per SNAC frame).
    Position,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudioBlock {
    pub codec: PathBuf,
    pub layout: Layout,
    pub first_token: u32,
    #[serde(default)]
    pub slots: Slots,
    pub begin: String,
    pub end: String,
    /// Tokens that open each word's frames, word `k` by the `k`-th modulo
    /// their number; the speech frontend opens the prompt's words with the
    /// same ones, so the model finds the word it says by matching its
    /// marker instead of counting frames.
    #[serde(default)]
    pub word_markers: Vec<String>,
    /// Each word's marker is followed by the word's phoneme tokens in the
    /// audio too (needs `word_markers`), as ELLA-V interleaves phonemes
    /// ahead of their acoustic tokens: the frames have their phonemes
    /// beside them instead of a lookup back into the prompt.
    #[serde(default)]
    pub word_phonemes: bool,
    /// Each phoneme of a word opens its own frames: the word's marker and
    /// its first phoneme, that phoneme's frames, the next phoneme and its
    /// frames... (needs `word_markers`; not with `word_phonemes`). The
    /// model then only decides when each phoneme ends.
    #[serde(default)]
    pub phoneme_frames: bool,
    /// The codes the codec decodes as silence. With `word_markers`, the
    /// model may write them only in the frames that end a phrase (before a
    /// pause or the end): the teacher falls silent nowhere else, and a
    /// model that fell silent mid-sentence took it for the end and never
    /// spoke again.
    #[serde(default)]
    pub silent_codes: Vec<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeshBlock {
    pub layout: Layout,
    #[serde(default = "default_bins")]
    pub bins: u32,
    /// The side of the fixed cube about the origin the grid covers (the
    /// codes keep size and proportions); absent, each mesh's own bounding
    /// box (MeshGPT's normalisation).
    #[serde(default)]
    pub extent: Option<f32>,
    /// Each axis of the mesh's bounding box stretched over the grid, the
    /// box's size (within `extent`) in three tokens before the faces, so
    /// the faces hold the shape alone (needs `extent`).
    #[serde(default)]
    pub stretch: bool,
    /// Vocab layout: the token of coordinate 0.
    pub first_token: Option<u32>,
    /// Vocab layout: the markers around the face tokens. The text layout
    /// writes OBJ lines and ends with end-of-sequence.
    pub begin: Option<String>,
    pub end: Option<String>,
}

fn default_bins() -> u32 {
    encoders::mesh::DEFAULT_BINS
}

/// Defaults a request may override.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Defaults {
    /// Image size in codes: rows, columns.
    pub image_grid: [usize; 2],
    /// Output image size in pixels, width and height (default: the
    /// grid's own); the decoded image is scaled without smoothing.
    pub image_pixels: Option<[u32; 2]>,
    pub video_fps: Fps,
    pub video_seconds: f64,
    pub max_speech_seconds: f64,
    /// Speech is resampled to this rate (default: the codec's own).
    pub audio_rate: Option<u32>,
    pub max_mesh_faces: usize,
    pub guidance_scale: f32,
    /// Longest text answer (chat, caption, transcribe).
    pub max_text_tokens: usize,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            image_grid: [16, 16],
            image_pixels: None,
            video_fps: Fps::Number(8.0),
            video_seconds: 2.0,
            max_speech_seconds: 20.0,
            audio_rate: None,
            max_mesh_faces: 400,
            guidance_scale: 5.0,
            max_text_tokens: 256,
        }
    }
}

/// A named voice: a recording and what is said in it, spliced into the
/// prompt as a speaker example; or, for models fine-tuned on named
/// speakers (Orpheus), just the name the template writes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Voice {
    pub audio: Option<PathBuf>,
    #[serde(default)]
    pub text: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    /// A `minijinja` template for the prompt (docs/packs.md lists its
    /// variables). `chat` may leave it out to use the tokenizer's template.
    pub template: Option<String>,
    /// The task's sampling unless a request sets its own (else the
    /// checkpoint's `generation_config.json`): speech models sample their
    /// codes (Orpheus suggests a temperature of 0.6) where text answers
    /// may stay greedy.
    pub temperature: Option<f32>,
    pub top_k: Option<usize>,
    pub top_p: Option<f32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TaskName {
    Chat,
    Caption,
    Transcribe,
    TextToImage,
    ImageEdit,
    TextToSpeech,
    TextToVideo,
    ImageToVideo,
    TextToMesh,
}

impl TaskName {
    pub const ALL: [TaskName; 9] = [
        TaskName::Chat,
        TaskName::Caption,
        TaskName::Transcribe,
        TaskName::TextToImage,
        TaskName::ImageEdit,
        TaskName::TextToSpeech,
        TaskName::TextToVideo,
        TaskName::ImageToVideo,
        TaskName::TextToMesh,
    ];

    /// The kind of media the task produces.
    pub fn output_kind(self) -> modalities::Kind {
        use modalities::Kind;
        match self {
            TaskName::Chat | TaskName::Caption | TaskName::Transcribe => Kind::Text,
            TaskName::TextToImage | TaskName::ImageEdit => Kind::Image,
            TaskName::TextToSpeech => Kind::Audio,
            TaskName::TextToVideo | TaskName::ImageToVideo => Kind::Video,
            TaskName::TextToMesh => Kind::Mesh,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TaskName::Chat => "chat",
            TaskName::Caption => "caption",
            TaskName::Transcribe => "transcribe",
            TaskName::TextToImage => "text-to-image",
            TaskName::ImageEdit => "image-edit",
            TaskName::TextToSpeech => "text-to-speech",
            TaskName::TextToVideo => "text-to-video",
            TaskName::ImageToVideo => "image-to-video",
            TaskName::TextToMesh => "text-to-mesh",
        }
    }
}

impl std::fmt::Display for TaskName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for TaskName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        TaskName::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                let known: Vec<&str> = TaskName::ALL.iter().map(|t| t.as_str()).collect();
                format!("unknown task {s:?} (known: {})", known.join(", "))
            })
    }
}
