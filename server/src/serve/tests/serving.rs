//! Serving properly: the OpenAPI document, body limits, request ids,
//! cancellation on disconnect, draining and starting.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{json, Value};
use tower::ServiceExt;

use super::{call, json_of, send, wait_engine_idle, STATE};
use crate::serve::{state, ServeLimits};

#[tokio::test]
async fn the_openapi_document_covers_every_route_and_its_references_resolve() {
    let (status, bytes, _) = call(&STATE, "GET", "/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let doc = json_of(&bytes);
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().unwrap();
    let mut operations = 0;
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            operations += 1;
            assert!(
                op["responses"]["4XX"].is_object(),
                "{method} {path}: no error envelope"
            );
            // Every documented operation is routed: not the fallback, not 405.
            let uri = path.replace("{id}", "job_0");
            let request = Request::builder()
                .method(method.to_uppercase().as_str())
                .uri(&uri)
                .header("content-type", "application/json")
                .body(Body::from("{}"))
                .unwrap();
            let reply = send(&STATE, request).await;
            let text = String::from_utf8_lossy(&reply.bytes);
            assert_ne!(
                reply.status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}"
            );
            assert!(
                !text.contains("no such endpoint"),
                "{method} {path} is not routed"
            );
        }
    }
    // Every route of `router` (24 methods on 22 paths) is documented.
    assert_eq!(operations, 24, "{:?}", paths.keys().collect::<Vec<_>>());
    // Every reference points at a schema of the document.
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(refs.len() > 20);
    for r in refs {
        let name = r.strip_prefix("#/components/schemas/").unwrap();
        assert!(schemas.contains_key(name), "dangling $ref {r}");
    }
    // The request types are the handlers' own: required fields and all.
    // (A flattened part makes the schema an `allOf`.)
    let required = |schema: &str| -> Vec<Value> {
        let s = &schemas[schema];
        let parts = s["allOf"]
            .as_array()
            .cloned()
            .unwrap_or_else(|| vec![s.clone()]);
        parts
            .iter()
            .flat_map(|p| p["required"].as_array().cloned().unwrap_or_default())
            .collect()
    };
    assert_eq!(required("ChatBody"), [json!("messages")]);
    assert_eq!(required("ImageBody"), [json!("prompt")]);
    assert_eq!(required("SpeechBody"), [json!("input")]);
    let chat = &paths["/v1/chat/completions"]["post"]["requestBody"]["content"]["application/json"];
    assert_eq!(chat["schema"]["$ref"], "#/components/schemas/ChatBody");
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r.clone()),
                    _ => collect_refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

fn post_raw(uri: &str, content_type: &str, body: impl Into<Body>) -> Request<Body> {
    Request::builder()
        .method("POST")
        .uri(uri)
        .header("content-type", content_type)
        .body(body.into())
        .unwrap()
}

#[tokio::test]
async fn bodies_too_large_too_deep_or_not_json_are_refused_and_the_server_lives_on() {
    let limits = ServeLimits {
        max_body_bytes: 4096,
        max_json_depth: 8,
        ..ServeLimits::default()
    };
    let small = state(&pipelines::pack::random_dir(), None, None, limits).unwrap();
    let huge = json!({"prompt": "x".repeat(10_000)}).to_string();
    let reply = send(
        &small,
        post_raw("/v1/completions", "application/json", huge),
    )
    .await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(String::from_utf8_lossy(&reply.bytes).contains("4096"));

    // Nesting far past serde's own recursion limit is refused before parsing.
    let deep = format!(
        r#"{{"prompt": "x", "stop": {}{}}}"#,
        "[".repeat(2000),
        "]".repeat(2000)
    );
    let reply = send(
        &small,
        post_raw("/v1/completions", "application/json", deep),
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let message = json_of(&reply.bytes)["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains("2001 levels") && message.contains("limit is 8"),
        "{message}"
    );

    let reply = send(&small, post_raw("/v1/completions", "text/plain", "{}")).await;
    assert_eq!(reply.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // A wrong type deep in the body names its path.
    let bad = json!({"messages": [{"role": "user", "content": 5}]}).to_string();
    let reply = send(
        &small,
        post_raw("/v1/chat/completions", "application/json", bad),
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        json_of(&reply.bytes)["error"]["param"],
        "messages[0].content"
    );

    let (status, _, _) = call(&small, "GET", "/health", None, None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn media_limits_come_from_configuration() {
    let limits = ServeLimits {
        max_image_side: 64,
        max_video_seconds: 2.0,
        max_speech_chars: 10,
        ..ServeLimits::default()
    };
    let data = tempfile::tempdir().unwrap();
    let tight = state(
        &pipelines::pack::random_dir(),
        Some(data.path()),
        None,
        limits,
    )
    .unwrap();
    let cases = [
        (
            "/v1/images/generations",
            json!({"prompt": "x", "size": "128x128"}),
            "size",
        ),
        (
            "/v1/videos",
            json!({"prompt": "x", "seconds": "3"}),
            "seconds",
        ),
        (
            "/v1/audio/speech",
            json!({"input": "far more than ten characters"}),
            "input",
        ),
    ];
    for (uri, body, param) in cases {
        let (status, bytes, _) = call(&tight, "POST", uri, Some(body), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
        let v = json_of(&bytes);
        assert_eq!(v["error"]["param"], param, "{v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains("limit"),
            "{v}"
        );
    }
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_keeps_the_clients() {
    let reply = send(
        &STATE,
        Request::builder()
            .uri("/health")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let id = reply.headers["x-request-id"].to_str().unwrap();
    assert!(id.starts_with("req_") && id.len() == 20, "{id}");
    let reply = send(
        &STATE,
        Request::builder()
            .uri("/v1/nowhere")
            .header("x-request-id", "client-42")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.headers["x-request-id"], "client-42");
}

/// Four 512x512 images: seconds of generation on the random pack.
fn long_image_request() -> Request<Body> {
    let body = json!({"prompt": "a long job", "n": 4, "size": "512x512"}).to_string();
    post_raw("/v1/images/generations", "application/json", body)
}

/// Regression for the open end of issue 7: a client that hangs up on a
/// media request used to leave its generation running to the end.
#[tokio::test]
async fn a_client_that_disconnects_cancels_its_generation() {
    let own = state(
        &pipelines::pack::random_dir(),
        None,
        None,
        ServeLimits::default(),
    )
    .unwrap();
    let request = long_image_request();
    // The client gives up after a moment: the response future is dropped.
    let app = crate::serve::router(own.clone());
    let outcome = tokio::time::timeout(Duration::from_millis(500), app.oneshot(request)).await;
    assert!(
        outcome.is_err(),
        "the request finished before the client left"
    );
    assert!(
        own.runner.running() > 0 || own.runner.queue_depth() > 0,
        "the generation was in the engine"
    );
    wait_engine_idle(&own, "the generation ran on after the disconnect").await;
}

#[tokio::test]
async fn a_draining_server_refuses_new_work_and_cancels_what_outlives_the_deadline() {
    let own = state(
        &pipelines::pack::random_dir(),
        None,
        None,
        ServeLimits::default(),
    )
    .unwrap();
    let app = crate::serve::router(own.clone());
    let in_flight = tokio::spawn(app.oneshot(long_image_request()));
    while own.runner.running() == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    own.drain.begin();
    let reply = send(
        &own,
        Request::builder()
            .uri("/v1/models")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(reply.headers.contains_key("retry-after"));
    let (status, bytes, _) = call(&own, "GET", "/health", None, None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(json_of(&bytes)["status"], "draining");
    // The deadline passes: the request in flight is answered 503 and its
    // generation leaves the engine.
    own.drain.expire();
    let response = in_flight.await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    wait_engine_idle(&own, "the generation outlived the drain").await;
}

#[tokio::test]
async fn a_starting_server_answers_503_until_the_pack_is_loaded() {
    let loaded = std::sync::Arc::new(std::sync::OnceLock::new());
    let app = crate::serve::starting_router(loaded.clone());
    let get = || {
        Request::builder()
            .uri("/v1/models")
            .body(Body::empty())
            .unwrap()
    };
    let response = app.clone().oneshot(get()).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "1");
    let state = STATE.clone();
    let _ = loaded.set(crate::serve::Loaded {
        app: crate::serve::router(state.clone()),
        state,
    });
    let response = app.oneshot(get()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn speech_in_pcm_streams_chunks_that_join_into_the_whole_audio() {
    let body = |stream: bool| {
        let mut b =
            json!({"input": "Hello there, this is streamed.", "response_format": "pcm", "seed": 3});
        if stream {
            b["stream_format"] = json!("sse");
        }
        b
    };
    let (status, whole, _) =
        call(&STATE, "POST", "/v1/audio/speech", Some(body(false)), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, bytes, content_type) =
        call(&STATE, "POST", "/v1/audio/speech", Some(body(true)), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("text/event-stream"));
    let events: Vec<Value> = String::from_utf8(bytes)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let (done, deltas) = events.split_last().unwrap();
    assert_eq!(done["type"], "speech.audio.done", "{done}");
    // Chunks of 8 SNAC frames (0.68 s) each: several for this utterance.
    assert!(deltas.len() >= 2, "{} deltas", deltas.len());
    let streamed: Vec<u8> = deltas
        .iter()
        .flat_map(|e| super::b64(&e["audio"]))
        .collect();
    assert_eq!(done["usage"]["output_tokens"], streamed.len());
    assert_eq!(streamed.len(), whole.len());
    let samples = |b: &[u8]| -> Vec<i16> {
        b.chunks_exact(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]))
            .collect()
    };
    let off = samples(&streamed)
        .iter()
        .zip(samples(&whole))
        .map(|(a, b)| (i32::from(*a) - i32::from(b)).abs())
        .max()
        .unwrap();
    // Chunks are decoded with two frames of context a side, not the whole
    // utterance: samples may differ slightly near chunk edges (1e-3 of
    // full scale at most).
    assert!(off <= 33, "streamed pcm is {off} LSB off the whole decode");
}
