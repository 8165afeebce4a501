//! `y = x W^T` for a few rows of `x` (decode steps), on the CPU.
//!
//! Decoding is bound by reading weights. This kernel reads each weight row
//! once for all rows of `x`, and splits the weight rows over the rayon pool;
//! the general GEMM this replaces for small `m` runs its matrix-vector path
//! on one thread.

use rayon::prelude::*;

/// Rows of `x` up to which this kernel, which reads each weight once, beats
/// the blocked GEMM, which packs the weight first.
pub const MAX_ROWS: usize = 16;

/// Weight matrices of at least this many elements (512 KiB of f32) are split
/// over the thread pool; smaller ones are computed on the calling thread,
/// where handing them out costs more than it saves. (At 1 MiB, a Qwen3-MoE
/// layer's query and output projections ran on one thread; splitting them
/// measured +25-45% decode tokens/s on two threads.)
pub const LARGE_WEIGHTS: usize = 1 << 17;

/// Partial sums kept apart: four 512-bit (or eight 256-bit) registers of
/// independent additions, so the loop runs at the speed of loads rather
/// than of one addition's latency.
const LANES: usize = 64;

#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let (wide_a, wide_b) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (wide_a.remainder(), wide_b.remainder());
    for (x, y) in wide_a.zip(wide_b) {
        // Fixed-size arrays: no bounds checks, so the loop vectorises.
        let (x, y): (&[f32; LANES], &[f32; LANES]) = match (x.try_into(), y.try_into()) {
            (Ok(x), Ok(y)) => (x, y),
            _ => unreachable!("chunks_exact yields LANES elements"),
        };
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

/// Fills `block` (`[rows, m]`) with the products of weight rows from `first` on.
fn rows(x: &[f32], m: usize, w: &[f32], k: usize, first: usize, block: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU was just checked for AVX-512F, the only
            // requirement of the target-feature function; it is otherwise
            // ordinary safe code.
            #[allow(unsafe_code)]
            unsafe {
                rows_avx512(x, m, w, k, first, block)
            };
            return;
        }
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: as above, for AVX2.
            #[allow(unsafe_code)]
            unsafe {
                rows_avx2(x, m, w, k, first, block)
            };
            return;
        }
    }
    rows_portable(x, m, w, k, first, block);
}

/// The same loop compiled for AVX2, so the sums use 256-bit registers (the
/// crate is built for baseline x86-64).
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[target_feature(enable = "avx2")]
unsafe fn rows_avx2(x: &[f32], m: usize, w: &[f32], k: usize, first: usize, block: &mut [f32]) {
    rows_portable(x, m, w, k, first, block);
}

/// And for AVX-512: 512-bit registers.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[target_feature(enable = "avx512f")]
unsafe fn rows_avx512(x: &[f32], m: usize, w: &[f32], k: usize, first: usize, block: &mut [f32]) {
    rows_portable(x, m, w, k, first, block);
}

#[inline(always)]
fn rows_portable(x: &[f32], m: usize, w: &[f32], k: usize, first: usize, block: &mut [f32]) {
    for (r, out) in block.chunks_exact_mut(m).enumerate() {
        let row = &w[(first + r) * k..(first + r + 1) * k];
        for (j, o) in out.iter_mut().enumerate() {
            *o = dot(&x[j * k..(j + 1) * k], row);
        }
    }
}

/// `[n, m]` back to `[m, n]` (no copy when `m` is 1).
fn untranspose(yt: Vec<f32>, m: usize, n: usize) -> Vec<f32> {
    if m == 1 {
        return yt;
    }
    let mut y = vec![0f32; m * n];
    for (r, values) in yt.chunks_exact(m).enumerate() {
        for (j, &v) in values.iter().enumerate() {
            y[j * n + r] = v;
        }
    }
    y
}

/// [`matmul_transposed`] on the calling thread, for callers that thread
/// over something else.
pub fn matmul_transposed_serial(x: &[f32], m: usize, w: &[f32], n: usize, k: usize) -> Vec<f32> {
    let mut yt = vec![0f32; n * m];
    rows(x, m, w, k, 0, &mut yt);
    untranspose(yt, m, n)
}

/// `x` is `[m, k]`, `w` is `[n, k]`, both row-major; returns `[m, n]`.
pub fn matmul_transposed(x: &[f32], m: usize, w: &[f32], n: usize, k: usize) -> Vec<f32> {
    // Enough rows per task to amortise scheduling, enough tasks to balance.
    let threads = rayon::current_num_threads().max(1);
    let rows_per_task = n.div_ceil(threads * 4).max(16);
    // Computed as [n, m] so each task writes one contiguous block.
    let mut yt = vec![0f32; n * m];
    let task = |(task, block): (usize, &mut [f32])| rows(x, m, w, k, task * rows_per_task, block);
    // Handing a small product to the pool costs more than computing it.
    if n * k < LARGE_WEIGHTS || threads == 1 {
        yt.chunks_mut(rows_per_task * m).enumerate().for_each(task);
    } else {
        yt.par_chunks_mut(rows_per_task * m)
            .enumerate()
            .for_each(task);
    }
    untranspose(yt, m, n)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_the_naive_product() {
        let (m, n, k) = (3, 37, 53);
        let x: Vec<f32> = (0..m * k).map(|i| ((i * 7) % 13) as f32 - 6.0).collect();
        let w: Vec<f32> = (0..n * k)
            .map(|i| ((i * 5) % 11) as f32 * 0.1 - 0.5)
            .collect();
        let y = matmul_transposed(&x, m, &w, n, k);
        for j in 0..m {
            for r in 0..n {
                let expected: f32 = (0..k).map(|i| x[j * k + i] * w[r * k + i]).sum();
                assert!((y[j * n + r] - expected).abs() < 1e-3, "({j}, {r})");
            }
        }
    }
}
