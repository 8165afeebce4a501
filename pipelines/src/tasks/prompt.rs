//! Prompts with media in them: a template renders text in which each media
//! value stands as a placeholder; the text between placeholders is
//! tokenized and each placeholder becomes the media's token block.

use modalities::Media;

use crate::error::{PipelineError, Result};
use crate::pack::Pack;

/// Placeholders use private-use characters no tokenizer or user text has.
const OPEN: char = '\u{E000}';
const CLOSE: char = '\u{E001}';

/// Media blocks collected while a prompt is built.
#[derive(Default)]
pub(crate) struct Blocks {
    blocks: Vec<Vec<u32>>,
}

impl Blocks {
    /// Adds a media value's token block and returns its placeholder text.
    pub(crate) fn add(&mut self, pack: &Pack, media: &Media) -> Result<String> {
        let tokens = media_tokens(pack, media)?;
        self.blocks.push(tokens);
        Ok(format!("{OPEN}{}{CLOSE}", self.blocks.len() - 1))
    }

    /// Adds ready-made tokens (codes already encoded).
    pub(crate) fn add_tokens(&mut self, tokens: Vec<u32>) -> String {
        self.blocks.push(tokens);
        format!("{OPEN}{}{CLOSE}", self.blocks.len() - 1)
    }

    /// Tokenizes `rendered`, splicing in the blocks at their placeholders.
    pub(crate) fn splice(&self, pack: &Pack, rendered: &str) -> Result<Vec<u32>> {
        let tokenizer = &pack.model.tokenizer;
        let mut ids = Vec::new();
        let mut rest = rendered;
        while let Some(open) = rest.find(OPEN) {
            ids.extend(tokenizer.encode(&rest[..open], false)?);
            let after = &rest[open + OPEN.len_utf8()..];
            let close = after
                .find(CLOSE)
                .ok_or_else(|| PipelineError::Template("a media placeholder was cut".into()))?;
            let index: usize = after[..close]
                .parse()
                .map_err(|_| PipelineError::Template("a media placeholder was altered".into()))?;
            let block = self.blocks.get(index).ok_or_else(|| {
                PipelineError::Template("a media placeholder names no media".into())
            })?;
            ids.extend(block);
            rest = &after[close + CLOSE.len_utf8()..];
        }
        ids.extend(tokenizer.encode(rest, false)?);
        Ok(ids)
    }
}

/// The token block of a media value in the pack's layout.
pub(crate) fn media_tokens(pack: &Pack, media: &Media) -> Result<Vec<u32>> {
    let missing = |kind: &str| {
        PipelineError::Request(format!(
            "the pack has no {kind} modality to read this input with"
        ))
    };
    match media {
        Media::Image(image) => {
            let layout = pack.image.as_ref().ok_or_else(|| missing("image"))?;
            let codes = layout.encode(image, pack.defaults().image_grid)?;
            Ok(layout.tokens(&codes))
        }
        Media::Audio(audio) => {
            let layout = pack.audio.as_ref().ok_or_else(|| missing("audio"))?;
            Ok(layout.tokens(&layout.encode(audio)?))
        }
        Media::Video(video) => {
            let (Some(frames), Some(layout)) = (&pack.image, &pack.video) else {
                return Err(missing("video"));
            };
            let mut tokens = vec![layout.begin];
            for frame in &video.frames {
                let codes = frames.encode(frame, pack.defaults().image_grid)?;
                tokens.extend(frames.tokens(&codes));
            }
            tokens.push(layout.end);
            Ok(tokens)
        }
        Media::Mesh(mesh) => match pack.mesh.as_ref().ok_or_else(|| missing("mesh"))? {
            crate::pack::MeshLayout::Text { bins, frame } => {
                let text = encoders::mesh::to_obj_text(mesh, *bins, *frame)?;
                pack.model.tokenizer.encode(&text, false)
            }
            crate::pack::MeshLayout::Vocab {
                bins,
                frame,
                first,
                begin,
                end,
            } => {
                let q = encoders::mesh::QuantizedMesh::from_mesh_in(mesh, *bins, *frame)?;
                let mut tokens = vec![*begin];
                tokens.extend(q.tokens().iter().map(|c| first + c));
                tokens.push(*end);
                Ok(tokens)
            }
        },
        Media::Text(text) => pack.model.tokenizer.encode(&text.0, false),
    }
}
