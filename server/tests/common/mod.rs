//! Shared by the CLI tests: the random-weight pack's path, and a served
//! pack for the tests that talk to `anyforge serve` over loopback (started
//! on a free port, killed when dropped).
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The random-weight pack with every task (the default pack is the trained
/// starter pack, whose tasks are its world's).
pub const RANDOM_PACK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../assets/packs/random");

pub struct Server {
    pub child: Child,
    pub port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `anyforge serve` on `port` with jobs in `data`, once healthy.
pub fn serve(port: u16, data: &Path) -> Server {
    let child = Command::new(env!("CARGO_BIN_EXE_anyforge"))
        .args([
            "serve",
            "--addr",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
            data.to_str().unwrap(),
        ])
        .env("ANYFORGE_PACK", RANDOM_PACK)
        .env_remove("ANYFORGE_API_KEY")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server { child, port };
    let deadline = Instant::now() + Duration::from_secs(120);
    while request(port, "GET", "/health", None).map(|r| r.0) != Some(200) {
        assert!(Instant::now() < deadline, "the server did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

/// One HTTP/1.1 exchange: status and body.
pub fn request(port: u16, method: &str, path: &str, body: Option<&str>) -> Option<(u16, Vec<u8>)> {
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
    let status = std::str::from_utf8(reply.get(9..12)?).ok()?.parse().ok()?;
    Some((status, reply[split + 4..].to_vec()))
}
