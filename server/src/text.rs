//! `anyforge complete` and `anyforge chat`: text generation from a checkpoint folder.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use pipelines::generate::{
    EngineConfig, Event, FinishReason, GenerationRequest, SamplingParams, TokenLogprob,
};
use pipelines::tokenizer::ChatMessage;
use pipelines::TextModel;
use serde_json::json;

/// Sampling flags shared by `complete` and `chat`; unset flags keep the
/// checkpoint's `generation_config.json` defaults.
#[derive(Args, Debug)]
pub struct SamplingFlags {
    #[arg(long, default_value_t = 16)]
    max_tokens: usize,
    #[arg(long)]
    temperature: Option<f32>,
    #[arg(long)]
    top_p: Option<f32>,
    #[arg(long)]
    top_k: Option<usize>,
    #[arg(long)]
    min_p: Option<f32>,
    #[arg(long)]
    repetition_penalty: Option<f32>,
    #[arg(long)]
    presence_penalty: Option<f32>,
    #[arg(long)]
    frequency_penalty: Option<f32>,
    #[arg(long)]
    seed: Option<u64>,
    /// Stop when this string appears (repeatable).
    #[arg(long)]
    stop: Vec<String>,
    #[arg(long)]
    ignore_eos: bool,
}

impl SamplingFlags {
    fn params(&self, model: &TextModel) -> SamplingParams {
        let mut p = model.default_params();
        p.max_tokens = self.max_tokens;
        p.temperature = self.temperature.unwrap_or(p.temperature);
        p.top_p = self.top_p.unwrap_or(p.top_p);
        p.top_k = self.top_k.unwrap_or(p.top_k);
        p.min_p = self.min_p.unwrap_or(p.min_p);
        p.repetition_penalty = self.repetition_penalty.unwrap_or(p.repetition_penalty);
        p.presence_penalty = self.presence_penalty.unwrap_or(p.presence_penalty);
        p.frequency_penalty = self.frequency_penalty.unwrap_or(p.frequency_penalty);
        p.seed = self.seed;
        p.stop = self.stop.clone();
        p.ignore_eos = self.ignore_eos;
        p
    }
}

#[derive(Args, Debug)]
pub struct CompleteArgs {
    /// A Hugging Face checkpoint folder (config.json, *.safetensors, tokenizer.json).
    #[arg(long)]
    model: PathBuf,
    #[arg(long)]
    prompt: String,
    #[command(flatten)]
    sampling: SamplingFlags,
    /// Return this many top alternatives with each token's logprob.
    #[arg(long)]
    logprobs: Option<usize>,
    /// Print an OpenAI completion object instead of streaming text.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct ChatArgs {
    #[arg(long)]
    model: PathBuf,
    /// A system message to start the conversation with.
    #[arg(long)]
    system: Option<String>,
    #[command(flatten)]
    sampling: SamplingFlags,
}

fn load(dir: &std::path::Path) -> Result<TextModel> {
    TextModel::load(dir).with_context(|| format!("loading the model in {}", dir.display()))
}

fn model_name(dir: &std::path::Path) -> String {
    dir.canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "model".into())
}

pub fn complete(args: CompleteArgs) -> Result<()> {
    let model = load(&args.model)?;
    let mut params = args.sampling.params(&model);
    params.logprobs = args.logprobs;
    let prompt = model.tokenizer.encode(&args.prompt, true)?;
    let engine = model.engine(EngineConfig::default());
    let handle = engine.submit(GenerationRequest::new(prompt.clone(), params))?;
    let mut text = String::new();
    let mut logprobs: Vec<TokenLogprob> = Vec::new();
    let mut token_texts: Vec<String> = Vec::new();
    let stdout = std::io::stdout();
    for event in handle {
        match event {
            Event::Token {
                id,
                text: delta,
                logprob,
            } => {
                if !args.json {
                    let mut out = stdout.lock();
                    write!(out, "{delta}")?;
                    out.flush()?;
                }
                text.push_str(&delta);
                token_texts.push(model.tokenizer.token_text(id));
                logprobs.extend(logprob);
            }
            Event::Finished {
                reason,
                usage,
                text: tail,
            } => {
                text.push_str(&tail);
                if !args.json {
                    println!("{tail}");
                    return Ok(());
                }
                let choice_logprobs = args.logprobs.map(|_| {
                    let mut offset = args.prompt.len();
                    let mut offsets = Vec::new();
                    for t in &token_texts {
                        offsets.push(offset);
                        offset += t.len();
                    }
                    json!({
                        "tokens": token_texts,
                        "token_logprobs": logprobs.iter().map(|l| l.logprob).collect::<Vec<_>>(),
                        "top_logprobs": logprobs.iter().map(|l| {
                            l.top.iter().map(|(t, lp)| (model.tokenizer.token_text(*t), json!(lp))).collect::<serde_json::Map<_, _>>()
                        }).collect::<Vec<_>>(),
                        "text_offset": offsets,
                    })
                });
                let created = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let object = json!({
                    "id": format!("cmpl-{created:x}{:04x}", std::process::id() & 0xffff),
                    "object": "text_completion",
                    "created": created,
                    "model": model_name(&args.model),
                    "choices": [{
                        "index": 0,
                        "text": text,
                        "logprobs": choice_logprobs,
                        "finish_reason": finish_reason(reason),
                    }],
                    "usage": {
                        "prompt_tokens": usage.prompt_tokens,
                        "completion_tokens": usage.completion_tokens,
                        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
                    },
                });
                println!("{}", serde_json::to_string(&object)?);
                return Ok(());
            }
            Event::Error(e) => bail!("generation failed: {e}"),
        }
    }
    bail!("generation ended without a result")
}

fn finish_reason(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
        FinishReason::Cancelled => "cancelled",
    }
}

/// A conversation on the terminal: one user line in, the reply streamed out.
pub fn chat(args: ChatArgs) -> Result<()> {
    let model = load(&args.model)?;
    if !model.tokenizer.has_chat_template() {
        bail!(
            "{}: the tokenizer has no chat_template; use `anyforge complete`",
            args.model.display()
        );
    }
    let engine = model.engine(EngineConfig::default());
    let mut messages: Vec<ChatMessage> = args
        .system
        .iter()
        .map(|s| ChatMessage {
            role: "system".into(),
            content: s.clone(),
        })
        .collect();
    let stdin = std::io::stdin();
    let mut err = std::io::stderr();
    loop {
        write!(err, "> ")?;
        err.flush()?;
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            writeln!(err)?;
            return Ok(());
        }
        let line = line.trim_end_matches(['\n', '\r']);
        if line.is_empty() {
            continue;
        }
        messages.push(ChatMessage {
            role: "user".into(),
            content: line.to_owned(),
        });
        let rendered = model.tokenizer.apply_chat_template(&messages, true)?;
        let prompt = model.tokenizer.encode(&rendered, false)?;
        let handle = engine.submit(GenerationRequest::new(prompt, args.sampling.params(&model)))?;
        let mut reply = String::new();
        let mut out = std::io::stdout();
        for event in handle {
            match event {
                Event::Token { text, .. } => {
                    write!(out, "{text}")?;
                    out.flush()?;
                    reply.push_str(&text);
                }
                Event::Finished { text, .. } => {
                    writeln!(out, "{text}")?;
                    reply.push_str(&text);
                    break;
                }
                Event::Error(e) => bail!("generation failed: {e}"),
            }
        }
        messages.push(ChatMessage {
            role: "assistant".into(),
            content: reply,
        });
    }
}
