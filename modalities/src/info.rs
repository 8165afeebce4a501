//! Whole-file operations over any modality: detect, describe, convert.

use std::io::Read;
use std::path::Path;

use serde::Serialize;

use crate::format::SNIFF_BYTES;
use crate::video::Sampling;
use crate::{
    audio, image, mesh, video, Audio, Format, Image, Kind, Limits, MediaError, Mesh, Result, Text,
};

/// A description of a media file, as `anyforge media info` prints it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum MediaInfo {
    Text {
        format: Format,
        bytes: u64,
        chars: usize,
        lines: usize,
    },
    Image(image::ImageInfo),
    Audio(audio::AudioInfo),
    Video(video::VideoInfo),
    Mesh(mesh::MeshInfo),
}

/// Detects a file's format from its content (the extension only breaks ties
/// for formats without a signature) and the modality it holds.
pub fn detect_file(path: &Path, limits: &Limits) -> Result<(Format, Kind)> {
    let mut file = std::fs::File::open(path).map_err(|e| MediaError::io(path, e))?;
    let len = file.metadata().map_err(|e| MediaError::io(path, e))?.len();
    if len == 0 {
        return Err(MediaError::Invalid("the file is empty".into()));
    }
    let mut head = Vec::with_capacity(SNIFF_BYTES);
    file.by_ref()
        .take(SNIFF_BYTES as u64)
        .read_to_end(&mut head)
        .map_err(|e| MediaError::io(path, e))?;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let format = Format::detect(&head, len, ext.as_deref()).ok_or_else(|| {
        MediaError::UnknownFormat(
            "not a text, image, audio, video or mesh format anyforge reads".into(),
        )
    })?;
    let kind = match format.kind() {
        Some(kind) => kind,
        // MP4 and Matroska carry audio or video: the streams decide.
        None => match crate::ffmpeg::probe(path, format, limits)?.video {
            Some(_) => Kind::Video,
            None => Kind::Audio,
        },
    };
    Ok((format, kind))
}

/// Describes a file without keeping its decoded content.
pub fn info(path: &Path, limits: &Limits) -> Result<MediaInfo> {
    let (format, kind) = detect_file(path, limits)?;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    Ok(match kind {
        Kind::Text => {
            let text = Text::read(path, limits)?;
            MediaInfo::Text {
                format,
                bytes: text.0.len() as u64,
                chars: text.0.chars().count(),
                lines: text.0.lines().count(),
            }
        }
        Kind::Image => MediaInfo::Image(image::probe(&crate::read_bounded(path, limits)?, limits)?),
        Kind::Audio => MediaInfo::Audio(audio::probe(
            &crate::read_bounded(path, limits)?,
            Some(path),
            limits,
        )?),
        Kind::Video => MediaInfo::Video(video::probe(path, format, limits)?),
        Kind::Mesh => MediaInfo::Mesh(mesh::probe(
            &crate::read_bounded(path, limits)?,
            ext.as_deref(),
            limits,
        )?),
    })
}

/// Converts within a modality; the output format comes from `output`'s
/// extension. An animated GIF may become a video.
pub fn convert(input: &Path, output: &Path, limits: &Limits) -> Result<()> {
    let (_, out_kind) = Format::for_output(output).ok_or_else(|| {
        MediaError::Unsupported(format!(
            "{}: unknown output extension (txt, png, jpg, webp, bmp, wav, mp3, opus, ogg, aac, m4a, flac, mp4, webm, obj, ply, stl, glb)",
            output.display()
        ))
    })?;
    let (in_format, in_kind) = detect_file(input, limits)?;
    let compatible = in_kind == out_kind || (in_format == Format::Gif && out_kind == Kind::Video);
    if !compatible {
        return Err(MediaError::Unsupported(format!(
            "cannot convert {in_kind} ({in_format}) to {out_kind}"
        )));
    }
    match out_kind {
        Kind::Text => Text::read(input, limits)?.write(output),
        Kind::Image => Image::read(input, limits)?.write(output, None),
        Kind::Audio => Audio::read(input, limits)?.write(output),
        Kind::Video => video::transcode(input, output, limits),
        Kind::Mesh => Mesh::read(input, limits)?.write(output),
    }
}

/// Reads any media file into a value. Video is sampled as asked.
pub fn read_media(path: &Path, sampling: Sampling, limits: &Limits) -> Result<crate::Media> {
    use crate::Media;
    let (_, kind) = detect_file(path, limits)?;
    Ok(match kind {
        Kind::Text => Media::Text(Text::read(path, limits)?),
        Kind::Image => Media::Image(Image::read(path, limits)?),
        Kind::Audio => Media::Audio(Audio::read(path, limits)?),
        Kind::Video => Media::Video(crate::Video::read(path, sampling, limits)?),
        Kind::Mesh => Media::Mesh(Mesh::read(path, limits)?),
    })
}
