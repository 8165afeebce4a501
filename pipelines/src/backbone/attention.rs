//! Self-attention: grouped-query attention (every family but DeepSeek) and
//! multi-head latent attention (DeepSeek-V2). Keys and values live in a
//! [`LayerCache`] owned by the request, never by the model.

use candle_core::{DType, Module, Tensor, D};
use kernels::{sgemm, MatRef};
use rayon::prelude::*;

use super::config::{AttentionKind, BackboneConfig, LatentAttention, QkNorm};
use super::layers::{Linear, RmsNorm};
use super::rope::RotaryEmbedding;
use crate::error::Result;
use encoders::ops::with_host;
use encoders::weights::Checkpoint;

/// One layer's cached keys and values for one sequence.
#[derive(Debug, Clone, Default)]
pub struct LayerCache {
    /// Standard: keys, a head per key head. Latent: the normalised
    /// compressed latent (one head of `kv_lora_rank`).
    k: Rows,
    /// Standard: values, a head per key head. Latent: the rotated shared
    /// key (one head of `qk_rope_head_dim`).
    v: Rows,
}

/// Rows appended step by step for `heads` heads of `width` floats: head
/// `h`'s rows start at `h * capacity * width`. Each step writes its rows in
/// place, and the room doubles when it runs out; a concatenation per step
/// copied the whole cache every step (quadratic in the sequence's length).
#[derive(Debug, Clone, Default)]
struct Rows {
    heads: usize,
    width: usize,
    len: usize,
    capacity: usize,
    data: Vec<f32>,
}

impl Rows {
    /// Appends `count` rows a head, `new` laid out `[heads][count][width]`.
    fn append(&mut self, new: &[f32], heads: usize, count: usize, width: usize) -> Result<()> {
        if new.len() != heads * count * width
            || (self.len > 0 && (heads, width) != (self.heads, self.width))
        {
            return Err(candle_core::Error::Msg("cache rows of another shape".into()).into());
        }
        (self.heads, self.width) = (heads, width);
        let needed = self.len + count;
        if needed > self.capacity {
            let capacity = needed.max(2 * self.capacity);
            let mut data = vec![0f32; heads * capacity * width];
            for h in 0..heads {
                data[h * capacity * width..][..self.len * width].copy_from_slice(self.head(h));
            }
            (self.data, self.capacity) = (data, capacity);
        }
        for (h, rows) in new.chunks_exact(count * width).enumerate() {
            let at = (h * self.capacity + self.len) * width;
            self.data[at..at + count * width].copy_from_slice(rows);
        }
        self.len = needed;
        Ok(())
    }

    /// Head `h`'s rows so far, `[len][width]`.
    fn head(&self, h: usize) -> &[f32] {
        self.view().head(h)
    }

    fn view(&self) -> Heads<'_> {
        Heads {
            data: &self.data,
            heads: self.heads,
            len: self.len,
            width: self.width,
            stride: self.capacity * self.width,
        }
    }
}

/// Keys or values as attention reads them: head `h`'s `len` rows of
/// `width` floats at `h * stride`.
#[derive(Clone, Copy)]
struct Heads<'a> {
    data: &'a [f32],
    heads: usize,
    len: usize,
    width: usize,
    stride: usize,
}

impl<'a> Heads<'a> {
    fn head(&self, h: usize) -> &'a [f32] {
        &self.data[h * self.stride..][..self.len * self.width]
    }
}

pub enum Attention {
    Standard(StandardAttention),
    Latent(LatentAttentionLayer),
}

pub struct StandardAttention {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    q_norm: Option<RmsNorm>,
    k_norm: Option<RmsNorm>,
    qk_norm: QkNorm,
    clip_qkv: Option<f64>,
    num_heads: usize,
    num_kv_heads: usize,
    head_dim: usize,
    rotary_dim: usize,
    window: Option<usize>,
}

pub struct LatentAttentionLayer {
    q: Linear,
    /// `q_a_proj` and its norm when queries are low-rank.
    q_a: Option<(Linear, RmsNorm)>,
    kv_a: Linear,
    kv_a_norm: RmsNorm,
    kv_b: Linear,
    o: Linear,
    dims: LatentAttention,
    num_heads: usize,
    scale: f64,
}

/// Attention of at least this many multiply-adds per product splits its key
/// heads over the thread pool.
const PARALLEL_ATTENTION: usize = 1 << 18;

/// softmax(q k^T * scale + causal mask) v for queries `[heads, q_len, dim]`
/// and keys and values a head per key head, with queries grouped over
/// shared key/value heads, on the host: queries
/// are at `start..start + q_len`, keys at `0..k_len`, and query `i` sees
/// the keys `j <= start + i` (within `window` of it, when set). Each key
/// head's scores are one GEMM, scaled, masked and normalised row by row
/// in place (candle's scale, mask and softmax ops were a tenth of a
/// prefill), then one GEMM with the values.
fn attend(
    q: &Tensor,
    k: Heads,
    v: Heads,
    scale: f64,
    start: usize,
    window: Option<usize>,
) -> Result<Tensor> {
    let (heads, q_len, dim) = q.dims3()?;
    let (kv_heads, k_len, v_dim) = (k.heads, k.len, v.width);
    if kv_heads == 0
        || heads % kv_heads != 0
        || start + q_len > k_len
        || (v.heads, v.len, k.width) != (kv_heads, k_len, dim)
    {
        return Err(candle_core::Error::Msg(format!(
            "attention shapes: {heads} query heads over {kv_heads} key heads, queries to {} of {k_len} keys",
            start + q_len
        ))
        .into());
    }
    // Each key head serves `group` query heads: their rows, contiguous in
    // `q`, are one `[rows, dim]` block.
    let rows = heads / kv_heads * q_len;
    let scale = scale as f32;
    let mut out = vec![0f32; heads * q_len * v_dim];
    with_host(q, |q| {
        let per_head = |(h, out): (usize, &mut [f32])| {
            let mut scores = vec![0f32; rows * k_len];
            let views = (
                MatRef::row_major(&q[h * rows * dim..], rows, dim),
                MatRef::transposed(k.head(h), dim, k_len),
            );
            if let (Some(qh), Some(kt)) = views {
                sgemm(qh, kt, &mut scores, false, false);
            }
            for (r, row) in scores.chunks_exact_mut(k_len).enumerate() {
                let pos = start + r % q_len;
                let first = window.map_or(0, |w| (pos + 1).saturating_sub(w));
                let (seen, after) = row.split_at_mut(pos + 1);
                after.fill(0.0);
                seen[..first].fill(0.0);
                let seen = &mut seen[first..];
                seen.iter_mut().for_each(|s| *s *= scale);
                kernels::activation::softmax(seen);
            }
            let views = (
                MatRef::row_major(&scores, rows, k_len),
                MatRef::row_major(v.head(h), k_len, v_dim),
            );
            if let (Some(p), Some(vh)) = views {
                sgemm(p, vh, out, false, false);
            }
        };
        // A decode step's few rows are not worth handing to
        // another thread.
        if heads * q_len * k_len * dim >= PARALLEL_ATTENTION {
            out.par_chunks_mut(rows * v_dim)
                .enumerate()
                .for_each(per_head);
        } else {
            out.chunks_mut(rows * v_dim).enumerate().for_each(per_head);
        }
    })?;
    Ok(Tensor::from_vec(out, (heads, q_len, v_dim), q.device())?)
}

impl Attention {
    pub fn load(
        ckpt: &Checkpoint,
        prefix: &str,
        config: &BackboneConfig,
        layer: usize,
    ) -> Result<Attention> {
        let h = config.hidden_size;
        match &config.attention {
            AttentionKind::Standard {
                qkv_bias,
                o_bias,
                qk_norm,
                clip_qkv,
            } => {
                let (nh, nkv, hd) = (config.num_heads, config.num_kv_heads, config.head_dim);
                let (q_norm, k_norm) = match qk_norm {
                    QkNorm::None => (None, None),
                    QkNorm::PerHead => (
                        Some(RmsNorm::load(
                            ckpt,
                            &format!("{prefix}.q_norm"),
                            hd,
                            config.rms_norm_eps,
                        )?),
                        Some(RmsNorm::load(
                            ckpt,
                            &format!("{prefix}.k_norm"),
                            hd,
                            config.rms_norm_eps,
                        )?),
                    ),
                    QkNorm::Full => (
                        Some(RmsNorm::load(
                            ckpt,
                            &format!("{prefix}.q_norm"),
                            nh * hd,
                            config.rms_norm_eps,
                        )?),
                        Some(RmsNorm::load(
                            ckpt,
                            &format!("{prefix}.k_norm"),
                            nkv * hd,
                            config.rms_norm_eps,
                        )?),
                    ),
                };
                Ok(Attention::Standard(StandardAttention {
                    q: Linear::load(ckpt, &format!("{prefix}.q_proj"), h, nh * hd, *qkv_bias)?,
                    k: Linear::load(ckpt, &format!("{prefix}.k_proj"), h, nkv * hd, *qkv_bias)?,
                    v: Linear::load(ckpt, &format!("{prefix}.v_proj"), h, nkv * hd, *qkv_bias)?,
                    o: Linear::load(ckpt, &format!("{prefix}.o_proj"), nh * hd, h, *o_bias)?,
                    q_norm,
                    k_norm,
                    qk_norm: *qk_norm,
                    clip_qkv: *clip_qkv,
                    num_heads: nh,
                    num_kv_heads: nkv,
                    head_dim: hd,
                    rotary_dim: config.rope.rotary_dim,
                    window: config.sliding_window[layer],
                }))
            }
            AttentionKind::Latent(dims) => {
                let nh = config.num_heads;
                let qk_dim = dims.qk_nope_head_dim + dims.qk_rope_head_dim;
                let eps = config.rms_norm_eps;
                let (q, q_a) = match dims.q_lora_rank {
                    None => (
                        Linear::load(ckpt, &format!("{prefix}.q_proj"), h, nh * qk_dim, false)?,
                        None,
                    ),
                    Some(rank) => (
                        Linear::load(
                            ckpt,
                            &format!("{prefix}.q_b_proj"),
                            rank,
                            nh * qk_dim,
                            false,
                        )?,
                        Some((
                            Linear::load(
                                ckpt,
                                &format!("{prefix}.q_a_proj"),
                                h,
                                rank,
                                ckpt.contains(&format!("{prefix}.q_a_proj.bias")),
                            )?,
                            RmsNorm::load(ckpt, &format!("{prefix}.q_a_layernorm"), rank, eps)?,
                        )),
                    ),
                };
                let kv_a_bias = ckpt.contains(&format!("{prefix}.kv_a_proj_with_mqa.bias"));
                let mut scale = (qk_dim as f64).powf(-0.5);
                if let super::config::RopeScaling::Yarn {
                    factor,
                    mscale_all_dim,
                    ..
                } = config.rope.scaling
                {
                    if mscale_all_dim != 0.0 && factor > 1.0 {
                        let m = 0.1 * mscale_all_dim * factor.ln() + 1.0;
                        scale *= m * m;
                    }
                }
                Ok(Attention::Latent(LatentAttentionLayer {
                    q,
                    q_a,
                    kv_a: Linear::load(
                        ckpt,
                        &format!("{prefix}.kv_a_proj_with_mqa"),
                        h,
                        dims.kv_lora_rank + dims.qk_rope_head_dim,
                        kv_a_bias,
                    )?,
                    kv_a_norm: RmsNorm::load(
                        ckpt,
                        &format!("{prefix}.kv_a_layernorm"),
                        dims.kv_lora_rank,
                        eps,
                    )?,
                    kv_b: Linear::load(
                        ckpt,
                        &format!("{prefix}.kv_b_proj"),
                        dims.kv_lora_rank,
                        nh * (dims.qk_nope_head_dim + dims.v_head_dim),
                        false,
                    )?,
                    o: Linear::load(
                        ckpt,
                        &format!("{prefix}.o_proj"),
                        nh * dims.v_head_dim,
                        h,
                        ckpt.contains(&format!("{prefix}.o_proj.bias")),
                    )?,
                    dims: dims.clone(),
                    num_heads: nh,
                    scale,
                }))
            }
        }
    }

    /// Attends `x` `[len, hidden]` (new tokens of one sequence at positions
    /// `start..`) over the cached keys plus its own; appends to the cache.
    pub fn forward(
        &self,
        x: &Tensor,
        start: usize,
        rope: &RotaryEmbedding,
        cache: &mut LayerCache,
    ) -> Result<Tensor> {
        match self {
            Attention::Standard(a) => a.forward(x, start, rope, cache),
            Attention::Latent(a) => a.forward(x, start, rope, cache),
        }
    }
}

impl StandardAttention {
    /// Applies the query and key norms (over heads or per head, by shape).
    fn norm_qk(&self, q: Tensor, k: Tensor) -> Result<(Tensor, Tensor)> {
        match (&self.q_norm, &self.k_norm) {
            (Some(qn), Some(kn)) => Ok((qn.forward(&q)?, kn.forward(&k)?)),
            _ => Ok((q, k)),
        }
    }

    fn rotate(
        &self,
        x: &Tensor,
        rope: &RotaryEmbedding,
        cos: &Tensor,
        sin: &Tensor,
    ) -> Result<Tensor> {
        if self.rotary_dim == self.head_dim {
            return rope.apply(x, cos, sin);
        }
        let rotated = rope.apply(&x.narrow(D::Minus1, 0, self.rotary_dim)?, cos, sin)?;
        let pass = x.narrow(D::Minus1, self.rotary_dim, self.head_dim - self.rotary_dim)?;
        Ok(Tensor::cat(&[&rotated, &pass], D::Minus1)?)
    }

    fn forward(
        &self,
        x: &Tensor,
        start: usize,
        rope: &RotaryEmbedding,
        cache: &mut LayerCache,
    ) -> Result<Tensor> {
        let len = x.dims()[0];
        let (mut q, mut k, mut v) = (self.q.forward(x)?, self.k.forward(x)?, self.v.forward(x)?);
        if self.qk_norm == QkNorm::Full {
            (q, k) = self.norm_qk(q, k)?;
        }
        // OLMoE clips after its norms, as the reference does.
        if let Some(c) = self.clip_qkv {
            let (lo, hi) = (-c as f32, c as f32);
            q = q.clamp(lo, hi)?;
            k = k.clamp(lo, hi)?;
            v = v.clamp(lo, hi)?;
        }
        let mut q = q.reshape((len, self.num_heads, self.head_dim))?;
        let mut k = k.reshape((len, self.num_kv_heads, self.head_dim))?;
        if self.qk_norm == QkNorm::PerHead {
            (q, k) = self.norm_qk(q, k)?;
        }
        let q = q.transpose(0, 1)?.contiguous()?;
        let k = k.transpose(0, 1)?.contiguous()?;
        let v = v
            .reshape((len, self.num_kv_heads, self.head_dim))?
            .transpose(0, 1)?
            .contiguous()?;
        let (cos, sin) = rope.tables(start, len)?;
        let q = self.rotate(&q, rope, &cos, &sin)?;
        let k = self.rotate(&k, rope, &cos, &sin)?;
        let (nkv, hd) = (self.num_kv_heads, self.head_dim);
        with_host(&k, |k| cache.k.append(k, nkv, len, hd))??;
        with_host(&v, |v| cache.v.append(v, nkv, len, hd))??;
        let scale = (self.head_dim as f64).powf(-0.5);
        let out = attend(
            &q,
            cache.k.view(),
            cache.v.view(),
            scale,
            start,
            self.window,
        )?;
        let out = out
            .transpose(0, 1)?
            .reshape((len, self.num_heads * self.head_dim))?;
        Ok(self.o.forward(&out)?)
    }
}

impl LatentAttentionLayer {
    fn forward(
        &self,
        x: &Tensor,
        start: usize,
        rope: &RotaryEmbedding,
        cache: &mut LayerCache,
    ) -> Result<Tensor> {
        let len = x.dims()[0];
        let d = &self.dims;
        let nh = self.num_heads;
        let qk_dim = d.qk_nope_head_dim + d.qk_rope_head_dim;
        let q = match &self.q_a {
            Some((a, norm)) => self.q.forward(&norm.forward(&a.forward(x)?)?)?,
            None => self.q.forward(x)?,
        };
        let q = q
            .reshape((len, nh, qk_dim))?
            .transpose(0, 1)?
            .contiguous()?;
        let q_nope = q.narrow(D::Minus1, 0, d.qk_nope_head_dim)?;
        let q_pe = q
            .narrow(D::Minus1, d.qk_nope_head_dim, d.qk_rope_head_dim)?
            .contiguous()?;
        let compressed = self.kv_a.forward(x)?;
        let latent = self
            .kv_a_norm
            .forward(&compressed.narrow(D::Minus1, 0, d.kv_lora_rank)?)?;
        let k_pe = compressed
            .narrow(D::Minus1, d.kv_lora_rank, d.qk_rope_head_dim)?
            .unsqueeze(0)?
            .contiguous()?;
        let (cos, sin) = rope.tables(start, len)?;
        let q_pe = rope.apply(&q_pe, &cos, &sin)?;
        let k_pe = rope.apply(&k_pe, &cos, &sin)?.squeeze(0)?;
        // The cache keeps the compressed latent and the shared rotated key.
        with_host(&latent, |l| cache.k.append(l, 1, len, d.kv_lora_rank))??;
        with_host(&k_pe, |k| cache.v.append(k, 1, len, d.qk_rope_head_dim))??;
        let total = cache.k.len;
        let latent_all = Tensor::from_slice(cache.k.head(0), (total, d.kv_lora_rank), x.device())?;
        let k_pe_all =
            Tensor::from_slice(cache.v.head(0), (total, d.qk_rope_head_dim), x.device())?;
        let kv = self
            .kv_b
            .forward(&latent_all)?
            .reshape((total, nh, d.qk_nope_head_dim + d.v_head_dim))?
            .transpose(0, 1)?;
        let k_nope = kv.narrow(D::Minus1, 0, d.qk_nope_head_dim)?;
        let v = kv
            .narrow(D::Minus1, d.qk_nope_head_dim, d.v_head_dim)?
            .contiguous()?;
        let k_rot = k_pe_all
            .unsqueeze(0)?
            .broadcast_as((nh, total, d.qk_rope_head_dim))?;
        let k = Tensor::cat(&[&k_nope, &k_rot], D::Minus1)?.contiguous()?;
        let q = Tensor::cat(&[&q_nope, &q_pe], D::Minus1)?.contiguous()?;
        let out = with_host(&k, |k| {
            with_host(&v, |v| {
                let heads = |data, width| Heads {
                    data,
                    heads: nh,
                    len: total,
                    width,
                    stride: total * width,
                };
                attend(
                    &q,
                    heads(k, qk_dim),
                    heads(v, d.v_head_dim),
                    self.scale,
                    start,
                    None,
                )
            })
        })???;
        let out = out.transpose(0, 1)?.reshape((len, nh * d.v_head_dim))?;
        Ok(self.o.forward(&out.to_dtype(DType::F32)?)?)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn cached_rows_grow_in_place_and_keep_every_head_in_order() {
        let (heads, width) = (3, 2);
        // Rows numbered by (head, position): appended in steps of 5, 1, 1,
        // 7 and 1 rows, across several growths of the room.
        let mut rows = Rows::default();
        let mut len = 0;
        for count in [5, 1, 1, 7, 1] {
            let new: Vec<f32> = (0..heads)
                .flat_map(|h| (len..len + count).flat_map(move |p| [h as f32, p as f32]))
                .collect();
            rows.append(&new, heads, count, width).unwrap();
            len += count;
            let view = rows.view();
            assert_eq!((view.heads, view.len, view.width), (heads, len, width));
            for h in 0..heads {
                let want: Vec<f32> = (0..len).flat_map(|p| [h as f32, p as f32]).collect();
                assert_eq!(view.head(h), want.as_slice());
            }
        }
        // Rows of another shape are refused, not mixed in.
        assert!(rows.append(&[0.0; 4], 2, 1, 2).is_err());
        assert!(rows.append(&[0.0; 5], 3, 1, 2).is_err());
    }
}
