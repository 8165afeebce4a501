#![allow(clippy::unwrap_used)]
//! The official OpenAI Python SDK against `anyforge serve` on loopback.
//! Runs when `ANYFORGE_OPENAI_PYTHON` names a Python with the `openai`
//! package: `.ci/run` installs one; elsewhere the test says it was skipped.

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

fn healthy(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    reply.starts_with("HTTP/1.1 200")
}

#[test]
fn the_openai_python_sdk_talks_to_the_server() {
    let Some(python) = std::env::var_os("ANYFORGE_OPENAI_PYTHON") else {
        eprintln!("skipped: set ANYFORGE_OPENAI_PYTHON to a Python with the openai package (.ci/run does)");
        return;
    };
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = Server(
        Command::new(env!("CARGO_BIN_EXE_anyforge"))
            .args(["serve", "--addr", &format!("127.0.0.1:{port}")])
            .env_remove("ANYFORGE_PACK")
            .env_remove("ANYFORGE_API_KEY")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    while !healthy(port) {
        assert!(Instant::now() < deadline, "the server did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/compat/openai_sdk.py");
    let out = Command::new(python)
        .arg(script)
        .arg(format!("http://127.0.0.1:{port}/v1"))
        .output()
        .unwrap();
    drop(server);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
