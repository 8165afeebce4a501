//! `C = A B` (or `C += A B`) in f32, blocked for the caches, with AVX-512
//! and AVX2 micro-kernels.
//!
//! Why our own: the `gemm` crate, which candle uses, runs its AVX2 kernels
//! on stable Rust (its AVX-512 path needs a nightly feature), and measured
//! at 56 GFLOP/s on one core of the machine where MKL reaches 134
//! (docs/benchmarks.md). This is the classic Goto/BLIS layout: B is packed
//! in `KC x NR` strips that stay in L1, A in `MC x KC` blocks that stay in
//! L2, and a 12 x 32 register tile accumulates 24 vectors of 16 floats.
//! AVX2 CPUs run the same tile as four 6 x 16 quarters (12 vectors of 8);
//! others run it in plain Rust. Whole tiles are added into C straight from
//! the registers, with C's rows prefetched when the tile starts: written
//! through a scratch tile, the loads of C stalled after every tile (11% of
//! a Janus VQ decode on an AVX2 core).

use rayon::prelude::*;

/// Rows of the register tile.
const MR: usize = 12;
/// Columns of the register tile: two 16-float vectors.
const NR: usize = 32;
/// Depth of one packed block (a `KC x NR` B strip is 32 KiB).
const KC: usize = 256;
/// Rows of one packed A block (`MC x KC` is 144 KiB, in L2).
const MC: usize = 144;
/// Columns of one packed B panel.
const NC: usize = 3072;
/// Products smaller than this many multiply-adds stay on one thread.
const PARALLEL_WORK: usize = 1 << 20;

/// A read-only strided view of a matrix: element `(r, c)` is
/// `data[r * row_stride + c * col_stride]`.
#[derive(Debug, Clone, Copy)]
pub struct MatRef<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// A strided view; `None` when an element would fall outside `data`.
    pub fn new(
        data: &'a [f32],
        rows: usize,
        cols: usize,
        row_stride: usize,
        col_stride: usize,
    ) -> Option<MatRef<'a>> {
        let last = if rows == 0 || cols == 0 {
            0
        } else {
            (rows - 1)
                .checked_mul(row_stride)?
                .checked_add((cols - 1).checked_mul(col_stride)?)?
                + 1
        };
        (last <= data.len()).then_some(MatRef {
            data,
            rows,
            cols,
            row_stride,
            col_stride,
        })
    }

    /// Row-major `[rows, cols]`.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Option<MatRef<'a>> {
        MatRef::new(data, rows, cols, cols, 1)
    }

    /// The transpose of a row-major `[cols, rows]` matrix (as a weight
    /// `[out, in]` is used in `x W^T`), without copying.
    pub fn transposed(data: &'a [f32], rows: usize, cols: usize) -> Option<MatRef<'a>> {
        MatRef::new(data, rows, cols, 1, rows)
    }

    fn at(&self, r: usize, c: usize) -> f32 {
        self.data[r * self.row_stride + c * self.col_stride]
    }

    /// Rows `first..first + count` (in bounds by construction).
    fn sub_rows(&self, first: usize, count: usize) -> MatRef<'a> {
        let offset = if count == 0 {
            0
        } else {
            first * self.row_stride
        };
        MatRef {
            data: &self.data[offset..],
            rows: count,
            ..*self
        }
    }
}

/// A right-hand operand the GEMM packs from: a strided view ([`MatRef`]),
/// or a matrix computed while packing (a convolution's im2col, which then
/// never exists in memory).
pub trait PackB: Sync {
    fn rows(&self) -> usize;
    fn cols(&self) -> usize;
    /// Writes rows `p0..p0 + kc`, columns `j0..j0 + cols` (`cols <= NR`) into
    /// `strip`, laid out `[kc][NR]`: element `(p, j)` at `p * NR + j`. Every
    /// element of the first `cols` columns must be written; the columns past
    /// `cols` are zero already and must stay so.
    fn pack(&self, p0: usize, kc: usize, j0: usize, cols: usize, strip: &mut [f32]);
}

/// Columns of a packed strip of B (what [`PackB::pack`] fills).
pub const NR_PACKED: usize = NR;

impl PackB for MatRef<'_> {
    fn rows(&self) -> usize {
        self.rows
    }

    fn cols(&self) -> usize {
        self.cols
    }

    fn pack(&self, p0: usize, kc: usize, j0: usize, cols: usize, strip: &mut [f32]) {
        if self.col_stride == 1 {
            for (p, dst) in strip.chunks_exact_mut(NR).take(kc).enumerate() {
                let start = (p0 + p) * self.row_stride + j0;
                dst[..cols].copy_from_slice(&self.data[start..start + cols]);
            }
        } else if self.row_stride == 1 {
            // Column-contiguous B (a transposed weight): each column is a
            // contiguous run of the weight's row.
            for j in 0..cols {
                let src = &self.data[(j0 + j) * self.col_stride + p0..][..kc];
                for (dst, &v) in strip.chunks_exact_mut(NR).zip(src) {
                    dst[j] = v;
                }
            }
        } else {
            for j in 0..cols {
                for p in 0..kc {
                    strip[p * NR + j] = self.at(p0 + p, j0 + j);
                }
            }
        }
    }
}

/// `c` (row-major `[a.rows, b.cols]`) becomes `a b`, or `c + a b` when
/// `accumulate`. With `parallel`, the work is split over the rayon pool.
///
/// Panics when the shapes disagree (a caller's bug, never input data).
pub fn sgemm(a: MatRef, b: MatRef, c: &mut [f32], accumulate: bool, parallel: bool) {
    assert_eq!(c.len(), a.rows * b.cols, "c is not [m, n]");
    sgemm_into(a, &b, c, b.cols, accumulate, parallel);
}

/// [`sgemm`] for any [`PackB`] operand, into rows of `c` that are `ldc`
/// apart (a band of a larger matrix): row `i` of the product is
/// `c[i * ldc..i * ldc + n]`.
pub fn sgemm_into<B: PackB>(
    a: MatRef,
    b: &B,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
    parallel: bool,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols());
    assert_eq!(b.rows(), k, "inner dimensions differ");
    assert!(ldc >= n, "rows of c overlap");
    assert!(
        m == 0 || c.len() >= (m - 1) * ldc + n,
        "c is too short for [m, n] rows ldc apart"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c.chunks_mut(ldc).take(m).for_each(|row| row[..n].fill(0.0));
        }
        return;
    }
    let threads = if parallel && m * n * k >= PARALLEL_WORK {
        rayon::current_num_threads().max(1)
    } else {
        1
    };
    // The product's rows, each exactly its n columns.
    let mut rows: Vec<&mut [f32]> = c.chunks_mut(ldc).take(m).map(|r| &mut r[..n]).collect();
    if threads == 1 {
        blocked(a, b, 0..n, &mut rows, accumulate);
        return;
    }
    if m >= threads * MC {
        // Tall: each thread takes whole rows of C and packs B itself.
        let rows_per = m.div_ceil(threads).div_ceil(MR) * MR;
        rows.par_chunks_mut(rows_per)
            .enumerate()
            .for_each(|(t, band)| {
                let a = a.sub_rows(t * rows_per, band.len());
                blocked(a, b, 0..n, band, accumulate);
            });
        return;
    }
    // Short and wide: each thread takes a range of columns of every row, so
    // none packs another's part of B, and writes them in place.
    let cols_per = n.div_ceil(threads).div_ceil(NR) * NR;
    let mut parts: Vec<Vec<&mut [f32]>> = (0..n.div_ceil(cols_per))
        .map(|_| Vec::with_capacity(m))
        .collect();
    for row in rows {
        let mut rest = row;
        for part in parts.iter_mut() {
            let (head, tail) = rest.split_at_mut(cols_per.min(rest.len()));
            part.push(head);
            rest = tail;
        }
    }
    parts.into_par_iter().enumerate().for_each(|(t, mut part)| {
        let j0 = t * cols_per;
        let width = part.first().map_or(0, |r| r.len());
        blocked(a, b, j0..j0 + width, &mut part, accumulate);
    });
}

/// Packs rows `r0..r0+mc`, columns `p0..p0+kc` of `a` as `MR`-row strips,
/// each `[kc][MR]`, zero-padding the last strip.
fn pack_a(a: &MatRef, r0: usize, mc: usize, p0: usize, kc: usize, out: &mut [f32]) {
    for (s, strip) in out
        .chunks_exact_mut(kc * MR)
        .take(mc.div_ceil(MR))
        .enumerate()
    {
        let rows = MR.min(mc - s * MR);
        for (p, dst) in strip.chunks_exact_mut(MR).enumerate() {
            for (i, d) in dst.iter_mut().enumerate() {
                *d = if i < rows {
                    a.at(r0 + s * MR + i, p0 + p)
                } else {
                    0.0
                };
            }
        }
    }
}

/// Columns `cols` of `a b` into `c`, on the calling thread: `c[i]` is row
/// `i` of the product's columns `cols` (its element 0 is column
/// `cols.start`).
fn blocked<B: PackB>(
    a: MatRef,
    b: &B,
    cols: std::ops::Range<usize>,
    c: &mut [&mut [f32]],
    accumulate: bool,
) {
    let (m, k) = (a.rows, a.cols);
    let n = cols.len();
    assert!(
        c.len() == m && c.iter().all(|row| row.len() >= n),
        "c does not hold the product's rows"
    );
    let kernel = Micro::detect();
    let mut bp = vec![0f32; KC * NC.min(n).div_ceil(NR) * NR];
    let mut ap = vec![0f32; MC.min(m).div_ceil(MR) * MR * KC];
    let mut tile = [[0f32; NR]; MR];
    for jc in (0..n).step_by(NC) {
        let nc = NC.min(n - jc);
        for pc in (0..k).step_by(KC) {
            let kc = KC.min(k - pc);
            for (t, strip) in bp
                .chunks_exact_mut(kc * NR)
                .take(nc.div_ceil(NR))
                .enumerate()
            {
                let width = NR.min(nc - t * NR);
                if width < NR {
                    strip.fill(0.0);
                }
                b.pack(pc, kc, cols.start + jc + t * NR, width, strip);
            }
            let add = accumulate || pc > 0;
            for ic in (0..m).step_by(MC) {
                let mc = MC.min(m - ic);
                pack_a(&a, ic, mc, pc, kc, &mut ap);
                for jr in (0..nc).step_by(NR) {
                    let nr = NR.min(nc - jr);
                    let b_strip = &bp[(jr / NR) * kc * NR..][..kc * NR];
                    for ir in (0..mc).step_by(MR) {
                        let mr = MR.min(mc - ir);
                        let a_strip = &ap[(ir / MR) * kc * MR..][..kc * MR];
                        let rows = &mut c[ic + ir..ic + ir + mr];
                        if mr == MR && nr == NR {
                            // A whole tile: the kernel adds into C from its
                            // registers (no round trip through `tile`).
                            kernel.run(
                                kc,
                                a_strip,
                                b_strip,
                                TileOut {
                                    rows,
                                    col: jc + jr,
                                    add,
                                },
                            );
                            continue;
                        }
                        let mut scratch = tile.each_mut().map(|r| r.as_mut_slice());
                        let out = TileOut {
                            rows: &mut scratch,
                            col: 0,
                            add: false,
                        };
                        kernel.run(kc, a_strip, b_strip, out);
                        for (row, values) in rows.iter_mut().zip(&tile) {
                            let row = &mut row[jc + jr..][..nr];
                            if add {
                                row.iter_mut().zip(values).for_each(|(d, v)| *d += v);
                            } else {
                                row.copy_from_slice(&values[..nr]);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Where a micro-kernel leaves its `MR x NR` tile: row `i` is
/// `rows[i][col..col + NR]`, added to what is there when `add`.
struct TileOut<'r, 'c> {
    rows: &'r mut [&'c mut [f32]],
    col: usize,
    add: bool,
}

impl TileOut<'_, '_> {
    /// Each row's first element of the tile, bounds checked.
    fn row_starts(&mut self) -> [*mut f32; MR] {
        assert!(self.rows.len() >= MR, "a tile needs MR rows");
        let col = self.col;
        std::array::from_fn(|i| self.rows[i][col..col + NR].as_mut_ptr())
    }
}

/// Which register-tile kernel this CPU runs.
#[derive(Debug, Clone, Copy)]
enum Micro {
    Avx512,
    Avx2,
    Portable,
}

impl Micro {
    fn detect() -> Micro {
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx512f") {
                return Micro::Avx512;
            }
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                return Micro::Avx2;
            }
        }
        Micro::Portable
    }

    /// `a_strip^T b_strip` over `kc` steps, into (or added to) `dst`.
    fn run(self, kc: usize, a: &[f32], b: &[f32], mut dst: TileOut) {
        assert!(a.len() >= kc * MR && b.len() >= kc * NR, "strips too short");

        match self {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `detect` saw AVX-512F on this CPU; the assert above
            // keeps every load in bounds, `row_starts` every store.
            #[allow(unsafe_code)]
            Micro::Avx512 => unsafe { micro_avx512(kc, a, b, dst.row_starts(), dst.add) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `detect` saw AVX2 and FMA on this CPU; the assert
            // above keeps every load in bounds, `row_starts` every store.
            #[allow(unsafe_code)]
            Micro::Avx2 => unsafe { micro_avx2(kc, a, b, dst.row_starts(), dst.add) },
            _ => micro_portable(kc, a, b, dst),
        }
    }
}

/// The tile in plain Rust: the compiler vectorises the inner loops for
/// whatever the function is compiled for.
#[inline(always)]
fn micro_portable(kc: usize, a: &[f32], b: &[f32], dst: TileOut) {
    let mut acc = [[0f32; NR]; MR];
    for (ap, bp) in a.chunks_exact(MR).zip(b.chunks_exact(NR)).take(kc) {
        for (row, &ai) in acc.iter_mut().zip(ap) {
            for (r, &bj) in row.iter_mut().zip(bp) {
                *r += ai * bj;
            }
        }
    }
    for (row, out) in acc.iter().zip(dst.rows.iter_mut()) {
        let out = &mut out[dst.col..][..NR];
        if dst.add {
            out.iter_mut().zip(row).for_each(|(d, v)| *d += v);
        } else {
            out.copy_from_slice(row);
        }
    }
}

/// The tile as four 6 x 16 quarters, one after another: a quarter's 12
/// accumulators, two B vectors and a broadcast fit AVX2's 16 registers,
/// where the whole 12 x 32 tile (48 vectors) spilled to the stack and ran
/// at 40% of the `gemm` crate's speed on a Zen 3 core.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[target_feature(enable = "avx2,fma")]
unsafe fn micro_avx2(kc: usize, a: &[f32], b: &[f32], out: [*mut f32; MR], add: bool) {
    use std::arch::x86_64::*;
    const QR: usize = MR / 2;
    const QC: usize = NR / 2;
    for c0 in [0, QC] {
        for r0 in [0, QR] {
            // Ask for the quarter's rows of C now: they are read at the end,
            // and C is the one operand not packed into the caches.
            for i in 0..QR {
                let row = out[r0 + i].add(c0) as *const i8;
                _mm_prefetch::<_MM_HINT_T0>(row);
                _mm_prefetch::<_MM_HINT_T0>(row.add(4 * QC - 1));
            }
            let mut acc = [_mm256_setzero_ps(); 2 * QR];
            let (mut ap, mut bp) = (a.as_ptr().add(r0), b.as_ptr().add(c0));
            for _ in 0..kc {
                // SAFETY (whole loop): `Micro::run` checked a.len() >= kc*MR
                // and b.len() >= kc*NR; each step reads rows r0..r0+QR of
                // an MR-float step of a and columns c0..c0+QC of b's.
                let b0 = _mm256_loadu_ps(bp);
                let b1 = _mm256_loadu_ps(bp.add(8));
                for i in 0..QR {
                    let ai = _mm256_broadcast_ss(&*ap.add(i));
                    acc[2 * i] = _mm256_fmadd_ps(ai, b0, acc[2 * i]);
                    acc[2 * i + 1] = _mm256_fmadd_ps(ai, b1, acc[2 * i + 1]);
                }
                ap = ap.add(MR);
                bp = bp.add(NR);
            }
            // Each of `out`'s rows holds NR floats (`TileOut::row_starts`).
            for i in 0..QR {
                let row = out[r0 + i].add(c0);
                let (mut v0, mut v1) = (acc[2 * i], acc[2 * i + 1]);
                if add {
                    v0 = _mm256_add_ps(v0, _mm256_loadu_ps(row));
                    v1 = _mm256_add_ps(v1, _mm256_loadu_ps(row.add(8)));
                }
                _mm256_storeu_ps(row, v0);
                _mm256_storeu_ps(row.add(8), v1);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[target_feature(enable = "avx512f")]
unsafe fn micro_avx512(kc: usize, a: &[f32], b: &[f32], out: [*mut f32; MR], add: bool) {
    use std::arch::x86_64::*;
    for &row in &out {
        let row = row as *const i8;
        _mm_prefetch::<_MM_HINT_T0>(row);
        _mm_prefetch::<_MM_HINT_T0>(row.add(4 * NR - 1));
    }
    let mut acc = [_mm512_setzero_ps(); 2 * MR];
    let (mut ap, mut bp) = (a.as_ptr(), b.as_ptr());
    for _ in 0..kc {
        // SAFETY (whole loop): `Micro::run` checked a.len() >= kc*MR and
        // b.len() >= kc*NR; each step reads MR floats of a and NR of b.
        let b0 = _mm512_loadu_ps(bp);
        let b1 = _mm512_loadu_ps(bp.add(16));
        for i in 0..MR {
            let ai = _mm512_set1_ps(*ap.add(i));
            acc[2 * i] = _mm512_fmadd_ps(ai, b0, acc[2 * i]);
            acc[2 * i + 1] = _mm512_fmadd_ps(ai, b1, acc[2 * i + 1]);
        }
        ap = ap.add(MR);
        bp = bp.add(NR);
    }
    // Each of `out`'s rows holds NR floats (`TileOut::row_starts`).
    for (i, &row) in out.iter().enumerate() {
        let (mut v0, mut v1) = (acc[2 * i], acc[2 * i + 1]);
        if add {
            v0 = _mm512_add_ps(v0, _mm512_loadu_ps(row));
            v1 = _mm512_add_ps(v1, _mm512_loadu_ps(row.add(16)));
        }
        _mm512_storeu_ps(row, v0);
        _mm512_storeu_ps(row.add(16), v1);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 2654435761 + seed * 97) % 1009) as f32 / 1009.0 - 0.5)
            .collect()
    }

    fn naive(a: &MatRef, b: &MatRef) -> Vec<f32> {
        let mut c = vec![0f32; a.rows * b.cols];
        for i in 0..a.rows {
            for j in 0..b.cols {
                c[i * b.cols + j] = (0..a.cols).map(|p| a.at(i, p) * b.at(p, j)).sum();
            }
        }
        c
    }

    #[test]
    fn agrees_with_the_naive_product_across_block_edges() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        // Sizes straddling MR, NR, KC, MC and NC.
        for &(m, k, n) in &[
            (1, 1, 1),
            (13, 7, 33),
            (150, 300, 70),
            (25, 513, 3100),
            (12, 256, 32),
            (300, 40, 50),
            // Tall enough to split by rows over two threads.
            (300, 64, 100),
        ] {
            let a_data = values(m * k, 1);
            let b_data = values(k * n, 2);
            let a = MatRef::row_major(&a_data, m, k).unwrap();
            // B both row-major and as a transposed [n, k] weight.
            let bt_data: Vec<f32> = (0..n * k).map(|i| b_data[(i % k) * n + i / k]).collect();
            for b in [
                MatRef::row_major(&b_data, k, n).unwrap(),
                MatRef::transposed(&bt_data, k, n).unwrap(),
            ] {
                let want = naive(&a, &b);
                for parallel in [false, true] {
                    let mut c = vec![f32::NAN; m * n];
                    pool.install(|| sgemm(a, b, &mut c, false, parallel));
                    let tol = 1e-4 * (k as f32).sqrt();
                    for (i, (x, y)) in c.iter().zip(&want).enumerate() {
                        assert!((x - y).abs() <= tol, "({m},{k},{n}) at {i}: {x} vs {y}");
                    }
                    // Accumulating adds the product once more.
                    pool.install(|| sgemm(a, b, &mut c, true, parallel));
                    for (x, y) in c.iter().zip(&want) {
                        assert!((x - 2.0 * y).abs() <= 2.0 * tol);
                    }
                }
            }
        }
    }

    #[test]
    fn writes_rows_ldc_apart_and_leaves_the_gaps_alone() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        for &(m, k, n, ldc) in &[
            (5, 9, 7, 10),
            (300, 20, 40, 45),
            (40, 300, 100, 130),
            (300, 40, 100, 110),
        ] {
            let (a_data, b_data) = (values(m * k, 3), values(k * n, 4));
            let a = MatRef::row_major(&a_data, m, k).unwrap();
            let b = MatRef::row_major(&b_data, k, n).unwrap();
            let want = naive(&a, &b);
            let mut c = vec![7.0f32; (m - 1) * ldc + n];
            pool.install(|| sgemm_into(a, &b, &mut c, ldc, false, true));
            for i in 0..m {
                for j in 0..ldc {
                    let got = c.get(i * ldc + j).copied();
                    if j < n {
                        assert!(
                            (got.unwrap() - want[i * n + j]).abs() < 1e-3,
                            "({m},{k},{n},{ldc})"
                        );
                    } else if let Some(gap) = got {
                        assert_eq!(gap, 7.0, "a gap was written");
                    }
                }
            }
        }
    }

    #[test]
    fn every_micro_kernel_computes_the_same_tile() {
        let kc = 37;
        let (a, b) = (values(kc * MR, 5), values(kc * NR, 6));
        let mut want = [[0f32; NR]; MR];
        let mut rows = want.each_mut().map(|r| r.as_mut_slice());
        let out = TileOut {
            rows: &mut rows,
            col: 0,
            add: false,
        };
        Micro::Portable.run(kc, &a, &b, out);
        for i in 0..MR {
            for j in 0..NR {
                let naive: f32 = (0..kc).map(|p| a[p * MR + i] * b[p * NR + j]).sum();
                assert!((want[i][j] - naive).abs() < 1e-4);
            }
        }
        // Every kernel, into columns 3.. of wider rows: written, then added
        // once more, leaving the columns around the tile alone.
        let (col, width) = (3, NR + 5);
        for kernel in [Micro::detect(), Micro::Avx2, Micro::Portable] {
            if matches!(kernel, Micro::Avx2) && !std::is_x86_feature_detected!("avx2") {
                continue;
            }
            let mut got = vec![vec![7f32; width]; MR];
            for (add, times) in [(false, 1.0), (true, 2.0)] {
                let mut rows: Vec<&mut [f32]> = got.iter_mut().map(|r| r.as_mut_slice()).collect();
                let out = TileOut {
                    rows: &mut rows,
                    col,
                    add,
                };
                kernel.run(kc, &a, &b, out);
                for (i, row) in got.iter().enumerate() {
                    for (j, &x) in row.iter().enumerate() {
                        if (col..col + NR).contains(&j) {
                            let y = times * want[i][j - col];
                            assert!((x - y).abs() < 1e-4, "{kernel:?} ({i}, {j})");
                        } else {
                            assert_eq!(x, 7.0, "{kernel:?} wrote outside the tile");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn views_out_of_bounds_are_refused() {
        let data = vec![0f32; 10];
        assert!(MatRef::row_major(&data, 2, 5).is_some());
        assert!(MatRef::row_major(&data, 3, 4).is_none());
        assert!(MatRef::new(&data, 2, 2, usize::MAX, 1).is_none());
        assert!(MatRef::transposed(&data, 5, 2).is_some());
    }
}
