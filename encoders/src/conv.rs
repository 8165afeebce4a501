//! Convolutions for the codecs, on [`kernels::sgemm`].
//!
//! candle's CPU convolutions run the `gemm` crate's AVX2 kernels and split
//! grouped convolutions into one call per group (hundreds, for SNAC's
//! depthwise layers); these lower each convolution to one GEMM over an
//! im2col matrix that is never built (the GEMM packs it from the input),
//! run depthwise convolutions as direct per-channel loops, and transposed
//! convolutions as a GEMM followed by col2im.

use candle_core::{Module, Tensor};
use kernels::{sgemm, sgemm_into, MatRef, PackB, NR_PACKED};
use rayon::prelude::*;

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

/// Input and output plane sizes of one convolution call.
#[derive(Debug, Clone, Copy)]
struct Planes {
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    v: Vertical,
}

/// A convolution with its weight `[cout, cin / groups, kh, kw]` on the host.
pub struct Conv {
    shape: ConvShape,
    weight: Vec<f32>,
    bias: Option<Vec<f32>>,
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
    fn one(&self, x: &[f32], g: Planes) -> Vec<f32> {
        let (h, w, oh, ow) = (g.h, g.w, g.oh, g.ow);
        let s = &self.shape;
        let (kh, kw) = s.kernel;
        let mut out = vec![0f32; s.cout * oh * ow];
        if s.groups > 1 {
            self.depthwise(x, g, &mut out);
        } else if (kh, kw, s.stride, s.padding) == (1, 1, 1, 0) {
            // A 1x1 convolution is a plain product: W [cout, cin] x [cin, hw].
            let a = MatRef::row_major(&self.weight, s.cout, s.cin);
            let b = MatRef::row_major(x, s.cin, h * w);
            if let (Some(a), Some(b)) = (a, b) {
                sgemm(a, b, &mut out, false, true);
            }
        } else {
            self.im2col_gemm(x, g, &mut out);
        }
        if let Some(bias) = &self.bias {
            for (plane, &b) in out.chunks_exact_mut(oh * ow).zip(bias) {
                plane.iter_mut().for_each(|v| *v += b);
            }
        }
        out
    }

    fn im2col_gemm(&self, x: &[f32], g: Planes, out: &mut [f32]) {
        let Planes { h, w, oh, ow, v } = g;
        let s = &self.shape;
        let (kh, kw) = s.kernel;
        let Some(weight) = MatRef::row_major(&self.weight, s.cout, s.cin * kh * kw) else {
            return;
        };
        let cols = Im2Col {
            x,
            h,
            w,
            oh,
            ow,
            kh,
            kw,
            shape: s,
            v,
        };
        sgemm_into(weight, &cols, out, oh * ow, false, true);
    }

    /// One filter per channel: direct loops, channels over the thread pool.
    fn depthwise(&self, x: &[f32], g: Planes, out: &mut [f32]) {
        let Planes { h, w, oh, ow, v } = g;
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
        let planes = Planes { h, w, oh, ow, v };
        let out = crate::ops::with_host(x, |data| {
            if b == 1 {
                return self.one(data, planes);
            }
            let mut out = Vec::with_capacity(b * s.cout * oh * ow);
            for item in data.chunks_exact(c * h * w) {
                out.extend(self.one(item, planes));
            }
            out
        })?;
        if one_d {
            Tensor::from_vec(out, (b, s.cout, ow), x.device())
        } else {
            Tensor::from_vec(out, (b, s.cout, oh, ow), x.device())
        }
    }
}

/// The im2col matrix of one input, `[cin * kh * kw, oh * ow]`, packed for
/// the GEMM straight from the input: element `((c, ky, kx), (oy, ox))` is
/// `x[c, oy * stride + ky * dilation - padding, ox * stride + ...]`, zero
/// outside the input.
struct Im2Col<'a> {
    x: &'a [f32],
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    kh: usize,
    kw: usize,
    shape: &'a ConvShape,
    v: Vertical,
}

impl PackB for Im2Col<'_> {
    fn rows(&self) -> usize {
        self.shape.cin * self.kh * self.kw
    }

    fn cols(&self) -> usize {
        self.oh * self.ow
    }

    fn pack(&self, p0: usize, kc: usize, j0: usize, cols: usize, strip: &mut [f32]) {
        let (s, v, w, ow) = (self.shape, self.v, self.w, self.ow);
        for (p, dst) in strip.chunks_exact_mut(NR_PACKED).take(kc).enumerate() {
            let r = p0 + p;
            let (c, ky, kx) = (
                r / (self.kh * self.kw),
                (r / self.kw) % self.kh,
                r % self.kw,
            );
            let shift = (kx * s.dilation) as isize - s.padding as isize;
            // Walk the strip's columns one output row segment at a time.
            let mut j = j0;
            while j < j0 + cols {
                let (oy, ox0) = (j / ow, j % ow);
                let len = (ow - ox0).min(j0 + cols - j);
                let seg = &mut dst[j - j0..j - j0 + len];
                let iy = (oy * v.stride + ky * v.dilation) as isize - v.padding as isize;
                if iy < 0 || iy >= self.h as isize {
                    seg.fill(0.0);
                } else {
                    let src = &self.x[(c * self.h + iy as usize) * w..][..w];
                    if s.stride == 1 {
                        // Inside the row: one copy; zeros on either side.
                        let first = ox0 as isize + shift;
                        let lo = (-first).clamp(0, len as isize) as usize;
                        let hi = (w as isize - first).clamp(lo as isize, len as isize) as usize;
                        seg[..lo].fill(0.0);
                        if lo < hi {
                            let from = (first + lo as isize) as usize;
                            seg[lo..hi].copy_from_slice(&src[from..from + hi - lo]);
                        }
                        seg[hi..].fill(0.0);
                    } else {
                        for (k, value) in seg.iter_mut().enumerate() {
                            let ix = ((ox0 + k) * s.stride) as isize + shift;
                            *value = if ix >= 0 && ix < w as isize {
                                src[ix as usize]
                            } else {
                                0.0
                            };
                        }
                    }
                }
                j += len;
            }
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
            // Long enough that strips start past the input's right edge.
            let x = tensor(&[1, cin, 300], 4);
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
