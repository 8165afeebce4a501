//! Where each modality's codes sit in the backbone's sequence: token ranges,
//! markers, and the conversions between codes and tokens.

use std::ops::Range;
use std::sync::Arc;

use encoders::codes::{AudioCodes, ImageCodes};
use encoders::mesh::MeshFrame;
use encoders::speech_text::Said;
use encoders::{Codec, Codes};
use modalities::{Audio, Image, Media};

use super::manifest::Slots;
use crate::error::{PipelineError, Result};

/// Image codes in the vocabulary: `begin`, rows of codes, `end`.
#[derive(Clone)]
pub struct ImageLayout {
    pub codec: Arc<dyn Codec>,
    pub first: u32,
    pub codes: u32,
    pub begin: u32,
    pub end: u32,
    /// Pixels per code along a side.
    pub downsample: usize,
    /// The only grid the model makes, if it was trained on one.
    pub fixed_grid: Option<[usize; 2]>,
    /// Tokens opening each row (the last also opens later rows); empty
    /// when the model reads rows without markers.
    pub row_markers: Vec<u32>,
}

impl ImageLayout {
    pub fn range(&self) -> Range<u32> {
        self.first..self.first + self.codes
    }

    /// An image's codes at `grid` (rows, columns): resized to the grid's
    /// pixel size first.
    pub fn encode(&self, image: &Image, grid: [usize; 2]) -> Result<ImageCodes> {
        let (h, w) = (grid[0] * self.downsample, grid[1] * self.downsample);
        let resized = image
            .resized(w as u32, h as u32)
            .map_err(encoders::CodecError::from)?;
        match self.codec.encode(&Media::Image(resized))? {
            Codes::Image(codes) => Ok(codes),
            other => Err(PipelineError::Request(format!(
                "the image codec returned {} codes",
                other.kind()
            ))),
        }
    }

    pub fn decode(&self, codes: &ImageCodes) -> Result<Image> {
        match self.codec.decode(&Codes::Image(codes.clone()))? {
            Media::Image(image) => Ok(image),
            other => Err(PipelineError::Request(format!(
                "the image codec returned {}",
                other.kind()
            ))),
        }
    }

    /// The marker opening row `row`, if the model uses them.
    pub fn row_marker(&self, row: usize) -> Option<u32> {
        row_marker(&self.row_markers, row)
    }

    /// `begin`, the codes row by row (each after its row marker), `end`.
    pub fn tokens(&self, codes: &ImageCodes) -> Vec<u32> {
        image_block_tokens(self.begin, self.first, self.end, &self.row_markers, codes)
    }

    /// Tokens of one block of `grid`, markers included.
    pub fn block_len(&self, grid: [usize; 2]) -> usize {
        let markers = if self.row_markers.is_empty() {
            0
        } else {
            grid[0]
        };
        grid[0] * grid[1] + markers + 2
    }

    /// The grid from the tokens inside a block (without `begin` and
    /// `end`; row markers are skipped).
    pub fn grid(&self, tokens: &[u32], grid: [usize; 2]) -> Result<ImageCodes> {
        let [h, w] = grid;
        let tokens: Vec<u32> = tokens
            .iter()
            .copied()
            .filter(|t| !self.row_markers.contains(t))
            .collect();
        if tokens.len() != h * w {
            return Err(PipelineError::Request(format!(
                "an image block of {} tokens is not {h} x {w} codes",
                tokens.len()
            )));
        }
        let codes = self.codes_of(&tokens)?;
        Ok(ImageCodes {
            height: h,
            width: w,
            codes: codes.chunks(w.max(1)).map(<[u32]>::to_vec).collect(),
        })
    }

    fn codes_of(&self, tokens: &[u32]) -> Result<Vec<u32>> {
        tokens
            .iter()
            .map(|&t| {
                self.range()
                    .contains(&t)
                    .then(|| t - self.first)
                    .ok_or_else(|| {
                        PipelineError::Request(format!("token {t} is not an image code"))
                    })
            })
            .collect()
    }
}

/// The marker opening row `row` (the last marker opens any later rows).
fn row_marker(row_markers: &[u32], row: usize) -> Option<u32> {
    let last = row_markers.len().checked_sub(1)?;
    row_markers.get(row.min(last)).copied()
}

/// How an image block sits in a sequence: `begin`, each row's codes (as
/// tokens from `first`) after the row's marker if there are markers, then
/// `end`. Generation and the training data both write blocks with it.
pub fn image_block_tokens(
    begin: u32,
    first: u32,
    end: u32,
    row_markers: &[u32],
    codes: &ImageCodes,
) -> Vec<u32> {
    let mut tokens = vec![begin];
    for (r, row) in codes.codes.iter().enumerate() {
        tokens.extend(row_marker(row_markers, r));
        tokens.extend(row.iter().map(|&c| first + c));
    }
    tokens.push(end);
    tokens
}

/// Audio codes in the vocabulary, frame by frame: one frame holds every
/// level's codes for the span of one coarsest code, in time order (for
/// SNAC's strides [4, 2, 1]: l0, l1, l2, l2, l1, l2, l2, as Orpheus writes
/// them).
#[derive(Clone)]
pub struct AudioLayout {
    pub codec: Arc<dyn Codec>,
    pub first: u32,
    /// Codebook size.
    pub codes: u32,
    pub slots: Slots,
    pub begin: u32,
    pub end: u32,
    pub sample_rate: u32,
    /// Samples per finest-level code.
    pub hop: usize,
    pub strides: Vec<usize>,
    /// The level and the index within the frame of each frame position.
    pub frame: Vec<(usize, usize)>,
    /// Tokens that open each word's frames (word `k` by marker `k` modulo
    /// their number); empty when the model speaks without them.
    pub word_markers: Vec<u32>,
    /// Each phone's token (indexed by the phone's number) when each word's
    /// marker is followed by the word's phonemes; empty otherwise.
    pub phone_tokens: Vec<u32>,
    /// `phone_tokens`, sorted, to tell word openings from audio codes.
    word_phonemes: Vec<u32>,
    /// Whether each phoneme opens its own frames (rather than all of a
    /// word's phonemes following its marker).
    pub phoneme_frames: bool,
    /// The codes (as tokens) the codec decodes as silence: a model may
    /// write them only where a phrase ends (see [`Opening`]).
    pub silent: Vec<u32>,
}

/// One opening of a prompt's speech (see [`AudioLayout::word_plan`]): the
/// tokens that open it, and whether its frames end a phrase (the last
/// opening before a pause or the end, where the teacher falls silent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opening {
    pub tokens: Vec<u32>,
    pub ends_phrase: bool,
}

impl AudioLayout {
    pub fn new(
        codec: Arc<dyn Codec>,
        first: u32,
        slots: Slots,
        markers: (u32, u32),
        (sample_rate, hop, strides): (u32, usize, Vec<usize>),
    ) -> AudioLayout {
        let coarsest = strides.iter().copied().max().unwrap_or(1);
        let mut frame: Vec<(usize, usize)> = strides
            .iter()
            .enumerate()
            .flat_map(|(level, &s)| (0..coarsest / s.max(1)).map(move |j| (level, j)))
            .collect();
        frame.sort_by_key(|&(level, j)| (j * strides[level], level));
        AudioLayout {
            codes: codec.vocab_size() as u32,
            codec,
            first,
            slots,
            begin: markers.0,
            end: markers.1,
            sample_rate,
            hop,
            strides,
            frame,
            word_markers: Vec::new(),
            phone_tokens: Vec::new(),
            word_phonemes: Vec::new(),
            phoneme_frames: false,
            silent: Vec::new(),
        }
    }

    /// Interleaves each word's phonemes after its marker, or with
    /// `each_before_frames` each phoneme before its own frames:
    /// `phone_tokens[i]` is the token of phone `i`.
    pub fn interleave_phonemes(&mut self, phone_tokens: Vec<u32>, each_before_frames: bool) {
        self.phoneme_frames = each_before_frames;
        let mut sorted = phone_tokens.clone();
        sorted.sort_unstable();
        self.word_phonemes = sorted;
        self.phone_tokens = phone_tokens;
    }

    /// The openings of a prompt's speech, in order, each followed by
    /// frames: per word, its marker, then its phonemes when the layout
    /// interleaves them; with `phoneme_frames` one opening per phoneme
    /// (the word's marker before its first). Empty without word markers.
    pub fn word_plan(&self, said: &[Said]) -> Vec<Opening> {
        if self.word_markers.is_empty() {
            return Vec::new();
        }
        let words: Vec<(&Vec<_>, bool)> = said
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s {
                // A word's frames end a phrase before a pause or the end.
                Said::Word(_, phones) => {
                    Some((phones, !matches!(said.get(i + 1), Some(Said::Word(..)))))
                }
                Said::Pause => None,
            })
            .collect();
        let mut plan = Vec::new();
        for (k, (phones, ends_phrase)) in words.into_iter().enumerate() {
            let marker = self.word_markers[k % self.word_markers.len()];
            // Every phone has a token: `interleave_phonemes` took one per phone.
            let tokens = phones
                .iter()
                .filter_map(|p| self.phone_tokens.get(usize::from(p.0)).copied());
            let mut openings: Vec<Vec<u32>> = if self.phoneme_frames {
                tokens.map(|t| vec![t]).collect()
            } else {
                vec![tokens.collect()]
            };
            match openings.first_mut() {
                Some(first) => first.insert(0, marker),
                None => openings.push(vec![marker]),
            }
            let last = openings.len() - 1;
            plan.extend(openings.into_iter().enumerate().map(|(i, tokens)| Opening {
                tokens,
                ends_phrase: ends_phrase && i == last,
            }));
        }
        plan
    }

    /// The tokens whose probabilities count as the script's next opening
    /// when the model moves on (`Allowed::Folded`): every marker and
    /// phoneme, so the model decides when the next word (or phoneme)
    /// starts, the script which. Without the fold a model that gave the end
    /// of a word to another opening than the script's was masked and held
    /// the sound: packs trained on connected readings spoke unheard
    /// sentences to the length limit. Empty without word markers.
    pub fn openings(&self) -> Vec<u32> {
        if self.word_markers.is_empty() {
            return Vec::new();
        }
        self.word_markers
            .iter()
            .chain(&self.phone_tokens)
            .copied()
            .collect()
    }

    /// Whether `token` opens a word (a marker or an interleaved phoneme)
    /// rather than coding audio.
    pub fn is_word_token(&self, token: u32) -> bool {
        self.word_markers.contains(&token) || self.word_phonemes.binary_search(&token).is_ok()
    }

    /// Tokens in one frame.
    pub fn frame_len(&self) -> usize {
        self.frame.len()
    }

    /// Audio samples one frame decodes to.
    pub fn samples_per_frame(&self) -> usize {
        self.hop * self.strides.iter().copied().max().unwrap_or(1)
    }

    fn slot(&self, position: usize) -> u32 {
        match self.slots {
            Slots::Level => self.frame[position].0 as u32,
            Slots::Position => position as u32,
        }
    }

    /// The tokens the code at frame `position` may take.
    pub fn position_range(&self, position: usize) -> Range<u32> {
        let start = self.first + self.slot(position) * self.codes;
        start..start + self.codes
    }

    /// Every token of the layout.
    pub fn range(&self) -> Range<u32> {
        let slots = match self.slots {
            Slots::Level => self.strides.len(),
            Slots::Position => self.frame.len(),
        } as u32;
        self.first..self.first + slots * self.codes
    }

    pub fn encode(&self, audio: &Audio) -> Result<AudioCodes> {
        match self.codec.encode(&Media::Audio(audio.clone()))? {
            Codes::Audio(codes) => Ok(codes),
            other => Err(PipelineError::Request(format!(
                "the audio codec returned {} codes",
                other.kind()
            ))),
        }
    }

    pub fn decode(&self, codes: &AudioCodes) -> Result<Audio> {
        match self.codec.decode(&Codes::Audio(codes.clone()))? {
            Media::Audio(audio) => Ok(audio),
            other => Err(PipelineError::Request(format!(
                "the audio codec returned {}",
                other.kind()
            ))),
        }
    }

    /// `begin`, the frames, `end`.
    pub fn tokens(&self, codes: &AudioCodes) -> Vec<u32> {
        let coarsest = self.strides.iter().copied().max().unwrap_or(1);
        let frames = codes
            .codes
            .first()
            .map_or(0, |l| l.len() * self.strides[0] / coarsest);
        let mut tokens = vec![self.begin];
        for f in 0..frames {
            for (p, &(level, j)) in self.frame.iter().enumerate() {
                let per_frame = coarsest / self.strides[level];
                let code = codes.codes[level][f * per_frame + j];
                tokens.push(self.position_range(p).start + code);
            }
        }
        tokens.push(self.end);
        tokens
    }

    /// The codes of whole frames of tokens (`begin` and `end` excluded;
    /// word openings are skipped).
    pub fn codes(&self, tokens: &[u32]) -> Result<AudioCodes> {
        let tokens: Vec<u32> = tokens
            .iter()
            .copied()
            .filter(|&t| !self.is_word_token(t))
            .collect();
        let n = self.frame_len();
        if tokens.is_empty() || !tokens.len().is_multiple_of(n) {
            return Err(PipelineError::Request(format!(
                "{} audio tokens are not whole frames of {n}",
                tokens.len()
            )));
        }
        let mut levels = vec![Vec::new(); self.strides.len()];
        for frame in tokens.chunks_exact(n) {
            for (p, &t) in frame.iter().enumerate() {
                let range = self.position_range(p);
                if !range.contains(&t) {
                    return Err(PipelineError::Request(format!(
                        "token {t} is not an audio code for frame position {p}"
                    )));
                }
                levels[self.frame[p].0].push(t - range.start);
            }
        }
        Ok(AudioCodes {
            sample_rate: self.sample_rate,
            codes: levels,
            start: 0,
        })
    }
}

/// Meshes: coordinate tokens in the vocabulary, or OBJ text.
pub enum MeshLayout {
    Vocab {
        bins: u32,
        frame: MeshFrame,
        first: u32,
        begin: u32,
        end: u32,
    },
    Text {
        bins: u32,
        frame: MeshFrame,
    },
}

impl MeshLayout {
    pub fn bins(&self) -> u32 {
        match self {
            MeshLayout::Vocab { bins, .. } | MeshLayout::Text { bins, .. } => *bins,
        }
    }
}

/// Video: markers around one image block per frame.
pub struct VideoLayout {
    pub begin: u32,
    pub end: u32,
}

/// An image layout over a codec that codes nothing, for tests of what
/// the layout alone decides.
#[cfg(test)]
pub(crate) fn test_image_layout(first: u32, codes: u32, row_markers: Vec<u32>) -> ImageLayout {
    struct NoImageCodec(usize);
    impl Codec for NoImageCodec {
        fn kind(&self) -> modalities::Kind {
            modalities::Kind::Image
        }
        fn vocab_size(&self) -> usize {
            self.0
        }
        fn structure(&self) -> encoders::Structure {
            encoders::Structure::Image { downsample: 4 }
        }
        fn encode(&self, _: &Media) -> encoders::Result<Codes> {
            Err(encoders::CodecError::Input(
                "a test layout codes nothing".into(),
            ))
        }
        fn decode(&self, _: &Codes) -> encoders::Result<Media> {
            Err(encoders::CodecError::Input(
                "a test layout codes nothing".into(),
            ))
        }
    }
    ImageLayout {
        codec: Arc::new(NoImageCodec(codes as usize)),
        first,
        codes,
        begin: 1,
        end: 2,
        downsample: 4,
        fixed_grid: None,
        row_markers,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn row_markers_open_each_row_and_are_skipped_when_read_back() {
        let codes = ImageCodes {
            height: 3,
            width: 2,
            codes: vec![vec![0, 1], vec![2, 3], vec![4, 5]],
        };
        // Two markers: the second also opens the third row.
        let layout = test_image_layout(10, 6, vec![20, 21]);
        let tokens = layout.tokens(&codes);
        assert_eq!(tokens, vec![1, 20, 10, 11, 21, 12, 13, 21, 14, 15, 2]);
        assert_eq!(tokens.len(), layout.block_len([3, 2]));
        let inside = &tokens[1..tokens.len() - 1];
        assert_eq!(layout.grid(inside, [3, 2]).unwrap(), codes);
        let plain = test_image_layout(10, 6, vec![]);
        assert_eq!(plain.tokens(&codes).len(), plain.block_len([3, 2]));
        assert_eq!(plain.block_len([3, 2]), 8);
        let e = plain.grid(&[10, 11, 12], [3, 2]).unwrap_err().to_string();
        assert!(e.contains("not 3 x 2"), "{e}");
    }

    struct FakeAudio;
    impl Codec for FakeAudio {
        fn kind(&self) -> modalities::Kind {
            modalities::Kind::Audio
        }
        fn vocab_size(&self) -> usize {
            10
        }
        fn structure(&self) -> encoders::Structure {
            encoders::Structure::Text
        }
        fn encode(&self, _: &Media) -> encoders::Result<Codes> {
            unreachable!()
        }
        fn decode(&self, _: &Codes) -> encoders::Result<Media> {
            unreachable!()
        }
    }

    fn snac_layout(slots: Slots) -> AudioLayout {
        AudioLayout::new(
            Arc::new(FakeAudio),
            100,
            slots,
            (1, 2),
            (24000, 512, vec![4, 2, 1]),
        )
    }

    #[test]
    fn snac_frames_follow_the_orpheus_order() {
        let layout = snac_layout(Slots::Position);
        assert_eq!(
            layout.frame,
            vec![(0, 0), (1, 0), (2, 0), (2, 1), (1, 1), (2, 2), (2, 3)]
        );
        assert_eq!(layout.samples_per_frame(), 2048);
        assert_eq!(layout.range(), 100..170);
        assert_eq!(layout.position_range(3), 130..140);
    }

    #[test]
    fn audio_tokens_round_trip_in_both_slot_layouts() {
        let codes = AudioCodes {
            sample_rate: 24000,
            codes: vec![vec![1, 2], vec![3, 4, 5, 6], vec![7, 8, 9, 0, 1, 2, 3, 4]],
            start: 0,
        };
        for slots in [Slots::Level, Slots::Position] {
            let layout = snac_layout(slots);
            let tokens = layout.tokens(&codes);
            assert_eq!(tokens.len(), 2 + 14);
            assert_eq!((tokens[0], tokens[15]), (1, 2));
            assert_eq!(layout.codes(&tokens[1..15]).unwrap(), codes);
            assert!(layout.codes(&tokens[1..14]).is_err(), "a partial frame");
        }
        let level = snac_layout(Slots::Level).tokens(&codes);
        assert_eq!(&level[1..8], &[101, 113, 127, 128, 114, 129, 120]);
    }

    #[test]
    fn word_plans_open_words_or_each_phoneme() {
        use encoders::speech_text::lexicon::Phone;
        let said = vec![
            Said::Word("to".into(), vec![Phone(30), Phone(33)]),
            Said::Pause,
            Said::Word("a".into(), vec![Phone(2)]),
        ];
        let mut layout = snac_layout(Slots::Level);
        assert!(layout.word_plan(&said).is_empty(), "no markers, no plan");
        layout.word_markers = vec![60, 61];
        let tokens = |plan: Vec<Opening>| plan.into_iter().map(|o| o.tokens).collect::<Vec<_>>();
        assert_eq!(tokens(layout.word_plan(&said)), vec![vec![60], vec![61]]);
        let phones: Vec<u32> = (0..39).map(|i| 200 + i).collect();
        layout.interleave_phonemes(phones.clone(), false);
        assert_eq!(
            tokens(layout.word_plan(&said)),
            vec![vec![60, 230, 233], vec![61, 202]]
        );
        layout.interleave_phonemes(phones, true);
        let plan = layout.word_plan(&said);
        assert_eq!(
            tokens(plan.clone()),
            vec![vec![60, 230], vec![233], vec![61, 202]],
            "each phoneme opens its own frames, the word's marker before its first"
        );
        let ends: Vec<bool> = plan.iter().map(|o| o.ends_phrase).collect();
        assert_eq!(
            ends,
            vec![false, true, true],
            "a word's last phoneme ends a phrase before a pause and at the end"
        );
        assert!(layout.is_word_token(233) && !layout.is_word_token(101));
    }

    #[test]
    fn every_marker_and_phoneme_counts_as_the_next_opening() {
        let mut layout = snac_layout(Slots::Level);
        assert!(layout.openings().is_empty(), "no markers, nothing folds");
        layout.word_markers = vec![60, 61];
        assert_eq!(layout.openings(), vec![60, 61], "markers alone");
        layout.interleave_phonemes(vec![200, 201], false);
        assert_eq!(
            layout.openings(),
            vec![60, 61, 200, 201],
            "a word's phonemes after its marker fold too, not only a phoneme per opening"
        );
        layout.interleave_phonemes(vec![200, 201], true);
        assert_eq!(layout.openings(), vec![60, 61, 200, 201]);
    }
}
