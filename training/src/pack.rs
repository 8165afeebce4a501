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

/// The lexicon's licence, shipped beside it.
const CMUDICT_NOTICE: &str = "speech/cmudict.dict is the CMU Pronouncing Dictionary \
(as Debian's pocketsphinx-en-us ships it).

Copyright (C) 1993-2015 Carnegie Mellon University. All rights reserved.

Redistribution and use in source and binary forms, with or without
modification, are permitted provided that the following conditions are met:

1. Redistributions of source code must retain the above copyright notice,
   this list of conditions and the following disclaimer. The contents of
   this file are deemed to be source code.

2. Redistributions in binary form must reproduce the above copyright
   notice, this list of conditions and the following disclaimer in the
   documentation and/or other materials provided with the distribution.

THIS SOFTWARE IS PROVIDED BY CARNEGIE MELLON UNIVERSITY ``AS IS'' AND ANY
EXPRESSED OR IMPLIED WARRANTIES, INCLUDING, BUT NOT LIMITED TO, THE IMPLIED
WARRANTIES OF MERCHANTABILITY AND FITNESS FOR A PARTICULAR PURPOSE ARE
DISCLAIMED. IN NO EVENT SHALL CARNEGIE MELLON UNIVERSITY NOR ITS EMPLOYEES
BE LIABLE FOR ANY DIRECT, INDIRECT, INCIDENTAL, SPECIAL, EXEMPLARY, OR
CONSEQUENTIAL DAMAGES (INCLUDING, BUT NOT LIMITED TO, PROCUREMENT OF
SUBSTITUTE GOODS OR SERVICES; LOSS OF USE, DATA, OR PROFITS; OR BUSINESS
INTERRUPTION) HOWEVER CAUSED AND ON ANY THEORY OF LIABILITY, WHETHER IN
CONTRACT, STRICT LIABILITY, OR TORT (INCLUDING NEGLIGENCE OR OTHERWISE)
ARISING IN ANY WAY OUT OF THE USE OF THIS SOFTWARE, EVEN IF ADVISED OF THE
POSSIBILITY OF SUCH DAMAGE.
";

const CHAT_TEMPLATE: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/// The template of each trained task, in the form `data.rs` writes.
pub(crate) fn template(task: TrainTask) -> &'static str {
    match task {
        TrainTask::TextToImage => "<|im_start|>user\nDraw: {{ prompt }}<|im_end|>\n<|im_start|>assistant\n",
        TrainTask::Caption => "<|im_start|>user\n{{ media }}Describe this.<|im_end|>\n<|im_start|>assistant\n",
        TrainTask::ImageEdit => "<|im_start|>user\nEdit: {{ prompt }}\n{{ image }}<|im_end|>\n<|im_start|>assistant\n",
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
    let mut weights = vec!["backbone/model.safetensors", "image/model.safetensors"];
    // Speech: the mel codec, and the text frontend (the lexicon with its
    // licence, and the rules learned from it).
    let (mut audio_block, mut frontend) = (String::new(), String::new());
    if let Some(kit) = &prepared.speech {
        kit.codec.save(&out.join("audio"))?;
        weights.push("audio/model.safetensors");
        let speech = out.join("speech");
        std::fs::create_dir_all(&speech).map_err(|e| io(&speech, &e))?;
        if let Some(s) = &recipe.speech {
            let to = speech.join("cmudict.dict");
            std::fs::copy(&s.lexicon, &to).map_err(|e| io(&s.lexicon, &e))?;
        }
        let notice = speech.join("LICENSE-cmudict");
        std::fs::write(&notice, CMUDICT_NOTICE).map_err(|e| io(&notice, &e))?;
        write_json(
            &speech.join("letter-to-sound.json"),
            &serde_json::to_value(&kit.phonemizer.rules).map_err(|e| io(&speech, &e))?,
        )?;
        audio_block = format!(
            "  audio:\n    codec: audio\n    layout: vocab\n    first_token: {}\n    slots: level\n    \
             begin: <|audio_start|>\n    end: <|audio_end|>\n{}",
            prepared.ids.audio,
            if kit.word_markers.is_empty() {
                String::new()
            } else {
                format!(
                    "    word_markers: [{}]\n{}    silent_codes: [{}]\n",
                    kit.word_markers.join(", "),
                    if kit.phoneme_frames {
                        "    phoneme_frames: true\n"
                    } else if kit.word_phonemes {
                        "    word_phonemes: true\n"
                    } else {
                        ""
                    },
                    kit.codec
                        .silent_codes()
                        .iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        );
        // The teacher's is the one voice the pack speaks in: named `default`
        // so requests and workflows that ask for the default voice work.
        frontend =
            "speech:\n  lexicon: speech/cmudict.dict\n  rules: speech/letter-to-sound.json\n\
                    voices:\n  default: {}\n"
                .into();
    }
    let mut hashes = String::new();
    for file in weights {
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
            if let (TrainTask::TextToSpeech, Some(s)) = (task, &recipe.speech) {
                if let Some(t) = s.temperature {
                    tasks.push_str(&format!("    temperature: {t}\n"));
                }
                if let Some(p) = s.top_p {
                    tasks.push_str(&format!("    top_p: {p}\n"));
                }
            }
        }
    }
    let grid = (CANVAS / PATCH) as usize;
    let row_markers = if prepared.ids.rows.is_some() {
        let names: Vec<String> = (0..grid)
            .map(|r| crate::vocab::code_name("row", r))
            .collect();
        format!("    row_markers: [{}]\n", names.join(", "))
    } else {
        String::new()
    };
    let manifest = format!(
        "# anyforge model pack (docs/packs.md), made by `anyforge train --recipe` \
         (training.json says how it was trained)\n\
         name: {name}\n\
         description: {description:?}\n\
         licence: Apache-2.0\n\
         backbone: backbone\n\
         modalities:\n  image:\n    codec: image\n    layout: vocab\n    first_token: {image}\n    \
         begin: <|image_start|>\n    end: <|image_end|>\n    grid: [{grid}, {grid}]\n{rows}  \
         video:\n    begin: <|video_start|>\n    end: <|video_end|>\n  \
         mesh:\n    layout: vocab\n    bins: {bins}\n{extent}    first_token: {mesh}\n    \
         begin: <|mesh_start|>\n    end: <|mesh_end|>\n{audio_block}{frontend}\
         defaults:\n  image_grid: [{grid}, {grid}]\n  image_pixels: [256, 256]\n  video_fps: {fps}\n  video_seconds: {seconds}\n  \
         max_mesh_faces: {faces}\n  guidance_scale: {guidance:?}\n  max_text_tokens: 48\n  \
         max_speech_seconds: 12.0\n\
         tasks:\n{tasks}\
         sha256:\n{hashes}",
        name = recipe.name,
        description = recipe.description,
        image = prepared.ids.image,
        rows = row_markers,
        bins = recipe.vocab.mesh_bins,
        extent = recipe
            .vocab
            .mesh_extent
            .map(|e| {
                let stretch = if recipe.vocab.mesh_stretch {
                    "    stretch: true\n"
                } else {
                    ""
                };
                format!("    extent: {e}\n{stretch}")
            })
            .unwrap_or_default(),
        mesh = prepared.ids.mesh,
        fps = crate::world::FPS,
        seconds = f64::from(crate::world::FRAMES) / f64::from(crate::world::FPS),
        faces = 128,
        guidance = recipe.guidance_scale,
    );
    let path = out.join("pack.yaml");
    std::fs::write(&path, manifest).map_err(|e| io(&path, &e))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;

    use pipelines::generate::EngineConfig;
    use pipelines::pack::Pack;
    use pipelines::tasks::{Runner, TaskInputs, TaskName, TaskOptions, TaskOutput};

    use super::*;
    use crate::run::{train, Prepared};
    use crate::usage::expert_usage;

    /// `model` written as a pack into `out`, without held-out losses.
    fn write_untested_pack(
        out: &Path,
        recipe: &Recipe,
        prepared: &Prepared,
        model: &MoeModel,
        state: &crate::run::RunState,
    ) {
        let usage = expert_usage(model, &[], &prepared.ids, 0..0).unwrap();
        let report = TrainingReport {
            state,
            held_out_loss: Vec::new(),
            expert_usage: &usage,
        };
        write_pack(out, recipe, prepared, model, &report).unwrap();
    }

    /// `recipe`'s data prepared and its untrained model written as a pack
    /// in `dir`, loaded.
    fn untrained_pack(dir: &Path, recipe: &Recipe) -> (Prepared, Pack) {
        let prepared = Prepared::fit(recipe).unwrap();
        let eos = prepared.token("<|im_end|>").unwrap();
        let model = MoeModel::new(recipe.model_config(prepared.ids.size, vec![eos]), 1).unwrap();
        let state = crate::run::RunState {
            step: 0,
            recipe: recipe.clone(),
            history: Vec::new(),
            seconds: 0.0,
        };
        let out = dir.join("pack");
        write_untested_pack(&out, recipe, &prepared, &model, &state);
        (prepared, Pack::load(&out).unwrap())
    }

    /// Needs espeak-ng (`scripts/setup-debian.sh`).
    #[test]
    fn with_phoneme_frames_generation_opens_each_phoneme_as_training_wrote_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut recipe = crate::testing::tiny_speech(dir.path());
        let speech = recipe.speech.as_mut().unwrap();
        (speech.word_phonemes, speech.phoneme_frames) = (false, true);
        recipe.validate().unwrap();
        let (prepared, pack) = untrained_pack(dir.path(), &recipe);
        let layout = pack.audio.as_ref().unwrap();
        assert!(layout.phoneme_frames);
        let silent: Vec<u32> = prepared.speech.as_ref().unwrap().codec.silent_codes();
        assert!(!silent.is_empty(), "the teacher's readings end in silence");
        let silent: Vec<u32> = silent.iter().map(|c| layout.first + c).collect();
        assert_eq!(
            layout.silent, silent,
            "the pack names its codec's silent codes"
        );
        let writer = prepared.writer();
        for sentence in [
            "a large red circle at the top left.",
            "make the square blue",
        ] {
            let said = pack.phonemizer.as_ref().unwrap().words(sentence);
            let plan = layout.word_plan(&said);
            let phones: usize = said
                .iter()
                .map(|s| match s {
                    encoders::speech_text::Said::Word(_, p) => p.len(),
                    encoders::speech_text::Said::Pause => 0,
                })
                .sum();
            assert_eq!(plan.len(), phones, "one opening per phoneme");
            assert!(
                plan.iter().rev().skip(1).all(|o| !o.ends_phrase)
                    && plan[plan.len() - 1].ends_phrase,
                "{sentence}: only the last phoneme ends a phrase"
            );
            let target = writer.text_to_speech(sentence).unwrap().target;
            // The audio block: begin, then openings each followed by codes.
            let block = &target[1..target.len() - 2];
            let code = |t: &u32| (layout.first..layout.first + layout.codes).contains(t);
            let mut written = Vec::new();
            for run in block.split(code).filter(|r| !r.is_empty()) {
                written.push(run.to_vec());
            }
            let plan: Vec<Vec<u32>> = plan.into_iter().map(|o| o.tokens).collect();
            assert_eq!(written, plan, "{sentence}");
            assert!(!code(&block[0]) && code(&block[block.len() - 1]));
        }
    }

    /// Needs espeak-ng (`scripts/setup-debian.sh`).
    #[test]
    fn the_evaluations_trained_codes_are_the_codes_training_wrote() {
        use crate::recipe::WordReading;
        for reading in [WordReading::Separate, WordReading::Connected] {
            let dir = tempfile::tempdir().unwrap();
            let mut recipe = crate::testing::tiny_speech(dir.path());
            recipe.speech.as_mut().unwrap().word_reading = reading;
            let (prepared, pack) = untrained_pack(dir.path(), &recipe);
            assert_eq!(crate::eval::word_reading_of(&pack), reading);
            let layout = pack.audio.as_ref().unwrap();
            assert!(!layout.word_markers.is_empty());
            let teacher = crate::speech::teacher::Teacher::default();
            for sentence in [
                "a large red circle at the top left.",
                "make the square blue",
            ] {
                let target = prepared.writer().text_to_speech(sentence).unwrap().target;
                let written: Vec<u32> = target
                    .iter()
                    .filter(|t| (layout.first..layout.first + layout.codes).contains(t))
                    .map(|t| t - layout.first)
                    .collect();
                let codes =
                    crate::eval::trained_codes(&teacher, &pack, layout, sentence, reading).unwrap();
                assert_eq!(codes.codes, [written], "{reading:?}: {sentence}");
                // A connected reading's words, joined, are the sentence as
                // the teacher reads it.
                let said = pack.phonemizer.as_ref().unwrap().words(sentence);
                let connected = crate::speech::read_connected(&teacher, &said).unwrap();
                let whole = layout.encode(&connected.unwrap().reading.audio).unwrap();
                let same = whole.codes == codes.codes;
                assert_eq!(same, reading == WordReading::Connected, "{sentence}");
            }
        }
    }

    #[test]
    fn a_trained_pack_loads_and_serves_every_task_it_was_trained_on() {
        let dir = tempfile::tempdir().unwrap();
        let recipe = crate::testing::tiny_speech(dir.path());
        let prepared = Prepared::fit(&recipe).unwrap();
        let eos = prepared.token("<|im_end|>").unwrap();
        let model = MoeModel::new(recipe.model_config(prepared.ids.size, vec![eos]), 1).unwrap();
        let state = train(&recipe, &prepared, &model, &dir.path().join("ckpt"), |_| {
            true
        })
        .unwrap();
        let out = dir.path().join("pack");
        write_untested_pack(&out, &recipe, &prepared, &model, &state);

        let mut pack = Pack::load(&out).unwrap();
        assert!(pack.phonemizer.is_some() && pack.audio.is_some());
        assert_eq!(pack.audio.as_ref().unwrap().word_markers.len(), 4);
        assert_eq!(pack.audio.as_ref().unwrap().phone_tokens.len(), 39);
        let speech = &pack.manifest.tasks[&TaskName::TextToSpeech];
        assert_eq!((speech.temperature, speech.top_p), (Some(0.7), Some(0.95)));
        assert!(
            pack.voice("default").unwrap().1.is_none(),
            "the teacher's voice, no sample"
        );
        let rows = &pack.image.as_ref().unwrap().row_markers;
        assert_eq!(
            rows.len(),
            8,
            "the starter's image blocks open rows with markers"
        );
        // An untrained model talks until its limit: keep that short.
        pack.manifest.defaults.max_speech_seconds = 0.5;
        pack.manifest.defaults.max_mesh_faces = 4;
        let runner = Runner::new(Arc::new(pack), EngineConfig::default());

        // Each task's request reads the prompt training wrote for it.
        let writer = prepared.writer();
        let mut world = crate::world::World::new(5);
        let split = crate::world::Split::Train;
        let (scene, edit) = (world.scene(split), world.edit(split));
        let (motion, solid) = (world.motion(split), world.solid(split));
        let check =
            |task: TaskName,
             prompt: String,
             image: Option<modalities::Image>,
             written: Result<crate::data::Sequence, crate::data::DataError>| {
                let options = TaskOptions {
                    prompt,
                    ..TaskOptions::default()
                };
                let inputs = TaskInputs {
                    image,
                    ..TaskInputs::default()
                };
                let read = runner.prompt(task, &options, &inputs).unwrap();
                assert_eq!(read, written.unwrap().prompt, "{task}");
            };
        check(
            TaskName::TextToImage,
            scene.prompt(),
            None,
            writer.text_to_image(&scene),
        );
        check(
            TaskName::Caption,
            String::new(),
            Some(scene.render()),
            writer.caption(&scene),
        );
        check(
            TaskName::ImageEdit,
            edit.instruction.clone(),
            Some(edit.before.render()),
            writer.image_edit(&edit),
        );
        check(
            TaskName::TextToVideo,
            motion.prompt(),
            None,
            writer.text_to_video(&motion),
        );
        check(
            TaskName::TextToMesh,
            solid.prompt(),
            None,
            writer.text_to_mesh(&solid, 1),
        );
        check(
            TaskName::TextToSpeech,
            scene.prompt(),
            None,
            writer.text_to_speech(&scene.prompt()),
        );

        let ask = |task: TaskName, prompt: &str, inputs: TaskInputs| {
            let options = TaskOptions {
                prompt: prompt.into(),
                seed: Some(1),
                ..TaskOptions::default()
            };
            runner
                .run(task, &options, &inputs)
                .unwrap()
                .outputs
                .remove(0)
        };
        let image = match ask(TaskName::TextToImage, "a red circle", TaskInputs::default()) {
            TaskOutput::Media(modalities::Media::Image(i)) => i,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            (image.width, image.height),
            (256, 256),
            "scaled to the pack's pixels"
        );
        let speech = ask(
            TaskName::TextToSpeech,
            "Hello there, 42 cats.",
            TaskInputs::default(),
        );
        let TaskOutput::Media(modalities::Media::Audio(audio)) = speech else {
            panic!("{speech:?}")
        };
        assert_eq!(audio.sample_rate, 16_000);
        let heard = ask(
            TaskName::Transcribe,
            "",
            TaskInputs {
                audio: Some(audio),
                ..TaskInputs::default()
            },
        );
        assert!(matches!(heard, TaskOutput::Text(_)), "{heard:?}");
        for task in [
            TaskName::TextToVideo,
            TaskName::TextToMesh,
            TaskName::Caption,
        ] {
            assert!(runner.pack().supports(task), "{task}");
        }
        assert!(!runner.pack().supports(TaskName::Chat));
        let Some(pipelines::pack::MeshLayout::Vocab { frame, .. }) = runner.pack().mesh else {
            panic!("meshes are vocabulary codes")
        };
        assert_eq!(
            frame,
            encoders::mesh::MeshFrame::Stretched { extent: 2.0 },
            "the pack decodes meshes on the grid it was trained on"
        );

        // The evaluation runs every task, and hears the teacher as itself.
        let report = crate::eval::evaluate(
            &runner,
            &crate::eval::EvalConfig {
                per_task: 1,
                split: crate::world::Split::HeldOut,
                seed: 3,
                concurrency: 2,
                outside: 3,
                speech_seeds: 2,
            },
        )
        .unwrap();
        assert_eq!(report.tasks.len(), 7, "{:?}", report.tasks);
        let spoken = report
            .tasks
            .iter()
            .find(|t| t.task == TaskName::TextToSpeech);
        assert_eq!(spoken.unwrap().cases, 8, "four sentences at two seeds each");
        let rows: Vec<(&str, usize)> = report
            .speech
            .iter()
            .map(|r| (r.sentences, r.count))
            .collect();
        assert_eq!(rows, [("world", 1), ("outside", 3)]);
        assert!(
            report.speech.iter().all(|r| r.teacher_wer < 0.1),
            "{:?}",
            report.speech
        );
        assert!(report.markdown().contains("teacher WER"));
        assert!(report.markdown().contains("generation seeds 0 to 1"));
        let manifest = std::fs::read_to_string(out.join("pack.yaml")).unwrap();
        assert!(manifest.contains("audio/model.safetensors") && manifest.contains("speech:"));
        assert!(out.join("speech/LICENSE-cmudict").is_file());
    }
}
