//! Element-wise activations over slices, vectorised where the CPU allows:
//! swish, sigmoid, the softmax of attention rows, log-sum-exp, and RMS
//! normalisation.
//!
//! Swish after a group norm runs over every activation of a convolutional
//! decoder; through libm's scalar `expf` it was 9% of a Janus VQ decode.

/// `1 / (1 + exp(-x))` of every value, in place.
pub fn sigmoid(values: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if in_lanes(values, sigmoid_avx2) {
        return;
    }
    values.iter_mut().for_each(|v| *v = sigmoid_one(*v));
}

/// Runs `lanes` over `values` when the CPU has AVX2 and FMA, which it
/// needs; says whether it did.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
fn in_lanes(values: &mut [f32], lanes: unsafe fn(&mut [f32])) -> bool {
    let fits = std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma");
    if fits {
        // SAFETY: the CPU has AVX2 and FMA, checked just above.
        unsafe { lanes(values) };
    }
    fits
}

fn sigmoid_one(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// `exp(x)` of every value, in place (below -87 the vectorised path gives
/// about 1e-38 rather than a smaller number or 0).
pub fn exp(values: &mut [f32]) {
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA, checked just above.
        #[allow(unsafe_code)]
        unsafe {
            (_, done) = exp_shifted_avx2(values, 0.0)
        };
    }
    values[done..].iter_mut().for_each(|v| *v = v.exp());
}

/// `ln(sum(exp(x)))` of `values`, taken about their maximum so that it
/// neither overflows nor underflows; `-inf` for an empty slice.
pub fn log_sum_exp(values: &[f32]) -> f32 {
    let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return max;
    }
    let mut sum = 0f32;
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA, checked just above.
        #[allow(unsafe_code)]
        unsafe {
            (sum, done) = sum_exp_shifted_avx2(values, max)
        };
    }
    sum += values[done..].iter().map(|v| (v - max).exp()).sum::<f32>();
    max + sum.ln()
}

/// `x * sigmoid(x)` (SiLU, swish) of every value, in place.
pub fn silu(values: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if in_lanes(values, silu_avx2) {
        return;
    }
    values.iter_mut().for_each(|v| *v = silu_one(*v));
}

fn silu_one(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// `exp` of eight lanes: range reduction to `r` in [-ln2/2, ln2/2]
/// (`x = n ln2 + r`, ln2 split in two for exactness), a degree-6
/// polynomial for `exp(r)` (Cephes' `expf` coefficients), and `2^n` built
/// in the exponent bits. Inputs are clamped to [-87, 88] so that `2^n`
/// stays a normal float.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn exp_avx2(x: std::arch::x86_64::__m256) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    let t = _mm256_max_ps(
        _mm256_min_ps(x, _mm256_set1_ps(88.0)),
        _mm256_set1_ps(-87.0),
    );
    let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(
        t,
        _mm256_set1_ps(std::f32::consts::LOG2_E),
    ));
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_359_4), t);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.121_944_4e-4), r);
    let mut p = _mm256_set1_ps(1.987_569_1e-4);
    for c in [
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        0.166_666_65,
        0.5,
    ] {
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
    }
    let r2 = _mm256_mul_ps(r, r);
    let e = _mm256_fmadd_ps(p, r2, _mm256_add_ps(r, _mm256_set1_ps(1.0)));
    let pow2 = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
        _mm256_cvtps_epi32(n),
        _mm256_set1_epi32(127),
    )));
    _mm256_mul_ps(e, pow2)
}

/// Sigmoid eight lanes at a time; beyond the clamp of [`exp_avx2`] it is
/// 0 or 1 to f32 precision anyway.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[target_feature(enable = "avx2,fma")]
unsafe fn sigmoid_avx2(values: &mut [f32]) {
    use std::arch::x86_64::*;
    let mut chunks = values.chunks_exact_mut(8);
    for chunk in &mut chunks {
        // SAFETY: `chunk` holds exactly eight floats.
        let x = _mm256_loadu_ps(chunk.as_ptr());
        let exp = exp_avx2(_mm256_sub_ps(_mm256_setzero_ps(), x));
        let y = _mm256_div_ps(_mm256_set1_ps(1.0), _mm256_add_ps(_mm256_set1_ps(1.0), exp));
        _mm256_storeu_ps(chunk.as_mut_ptr(), y);
    }
    chunks
        .into_remainder()
        .iter_mut()
        .for_each(|v| *v = sigmoid_one(*v));
}

/// The sum of `exp(x - max)` over the whole eight-lane chunks of
/// `values`, and how many values that was.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[target_feature(enable = "avx2,fma")]
unsafe fn sum_exp_shifted_avx2(values: &[f32], max: f32) -> (f32, usize) {
    use std::arch::x86_64::*;
    let shift = _mm256_set1_ps(max);
    let mut total = _mm256_setzero_ps();
    let chunks = values.chunks_exact(8);
    let done = values.len() - chunks.remainder().len();
    for chunk in chunks {
        // SAFETY: `chunk` holds exactly eight floats.
        let e = exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(chunk.as_ptr()), shift));
        total = _mm256_add_ps(total, e);
    }
    let mut lanes = [0f32; 8];
    _mm256_storeu_ps(lanes.as_mut_ptr(), total);
    (lanes.iter().sum(), done)
}

/// Swish eight lanes at a time; beyond the clamp of [`exp_avx2`] swish is
/// `x` or `0` to f32 precision anyway.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[target_feature(enable = "avx2,fma")]
unsafe fn silu_avx2(values: &mut [f32]) {
    use std::arch::x86_64::*;
    let mut chunks = values.chunks_exact_mut(8);
    for chunk in &mut chunks {
        // SAFETY: `chunk` holds exactly eight floats.
        let x = _mm256_loadu_ps(chunk.as_ptr());
        let exp = exp_avx2(_mm256_sub_ps(_mm256_setzero_ps(), x));
        let y = _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0), exp));
        _mm256_storeu_ps(chunk.as_mut_ptr(), y);
    }
    chunks
        .into_remainder()
        .iter_mut()
        .for_each(|v| *v = silu_one(*v));
}

/// `softmax` of `values` in place: `exp(x - max) / sum`. An empty slice is
/// left alone; `-inf` entries get 0.
pub fn softmax(values: &mut [f32]) {
    let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if values.is_empty() || max == f32::NEG_INFINITY {
        return;
    }
    let mut sum = 0f32;
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA, checked just above.
        #[allow(unsafe_code)]
        unsafe {
            (sum, done) = exp_shifted_avx2(values, max)
        };
    }
    for v in &mut values[done..] {
        *v = (*v - max).exp();
        sum += *v;
    }
    let inverse = 1.0 / sum;
    values.iter_mut().for_each(|v| *v *= inverse);
}

/// `exp(x - max)` of the whole eight-lane chunks of `values`, in place;
/// returns their sum and how many values it did. (Below the clamp of
/// [`exp_avx2`], `exp` is under 2^-125 of the largest term: nothing in the
/// sum, and a `-inf` comes out as that rather than 0.)
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[target_feature(enable = "avx2,fma")]
unsafe fn exp_shifted_avx2(values: &mut [f32], max: f32) -> (f32, usize) {
    use std::arch::x86_64::*;
    let shift = _mm256_set1_ps(max);
    let mut total = _mm256_setzero_ps();
    let mut chunks = values.chunks_exact_mut(8);
    let mut done = 0;
    for chunk in &mut chunks {
        // SAFETY: `chunk` holds exactly eight floats.
        let e = exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(chunk.as_ptr()), shift));
        total = _mm256_add_ps(total, e);
        _mm256_storeu_ps(chunk.as_mut_ptr(), e);
        done += 8;
    }
    let mut lanes = [0f32; 8];
    _mm256_storeu_ps(lanes.as_mut_ptr(), total);
    (lanes.iter().sum(), done)
}

/// Lanes of the sum of squares: independent partial sums the compiler
/// keeps in vector registers (one running sum is a chain of dependent
/// adds, and cannot be reordered).
const LANES: usize = 16;

/// `out = x / sqrt(mean(x^2) + eps) * weight` for one row (`x`, `weight`
/// and `out` of one length). The sum is taken in `LANES` partial sums, so
/// it can differ from a sequential one in the last bits.
pub fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    assert!(
        x.len() == weight.len() && x.len() == out.len(),
        "rms_norm: x, weight and out differ in length"
    );
    let mut partial = [0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().map(|v| v * v).sum();
    for chunk in chunks {
        for (p, v) in partial.iter_mut().zip(chunk) {
            *p += v * v;
        }
    }
    let sum = partial.iter().sum::<f32>() + tail;
    let scale = 1.0 / (sum / x.len().max(1) as f32 + eps).sqrt();
    for ((o, &v), &w) in out.iter_mut().zip(x).zip(weight) {
        *o = v * scale * w;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rms_norm_matches_the_formula_in_f64() {
        for len in [1, 15, 16, 33, 512] {
            let x: Vec<f32> = (0..len)
                .map(|i| ((i * 37) % 23) as f32 * 0.3 - 3.0)
                .collect();
            let w: Vec<f32> = (0..len).map(|i| 0.5 + (i % 5) as f32 * 0.25).collect();
            let mut got = vec![0f32; len];
            rms_norm(&x, &w, 1e-6, &mut got);
            let ms = x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / len as f64;
            for ((&v, &wi), &y) in x.iter().zip(&w).zip(&got) {
                let want = f64::from(v) / (ms + 1e-6).sqrt() * f64::from(wi);
                assert!((f64::from(y) - want).abs() <= 1e-6 * want.abs().max(1.0));
            }
        }
    }

    #[test]
    fn sigmoid_and_log_sum_exp_match_f64() {
        let xs: Vec<f32> = (-4000..=4000).map(|i| i as f32 * 0.01 + 0.003).collect();
        let mut got = xs.clone();
        sigmoid(&mut got);
        for (&x, &y) in xs.iter().zip(&got) {
            let want = 1.0 / (1.0 + (-f64::from(x)).exp());
            assert!(
                (f64::from(y) - want).abs() <= 3e-7 * want + 1e-30,
                "{x}: {y} vs {want}"
            );
        }
        for len in [1, 7, 8, 9, 2007] {
            let row: Vec<f32> = (0..len)
                .map(|i| ((i * 31) % 17) as f32 * 1.7 - 9.0)
                .collect();
            let max = row
                .iter()
                .copied()
                .fold(f64::NEG_INFINITY, |m, v| m.max(f64::from(v)));
            let want = max
                + row
                    .iter()
                    .map(|&v| (f64::from(v) - max).exp())
                    .sum::<f64>()
                    .ln();
            let got = f64::from(log_sum_exp(&row));
            assert!(
                (got - want).abs() <= 2e-6 * want.abs().max(1.0),
                "{len}: {got} vs {want}"
            );
        }
        assert_eq!(log_sum_exp(&[]), f32::NEG_INFINITY);
        assert_eq!(log_sum_exp(&[f32::NEG_INFINITY, 2.0]), 2.0);
    }

    #[test]
    fn silu_matches_the_scalar_formula_everywhere() {
        // Dense over [-20, 20], sparse out to ±1000, the edges of the
        // clamp, and a length that leaves a remainder.
        let mut xs: Vec<f32> = (-20_000..=20_000).map(|i| i as f32 * 1e-3).collect();
        xs.extend([
            -1000.0, -100.0, -88.5, -87.5, -87.0, 87.0, 88.5, 100.0, 1000.0, 0.0, -0.0,
        ]);
        xs.extend([1e-30, -1e-30, f32::MIN_POSITIVE, 3.0]);
        let mut got = xs.clone();
        silu(&mut got);
        for (&x, &y) in xs.iter().zip(&got) {
            let want = f64::from(x) / (1.0 + (-f64::from(x)).exp());
            let err = (f64::from(y) - want).abs();
            assert!(
                err <= 2e-7 * want.abs() + 1e-30,
                "silu({x}) = {y}, want {want} (error {err:e})"
            );
        }
    }

    #[test]
    fn softmax_matches_the_formula_in_f64() {
        for len in [1, 7, 8, 13, 64, 200] {
            let xs: Vec<f32> = (0..len)
                .map(|i| ((i * 7919) % 101) as f32 * 0.37 - 15.0)
                .collect();
            let mut got = xs.clone();
            softmax(&mut got);
            let max = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            let total: f64 = xs.iter().map(|&x| (f64::from(x) - max).exp()).sum();
            for (&x, &y) in xs.iter().zip(&got) {
                let want = (f64::from(x) - max).exp() / total;
                assert!(
                    (f64::from(y) - want).abs() <= 1e-6 * want + 1e-12,
                    "{len}: {y} vs {want}"
                );
            }
        }
        let mut masked = [0.5, f32::NEG_INFINITY, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5];
        softmax(&mut masked);
        assert!(masked[1] < 1e-30 && (masked[0] - 0.125).abs() < 1e-6);
        let mut empty: [f32; 0] = [];
        softmax(&mut empty);
    }
}
