//! `/v1/models`, `/v1/chat/completions` (with SSE streaming) and
//! `/v1/completions`, in OpenAI's request and response shapes.

use std::convert::Infallible;

use axum::extract::State;
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use modalities::{Audio, Image, Media};
use pipelines::generate::{Event, FinishReason, RequestHandle, SamplingParams};
use pipelines::tasks::{Message, Part, TaskInputs, TaskOptions};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_stream::StreamExt;
use utoipa::ToSchema;

use super::{ApiError, ApiJson, ApiResult, Shared};

#[utoipa::path(get, path = "/v1/models", tag = "openai", responses((status = 200, description = "The served model (the pack)", body = ModelList)))]
pub async fn models(State(state): State<Shared>) -> Json<ModelList> {
    Json(ModelList {
        object: "list",
        data: vec![Model {
            id: state.model.clone(),
            object: "model",
            created: state.created,
            owned_by: "anyforge",
        }],
    })
}

#[derive(Serialize, ToSchema)]
pub struct ModelList {
    object: &'static str,
    data: Vec<Model>,
}

#[derive(Serialize, ToSchema)]
pub struct Model {
    /// The pack's name: what requests put in `model`.
    id: String,
    object: &'static str,
    created: u64,
    owned_by: &'static str,
}

#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ContentPart {
    Text { text: String },
    ImageUrl { image_url: ImageUrl },
    InputAudio { input_audio: InputAudio },
}

#[derive(Deserialize, ToSchema)]
struct ImageUrl {
    url: String,
}

#[derive(Deserialize, ToSchema)]
struct InputAudio {
    data: String,
    #[serde(default)]
    #[allow(dead_code)]
    format: Option<String>,
}

#[derive(Deserialize, ToSchema)]
struct ChatMessage {
    role: String,
    #[serde(default)]
    content: Option<Content>,
}

/// Sampling fields shared by chat and completions.
#[derive(Deserialize, Default, ToSchema)]
pub struct Sampling {
    max_tokens: Option<usize>,
    max_completion_tokens: Option<usize>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    n: Option<usize>,
    #[serde(default)]
    stream: bool,
    stop: Option<Stop>,
    seed: Option<u64>,
    presence_penalty: Option<f32>,
    frequency_penalty: Option<f32>,
}

#[derive(Deserialize, ToSchema)]
pub struct ChatBody {
    #[serde(default)]
    #[allow(dead_code)]
    model: Option<String>,
    messages: Vec<ChatMessage>,
    #[serde(flatten)]
    sampling: Sampling,
    #[serde(default)]
    logprobs: bool,
    top_logprobs: Option<usize>,
}

#[derive(Deserialize, ToSchema)]
pub struct CompletionBody {
    #[serde(default)]
    #[allow(dead_code)]
    model: Option<String>,
    prompt: String,
    #[serde(flatten)]
    sampling: Sampling,
    logprobs: Option<usize>,
}

fn decode_base64(field: &str, data: &str) -> ApiResult<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|e| ApiError::invalid(field, format!("not base64: {e}")))
}

/// `data:image/png;base64,...` as an image.
fn data_url_image(url: &str, limits: &modalities::Limits) -> ApiResult<Image> {
    let field = "messages.content.image_url";
    let data = url
        .strip_prefix("data:")
        .and_then(|rest| rest.split_once(";base64,"))
        .map(|(_, d)| d)
        .ok_or_else(|| {
            ApiError::invalid(
                field,
                "only data: URLs (base64) are read; the server fetches nothing",
            )
        })?;
    Image::decode(&decode_base64(field, data)?, limits).map_err(|e| ApiError::invalid(field, e))
}

fn messages(body: Vec<ChatMessage>, limits: &modalities::Limits) -> ApiResult<Vec<Message>> {
    body.into_iter()
        .map(|m| {
            let parts = match m.content {
                None => Vec::new(),
                Some(Content::Text(t)) => vec![Part::Text(t)],
                Some(Content::Parts(parts)) => parts
                    .into_iter()
                    .map(|p| match p {
                        ContentPart::Text { text } => Ok(Part::Text(text)),
                        ContentPart::ImageUrl { image_url } => Ok(Part::Media(Media::Image(
                            data_url_image(&image_url.url, limits)?,
                        ))),
                        ContentPart::InputAudio { input_audio } => {
                            let field = "messages.content.input_audio";
                            let bytes = decode_base64(field, &input_audio.data)?;
                            let audio = Audio::decode(&bytes, limits)
                                .map_err(|e| ApiError::invalid(field, e))?;
                            Ok(Part::Media(Media::Audio(audio)))
                        }
                    })
                    .collect::<ApiResult<_>>()?,
            };
            Ok(Message {
                role: m.role,
                parts,
            })
        })
        .collect()
}

impl Sampling {
    fn n(&self, state: &Shared) -> ApiResult<usize> {
        let n = self.n.unwrap_or(1);
        if n == 0 || n > state.limits.max_n {
            return Err(ApiError::invalid(
                "n",
                format!("{n} is not in 1..={}", state.limits.max_n),
            ));
        }
        Ok(n)
    }

    fn max_tokens(&self, state: &Shared) -> ApiResult<Option<usize>> {
        let max = self.max_completion_tokens.or(self.max_tokens);
        match max {
            Some(m) if m == 0 || m > state.limits.max_tokens => Err(ApiError::invalid(
                "max_tokens",
                format!("{m} is not in 1..={}", state.limits.max_tokens),
            )),
            other => Ok(other),
        }
    }

    fn apply(&self, params: &mut SamplingParams) {
        if let Some(t) = self.temperature {
            params.temperature = t;
        }
        if let Some(p) = self.top_p {
            params.top_p = p;
        }
        params.presence_penalty = self.presence_penalty.unwrap_or(0.0);
        params.frequency_penalty = self.frequency_penalty.unwrap_or(0.0);
        params.stop = match &self.stop {
            None => Vec::new(),
            Some(Stop::One(s)) => vec![s.clone()],
            Some(Stop::Many(v)) => v.clone(),
        };
    }
}

fn finish_reason(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop | FinishReason::Cancelled => "stop",
        FinishReason::Length => "length",
    }
}

/// `n` generations of one prompt, choice `i` seeded `seed + i`, batched by
/// the engine.
fn submit_n(
    state: &Shared,
    prompt: &[u32],
    params: &SamplingParams,
    seed: Option<u64>,
    n: usize,
) -> ApiResult<Vec<RequestHandle>> {
    (0..n as u64)
        .map(|i| {
            let mut p = params.clone();
            p.seed = seed.map(|s| s.wrapping_add(i));
            Ok(state.runner.submit_text(prompt.to_vec(), p)?)
        })
        .collect()
}

/// What one choice's stream delivers to the handler.
enum Delta {
    Token {
        choice: usize,
        text: String,
        logprob: Option<pipelines::generate::TokenLogprob>,
    },
    Done {
        choice: usize,
        reason: FinishReason,
        text: String,
        completion_tokens: usize,
    },
    Failed(String),
}

/// Bridges the engine's blocking event streams into the async world: one
/// thread per choice; when the client goes away, sends fail and dropping
/// the handle cancels the generation.
fn pump(handles: Vec<RequestHandle>) -> mpsc::UnboundedReceiver<Delta> {
    let (tx, rx) = mpsc::unbounded_channel();
    for (choice, handle) in handles.into_iter().enumerate() {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for event in handle {
                let delta = match event {
                    Event::Token { text, logprob, .. } => Delta::Token {
                        choice,
                        text,
                        logprob,
                    },
                    Event::Finished {
                        reason,
                        usage,
                        text,
                    } => Delta::Done {
                        choice,
                        reason,
                        text,
                        completion_tokens: usage.completion_tokens,
                    },
                    Event::Error(e) => Delta::Failed(e),
                };
                if tx.send(delta).is_err() {
                    return;
                }
            }
        });
    }
    rx
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn request_id(prefix: &str) -> String {
    format!(
        "{prefix}-{:016x}",
        pipelines::generate::sampling::entropy_seed()
    )
}

fn logprob_json(state: &Shared, lp: &pipelines::generate::TokenLogprob) -> Value {
    let tokenizer = &state.runner.pack().model.tokenizer;
    json!({
        "token": tokenizer.token_text(lp.token),
        "logprob": lp.logprob,
        "top_logprobs": lp.top.iter().map(|(t, l)| json!({"token": tokenizer.token_text(*t), "logprob": l})).collect::<Vec<_>>(),
    })
}

struct Collected {
    text: String,
    reason: FinishReason,
    logprobs: Vec<Value>,
    completion_tokens: usize,
}

async fn collect(
    state: &Shared,
    mut rx: mpsc::UnboundedReceiver<Delta>,
    n: usize,
) -> ApiResult<Vec<Collected>> {
    let mut out: Vec<Collected> = (0..n)
        .map(|_| Collected {
            text: String::new(),
            reason: FinishReason::Stop,
            logprobs: Vec::new(),
            completion_tokens: 0,
        })
        .collect();
    let mut finished = 0;
    while finished < n {
        match rx.recv().await {
            Some(Delta::Token {
                choice,
                text,
                logprob,
            }) => {
                out[choice].text.push_str(&text);
                if let Some(lp) = logprob {
                    out[choice].logprobs.push(logprob_json(state, &lp));
                }
            }
            Some(Delta::Done {
                choice,
                reason,
                text,
                completion_tokens,
            }) => {
                out[choice].text.push_str(&text);
                out[choice].reason = reason;
                out[choice].completion_tokens = completion_tokens;
                finished += 1;
            }
            Some(Delta::Failed(e)) => return Err(ApiError::internal(e)),
            None => return Err(ApiError::internal("generation stopped")),
        }
    }
    Ok(out)
}

#[utoipa::path(post, path = "/v1/chat/completions", tag = "openai", request_body = ChatBody, responses((status = 200, description = "A `chat.completion` object; with `stream: true`, server-sent `chat.completion.chunk` events ending with `data: [DONE]`")))]
pub async fn chat_completions(
    State(state): State<Shared>,
    ApiJson(body): ApiJson<ChatBody>,
) -> ApiResult<Response> {
    let n = body.sampling.n(&state)?;
    if body
        .top_logprobs
        .is_some_and(|k| k > pipelines::generate::sampling::MAX_LOGPROBS)
    {
        return Err(ApiError::invalid(
            "top_logprobs",
            format!("at most {}", pipelines::generate::sampling::MAX_LOGPROBS),
        ));
    }
    let options = TaskOptions {
        max_tokens: body.sampling.max_tokens(&state)?,
        seed: body.sampling.seed,
        temperature: body.sampling.temperature,
        top_p: body.sampling.top_p,
        ..TaskOptions::default()
    };
    let inputs = TaskInputs {
        messages: messages(body.messages, &state.limits.media)?,
        ..TaskInputs::default()
    };
    let (prompt, mut params) = state.runner.chat_prompt(&options, &inputs)?;
    body.sampling.apply(&mut params);
    params.logprobs = body.logprobs.then(|| body.top_logprobs.unwrap_or(0));
    let prompt_tokens = prompt.len();
    let rx = pump(submit_n(&state, &prompt, &params, body.sampling.seed, n)?);
    let id = request_id("chatcmpl");
    let created = unix_now();
    if body.sampling.stream {
        let model = state.model.clone();
        let first: Vec<Result<SseEvent, Infallible>> = (0..n)
            .map(|i| {
                let chunk = json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                    "choices": [{"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]});
                Ok(SseEvent::default().data(chunk.to_string()))
            })
            .collect();
        let (id2, model2) = (id.clone(), model.clone());
        let events = UnboundedReceiverStream::new(rx).map(move |d| {
            let choice = match d {
                Delta::Token { choice, text, .. } => json!({"index": choice, "delta": {"content": text}, "finish_reason": null}),
                Delta::Done { choice, reason, text, .. } => {
                    json!({"index": choice, "delta": {"content": text}, "finish_reason": finish_reason(reason)})
                }
                Delta::Failed(e) => return Ok(SseEvent::default().data(json!({"error": {"message": e, "type": "server_error"}}).to_string())),
            };
            let chunk = json!({"id": id2, "object": "chat.completion.chunk", "created": created, "model": model2, "choices": [choice]});
            Ok(SseEvent::default().data(chunk.to_string()))
        });
        let done = tokio_stream::once(Ok(SseEvent::default().data("[DONE]")));
        let stream = tokio_stream::iter(first).chain(events).chain(done);
        return Ok(Sse::new(stream).into_response());
    }
    let choices = collect(&state, rx, n).await?;
    let completion_tokens: usize = choices.iter().map(|c| c.completion_tokens).sum();
    let choices: Vec<Value> = choices
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            json!({
                "index": i,
                "message": {"role": "assistant", "content": c.text},
                "finish_reason": finish_reason(c.reason),
                "logprobs": body.logprobs.then(|| json!({"content": c.logprobs})),
            })
        })
        .collect();
    Ok(Json(json!({
        "id": id, "object": "chat.completion", "created": created, "model": state.model,
        "choices": choices,
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens},
    }))
    .into_response())
}

#[utoipa::path(post, path = "/v1/completions", tag = "openai", request_body = CompletionBody, responses((status = 200, description = "A `text_completion` object; with `stream: true`, server-sent chunks ending with `data: [DONE]`")))]
pub async fn completions(
    State(state): State<Shared>,
    ApiJson(body): ApiJson<CompletionBody>,
) -> ApiResult<Response> {
    let n = body.sampling.n(&state)?;
    let tokenizer = &state.runner.pack().model.tokenizer;
    let prompt = tokenizer.encode(&body.prompt, true)?;
    let mut params = state.runner.pack().model.default_params();
    params.max_tokens = body.sampling.max_tokens(&state)?.unwrap_or(16);
    body.sampling.apply(&mut params);
    params.logprobs = body.logprobs;
    let rx = pump(submit_n(&state, &prompt, &params, body.sampling.seed, n)?);
    if body.sampling.stream {
        let (id, model, created) = (request_id("cmpl"), state.model.clone(), unix_now());
        let events = UnboundedReceiverStream::new(rx).map(move |d| {
            let choice = match d {
                Delta::Token { choice, text, .. } => json!({"index": choice, "text": text, "finish_reason": null}),
                Delta::Done { choice, reason, text, .. } => json!({"index": choice, "text": text, "finish_reason": finish_reason(reason)}),
                Delta::Failed(e) => return Ok(SseEvent::default().data(json!({"error": {"message": e, "type": "server_error"}}).to_string())),
            };
            let chunk = json!({"id": id, "object": "text_completion", "created": created, "model": model, "choices": [choice]});
            Ok::<_, Infallible>(SseEvent::default().data(chunk.to_string()))
        });
        let done = tokio_stream::once(Ok(SseEvent::default().data("[DONE]")));
        return Ok(Sse::new(events.chain(done)).into_response());
    }
    let choices = collect(&state, rx, n).await?;
    let completion_tokens: usize = choices.iter().map(|c| c.completion_tokens).sum();
    let choices: Vec<Value> = choices
        .into_iter()
        .enumerate()
        .map(|(i, c)| json!({"index": i, "text": c.text, "finish_reason": finish_reason(c.reason), "logprobs": body.logprobs.map(|_| json!({"content": c.logprobs}))}))
        .collect();
    Ok(Json(json!({
        "id": request_id("cmpl"), "object": "text_completion", "created": unix_now(), "model": state.model,
        "choices": choices,
        "usage": {"prompt_tokens": prompt.len(), "completion_tokens": completion_tokens, "total_tokens": prompt.len() + completion_tokens},
    }))
    .into_response())
}
