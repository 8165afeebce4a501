//! The structures generated media blocks must follow, as token constraints:
//! fixed scripts (image grids, video frames, edits that keep codes), whole
//! SNAC frames, and mesh faces whose three vertices span a triangle.

use std::ops::Range;

use crate::generate::{Allowed, TokenConstraint};
use crate::pack::layout::{ImageLayout, Opening};

/// A fixed sequence of steps: each step's allowed set, then done. Image
/// blocks (`begin`, h x w codes, `end`), edits (kept positions forced) and
/// videos (frames of image blocks) are scripts.
pub(crate) struct Script {
    steps: Vec<Allowed>,
    at: usize,
}

impl Script {
    pub(crate) fn new(steps: Vec<Allowed>) -> Script {
        Script { steps, at: 0 }
    }
}

impl TokenConstraint for Script {
    fn allowed(&mut self) -> Allowed {
        self.steps.get(self.at).cloned().unwrap_or(Allowed::Done)
    }
    fn accept(&mut self, _token: u32) {
        self.at += 1;
    }
}

/// Any token in the given ranges, without end: a text answer that cannot
/// emit media codes or markers (it ends at end-of-sequence or a stop).
pub(crate) struct TextOnly(pub(crate) Vec<Range<u32>>);

impl TokenConstraint for TextOnly {
    fn allowed(&mut self) -> Allowed {
        Allowed::Only(self.0.clone())
    }
    fn accept(&mut self, _token: u32) {}
}

/// The steps of one image block of rows `width` codes wide: `begin`, then
/// each row (its marker first, where the layout has them) with a code per
/// position (the kept token where one is given, any image code
/// elsewhere), then `end`.
pub(crate) fn image_steps(
    layout: &ImageLayout,
    width: usize,
    kept: &[Option<u32>],
) -> Vec<Allowed> {
    let mut steps = vec![Allowed::token(layout.begin)];
    for (r, row) in kept.chunks(width.max(1)).enumerate() {
        steps.extend(layout.row_marker(r).map(Allowed::token));
        steps.extend(row.iter().map(|k| match k {
            Some(t) => Allowed::token(*t),
            None => Allowed::Only(vec![layout.range()]),
        }));
    }
    steps.push(Allowed::token(layout.end));
    steps
}

/// `begin`, then whole frames (each position from its own range), then
/// `end` at a frame boundary: after at least one frame, and at the latest
/// after `max_frames`. A model trained with word markers opens each word's
/// frames with its opening (its marker, and its phonemes where the layout
/// interleaves them): `words` lists the openings in order, one per word
/// of the prompt. The first comes right after `begin`, each later one at
/// a frame boundary once its word has a frame, every token of an opening
/// is forced once it has begun, and `end` comes only after the last word.
pub(crate) struct AudioFrames {
    pub(crate) begin: u32,
    pub(crate) end: u32,
    pub(crate) positions: Vec<Range<u32>>,
    pub(crate) max_frames: usize,
    pub(crate) words: Vec<Opening>,
    started: bool,
    /// Code tokens accepted so far (openings left out).
    codes: usize,
    /// Words whose opening has begun.
    said: usize,
    /// Tokens of the current opening still to come.
    pending: usize,
    /// Whether the current word has no frame yet.
    after_opening: bool,
    ended: bool,
    /// Tokens whose probability counts as the next opening's (or the
    /// end's) where one may come: see [`AudioFrames::folding`].
    fold: Vec<u32>,
    /// Codes kept out of openings that do not end a phrase: see
    /// [`AudioFrames::silencing`].
    silent: Vec<u32>,
}

impl AudioFrames {
    pub(crate) fn new(
        begin: u32,
        end: u32,
        positions: Vec<Range<u32>>,
        max_frames: usize,
        words: Vec<Opening>,
    ) -> Self {
        AudioFrames {
            begin,
            end,
            positions,
            max_frames: max_frames.max(1),
            words: words.into_iter().filter(|w| !w.tokens.is_empty()).collect(),
            started: false,
            codes: 0,
            said: 0,
            pending: 0,
            after_opening: false,
            ended: false,
            fold: Vec::new(),
            silent: Vec::new(),
        }
    }

    /// Counts the model's probability of any of `tokens` (every phoneme
    /// and word marker) as that of the opening the script has next: the
    /// model decides when the next phoneme starts, the script which it is.
    /// A model that expects another phoneme there would otherwise see its
    /// "move on" masked and hold the sound.
    pub(crate) fn folding(mut self, tokens: Vec<u32>) -> Self {
        self.fold = tokens;
        self
    }

    /// Keeps the codes of `silent` (sorted or not) out of every opening
    /// but those that end a phrase. The teacher is silent only there (stop
    /// closures are quiet, not silent), so a model that fell silent
    /// mid-sentence took it for the end: with the end masked until the
    /// last word, it wrote silence, or one code over and over, to the
    /// length limit.
    pub(crate) fn silencing(mut self, mut silent: Vec<u32>) -> Self {
        silent.sort_unstable();
        silent.dedup();
        self.silent = silent;
        self
    }

    fn next_opening(&self) -> Option<u32> {
        self.words.get(self.said).map(|w| w.tokens[0])
    }

    /// The tokens of frame position `p`: without the silent codes inside
    /// a phrase.
    fn position(&self, p: usize) -> Vec<Range<u32>> {
        let range = self.positions[p].clone();
        let in_phrase = match self.said.checked_sub(1) {
            Some(k) => !self.words[k].ends_phrase,
            None => false,
        };
        if !in_phrase || self.silent.is_empty() {
            return vec![range];
        }
        let mut out = Vec::new();
        let mut from = range.start;
        for &t in self.silent.iter().filter(|t| range.contains(t)) {
            if from < t {
                out.push(from..t);
            }
            from = t + 1;
        }
        if from < range.end {
            out.push(from..range.end);
        }
        // A codec of nothing but silence still needs its frames.
        if out.is_empty() {
            out.push(range);
        }
        out
    }
}

impl TokenConstraint for AudioFrames {
    fn allowed(&mut self) -> Allowed {
        if self.ended {
            return Allowed::Done;
        }
        if !self.started {
            return Allowed::token(self.begin);
        }
        if self.pending > 0 {
            let opening = &self.words[self.said - 1].tokens;
            return Allowed::token(opening[opening.len() - self.pending]);
        }
        if let (0, Some(first)) = (self.said, self.next_opening()) {
            return Allowed::token(first);
        }
        let n = self.positions.len();
        let (frames, in_frame) = (self.codes / n, self.codes % n);
        if in_frame != 0 {
            return Allowed::Only(self.position(in_frame));
        }
        if frames >= self.max_frames {
            return Allowed::token(self.end);
        }
        let mut allowed = self.position(0);
        let next = match self.next_opening() {
            _ if self.after_opening => None,
            Some(next) => Some(next),
            None if frames > 0 => Some(self.end),
            None => None,
        };
        let Some(into) = next else {
            return Allowed::Only(allowed);
        };
        allowed.push(into..into + 1);
        if self.fold.is_empty() {
            return Allowed::Only(allowed);
        }
        Allowed::Folded {
            only: allowed,
            into,
            fold: self.fold.clone(),
        }
    }
    fn accept(&mut self, token: u32) {
        let at_boundary = self.codes.is_multiple_of(self.positions.len().max(1));
        if !self.started {
            self.started = true;
        } else if self.pending > 0 {
            self.pending -= 1;
        } else if token == self.end {
            self.ended = true;
        } else if at_boundary && self.next_opening() == Some(token) {
            self.pending = self.words[self.said].tokens.len() - 1;
            self.said += 1;
            self.after_opening = true;
        } else {
            self.codes += 1;
            self.after_opening = false;
        }
    }
}

/// Mesh faces as coordinate tokens: `begin`, `header` size tokens (a
/// stretched frame's), faces of nine tokens (z, y, x of three vertices),
/// `end` at a face boundary after at least one face.
/// Within a face the vertices must span a triangle, so every face survives
/// decoding: the last free coordinates exclude the values that would
/// repeat a vertex or make the three collinear.
pub(crate) struct MeshFaces {
    pub(crate) begin: u32,
    pub(crate) end: u32,
    pub(crate) first: u32,
    pub(crate) bins: u32,
    pub(crate) max_faces: usize,
    /// Size tokens still to come before the faces.
    header: usize,
    face: Vec<u32>,
    faces: usize,
    started: bool,
    ended: bool,
}

impl MeshFaces {
    pub(crate) fn new(
        begin: u32,
        end: u32,
        first: u32,
        bins: u32,
        max_faces: usize,
        header: usize,
    ) -> Self {
        MeshFaces {
            begin,
            end,
            first,
            bins,
            max_faces: max_faces.max(1),
            header,
            face: Vec::new(),
            faces: 0,
            started: false,
            ended: false,
        }
    }

    fn codes(&self) -> Range<u32> {
        self.first..self.first + self.bins
    }

    /// The coordinate values allowed at the next position of the face.
    fn coordinates(&self) -> Vec<u32> {
        let all = || (0..self.bins).collect::<Vec<u32>>();
        let f = &self.face;
        let vertex = |i: usize| [f[3 * i], f[3 * i + 1], f[3 * i + 2]];
        match f.len() {
            // The second vertex's x: not the first vertex again.
            5 if f[3..5] == f[0..2] => all().into_iter().filter(|&x| x != f[2]).collect(),
            // The third vertex's y: when the first two differ only in x and
            // the third shares their z, this y would leave no x off their line.
            7 => {
                let (a, b) = (vertex(0), vertex(1));
                if a[0] == b[0] && a[1] == b[1] && f[6] == a[0] {
                    all().into_iter().filter(|&y| y != a[1]).collect()
                } else {
                    all()
                }
            }
            // The third vertex's x: off the line through the first two.
            8 => {
                let (a, b) = (vertex(0), vertex(1));
                all()
                    .into_iter()
                    .filter(|&x| !collinear(a, b, [f[6], f[7], x]))
                    .collect()
            }
            _ => all(),
        }
    }
}

fn collinear(a: [u32; 3], b: [u32; 3], c: [u32; 3]) -> bool {
    let d = |p: [u32; 3], q: [u32; 3]| {
        [
            i64::from(q[0]) - i64::from(p[0]),
            i64::from(q[1]) - i64::from(p[1]),
            i64::from(q[2]) - i64::from(p[2]),
        ]
    };
    let (u, v) = (d(a, b), d(a, c));
    u[1] * v[2] - u[2] * v[1] == 0
        && u[2] * v[0] - u[0] * v[2] == 0
        && u[0] * v[1] - u[1] * v[0] == 0
}

impl TokenConstraint for MeshFaces {
    fn allowed(&mut self) -> Allowed {
        if self.ended {
            return Allowed::Done;
        }
        if !self.started {
            return Allowed::token(self.begin);
        }
        if self.header > 0 {
            return Allowed::Only(vec![self.codes()]);
        }
        if self.face.is_empty() {
            if self.faces >= self.max_faces {
                return Allowed::token(self.end);
            }
            if self.faces > 0 {
                return Allowed::Only(vec![self.codes(), self.end..self.end + 1]);
            }
            return Allowed::Only(vec![self.codes()]);
        }
        Allowed::tokens(
            self.coordinates()
                .into_iter()
                .map(|c| self.first + c)
                .collect(),
        )
    }

    fn accept(&mut self, token: u32) {
        if !self.started {
            self.started = true;
        } else if self.header > 0 {
            self.header -= 1;
        } else if self.face.is_empty() && token == self.end {
            self.ended = true;
        } else {
            self.face.push(token - self.first);
            if self.face.len() == 9 {
                self.face.clear();
                self.faces += 1;
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Openings of these tokens, only the last ending a phrase.
    fn plan(words: Vec<Vec<u32>>) -> Vec<Opening> {
        let last = words.len().saturating_sub(1);
        words
            .into_iter()
            .enumerate()
            .map(|(i, tokens)| Opening {
                tokens,
                ends_phrase: i == last,
            })
            .collect()
    }

    /// Drives a constraint with a chooser that picks from the allowed set.
    fn drive(c: &mut dyn TokenConstraint, mut pick: impl FnMut(&[Range<u32>]) -> u32) -> Vec<u32> {
        let mut out = Vec::new();
        for _ in 0..10_000 {
            match c.allowed() {
                Allowed::Done => return out,
                Allowed::Any => panic!("unconstrained"),
                Allowed::Only(ranges) | Allowed::Folded { only: ranges, .. } => {
                    assert!(!ranges.is_empty() && ranges.iter().all(|r| !r.is_empty()));
                    let t = pick(&ranges);
                    c.accept(t);
                    out.push(t);
                }
            }
        }
        panic!("never done");
    }

    #[test]
    fn audio_frames_end_only_at_frame_boundaries_and_at_the_cap() {
        let positions = vec![10..12, 12..14, 14..16];
        // Always the last allowed token: the end marker whenever allowed.
        let mut c = AudioFrames::new(1, 2, positions.clone(), 5, vec![]);
        let out = drive(&mut c, |r| r.last().unwrap().end - 1);
        assert_eq!(out, vec![1, 11, 13, 15, 2], "ends after the first frame");
        // Always the first: codes until the cap of five frames.
        let mut c = AudioFrames::new(1, 2, positions, 5, vec![]);
        let out = drive(&mut c, |r| r[0].start);
        assert_eq!(out.len(), 1 + 5 * 3 + 1);
        assert_eq!(out.last(), Some(&2));
    }

    #[test]
    fn word_markers_open_every_word_in_order_before_the_end() {
        let positions: Vec<Range<u32>> = std::iter::once(10..12).collect();
        // Word markers 5, 6, 5 (three words, two markers cycling).
        // Always the last allowed: a marker or the end as soon as allowed.
        let words = plan(vec![vec![5], vec![6], vec![5]]);
        let mut c = AudioFrames::new(1, 2, positions.clone(), 9, words.clone());
        let out = drive(&mut c, |r| r.last().unwrap().end - 1);
        assert_eq!(
            out,
            vec![1, 5, 11, 6, 11, 5, 11, 2],
            "each word gets a frame; the end waits for the last word"
        );
        // Always a code: the markers still come first, then codes to the cap.
        let mut c = AudioFrames::new(1, 2, positions.clone(), 3, words);
        let out = drive(&mut c, |r| r[0].start);
        assert_eq!(out, vec![1, 5, 10, 10, 10, 2], "the cap ends it");
        // Openings with interleaved phonemes (30, 31): forced whole, and
        // none of their tokens counts as a frame.
        let words = plan(vec![vec![5, 30, 31], vec![6, 31]]);
        let mut c = AudioFrames::new(1, 2, positions.clone(), 9, words);
        let out = drive(&mut c, |r| r.last().unwrap().end - 1);
        assert_eq!(out, vec![1, 5, 30, 31, 11, 6, 31, 11, 2]);
        // Folding: where an opening or the end may come, the phonemes'
        // probability counts as its; elsewhere nothing is folded.
        let words = plan(vec![vec![5, 30], vec![31]]);
        let mut c = AudioFrames::new(1, 2, positions, 9, words).folding(vec![5, 6, 30, 31]);
        assert_eq!(c.allowed(), Allowed::token(1));
        c.accept(1);
        assert_eq!(
            c.allowed(),
            Allowed::token(5),
            "the first opening is forced"
        );
        c.accept(5);
        c.accept(30);
        assert_eq!(
            c.allowed(),
            Allowed::Only(std::iter::once(10..12).collect()),
            "a frame first"
        );
        c.accept(11);
        assert_eq!(
            c.allowed(),
            Allowed::Folded {
                only: vec![10..12, 31..32],
                into: 31,
                fold: vec![5, 6, 30, 31]
            }
        );
        c.accept(31);
        c.accept(10);
        let Allowed::Folded { into, .. } = c.allowed() else {
            panic!("the end folds too")
        };
        assert_eq!(into, 2);
    }

    /// The seventeenth pack fell silent after "round" in "round bowls"
    /// and wrote silence and one loud code in turn for 12 s.
    #[test]
    fn issue_8_silence_only_where_a_phrase_ends() {
        let positions: Vec<Range<u32>> = std::iter::once(10..16).collect();
        // Words "a b, c": b's last phoneme ends a phrase before the pause.
        let mut words = plan(vec![vec![5, 30], vec![31], vec![6, 32], vec![7, 33]]);
        words[1].ends_phrase = true;
        // 10 and 13 decode as silence. The chooser writes one frame of
        // silence whenever it may, and otherwise the last token allowed:
        // the next opening, or the end, as soon as allowed.
        let mut c = AudioFrames::new(1, 2, positions, 9, words).silencing(vec![13, 10]);
        let mut last = 0;
        let out = drive(&mut c, |r| {
            last = if last != 10 && r.iter().any(|r| r.contains(&10)) {
                10
            } else {
                r.last().unwrap().end - 1
            };
            last
        });
        assert_eq!(
            out,
            vec![1, 5, 30, 15, 31, 10, 6, 32, 15, 7, 33, 10, 2],
            "silence before the pause and at the end, nowhere else"
        );
        // The ranges left around the silent codes.
        let positions: Vec<Range<u32>> = std::iter::once(10..16).collect();
        let mut c = AudioFrames::new(1, 2, positions, 9, plan(vec![vec![5], vec![6]]))
            .silencing(vec![13, 10]);
        c.accept(1);
        c.accept(5);
        assert_eq!(c.allowed(), Allowed::Only(vec![11..13, 14..16]));
    }

    #[test]
    fn mesh_faces_never_repeat_or_line_up_vertices() {
        // A chooser that tries to degenerate: always the smallest allowed
        // coordinate (all zeros would collapse every face).
        let mut c = MeshFaces::new(1, 2, 100, 4, 3, 0);
        let out = drive(&mut c, |r| r[0].start);
        assert_eq!(out.first(), Some(&1));
        assert_eq!(out.last(), Some(&2));
        let coords: Vec<u32> = out[1..out.len() - 1].iter().map(|t| t - 100).collect();
        assert_eq!(coords.len(), 27, "three faces, the cap");
        let q = encoders::mesh::QuantizedMesh::from_tokens(4, &coords).unwrap();
        assert_eq!(
            q.faces.len(),
            1,
            "the same face three times merges into one"
        );
    }

    #[test]
    fn script_runs_its_steps_then_is_done() {
        let kept = [Some(7), None];
        let layout = crate::pack::layout::test_image_layout(5, 4, vec![]);
        let mut c = Script::new(image_steps(&layout, 2, &kept));
        let out = drive(&mut c, |r| r[0].end - 1);
        assert_eq!(out, vec![1, 7, 8, 2]);
        // With row markers, each row opens with its own.
        let marked = crate::pack::layout::test_image_layout(5, 4, vec![30, 31]);
        let kept = [None, Some(6), Some(7), None];
        let mut c = Script::new(image_steps(&marked, 2, &kept));
        let out = drive(&mut c, |r| r[0].end - 1);
        assert_eq!(out, vec![1, 30, 8, 6, 31, 7, 8, 2]);
    }
}
