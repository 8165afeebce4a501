//! The SNAC codec against the reference (the `snac` package), on the tiny
//! codecs `fixtures/make.py` writes: one with attention and depthwise
//! convolutions in safetensors with current weight-norm names, one without
//! either, with the older `weight_g`/`weight_v` names, in a `.bin`.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use candle_core::Device;
use encoders::audio::Snac;
use encoders::Codes;
use modalities::{Audio, Media};

const FIXTURES: [&str; 2] = ["snac_attn", "snac_plain"];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn expected(name: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(name).join("expected.json")).unwrap())
        .unwrap()
}

fn tensor(name: &str, key: &str) -> Vec<f32> {
    candle_core::safetensors::load(fixture(name).join("expected.safetensors"), &Device::Cpu)
        .unwrap()
        .remove(key)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
}

fn load(name: &str) -> Snac {
    let dir = fixture(name);
    let config = encoders::read_config(&dir.join("config.json")).unwrap();
    Snac::load(&dir, &config, &Device::Cpu).unwrap()
}

#[test]
fn encoding_matches_the_reference_codes() {
    for name in FIXTURES {
        let codec = load(name);
        let exp = expected(name);
        let want: Vec<Vec<u32>> = serde_json::from_value(exp["codes"].clone()).unwrap();
        let margins: Vec<Vec<f64>> = serde_json::from_value(exp["margins"].clone()).unwrap();
        let got = codec.encode_samples(&tensor(name, "input")).unwrap();
        assert_eq!(got.len(), want.len(), "{name}: levels");
        for (level, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g.len(), w.len(), "{name}: level {level} length");
            for (i, (a, b)) in g.iter().zip(w).enumerate() {
                // A flip is only allowed where the two best entries tie.
                assert!(
                    a == b || margins[level][i] < 1e-5,
                    "{name}: level {level}, position {i}: {a} vs reference {b} (margin {})",
                    margins[level][i]
                );
            }
        }
    }
}

#[test]
fn decoding_matches_the_reference_waveform() {
    for name in FIXTURES {
        // The reference run has its noise turned off; so does this one.
        let codec = load(name).with_noise_seed(None);
        let given: Vec<Vec<u32>> =
            serde_json::from_value(expected(name)["given_codes"].clone()).unwrap();
        let got = codec.decode_samples(&given).unwrap();
        let want = tensor(name, "reconstruction");
        assert_eq!(got.len(), want.len(), "{name}");
        let worst = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst <= 1e-4, "{name}: max difference {worst}");
        assert!(
            want.iter().any(|v| v.abs() > 1e-3),
            "{name}: the reference is silent"
        );
    }
}

#[test]
fn noise_is_seeded() {
    let given: Vec<Vec<u32>> =
        serde_json::from_value(expected("snac_plain")["given_codes"].clone()).unwrap();
    let decode = |seed| {
        load("snac_plain")
            .with_noise_seed(seed)
            .decode_samples(&given)
            .unwrap()
    };
    let (a, b, c, off) = (
        decode(Some(1)),
        decode(Some(1)),
        decode(Some(2)),
        decode(None),
    );
    assert_eq!(a, b, "the same seed gives the same waveform");
    assert_ne!(a, c, "another seed gives another waveform");
    assert_ne!(a, off, "the config's noise blocks add noise");
}

#[test]
fn audio_is_mixed_and_resampled_on_the_way_in() {
    let codec = encoders::open(fixture("snac_attn").to_str().unwrap()).unwrap();
    // Stereo at 16 kHz, 0.1 s: mixed to mono and resampled to 8 kHz.
    let samples: Vec<f32> = (0..3200)
        .map(|i| ((i / 2) as f32 * 0.05).sin() * 0.5)
        .collect();
    let audio = Audio::new(16000, 2, samples).unwrap();
    let Codes::Audio(codes) = codec.encode(&Media::Audio(audio)).unwrap() else {
        panic!("audio codes expected")
    };
    assert_eq!(codes.sample_rate, 8000);
    assert_eq!(codes.codes.len(), 2);
    assert_eq!(codes.codes[1].len(), 2 * codes.codes[0].len());
    let Media::Audio(back) = codec.decode(&Codes::Audio(codes)).unwrap() else {
        panic!("audio expected")
    };
    assert_eq!((back.sample_rate, back.channels), (8000, 1));
    assert!(back.frames() >= 800);
}

#[test]
fn bad_codes_are_clear_errors() {
    let codec = load("snac_plain");
    for (levels, want) in [
        (
            vec![vec![1u32; 2], vec![1; 4]],
            "2 levels given; this codec has 3",
        ),
        (
            vec![vec![1; 2], vec![1; 3], vec![1; 8]],
            "level 1 has 3 codes",
        ),
        (
            vec![vec![1; 2], vec![1; 4], vec![16; 8]],
            "code 16 at level 2, position 0",
        ),
        (vec![vec![], vec![], vec![]], "positive multiple"),
    ] {
        let err = codec.decode_samples(&levels).unwrap_err().to_string();
        assert!(err.contains(want), "{err}");
    }
}
