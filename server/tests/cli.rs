#![allow(clippy::unwrap_used)]
//! `anyforge media info|convert` as a user runs them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn anyforge(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_anyforge"))
        .args(args)
        .output()
        .expect("run anyforge")
}

fn sample(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../assets/samples")
        .join(name)
}

fn info(path: &Path) -> serde_json::Value {
    let out = anyforge(&["media", "info", path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        stdout.lines().count(),
        1,
        "one JSON object on one line: {stdout}"
    );
    serde_json::from_str(&stdout).unwrap()
}

#[test]
fn info_prints_the_fields_of_each_kind() {
    let v = info(&sample("clip.mp4"));
    assert_eq!(
        (v["kind"].as_str(), v["format"].as_str()),
        (Some("video"), Some("mp4"))
    );
    assert_eq!(
        (
            v["width"].as_u64(),
            v["height"].as_u64(),
            v["frames"].as_u64()
        ),
        (Some(96), Some(64), Some(8))
    );
    assert_eq!(
        (v["fps"].as_f64(), v["has_audio"].as_bool()),
        (Some(8.0), Some(true))
    );
    assert!((v["duration_s"].as_f64().unwrap() - 1.0).abs() < 0.05);

    let v = info(&sample("sample.png"));
    assert_eq!(
        (
            v["kind"].as_str(),
            v["width"].as_u64(),
            v["height"].as_u64(),
            v["channels"].as_u64(),
            v["frames"].as_u64()
        ),
        (Some("image"), Some(96), Some(64), Some(3), Some(1))
    );

    let v = info(&sample("tone.wav"));
    assert_eq!(
        (
            v["kind"].as_str(),
            v["sample_rate"].as_u64(),
            v["channels"].as_u64(),
            v["duration_s"].as_f64()
        ),
        (Some("audio"), Some(16000), Some(1), Some(0.5))
    );

    let v = info(&sample("cube.obj"));
    assert_eq!(
        (
            v["kind"].as_str(),
            v["vertices"].as_u64(),
            v["faces"].as_u64()
        ),
        (Some("mesh"), Some(8), Some(12))
    );
    assert_eq!(
        v["bbox"],
        serde_json::json!([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    );
}

#[test]
fn convert_within_each_modality() {
    let dir = tempfile::tempdir().unwrap();
    for (input, output, kind, format) in [
        ("tone.wav", "tone.mp3", "audio", "mp3"),
        ("sample.png", "sample.webp", "image", "webp"),
        ("clip.mp4", "clip.webm", "video", "matroska"),
        ("cube.obj", "cube.glb", "mesh", "glb"),
    ] {
        let out = dir.path().join(output);
        let run = anyforge(&[
            "media",
            "convert",
            sample(input).to_str().unwrap(),
            out.to_str().unwrap(),
        ]);
        assert!(
            run.status.success(),
            "{input}: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        let v = info(&out);
        assert_eq!(
            (v["kind"].as_str(), v["format"].as_str()),
            (Some(kind), Some(format)),
            "{output}"
        );
    }
    // Nothing but the outputs was left in the folder (no temporary files).
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 4);
}

fn fails_with_one_line(args: &[&str], needles: &[&str]) {
    let out = anyforge(args);
    assert!(!out.status.success(), "{args:?} should fail");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "{stderr:?} should contain {needle:?}"
        );
    }
}

#[test]
fn bad_input_is_one_line_naming_the_file_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    // A WAV whose data chunk claims 4 GiB in a file of a few bytes.
    let liar = dir.path().join("liar.wav");
    let mut wav = b"RIFF\xff\xff\xff\xffWAVEfmt \x10\0\0\0\x01\0\x02\0\x44\xac\0\0\x10\xb1\x02\0\x04\0\x10\0data".to_vec();
    wav.extend_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    wav.extend_from_slice(&[0; 64]);
    std::fs::write(&liar, &wav).unwrap();
    fails_with_one_line(
        &["media", "info", liar.to_str().unwrap()],
        &["liar.wav", "data chunk claims 4294967280 bytes"],
    );

    let missing = dir.path().join("missing.wav");
    fails_with_one_line(
        &["media", "info", missing.to_str().unwrap()],
        &["missing.wav", "No such file"],
    );

    let binary = dir.path().join("noise.bin");
    std::fs::write(&binary, [0u8, 1, 2, 3, 0xff, 0xfe, 7, 9]).unwrap();
    fails_with_one_line(
        &["media", "info", binary.to_str().unwrap()],
        &["noise.bin", "unrecognised"],
    );

    let out = dir.path().join("x.mp3");
    fails_with_one_line(
        &[
            "media",
            "convert",
            sample("cube.obj").to_str().unwrap(),
            out.to_str().unwrap(),
        ],
        &["cube.obj", "cannot convert mesh"],
    );
    let out = dir.path().join("x.xyz");
    fails_with_one_line(
        &[
            "media",
            "convert",
            sample("tone.wav").to_str().unwrap(),
            out.to_str().unwrap(),
        ],
        &["x.xyz", "unknown output extension"],
    );
    assert!(!out.exists());
}

#[test]
fn limits_come_from_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let limits = dir.path().join("limits.json");
    std::fs::write(&limits, r#"{"max_audio_seconds": 0.25}"#).unwrap();
    fails_with_one_line(
        &[
            "media",
            "info",
            sample("tone.wav").to_str().unwrap(),
            "--limits",
            limits.to_str().unwrap(),
        ],
        &["tone.wav", "over the limit"],
    );
    std::fs::write(&limits, r#"{"max_audio_secs": 1}"#).unwrap();
    fails_with_one_line(
        &[
            "media",
            "info",
            sample("tone.wav").to_str().unwrap(),
            "--limits",
            limits.to_str().unwrap(),
        ],
        &["limits.json", "max_audio_secs"],
    );
}

fn backbone_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../pipelines/tests/fixtures/backbones")
        .join(name)
}

#[test]
fn complete_prints_an_openai_completion_with_logprobs() {
    let model = backbone_fixture("qwen3_moe");
    let out = anyforge(&[
        "complete",
        "--model",
        model.to_str().unwrap(),
        "--prompt",
        "The quick brown fox",
        "--max-tokens",
        "8",
        "--temperature",
        "0",
        "--ignore-eos",
        "--logprobs",
        "2",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["object"], "text_completion");
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 8);
    assert_eq!(
        v["usage"]["total_tokens"],
        v["usage"]["prompt_tokens"].as_u64().unwrap() + 8
    );
    let logprobs = &choice["logprobs"];
    assert_eq!(logprobs["tokens"].as_array().unwrap().len(), 8);
    assert_eq!(logprobs["top_logprobs"][0].as_object().unwrap().len(), 2);
    // Greedy text is the reference implementation's continuation.
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(backbone_fixture("summary.json")).unwrap())
            .unwrap();
    let expected_ids = &summary["models"]["qwen3_moe"][0]["greedy"];
    let tokenizer = pipelines::tokenizer::TextTokenizer::load(&model).unwrap();
    let ids: Vec<u32> = serde_json::from_value(expected_ids.clone()).unwrap();
    assert_eq!(choice["text"], tokenizer.decode(&ids, true).unwrap());
}

#[test]
fn chat_streams_a_reply_per_line() {
    use std::io::Write;
    let model = backbone_fixture("qwen3_moe");
    let mut child = Command::new(env!("CARGO_BIN_EXE_anyforge"))
        .args([
            "chat",
            "--model",
            model.to_str().unwrap(),
            "--max-tokens",
            "4",
            "--temperature",
            "0",
            "--ignore-eos",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"Make the square green.\nAnd the circle?\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().count(),
        2,
        "one reply line per user line"
    );
}

#[test]
fn complete_refuses_a_missing_model_in_one_line() {
    fails_with_one_line(
        &[
            "complete",
            "--model",
            "/nonexistent/model",
            "--prompt",
            "hi",
        ],
        &["/nonexistent/model"],
    );
}
