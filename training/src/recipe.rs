//! A training recipe: everything that decides the trained pack, in one YAML
//! file (`assets/recipes/starter.yaml`), so the same file reproduces it.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::model::MoeConfig;

/// A task the recipe trains, as the pack names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrainTask {
    TextToImage,
    Caption,
    ImageEdit,
    TextToVideo,
    TextToMesh,
    TextToSpeech,
    Transcribe,
}

impl TrainTask {
    pub const ALL: [TrainTask; 7] = [
        TrainTask::TextToImage,
        TrainTask::Caption,
        TrainTask::ImageEdit,
        TrainTask::TextToVideo,
        TrainTask::TextToMesh,
        TrainTask::TextToSpeech,
        TrainTask::Transcribe,
    ];

    /// Whether the task needs the recipe's `speech` section.
    pub fn is_speech(self) -> bool {
        matches!(self, TrainTask::TextToSpeech | TrainTask::Transcribe)
    }

    pub fn name(self) -> &'static str {
        match self {
            TrainTask::TextToImage => "text-to-image",
            TrainTask::Caption => "caption",
            TrainTask::ImageEdit => "image-edit",
            TrainTask::TextToVideo => "text-to-video",
            TrainTask::TextToMesh => "text-to-mesh",
            TrainTask::TextToSpeech => "text-to-speech",
            TrainTask::Transcribe => "transcribe",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// The pack's name in `pack.yaml`.
    pub name: String,
    pub description: String,
    /// Seeds the model's initial weights and the order of the data.
    pub seed: u64,
    /// Seeds the world that fits the codecs and the vocabulary.
    pub world_seed: u64,
    pub image_codec: ImageCodecRecipe,
    pub vocab: VocabRecipe,
    pub model: ModelRecipe,
    /// The speech tasks' teacher, lexicon and audio codec (needed when the
    /// mix has text-to-speech or transcribe).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speech: Option<SpeechRecipe>,
    /// Relative weight of each task in the data.
    pub mix: BTreeMap<TrainTask, f64>,
    pub train: TrainRecipe,
    /// The pack's default classifier-free guidance scale for pictures and
    /// edits (1, the default, is none); above 1 it needs
    /// `train.prompt_dropout`.
    #[serde(default = "no_guidance")]
    pub guidance_scale: f64,
}

fn no_guidance() -> f64 {
    1.0
}

/// More markers than words in any sentence only cost vocabulary.
const MAX_WORD_MARKERS: usize = 256;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpeechRecipe {
    /// The teacher: espeak-ng's voice.
    pub voice: String,
    /// A CMUdict-format lexicon (Debian's pocketsphinx-en-us ships one).
    pub lexicon: std::path::PathBuf,
    /// Mel codes (the vocabulary keeps `vocab.audio_codes` ids for them).
    pub codes: usize,
    /// Teacher sentences the mel codebook is fitted on.
    pub fit_sentences: usize,
    pub iterations: usize,
    /// Share of text-to-speech sentences drawn over the whole lexicon
    /// (the rest are world sentences).
    pub broad_share: f64,
    /// The same share among the sentences the mel codebook is fitted on;
    /// absent, `broad_share`. Set apart, the training mix can change while
    /// the codec stays the same (in the speech ablations the codec's draw
    /// made no measurable difference: docs/training-runs.md).
    #[serde(default)]
    pub fit_broad_share: Option<f64>,
    /// Numbered markers (`<|word_0|>` ...) that open each word's phonemes
    /// in a text-to-speech prompt and each word's codes in its audio (the
    /// teacher then reads word by word); 0 for none.
    #[serde(default)]
    pub word_markers: usize,
    /// Each word's marker is followed by the word's phonemes in the audio
    /// too (needs `word_markers`).
    #[serde(default)]
    pub word_phonemes: bool,
    /// Each phoneme of a word opens its own frames in the audio: the
    /// word's marker, the first phoneme and its frames, the next phoneme
    /// and its frames... (timed from the teacher's phoneme events; needs
    /// `word_markers`, and replaces `word_phonemes`).
    #[serde(default)]
    pub phoneme_frames: bool,
    /// How the teacher reads a sentence whose words are marked (needs
    /// `word_markers`): `separate`, each word apart; `connected`, the
    /// sentence as one reading cut where espeak-ng says each word starts.
    #[serde(default)]
    pub word_reading: WordReading,
    /// The pack's text-to-speech sampling (`tasks.text-to-speech` in
    /// `pack.yaml`); absent, greedy.
    #[serde(default)]
    pub temperature: Option<f32>,
    #[serde(default)]
    pub top_p: Option<f32>,
}

impl SpeechRecipe {
    /// The share of broad sentences the mel codebook is fitted on.
    pub fn fit_share(&self) -> f64 {
        self.fit_broad_share.unwrap_or(self.broad_share)
    }
}

/// How the teacher reads the words of a word-marked sentence.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WordReading {
    /// Each word read apart (one reading with long breaks, cut at them):
    /// every word sounds as if said alone, which a recogniser hears far
    /// worse than the sentence (docs/training-runs.md).
    #[default]
    Separate,
    /// The sentence read once, as the teacher says it, cut at its word
    /// events: the words' codes joined are the sentence's.
    Connected,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageCodecRecipe {
    pub codes: usize,
    /// World images the codebook is fitted on.
    pub fit_images: usize,
    pub iterations: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VocabRecipe {
    /// Most BPE tokens for text (bytes and merges).
    pub text: usize,
    /// World sentences the BPE is trained on.
    pub sentences: usize,
    /// Ids kept for mel codes (the speech modality).
    pub audio_codes: usize,
    pub mesh_bins: usize,
    /// The side of the fixed cube about the origin that the mesh grid
    /// covers, in world units; absent, each mesh's own bounding box.
    #[serde(default)]
    pub mesh_extent: Option<f32>,
    /// Each axis of a mesh's bounding box stretched over the grid and its
    /// size (within `mesh_extent`) in three tokens before the faces: the
    /// faces hold the shape, the size tokens its proportions.
    #[serde(default)]
    pub mesh_stretch: bool,
    /// A marker token opening each row of image codes (`<|row_0|>` ...),
    /// so the model reads which row it draws instead of counting codes.
    #[serde(default)]
    pub row_markers: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelRecipe {
    pub hidden_size: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub experts: usize,
    pub experts_per_token: usize,
    pub expert_size: usize,
    pub max_positions: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainRecipe {
    pub steps: usize,
    /// Padded tokens per batch (each task's sequences right-padded together).
    pub batch_tokens: usize,
    pub learning_rate: f64,
    pub warmup: usize,
    pub weight_decay: f64,
    pub checkpoint_every: usize,
    /// Focal weight of the loss (`(1 - p)^focal` per token); 0, the
    /// default, is plain cross-entropy.
    #[serde(default)]
    pub focal: f64,
    /// Weight of the routers' load-balancing term (the Switch
    /// Transformer's: 1 when every expert takes an even share of routes,
    /// up to the expert count when one takes all); 0, the default, leaves
    /// routing free.
    #[serde(default)]
    pub router_balance: f64,
    /// Every step's batch holds every task of the mix, each with its
    /// weight's share of `batch_tokens` and of the loss; false, the
    /// default, draws one task per step.
    #[serde(default)]
    pub mixed_batches: bool,
    /// Share of text-to-image and image-edit examples trained with their
    /// prompt left empty, so the pack also learns pictures and edits
    /// without one: classifier-free guidance (`guidance_scale`) steers by
    /// the difference. 0, the default, drops none.
    #[serde(default)]
    pub prompt_dropout: f64,
    /// Share of text-to-mesh examples in which the model reads another
    /// training solid's size tokens in place of the solid's own (still
    /// taught the right ones), so its faces follow the solid's word and not
    /// the size tokens before them; needs `vocab.mesh_stretch`. 0, the
    /// default, swaps none.
    #[serde(default)]
    pub mesh_size_noise: f64,
}

impl TrainRecipe {
    /// What each step minimises besides the cross-entropy.
    pub fn objective(&self) -> crate::train::Objective {
        crate::train::Objective {
            focal: self.focal,
            router_balance: self.router_balance,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    #[error("{path}: {why}")]
    File { path: String, why: String },
    #[error("recipe: {0}")]
    Invalid(String),
}

impl Recipe {
    pub fn load(path: &Path) -> Result<Recipe, RecipeError> {
        let file = |why: String| RecipeError::File {
            path: path.display().to_string(),
            why,
        };
        let text = std::fs::read_to_string(path).map_err(|e| file(e.to_string()))?;
        let recipe: Recipe = serde_saphyr::from_str(&text).map_err(|e| file(e.to_string()))?;
        recipe.validate().map_err(|e| file(e.to_string()))?;
        Ok(recipe)
    }

    /// Checks what serde cannot: sizes that fit together.
    pub fn validate(&self) -> Result<(), RecipeError> {
        let bad = |why: &str| Err(RecipeError::Invalid(why.to_string()));
        let m = &self.model;
        if m.heads == 0 || m.kv_heads == 0 || !m.heads.is_multiple_of(m.kv_heads) {
            return bad("model.heads must be a positive multiple of model.kv_heads");
        }
        if m.experts_per_token == 0 || m.experts_per_token > m.experts {
            return bad("model.experts_per_token must be between 1 and model.experts");
        }
        if !m.head_dim.is_multiple_of(2) {
            return bad("model.head_dim must be even (rotary embeddings)");
        }
        if self.mix.is_empty() || self.mix.values().any(|w| !(w.is_finite() && *w >= 0.0)) {
            return bad("mix: give each task a weight of 0 or more");
        }
        if self.mix.values().sum::<f64>() <= 0.0 {
            return bad("mix: at least one task needs a positive weight");
        }
        let t = &self.train;
        if t.steps == 0 || t.batch_tokens == 0 || t.checkpoint_every == 0 {
            return bad(
                "train.steps, train.batch_tokens and train.checkpoint_every must be positive",
            );
        }
        if !(t.learning_rate > 0.0 && t.learning_rate.is_finite()) {
            return bad("train.learning_rate must be positive");
        }
        if !(t.focal >= 0.0 && t.focal.is_finite()) {
            return bad("train.focal must be 0 (plain cross-entropy) or positive");
        }
        if !(t.router_balance >= 0.0 && t.router_balance.is_finite()) {
            return bad("train.router_balance must be 0 (no balancing) or positive");
        }
        if !(0.0..1.0).contains(&t.prompt_dropout) {
            return bad("train.prompt_dropout must be in [0, 1)");
        }
        if !(0.0..1.0).contains(&t.mesh_size_noise) {
            return bad("train.mesh_size_noise must be in [0, 1)");
        }
        if t.mesh_size_noise > 0.0 && !self.vocab.mesh_stretch {
            return bad(
                "train.mesh_size_noise: only a stretched mesh frame has size tokens to swap \
                 (set vocab.mesh_stretch: true)",
            );
        }
        if !(self.guidance_scale > 0.0 && self.guidance_scale <= 50.0) {
            return bad("guidance_scale must be in (0, 50]");
        }
        if self.guidance_scale != 1.0 && t.prompt_dropout == 0.0 {
            return bad(
                "guidance_scale: guidance needs a model that learned pictures without a prompt: \
                 set train.prompt_dropout (0.1 is usual)",
            );
        }
        // The codec's own check: one rule for packs and recipes.
        if let Err(e) =
            encoders::mesh::MeshFrame::new(self.vocab.mesh_extent, self.vocab.mesh_stretch)
        {
            return bad(&format!("vocab.mesh_extent, vocab.mesh_stretch: {e}"));
        }
        if self.image_codec.codes == 0 || self.vocab.mesh_bins < 2 {
            return bad("image_codec.codes must be positive and vocab.mesh_bins at least 2");
        }
        let speaks = self.tasks().iter().any(|t| t.is_speech());
        match &self.speech {
            None if speaks => {
                return bad("mix: text-to-speech and transcribe need a speech section")
            }
            Some(s) if s.codes != self.vocab.audio_codes => {
                return bad("speech.codes must equal vocab.audio_codes");
            }
            Some(s) if !(0.0..=1.0).contains(&s.broad_share) => {
                return bad("speech.broad_share must be between 0 and 1");
            }
            Some(s) if !(0.0..=1.0).contains(&s.fit_share()) => {
                return bad("speech.fit_broad_share must be between 0 and 1");
            }
            Some(s) if s.word_markers > MAX_WORD_MARKERS => {
                return bad("speech.word_markers must be at most 256");
            }
            Some(s) if s.word_phonemes && s.word_markers == 0 => {
                return bad(
                    "speech.word_phonemes follow each word's marker: set speech.word_markers",
                );
            }
            Some(s) if s.phoneme_frames && s.word_markers == 0 => {
                return bad(
                    "speech.phoneme_frames: each word's first phoneme follows its marker: \
                     set speech.word_markers",
                );
            }
            Some(s) if s.word_reading == WordReading::Connected && s.word_markers == 0 => {
                return bad(
                    "speech.word_reading: connected cuts a reading into its marked words: \
                     set speech.word_markers",
                );
            }
            Some(s) if s.phoneme_frames && s.word_phonemes => {
                return bad(
                    "speech.phoneme_frames and speech.word_phonemes: the phonemes come once, \
                     each before its own frames; set one",
                );
            }
            Some(s) if s.temperature.is_some_and(|t| !(t.is_finite() && t >= 0.0)) => {
                return bad("speech.temperature must be a finite value of 0 or more");
            }
            Some(s) if s.top_p.is_some_and(|p| !(p > 0.0 && p <= 1.0)) => {
                return bad("speech.top_p must be in (0, 1]");
            }
            _ => {}
        }
        Ok(())
    }

    /// The tasks the mix trains (weight above zero), in their order.
    pub fn tasks(&self) -> Vec<TrainTask> {
        self.mix
            .iter()
            .filter(|(_, w)| **w > 0.0)
            .map(|(t, _)| *t)
            .collect()
    }

    /// The backbone's config for a vocabulary of `vocab_size` tokens.
    pub fn model_config(&self, vocab_size: usize, eos: Vec<u32>) -> MoeConfig {
        let m = &self.model;
        MoeConfig {
            vocab_size,
            hidden_size: m.hidden_size,
            num_hidden_layers: m.layers,
            num_attention_heads: m.heads,
            num_key_value_heads: m.kv_heads,
            head_dim: m.head_dim,
            moe_intermediate_size: m.expert_size,
            num_experts: m.experts,
            num_experts_per_tok: m.experts_per_token,
            rms_norm_eps: 1e-6,
            rope_theta: 10_000.0,
            max_position_embeddings: m.max_positions,
            eos_token_id: eos,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn starter() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/recipes/starter.yaml")
    }

    #[test]
    fn the_starter_recipe_loads_and_names_every_task() {
        let r = Recipe::load(&starter()).unwrap();
        let visual = TrainTask::ALL.iter().filter(|t| !t.is_speech());
        for task in visual {
            assert!(r.tasks().contains(task), "{}", task.name());
        }
        assert_eq!(
            r.speech.is_some(),
            r.tasks().contains(&TrainTask::TextToSpeech)
        );
    }

    #[test]
    fn a_bad_recipe_names_the_file_and_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let text = std::fs::read_to_string(starter()).unwrap();
        let path = dir.path().join("r.yaml");
        std::fs::write(&path, text.replace("kv_heads: 2", "kv_heads: 3")).unwrap();
        let e = Recipe::load(&path).unwrap_err().to_string();
        assert!(e.contains("r.yaml") && e.contains("kv_heads"), "{e}");
        std::fs::write(&path, text.replace("steps:", "stepz:")).unwrap();
        let e = Recipe::load(&path).unwrap_err().to_string();
        assert!(e.contains("stepz"), "{e}");
        assert!(text.contains("focal: 2.0"));
        std::fs::write(&path, text.replace("focal: 2.0", "focal: -1")).unwrap();
        let e = Recipe::load(&path).unwrap_err().to_string();
        assert!(e.contains("train.focal"), "{e}");
        assert!(text.contains("router_balance: 0.002") && text.contains("prompt_dropout: 0.1"));
        let negative = text.replace("router_balance: 0.002", "router_balance: -0.5");
        std::fs::write(&path, negative).unwrap();
        let e = Recipe::load(&path).unwrap_err().to_string();
        assert!(e.contains("train.router_balance"), "{e}");
        std::fs::write(&path, text.replace("mesh_extent: 2.0", "mesh_extent: 0")).unwrap();
        let e = Recipe::load(&path).unwrap_err().to_string();
        assert!(e.contains("vocab.mesh_extent"), "{e}");
        let fit = text.replace(
            "broad_share: 0.5",
            "broad_share: 0.5\n  fit_broad_share: 1.5",
        );
        std::fs::write(&path, fit).unwrap();
        let e = Recipe::load(&path).unwrap_err().to_string();
        assert!(e.contains("speech.fit_broad_share"), "{e}");
        let fit = text.replace(
            "broad_share: 0.5",
            "broad_share: 0.8\n  fit_broad_share: 0.5",
        );
        std::fs::write(&path, fit).unwrap();
        let speech = Recipe::load(&path).unwrap().speech.unwrap();
        assert_eq!((speech.broad_share, speech.fit_share()), (0.8, 0.5));
        let speech = Recipe::load(&starter()).unwrap().speech.unwrap();
        assert_eq!(speech.fit_share(), speech.broad_share);
        assert!(text.contains("temperature: 0.05"));
        std::fs::write(&path, text.replace("temperature: 0.05", "temperature: -1")).unwrap();
        let e = Recipe::load(&path).unwrap_err().to_string();
        assert!(e.contains("speech.temperature"), "{e}");
        let dropout = text.replace("prompt_dropout: 0.1", "prompt_dropout: 1.5");
        std::fs::write(&path, dropout).unwrap();
        let e = Recipe::load(&path).unwrap_err().to_string();
        assert!(e.contains("train.prompt_dropout"), "{e}");
        assert!(text.contains("mesh_size_noise: 0.3") && text.contains("mesh_stretch: true"));
        let noisy = text.replace("mesh_size_noise: 0.3", "mesh_size_noise: 1.5");
        std::fs::write(&path, noisy).unwrap();
        let e = Recipe::load(&path).unwrap_err().to_string();
        assert!(e.contains("train.mesh_size_noise"), "{e}");
        // Only a stretched frame has size tokens to swap.
        let unstretched = text.replace("mesh_stretch: true", "mesh_stretch: false");
        std::fs::write(&path, unstretched).unwrap();
        let e = Recipe::load(&path).unwrap_err().to_string();
        assert!(
            e.contains("train.mesh_size_noise") && e.contains("vocab.mesh_stretch"),
            "{e}"
        );
        // Guidance without prompt dropout would steer by an unconditional
        // branch the model never learned.
        let undropped = text.replace("prompt_dropout: 0.1", "prompt_dropout: 0");
        std::fs::write(&path, format!("{undropped}\nguidance_scale: 2.0\n")).unwrap();
        let e = Recipe::load(&path).unwrap_err().to_string();
        assert!(
            e.contains("guidance_scale") && e.contains("prompt_dropout"),
            "{e}"
        );
        std::fs::write(&path, format!("{text}\nguidance_scale: 2.0\n")).unwrap();
        let r = Recipe::load(&path).unwrap();
        assert_eq!((r.train.prompt_dropout, r.guidance_scale), (0.1, 2.0));
        // A connected reading is cut into marked words.
        let connected = if text.contains("word_reading: connected") {
            text.clone()
        } else {
            assert!(text.contains("word_phonemes: true") && text.contains("word_markers: 32"));
            text.replace(
                "word_phonemes: true",
                "word_phonemes: true\n  word_reading: connected",
            )
        };
        std::fs::write(&path, &connected).unwrap();
        let r = Recipe::load(&path).unwrap();
        assert_eq!(r.speech.unwrap().word_reading, WordReading::Connected);
        // Without markers nothing may follow them either.
        let unmarked = connected
            .replace("word_markers: 32", "word_markers: 0")
            .replace("word_phonemes: true", "word_phonemes: false")
            .replace("phoneme_frames: true", "phoneme_frames: false");
        std::fs::write(&path, unmarked).unwrap();
        let e = Recipe::load(&path).unwrap_err().to_string();
        assert!(
            e.contains("speech.word_reading") && e.contains("speech.word_markers"),
            "{e}"
        );
        std::fs::write(
            &path,
            connected.replace("reading: connected", "reading: joined"),
        )
        .unwrap();
        let e = Recipe::load(&path).unwrap_err().to_string();
        assert!(e.contains("joined") && e.contains("r.yaml"), "{e}");
    }
}
