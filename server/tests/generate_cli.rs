#![allow(clippy::unwrap_used)]
//! `anyforge generate` as a user runs it.

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn anyforge(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_anyforge"))
        .args(args)
        .env("ANYFORGE_PACK", common::RANDOM_PACK)
        .output()
        .expect("run anyforge")
}

fn summary(args: &[&str]) -> serde_json::Value {
    let out = anyforge(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn generate_writes_the_output_and_prints_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cube.png");
    let args = [
        "generate",
        "--task",
        "text-to-image",
        "--prompt",
        "a cube",
        "--seed",
        "4",
        "--n",
        "2",
        "--size",
        "2x3",
        "--out",
        s(&out),
    ];
    let report = summary(&args);
    assert_eq!(report["task"], "text-to-image");
    assert_eq!(report["seed"], 4);
    assert_eq!(report["tokens_generated"], 2 * (2 * 3 + 2));
    let outputs = report["outputs"].as_array().unwrap();
    assert_eq!(outputs.len(), 2);
    for (i, o) in outputs.iter().enumerate() {
        let path = dir.path().join(format!("cube-{i}.png"));
        assert_eq!(o["path"], s(&path));
        let image = modalities::Image::read(&path, &modalities::Limits::default()).unwrap();
        assert_eq!(
            (o["width"].as_u64(), o["height"].as_u64()),
            (Some(u64::from(image.width)), Some(u64::from(image.height)))
        );
        assert_eq!(image.width * 2, image.height * 3);
    }
    let first = std::fs::read(dir.path().join("cube-0.png")).unwrap();
    summary(&args);
    assert_eq!(
        std::fs::read(dir.path().join("cube-0.png")).unwrap(),
        first,
        "same seed, same bytes"
    );

    let speech = dir.path().join("hello.wav");
    let report = summary(&[
        "generate",
        "--task",
        "text-to-speech",
        "--prompt",
        "Hello.",
        "--seconds",
        "0.5",
        "--out",
        s(&speech),
    ]);
    let seconds = report["outputs"][0]["seconds"].as_f64().unwrap();
    assert!(seconds > 0.0 && seconds <= 0.5 + 0.09, "{seconds}");
    assert!(speech.exists());
}

#[test]
fn generate_refuses_before_working_when_the_request_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let at = |name: &str| dir.path().join(name);
    let cases: [(Vec<String>, &str); 4] = [
        (
            vec![
                "--task".into(),
                "text-to-image".into(),
                "--out".into(),
                s(&at("x.wav")).into(),
            ],
            "makes image",
        ),
        (
            vec![
                "--task".into(),
                "image-edit".into(),
                "--out".into(),
                s(&at("x.png")).into(),
            ],
            "needs an image",
        ),
        (
            vec![
                "--task".into(),
                "text-to-speech".into(),
                "--voice".into(),
                "nobody".into(),
                "--prompt".into(),
                "hi".into(),
                "--out".into(),
                s(&at("x.wav")).into(),
            ],
            "\"nobody\" is not in the pack",
        ),
        (
            vec![
                "--task".into(),
                "text-to-image".into(),
                "--pack".into(),
                s(dir.path()).into(),
                "--out".into(),
                s(&at("x.png")).into(),
            ],
            "pack.yaml",
        ),
    ];
    for (args, want) in cases {
        let mut all = vec!["generate"];
        all.extend(args.iter().map(String::as_str));
        let out = anyforge(&all);
        assert!(!out.status.success(), "{all:?} should fail");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(want), "want {want:?} in {stderr}");
    }
}

/// Issue 8's example as a new user runs it: no `--pack`, so the default
/// (trained starter) pack draws the picture, read back by the evaluation's
/// scene reader.
#[test]
fn the_default_pack_draws_what_it_is_asked() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("a.png");
    let prompt = "a large red circle at the top left on a blue background";
    let run = Command::new(env!("CARGO_BIN_EXE_anyforge"))
        .args(["generate", "--task", "text-to-image", "--prompt", prompt])
        .args(["--seed", "1", "--out", s(&out)])
        .env_remove("ANYFORGE_PACK")
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let image = modalities::Image::read(&out, &modalities::Limits::default()).unwrap();
    assert_eq!((image.width, image.height), (256, 256), "the pack's pixels");
    let reading = training::eval::read::read_scene(&image).expect("a world scene");
    let shown = training::world::Scene {
        background: reading.background,
        objects: reading.objects,
    };
    assert_eq!(shown.prompt(), prompt);
}
