//! Writes a trained model as a model pack (docs/packs.md): the backbone as
//! a standard Hugging Face checkpoint, the fitted image codec, `pack.yaml`
//! with each task's template (the prompt forms the data was written in)
//! and the weights' hashes, and `training.json` with what the run measured.

use std::path::Path;

use serde::Serialize;

use crate::model::MoeModel;
use crate::recipe::{Recipe, TrainTask};
use crate::run::{file_error, Prepared, RunError, RunState};
use crate::usage::ExpertUsage;
use crate::world::{CANVAS, PATCH};

/// What the run measured, kept beside the weights.
#[derive(Debug, Serialize)]
pub struct TrainingReport<'a> {
    pub state: &'a RunState,
    pub held_out_loss: Vec<(TrainTask, f32)>,
    pub expert_usage: &'a ExpertUsage,
}

const CHAT_TEMPLATE: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/// The template of each trained task, in the form `data.rs` writes.
fn template(task: TrainTask) -> &'static str {
    match task {
        TrainTask::TextToImage => "<|im_start|>user\nDraw: {{ prompt }}<|im_end|>\n<|im_start|>assistant\n",
        TrainTask::Caption => "<|im_start|>user\n{{ media }}Describe this.<|im_end|>\n<|im_start|>assistant\n",
        TrainTask::ImageEdit => "<|im_start|>user\n{{ image }}Edit: {{ prompt }}<|im_end|>\n<|im_start|>assistant\n",
        TrainTask::TextToVideo => "<|im_start|>user\nFilm {{ seconds }} seconds: {{ prompt }}<|im_end|>\n<|im_start|>assistant\n",
        TrainTask::TextToMesh => "<|im_start|>user\nModel: {{ prompt }}<|im_end|>\n<|im_start|>assistant\n",
        TrainTask::TextToSpeech => "<|im_start|>user\nSay: {{ phonemes }}<|im_end|>\n<|im_start|>assistant\n",
        TrainTask::Transcribe => "<|im_start|>user\n{{ audio }}Transcribe this audio.<|im_end|>\n<|im_start|>assistant\n",
    }
}

/// Writes the pack into `out` (created; files already there are replaced).
/// The backbone is stored in bf16: half the size of f32, and its greedy
/// outputs are what `anyforge eval` measures on the written pack.
pub fn write_pack(
    out: &Path,
    recipe: &Recipe,
    prepared: &Prepared,
    model: &MoeModel,
    report: &TrainingReport,
) -> Result<(), RunError> {
    let io = |path: &Path, e: &dyn std::fmt::Display| file_error(path)(e.to_string());
    let backbone = out.join("backbone");
    model
        .save_as(&backbone, candle_core::DType::BF16)
        .map_err(|e| io(&backbone, &e))?;
    let tokenizer = backbone.join("tokenizer.json");
    prepared
        .tokenizer
        .save(&tokenizer, false)
        .map_err(|e| io(&tokenizer, &e))?;
    let eos = prepared.token("<|im_end|>")?;
    let write_json = |path: &Path, value: &serde_json::Value| -> Result<(), RunError> {
        let text = serde_json::to_string_pretty(value).map_err(|e| io(path, &e))?;
        std::fs::write(path, text).map_err(|e| io(path, &e))
    };
    write_json(
        &backbone.join("tokenizer_config.json"),
        &serde_json::json!({
            "chat_template": CHAT_TEMPLATE,
            "eos_token": "<|im_end|>",
            "pad_token": "<|endoftext|>",
        }),
    )?;
    // Greedy by default: the world has one right picture per prompt.
    write_json(
        &backbone.join("generation_config.json"),
        &serde_json::json!({"eos_token_id": [eos], "do_sample": false}),
    )?;
    let image = out.join("image");
    prepared.image_codec.save(&image)?;
    write_json(
        &out.join("training.json"),
        &serde_json::to_value(report).map_err(|e| io(out, &e))?,
    )?;
    let mut hashes = String::new();
    for file in ["backbone/model.safetensors", "image/model.safetensors"] {
        let path = out.join(file);
        let sum = pipelines::pack::sha256_file(&path).map_err(|e| io(&path, &e))?;
        hashes.push_str(&format!("  {file}: {sum}\n"));
    }
    let mut tasks = String::new();
    for (task, weight) in &recipe.mix {
        if *weight > 0.0 {
            tasks.push_str(&format!(
                "  {}:\n    template: {:?}\n",
                task.name(),
                template(*task)
            ));
        }
    }
    let grid = (CANVAS / PATCH) as usize;
    let manifest = format!(
        "# anyforge model pack (docs/packs.md), made by `anyforge train --recipe` \
         (training.json says how it was trained)\n\
         name: {name}\n\
         description: {description:?}\n\
         licence: Apache-2.0\n\
         backbone: backbone\n\
         modalities:\n  image:\n    codec: image\n    layout: vocab\n    first_token: {image}\n    \
         begin: <|image_start|>\n    end: <|image_end|>\n    grid: [{grid}, {grid}]\n  \
         video:\n    begin: <|video_start|>\n    end: <|video_end|>\n  \
         mesh:\n    layout: vocab\n    bins: {bins}\n    first_token: {mesh}\n    \
         begin: <|mesh_start|>\n    end: <|mesh_end|>\n\
         defaults:\n  image_grid: [{grid}, {grid}]\n  image_pixels: [256, 256]\n  video_fps: {fps}\n  video_seconds: {seconds}\n  \
         max_mesh_faces: {faces}\n  guidance_scale: 1.0\n  max_text_tokens: 48\n\
         tasks:\n{tasks}\
         sha256:\n{hashes}",
        name = recipe.name,
        description = recipe.description,
        image = prepared.ids.image,
        bins = recipe.vocab.mesh_bins,
        mesh = prepared.ids.mesh,
        fps = crate::world::FPS,
        seconds = f64::from(crate::world::FRAMES) / f64::from(crate::world::FPS),
        faces = 128,
    );
    let path = out.join("pack.yaml");
    std::fs::write(&path, manifest).map_err(|e| io(&path, &e))
}
