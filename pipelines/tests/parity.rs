//! The backbone against PyTorch `transformers` on the checkpoints that
//! `tests/fixtures/backbones/make.py` made with it: logits within 1e-4 and
//! identical greedy continuations, for every supported model_type.
#![allow(clippy::unwrap_used)]

mod common;

use candle_core::{Device, Tensor};
use common::{cases, fixture};
use pipelines::backbone::config::{BackboneConfig, RawConfig};
use pipelines::backbone::{Backbone, LogitsFor, MoePath, SequenceStep};

const MODELS: [&str; 10] = [
    "llama",
    "mistral",
    "qwen2",
    "qwen3",
    "qwen2_moe",
    "qwen3_moe",
    "mixtral",
    "olmoe",
    "deepseek_v2",
    "qwen3_moe_bf16_sharded",
];

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

fn argmax(logits: &Tensor) -> u32 {
    let v = logits.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    v.iter()
        .enumerate()
        .fold(
            (0, f32::NEG_INFINITY),
            |m, (i, &x)| if x > m.1 { (i, x) } else { m },
        )
        .0 as u32
}

fn prefill(model: &Backbone, ids: &[u32], path: MoePath) -> Tensor {
    let mut cache = model.new_cache();
    let mut steps = [SequenceStep {
        tokens: ids,
        cache: &mut cache,
    }];
    model
        .forward_with(&mut steps, LogitsFor::All, path)
        .unwrap()
        .remove(0)
}

fn greedy(model: &Backbone, ids: &[u32], n: usize) -> Vec<u32> {
    let mut cache = model.new_cache();
    let mut next = ids.to_vec();
    let mut out = Vec::new();
    for _ in 0..n {
        let logits = model
            .forward(
                &mut [SequenceStep {
                    tokens: &next,
                    cache: &mut cache,
                }],
                LogitsFor::Last,
            )
            .unwrap()
            .remove(0);
        let token = argmax(&logits);
        out.push(token);
        next = vec![token];
    }
    out
}

#[test]
fn logits_and_greedy_match_transformers_for_every_model_type() {
    for name in MODELS {
        let dir = fixture(name);
        let model = Backbone::load(&dir, &Device::Cpu).unwrap_or_else(|e| panic!("{name}: {e}"));
        for (i, case) in cases(&dir).iter().enumerate() {
            let logits = prefill(&model, &case.ids, MoePath::Grouped);
            let diff = max_diff(&logits, &case.logits);
            eprintln!("{name} prompt {i}: max |logit difference| {diff:.2e}");
            assert!(diff <= 1e-4, "{name} prompt {i}: logits differ by {diff}");
            assert_eq!(
                greedy(&model, &case.ids, case.greedy.len()),
                case.greedy,
                "{name} prompt {i}: greedy continuation"
            );
        }
    }
}

#[test]
fn published_and_current_config_spellings_agree() {
    for name in &MODELS[..9] {
        let read = |file: &str| -> BackboneConfig {
            let text = std::fs::read_to_string(fixture(name).join(file)).unwrap();
            let raw: RawConfig =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}/{file}: {e}"));
            BackboneConfig::from_raw(&raw).unwrap_or_else(|e| panic!("{name}/{file}: {e}"))
        };
        assert_eq!(read("config.json"), read("config_published.json"), "{name}");
    }
}

#[test]
fn grouped_moe_path_agrees_with_the_reference_path() {
    for name in ["qwen2_moe", "qwen3_moe", "mixtral", "olmoe", "deepseek_v2"] {
        let dir = fixture(name);
        let model = Backbone::load(&dir, &Device::Cpu).unwrap();
        assert!(model.config().is_moe(), "{name}");
        for case in cases(&dir) {
            let fast = prefill(&model, &case.ids, MoePath::Grouped);
            let slow = prefill(&model, &case.ids, MoePath::Reference);
            let diff = max_diff(&fast, &slow);
            assert!(
                diff <= 1e-5,
                "{name}: grouped and reference paths differ by {diff}"
            );
        }
    }
}

#[test]
fn batched_and_chunked_prefill_equal_one_sequence_at_a_time() {
    for name in ["qwen3_moe", "mistral", "deepseek_v2"] {
        let dir = fixture(name);
        let model = Backbone::load(&dir, &Device::Cpu).unwrap();
        let cases = cases(&dir);
        // All three prompts in one packed step.
        let mut caches: Vec<_> = cases.iter().map(|_| model.new_cache()).collect();
        let mut steps: Vec<SequenceStep> = cases
            .iter()
            .zip(caches.iter_mut())
            .map(|(c, cache)| SequenceStep {
                tokens: &c.ids,
                cache,
            })
            .collect();
        let batched = model.forward(&mut steps, LogitsFor::All).unwrap();
        for (case, logits) in cases.iter().zip(&batched) {
            let diff = max_diff(logits, &case.logits);
            assert!(diff <= 1e-4, "{name}: batched prefill differs by {diff}");
        }
        // The longest prompt in chunks of 5 (sliding window 4 crosses chunk edges).
        let case = &cases[1];
        let mut cache = model.new_cache();
        let mut rows = Vec::new();
        for chunk in case.ids.chunks(5) {
            rows.push(
                model
                    .forward(
                        &mut [SequenceStep {
                            tokens: chunk,
                            cache: &mut cache,
                        }],
                        LogitsFor::All,
                    )
                    .unwrap()
                    .remove(0),
            );
        }
        let chunked = Tensor::cat(&rows, 0).unwrap();
        let diff = max_diff(&chunked, &case.logits);
        assert!(diff <= 1e-4, "{name}: chunked prefill differs by {diff}");
    }
}

#[test]
fn bad_checkpoints_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let src = fixture("llama");
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    // An unsupported model_type names itself.
    let text = std::fs::read_to_string(src.join("config.json"))
        .unwrap()
        .replace("\"llama\"", "\"gpt_neox\"");
    std::fs::write(dir.path().join("config.json"), text).unwrap();
    let err = Backbone::load(dir.path(), &Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("gpt_neox"), "{err}");
    // A missing tensor names the tensor: a qwen3 config over llama weights lacks q_norm.
    let text = std::fs::read_to_string(src.join("config.json"))
        .unwrap()
        .replace("\"llama\"", "\"qwen3\"");
    std::fs::write(dir.path().join("config.json"), text).unwrap();
    let err = Backbone::load(dir.path(), &Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("model.layers.0.self_attn.q_norm.weight"),
        "{err}"
    );
    // No safetensors: an error naming the folder, and pickle files are not read.
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    std::fs::write(dir.path().join("pytorch_model.bin"), b"not read").unwrap();
    let err = Backbone::load(dir.path(), &Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("pickle"), "{err}");
    // A corrupt safetensors file names the path.
    std::fs::write(
        dir.path().join("model.safetensors"),
        b"\x08\0\0\0\0\0\0\0{}garbage",
    )
    .unwrap();
    let err = Backbone::load(dir.path(), &Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains(&dir.path().display().to_string()), "{err}");
}
