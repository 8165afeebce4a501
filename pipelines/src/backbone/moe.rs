//! Mixture-of-experts feed-forward: a router picks `top_k` experts per
//! token; each expert is a SwiGLU MLP.
//!
//! The fast path routes every token of the step at once, groups tokens by
//! expert, runs each hit expert once over its whole group, and adds the
//! weighted results into one output buffer. [`MoeBlock::forward_reference`]
//! is the plain per-token loop the tests hold it to.

use candle_core::{Module, Tensor};
use rayon::prelude::*;

use super::config::{MoeConfig, Naming, Routing};
use super::experts::Experts;
use super::layers::{Linear, Mlp};
use crate::error::{PipelineError, Result};
use encoders::weights::Checkpoint;
use kernels::PackedWeight;

pub struct MoeBlock {
    /// `[num_experts, hidden]`.
    router: PackedWeight,
    experts: Experts,
    shared: Option<Mlp>,
    /// Qwen2-MoE: the shared expert is scaled by sigmoid(x . gate).
    shared_gate: Option<Linear>,
    config: MoeConfig,
}

/// Each token's chosen experts with their weights.
pub type Routes = Vec<Vec<(usize, f32)>>;

/// Tokens from which a step's routes are chosen over the pool.
const PARALLEL_ROUTES: usize = 16;

/// The `k` highest scores with their indices, highest first; ties go to
/// the lower index, as `torch.topk` does. One pass that keeps the best so
/// far: sorting every expert for each token was 1% of a prefill.
fn top_k(scores: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut best: Vec<(usize, f32)> = Vec::with_capacity(k + 1);
    for (e, &s) in scores.iter().enumerate() {
        if best.len() == k && best.last().is_none_or(|&(_, worst)| s <= worst) {
            continue;
        }
        // After every kept score at least as high: an equal score came
        // from a lower index.
        let at = best.partition_point(|&(_, b)| b >= s);
        best.insert(at, (e, s));
        best.truncate(k);
    }
    best
}

fn host(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.flatten_all()?.to_vec1::<f32>()?)
}

impl MoeBlock {
    pub fn load(
        ckpt: &Checkpoint,
        prefix: &str,
        hidden: usize,
        config: &MoeConfig,
        naming: Naming,
    ) -> Result<MoeBlock> {
        let (e, inter) = (config.num_experts, config.intermediate_size);
        let (block, gate_name) = match naming {
            Naming::Standard => (format!("{prefix}.mlp"), "gate"),
            Naming::Mixtral => (format!("{prefix}.block_sparse_moe"), "gate"),
        };
        let router_name = format!("{block}.{gate_name}.weight");
        let router =
            PackedWeight::from_rows(&host(&ckpt.get(&router_name, &[e, hidden])?)?, e, hidden)
                .ok_or_else(|| {
                    PipelineError::Config(format!("{router_name} is not [{e}, {hidden}]"))
                })?;
        let fused = format!("{block}.experts.gate_up_proj");
        let weights = if ckpt.contains(&fused) {
            // transformers 5's in-memory layout, if a checkpoint was saved with it:
            // gate_up [E, 2I, H] and down [E, H, I].
            let gate_up = ckpt.get(&fused, &[e, 2 * inter, hidden])?;
            let down = ckpt.get(&format!("{block}.experts.down_proj"), &[e, hidden, inter])?;
            (0..e)
                .map(|i| {
                    let gu = gate_up.get(i)?;
                    Ok([
                        host(&gu.narrow(0, 0, inter)?)?,
                        host(&gu.narrow(0, inter, inter)?)?,
                        host(&down.get(i)?)?,
                    ])
                })
                .collect::<Result<Vec<_>>>()?
        } else {
            (0..e)
                .map(|i| {
                    let p = format!("{block}.experts.{i}");
                    let names = match naming {
                        Naming::Standard => ["gate_proj", "up_proj", "down_proj"],
                        Naming::Mixtral => ["w1", "w3", "w2"],
                    };
                    let shapes = [[inter, hidden], [inter, hidden], [hidden, inter]];
                    let [g, u, d] = [0, 1, 2].map(|k| {
                        ckpt.get(&format!("{p}.{}.weight", names[k]), &shapes[k])
                            .map_err(PipelineError::from)
                            .and_then(|t| host(&t))
                    });
                    Ok([g?, u?, d?])
                })
                .collect::<Result<Vec<_>>>()?
        };
        let (shared, shared_gate) = match &config.shared {
            None => (None, None),
            Some(s) => {
                let name = if s.gated {
                    format!("{block}.shared_expert")
                } else {
                    format!("{block}.shared_experts")
                };
                let mlp = Mlp::load(ckpt, &name, hidden, s.intermediate_size)?;
                let gate = if s.gated {
                    Some(Linear::load(
                        ckpt,
                        &format!("{block}.shared_expert_gate"),
                        hidden,
                        1,
                        false,
                    )?)
                } else {
                    None
                };
                (Some(mlp), gate)
            }
        };
        Ok(MoeBlock {
            router,
            experts: Experts::new(hidden, inter, weights).ok_or_else(|| {
                PipelineError::Config(format!("{block}: expert weights of the wrong size"))
            })?,
            shared,
            shared_gate,
            config: config.clone(),
        })
    }

    /// Chooses experts for every token of `x` `[tokens, hidden]`.
    pub fn route(&self, x: &[f32], tokens: usize) -> Routes {
        let c = &self.config;
        let logits = self.router.product(x, tokens, true);
        if tokens >= PARALLEL_ROUTES && rayon::current_num_threads() > 1 {
            logits
                .par_chunks_exact(c.num_experts)
                .map(|row| self.route_one(row))
                .collect()
        } else {
            logits
                .chunks_exact(c.num_experts)
                .map(|row| self.route_one(row))
                .collect()
        }
    }

    fn route_one(&self, row: &[f32]) -> Vec<(usize, f32)> {
        let c = &self.config;
        let mut scores = row.to_vec();
        kernels::activation::softmax(&mut scores);
        if let Routing::GroupLimited {
            n_group,
            topk_group,
        } = c.routing
        {
            // Keep only the experts of the best groups (by their best expert).
            let size = c.num_experts / n_group;
            let mut groups: Vec<(usize, f32)> = (0..n_group)
                .map(|g| {
                    (
                        g,
                        scores[g * size..(g + 1) * size]
                            .iter()
                            .copied()
                            .fold(f32::NEG_INFINITY, f32::max),
                    )
                })
                .collect();
            groups.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            let kept: Vec<usize> = groups.iter().take(topk_group).map(|g| g.0).collect();
            for (i, s) in scores.iter_mut().enumerate() {
                if !kept.contains(&(i / size)) {
                    *s = 0.0;
                }
            }
        }
        let mut chosen = top_k(&scores, c.top_k);
        if c.norm_topk_prob {
            let total: f32 = chosen.iter().map(|&(_, w)| w).sum();
            chosen.iter_mut().for_each(|(_, w)| *w /= total);
        }
        if c.routed_scaling_factor != 1.0 {
            let scale = c.routed_scaling_factor as f32;
            chosen.iter_mut().for_each(|(_, w)| *w *= scale);
        }
        chosen
    }

    /// The grouped path: each hit expert runs once over all its tokens.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (tokens, hidden) = x.dims2()?;
        let xs = host(x)?;
        let routes = self.route(&xs, tokens);
        let out = self.experts.forward(&xs, tokens, &routes);
        let routed = Tensor::from_vec(out, (tokens, hidden), x.device())?;
        self.add_shared(x, routed)
    }

    /// The reference path: every token, every chosen expert, one at a time.
    pub fn forward_reference(&self, x: &Tensor) -> Result<Tensor> {
        let (tokens, hidden) = x.dims2()?;
        let xs = host(x)?;
        let routes = self.route(&xs, tokens);
        let out = self.experts.forward_reference(&xs, &routes);
        let routed = Tensor::from_vec(out, (tokens, hidden), x.device())?;
        self.add_shared(x, routed)
    }

    fn add_shared(&self, x: &Tensor, routed: Tensor) -> Result<Tensor> {
        let Some(shared) = &self.shared else {
            return Ok(routed);
        };
        let mut s = shared.forward(x)?;
        if let Some(gate) = &self.shared_gate {
            s = s.broadcast_mul(&candle_nn::ops::sigmoid(&gate.forward(x)?)?)?;
        }
        Ok((routed + s)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_keeps_the_highest_scores_and_breaks_ties_by_index() {
        let scores = [0.1, 0.4, 0.2, 0.4, 0.05, 0.25];
        assert_eq!(top_k(&scores, 3), [(1, 0.4), (3, 0.4), (5, 0.25)]);
        assert_eq!(top_k(&scores, 1), [(1, 0.4)]);
        assert_eq!(top_k(&[0.0, 0.0, 0.0], 2), [(0, 0.0), (1, 0.0)]);
        // Every expert, in order of score.
        let all: Vec<usize> = top_k(&scores, 6).iter().map(|&(e, _)| e).collect();
        assert_eq!(all, [1, 3, 5, 2, 0, 4]);
    }
}
