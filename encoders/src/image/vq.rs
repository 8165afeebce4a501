//! The LlamaGen VQ-16 network that Janus-Pro uses, as `transformers` names
//! its tensors (`JanusVQVAE`): a convolutional encoder and decoder of
//! residual blocks with group norm and swish, attention at the lowest
//! resolution, and a codebook between them.

use candle_core::{Module, Tensor, D};

use super::VqConfig;
use crate::conv::{Conv, ConvShape};
use crate::error::Result;
use crate::ops::GroupNorm;
use crate::weights::Checkpoint;

/// Every norm in the network: 32 groups, eps 1e-6 (fixed by the reference).
const GROUPS: usize = 32;
const EPS: f64 = 1e-6;

/// Where tensors live: the folder's checkpoint and a name prefix
/// (`model.vqmodel.` inside a whole Janus checkpoint).
pub struct Weights<'a> {
    pub ckpt: &'a Checkpoint,
    pub prefix: String,
}

impl Weights<'_> {
    pub(super) fn tensor(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        Ok(self.ckpt.get(&format!("{}{name}", self.prefix), shape)?)
    }

    fn contains(&self, name: &str) -> bool {
        self.ckpt.contains(&format!("{}{name}", self.prefix))
    }

    pub(super) fn conv(
        &self,
        name: &str,
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
        padding: usize,
    ) -> Result<Conv> {
        let weight = self.tensor(&format!("{name}.weight"), &[cout, cin, k, k])?;
        let bias = self.tensor(&format!("{name}.bias"), &[cout])?;
        let shape = ConvShape {
            cin,
            cout,
            kernel: (k, k),
            stride,
            padding,
            dilation: 1,
            groups: 1,
        };
        Ok(Conv::new(&weight, Some(&bias), shape)?)
    }

    fn norm(&self, name: &str, channels: usize) -> Result<GroupNorm> {
        Ok(GroupNorm::new(
            &self.tensor(&format!("{name}.weight"), &[channels])?,
            &self.tensor(&format!("{name}.bias"), &[channels])?,
            GROUPS,
            EPS,
        )?)
    }
}

struct ResnetBlock {
    norm1: GroupNorm,
    conv1: Conv,
    norm2: GroupNorm,
    conv2: Conv,
    /// A 1x1 convolution when the block changes the channel count.
    shortcut: Option<Conv>,
}

impl ResnetBlock {
    fn load(w: &Weights, name: &str, cin: usize, cout: usize) -> Result<ResnetBlock> {
        let shortcut = if cin == cout {
            None
        } else if w.contains(&format!("{name}.conv_shortcut.weight")) {
            Some(w.conv(&format!("{name}.conv_shortcut"), cin, cout, 3, 1, 1)?)
        } else {
            Some(w.conv(&format!("{name}.nin_shortcut"), cin, cout, 1, 1, 0)?)
        };
        Ok(ResnetBlock {
            norm1: w.norm(&format!("{name}.norm1"), cin)?,
            conv1: w.conv(&format!("{name}.conv1"), cin, cout, 3, 1, 1)?,
            norm2: w.norm(&format!("{name}.norm2"), cout)?,
            conv2: w.conv(&format!("{name}.conv2"), cout, cout, 3, 1, 1)?,
            shortcut,
        })
    }
}

impl Module for ResnetBlock {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let h = self.conv1.forward(&self.norm1.forward(x, true)?)?;
        let h = self.conv2.forward(&self.norm2.forward(&h, true)?)?;
        let residual = match &self.shortcut {
            Some(conv) => conv.forward(x)?,
            None => x.clone(),
        };
        residual + h
    }
}

/// Single-head self-attention over all positions, with 1x1 projections.
struct AttnBlock {
    norm: GroupNorm,
    q: Conv,
    k: Conv,
    v: Conv,
    proj_out: Conv,
}

impl AttnBlock {
    fn load(w: &Weights, name: &str, c: usize) -> Result<AttnBlock> {
        Ok(AttnBlock {
            norm: w.norm(&format!("{name}.norm"), c)?,
            q: w.conv(&format!("{name}.q"), c, c, 1, 1, 0)?,
            k: w.conv(&format!("{name}.k"), c, c, 1, 1, 0)?,
            v: w.conv(&format!("{name}.v"), c, c, 1, 1, 0)?,
            proj_out: w.conv(&format!("{name}.proj_out"), c, c, 1, 1, 0)?,
        })
    }
}

impl Module for AttnBlock {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let normed = self.norm.forward(x, false)?;
        // [b, hw, c] queries against [b, c, hw] keys.
        let q = self
            .q
            .forward(&normed)?
            .reshape((b, c, h * w))?
            .transpose(1, 2)?;
        let k = self.k.forward(&normed)?.reshape((b, c, h * w))?;
        let v = self.v.forward(&normed)?.reshape((b, c, h * w))?;
        let scores = (q.contiguous()?.matmul(&k)? * (c as f64).powf(-0.5))?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        // out[c, i] = sum_j v[c, j] probs[i, j]
        let out = v.matmul(&probs.transpose(1, 2)?.contiguous()?)?;
        x + self.proj_out.forward(&out.reshape((b, c, h, w))?)?
    }
}

struct MidBlock {
    block_1: ResnetBlock,
    attn_1: AttnBlock,
    block_2: ResnetBlock,
}

impl MidBlock {
    fn load(w: &Weights, name: &str, c: usize) -> Result<MidBlock> {
        Ok(MidBlock {
            block_1: ResnetBlock::load(w, &format!("{name}.block_1"), c, c)?,
            attn_1: AttnBlock::load(w, &format!("{name}.attn_1"), c)?,
            block_2: ResnetBlock::load(w, &format!("{name}.block_2"), c, c)?,
        })
    }
}

impl Module for MidBlock {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.block_2
            .forward(&self.attn_1.forward(&self.block_1.forward(x)?)?)
    }
}

/// One resolution level: residual blocks, each followed by attention at
/// the lowest resolution, then a resampling convolution between levels.
struct Level {
    blocks: Vec<(ResnetBlock, Option<AttnBlock>)>,
    resample: Option<Conv>,
}

impl Level {
    /// `{name}.block.{j}` for `j < count` (the first changes the width), each
    /// followed by `{name}.attn.{j}` when `attention`.
    fn load_blocks(
        w: &Weights,
        name: &str,
        count: usize,
        block_in: usize,
        block_out: usize,
        attention: bool,
    ) -> Result<Vec<(ResnetBlock, Option<AttnBlock>)>> {
        (0..count)
            .map(|j| {
                let cin = if j == 0 { block_in } else { block_out };
                let block = ResnetBlock::load(w, &format!("{name}.block.{j}"), cin, block_out)?;
                let attn = if attention {
                    Some(AttnBlock::load(w, &format!("{name}.attn.{j}"), block_out)?)
                } else {
                    None
                };
                Ok((block, attn))
            })
            .collect()
    }

    fn run(&self, mut x: Tensor) -> candle_core::Result<Tensor> {
        for (block, attn) in &self.blocks {
            x = block.forward(&x)?;
            if let Some(attn) = attn {
                x = attn.forward(&x)?;
            }
        }
        Ok(x)
    }
}

pub struct Encoder {
    conv_in: Conv,
    levels: Vec<Level>,
    mid: MidBlock,
    norm_out: GroupNorm,
    conv_out: Conv,
}

impl Encoder {
    pub fn load(w: &Weights, c: &VqConfig) -> Result<Encoder> {
        let base = c.base_channels;
        let n = c.channel_multiplier.len();
        let mut levels = Vec::with_capacity(n);
        let mut block_in = base;
        for (i, &mult) in c.channel_multiplier.iter().enumerate() {
            let block_out = base * mult;
            let name = format!("encoder.down.{i}");
            let blocks =
                Level::load_blocks(w, &name, c.num_res_blocks, block_in, block_out, i == n - 1)?;
            if c.num_res_blocks > 0 {
                block_in = block_out;
            }
            let resample = if i != n - 1 {
                Some(w.conv(
                    &format!("encoder.down.{i}.downsample.conv"),
                    block_in,
                    block_in,
                    3,
                    2,
                    0,
                )?)
            } else {
                None
            };
            levels.push(Level { blocks, resample });
        }
        let latent = if c.double_latent {
            2 * c.latent_channels
        } else {
            c.latent_channels
        };
        Ok(Encoder {
            conv_in: w.conv("encoder.conv_in", c.in_channels, base, 3, 1, 1)?,
            levels,
            mid: MidBlock::load(w, "encoder.mid", block_in)?,
            norm_out: w.norm("encoder.norm_out", block_in)?,
            conv_out: w.conv("encoder.conv_out", block_in, latent, 3, 1, 1)?,
        })
    }
}

impl Module for Encoder {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut x = self.conv_in.forward(x)?;
        for level in &self.levels {
            x = level.run(x)?;
            if let Some(down) = &level.resample {
                // Asymmetric padding (right and bottom only), then a strided conv.
                x = down.forward(&x.pad_with_zeros(D::Minus1, 0, 1)?.pad_with_zeros(
                    D::Minus2,
                    0,
                    1,
                )?)?;
            }
        }
        let x = self.mid.forward(&x)?;
        self.conv_out.forward(&self.norm_out.forward(&x, true)?)
    }
}

pub struct Decoder {
    conv_in: Conv,
    mid: MidBlock,
    levels: Vec<Level>,
    norm_out: GroupNorm,
    conv_out: Conv,
}

impl Decoder {
    pub fn load(w: &Weights, c: &VqConfig) -> Result<Decoder> {
        let base = c.base_channels;
        let n = c.channel_multiplier.len();
        let mut block_in = base * c.channel_multiplier[n - 1];
        let conv_in = w.conv("decoder.conv_in", c.latent_channels, block_in, 3, 1, 1)?;
        let mid = MidBlock::load(w, "decoder.mid", block_in)?;
        let mut levels = Vec::with_capacity(n);
        // up.0 is the lowest resolution (the last multiplier).
        for (k, &mult) in c.channel_multiplier.iter().rev().enumerate() {
            let block_out = base * mult;
            let name = format!("decoder.up.{k}");
            let blocks =
                Level::load_blocks(w, &name, c.num_res_blocks + 1, block_in, block_out, k == 0)?;
            block_in = block_out;
            let resample = if k != n - 1 {
                Some(w.conv(
                    &format!("{name}.upsample.conv"),
                    block_in,
                    block_in,
                    3,
                    1,
                    1,
                )?)
            } else {
                None
            };
            levels.push(Level { blocks, resample });
        }
        Ok(Decoder {
            conv_in,
            mid,
            levels,
            norm_out: w.norm("decoder.norm_out", block_in)?,
            conv_out: w.conv("decoder.conv_out", block_in, c.out_channels, 3, 1, 1)?,
        })
    }
}

impl Module for Decoder {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let x = self.conv_in.forward(x)?;
        let mut x = self.mid.forward(&x)?;
        for level in &self.levels {
            x = level.run(x)?;
            if let Some(up) = &level.resample {
                let (_, _, h, w) = x.dims4()?;
                x = up.forward(&x.upsample_nearest2d(2 * h, 2 * w)?)?;
            }
        }
        self.conv_out.forward(&self.norm_out.forward(&x, true)?)
    }
}
