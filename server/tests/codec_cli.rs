#![allow(clippy::unwrap_used)]
//! `anyforge codec encode|decode` as a user runs them, on the codec
//! fixtures of the encoders crate.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn anyforge(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_anyforge"))
        .args(args)
        .output()
        .expect("run anyforge")
}

fn ok(args: &[&str]) {
    let out = anyforge(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn fails(args: &[&str]) -> String {
    let out = anyforge(args);
    assert!(!out.status.success(), "{args:?} should fail");
    String::from_utf8(out.stderr).unwrap()
}

fn repo(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
        .to_str()
        .unwrap()
        .to_owned()
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn every_kind_encodes_and_decodes() {
    let dir = tempfile::tempdir().unwrap();
    let at = |name: &str| -> PathBuf { dir.path().join(name) };
    let (vq, snac) = (
        repo("encoders/tests/fixtures/image_vq"),
        repo("encoders/tests/fixtures/snac_attn"),
    );
    let cases: [(&str, String, &[&str], &str); 5] = [
        (
            vq.as_str(),
            repo("assets/samples/sample.png"),
            &["--size", "32x16"],
            "out.png",
        ),
        (
            snac.as_str(),
            repo("assets/samples/tone.wav"),
            &[],
            "out.wav",
        ),
        (
            vq.as_str(),
            repo("assets/samples/clip.mp4"),
            &["--frames", "2", "--size", "16x16"],
            "out.mp4",
        ),
        ("mesh:32", repo("assets/samples/cube.obj"), &[], "out.stl"),
        ("mesh", repo("assets/samples/cube.obj"), &[], "out.ply"),
    ];
    for (codec, input, extra, output) in cases {
        let codes = at(&format!("{output}.json"));
        let mut args = vec![
            "codec",
            "encode",
            "--codec",
            codec,
            &input,
            "--out",
            s(&codes),
        ];
        args.extend_from_slice(extra);
        ok(&args);
        ok(&[
            "codec",
            "decode",
            "--codec",
            codec,
            s(&codes),
            "--out",
            s(&at(output)),
        ]);
        let info = anyforge(&["media", "info", s(&at(output))]);
        assert!(info.status.success(), "{output}");
    }
    let image = json(&at("out.png.json"));
    assert_eq!(
        (
            image["kind"].as_str(),
            image["height"].as_u64(),
            image["width"].as_u64()
        ),
        (Some("image"), Some(8), Some(16))
    );
    let video = json(&at("out.mp4.json"));
    assert_eq!(video["frames"].as_array().unwrap().len(), 2);
    let audio = json(&at("out.wav.json"));
    assert_eq!(audio["sample_rate"].as_u64(), Some(8000));
    let mesh = json(&at("out.stl.json"));
    assert_eq!(mesh["bins"].as_u64(), Some(32));
}

#[test]
fn bad_inputs_and_codes_are_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let vq = repo("encoders/tests/fixtures/image_vq");
    let write = |name: &str, text: &str| -> PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let out = dir.path().join("out.png");
    let cases = [
        (
            write(
                "range.json",
                r#"{"kind":"image","height":1,"width":1,"codes":[[999]]}"#,
            ),
            "code 999 at row 0, column 0 is outside the codebook of 64",
        ),
        (
            write(
                "grid.json",
                r#"{"kind":"image","height":2,"width":1,"codes":[[1]]}"#,
            ),
            "height is 2 but there are 1 rows",
        ),
        (
            write("empty.json", r#"{"kind":"mesh","bins":128,"tokens":[]}"#),
            "no mesh tokens",
        ),
        (
            write(
                "kind.json",
                r#"{"kind":"audio","sample_rate":8000,"codes":[[1]]}"#,
            ),
            "the image codec cannot encode or decode audio",
        ),
        (write("junk.json", "not json"), "bad codes"),
    ];
    for (codes, want) in cases {
        let err = fails(&[
            "codec",
            "decode",
            "--codec",
            &vq,
            s(&codes),
            "--out",
            s(&out),
        ]);
        assert!(err.contains(want), "{want}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    }
    assert!(!out.exists(), "no output is written for bad codes");
    let err = fails(&[
        "codec",
        "encode",
        "--codec",
        "mesh:1",
        &repo("assets/samples/cube.obj"),
        "--out",
        s(&dir.path().join("m.json")),
    ]);
    assert!(err.contains("bins must be between 2 and"), "{err}");
    let err = fails(&[
        "codec",
        "encode",
        "--codec",
        &vq,
        &repo("assets/samples/tone.wav"),
        "--out",
        s(&dir.path().join("a.json")),
    ]);
    assert!(
        err.contains("the image codec cannot encode or decode audio"),
        "{err}"
    );
    let err = fails(&[
        "codec",
        "encode",
        "--codec",
        &dir.path().display().to_string(),
        &repo("assets/samples/cube.obj"),
        "--out",
        s(&dir.path().join("b.json")),
    ]);
    assert!(
        err.contains("config.json") && err.contains("missing"),
        "{err}"
    );
}

/// A text model's folder is a text codec: its tokenizer's ids, and back.
#[test]
fn text_encodes_to_the_tokenizers_ids_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let model = repo("pipelines/tests/fixtures/backbones/llama");
    let text = dir.path().join("in.txt");
    std::fs::write(&text, "the quick brown fox\njumps over the lazy dog").unwrap();
    let codes = dir.path().join("text.json");
    ok(&[
        "codec",
        "encode",
        "--codec",
        &model,
        s(&text),
        "--out",
        s(&codes),
    ]);
    let ids = json(&codes);
    assert_eq!(ids["kind"].as_str(), Some("text"));
    assert!(ids["ids"].as_array().unwrap().len() > 4);
    let back = dir.path().join("out.txt");
    ok(&[
        "codec",
        "decode",
        "--codec",
        &model,
        s(&codes),
        "--out",
        s(&back),
    ]);
    assert_eq!(
        std::fs::read_to_string(&back).unwrap(),
        "the quick brown fox\njumps over the lazy dog"
    );
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"kind":"text","ids":[4000000]}"#).unwrap();
    let err = fails(&[
        "codec",
        "decode",
        "--codec",
        &model,
        s(&bad),
        "--out",
        s(&back),
    ]);
    assert!(
        err.contains("id 4000000 at position 0 is outside the vocabulary"),
        "{err}"
    );
}

/// Codec limits are configuration: a grid that decodes past them is refused
/// before any work, naming the limit.
#[test]
fn codec_limits_refuse_oversized_requests() {
    let dir = tempfile::tempdir().unwrap();
    let vq = repo("encoders/tests/fixtures/image_vq");
    let limits = dir.path().join("limits.json");
    std::fs::write(&limits, r#"{"max_pixels": 1000}"#).unwrap();
    let codes = dir.path().join("grid.json");
    let row = format!("[{}]", vec!["1"; 20].join(","));
    std::fs::write(
        &codes,
        format!(
            r#"{{"kind":"image","height":20,"width":20,"codes":[{}]}}"#,
            vec![row; 20].join(",")
        ),
    )
    .unwrap();
    let out = dir.path().join("out.png");
    let err = fails(&[
        "codec",
        "decode",
        "--codec",
        &vq,
        s(&codes),
        "--out",
        s(&out),
        "--codec-limits",
        s(&limits),
    ]);
    assert!(
        err.contains("limit: the decoded image's pixel count is 1600, over the limit of 1000"),
        "{err}"
    );
    ok(&[
        "codec",
        "decode",
        "--codec",
        &vq,
        s(&codes),
        "--out",
        s(&out),
    ]);
    std::fs::write(&limits, r#"{"max_pixles": 1000}"#).unwrap();
    let err = fails(&[
        "codec",
        "decode",
        "--codec",
        &vq,
        s(&codes),
        "--out",
        s(&out),
        "--codec-limits",
        s(&limits),
    ]);
    assert!(
        err.contains("invalid codec limits") && err.contains("max_pixles"),
        "{err}"
    );
}

#[test]
fn fitted_codecs_are_written_and_then_code_like_any_other() {
    let dir = tempfile::tempdir().unwrap();
    let at = |name: &str| -> PathBuf { dir.path().join(name) };
    // Images: stripes of two colours, 16x16.
    let mut images = Vec::new();
    for k in 0..4u32 {
        let pixels: Vec<u8> = (0..16 * 16)
            .flat_map(|i| {
                if (i % 16 + k) / 4 % 2 == 0 {
                    [200, 40, 40]
                } else {
                    [20, 20, 180]
                }
            })
            .collect();
        let path = at(&format!("stripes{k}.png"));
        modalities::Image::new(16, 16, 3, pixels)
            .unwrap()
            .write(&path, None)
            .unwrap();
        images.push(path);
    }
    let mut args = vec!["codec", "fit", "--type", "patch-kmeans", "--codes", "8"];
    args.extend(images.iter().map(|p| s(p)));
    let patch = at("patch");
    args.extend(["--out", s(&patch)]);
    ok(&args);
    ok(&[
        "codec",
        "encode",
        "--codec",
        s(&patch),
        s(&images[1]),
        "--out",
        s(&at("i.json")),
    ]);
    assert_eq!(json(&at("i.json"))["width"], 4);
    ok(&[
        "codec",
        "decode",
        "--codec",
        s(&patch),
        s(&at("i.json")),
        "--out",
        s(&at("i.png")),
    ]);
    let back = modalities::Image::read(&at("i.png"), &modalities::Limits::default()).unwrap();
    let original = modalities::Image::read(&images[1], &modalities::Limits::default()).unwrap();
    assert_eq!(
        back.pixels, original.pixels,
        "two flat colours code exactly"
    );

    // Audio: the voice of the random pack.
    let voice = repo("assets/packs/random/voices/default.wav");
    let mel = at("mel");
    ok(&[
        "codec",
        "fit",
        "--type",
        "mel-kmeans",
        "--codes",
        "16",
        &voice,
        "--out",
        s(&mel),
    ]);
    ok(&[
        "codec",
        "encode",
        "--codec",
        s(&mel),
        &voice,
        "--out",
        s(&at("a.json")),
    ]);
    let codes = json(&at("a.json"));
    assert_eq!(codes["sample_rate"], 16000);
    assert_eq!(codes["codes"].as_array().unwrap().len(), 1, "one level");
    ok(&[
        "codec",
        "decode",
        "--codec",
        s(&mel),
        s(&at("a.json")),
        "--out",
        s(&at("a.wav")),
    ]);

    let e = fails(&[
        "codec",
        "fit",
        "--type",
        "mel-kmeans",
        s(&images[0]),
        "--out",
        s(&at("x")),
    ]);
    assert!(e.contains("stripes0.png: not audio"), "{e}");
}
