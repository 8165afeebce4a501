//! Spectra for the mel codec: STFT and its inverse (periodic Hann window,
//! centred frames with reflected padding, as librosa and torch.stft do), a
//! Slaney mel filterbank, and Griffin-Lim phase recovery with momentum
//! ("fast Griffin-Lim", Perraudin et al. 2013, librosa's default).

use std::f32::consts::PI;
use std::sync::Arc;

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use realfft::num_complex::Complex32;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};

/// A short-time Fourier transform of one size and hop.
pub struct Stft {
    n_fft: usize,
    hop: usize,
    window: Vec<f32>,
    forward: Arc<dyn RealToComplex<f32>>,
    inverse: Arc<dyn ComplexToReal<f32>>,
}

/// Frames of complex bins, `n_fft / 2 + 1` per frame.
pub type Spectrum = Vec<Vec<Complex32>>;

impl Stft {
    pub fn new(n_fft: usize, hop: usize) -> Stft {
        let mut planner = RealFftPlanner::<f32>::new();
        let window = (0..n_fft)
            .map(|i| 0.5 - 0.5 * (2.0 * PI * i as f32 / n_fft as f32).cos())
            .collect();
        Stft {
            n_fft,
            hop,
            window,
            forward: planner.plan_fft_forward(n_fft),
            inverse: planner.plan_fft_inverse(n_fft),
        }
    }

    pub fn bins(&self) -> usize {
        self.n_fft / 2 + 1
    }

    /// Frames `1 + len / hop`, frame `t` centred on sample `t * hop`.
    pub fn forward(&self, samples: &[f32]) -> Spectrum {
        let pad = self.n_fft / 2;
        let padded = reflect_pad(samples, pad);
        let frames = 1 + samples.len() / self.hop;
        let mut input = self.forward.make_input_vec();
        let mut output = self.forward.make_output_vec();
        (0..frames)
            .map(|t| {
                let start = t * self.hop;
                for (i, v) in input.iter_mut().enumerate() {
                    *v = padded.get(start + i).copied().unwrap_or(0.0) * self.window[i];
                }
                // The sizes are the planner's own: this cannot fail.
                let _ = self.forward.process(&mut input, &mut output);
                output.clone()
            })
            .collect()
    }

    /// Overlap-add of the frames' inverse transforms, windowed and divided
    /// by the summed squared window, trimmed to `len` samples.
    pub fn inverse(&self, spectrum: &Spectrum, len: usize) -> Vec<f32> {
        let pad = self.n_fft / 2;
        let total = pad * 2 + len.max((spectrum.len().saturating_sub(1)) * self.hop);
        let mut out = vec![0f32; total + self.n_fft];
        let mut norm = vec![0f32; total + self.n_fft];
        let mut input = self.inverse.make_input_vec();
        let mut frame = self.inverse.make_output_vec();
        for (t, bins) in spectrum.iter().enumerate() {
            input.copy_from_slice(bins);
            // A real signal's DC and Nyquist bins are real.
            input[0].im = 0.0;
            if let Some(last) = input.last_mut() {
                last.im = 0.0;
            }
            let _ = self.inverse.process(&mut input, &mut frame);
            let start = t * self.hop;
            for i in 0..self.n_fft {
                let w = self.window[i];
                out[start + i] += frame[i] / self.n_fft as f32 * w;
                norm[start + i] += w * w;
            }
        }
        (0..len)
            .map(|i| {
                let n = norm[pad + i];
                if n > 1e-8 {
                    out[pad + i] / n
                } else {
                    0.0
                }
            })
            .collect()
    }
}

fn reflect_pad(x: &[f32], pad: usize) -> Vec<f32> {
    let n = x.len();
    let at = |i: isize| -> f32 {
        if n < 2 {
            return x.first().copied().unwrap_or(0.0);
        }
        let period = 2 * (n as isize - 1);
        let mut j = i.rem_euclid(period);
        if j >= n as isize {
            j = period - j;
        }
        x[j as usize]
    };
    (-(pad as isize)..(n + pad) as isize).map(at).collect()
}

/// Slaney's mel scale (librosa's default): linear below 1 kHz, log above.
fn hz_to_mel(f: f32) -> f32 {
    let (f_sp, min_log_hz) = (200.0 / 3.0, 1000.0);
    let min_log_mel = min_log_hz / f_sp;
    let step = 6.4f32.ln() / 27.0;
    if f >= min_log_hz {
        min_log_mel + (f / min_log_hz).ln() / step
    } else {
        f / f_sp
    }
}

fn mel_to_hz(m: f32) -> f32 {
    let (f_sp, min_log_hz) = (200.0 / 3.0, 1000.0);
    let min_log_mel = min_log_hz / f_sp;
    let step = 6.4f32.ln() / 27.0;
    if m >= min_log_mel {
        min_log_hz * (step * (m - min_log_mel)).exp()
    } else {
        f_sp * m
    }
}

/// `n_mels` triangular filters over `bins` STFT bins, area-normalised
/// (Slaney), as rows of `bins` weights.
pub fn mel_filters(
    sample_rate: u32,
    n_fft: usize,
    n_mels: usize,
    fmin: f32,
    fmax: f32,
) -> Vec<Vec<f32>> {
    let bins = n_fft / 2 + 1;
    let freqs: Vec<f32> = (0..bins)
        .map(|k| k as f32 * sample_rate as f32 / n_fft as f32)
        .collect();
    let (lo, hi) = (hz_to_mel(fmin), hz_to_mel(fmax));
    let points: Vec<f32> = (0..n_mels + 2)
        .map(|i| mel_to_hz(lo + (hi - lo) * i as f32 / (n_mels + 1) as f32))
        .collect();
    (0..n_mels)
        .map(|m| {
            let (left, centre, right) = (points[m], points[m + 1], points[m + 2]);
            let norm = 2.0 / (right - left);
            freqs
                .iter()
                .map(|&f| {
                    let up = (f - left) / (centre - left);
                    let down = (right - f) / (right - centre);
                    up.min(down).max(0.0) * norm
                })
                .collect()
        })
        .collect()
}

/// Recovers a signal of `len` samples whose STFT magnitudes are `magnitude`
/// (`frames x bins`), starting from seeded random phases.
pub fn griffin_lim(
    stft: &Stft,
    magnitude: &[Vec<f32>],
    len: usize,
    iterations: usize,
    seed: u64,
) -> Vec<f32> {
    const MOMENTUM: f32 = 0.99;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut angles: Spectrum = magnitude
        .iter()
        .map(|row| {
            row.iter()
                .map(|_| {
                    let a = 2.0 * PI * (rng.next_u32() as f32 / u32::MAX as f32);
                    Complex32::new(a.cos(), a.sin())
                })
                .collect()
        })
        .collect();
    let with_magnitude = |angles: &Spectrum| -> Spectrum {
        magnitude
            .iter()
            .zip(angles)
            .map(|(m, a)| m.iter().zip(a).map(|(&m, &a)| a * m).collect())
            .collect()
    };
    let mut previous: Option<Spectrum> = None;
    for _ in 0..iterations {
        let rebuilt = stft.forward(&stft.inverse(&with_magnitude(&angles), len));
        for (t, row) in rebuilt.iter().enumerate() {
            for (k, &c) in row.iter().enumerate() {
                let accelerated = match &previous {
                    Some(p) => c + (c - p[t][k]) * MOMENTUM,
                    None => c,
                };
                let norm = accelerated.norm();
                angles[t][k] = if norm > 1e-16 {
                    accelerated / norm
                } else {
                    Complex32::new(1.0, 0.0)
                };
            }
        }
        previous = Some(rebuilt);
    }
    stft.inverse(&with_magnitude(&angles), len)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn tone(len: usize) -> Vec<f32> {
        (0..len)
            .map(|i| {
                let t = i as f32 / 16_000.0;
                0.5 * (2.0 * PI * 220.0 * t).sin() + 0.25 * (2.0 * PI * 660.0 * t).sin()
            })
            .collect()
    }

    #[test]
    fn the_inverse_stft_gives_the_signal_back() {
        let stft = Stft::new(1024, 256);
        let x = tone(8000);
        let spec = stft.forward(&x);
        assert_eq!((spec.len(), spec[0].len()), (1 + 8000 / 256, 513));
        let back = stft.inverse(&spec, x.len());
        let err = x
            .iter()
            .zip(&back)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(err < 1e-4, "{err}");
    }

    #[test]
    fn mel_filters_are_triangles_over_the_range() {
        let f = mel_filters(16_000, 1024, 80, 0.0, 8000.0);
        assert_eq!((f.len(), f[0].len()), (80, 513));
        assert!(
            f.iter().all(|row| row.iter().any(|&w| w > 0.0)),
            "no empty filter"
        );
        assert!((hz_to_mel(mel_to_hz(23.4)) - 23.4).abs() < 1e-3);
        assert!((mel_to_hz(hz_to_mel(1000.0)) - 1000.0).abs() < 1e-2);
    }

    #[test]
    fn griffin_lim_recovers_a_signal_with_the_same_magnitudes() {
        let stft = Stft::new(1024, 256);
        let x = tone(8000);
        let mags: Vec<Vec<f32>> = stft
            .forward(&x)
            .iter()
            .map(|r| r.iter().map(|c| c.norm()).collect())
            .collect();
        let y = griffin_lim(&stft, &mags, x.len(), 32, 1);
        let got: Vec<Vec<f32>> = stft
            .forward(&y)
            .iter()
            .map(|r| r.iter().map(|c| c.norm()).collect())
            .collect();
        // Spectral convergence: how far the magnitudes are, relative.
        let (mut diff, mut total) = (0f32, 0f32);
        for (a, b) in mags.iter().flatten().zip(got.iter().flatten()) {
            diff += (a - b).powi(2);
            total += a * a;
        }
        let sc = (diff / total).sqrt();
        eprintln!("griffin-lim spectral convergence {sc}");
        assert!(sc < 0.12, "spectral convergence {sc}");
    }
}
