//! One plan per task: the prompt (template, media blocks), the structure
//! the output must follow, and how its tokens decode.

use encoders::mesh::QuantizedMesh;
use modalities::{Image, Media, Video};

use super::constrain::{image_steps, AudioFrames, MeshFaces, Script, TextOnly};
use super::obj_text::ObjText;
use super::prompt::Blocks;
use super::{Finish, MakeConstraint, Part, Plan, Runner, TaskInputs, TaskOptions, TaskOutput};
use crate::error::{PipelineError, Result};
use crate::generate::{Allowed, Guidance, SamplingParams};
use crate::pack::{ImageLayout, MeshLayout, Pack, TaskName};
use crate::tokenizer::ChatMessage;

pub(super) fn build(
    runner: &Runner,
    task: TaskName,
    options: &TaskOptions,
    inputs: &TaskInputs,
) -> Result<Plan> {
    let pack = &*runner.pack;
    match task {
        TaskName::Chat => chat(pack, options, inputs),
        TaskName::Caption | TaskName::Transcribe => describe(pack, task, options, inputs),
        TaskName::TextToImage | TaskName::ImageEdit => image(pack, task, options, inputs),
        TaskName::TextToSpeech => speech(pack, options),
        TaskName::TextToVideo | TaskName::ImageToVideo => video(pack, task, options, inputs),
        TaskName::TextToMesh => mesh(runner, options),
    }
}

/// Template variables: every task gets all of them (empty when unused), so
/// a template that names one its task lacks renders it empty, and a typo
/// is an error.
#[derive(Default)]
struct Vars {
    prompt: String,
    media: String,
    image: String,
    audio: String,
    video: String,
    voice: String,
    voice_text: String,
    voice_audio: String,
    /// The prompt as phoneme tokens, when the pack has a speech frontend.
    phonemes: String,
    seconds: f64,
    speed: f32,
}

impl Vars {
    fn render(&self, pack: &Pack, task: TaskName, blocks: &Blocks) -> Result<Vec<u32>> {
        let context = minijinja::context! {
            prompt => self.prompt,
            media => self.media,
            image => self.image,
            audio => self.audio,
            video => self.video,
            voice => self.voice,
            voice_text => self.voice_text,
            voice_audio => self.voice_audio,
            phonemes => self.phonemes,
            seconds => self.seconds,
            speed => self.speed,
        };
        blocks.splice(pack, &pack.render(task, context)?)
    }
}

/// The request's sampling, else the pack's for the task, else the
/// checkpoint's `generation_config.json`.
fn sampling(
    pack: &Pack,
    task: TaskName,
    options: &TaskOptions,
    max_tokens: usize,
) -> SamplingParams {
    let mut p = pack.model.default_params();
    let spec = pack.manifest.tasks.get(&task);
    let temperature = options
        .temperature
        .or_else(|| spec.and_then(|s| s.temperature));
    p.temperature = temperature.unwrap_or(p.temperature);
    p.top_k = options
        .top_k
        .or_else(|| spec.and_then(|s| s.top_k))
        .unwrap_or(p.top_k);
    p.top_p = options
        .top_p
        .or_else(|| spec.and_then(|s| s.top_p))
        .unwrap_or(p.top_p);
    p.max_tokens = max_tokens;
    p
}

fn text_plan(pack: &Pack, task: TaskName, options: &TaskOptions, prompt: Vec<u32>) -> Plan {
    let max = options
        .max_tokens
        .unwrap_or(pack.defaults().max_text_tokens);
    let text = pack.text_ranges();
    Plan {
        prompt,
        guidance: None,
        params: sampling(pack, task, options, max.max(1)),
        constraint: Some(Box::new(move || Box::new(TextOnly(text.clone())))),
        structured: false,
        finish: Box::new(|_, text| Ok(TaskOutput::Text(text.to_owned()))),
    }
}

/// A plan whose output is a media structure that must be complete.
fn media_plan(
    params: SamplingParams,
    prompt: Vec<u32>,
    guidance: Option<Guidance>,
    constraint: MakeConstraint,
    finish: Finish,
) -> Plan {
    Plan {
        prompt,
        guidance,
        params,
        constraint: Some(constraint),
        structured: true,
        finish,
    }
}

fn need<'a, T>(value: &'a Option<T>, what: &str, task: TaskName) -> Result<&'a T> {
    value
        .as_ref()
        .ok_or_else(|| PipelineError::Request(format!("{task}: needs {what}")))
}

fn chat(pack: &Pack, options: &TaskOptions, inputs: &TaskInputs) -> Result<Plan> {
    let mut blocks = Blocks::default();
    let mut messages = Vec::new();
    for m in &inputs.messages {
        let mut content = String::new();
        for part in &m.parts {
            match part {
                Part::Text(t) => content.push_str(t),
                Part::Media(media) => content.push_str(&blocks.add(pack, media)?),
            }
        }
        messages.push(ChatMessage {
            role: m.role.clone(),
            content,
        });
    }
    // The prompt is a last user turn, with the request's media before it.
    let mut turn = String::new();
    if let Some(image) = &inputs.image {
        turn.push_str(&blocks.add(pack, &Media::Image(image.clone()))?);
    }
    if let Some(video) = &inputs.video {
        turn.push_str(&blocks.add(pack, &Media::Video(video.clone()))?);
    }
    if let Some(audio) = &inputs.audio {
        turn.push_str(&blocks.add(pack, &Media::Audio(audio.clone()))?);
    }
    if !turn.is_empty() || !options.prompt.is_empty() {
        turn.push_str(&options.prompt);
        messages.push(ChatMessage {
            role: "user".into(),
            content: turn,
        });
    }
    if messages.is_empty() {
        return Err(PipelineError::Request(
            "chat: needs messages or a prompt".into(),
        ));
    }
    let rendered = if pack.has_template(TaskName::Chat) {
        let context = minijinja::context! { messages => messages, add_generation_prompt => true };
        pack.render(TaskName::Chat, context)?
    } else {
        pack.model.tokenizer.apply_chat_template(&messages, true)?
    };
    let prompt = blocks.splice(pack, &rendered)?;
    Ok(text_plan(pack, TaskName::Chat, options, prompt))
}

/// `caption` (an image or a video) and `transcribe` (speech) to text.
fn describe(
    pack: &Pack,
    task: TaskName,
    options: &TaskOptions,
    inputs: &TaskInputs,
) -> Result<Plan> {
    let mut blocks = Blocks::default();
    let mut vars = Vars {
        prompt: options.prompt.clone(),
        speed: options.speed,
        ..Vars::default()
    };
    if task == TaskName::Transcribe {
        let audio = need(&inputs.audio, "audio (--audio)", task)?;
        vars.audio = blocks.add(pack, &Media::Audio(audio.clone()))?;
        vars.media = vars.audio.clone();
    } else if let Some(image) = &inputs.image {
        vars.image = blocks.add(pack, &Media::Image(image.clone()))?;
        vars.media = vars.image.clone();
    } else {
        let video = need(
            &inputs.video,
            "an image or a video (--image, --video)",
            task,
        )?;
        vars.video = blocks.add(pack, &Media::Video(video.clone()))?;
        vars.media = vars.video.clone();
    }
    let prompt = vars.render(pack, task, &blocks)?;
    Ok(text_plan(pack, task, options, prompt))
}

fn image_layout(pack: &Pack) -> Result<&ImageLayout> {
    pack.image
        .as_ref()
        .ok_or_else(|| PipelineError::Request("the pack has no image modality".into()))
}

/// Which code cells an edit regenerates: a cell whose mask area is brighter
/// than mid-grey on average. Without a mask, every cell.
fn mask_cells(mask: Option<&Image>, [h, w]: [usize; 2]) -> Vec<bool> {
    let Some(mask) = mask else {
        return vec![true; h * w];
    };
    let (mh, mw, ch) = (
        mask.height as usize,
        mask.width as usize,
        mask.channels as usize,
    );
    let luma = |x: usize, y: usize| {
        let p = &mask.pixels[(y * mw + x) * ch..][..3.min(ch)];
        p.iter().map(|&v| u32::from(v)).sum::<u32>() / p.len() as u32
    };
    let mut cells = Vec::with_capacity(h * w);
    for r in 0..h {
        for c in 0..w {
            let (y0, y1) = (r * mh / h, ((r + 1) * mh / h).max(r * mh / h + 1));
            let (x0, x1) = (c * mw / w, ((c + 1) * mw / w).max(c * mw / w + 1));
            let (mut sum, mut n) = (0u64, 0u64);
            for y in y0..y1.min(mh) {
                for x in x0..x1.min(mw) {
                    sum += u64::from(luma(x, y));
                    n += 1;
                }
            }
            cells.push(n > 0 && sum > 127 * n);
        }
    }
    cells
}

/// The grid of codes to generate and the pixel size to scale the decoded
/// image to: a pack trained on one grid makes only that grid.
fn image_geometry(
    pack: &Pack,
    layout: &ImageLayout,
    options: &TaskOptions,
) -> Result<([usize; 2], Option<[u32; 2]>)> {
    let pixels = options.pixels.or(pack.defaults().image_pixels);
    match layout.fixed_grid {
        Some(fixed) => match options.size {
            Some(asked) if asked != fixed => Err(PipelineError::Request(format!(
                "size: this pack's model makes {} x {} codes only; ask for an output size in \
                 pixels instead",
                fixed[0], fixed[1]
            ))),
            _ => Ok((fixed, pixels)),
        },
        None => Ok((options.size.unwrap_or(pack.defaults().image_grid), pixels)),
    }
}

/// `image` scaled to `pixels` (width, height) without smoothing.
fn scaled(image: Image, pixels: Option<[u32; 2]>) -> Result<Image> {
    match pixels {
        Some([w, h]) if (w, h) != (image.width, image.height) => Ok(image
            .resized_nearest(w, h)
            .map_err(encoders::CodecError::from)?),
        _ => Ok(image),
    }
}

/// `text-to-image` and `image-edit`: one image block, guided.
fn image(pack: &Pack, task: TaskName, options: &TaskOptions, inputs: &TaskInputs) -> Result<Plan> {
    let layout = image_layout(pack)?;
    let (grid, pixels) = image_geometry(pack, layout, options)?;
    let mut blocks = Blocks::default();
    let mut vars = Vars {
        prompt: options.prompt.clone(),
        speed: options.speed,
        ..Vars::default()
    };
    let mut kept = vec![None; grid[0] * grid[1]];
    if task == TaskName::ImageEdit {
        let source = layout.encode(need(&inputs.image, "an image (--image)", task)?, grid)?;
        if let Some(mask) = &inputs.mask {
            if mask.width == 0 || mask.height == 0 {
                return Err(PipelineError::Request("mask: the image is empty".into()));
            }
        }
        let regenerate = mask_cells(inputs.mask.as_ref(), grid);
        for ((k, &code), regen) in kept
            .iter_mut()
            .zip(source.codes.iter().flatten())
            .zip(regenerate)
        {
            if !regen {
                *k = Some(layout.first + code);
            }
        }
        vars.image = blocks.add_tokens(layout.tokens(&source));
    }
    let prompt = vars.render(pack, task, &blocks)?;
    let scale = options
        .guidance_scale
        .unwrap_or(pack.defaults().guidance_scale);
    let guidance = if scale == 1.0 {
        None
    } else {
        vars.prompt.clear();
        Some(Guidance {
            unconditional: vars.render(pack, task, &blocks)?,
            scale,
        })
    };
    let steps = image_steps(layout, grid[1], &kept);
    let max_tokens = steps.len();
    let constraint: MakeConstraint = Box::new(move || Box::new(Script::new(steps.clone())));
    let decoder = layout.clone();
    let finish: Finish = Box::new(move |tokens, _| {
        let codes = decoder.grid(strip(tokens)?, grid)?;
        Ok(TaskOutput::Media(Media::Image(scaled(
            decoder.decode(&codes)?,
            pixels,
        )?)))
    });
    Ok(media_plan(
        sampling(pack, task, options, max_tokens),
        prompt,
        guidance,
        constraint,
        finish,
    ))
}

/// The tokens between a block's markers.
fn strip(tokens: &[u32]) -> Result<&[u32]> {
    match tokens {
        [_, inner @ .., _] => Ok(inner),
        _ => Err(PipelineError::Request(
            "the generated block is empty".into(),
        )),
    }
}

fn speech(pack: &Pack, options: &TaskOptions) -> Result<Plan> {
    let task = TaskName::TextToSpeech;
    let layout = pack
        .audio
        .as_ref()
        .ok_or_else(|| PipelineError::Request("the pack has no audio modality".into()))?;
    if options.prompt.trim().is_empty() {
        return Err(PipelineError::Request(
            "prompt: text-to-speech needs the text to say".into(),
        ));
    }
    let word_markers = pack
        .manifest
        .modalities
        .audio
        .as_ref()
        .map(|a| a.word_markers.clone())
        .unwrap_or_default();
    // The prompt's words, read once: the prompt's phonemes and the
    // constraint's word openings both follow them.
    let said = pack.phonemizer.as_ref().map(|p| p.words(&options.prompt));
    let word_plan = said
        .as_deref()
        .map(|said| layout.word_plan(said))
        .unwrap_or_default();
    let mut blocks = Blocks::default();
    let mut vars = Vars {
        prompt: options.prompt.clone(),
        speed: options.speed,
        phonemes: said
            .as_deref()
            .map(|said| encoders::speech_text::marked(said, &word_markers))
            .unwrap_or_default(),
        ..Vars::default()
    };
    let voice = match &options.voice {
        Some(name) => Some(name.clone()),
        None if pack.manifest.voices.contains_key("default") => Some("default".into()),
        None => pack.manifest.voices.keys().next().cloned(),
    };
    if let Some(name) = voice {
        let (voice, path) = pack.voice(&name)?;
        if let Some(path) = path {
            let audio = modalities::Audio::read(&path, &modalities::Limits::default())?;
            vars.voice_audio = blocks.add(pack, &Media::Audio(audio))?;
        }
        vars.voice_text = voice.text.clone();
        vars.voice = name;
    }
    let prompt = vars.render(pack, task, &blocks)?;
    let seconds = options
        .seconds
        .unwrap_or(pack.defaults().max_speech_seconds);
    let per_frame = layout.samples_per_frame() as f64 / f64::from(layout.sample_rate);
    let max_frames = ((seconds / per_frame).ceil() as usize).max(1);
    let positions: Vec<_> = (0..layout.frame_len())
        .map(|p| layout.position_range(p))
        .collect();
    let (begin, end) = (layout.begin, layout.end);
    let openings: usize = word_plan.iter().map(|o| o.tokens.len()).sum();
    let max_tokens = 2 + max_frames * layout.frame_len() + openings;
    let fold = layout.openings();
    let silent = layout.silent.clone();
    let constraint: MakeConstraint = Box::new(move || {
        Box::new(
            AudioFrames::new(begin, end, positions.clone(), max_frames, word_plan.clone())
                .folding(fold.clone())
                .silencing(silent.clone()),
        )
    });
    let decoder = layout.clone();
    let speed = options.speed;
    let rate = pack.defaults().audio_rate;
    let finish: Finish = Box::new(move |tokens, _| {
        let audio = decoder.decode(&decoder.codes(strip(tokens)?)?)?;
        let audio = if speed == 1.0 {
            audio
        } else {
            audio.time_stretched(f64::from(speed))?
        };
        let audio = match rate {
            Some(rate) if rate != audio.sample_rate => audio.resample(rate)?,
            _ => audio,
        };
        Ok(TaskOutput::Media(Media::Audio(audio)))
    });
    Ok(media_plan(
        sampling(pack, task, options, max_tokens),
        prompt,
        None,
        constraint,
        finish,
    ))
}

/// `text-to-video` and `image-to-video`: frames one after another, each
/// conditioned on the codes of those before it.
fn video(pack: &Pack, task: TaskName, options: &TaskOptions, inputs: &TaskInputs) -> Result<Plan> {
    let layout = image_layout(pack)?;
    let markers = pack
        .video
        .as_ref()
        .ok_or_else(|| PipelineError::Request("the pack has no video modality".into()))?;
    let (grid, pixels) = image_geometry(pack, layout, options)?;
    let fps = pack.defaults().video_fps.to_rational()?;
    let seconds = options.seconds.unwrap_or(pack.defaults().video_seconds);
    let frames = ((seconds * fps.as_f64()).round() as usize).max(1);
    let max_frames = encoders::CodecLimits::default().max_frames;
    if frames > max_frames {
        return Err(PipelineError::Request(format!(
            "seconds: {seconds} s at {} fps is {frames} frames, over the limit of {max_frames}",
            fps.as_f64()
        )));
    }
    let mut blocks = Blocks::default();
    let mut vars = Vars {
        prompt: options.prompt.clone(),
        seconds,
        speed: options.speed,
        ..Vars::default()
    };
    let mut first_frame = vec![None; grid[0] * grid[1]];
    if task == TaskName::ImageToVideo {
        let source = layout.encode(need(&inputs.image, "an image (--image)", task)?, grid)?;
        for (k, &code) in first_frame.iter_mut().zip(source.codes.iter().flatten()) {
            *k = Some(layout.first + code);
        }
        vars.image = blocks.add_tokens(layout.tokens(&source));
    }
    let prompt = vars.render(pack, task, &blocks)?;
    let free = vec![None; grid[0] * grid[1]];
    let mut steps = vec![Allowed::token(markers.begin)];
    for f in 0..frames {
        let kept = if f == 0 { &first_frame } else { &free };
        steps.extend(image_steps(layout, grid[1], kept));
    }
    steps.push(Allowed::token(markers.end));
    let max_tokens = steps.len();
    let constraint: MakeConstraint = Box::new(move || Box::new(Script::new(steps.clone())));
    let decoder = layout.clone();
    let block = layout.block_len(grid);
    let finish: Finish = Box::new(move |tokens, _| {
        let images = strip(tokens)?
            .chunks(block)
            .map(|frame| scaled(decoder.decode(&decoder.grid(strip(frame)?, grid)?)?, pixels))
            .collect::<Result<Vec<Image>>>()?;
        Ok(TaskOutput::Media(Media::Video(Video::new(
            fps, images, None,
        )?)))
    });
    Ok(media_plan(
        sampling(pack, task, options, max_tokens),
        prompt,
        None,
        constraint,
        finish,
    ))
}

fn mesh(runner: &Runner, options: &TaskOptions) -> Result<Plan> {
    let pack = &*runner.pack;
    let task = TaskName::TextToMesh;
    let layout = pack
        .mesh
        .as_ref()
        .ok_or_else(|| PipelineError::Request("the pack has no mesh modality".into()))?;
    let vars = Vars {
        prompt: options.prompt.clone(),
        speed: options.speed,
        ..Vars::default()
    };
    let prompt = vars.render(pack, task, &Blocks::default())?;
    let max_faces = pack.defaults().max_mesh_faces;
    let (constraint, max_tokens, finish): (MakeConstraint, usize, Finish) = match *layout {
        MeshLayout::Vocab {
            bins,
            frame,
            first,
            begin,
            end,
        } => (
            Box::new(move || {
                Box::new(MeshFaces::new(
                    begin,
                    end,
                    first,
                    bins,
                    max_faces,
                    frame.header_len(),
                ))
            }),
            2 + frame.header_len() + 9 * max_faces,
            Box::new(move |tokens, _| {
                let coords: Vec<u32> = strip(tokens)?.iter().map(|t| t - first).collect();
                let mesh =
                    QuantizedMesh::from_tokens_in(bins, &coords, frame)?.to_mesh_in(frame)?;
                Ok(TaskOutput::Media(Media::Mesh(mesh)))
            }),
        ),
        MeshLayout::Text { bins, frame } => {
            let tokens = runner.obj_tokens();
            let end = pack.model.tokenizer.eos_ids().to_vec();
            let tokenizer = pack.model.tokenizer.clone();
            if end.is_empty() {
                return Err(PipelineError::Request(
                    "text-to-mesh: the text layout ends at end-of-sequence, and the tokenizer names none".into(),
                ));
            }
            // Every character may be its own token: the longest text the
            // grammar allows bounds the tokens.
            let digits = |n: usize| n.to_string().len();
            let max_vertices = 3 * max_faces;
            let chars = max_vertices * (2 + 3 * (digits(bins as usize) + 1))
                + max_faces * (2 + 3 * (digits(max_vertices) + 1));
            // The bound is loose (real tokens hold several characters):
            // capped at the context, a mesh that does not end in time is
            // reported as incomplete.
            let room = runner
                .engine
                .config()
                .max_context
                .saturating_sub(prompt.len() + 1);
            (
                Box::new(move || {
                    Box::new(ObjText::new(tokens.clone(), end.clone(), bins, max_faces))
                }),
                (chars + 1).min(room).max(1),
                Box::new(move |tokens, _| {
                    // Media requests skip streaming text; the tokens decode here.
                    let text = tokenizer.decode(tokens, true)?;
                    let mesh = encoders::mesh::from_obj_text(&text, bins)?.to_mesh_in(frame)?;
                    Ok(TaskOutput::Media(Media::Mesh(mesh)))
                }),
            )
        }
    };
    Ok(media_plan(
        sampling(pack, task, options, max_tokens),
        prompt,
        None,
        constraint,
        finish,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_cells_average_each_cell() {
        // A 4x2 mask: left half white, right half black.
        let mut pixels = Vec::new();
        for _y in 0..2 {
            for x in 0..4 {
                let v = if x < 2 { 255 } else { 0 };
                pixels.extend([v, v, v]);
            }
        }
        let mask = Image::new(4, 2, 3, pixels).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(mask_cells(Some(&mask), [1, 2]), vec![true, false]);
        assert_eq!(
            mask_cells(Some(&mask), [2, 4]),
            vec![true, true, false, false, true, true, false, false]
        );
        assert_eq!(mask_cells(None, [1, 3]), vec![true; 3]);
    }
}
