//! Convolutions for the codecs, on [`kernels::sgemm`].
//!
//! candle's CPU convolutions run the `gemm` crate's AVX2 kernels and split
//! grouped convolutions into one call per group (hundreds, for SNAC's
//! depthwise layers); these lower each convolution to one GEMM over an
//! im2col buffer built a band of output rows at a time (bounded memory),
//! run depthwise convolutions as direct per-channel loops, and transposed
//! convolutions as a GEMM followed by col2im.

use candle_core::{Module, Tensor};
use kernels::{sgemm, sgemm_into, MatRef};
use rayon::prelude::*;

/// Largest im2col band, in floats (16 MiB): bounds memory, and keeps the
/// band in the last-level cache.
const BAND_FLOATS: usize = 4 << 20;

thread_local! {
    /// The im2col band, kept between calls: a fresh 16 MiB buffer per
    /// convolution costs page faults.
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Shape of a convolution over `[batch, channels, (height,) width]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvShape {
    pub cin: usize,
    pub cout: usize,
    /// `(height, width)`; 1-D convolutions have height 1.
    pub kernel: (usize, usize),
    pub stride: usize,
    pub padding: usize,
    pub dilation: usize,
    pub groups: usize,
}

/// Stride, padding and dilation along the height: the shape's for 2-D
/// inputs, none for 1-D ones (height 1).
#[derive(Debug, Clone, Copy)]
struct Vertical {
    stride: usize,
    padding: usize,
    dilation: usize,
}

/// A convolution with its weight `[cout, cin / groups, kh, kw]` on the host.
pub struct Conv {
    shape: ConvShape,
    weight: Vec<f32>,
    bias: Option<Vec<f32>>,
    /// im2col band size in floats ([`BAND_FLOATS`]; tests make it small).
    band_floats: usize,
}

fn host(t: &Tensor) -> candle_core::Result<Vec<f32>> {
    t.flatten_all()?.to_vec1::<f32>()
}

impl Conv {
    /// `weight` is `[cout, cin / groups, kh, kw]` (or `[cout, cin / groups, k]`).
    pub fn new(
        weight: &Tensor,
        bias: Option<&Tensor>,
        shape: ConvShape,
    ) -> candle_core::Result<Conv> {
        let (kh, kw) = shape.kernel;
        let groups = shape.groups.max(1);
        let depthwise = groups > 1 && groups == shape.cin && shape.cin == shape.cout;
        if groups > 1 && !depthwise {
            candle_core::bail!("grouped convolutions other than depthwise are not supported");
        }
        if weight.elem_count() != shape.cout * (shape.cin / groups) * kh * kw {
            candle_core::bail!(
                "convolution weight {:?} does not match {shape:?}",
                weight.dims()
            );
        }
        Ok(Conv {
            shape: ConvShape { groups, ..shape },
            weight: host(weight)?,
            bias: bias.map(host).transpose()?,
            band_floats: BAND_FLOATS,
        })
    }

    fn out_size(&self, size: usize, k: usize) -> candle_core::Result<usize> {
        let s = &self.shape;
        let span = s.dilation * (k - 1) + 1;
        let padded = size + 2 * s.padding;
        if padded < span {
            candle_core::bail!("input of {size} is shorter than the kernel span {span}");
        }
        Ok((padded - span) / s.stride + 1)
    }

    /// One batch item: `x` `[cin, h, w]` to `[cout, oh, ow]`.
    fn one(&self, x: &[f32], h: usize, w: usize, oh: usize, ow: usize, v: Vertical) -> Vec<f32> {
        let s = &self.shape;
        let (kh, kw) = s.kernel;
        let mut out = vec![0f32; s.cout * oh * ow];
        if s.groups > 1 {
            self.depthwise(x, h, w, oh, ow, v, &mut out);
        } else if (kh, kw, s.stride, s.padding) == (1, 1, 1, 0) {
            // A 1x1 convolution is a plain product: W [cout, cin] x [cin, hw].
            let a = MatRef::row_major(&self.weight, s.cout, s.cin);
            let b = MatRef::row_major(x, s.cin, h * w);
            if let (Some(a), Some(b)) = (a, b) {
                sgemm(a, b, &mut out, false, true);
            }
        } else {
            self.im2col_gemm(x, h, w, oh, ow, v, &mut out);
        }
        if let Some(bias) = &self.bias {
            for (plane, &b) in out.chunks_exact_mut(oh * ow).zip(bias) {
                plane.iter_mut().for_each(|v| *v += b);
            }
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn im2col_gemm(
        &self,
        x: &[f32],
        h: usize,
        w: usize,
        oh: usize,
        ow: usize,
        v: Vertical,
        out: &mut [f32],
    ) {
        let s = &self.shape;
        let (kh, kw) = s.kernel;
        let rows = s.cin * kh * kw;
        let band = (self.band_floats / (rows * ow).max(1)).clamp(1, oh);
        let Some(weight) = MatRef::row_major(&self.weight, s.cout, rows) else {
            return;
        };
        SCRATCH.with_borrow_mut(|col| {
            col.resize(rows * band * ow, 0.0);
            for y0 in (0..oh).step_by(band) {
                let n_rows = band.min(oh - y0);
                let cols = n_rows * ow;
                // col[(c, ky, kx), (oy, ox)] = x[c, oy*stride + ky*dil - pad, ...]
                col[..rows * cols]
                    .par_chunks_mut(cols)
                    .enumerate()
                    .for_each(|(r, dst)| {
                        let (c, ky, kx) = (r / (kh * kw), (r / kw) % kh, r % kw);
                        for (oy, line) in dst.chunks_exact_mut(ow).enumerate() {
                            let iy = ((y0 + oy) * v.stride + ky * v.dilation) as isize
                                - v.padding as isize;
                            if iy < 0 || iy >= h as isize {
                                line.fill(0.0);
                                continue;
                            }
                            let src = &x[c * h * w + iy as usize * w..][..w];
                            let shift = (kx * s.dilation) as isize - s.padding as isize;
                            if s.stride == 1 {
                                // One copy for the columns inside the row, zeros around it.
                                let lo = (-shift).clamp(0, ow as isize) as usize;
                                let hi =
                                    (w as isize - shift).clamp(lo as isize, ow as isize) as usize;
                                line[..lo].fill(0.0);
                                let from = (lo as isize + shift) as usize;
                                line[lo..hi].copy_from_slice(&src[from..from + hi - lo]);
                                line[hi..].fill(0.0);
                            } else {
                                for (ox, v) in line.iter_mut().enumerate() {
                                    let ix = (ox * s.stride) as isize + shift;
                                    *v = if ix < 0 || ix >= w as isize {
                                        0.0
                                    } else {
                                        src[ix as usize]
                                    };
                                }
                            }
                        }
                    });
                if let Some(b) = MatRef::row_major(&col[..rows * cols], rows, cols) {
                    // Straight into the band's columns of every output plane.
                    sgemm_into(weight, b, &mut out[y0 * ow..], oh * ow, false, true);
                }
            }
        });
    }

    /// One filter per channel: direct loops, channels over the thread pool.
    #[allow(clippy::too_many_arguments)]
    fn depthwise(
        &self,
        x: &[f32],
        h: usize,
        w: usize,
        oh: usize,
        ow: usize,
        v: Vertical,
        out: &mut [f32],
    ) {
        let s = &self.shape;
        let (kh, kw) = s.kernel;
        out.par_chunks_mut(oh * ow)
            .enumerate()
            .for_each(|(c, plane)| {
                let filter = &self.weight[c * kh * kw..][..kh * kw];
                let input = &x[c * h * w..][..h * w];
                for (oy, line) in plane.chunks_exact_mut(ow).enumerate() {
                    for ky in 0..kh {
                        let iy = (oy * v.stride + ky * v.dilation) as isize - v.padding as isize;
                        if iy < 0 || iy >= h as isize {
                            continue;
                        }
                        let src = &input[iy as usize * w..][..w];
                        for kx in 0..kw {
                            let f = filter[ky * kw + kx];
                            let shift = (kx * s.dilation) as isize - s.padding as isize;
                            if s.stride == 1 {
                                // Output columns whose input column is inside the row.
                                let lo = (-shift).max(0) as usize;
                                let hi = ((w as isize - shift).min(ow as isize)).max(0) as usize;
                                if lo < hi {
                                    let from = (lo as isize + shift) as usize;
                                    for (o, &v) in line[lo..hi].iter_mut().zip(&src[from..]) {
                                        *o += f * v;
                                    }
                                }
                            } else {
                                for (ox, o) in line.iter_mut().enumerate() {
                                    let ix = (ox * s.stride) as isize + shift;
                                    if ix >= 0 && ix < w as isize {
                                        *o += f * src[ix as usize];
                                    }
                                }
                            }
                        }
                    }
                }
            });
    }
}

impl Module for Conv {
    /// `[b, cin, l]` or `[b, cin, h, w]`.
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let s = &self.shape;
        let (b, c, h, w, one_d) = match x.dims() {
            &[b, c, l] => (b, c, 1, l, true),
            &[b, c, h, w] => (b, c, h, w, false),
            other => candle_core::bail!("convolution input must be 3-D or 4-D, got {other:?}"),
        };
        if c != s.cin {
            candle_core::bail!("convolution expects {} channels, got {c}", s.cin);
        }
        let (kh, kw) = s.kernel;
        let oh = if one_d { 1 } else { self.out_size(h, kh)? };
        let ow = self.out_size(w, kw)?;
        let v = if one_d {
            Vertical {
                stride: 1,
                padding: 0,
                dilation: 1,
            }
        } else {
            Vertical {
                stride: s.stride,
                padding: s.padding,
                dilation: s.dilation,
            }
        };
        let data = host(x)?;
        let mut out = Vec::with_capacity(b * s.cout * oh * ow);
        for item in data.chunks_exact(c * h * w) {
            out.extend(self.one(item, h, w, oh, ow, v));
        }
        if one_d {
            Tensor::from_vec(out, (b, s.cout, ow), x.device())
        } else {
            Tensor::from_vec(out, (b, s.cout, oh, ow), x.device())
        }
    }
}

/// A 1-D transposed convolution (groups 1, dilation 1), weight
/// `[cin, cout, k]`: a GEMM to per-tap columns, then col2im.
pub struct ConvTranspose1d {
    cin: usize,
    cout: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    output_padding: usize,
    weight: Vec<f32>,
    bias: Option<Vec<f32>>,
}

impl ConvTranspose1d {
    pub fn new(
        weight: &Tensor,
        bias: Option<&Tensor>,
        stride: usize,
        padding: usize,
        output_padding: usize,
    ) -> candle_core::Result<ConvTranspose1d> {
        let (cin, cout, kernel) = weight.dims3()?;
        Ok(ConvTranspose1d {
            cin,
            cout,
            kernel,
            stride,
            padding,
            output_padding,
            weight: host(weight)?,
            bias: bias.map(host).transpose()?,
        })
    }
}

impl Module for ConvTranspose1d {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (b, c, l) = x.dims3()?;
        if c != self.cin {
            candle_core::bail!(
                "transposed convolution expects {} channels, got {c}",
                self.cin
            );
        }
        let (k, s) = (self.kernel, self.stride);
        let full = (l - 1) * s + k + self.output_padding;
        if full < 2 * self.padding + 1 {
            candle_core::bail!("transposed convolution output would be empty");
        }
        let out_len = full - 2 * self.padding;
        let data = host(x)?;
        let rows = self.cout * k;
        // columns[(co, tap), t] = sum_ci W[ci, co, tap] x[ci, t]
        let (Some(a), true) = (
            MatRef::transposed(&self.weight, rows, self.cin),
            data.len() == b * c * l,
        ) else {
            candle_core::bail!("transposed convolution buffers do not match");
        };
        let mut out = vec![0f32; b * self.cout * out_len];
        let mut columns = vec![0f32; rows * l];
        for (item, dst) in data
            .chunks_exact(c * l)
            .zip(out.chunks_exact_mut(self.cout * out_len))
        {
            let Some(xm) = MatRef::row_major(item, c, l) else {
                candle_core::bail!("transposed convolution input does not match");
            };
            sgemm(a, xm, &mut columns, false, true);
            dst.par_chunks_mut(out_len)
                .enumerate()
                .for_each(|(co, line)| {
                    if let Some(bias) = &self.bias {
                        line.fill(bias[co]);
                    }
                    for tap in 0..k {
                        let src = &columns[(co * k + tap) * l..][..l];
                        for (t, &v) in src.iter().enumerate() {
                            let pos = t * s + tap;
                            if pos >= self.padding && pos - self.padding < out_len {
                                line[pos - self.padding] += v;
                            }
                        }
                    }
                });
        }
        Tensor::from_vec(out, (b, self.cout, out_len), x.device())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn tensor(shape: &[usize], seed: usize) -> Tensor {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|i| ((i * 7919 + seed * 31) % 997) as f32 / 997.0 - 0.5)
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    fn close(a: &Tensor, b: &Tensor, case: &str) {
        assert_eq!(a.dims(), b.dims(), "{case}");
        let d = (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap();
        let d = d.to_scalar::<f32>().unwrap();
        assert!(d < 1e-4, "{case}: max difference {d}");
    }

    /// Against candle's own convolutions, which are slower but independent.
    #[test]
    fn matches_candle_for_every_shape_the_codecs_use() {
        for (cin, cout, k, stride, padding, dilation, groups, hw) in [
            (3, 32, 3, 1, 1, 1, 1, (9, 11)),
            (32, 32, 3, 2, 0, 1, 1, (10, 10)),
            (32, 64, 1, 1, 0, 1, 1, (5, 7)),
        ] {
            let x = tensor(&[2, cin, hw.0, hw.1], 1);
            let w = tensor(&[cout, cin / groups, k, k], 2);
            let bias = tensor(&[cout], 3);
            let shape = ConvShape {
                cin,
                cout,
                kernel: (k, k),
                stride,
                padding,
                dilation,
                groups,
            };
            let ours = Conv::new(&w, Some(&bias), shape)
                .unwrap()
                .forward(&x)
                .unwrap();
            let theirs = x
                .conv2d(&w, padding, stride, dilation, groups)
                .unwrap()
                .broadcast_add(&bias.reshape((1, cout, 1, 1)).unwrap())
                .unwrap();
            close(&ours, &theirs, &format!("{shape:?}"));
        }
        for (cin, cout, k, stride, padding, dilation, groups) in [
            (1, 16, 7, 1, 3, 1, 1),
            (16, 16, 7, 1, 9, 3, 16),
            (16, 16, 7, 1, 27, 9, 1),
            (8, 16, 6, 3, 2, 1, 1),
            (16, 16, 1, 1, 0, 1, 1),
        ] {
            let x = tensor(&[1, cin, 60], 4);
            let w = tensor(&[cout, cin / groups, k], 5);
            let shape = ConvShape {
                cin,
                cout,
                kernel: (1, k),
                stride,
                padding,
                dilation,
                groups,
            };
            let ours = Conv::new(&w, None, shape).unwrap().forward(&x).unwrap();
            let theirs = x.conv1d(&w, padding, stride, dilation, groups).unwrap();
            close(&ours, &theirs, &format!("{shape:?}"));
        }
        for (stride, padding, output_padding) in [(2, 1, 0), (3, 2, 1), (8, 4, 0)] {
            let x = tensor(&[1, 16, 13], 6);
            let w = tensor(&[16, 8, 2 * stride], 7);
            let bias = tensor(&[8], 8);
            let ours = ConvTranspose1d::new(&w, Some(&bias), stride, padding, output_padding)
                .unwrap()
                .forward(&x)
                .unwrap();
            let theirs = x
                .conv_transpose1d(&w, padding, output_padding, stride, 1, 1)
                .unwrap()
                .broadcast_add(&bias.reshape((1, 8, 1)).unwrap())
                .unwrap();
            close(
                &ours,
                &theirs,
                &format!("transposed {stride} {padding} {output_padding}"),
            );
        }
    }
}
