//! One training step of the starter model (forward, backward on both
//! workers, no optimizer) on a batch shaped like a starter recipe's mixed
//! batch: each task's share of 3,072 tokens in sequences of that task's
//! length. Prints one JSON line: the median step time and target tokens/s.
//!
//!   cargo bench -p training --bench step [-- STEPS]

use std::time::Instant;

// As the `anyforge` binary, which trains packs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use training::batch::{backward_in_parallel, Part};
use training::data::Sequence;
use training::model::{MoeConfig, MoeModel};
use training::recipe::TrainTask;
use training::train::Objective;

/// (task, mix weight, prompt length, target length) as the starter
/// recipe writes them, to within a few tokens.
const SHAPES: [(TrainTask, f64, usize, usize); 7] = [
    (TrainTask::TextToImage, 4.0, 22, 73),
    (TrainTask::Caption, 2.0, 78, 22),
    (TrainTask::ImageEdit, 5.0, 100, 73),
    (TrainTask::TextToVideo, 1.0, 16, 438),
    (TrainTask::TextToMesh, 2.0, 8, 150),
    (TrainTask::TextToSpeech, 4.0, 90, 260),
    (TrainTask::Transcribe, 1.0, 270, 30),
];

/// Steps run before timing: the first ones map the memory the rest reuse.
const WARM_UP: usize = 5;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    kernels::keep_freed_memory();
    let steps: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(10);
    let vocab = 2007;
    let config = MoeConfig {
        vocab_size: vocab,
        hidden_size: 128,
        num_hidden_layers: 4,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        head_dim: 32,
        moe_intermediate_size: 256,
        num_experts: 8,
        num_experts_per_tok: 2,
        rms_norm_eps: 1e-6,
        rope_theta: 10_000.0,
        max_position_embeddings: 1024,
        eos_token_id: vec![0],
    };
    let model = MoeModel::new(config, 1)?;
    let mut state = 12345u64;
    let mut token = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 33) % vocab as u64) as u32
    };
    let total: f64 = SHAPES.iter().map(|s| s.1).sum();
    let parts: Vec<Part> = SHAPES
        .iter()
        .map(|&(task, weight, prompt, target)| {
            let budget = 3072.0 * weight / total;
            let count = ((budget / (prompt + target) as f64) as usize).max(1);
            let sequences = (0..count)
                .map(|_| {
                    let prompt = (0..prompt).map(|_| token()).collect();
                    Sequence::new(prompt, (0..target).map(|_| token()).collect())
                })
                .collect();
            Part {
                task,
                weight: weight / total,
                sequences,
            }
        })
        .collect();
    let targets: usize = parts
        .iter()
        .flat_map(|p| &p.sequences)
        .map(|s| s.target.len())
        .sum();
    let objective = Objective {
        focal: 2.0,
        router_balance: 0.002,
    };
    let mut times = Vec::with_capacity(steps);
    for i in 0..steps + WARM_UP {
        let started = Instant::now();
        let step = backward_in_parallel(&model, &parts, 0, objective)?;
        std::hint::black_box(step.loss);
        if i >= WARM_UP {
            times.push(started.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    println!(
        "{{\"bench\":\"training-step\",\"threads\":{},\"step_ms\":{:.1},\"target_tokens_per_s\":{:.0}}}",
        rayon::current_num_threads(),
        median * 1e3,
        targets as f64 / median
    );
    Ok(())
}
