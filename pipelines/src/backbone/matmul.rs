//! `y = x W^T` over plain slices: the one place that picks the kernel.
//!
//! A few rows (decode steps) take the dot-product kernel of [`super::gemv`],
//! which reads each weight row once; more rows (prefill) take
//! `kernels::sgemm`. `parallel` is false for callers that do their own
//! threading (the MoE experts run one expert per task).

use super::gemv;

/// `x` is `[m, k]`, `w` is `[n, k]` (as checkpoints store weights), both
/// row-major; returns `[m, n]`.
pub fn matmul_nt(x: &[f32], m: usize, w: &[f32], n: usize, k: usize, parallel: bool) -> Vec<f32> {
    assert_eq!(x.len(), m * k, "x is not [m, k]");
    assert_eq!(w.len(), n * k, "w is not [n, k]");
    if m <= gemv::MAX_ROWS {
        return if parallel {
            gemv::matmul_transposed(x, m, w, n, k)
        } else {
            gemv::matmul_transposed_serial(x, m, w, n, k)
        };
    }
    let mut y = vec![0f32; m * n];
    if let (Some(a), Some(b)) = (
        kernels::MatRef::row_major(x, m, k),
        kernels::MatRef::transposed(w, k, n),
    ) {
        kernels::sgemm(a, b, &mut y, false, parallel);
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(x: &[f32], m: usize, w: &[f32], n: usize, k: usize) -> Vec<f32> {
        let mut y = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                y[i * n + j] = (0..k).map(|p| x[i * k + p] * w[j * k + p]).sum();
            }
        }
        y
    }

    #[test]
    fn both_paths_agree_with_the_naive_product() {
        for m in [1, 3, 5, 17, 40] {
            let (n, k) = (29, 41);
            let x: Vec<f32> = (0..m * k)
                .map(|i| ((i * 7) % 13) as f32 * 0.1 - 0.6)
                .collect();
            let w: Vec<f32> = (0..n * k)
                .map(|i| ((i * 5) % 11) as f32 * 0.1 - 0.5)
                .collect();
            let want = naive(&x, m, &w, n, k);
            for parallel in [false, true] {
                let got = matmul_nt(&x, m, &w, n, k, parallel);
                for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                    assert!((a - b).abs() < 1e-4, "m={m} index {i}: {a} vs {b}");
                }
            }
        }
    }
}
