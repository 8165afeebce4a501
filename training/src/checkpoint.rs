//! Checkpoints of a run: the model's weights, the optimizer's moments and
//! the run state, written to a fresh folder and swapped in by rename, so a
//! run killed mid-write still has its previous checkpoint.

use std::path::Path;

use crate::model::MoeModel;
use crate::optim::AdamW;
use crate::recipe::Recipe;
use crate::run::{file_error, RunError, RunState};

const LAST: &str = "last";
const NEXT: &str = "next";
const OLD: &str = "old";

pub fn save(dir: &Path, state: &RunState, model: &MoeModel, opt: &AdamW) -> Result<(), RunError> {
    let next = dir.join(NEXT);
    let io = |e: std::io::Error| file_error(&next)(e.to_string());
    if next.exists() {
        std::fs::remove_dir_all(&next).map_err(io)?;
    }
    std::fs::create_dir_all(&next).map_err(io)?;
    model
        .varmap
        .save(next.join("model.safetensors"))
        .map_err(|e| file_error(&next)(e.to_string()))?;
    opt.save(&next.join("optimizer.safetensors"))?;
    let json = serde_json::to_string_pretty(state).map_err(|e| file_error(&next)(e.to_string()))?;
    std::fs::write(next.join("state.json"), json).map_err(io)?;
    let (last, old) = (dir.join(LAST), dir.join(OLD));
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(io)?;
    }
    if last.exists() {
        std::fs::rename(&last, &old).map_err(io)?;
    }
    std::fs::rename(&next, &last).map_err(io)?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(io)?;
    }
    Ok(())
}

/// Restores the last checkpoint in `dir` into `model` and `opt`, if there
/// is one; a checkpoint of another recipe is an error, not a silent restart.
pub fn load(
    dir: &Path,
    recipe: &Recipe,
    model: &MoeModel,
    opt: &mut AdamW,
) -> Result<Option<RunState>, RunError> {
    // A run killed between the two renames left its checkpoint in `old`.
    let last = [LAST, OLD]
        .iter()
        .map(|name| dir.join(name))
        .find(|p| p.join("state.json").is_file());
    let Some(last) = last else { return Ok(None) };
    let bad = file_error(&last);
    let text = std::fs::read_to_string(last.join("state.json")).map_err(|e| bad(e.to_string()))?;
    let state: RunState = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    if &state.recipe != recipe {
        return Err(bad(
            "this checkpoint was made by a different recipe; give another --checkpoints folder \
             or delete this one"
                .into(),
        ));
    }
    let mut varmap = model.varmap.clone();
    varmap
        .load(last.join("model.safetensors"))
        .map_err(|e| bad(e.to_string()))?;
    opt.load(&last.join("optimizer.safetensors"))?;
    if opt.steps != state.step {
        return Err(bad(format!(
            "the optimizer has taken {} steps, the state says {}",
            opt.steps, state.step
        )));
    }
    Ok(Some(state))
}
