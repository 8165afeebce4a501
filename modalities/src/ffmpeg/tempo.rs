//! Tempo changes without pitch changes, through FFmpeg's `atempo` filter
//! (WSOLA), one channel at a time.

use ff::format::sample::Type as SampleLayout;
use ff::format::Sample;
use ffmpeg_next as ff;

use super::init;
use crate::{MediaError, Result};

/// One channel's samples played `speed` times faster (0.5 to 2: one
/// `atempo` stage; the caller checks the range).
pub(crate) fn atempo(samples: &[f32], rate: u32, speed: f64) -> Result<Vec<f32>> {
    init()?;
    let fail = |e: ff::Error| MediaError::Invalid(format!("time stretch: {e}"));
    let mut graph = ff::filter::Graph::new();
    let source = ff::filter::find("abuffer")
        .ok_or_else(|| MediaError::Invalid("time stretch: FFmpeg lacks abuffer".into()))?;
    let sink = ff::filter::find("abuffersink")
        .ok_or_else(|| MediaError::Invalid("time stretch: FFmpeg lacks abuffersink".into()))?;
    let args = format!("time_base=1/{rate}:sample_rate={rate}:sample_fmt=flt:channel_layout=mono");
    graph.add(&source, "in", &args).map_err(fail)?;
    graph.add(&sink, "out", "").map_err(fail)?;
    if let Some(mut out) = graph.get("out") {
        out.set_sample_format(Sample::F32(SampleLayout::Packed));
        out.set_channel_layout(ff::ChannelLayout::MONO);
        out.set_sample_rate(rate);
    }
    graph
        .output("in", 0)
        .and_then(|p| p.input("out", 0))
        .and_then(|p| p.parse(&format!("atempo={speed}")))
        .map_err(fail)?;
    graph.validate().map_err(fail)?;

    let mut out = Vec::with_capacity((samples.len() as f64 / speed) as usize + 4096);
    let pull = |graph: &mut ff::filter::Graph, out: &mut Vec<f32>| {
        let mut frame = ff::frame::Audio::empty();
        if let Some(mut ctx) = graph.get("out") {
            while ctx.sink().frame(&mut frame).is_ok() {
                out.extend_from_slice(&frame.plane::<f32>(0)[..frame.samples()]);
            }
        }
    };
    const CHUNK: usize = 4096;
    for (i, chunk) in samples.chunks(CHUNK).enumerate() {
        let mut frame = ff::frame::Audio::new(
            Sample::F32(SampleLayout::Packed),
            chunk.len(),
            ff::ChannelLayout::MONO,
        );
        frame.set_rate(rate);
        frame.set_pts(Some((i * CHUNK) as i64));
        frame.plane_mut::<f32>(0)[..chunk.len()].copy_from_slice(chunk);
        if let Some(mut ctx) = graph.get("in") {
            ctx.source().add(&frame).map_err(fail)?;
        }
        pull(&mut graph, &mut out);
    }
    if let Some(mut ctx) = graph.get("in") {
        ctx.source().flush().map_err(fail)?;
    }
    pull(&mut graph, &mut out);
    Ok(out)
}
