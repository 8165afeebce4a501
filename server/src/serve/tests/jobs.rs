//! Jobs: videos, workflow runs, idempotency, events and files.
#![allow(clippy::unwrap_used)]

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{json, Value};

use super::uploads::post_form;
use super::{call, json_of, send, STATE};

async fn wait_done(uri: &str) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    loop {
        let (status, bytes, _) = call(&STATE, "GET", uri, None, None).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&bytes)
        );
        let v = json_of(&bytes);
        if !matches!(v["status"].as_str(), Some("queued" | "in_progress")) {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "{uri} never finished");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

async fn post_with_key(uri: &str, body: Value, key: &str) -> (StatusCode, Value) {
    let request = Request::builder()
        .method("POST")
        .uri(uri)
        .header("content-type", "application/json")
        .header("idempotency-key", key)
        .body(Body::from(body.to_string()))
        .unwrap();
    let reply = send(&STATE, request).await;
    (reply.status, json_of(&reply.bytes))
}

#[tokio::test]
async fn videos_are_jobs_that_finish_list_download_and_delete() {
    let body = json!({"prompt": "a ball", "seconds": "0.5", "size": "64x64", "seed": 1});
    let (status, created) = post_with_key("/v1/videos", body.clone(), "video-key-1").await;
    assert_eq!(status, StatusCode::OK, "{created}");
    assert_eq!(created["object"], "video");
    let id = created["id"].as_str().unwrap().to_string();
    let (_, again) = post_with_key("/v1/videos", body, "video-key-1").await;
    assert_eq!(
        again["id"], id,
        "the same key and body return the original job"
    );
    let (status, conflict) =
        post_with_key("/v1/videos", json!({"prompt": "other"}), "video-key-1").await;
    assert_eq!(status, StatusCode::CONFLICT, "{conflict}");

    let done = wait_done(&format!("/v1/videos/{id}")).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["progress"], 100);
    let (status, bytes, content_type) = call(
        &STATE,
        "GET",
        &format!("/v1/videos/{id}/content"),
        None,
        None,
    )
    .await;
    assert_eq!(
        (status, content_type.as_str()),
        (StatusCode::OK, "video/mp4")
    );
    assert_eq!(&bytes[4..8], b"ftyp");
    let (_, bytes, _) = call(&STATE, "GET", "/v1/videos", None, None).await;
    assert!(json_of(&bytes)["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v["id"] == id));
    let (status, _, _) = call(&STATE, "DELETE", &format!("/v1/videos/{id}"), None, None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, bytes, _) = call(&STATE, "GET", &format!("/v1/videos/{id}"), None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(json_of(&bytes)["error"]["type"], "not_found_error");
    let (status, bytes, _) = call(
        &STATE,
        "POST",
        "/v1/videos",
        Some(json!({"prompt": "x", "size": "100x100"})),
        None,
    )
    .await;
    assert_eq!(
        (status, json_of(&bytes)["error"]["param"].clone()),
        (StatusCode::BAD_REQUEST, json!("size"))
    );
}

#[tokio::test]
async fn workflow_runs_are_jobs_with_events_and_files() {
    let (status, bytes, _) = call(
        &STATE,
        "POST",
        "/v1/workflows/runs",
        Some(json!({"workflow": "text-to-3d", "inputs": {"prompt": "a cube"}})),
        None,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    let id = json_of(&bytes)["id"].as_str().unwrap().to_string();
    let done = wait_done(&format!("/v1/jobs/{id}")).await;
    assert_eq!(done["status"], "completed", "{done}");
    let file = &done["files"][0];
    assert_eq!(file["name"], "model.glb");
    let (status, bytes, _) = call(
        &STATE,
        "GET",
        &format!("/v1/files/{}/content", file["id"].as_str().unwrap()),
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&bytes[..4], b"glTF");
    let (_, bytes, content_type) =
        call(&STATE, "GET", &format!("/v1/jobs/{id}/events"), None, None).await;
    assert!(content_type.starts_with("text/event-stream"));
    let text = String::from_utf8(bytes).unwrap();
    assert!(
        text.contains("\"event\":\"finished\"") && text.contains("\"status\":\"completed\""),
        "{text}"
    );

    let cycle = "name: loop\nsteps:\n  - id: a\n    uses: text.normalize\n    with: { text: \"${{ steps.a.outputs.text }}\" }\n";
    for (body, param) in [
        (json!({"yaml": cycle}), "yaml"),
        (json!({"workflow": "../secrets"}), "workflow"),
        (json!({"workflow": "tts", "inputs": {"nope": 1}}), "inputs"),
    ] {
        let (status, bytes, _) = call(&STATE, "POST", "/v1/workflows/runs", Some(body), None).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{}",
            String::from_utf8_lossy(&bytes)
        );
        assert_eq!(json_of(&bytes)["error"]["param"], param);
    }
}

#[tokio::test]
async fn a_video_form_with_a_reference_image_starts_from_it() {
    let png = modalities::Image::filled(64, 64, [0, 90, 200])
        .encode(modalities::Format::Png, None)
        .unwrap();
    let (status, bytes, _) = post_form(
        "/v1/videos",
        &[
            ("prompt", None, b"waves".to_vec()),
            ("seconds", None, b"0.5".to_vec()),
            ("size", None, b"64x64".to_vec()),
            ("input_reference", Some("ref.png"), png),
        ],
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    let id = json_of(&bytes)["id"].as_str().unwrap().to_string();
    let done = wait_done(&format!("/v1/videos/{id}")).await;
    assert_eq!(done["status"], "completed", "{done}");
    let (status, bytes, _) = post_form("/v1/videos", &[("seconds", None, b"1".to_vec())]).await;
    assert_eq!(
        (status, json_of(&bytes)["error"]["param"].clone()),
        (StatusCode::BAD_REQUEST, json!("prompt"))
    );
}

#[tokio::test]
async fn cancelling_a_running_job_stops_its_generation() {
    // Its own server: the shared one's worker may be busy with other tests.
    let data = tempfile::tempdir().unwrap();
    let own = crate::serve::state(
        &pipelines::pack::random_dir(),
        Some(data.path()),
        None,
        crate::serve::ServeLimits::default(),
    )
    .unwrap();
    let body = json!({"prompt": "a long video", "seconds": "2", "size": "128x128"});
    let (status, bytes, _) = call(&own, "POST", "/v1/videos", Some(body), None).await;
    assert_eq!(status, StatusCode::OK);
    let id = json_of(&bytes)["id"].as_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while own.runner.running() == 0 {
        let (_, bytes, _) = call(&own, "GET", &format!("/v1/videos/{id}"), None, None).await;
        let job = json_of(&bytes);
        assert!(
            matches!(job["status"].as_str(), Some("queued" | "in_progress")),
            "{job}"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "the job never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let uri = format!("/v1/jobs/{id}/cancel");
    let (status, _, _) = call(&own, "POST", &uri, None, None).await;
    assert_eq!(status, StatusCode::OK);
    super::wait_engine_idle(&own, "the job's generation ran on after the cancel").await;
    let (_, bytes, _) = call(&own, "GET", &format!("/v1/videos/{id}"), None, None).await;
    assert_eq!(json_of(&bytes)["status"], "cancelled");
}
