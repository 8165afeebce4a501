//! Text tokenization: `tokenizer.json` through the `tokenizers` crate, the
//! chat template from `tokenizer_config.json` rendered with `minijinja`, and
//! the defaults of `generation_config.json`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{PipelineError, Result};

/// One chat message as the templates expect it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
    chat_template: Option<String>,
    bos_token: Option<String>,
    eos_token: Option<String>,
    /// Token ids that end generation: the tokenizer's EOS plus the model's.
    eos_ids: Vec<u32>,
}

/// `bos_token` and friends are a string or an `AddedToken` object.
fn token_text(value: Option<&serde_json::Value>) -> Option<String> {
    match value? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Object(o) => {
            o.get("content").and_then(|c| c.as_str()).map(str::to_owned)
        }
        _ => None,
    }
}

impl TextTokenizer {
    /// Loads `tokenizer.json` and, when present, `tokenizer_config.json`.
    pub fn load(dir: &Path) -> Result<TextTokenizer> {
        let path = dir.join("tokenizer.json");
        if !path.exists() {
            return Err(PipelineError::bad_file(&path, "missing"));
        }
        let inner = tokenizers::Tokenizer::from_file(&path)
            .map_err(|e| PipelineError::bad_file(&path, e))?;
        let config_path = dir.join("tokenizer_config.json");
        let config: serde_json::Value = if config_path.exists() {
            let text = std::fs::read_to_string(&config_path)
                .map_err(|e| PipelineError::io(&config_path, e))?;
            serde_json::from_str(&text).map_err(|e| PipelineError::bad_file(&config_path, e))?
        } else {
            serde_json::Value::Null
        };
        let chat_template = match config.get("chat_template") {
            Some(serde_json::Value::String(t)) => Some(t.clone()),
            // A list of named templates: take "default".
            Some(serde_json::Value::Array(list)) => list
                .iter()
                .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"))
                .and_then(|t| t.get("template")?.as_str().map(str::to_owned)),
            _ => None,
        };
        // Newer checkpoints keep the template in its own file.
        let chat_template =
            chat_template.or_else(|| std::fs::read_to_string(dir.join("chat_template.jinja")).ok());
        let bos_token = token_text(config.get("bos_token"));
        let eos_token = token_text(config.get("eos_token"));
        let eos_ids = eos_token
            .iter()
            .filter_map(|t| inner.token_to_id(t))
            .collect();
        Ok(TextTokenizer {
            inner,
            chat_template,
            bos_token,
            eos_token,
            eos_ids,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Encodes text; `add_special` adds what the tokenizer's post-processor
    /// adds (a BOS token, for many models), as `transformers` does by default.
    pub fn encode(&self, text: &str, add_special: bool) -> Result<Vec<u32>> {
        let encoding = self
            .inner
            .encode(text, add_special)
            .map_err(|e| PipelineError::Tokenizer(e.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }

    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special)
            .map_err(|e| PipelineError::Tokenizer(e.to_string()))
    }

    /// The id of a token by its text (a marker such as `<|image_start|>`).
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The text of one token, as logprobs report it.
    pub fn token_text(&self, id: u32) -> String {
        self.decode(&[id], false).unwrap_or_default()
    }

    pub fn eos_ids(&self) -> &[u32] {
        &self.eos_ids
    }

    /// Adds end-of-sequence ids named elsewhere (`generation_config.json`).
    pub fn add_eos_ids(&mut self, ids: &[u32]) {
        for &id in ids {
            if !self.eos_ids.contains(&id) {
                self.eos_ids.push(id);
            }
        }
    }

    pub fn has_chat_template(&self) -> bool {
        self.chat_template.is_some()
    }

    /// Renders the chat template over `messages`.
    pub fn apply_chat_template(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String> {
        let template = self
            .chat_template
            .as_deref()
            .ok_or_else(|| PipelineError::Template("the tokenizer has no chat_template".into()))?;
        let mut env = minijinja::Environment::new();
        minijinja_contrib::add_to_environment(&mut env);
        // Python string methods (`.strip()`, `.startswith()`) that templates use.
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |message: String| -> std::result::Result<String, minijinja::Error> {
                Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    message,
                ))
            },
        );
        env.add_template("chat", template)
            .map_err(|e| PipelineError::Template(e.to_string()))?;
        let ctx = minijinja::context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos_token.clone().unwrap_or_default(),
            eos_token => self.eos_token.clone().unwrap_or_default(),
        };
        env.get_template("chat")
            .and_then(|t| t.render(ctx))
            .map_err(|e| PipelineError::Template(e.to_string()))
    }
}

/// Turns a growing list of token ids into text deltas, holding back bytes
/// that do not yet form a whole character.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    ids: Vec<u32>,
    emitted: usize,
}

impl StreamDecoder {
    pub fn push(&mut self, tokenizer: &TextTokenizer, id: u32) -> Result<String> {
        self.ids.push(id);
        let text = tokenizer.decode(&self.ids, true)?;
        if text.ends_with('\u{fffd}') || text.len() < self.emitted {
            return Ok(String::new());
        }
        let delta = text[self.emitted..].to_owned();
        self.emitted = text.len();
        Ok(delta)
    }

    /// Whatever is still held back (bytes that never completed a character
    /// come out as U+FFFD), for when generation ends.
    pub fn finish(&mut self, tokenizer: &TextTokenizer) -> Result<String> {
        let text = tokenizer.decode(&self.ids, true)?;
        let delta = text.get(self.emitted..).unwrap_or_default().to_owned();
        self.emitted = text.len();
        Ok(delta)
    }
}

/// `generation_config.json` defaults a request may override.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct GenerationDefaults {
    #[serde(default)]
    pub temperature: Option<f32>,
    #[serde(default)]
    pub top_p: Option<f32>,
    #[serde(default)]
    pub top_k: Option<usize>,
    #[serde(default)]
    pub min_p: Option<f32>,
    #[serde(default)]
    pub repetition_penalty: Option<f32>,
    #[serde(default)]
    pub do_sample: Option<bool>,
    #[serde(default)]
    pub max_new_tokens: Option<usize>,
    #[serde(default)]
    pub eos_token_id: Option<serde_json::Value>,
}

impl GenerationDefaults {
    pub fn load(dir: &Path) -> Result<GenerationDefaults> {
        let path = dir.join("generation_config.json");
        if !path.exists() {
            return Ok(GenerationDefaults::default());
        }
        let text = std::fs::read_to_string(&path).map_err(|e| PipelineError::io(&path, e))?;
        serde_json::from_str(&text).map_err(|e| PipelineError::bad_file(&path, e))
    }

    pub fn eos_ids(&self) -> Vec<u32> {
        crate::backbone::config::token_ids(&self.eos_token_id)
    }
}
