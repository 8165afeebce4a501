//! Small building blocks: linear projections, RMSNorm, the SwiGLU MLP.

use candle_core::{Module, Tensor};

use crate::error::Result;
use encoders::weights::Checkpoint;

/// `y = x W^T + b`, with `W` stored `[out, in]` as checkpoints store it.
///
/// How the weight is kept follows measurements (docs/benchmarks.md): a small
/// matrix is transposed once at load for candle's GEMM, which is fastest for
/// it; a large one stays as loaded (a tied output projection shares the
/// embedding table, and loading copies nothing) and decode steps multiply it
/// with the threaded kernel in `gemv`, since candle's GEMV uses one thread.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Weight,
    bias: Option<Tensor>,
}

#[derive(Debug, Clone)]
enum Weight {
    /// `[in, out]`, contiguous.
    Transposed(Tensor),
    /// `[out, in]`, contiguous.
    AsStored(Tensor),
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
        let weight = if weight.elem_count() >= super::gemv::LARGE_WEIGHTS {
            Weight::AsStored(weight.contiguous()?)
        } else {
            Weight::Transposed(weight.t()?.contiguous()?)
        };
        Ok(Linear { weight, bias })
    }
}

/// `x [m, k]` times `w [n, k]` transposed through the threaded kernel, when
/// both are f32 CPU buffers (always, for weights loaded here).
fn few_rows(x: &Tensor, w: &Tensor) -> candle_core::Result<Option<Tensor>> {
    let (m, k) = x.dims2()?;
    let n = w.dims()[0];
    let x = x.contiguous()?;
    let (w_storage, w_layout) = w.storage_and_layout();
    let (x_storage, x_layout) = x.storage_and_layout();
    let (candle_core::Storage::Cpu(w_cpu), candle_core::Storage::Cpu(x_cpu)) =
        (&*w_storage, &*x_storage)
    else {
        return Ok(None);
    };
    let (Ok(w_all), Ok(x_all)) = (w_cpu.as_slice::<f32>(), x_cpu.as_slice::<f32>()) else {
        return Ok(None);
    };
    let w = &w_all[w_layout.start_offset()..w_layout.start_offset() + n * k];
    let xs = &x_all[x_layout.start_offset()..x_layout.start_offset() + m * k];
    let y = super::gemv::matmul_transposed(xs, m, w, n, k);
    Ok(Some(Tensor::from_vec(y, (m, n), x.device())?))
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = match &self.weight {
            Weight::Transposed(w_t) => x.matmul(w_t)?,
            Weight::AsStored(w) => {
                let decode = x.rank() == 2 && x.dims()[0] <= super::gemv::MAX_ROWS;
                match decode.then(|| few_rows(x, w)).transpose()?.flatten() {
                    Some(y) => y,
                    None => x.broadcast_matmul(&w.t()?)?,
                }
            }
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
