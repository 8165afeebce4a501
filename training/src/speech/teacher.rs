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
        let failed = |why: String| TeacherError::Failed {
            program: self.name(),
            text: text.to_string(),
            why,
        };
        let file = tempfile::Builder::new()
            .suffix(".wav")
            .tempfile()
            .map_err(|e| failed(e.to_string()))?;
        let mut child = Command::new(&self.program)
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
                .write_all(text.as_bytes())
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
}
