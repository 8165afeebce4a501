#![allow(clippy::unwrap_used)]
//! Jobs survive a restart: a video job submitted, the server killed at
//! once (or stopped by SIGTERM, which drains), started again on the same
//! data folder; the job completes and its file is served.

mod common;

use std::time::{Duration, Instant};

use common::{free_port, request, serve};

fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap()
}

/// Posts a video job; its id.
fn submit_video(port: u16, body: &str) -> String {
    let (status, reply) = request(port, "POST", "/v1/videos", Some(body)).unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&reply));
    json(&reply)["id"].as_str().unwrap().to_string()
}

/// Polls a video job until it leaves queued / in_progress.
fn wait_for(port: u16, id: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let (status, body) = request(port, "GET", &format!("/v1/videos/{id}"), None).unwrap();
        assert_eq!(status, 200, "the job is still known after the restart");
        let v = json(&body);
        if !matches!(v["status"].as_str(), Some("queued" | "in_progress")) {
            return v;
        }
        assert!(Instant::now() < deadline, "the job never finished");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn sigterm_drains_and_keeps_the_unfinished_job_for_the_next_start() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut first = serve(port, data.path());
    let id = submit_video(
        port,
        r#"{"prompt": "a ball", "seconds": "2", "size": "128x128"}"#,
    );
    let pid = first.child.id().to_string();
    let signalled = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(signalled.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    let exit = loop {
        if let Some(status) = first.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the server did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "a drained server exits cleanly: {exit}");

    let _second = serve(port, data.path());
    let video = wait_for(port, &id);
    assert_eq!(video["status"], "completed", "{video}");
}

#[test]
fn a_job_submitted_before_a_kill_completes_after_the_restart() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut first = serve(port, data.path());
    let id = submit_video(
        port,
        r#"{"prompt": "a ball", "seconds": "1", "size": "64x64"}"#,
    );
    // Killed outright: no chance to finish or to tidy up.
    first.child.kill().unwrap();
    first.child.wait().unwrap();

    let _second = serve(port, data.path());
    let video = wait_for(port, &id);
    assert_eq!(video["status"], "completed", "{video}");
    let (status, mp4) = request(port, "GET", &format!("/v1/videos/{id}/content"), None).unwrap();
    assert_eq!(status, 200);
    assert_eq!(&mp4[4..8], b"ftyp");
}
