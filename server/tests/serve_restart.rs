#![allow(clippy::unwrap_used)]
//! Jobs survive a restart: a video job submitted, the server killed at
//! once, started again on the same data folder; the job completes and its
//! file is served.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(port: u16, data: &Path) -> Server {
    let server = Server(
        Command::new(env!("CARGO_BIN_EXE_anyforge"))
            .args([
                "serve",
                "--addr",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
                data.to_str().unwrap(),
            ])
            .env_remove("ANYFORGE_PACK")
            .env_remove("ANYFORGE_API_KEY")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    while request(port, "GET", "/health", None).map(|r| r.0) != Some(200) {
        assert!(Instant::now() < deadline, "the server did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

/// One HTTP/1.1 exchange: status and body.
fn request(port: u16, method: &str, path: &str, body: Option<&str>) -> Option<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    let body = body.unwrap_or("");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).ok()?;
    s.write_all(body.as_bytes()).ok()?;
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).ok()?;
    let split = reply.windows(4).position(|w| w == b"\r\n\r\n")?;
    let status = std::str::from_utf8(&reply[9..12]).ok()?.parse().ok()?;
    Some((status, reply[split + 4..].to_vec()))
}

fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap()
}

#[test]
fn a_job_submitted_before_a_kill_completes_after_the_restart() {
    let data = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut first = start(port, data.path());
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
    first.0.kill().unwrap();
    first.0.wait().unwrap();

    let _second = start(port, data.path());
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
