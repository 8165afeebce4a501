//! Checkpoint tensors, for the backbone and the codecs alike: one `model.safetensors` or the shards named by
//! `model.safetensors.index.json`, memory-mapped; f32, f16 and bf16 are
//! converted to the compute dtype (f32) as each tensor is loaded.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};

use crate::error::WeightsError;

type Result<T> = std::result::Result<T, WeightsError>;

/// The checkpoint's tensors, opened but not yet loaded.
pub struct Checkpoint {
    dir: PathBuf,
    tensors: MmapedSafetensors,
    device: Device,
}

impl Checkpoint {
    /// Opens `model.safetensors`, or every shard listed by the index. Pickle
    /// files (`*.bin`, `*.pt`) are never read: a folder with only those is an error.
    pub fn open(dir: &Path, device: &Device) -> Result<Checkpoint> {
        let index = dir.join("model.safetensors.index.json");
        let files: Vec<PathBuf> = if index.exists() {
            let text = std::fs::read_to_string(&index).map_err(|e| WeightsError::io(&index, e))?;
            let json: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| WeightsError::bad_file(&index, e))?;
            let map = json
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| WeightsError::bad_file(&index, "no weight_map object"))?;
            let mut shards = BTreeSet::new();
            for file in map.values() {
                let name = file.as_str().ok_or_else(|| {
                    WeightsError::bad_file(&index, "weight_map values must be file names")
                })?;
                // Shards live beside the index; a name may not climb out of the folder.
                if Path::new(name).components().count() != 1 {
                    return Err(WeightsError::bad_file(
                        &index,
                        format!("shard {name:?} is not a plain file name"),
                    ));
                }
                shards.insert(dir.join(name));
            }
            shards.into_iter().collect()
        } else {
            let single = dir.join("model.safetensors");
            if !single.exists() {
                let pickles = ["pytorch_model.bin", "model.pt"]
                    .iter()
                    .any(|n| dir.join(n).exists());
                let why = if pickles {
                    "only pickle weights found; anyforge reads safetensors only (convert with `safetensors`)"
                } else {
                    "no model.safetensors or model.safetensors.index.json"
                };
                return Err(WeightsError::bad_file(dir, why));
            }
            vec![single]
        };
        for file in &files {
            if !file.exists() {
                return Err(WeightsError::bad_file(
                    file,
                    "shard named by the index is missing",
                ));
            }
        }
        // SAFETY (inside candle): the files are mapped read-only; anyforge
        // never writes to a checkpoint while it is loaded.
        #[allow(unsafe_code)]
        let tensors = unsafe { MmapedSafetensors::multi(&files) }
            .map_err(|e| WeightsError::bad_file(dir, e))?;
        Ok(Checkpoint {
            dir: dir.to_path_buf(),
            tensors,
            device: device.clone(),
        })
    }

    /// The checkpoint folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every tensor name, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.tensors.tensors().into_iter().map(|(n, _)| n).collect();
        names.sort();
        names
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.get(name).is_ok()
    }

    /// Loads a tensor as f32, checking its shape.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let tensor = self.get_any(name)?;
        if tensor.dims() != shape {
            return Err(WeightsError::TensorShape {
                name: name.to_owned(),
                actual: tensor.dims().to_vec(),
                expected: shape.to_vec(),
            });
        }
        Ok(tensor)
    }

    /// Loads a tensor as f32 whatever its shape.
    pub fn get_any(&self, name: &str) -> Result<Tensor> {
        if self.tensors.get(name).is_err() {
            return Err(WeightsError::MissingTensor {
                name: name.to_owned(),
                dir: self.dir.clone(),
            });
        }
        let tensor = self
            .tensors
            .load(name, &self.device)
            .map_err(|e| WeightsError::bad_file(&self.dir, format!("{name}: {e}")))?;
        match tensor.dtype() {
            DType::F32 => Ok(tensor),
            DType::F16 | DType::BF16 | DType::F64 => Ok(tensor.to_dtype(DType::F32)?),
            other => Err(WeightsError::bad_file(
                &self.dir,
                format!("{name} has dtype {other:?}; expected f32, f16 or bf16"),
            )),
        }
    }
}
