//! SNAC's building blocks, as the `snac` package names its tensors:
//! weight-normalised convolutions, the Snake activation, residual units,
//! windowed multi-head attention with rotary positions, and noise blocks.

use candle_core::{Module, Tensor, D};
use candle_nn::LayerNorm;

use crate::conv::{Conv, ConvShape, ConvTranspose1d};
use crate::error::{CodecError, Result};
use crate::weights::Checkpoint;

/// A weight-normalised 1-D convolution (or transposed convolution).
pub enum WnConv {
    Conv(Conv),
    Transposed(ConvTranspose1d),
}

/// How a convolution is shaped, as the reference constructs it.
#[derive(Debug, Clone, Copy)]
pub struct ConvSpec {
    pub cin: usize,
    pub cout: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
    pub dilation: usize,
    pub groups: usize,
    pub bias: bool,
}

impl ConvSpec {
    pub fn new(cin: usize, cout: usize, kernel: usize) -> ConvSpec {
        ConvSpec {
            cin,
            cout,
            kernel,
            stride: 1,
            padding: (kernel - 1) / 2,
            dilation: 1,
            groups: 1,
            bias: true,
        }
    }
}

/// `w = g * v / |v|`, the norm over every dimension but the first. Both
/// layouts the reference has written are read: `weight_g`/`weight_v`
/// (`torch.nn.utils.weight_norm`) and `parametrizations.weight.original0/1`
/// (its replacement).
fn weight_norm(ckpt: &Checkpoint, name: &str, shape: &[usize]) -> Result<Tensor> {
    let (g_name, v_name) = if ckpt.contains(&format!("{name}.weight_g")) {
        (format!("{name}.weight_g"), format!("{name}.weight_v"))
    } else if ckpt.contains(&format!("{name}.parametrizations.weight.original0")) {
        (
            format!("{name}.parametrizations.weight.original0"),
            format!("{name}.parametrizations.weight.original1"),
        )
    } else {
        // A checkpoint with the norm already folded in.
        return Ok(ckpt.get(&format!("{name}.weight"), shape)?);
    };
    let g = ckpt.get(&g_name, &[shape[0], 1, 1])?;
    let v = ckpt.get(&v_name, shape)?;
    let norm = v.sqr()?.sum_keepdim((1, 2))?.sqrt()?;
    Ok(v.broadcast_mul(&g.broadcast_div(&norm)?)?)
}

impl WnConv {
    pub fn load(ckpt: &Checkpoint, name: &str, s: ConvSpec) -> Result<WnConv> {
        let weight = weight_norm(ckpt, name, &[s.cout, s.cin / s.groups, s.kernel])?;
        let shape = ConvShape {
            cin: s.cin,
            cout: s.cout,
            kernel: (1, s.kernel),
            stride: s.stride,
            padding: s.padding,
            dilation: s.dilation,
            groups: s.groups,
        };
        let bias = Self::bias(ckpt, name, s)?;
        Ok(WnConv::Conv(Conv::new(&weight, bias.as_ref(), shape)?))
    }

    /// `ConvTranspose1d` (groups 1): its weight is `[in, out, kernel]`.
    pub fn load_transposed(
        ckpt: &Checkpoint,
        name: &str,
        s: ConvSpec,
        output_padding: usize,
    ) -> Result<WnConv> {
        let weight = weight_norm(ckpt, name, &[s.cin, s.cout, s.kernel])?;
        let bias = Self::bias(ckpt, name, s)?;
        Ok(WnConv::Transposed(ConvTranspose1d::new(
            &weight,
            bias.as_ref(),
            s.stride,
            s.padding,
            output_padding,
        )?))
    }

    fn bias(ckpt: &Checkpoint, name: &str, s: ConvSpec) -> Result<Option<Tensor>> {
        Ok(if s.bias {
            Some(ckpt.get(&format!("{name}.bias"), &[s.cout])?)
        } else {
            None
        })
    }
}

impl Module for WnConv {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            WnConv::Conv(c) => c.forward(x),
            WnConv::Transposed(c) => c.forward(x),
        }
    }
}

/// `x + sin(alpha x)^2 / (alpha + 1e-9)`, per channel.
pub struct Snake {
    alpha: Vec<f32>,
    inv_alpha: Vec<f32>,
}

impl Snake {
    pub fn load(ckpt: &Checkpoint, name: &str, channels: usize) -> Result<Snake> {
        let alpha = ckpt
            .get(&format!("{name}.alpha"), &[1, channels, 1])?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let inv_alpha = alpha.iter().map(|a| 1.0 / (a + 1e-9)).collect();
        Ok(Snake { alpha, inv_alpha })
    }
}

impl Module for Snake {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if x.dim(1)? != self.alpha.len() {
            candle_core::bail!(
                "snake over {} channels got {:?}",
                self.alpha.len(),
                x.dims()
            );
        }
        crate::ops::per_channel(x, |c, src, dst| {
            let (a, inv) = (self.alpha[c], self.inv_alpha[c]);
            for (o, &v) in dst.iter_mut().zip(src) {
                let s = (a * v).sin();
                *o = v + inv * s * s;
            }
        })
    }
}

/// Snake, a dilated kernel-7 convolution, Snake, a 1x1 convolution; plus
/// the input.
pub struct ResidualUnit {
    snake1: Snake,
    conv1: WnConv,
    snake2: Snake,
    conv2: WnConv,
}

impl ResidualUnit {
    pub fn load(
        ckpt: &Checkpoint,
        name: &str,
        dim: usize,
        dilation: usize,
        groups: usize,
    ) -> Result<ResidualUnit> {
        Ok(ResidualUnit {
            snake1: Snake::load(ckpt, &format!("{name}.block.0"), dim)?,
            conv1: WnConv::load(
                ckpt,
                &format!("{name}.block.1"),
                ConvSpec {
                    dilation,
                    padding: 3 * dilation,
                    groups,
                    ..ConvSpec::new(dim, dim, 7)
                },
            )?,
            snake2: Snake::load(ckpt, &format!("{name}.block.2"), dim)?,
            conv2: WnConv::load(ckpt, &format!("{name}.block.3"), ConvSpec::new(dim, dim, 1))?,
        })
    }
}

impl Module for ResidualUnit {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = self.conv1.forward(&self.snake1.forward(x)?)?;
        let y = self.conv2.forward(&self.snake2.forward(&y)?)?;
        // Same length by construction (padding = 3 * dilation).
        x + y
    }
}

/// Non-causal attention within fixed windows of time steps, heads of 64,
/// rotary positions restarting in each window.
pub struct LocalAttention {
    norm: LayerNorm,
    to_qkv: Tensor,
    to_out: Tensor,
    heads: usize,
    window: usize,
    /// Rotary cos and sin tables `[window, HEAD_DIM]`, built once at load.
    cos: Tensor,
    sin: Tensor,
}

const HEAD_DIM: usize = 64;

impl LocalAttention {
    pub fn load(
        ckpt: &Checkpoint,
        name: &str,
        dim: usize,
        window: usize,
    ) -> Result<LocalAttention> {
        if dim < HEAD_DIM {
            return Err(CodecError::config(
                ckpt.dir().join("config.json"),
                format!("attention needs at least {HEAD_DIM} channels, the model has {dim}"),
            ));
        }
        let (cos, sin) = rotary(window, ckpt.device())?;
        Ok(LocalAttention {
            cos,
            sin,
            norm: LayerNorm::new(
                ckpt.get(&format!("{name}.norm.weight"), &[dim])?,
                ckpt.get(&format!("{name}.norm.bias"), &[dim])?,
                1e-5,
            ),
            to_qkv: ckpt.get(&format!("{name}.to_qkv.weight"), &[3 * dim, dim])?,
            to_out: ckpt.get(&format!("{name}.to_out.weight"), &[dim, dim])?,
            heads: dim / HEAD_DIM,
            window,
        })
    }
}

/// cos and sin tables `[window, HEAD_DIM]` (frequencies repeated twice).
fn rotary(window: usize, device: &candle_core::Device) -> candle_core::Result<(Tensor, Tensor)> {
    let half = HEAD_DIM / 2;
    let mut angles = Vec::with_capacity(window * HEAD_DIM);
    for t in 0..window {
        for i in 0..HEAD_DIM {
            let inv_freq = 1.0 / 10000f32.powf((2 * (i % half)) as f32 / HEAD_DIM as f32);
            angles.push(t as f32 * inv_freq);
        }
    }
    let angles = Tensor::from_vec(angles, (window, HEAD_DIM), device)?;
    Ok((angles.cos()?, angles.sin()?))
}

fn rotate_half(x: &Tensor) -> candle_core::Result<Tensor> {
    let half = x.dim(D::Minus1)? / 2;
    let (x1, x2) = (
        x.narrow(D::Minus1, 0, half)?,
        x.narrow(D::Minus1, half, half)?,
    );
    Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)
}

impl Module for LocalAttention {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (b, c, t) = x.dims3()?;
        let (w, h) = (self.window, self.heads);
        if t % w != 0 {
            candle_core::bail!("{t} time steps are not a whole number of attention windows of {w}");
        }
        let normed = self.norm.forward(&x.transpose(1, 2)?)?;
        let qkv = normed.broadcast_matmul(&self.to_qkv.t()?)?;
        // [b, t, c] -> [b * h * windows, w, d]
        let n = b * h * (t / w);
        let split = |i: usize| -> candle_core::Result<Tensor> {
            qkv.narrow(D::Minus1, i * c, c)?
                .reshape((b, t / w, w, h, HEAD_DIM))?
                .permute((0, 3, 1, 2, 4))?
                .contiguous()?
                .reshape((n, w, HEAD_DIM))
        };
        let (q, k, v) = (split(0)?, split(1)?, split(2)?);
        let (cos, sin) = (&self.cos, &self.sin);
        let rotate = |x: &Tensor| -> candle_core::Result<Tensor> {
            x.broadcast_mul(cos)? + rotate_half(x)?.broadcast_mul(sin)?
        };
        let (q, k) = (rotate(&q)?, rotate(&k)?);
        let scores = (q.matmul(&k.transpose(1, 2)?.contiguous()?)? / (HEAD_DIM as f64).sqrt())?;
        let out = candle_nn::ops::softmax_last_dim(&scores)?.matmul(&v)?;
        let out = out
            .reshape((b, h, t / w, w, HEAD_DIM))?
            .permute((0, 2, 3, 1, 4))?
            .reshape((b, t, c))?;
        let out = out.broadcast_matmul(&self.to_out.t()?)?;
        out.transpose(1, 2)? + x
    }
}

/// Adds `noise * linear(x)`, the noise one standard normal value per time
/// step, drawn from the decoder's seeded generator.
pub struct NoiseBlock {
    pub linear: WnConv,
}

impl NoiseBlock {
    pub fn forward(&self, x: &Tensor, noise: &Tensor) -> candle_core::Result<Tensor> {
        x + noise.broadcast_mul(&self.linear.forward(x)?)?
    }
}
