#![allow(clippy::unwrap_used)]
//! The official OpenAI Python SDK against `anyforge serve` on loopback.
//! Runs when `ANYFORGE_OPENAI_PYTHON` names a Python with the `openai`
//! package: `.ci/run` installs one; elsewhere the test says it was skipped.

mod common;

use std::path::Path;
use std::process::Command;

#[test]
fn the_openai_python_sdk_talks_to_the_server() {
    let Some(python) = std::env::var_os("ANYFORGE_OPENAI_PYTHON") else {
        eprintln!("skipped: set ANYFORGE_OPENAI_PYTHON to a Python with the openai package (.ci/run does)");
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let server = common::serve(common::free_port(), data.path());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/compat/openai_sdk.py");
    let out = Command::new(python)
        .arg(script)
        .arg(format!("http://127.0.0.1:{}/v1", server.port))
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
