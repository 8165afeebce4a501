//! A weight packed once, at load, in the layout the GEMM reads B in.
//!
//! `y = x W^T` with `W` `[out, in]` as checkpoints store it makes `B = W^T`
//! a column-contiguous matrix, which the GEMM had to transpose into strips
//! on every call: a quarter of a Qwen3-MoE prefill on one core, and most of
//! the cost of an expert's product over its few tokens. Packed at load,
//! every product reads the strips in place, from one row of `x` (a decode
//! step) to many (a prefill), and the weight is held once, in this layout
//! only.

use rayon::prelude::*;

use crate::gemm::{sgemm_into, MatRef, PackB};
use crate::micro::NR;

/// Inputs packed together when a weight is packed.
const PACK_BLOCK: usize = 64;

/// `W` `[outputs, inputs]`, stored as strips of `NR` outputs: strip `t`
/// holds `W[t * NR + j][p]` at `(t * inputs + p) * NR + j`; the outputs
/// past the last are zero.
#[derive(Clone)]
pub struct PackedWeight {
    outputs: usize,
    inputs: usize,
    strips: Vec<f32>,
}

impl PackedWeight {
    /// Packs a row-major `[outputs, inputs]` weight; `None` when `w` does
    /// not hold exactly that many values.
    pub fn from_rows(w: &[f32], outputs: usize, inputs: usize) -> Option<PackedWeight> {
        if outputs.checked_mul(inputs)? != w.len() {
            return None;
        }
        let mut strips = vec![0f32; outputs.div_ceil(NR) * NR * inputs];
        if inputs > 0 {
            strips
                .par_chunks_mut(inputs * NR)
                .zip(w.par_chunks(inputs * NR))
                .for_each(|(strip, rows)| {
                    // A block of inputs at a time, so the strip's block
                    // (8 KiB) stays in L1 while every row writes into it:
                    // a row at a time wrote each value to another cache
                    // line of the whole strip (a 0.5B model took 9 s to
                    // load).
                    for p0 in (0..inputs).step_by(PACK_BLOCK) {
                        let p1 = (p0 + PACK_BLOCK).min(inputs);
                        for (j, row) in rows.chunks_exact(inputs).enumerate() {
                            for (p, &v) in (p0..p1).zip(&row[p0..p1]) {
                                strip[p * NR + j] = v;
                            }
                        }
                    }
                });
        }
        Some(PackedWeight {
            outputs,
            inputs,
            strips,
        })
    }

    pub fn outputs(&self) -> usize {
        self.outputs
    }

    pub fn inputs(&self) -> usize {
        self.inputs
    }

    /// Row `r` of `W` (an embedding row of a tied output projection), into
    /// `out` (`inputs` long). Panics when `r` is out of range.
    pub fn row_into(&self, r: usize, out: &mut [f32]) {
        assert!(r < self.outputs && out.len() == self.inputs, "no such row");
        let strip = &self.strips[(r / NR) * self.inputs * NR..][..self.inputs * NR];
        for (o, step) in out.iter_mut().zip(strip.chunks_exact(NR)) {
            *o = step[r % NR];
        }
    }

    /// All of `W`, row-major `[outputs, inputs]` (what a reference path
    /// reads with plain loops).
    pub fn to_rows(&self) -> Vec<f32> {
        let mut rows = vec![0f32; self.outputs * self.inputs];
        if self.inputs > 0 {
            for (r, row) in rows.chunks_exact_mut(self.inputs).enumerate() {
                self.row_into(r, row);
            }
        }
        rows
    }

    /// `x W^T` for `x` row-major `[m, inputs]`: `[m, outputs]`. With
    /// `parallel`, large products are split over the rayon pool.
    ///
    /// Panics when `x` is not `[m, inputs]` (a caller's bug).
    pub fn product(&self, x: &[f32], m: usize, parallel: bool) -> Vec<f32> {
        let mut y = vec![0f32; m * self.outputs];
        let a = MatRef::row_major(x, m, self.inputs);
        assert!(
            a.is_some() && x.len() == m * self.inputs,
            "x is not [m, inputs]"
        );
        if let Some(a) = a {
            sgemm_into(a, self, &mut y, self.outputs, false, parallel);
        }
        y
    }
}

impl std::fmt::Debug for PackedWeight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PackedWeight[{}, {}]", self.outputs, self.inputs)
    }
}

impl PackB for PackedWeight {
    fn rows(&self) -> usize {
        self.inputs
    }

    fn cols(&self) -> usize {
        self.outputs
    }

    fn pack(&self, p0: usize, kc: usize, j0: usize, cols: usize, strip: &mut [f32]) {
        // Only for a caller that packs anyway; the GEMM reads `strips`.
        for j in 0..cols {
            let (t, jj) = ((j0 + j) / NR, (j0 + j) % NR);
            let src = &self.strips[(t * self.inputs + p0) * NR..][..kc * NR];
            for (dst, step) in strip.chunks_exact_mut(NR).zip(src.chunks_exact(NR)) {
                dst[j] = step[jj];
            }
        }
    }

    fn strips(&self) -> Option<&[f32]> {
        Some(&self.strips)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::test_values::values;

    #[test]
    fn products_agree_with_the_naive_one_for_every_row_count() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        // Outputs off the strip width, inputs across the GEMM's depth
        // blocks, one row (decode) to many (prefill, split by rows), and a
        // weight large enough to split over threads at one row.
        for &(m, k, n) in &[
            (1, 7, 5),
            (1, 300, 70),
            (3, 513, 33),
            (8, 64, 96),
            (13, 40, 64),
            (30, 300, 100),
            (300, 64, 100),
            (1, 1024, 512),
        ] {
            let (x, w) = (values(m * k, 1), values(n * k, 2));
            let packed = PackedWeight::from_rows(&w, n, k).unwrap();
            for parallel in [false, true] {
                let y = pool.install(|| packed.product(&x, m, parallel));
                for i in 0..m {
                    for j in 0..n {
                        let want: f32 = (0..k).map(|p| x[i * k + p] * w[j * k + p]).sum();
                        let got = y[i * n + j];
                        assert!(
                            (got - want).abs() < 1e-4 * (k as f32).sqrt(),
                            "({m},{k},{n})"
                        );
                    }
                }
            }
            // Rows come back as they were, and packing again through the
            // trait reads the same strips.
            let mut row = vec![0f32; k];
            for r in [0, n / 2, n - 1] {
                packed.row_into(r, &mut row);
                assert_eq!(row, w[r * k..(r + 1) * k]);
            }
            assert_eq!(packed.to_rows(), w);
            let b = MatRef::transposed(&w, k, n).unwrap();
            let width = n.min(NR);
            let (mut got, mut want) = (vec![0f32; k * NR], vec![0f32; k * NR]);
            packed.pack(0, k, 0, width, &mut got);
            b.pack(0, k, 0, width, &mut want);
            assert_eq!(got, want);
        }
    }

    /// A is read in place under a packed weight: rows further apart than
    /// their length, and rows that overlap (a sliding view), both work.
    #[test]
    fn strided_and_overlapping_rows_of_a_are_read_in_place() {
        let (m, k, n) = (20, 40, 70);
        let w = values(n * k, 3);
        let packed = PackedWeight::from_rows(&w, n, k).unwrap();
        for row_stride in [k + 9, 5] {
            let data = values((m - 1) * row_stride + k, 4);
            let a = MatRef::new(&data, m, k, row_stride, 1).unwrap();
            let mut y = vec![0f32; m * n];
            sgemm_into(a, &packed, &mut y, n, false, true);
            for i in 0..m {
                for j in 0..n {
                    let want: f32 = (0..k)
                        .map(|p| data[i * row_stride + p] * w[j * k + p])
                        .sum();
                    assert!(
                        (y[i * n + j] - want).abs() < 1e-3,
                        "stride {row_stride} ({i}, {j})"
                    );
                }
            }
        }
    }

    #[test]
    fn a_weight_of_the_wrong_size_is_refused() {
        assert!(PackedWeight::from_rows(&[0.0; 6], 2, 3).is_some());
        assert!(PackedWeight::from_rows(&[0.0; 6], 4, 2).is_none());
        assert!(PackedWeight::from_rows(&[], usize::MAX, 2).is_none());
    }
}
