//! The shared decoder-only transformer: one implementation, configured by
//! the checkpoint's `config.json` for every supported family.
//!
//! The model is immutable once loaded (`&self` everywhere) so one `Arc` of it
//! serves every request; each sequence's keys and values live in a
//! [`SequenceCache`] that the caller owns and passes in.

mod attention;
pub mod config;
mod experts;
mod layers;
mod moe;
mod rope;

use std::path::Path;

use candle_core::{Device, Module, Tensor};

use attention::Attention;
pub use attention::LayerCache;
pub use config::{BackboneConfig, FeedForward, ModelType};
use encoders::weights::Checkpoint;
use layers::{Linear, Mlp, RmsNorm};
use moe::MoeBlock;
use rope::RotaryEmbedding;

use crate::error::{PipelineError, Result};

enum FeedForwardBlock {
    Dense(Mlp),
    Moe(MoeBlock),
}

struct Layer {
    input_norm: RmsNorm,
    attention: Attention,
    post_attention_norm: RmsNorm,
    feed_forward: FeedForwardBlock,
}

/// A sequence's position and its per-layer keys and values.
#[derive(Debug, Clone, Default)]
pub struct SequenceCache {
    layers: Vec<LayerCache>,
    len: usize,
}

impl SequenceCache {
    /// Tokens seen so far (the next token's position).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// One sequence's part of a step: its new tokens and its cache.
pub struct SequenceStep<'a> {
    pub tokens: &'a [u32],
    pub cache: &'a mut SequenceCache,
}

/// Which positions' logits a step returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogitsFor {
    /// The last new token of each sequence (generation).
    Last,
    /// Every new token (scoring a prompt, echoing logprobs).
    All,
}

/// Which MoE path to run; the reference path exists for tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoePath {
    Grouped,
    Reference,
}

pub struct Backbone {
    config: BackboneConfig,
    /// The input embedding table; `None` when it is tied to `lm_head`,
    /// whose packed rows then serve the lookups (held once).
    embed: Option<Tensor>,
    layers: Vec<Layer>,
    norm: RmsNorm,
    lm_head: Linear,
    rope: RotaryEmbedding,
    device: Device,
}

impl Backbone {
    /// Loads `config.json` and the safetensors weights from a checkpoint folder.
    pub fn load(dir: &Path, device: &Device) -> Result<Backbone> {
        let config = BackboneConfig::from_file(&dir.join("config.json"))?;
        let ckpt = Checkpoint::open(dir, device)?;
        Backbone::from_checkpoint(config, &ckpt)
    }

    fn from_checkpoint(config: BackboneConfig, ckpt: &Checkpoint) -> Result<Backbone> {
        let (h, v) = (config.hidden_size, config.vocab_size);
        let eps = config.rms_norm_eps;
        let embed = ckpt.get("model.embed_tokens.weight", &[v, h])?;
        let mut layers = Vec::with_capacity(config.num_layers);
        for i in 0..config.num_layers {
            let p = format!("model.layers.{i}");
            let feed_forward = match &config.feed_forward[i] {
                FeedForward::Dense { intermediate_size } => FeedForwardBlock::Dense(Mlp::load(
                    ckpt,
                    &format!("{p}.mlp"),
                    h,
                    *intermediate_size,
                )?),
                FeedForward::Moe(moe) => {
                    FeedForwardBlock::Moe(MoeBlock::load(ckpt, &p, h, moe, config.naming)?)
                }
            };
            layers.push(Layer {
                input_norm: RmsNorm::load(ckpt, &format!("{p}.input_layernorm"), h, eps)?,
                attention: Attention::load(ckpt, &format!("{p}.self_attn"), &config, i)?,
                post_attention_norm: RmsNorm::load(
                    ckpt,
                    &format!("{p}.post_attention_layernorm"),
                    h,
                    eps,
                )?,
                feed_forward,
            });
        }
        let (lm_head, embed) = if config.tie_word_embeddings || !ckpt.contains("lm_head.weight") {
            if !config.tie_word_embeddings {
                return Err(encoders::WeightsError::MissingTensor {
                    name: "lm_head.weight".into(),
                    dir: ckpt.dir().to_path_buf(),
                }
                .into());
            }
            (Linear::new(&embed, None)?, None)
        } else {
            (Linear::load(ckpt, "lm_head", h, v, false)?, Some(embed))
        };
        let device = ckpt.device().clone();
        let rope = RotaryEmbedding::new(&config.rope, &device);
        Ok(Backbone {
            norm: RmsNorm::load(ckpt, "model.norm", h, eps)?,
            device,
            embed,
            layers,
            lm_head,
            rope,
            config,
        })
    }

    pub fn config(&self) -> &BackboneConfig {
        &self.config
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn new_cache(&self) -> SequenceCache {
        SequenceCache {
            layers: vec![LayerCache::default(); self.config.num_layers],
            len: 0,
        }
    }

    /// Runs one step over several sequences at once. Token-wise work (norms,
    /// projections, experts) runs over all their new tokens together, so MoE
    /// routing sees the whole step; attention runs per sequence over its
    /// cache. Returns one logits tensor per sequence (`[1, vocab]` for
    /// `Last`, `[new_tokens, vocab]` for `All`).
    pub fn forward(
        &self,
        steps: &mut [SequenceStep<'_>],
        logits_for: LogitsFor,
    ) -> Result<Vec<Tensor>> {
        self.forward_with(steps, logits_for, MoePath::Grouped)
    }

    pub fn forward_with(
        &self,
        steps: &mut [SequenceStep<'_>],
        logits_for: LogitsFor,
        moe: MoePath,
    ) -> Result<Vec<Tensor>> {
        let vocab = self.config.vocab_size as u32;
        for step in steps.iter() {
            if step.tokens.is_empty() {
                return Err(PipelineError::Request(
                    "a sequence step needs at least one token".into(),
                ));
            }
            if let Some(bad) = step.tokens.iter().find(|&&t| t >= vocab) {
                return Err(PipelineError::Request(format!(
                    "token id {bad} is outside the vocabulary of {vocab}"
                )));
            }
            if step.cache.layers.len() != self.config.num_layers {
                return Err(PipelineError::Request(
                    "the cache belongs to another model".into(),
                ));
            }
        }
        // On a pool worker: candle's CPU norms and softmax split their rows
        // with rayon, and from a thread outside the pool every such op
        // handed its work to a worker and slept on a futex until it was
        // done (a sixth of a one-thread prefill went to waking threads).
        rayon::scope(|_| self.run_step(steps, logits_for, moe))
    }

    fn run_step(
        &self,
        steps: &mut [SequenceStep<'_>],
        logits_for: LogitsFor,
        moe: MoePath,
    ) -> Result<Vec<Tensor>> {
        let all: Vec<u32> = steps
            .iter()
            .flat_map(|s| s.tokens.iter().copied())
            .collect();
        let mut x = match &self.embed {
            Some(table) => {
                table.index_select(&Tensor::from_slice(&all, all.len(), &self.device)?, 0)?
            }
            None => self.lm_head.rows(&all, &self.device)?,
        };
        for (l, layer) in self.layers.iter().enumerate() {
            let normed = layer.input_norm.forward(&x)?;
            let mut parts = Vec::with_capacity(steps.len());
            let mut offset = 0;
            for step in steps.iter_mut() {
                let n = step.tokens.len();
                let part = normed.narrow(0, offset, n)?;
                parts.push(layer.attention.forward(
                    &part,
                    step.cache.len,
                    &self.rope,
                    &mut step.cache.layers[l],
                )?);
                offset += n;
            }
            x = (x + Tensor::cat(&parts, 0)?)?;
            let normed = layer.post_attention_norm.forward(&x)?;
            let ff = match (&layer.feed_forward, moe) {
                (FeedForwardBlock::Dense(mlp), _) => mlp.forward(&normed)?,
                (FeedForwardBlock::Moe(block), MoePath::Grouped) => block.forward(&normed)?,
                (FeedForwardBlock::Moe(block), MoePath::Reference) => {
                    block.forward_reference(&normed)?
                }
            };
            x = (x + ff)?;
        }
        // The rows whose logits are wanted go through the final norm and the
        // output projection together: one pass over `lm_head` per step, not
        // one per sequence.
        let mut rows = Vec::with_capacity(steps.len());
        let mut offset = 0;
        for step in steps.iter_mut() {
            let n = step.tokens.len();
            step.cache.len += n;
            rows.push(match logits_for {
                LogitsFor::Last => (offset + n - 1, 1),
                LogitsFor::All => (offset, n),
            });
            offset += n;
        }
        let selected = match logits_for {
            LogitsFor::All => x,
            LogitsFor::Last => {
                let index: Vec<u32> = rows.iter().map(|&(start, _)| start as u32).collect();
                x.index_select(&Tensor::from_slice(&index, index.len(), &self.device)?, 0)?
            }
        };
        let logits = self.lm_head.forward(&self.norm.forward(&selected)?)?;
        let mut outputs = Vec::with_capacity(rows.len());
        let mut at = 0;
        for &(start, n) in &rows {
            let from = if logits_for == LogitsFor::All {
                start
            } else {
                at
            };
            outputs.push(logits.narrow(0, from, n)?);
            at += n;
        }
        Ok(outputs)
    }
}
