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
//! a Janus VQ decode on an AVX2 core). A B that is already packed (a
//! [`crate::PackedWeight`]) is read in place.

use rayon::prelude::*;

use crate::micro::{AStrip, Micro, TileOut, MR, NR};
/// Depth of one packed block (a `KC x NR` B strip is 32 KiB).
const KC: usize = 256;
/// Rows of one packed A block (`MC x KC` is 144 KiB, in L2).
const MC: usize = 144;
/// Columns of one packed B panel.
const NC: usize = 3072;
/// Products smaller than this many multiply-adds stay on one thread.
const PARALLEL_WORK: usize = 1 << 20;
/// A packed B of at least this many elements (512 KiB) is split over the
/// threads even for one row of A: with nothing to pack, reading B is the
/// work (a Qwen3-MoE layer's 512 x 512 projections decode 25-45% faster
/// split over two threads).
const PARALLEL_PACKED: usize = 1 << 17;

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

    /// B already packed (a [`crate::PackedWeight`]): strip `t`, columns
    /// `t * NR..`, is `[rows][NR]` at `t * rows * NR`, and the GEMM reads
    /// it in place instead of packing.
    fn strips(&self) -> Option<&[f32]> {
        None
    }
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
    let large = m * n * k >= PARALLEL_WORK || (b.strips().is_some() && n * k >= PARALLEL_PACKED);
    let threads = if parallel && large {
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
    // A packed B under a row-major A (or a decode step's few rows) packs
    // next to nothing, so it splits into a few pieces a thread: a thread
    // that wakes late no longer leaves the other idle at the end. (Every
    // piece packs all of an A it cannot read in place: finer pieces would
    // pack it over and over.)
    let packs_nothing = (b.strips().is_some() && m <= MR) || reads_a_in_place(&a, b);
    let pieces = if packs_nothing { 4 * threads } else { threads };
    let cols_per = n.div_ceil(pieces).div_ceil(NR) * NR;
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

/// Whether the micro-kernels read A in place rather than packed: under a
/// packed weight a row-major A's block of rows stays in L1 while the
/// weight streams past it, so packing it would only copy it.
fn reads_a_in_place<B: PackB>(a: &MatRef, b: &B) -> bool {
    b.strips().is_some() && a.col_stride == 1
}

/// The register tiles over `mc` rows: `(first row, rows)`, as few tiles as
/// `MR` allows, their heights differing by at most one. An expert's 13
/// rows run as 7 and 6, not 12 and 1: a tile of under four rows waits on
/// its few accumulators' multiply-adds, so its rows cost up to four times
/// as much.
fn tiles(mc: usize) -> impl Iterator<Item = (usize, usize)> {
    let count = mc.div_ceil(MR);
    let (base, taller) = (mc / count.max(1), mc % count.max(1));
    (0..count).map(move |t| (t * base + t.min(taller), base + usize::from(t < taller)))
}

/// Packs rows `r0..r0+mc`, columns `p0..p0+kc` of `a` as strips of the
/// [`tiles`]' rows, strip `s` at `s * kc * MR`, each `[kc][rows]` for its
/// own number of rows (a decode step's one row is packed as one row, not
/// padded to twelve).
fn pack_a(a: &MatRef, r0: usize, mc: usize, p0: usize, kc: usize, out: &mut [f32]) {
    for (strip, (first, rows)) in out.chunks_exact_mut(kc * MR).zip(tiles(mc)) {
        let strip = &mut strip[..kc * rows];
        if a.row_stride == 1 && a.col_stride != 1 {
            // A column-major A (a transposed matrix, as a weight's
            // gradient `dy^T x` reads dy): each step's rows are one run.
            let top = r0 + first;
            for (p, dst) in strip.chunks_exact_mut(rows).enumerate() {
                dst.copy_from_slice(&a.data[(p0 + p) * a.col_stride + top..][..rows]);
            }
            continue;
        }
        for i in 0..rows {
            let r = r0 + first + i;
            if a.col_stride == 1 {
                // A row-major row: read it in one run (reading down the
                // strip's rows, step by step, was 4% of a prefill).
                let src = &a.data[r * a.row_stride + p0..][..kc];
                for (d, &v) in strip.iter_mut().skip(i).step_by(rows).zip(src) {
                    *d = v;
                }
            } else {
                for (p, d) in strip.iter_mut().skip(i).step_by(rows).enumerate() {
                    *d = a.at(r, p0 + p);
                }
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
    let prepacked = b.strips();
    assert!(
        prepacked.is_none() || cols.start.is_multiple_of(NR),
        "a packed B is read from whole strips"
    );
    // A packed B under one tile of rows (a decode step) is read once, so
    // it is read whole: strip after strip, one sequential pass over the
    // weight, where blocks of KC rows jumped between strips.
    let stream = prepacked.is_some();
    let depth = if stream && m <= MR { k } else { KC };
    let mut bp = match prepacked {
        Some(_) => Vec::new(),
        None => vec![0f32; KC.min(k) * NC.min(n).div_ceil(NR) * NR],
    };
    let in_place = reads_a_in_place(&a, b);
    let mut ap = if in_place {
        Vec::new()
    } else {
        vec![0f32; MC.min(m).div_ceil(MR) * MR * depth.min(k)]
    };
    let mut tile = [[0f32; NR]; MR];
    for jc in (0..n).step_by(NC) {
        let nc = NC.min(n - jc);
        for pc in (0..k).step_by(depth) {
            let kc = depth.min(k - pc);
            if prepacked.is_none() {
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
            }
            let add = accumulate || pc > 0;
            for ic in (0..m).step_by(MC) {
                let mc = MC.min(m - ic);
                if !in_place {
                    pack_a(&a, ic, mc, pc, kc, &mut ap);
                }
                for jr in (0..nc).step_by(NR) {
                    let nr = NR.min(nc - jr);
                    let b_strip = match prepacked {
                        Some(strips) => {
                            let strip = (cols.start + jc + jr) / NR;
                            &strips[(strip * k + pc) * NR..][..kc * NR]
                        }
                        None => &bp[(jr / NR) * kc * NR..][..kc * NR],
                    };
                    for (tile_index, (ir, mr)) in tiles(mc).enumerate() {
                        let a_strip = if in_place {
                            let stride = a.row_stride;
                            let first = (ic + ir) * stride + pc;
                            AStrip::Rows {
                                data: &a.data[first..first + (mr - 1) * stride + kc],
                                stride,
                            }
                        } else {
                            AStrip::Packed(&ap[tile_index * kc * MR..][..kc * mr])
                        };
                        let rows = &mut c[ic + ir..ic + ir + mr];
                        if nr == NR {
                            // Whole columns: the kernel adds into C from its
                            // registers (no round trip through `tile`).
                            let out = TileOut {
                                rows,
                                col: jc + jr,
                                add,
                                stream,
                            };
                            kernel.run(kc, a_strip, b_strip, mr, out);
                            continue;
                        }
                        let mut scratch = tile.each_mut().map(|r| r.as_mut_slice());
                        let out = TileOut {
                            rows: &mut scratch,
                            col: 0,
                            add: false,
                            stream,
                        };
                        kernel.run(kc, a_strip, b_strip, mr, out);
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::test_values::values;

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
    fn tiles_cover_every_row_once_in_as_few_even_tiles_as_fit() {
        for mc in 1..=3 * MC {
            let t: Vec<(usize, usize)> = tiles(mc).collect();
            assert_eq!(t.len(), mc.div_ceil(MR), "{mc} rows");
            let mut next = 0;
            for &(first, rows) in &t {
                assert!(first == next && (1..=MR).contains(&rows), "{mc}: {t:?}");
                next += rows;
            }
            assert_eq!(next, mc);
            let (lo, hi) = t
                .iter()
                .fold((MR, 0), |(lo, hi), &(_, r)| (lo.min(r), hi.max(r)));
            assert!(hi - lo <= 1, "{mc}: {t:?}");
        }
        assert_eq!(tiles(13).collect::<Vec<_>>(), [(0, 7), (7, 6)]);
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
            // A both row-major and column-major (a transposed [k, m]).
            let at_data: Vec<f32> = (0..m * k).map(|i| a_data[(i % m) * k + i / m]).collect();
            // B both row-major and as a transposed [n, k] weight.
            let bt_data: Vec<f32> = (0..n * k).map(|i| b_data[(i % k) * n + i / k]).collect();
            let a_views = [
                MatRef::row_major(&a_data, m, k).unwrap(),
                MatRef::transposed(&at_data, m, k).unwrap(),
            ];
            let b_views = [
                MatRef::row_major(&b_data, k, n).unwrap(),
                MatRef::transposed(&bt_data, k, n).unwrap(),
            ];
            for (a, b) in a_views
                .iter()
                .flat_map(|a| b_views.iter().map(move |b| (*a, *b)))
            {
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
    fn views_out_of_bounds_are_refused() {
        let data = vec![0f32; 10];
        assert!(MatRef::row_major(&data, 2, 5).is_some());
        assert!(MatRef::row_major(&data, 3, 4).is_none());
        assert!(MatRef::new(&data, 2, 2, usize::MAX, 1).is_none());
        assert!(MatRef::transposed(&data, 5, 2).is_some());
    }
}
