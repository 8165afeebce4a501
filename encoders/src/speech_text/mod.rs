//! The text side of speech: written English to the phonemes a speech model
//! reads. Text is normalised into spoken words ([`normalize`]), each word
//! looked up in a pronunciation lexicon ([`lexicon`], CMUdict's format),
//! and words the lexicon lacks are read by letter-to-sound rules learned
//! from it ([`lts`]).

pub mod lexicon;
pub mod lts;
pub mod normalize;

use lexicon::{Lexicon, Phone};
use lts::LetterToSound;
use normalize::{normalize, Spoken};

/// One unit of a phoneme sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sound {
    Phone(Phone),
    /// Between two words.
    WordBreak,
    /// A pause marked by punctuation.
    Pause,
}

impl Sound {
    /// The token a pack's vocabulary names it by: `<|ph_AA|>`, `<|ph_sp|>`,
    /// `<|ph_pau|>`.
    pub fn token(self) -> String {
        match self {
            Sound::Phone(p) => format!("<|ph_{}|>", p.symbol()),
            Sound::WordBreak => "<|ph_sp|>".into(),
            Sound::Pause => "<|ph_pau|>".into(),
        }
    }

    /// The tokens of the phonemes alone.
    pub fn phoneme_tokens() -> Vec<String> {
        (0..lexicon::PHONES.len())
            .map(|i| Sound::Phone(Phone(i as u8)).token())
            .collect()
    }

    /// Every token, phonemes first.
    pub fn all_tokens() -> Vec<String> {
        (0..lexicon::PHONES.len())
            .map(|i| Sound::Phone(Phone(i as u8)).token())
            .chain([Sound::WordBreak.token(), Sound::Pause.token()])
            .collect()
    }
}

/// Text to phonemes: a lexicon and the rules learned from it.
#[derive(Debug, Clone)]
pub struct Phonemizer {
    pub lexicon: Lexicon,
    pub rules: LetterToSound,
}

impl Phonemizer {
    /// The spoken words of `text` with their phones, and the pauses the
    /// punctuation puts between them; words with no phones are dropped.
    pub fn words(&self, text: &str) -> Vec<Said> {
        normalize(text, |w| self.lexicon.contains(w))
            .into_iter()
            .filter_map(|spoken| match spoken {
                Spoken::Pause => Some(Said::Pause),
                Spoken::Word(w) => {
                    let phones = match self.lexicon.get(&w) {
                        Some(p) => p.to_vec(),
                        None => self.rules.predict(&w),
                    };
                    (!phones.is_empty()).then_some(Said::Word(w, phones))
                }
            })
            .collect()
    }

    /// The sounds of `text`: words separated by word breaks, pauses where
    /// the punctuation puts them.
    pub fn sounds(&self, text: &str) -> Vec<Sound> {
        sounds_of(&self.words(text))
    }

    /// The sounds of `text` as vocabulary tokens, one string.
    pub fn tokens(&self, text: &str) -> String {
        self.sounds(text).into_iter().map(Sound::token).collect()
    }
}

/// The sounds of words already read ([`Phonemizer::words`]).
pub fn sounds_of(said: &[Said]) -> Vec<Sound> {
    let mut out = Vec::new();
    for s in said {
        match s {
            Said::Pause => out.push(Sound::Pause),
            Said::Word(_, phones) => {
                if matches!(out.last(), Some(Sound::Phone(_))) {
                    out.push(Sound::WordBreak);
                }
                out.extend(phones.iter().map(|&p| Sound::Phone(p)));
            }
        }
    }
    out
}

/// The sounds of words already read, as tokens, with word `k` opened by
/// `markers[k % markers.len()]` instead of word breaks between words: a
/// speech model trained to open each word's audio with the same marker
/// finds the word it is saying by matching it. No markers: the plain
/// tokens of [`sounds_of`]. Takes the words, not the text, so a caller
/// that also needs each word's phones splits the text once.
pub fn marked(said: &[Said], markers: &[String]) -> String {
    if markers.is_empty() {
        return sounds_of(said).into_iter().map(Sound::token).collect();
    }
    let mut out = String::new();
    let mut k = 0;
    for s in said {
        match s {
            Said::Pause => out.push_str(&Sound::Pause.token()),
            Said::Word(_, phones) => {
                out.push_str(&markers[k % markers.len()]);
                k += 1;
                out.extend(phones.iter().map(|&p| Sound::Phone(p).token()));
            }
        }
    }
    out
}

/// A spoken word with its phones, or a pause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Said {
    Word(String, Vec<Phone>),
    Pause,
}

/// Numbered word markers: `<|word_0|>`, `<|word_1|>`, ...
pub fn word_marker_tokens(count: usize) -> Vec<String> {
    (0..count).map(|k| format!("<|word_{k}|>")).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn text_becomes_lexicon_phonemes_with_breaks_pauses_and_rules_for_new_words() {
        let lex = Lexicon::parse(
            "the DH AH0\ncat K AE1 T\nsat S AE1 T\nbat B AE1 T\nmat M AE1 T\nsit S IH1 T\n\
             two T UW1\nhello HH AH0 L OW1\n",
            "t",
        )
        .unwrap();
        let rules = LetterToSound::fit(&lex).unwrap();
        let p = Phonemizer {
            lexicon: lex,
            rules,
        };
        assert_eq!(
            p.tokens("Hello, the cat sat."),
            "<|ph_HH|><|ph_AH|><|ph_L|><|ph_OW|><|ph_pau|><|ph_DH|><|ph_AH|><|ph_sp|>\
             <|ph_K|><|ph_AE|><|ph_T|><|ph_sp|><|ph_S|><|ph_AE|><|ph_T|>"
        );
        // "2" is spoken "two"; "mit" is not in the lexicon: read by rule.
        assert_eq!(p.tokens("2"), "<|ph_T|><|ph_UW|>");
        assert_eq!(p.tokens("mit"), "<|ph_M|><|ph_IH|><|ph_T|>");
        assert_eq!(Sound::all_tokens().len(), 41);
        // Markers open the words (cycling), pauses stay.
        let markers = word_marker_tokens(2);
        assert_eq!(
            marked(&p.words("Hello, the cat."), &markers),
            "<|word_0|><|ph_HH|><|ph_AH|><|ph_L|><|ph_OW|><|ph_pau|><|word_1|><|ph_DH|><|ph_AH|>\
             <|word_0|><|ph_K|><|ph_AE|><|ph_T|>"
        );
        assert_eq!(marked(&p.words("the cat"), &[]), p.tokens("the cat"));
        let words: Vec<String> = p
            .words("2 cats!")
            .into_iter()
            .filter_map(|s| match s {
                Said::Word(w, _) => Some(w),
                Said::Pause => None,
            })
            .collect();
        assert_eq!(words, ["two", "cats"], "the words as spoken");
    }
}
