//! The teacher voice: espeak-ng's `en-us+klatt`, run as a program while
//! the training data is built (installed from Debian by
//! `scripts/setup-debian.sh`; never needed at run time).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use modalities::{Audio, Limits};

#[derive(Debug, thiserror::Error)]
pub enum TeacherError {
    #[error(
        "{program}: {why} (the teacher voice is espeak-ng, installed for training by \
         `scripts/setup-debian.sh` or `apt-get install espeak-ng`)"
    )]
    Missing { program: String, why: String },
    #[error("{program} failed on {text:?}: {why}")]
    Failed {
        program: String,
        text: String,
        why: String,
    },
}

/// A speech synthesizer program and its voice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Teacher {
    pub program: PathBuf,
    pub voice: String,
}

impl Default for Teacher {
    fn default() -> Self {
        Teacher {
            program: PathBuf::from("espeak-ng"),
            voice: "en-us+klatt".into(),
        }
    }
}

impl Teacher {
    fn name(&self) -> String {
        self.program.display().to_string()
    }

    /// Whether the program runs; an error that says how to install it.
    pub fn check(&self) -> Result<(), TeacherError> {
        match Command::new(&self.program).arg("--version").output() {
            Ok(o) if o.status.success() => Ok(()),
            Ok(o) => Err(TeacherError::Missing {
                program: self.name(),
                why: String::from_utf8_lossy(&o.stderr).trim().to_string(),
            }),
            Err(e) => Err(TeacherError::Missing {
                program: self.name(),
                why: e.to_string(),
            }),
        }
    }

    /// `text` read aloud. The text goes in on stdin, so nothing in it is
    /// taken for an option; the WAV goes to a file (on stdout its header
    /// cannot say its length).
    pub fn speak(&self, text: &str) -> Result<Audio, TeacherError> {
        self.run(text, text, false)
    }

    /// Each of `words` read aloud, one piece of audio per word, trimmed of
    /// silence: one reading with a long break between words, cut at its
    /// long silences (a word's own stop closures are far shorter); where
    /// that does not give one piece per word, each word read on its own.
    pub fn speak_words(&self, words: &[String]) -> Result<Vec<Audio>, TeacherError> {
        let ssml = format!(
            "<speak>{}</speak>",
            words
                .iter()
                .map(|w| escape_xml(w))
                .collect::<Vec<_>>()
                .join(&format!("<break time=\"{BREAK_MS}ms\"/>"))
        );
        let reading = self.run(&ssml, &words.join(" "), true)?;
        if let Some(pieces) = split_at_breaks(&reading, words.len()) {
            return Ok(pieces);
        }
        words.iter().map(|w| Ok(trimmed(&self.speak(w)?))).collect()
    }

    fn run(&self, input: &str, text: &str, ssml: bool) -> Result<Audio, TeacherError> {
        let failed = |why: String| TeacherError::Failed {
            program: self.name(),
            text: text.to_string(),
            why,
        };
        let file = tempfile::Builder::new()
            .suffix(".wav")
            .tempfile()
            .map_err(|e| failed(e.to_string()))?;
        let mut command = Command::new(&self.program);
        if ssml {
            command.arg("-m");
        }
        let mut child = command
            .args(["-v", &self.voice, "-w"])
            .arg(file.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| TeacherError::Missing {
                program: self.name(),
                why: e.to_string(),
            })?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(input.as_bytes())
                .map_err(|e| failed(e.to_string()))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| failed(e.to_string()))?;
        if !out.status.success() {
            return Err(failed(
                String::from_utf8_lossy(&out.stderr).trim().to_string(),
            ));
        }
        Audio::read(file.path(), &Limits::default()).map_err(|e| failed(e.to_string()))
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

/// Whether each 5 ms window of `audio` (mono) is silent, and the window size.
fn silent_windows(audio: &Audio) -> (Vec<bool>, usize) {
    let window = (audio.sample_rate as usize / 200).max(1);
    let silent = audio
        .samples
        .chunks(window)
        .map(|w| w.iter().all(|s| s.abs() < SILENT_PEAK))
        .collect();
    (silent, window)
}

/// `audio` without its leading and trailing silence (10 ms kept each side).
fn trimmed(audio: &Audio) -> Audio {
    let (silent, window) = silent_windows(audio);
    let first = silent.iter().position(|s| !s).unwrap_or(0);
    let last = silent.iter().rposition(|s| !s).map_or(0, |l| l + 1);
    let from = first.saturating_sub(2) * window;
    let to = ((last + 2) * window).min(audio.samples.len()).max(from);
    Audio {
        samples: audio.samples[from..to].to_vec(),
        ..audio.clone()
    }
}

/// `audio` cut at the middle of its silences of at least [`MIN_BREAK_S`]
/// between sounds, if there are exactly `words - 1` of them; each piece
/// trimmed.
fn split_at_breaks(audio: &Audio, words: usize) -> Option<Vec<Audio>> {
    if audio.channels != 1 || words == 0 {
        return None;
    }
    let (silent, window) = silent_windows(audio);
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
            .map(|b| {
                trimmed(&Audio {
                    samples: audio.samples[b[0]..b[1]].to_vec(),
                    ..audio.clone()
                })
            })
            .collect(),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_program_says_how_to_install_the_teacher() {
        let t = Teacher {
            program: "/nonexistent/espeak-ng".into(),
            ..Teacher::default()
        };
        let e = t.check().unwrap_err().to_string();
        assert!(e.contains("apt-get install espeak-ng"), "{e}");
        assert!(t.speak("hello").is_err());
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
        let seconds: Vec<f64> = pieces.iter().map(Audio::duration_s).collect();
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
        // Each piece read alone has about the same length as its cut.
        let alone = trimmed(&t.speak("circle").unwrap()).duration_s();
        assert!(
            (alone - seconds[3]).abs() < 0.25,
            "{alone} vs {}",
            seconds[3]
        );
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
        let lens: Vec<usize> = pieces.iter().map(|p| p.samples.len()).collect();
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
