//! The evaluation's report: each task's results, the speech rows, and
//! the markdown `docs/starter-pack.md` holds.

use std::collections::BTreeMap;

use pipelines::tasks::TaskName;

use crate::world::Split;

/// One task's results.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TaskReport {
    pub task: TaskName,
    pub cases: usize,
    pub passed: usize,
    /// Per check: right, asked.
    pub checks: BTreeMap<&'static str, (usize, usize)>,
    /// The first few failures: the prompt and what the output showed.
    pub failures: Vec<(String, String)>,
}

impl TaskReport {
    pub fn accuracy(&self) -> f64 {
        self.passed as f64 / self.cases.max(1) as f64
    }
}

/// A pack's evaluation: every task's results and the speech rows.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub pack: String,
    pub per_task: usize,
    pub split: Split,
    pub seed: u64,
    pub tasks: Vec<TaskReport>,
    /// Word error rates of text-to-speech, the pack's beside the teacher's.
    pub speech: Vec<SpeechRow>,
    /// The generation seeds each sentence was spoken at.
    pub speech_seeds: u64,
    pub seconds: f64,
}

/// Word error rates of one set of sentences.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SpeechRow {
    /// `world` or `outside`.
    pub sentences: &'static str,
    /// Distinct sentences (each spoken at every seed).
    pub count: usize,
    pub pack_wer: f64,
    pub teacher_wer: f64,
    /// The teacher's reading coded and decoded by the pack's audio codec.
    pub codec_wer: f64,
    /// The codes the pack was trained to write (for word-marker packs, the
    /// words as its recipe's `word_reading` read them), decoded: the best
    /// the pack could sound.
    pub trained_wer: f64,
}

impl Report {
    /// The report as `docs/starter-pack.md` holds it.
    pub fn markdown(&self) -> String {
        let mut out = format!(
            "Pack `{}`: {} {} cases per task (world seed {}), judged by the readers of \
             `training/src/eval/read.rs`; {:.0} s. Checks of a shape's colour, class, size \
             and place count shapes; `edits: KIND` counts the edits of that kind done \
             whole.\n\n\
             | task | passed | accuracy | checks (right / asked) |\n|---|---:|---:|---|\n",
            self.pack,
            self.per_task,
            match self.split {
                Split::HeldOut => "held-out",
                Split::Train => "training-combination",
            },
            self.seed,
            self.seconds
        );
        for t in &self.tasks {
            let checks: Vec<String> = t
                .checks
                .iter()
                .map(|(name, (right, asked))| format!("{name} {right}/{asked}"))
                .collect();
            out.push_str(&format!(
                "| {} | {}/{} | {:.1}% | {} |\n",
                t.task,
                t.passed,
                t.cases,
                100.0 * t.accuracy(),
                checks.join(", ")
            ));
        }
        if !self.speech.is_empty() {
            let seeds = if self.speech_seeds > 1 {
                format!(
                    "Each sentence spoken at generation seeds 0 to {}; the pack's rate is \
                     over all of them.\n\n",
                    self.speech_seeds - 1
                )
            } else {
                String::new()
            };
            out.push_str(&format!(
                "\nSpeech, heard by pocketsphinx (US English model) with a grammar of the \
                 evaluated sentences searched in full (beams far wider than its live \
                 defaults, which heard short sentences from mel codes as nothing): word \
                 error rate of the pack's text-to-speech beside the teacher's (espeak-ng) on \
                 the same sentences; then the teacher's reading through the pack's audio \
                 codec, and the codes the pack was trained to write for them, decoded (for \
                 word-marker packs, the words as its recipe read them): the best the pack \
                 could sound.\n\n\
                 {}| sentences | count | pack WER | teacher WER | through the codec | as trained | difference (points) |\n\
                 |---|---:|---:|---:|---:|---:|---:|\n",
                seeds
            ));
            for r in &self.speech {
                out.push_str(&format!(
                    "| {} | {} | {:.1}% | {:.1}% | {:.1}% | {:.1}% | {:+.1} |\n",
                    r.sentences,
                    r.count,
                    100.0 * r.pack_wer,
                    100.0 * r.teacher_wer,
                    100.0 * r.codec_wer,
                    100.0 * r.trained_wer,
                    100.0 * (r.pack_wer - r.teacher_wer)
                ));
            }
        }
        let failures: Vec<&TaskReport> = self
            .tasks
            .iter()
            .filter(|t| !t.failures.is_empty())
            .collect();
        if !failures.is_empty() {
            out.push_str("\nFirst failures (asked → shown):\n\n");
            for t in failures {
                for (asked, shown) in &t.failures {
                    out.push_str(&format!("- {}: {asked} → {shown}\n", t.task));
                }
            }
        }
        out
    }
}
