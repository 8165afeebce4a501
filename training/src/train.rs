//! The training loop's pieces: batches of sequences padded on the right
//! with the loss on target tokens only, and the learning-rate schedule
//! (linear warm-up, then cosine decay to a tenth).

use candle_core::{Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};

use crate::data::Sequence;
use crate::model::MoeModel;

/// Learning rate at `step` of `total`: warm-up over `warmup` steps, then a
/// cosine from `peak` down to `peak / 10`.
pub fn learning_rate(step: usize, total: usize, warmup: usize, peak: f64) -> f64 {
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let span = total.saturating_sub(warmup).max(1) as f64;
    let progress = ((step - warmup) as f64 / span).min(1.0);
    let floor = peak / 10.0;
    floor + (peak - floor) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
}

/// What a step minimises besides the plain cross-entropy.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Objective {
    /// With `focal` above 0, each token's term is weighted by
    /// `(1 - p)^focal` (p its probability, not differentiated): tokens the
    /// model already gets right stop drowning the few it does not.
    pub focal: f64,
    /// Weight of the routers' load-balancing term (1 when balanced; see
    /// `model::Routing`): without it, a few experts took most routes.
    pub router_balance: f64,
}

/// A batch's loss: what is minimised, and the cross-entropy alone (what
/// the progress line and the held-out loss report).
pub struct BatchLoss {
    pub objective: Tensor,
    pub cross_entropy: f32,
}

/// Mean cross-entropy of the next token over the target positions of
/// `batch`, shaped by `objective`. Only those positions go through the
/// head: with a vocabulary of two thousand, the logits of prompt and
/// padding positions cost a fifth of a step.
pub fn batch_loss(
    model: &MoeModel,
    batch: &[Sequence],
    pad: u32,
    objective: Objective,
) -> candle_core::Result<BatchLoss> {
    let len = batch.iter().map(Sequence::len).max().unwrap_or(0);
    if len < 2 {
        candle_core::bail!("sequences need at least two tokens");
    }
    let (mut inputs, mut targets, mut counted) = (Vec::new(), Vec::new(), Vec::new());
    let mut real = Vec::new();
    for s in batch {
        let tokens: Vec<u32> = s.prompt.iter().chain(&s.target).copied().collect();
        let read = s.inputs();
        for i in 0..len - 1 {
            // Position i predicts token i + 1: counted when that is a target token.
            if i + 1 >= s.prompt.len() && i + 1 < tokens.len() {
                counted.push(inputs.len() as u32);
                targets.push(tokens[i + 1]);
            }
            inputs.push(read.get(i).copied().unwrap_or(pad));
            real.push(i < tokens.len());
        }
    }
    let device = Device::Cpu;
    if counted.is_empty() {
        return Ok(BatchLoss {
            objective: Tensor::zeros((), candle_core::DType::F32, &device)?,
            cross_entropy: 0.0,
        });
    }
    let (b, t) = (batch.len(), len - 1);
    let ids = Tensor::from_vec(inputs, (b, t), &device)?;
    // The routing's balancing terms only when they count.
    let (hidden, balance) = if objective.router_balance > 0.0 {
        let (hidden, routing) = model.hidden_routed(&ids, &real)?;
        (hidden, Some(routing.mean_balance()?))
    } else {
        (model.hidden(&ids)?, None)
    };
    let rows = Tensor::from_vec(counted, targets.len(), &device)?;
    let picked_hidden = hidden.reshape((b * t, ()))?.index_select(&rows, 0)?;
    let picked = crate::fused::target_log_probs(&model.head(&picked_hidden)?, &targets)?;
    let cross_entropy = picked.mean_all()?.neg()?;
    let mut loss = if objective.focal > 0.0 {
        let weight = (1.0 - picked.detach().exp()?)?.powf(objective.focal)?;
        (picked * weight)?.mean_all()?.neg()?
    } else {
        cross_entropy.clone()
    };
    if let Some(balance) = balance {
        loss = (loss + (balance * objective.router_balance)?)?;
    }
    Ok(BatchLoss {
        objective: loss,
        cross_entropy: cross_entropy.to_scalar::<f32>()?,
    })
}

/// An AdamW optimizer over the model's variables.
pub fn optimizer(model: &MoeModel, lr: f64, weight_decay: f64) -> candle_core::Result<AdamW> {
    AdamW::new(
        model.varmap.all_vars(),
        ParamsAdamW {
            lr,
            weight_decay,
            ..ParamsAdamW::default()
        },
    )
}

/// One step: the batch's loss, backpropagated and applied at `lr`.
pub fn step(
    model: &MoeModel,
    opt: &mut AdamW,
    batch: &[Sequence],
    pad: u32,
    lr: f64,
) -> candle_core::Result<f32> {
    opt.set_learning_rate(lr);
    let loss = batch_loss(model, batch, pad, Objective::default())?;
    opt.backward_step(&loss.objective)?;
    Ok(loss.cross_entropy)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use candle_core::D;

    use super::*;
    use crate::model::MoeConfig;
    use crate::testing::SceneWriting;
    use crate::world::{Split, World};

    #[test]
    fn the_schedule_warms_up_then_decays_to_a_tenth() {
        assert!((learning_rate(0, 100, 10, 1.0) - 0.1).abs() < 1e-9);
        assert!((learning_rate(9, 100, 10, 1.0) - 1.0).abs() < 1e-9);
        assert!((learning_rate(10, 100, 10, 1.0) - 1.0).abs() < 1e-9);
        assert!((learning_rate(100, 100, 10, 1.0) - 0.1).abs() < 1e-9);
        assert!(learning_rate(50, 100, 10, 1.0) < learning_rate(30, 100, 10, 1.0));
    }

    /// A tiny model and a batch of world pictures (of different lengths:
    /// one or two shapes) with its padding token.
    fn tiny_model_and_batch() -> (MoeModel, Vec<Sequence>, u32) {
        let mut w = World::new(5);
        let parts = SceneWriting::new(&mut w, 64, 0);
        let (writer, ids, tok) = (parts.writer(), parts.ids, &parts.tokenizer);
        let batch: Vec<Sequence> = (0..16)
            .map(|_| writer.text_to_image(&w.scene(Split::Train)).unwrap())
            .collect();
        let model = MoeModel::new(
            MoeConfig {
                vocab_size: ids.size,
                hidden_size: 48,
                num_hidden_layers: 2,
                num_attention_heads: 4,
                num_key_value_heads: 2,
                head_dim: 12,
                moe_intermediate_size: 32,
                num_experts: 4,
                num_experts_per_tok: 2,
                rms_norm_eps: 1e-6,
                rope_theta: 10_000.0,
                max_position_embeddings: 512,
                eos_token_id: vec![tok.token_to_id("<|im_end|>").unwrap()],
            },
            3,
        )
        .unwrap();
        let pad = tok.token_to_id("<|endoftext|>").unwrap();
        (model, batch, pad)
    }

    #[test]
    fn the_loss_is_the_cross_entropy_of_the_target_tokens_alone() {
        let (model, mut batch, pad) = tiny_model_and_batch();
        // One target token read as another: still taught, but the next
        // positions see the substitute.
        batch[0].fed_instead = vec![(2, batch[0].target[5])];
        let lengths: std::collections::HashSet<usize> = batch.iter().map(Sequence::len).collect();
        assert!(lengths.len() > 1, "padding is exercised");
        let loss = |focal: f64| {
            let objective = Objective {
                focal,
                router_balance: 0.0,
            };
            let loss = batch_loss(&model, &batch, pad, objective).unwrap();
            f64::from(loss.objective.to_scalar::<f32>().unwrap())
        };
        // Reference: each sequence alone, every position's logits; the
        // plain and the focal (gamma 2) sums of the target tokens' terms.
        let (mut plain, mut focal, mut count) = (0f64, 0f64, 0usize);
        for s in &batch {
            let tokens: Vec<u32> = s.prompt.iter().chain(&s.target).copied().collect();
            let read = s.inputs();
            let ids = Tensor::new(&read[..read.len() - 1], &Device::Cpu)
                .unwrap()
                .unsqueeze(0)
                .unwrap();
            let logits = model.forward(&ids).unwrap().squeeze(0).unwrap();
            let log_probs: Vec<Vec<f32>> = candle_nn::ops::log_softmax(&logits, D::Minus1)
                .unwrap()
                .to_vec2()
                .unwrap();
            for i in s.prompt.len() - 1..tokens.len() - 1 {
                let lp = f64::from(log_probs[i][tokens[i + 1] as usize]);
                plain -= lp;
                focal -= (1.0 - lp.exp()).powi(2) * lp;
                count += 1;
            }
        }
        let (plain, focal) = (plain / count as f64, focal / count as f64);
        assert!((loss(0.0) - plain).abs() < 1e-4, "{} vs {plain}", loss(0.0));
        assert!((loss(2.0) - focal).abs() < 1e-4, "{} vs {focal}", loss(2.0));
        assert!(focal < plain, "the focal weight only lowers terms");
        let balanced = batch_loss(
            &model,
            &batch,
            pad,
            Objective {
                focal: 0.0,
                router_balance: 0.5,
            },
        )
        .unwrap();
        assert!((f64::from(balanced.cross_entropy) - plain).abs() < 1e-4);
        let extra = f64::from(balanced.objective.to_scalar::<f32>().unwrap()) - plain;
        // Half the mean term, which lies between 1 (even) and 4 (experts).
        assert!((0.5..2.0).contains(&extra), "balancing term {extra}");
    }

    /// Mean balancing term of the batch's routing (1 when even).
    fn imbalance(model: &MoeModel, batch: &[Sequence], pad: u32) -> f32 {
        let objective = Objective {
            focal: 0.0,
            router_balance: 1.0,
        };
        let loss = batch_loss(model, batch, pad, objective).unwrap();
        loss.objective.to_scalar::<f32>().unwrap() - loss.cross_entropy
    }

    #[test]
    fn the_balancing_term_spreads_the_routes_over_the_experts() {
        let train = |router_balance: f64| {
            let (model, batch, pad) = tiny_model_and_batch();
            let mut opt = optimizer(&model, 3e-3, 0.0).unwrap();
            let objective = Objective {
                focal: 0.0,
                router_balance,
            };
            for s in 0..20 {
                opt.set_learning_rate(learning_rate(s, 20, 5, 3e-3));
                let loss = batch_loss(&model, &batch, pad, objective).unwrap();
                opt.backward_step(&loss.objective).unwrap();
            }
            imbalance(&model, &batch, pad)
        };
        let (free, balanced) = (train(0.0), train(1.0));
        eprintln!("balancing term after 20 steps: {free:.3} free, {balanced:.3} balanced");
        assert!(balanced >= 1.0 - 1e-4, "never below even: {balanced}");
        assert!(balanced < free, "{balanced} vs {free}");
    }

    #[test]
    fn training_on_world_images_reduces_the_loss_on_their_codes() {
        let (model, batch, pad) = tiny_model_and_batch();
        let mut opt = optimizer(&model, 3e-3, 0.0).unwrap();
        let first = batch_loss(&model, &batch, pad, Objective::default())
            .unwrap()
            .cross_entropy;
        for s in 0..25 {
            step(&model, &mut opt, &batch, pad, learning_rate(s, 25, 5, 3e-3)).unwrap();
        }
        let last = batch_loss(&model, &batch, pad, Objective::default())
            .unwrap()
            .cross_entropy;
        eprintln!("text-to-image training loss {first:.3} -> {last:.3} in 25 steps");
        assert!(first > 5.0, "starts near ln(vocab): {first}");
        assert!(last < 0.6 * first, "loss {first} -> {last}");
    }
}
