//! The Janus VQ codec against the reference (`transformers`' JanusVQVAE),
//! on the tiny checkpoint `fixtures/make.py` writes.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use candle_core::Device;
use encoders::codes::ImageCodes;
use encoders::image::ImageVq;
use encoders::Codes;
use modalities::{Image, Limits, Media};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/image_vq")
}

fn expected() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture().join("expected.json")).unwrap())
        .unwrap()
}

fn grid(value: &serde_json::Value) -> Vec<Vec<u32>> {
    serde_json::from_value(value.clone()).unwrap()
}

fn load() -> ImageVq {
    let dir = fixture();
    let config = encoders::read_config(&dir.join("config.json")).unwrap();
    ImageVq::load(&dir, &config, &Device::Cpu).unwrap()
}

#[test]
fn encoding_matches_the_reference_codes() {
    let codec = load();
    let exp = expected();
    let image = Image::read(&fixture().join("input.png"), &Limits::default()).unwrap();
    let got = codec.encode_image(&image).unwrap();
    let (want, margins) = (grid(&exp["codes"]), exp["margins"].clone());
    assert_eq!((got.height, got.width), (want.len(), want[0].len()));
    let mut mismatches = 0;
    for (r, (got_row, want_row)) in got.codes.iter().zip(&want).enumerate() {
        for (c, (g, w)) in got_row.iter().zip(want_row).enumerate() {
            if g != w {
                // Only a near tie (the two nearest entries within 1e-5) may differ.
                let margin = margins[r][c].as_f64().unwrap();
                assert!(
                    margin < 1e-5,
                    "({r}, {c}): {g} vs reference {w}, margin {margin}"
                );
                mismatches += 1;
            }
        }
    }
    assert!(mismatches <= 1, "{mismatches} tie flips");
    assert!(
        exp["distinct_codes"].as_u64().unwrap() > 4,
        "the fixture should use many codes"
    );
}

#[test]
fn decoding_matches_the_reference_reconstruction() {
    let codec = load();
    let given = grid(&expected()["given_codes"]);
    let codes = ImageCodes {
        height: given.len(),
        width: given[0].len(),
        codes: given,
    };
    let got = codec.decode_tensor(&codes).unwrap();
    let want = candle_core::safetensors::load(fixture().join("expected.safetensors"), &Device::Cpu)
        .unwrap()
        .remove("reconstruction")
        .unwrap();
    assert_eq!(got.dims(), want.dims());
    let diff = (got - want)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap();
    let diff = diff.to_scalar::<f32>().unwrap();
    assert!(diff <= 1e-4, "max difference {diff}");
}

#[test]
fn codes_round_trip_through_the_codec_trait() {
    let codec = encoders::open(fixture().to_str().unwrap()).unwrap();
    assert_eq!(codec.vocab_size(), 64);
    let image = Image::read(&fixture().join("input.png"), &Limits::default()).unwrap();
    let codes = codec.encode(&Media::Image(image)).unwrap();
    let Media::Image(decoded) = codec.decode(&codes).unwrap() else {
        panic!("an image codec decodes to an image")
    };
    assert_eq!(
        (decoded.width, decoded.height, decoded.channels),
        (16, 16, 3)
    );
    // Encoding the decoded image gives codes again (a VQ is not exact, but
    // its own output is a valid input).
    assert!(matches!(
        codec.encode(&Media::Image(decoded)).unwrap(),
        Codes::Image(_)
    ));
}

#[test]
fn bad_sizes_and_codes_are_clear_errors() {
    let codec = load();
    let odd = Image::filled(15, 16, [10, 20, 30]);
    let err = codec.encode_image(&odd).unwrap_err().to_string();
    assert!(
        err.contains("15x16") && err.contains("multiples of 2"),
        "{err}"
    );
    let out_of_range = ImageCodes {
        height: 1,
        width: 2,
        codes: vec![vec![3, 64]],
    };
    let err = codec.decode_tensor(&out_of_range).unwrap_err().to_string();
    assert!(err.contains("code 64 at row 0, column 1"), "{err}");
    let ragged = ImageCodes {
        height: 2,
        width: 2,
        codes: vec![vec![1, 2], vec![3]],
    };
    assert!(codec
        .decode_tensor(&ragged)
        .unwrap_err()
        .to_string()
        .contains("row 1 has 1 codes"));
}

/// A whole Janus checkpoint keeps the VQ under `vq_config` and its tensors
/// under `model.vqmodel.`; the same weights load from there.
#[test]
fn loads_from_a_whole_janus_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let tensors = candle_core::safetensors::load(fixture().join("model.safetensors"), &Device::Cpu)
        .unwrap()
        .into_iter()
        .map(|(k, v)| (format!("model.vqmodel.{k}"), v))
        .collect::<std::collections::HashMap<_, _>>();
    candle_core::safetensors::save(&tensors, dir.path().join("model.safetensors")).unwrap();
    let vq_config = encoders::read_config(&fixture().join("config.json")).unwrap();
    let config = serde_json::json!({"model_type": "janus", "vq_config": vq_config});
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    let whole = encoders::open(dir.path().to_str().unwrap()).unwrap();
    let alone = load();
    let image = Image::read(&fixture().join("input.png"), &Limits::default()).unwrap();
    assert_eq!(
        whole.encode(&Media::Image(image.clone())).unwrap(),
        Codes::Image(alone.encode_image(&image).unwrap())
    );
}
