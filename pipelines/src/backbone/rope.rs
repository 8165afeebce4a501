//! Rotary position embeddings, with the scaling schemes checkpoints use.
//! Frequencies follow `transformers`' `rope_utils` for each `rope_type`.

use candle_core::{Device, Tensor};

use super::config::{Rope, RopeScaling};
use crate::error::Result;

/// Inverse frequencies and the attention factor for one model.
#[derive(Debug, Clone)]
pub struct RotaryEmbedding {
    inv_freq: Vec<f32>,
    /// Multiplies cos and sin (YaRN's "attention factor"; 1 otherwise).
    attention_factor: f32,
    interleaved: bool,
    device: Device,
}

fn yarn_mscale(scale: f64, mscale: f64) -> f64 {
    if scale <= 1.0 {
        1.0
    } else {
        0.1 * mscale * scale.ln() + 1.0
    }
}

impl RotaryEmbedding {
    pub fn new(rope: &Rope, device: &Device) -> RotaryEmbedding {
        let dim = rope.rotary_dim;
        let base: Vec<f64> = (0..dim / 2)
            .map(|i| 1.0 / rope.theta.powf(2.0 * i as f64 / dim as f64))
            .collect();
        let mut attention_factor = 1.0;
        let inv_freq: Vec<f64> = match &rope.scaling {
            RopeScaling::None | RopeScaling::Dynamic { .. } => base,
            RopeScaling::Linear { factor } => base.iter().map(|f| f / factor).collect(),
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max,
            } => {
                let low_wavelen = *original_max as f64 / low_freq_factor;
                let high_wavelen = *original_max as f64 / high_freq_factor;
                base.iter()
                    .map(|&f| {
                        let wavelen = 2.0 * std::f64::consts::PI / f;
                        if wavelen > low_wavelen {
                            f / factor
                        } else if wavelen < high_wavelen {
                            f
                        } else {
                            let smooth = (*original_max as f64 / wavelen - low_freq_factor)
                                / (high_freq_factor - low_freq_factor);
                            (1.0 - smooth) * f / factor + smooth * f
                        }
                    })
                    .collect()
            }
            RopeScaling::Yarn {
                factor,
                original_max,
                beta_fast,
                beta_slow,
                mscale,
                mscale_all_dim,
            } => {
                attention_factor = if *mscale_all_dim != 0.0 {
                    yarn_mscale(*factor, *mscale) / yarn_mscale(*factor, *mscale_all_dim)
                } else {
                    yarn_mscale(*factor, 1.0)
                };
                let correction = |rotations: f64| {
                    dim as f64
                        * (*original_max as f64 / (rotations * 2.0 * std::f64::consts::PI)).ln()
                        / (2.0 * rope.theta.ln())
                };
                let low = correction(*beta_fast).floor().max(0.0);
                let high = correction(*beta_slow).ceil().min(dim as f64 - 1.0);
                let high = if (high - low).abs() < 1e-3 {
                    high + 0.001
                } else {
                    high
                };
                base.iter()
                    .enumerate()
                    .map(|(i, &f)| {
                        let ramp = ((i as f64 - low) / (high - low)).clamp(0.0, 1.0);
                        let extrapolation = 1.0 - ramp;
                        (f / factor) * (1.0 - extrapolation) + f * extrapolation
                    })
                    .collect()
            }
        };
        RotaryEmbedding {
            inv_freq: inv_freq.iter().map(|&f| f as f32).collect(),
            attention_factor: attention_factor as f32,
            interleaved: rope.interleaved,
            device: device.clone(),
        }
    }

    /// cos and sin, `[positions, rotary_dim / 2]`, for positions `start..start+len`.
    pub fn tables(&self, start: usize, len: usize) -> Result<(Tensor, Tensor)> {
        let half = self.inv_freq.len();
        let mut cos = Vec::with_capacity(len * half);
        let mut sin = Vec::with_capacity(len * half);
        for p in start..start + len {
            for &f in &self.inv_freq {
                // The angle in f32, as the reference computes it.
                let angle = p as f32 * f;
                cos.push(angle.cos() * self.attention_factor);
                sin.push(angle.sin() * self.attention_factor);
            }
        }
        Ok((
            Tensor::from_vec(cos, (len, half), &self.device)?,
            Tensor::from_vec(sin, (len, half), &self.device)?,
        ))
    }

    /// Rotates `x` `[heads, positions, rotary_dim]` in place of its first `rotary_dim` dims.
    pub fn apply(&self, x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        let x4 = x.unsqueeze(0)?.contiguous()?;
        let rotated = if self.interleaved {
            candle_nn::rotary_emb::rope_i(&x4, cos, sin)?
        } else {
            candle_nn::rotary_emb::rope(&x4, cos, sin)?
        };
        Ok(rotated.squeeze(0)?)
    }
}
