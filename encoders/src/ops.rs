//! Fused element-wise operations for the codecs, on the host.
//!
//! A chain of candle ops (`x * alpha`, `sin`, `sqr`, `* inv_alpha`, `+ x`)
//! allocates and walks a full tensor per op, on one thread; at audio
//! sample rates that is most of a decode. These walk the data once, in
//! place, one channel (or norm group) per rayon task.

use candle_core::Tensor;
use rayon::prelude::*;

/// Runs `f` on the tensor's f32 values without copying them when they are
/// a contiguous CPU buffer (always, for the codecs' activations).
pub fn with_host<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> candle_core::Result<R> {
    let t = t.contiguous()?;
    {
        let (storage, layout) = t.storage_and_layout();
        if let candle_core::Storage::Cpu(cpu) = &*storage {
            if let Ok(all) = cpu.as_slice::<f32>() {
                return Ok(f(&all[layout.start_offset()..][..t.elem_count()]));
            }
        }
    }
    let values = t.flatten_all()?.to_vec1::<f32>()?;
    Ok(f(&values))
}

/// `dst = f(channel, src)` for each channel plane of `x` `[b, c, ...]`.
pub fn per_channel(
    x: &Tensor,
    f: impl Fn(usize, &[f32], &mut [f32]) + Sync,
) -> candle_core::Result<Tensor> {
    let dims = x.dims().to_vec();
    if dims.len() < 2 {
        candle_core::bail!("per-channel op needs [batch, channels, ...], got {dims:?}");
    }
    let c = dims[1];
    let plane: usize = dims[2..].iter().product();
    let mut out = vec![0f32; x.elem_count()];
    with_host(x, |src| {
        if plane > 0 {
            out.par_chunks_mut(plane)
                .zip(src.par_chunks(plane))
                .enumerate()
                .for_each(|(i, (dst, src))| f(i % c, src, dst));
        }
    })?;
    Tensor::from_vec(out, dims, x.device())
}

/// Sum and sum of squares in one pass: eight f32 lanes over blocks of
/// 1024 values (which the compiler vectorises), blocks added in f64 so a
/// large group keeps its precision.
fn moments(values: &[f32]) -> (f64, f64) {
    let (mut sum, mut sq) = (0f64, 0f64);
    for block in values.chunks(1024) {
        let (mut s, mut q) = ([0f32; 8], [0f32; 8]);
        let mut lanes = block.chunks_exact(8);
        for chunk in &mut lanes {
            for i in 0..8 {
                s[i] += chunk[i];
                q[i] += chunk[i] * chunk[i];
            }
        }
        for &v in lanes.remainder() {
            s[0] += v;
            q[0] += v * v;
        }
        sum += s.iter().map(|&v| f64::from(v)).sum::<f64>();
        sq += q.iter().map(|&v| f64::from(v)).sum::<f64>();
    }
    (sum, sq)
}

/// Group normalisation (affine), optionally followed by swish
/// (`x * sigmoid(x)`), over `[b, c, ...]`; statistics summed in f64.
pub struct GroupNorm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
    groups: usize,
    eps: f64,
}

impl GroupNorm {
    pub fn new(
        gamma: &Tensor,
        beta: &Tensor,
        groups: usize,
        eps: f64,
    ) -> candle_core::Result<GroupNorm> {
        let gamma = gamma.flatten_all()?.to_vec1::<f32>()?;
        if groups == 0 || gamma.len() % groups != 0 {
            candle_core::bail!("{} channels do not split into {groups} groups", gamma.len());
        }
        Ok(GroupNorm {
            beta: beta.flatten_all()?.to_vec1::<f32>()?,
            gamma,
            groups,
            eps,
        })
    }

    pub fn forward(&self, x: &Tensor, swish: bool) -> candle_core::Result<Tensor> {
        let dims = x.dims().to_vec();
        let c = self.gamma.len();
        if dims.len() < 2 || dims[1] != c {
            candle_core::bail!("group norm over {c} channels got {dims:?}");
        }
        let plane: usize = dims[2..].iter().product();
        let per_group = c / self.groups;
        let mut out = vec![0f32; x.elem_count()];
        with_host(x, |src| {
            if plane == 0 {
                return;
            }
            out.par_chunks_mut(per_group * plane)
                .zip(src.par_chunks(per_group * plane))
                .enumerate()
                .for_each(|(i, (dst, src))| {
                    let (sum, sq) = moments(src);
                    let n = src.len() as f64;
                    let mean = sum / n;
                    let var = (sq / n - mean * mean).max(0.0);
                    let inv = 1.0 / (var + self.eps).sqrt();
                    let first = (i % self.groups) * per_group;
                    for (k, (d, s)) in dst
                        .chunks_exact_mut(plane)
                        .zip(src.chunks_exact(plane))
                        .enumerate()
                    {
                        let scale = (inv * f64::from(self.gamma[first + k])) as f32;
                        let shift = self.beta[first + k] - mean as f32 * scale;
                        for (o, &v) in d.iter_mut().zip(s) {
                            *o = v * scale + shift;
                        }
                        if swish {
                            kernels::activation::silu(d);
                        }
                    }
                });
        })?;
        Tensor::from_vec(out, dims, x.device())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use candle_core::{Device, Module};

    #[test]
    fn group_norm_matches_candle() {
        let x = Tensor::randn(0.5f32, 2.0, (2, 64, 5, 3), &Device::Cpu).unwrap();
        let gamma = Tensor::randn(1f32, 0.3, 64, &Device::Cpu).unwrap();
        let beta = Tensor::randn(0f32, 0.3, 64, &Device::Cpu).unwrap();
        let theirs = candle_nn::GroupNorm::new(gamma.clone(), beta.clone(), 64, 32, 1e-6)
            .unwrap()
            .forward(&x)
            .unwrap();
        let ours = GroupNorm::new(&gamma, &beta, 32, 1e-6).unwrap();
        for swish in [false, true] {
            let want = if swish {
                theirs.silu().unwrap()
            } else {
                theirs.clone()
            };
            let got = ours.forward(&x, swish).unwrap();
            let d = (got - want)
                .unwrap()
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap();
            assert!(d.to_scalar::<f32>().unwrap() < 1e-4);
        }
    }
}
