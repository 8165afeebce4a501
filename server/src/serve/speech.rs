//! `/v1/audio/speech`: the whole file in any format, or server-sent
//! `speech.audio.delta` events. Raw `pcm` at speed 1 streams as it is
//! generated (chunks of SNAC frames decoded while later frames are still
//! being written); other formats and speeds need the whole utterance
//! (encoders and time stretching), which is then sent in chunks.

use std::convert::Infallible;

use axum::extract::State;
use axum::http::header;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use modalities::{Audio, Media};
use pipelines::generate::CancelToken;
use pipelines::tasks::{StreamWindow, TaskName, TaskOptions};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use utoipa::ToSchema;

use super::media::{b64, run_task};
use super::{ApiError, ApiJson, ApiResult, Shared};

#[derive(Deserialize, ToSchema)]
pub struct SpeechBody {
    input: String,
    voice: Option<String>,
    /// mp3 (default), opus, aac, flac, wav or pcm (16-bit mono 24 kHz).
    response_format: Option<String>,
    /// 0.5 to 2 (the voice's own rate is 1).
    speed: Option<f32>,
    /// The same seed, the same audio (anyforge's addition).
    seed: Option<u64>,
    #[serde(default)]
    #[allow(dead_code)]
    model: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    instructions: Option<String>,
    /// `audio` (the default) or `sse`: `speech.audio.delta` events with
    /// base64 chunks, then `speech.audio.done`.
    stream_format: Option<String>,
}

#[utoipa::path(post, path = "/v1/audio/speech", tag = "openai", request_body = SpeechBody, responses((status = 200, description = "The audio file in `response_format` (audio/mpeg, audio/ogg, audio/aac, audio/flac, audio/wav, audio/pcm); with `stream_format: sse`, `text/event-stream` of `speech.audio.delta` events then `speech.audio.done`", content_type = "application/octet-stream")))]
pub async fn speech(
    State(state): State<Shared>,
    ApiJson(body): ApiJson<SpeechBody>,
) -> ApiResult<Response> {
    let sse = match body.stream_format.as_deref().unwrap_or("audio") {
        "audio" => false,
        "sse" => true,
        other => {
            return Err(ApiError::invalid(
                "stream_format",
                format!("{other:?} is not audio or sse"),
            ))
        }
    };
    let input_chars = body.input.chars().count();
    if input_chars > state.limits.max_speech_chars {
        return Err(ApiError::invalid(
            "input",
            format!(
                "{input_chars} characters is more than this server's limit of {}",
                state.limits.max_speech_chars
            ),
        ));
    }
    let (ext, mime) = match body.response_format.as_deref().unwrap_or("mp3") {
        "mp3" => ("mp3", "audio/mpeg"),
        "opus" => ("opus", "audio/ogg"),
        "aac" => ("aac", "audio/aac"),
        "flac" => ("flac", "audio/flac"),
        "wav" => ("wav", "audio/wav"),
        "pcm" => ("pcm", "audio/pcm"),
        other => {
            return Err(ApiError::invalid(
                "response_format",
                format!("{other:?} is not mp3, opus, aac, flac, wav or pcm"),
            ))
        }
    };
    let options = TaskOptions {
        prompt: body.input,
        voice: body.voice,
        speed: body.speed.unwrap_or(1.0),
        seed: body.seed,
        ..TaskOptions::default()
    };
    if sse && ext == "pcm" && options.speed == 1.0 {
        return stream_pcm(&state, options, input_chars).await;
    }
    // The task checks `voice` and `speed`, naming them (the error's param).
    let mut outputs = run_task(&state, TaskName::TextToSpeech, options).await?;
    let Some(Media::Audio(audio)) = outputs.pop() else {
        return Err(ApiError::internal("the task returned no audio"));
    };
    let bytes = tokio::task::spawn_blocking(move || -> ApiResult<Vec<u8>> {
        if ext == "pcm" {
            return pcm(&audio);
        }
        let dir = tempfile::tempdir().map_err(ApiError::internal)?;
        let path = dir.path().join(format!("speech.{ext}"));
        audio.write(&path).map_err(ApiError::internal)?;
        std::fs::read(&path).map_err(ApiError::internal)
    })
    .await
    .map_err(ApiError::internal)??;
    if sse {
        let mut events: Vec<Result<Event, Infallible>> =
            bytes.chunks(16 << 10).map(|c| Ok(delta(c))).collect();
        events.push(Ok(done(input_chars, bytes.len())));
        return Ok(Sse::new(tokio_stream::iter(events)).into_response());
    }
    Ok(([(header::CONTENT_TYPE, mime)], bytes).into_response())
}

/// OpenAI's pcm: 16-bit little-endian, mono, 24 kHz.
fn pcm(audio: &Audio) -> ApiResult<Vec<u8>> {
    let mono = audio
        .with_channels(1)
        .resample(24_000)
        .map_err(ApiError::internal)?;
    Ok(mono
        .samples
        .iter()
        .flat_map(|s| ((s.clamp(-1.0, 1.0) * 32767.0) as i16).to_le_bytes())
        .collect())
}

fn delta(bytes: &[u8]) -> Event {
    Event::default().data(json!({"type": "speech.audio.delta", "audio": b64(bytes)}).to_string())
}

fn done(input_chars: usize, output_bytes: usize) -> Event {
    let usage = json!({"input_tokens": input_chars, "output_tokens": output_bytes, "total_tokens": input_chars + output_bytes});
    Event::default().data(json!({"type": "speech.audio.done", "usage": usage}).to_string())
}

/// Sends each decoded chunk as soon as it exists. A client that goes away
/// closes the channel; the worker then drops the stream, which cancels the
/// generation.
async fn stream_pcm(
    state: &Shared,
    options: TaskOptions,
    input_chars: usize,
) -> ApiResult<Response> {
    let worker = state.clone();
    // Started before answering, so a bad request is a 4xx and not an event.
    let stream = tokio::task::spawn_blocking(move || {
        worker
            .runner
            .speech_stream(&options, StreamWindow::default(), &CancelToken::new())
    })
    .await
    .map_err(ApiError::internal)??;
    let (tx, rx) = mpsc::channel::<Event>(4);
    tokio::task::spawn_blocking(move || {
        let mut sent = 0;
        for chunk in stream {
            let event = match chunk.map_err(ApiError::from).and_then(|a| pcm(&a)) {
                Ok(bytes) => {
                    sent += bytes.len();
                    delta(&bytes)
                }
                Err(e) => {
                    let error = json!({"type": "error", "error": {"message": e.message}});
                    let _ = tx.blocking_send(Event::default().data(error.to_string()));
                    return;
                }
            };
            if tx.blocking_send(event).is_err() {
                return;
            }
        }
        let _ = tx.blocking_send(done(input_chars, sent));
    });
    let events = ReceiverStream::new(rx).map(Ok::<_, Infallible>);
    Ok(Sse::new(events).into_response())
}
