//! Checkpoint tensors, for the backbone and the codecs alike: one `model.safetensors` or the shards named by
//! `model.safetensors.index.json`, memory-mapped; f32, f16 and bf16 are
//! converted to the compute dtype (f32) as each tensor is loaded.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use candle_core::pickle::PthTensors;
use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};

use crate::error::WeightsError;

type Result<T> = std::result::Result<T, WeightsError>;

/// The checkpoint's tensors, opened but not yet loaded.
pub struct Checkpoint {
    dir: PathBuf,
    tensors: Source,
    device: Device,
}

enum Source {
    Safetensors(MmapedSafetensors),
    /// A PyTorch `.bin`, read by candle's pickle reader, which interprets
    /// only the opcodes that describe tensors and runs no code; `bytes` is
    /// the file's size, which no tensor may claim to exceed.
    Pickle {
        tensors: PthTensors,
        bytes: u64,
    },
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
            tensors: Source::Safetensors(tensors),
            device: device.clone(),
        })
    }

    /// Like [`Checkpoint::open`], but a folder with only `pytorch_model.bin`
    /// (as codecs such as SNAC are published) is read with the tensor-only
    /// pickle reader. Safetensors win when both are present.
    pub fn open_with_pickle(dir: &Path, device: &Device) -> Result<Checkpoint> {
        let bin = dir.join("pytorch_model.bin");
        let has_safetensors = dir.join("model.safetensors").exists()
            || dir.join("model.safetensors.index.json").exists();
        if has_safetensors || !bin.exists() {
            return Checkpoint::open(dir, device);
        }
        let bytes = std::fs::metadata(&bin)
            .map_err(|e| WeightsError::io(&bin, e))?
            .len();
        let tensors = PthTensors::new(&bin, None).map_err(|e| WeightsError::bad_file(&bin, e))?;
        Ok(Checkpoint {
            dir: dir.to_path_buf(),
            tensors: Source::Pickle { tensors, bytes },
            device: device.clone(),
        })
    }

    /// The checkpoint folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The device tensors are loaded to.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Every tensor name, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = match &self.tensors {
            Source::Safetensors(t) => t.tensors().into_iter().map(|(n, _)| n).collect(),
            Source::Pickle { tensors, .. } => tensors.tensor_infos().keys().cloned().collect(),
        };
        names.sort();
        names
    }

    pub fn contains(&self, name: &str) -> bool {
        match &self.tensors {
            Source::Safetensors(t) => t.get(name).is_ok(),
            Source::Pickle { tensors, .. } => tensors.tensor_infos().contains_key(name),
        }
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
        if !self.contains(name) {
            return Err(WeightsError::MissingTensor {
                name: name.to_owned(),
                dir: self.dir.clone(),
            });
        }
        let bad = |e: candle_core::Error| WeightsError::bad_file(&self.dir, format!("{name}: {e}"));
        let tensor = match &self.tensors {
            Source::Safetensors(t) => t.load(name, &self.device).map_err(bad)?,
            Source::Pickle { tensors, bytes } => {
                let info = &tensors.tensor_infos()[name];
                let claimed =
                    info.layout.shape().elem_count() as u64 * info.dtype.size_in_bytes() as u64;
                if claimed > *bytes {
                    return Err(WeightsError::bad_file(
                        &self.dir,
                        format!("{name} claims {claimed} bytes, more than the whole file"),
                    ));
                }
                tensors
                    .get(name)
                    .map_err(bad)?
                    .ok_or_else(|| {
                        WeightsError::bad_file(&self.dir, format!("{name}: unreadable"))
                    })?
                    .to_device(&self.device)?
            }
        };
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
