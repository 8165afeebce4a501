//! The router in-process (`oneshot`): every endpoint and its errors.
#![allow(clippy::unwrap_used)]

use std::sync::LazyLock;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine as _;
use serde_json::{json, Value};
use tower::ServiceExt;

use super::{router, state, ServeLimits, Shared};

static DATA: LazyLock<tempfile::TempDir> = LazyLock::new(|| tempfile::tempdir().unwrap());
pub(super) static STATE: LazyLock<Shared> = LazyLock::new(|| {
    state(
        &pipelines::pack::random_dir(),
        Some(DATA.path()),
        None,
        ServeLimits::default(),
    )
    .unwrap()
});

pub(super) async fn call(
    state: &Shared,
    method: &str,
    uri: &str,
    body: Option<Value>,
    auth: Option<&str>,
) -> (StatusCode, Vec<u8>, String) {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(key) = auth {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    let request = match body {
        Some(b) => request
            .header("content-type", "application/json")
            .body(Body::from(b.to_string())),
        None => request.body(Body::empty()),
    }
    .unwrap();
    let reply = send(state, request).await;
    (reply.status, reply.bytes, reply.content_type)
}

/// A response, read whole.
pub(super) struct Reply {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub content_type: String,
    pub bytes: Vec<u8>,
}

/// Sends a request through the router in-process.
pub(super) async fn send(state: &Shared, request: Request<Body>) -> Reply {
    let response = router(state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let content_type = headers
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec();
    Reply {
        status,
        headers,
        content_type,
        bytes,
    }
}

/// Waits up to 10 s for the engine to hold no sequence, running or queued;
/// fails with `why` otherwise.
pub(super) async fn wait_engine_idle(state: &Shared, why: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while state.runner.running() > 0 || state.runner.queue_depth() > 0 {
        assert!(std::time::Instant::now() < deadline, "{why}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

pub(super) fn json_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

pub(super) fn b64(s: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(s.as_str().unwrap())
        .unwrap()
}

#[tokio::test]
async fn health_models_and_unknown_routes() {
    let (status, body, _) = call(&STATE, "GET", "/health", None, None).await;
    assert_eq!(
        (status, json_of(&body)["status"].clone()),
        (StatusCode::OK, json!("ok"))
    );
    let (status, body, _) = call(&STATE, "GET", "/v1/models", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json_of(&body)["data"][0]["id"], "anyforge-random");
    let (status, body, _) = call(&STATE, "GET", "/v1/nothing", None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(json_of(&body)["error"]["type"], "not_found_error");
}

#[tokio::test]
async fn chat_answers_plainly_and_streams_server_sent_events() {
    let body = json!({"model": "anyforge-random", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 5, "seed": 1, "n": 2});
    let (status, bytes, _) = call(&STATE, "POST", "/v1/chat/completions", Some(body), None).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    let v = json_of(&bytes);
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"].as_array().unwrap().len(), 2);
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert!(v["usage"]["completion_tokens"].as_u64().unwrap() <= 10);

    let pixel = modalities::Image::filled(16, 16, [255, 0, 0])
        .encode(modalities::Format::Png, None)
        .unwrap();
    let url = format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(pixel)
    );
    let body = json!({"messages": [{"role": "user", "content": [{"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": url}}]}],
        "max_tokens": 4, "stream": true, "seed": 2});
    let (status, bytes, content_type) =
        call(&STATE, "POST", "/v1/chat/completions", Some(body), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("text/event-stream"));
    let text = String::from_utf8(bytes).unwrap();
    let events: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(events.last(), Some(&"[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk"));
    assert!(chunks.last().unwrap()["choices"][0]["finish_reason"].is_string());
}

#[tokio::test]
async fn completions_with_logprobs() {
    let body =
        json!({"prompt": "Once", "max_tokens": 3, "logprobs": 2, "seed": 3, "temperature": 0});
    let (status, bytes, _) = call(&STATE, "POST", "/v1/completions", Some(body), None).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    let v = json_of(&bytes);
    assert_eq!(v["object"], "text_completion");
    let lp = &v["choices"][0]["logprobs"]["content"];
    assert_eq!(
        lp.as_array().unwrap().len(),
        v["usage"]["completion_tokens"].as_u64().unwrap() as usize
    );
    assert_eq!(lp[0]["top_logprobs"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn images_speech_and_meshes_come_back_decodable() {
    let body = json!({"prompt": "a red circle", "n": 2, "size": "64x32", "seed": 4, "output_format": "webp"});
    let (status, bytes, _) = call(&STATE, "POST", "/v1/images/generations", Some(body), None).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    let v = json_of(&bytes);
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    let image = modalities::Image::decode(
        &b64(&v["data"][0]["b64_json"]),
        &modalities::Limits::default(),
    )
    .unwrap();
    assert_eq!((image.width, image.height), (64, 32));

    for (format, mime) in [
        ("wav", "audio/wav"),
        ("mp3", "audio/mpeg"),
        ("flac", "audio/flac"),
        ("pcm", "audio/pcm"),
    ] {
        let body = json!({"input": "Hello.", "voice": "default", "response_format": format, "speed": 1.25});
        let (status, bytes, content_type) =
            call(&STATE, "POST", "/v1/audio/speech", Some(body), None).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "{format}: {}",
            String::from_utf8_lossy(&bytes)
        );
        assert_eq!(content_type, mime);
        assert!(!bytes.is_empty());
        if format == "wav" {
            let audio = modalities::Audio::decode(&bytes, &modalities::Limits::default()).unwrap();
            assert_eq!(audio.sample_rate, 24_000);
        }
    }

    let body = json!({"prompt": "a cube", "format": "glb", "seed": 5});
    let (status, bytes, _) = call(&STATE, "POST", "/v1/meshes", Some(body), None).await;
    assert_eq!(status, StatusCode::OK);
    let v = json_of(&bytes);
    let mesh = modalities::Mesh::decode(
        &b64(&v["data"][0]["b64_json"]),
        Some("glb"),
        &modalities::Limits::default(),
    )
    .unwrap();
    assert_eq!(
        mesh.triangles.len() as u64,
        v["data"][0]["faces"].as_u64().unwrap()
    );
}

#[tokio::test]
async fn bad_requests_get_the_error_envelope_naming_the_field() {
    let cases = [
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": "hi"}], "n": 99}),
            "n",
        ),
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 100000}),
            "max_tokens",
        ),
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://example.com/a.png"}}]}]}),
            "messages.content.image_url",
        ),
        (
            "/v1/images/generations",
            json!({"prompt": "x", "size": "100x100"}),
            "size",
        ),
        (
            "/v1/images/generations",
            json!({"prompt": "x", "response_format": "url"}),
            "response_format",
        ),
        (
            "/v1/audio/speech",
            json!({"input": "hi", "voice": "nobody"}),
            "voice",
        ),
        (
            "/v1/audio/speech",
            json!({"input": "hi", "response_format": "ogg"}),
            "response_format",
        ),
        (
            "/v1/audio/speech",
            json!({"input": "hi", "speed": 4.0}),
            "speed",
        ),
        (
            "/v1/meshes",
            json!({"prompt": "x", "format": "fbx"}),
            "format",
        ),
    ];
    for (uri, body, param) in cases {
        let (status, bytes, _) = call(&STATE, "POST", uri, Some(body), None).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{uri} {param}: {}",
            String::from_utf8_lossy(&bytes)
        );
        let v = json_of(&bytes);
        assert_eq!(v["error"]["param"], param, "{v}");
        assert_eq!(v["error"]["type"], "invalid_request_error");
    }
    let (status, bytes, _) = call(
        &STATE,
        "POST",
        "/v1/chat/completions",
        Some(json!({"messages": "no"})),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(json_of(&bytes)["error"]["message"].is_string());
    let (status, _, _) = call(&STATE, "GET", "/health", None, None).await;
    assert_eq!(status, StatusCode::OK, "still healthy");
}

#[tokio::test]
async fn an_api_key_guards_v1_but_not_health() {
    let guarded = state(
        &pipelines::pack::random_dir(),
        None,
        Some("sekrit".into()),
        ServeLimits::default(),
    )
    .unwrap();
    let (status, bytes, _) = call(&guarded, "GET", "/v1/models", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(json_of(&bytes)["error"]["type"], "authentication_error");
    let (status, _, _) = call(&guarded, "GET", "/v1/models", None, Some("wrong")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = call(&guarded, "GET", "/v1/models", None, Some("sekrit")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = call(&guarded, "GET", "/health", None, None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn workflows_nodes_and_validation_over_http() {
    let (status, bytes, _) = call(&STATE, "GET", "/v1/workflows", None, None).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    let names: Vec<String> = json_of(&bytes)["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["image-edit", "text-to-3d", "text-to-video", "tts"]);
    let (_, bytes, _) = call(&STATE, "GET", "/v1/nodes", None, None).await;
    let nodes = json_of(&bytes);
    assert!(nodes["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n["name"] == "audio.loudness" && n["inputs"][1]["default"] == -16.0));
    let yaml = "name: loop\nsteps:\n  - id: a\n    uses: text.normalize\n    with: { text: \"${{ steps.b.outputs.text }}\" }\n  - id: b\n    uses: text.normalize\n    with: { text: \"${{ steps.a.outputs.text }}\" }\n";
    let (status, bytes, _) = call(
        &STATE,
        "POST",
        "/v1/workflows/validate",
        Some(json!({"yaml": yaml})),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let v = json_of(&bytes);
    assert_eq!(v["valid"], false);
    assert_eq!(
        (
            v["errors"][0]["line"].as_u64(),
            v["errors"][0]["column"].as_u64()
        ),
        (Some(6), Some(9)),
        "at a step on the cycle"
    );
    assert!(v["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("cycle"));
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_report_queue_and_jobs() {
    call(&STATE, "GET", "/v1/models", None, None).await;
    call(&STATE, "GET", "/v1/videos/none", None, None).await;
    let chat =
        json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "stop": []});
    let (status, _, _) = call(&STATE, "POST", "/v1/chat/completions", Some(chat), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, bytes, content_type) = call(&STATE, "GET", "/metrics", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("text/plain"));
    let text = String::from_utf8(bytes).unwrap();
    assert!(
        text.contains("anyforge_http_requests_total{route=\"/v1/models\",status=\"200\"}"),
        "{text}"
    );
    assert!(
        text.contains("anyforge_http_requests_total{route=\"/v1/videos/{id}\",status=\"404\"}"),
        "ids are not labels: {text}"
    );
    assert!(text.contains("anyforge_queue_depth 0"));
    assert!(text.contains("# TYPE anyforge_running_sequences gauge"));
    let generated: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("anyforge_generated_tokens_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(generated >= 1, "{text}");
    assert!(text.contains("# TYPE anyforge_jobs gauge"));
}

#[tokio::test]
async fn a_full_queue_is_answered_429_with_retry_after() {
    let limits = ServeLimits {
        engine: pipelines::generate::EngineConfig {
            max_queue: 0,
            ..Default::default()
        },
        ..ServeLimits::default()
    };
    let full = state(&pipelines::pack::random_dir(), None, None, limits).unwrap();
    let body = json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2});
    let request = Request::builder()
        .method("POST")
        .uri("/v1/chat/completions")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let reply = send(&full, request).await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(reply.headers.get("retry-after").unwrap(), "1");
    let bytes = reply.bytes;
    assert_eq!(json_of(&bytes)["error"]["type"], "rate_limit_error");
    let (status, _, _) = call(&full, "GET", "/health", None, None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn completions_and_speech_stream_as_server_sent_events() {
    let (status, bytes, content_type) = call(
        &STATE,
        "POST",
        "/v1/completions",
        Some(json!({"prompt": "Once", "max_tokens": 3, "stream": true, "seed": 1})),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("text/event-stream"));
    let text = String::from_utf8(bytes).unwrap();
    let events: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(events.last(), Some(&"[DONE]"));
    assert!(events[..events.len() - 1]
        .iter()
        .all(|e| e.contains("\"text_completion\"")));

    let body = json!({"input": "Hello.", "voice": "default", "response_format": "wav", "stream_format": "sse"});
    let (status, bytes, content_type) =
        call(&STATE, "POST", "/v1/audio/speech", Some(body), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("text/event-stream"));
    let text = String::from_utf8(bytes).unwrap();
    let events: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert_eq!(events.last().unwrap()["type"], "speech.audio.done");
    let audio: Vec<u8> = events[..events.len() - 1]
        .iter()
        .flat_map(|e| b64(&e["audio"]))
        .collect();
    let decoded = modalities::Audio::decode(&audio, &modalities::Limits::default()).unwrap();
    assert!(
        decoded.duration_s() > 0.0,
        "the deltas join into the whole file"
    );
    let (status, bytes, _) = call(
        &STATE,
        "POST",
        "/v1/audio/speech",
        Some(json!({"input": "x", "stream_format": "ws"})),
        None,
    )
    .await;
    assert_eq!(
        (status, json_of(&bytes)["error"]["param"].clone()),
        (StatusCode::BAD_REQUEST, json!("stream_format"))
    );
}

mod jobs;
mod serving;
mod uploads;

/// A pack trained on one grid (as `anyforge train` writes them) takes a
/// request's size as the output size in pixels, any size within the limit.
#[tokio::test]
async fn a_pack_of_one_grid_serves_any_size_in_pixels() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&pipelines::pack::random_dir(), dir.path());
    let manifest = dir.path().join("pack.yaml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text.replace(
            "    end: <|image_end|>\n",
            "    end: <|image_end|>\n    grid: [4, 4]\n",
        ),
    )
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    let fixed = state(dir.path(), Some(data.path()), None, ServeLimits::default()).unwrap();
    let body = json!({"prompt": "a red circle", "size": "96x60", "seed": 1});
    let (status, bytes, _) = call(&fixed, "POST", "/v1/images/generations", Some(body), None).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    let v = json_of(&bytes);
    let image = modalities::Image::decode(
        &b64(&v["data"][0]["b64_json"]),
        &modalities::Limits::default(),
    )
    .unwrap();
    assert_eq!((image.width, image.height), (96, 60));
    let body = json!({"prompt": "a red circle", "size": "4096x64"});
    let (status, bytes, _) = call(&fixed, "POST", "/v1/images/generations", Some(body), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(json_of(&bytes)["error"]["param"], "size");
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}
