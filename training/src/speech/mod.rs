//! Speech for the starter pack: the teacher voice that reads the training
//! sentences, the sentences it reads, and the kit that turns a sentence
//! into the model's input (phonemes) and output (mel codes).

pub mod sentences;
pub mod teacher;

use encoders::mel::{MelCodec, MelConfig};
use encoders::speech_text::lexicon::Lexicon;
use encoders::speech_text::lts::LetterToSound;
use encoders::speech_text::Phonemizer;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::recipe::SpeechRecipe;
use crate::world::{Split, World};
use teacher::{Teacher, TeacherError};

#[derive(Debug, thiserror::Error)]
pub enum SpeechError {
    #[error(transparent)]
    Teacher(#[from] TeacherError),
    #[error(transparent)]
    Codec(#[from] encoders::CodecError),
    #[error("{path}: {why}")]
    Lexicon { path: String, why: String },
}

/// The teacher, the text frontend and the mel codec of a recipe.
pub struct SpeechKit {
    pub teacher: Teacher,
    pub phonemizer: Phonemizer,
    pub codec: MelCodec,
    /// Words sentences over the lexicon draw from.
    pub pool: Vec<String>,
    pub broad_share: f64,
}

impl SpeechKit {
    /// Reads the lexicon, learns its letter-to-sound rules, checks the
    /// teacher and fits the mel codebook to the teacher reading
    /// `fit_sentences` sentences drawn from `seed`.
    pub fn fit(recipe: &SpeechRecipe, seed: u64) -> Result<SpeechKit, SpeechError> {
        let path = recipe.lexicon.display().to_string();
        let text = std::fs::read_to_string(&recipe.lexicon).map_err(|e| SpeechError::Lexicon {
            path: path.clone(),
            why: format!("{e} (Debian's pocketsphinx-en-us ships CMUdict there)"),
        })?;
        let lexicon = Lexicon::parse(&text, &path)?;
        let rules = LetterToSound::fit(&lexicon)?;
        let teacher = Teacher {
            voice: recipe.voice.clone(),
            ..Teacher::default()
        };
        teacher.check()?;
        let pool = sentences::word_pool(&lexicon);
        let mut world = World::new(seed);
        let audio = (0..recipe.fit_sentences)
            .map(|_| {
                let text = draw_sentence(&pool, recipe.broad_share, &mut world, Split::Train);
                teacher.speak(&text)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let config = MelConfig {
            codes: recipe.codes,
            ..MelConfig::default()
        };
        Ok(SpeechKit {
            codec: MelCodec::fit(&audio, config, seed, recipe.iterations)?,
            teacher,
            pool,
            phonemizer: Phonemizer { lexicon, rules },
            broad_share: recipe.broad_share,
        })
    }

    /// A sentence to speak: over the whole lexicon `broad_share` of the
    /// time, else a world sentence of `split`.
    pub fn sentence(&self, world: &mut World, split: Split) -> String {
        draw_sentence(&self.pool, self.broad_share, world, split)
    }

    /// The teacher's reading of `text` as mel codes.
    pub fn codes(&self, text: &str) -> Result<Vec<u32>, SpeechError> {
        let audio = self.teacher.speak(text)?;
        let codes = self.codec.encode_audio(&audio)?;
        Ok(codes.codes.into_iter().next().unwrap_or_default())
    }
}

fn draw_sentence(pool: &[String], broad_share: f64, world: &mut World, split: Split) -> String {
    let mut rng = ChaCha8Rng::seed_from_u64(world.draw_seed());
    if rng.random::<f64>() < broad_share {
        sentences::broad_sentence(pool, rng.random())
    } else {
        sentences::world_sentence(world, split, rng.random_range(0..4))
    }
}
