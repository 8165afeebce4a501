//! A pronunciation lexicon in the CMU Pronouncing Dictionary's format
//! (`word  PH PH PH`, alternates as `word(2)`, comments after `#` or on
//! `;;;` lines). Stress digits are dropped: the 39 ARPAbet phonemes are
//! what a small speech model reads.

use std::collections::HashMap;

use crate::error::{CodecError, Result};

/// The ARPAbet phonemes, in CMUdict's order.
pub const PHONES: [&str; 39] = [
    "AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G", "HH",
    "IH", "IY", "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T", "TH", "UH",
    "UW", "V", "W", "Y", "Z", "ZH",
];

/// A phoneme: an index into [`PHONES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Phone(pub u8);

impl Phone {
    /// `"AH0"`, `"ah"` or `"AH"`: the phoneme without its stress.
    pub fn parse(symbol: &str) -> Option<Phone> {
        let bare = symbol.trim_end_matches(|c: char| c.is_ascii_digit());
        PHONES
            .iter()
            .position(|p| p.eq_ignore_ascii_case(bare))
            .map(|i| Phone(i as u8))
    }

    pub fn symbol(self) -> &'static str {
        PHONES.get(self.0 as usize).copied().unwrap_or("?")
    }
}

/// Words and their first pronunciation.
#[derive(Debug, Clone, Default)]
pub struct Lexicon {
    words: HashMap<String, Vec<Phone>>,
}

impl Lexicon {
    /// Parses a CMUdict-format text; a line with an unknown phoneme is an
    /// error naming its line (in `source`, a file name for the message).
    pub fn parse(text: &str, source: &str) -> Result<Lexicon> {
        let mut words: HashMap<String, Vec<Phone>> = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() || line.starts_with(";;;") {
                continue;
            }
            let mut parts = line.split_whitespace();
            let Some(head) = parts.next() else { continue };
            // Alternates ("read(2)") come after the first: keep the first.
            let word = head.split('(').next().unwrap_or(head).to_lowercase();
            let phones = parts
                .map(|p| {
                    Phone::parse(p).ok_or_else(|| {
                        CodecError::config(
                            source,
                            format!("line {}: {p:?} is not an ARPAbet phoneme", n + 1),
                        )
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            if phones.is_empty() {
                return Err(CodecError::config(
                    source,
                    format!("line {}: {word:?} has no phonemes", n + 1),
                ));
            }
            words.entry(word).or_insert(phones);
        }
        Ok(Lexicon { words })
    }

    pub fn get(&self, word: &str) -> Option<&[Phone]> {
        self.words.get(word).map(Vec::as_slice)
    }

    pub fn contains(&self, word: &str) -> bool {
        self.words.contains_key(word)
    }

    pub fn len(&self) -> usize {
        self.words.len()
    }

    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// Every entry, sorted by word (a deterministic order for fitting).
    pub fn entries(&self) -> Vec<(&str, &[Phone])> {
        let mut all: Vec<(&str, &[Phone])> = self
            .words
            .iter()
            .map(|(w, p)| (w.as_str(), p.as_slice()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(b.0));
        all
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn cmudict_lines_parse_without_stress_keeping_the_first_pronunciation() {
        let text = ";;; comment\nread R EH1 D\nread(2) R IY1 D\n'cause K AH0 Z # informal\nHELLO HH AH0 L OW1\n";
        let lex = Lexicon::parse(text, "t.dict").unwrap();
        let say =
            |w: &str| -> Vec<&str> { lex.get(w).unwrap().iter().map(|p| p.symbol()).collect() };
        assert_eq!(say("read"), ["R", "EH", "D"]);
        assert_eq!(say("'cause"), ["K", "AH", "Z"]);
        assert_eq!(say("hello"), ["HH", "AH", "L", "OW"]);
        assert_eq!(lex.len(), 3);
        let e = Lexicon::parse("ok OW1 QQ\n", "t.dict")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("t.dict") && e.contains("line 1") && e.contains("QQ"),
            "{e}"
        );
    }
}
