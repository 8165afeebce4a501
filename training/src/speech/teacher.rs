//! The teacher voice: espeak-ng's `en-us+klatt`, read through its library
//! while the training data is built (installed from Debian by
//! `scripts/setup-debian.sh`; never needed at run time).

use std::ops::Range;

use modalities::Audio;

use super::espeak::{self, Reading};

#[derive(Debug, thiserror::Error)]
pub enum TeacherError {
    #[error(
        "{library}: {why} (the teacher voice is espeak-ng, installed for training by \
         `scripts/setup-debian.sh` or `apt-get install espeak-ng`)"
    )]
    Missing { library: String, why: String },
    #[error("espeak-ng failed on {text:?}: {why}")]
    Failed { text: String, why: String },
}

/// The teacher: espeak-ng and one of its voices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Teacher {
    pub voice: String,
}

impl Default for Teacher {
    fn default() -> Self {
        Teacher {
            voice: "en-us+klatt".into(),
        }
    }
}

impl Teacher {
    /// Whether espeak-ng's library loads; an error that says how to install it.
    pub fn check(&self) -> Result<(), TeacherError> {
        espeak::check().map_err(|why| TeacherError::Missing {
            library: espeak::LIBRARY.into(),
            why,
        })
    }

    /// `text` read aloud (the samples `espeak-ng -w` writes).
    pub fn speak(&self, text: &str) -> Result<Audio, TeacherError> {
        Ok(self.read(text, text, false)?.audio)
    }

    /// Each of `words` read aloud, one reading per word, trimmed of
    /// silence, with the samples its phonemes start at: one reading with a
    /// long break between words, cut at its long silences (a word's own
    /// stop closures are far shorter); where that does not give one piece
    /// per word, each word read on its own.
    pub fn speak_words(&self, words: &[String]) -> Result<Vec<Reading>, TeacherError> {
        let ssml = format!(
            "<speak>{}</speak>",
            words
                .iter()
                .map(|w| escape_xml(w))
                .collect::<Vec<_>>()
                .join(&format!("<break time=\"{BREAK_MS}ms\"/>"))
        );
        let reading = self.read(&ssml, &words.join(" "), true)?;
        if let Some(pieces) = split_at_breaks(&reading.audio, words.len()) {
            return Ok(pieces.into_iter().map(|r| cut(&reading, r)).collect());
        }
        words
            .iter()
            .map(|w| {
                let alone = self.read(w, w, false)?;
                Ok(cut(
                    &alone,
                    trimmed(&alone.audio, 0..alone.audio.samples.len()),
                ))
            })
            .collect()
    }

    /// `words` read as one connected sentence (a comma after each word
    /// `pause_after` marks), and the sample each word starts at, where
    /// espeak-ng's word events say (the first word at 0; None for a word
    /// it read together with the one before, as "on the").
    pub fn speak_connected(
        &self,
        words: &[String],
        pause_after: &[bool],
    ) -> Result<(Reading, Vec<Option<usize>>), TeacherError> {
        let (mut text, mut positions) = (String::new(), Vec::new());
        for (k, word) in words.iter().enumerate() {
            if k > 0 {
                text.push(' ');
            }
            // espeak-ng counts characters from 1.
            positions.push(text.chars().count() + 1);
            text.push_str(word);
            if pause_after.get(k).copied().unwrap_or(false) && k + 1 < words.len() {
                text.push(',');
            }
        }
        let reading = self.read(&text, &text, false)?;
        let mut starts: Vec<Option<usize>> = positions
            .iter()
            .map(|p| {
                reading
                    .words
                    .iter()
                    .find(|(at, _)| at == p)
                    .map(|(_, s)| *s)
            })
            .collect();
        if let Some(first) = starts.first_mut() {
            *first = Some(0);
        }
        Ok((reading, starts))
    }

    fn read(&self, input: &str, text: &str, ssml: bool) -> Result<Reading, TeacherError> {
        espeak::read(&self.voice, input, ssml).map_err(|why| match self.check() {
            Err(missing) => missing,
            Ok(()) => TeacherError::Failed {
                text: text.to_string(),
                why,
            },
        })
    }
}

/// The part of `reading` in `range`: its samples, and the phonemes that
/// start there, counted from the range's start.
fn cut(reading: &Reading, range: Range<usize>) -> Reading {
    Reading {
        phonemes: reading
            .phonemes
            .iter()
            .filter(|(_, at)| range.contains(at))
            .map(|(name, at)| (name.clone(), at - range.start))
            .collect(),
        words: reading
            .words
            .iter()
            .filter(|(_, at)| range.contains(at))
            .map(|&(word, at)| (word, at - range.start))
            .collect(),
        audio: Audio {
            samples: reading.audio.samples[range].to_vec(),
            ..reading.audio.clone()
        },
    }
}

/// The break read between words, and the shortest silence taken for one:
/// espeak-ng's own pauses inside a word stay under 100 ms.
const BREAK_MS: u32 = 300;
const MIN_BREAK_S: f64 = 0.15;
/// Windows of 5 ms whose peak is under this are silent.
const SILENT_PEAK: f32 = 0.01;

fn escape_xml(word: &str) -> String {
    word.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&apos;")
        .replace('"', "&quot;")
}

/// Whether each 5 ms window of `samples` (mono, at `sample_rate`) is
/// silent, and the window size.
fn silent_windows(samples: &[f32], sample_rate: u32) -> (Vec<bool>, usize) {
    let window = (sample_rate as usize / 200).max(1);
    let silent = samples
        .chunks(window)
        .map(|w| w.iter().all(|s| s.abs() < SILENT_PEAK))
        .collect();
    (silent, window)
}

/// The part of `range` of `audio` without its leading and trailing
/// silence (10 ms kept each side).
fn trimmed(audio: &Audio, range: Range<usize>) -> Range<usize> {
    let part = &audio.samples[range.clone()];
    let (silent, window) = silent_windows(part, audio.sample_rate);
    let first = silent.iter().position(|s| !s).unwrap_or(0);
    let last = silent.iter().rposition(|s| !s).map_or(0, |l| l + 1);
    let from = first.saturating_sub(2) * window;
    let to = ((last + 2) * window).min(part.len()).max(from);
    range.start + from..range.start + to
}

/// `audio` cut at the middle of its silences of at least [`MIN_BREAK_S`]
/// between sounds, if there are exactly `words - 1` of them: each piece's
/// samples, trimmed.
fn split_at_breaks(audio: &Audio, words: usize) -> Option<Vec<Range<usize>>> {
    if audio.channels != 1 || words == 0 {
        return None;
    }
    let (silent, window) = silent_windows(&audio.samples, audio.sample_rate);
    let min_run = (MIN_BREAK_S * 200.0).ceil() as usize;
    let first = silent.iter().position(|s| !s)?;
    let last = silent.iter().rposition(|s| !s)?;
    let mut cuts = Vec::new();
    let mut run_start = None;
    for (i, &s) in silent.iter().enumerate().take(last).skip(first) {
        match (s, run_start) {
            (true, None) => run_start = Some(i),
            (false, Some(start)) => {
                if i - start >= min_run {
                    cuts.push((start + i) / 2 * window);
                }
                run_start = None;
            }
            _ => {}
        }
    }
    if cuts.len() + 1 != words {
        return None;
    }
    let bounds: Vec<usize> = std::iter::once(0)
        .chain(cuts)
        .chain(std::iter::once(audio.samples.len()))
        .collect();
    Some(
        bounds
            .windows(2)
            .map(|b| trimmed(audio, b[0]..b[1]))
            .collect(),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Needs espeak-ng.
    #[test]
    fn an_unknown_voice_is_named_in_the_error() {
        let t = Teacher {
            voice: "no-such-voice".into(),
        };
        let e = t.speak("hello").unwrap_err().to_string();
        assert!(
            e.contains("no-such-voice") && e.contains("\"hello\""),
            "{e}"
        );
        // The next reading with a real voice is unaffected.
        assert!(Teacher::default().speak("hello").is_ok());
    }

    /// Needs espeak-ng, which `scripts/setup-debian.sh` installs.
    #[test]
    fn the_teacher_reads_a_sentence_at_a_speaking_pace() {
        let t = Teacher::default();
        t.check().unwrap();
        let audio = t.speak("-v a large red circle at the top left").unwrap();
        let seconds = audio.duration_s();
        assert!((1.0..5.0).contains(&seconds), "{seconds} s");
        let peak = audio.samples.iter().fold(0f32, |m, s| m.max(s.abs()));
        assert!(peak > 0.05, "not silent: {peak}");
    }

    /// Needs espeak-ng.
    #[test]
    fn the_teacher_reads_word_by_word_one_piece_per_word() {
        let t = Teacher::default();
        let words: Vec<String> = "a large red circle at the top left"
            .split(' ')
            .map(str::to_string)
            .collect();
        let pieces = t.speak_words(&words).unwrap();
        assert_eq!(pieces.len(), words.len());
        let seconds: Vec<f64> = pieces.iter().map(|p| p.audio.duration_s()).collect();
        // "a" is the shortest word, "circle" longer than "red"; no piece
        // holds a break.
        assert!(
            seconds.iter().all(|&s| (0.03..0.8).contains(&s)),
            "{seconds:?}"
        );
        assert!(
            seconds[3] > seconds[2] && seconds[0] < seconds[1],
            "{seconds:?}"
        );
        // Each piece has its own phonemes, from its start.
        let circle: Vec<&str> = pieces[3].phonemes.iter().map(|p| p.0.as_str()).collect();
        assert_eq!(circle, ["s", "3:", "k", "@L"]);
        assert!(pieces[3].phonemes[0].1 < 2000, "{:?}", pieces[3].phonemes);
        // Each piece read alone has about the same length as its cut.
        let audio = t.speak("circle").unwrap();
        let range = trimmed(&audio, 0..audio.samples.len());
        let alone = range.len() as f64 / f64::from(audio.sample_rate);
        assert!(
            (alone - seconds[3]).abs() < 0.25,
            "{alone} vs {}",
            seconds[3]
        );
    }

    /// Needs espeak-ng.
    #[test]
    fn a_connected_reading_is_the_sentence_read_once_with_each_words_start() {
        let t = Teacher::default();
        let words: Vec<String> = "move the circle to the top and a flat torus"
            .split(' ')
            .map(str::to_string)
            .collect();
        let (reading, starts) = t.speak_connected(&words, &[false; 10]).unwrap();
        assert_eq!(reading.audio, t.speak(&words.join(" ")).unwrap());
        let starts: Vec<usize> = starts.into_iter().map(Option::unwrap).collect();
        assert_eq!(starts[0], 0);
        assert!(starts.windows(2).all(|w| w[0] < w[1]), "{starts:?}");
        // "circle" starts where its first phoneme does, give or take 50 ms.
        let s = reading.phonemes.iter().find(|p| p.0 == "s").unwrap().1;
        assert!(starts[2].abs_diff(s) < 1100, "{starts:?} {s}");
        // A pause after "top" is read as a comma: later words start later.
        let mut pause = [false; 10];
        pause[5] = true;
        let (paused, later) = t.speak_connected(&words, &pause).unwrap();
        assert!(paused.audio.samples.len() > reading.audio.samples.len());
        assert!(
            later[6] > Some(starts[6]) && later[5] == Some(starts[5]),
            "{later:?}"
        );
        // espeak-ng reads "on the" as one word: "the" has no start of its own.
        let words: Vec<String> = ["a", "circle", "on", "the", "right"]
            .map(String::from)
            .into();
        let (_, starts) = t.speak_connected(&words, &[false; 5]).unwrap();
        assert!(starts[2].is_some() && starts[3].is_none() && starts[4].is_some());
    }

    #[test]
    fn a_reading_is_cut_only_at_breaks_that_give_one_piece_per_word() {
        let tone = |s: f64| (0..(s * 1000.0) as usize).map(|i| (i as f32 * 0.3).sin() * 0.5);
        let quiet = |s: f64| std::iter::repeat_n(0f32, (s * 1000.0) as usize);
        // Sound 0.2 s, a 0.05 s closure, 0.1 s, a 0.3 s break, 0.2 s.
        let samples: Vec<f32> = quiet(0.1)
            .chain(tone(0.2))
            .chain(quiet(0.05))
            .chain(tone(0.1))
            .chain(quiet(0.3))
            .chain(tone(0.2))
            .chain(quiet(0.1))
            .collect();
        let audio = Audio {
            sample_rate: 1000,
            channels: 1,
            samples,
        };
        let pieces = split_at_breaks(&audio, 2).unwrap();
        let lens: Vec<usize> = pieces.iter().map(|p| p.len()).collect();
        assert!(
            (350..=400).contains(&lens[0]) && (200..=240).contains(&lens[1]),
            "{lens:?}"
        );
        assert!(
            split_at_breaks(&audio, 3).is_none(),
            "the closure is no break"
        );
    }
}
