//! Causal grouped-query attention as one differentiable op.
//!
//! Built from candle's ops, attention copied each key/value head once per
//! query head it serves, moved heads ahead of positions (a copy each way),
//! and kept the scores, the weights and their gradients as graph tensors
//! `[batch, heads, len, len]`, each gradient a zeroed tensor plus an add.
//! Here each head's scores live in one reused buffer, the products read
//! the heads in place from `[batch, len, heads, dim]`, and the backward
//! pass recomputes the weights (a `len x len x dim` product) instead of
//! keeping them.

use candle_core::{bail, CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use kernels::{sgemm_into, MatRef};

use super::{softmax_grad_row, values};

/// `softmax(scale * q k^T, causal) v` for q `[batch, len, heads, dim]` and
/// k, v `[batch, len, kv_heads, dim]` (query head `h` reads key/value
/// head `h / (heads / kv_heads)`), as `[batch, len, heads * dim]`.
pub fn causal_attention(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64) -> Result<Tensor> {
    q.contiguous()?.apply_op3(
        &k.contiguous()?,
        &v.contiguous()?,
        Attention {
            scale: scale as f32,
        },
    )
}

struct Attention {
    scale: f32,
}

#[derive(Debug, Clone, Copy)]
struct Dims {
    batch: usize,
    len: usize,
    heads: usize,
    kv_heads: usize,
    dim: usize,
}

impl Dims {
    fn of(q: &Layout, k: &Layout, v: &Layout, op: &str) -> Result<Dims> {
        match (q.shape().dims(), k.shape().dims()) {
            (&[batch, len, heads, dim], &[kb, kl, kv_heads, kd])
                if k.shape() == v.shape()
                    && (kb, kl, kd) == (batch, len, dim)
                    && kv_heads > 0
                    && heads.is_multiple_of(kv_heads) =>
            {
                Ok(Dims {
                    batch,
                    len,
                    heads,
                    kv_heads,
                    dim,
                })
            }
            _ => bail!(
                "{op}: q {:?}, k {:?}, v {:?} are not [batch, len, heads, dim] with shared key/value heads",
                q.shape(),
                k.shape(),
                v.shape()
            ),
        }
    }

    /// Offset of head `head` of `heads` at batch `b`, position 0.
    fn at(&self, b: usize, head: usize, heads: usize) -> usize {
        (b * self.len * heads + head) * self.dim
    }

    /// Head `head` of `data` `[batch, len, heads, dim]` as `[len, dim]`.
    fn head<'a>(&self, data: &'a [f32], b: usize, head: usize, heads: usize) -> Result<MatRef<'a>> {
        let view = MatRef::new(
            &data[self.at(b, head, heads)..],
            self.len,
            self.dim,
            heads * self.dim,
            1,
        );
        view.ok_or_else(|| candle_core::Error::Msg("attention: a head outside its tensor".into()))
    }

    /// The same head transposed, `[dim, len]`.
    fn head_t<'a>(
        &self,
        data: &'a [f32],
        b: usize,
        head: usize,
        heads: usize,
    ) -> Result<MatRef<'a>> {
        let view = MatRef::new(
            &data[self.at(b, head, heads)..],
            self.dim,
            self.len,
            1,
            heads * self.dim,
        );
        view.ok_or_else(|| candle_core::Error::Msg("attention: a head outside its tensor".into()))
    }
}

/// The shapes and values of (q, k, v), as both ops of this file take them.
fn inputs<'a>(
    [(s1, l1), (s2, l2), (s3, l3)]: [(&'a CpuStorage, &Layout); 3],
    op: &str,
) -> Result<(Dims, [&'a [f32]; 3])> {
    let d = Dims::of(l1, l2, l3, op)?;
    Ok((
        d,
        [
            values(s1, l1, op)?,
            values(s2, l2, op)?,
            values(s3, l3, op)?,
        ],
    ))
}

/// A `[len, len]` buffer as a row-major or a transposed view.
fn square(data: &[f32], len: usize, transposed: bool) -> Result<MatRef<'_>> {
    let view = if transposed {
        MatRef::transposed(data, len, len)
    } else {
        MatRef::row_major(data, len, len)
    };
    view.ok_or_else(|| candle_core::Error::Msg("attention: the score buffer is short".into()))
}

/// The causal softmax weights of query head `h` at batch `b` into `p`.
fn weights(
    d: &Dims,
    q: &[f32],
    k: &[f32],
    b: usize,
    h: usize,
    scale: f32,
    p: &mut [f32],
) -> Result<()> {
    let kh = h / (d.heads / d.kv_heads);
    let (qh, kt) = (d.head(q, b, h, d.heads)?, d.head_t(k, b, kh, d.kv_heads)?);
    sgemm_into(qh, &kt, p, d.len, false, false);
    for (i, row) in p.chunks_exact_mut(d.len).enumerate() {
        let (seen, unseen) = row.split_at_mut(i + 1);
        seen.iter_mut().for_each(|s| *s *= scale);
        kernels::activation::softmax(seen);
        unseen.fill(0.0);
    }
    Ok(())
}

impl CustomOp3 for Attention {
    fn name(&self) -> &'static str {
        "causal-attention"
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
        let (d, [q, k, v]) = inputs([(s1, l1), (s2, l2), (s3, l3)], self.name())?;
        let mut out = vec![0f32; q.len()];
        let mut p = vec![0f32; d.len * d.len];
        let ldc = d.heads * d.dim;
        for b in 0..d.batch {
            for h in 0..d.heads {
                weights(&d, q, k, b, h, self.scale, &mut p)?;
                let kh = h / (d.heads / d.kv_heads);
                let vh = d.head(v, b, kh, d.kv_heads)?;
                let o = &mut out[d.at(b, h, d.heads)..];
                sgemm_into(square(&p, d.len, false)?, &vh, o, ldc, false, false);
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((d.batch, d.len, ldc))))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let backward = AttentionGrad {
            scale: self.scale,
            grad: grad.flatten_all()?.to_vec1::<f32>()?,
        };
        let all = q.apply_op3_no_bwd(k, v, &backward)?;
        let (nq, nk) = (q.elem_count(), k.elem_count());
        let d_q = all.narrow(0, 0, nq)?.reshape(q.shape())?;
        let d_k = all.narrow(0, nq, nk)?.reshape(k.shape())?;
        let d_v = all.narrow(0, nq + nk, nk)?.reshape(v.shape())?;
        Ok((Some(d_q), Some(d_k), Some(d_v)))
    }
}

/// The gradients of q, k and v, end to end in one vector, from (q, k, v)
/// and the output's gradient.
struct AttentionGrad {
    scale: f32,
    grad: Vec<f32>,
}

impl CustomOp3 for AttentionGrad {
    fn name(&self) -> &'static str {
        "causal-attention-grad"
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
        let (d, [q, k, v]) = inputs([(s1, l1), (s2, l2), (s3, l3)], self.name())?;
        let dy = &self.grad;
        if dy.len() != q.len() {
            bail!(
                "{}: {} gradient values for {} outputs",
                self.name(),
                dy.len(),
                q.len()
            );
        }
        let mut all = vec![0f32; q.len() + 2 * k.len()];
        let (d_q, rest) = all.split_at_mut(q.len());
        let (d_k, d_v) = rest.split_at_mut(k.len());
        let (mut p, mut dp) = (vec![0f32; d.len * d.len], vec![0f32; d.len * d.len]);
        let (q_ldc, kv_ldc) = (d.heads * d.dim, d.kv_heads * d.dim);
        for b in 0..d.batch {
            for h in 0..d.heads {
                let kh = h / (d.heads / d.kv_heads);
                weights(&d, q, k, b, h, self.scale, &mut p)?;
                let dyh = d.head(dy, b, h, d.heads)?;
                // dV += P^T dO.
                let dvh = &mut d_v[d.at(b, kh, d.kv_heads)..];
                sgemm_into(square(&p, d.len, true)?, &dyh, dvh, kv_ldc, true, false);
                // dP = dO V^T, then dS = scale P (dP - rowsum(P dP)).
                let vt = d.head_t(v, b, kh, d.kv_heads)?;
                sgemm_into(dyh, &vt, &mut dp, d.len, false, false);
                for (pr, dr) in p.chunks_exact(d.len).zip(dp.chunks_exact_mut(d.len)) {
                    softmax_grad_row(pr, dr, self.scale);
                }
                // dQ = dS K; dK += dS^T Q.
                let kh_view = d.head(k, b, kh, d.kv_heads)?;
                let dqh = &mut d_q[d.at(b, h, d.heads)..];
                sgemm_into(
                    square(&dp, d.len, false)?,
                    &kh_view,
                    dqh,
                    q_ldc,
                    false,
                    false,
                );
                let qh = d.head(q, b, h, d.heads)?;
                let dkh = &mut d_k[d.at(b, kh, d.kv_heads)..];
                sgemm_into(square(&dp, d.len, true)?, &qh, dkh, kv_ldc, true, false);
            }
        }
        let n = all.len();
        Ok((CpuStorage::F32(all), Shape::from(n)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use candle_core::{Device, Var, D};

    use super::*;
    use crate::fused::tests::{agree, var};

    /// Attention from candle's ops, as the model computed it before: heads
    /// moved ahead, key/value heads repeated, a masked softmax.
    fn composed(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64) -> Tensor {
        let (b, t, nh, hd) = q.dims4().unwrap();
        let nkv = k.dim(2).unwrap();
        let repeat = |x: &Tensor| {
            x.transpose(1, 2)
                .unwrap()
                .unsqueeze(2)
                .unwrap()
                .expand((b, nkv, nh / nkv, t, hd))
                .unwrap()
                .reshape((b, nh, t, hd))
                .unwrap()
        };
        let (k, v) = (repeat(k), repeat(v));
        let q = q.transpose(1, 2).unwrap().contiguous().unwrap();
        let mask: Vec<f32> = (0..t)
            .flat_map(|i| (0..t).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
            .collect();
        let mask = Tensor::from_vec(mask, (t, t), &Device::Cpu).unwrap();
        let scores = (q.matmul(&k.t().unwrap().contiguous().unwrap()).unwrap() * scale)
            .unwrap()
            .broadcast_add(&mask)
            .unwrap();
        let weights = candle_nn::ops::softmax(&scores, D::Minus1).unwrap();
        weights
            .matmul(&v)
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .reshape((b, t, nh * hd))
            .unwrap()
    }

    #[test]
    fn causal_attention_matches_the_composed_ops_with_grouped_heads() {
        for (heads, kv_heads) in [(4, 2), (2, 2), (3, 1)] {
            let q: Var = var(&[2, 11, heads, 6], 1);
            let (k, v) = (var(&[2, 11, kv_heads, 6], 2), var(&[2, 11, kv_heads, 6], 3));
            agree(
                &[&q, &k, &v],
                |a| causal_attention(&a[0], &a[1], &a[2], 0.4).unwrap(),
                |a| composed(&a[0], &a[1], &a[2], 0.4),
                1e-4,
            );
        }
    }

    #[test]
    fn shapes_that_do_not_fit_are_errors() {
        let q = var(&[1, 4, 3, 8], 1).as_tensor().clone();
        let k = var(&[1, 4, 2, 8], 2).as_tensor().clone();
        let e = causal_attention(&q, &k, &k, 1.0).unwrap_err().to_string();
        assert!(e.contains("not [batch, len, heads, dim]"), "{e}");
    }
}
