//! File formats, detected from content; the file name is only a hint for
//! formats without a signature (binary STL) and for choosing an output.

use std::fmt;
use std::path::Path;

use serde::Serialize;

use crate::Kind;

/// A container or file format anyforge reads or writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Text,
    Png,
    Jpeg,
    Webp,
    Gif,
    Bmp,
    Wav,
    Flac,
    Mp3,
    Ogg,
    Opus,
    Aac,
    /// ISO base media: MP4, MOV, M4A, 3GP.
    Mp4,
    /// Matroska and WebM.
    Matroska,
    /// WebM as an output (Matroska subset with VP9 and Opus).
    Webm,
    Avi,
    Obj,
    Ply,
    Stl,
    Glb,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Format::Text => "text",
            Format::Png => "png",
            Format::Jpeg => "jpeg",
            Format::Webp => "webp",
            Format::Gif => "gif",
            Format::Bmp => "bmp",
            Format::Wav => "wav",
            Format::Flac => "flac",
            Format::Mp3 => "mp3",
            Format::Ogg => "ogg",
            Format::Opus => "opus",
            Format::Aac => "aac",
            Format::Mp4 => "mp4",
            Format::Matroska => "matroska",
            Format::Webm => "webm",
            Format::Avi => "avi",
            Format::Obj => "obj",
            Format::Ply => "ply",
            Format::Stl => "stl",
            Format::Glb => "glb",
        };
        f.write_str(name)
    }
}

/// How many leading bytes `detect` looks at.
pub const SNIFF_BYTES: usize = 4096;

impl Format {
    /// The modality a file of this format holds, when the format alone says.
    /// MP4 and Matroska hold audio or video; the streams decide (see `probe`).
    pub fn kind(self) -> Option<Kind> {
        match self {
            Format::Text => Some(Kind::Text),
            Format::Png | Format::Jpeg | Format::Webp | Format::Gif | Format::Bmp => {
                Some(Kind::Image)
            }
            Format::Wav | Format::Flac | Format::Mp3 | Format::Ogg | Format::Opus | Format::Aac => {
                Some(Kind::Audio)
            }
            Format::Avi | Format::Webm => Some(Kind::Video),
            Format::Mp4 | Format::Matroska => None,
            Format::Obj | Format::Ply | Format::Stl | Format::Glb => Some(Kind::Mesh),
        }
    }

    /// The output format and modality named by a file extension.
    pub fn for_output(path: &Path) -> Option<(Format, Kind)> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        let pair = match ext.as_str() {
            "txt" => (Format::Text, Kind::Text),
            "png" => (Format::Png, Kind::Image),
            "jpg" | "jpeg" => (Format::Jpeg, Kind::Image),
            "webp" => (Format::Webp, Kind::Image),
            "bmp" => (Format::Bmp, Kind::Image),
            "wav" => (Format::Wav, Kind::Audio),
            "flac" => (Format::Flac, Kind::Audio),
            "mp3" => (Format::Mp3, Kind::Audio),
            "opus" | "ogg" => (Format::Opus, Kind::Audio),
            "aac" => (Format::Aac, Kind::Audio),
            "m4a" => (Format::Mp4, Kind::Audio),
            "mp4" => (Format::Mp4, Kind::Video),
            "webm" => (Format::Webm, Kind::Video),
            "obj" => (Format::Obj, Kind::Mesh),
            "ply" => (Format::Ply, Kind::Mesh),
            "stl" => (Format::Stl, Kind::Mesh),
            "glb" => (Format::Glb, Kind::Mesh),
            _ => return None,
        };
        Some(pair)
    }

    /// Detects the format from the first bytes of a file (`head`, up to
    /// `SNIFF_BYTES`) and its total length. `ext` (lower case, no dot) is
    /// consulted only for formats that carry no signature.
    pub fn detect(head: &[u8], total_len: u64, ext: Option<&str>) -> Option<Format> {
        let at =
            |offset: usize, magic: &[u8]| head.get(offset..offset + magic.len()) == Some(magic);
        if at(0, b"\x89PNG\r\n\x1a\n") {
            return Some(Format::Png);
        }
        if at(0, b"\xff\xd8\xff") {
            return Some(Format::Jpeg);
        }
        if at(0, b"GIF87a") || at(0, b"GIF89a") {
            return Some(Format::Gif);
        }
        if at(0, b"RIFF") || at(0, b"RF64") || at(0, b"BW64") {
            if at(8, b"WEBP") {
                return Some(Format::Webp);
            }
            if at(8, b"WAVE") {
                return Some(Format::Wav);
            }
            if at(8, b"AVI ") {
                return Some(Format::Avi);
            }
            return None;
        }
        if at(0, b"BM") && head.len() >= 26 {
            return Some(Format::Bmp);
        }
        if at(0, b"fLaC") {
            return Some(Format::Flac);
        }
        if at(0, b"OggS") {
            return Some(if contains(head, b"OpusHead") {
                Format::Opus
            } else {
                Format::Ogg
            });
        }
        if at(0, b"\x1a\x45\xdf\xa3") {
            return Some(Format::Matroska);
        }
        if at(0, b"glTF") {
            return Some(Format::Glb);
        }
        if [b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip"]
            .iter()
            .any(|m| at(4, *m))
        {
            return Some(Format::Mp4);
        }
        if at(0, b"ID3") {
            return Some(Format::Mp3);
        }
        if head.len() >= 2 && head[0] == 0xff {
            // 11-bit MPEG frame sync; the layer bits tell ADTS AAC (00) from MP3.
            if head[1] & 0xf6 == 0xf0 {
                return Some(Format::Aac);
            }
            if head[1] & 0xe0 == 0xe0 && head[1] & 0x06 != 0 {
                return Some(Format::Mp3);
            }
        }
        if at(0, b"ply\n") || at(0, b"ply\r\n") {
            return Some(Format::Ply);
        }
        // Binary STL has no signature: an 80-byte header, a triangle count and
        // 50 bytes per triangle. The exact size is the signature.
        if total_len >= 84 && head.len() >= 84 {
            let count = u32::from_le_bytes([head[80], head[81], head[82], head[83]]);
            if 84 + 50 * u64::from(count) == total_len && !looks_like_text(head) {
                return Some(Format::Stl);
            }
        }
        if looks_like_text(head) {
            let text = String::from_utf8_lossy(head);
            if text.trim_start().starts_with("solid") && text.contains("facet") {
                return Some(Format::Stl);
            }
            if looks_like_obj(&text) {
                return Some(Format::Obj);
            }
            return Some(Format::Text);
        }
        // Formats with no signature: trust the extension, and let the reader
        // report what is wrong with the content.
        match ext {
            Some("stl") => Some(Format::Stl),
            _ => None,
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// UTF-8 (allowing a code point cut at the end of the sniffed window) with no
/// control characters other than whitespace.
fn looks_like_text(head: &[u8]) -> bool {
    let valid = match std::str::from_utf8(head) {
        Ok(s) => s,
        Err(e) if e.error_len().is_none() => match std::str::from_utf8(&head[..e.valid_up_to()]) {
            Ok(s) => s,
            Err(_) => return false,
        },
        Err(_) => return false,
    };
    !valid
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t' | '\x0c'))
}

/// The first statement of an OBJ file is one of its keywords.
fn looks_like_obj(text: &str) -> bool {
    const KEYWORDS: [&str; 12] = [
        "v", "vt", "vn", "vp", "f", "l", "p", "o", "g", "s", "mtllib", "usemtl",
    ];
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .take(8)
        .any(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|w| KEYWORDS.contains(&w))
        })
        && text.lines().any(|l| l.trim_start().starts_with("v "))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn signatures() {
        assert_eq!(
            Format::detect(b"\x89PNG\r\n\x1a\n....", 100, None),
            Some(Format::Png)
        );
        assert_eq!(
            Format::detect(b"RIFF\0\0\0\0WAVEfmt ", 100, None),
            Some(Format::Wav)
        );
        assert_eq!(
            Format::detect(b"RIFF\0\0\0\0WEBPVP8 ", 100, None),
            Some(Format::Webp)
        );
        assert_eq!(
            Format::detect(b"\0\0\0\x20ftypisom", 100, None),
            Some(Format::Mp4)
        );
        assert_eq!(
            Format::detect(b"\xff\xfb\x90\x00", 100, None),
            Some(Format::Mp3)
        );
        assert_eq!(
            Format::detect(b"\xff\xf1\x50\x80", 100, None),
            Some(Format::Aac)
        );
        assert_eq!(
            Format::detect(b"ply\nformat ascii 1.0\n", 100, None),
            Some(Format::Ply)
        );
        assert_eq!(
            Format::detect(b"# cube\nv 0 0 0\nf 1 2 3\n", 30, None),
            Some(Format::Obj)
        );
        assert_eq!(
            Format::detect(b"solid x\n facet normal 0 0 1\n", 30, None),
            Some(Format::Stl)
        );
        assert_eq!(Format::detect(b"hello world", 11, None), Some(Format::Text));
    }

    #[test]
    fn playlist_named_mp4_is_text_not_video() {
        let m3u = b"#EXTM3U\n#EXTINF:10,\nhttp://example.com/a.ts\n";
        assert_eq!(
            Format::detect(m3u, m3u.len() as u64, Some("mp4")),
            Some(Format::Text)
        );
    }

    #[test]
    fn binary_stl_by_exact_size() {
        let mut stl = vec![0u8; 84 + 50];
        stl[80] = 1;
        assert_eq!(
            Format::detect(&stl, stl.len() as u64, None),
            Some(Format::Stl)
        );
        // Wrong size, no extension: unknown.
        assert_eq!(Format::detect(&stl, stl.len() as u64 + 1, None), None);
    }
}
