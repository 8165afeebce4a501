//! The backbone as a trainable model: the Qwen3-MoE layout (q/k-normed
//! grouped-query attention with RoPE, top-k routed SwiGLU experts) built
//! from candle's autograd and the fused ops of [`crate::fused`]. The inference backbone runs on its
//! own kernels and cannot be differentiated; this one saves its weights
//! under the names `transformers` uses, with a `config.json`, so what it
//! learns loads through the normal checkpoint path (a test holds the two
//! to the same logits).

use std::path::Path;

use candle_core::{DType, Device, Tensor, D};
use candle_nn::{Init, VarBuilder, VarMap};
use serde::Serialize;

use crate::fused;

/// The fields of a `qwen3_moe` `config.json` that this model uses.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MoeConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub moe_intermediate_size: usize,
    pub num_experts: usize,
    pub num_experts_per_tok: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub max_position_embeddings: usize,
    pub eos_token_id: Vec<u32>,
}

impl MoeConfig {
    /// The `config.json` `transformers` writes for this model.
    pub fn config_json(&self) -> serde_json::Value {
        serde_json::json!({
            "architectures": ["Qwen3MoeForCausalLM"],
            "model_type": "qwen3_moe",
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.moe_intermediate_size * 2,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "moe_intermediate_size": self.moe_intermediate_size,
            "num_experts": self.num_experts,
            "num_experts_per_tok": self.num_experts_per_tok,
            "norm_topk_prob": true,
            "decoder_sparse_step": 1,
            "mlp_only_layers": [],
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "max_position_embeddings": self.max_position_embeddings,
            "attention_bias": false,
            "tie_word_embeddings": false,
            "hidden_act": "silu",
            "eos_token_id": self.eos_token_id,
            "torch_dtype": "float32",
        })
    }
}

struct Attention {
    q: Tensor,
    k: Tensor,
    v: Tensor,
    o: Tensor,
    q_norm: Tensor,
    k_norm: Tensor,
}

struct Experts {
    router: Tensor,
    /// Per expert: gate, up, down projections.
    experts: Vec<[Tensor; 3]>,
}

struct Layer {
    input_norm: Tensor,
    attention: Attention,
    post_norm: Tensor,
    moe: Experts,
}

/// The model and the variables it trains.
pub struct MoeModel {
    pub config: MoeConfig,
    pub varmap: VarMap,
    embed: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
    lm_head: Tensor,
}

impl MoeModel {
    /// A new model, its weights drawn from `N(0, 0.02)` (norms at 1),
    /// seeded per weight name: the same seed, the same model.
    pub fn new(config: MoeConfig, seed: u64) -> candle_core::Result<MoeModel> {
        let device = Device::Cpu;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &device);
        // Filled below from a seeded generator (candle's CPU one cannot be seeded).
        let normal = Init::Const(0.0);
        let ones = Init::Const(1.0);
        let (h, hd) = (config.hidden_size, config.head_dim);
        let (nh, nkv) = (config.num_attention_heads, config.num_key_value_heads);
        let m = vb.pp("model");
        let embed = m.get_with_hints((config.vocab_size, h), "embed_tokens.weight", normal)?;
        let mut layers = Vec::new();
        for i in 0..config.num_hidden_layers {
            let l = m.pp("layers").pp(i);
            let a = l.pp("self_attn");
            let mlp = l.pp("mlp");
            let inter = config.moe_intermediate_size;
            let experts = (0..config.num_experts)
                .map(|e| {
                    let x = mlp.pp("experts").pp(e);
                    Ok([
                        x.get_with_hints((inter, h), "gate_proj.weight", normal)?,
                        x.get_with_hints((inter, h), "up_proj.weight", normal)?,
                        x.get_with_hints((h, inter), "down_proj.weight", normal)?,
                    ])
                })
                .collect::<candle_core::Result<Vec<_>>>()?;
            layers.push(Layer {
                input_norm: l.get_with_hints(h, "input_layernorm.weight", ones)?,
                attention: Attention {
                    q: a.get_with_hints((nh * hd, h), "q_proj.weight", normal)?,
                    k: a.get_with_hints((nkv * hd, h), "k_proj.weight", normal)?,
                    v: a.get_with_hints((nkv * hd, h), "v_proj.weight", normal)?,
                    o: a.get_with_hints((h, nh * hd), "o_proj.weight", normal)?,
                    q_norm: a.get_with_hints(hd, "q_norm.weight", ones)?,
                    k_norm: a.get_with_hints(hd, "k_norm.weight", ones)?,
                },
                post_norm: l.get_with_hints(h, "post_attention_layernorm.weight", ones)?,
                moe: Experts {
                    router: mlp.get_with_hints((config.num_experts, h), "gate.weight", normal)?,
                    experts,
                },
            });
        }
        let norm = m.get_with_hints(h, "norm.weight", ones)?;
        let lm_head = vb.get_with_hints((config.vocab_size, h), "lm_head.weight", normal)?;
        init_normal(&varmap, seed, 0.02)?;
        Ok(MoeModel {
            config,
            varmap,
            embed,
            layers,
            norm,
            lm_head,
        })
    }

    /// Logits `[batch, len, vocab]` for token ids `[batch, len]`, each
    /// position attending to itself and those before it.
    pub fn forward(&self, ids: &Tensor) -> candle_core::Result<Tensor> {
        self.head(&self.forward_inner(ids, None)?.0)
    }

    /// The logits and, per layer, each token's chosen experts (rows in
    /// batch-major order): what the expert-usage report counts.
    pub fn forward_routed(
        &self,
        ids: &Tensor,
    ) -> candle_core::Result<(Tensor, Vec<Vec<Vec<u32>>>)> {
        let (hidden, routing) = self.forward_inner(ids, None)?;
        Ok((self.head(&hidden)?, routing.chosen))
    }

    /// [`MoeModel::hidden`] with the routing of every layer and its
    /// balancing term; only the rows (batch-major) where `counted` is true
    /// enter the terms, so padding does not.
    pub fn hidden_routed(
        &self,
        ids: &Tensor,
        counted: &[bool],
    ) -> candle_core::Result<(Tensor, Routing)> {
        self.forward_inner(ids, Some(counted))
    }

    fn forward_inner(
        &self,
        ids: &Tensor,
        counted: Option<&[bool]>,
    ) -> candle_core::Result<(Tensor, Routing)> {
        let (b, t) = ids.dims2()?;
        let c = &self.config;
        let h = c.hidden_size;
        let mut x = self
            .embed
            .index_select(&ids.flatten_all()?, 0)?
            .reshape((b, t, h))?;
        let (cos, sin) = rope_tables(c, t, x.device())?;
        let mut routing = Routing {
            chosen: Vec::with_capacity(self.layers.len()),
            balance: Vec::with_capacity(self.layers.len()),
        };
        for layer in &self.layers {
            let normed = fused::rms_norm(&x, &layer.input_norm, c.rms_norm_eps)?;
            x = (x + self.attend(&layer.attention, &normed, &cos, &sin)?)?;
            let normed = fused::rms_norm(&x, &layer.post_norm, c.rms_norm_eps)?;
            let flat = normed.reshape((b * t, h))?;
            let (moe, probs, chosen) = self.experts(&layer.moe, &flat)?;
            if let Some(counted) = counted {
                routing
                    .balance
                    .push(balance(&probs, &chosen, counted, c.num_experts)?);
            }
            routing.chosen.push(chosen);
            x = (x + moe.reshape((b, t, h))?)?;
        }
        Ok((fused::rms_norm(&x, &self.norm, c.rms_norm_eps)?, routing))
    }

    /// Logits `[.., vocab]` of final hidden states `[.., hidden]`.
    pub fn head(&self, hidden: &Tensor) -> candle_core::Result<Tensor> {
        fused::linear(hidden, &self.lm_head)
    }

    /// The final hidden states `[batch, len, hidden]` of token ids
    /// `[batch, len]`: the logits before the head, for a loss that needs
    /// only some positions' logits.
    pub fn hidden(&self, ids: &Tensor) -> candle_core::Result<Tensor> {
        Ok(self.forward_inner(ids, None)?.0)
    }

    fn attend(
        &self,
        a: &Attention,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let c = &self.config;
        let (b, t, _) = x.dims3()?;
        let (nh, nkv, hd) = (c.num_attention_heads, c.num_key_value_heads, c.head_dim);
        let heads = |w: &Tensor, n: usize| -> candle_core::Result<Tensor> {
            fused::linear(x, w)?.reshape((b, t, n, hd))
        };
        // Heads stay behind positions, `[b, t, heads, hd]`, as the
        // projections write them and the attention reads them.
        let rotated = |w: &Tensor, norm: &Tensor, n: usize| -> candle_core::Result<Tensor> {
            let normed = fused::rms_norm(&heads(w, n)?, norm, c.rms_norm_eps)?;
            fused::rope(&normed, cos, sin)
        };
        let (q, k) = (
            rotated(&a.q, &a.q_norm, nh)?,
            rotated(&a.k, &a.k_norm, nkv)?,
        );
        let v = heads(&a.v, nkv)?;
        let out = fused::causal_attention(&q, &k, &v, 1.0 / (hd as f64).sqrt())?;
        fused::linear(&out, &a.o)
    }

    /// Top-k routing over all tokens at once; each expert runs once over
    /// the tokens routed to it. Returns the output, the router's
    /// probabilities `[tokens, experts]` and each token's chosen experts.
    fn experts(
        &self,
        e: &Experts,
        x: &Tensor,
    ) -> candle_core::Result<(Tensor, Tensor, Vec<Vec<u32>>)> {
        let c = &self.config;
        let probs = candle_nn::ops::softmax(&fused::linear(x, &e.router)?, D::Minus1)?;
        let top = probs
            .arg_sort_last_dim(false)?
            .narrow(1, 0, c.num_experts_per_tok)?
            .contiguous()?;
        let weights = probs.gather(&top, 1)?;
        let weights = weights.broadcast_div(&weights.sum_keepdim(1)?)?;
        let routes = top.to_vec2::<u32>()?;
        // Each expert's weighted outputs, summed into their rows in one
        // `index_add` (one per expert copied the whole activation each time).
        let (mut all_rows, mut outputs) = (Vec::new(), Vec::new());
        for (expert, [gate, up, down]) in e.experts.iter().enumerate() {
            let (mut rows, mut slots) = (Vec::new(), Vec::new());
            for (row, picks) in routes.iter().enumerate() {
                if let Some(slot) = picks.iter().position(|&p| p as usize == expert) {
                    rows.push(row as u32);
                    slots.push(slot as u32);
                }
            }
            if rows.is_empty() {
                continue;
            }
            let n = rows.len();
            let rows = Tensor::from_vec(rows, n, x.device())?;
            let slots = Tensor::from_vec(slots, (n, 1), x.device())?;
            let xe = x.index_select(&rows, 0)?;
            let hidden = fused::swiglu(&fused::linear(&xe, gate)?, &fused::linear(&xe, up)?)?;
            let ye = fused::linear(&hidden, down)?;
            let we = weights.index_select(&rows, 0)?.gather(&slots, 1)?;
            outputs.push(ye.broadcast_mul(&we)?);
            all_rows.push(rows);
        }
        let out = x.zeros_like()?;
        let out = if outputs.is_empty() {
            out
        } else {
            out.index_add(&Tensor::cat(&all_rows, 0)?, &Tensor::cat(&outputs, 0)?, 0)?
        };
        Ok((out, probs, routes))
    }

    /// Writes `config.json` and `model.safetensors` (the names
    /// `transformers` uses) into `dir`.
    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        self.save_as(dir, DType::F32)
    }

    /// [`MoeModel::save`] with the weights stored as `dtype` (bf16 halves
    /// a pack; the backbone computes in f32 either way).
    pub fn save_as(&self, dir: &Path, dtype: DType) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let mut config = self.config.config_json();
        config["torch_dtype"] = match dtype {
            DType::BF16 => "bfloat16",
            DType::F16 => "float16",
            _ => "float32",
        }
        .into();
        let config = serde_json::to_string_pretty(&config).map_err(std::io::Error::other)?;
        std::fs::write(dir.join("config.json"), config)?;
        let data = self
            .varmap
            .data()
            .lock()
            .map_err(|_| std::io::Error::other("the model's variables are poisoned"))?;
        let tensors = data
            .iter()
            .map(|(name, var)| Ok((name.clone(), var.as_tensor().to_dtype(dtype)?)))
            .collect::<candle_core::Result<std::collections::HashMap<_, _>>>()
            .map_err(std::io::Error::other)?;
        candle_core::safetensors::save(&tensors, dir.join("model.safetensors"))
            .map_err(std::io::Error::other)
    }
}

/// Draws every matrix (not the norms' scales) from `N(0, stdev)`, each
/// from a ChaCha stream keyed by the seed and the weight's name.
fn init_normal(varmap: &VarMap, seed: u64, stdev: f32) -> candle_core::Result<()> {
    use rand::{RngCore, SeedableRng};
    let vars = varmap
        .data()
        .lock()
        .map_err(|_| candle_core::Error::Msg("the variable map lock is poisoned".into()))?;
    for (name, var) in vars.iter() {
        if name.ends_with("norm.weight") {
            continue;
        }
        let key = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ key);
        let mut uniform = || ((rng.next_u32() >> 8) as f32 + 0.5) / (1u32 << 24) as f32;
        let values: Vec<f32> = (0..var.elem_count())
            .map(|_| {
                let (u1, u2) = (uniform(), uniform());
                stdev * (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
            })
            .collect();
        var.set(&Tensor::from_vec(values, var.shape(), var.device())?)?;
    }
    Ok(())
}

/// What a forward pass chose, layer by layer.
pub struct Routing {
    /// Per layer, each row's chosen experts (rows in batch-major order).
    pub chosen: Vec<Vec<Vec<u32>>>,
    /// Per layer, the load-balancing term (a scalar); empty unless asked
    /// for ([`MoeModel::hidden_routed`]).
    pub balance: Vec<Tensor>,
}

impl Routing {
    /// The layers' balancing terms, averaged.
    pub fn mean_balance(&self) -> candle_core::Result<Tensor> {
        let n = self.balance.len().max(1) as f64;
        Tensor::stack(&self.balance, 0)?.sum_all()? / n
    }
}

/// The Switch Transformer's load-balancing term of one layer:
/// `experts * sum_e share_e * mean_prob_e`, where `share_e` is expert e's
/// share of the counted rows' routes (a constant) and `mean_prob_e` the
/// router's mean probability for it (differentiated). It is 1 when routes
/// and probabilities are spread evenly, up to `experts` when one expert
/// takes everything; its gradient lowers the probability of the experts
/// that take more than their share.
fn balance(
    probs: &Tensor,
    chosen: &[Vec<u32>],
    counted: &[bool],
    experts: usize,
) -> candle_core::Result<Tensor> {
    let rows: Vec<u32> = (0..chosen.len())
        .filter(|&r| counted.get(r).copied().unwrap_or(false))
        .map(|r| r as u32)
        .collect();
    let mut share = vec![0f32; experts];
    for &r in &rows {
        for &e in &chosen[r as usize] {
            share[e as usize] += 1.0;
        }
    }
    let routes: f32 = share.iter().sum();
    if routes == 0.0 {
        return Tensor::zeros((), DType::F32, probs.device());
    }
    share.iter_mut().for_each(|s| *s /= routes);
    let probs = if rows.len() == chosen.len() {
        probs.clone()
    } else {
        let n = rows.len();
        probs.index_select(&Tensor::from_vec(rows, n, probs.device())?, 0)?
    };
    let share = Tensor::from_vec(share, experts, probs.device())?;
    (probs.mean(0)? * share)?.sum_all()? * experts as f64
}

/// `cos` and `sin` `[len, head_dim]` for positions `0..len` (the halves
/// layout `transformers` uses: frequencies repeated for both halves).
fn rope_tables(
    c: &MoeConfig,
    len: usize,
    device: &Device,
) -> candle_core::Result<(Tensor, Tensor)> {
    let half = c.head_dim / 2;
    let inv: Vec<f32> = (0..half)
        .map(|i| 1.0 / c.rope_theta.powf(2.0 * i as f64 / c.head_dim as f64) as f32)
        .collect();
    let mut angles = Vec::with_capacity(len * c.head_dim);
    for p in 0..len {
        for _ in 0..2 {
            angles.extend(inv.iter().map(|f| p as f32 * f));
        }
    }
    let angles = Tensor::from_vec(angles, (len, c.head_dim), device)?;
    Ok((angles.cos()?, angles.sin()?))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use candle_nn::{AdamW, Optimizer, ParamsAdamW};
    use pipelines::backbone::{Backbone, LogitsFor, SequenceStep};

    use super::*;

    fn tiny() -> MoeConfig {
        MoeConfig {
            vocab_size: 48,
            hidden_size: 32,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            head_dim: 8,
            moe_intermediate_size: 16,
            num_experts: 4,
            num_experts_per_tok: 2,
            rms_norm_eps: 1e-6,
            rope_theta: 10_000.0,
            max_position_embeddings: 256,
            eos_token_id: vec![0],
        }
    }

    #[test]
    fn a_few_steps_of_adamw_reduce_the_loss() {
        let model = MoeModel::new(tiny(), 1).unwrap();
        // Two sequences of a repeating pattern: next-token prediction.
        let seq: Vec<u32> = (0..33).map(|i| (i * 7 % 11 + 3) as u32).collect();
        let ids =
            Tensor::from_vec([&seq[..32], &seq[1..33]].concat(), (2, 32), &Device::Cpu).unwrap();
        let inputs = ids.narrow(1, 0, 31).unwrap();
        let targets = ids.narrow(1, 1, 31).unwrap().flatten_all().unwrap();
        let loss = |m: &MoeModel| {
            let logits = m.forward(&inputs).unwrap().reshape((62, 48)).unwrap();
            candle_nn::loss::cross_entropy(&logits, &targets).unwrap()
        };
        let mut opt = AdamW::new(
            model.varmap.all_vars(),
            ParamsAdamW {
                lr: 1e-2,
                ..ParamsAdamW::default()
            },
        )
        .unwrap();
        let first = loss(&model).to_scalar::<f32>().unwrap();
        for _ in 0..30 {
            opt.backward_step(&loss(&model)).unwrap();
        }
        let last = loss(&model).to_scalar::<f32>().unwrap();
        assert!(first > 3.5, "starts near ln 48: {first}");
        assert!(last < first * 0.5, "loss {first} -> {last}");
    }

    /// Every position's logits from the inference backbone loaded from `dir`.
    fn backbone_logits(dir: &Path, tokens: &[u32]) -> Tensor {
        let backbone = Backbone::load(dir, &Device::Cpu).unwrap();
        let mut cache = backbone.new_cache();
        backbone
            .forward(
                &mut [SequenceStep {
                    tokens,
                    cache: &mut cache,
                }],
                LogitsFor::All,
            )
            .unwrap()
            .remove(0)
    }

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
        crate::testing::max_abs(&(a - b).unwrap())
    }

    #[test]
    fn the_saved_checkpoint_loads_as_a_backbone_with_the_same_logits() {
        let model = MoeModel::new(tiny(), 2).unwrap();
        // Larger weights than the init, so the logits are well apart.
        for var in model.varmap.all_vars() {
            let scaled = (var.as_tensor() * 10.0).unwrap();
            var.set(&scaled).unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        model.save(dir.path()).unwrap();
        let tokens: Vec<u32> = vec![5, 9, 2, 17, 33, 1, 40, 8];
        let ids = Tensor::from_vec(tokens.clone(), (1, 8), &Device::Cpu).unwrap();
        let ours = model.forward(&ids).unwrap().squeeze(0).unwrap();
        let theirs = backbone_logits(dir.path(), &tokens);
        // Logits spread well apart (else agreement would prove little), the
        // same best token at every position, and the same values.
        let spread = ours.max_all().unwrap().to_scalar::<f32>().unwrap()
            - ours.min_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(spread > 5.0, "logits spread {spread}");
        assert_eq!(
            ours.argmax(1).unwrap().to_vec1::<u32>().unwrap(),
            theirs.argmax(1).unwrap().to_vec1::<u32>().unwrap()
        );
        let diff = max_abs_diff(&ours, &theirs);
        assert!(diff < 5e-4, "logits differ by {diff}");

        // Stored in bf16 (as packs are): loads, and its logits stay within
        // bf16's rounding of the f32 model's.
        let half = tempfile::tempdir().unwrap();
        model.save_as(half.path(), DType::BF16).unwrap();
        let config: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(half.path().join("config.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(config["torch_dtype"], "bfloat16");
        let diff = max_abs_diff(&ours, &backbone_logits(half.path(), &tokens));
        assert!(
            diff > 0.0 && diff < 0.05 * spread,
            "bf16 logits differ by {diff} of {spread}"
        );
    }
}
