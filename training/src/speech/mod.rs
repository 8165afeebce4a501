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

use crate::recipe::{SpeechRecipe, WordReading};
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
    pub word_reading: WordReading,
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
    /// `fit_sentences` sentences drawn from `seed` (`fit_broad_share` of
    /// them over the lexicon).
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
        let audio = fit_texts(&pool, recipe, seed)
            .iter()
            .map(|text| teacher.speak(text))
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
            word_reading: recipe.word_reading,
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
    /// ([`Phonemizer::words`]): each word (so each word marker of the
    /// prompt) with its phones and its mel codes. Read as the recipe's
    /// `word_reading` says; a connected reading whose word events do not
    /// match the words is read word by word instead.
    pub fn word_codes(&self, said: Vec<Said>) -> Result<Vec<SpokenWord>, SpeechError> {
        if self.word_reading == WordReading::Connected {
            if let Some(words) = self.connected_codes(&said)? {
                return Ok(words);
            }
        }
        let codec = self.codec.config();
        read_words(&self.teacher, said)?
            .into_iter()
            .map(|word| {
                let rate = word.audio.sample_rate;
                let codes = self.codec.encode_audio(&word.audio)?;
                let codes = codes.codes.into_iter().next().unwrap_or_default();
                let per_frame = samples_per_frame(codec.hop, rate, codec.sample_rate);
                let phone_frames = self.phoneme_frames.then(|| {
                    let starts = align::phone_starts(&word.phones, &word.phonemes, word.spoken);
                    align::phone_frames(&starts, word.offset, per_frame, codes.len())
                });
                Ok(SpokenWord {
                    phone_frames: phone_frames.flatten(),
                    phones: word.phones,
                    codes,
                })
            })
            .collect()
    }

    /// The sentence's connected reading coded once, its codes cut at the
    /// frame each word starts at; None when the cuts would leave a word
    /// without a frame, or the reading's word events do not match.
    fn connected_codes(&self, said: &[Said]) -> Result<Option<Vec<SpokenWord>>, SpeechError> {
        let Some(connected) = read_connected(&self.teacher, said)? else {
            return Ok(None);
        };
        let audio = &connected.reading.audio;
        let codes = self.codec.encode_audio(audio)?;
        let codes = codes.codes.into_iter().next().unwrap_or_default();
        let codec = self.codec.config();
        let per_frame = connected.samples_per_frame(codec.hop, codec.sample_rate);
        let Some(frames) = connected.word_frames(codec.hop, codec.sample_rate, codes.len()) else {
            return Ok(None);
        };
        let samples = audio.samples.len();
        let words = connected.phones.into_iter().enumerate().map(|(k, phones)| {
            let (from, to) = (frames[k], frames.get(k + 1).copied().unwrap_or(codes.len()));
            let (start, end) = (
                connected.starts[k],
                connected.starts.get(k + 1).copied().unwrap_or(samples),
            );
            let phone_frames = self.phoneme_frames.then(|| {
                let events: Vec<(String, usize)> = connected
                    .reading
                    .phonemes
                    .iter()
                    .filter(|(_, at)| (start..end).contains(at))
                    .map(|(name, at)| (name.clone(), at - start))
                    .collect();
                let starts = align::phone_starts(&phones, &events, end - start);
                align::phone_frames(&starts, 0, per_frame, to - from)
            });
            SpokenWord {
                phone_frames: phone_frames.flatten(),
                phones,
                codes: codes[from..to].to_vec(),
            }
        });
        Ok(Some(words.collect()))
    }
}

/// A sentence read once, connected, and where its words start.
pub struct ConnectedReading {
    pub reading: espeak::Reading,
    /// The sample each word starts at, the first 0.
    pub starts: Vec<usize>,
    /// Each word's phones.
    pub phones: Vec<Vec<Phone>>,
}

impl ConnectedReading {
    /// The reading's samples in one frame of a codec whose frames are
    /// `hop` samples at `codec_rate`.
    pub fn samples_per_frame(&self, hop: usize, codec_rate: u32) -> f64 {
        samples_per_frame(hop, self.reading.audio.sample_rate, codec_rate)
    }

    /// The frame of the reading's `frames` codes each word starts at (as
    /// training cuts them, and the evaluation checks); None when a word
    /// would get no frame.
    pub fn word_frames(&self, hop: usize, codec_rate: u32, frames: usize) -> Option<Vec<usize>> {
        let per_frame = self.samples_per_frame(hop, codec_rate);
        let at: Vec<usize> = self
            .starts
            .iter()
            .map(|&s| (s as f64 / per_frame).round() as usize)
            .collect();
        let ordered = at.windows(2).all(|w| w[0] < w[1]);
        (ordered && at.last().is_some_and(|&f| f < frames)).then_some(at)
    }
}

/// The teacher's connected reading of `said` ([`Teacher::speak_connected`]).
/// A word espeak-ng read together with the one before ("on the") starts
/// where the two words' phones, aligned to the pair's phoneme events, say
/// its first phone does. None without words, or when the starts do not
/// increase.
pub fn read_connected(
    teacher: &Teacher,
    said: &[Said],
) -> Result<Option<ConnectedReading>, TeacherError> {
    let (words, phones, pause_after) = marked_words(said.to_vec());
    if words.is_empty() {
        return Ok(None);
    }
    let (reading, found) = teacher.speak_connected(&words, &pause_after)?;
    let mut starts = Vec::with_capacity(found.len());
    let mut k = 0;
    while k < found.len() {
        if let Some(start) = found[k] {
            starts.push(start);
            k += 1;
            continue;
        }
        // Words k..next were read with word k - 1 (the first word always
        // has its start).
        let next = (k..found.len()).find(|&j| found[j].is_some());
        let from = starts[k - 1];
        let to = next
            .and_then(|j| found[j])
            .unwrap_or(reading.audio.samples.len());
        let events: Vec<(String, usize)> = reading
            .phonemes
            .iter()
            .filter(|(_, at)| (from..to).contains(at))
            .map(|(name, at)| (name.clone(), at - from))
            .collect();
        let merged = &phones[k - 1..next.unwrap_or(found.len())];
        let all: Vec<Phone> = merged.iter().flatten().cloned().collect();
        let phone_starts = align::phone_starts(&all, &events, to.saturating_sub(from));
        let mut first_phone = merged[0].len();
        for word in &merged[1..] {
            starts.push(from + phone_starts.get(first_phone).copied().unwrap_or(0));
            first_phone += word.len();
        }
        k = next.unwrap_or(found.len());
    }
    if starts.windows(2).any(|w| w[0] >= w[1]) {
        return Ok(None);
    }
    Ok(Some(ConnectedReading {
        reading,
        starts,
        phones,
    }))
}

/// The words of `said`, their phones, and whether a pause follows each.
fn marked_words(said: Vec<Said>) -> (Vec<String>, Vec<Vec<Phone>>, Vec<bool>) {
    let (mut words, mut phones, mut pause_after) = (Vec::new(), Vec::new(), Vec::new());
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
    (words, phones, pause_after)
}

/// One word of a separate word-by-word reading, as training codes it.
#[derive(Debug, Clone)]
pub struct WordPiece {
    pub phones: Vec<Phone>,
    /// The word's reading with silence either side.
    pub audio: Audio,
    /// The sample the word's own reading starts at, and its length.
    pub offset: usize,
    pub spoken: usize,
    /// espeak-ng's phonemes and the samples they start at, counted from
    /// `offset`.
    pub phonemes: Vec<(String, usize)>,
}

/// The teacher's reading of `said` word by word: a short silence either
/// side of each word, and a longer one after a word that punctuation ends.
/// Training codes each word's audio; the evaluation hears them joined, the
/// best a pack trained on them can sound.
pub fn read_words(teacher: &Teacher, said: Vec<Said>) -> Result<Vec<WordPiece>, TeacherError> {
    let (words, phones, pause_after) = marked_words(said);
    if words.is_empty() {
        return Ok(Vec::new());
    }
    let pieces = teacher.speak_words(&words)?;
    Ok(pieces
        .into_iter()
        .zip(pause_after)
        .zip(phones)
        .map(|((piece, pause), phones)| {
            let rate = piece.audio.sample_rate;
            let silence = |s: f64| vec![0f32; (s * f64::from(rate)) as usize];
            let mut samples = silence(WORD_GAP_S);
            let (offset, spoken) = (samples.len(), piece.audio.samples.len());
            samples.extend_from_slice(&piece.audio.samples);
            samples.extend(silence(if pause { PAUSE_S } else { WORD_GAP_S }));
            WordPiece {
                phones,
                audio: Audio {
                    samples,
                    ..piece.audio
                },
                offset,
                spoken,
                phonemes: piece.phonemes,
            }
        })
        .collect())
}

/// Samples at `audio_rate` in one frame of a codec whose frames are `hop`
/// samples at `codec_rate`.
fn samples_per_frame(hop: usize, audio_rate: u32, codec_rate: u32) -> f64 {
    hop as f64 * f64::from(audio_rate) / f64::from(codec_rate)
}

/// The sentences the mel codebook is fitted on.
fn fit_texts(pool: &[String], recipe: &SpeechRecipe, seed: u64) -> Vec<String> {
    let mut world = World::new(seed);
    (0..recipe.fit_sentences)
        .map(|_| draw_sentence(pool, recipe.fit_share(), &mut world, Split::Train))
        .collect()
}

fn draw_sentence(pool: &[String], broad_share: f64, world: &mut World, split: Split) -> String {
    let mut rng = ChaCha8Rng::seed_from_u64(world.draw_seed());
    if rng.random::<f64>() < broad_share {
        sentences::broad_sentence(pool, rng.random())
    } else {
        sentences::world_sentence(world, split, rng.random_range(0..4))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_codec_fits_on_its_own_share_of_broad_sentences() {
        let pool: Vec<String> = ["zebra", "quantum", "harbour"].map(String::from).into();
        let dir = tempfile::tempdir().unwrap();
        let mut recipe = crate::testing::tiny_speech(dir.path()).speech.unwrap();
        recipe.fit_sentences = 40;
        recipe.broad_share = 0.0;
        let world_only = fit_texts(&pool, &recipe, 3);
        recipe.broad_share = 1.0;
        let broad = fit_texts(&pool, &recipe, 3);
        assert_ne!(world_only, broad);
        recipe.fit_broad_share = Some(0.0);
        assert_eq!(fit_texts(&pool, &recipe, 3), world_only);
    }

    /// Needs espeak-ng.
    #[test]
    fn a_word_read_with_the_one_before_starts_at_its_first_phone() {
        let phone = |p: &str| {
            p.split(" ")
                .map(|x| Phone::parse(x).unwrap())
                .collect::<Vec<Phone>>()
        };
        let said: Vec<Said> = [
            ("a", "AH"),
            ("circle", "S ER K AH L"),
            ("on", "AA N"),
            ("the", "DH AH"),
            ("right", "R AY T"),
        ]
        .into_iter()
        .map(|(w, p)| Said::Word(w.into(), phone(p)))
        .collect();
        let teacher = Teacher::default();
        let connected = read_connected(&teacher, &said).unwrap().unwrap();
        let s = &connected.starts;
        assert_eq!(s.len(), 5);
        assert!(s.windows(2).all(|w| w[0] < w[1]), "{s:?}");
        // "the" starts at espeak-ng's "D", between "on" and "right".
        let dh = connected
            .reading
            .phonemes
            .iter()
            .find(|p| p.0 == "D")
            .unwrap()
            .1;
        assert_eq!(s[3], dh, "{s:?} {:?}", connected.reading.phonemes);
    }
}
