#![allow(clippy::unwrap_used)]
//! `anyforge run` and `anyforge workflow ...` as a user runs them.

use std::path::Path;
use std::process::{Command, Output};

fn anyforge(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_anyforge"))
        .args(args)
        .env_remove("ANYFORGE_PACK")
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
