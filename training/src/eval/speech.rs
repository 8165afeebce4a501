//! Speech judged by an independent recogniser: pocketsphinx (Debian's
//! `pocketsphinx` with its US English model) with a grammar of the
//! evaluated sentences, so the word error rate measures whether each
//! sentence is heard as itself rather than as one of the others.

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

use encoders::speech_text::normalize::{normalize, Spoken};
use modalities::audio::WavSample;
use modalities::Audio;

#[derive(Debug, thiserror::Error)]
pub enum RecogniserError {
    #[error(
        "{program}: {why} (the recogniser is pocketsphinx, installed by `scripts/setup-debian.sh` \
         or `apt-get install pocketsphinx pocketsphinx-en-us`)"
    )]
    Missing { program: String, why: String },
    #[error("{0}")]
    Failed(String),
}

/// The words a sentence is read as: normalised, lowercase, no punctuation.
pub fn words(sentence: &str) -> Vec<String> {
    normalize(sentence, |_| true)
        .into_iter()
        .filter_map(|s| match s {
            Spoken::Word(w) => Some(w),
            Spoken::Pause => None,
        })
        .collect()
}

/// Word-level edit distance over the reference's length.
pub fn word_error_rate(reference: &[String], heard: &[String]) -> f64 {
    let (n, m) = (reference.len(), heard.len());
    let mut row: Vec<usize> = (0..=m).collect();
    for i in 1..=n {
        let mut diagonal = row[0];
        row[0] = i;
        for j in 1..=m {
            let substitute = diagonal + usize::from(reference[i - 1] != heard[j - 1]);
            diagonal = row[j];
            row[j] = substitute.min(row[j] + 1).min(row[j - 1] + 1);
        }
    }
    row[m] as f64 / n.max(1) as f64
}

/// The dictionary of Debian's pocketsphinx-en-us (CMUdict).
const DICTIONARY: &str = "/usr/share/pocketsphinx/model/en-us/cmudict-en-us.dict";

/// World words that dictionary lacks, in its phone set, so that a
/// grammar may name them (pocketsphinx refuses a grammar with a word it
/// cannot pronounce).
const SUPPLEMENT: &[(&str, &str)] = &[("torus", "T AO R AH S")];

/// pocketsphinx, constrained to a set of sentences.
pub struct Recogniser {
    program: PathBuf,
    grammar: tempfile::NamedTempFile,
    /// The dictionary with [`SUPPLEMENT`], when the grammar needs it.
    dictionary: Option<tempfile::NamedTempFile>,
}

impl Recogniser {
    /// A recogniser that hears only `sentences` (each read as [`words`]).
    pub fn new(sentences: &[String]) -> Result<Recogniser, RecogniserError> {
        let program = PathBuf::from("pocketsphinx_continuous");
        let failed = |e: std::io::Error| RecogniserError::Failed(format!("grammar file: {e}"));
        let mut grammar = tempfile::Builder::new()
            .suffix(".jsgf")
            .tempfile()
            .map_err(failed)?;
        let mut alternatives: Vec<String> = sentences.iter().map(|s| words(s).join(" ")).collect();
        alternatives.retain(|a| !a.is_empty());
        alternatives.sort();
        alternatives.dedup();
        writeln!(
            grammar,
            "#JSGF V1.0;\ngrammar evaluated;\npublic <sentence> = ( {} );",
            alternatives.join(" | ")
        )
        .map_err(failed)?;
        let needed: Vec<&(&str, &str)> = SUPPLEMENT
            .iter()
            .filter(|(word, _)| {
                alternatives
                    .iter()
                    .any(|a| a.split(' ').any(|w| w == *word))
            })
            .collect();
        let dictionary = match (needed.is_empty(), std::fs::read_to_string(DICTIONARY)) {
            (false, Ok(mut text)) => {
                let mut file = tempfile::Builder::new()
                    .suffix(".dict")
                    .tempfile()
                    .map_err(failed)?;
                for (word, phones) in needed {
                    text.push_str(&format!("{word} {phones}\n"));
                }
                file.write_all(text.as_bytes()).map_err(failed)?;
                Some(file)
            }
            _ => None,
        };
        Ok(Recogniser {
            program,
            grammar,
            dictionary,
        })
    }

    /// What the recogniser hears in `audio`, as words.
    pub fn hear(&self, audio: &Audio) -> Result<Vec<String>, RecogniserError> {
        let failed = |why: String| RecogniserError::Failed(why);
        let wav = audio
            .with_channels(1)
            .resample(16_000)
            .and_then(|a| a.encode_wav(WavSample::Int16))
            .map_err(|e| failed(e.to_string()))?;
        let mut file = tempfile::Builder::new()
            .suffix(".wav")
            .tempfile()
            .map_err(|e| failed(e.to_string()))?;
        file.write_all(&wav).map_err(|e| failed(e.to_string()))?;
        // Its log says why it failed (an unknown word, a bad grammar); it
        // goes to a file so that stdout holds only the words heard.
        let log = tempfile::NamedTempFile::new().map_err(|e| failed(e.to_string()))?;
        let mut command = Command::new(&self.program);
        if let Some(dictionary) = &self.dictionary {
            command.arg("-dict").arg(dictionary.path());
        }
        // Beams far wider than the defaults (1e-48, 7e-29, 1e-48), which are
        // set for live speed: with them every grammar path of a short
        // sentence decoded from mel codes was pruned, and the teacher's
        // own "remove the square" through the codec was heard as nothing.
        // A grammar this small costs nothing to search in full.
        for (beam, width) in [("-beam", "1e-80"), ("-wbeam", "1e-60"), ("-pbeam", "1e-80")] {
            command.arg(beam).arg(width);
        }
        let out = command
            .arg("-infile")
            .arg(file.path())
            .arg("-jsgf")
            .arg(self.grammar.path())
            .arg("-logfn")
            .arg(log.path())
            .output()
            .map_err(|e| RecogniserError::Missing {
                program: self.program.display().to_string(),
                why: e.to_string(),
            })?;
        if !out.status.success() {
            let logged = std::fs::read_to_string(log.path()).unwrap_or_default();
            let errors: Vec<&str> = logged
                .lines()
                .filter(|l| l.starts_with("ERROR") || l.starts_with("FATAL"))
                .take(3)
                .collect();
            return Err(failed(format!(
                "{} exited with {}: {} {}",
                self.program.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
                errors.join("; ")
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_lowercase)
            .collect())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::speech::teacher::Teacher;

    #[test]
    fn word_error_rate_counts_edits_over_the_reference() {
        let w = |s: &str| -> Vec<String> { s.split(' ').map(str::to_string).collect() };
        assert_eq!(word_error_rate(&w("a b c d"), &w("a b c d")), 0.0);
        assert_eq!(word_error_rate(&w("a b c d"), &w("a x c")), 0.5);
        assert_eq!(word_error_rate(&w("a b"), &[]), 1.0);
        assert_eq!(
            words("Dr. Smith has 2 cats."),
            ["doctor", "smith", "has", "two", "cats"]
        );
    }

    /// Needs espeak-ng and pocketsphinx, which `scripts/setup-debian.sh` installs.
    #[test]
    fn the_recogniser_hears_the_teachers_sentences_as_themselves() {
        let sentences: Vec<String> = [
            "a large red circle at the top left on a blue background",
            "The birch canoe slid on the smooth planks.",
            "a small green square on the right on a white background",
            // Not in Debian's CMUdict: pocketsphinx refused the whole
            // grammar until the recogniser supplemented its dictionary.
            "a flat torus",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let recogniser = Recogniser::new(&sentences).unwrap();
        let teacher = Teacher::default();
        for s in &sentences {
            let heard = recogniser.hear(&teacher.speak(s).unwrap()).unwrap();
            assert_eq!(word_error_rate(&words(s), &heard), 0.0, "{s}: {heard:?}");
        }
        let silence = Audio::silence(16_000, 1, 1.0);
        let heard = recogniser.hear(&silence).unwrap();
        assert!(
            word_error_rate(&words(&sentences[0]), &heard) > 0.5,
            "{heard:?}"
        );
    }

    /// Needs espeak-ng and pocketsphinx. Issue 8: short sentences decoded
    /// from the starter pack's mel codes were heard as nothing, the
    /// teacher's reading included, until the recogniser's beams widened.
    #[test]
    fn issue_8_a_short_sentence_through_the_mel_codec_is_heard() {
        let sentences: Vec<String> = [
            "remove the square",
            "remove the circle",
            "remove the triangle",
            "a flat cone",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let recogniser = Recogniser::new(&sentences).unwrap();
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/packs/default/audio");
        let config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap())
                .unwrap();
        let codec = encoders::mel::MelCodec::load(&dir, &config).unwrap();
        let spoken = Teacher::default().speak(&sentences[0]).unwrap();
        let decoded = codec
            .decode_audio(&codec.encode_audio(&spoken).unwrap())
            .unwrap();
        let heard = recogniser.hear(&decoded).unwrap();
        assert_eq!(words(&sentences[0]), heard);
    }
}
