//! Speech for the starter pack: the teacher voice that reads the training
//! sentences, the sentences it reads, and the kit that turns a sentence
//! into the model's input (phonemes) and output (mel codes).

pub mod align;
pub mod espeak;
pub mod sentences;
pub mod teacher;

use encoders::mel::{MelCodec, MelConfig};
use encoders::speech_text::lexicon::Lexicon;
use encoders::speech_text::lexicon::Phone;
use encoders::speech_text::lts::LetterToSound;
use encoders::speech_text::{Phonemizer, Said};
use modalities::Audio;
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
    /// The markers opening each word of a text-to-speech example; empty
    /// when the teacher reads whole sentences.
    pub word_markers: Vec<String>,
    /// Whether each word's phonemes follow its marker in the audio too.
    pub word_phonemes: bool,
    /// Whether each phoneme opens its own frames in the audio.
    pub phoneme_frames: bool,
}

/// Silence around each word of a word-by-word reading, and after a word
/// that punctuation ends.
const WORD_GAP_S: f64 = 0.03;
const PAUSE_S: f64 = 0.2;

/// One word of a word-by-word reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpokenWord {
    pub phones: Vec<Phone>,
    pub codes: Vec<u32>,
    /// The frame each phone's sound starts at (the first at 0, each phone
    /// a frame at least), aligned from the teacher's phoneme events; None
    /// without `phoneme_frames`, or when the word has fewer frames than
    /// phones.
    pub phone_frames: Option<Vec<usize>>,
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
            word_markers: encoders::speech_text::word_marker_tokens(recipe.word_markers),
            word_phonemes: recipe.word_phonemes,
            phoneme_frames: recipe.phoneme_frames,
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

    /// The teacher's reading of words the phonemizer read
    /// ([`Phonemizer::words`]) one by one: each word (so each word marker of
    /// the prompt) with its phones
    /// and its mel codes, a short silence either side of the word, and a
    /// longer one after a word that punctuation ends.
    pub fn word_codes(&self, said: Vec<Said>) -> Result<Vec<SpokenWord>, SpeechError> {
        let (mut words, mut phones) = (Vec::new(), Vec::new());
        let mut pause_after = Vec::new();
        for s in said {
            match s {
                Said::Word(w, p) => {
                    words.push(w);
                    phones.push(p);
                    pause_after.push(false);
                }
                Said::Pause => {
                    if let Some(last) = pause_after.last_mut() {
                        *last = true;
                    }
                }
            }
        }
        if words.is_empty() {
            return Ok(Vec::new());
        }
        let pieces = self.teacher.speak_words(&words)?;
        let codec = self.codec.config();
        pieces
            .into_iter()
            .zip(pause_after)
            .zip(phones)
            .map(|((piece, pause), phones)| {
                let (rate, len) = (piece.audio.sample_rate, piece.audio.samples.len());
                let silence = |s: f64| vec![0f32; (s * f64::from(rate)) as usize];
                let mut samples = silence(WORD_GAP_S);
                let offset = samples.len();
                samples.extend_from_slice(&piece.audio.samples);
                samples.extend(silence(if pause { PAUSE_S } else { WORD_GAP_S }));
                let audio = Audio {
                    samples,
                    ..piece.audio
                };
                let codes = self.codec.encode_audio(&audio)?;
                let codes = codes.codes.into_iter().next().unwrap_or_default();
                let per_frame = codec.hop as f64 * f64::from(rate) / f64::from(codec.sample_rate);
                let phone_frames = self.phoneme_frames.then(|| {
                    let starts = align::phone_starts(&phones, &piece.phonemes, len);
                    align::phone_frames(&starts, offset, per_frame, codes.len())
                });
                Ok(SpokenWord {
                    phone_frames: phone_frames.flatten(),
                    phones,
                    codes,
                })
            })
            .collect()
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
