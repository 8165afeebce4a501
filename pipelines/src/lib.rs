//! The shared Mixture-of-Experts backbone, its generation engine, and (as
//! they arrive) the generation tasks built on it.

pub mod backbone;
mod error;
pub mod generate;
pub mod pack;
pub mod tasks;
pub mod tokenizer;

pub use error::{PipelineError, Result};

use std::path::Path;
use std::sync::Arc;

/// A text checkpoint ready to generate: the backbone, its tokenizer and the
/// defaults from `generation_config.json`.
pub struct TextModel {
    pub backbone: Arc<backbone::Backbone>,
    pub tokenizer: Arc<tokenizer::TextTokenizer>,
    pub defaults: tokenizer::GenerationDefaults,
}

impl TextModel {
    /// Loads a Hugging Face checkpoint folder on the CPU.
    pub fn load(dir: &Path) -> Result<TextModel> {
        let device = candle_core::Device::Cpu;
        let defaults = tokenizer::GenerationDefaults::load(dir)?;
        let mut tokenizer = tokenizer::TextTokenizer::load(dir)?;
        tokenizer.add_eos_ids(&defaults.eos_ids());
        Ok(TextModel {
            backbone: Arc::new(backbone::Backbone::load(dir, &device)?),
            tokenizer: Arc::new(tokenizer),
            defaults,
        })
    }

    /// Sampling parameters starting from the checkpoint's defaults.
    pub fn default_params(&self) -> generate::SamplingParams {
        let d = &self.defaults;
        let mut p = generate::SamplingParams::default();
        if d.do_sample == Some(false) {
            p.temperature = 0.0;
        } else if let Some(t) = d.temperature {
            p.temperature = t;
        }
        p.top_p = d.top_p.unwrap_or(p.top_p);
        p.top_k = d.top_k.unwrap_or(p.top_k);
        p.min_p = d.min_p.unwrap_or(p.min_p);
        p.repetition_penalty = d.repetition_penalty.unwrap_or(p.repetition_penalty);
        p
    }

    /// A generation engine serving this model.
    pub fn engine(&self, config: generate::EngineConfig) -> generate::Engine {
        generate::Engine::new(self.backbone.clone(), self.tokenizer.clone(), config)
    }
}
