//! Fused element-wise operations for the codecs, on the host.
//!
//! A chain of candle ops (`x * alpha`, `sin`, `sqr`, `* inv_alpha`, `+ x`)
//! allocates and walks a full tensor per op, on one thread; at audio
//! sample rates that is most of a decode. These walk the data once, in
//! place, one channel (or norm group) per rayon task.

use candle_core::Tensor;
use rayon::prelude::*;

/// Applies `f(channel, values)` to each channel plane of `x` `[b, c, ...]`.
pub fn per_channel(
    x: &Tensor,
    f: impl Fn(usize, &mut [f32]) + Sync,
) -> candle_core::Result<Tensor> {
    let dims = x.dims().to_vec();
    if dims.len() < 2 {
        candle_core::bail!("per-channel op needs [batch, channels, ...], got {dims:?}");
    }
    let c = dims[1];
    let plane: usize = dims[2..].iter().product();
    let mut data = x.flatten_all()?.to_vec1::<f32>()?;
    if plane > 0 {
        data.par_chunks_mut(plane)
            .enumerate()
            .for_each(|(i, values)| f(i % c, values));
    }
    Tensor::from_vec(data, dims, x.device())
}

/// Group normalisation (affine), optionally followed by swish
/// (`x * sigmoid(x)`), over `[b, c, ...]`; statistics in f64.
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
        let mut data = x.flatten_all()?.to_vec1::<f32>()?;
        if plane > 0 {
            data.par_chunks_mut(per_group * plane)
                .enumerate()
                .for_each(|(i, values)| {
                    let n = values.len() as f64;
                    let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
                    let var = values
                        .iter()
                        .map(|&v| (f64::from(v) - mean).powi(2))
                        .sum::<f64>()
                        / n;
                    let inv = 1.0 / (var + self.eps).sqrt();
                    let first = (i % self.groups) * per_group;
                    for (k, channel) in values.chunks_exact_mut(plane).enumerate() {
                        let scale = (inv * f64::from(self.gamma[first + k])) as f32;
                        let shift = f64::from(self.beta[first + k]) as f32 - mean as f32 * scale;
                        for v in channel.iter_mut() {
                            let y = *v * scale + shift;
                            *v = if swish { y / (1.0 + (-y).exp()) } else { y };
                        }
                    }
                });
        }
        Tensor::from_vec(data, dims, x.device())
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
