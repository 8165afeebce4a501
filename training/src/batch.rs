//! A step's batch and its backward pass.
//!
//! A batch is one or more [`Part`]s: the sequences of one task, padded
//! together, and the weight of their mean loss in the step's loss. A
//! recipe draws either one task per step (picked by the mix) or, with
//! `train.mixed_batches`, every task of the mix in every step: each task
//! gets its weight's share of `batch_tokens` and of the loss, so the
//! expected gradient is the one-task-per-step gradient, without steps that
//! pull the whole model towards one task and the next towards another.
//!
//! Batches are a pure function of the recipe and the step (each step seeds
//! its own world), so a resumed run sees exactly the data the whole run
//! would have seen.

use candle_core::backprop::GradStore;
use candle_core::Tensor;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::data::{DataError, Sequence, Writer};
use crate::model::MoeModel;
use crate::recipe::{Recipe, TrainTask};
use crate::train::{batch_loss, Objective};
use crate::world::{Split, World};

/// The sequences of one task in a step and the weight of their mean loss.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    pub task: TrainTask,
    pub weight: f64,
    pub sequences: Vec<Sequence>,
}

/// One example of `task` from `world`'s `split`.
pub fn example(
    writer: &Writer,
    task: TrainTask,
    world: &mut World,
    split: Split,
) -> Result<Sequence, DataError> {
    match task {
        TrainTask::TextToImage => writer.text_to_image(&world.scene(split)),
        TrainTask::Caption => writer.caption(&world.scene(split)),
        TrainTask::ImageEdit => writer.image_edit(&world.edit(split)),
        TrainTask::TextToVideo => writer.text_to_video(&world.motion(split)),
        TrainTask::TextToMesh => {
            let solid = world.solid(split);
            writer.text_to_mesh(&solid, world.draw_seed())
        }
        TrainTask::TextToSpeech => {
            let kit = writer.speech.ok_or(DataError::NoSpeech)?;
            writer.text_to_speech(&kit.sentence(world, split))
        }
        // Transcripts are world sentences: their words are the world's.
        TrainTask::Transcribe => {
            let kind = world.draw_seed() as usize;
            writer.transcribe(&crate::speech::sentences::world_sentence(
                world, split, kind,
            ))
        }
    }
}

/// How training examples depart from [`example`] (`train.prompt_dropout`,
/// `train.mesh_size_noise`). Each coin is drawn only when its share is
/// above 0, so recipes without them see the data they always saw.
#[derive(Debug, Clone, Copy)]
struct Noise {
    prompt_dropout: f64,
    mesh_size: f64,
}

fn coin(world: &mut World) -> f64 {
    (world.draw_seed() >> 11) as f64 / (1u64 << 53) as f64
}

/// A training example of `task`: [`example`], except that a share of
/// pictures and edits lose their prompt and a share of solids are read
/// after another solid's size tokens.
fn training_example(
    writer: &Writer,
    task: TrainTask,
    world: &mut World,
    noise: Noise,
) -> Result<Sequence, DataError> {
    match task {
        TrainTask::TextToImage | TrainTask::ImageEdit if noise.prompt_dropout > 0.0 => {
            if coin(world) >= noise.prompt_dropout {
                example(writer, task, world, Split::Train)
            } else if task == TrainTask::TextToImage {
                writer.text_to_image_unprompted(&world.scene(Split::Train))
            } else {
                writer.image_edit_unprompted(&world.edit(Split::Train))
            }
        }
        TrainTask::TextToMesh if noise.mesh_size > 0.0 => {
            if coin(world) >= noise.mesh_size {
                return example(writer, task, world, Split::Train);
            }
            let (solid, seed) = (world.solid(Split::Train), world.draw_seed());
            let (other, other_seed) = (world.solid(Split::Train), world.draw_seed());
            writer.text_to_mesh_fed_sizes(&solid, seed, &other, other_seed)
        }
        _ => example(writer, task, world, Split::Train),
    }
}

/// The batch of `step`: its parts, one per task drawn.
pub fn batch(recipe: &Recipe, writer: &Writer, step: usize) -> Result<Vec<Part>, DataError> {
    let mut rng = ChaCha8Rng::seed_from_u64(recipe.seed);
    rng.set_stream(step as u64);
    let total: f64 = recipe.mix.values().sum();
    let tokens = recipe.train.batch_tokens;
    let noise = Noise {
        prompt_dropout: recipe.train.prompt_dropout,
        mesh_size: recipe.train.mesh_size_noise,
    };
    if recipe.train.mixed_batches {
        let mut world = World::new(rng.random());
        return recipe
            .tasks()
            .into_iter()
            .map(|task| {
                let weight = recipe.mix[&task] / total;
                let budget = (tokens as f64 * weight).round() as usize;
                Ok(Part {
                    task,
                    weight,
                    sequences: fill(writer, task, &mut world, budget, noise)?,
                })
            })
            .collect();
    }
    let mut pick = rng.random::<f64>() * total;
    let mut task = TrainTask::TextToImage;
    for (&t, &w) in &recipe.mix {
        task = t;
        if pick < w {
            break;
        }
        pick -= w;
    }
    let mut world = World::new(rng.random());
    Ok(vec![Part {
        task,
        weight: 1.0,
        sequences: fill(writer, task, &mut world, tokens, noise)?,
    }])
}

/// As many examples of `task` as fit in `budget` tokens once padded to the
/// longest, and at least one.
fn fill(
    writer: &Writer,
    task: TrainTask,
    world: &mut World,
    budget: usize,
    noise: Noise,
) -> Result<Vec<Sequence>, DataError> {
    let mut out: Vec<Sequence> = Vec::new();
    let mut longest = 0;
    loop {
        let s = training_example(writer, task, world, noise)?;
        let len = longest.max(s.len());
        if !out.is_empty() && len * (out.len() + 1) > budget {
            return Ok(out);
        }
        longest = len;
        out.push(s);
    }
}

/// What a step's backward pass gives: the step's cross-entropy, each
/// part's mean cross-entropy, and one gradient store per worker (their sum
/// is the gradient of the objective).
pub struct Backward {
    pub loss: f32,
    pub by_task: Vec<(TrainTask, f32)>,
    pub grads: Vec<GradStore>,
}

/// A slice of one part's sequences, padded and run together by one worker;
/// `share` is its part of the part's target tokens.
struct Piece<'a> {
    part: usize,
    sequences: &'a [Sequence],
    share: f64,
}

/// The batch's loss and its gradients, split among one worker per core:
/// candle runs most ops on one thread, so two halves of a batch
/// backpropagated side by side take about half the time of the whole.
/// Each part is cut into one piece per worker (a part of fewer sequences
/// stays whole), and the pieces go to the least loaded worker, largest
/// first. A piece's mean loss is weighted by its share of its part's
/// target tokens times the part's weight, so the workers' gradients add
/// up to the gradient of the parts' weighted mean losses (the routers'
/// balancing term, a statistic of routes, is each piece's own).
pub fn backward_in_parallel(
    model: &MoeModel,
    parts: &[Part],
    pad: u32,
    objective: Objective,
) -> candle_core::Result<Backward> {
    let workers = rayon::current_num_threads().max(1);
    let mut pieces: Vec<Piece> = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let total: usize = part.sequences.iter().map(|s| s.target.len()).sum();
        let per = part.sequences.len().div_ceil(workers).max(1);
        for sequences in part.sequences.chunks(per) {
            let tokens: usize = sequences.iter().map(|s| s.target.len()).sum();
            pieces.push(Piece {
                part: i,
                sequences,
                share: tokens as f64 / total.max(1) as f64,
            });
        }
    }
    let cost =
        |p: &Piece| p.sequences.iter().map(Sequence::len).max().unwrap_or(0) * p.sequences.len();
    pieces.sort_by_key(|p| std::cmp::Reverse(cost(p)));
    let mut loads: Vec<(usize, Vec<Piece>)> = (0..workers).map(|_| (0, Vec::new())).collect();
    for piece in pieces {
        if let Some(least) = loads.iter_mut().min_by_key(|(load, _)| *load) {
            least.0 += cost(&piece);
            least.1.push(piece);
        }
    }
    type Worked = candle_core::Result<(Vec<(usize, f64)>, GradStore)>;
    // The workers are tasks of rayon's pool, not threads of their own:
    // candle's matrix products split over that pool, and from a thread
    // outside it every product handed its halves to the pool's threads
    // and slept until they were done (a seventh of a step's CPU time went
    // to switching threads).
    let results: Vec<Worked> = loads
        .par_iter()
        .filter(|(_, pieces)| !pieces.is_empty())
        .map(|(_, pieces)| -> Worked {
            let mut sum: Option<Tensor> = None;
            let mut means = Vec::with_capacity(pieces.len());
            for p in pieces {
                let mean = batch_loss(model, p.sequences, pad, objective)?;
                means.push((p.part, p.share * f64::from(mean.cross_entropy)));
                let term = (mean.objective * (p.share * parts[p.part].weight))?;
                sum = Some(match sum {
                    Some(s) => (s + term)?,
                    None => term,
                });
            }
            // Only workers with pieces get here.
            let Some(sum) = sum else {
                candle_core::bail!("a training worker was given no sequences")
            };
            Ok((means, sum.backward()?))
        })
        .collect();
    let mut part_loss = vec![0f64; parts.len()];
    let mut grads = Vec::with_capacity(results.len());
    for r in results {
        let (means, g) = r?;
        for (part, mean) in means {
            part_loss[part] += mean;
        }
        grads.push(g);
    }
    let loss = parts
        .iter()
        .zip(&part_loss)
        .map(|(p, l)| p.weight * l)
        .sum::<f64>() as f32;
    let by_task = parts
        .iter()
        .zip(&part_loss)
        .map(|(p, &l)| (p.task, l as f32))
        .collect();
    Ok(Backward {
        loss,
        by_task,
        grads,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::model::MoeModel;
    use crate::run::Prepared;
    use crate::testing::{max_abs, tiny};

    #[test]
    fn batches_depend_only_on_the_recipe_and_the_step() {
        let mut recipe = tiny();
        recipe.train.mixed_batches = false;
        let prepared = Prepared::fit(&recipe).unwrap();
        let writer = prepared.writer();
        let a = batch(&recipe, &writer, 7).unwrap();
        assert_eq!(a, batch(&recipe, &writer, 7).unwrap());
        assert_eq!(a.len(), 1, "one task a step");
        let longest = a[0].sequences.iter().map(Sequence::len).max().unwrap();
        let n = a[0].sequences.len();
        assert!(n == 1 || longest * n <= recipe.train.batch_tokens);
        let tasks: std::collections::BTreeSet<TrainTask> = (0..60)
            .map(|s| batch(&recipe, &writer, s).unwrap()[0].task)
            .collect();
        assert_eq!(
            tasks.len(),
            recipe.tasks().len(),
            "the mix reaches every task"
        );
    }

    #[test]
    fn mixed_batches_hold_every_task_by_its_weight() {
        let mut recipe = tiny();
        recipe.train.mixed_batches = true;
        recipe.train.batch_tokens = 3000;
        recipe.mix.insert(TrainTask::Caption, 0.0);
        let prepared = Prepared::fit(&recipe).unwrap();
        let writer = prepared.writer();
        let parts = batch(&recipe, &writer, 3).unwrap();
        assert_eq!(parts, batch(&recipe, &writer, 3).unwrap());
        let tasks: Vec<TrainTask> = parts.iter().map(|p| p.task).collect();
        assert_eq!(tasks, recipe.tasks(), "every task with a weight, once");
        assert!(!tasks.contains(&TrainTask::Caption));
        let total: f64 = recipe.mix.values().sum();
        assert!((parts.iter().map(|p| p.weight).sum::<f64>() - 1.0).abs() < 1e-12);
        for p in &parts {
            assert!((p.weight - recipe.mix[&p.task] / total).abs() < 1e-12);
            let budget = (3000.0 * p.weight).round() as usize;
            let longest = p.sequences.iter().map(Sequence::len).max().unwrap();
            let n = p.sequences.len();
            assert!(
                n == 1 || longest * n <= budget,
                "{:?}: {n} x {longest} > {budget}",
                p.task
            );
            assert!(
                n == 1 || longest * (n + 1) > budget / 2,
                "{:?} fills its share: {n} x {longest} of {budget}",
                p.task
            );
        }
    }

    /// With `train.prompt_dropout`, about that share of pictures and edits
    /// are trained with an empty prompt: the string the pack's template
    /// renders for guidance's unconditional branch.
    #[test]
    fn prompt_dropout_empties_that_share_of_picture_and_edit_prompts() {
        let mut recipe = tiny();
        recipe.train.mixed_batches = true;
        recipe.mix = [(TrainTask::TextToImage, 1.0), (TrainTask::ImageEdit, 1.0)].into();
        let prepared = crate::run::Prepared::fit(&recipe).unwrap();
        let writer = prepared.writer();
        let tokens = |text: &str| {
            let ids = prepared.tokenizer.encode(text, false).unwrap();
            ids.get_ids().to_vec()
        };
        let unprompted =
            tokens(&crate::pack::template(TrainTask::TextToImage).replace("{{ prompt }}", ""));
        let edit_head = crate::pack::template(TrainTask::ImageEdit).replace("{{ prompt }}", "");
        let edit_head = tokens(edit_head.split("{{ image }}").next().unwrap());
        let mut count = |dropout: f64| {
            recipe.train.prompt_dropout = dropout;
            let (mut dropped, mut all) = (0, 0);
            for step in 0..40 {
                for part in batch(&recipe, &writer, step).unwrap() {
                    for s in &part.sequences {
                        all += 1;
                        dropped += usize::from(match part.task {
                            TrainTask::TextToImage => s.prompt == unprompted,
                            _ => s.prompt.starts_with(&edit_head),
                        });
                    }
                }
            }
            (dropped, all)
        };
        assert_eq!(count(0.0).0, 0, "no dropout: every prompt kept");
        let (dropped, all) = count(0.3);
        let share = dropped as f64 / all as f64;
        assert!((0.2..0.4).contains(&share), "{dropped} of {all} dropped");
    }

    /// With `train.mesh_size_noise`, about that share of solids are read
    /// after another training solid's size tokens, and every solid is
    /// still taught its own tokens.
    #[test]
    fn mesh_size_noise_feeds_that_share_of_solids_another_solids_sizes() {
        let mut recipe = tiny();
        assert!(recipe.vocab.mesh_stretch, "size tokens to swap");
        recipe.mix = [(TrainTask::TextToMesh, 1.0)].into();
        let prepared = crate::run::Prepared::fit(&recipe).unwrap();
        let writer = prepared.writer();
        let mesh = prepared.token("<|mesh_start|>").unwrap();
        let codes = prepared.ids.mesh..prepared.ids.mesh + recipe.vocab.mesh_bins as u32;
        let mut count = |noise: f64| {
            recipe.train.mesh_size_noise = noise;
            let (mut fed, mut all) = (0, 0);
            for step in 0..60 {
                for s in &batch(&recipe, &writer, step).unwrap()[0].sequences {
                    assert_eq!(s.target[0], mesh);
                    all += 1;
                    if s.fed_instead.is_empty() {
                        continue;
                    }
                    fed += 1;
                    let positions: Vec<usize> = s.fed_instead.iter().map(|f| f.0).collect();
                    assert_eq!(positions, [1, 2, 3], "the three size tokens");
                    let read = s.inputs();
                    let at = s.prompt.len();
                    // Read: sizes of some solid (codes of the mesh range);
                    // taught: the solid's own, faces unchanged.
                    assert!(read[at + 1..at + 4].iter().all(|t| codes.contains(t)));
                    assert_eq!(read[at + 4..], s.target[4..]);
                }
            }
            (fed, all)
        };
        assert_eq!(count(0.0).0, 0, "no noise: every solid reads its own sizes");
        let (fed, all) = count(0.3);
        let share = fed as f64 / all as f64;
        assert!(
            (0.15..0.45).contains(&share),
            "{fed} of {all} fed other sizes"
        );
    }

    /// The parallel pieces' gradients add up to the gradient of the
    /// weighted sum of the parts' mean losses computed in one graph.
    #[test]
    fn parallel_pieces_sum_to_the_weighted_loss_and_its_gradient() {
        let mut recipe = tiny();
        recipe.train.mixed_batches = true;
        recipe.train.batch_tokens = 3000;
        let prepared = Prepared::fit(&recipe).unwrap();
        let writer = prepared.writer();
        let eos = prepared.token("<|im_end|>").unwrap();
        let pad = prepared.token("<|endoftext|>").unwrap();
        let model = MoeModel::new(recipe.model_config(prepared.ids.size, vec![eos]), 2).unwrap();
        let parts = batch(&recipe, &writer, 0).unwrap();
        assert!(
            parts.iter().any(|p| p.sequences.len() > 2),
            "pieces are cut"
        );

        // Cross-entropy terms only: the balancing term is a statistic of
        // each piece's routes, so pieces balance apart (as the devices of
        // data-parallel training do), not as one part.
        let objective = Objective {
            focal: 1.0,
            router_balance: 0.0,
        };
        let step = backward_in_parallel(&model, &parts, pad, objective).unwrap();
        let mut whole: Option<Tensor> = None;
        let mut reported = 0f32;
        for p in &parts {
            let mean = batch_loss(&model, &p.sequences, pad, objective).unwrap();
            let got = step.by_task.iter().find(|(t, _)| *t == p.task).unwrap().1;
            let want = mean.cross_entropy;
            assert!((got - want).abs() < 1e-4, "{:?}: {got} vs {want}", p.task);
            reported += want * p.weight as f32;
            let term = (mean.objective * p.weight).unwrap();
            whole = Some(match whole {
                Some(s) => (s + term).unwrap(),
                None => term,
            });
        }
        let whole = whole.unwrap();
        assert!(
            (step.loss - reported).abs() < 1e-4,
            "{} vs {reported}",
            step.loss
        );
        let reference = whole.backward().unwrap();
        let vars = model.varmap.all_vars();
        let mut checked = 0;
        for var in &vars {
            let Some(want) = reference.get(var.as_tensor()) else {
                continue;
            };
            let mut sum = want.zeros_like().unwrap();
            for g in &step.grads {
                if let Some(got) = g.get(var.as_tensor()) {
                    sum = (sum + got).unwrap();
                }
            }
            let diff = max_abs(&(sum - want).unwrap());
            let scale = max_abs(want);
            assert!(diff <= 1e-4 * scale.max(1e-3), "{diff} of {scale}");
            checked += 1;
        }
        assert!(checked > 4, "{checked} gradients compared");
    }
}
