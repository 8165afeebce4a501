//! Constrained generation: a request may carry a constraint that says, step
//! by step, which tokens may come next. The engine masks every other token
//! before sampling, so a media block always has the structure its codec
//! decodes (exactly h x w image codes, whole SNAC frames, valid mesh faces).

use std::ops::Range;

/// What a constraint allows after the tokens it has accepted so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allowed {
    /// Any token of the vocabulary.
    Any,
    /// Only tokens in these ranges (non-empty, in any order).
    Only(Vec<Range<u32>>),
    /// Only tokens in `only`, with the probability the model gives the
    /// tokens of `fold` counted as `into`'s (one of `only`): where the
    /// structure fixes what comes next but the model decides when (the
    /// next phoneme of a forced script), any token of that kind the model
    /// writes means "now".
    Folded {
        only: Vec<Range<u32>>,
        into: u32,
        fold: Vec<u32>,
    },
    /// The structure is complete: generation stops here.
    Done,
}

impl Allowed {
    /// Exactly one token.
    pub fn token(id: u32) -> Allowed {
        Allowed::Only(std::iter::once(id..id + 1).collect())
    }

    /// A set of single tokens, merged into ranges.
    pub fn tokens(mut ids: Vec<u32>) -> Allowed {
        ids.sort_unstable();
        ids.dedup();
        let mut ranges: Vec<Range<u32>> = Vec::new();
        for id in ids {
            match ranges.last_mut() {
                Some(r) if r.end == id => r.end = id + 1,
                _ => ranges.push(id..id + 1),
            }
        }
        Allowed::Only(ranges)
    }

    pub fn permits(&self, token: u32) -> bool {
        match self {
            Allowed::Any => true,
            Allowed::Only(ranges) | Allowed::Folded { only: ranges, .. } => {
                ranges.iter().any(|r| r.contains(&token))
            }
            Allowed::Done => false,
        }
    }
}

/// The structure a generated block must follow. One value per request; the
/// engine asks `allowed` before each sample and reports the sample through
/// `accept`.
pub trait TokenConstraint: Send {
    fn allowed(&mut self) -> Allowed;
    /// Records the sampled token (one that `allowed` permitted).
    fn accept(&mut self, token: u32);
    /// Whether the structure is complete. The default asks `allowed`;
    /// constraints whose `allowed` is costly answer from their state.
    fn finished(&mut self) -> bool {
        self.allowed() == Allowed::Done
    }
}

/// Adds the probability of the tokens of `fold` to `into`'s: its logit
/// becomes the log-sum-exp of theirs and its own.
pub(crate) fn fold_logits(logits: &mut [f32], into: u32, fold: &[u32]) {
    let Some(&own) = logits.get(into as usize) else {
        return;
    };
    let parts: Vec<f32> = fold
        .iter()
        .filter(|&&t| t != into)
        .filter_map(|&t| logits.get(t as usize).copied())
        .chain([own])
        .filter(|l| l.is_finite())
        .collect();
    let top = parts.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if top.is_finite() {
        logits[into as usize] = top + parts.iter().map(|l| (l - top).exp()).sum::<f32>().ln();
    }
}

/// Sets every logit outside `ranges` to minus infinity.
pub(crate) fn mask_logits(logits: &mut [f32], ranges: &[Range<u32>]) {
    let mut masked = vec![f32::NEG_INFINITY; logits.len()];
    for r in ranges {
        let start = (r.start as usize).min(logits.len());
        let end = (r.end as usize).min(logits.len());
        masked[start..end].copy_from_slice(&logits[start..end]);
    }
    logits.copy_from_slice(&masked);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_merge_into_ranges() {
        assert_eq!(
            Allowed::tokens(vec![5, 3, 4, 9, 3]),
            Allowed::Only(vec![3..6, 9..10])
        );
        assert!(Allowed::token(7).permits(7));
        assert!(!Allowed::token(7).permits(8));
    }

    #[test]
    fn folding_adds_the_probabilities_of_the_folded_tokens() {
        let mut logits = vec![0f32, 1.0, 2.0f32.ln(), f32::NEG_INFINITY];
        fold_logits(&mut logits, 0, &[2, 3, 0]);
        // exp(0) + 2 = 3; the others untouched.
        assert!((logits[0] - 3f32.ln()).abs() < 1e-6, "{logits:?}");
        assert_eq!(logits[1], 1.0);
        let folded = Allowed::Folded {
            only: std::iter::once(0..2).collect(),
            into: 0,
            fold: vec![2],
        };
        assert!(folded.permits(1) && !folded.permits(2));
    }

    #[test]
    fn mask_keeps_only_allowed() {
        let mut logits = vec![1.0, 2.0, 3.0, 4.0, 5.0];
        mask_logits(&mut logits, &[1..2, 3..9]);
        assert_eq!(
            logits,
            vec![f32::NEG_INFINITY, 2.0, f32::NEG_INFINITY, 4.0, 5.0]
        );
    }
}
