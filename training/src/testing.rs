//! Small recipes for the tests: the starter recipe shrunk to seconds.

use std::path::Path;

use crate::recipe::{Recipe, SpeechRecipe, TrainTask};

/// The largest absolute value in `t`.
pub fn max_abs(t: &candle_core::Tensor) -> f32 {
    t.abs()
        .and_then(|a| a.max_all())
        .and_then(|m| m.to_scalar::<f32>())
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The starter recipe with a tiny codec, vocabulary and model.
pub fn tiny() -> Recipe {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/recipes/starter.yaml");
    let mut r = Recipe::load(&path).unwrap_or_else(|e| panic!("{e}"));
    r.image_codec.fit_images = 40;
    r.image_codec.iterations = 3;
    r.image_codec.codes = 32;
    r.vocab.sentences = 200;
    r.vocab.text = 300;
    r.vocab.audio_codes = 4;
    r.vocab.mesh_bins = 16;
    r.vocab.mesh_extent = Some(2.0);
    r.vocab.mesh_stretch = true;
    r.model.hidden_size = 32;
    r.model.layers = 2;
    r.model.head_dim = 8;
    r.model.expert_size = 16;
    r.model.experts = 4;
    r.train.steps = 4;
    r.train.batch_tokens = 1200;
    r.train.checkpoint_every = 2;
    r.speech = None;
    r.mix.retain(|t, _| !t.is_speech());
    r
}

/// [`tiny`] with speech: a lexicon of a few world words written into
/// `dir` (the rest are read by rule), 16 mel codes, 4 word markers.
pub fn tiny_speech(dir: &Path) -> Recipe {
    let lexicon = dir.join("lexicon.dict");
    std::fs::write(
        &lexicon,
        "a AH0\nlarge L AA1 R JH\nred R EH1 D\ncircle S ER1 K AH0 L\nat AE1 T\nthe DH AH0\n\
         top T AA1 P\nleft L EH1 F T\non AA1 N\nblue B L UW1\nbackground B AE1 K G R AW2 N D\n\
         moves M UW1 V Z\ncube K Y UW1 B\nmake M EY1 K\nsquare S K W EH1 R\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut recipe = tiny();
    recipe.vocab.audio_codes = 16;
    recipe.speech = Some(SpeechRecipe {
        voice: "en-us+klatt".into(),
        lexicon,
        codes: 16,
        fit_sentences: 6,
        iterations: 3,
        broad_share: 0.5,
        fit_broad_share: None,
        word_markers: 4,
        word_phonemes: true,
        phoneme_frames: false,
        word_reading: crate::recipe::WordReading::Separate,
        temperature: Some(0.7),
        top_p: Some(0.95),
    });
    recipe.mix.insert(TrainTask::TextToSpeech, 1.0);
    recipe.mix.insert(TrainTask::Transcribe, 1.0);
    recipe
}

/// What a test needs to write image sequences: a tokenizer of a world's
/// prompts and an image codec fitted to the world.
pub struct SceneWriting {
    pub tokenizer: tokenizers::Tokenizer,
    pub ids: crate::vocab::CodeIds,
    pub codec: encoders::image::patch::PatchCodec,
    pub mesh_codec: encoders::mesh::MeshCodec,
}

impl SceneWriting {
    /// A tokenizer of 100 prompts drawn from `world` with `rows` row
    /// markers, and `codes` image codes.
    pub fn new(world: &mut crate::world::World, codes: usize, rows: usize) -> Self {
        let corpus: Vec<String> = (0..100)
            .map(|_| world.scene(crate::world::Split::Train).prompt())
            .collect();
        let mesh_bins = 64;
        let plan = crate::vocab::VocabPlan {
            text: 300,
            image_codes: codes,
            audio_codes: 8,
            mesh_bins,
            image_rows: rows,
            word_markers: 0,
            phonemes: false,
        };
        let (tokenizer, ids) = crate::vocab::build_tokenizer(corpus.into_iter(), plan)
            .unwrap_or_else(|e| panic!("{e}"));
        let codec =
            crate::codecs::fit_image_codec(1, 60, codes, 5).unwrap_or_else(|e| panic!("{e}"));
        Self {
            tokenizer,
            ids,
            codec,
            mesh_codec: encoders::mesh::MeshCodec::new(mesh_bins as u32)
                .unwrap_or_else(|e| panic!("{e}")),
        }
    }

    pub fn writer(&self) -> crate::data::Writer<'_> {
        crate::data::Writer {
            tokenizer: &self.tokenizer,
            ids: self.ids,
            image_codec: &self.codec,
            mesh_codec: self.mesh_codec,
            speech: None,
        }
    }
}
