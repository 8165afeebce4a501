//! Letter-to-sound rules learned from a lexicon, for the words it lacks.
//!
//! Each word's letters are aligned to its phonemes (a letter says nothing,
//! one phoneme, or two, as `x` says `K S`) by a few rounds of hard EM over
//! letter-to-output counts. Then every letter is predicted from its
//! neighbours: rules keyed by a window of letters around it, from the
//! letter alone up to three letters a side, and the most specific window
//! that has a rule decides. Only rules that change what a less specific
//! window predicts are kept, so the table stays small.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::lexicon::{Lexicon, Phone};
use crate::error::{CodecError, Result};

/// What one letter says: up to two phonemes.
type Output = Vec<Phone>;

/// Letters on each side of a window, from the least to the most specific.
const WINDOWS: [(usize, usize); 8] = [
    (0, 0),
    (1, 0),
    (0, 1),
    (1, 1),
    (2, 1),
    (1, 2),
    (2, 2),
    (3, 3),
];

/// Word boundary in windows.
const EDGE: char = '#';

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LetterToSound {
    /// Outputs by id: phoneme symbols joined by spaces ("" says nothing).
    outputs: Vec<String>,
    /// Rules: window text (`level:left|letter|right`) to output id.
    rules: HashMap<String, u16>,
}

fn window(letters: &[char], i: usize, (left, right): (usize, usize), level: usize) -> String {
    let at = |j: isize| -> char {
        usize::try_from(j)
            .ok()
            .and_then(|j| letters.get(j).copied())
            .unwrap_or(EDGE)
    };
    let i = i as isize;
    let l: String = (i - left as isize..i).map(at).collect();
    let r: String = (i + 1..=i + right as isize).map(at).collect();
    format!("{level}:{l}|{}|{r}", at(i))
}

fn letters_of(word: &str) -> Vec<char> {
    word.chars()
        .filter(|c| c.is_alphabetic() || *c == '\'')
        .flat_map(char::to_lowercase)
        .collect()
}

/// Aligns `letters` to `phones`: each letter takes 0, 1 or 2 phonemes,
/// maximising the summed log-probabilities in `score`.
fn align(
    letters: &[char],
    phones: &[Phone],
    score: &impl Fn(char, &[Phone]) -> f64,
) -> Option<Vec<Output>> {
    let (n, m) = (letters.len(), phones.len());
    let mut best = vec![vec![f64::NEG_INFINITY; m + 1]; n + 1];
    let mut back = vec![vec![0usize; m + 1]; n + 1];
    best[0][0] = 0.0;
    for i in 0..n {
        for j in 0..=m {
            if best[i][j] == f64::NEG_INFINITY {
                continue;
            }
            for take in 0..=2 {
                if j + take > m {
                    break;
                }
                let s = best[i][j] + score(letters[i], &phones[j..j + take]);
                if s > best[i + 1][j + take] {
                    best[i + 1][j + take] = s;
                    back[i + 1][j + take] = take;
                }
            }
        }
    }
    if best[n][m] == f64::NEG_INFINITY {
        return None;
    }
    let mut out = vec![Vec::new(); n];
    let mut j = m;
    for i in (1..=n).rev() {
        let take = back[i][j];
        out[i - 1] = phones[j - take..j].to_vec();
        j -= take;
    }
    Some(out)
}

impl LetterToSound {
    /// Learns the rules from every word of `lexicon`.
    pub fn fit(lexicon: &Lexicon) -> Result<LetterToSound> {
        let entries: Vec<(Vec<char>, &[Phone])> = lexicon
            .entries()
            .into_iter()
            .map(|(w, p)| (letters_of(w), p))
            .filter(|(l, p)| !l.is_empty() && l.len() * 2 >= p.len())
            .collect();
        if entries.is_empty() {
            return Err(CodecError::Input(
                "the lexicon has no words to learn from".into(),
            ));
        }
        // Start from "any output is as likely as any other", with a mild
        // preference for one phoneme a letter; then re-estimate from the
        // alignments it gives.
        let mut counts: HashMap<(char, Output), f64> = HashMap::new();
        let mut totals: HashMap<char, f64> = HashMap::new();
        let mut aligned: Vec<Vec<Output>> = Vec::new();
        for round in 0..4 {
            let score = |c: char, o: &[Phone]| -> f64 {
                if round == 0 {
                    return match o.len() {
                        1 => 0.0,
                        0 => -1.0,
                        _ => -2.0,
                    };
                }
                let n = counts.get(&(c, o.to_vec())).copied().unwrap_or(0.0);
                let t = totals.get(&c).copied().unwrap_or(0.0);
                ((n + 0.01) / (t + 1.0)).ln()
            };
            aligned = entries
                .iter()
                .map(|(l, p)| align(l, p, &score).unwrap_or_default())
                .collect();
            counts.clear();
            totals.clear();
            for ((letters, _), outs) in entries.iter().zip(&aligned) {
                for (c, o) in letters.iter().zip(outs) {
                    *counts.entry((*c, o.clone())).or_insert(0.0) += 1.0;
                    *totals.entry(*c).or_insert(0.0) += 1.0;
                }
            }
        }
        let mut ids: HashMap<Output, u16> = HashMap::new();
        let mut outputs: Vec<String> = Vec::new();
        let mut id_of = |o: &Output| -> u16 {
            *ids.entry(o.clone()).or_insert_with(|| {
                outputs.push(o.iter().map(|p| p.symbol()).collect::<Vec<_>>().join(" "));
                (outputs.len() - 1) as u16
            })
        };
        // Counts per window at every level.
        let mut tables: Vec<HashMap<String, HashMap<u16, u32>>> =
            vec![HashMap::new(); WINDOWS.len()];
        for ((letters, _), outs) in entries.iter().zip(&aligned) {
            if outs.len() != letters.len() {
                continue;
            }
            for (i, o) in outs.iter().enumerate() {
                let id = id_of(o);
                for (level, &w) in WINDOWS.iter().enumerate() {
                    *tables[level]
                        .entry(window(letters, i, w, level))
                        .or_default()
                        .entry(id)
                        .or_insert(0) += 1;
                }
            }
        }
        let mut lts = LetterToSound {
            outputs,
            rules: HashMap::new(),
        };
        // Keep a window's rule only where it changes the prediction of the
        // less specific ones (the table is pruned level by level).
        for (level, table) in tables.into_iter().enumerate() {
            let mut keys: Vec<String> = table.keys().cloned().collect();
            keys.sort();
            let mut kept = Vec::new();
            for key in keys {
                let Some(counts) = table.get(&key) else {
                    continue;
                };
                let Some((&best, _)) = counts
                    .iter()
                    .max_by_key(|(id, n)| (**n, std::cmp::Reverse(**id)))
                else {
                    continue;
                };
                let below = level
                    .checked_sub(1)
                    .and_then(|_| lts.predict_from_key(&key, level));
                if level == 0 || below != Some(best) {
                    kept.push((key, best));
                }
            }
            lts.rules.extend(kept);
        }
        Ok(lts)
    }

    /// The output the rules below `level` give for the letter of `key`.
    fn predict_from_key(&self, key: &str, level: usize) -> Option<u16> {
        // Rebuild the letters around the centre from the key itself.
        let body = key.split_once(':')?.1;
        let mut parts = body.split('|');
        let (left, centre, right) = (parts.next()?, parts.next()?, parts.next()?);
        let letters: Vec<char> = left
            .chars()
            .chain(centre.chars())
            .chain(right.chars())
            .collect();
        let i = left.chars().count();
        (0..level).rev().find_map(|l| {
            let (wl, wr) = WINDOWS[l];
            let (sl, sr) = WINDOWS[level];
            // Windows wider than the key's cannot be read from it.
            if wl > sl || wr > sr {
                return None;
            }
            self.rules.get(&window(&letters, i, (wl, wr), l)).copied()
        })
    }

    /// The phonemes the rules give for `word` (letters and apostrophes).
    pub fn predict(&self, word: &str) -> Vec<Phone> {
        let letters = letters_of(word);
        let mut out = Vec::new();
        for i in 0..letters.len() {
            let id = (0..WINDOWS.len())
                .rev()
                .find_map(|level| self.rules.get(&window(&letters, i, WINDOWS[level], level)));
            let Some(&id) = id else { continue };
            if let Some(symbols) = self.outputs.get(id as usize) {
                out.extend(symbols.split_whitespace().filter_map(Phone::parse));
            }
        }
        out
    }

    pub fn rules(&self) -> usize {
        self.rules.len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn symbols(p: &[Phone]) -> String {
        p.iter().map(|p| p.symbol()).collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn rules_learned_from_regular_words_read_a_new_one() {
        let text = "cat K AE1 T\nbat B AE1 T\nhat HH AE1 T\nmap M AE1 P\ntap T AE1 P\ncap K AE1 P\n\
                    pin P IH1 N\ntin T IH1 N\nbin B IH1 N\nship SH IH1 P\nshop SH AA1 P\nhop HH AA1 P\n\
                    box B AA1 K S\nfox F AA1 K S\ntax T AE1 K S\nmop M AA1 P\nbit B IH1 T\npit P IH1 T\n";
        let lex = Lexicon::parse(text, "t").unwrap();
        let lts = LetterToSound::fit(&lex).unwrap();
        assert_eq!(symbols(&lts.predict("mat")), "M AE T");
        assert_eq!(symbols(&lts.predict("shin")), "SH IH N");
        assert_eq!(symbols(&lts.predict("pox")), "P AA K S");
        // Every word it learned from reads back as the lexicon says.
        for (w, p) in lex.entries() {
            assert_eq!(symbols(&lts.predict(w)), symbols(p), "{w}");
        }
        let saved = serde_json::to_string(&lts).unwrap();
        let loaded: LetterToSound = serde_json::from_str(&saved).unwrap();
        assert_eq!(loaded, lts);
    }
}
