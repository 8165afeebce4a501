//! Where each lexicon phone of a word starts in the teacher's reading of
//! it. The teacher reads the word its own way (espeak-ng's phonemes, which
//! may merge two of the lexicon's, "@L" for AH L, or drop one), so its
//! phoneme events are mapped to the lexicon's phones and the two
//! sequences aligned by edit distance.

use encoders::speech_text::lexicon::Phone;

/// The lexicon phones an espeak-ng (English) phoneme stands for; empty for
/// one with no counterpart (a glottal stop), which the alignment then
/// gives to its neighbours.
fn lexicon_phones(espeak: &str) -> Vec<Phone> {
    let symbols: &[&str] = match espeak {
        "@" | "@2" | "@5" | "@-" | "a#" | "V" | "A#" => &["AH"],
        "@L" => &["AH", "L"],
        "3" | "3:" | "@r" => &["ER"],
        "a" | "aa" | "a2" => &["AE"],
        "A:" | "0" | "A" => &["AA"],
        "A@" | "A:r" => &["AA", "R"],
        "aI" => &["AY"],
        "aI@" | "aI3" => &["AY", "ER"],
        "aU" => &["AW"],
        "aU@" => &["AW", "ER"],
        "E" | "E2" | "E3" | "e" => &["EH"],
        "e@" => &["EH", "R"],
        "eI" => &["EY"],
        "i" | "i:" => &["IY"],
        "i@" | "i@3" | "I@" => &["IH", "R"],
        "I" | "I2" | "I#" | "I2#" => &["IH"],
        "O" | "O:" | "O2" | "02" => &["AO"],
        "O@" | "o@" => &["AO", "R"],
        "OI" => &["OY"],
        "oU" | "oU#" | "o" => &["OW"],
        "U" => &["UH"],
        "U@" => &["UH", "R"],
        "u:" | "u" => &["UW"],
        "j" => &["Y"],
        "h" => &["HH"],
        "N" => &["NG"],
        "S" => &["SH"],
        "Z" => &["ZH"],
        "T" => &["TH"],
        "D" => &["DH"],
        "tS" => &["CH"],
        "dZ" => &["JH"],
        "t#" | "t2" => &["T"],
        "d#" => &["D"],
        "n-" => &["N"],
        "l-" => &["L"],
        "m-" => &["M"],
        "r-" => &["R"],
        "w#" | "hw" => &["W"],
        "?" => &[],
        other => {
            // Consonants spelled as the lexicon spells them ("k", "s").
            return Phone::parse(other).into_iter().collect();
        }
    };
    symbols.iter().filter_map(|s| Phone::parse(s)).collect()
}

fn is_vowel(p: Phone) -> bool {
    let s = p.symbol();
    matches!(s.as_bytes().first(), Some(b'A' | b'E' | b'I' | b'O' | b'U'))
}

/// The sample each of `phones` starts at, given the teacher's phoneme
/// events (name, start sample) for the same word and the reading's length.
/// Starts never decrease; the first phone starts at the first event.
pub fn phone_starts(phones: &[Phone], events: &[(String, usize)], len: usize) -> Vec<usize> {
    // The teacher's phonemes as lexicon phones, each with its span of
    // samples (a merged phoneme's span split evenly among its phones).
    let mut said: Vec<(Phone, usize)> = Vec::new();
    for (i, (name, start)) in events.iter().enumerate() {
        let end = events.get(i + 1).map_or(len, |e| e.1).max(*start);
        let parts = lexicon_phones(name);
        let n = parts.len().max(1);
        for (j, p) in parts.into_iter().enumerate() {
            said.push((p, start + (end - start) * j / n));
        }
    }
    if phones.is_empty() {
        return Vec::new();
    }
    if said.is_empty() {
        return (0..phones.len()).map(|i| len * i / phones.len()).collect();
    }
    // Edit distance: a phone against a said phone costs 0 when the same,
    // 1 when both vowels or both consonants, 2 otherwise; either left out
    // costs 1.5 (so a vowel stands in for a vowel rather than both dropping).
    let (n, m) = (phones.len(), said.len());
    let sub = |a: Phone, b: Phone| -> f32 {
        if a == b {
            0.0
        } else if is_vowel(a) == is_vowel(b) {
            1.0
        } else {
            2.0
        }
    };
    const SKIP: f32 = 1.5;
    let mut cost = vec![vec![0f32; m + 1]; n + 1];
    for (i, row) in cost.iter_mut().enumerate() {
        row[0] = i as f32 * SKIP;
    }
    for (j, c) in cost[0].iter_mut().enumerate() {
        *c = j as f32 * SKIP;
    }
    for i in 1..=n {
        for j in 1..=m {
            cost[i][j] = (cost[i - 1][j - 1] + sub(phones[i - 1], said[j - 1].0))
                .min(cost[i - 1][j] + SKIP)
                .min(cost[i][j - 1] + SKIP);
        }
    }
    // Back through the table: each phone takes the start of the said phone
    // it pairs with, or none when the teacher did not say it.
    let mut start: Vec<Option<usize>> = vec![None; n];
    let (mut i, mut j) = (n, m);
    while i > 0 && j > 0 {
        let here = cost[i][j];
        if here == cost[i - 1][j - 1] + sub(phones[i - 1], said[j - 1].0) {
            start[i - 1] = Some(said[j - 1].1);
            i -= 1;
            j -= 1;
        } else if here == cost[i - 1][j] + SKIP {
            i -= 1;
        } else {
            j -= 1;
        }
    }
    // A phone the teacher left out starts halfway between its neighbours.
    let mut out = Vec::with_capacity(n);
    for k in 0..n {
        let at = match start[k] {
            Some(s) => s,
            None => {
                let before = out.last().copied().unwrap_or(said[0].1);
                let after = start[k + 1..]
                    .iter()
                    .flatten()
                    .next()
                    .copied()
                    .unwrap_or(len);
                (before + after.max(before)) / 2
            }
        };
        out.push(at.max(out.last().copied().unwrap_or(0)));
    }
    out[0] = said[0].1.min(out[0]);
    out
}

/// Each phone's first frame, from its start in samples: frames of
/// `samples_per_frame` samples, `offset` samples of silence before the
/// reading, `frames` in all. The first phone opens at frame 0 (the
/// silence before it is its own), and every phone gets a frame at least.
/// None when there are fewer frames than phones.
pub fn phone_frames(
    starts: &[usize],
    offset: usize,
    samples_per_frame: f64,
    frames: usize,
) -> Option<Vec<usize>> {
    let n = starts.len();
    if n > frames {
        return None;
    }
    let mut out = Vec::with_capacity(n);
    for (i, &s) in starts.iter().enumerate() {
        let at = ((s + offset) as f64 / samples_per_frame).round() as usize;
        let lowest = out.last().map_or(0, |&l: &usize| l + 1);
        let at = if i == 0 { 0 } else { at.max(lowest) };
        out.push(at.min(frames - (n - i)));
    }
    Some(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn phones(s: &str) -> Vec<Phone> {
        s.split(' ').map(|p| Phone::parse(p).unwrap()).collect()
    }

    fn events(s: &[(&str, usize)]) -> Vec<(String, usize)> {
        s.iter().map(|(n, at)| (n.to_string(), *at)).collect()
    }

    #[test]
    fn a_merged_phoneme_is_split_among_the_phones_it_stands_for() {
        // "circle": the teacher says s 3: k @L; the lexicon S ER K AH L.
        let e = events(&[("s", 100), ("3:", 300), ("k", 600), ("@L", 700)]);
        let starts = phone_starts(&phones("S ER K AH L"), &e, 1100);
        assert_eq!(starts, vec![100, 300, 600, 700, 900]);
    }

    #[test]
    fn a_phone_the_teacher_leaves_out_starts_between_its_neighbours() {
        // "and" read as a n (the teacher drops the d).
        let e = events(&[("a", 0), ("n", 400)]);
        assert_eq!(phone_starts(&phones("AE N D"), &e, 1000), vec![0, 400, 700]);
        // A phoneme the lexicon lacks gives its time to the phone before.
        let e = events(&[("b", 0), ("?", 200), ("a", 300)]);
        assert_eq!(phone_starts(&phones("B AE"), &e, 900), vec![0, 300]);
        // Another vowel stands in for the lexicon's.
        let e = events(&[("h", 0), ("@", 200), ("l", 400), ("oU", 500)]);
        assert_eq!(
            phone_starts(&phones("HH EH L OW"), &e, 900),
            vec![0, 200, 400, 500]
        );
    }

    #[test]
    fn every_phone_gets_a_frame_and_the_first_opens_the_word() {
        // Starts 0, 10, 12 samples with frames of 10 and 30 samples of
        // silence before: 3, 4, 4.2 -> 0 (the first), 4, then at least 5.
        assert_eq!(phone_frames(&[0, 10, 12], 30, 10.0, 8), Some(vec![0, 4, 5]));
        // Late phones are pulled back so each still has a frame.
        assert_eq!(phone_frames(&[0, 90, 95], 0, 10.0, 8), Some(vec![0, 6, 7]));
        assert_eq!(phone_frames(&[0, 1, 2], 0, 10.0, 2), None);
    }
}
