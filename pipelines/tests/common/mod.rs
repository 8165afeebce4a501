//! The reference fixtures made by `tests/fixtures/backbones/make.py`.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/backbones")
        .join(name)
}

/// One recorded prompt: its token ids, the reference logits for every
/// position, and the reference greedy continuation.
pub struct Case {
    pub ids: Vec<u32>,
    pub logits: Tensor,
    pub greedy: Vec<u32>,
}

/// The three recorded prompts of a checkpoint folder.
pub fn cases(dir: &Path) -> Vec<Case> {
    let tensors: HashMap<String, Tensor> =
        candle_core::safetensors::load(dir.join("reference.safetensors"), &Device::Cpu).unwrap();
    let ids = |t: &Tensor| {
        t.to_vec1::<i64>()
            .unwrap()
            .into_iter()
            .map(|v| v as u32)
            .collect::<Vec<_>>()
    };
    (0..3)
        .map(|i| Case {
            ids: ids(&tensors[&format!("prompt{i}.ids")]),
            logits: tensors[&format!("prompt{i}.logits")].clone(),
            greedy: ids(&tensors[&format!("prompt{i}.greedy")]),
        })
        .collect()
}
