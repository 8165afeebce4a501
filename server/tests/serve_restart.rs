#![allow(clippy::unwrap_used)]
//! Jobs survive a restart: a video job submitted, the server killed at
//! once, started again on the same data folder; the job completes and its
//! file is served.

mod common;

use std::time::{Duration, Instant};

use common::{free_port, request, serve};

fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap()
}

#[test]
fn a_job_submitted_before_a_kill_completes_after_the_restart() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut first = serve(port, data.path());
    let (status, body) = request(
        port,
        "POST",
        "/v1/videos",
        Some(r#"{"prompt": "a ball", "seconds": "1", "size": "64x64"}"#),
    )
    .unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let id = json(&body)["id"].as_str().unwrap().to_string();
    // Killed outright: no chance to finish or to tidy up.
    first.child.kill().unwrap();
    first.child.wait().unwrap();

    let _second = serve(port, data.path());
    let deadline = Instant::now() + Duration::from_secs(300);
    let video = loop {
        let (status, body) = request(port, "GET", &format!("/v1/videos/{id}"), None).unwrap();
        assert_eq!(status, 200, "the job is still known after the restart");
        let v = json(&body);
        if !matches!(v["status"].as_str(), Some("queued" | "in_progress")) {
            break v;
        }
        assert!(Instant::now() < deadline, "the job never finished");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(video["status"], "completed", "{video}");
    let (status, mp4) = request(port, "GET", &format!("/v1/videos/{id}/content"), None).unwrap();
    assert_eq!(status, 200);
    assert_eq!(&mp4[4..8], b"ftyp");
}
