//! The checkpoint's `config.json`, mirrored field for field as published
//! checkpoints and current `transformers` write it, then validated into a
//! [`BackboneConfig`] where every architectural difference is data.

use std::path::Path;

use serde::Deserialize;

use crate::error::{PipelineError, Result};

/// `config.json` as written. Spellings that differ between checkpoint
/// generations are aliases; nothing here is interpreted yet.
#[derive(Debug, Clone, Deserialize)]
pub struct RawConfig {
    pub model_type: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    #[serde(default)]
    pub intermediate_size: Option<usize>,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    #[serde(default)]
    pub head_dim: Option<usize>,
    #[serde(default)]
    pub hidden_act: Option<String>,
    #[serde(default)]
    pub max_position_embeddings: Option<usize>,
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    #[serde(default)]
    pub tie_word_embeddings: Option<bool>,
    #[serde(default)]
    pub rope_theta: Option<f64>,
    #[serde(default)]
    pub rope_scaling: Option<RawRope>,
    /// `transformers` 5 keeps theta and scaling together here.
    #[serde(default)]
    pub rope_parameters: Option<RawRope>,
    #[serde(default)]
    pub attention_bias: Option<bool>,
    #[serde(default)]
    pub mlp_bias: Option<bool>,
    #[serde(default)]
    pub sliding_window: Option<usize>,
    #[serde(default)]
    pub use_sliding_window: Option<bool>,
    #[serde(default)]
    pub max_window_layers: Option<usize>,
    #[serde(default)]
    pub layer_types: Option<Vec<String>>,
    // Mixture of experts.
    #[serde(default, alias = "num_local_experts", alias = "n_routed_experts")]
    pub num_experts: Option<usize>,
    #[serde(default)]
    pub num_experts_per_tok: Option<usize>,
    #[serde(default)]
    pub moe_intermediate_size: Option<usize>,
    #[serde(default)]
    pub shared_expert_intermediate_size: Option<usize>,
    #[serde(default)]
    pub n_shared_experts: Option<usize>,
    #[serde(default)]
    pub norm_topk_prob: Option<bool>,
    #[serde(default)]
    pub decoder_sparse_step: Option<usize>,
    #[serde(default)]
    pub mlp_only_layers: Option<Vec<usize>>,
    #[serde(default)]
    pub first_k_dense_replace: Option<usize>,
    #[serde(default)]
    pub moe_layer_freq: Option<usize>,
    #[serde(default)]
    pub topk_method: Option<String>,
    #[serde(default)]
    pub n_group: Option<usize>,
    #[serde(default)]
    pub topk_group: Option<usize>,
    #[serde(default)]
    pub routed_scaling_factor: Option<f64>,
    #[serde(default)]
    pub scoring_func: Option<String>,
    // Multi-head latent attention (DeepSeek-V2).
    #[serde(default)]
    pub q_lora_rank: Option<usize>,
    #[serde(default)]
    pub kv_lora_rank: Option<usize>,
    #[serde(default)]
    pub qk_nope_head_dim: Option<usize>,
    #[serde(default)]
    pub qk_rope_head_dim: Option<usize>,
    #[serde(default)]
    pub v_head_dim: Option<usize>,
    // OLMoE.
    #[serde(default)]
    pub clip_qkv: Option<f64>,
    #[serde(default, alias = "torch_dtype")]
    pub dtype: Option<String>,
    #[serde(default)]
    pub bos_token_id: Option<serde_json::Value>,
    #[serde(default)]
    pub eos_token_id: Option<serde_json::Value>,
}

fn default_eps() -> f64 {
    1e-6
}

/// `rope_scaling` (older) or `rope_parameters` (newer).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RawRope {
    #[serde(default, alias = "type")]
    pub rope_type: Option<String>,
    #[serde(default)]
    pub rope_theta: Option<f64>,
    #[serde(default)]
    pub factor: Option<f64>,
    #[serde(default)]
    pub original_max_position_embeddings: Option<usize>,
    #[serde(default)]
    pub low_freq_factor: Option<f64>,
    #[serde(default)]
    pub high_freq_factor: Option<f64>,
    #[serde(default)]
    pub beta_fast: Option<f64>,
    #[serde(default)]
    pub beta_slow: Option<f64>,
    #[serde(default)]
    pub mscale: Option<f64>,
    #[serde(default)]
    pub mscale_all_dim: Option<f64>,
    #[serde(default)]
    pub partial_rotary_factor: Option<f64>,
}

/// The architectures anyforge loads: one implementation, configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelType {
    Llama,
    Mistral,
    Qwen2,
    Qwen3,
    Qwen2Moe,
    Qwen3Moe,
    Mixtral,
    Olmoe,
    DeepseekV2,
}

impl ModelType {
    pub fn parse(name: &str) -> Result<ModelType> {
        Ok(match name {
            "llama" => ModelType::Llama,
            "mistral" => ModelType::Mistral,
            "qwen2" => ModelType::Qwen2,
            "qwen3" => ModelType::Qwen3,
            "qwen2_moe" => ModelType::Qwen2Moe,
            "qwen3_moe" => ModelType::Qwen3Moe,
            "mixtral" => ModelType::Mixtral,
            "olmoe" => ModelType::Olmoe,
            "deepseek_v2" => ModelType::DeepseekV2,
            other => return Err(PipelineError::UnsupportedModel(other.to_owned())),
        })
    }
}

/// How rotary position frequencies are scaled for long contexts.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    None,
    Linear {
        factor: f64,
    },
    Dynamic {
        factor: f64,
        original_max: usize,
    },
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max: usize,
    },
    Yarn {
        factor: f64,
        original_max: usize,
        beta_fast: f64,
        beta_slow: f64,
        mscale: f64,
        mscale_all_dim: f64,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rope {
    pub theta: f64,
    pub scaling: RopeScaling,
    /// Dimensions rotated per head (all of `head_dim` unless partial).
    pub rotary_dim: usize,
    /// DeepSeek rotates interleaved pairs (x0,x1),(x2,x3)…; the others rotate halves.
    pub interleaved: bool,
}

/// Normalisation of queries and keys before RoPE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QkNorm {
    None,
    /// RMSNorm over each head's `head_dim` (Qwen3).
    PerHead,
    /// RMSNorm over all heads' projections together (OLMoE).
    Full,
}

/// DeepSeek-V2's multi-head latent attention.
#[derive(Debug, Clone, PartialEq)]
pub struct LatentAttention {
    pub q_lora_rank: Option<usize>,
    pub kv_lora_rank: usize,
    pub qk_nope_head_dim: usize,
    pub qk_rope_head_dim: usize,
    pub v_head_dim: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AttentionKind {
    Standard {
        qkv_bias: bool,
        o_bias: bool,
        qk_norm: QkNorm,
        clip_qkv: Option<f64>,
    },
    Latent(LatentAttention),
}

/// How a token's experts are chosen.
#[derive(Debug, Clone, PartialEq)]
pub enum Routing {
    /// Softmax over all experts, then the top k.
    Softmax,
    /// DeepSeek: the best `topk_group` of `n_group` expert groups, then top k inside them.
    GroupLimited { n_group: usize, topk_group: usize },
}

#[derive(Debug, Clone, PartialEq)]
pub struct SharedExperts {
    pub intermediate_size: usize,
    /// Qwen2-MoE scales the shared expert by sigmoid(gate(x)).
    pub gated: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MoeConfig {
    pub num_experts: usize,
    pub top_k: usize,
    pub intermediate_size: usize,
    pub norm_topk_prob: bool,
    pub routing: Routing,
    pub routed_scaling_factor: f64,
    pub shared: Option<SharedExperts>,
}

/// The feed-forward block of one layer.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedForward {
    Dense { intermediate_size: usize },
    Moe(MoeConfig),
}

/// Where a checkpoint keeps each layer's tensors (names differ by family).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    /// `mlp.gate` and `mlp.experts.N.{gate,up,down}_proj`.
    Standard,
    /// Mixtral: `block_sparse_moe.gate` and `block_sparse_moe.experts.N.{w1,w3,w2}`.
    Mixtral,
}

/// A validated backbone configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct BackboneConfig {
    pub model_type: ModelType,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope: Rope,
    pub attention: AttentionKind,
    /// Per layer: the feed-forward block.
    pub feed_forward: Vec<FeedForward>,
    /// Per layer: attend to at most this many previous positions.
    pub sliding_window: Vec<Option<usize>>,
    pub tie_word_embeddings: bool,
    pub naming: Naming,
    pub max_position_embeddings: usize,
    pub eos_token_ids: Vec<u32>,
    pub bos_token_id: Option<u32>,
}

fn need<T>(value: Option<T>, field: &str, model: &str) -> Result<T> {
    value.ok_or_else(|| PipelineError::Config(format!("{model} needs `{field}`")))
}

/// A token id field: one id, a list of ids, or absent.
pub(crate) fn token_ids(value: &Option<serde_json::Value>) -> Vec<u32> {
    match value {
        Some(serde_json::Value::Number(n)) => {
            n.as_u64().map(|v| vec![v as u32]).unwrap_or_default()
        }
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_u64())
            .map(|v| v as u32)
            .collect(),
        _ => Vec::new(),
    }
}

impl BackboneConfig {
    pub fn from_file(path: &Path) -> Result<BackboneConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| PipelineError::io(path, e))?;
        let raw: RawConfig =
            serde_json::from_str(&text).map_err(|e| PipelineError::bad_file(path, e))?;
        BackboneConfig::from_raw(&raw).map_err(|e| PipelineError::bad_file(path, e))
    }

    pub fn from_raw(raw: &RawConfig) -> Result<BackboneConfig> {
        let model_type = ModelType::parse(&raw.model_type)?;
        let name = raw.model_type.as_str();
        if let Some(act) = raw.hidden_act.as_deref() {
            if act != "silu" && act != "swish" {
                return Err(PipelineError::Config(format!(
                    "hidden_act {act:?} is not supported (silu)"
                )));
            }
        }
        let num_heads = raw.num_attention_heads;
        let num_kv_heads = raw.num_key_value_heads.unwrap_or(num_heads);
        if num_heads == 0 || num_kv_heads == 0 || !num_heads.is_multiple_of(num_kv_heads) {
            return Err(PipelineError::Config(format!(
                "num_attention_heads {num_heads} must be a positive multiple of num_key_value_heads {num_kv_heads}"
            )));
        }
        let head_dim = raw.head_dim.unwrap_or(raw.hidden_size / num_heads);
        let rope_raw = raw
            .rope_parameters
            .clone()
            .or_else(|| raw.rope_scaling.clone())
            .unwrap_or_default();
        let theta = rope_raw.rope_theta.or(raw.rope_theta).unwrap_or(10_000.0);
        let max_pos = raw.max_position_embeddings.unwrap_or(4096);
        let original_max = rope_raw.original_max_position_embeddings.unwrap_or(max_pos);
        let factor = rope_raw.factor.unwrap_or(1.0);
        let scaling = match rope_raw.rope_type.as_deref().unwrap_or("default") {
            "default" => RopeScaling::None,
            "linear" => RopeScaling::Linear { factor },
            "dynamic" => RopeScaling::Dynamic {
                factor,
                original_max,
            },
            "llama3" => RopeScaling::Llama3 {
                factor,
                low_freq_factor: rope_raw.low_freq_factor.unwrap_or(1.0),
                high_freq_factor: rope_raw.high_freq_factor.unwrap_or(4.0),
                original_max,
            },
            "yarn" => RopeScaling::Yarn {
                factor,
                original_max,
                beta_fast: rope_raw.beta_fast.unwrap_or(32.0),
                beta_slow: rope_raw.beta_slow.unwrap_or(1.0),
                mscale: rope_raw.mscale.unwrap_or(1.0),
                mscale_all_dim: rope_raw.mscale_all_dim.unwrap_or(0.0),
            },
            other => {
                return Err(PipelineError::Config(format!(
                    "rope type {other:?} is not supported"
                )))
            }
        };
        let latent = match model_type {
            ModelType::DeepseekV2 => Some(LatentAttention {
                q_lora_rank: raw.q_lora_rank,
                kv_lora_rank: need(raw.kv_lora_rank, "kv_lora_rank", name)?,
                qk_nope_head_dim: need(raw.qk_nope_head_dim, "qk_nope_head_dim", name)?,
                qk_rope_head_dim: need(raw.qk_rope_head_dim, "qk_rope_head_dim", name)?,
                v_head_dim: need(raw.v_head_dim, "v_head_dim", name)?,
            }),
            _ => None,
        };
        let rotary_dim = match &latent {
            Some(l) => l.qk_rope_head_dim,
            None => ((head_dim as f64) * rope_raw.partial_rotary_factor.unwrap_or(1.0)) as usize,
        };
        let rope = Rope {
            theta,
            scaling,
            rotary_dim,
            interleaved: latent.is_some(),
        };
        let attention = match latent {
            Some(l) => AttentionKind::Latent(l),
            None => AttentionKind::Standard {
                qkv_bias: match model_type {
                    ModelType::Qwen2 | ModelType::Qwen2Moe => true,
                    _ => raw.attention_bias.unwrap_or(false),
                },
                o_bias: match model_type {
                    ModelType::Llama
                    | ModelType::Qwen3
                    | ModelType::Qwen3Moe
                    | ModelType::Olmoe => raw.attention_bias.unwrap_or(false),
                    _ => false,
                },
                qk_norm: match model_type {
                    ModelType::Qwen3 | ModelType::Qwen3Moe => QkNorm::PerHead,
                    ModelType::Olmoe => QkNorm::Full,
                    _ => QkNorm::None,
                },
                clip_qkv: raw.clip_qkv,
            },
        };
        let feed_forward = (0..raw.num_hidden_layers)
            .map(|layer| feed_forward_for(raw, model_type, layer))
            .collect::<Result<Vec<_>>>()?;
        let sliding_window = (0..raw.num_hidden_layers)
            .map(|layer| sliding_window_for(raw, model_type, layer))
            .collect();
        Ok(BackboneConfig {
            model_type,
            vocab_size: raw.vocab_size,
            hidden_size: raw.hidden_size,
            num_layers: raw.num_hidden_layers,
            num_heads,
            num_kv_heads,
            head_dim,
            rms_norm_eps: raw.rms_norm_eps,
            rope,
            attention,
            feed_forward,
            sliding_window,
            tie_word_embeddings: raw.tie_word_embeddings.unwrap_or(false),
            naming: if model_type == ModelType::Mixtral {
                Naming::Mixtral
            } else {
                Naming::Standard
            },
            max_position_embeddings: max_pos,
            eos_token_ids: token_ids(&raw.eos_token_id),
            bos_token_id: token_ids(&raw.bos_token_id).first().copied(),
        })
    }

    /// Whether any layer routes tokens through experts.
    pub fn is_moe(&self) -> bool {
        self.feed_forward
            .iter()
            .any(|f| matches!(f, FeedForward::Moe(_)))
    }
}

fn feed_forward_for(raw: &RawConfig, model_type: ModelType, layer: usize) -> Result<FeedForward> {
    let name = raw.model_type.as_str();
    let dense = || {
        Ok(FeedForward::Dense {
            intermediate_size: need(raw.intermediate_size, "intermediate_size", name)?,
        })
    };
    let experts = || {
        need(
            raw.num_experts,
            "num_experts (or num_local_experts, n_routed_experts)",
            name,
        )
    };
    let top_k = || need(raw.num_experts_per_tok, "num_experts_per_tok", name);
    let moe = |intermediate_size: usize,
               norm_topk_prob: bool,
               shared: Option<SharedExperts>,
               routing: Routing,
               scale: f64|
     -> Result<FeedForward> {
        let (num_experts, top_k) = (experts()?, top_k()?);
        if top_k == 0 || top_k > num_experts {
            return Err(PipelineError::Config(format!(
                "num_experts_per_tok {top_k} must be in 1..={num_experts}"
            )));
        }
        Ok(FeedForward::Moe(MoeConfig {
            num_experts,
            top_k,
            intermediate_size,
            norm_topk_prob,
            routing,
            routed_scaling_factor: scale,
            shared,
        }))
    };
    match model_type {
        ModelType::Llama | ModelType::Mistral | ModelType::Qwen2 | ModelType::Qwen3 => dense(),
        ModelType::Mixtral => moe(
            need(raw.intermediate_size, "intermediate_size", name)?,
            true,
            None,
            Routing::Softmax,
            1.0,
        ),
        ModelType::Olmoe => moe(
            need(raw.intermediate_size, "intermediate_size", name)?,
            raw.norm_topk_prob.unwrap_or(false),
            None,
            Routing::Softmax,
            1.0,
        ),
        ModelType::Qwen2Moe | ModelType::Qwen3Moe => {
            let step = raw.decoder_sparse_step.unwrap_or(1).max(1);
            let sparse = !raw
                .mlp_only_layers
                .as_deref()
                .unwrap_or(&[])
                .contains(&layer)
                && raw.num_experts.unwrap_or(0) > 0
                && (layer + 1).is_multiple_of(step);
            if !sparse {
                return dense();
            }
            let shared = match (model_type, raw.shared_expert_intermediate_size) {
                (ModelType::Qwen2Moe, Some(size)) if size > 0 => Some(SharedExperts {
                    intermediate_size: size,
                    gated: true,
                }),
                _ => None,
            };
            // transformers defaults both Qwen MoE configs to false; published
            // Qwen3-MoE checkpoints set it to true explicitly.
            moe(
                need(raw.moe_intermediate_size, "moe_intermediate_size", name)?,
                raw.norm_topk_prob.unwrap_or(false),
                shared,
                Routing::Softmax,
                1.0,
            )
        }
        ModelType::DeepseekV2 => {
            let first_dense = raw.first_k_dense_replace.unwrap_or(0);
            let freq = raw.moe_layer_freq.unwrap_or(1).max(1);
            if raw.num_experts.is_none() || layer < first_dense || !layer.is_multiple_of(freq) {
                return dense();
            }
            let intermediate = need(raw.moe_intermediate_size, "moe_intermediate_size", name)?;
            let shared = raw
                .n_shared_experts
                .filter(|&n| n > 0)
                .map(|n| SharedExperts {
                    intermediate_size: intermediate * n,
                    gated: false,
                });
            let routing = match raw.topk_method.as_deref().unwrap_or("greedy") {
                "greedy" => Routing::Softmax,
                "group_limited_greedy" => Routing::GroupLimited {
                    n_group: need(raw.n_group, "n_group", name)?,
                    topk_group: need(raw.topk_group, "topk_group", name)?,
                },
                other => {
                    return Err(PipelineError::Config(format!(
                        "topk_method {other:?} is not supported"
                    )))
                }
            };
            if let Some(f) = raw.scoring_func.as_deref().filter(|f| *f != "softmax") {
                return Err(PipelineError::Config(format!(
                    "scoring_func {f:?} is not supported (softmax)"
                )));
            }
            moe(
                intermediate,
                raw.norm_topk_prob.unwrap_or(false),
                shared,
                routing,
                raw.routed_scaling_factor.unwrap_or(1.0),
            )
        }
    }
}

fn sliding_window_for(raw: &RawConfig, model_type: ModelType, layer: usize) -> Option<usize> {
    let window = raw.sliding_window?;
    if let Some(types) = &raw.layer_types {
        return (types.get(layer).map(String::as_str) == Some("sliding_attention"))
            .then_some(window);
    }
    match model_type {
        ModelType::Mistral | ModelType::Mixtral => Some(window),
        // Qwen2 family: only when enabled, and only from max_window_layers on.
        ModelType::Qwen2 | ModelType::Qwen2Moe | ModelType::Qwen3 | ModelType::Qwen3Moe => {
            let from = raw.max_window_layers.unwrap_or(0);
            (raw.use_sliding_window.unwrap_or(false) && layer >= from).then_some(window)
        }
        _ => None,
    }
}
