//! Mixture-of-experts feed-forward: a router picks `top_k` experts per
//! token; each expert is a SwiGLU MLP.
//!
//! The fast path routes every token of the step at once, groups tokens by
//! expert, runs each hit expert once over its whole group, and adds the
//! weighted results into one output buffer. [`MoeBlock::forward_reference`]
//! is the plain per-token loop the tests hold it to.

use candle_core::{Module, Tensor};

use super::config::{MoeConfig, Naming, Routing};
use super::layers::{Linear, Mlp};
use super::weights::Checkpoint;
use crate::error::Result;

pub struct MoeBlock {
    router: Linear,
    experts: Vec<Mlp>,
    shared: Option<Mlp>,
    /// Qwen2-MoE: the shared expert is scaled by sigmoid(x . gate).
    shared_gate: Option<Linear>,
    config: MoeConfig,
}

/// Each token's chosen experts and their weights.
pub struct Routes {
    pub experts: Vec<Vec<usize>>,
    pub weights: Vec<Vec<f32>>,
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
        let router = Linear::load(ckpt, &format!("{block}.{gate_name}"), hidden, e, false)?;
        let fused = format!("{block}.experts.gate_up_proj");
        let experts = if ckpt.contains(&fused) {
            // transformers 5's in-memory layout, if a checkpoint was saved with it:
            // gate_up [E, 2I, H] and down [E, H, I].
            let gate_up = ckpt.get(&fused, &[e, 2 * inter, hidden])?;
            let down = ckpt.get(&format!("{block}.experts.down_proj"), &[e, hidden, inter])?;
            (0..e)
                .map(|i| {
                    let gu = gate_up.get(i)?;
                    Ok(Mlp {
                        gate: Linear::new(gu.narrow(0, 0, inter)?, None)?,
                        up: Linear::new(gu.narrow(0, inter, inter)?, None)?,
                        down: Linear::new(down.get(i)?, None)?,
                    })
                })
                .collect::<Result<Vec<_>>>()?
        } else {
            (0..e)
                .map(|i| {
                    let p = format!("{block}.experts.{i}");
                    let names = match naming {
                        Naming::Standard => {
                            ["gate_proj", "up_proj", "down_proj"].map(|n| format!("{p}.{n}"))
                        }
                        Naming::Mixtral => ["w1", "w3", "w2"].map(|n| format!("{p}.{n}")),
                    };
                    Mlp::load_named(ckpt, names, hidden, inter)
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
            experts,
            shared,
            shared_gate,
            config: config.clone(),
        })
    }

    /// Chooses experts for every token of `x` `[tokens, hidden]`.
    pub fn route(&self, x: &Tensor) -> Result<Routes> {
        let logits = self.router.forward(x)?.to_vec2::<f32>()?;
        let c = &self.config;
        let mut routes = Routes {
            experts: Vec::with_capacity(logits.len()),
            weights: Vec::with_capacity(logits.len()),
        };
        for row in logits {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let exp: Vec<f32> = row.iter().map(|&l| (l - max).exp()).collect();
            let sum: f32 = exp.iter().sum();
            let mut scores: Vec<f32> = exp.iter().map(|&e| e / sum).collect();
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
            let mut order: Vec<usize> = (0..scores.len()).collect();
            // Highest score first; ties go to the lower index, as torch.topk does.
            order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
            let chosen: Vec<usize> = order.into_iter().take(c.top_k).collect();
            let mut weights: Vec<f32> = chosen.iter().map(|&e| scores[e]).collect();
            if c.norm_topk_prob {
                let total: f32 = weights.iter().sum();
                weights.iter_mut().for_each(|w| *w /= total);
            }
            if c.routed_scaling_factor != 1.0 {
                weights
                    .iter_mut()
                    .for_each(|w| *w *= c.routed_scaling_factor as f32);
            }
            routes.experts.push(chosen);
            routes.weights.push(weights);
        }
        Ok(routes)
    }

    /// The grouped path: each hit expert runs once over all its tokens.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (tokens, hidden) = x.dims2()?;
        let routes = self.route(x)?;
        let mut groups: Vec<(Vec<u32>, Vec<f32>)> =
            vec![(Vec::new(), Vec::new()); self.experts.len()];
        for (t, (experts, weights)) in routes.experts.iter().zip(&routes.weights).enumerate() {
            for (&e, &w) in experts.iter().zip(weights) {
                groups[e].0.push(t as u32);
                groups[e].1.push(w);
            }
        }
        let mut out = vec![0f32; tokens * hidden];
        for (expert, (rows, weights)) in self.experts.iter().zip(&groups) {
            if rows.is_empty() {
                continue;
            }
            let index = Tensor::from_slice(rows, rows.len(), x.device())?;
            let y = expert.forward(&x.index_select(&index, 0)?)?;
            let y = y.flatten_all()?.to_vec1::<f32>()?;
            for ((&row, &w), values) in rows.iter().zip(weights).zip(y.chunks_exact(hidden)) {
                let dst = &mut out[row as usize * hidden..(row as usize + 1) * hidden];
                dst.iter_mut().zip(values).for_each(|(d, &v)| *d += w * v);
            }
        }
        let routed = Tensor::from_vec(out, (tokens, hidden), x.device())?;
        self.add_shared(x, routed)
    }

    /// The reference path: every token, every chosen expert, one at a time.
    pub fn forward_reference(&self, x: &Tensor) -> Result<Tensor> {
        let (tokens, _) = x.dims2()?;
        let routes = self.route(x)?;
        let mut rows = Vec::with_capacity(tokens);
        for t in 0..tokens {
            let xt = x.narrow(0, t, 1)?;
            let mut acc = xt.zeros_like()?;
            for (&e, &w) in routes.experts[t].iter().zip(&routes.weights[t]) {
                acc = (acc + (self.experts[e].forward(&xt)? * f64::from(w))?)?;
            }
            rows.push(acc);
        }
        let routed = Tensor::cat(&rows, 0)?;
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
