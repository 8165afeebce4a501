#![allow(clippy::unwrap_used)]
//! GFLOP/s of `kernels::sgemm` next to the `gemm` crate (what candle's CPU
//! matmul runs) on the same shapes, one JSON line per shape.
//!
//!   RAYON_NUM_THREADS=1 cargo bench -p kernels --bench gemm [-- M K N ...]

use std::time::Instant;

use kernels::{sgemm, MatRef};

fn time(f: &mut dyn FnMut()) -> f64 {
    f();
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
    }
    best
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let shapes: Vec<[usize; 3]> = if args.len() >= 3 {
        args.chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect()
    } else {
        vec![
            [1024, 1024, 1024],
            [128, 512, 1536],
            [128, 1152, 4096],
            [128, 896, 4864],
        ]
    };
    let threads = rayon::current_num_threads();
    for [m, k, n] in shapes {
        let a: Vec<f32> = (0..m * k).map(|i| (i % 17) as f32 * 0.01).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 13) as f32 * 0.01).collect();
        let mut c = vec![0f32; m * n];
        let (av, bv) = (
            MatRef::row_major(&a, m, k).unwrap(),
            MatRef::row_major(&b, k, n).unwrap(),
        );
        let ours = time(&mut || sgemm(av, bv, &mut c, false, true));
        let par = if threads > 1 {
            gemm::Parallelism::Rayon(threads)
        } else {
            gemm::Parallelism::None
        };
        let theirs = time(&mut || {
            // SAFETY: row-major buffers of exactly [m,k], [k,n], [m,n].
            #[allow(unsafe_code)]
            unsafe {
                gemm::gemm(
                    m,
                    n,
                    k,
                    c.as_mut_ptr(),
                    1,
                    n as isize,
                    false,
                    a.as_ptr(),
                    1,
                    k as isize,
                    b.as_ptr(),
                    1,
                    n as isize,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    par,
                )
            }
        });
        let flop = 2.0 * (m * n * k) as f64;
        println!(
            "{{\"m\":{m},\"k\":{k},\"n\":{n},\"threads\":{threads},\"kernels_gflops\":{:.1},\"gemm_crate_gflops\":{:.1}}}",
            flop / ours / 1e9,
            flop / theirs / 1e9
        );
    }
}
