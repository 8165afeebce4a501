//! Small building blocks: linear projections, RMSNorm, the SwiGLU MLP.

use candle_core::{Module, Tensor};

use crate::error::Result;
use encoders::ops::with_host;
use encoders::weights::Checkpoint;

/// `y = x W^T + b`, with `W` kept `[out, in]` as checkpoints store it (a
/// tied output projection shares the embedding table; loading copies
/// nothing).
///
/// Decode steps (up to `gemv::MAX_ROWS` rows) read each weight row once
/// with the dot-product kernel, threaded for large weights; longer steps
/// (prefill) run the blocked AVX-512 GEMM of `kernels`. Both beat candle's
/// matmul here, which packs the whole weight even for one row and runs
/// AVX2 kernels (docs/benchmarks.md).
#[derive(Debug, Clone)]
pub struct Linear {
    /// `[out, in]`, contiguous.
    weight: Tensor,
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
        Linear::new(weight, bias)
    }

    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Result<Linear> {
        Ok(Linear {
            weight: weight.contiguous()?,
            bias,
        })
    }

    /// `x [m, k]` times the weight on the host kernels, reading both
    /// tensors in place.
    fn host_product(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (m, k) = x.dims2()?;
        let n = self.weight.dims()[0];
        let y = with_host(&self.weight, |w| {
            with_host(x, |xs| super::matmul::matmul_nt(xs, m, w, n, k, true))
        })??;
        Tensor::from_vec(y, (m, n), x.device())
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = if x.rank() == 2 && x.device().is_cpu() {
            self.host_product(x)?
        } else {
            x.broadcast_matmul(&self.weight.t()?)?
        };
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

/// Root-mean-square normalisation over the last dimension.
#[derive(Debug, Clone)]
pub struct RmsNorm {
    weight: Tensor,
    eps: f32,
}

impl RmsNorm {
    pub fn load(ckpt: &Checkpoint, name: &str, dim: usize, eps: f64) -> Result<RmsNorm> {
        Ok(RmsNorm {
            weight: ckpt.get(&format!("{name}.weight"), &[dim])?,
            eps: eps as f32,
        })
    }
}

impl Module for RmsNorm {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        candle_nn::ops::rms_norm(&x.contiguous()?, &self.weight, self.eps)
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
