//! Backbone throughput, one JSON line per run, for `scripts/bench/backbone.py`
//! (which runs the peers in the same session and writes docs/benchmarks.md).
//!
//!   cargo bench -p pipelines --bench backbone -- model DIR [PROMPT_LEN] [DECODE_TOKENS] [BATCH]
//!   cargo bench -p pipelines --bench backbone -- machine
//!
//! Threads: RAYON_NUM_THREADS (candle's kernels use the rayon pool).

use std::time::Instant;

// As the `anyforge` binary: mimalloc, keeping freed buffers for reuse
// (`kernels::keep_freed_memory` in main).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use candle_core::{Device, Tensor};
use pipelines::backbone::{Backbone, LogitsFor, SequenceStep};

fn argmax(logits: &Tensor) -> u32 {
    let v = logits
        .flatten_all()
        .and_then(|t| t.to_vec1::<f32>())
        .unwrap_or_default();
    v.iter()
        .enumerate()
        .fold((0usize, f32::NEG_INFINITY), |m, (i, &x)| {
            if x > m.1 {
                (i, x)
            } else {
                m
            }
        })
        .0 as u32
}

fn prompt(len: usize, vocab: usize, salt: usize) -> Vec<u32> {
    (0..len)
        .map(|i| ((i * 7919 + salt * 104_729 + 13) % vocab) as u32)
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn bench_model(
    dir: &str,
    prompt_len: usize,
    decode: usize,
    batch: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let t = Instant::now();
    let model = Backbone::load(std::path::Path::new(dir), &Device::Cpu)?;
    let load_s = t.elapsed().as_secs_f64();
    let vocab = model.config().vocab_size;
    // Warm-up: page the weights in and let the allocator settle.
    let mut cache = model.new_cache();
    model.forward(
        &mut [SequenceStep {
            tokens: &prompt(16, vocab, 99),
            cache: &mut cache,
        }],
        LogitsFor::Last,
    )?;

    let mut prefill = Vec::new();
    // The median of ten (as the peers): of three, two-thread prefills
    // moved ±30% from run to run. More (ANYFORGE_BENCH_PREFILL_REPS) give a
    // profiler a prefill long enough to sample.
    let reps: usize = std::env::var("ANYFORGE_BENCH_PREFILL_REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    for rep in 0..reps {
        let ids = prompt(prompt_len, vocab, rep % 3);
        let mut cache = model.new_cache();
        let t = Instant::now();
        model.forward(
            &mut [SequenceStep {
                tokens: &ids,
                cache: &mut cache,
            }],
            LogitsFor::Last,
        )?;
        prefill.push(prompt_len as f64 / t.elapsed().as_secs_f64());
    }

    // Decode: one sequence, after a short prompt.
    let ids = prompt(32, vocab, 7);
    let mut cache = model.new_cache();
    let mut next = argmax(
        &model
            .forward(
                &mut [SequenceStep {
                    tokens: &ids,
                    cache: &mut cache,
                }],
                LogitsFor::Last,
            )?
            .remove(0),
    );
    let t = Instant::now();
    for _ in 0..decode {
        let logits = model
            .forward(
                &mut [SequenceStep {
                    tokens: &[next],
                    cache: &mut cache,
                }],
                LogitsFor::Last,
            )?
            .remove(0);
        next = argmax(&logits);
    }
    let decode_tps = decode as f64 / t.elapsed().as_secs_f64();

    // Batched decode: `batch` sequences share every step.
    let mut caches: Vec<_> = (0..batch).map(|_| model.new_cache()).collect();
    let mut nexts = Vec::new();
    for (b, cache) in caches.iter_mut().enumerate() {
        let ids = prompt(32, vocab, 100 + b);
        nexts.push(argmax(
            &model
                .forward(
                    &mut [SequenceStep {
                        tokens: &ids,
                        cache,
                    }],
                    LogitsFor::Last,
                )?
                .remove(0),
        ));
    }
    let t = Instant::now();
    for _ in 0..decode {
        let tokens: Vec<[u32; 1]> = nexts.iter().map(|&n| [n]).collect();
        let mut steps: Vec<SequenceStep> = tokens
            .iter()
            .zip(caches.iter_mut())
            .map(|(t, cache)| SequenceStep { tokens: t, cache })
            .collect();
        let logits = model.forward(&mut steps, LogitsFor::Last)?;
        nexts = logits.iter().map(argmax).collect();
    }
    let batched_tps = (decode * batch) as f64 / t.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "impl": "anyforge", "load_s": load_s, "prompt_len": prompt_len, "decode_tokens": decode, "batch": batch,
            "prefill_tps": median(prefill), "decode_tps": decode_tps, "batched_decode_tps": batched_tps,
        })
    );
    Ok(())
}

/// Read bandwidth over 512 MiB and f32 GEMM throughput (kernels::sgemm) on
/// 1024^3, with the configured thread count.
fn bench_machine() -> Result<(), Box<dyn std::error::Error>> {
    let threads: usize = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let data: Vec<f32> = (0..(128usize << 20)).map(|i| (i % 97) as f32).collect();
    let bytes = (data.len() * 4) as f64;
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        let chunk = data.len().div_ceil(threads);
        let total: f32 = std::thread::scope(|s| {
            let handles: Vec<_> = data
                .chunks(chunk)
                .map(|c| {
                    // Sixteen independent sums vectorise; one running sum
                    // would measure the latency of an add, not the memory.
                    s.spawn(move || {
                        let lanes = c.chunks_exact(16).fold([0f32; 16], |mut acc, x| {
                            acc.iter_mut().zip(x).for_each(|(a, &b)| *a += b);
                            acc
                        });
                        lanes.iter().sum::<f32>()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or(0.0)).sum()
        });
        std::hint::black_box(total);
        best = best.min(t.elapsed().as_secs_f64());
    }
    // The GEMM anyforge runs (kernels::sgemm), on 1024^3.
    let n = 1024;
    let a: Vec<f32> = (0..n * n).map(|i| (i % 17) as f32 * 0.01).collect();
    let b: Vec<f32> = (0..n * n).map(|i| (i % 13) as f32 * 0.01).collect();
    let mut c = vec![0f32; n * n];
    let (Some(av), Some(bv)) = (
        kernels::MatRef::row_major(&a, n, n),
        kernels::MatRef::row_major(&b, n, n),
    ) else {
        return Err("matrix views".into());
    };
    let mut gemm = f64::MAX;
    for _ in 0..6 {
        let t = Instant::now();
        kernels::sgemm(av, bv, &mut c, false, true);
        std::hint::black_box(&c);
        gemm = gemm.min(t.elapsed().as_secs_f64());
    }
    println!(
        "{}",
        serde_json::json!({"threads": threads, "bandwidth_gbs": bytes / best / 1e9, "gemm_gflops": 2.0 * (n as f64).powi(3) / gemm / 1e9})
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    kernels::keep_freed_memory();
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    match args.first().map(String::as_str) {
        Some("machine") => bench_machine(),
        Some("model") => {
            let dir = args
                .get(1)
                .ok_or("model DIR [PROMPT_LEN] [DECODE_TOKENS] [BATCH]")?;
            let num = |i: usize, default: usize| {
                args.get(i).and_then(|s| s.parse().ok()).unwrap_or(default)
            };
            bench_model(dir, num(2, 128), num(3, 32), num(4, 8))
        }
        _ => {
            Err("usage: backbone (machine | model DIR [PROMPT_LEN] [DECODE_TOKENS] [BATCH])".into())
        }
    }
}
