//! Codec decode speed, one JSON line per run, for `scripts/bench/codec_bench.py`
//! (which runs PyTorch on the same weights and codes in the same session
//! and writes docs/codec-benchmarks.md).
//!
//!   cargo bench -p encoders --bench codecs -- DIR CODES.json REPS
//!
//! Threads: RAYON_NUM_THREADS (candle's kernels use the rayon pool).

use std::time::Instant;

use encoders::Codes;

// As the `anyforge` binary: mimalloc, keeping freed buffers for reuse
// (`kernels::keep_freed_memory` in main).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let [dir, codes, reps] = args.as_slice() else {
        return Err("usage: codecs DIR CODES.json REPS".into());
    };
    kernels::keep_freed_memory();
    let reps: usize = reps.parse()?;
    let codec = encoders::open(dir)?;
    let codes = Codes::read(std::path::Path::new(codes), 1 << 30)?;
    let codec = encoders::for_kind(codec, codes.kind())?;
    // Warm-up: page the weights in and let the allocator settle.
    codec.decode(&codes)?;
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t = Instant::now();
        codec.decode(&codes)?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    println!(
        "{{\"impl\":\"anyforge\",\"seconds\":{},\"reps\":{reps}}}",
        times[times.len() / 2]
    );
    Ok(())
}
