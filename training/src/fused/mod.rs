//! Fused differentiable ops for the training model.
//!
//! candle builds a SwiGLU, an RMS norm, attention or a log-softmax
//! from 4 to 12 elementwise passes, each allocating its output; backward,
//! each pass adds a zeroed gradient and a few more passes. A training step
//! spent more time in those passes than in its matrix products. Each op
//! here is one pass forward and one per input backward, with the
//! vectorised `exp` of `kernels::activation`.

use std::sync::Arc;

use candle_core::{
    bail, CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor,
};
use kernels::{activation, MatRef};

mod attention;
pub use attention::causal_attention;

/// The f32 values of a contiguous tensor's storage.
fn values<'a>(storage: &'a CpuStorage, layout: &Layout, op: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        bail!("{op}: only f32 tensors")
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        bail!("{op}: the input must be contiguous")
    };
    Ok(&data[start..end])
}

fn same_shape(a: &Layout, b: &Layout, op: &str) -> Result<()> {
    if a.shape() != b.shape() {
        bail!("{op}: shapes {:?} and {:?} differ", a.shape(), b.shape());
    }
    Ok(())
}

/// `x W^T` for `x` `[.., in]` and a weight `[out, in]`, on the kernels'
/// GEMM: candle's runs AVX2 tiles on every CPU and needs the transposed
/// weight as a strided view, the kernels' use AVX-512 where there is one.
pub fn linear(x: &Tensor, weight: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op2(&weight.contiguous()?, Linear)
}

struct Linear;

/// `(rows, inputs, outputs)` of `x W^T`.
fn linear_dims(x: &Layout, weight: &Layout, op: &str) -> Result<(usize, usize, usize)> {
    match (x.shape().dims(), weight.shape().dims()) {
        ([.., inputs], [outputs, w_inputs]) if inputs == w_inputs => {
            Ok((x.shape().elem_count() / (*inputs).max(1), *inputs, *outputs))
        }
        (x, w) => bail!("{op}: x {x:?} does not fit the weight {w:?}"),
    }
}

/// A view the GEMM reads; every caller has checked the lengths.
fn view(data: &[f32], rows: usize, cols: usize, transposed: bool) -> Result<MatRef<'_>> {
    let m = if transposed {
        MatRef::transposed(data, rows, cols)
    } else {
        MatRef::row_major(data, rows, cols)
    };
    m.ok_or_else(|| {
        candle_core::Error::Msg(format!("{} values are not [{rows}, {cols}]", data.len()))
    })
}

impl CustomOp2 for Linear {
    fn name(&self) -> &'static str {
        "linear"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (rows, inputs, outputs) = linear_dims(l1, l2, self.name())?;
        let (x, w) = (values(s1, l1, self.name())?, values(s2, l2, self.name())?);
        let mut out = vec![0f32; rows * outputs];
        let (a, b) = (
            view(x, rows, inputs, false)?,
            view(w, inputs, outputs, true)?,
        );
        kernels::sgemm(a, b, &mut out, false, true);
        let mut dims = l1.shape().dims().to_vec();
        if let Some(last) = dims.last_mut() {
            *last = outputs;
        }
        Ok((CpuStorage::F32(out), Shape::from(dims)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let d_x = grad.apply_op2_no_bwd(weight, &LinearGrad::Input)?;
        let d_weight = grad.apply_op2_no_bwd(x, &LinearGrad::Weight)?;
        Ok((Some(d_x.reshape(x.shape())?), Some(d_weight)))
    }
}

/// The gradients of [`linear`]: from (dy `[.., out]`, weight `[out, in]`)
/// `dx = dy W`; from (dy, x `[.., in]`) `dW = dy^T x`.
enum LinearGrad {
    Input,
    Weight,
}

impl CustomOp2 for LinearGrad {
    fn name(&self) -> &'static str {
        "linear-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let dy = values(s1, l1, self.name())?;
        let other = values(s2, l2, self.name())?;
        let outputs = l1.shape().dims().last().copied().unwrap_or(0);
        let rows = dy.len() / outputs.max(1);
        // Each gradient is one product: (A, B, its rows, its columns).
        let (a, b, out_rows, out_cols) = match self {
            LinearGrad::Input => {
                let (w_outputs, inputs) = l2.shape().dims2()?;
                if w_outputs != outputs {
                    bail!(
                        "{}: dy {:?} does not fit the weight {:?}",
                        self.name(),
                        l1.shape(),
                        l2.shape()
                    );
                }
                let a = view(dy, rows, outputs, false)?;
                (a, view(other, outputs, inputs, false)?, rows, inputs)
            }
            LinearGrad::Weight => {
                let inputs = l2.shape().dims().last().copied().unwrap_or(0);
                if other.len() != rows * inputs {
                    bail!(
                        "{}: dy {:?} does not fit x {:?}",
                        self.name(),
                        l1.shape(),
                        l2.shape()
                    );
                }
                let a = view(dy, outputs, rows, true)?;
                (a, view(other, rows, inputs, false)?, outputs, inputs)
            }
        };
        let mut out = vec![0f32; out_rows * out_cols];
        kernels::sgemm(a, b, &mut out, false, true);
        Ok((CpuStorage::F32(out), Shape::from((out_rows, out_cols))))
    }
}

/// `silu(gate) * up`, the SwiGLU of an expert's two projections.
pub fn swiglu(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    gate.contiguous()?.apply_op2(&up.contiguous()?, SwiGlu)
}

struct SwiGlu;

impl CustomOp2 for SwiGlu {
    fn name(&self) -> &'static str {
        "swiglu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        same_shape(l1, l2, self.name())?;
        let (gate, up) = (values(s1, l1, self.name())?, values(s2, l2, self.name())?);
        let mut out = gate.to_vec();
        activation::silu(&mut out);
        out.iter_mut().zip(up).for_each(|(o, u)| *o *= u);
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        gate: &Tensor,
        up: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let d_gate = gate.apply_op3_no_bwd(up, &grad, &SwiGluGrad::Gate)?;
        let d_up = gate.apply_op3_no_bwd(up, &grad, &SwiGluGrad::Up)?;
        Ok((Some(d_gate), Some(d_up)))
    }
}

/// The gradient of [`swiglu`] for one of its inputs, from (gate, up, grad).
enum SwiGluGrad {
    Gate,
    Up,
}

impl CustomOp3 for SwiGluGrad {
    fn name(&self) -> &'static str {
        "swiglu-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        same_shape(l1, l2, self.name())?;
        same_shape(l1, l3, self.name())?;
        let gate = values(s1, l1, self.name())?;
        let up = values(s2, l2, self.name())?;
        let grad = values(s3, l3, self.name())?;
        let mut out = gate.to_vec();
        match self {
            // d/dg silu(g) = s + g s (1 - s), s = sigmoid(g).
            SwiGluGrad::Gate => {
                activation::sigmoid(&mut out);
                for (((o, &g), &u), &dy) in out.iter_mut().zip(gate).zip(up).zip(grad) {
                    let s = *o;
                    *o = dy * u * (s + g * s * (1.0 - s));
                }
            }
            SwiGluGrad::Up => {
                activation::silu(&mut out);
                out.iter_mut().zip(grad).for_each(|(o, dy)| *o *= dy);
            }
        }
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// `x / sqrt(mean(x^2) + eps) * weight` over the last dimension.
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    x.contiguous()?
        .apply_op2(&weight.contiguous()?, RmsNorm { eps: eps as f32 })
}

struct RmsNorm {
    eps: f32,
}

/// `1 / sqrt(mean(row^2) + eps)`.
fn inverse_rms(row: &[f32], eps: f32) -> f32 {
    let squares: f32 = row.iter().map(|v| v * v).sum();
    1.0 / (squares / row.len().max(1) as f32 + eps).sqrt()
}

/// The row length of `x` when `weight` is one row of it.
fn norm_width(x: &Layout, weight: &Layout, op: &str) -> Result<usize> {
    let width = weight.shape().elem_count();
    if x.shape().dims().last() != Some(&width) || weight.shape().rank() != 1 {
        bail!(
            "{op}: weight {:?} is not one row of {:?}",
            weight.shape(),
            x.shape()
        );
    }
    Ok(width)
}

impl CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "rms-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let width = norm_width(l1, l2, self.name())?;
        let (x, weight) = (values(s1, l1, self.name())?, values(s2, l2, self.name())?);
        let mut out = vec![0f32; x.len()];
        for (row, out) in x.chunks_exact(width).zip(out.chunks_exact_mut(width)) {
            activation::rms_norm(row, weight, self.eps, out);
        }
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let d_x = x.apply_op3_no_bwd(weight, &grad, &RmsNormGrad::X { eps: self.eps })?;
        let d_weight = x.apply_op3_no_bwd(weight, &grad, &RmsNormGrad::Weight { eps: self.eps })?;
        Ok((Some(d_x), Some(d_weight)))
    }
}

/// The gradient of [`rms_norm`] for one of its inputs, from (x, weight,
/// grad). With `r = 1 / rms(row)`: `dx = r w dy - x r^3 sum(w dy x) / n`,
/// `dweight = sum over rows of dy x r`.
enum RmsNormGrad {
    X { eps: f32 },
    Weight { eps: f32 },
}

impl CustomOp3 for RmsNormGrad {
    fn name(&self) -> &'static str {
        "rms-norm-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let width = norm_width(l1, l2, self.name())?;
        same_shape(l1, l3, self.name())?;
        let x = values(s1, l1, self.name())?;
        let weight = values(s2, l2, self.name())?;
        let grad = values(s3, l3, self.name())?;
        let rows = x.chunks_exact(width).zip(grad.chunks_exact(width));
        match *self {
            RmsNormGrad::X { eps } => {
                let mut out = vec![0f32; x.len()];
                for ((row, dy), out) in rows.zip(out.chunks_exact_mut(width)) {
                    let r = inverse_rms(row, eps);
                    let dot: f32 = row
                        .iter()
                        .zip(dy)
                        .zip(weight)
                        .map(|((x, d), w)| x * d * w)
                        .sum();
                    let k = r * r * r * dot / width as f32;
                    for (((o, &x), &d), &w) in out.iter_mut().zip(row).zip(dy).zip(weight) {
                        *o = r * w * d - x * k;
                    }
                }
                Ok((CpuStorage::F32(out), l1.shape().clone()))
            }
            RmsNormGrad::Weight { eps } => {
                let mut out = vec![0f32; width];
                for (row, dy) in rows {
                    let r = inverse_rms(row, eps);
                    for ((o, &x), &d) in out.iter_mut().zip(row).zip(dy) {
                        *o += d * x * r;
                    }
                }
                Ok((CpuStorage::F32(out), l2.shape().clone()))
            }
        }
    }
}

/// Rotary embeddings of `x` `[batch, len, heads, head_dim]` (before the
/// heads are moved ahead of the positions) by tables `cos`, `sin`
/// `[len, head_dim]` in the halves layout: `x cos + rotate_half(x) sin`.
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op3(
        &cos.contiguous()?,
        &sin.contiguous()?,
        Rope { inverse: false },
    )
}

/// With `inverse`, the rotation by minus the angle: `rope`'s gradient,
/// since `rotate_half` transposed is minus itself and both halves share
/// their angles.
struct Rope {
    inverse: bool,
}

impl CustomOp3 for Rope {
    fn name(&self) -> &'static str {
        "rope"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        same_shape(l2, l3, self.name())?;
        let (len, heads, dim) = match (l1.shape().dims(), l2.shape().dims()) {
            ([_, len, heads, dim], [t, d]) if t == len && d == dim && dim % 2 == 0 => {
                (*len, *heads, *dim)
            }
            (x, table) => bail!("{}: x {x:?} does not fit the tables {table:?}", self.name()),
        };
        let x = values(s1, l1, self.name())?;
        let (cos, sin) = (values(s2, l2, self.name())?, values(s3, l3, self.name())?);
        let sign = if self.inverse { -1.0 } else { 1.0 };
        let half = dim / 2;
        let mut out = vec![0f32; x.len()];
        for (r, (x, out)) in x
            .chunks_exact(dim)
            .zip(out.chunks_exact_mut(dim))
            .enumerate()
        {
            let p = (r / heads) % len;
            let (cos, sin) = (&cos[p * dim..][..dim], &sin[p * dim..][..dim]);
            for i in 0..half {
                let (a, b) = (x[i], x[i + half]);
                out[i] = a * cos[i] - sign * b * sin[i];
                out[i + half] = b * cos[i + half] + sign * a * sin[i + half];
            }
        }
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let inverse = Rope {
            inverse: !self.inverse,
        };
        let d_x = grad.contiguous()?.apply_op3_no_bwd(cos, sin, &inverse)?;
        Ok((Some(d_x), None, None))
    }
}

/// `scale * p * (dp - sum(p dp))` in place of `dp`: the gradient of a
/// (scaled) softmax row through its output `p` (masked entries have
/// `p = 0`, so their gradient is 0).
fn softmax_grad_row(p: &[f32], dp: &mut [f32], scale: f32) {
    let dot: f32 = p.iter().zip(dp.iter()).map(|(p, d)| p * d).sum();
    for (d, &p) in dp.iter_mut().zip(p) {
        *d = scale * p * (*d - dot);
    }
}

/// `log_softmax(logits)[i, targets[i]]` for logits `[n, vocab]`, as
/// `[n, 1]`: the log-probability of each row's target without the
/// `[n, vocab]` log-softmax (the largest tensor of a training step).
pub fn target_log_probs(logits: &Tensor, targets: &[u32]) -> Result<Tensor> {
    let (n, vocab) = logits.dims2()?;
    if targets.len() != n {
        bail!("target-log-probs: {} targets for {n} rows", targets.len());
    }
    if let Some(t) = targets.iter().find(|&&t| t as usize >= vocab) {
        bail!("target-log-probs: target {t} is outside the vocabulary of {vocab}");
    }
    logits.contiguous()?.apply_op1(TargetLogProbs {
        targets: targets.into(),
    })
}

struct TargetLogProbs {
    targets: Arc<[u32]>,
}

impl CustomOp1 for TargetLogProbs {
    fn name(&self) -> &'static str {
        "target-log-probs"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let logits = values(storage, layout, self.name())?;
        let n = self.targets.len();
        let vocab = logits.len() / n.max(1);
        let out: Vec<f32> = logits
            .chunks_exact(vocab)
            .zip(self.targets.iter())
            .map(|(row, &t)| row[t as usize] - activation::log_sum_exp(row))
            .collect();
        Ok((CpuStorage::F32(out), Shape::from((n, 1))))
    }

    fn bwd(&self, logits: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let grad = grad.contiguous()?;
        let backward = TargetLogProbsGrad {
            targets: self.targets.clone(),
        };
        Ok(Some(logits.apply_op3_no_bwd(res, &grad, &backward)?))
    }
}

/// `dy_i (onehot(targets_i) - softmax(logits_i))`, from (logits, the
/// forward's log-probabilities, dy): `logsumexp = logit[target] - res`,
/// so the softmax needs no second reduction.
struct TargetLogProbsGrad {
    targets: Arc<[u32]>,
}

impl CustomOp3 for TargetLogProbsGrad {
    fn name(&self) -> &'static str {
        "target-log-probs-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        same_shape(l2, l3, self.name())?;
        let logits = values(s1, l1, self.name())?;
        let (picked, dy) = (values(s2, l2, self.name())?, values(s3, l3, self.name())?);
        let vocab = logits.len() / self.targets.len().max(1);
        let mut out = vec![0f32; logits.len()];
        for (i, (row, out)) in logits
            .chunks_exact(vocab)
            .zip(out.chunks_exact_mut(vocab))
            .enumerate()
        {
            let t = self.targets[i] as usize;
            let shift = row[t] - picked[i];
            for (o, &x) in out.iter_mut().zip(row) {
                *o = x - shift;
            }
            activation::exp(out);
            out.iter_mut().for_each(|o| *o *= -dy[i]);
            out[t] += dy[i];
        }
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use candle_core::{Device, Var, D};

    use super::*;
    use crate::testing::max_abs;

    /// A variable `[shape]` of values spread over about [-3, 3].
    pub fn var(shape: &[usize], seed: usize) -> Var {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|i| (((i + seed) * 7919 % 613) as f32 / 613.0 - 0.5) * 6.0)
            .collect();
        Var::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    /// The fused and the composed op agree in value and in the gradient
    /// of every input under a fixed random-looking weighting of the output.
    pub fn agree(
        inputs: &[&Var],
        fused: impl Fn(&[Tensor]) -> Tensor,
        composed: impl Fn(&[Tensor]) -> Tensor,
        tolerance: f32,
    ) {
        let args: Vec<Tensor> = inputs.iter().map(|v| v.as_tensor().clone()).collect();
        let (a, b) = (fused(&args), composed(&args));
        let diff = max_abs(&(&a - &b).unwrap());
        assert!(diff < tolerance, "values differ by {diff}");
        let weighting = var(a.dims(), 5).as_tensor().clone();
        let ga = (&a * &weighting)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let gb = (&b * &weighting)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        for (i, v) in inputs.iter().enumerate() {
            let (x, y) = (ga.get(v).unwrap(), gb.get(v).unwrap());
            let scale = max_abs(y).max(1.0);
            let diff = max_abs(&(x - y).unwrap()) / scale;
            assert!(
                diff < tolerance,
                "input {i}: gradients differ by {diff} (of {scale})"
            );
        }
    }

    #[test]
    fn linear_matches_the_matmul_with_the_transposed_weight() {
        let (x, w) = (var(&[3, 7, 40], 1), var(&[24, 40], 2));
        agree(
            &[&x, &w],
            |a| linear(&a[0], &a[1]).unwrap(),
            |a| a[0].broadcast_matmul(&a[1].t().unwrap()).unwrap(),
            1e-4,
        );
    }

    #[test]
    fn rope_matches_the_composed_rotation() {
        let x = var(&[2, 5, 3, 8], 2);
        let angles: Vec<f32> = (0..5)
            .flat_map(|p| (0..2).flat_map(move |_| (0..4).map(move |i| p as f32 * 0.7f32.powi(i))))
            .collect();
        let angles = Tensor::from_vec(angles, (5, 8), &Device::Cpu).unwrap();
        let (cos, sin) = (angles.cos().unwrap(), angles.sin().unwrap());
        agree(
            &[&x],
            |a| rope(&a[0], &cos, &sin).unwrap(),
            |a| {
                // [b, t, n, d] -> [b, n, t, d], rotated, and back.
                let x = a[0].transpose(1, 2).unwrap();
                let (lo, hi) = (x.narrow(3, 0, 4).unwrap(), x.narrow(3, 4, 4).unwrap());
                let rotated = Tensor::cat(&[&hi.neg().unwrap(), &lo], 3).unwrap();
                (x.broadcast_mul(&cos).unwrap() + rotated.broadcast_mul(&sin).unwrap())
                    .unwrap()
                    .transpose(1, 2)
                    .unwrap()
            },
            1e-5,
        );
    }

    #[test]
    fn swiglu_matches_the_composed_op() {
        let (g, u) = (var(&[5, 37], 1), var(&[5, 37], 2));
        agree(
            &[&g, &u],
            |a| swiglu(&a[0], &a[1]).unwrap(),
            |a| (a[0].silu().unwrap() * &a[1]).unwrap(),
            1e-5,
        );
    }

    #[test]
    fn rms_norm_matches_the_composed_op() {
        let (x, w) = (var(&[2, 3, 4, 24], 3), var(&[24], 4));
        agree(
            &[&x, &w],
            |a| rms_norm(&a[0], &a[1], 1e-6).unwrap(),
            |a| {
                let scale = (a[0].sqr().unwrap().mean_keepdim(D::Minus1).unwrap() + 1e-6)
                    .unwrap()
                    .sqrt()
                    .unwrap();
                a[0].broadcast_div(&scale)
                    .unwrap()
                    .broadcast_mul(&a[1])
                    .unwrap()
            },
            1e-4,
        );
    }

    #[test]
    fn target_log_probs_match_the_gathered_log_softmax() {
        let logits = var(&[6, 53], 7);
        let targets = [0u32, 52, 17, 3, 3, 40];
        let index = Tensor::from_vec(targets.to_vec(), (6, 1), &Device::Cpu).unwrap();
        agree(
            &[&logits],
            |a| target_log_probs(&(&a[0] * 4.0).unwrap(), &targets).unwrap(),
            |a| {
                candle_nn::ops::log_softmax(&(&a[0] * 4.0).unwrap(), D::Minus1)
                    .unwrap()
                    .gather(&index, 1)
                    .unwrap()
            },
            1e-4,
        );
    }

    #[test]
    fn bad_inputs_are_errors_that_name_the_problem() {
        let logits = var(&[2, 5], 1).as_tensor().clone();
        let e = target_log_probs(&logits, &[1, 5]).unwrap_err().to_string();
        assert!(e.contains("target 5 is outside the vocabulary of 5"), "{e}");
        let e = target_log_probs(&logits, &[1]).unwrap_err().to_string();
        assert!(e.contains("1 targets for 2 rows"), "{e}");
        let w = var(&[4], 1).as_tensor().clone();
        let e = rms_norm(&logits, &w, 1e-6).unwrap_err().to_string();
        assert!(e.contains("not one row"), "{e}");
    }
}
