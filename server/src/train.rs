//! `anyforge train`: run a training recipe and write the pack it makes.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use training::batch::example;
use training::model::MoeModel;
use training::pack::{write_pack, TrainingReport};
use training::recipe::Recipe;
use training::run::{held_out_loss, train, Prepared};
use training::usage::expert_usage;
use training::world::{Split, World};

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// The recipe (YAML), e.g. assets/recipes/starter.yaml.
    #[arg(long)]
    recipe: PathBuf,
    /// Folder to write the finished pack into.
    #[arg(long)]
    out: PathBuf,
    /// Folder of the run's checkpoints (default: OUT.checkpoints beside
    /// OUT); a run started again with the same recipe resumes from it.
    #[arg(long)]
    checkpoints: Option<PathBuf>,
}

pub fn run(args: TrainArgs) -> Result<()> {
    let started = Instant::now();
    let recipe = Recipe::load(&args.recipe)?;
    let checkpoints = args.checkpoints.clone().unwrap_or_else(|| {
        let mut name = args.out.file_name().unwrap_or_default().to_os_string();
        name.push(".checkpoints");
        args.out.with_file_name(name)
    });
    std::fs::create_dir_all(&checkpoints)
        .with_context(|| format!("creating {}", checkpoints.display()))?;
    eprintln!(
        "fitting the image codec ({} codes) and the vocabulary",
        recipe.image_codec.codes
    );
    let prepared = Prepared::fit(&recipe)?;
    let eos = prepared.token("<|im_end|>")?;
    let model = MoeModel::new(
        recipe.model_config(prepared.ids.size, vec![eos]),
        recipe.seed,
    )?;
    let c = &model.config;
    eprintln!(
        "model: {} layers, hidden {}, {} experts (top {}), vocabulary {}",
        c.num_hidden_layers, c.hidden_size, c.num_experts, c.num_experts_per_tok, c.vocab_size
    );
    let bar = indicatif::ProgressBar::new(recipe.train.steps as u64);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "[{elapsed_precise}] [{bar:30}] {pos}/{len} eta {eta} {msg}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    let interactive = std::io::stderr().is_terminal();
    // Ctrl-C ends the run at the next step's checkpoint; the same command resumes it.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, std::sync::atomic::Ordering::SeqCst))
        .context("installing the Ctrl-C handler")?;
    let state = train(&recipe, &prepared, &model, &checkpoints, |p| {
        bar.set_position(p.step as u64);
        let tasks = match &p.by_task[..] {
            [(task, _)] => task.name().to_string(),
            all => format!("{} tasks", all.len()),
        };
        let line = format!(
            "loss {:.3} ({tasks}) lr {:.2e} {:.0} tokens/s",
            p.loss, p.learning_rate, p.tokens_per_second
        );
        if interactive {
            bar.set_message(line);
        } else if p.step % 25 == 0 || p.step == p.steps {
            eprintln!("step {}/{} {line}", p.step, p.steps);
        }
        !stop.load(std::sync::atomic::Ordering::SeqCst)
    })?;
    bar.finish();
    if state.step < recipe.train.steps {
        eprintln!(
            "stopped at step {} of {}; the checkpoint is in {}: run the same command to resume",
            state.step,
            recipe.train.steps,
            checkpoints.display()
        );
        return Ok(());
    }
    for (step, losses) in &state.history {
        let parts: Vec<String> = losses
            .iter()
            .map(|(t, l)| format!("{} {l:.3}", t.name()))
            .collect();
        eprintln!("step {step}: {}", parts.join(", "));
    }
    let held_out = held_out_loss(&recipe, &prepared, &model, 8)?;
    let parts: Vec<String> = held_out
        .iter()
        .map(|(t, l)| format!("{} {l:.3}", t.name()))
        .collect();
    eprintln!("held-out loss: {}", parts.join(", "));
    let writer = prepared.writer();
    let mut world = World::new(recipe.world_seed ^ 0x05A6E);
    let mut sample = Vec::new();
    for task in recipe.tasks() {
        for _ in 0..4 {
            sample.push(example(&writer, task, &mut world, Split::HeldOut)?);
        }
    }
    let markers = prepared.token("<|endoftext|>")?..prepared.ids.image;
    let usage = expert_usage(&model, &sample, &prepared.ids, markers)?;
    eprintln!(
        "expert usage (% of each kind's routes):\n{}",
        usage.markdown()
    );
    let report = TrainingReport {
        state: &state,
        held_out_loss: held_out,
        expert_usage: &usage,
    };
    write_pack(&args.out, &recipe, &prepared, &model, &report)?;
    eprintln!(
        "wrote the pack to {} in {:.0} s",
        args.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// The pack to evaluate (default: $ANYFORGE_PACK, else the default pack).
    #[arg(long, env = "ANYFORGE_PACK")]
    pack: Option<PathBuf>,
    /// Cases per task.
    #[arg(long, default_value_t = 50)]
    per_task: usize,
    /// Seeds the world the cases are drawn from.
    #[arg(long, default_value_t = 2026)]
    seed: u64,
    /// Draw the cases from training combinations instead of held-out ones:
    /// a pack that passes these but not the held-out ones memorised.
    #[arg(long)]
    training_split: bool,
    /// Speak each sentence at generation seeds 0 to N-1 and judge them all:
    /// one seed's word error rate is one draw of sampled speech.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
    speech_seeds: u64,
    /// Also write the report (Markdown, e.g. docs/starter-pack.md).
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn eval(args: EvalArgs) -> Result<()> {
    use pipelines::generate::EngineConfig;
    use pipelines::pack::Pack;
    use pipelines::tasks::Runner;
    use training::eval::{evaluate, EvalConfig};

    let dir = match args.pack.clone() {
        Some(dir) => dir,
        None => crate::assets::default_pack()?,
    };
    let pack = Pack::load(&dir).with_context(|| format!("pack {}", dir.display()))?;
    let runner = Runner::new(std::sync::Arc::new(pack), EngineConfig::default());
    let report = evaluate(
        &runner,
        &EvalConfig {
            per_task: args.per_task,
            split: if args.training_split {
                training::world::Split::Train
            } else {
                training::world::Split::HeldOut
            },
            seed: args.seed,
            concurrency: 8,
            outside: training::eval::OUTSIDE.len(),
            speech_seeds: args.speech_seeds,
        },
    )?;
    let mut text = format!(
        "# The starter pack\n\n\
         The default pack is a small any-to-any MoE model trained by anyforge's own recipe \
         (`assets/recipes/starter.yaml`) on its procedural world (`docs/world.md`). \
         Reproduce it with `anyforge train --recipe assets/recipes/starter.yaml --out DIR`; \
         this report is written by `anyforge eval --pack DIR --speech-seeds 8 --out FILE`.\n\n\
         ## Evaluation\n\n{}",
        report.markdown()
    );
    if let Ok(json) = std::fs::read_to_string(dir.join("training.json")) {
        if let Ok(t) = serde_json::from_str::<serde_json::Value>(&json) {
            text.push_str(&training_summary(&t));
        }
    }
    println!("{text}");
    if let Some(out) = &args.out {
        modalities::write_atomic(out, text.as_bytes())
            .with_context(|| out.display().to_string())?;
    }
    Ok(())
}

/// The training run's figures from the pack's `training.json`.
fn training_summary(t: &serde_json::Value) -> String {
    let mut out = String::from("\n## Training\n\n");
    match t["state"]["seconds"].as_f64().filter(|s| *s > 0.0) {
        Some(s) => out.push_str(&format!(
            "{} steps in {:.0} minutes of training.\n\n",
            t["state"]["step"],
            s / 60.0
        )),
        None => out.push_str(&format!("{} steps.\n\n", t["state"]["step"])),
    }
    if let Some(history) = t["state"]["history"].as_array() {
        out.push_str("Mean training loss by task over the last checkpoint interval:\n\n");
        if let Some(last) = history.last() {
            for pair in last[1].as_array().into_iter().flatten() {
                out.push_str(&format!(
                    "- {}: {:.3}\n",
                    pair[0].as_str().unwrap_or("?"),
                    pair[1].as_f64().unwrap_or(f64::NAN)
                ));
            }
        }
    }
    if let Some(held) = t["held_out_loss"].as_array() {
        out.push_str("\nLoss on held-out combinations:\n\n");
        for pair in held {
            out.push_str(&format!(
                "- {}: {:.3}\n",
                pair[0].as_str().unwrap_or("?"),
                pair[1].as_f64().unwrap_or(f64::NAN)
            ));
        }
    }
    if let Some(usage) = t["expert_usage"]["shares"].as_object() {
        out.push_str("\nExpert usage: the share (%) of each kind of token's routes that each expert takes, by layer:\n\n");
        let experts = t["expert_usage"]["experts"].as_u64().unwrap_or(0) as usize;
        out.push_str("| tokens | layer |");
        for e in 0..experts {
            out.push_str(&format!(" e{e} |"));
        }
        out.push_str("\n|---|---|");
        out.push_str(&"---:|".repeat(experts));
        out.push('\n');
        for (kind, layers) in usage {
            for (layer, row) in layers.as_array().into_iter().flatten().enumerate() {
                out.push_str(&format!("| {kind} | {layer} |"));
                for share in row.as_array().into_iter().flatten() {
                    out.push_str(&format!(" {:.0} |", share.as_f64().unwrap_or(0.0) * 100.0));
                }
                out.push('\n');
            }
        }
    }
    out
}
