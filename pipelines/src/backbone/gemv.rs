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
            rows_tiled::<Avx512>(x, m, w, k, first, block);
            return;
        }
        if m > 1 && Avx2::available() {
            rows_tiled::<Avx2>(x, m, w, k, first, block);
            return;
        }
        if std::is_x86_feature_detected!("avx2") {
            // One row of x (a decode step): a tile has only its R chains of
            // additions, where the plain loop keeps eight apart.
            // SAFETY: the CPU was just checked for AVX2, the only
            // requirement of the target-feature function; it is otherwise
            // ordinary safe code.
            #[allow(unsafe_code)]
            unsafe {
                rows_avx2(x, m, w, k, first, block)
            };
            return;
        }
    }
    rows_portable(x, m, w, k, first, block);
}

/// The plain loop compiled for AVX2, so the sums use 256-bit registers (the
/// crate is built for baseline x86-64).
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[target_feature(enable = "avx2")]
unsafe fn rows_avx2(x: &[f32], m: usize, w: &[f32], k: usize, first: usize, block: &mut [f32]) {
    rows_portable(x, m, w, k, first, block);
}

/// A register tile of `R` weight rows by `G` rows of `x` in one vector
/// width: each vector load of a weight row feeds `G` multiply-adds (the
/// plain loop reloads the weight row for every row of `x` and reduces every
/// dot product across lanes, which capped batched decode steps and the
/// few-token expert products of a prefill).
#[cfg(target_arch = "x86_64")]
trait Tile {
    /// `out[i * m + j0 + g] = w[row0 + i] . x[j0 + g]` for `i < R`, `g < G`.
    ///
    /// # Safety
    /// The CPU has the implementation's vector extension, `x` holds rows up
    /// to `j0 + G` and `w` rows up to `row0 + R`, each of `k` floats.
    #[allow(unsafe_code, clippy::too_many_arguments)]
    unsafe fn tile<const R: usize, const G: usize>(
        x: &[f32],
        w: &[f32],
        k: usize,
        row0: usize,
        j0: usize,
        m: usize,
        out: &mut [f32],
    );

    /// Whether this CPU has the extension.
    fn available() -> bool;
}

/// Tiles of two weight rows by up to four rows of `x`, in registers.
#[cfg(target_arch = "x86_64")]
fn rows_tiled<T: Tile>(x: &[f32], m: usize, w: &[f32], k: usize, first: usize, block: &mut [f32]) {
    let rows = block.len() / m;
    assert!(
        T::available() && x.len() >= m * k && w.len() >= (first + rows) * k,
        "operands too short, or the CPU lacks the tile's extension"
    );
    let mut r = 0;
    while r < rows {
        let pair = (rows - r).min(2);
        let mut j = 0;
        while j < m {
            let group = (m - j).min(4);
            let out = &mut block[r * m..];
            let row0 = first + r;
            // SAFETY: the assert above covers every tile's rows; constant
            // tile sizes keep the accumulators in registers.
            #[allow(unsafe_code)]
            unsafe {
                match (pair, group) {
                    (2, 4) => T::tile::<2, 4>(x, w, k, row0, j, m, out),
                    (2, 3) => T::tile::<2, 3>(x, w, k, row0, j, m, out),
                    (2, 2) => T::tile::<2, 2>(x, w, k, row0, j, m, out),
                    (2, _) => T::tile::<2, 1>(x, w, k, row0, j, m, out),
                    (_, 4) => T::tile::<1, 4>(x, w, k, row0, j, m, out),
                    (_, 3) => T::tile::<1, 3>(x, w, k, row0, j, m, out),
                    (_, 2) => T::tile::<1, 2>(x, w, k, row0, j, m, out),
                    _ => T::tile::<1, 1>(x, w, k, row0, j, m, out),
                }
            }
            j += group;
        }
        r += pair;
    }
}

/// The dot products' tails past the last whole vector, added to the
/// tile's reduced sums.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn finish_tile<const R: usize, const G: usize>(
    sums: [[f32; G]; R],
    x: &[f32],
    w: &[f32],
    k: usize,
    wide: usize,
    row0: usize,
    j0: usize,
    m: usize,
    out: &mut [f32],
) {
    for (i, row_sums) in sums.iter().enumerate() {
        let w_row = &w[(row0 + i) * k..(row0 + i + 1) * k];
        for (g, sum) in row_sums.iter().enumerate() {
            let x_row = &x[(j0 + g) * k..(j0 + g + 1) * k];
            let tail: f32 = w_row[wide..]
                .iter()
                .zip(&x_row[wide..])
                .map(|(a, b)| a * b)
                .sum();
            out[i * m + j0 + g] = sum + tail;
        }
    }
}

#[cfg(target_arch = "x86_64")]
struct Avx512;

#[cfg(target_arch = "x86_64")]
impl Tile for Avx512 {
    #[allow(unsafe_code, clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f")]
    unsafe fn tile<const R: usize, const G: usize>(
        x: &[f32],
        w: &[f32],
        k: usize,
        row0: usize,
        j0: usize,
        m: usize,
        out: &mut [f32],
    ) {
        use std::arch::x86_64::*;
        let wide = k / 16 * 16;
        let mut acc = [[_mm512_setzero_ps(); G]; R];
        let mut p = 0;
        while p < wide {
            // SAFETY (loads): the caller's rows of x and w hold k floats;
            // p + 16 <= k.
            // A loop, not `array::from_fn`: a closure does not inherit the
            // target feature, so each load became a call.
            let mut xs = [_mm512_setzero_ps(); G];
            for (g, xv) in xs.iter_mut().enumerate() {
                *xv = _mm512_loadu_ps(x.as_ptr().add((j0 + g) * k + p));
            }
            for (i, acc_row) in acc.iter_mut().enumerate() {
                let wv = _mm512_loadu_ps(w.as_ptr().add((row0 + i) * k + p));
                for (a, xv) in acc_row.iter_mut().zip(&xs) {
                    *a = _mm512_fmadd_ps(wv, *xv, *a);
                }
            }
            p += 16;
        }
        let mut sums = [[0f32; G]; R];
        for (sum_row, acc_row) in sums.iter_mut().zip(&acc) {
            for (sum, a) in sum_row.iter_mut().zip(acc_row) {
                *sum = _mm512_reduce_add_ps(*a);
            }
        }
        finish_tile(sums, x, w, k, wide, row0, j0, m, out);
    }

    fn available() -> bool {
        std::is_x86_feature_detected!("avx512f")
    }
}

#[cfg(target_arch = "x86_64")]
struct Avx2;

#[cfg(target_arch = "x86_64")]
impl Tile for Avx2 {
    #[allow(unsafe_code, clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn tile<const R: usize, const G: usize>(
        x: &[f32],
        w: &[f32],
        k: usize,
        row0: usize,
        j0: usize,
        m: usize,
        out: &mut [f32],
    ) {
        use std::arch::x86_64::*;
        let wide = k / 8 * 8;
        let mut acc = [[_mm256_setzero_ps(); G]; R];
        let mut p = 0;
        while p < wide {
            // SAFETY (loads): the caller's rows of x and w hold k floats;
            // p + 8 <= k.
            let mut xs = [_mm256_setzero_ps(); G];
            for (g, xv) in xs.iter_mut().enumerate() {
                *xv = _mm256_loadu_ps(x.as_ptr().add((j0 + g) * k + p));
            }
            for (i, acc_row) in acc.iter_mut().enumerate() {
                let wv = _mm256_loadu_ps(w.as_ptr().add((row0 + i) * k + p));
                for (a, xv) in acc_row.iter_mut().zip(&xs) {
                    *a = _mm256_fmadd_ps(wv, *xv, *a);
                }
            }
            p += 8;
        }
        let mut sums = [[0f32; G]; R];
        for (sum_row, acc_row) in sums.iter_mut().zip(&acc) {
            for (sum, &a) in sum_row.iter_mut().zip(acc_row) {
                // Eight lanes to one: halves, then pairs, then the last two.
                let four = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps::<1>(a));
                let two = _mm_add_ps(four, _mm_movehl_ps(four, four));
                *sum = _mm_cvtss_f32(_mm_add_ss(two, _mm_shuffle_ps::<0b01>(two, two)));
            }
        }
        finish_tile(sums, x, w, k, wide, row0, j0, m, out);
    }

    fn available() -> bool {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
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
        // Every tile shape (1-2 weight rows by 1-4 rows of x) and a tail of k.
        for (m, n, k) in [
            (3, 37, 53),
            (1, 5, 16),
            (8, 33, 70),
            (13, 9, 200),
            (16, 4, 15),
        ] {
            let x: Vec<f32> = (0..m * k).map(|i| ((i * 7) % 13) as f32 - 6.0).collect();
            let w: Vec<f32> = (0..n * k)
                .map(|i| ((i * 5) % 11) as f32 * 0.1 - 0.5)
                .collect();
            for y in [
                matmul_transposed(&x, m, &w, n, k),
                matmul_transposed_serial(&x, m, &w, n, k),
            ] {
                for j in 0..m {
                    for r in 0..n {
                        let expected: f32 = (0..k).map(|i| x[j * k + i] * w[r * k + i]).sum();
                        assert!((y[j * n + r] - expected).abs() < 1e-3, "m={m} ({j}, {r})");
                    }
                }
            }
        }
    }
}
