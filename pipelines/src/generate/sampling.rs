//! Choosing the next token from logits.
//!
//! Order of operations (as vLLM applies them): logit bias, repetition penalty
//! (prompt and output tokens), presence and frequency penalties (output
//! tokens), then temperature, top-k, top-p and min-p, then a draw from a
//! seeded ChaCha8 generator. Logprobs are of the model's raw distribution.

use std::collections::{BTreeMap, HashMap, HashSet};

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{PipelineError, Result};

/// Most alternatives a request may ask logprobs for (OpenAI's bound).
pub const MAX_LOGPROBS: usize = 20;

/// What a request asks of the sampler; one serde struct shared by the CLI,
/// workflows and the HTTP bodies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SamplingParams {
    pub max_tokens: usize,
    /// 0 samples greedily.
    pub temperature: f32,
    pub top_p: f32,
    /// 0 disables top-k.
    pub top_k: usize,
    pub min_p: f32,
    pub repetition_penalty: f32,
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    pub seed: Option<u64>,
    pub stop: Vec<String>,
    pub stop_token_ids: Vec<u32>,
    pub ignore_eos: bool,
    pub logit_bias: BTreeMap<u32, f32>,
    /// Return this many top alternatives with each token's logprob.
    pub logprobs: Option<usize>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            max_tokens: 16,
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            seed: None,
            stop: Vec::new(),
            stop_token_ids: Vec::new(),
            ignore_eos: false,
            logit_bias: BTreeMap::new(),
            logprobs: None,
        }
    }
}

impl SamplingParams {
    /// Checks every field's range, naming the field that is wrong.
    pub fn validate(&self, vocab_size: usize) -> Result<()> {
        let bad = |field: &str, why: String| Err(PipelineError::Request(format!("{field}: {why}")));
        if self.max_tokens == 0 {
            return bad("max_tokens", "must be at least 1".into());
        }
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return bad(
                "temperature",
                format!("{} is not a finite number >= 0", self.temperature),
            );
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top_p", format!("{} is not in (0, 1]", self.top_p));
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad("min_p", format!("{} is not in [0, 1]", self.min_p));
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0) {
            return bad(
                "repetition_penalty",
                format!("{} is not a positive number", self.repetition_penalty),
            );
        }
        for (field, v) in [
            ("presence_penalty", self.presence_penalty),
            ("frequency_penalty", self.frequency_penalty),
        ] {
            if !(-2.0..=2.0).contains(&v) {
                return bad(field, format!("{v} is not in [-2, 2]"));
            }
        }
        for (&token, &bias) in &self.logit_bias {
            if token as usize >= vocab_size {
                return bad(
                    "logit_bias",
                    format!("token {token} is outside the vocabulary of {vocab_size}"),
                );
            }
            if !(-100.0..=100.0).contains(&bias) {
                return bad(
                    "logit_bias",
                    format!("bias {bias} for token {token} is not in [-100, 100]"),
                );
            }
        }
        if let Some(n) = self.logprobs.filter(|&n| n > MAX_LOGPROBS) {
            return bad(
                "logprobs",
                format!("{n} is over the maximum of {MAX_LOGPROBS}"),
            );
        }
        if let Some(&t) = self
            .stop_token_ids
            .iter()
            .find(|&&t| t as usize >= vocab_size)
        {
            return bad(
                "stop_token_ids",
                format!("token {t} is outside the vocabulary of {vocab_size}"),
            );
        }
        if self.stop.iter().any(String::is_empty) {
            return bad("stop", "stop strings may not be empty".into());
        }
        Ok(())
    }
}

/// One chosen token, with its logprob and the top alternatives when asked.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampled {
    pub token: u32,
    pub logprob: f32,
    pub top: Vec<(u32, f32)>,
}

/// A request's sampler: its parameters, its random stream and what it has
/// generated so far (for the penalties).
pub struct Sampler {
    params: SamplingParams,
    rng: ChaCha8Rng,
    /// Prompt and output tokens (repetition penalty).
    seen: HashSet<u32>,
    /// Output token counts (presence and frequency penalties).
    counts: HashMap<u32, u32>,
}

/// A seed no two calls share (the clock mixed with the process's random
/// hasher keys), for requests without one and for ids.
pub fn entropy_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

fn log_softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| f64::from(l - max).exp()).sum();
    let log_sum = sum.ln() as f32 + max;
    logits.iter().map(|&l| l - log_sum).collect()
}

impl Sampler {
    pub fn new(params: SamplingParams, prompt: &[u32]) -> Sampler {
        let seed = params.seed.unwrap_or_else(entropy_seed);
        Sampler {
            rng: ChaCha8Rng::seed_from_u64(seed),
            seen: prompt.iter().copied().collect(),
            counts: HashMap::new(),
            params,
        }
    }

    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Chooses the next token and records it for the penalties.
    pub fn sample(&mut self, raw: &[f32]) -> Sampled {
        let p = &self.params;
        let mut logits = raw.to_vec();
        for (&token, &bias) in &p.logit_bias {
            if let Some(l) = logits.get_mut(token as usize) {
                *l += bias;
            }
        }
        if p.repetition_penalty != 1.0 {
            for &t in &self.seen {
                if let Some(l) = logits.get_mut(t as usize) {
                    *l = if *l > 0.0 {
                        *l / p.repetition_penalty
                    } else {
                        *l * p.repetition_penalty
                    };
                }
            }
        }
        if p.presence_penalty != 0.0 || p.frequency_penalty != 0.0 {
            for (&t, &n) in &self.counts {
                if let Some(l) = logits.get_mut(t as usize) {
                    *l -= p.presence_penalty + p.frequency_penalty * n as f32;
                }
            }
        }
        let greedy = p.temperature == 0.0 || p.top_k == 1;
        let alternatives = p.logprobs;
        let token = if greedy {
            argmax(&logits)
        } else {
            self.draw(&logits)
        };
        let logprobs = log_softmax(raw);
        let top = match alternatives {
            Some(n) if n > 0 => {
                let mut order: Vec<u32> = (0..raw.len() as u32).collect();
                order.sort_by(|&a, &b| {
                    logprobs[b as usize]
                        .total_cmp(&logprobs[a as usize])
                        .then(a.cmp(&b))
                });
                order
                    .into_iter()
                    .take(n)
                    .map(|t| (t, logprobs[t as usize]))
                    .collect()
            }
            _ => Vec::new(),
        };
        self.seen.insert(token);
        *self.counts.entry(token).or_insert(0) += 1;
        Sampled {
            token,
            logprob: logprobs[token as usize],
            top,
        }
    }

    fn draw(&mut self, logits: &[f32]) -> u32 {
        let p = &self.params;
        let mut candidates: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| (i as u32, l / p.temperature))
            .collect();
        candidates.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if p.top_k > 0 {
            candidates.truncate(p.top_k);
        }
        let max = candidates[0].1;
        let mut probs: Vec<f64> = candidates
            .iter()
            .map(|&(_, l)| f64::from(l - max).exp())
            .collect();
        let total: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|q| *q /= total);
        // top-p: the smallest prefix whose mass reaches top_p.
        if p.top_p < 1.0 {
            let mut mass = 0.0;
            let keep = probs.iter().position(|&q| {
                mass += q;
                mass >= f64::from(p.top_p)
            });
            let keep = keep.map_or(probs.len(), |i| i + 1);
            probs.truncate(keep);
        }
        // min-p: drop tokens below min_p times the most likely one.
        if p.min_p > 0.0 {
            let floor = probs[0] * f64::from(p.min_p);
            let keep = probs.iter().take_while(|&&q| q >= floor).count().max(1);
            probs.truncate(keep);
        }
        let total: f64 = probs.iter().sum();
        // 53 random bits: a uniform draw in [0, total).
        let r = (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * total;
        let mut acc = 0.0;
        for (i, &q) in probs.iter().enumerate() {
            acc += q;
            if r < acc {
                return candidates[i].0;
            }
        }
        candidates[probs.len() - 1].0
    }
}

fn argmax(logits: &[f32]) -> u32 {
    logits
        .iter()
        .enumerate()
        .fold((0usize, f32::NEG_INFINITY), |best, (i, &l)| {
            if l > best.1 {
                (i, l)
            } else {
                best
            }
        })
        .0 as u32
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn params(f: impl FnOnce(&mut SamplingParams)) -> SamplingParams {
        let mut p = SamplingParams {
            seed: Some(7),
            ..SamplingParams::default()
        };
        f(&mut p);
        p
    }

    #[test]
    fn greedy_takes_the_largest_and_reports_logprobs() {
        let mut s = Sampler::new(
            params(|p| {
                p.temperature = 0.0;
                p.logprobs = Some(2);
            }),
            &[],
        );
        let out = s.sample(&[0.0, 2.0, 1.0]);
        assert_eq!(out.token, 1);
        let expected = 2.0 - (1f32 + 2f32.exp() + 1f32.exp()).ln();
        assert!((out.logprob - expected).abs() < 1e-6);
        assert_eq!(out.top.iter().map(|t| t.0).collect::<Vec<_>>(), vec![1, 2]);
    }

    #[test]
    fn same_seed_same_draws_and_top_k_bounds_them() {
        let logits: Vec<f32> = (0..50).map(|i| (i as f32 * 0.37).sin()).collect();
        let draw = |seed| {
            let mut s = Sampler::new(
                params(|p| {
                    p.seed = Some(seed);
                    p.top_k = 5;
                }),
                &[],
            );
            (0..40).map(|_| s.sample(&logits).token).collect::<Vec<_>>()
        };
        assert_eq!(draw(1), draw(1));
        assert_ne!(draw(1), draw(2));
        let mut top5: Vec<u32> = (0..50).collect();
        top5.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]));
        assert!(draw(3).iter().all(|t| top5[..5].contains(t)));
    }

    #[test]
    fn top_p_and_min_p_cut_the_tail() {
        // Probabilities ~ [0.64, 0.24, 0.09, 0.03].
        let logits = [3.0f32, 2.0, 1.0, 0.0];
        let mut s = Sampler::new(params(|p| p.top_p = 0.8), &[]);
        assert!((0..200).all(|_| s.sample(&logits).token <= 1));
        let mut s = Sampler::new(params(|p| p.min_p = 0.3), &[]);
        assert!((0..200).all(|_| s.sample(&logits).token <= 1));
    }

    #[test]
    fn penalties_and_bias_move_the_choice() {
        let logits = [1.0f32, 0.9];
        let mut s = Sampler::new(
            params(|p| {
                p.temperature = 0.0;
                p.frequency_penalty = 0.5;
            }),
            &[],
        );
        assert_eq!(s.sample(&logits).token, 0);
        assert_eq!(s.sample(&logits).token, 1, "token 0 now costs 0.5");
        let mut s = Sampler::new(
            params(|p| {
                p.temperature = 0.0;
                p.repetition_penalty = 2.0;
            }),
            &[0],
        );
        assert_eq!(s.sample(&logits).token, 1, "the prompt's token 0 is halved");
        let mut s = Sampler::new(
            params(|p| {
                p.temperature = 0.0;
                p.logit_bias.insert(1, 5.0);
            }),
            &[],
        );
        assert_eq!(s.sample(&logits).token, 1);
    }

    #[test]
    fn validation_names_the_field() {
        let err = |f: fn(&mut SamplingParams)| params(f).validate(10).unwrap_err().to_string();
        assert!(err(|p| p.top_p = 0.0).contains("top_p"));
        assert!(err(|p| p.max_tokens = 0).contains("max_tokens"));
        assert!(err(|p| p.logprobs = Some(21)).contains("logprobs"));
        assert!(err(|p| {
            p.logit_bias.insert(99, 1.0);
        })
        .contains("logit_bias"));
        assert!(err(|p| p.temperature = f32::NAN).contains("temperature"));
    }
}
