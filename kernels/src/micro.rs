//! The register tiles of [`crate::gemm`]: up to `MR x NR` of `C` from a
//! packed `[kc][rows]` strip of A and a packed `[kc][NR]` strip of B.
//!
//! A tile of fewer rows (the last rows of a product, or every tile of a
//! decode step's one to eight rows) runs a kernel of exactly that many
//! rows: padding it to 12 rows made a one-row product do twelve rows'
//! multiply-adds.

/// Rows of the register tile.
pub(crate) const MR: usize = 12;
/// Columns of the register tile: two 16-float vectors.
pub(crate) const NR: usize = 32;

/// How many steps of B (`NR` floats each) ahead a streaming tile asks for
/// (see [`TileOut::stream`]).
#[cfg(target_arch = "x86_64")]
const PREFETCH_STEPS: usize = 16;

/// Where a micro-kernel leaves its tile: row `i` is
/// `rows[i][col..col + NR]`, added to what is there when `add`.
pub(crate) struct TileOut<'r, 'c> {
    pub rows: &'r mut [&'c mut [f32]],
    pub col: usize,
    pub add: bool,
    /// B comes from memory rather than from a block just packed into the
    /// caches (a packed weight): the kernel asks for it ahead of use, as
    /// one sequential stream per core left its loads waiting (decode
    /// steps; +4% on a MoE prefill, whose experts see few rows each).
    pub stream: bool,
}

impl TileOut<'_, '_> {
    /// The first element of the tile in each of the first `rows` rows,
    /// bounds checked (the rest are null and never used).
    #[cfg(target_arch = "x86_64")]
    fn row_starts(&mut self, rows: usize) -> [*mut f32; MR] {
        assert!(self.rows.len() >= rows, "a tile has fewer rows than asked");
        let col = self.col;
        let mut starts = [std::ptr::null_mut(); MR];
        for (start, row) in starts.iter_mut().zip(self.rows.iter_mut()).take(rows) {
            *start = row[col..col + NR].as_mut_ptr();
        }
        starts
    }
}

/// The tile's rows of A over `kc` steps.
#[derive(Debug, Clone, Copy)]
pub(crate) enum AStrip<'a> {
    /// Packed `[kc][rows]`: a step's values side by side.
    Packed(&'a [f32]),
    /// Read in place: row `i`, step `p` at `data[i * stride + p]`. A
    /// packed weight's products read their A this way: packing a prefill's
    /// rows (a scalar transpose) was 8% of it, a tenth of the multiply-adds
    /// of an expert over its few tokens.
    Rows { data: &'a [f32], stride: usize },
}

impl AStrip<'_> {
    /// The first value, and the distance between rows and between steps.
    fn layout(self, rows: usize) -> (*const f32, usize, usize) {
        match self {
            AStrip::Packed(a) => (a.as_ptr(), 1, rows),
            AStrip::Rows { data, stride } => (data.as_ptr(), stride, 1),
        }
    }

    /// Whether `rows` rows of `kc` steps lie inside the slice.
    fn holds(self, kc: usize, rows: usize) -> bool {
        match self {
            AStrip::Packed(a) => a.len() >= kc * rows,
            // Rows may overlap (a sliding view): only reads happen.
            AStrip::Rows { data, stride } => kc == 0 || data.len() >= (rows - 1) * stride + kc,
        }
    }

    /// Row `i`, step `p` (the portable kernel's access).
    fn at(self, rows: usize, i: usize, p: usize) -> f32 {
        match self {
            AStrip::Packed(a) => a[p * rows + i],
            AStrip::Rows { data, stride } => data[i * stride + p],
        }
    }
}

/// Which register-tile kernel this CPU runs.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Micro {
    Avx512,
    Avx2,
    Portable,
}

/// Calls `$f::<R>($args)` for the run-time row count `$rows` (1 to `$max`),
/// so each tile height gets its own kernel with its accumulators in
/// registers.
#[cfg(target_arch = "x86_64")]
macro_rules! by_rows {
    ($rows:expr, $f:ident :: <_, $g:tt> ( $($arg:expr),* )) => {
        match $rows {
            1 => $f::<1, $g>($($arg),*),
            2 => $f::<2, $g>($($arg),*),
            3 => $f::<3, $g>($($arg),*),
            4 => $f::<4, $g>($($arg),*),
            5 => $f::<5, $g>($($arg),*),
            6 => $f::<6, $g>($($arg),*),
            7 => $f::<7, $g>($($arg),*),
            8 => $f::<8, $g>($($arg),*),
            9 => $f::<9, $g>($($arg),*),
            10 => $f::<10, $g>($($arg),*),
            11 => $f::<11, $g>($($arg),*),
            _ => $f::<12, $g>($($arg),*),
        }
    };
}

impl Micro {
    pub fn detect() -> Micro {
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

    /// `a^T b` over `kc` steps (`a` `rows` rows, `b` `[kc][NR]`), into
    /// (or added to) `dst`, which holds at least `rows` rows.
    pub fn run(self, kc: usize, a: AStrip, b: &[f32], rows: usize, mut dst: TileOut) {
        assert!((1..=MR).contains(&rows), "a tile has 1 to MR rows");
        assert!(a.holds(kc, rows) && b.len() >= kc * NR, "strips too short");
        match self {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `detect` saw AVX-512F on this CPU; the asserts above
            // keep every load in bounds, `row_starts` every store.
            #[allow(unsafe_code)]
            Micro::Avx512 => unsafe {
                let out = dst.row_starts(rows);
                let (add, stream) = (dst.add, dst.stream);
                match a {
                    AStrip::Packed(a) => by_rows!(
                        rows,
                        micro_avx512::<_, false>(kc, a.as_ptr(), 0, b, out, add, stream)
                    ),
                    AStrip::Rows { data, stride } => by_rows!(
                        rows,
                        micro_avx512::<_, true>(kc, data.as_ptr(), stride, b, out, add, stream)
                    ),
                }
            },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above, for AVX2 and FMA.
            #[allow(unsafe_code)]
            Micro::Avx2 => unsafe {
                let out = dst.row_starts(rows);
                let (layout, add, stream) = (a.layout(rows), dst.add, dst.stream);
                match a {
                    AStrip::Packed(_) => micro_avx2::<false>(kc, layout, b, rows, out, add, stream),
                    AStrip::Rows { .. } => {
                        micro_avx2::<true>(kc, layout, b, rows, out, add, stream)
                    }
                }
            },
            _ => micro_portable(kc, a, b, rows, dst),
        }
    }
}

/// The tile in plain Rust: the compiler vectorises the inner loops for
/// whatever the function is compiled for.
#[inline(always)]
fn micro_portable(kc: usize, a: AStrip, b: &[f32], rows: usize, dst: TileOut) {
    let mut acc = [[0f32; NR]; MR];
    for (p, bp) in b.chunks_exact(NR).take(kc).enumerate() {
        for (i, row) in acc.iter_mut().enumerate().take(rows) {
            let ai = a.at(rows, i, p);
            for (r, &bj) in row.iter_mut().zip(bp) {
                *r += ai * bj;
            }
        }
    }
    for (row, out) in acc.iter().zip(dst.rows.iter_mut()).take(rows) {
        let out = &mut out[dst.col..][..NR];
        if dst.add {
            out.iter_mut().zip(row).for_each(|(d, v)| *d += v);
        } else {
            out.copy_from_slice(row);
        }
    }
}

/// Rows of an AVX2 quarter tile.
#[cfg(target_arch = "x86_64")]
const QR: usize = MR / 2;
/// Columns of an AVX2 quarter tile.
#[cfg(target_arch = "x86_64")]
const QC: usize = NR / 2;

/// The tile as 6 x 16 quarters, one after another: a quarter's 12
/// accumulators, two B vectors and a broadcast fit AVX2's 16 registers,
/// where the whole 12 x 32 tile (48 vectors) spilled to the stack and ran
/// at 40% of the `gemm` crate's speed on a Zen 3 core.
///
/// `a` is [`AStrip::layout`]: the first value, the distance between rows
/// and between steps (`IN_PLACE`: an [`AStrip::Rows`]).
///
/// # Safety
/// The CPU has AVX2 and FMA; `a` holds `rows` rows of `kc` steps, `b`
/// `kc * NR` floats, and `out[..rows]` point at `NR` writable floats each.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code, clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
unsafe fn micro_avx2<const IN_PLACE: bool>(
    kc: usize,
    a: (*const f32, usize, usize),
    b: &[f32],
    rows: usize,
    out: [*mut f32; MR],
    add: bool,
    stream: bool,
) {
    let (first, rest) = (rows.min(QR), rows.saturating_sub(QR));
    for c0 in [0, QC] {
        // SAFETY: the caller's guarantees, quarter by quarter.
        by_rows!(
            first,
            quarter_avx2::<_, IN_PLACE>(kc, a, b, &out, 0, c0, add, stream)
        );
        if rest > 0 {
            by_rows!(
                rest,
                quarter_avx2::<_, IN_PLACE>(kc, a, b, &out, QR, c0, add, stream)
            );
        }
    }
}

/// Rows `r0..r0 + Q` (`Q <= QR`), columns `c0..c0 + QC` of the tile; `a`
/// is the first value of A with the distances between rows and between
/// steps (`IN_PLACE`: rows apart, steps adjacent; else the reverse).
///
/// # Safety
/// As [`micro_avx2`], for rows `r0..r0 + Q`.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code, clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
unsafe fn quarter_avx2<const Q: usize, const IN_PLACE: bool>(
    kc: usize,
    a: (*const f32, usize, usize),
    b: &[f32],
    out: &[*mut f32; MR],
    r0: usize,
    c0: usize,
    add: bool,
    stream: bool,
) {
    use std::arch::x86_64::*;
    if Q > QR {
        return;
    }
    let (a0, a_row, a_step) = a;
    // Packed steps are side by side: a constant distance between rows.
    let (a_row, a_step) = if IN_PLACE { (a_row, 1) } else { (1, a_step) };
    // Ask for the quarter's rows of C now: they are read at the end, and C
    // is the one operand not packed into the caches.
    for &row in &out[r0..r0 + Q] {
        let row = row.add(c0) as *const i8;
        _mm_prefetch::<_MM_HINT_T0>(row);
        _mm_prefetch::<_MM_HINT_T0>(row.add(4 * QC - 1));
    }
    let mut acc = [[_mm256_setzero_ps(); 2]; Q];
    let (mut ap, mut bp) = (a0.add(r0 * a_row), b.as_ptr().add(c0));
    for _ in 0..kc {
        // SAFETY (whole loop): each step reads rows r0..r0+Q of a step of
        // a and columns c0..c0+QC of b's.
        if stream {
            let ahead = bp.wrapping_add(PREFETCH_STEPS * NR) as *const i8;
            _mm_prefetch::<_MM_HINT_T0>(ahead);
        }
        let b0 = _mm256_loadu_ps(bp);
        let b1 = _mm256_loadu_ps(bp.add(8));
        for (i, acc_row) in acc.iter_mut().enumerate() {
            let ai = _mm256_broadcast_ss(&*ap.add(i * a_row));
            acc_row[0] = _mm256_fmadd_ps(ai, b0, acc_row[0]);
            acc_row[1] = _mm256_fmadd_ps(ai, b1, acc_row[1]);
        }
        ap = ap.add(a_step);
        bp = bp.add(NR);
    }
    for (i, acc_row) in acc.iter().enumerate() {
        let row = out[r0 + i].add(c0);
        let [mut v0, mut v1] = *acc_row;
        if add {
            v0 = _mm256_add_ps(v0, _mm256_loadu_ps(row));
            v1 = _mm256_add_ps(v1, _mm256_loadu_ps(row.add(8)));
        }
        _mm256_storeu_ps(row, v0);
        _mm256_storeu_ps(row.add(8), v1);
    }
}

/// `R` rows of the tile (`R <= MR`): up to 24 accumulators of 16 floats.
/// A is packed `[kc][R]` at `a`, or with `IN_PLACE` read in place, row `i`
/// at `a + i * stride`.
///
/// # Safety
/// The CPU has AVX-512F; `a` holds the `R` rows of `kc` steps, `b`
/// `kc * NR` floats, and `out[..R]` point at `NR` writable floats each.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code, clippy::too_many_arguments)]
#[target_feature(enable = "avx512f")]
unsafe fn micro_avx512<const R: usize, const IN_PLACE: bool>(
    kc: usize,
    a: *const f32,
    stride: usize,
    b: &[f32],
    out: [*mut f32; MR],
    add: bool,
    stream: bool,
) {
    use std::arch::x86_64::*;
    if R > MR {
        return;
    }
    for &row in &out[..R] {
        let row = row as *const i8;
        _mm_prefetch::<_MM_HINT_T0>(row);
        _mm_prefetch::<_MM_HINT_T0>(row.add(4 * NR - 1));
    }
    let mut acc = [[_mm512_setzero_ps(); 2]; R];
    let (a_row, a_step) = if IN_PLACE { (stride, 1) } else { (1, R) };
    let (mut ap, mut bp) = (a, b.as_ptr());
    for _ in 0..kc {
        // SAFETY (whole loop): each step reads the R values of a step of a
        // and NR floats of b.
        if stream {
            let ahead = bp.wrapping_add(PREFETCH_STEPS * NR) as *const i8;
            _mm_prefetch::<_MM_HINT_T0>(ahead);
            _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64));
        }
        let b0 = _mm512_loadu_ps(bp);
        let b1 = _mm512_loadu_ps(bp.add(16));
        for (i, acc_row) in acc.iter_mut().enumerate() {
            let ai = _mm512_set1_ps(*ap.add(i * a_row));
            acc_row[0] = _mm512_fmadd_ps(ai, b0, acc_row[0]);
            acc_row[1] = _mm512_fmadd_ps(ai, b1, acc_row[1]);
        }
        ap = ap.add(a_step);
        bp = bp.add(NR);
    }
    for (acc_row, &row) in acc.iter().zip(&out) {
        let [mut v0, mut v1] = *acc_row;
        if add {
            v0 = _mm512_add_ps(v0, _mm512_loadu_ps(row));
            v1 = _mm512_add_ps(v1, _mm512_loadu_ps(row.add(16)));
        }
        _mm512_storeu_ps(row, v0);
        _mm512_storeu_ps(row.add(16), v1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_values::values;

    #[test]
    fn every_micro_kernel_computes_the_same_tile_at_every_height() {
        let kc = 37;
        let b = values(kc * NR, 6);
        // Every kernel and height, into columns 3.. of wider rows: written,
        // then added once more, leaving the columns around the tile and the
        // rows below it alone.
        let (col, width) = (3, NR + 5);
        let mut kernels = vec![Micro::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                kernels.push(Micro::Avx2);
            }
            if std::is_x86_feature_detected!("avx512f") {
                kernels.push(Micro::Avx512);
            }
        }
        for kernel in kernels {
            for (height, in_place) in (1..=MR).flat_map(|h| [(h, false), (h, true)]) {
                let a = values(kc * height, 5 + height);
                let mut want = [[0f32; NR]; MR];
                for (i, row) in want.iter_mut().enumerate().take(height) {
                    for (j, w) in row.iter_mut().enumerate() {
                        *w = (0..kc).map(|p| a[p * height + i] * b[p * NR + j]).sum();
                    }
                }
                // The same A in place: rows `stride` apart, gaps between.
                let stride = kc + 3;
                let mut rows_of_a = vec![f32::NAN; height * stride];
                for (i, row) in rows_of_a.chunks_exact_mut(stride).enumerate() {
                    for (p, v) in row.iter_mut().take(kc).enumerate() {
                        *v = a[p * height + i];
                    }
                }
                let strip = if in_place {
                    AStrip::Rows {
                        data: &rows_of_a,
                        stride,
                    }
                } else {
                    AStrip::Packed(&a)
                };
                let mut got = vec![vec![7f32; width]; MR];
                for (add, times) in [(false, 1.0), (true, 2.0)] {
                    let mut rows: Vec<&mut [f32]> =
                        got.iter_mut().map(|r| r.as_mut_slice()).collect();
                    let out = TileOut {
                        rows: &mut rows,
                        col,
                        add,
                        stream: height % 2 == 0,
                    };
                    kernel.run(kc, strip, &b, height, out);
                    for (i, row) in got.iter().enumerate() {
                        for (j, &x) in row.iter().enumerate() {
                            if i < height && (col..col + NR).contains(&j) {
                                let y = times * want[i][j - col];
                                assert!((x - y).abs() < 1e-4, "{kernel:?} {height} ({i}, {j})");
                            } else {
                                assert_eq!(x, 7.0, "{kernel:?} {height} wrote outside the tile");
                            }
                        }
                    }
                }
            }
        }
    }
}
