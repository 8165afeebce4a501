#![allow(clippy::unwrap_used)]
//! `anyforge run` and `anyforge workflow ...` as a user runs them.

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

fn repo(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
        .to_str()
        .unwrap()
        .to_owned()
}

#[test]
fn the_published_schema_is_the_one_the_binary_prints() {
    let out = anyforge(&["workflow", "schema"]);
    assert!(out.status.success());
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let published: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo("docs/workflow.schema.json")).unwrap())
            .unwrap();
    assert_eq!(
        printed, published,
        "regenerate: anyforge workflow schema > docs/workflow.schema.json"
    );
    let uses = &printed["$defs"]["StepSpec"]["properties"]["uses"]["enum"];
    assert!(uses
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n == "text-to-speech"));
}

#[test]
fn validate_names_the_line_and_column_and_nodes_lists_ports() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        "name: bad\nsteps:\n  - id: a\n    uses: audio.loudness\n    with: { audio: 3 }\n",
    )
    .unwrap();
    let out = anyforge(&["workflow", "validate", file.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("\n5:20: audio: audio values come from"),
        "one problem per line, with its place: {stderr}"
    );
    for name in [
        "tts.yaml",
        "text-to-video.yaml",
        "image-edit.yaml",
        "text-to-3d.yaml",
    ] {
        let out = anyforge(&[
            "workflow",
            "validate",
            &repo(&format!("assets/workflows/{name}")),
        ]);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = anyforge(&["workflow", "nodes"]);
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        listing.contains("audio.loudness") && listing.contains("in  target: number = -16.0"),
        "{listing}"
    );
}

#[test]
fn run_writes_the_outputs_into_the_folder_and_reports_them() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    let cache = dir.path().join("cache");
    let args = [
        "run",
        &repo("assets/workflows/text-to-3d.yaml"),
        "--set",
        "prompt=a cube",
        "--out",
        out_dir.to_str().unwrap(),
        "--cache",
        cache.to_str().unwrap(),
    ];
    let out = anyforge(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let written = &summary["outputs"][0];
    let path = out_dir.join("model.glb");
    assert_eq!(written["path"], path.to_str().unwrap());
    let mesh = modalities::Mesh::read(&path, &modalities::Limits::default()).unwrap();
    assert!(!mesh.triangles.is_empty());
    let entries: Vec<_> = std::fs::read_dir(&out_dir).unwrap().collect();
    assert_eq!(entries.len(), 1, "nothing else is written into the folder");
    let again = anyforge(&args);
    let summary: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(summary["executed"].as_array().unwrap().len(), 0);
    assert_eq!(summary["outputs"][0]["sha256"], written["sha256"]);

    let missing = anyforge(&[
        "run",
        &repo("assets/workflows/tts.yaml"),
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("input text: required"));
    let unknown = anyforge(&[
        "run",
        &repo("assets/workflows/tts.yaml"),
        "--set",
        "txt=hi",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no such input"));
}

#[test]
fn a_batch_with_failing_rows_completes_the_rest_and_resumes_after_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let workflow = dir.path().join("short-speech.yaml");
    std::fs::write(
        &workflow,
        r#"name: short-speech
inputs:
  text: { type: text }
  speed: { type: number, default: 1.0 }
steps:
  - id: speech
    uses: text-to-speech
    with: { text: "${{ inputs.text }}", speed: "${{ inputs.speed }}", seconds: 0.2 }
outputs:
  speech.wav: "${{ steps.speech.outputs.audio }}"
"#,
    )
    .unwrap();
    let rows: String = (0..20)
        .map(|i| match i {
            // Two rows ask for an impossible speed.
            5 | 12 => format!("{{\"text\": \"Row {i}.\", \"speed\": 3.0}}\n"),
            _ => format!("{{\"text\": \"Row {i}.\"}}\n"),
        })
        .collect();
    let batch = dir.path().join("rows.jsonl");
    std::fs::write(&batch, rows).unwrap();
    let out = dir.path().join("out");
    let cache = dir.path().join("cache");
    let args: Vec<String> = [
        "render",
        workflow.to_str().unwrap(),
        "--batch",
        batch.to_str().unwrap(),
        "--jobs",
        "1",
        "--out",
        out.to_str().unwrap(),
        "--cache",
        cache.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let manifest = out.join("manifest.jsonl");
    let lines = || {
        std::fs::read_to_string(&manifest)
            .unwrap_or_default()
            .lines()
            .count()
    };

    // Killed mid-way: at least four rows recorded, not all twenty.
    let mut child = Command::new(env!("CARGO_BIN_EXE_anyforge"))
        .args(&args)
        .env("ANYFORGE_PACK", common::RANDOM_PACK)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    while lines() < 4 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let before = lines();
    assert!(
        (4..20).contains(&before),
        "{before} rows recorded before the kill"
    );

    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let resumed = anyforge(&args);
    assert!(!resumed.status.success(), "two rows fail");
    let report: serde_json::Value = serde_json::from_slice(&resumed.stdout).unwrap();
    assert_eq!(report["rows"], 20);
    assert_eq!(report["failed"], 2);
    let skipped = report["skipped"].as_u64().unwrap();
    assert!(
        skipped >= 3,
        "rows finished before the kill are not rerun: {report}"
    );
    assert_eq!(skipped + report["done"].as_u64().unwrap(), 18);

    let text = std::fs::read_to_string(&manifest).unwrap();
    let mut seen: Vec<u64> = Vec::new();
    for line in text.lines() {
        let line: serde_json::Value = serde_json::from_str(line).unwrap();
        let row = line["row"].as_u64().unwrap();
        assert!(!seen.contains(&row), "row {row} recorded twice");
        seen.push(row);
        if [5, 12].contains(&row) {
            assert_eq!(line["status"], "failed");
            assert!(line["error"].as_str().unwrap().contains("speed"), "{line}");
        } else {
            assert_eq!(line["status"], "ok");
            let output = &line["outputs"][0];
            let path = Path::new(output["path"].as_str().unwrap());
            assert!(path.starts_with(&out), "written inside the output folder");
            let audio = modalities::Audio::read(path, &modalities::Limits::default()).unwrap();
            assert!(audio.duration_s() > 0.0);
        }
    }
    seen.sort_unstable();
    assert_eq!(
        seen,
        (0..20).collect::<Vec<u64>>(),
        "every row exactly once"
    );

    let third = anyforge(&args);
    let report: serde_json::Value = serde_json::from_slice(&third.stdout).unwrap();
    assert_eq!(
        (report["skipped"].as_u64(), report["done"].as_u64()),
        (Some(18), Some(0))
    );
}
