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
            Allowed::Only(ranges) => ranges.iter().any(|r| r.contains(&token)),
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
    fn mask_keeps_only_allowed() {
        let mut logits = vec![1.0, 2.0, 3.0, 4.0, 5.0];
        mask_logits(&mut logits, &[1..2, 3..9]);
        assert_eq!(
            logits,
            vec![f32::NEG_INFINITY, 2.0, f32::NEG_INFINITY, 4.0, 5.0]
        );
    }
}
