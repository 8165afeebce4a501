//! Text-to-speech as it is generated: audio frames are decoded in chunks
//! while the backbone still writes later ones, so the first audio arrives
//! after a chunk's worth of frames instead of after the whole utterance.
//!
//! A chunk is decoded with `context` frames on each side (those that exist)
//! and only its own samples are kept, so the codec's convolutions see their
//! neighbours across chunk edges, as Orpheus' streaming decoder does.

use modalities::Audio;

use crate::error::{PipelineError, Result};
use crate::generate::{Event, FinishReason, RequestHandle};
use crate::pack::AudioLayout;

/// How audio is cut while streaming.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamWindow {
    /// Frames per emitted chunk.
    pub chunk: usize,
    /// Frames of context decoded on each side of a chunk.
    pub context: usize,
}

impl Default for StreamWindow {
    fn default() -> Self {
        // SNAC 24 kHz: 8 frames are 0.68 s of audio, 2 frames of context
        // 0.17 s a side (decoding costs 1.5x the frames it emits).
        StreamWindow {
            chunk: 8,
            context: 2,
        }
    }
}

/// Audio chunks of one utterance, in order; dropping it cancels the
/// generation.
pub struct SpeechStream {
    handle: RequestHandle,
    layout: AudioLayout,
    window: StreamWindow,
    /// Frame tokens so far (markers left out).
    tokens: Vec<u32>,
    /// Frames already emitted as audio.
    emitted: usize,
    finished: bool,
    done: bool,
    pub seed: u64,
}

impl SpeechStream {
    pub(crate) fn new(
        handle: RequestHandle,
        layout: AudioLayout,
        window: StreamWindow,
        seed: u64,
    ) -> SpeechStream {
        SpeechStream {
            handle,
            layout,
            window: StreamWindow {
                chunk: window.chunk.max(1),
                context: window.context,
            },
            tokens: Vec::new(),
            emitted: 0,
            finished: false,
            done: false,
            seed,
        }
    }

    pub fn sample_rate(&self) -> u32 {
        self.layout.sample_rate
    }

    fn frames(&self) -> usize {
        self.tokens.len() / self.layout.frame_len()
    }

    /// Decodes frames `start..end` with context and keeps their samples.
    fn decode(&self, start: usize, end: usize) -> Result<Audio> {
        let n = self.layout.frame_len();
        let from = start.saturating_sub(self.window.context);
        let to = (end + self.window.context).min(self.frames());
        let mut codes = self.layout.codes(&self.tokens[from * n..to * n])?;
        codes.start = from;
        let audio = self.layout.decode(&codes)?;
        // Samples per frame as decoded (the codec may pad or trim its ends).
        let per_frame = audio.samples.len() / audio.channels.max(1) as usize / (to - from);
        let channels = audio.channels.max(1) as usize;
        let keep = (start - from) * per_frame * channels..(end - from) * per_frame * channels;
        let samples = audio.samples[keep].to_vec();
        Ok(Audio { samples, ..audio })
    }

    /// Takes the generation's next event: false once it has ended.
    fn pull(&mut self) -> Result<()> {
        match self.handle.recv() {
            Some(Event::Token { id, .. }) => {
                if id == self.layout.end {
                    self.finished = true;
                } else if id != self.layout.begin && !self.layout.is_word_token(id) {
                    self.tokens.push(id);
                }
                Ok(())
            }
            Some(Event::Finished { reason, .. }) => {
                self.finished = true;
                match reason {
                    FinishReason::Stop => Ok(()),
                    FinishReason::Cancelled => Err(PipelineError::Cancelled),
                    FinishReason::Length => Err(PipelineError::Request(
                        "text-to-speech: the audio did not complete within its length".into(),
                    )),
                }
            }
            Some(Event::Error(e)) => Err(PipelineError::Request(e)),
            None => Err(PipelineError::Request(
                "the engine stopped mid-request".into(),
            )),
        }
    }
}

impl Iterator for SpeechStream {
    type Item = Result<Audio>;

    fn next(&mut self) -> Option<Result<Audio>> {
        if self.done {
            return None;
        }
        loop {
            let ready = self.emitted + self.window.chunk;
            if ready + self.window.context <= self.frames() {
                let chunk = self.decode(self.emitted, ready);
                self.emitted = ready;
                return Some(chunk);
            }
            if self.finished {
                self.done = true;
                if self.emitted < self.frames() {
                    let rest = self.decode(self.emitted, self.frames());
                    self.emitted = self.frames();
                    return Some(rest);
                }
                return None;
            }
            if let Err(e) = self.pull() {
                self.done = true;
                return Some(Err(e));
            }
        }
    }
}
