//! A recipe's run: fit the codecs and the vocabulary, then train the
//! backbone on batches drawn from the world, checkpointing as it goes so
//! an interrupted run resumes at its last checkpoint with the same result.
//! Batches ([`crate::batch`]) are a pure function of the recipe and the
//! step, so a resumed run sees exactly the data the whole run would have
//! seen.

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{Device, Tensor};
use encoders::image::patch::PatchCodec;
use encoders::mesh::{MeshCodec, MeshFrame};
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use crate::batch::{backward_in_parallel, batch, example};
use crate::data::{DataError, Sequence, Writer};
use crate::model::MoeModel;
use crate::optim::{AdamW, AdamWConfig};
use crate::recipe::{Recipe, TrainTask};
use crate::train::{batch_loss, learning_rate, Objective};
use crate::vocab::{build_tokenizer, CodeIds, VocabPlan};
use crate::world::{Split, World, CANVAS, PATCH};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Recipe(#[from] crate::recipe::RecipeError),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Codec(#[from] encoders::CodecError),
    #[error("model: {0}")]
    Model(#[from] candle_core::Error),
    #[error("{path}: {why}")]
    File { path: PathBuf, why: String },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
}

pub(crate) fn file_error(path: &Path) -> impl Fn(String) -> RunError + '_ {
    move |why| RunError::File {
        path: path.to_path_buf(),
        why,
    }
}

/// The codecs and vocabulary a recipe fits before training.
pub struct Prepared {
    pub tokenizer: Tokenizer,
    pub ids: CodeIds,
    pub image_codec: PatchCodec,
    pub mesh_codec: MeshCodec,
    pub speech: Option<crate::speech::SpeechKit>,
}

impl Prepared {
    /// Fits the image codec and trains the vocabulary on world sentences.
    pub fn fit(recipe: &Recipe) -> Result<Prepared, RunError> {
        let c = &recipe.image_codec;
        let image_codec =
            crate::codecs::fit_image_codec(recipe.world_seed, c.fit_images, c.codes, c.iterations)?;
        let plan = VocabPlan {
            text: recipe.vocab.text,
            image_codes: image_codec.config().codes,
            image_rows: if recipe.vocab.row_markers {
                (CANVAS / PATCH) as usize
            } else {
                0
            },
            audio_codes: recipe.vocab.audio_codes,
            mesh_bins: recipe.vocab.mesh_bins,
            phonemes: recipe.speech.is_some(),
            word_markers: recipe.speech.as_ref().map_or(0, |s| s.word_markers),
        };
        let (tokenizer, ids) = build_tokenizer(corpus(recipe).into_iter(), plan)
            .map_err(|e| RunError::Tokenizer(e.to_string()))?;
        let speech = recipe
            .speech
            .as_ref()
            .map(|s| crate::speech::SpeechKit::fit(s, recipe.world_seed))
            .transpose()
            .map_err(DataError::from)?;
        let mesh_codec = MeshCodec::new(recipe.vocab.mesh_bins as u32)?.with_frame(MeshFrame::new(
            recipe.vocab.mesh_extent,
            recipe.vocab.mesh_stretch,
        )?);
        Ok(Prepared {
            tokenizer,
            ids,
            image_codec,
            mesh_codec,
            speech,
        })
    }

    pub fn writer(&self) -> Writer<'_> {
        Writer {
            tokenizer: &self.tokenizer,
            ids: self.ids,
            image_codec: &self.image_codec,
            mesh_codec: self.mesh_codec,
            speech: self.speech.as_ref(),
        }
    }

    pub fn token(&self, name: &str) -> Result<u32, RunError> {
        self.tokenizer
            .token_to_id(name)
            .ok_or_else(|| RunError::Tokenizer(format!("{name} is not in the vocabulary")))
    }
}

/// The sentences the vocabulary is trained on: every kind of world prompt
/// and the task templates' own words.
fn corpus(recipe: &Recipe) -> Vec<String> {
    let mut world = World::new(recipe.world_seed ^ 0x5EED);
    let mut sentences: Vec<String> = [
        "user\n",
        "assistant\n",
        "Draw: ",
        "Describe this.",
        "Edit: ",
        "Film 0.75 seconds: ",
        "Model: ",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if recipe.speech.is_some() {
        sentences.extend(["Say: ".to_string(), "Transcribe this audio.".to_string()]);
    }
    for _ in 0..recipe.vocab.sentences / 4 {
        sentences.push(world.scene(Split::Train).prompt());
        sentences.push(world.edit(Split::Train).instruction);
        sentences.push(world.motion(Split::Train).prompt());
        sentences.push(world.solid(Split::Train).prompt());
    }
    sentences
}

/// What the run reports after each step.
#[derive(Debug, Clone)]
pub struct Progress {
    pub step: usize,
    pub steps: usize,
    /// The step's loss (the parts' weighted mean losses).
    pub loss: f32,
    /// Each task's mean loss in this step's batch.
    pub by_task: Vec<(TrainTask, f32)>,
    pub learning_rate: f64,
    /// Target tokens per second over this run's steps so far.
    pub tokens_per_second: f64,
}

/// The checkpoint's bookkeeping: its step, the recipe that made it, and
/// the mean loss of each task over the last checkpoint interval.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunState {
    pub step: usize,
    pub recipe: Recipe,
    pub history: Vec<(usize, Vec<(TrainTask, f32)>)>,
    /// Seconds spent in training steps, over every resumed part of the run.
    #[serde(default)]
    pub seconds: f64,
}

/// Trains `model` from `recipe`, resuming from `checkpoints` when it holds
/// a checkpoint of the same recipe, saving one every `checkpoint_every`
/// steps and at the end. `on_step` returns whether to go on: when it says
/// stop, the run checkpoints and returns early (`state.step < steps`).
pub fn train(
    recipe: &Recipe,
    prepared: &Prepared,
    model: &MoeModel,
    checkpoints: &Path,
    mut on_step: impl FnMut(&Progress) -> bool,
) -> Result<RunState, RunError> {
    let t = &recipe.train;
    let writer = prepared.writer();
    let pad = prepared.token("<|endoftext|>")?;
    let mut opt = AdamW::new(
        &model.varmap,
        AdamWConfig {
            weight_decay: t.weight_decay,
            ..AdamWConfig::default()
        },
    )?;
    let mut state = match crate::checkpoint::load(checkpoints, recipe, model, &mut opt)? {
        Some(state) => state,
        None => RunState {
            step: 0,
            recipe: recipe.clone(),
            history: Vec::new(),
            seconds: 0.0,
        },
    };
    let started = Instant::now();
    let mut tokens = 0usize;
    let mut interval: Vec<(TrainTask, f32)> = Vec::new();
    while state.step < t.steps {
        let step_started = Instant::now();
        let parts = batch(recipe, &writer, state.step)?;
        let lr = learning_rate(state.step, t.steps, t.warmup, t.learning_rate);
        let step = backward_in_parallel(model, &parts, pad, recipe.train.objective())?;
        let stats = opt.apply(&step.grads, step.loss, lr)?;
        if !stats.loss.is_finite() {
            return Err(RunError::Model(candle_core::Error::Msg(format!(
                "the loss is {} at step {}: lower train.learning_rate",
                stats.loss, state.step
            ))));
        }
        tokens += parts
            .iter()
            .flat_map(|p| &p.sequences)
            .map(|s| s.target.len())
            .sum::<usize>();
        interval.extend(step.by_task.iter().copied());
        state.step += 1;
        state.seconds += step_started.elapsed().as_secs_f64();
        let go_on = on_step(&Progress {
            step: state.step,
            steps: t.steps,
            loss: stats.loss,
            by_task: step.by_task,
            learning_rate: lr,
            tokens_per_second: tokens as f64 / started.elapsed().as_secs_f64().max(1e-9),
        });
        if state.step % t.checkpoint_every == 0 || state.step == t.steps || !go_on {
            state.history.push((state.step, mean_by_task(&interval)));
            interval.clear();
            crate::checkpoint::save(checkpoints, &state, model, &opt)?;
        }
        if !go_on {
            break;
        }
    }
    Ok(state)
}

fn mean_by_task(losses: &[(TrainTask, f32)]) -> Vec<(TrainTask, f32)> {
    TrainTask::ALL
        .iter()
        .filter_map(|&task| {
            let these: Vec<f32> = losses
                .iter()
                .filter(|(t, _)| *t == task)
                .map(|(_, l)| *l)
                .collect();
            (!these.is_empty()).then(|| (task, these.iter().sum::<f32>() / these.len() as f32))
        })
        .collect()
}

/// Mean target loss of each task on `per_task` held-out-split examples:
/// the run's check that it learned more than its training draws.
pub fn held_out_loss(
    recipe: &Recipe,
    prepared: &Prepared,
    model: &MoeModel,
    per_task: usize,
) -> Result<Vec<(TrainTask, f32)>, RunError> {
    let writer = prepared.writer();
    let pad = prepared.token("<|endoftext|>")?;
    let mut world = World::new(recipe.world_seed ^ 0xE7A1);
    let mut out = Vec::new();
    for task in recipe.tasks() {
        let sequences = (0..per_task)
            .map(|_| example(&writer, task, &mut world, Split::HeldOut))
            .collect::<Result<Vec<_>, _>>()?;
        let loss = batch_loss(model, &sequences, pad, Objective::default())?.cross_entropy;
        out.push((task, loss));
    }
    Ok(out)
}

/// Token ids `[1, len]` of one sequence (prompt and target).
pub fn ids_tensor(s: &Sequence) -> candle_core::Result<Tensor> {
    let tokens: Vec<u32> = s.prompt.iter().chain(&s.target).copied().collect();
    let n = tokens.len();
    Tensor::from_vec(tokens, (1, n), &Device::Cpu)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::testing::tiny;

    fn weights(model: &MoeModel) -> Vec<(String, Vec<f32>)> {
        let data = model.varmap.data().lock().unwrap();
        let mut out: Vec<(String, Vec<f32>)> = data
            .iter()
            .map(|(n, v)| {
                (
                    n.clone(),
                    v.as_tensor().flatten_all().unwrap().to_vec1().unwrap(),
                )
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    #[test]
    fn speech_batches_pair_phonemes_with_the_teachers_mel_codes() {
        let dir = tempfile::tempdir().unwrap();
        let mut recipe = crate::testing::tiny_speech(dir.path());
        recipe.validate().unwrap();
        let prepared = Prepared::fit(&recipe).unwrap();
        let writer = prepared.writer();
        let ids = prepared.ids;
        let phone = prepared.token("<|ph_AA|>").unwrap();
        assert!(phone < ids.image, "phoneme tokens sit before the codes");
        let mut world = World::new(8);
        for _ in 0..4 {
            let s = example(&writer, TrainTask::TextToSpeech, &mut world, Split::Train).unwrap();
            let prompt = prepared.tokenizer.decode(&s.prompt, false).unwrap();
            assert!(prompt.contains("Say: <|word_0|><|ph_"), "{prompt}");
            // Each word's codes open with the marker that opens its
            // phonemes in the prompt, in the same order.
            let markers: Vec<u32> = (0..4)
                .map(|k| prepared.token(&format!("<|word_{k}|>")).unwrap())
                .collect();
            let in_prompt: Vec<u32> = s
                .prompt
                .iter()
                .copied()
                .filter(|t| markers.contains(t))
                .collect();
            let block = &s.target[1..s.target.len() - 2];
            let in_audio: Vec<u32> = block
                .iter()
                .copied()
                .filter(|t| markers.contains(t))
                .collect();
            assert!(in_prompt.len() >= 3 && in_prompt == in_audio, "{prompt}");
            assert_eq!(in_audio[..4], markers[..], "numbered in order");
            // Each word's phonemes again after its marker, then its codes.
            let prompt_words: Vec<&[u32]> =
                s.prompt.split(|t| markers.contains(t)).skip(1).collect();
            let audio = |c: &u32| (ids.audio..ids.audio + 16).contains(c);
            let mut codes = 0;
            for (k, word) in block.split(|t| markers.contains(t)).skip(1).enumerate() {
                let phonemes = word.iter().take_while(|c| !audio(c)).count();
                assert!(phonemes > 0, "word {k} repeats its phonemes: {word:?}");
                assert!(
                    prompt_words[k].starts_with(&word[..phonemes]),
                    "word {k}: the prompt's phonemes"
                );
                assert!(
                    word.len() - phonemes > 5 && word[phonemes..].iter().all(audio),
                    "each word has its mel codes: {word:?}"
                );
                codes += word.len() - phonemes;
            }
            assert!(codes > 30, "a second of speech is 62 codes: {codes}");
            let t = example(&writer, TrainTask::Transcribe, &mut world, Split::Train).unwrap();
            let text = prepared
                .tokenizer
                .decode(&t.target[..t.target.len() - 1], false)
                .unwrap();
            let world_words: std::collections::BTreeSet<String> = corpus(&recipe)
                .iter()
                .flat_map(|s| s.split_whitespace().map(str::to_string).collect::<Vec<_>>())
                .collect();
            assert!(
                text.split_whitespace().all(|w| world_words.contains(w)),
                "a world sentence: {text}"
            );
        }
        recipe.speech = None;
        assert!(recipe
            .validate()
            .unwrap_err()
            .to_string()
            .contains("speech section"));
    }

    #[test]
    fn an_interrupted_run_resumes_to_the_weights_of_an_uninterrupted_one() {
        let recipe = tiny();
        let prepared = Prepared::fit(&recipe).unwrap();
        let eos = prepared.token("<|im_end|>").unwrap();
        let config = recipe.model_config(prepared.ids.size, vec![eos]);
        let dir = tempfile::tempdir().unwrap();

        let whole = MoeModel::new(config.clone(), recipe.seed).unwrap();
        let state = train(&recipe, &prepared, &whole, &dir.path().join("a"), |_| true).unwrap();
        assert_eq!(state.step, 4);
        assert_eq!(state.history.len(), 2, "checkpoints at steps 2 and 4");

        let first = MoeModel::new(config.clone(), recipe.seed).unwrap();
        let stopped = train(&recipe, &prepared, &first, &dir.path().join("b"), |p| {
            p.step < 3
        })
        .unwrap();
        assert_eq!(stopped.step, 3, "stopped after step 3");
        let resumed = MoeModel::new(config, recipe.seed).unwrap();
        let mut steps = Vec::new();
        let state = train(&recipe, &prepared, &resumed, &dir.path().join("b"), |p| {
            steps.push(p.step);
            true
        })
        .unwrap();
        assert_eq!(steps, [4], "only the last step ran again");
        assert_eq!(state.step, 4);
        assert_eq!(weights(&resumed), weights(&whole));

        let mut other = recipe.clone();
        other.train.learning_rate *= 2.0;
        let model = MoeModel::new(other.model_config(prepared.ids.size, vec![eos]), 1).unwrap();
        let e = train(&other, &prepared, &model, &dir.path().join("b"), |_| true)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("different recipe"), "{e}");
    }
}
