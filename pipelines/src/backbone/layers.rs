//! Small building blocks: linear projections, RMSNorm, the SwiGLU MLP.

use std::sync::Arc;

use candle_core::{Device, Module, Tensor};
use kernels::PackedWeight;
use rayon::prelude::*;

use crate::error::{PipelineError, Result};
use encoders::ops::with_host;
use encoders::weights::Checkpoint;

/// `y = x W^T + b`, with `W` packed at load for the GEMM
/// ([`kernels::PackedWeight`]): every product, from a decode step's one row
/// to a prefill's many, reads it in place, and it is held only in that
/// layout (a tied output projection also serves the embedding lookups).
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Arc<PackedWeight>,
    bias: Option<Tensor>,
}

impl Linear {
    /// Loads `{prefix}.weight` (and `{prefix}.bias` when `bias`).
    pub fn load(
        ckpt: &Checkpoint,
        prefix: &str,
        in_dim: usize,
        out_dim: usize,
        bias: bool,
    ) -> Result<Linear> {
        let weight = ckpt.get(&format!("{prefix}.weight"), &[out_dim, in_dim])?;
        let bias = if bias {
            Some(ckpt.get(&format!("{prefix}.bias"), &[out_dim])?)
        } else {
            None
        };
        Linear::new(&weight, bias)
    }

    /// Packs `weight` `[out, in]`.
    pub fn new(weight: &Tensor, bias: Option<Tensor>) -> Result<Linear> {
        let (out_dim, in_dim) = weight.dims2()?;
        let packed = with_host(weight, |w| PackedWeight::from_rows(w, out_dim, in_dim))?
            .ok_or_else(|| candle_core::Error::Msg("weight is not [out, in]".into()))?;
        Ok(Linear {
            weight: Arc::new(packed),
            bias,
        })
    }

    /// Rows `ids` of `W` as `[ids.len(), in]`: the embedding lookup of a
    /// tied output projection.
    pub fn rows(&self, ids: &[u32], device: &Device) -> Result<Tensor> {
        let k = self.weight.inputs();
        let mut out = vec![0f32; ids.len() * k];
        for (&id, row) in ids.iter().zip(out.chunks_exact_mut(k)) {
            if id as usize >= self.weight.outputs() {
                return Err(PipelineError::Request(format!("token id {id} has no row")));
            }
            self.weight.row_into(id as usize, row);
        }
        Ok(Tensor::from_vec(out, (ids.len(), k), device)?)
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        // Any leading dimensions are rows of one product.
        let dims = x.dims().to_vec();
        let Some((&k, lead)) = dims.split_last() else {
            candle_core::bail!("a linear layer needs at least one dimension");
        };
        if k != self.weight.inputs() {
            candle_core::bail!(
                "input of {k} features, the weight takes {}",
                self.weight.inputs()
            );
        }
        let m: usize = lead.iter().product();
        let y = with_host(x, |xs| self.weight.product(xs, m, true))?;
        let mut shape = lead.to_vec();
        shape.push(self.weight.outputs());
        let y = Tensor::from_vec(y, shape, x.device())?;
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

/// Root-mean-square normalisation over the last dimension.
#[derive(Debug, Clone)]
pub struct RmsNorm {
    weight: Vec<f32>,
    eps: f32,
}

/// Values from which the rows of a norm are split over the pool.
const PARALLEL_NORM: usize = 1 << 15;

impl RmsNorm {
    pub fn load(ckpt: &Checkpoint, name: &str, dim: usize, eps: f64) -> Result<RmsNorm> {
        let weight = ckpt.get(&format!("{name}.weight"), &[dim])?;
        Ok(RmsNorm {
            weight: with_host(&weight, <[f32]>::to_vec)?,
            eps: eps as f32,
        })
    }
}

impl Module for RmsNorm {
    /// On the host, row by row (`kernels::activation::rms_norm`): candle's
    /// scalar norm was 3% of a MoE prefill.
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let d = self.weight.len();
        if x.dims().last() != Some(&d) {
            candle_core::bail!("rms norm over {d} features, got {:?}", x.dims());
        }
        let (w, eps) = (&self.weight[..], self.eps);
        let y = with_host(x, |xs| {
            let mut y = vec![0f32; xs.len()];
            let norm =
                |(row, out): (&[f32], &mut [f32])| kernels::activation::rms_norm(row, w, eps, out);
            if xs.len() >= PARALLEL_NORM && rayon::current_num_threads() > 1 {
                xs.par_chunks(d).zip(y.par_chunks_mut(d)).for_each(norm);
            } else {
                xs.chunks(d).zip(y.chunks_mut(d)).for_each(norm);
            }
            y
        })?;
        Tensor::from_vec(y, x.shape(), x.device())
    }
}

/// `down(silu(gate(x)) * up(x))`.
#[derive(Debug, Clone)]
pub struct Mlp {
    pub gate: Linear,
    pub up: Linear,
    pub down: Linear,
}

impl Mlp {
    /// Loads `{prefix}.{gate,up,down}{suffix}` with the given tensor names.
    pub fn load_named(
        ckpt: &Checkpoint,
        names: [String; 3],
        hidden: usize,
        intermediate: usize,
    ) -> Result<Mlp> {
        let [gate, up, down] = names;
        Ok(Mlp {
            gate: Linear::load(ckpt, &gate, hidden, intermediate, false)?,
            up: Linear::load(ckpt, &up, hidden, intermediate, false)?,
            down: Linear::load(ckpt, &down, intermediate, hidden, false)?,
        })
    }

    pub fn load(
        ckpt: &Checkpoint,
        prefix: &str,
        hidden: usize,
        intermediate: usize,
    ) -> Result<Mlp> {
        let names = ["gate_proj", "up_proj", "down_proj"].map(|p| format!("{prefix}.{p}"));
        Mlp::load_named(ckpt, names, hidden, intermediate)
    }
}

impl Module for Mlp {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let gate = self.gate.forward(x)?.silu()?;
        self.down.forward(&(gate * self.up.forward(x)?)?)
    }
}
