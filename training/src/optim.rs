//! AdamW whose moments can be saved and restored, so an interrupted run
//! resumes where it stopped (candle's own `AdamW` keeps them private).
//! Weight decay applies to matrices only, not to the norms' scales, and
//! gradients are clipped to a global norm, as the reference recipes do.

use std::collections::HashMap;
use std::path::Path;

use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor, Var};
use candle_nn::VarMap;

/// AdamW's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// Gradients are scaled down when their global norm exceeds this.
    pub clip_norm: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.01,
            clip_norm: 1.0,
        }
    }
}

struct Slot {
    name: String,
    var: Var,
    m: Tensor,
    v: Tensor,
    decays: bool,
}

/// The optimizer over every variable of a `VarMap`, in name order.
pub struct AdamW {
    config: AdamWConfig,
    slots: Vec<Slot>,
    /// Steps taken (the bias correction's `t`).
    pub steps: usize,
}

/// What one step saw, for the progress report.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepStats {
    pub loss: f32,
    /// Global gradient norm before clipping.
    pub grad_norm: f32,
}

impl AdamW {
    pub fn new(varmap: &VarMap, config: AdamWConfig) -> candle_core::Result<AdamW> {
        let data = varmap
            .data()
            .lock()
            .map_err(|_| candle_core::Error::Msg("the model's variables are poisoned".into()))?;
        let mut named: Vec<(String, Var)> =
            data.iter().map(|(n, v)| (n.clone(), v.clone())).collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let slots = named
            .into_iter()
            .map(|(name, var)| {
                let zeros = var.as_tensor().zeros_like()?;
                Ok(Slot {
                    decays: var.as_tensor().rank() >= 2 && !name.contains("norm"),
                    name,
                    m: zeros.clone(),
                    v: zeros,
                    var,
                })
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(AdamW {
            config,
            slots,
            steps: 0,
        })
    }

    /// Backpropagates `loss` and updates every variable at learning rate `lr`.
    pub fn step(&mut self, loss: &Tensor, lr: f64) -> candle_core::Result<StepStats> {
        let grads = loss.backward()?;
        self.apply(&[grads], loss.to_scalar::<f32>()?, lr)
    }

    /// Updates every variable with the sum of the gradients in `parts`
    /// (the shares of a batch that workers backpropagated on their own).
    pub fn apply(
        &mut self,
        parts: &[GradStore],
        loss: f32,
        lr: f64,
    ) -> candle_core::Result<StepStats> {
        let c = self.config;
        let mut found = Vec::with_capacity(self.slots.len());
        let mut squares = 0f64;
        for slot in &self.slots {
            let mut sum: Option<Tensor> = None;
            for grads in parts {
                if let Some(g) = grads.get(slot.var.as_tensor()) {
                    sum = Some(match sum {
                        None => g.clone(),
                        Some(s) => (s + g)?,
                    });
                }
            }
            if let Some(g) = &sum {
                squares += f64::from(g.sqr()?.sum_all()?.to_scalar::<f32>()?);
            }
            found.push(sum);
        }
        let norm = squares.sqrt();
        let scale = if norm > c.clip_norm {
            c.clip_norm / norm
        } else {
            1.0
        };
        self.steps += 1;
        let t = self.steps as i32;
        let (fix1, fix2) = (1.0 - c.beta1.powi(t), 1.0 - c.beta2.powi(t));
        for (slot, g) in self.slots.iter_mut().zip(found) {
            let Some(g) = g else { continue };
            let g = (g * scale)?;
            slot.m = ((&slot.m * c.beta1)? + (&g * (1.0 - c.beta1))?)?;
            slot.v = ((&slot.v * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
            let update = ((&slot.m / fix1)? / ((&slot.v / fix2)?.sqrt()? + c.eps)?)?;
            let theta = slot.var.as_tensor();
            let decayed = if slot.decays {
                (theta * (1.0 - lr * c.weight_decay))?
            } else {
                theta.clone()
            };
            slot.var.set(&(decayed - (update * lr)?)?)?;
        }
        Ok(StepStats {
            loss,
            grad_norm: norm as f32,
        })
    }

    /// Writes the moments (`m.NAME`, `v.NAME`) and the step count.
    pub fn save(&self, path: &Path) -> candle_core::Result<()> {
        let mut tensors = HashMap::new();
        for s in &self.slots {
            tensors.insert(format!("m.{}", s.name), s.m.clone());
            tensors.insert(format!("v.{}", s.name), s.v.clone());
        }
        tensors.insert(
            "steps".to_string(),
            Tensor::new(&[self.steps as u32], &Device::Cpu)?,
        );
        candle_core::safetensors::save(&tensors, path)
    }

    /// Restores what [`AdamW::save`] wrote; every variable must be there.
    pub fn load(&mut self, path: &Path) -> candle_core::Result<()> {
        let mut tensors = candle_core::safetensors::load(path, &Device::Cpu)?;
        let mut take = |name: String, like: &Tensor| -> candle_core::Result<Tensor> {
            let t = tensors
                .remove(&name)
                .ok_or_else(|| candle_core::Error::Msg(format!("{}: no {name}", path.display())))?;
            if t.shape() != like.shape() {
                candle_core::bail!(
                    "{}: {name} is {:?}, the model's is {:?}",
                    path.display(),
                    t.shape(),
                    like.shape()
                );
            }
            Ok(t)
        };
        for s in &mut self.slots {
            s.m = take(format!("m.{}", s.name), &s.m)?;
            s.v = take(format!("v.{}", s.name), &s.v)?;
        }
        let steps = tensors
            .remove("steps")
            .ok_or_else(|| candle_core::Error::Msg(format!("{}: no steps", path.display())))?;
        self.steps = steps.to_vec1::<u32>()?.first().copied().unwrap_or(0) as usize;
        Ok(())
    }
}
