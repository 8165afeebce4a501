//! Exact, compact storage of step outputs for the cache: a JSON header that
//! describes the values, then the raw blobs it points to (pixels, samples,
//! vertices). Lossless, unlike the delivery formats (MP4, MP3).

use std::collections::BTreeMap;

use modalities::{Audio, Image, Media, Mesh, Rational, Video};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::types::Value;

const MAGIC: &[u8; 8] = b"AFSTEP01";

#[derive(Serialize, Deserialize)]
enum Stored {
    Text(String),
    Number(f64),
    Integer(i64),
    Boolean(bool),
    Image {
        width: u32,
        height: u32,
        channels: u8,
        pixels: usize,
    },
    Audio {
        rate: u32,
        channels: u16,
        samples: usize,
    },
    Video {
        fps: (u32, u32),
        frames: Vec<Stored>,
        audio: Option<Box<Stored>>,
    },
    Mesh {
        positions: usize,
        triangles: usize,
        normals: Option<usize>,
        uvs: Option<usize>,
        colors: Option<usize>,
    },
    List(Vec<Stored>),
}

struct Writer {
    blobs: Vec<Vec<u8>>,
}

impl Writer {
    fn blob(&mut self, bytes: Vec<u8>) -> usize {
        self.blobs.push(bytes);
        self.blobs.len() - 1
    }

    fn floats<const N: usize>(&mut self, v: &[[f32; N]]) -> usize {
        self.blob(v.iter().flatten().flat_map(|x| x.to_le_bytes()).collect())
    }

    fn value(&mut self, v: &Value) -> Stored {
        match v {
            Value::Text(s) => Stored::Text(s.clone()),
            Value::Number(n) => Stored::Number(*n),
            Value::Integer(n) => Stored::Integer(*n),
            Value::Boolean(b) => Stored::Boolean(*b),
            Value::List(items) => Stored::List(items.iter().map(|i| self.value(i)).collect()),
            Value::Media(m) => self.media(m),
        }
    }

    fn image(&mut self, i: &Image) -> Stored {
        Stored::Image {
            width: i.width,
            height: i.height,
            channels: i.channels,
            pixels: self.blob(i.pixels.clone()),
        }
    }

    fn audio(&mut self, a: &Audio) -> Stored {
        Stored::Audio {
            rate: a.sample_rate,
            channels: a.channels,
            samples: self.blob(a.samples.iter().flat_map(|x| x.to_le_bytes()).collect()),
        }
    }

    fn media(&mut self, m: &Media) -> Stored {
        match m {
            Media::Text(t) => Stored::Text(t.0.clone()),
            Media::Image(i) => self.image(i),
            Media::Audio(a) => self.audio(a),
            Media::Video(v) => Stored::Video {
                fps: (v.fps.num, v.fps.den),
                frames: v.frames.iter().map(|f| self.image(f)).collect(),
                audio: v.audio.as_ref().map(|a| Box::new(self.audio(a))),
            },
            Media::Mesh(mesh) => Stored::Mesh {
                positions: self.floats(&mesh.positions),
                triangles: self.blob(
                    mesh.triangles
                        .iter()
                        .flatten()
                        .flat_map(|x| x.to_le_bytes())
                        .collect(),
                ),
                normals: mesh.normals.as_ref().map(|n| self.floats(n)),
                uvs: mesh.uvs.as_ref().map(|u| self.floats(u)),
                colors: mesh.colors.as_ref().map(|c| self.floats(c)),
            },
        }
    }
}

/// Step outputs as bytes.
pub fn encode(outputs: &BTreeMap<String, Value>) -> Vec<u8> {
    let mut w = Writer { blobs: Vec::new() };
    let header: BTreeMap<&String, Stored> = outputs.iter().map(|(k, v)| (k, w.value(v))).collect();
    let header = serde_json::to_vec(&header).unwrap_or_default();
    let mut out = MAGIC.to_vec();
    out.extend((header.len() as u64).to_le_bytes());
    out.extend(header);
    for blob in w.blobs {
        out.extend((blob.len() as u64).to_le_bytes());
        out.extend(blob);
    }
    out
}

struct Reader {
    blobs: Vec<Vec<u8>>,
}

fn chunks<const N: usize>(bytes: &[u8]) -> Result<Vec<[f32; N]>, String> {
    if !bytes.len().is_multiple_of(4 * N) {
        return Err("a float blob has a partial element".into());
    }
    Ok(bytes
        .chunks_exact(4 * N)
        .map(|c| {
            std::array::from_fn(|i| {
                f32::from_le_bytes([c[4 * i], c[4 * i + 1], c[4 * i + 2], c[4 * i + 3]])
            })
        })
        .collect())
}

impl Reader {
    fn blob(&self, i: usize) -> Result<&[u8], String> {
        self.blobs
            .get(i)
            .map(Vec::as_slice)
            .ok_or_else(|| format!("blob {i} is missing"))
    }

    fn value(&self, s: &Stored) -> Result<Value, String> {
        Ok(match s {
            Stored::Text(t) => Value::Text(t.clone()),
            Stored::Number(n) => Value::Number(*n),
            Stored::Integer(n) => Value::Integer(*n),
            Stored::Boolean(b) => Value::Boolean(*b),
            Stored::List(items) => Value::List(
                items
                    .iter()
                    .map(|i| self.value(i))
                    .collect::<Result<_, _>>()?,
            ),
            Stored::Image { .. } => Value::Media(Media::Image(self.image(s)?)),
            Stored::Audio { .. } => Value::Media(Media::Audio(self.audio(s)?)),
            Stored::Video { fps, frames, audio } => {
                let frames = frames
                    .iter()
                    .map(|f| self.image(f))
                    .collect::<Result<_, _>>()?;
                let audio = audio.as_ref().map(|a| self.audio(a)).transpose()?;
                let fps = Rational::new(fps.0, fps.1).map_err(|e| e.to_string())?;
                Value::Media(Media::Video(
                    Video::new(fps, frames, audio).map_err(|e| e.to_string())?,
                ))
            }
            Stored::Mesh {
                positions,
                triangles,
                normals,
                uvs,
                colors,
            } => {
                let tri = self.blob(*triangles)?;
                let triangles = tri
                    .chunks_exact(12)
                    .map(|c| {
                        std::array::from_fn(|i| {
                            u32::from_le_bytes([c[4 * i], c[4 * i + 1], c[4 * i + 2], c[4 * i + 3]])
                        })
                    })
                    .collect();
                let mut mesh = Mesh::new(chunks::<3>(self.blob(*positions)?)?, triangles)
                    .map_err(|e| e.to_string())?;
                mesh.normals = normals
                    .map(|b| self.blob(b).and_then(chunks::<3>))
                    .transpose()?;
                mesh.uvs = uvs
                    .map(|b| self.blob(b).and_then(chunks::<2>))
                    .transpose()?;
                mesh.colors = colors
                    .map(|b| self.blob(b).and_then(chunks::<4>))
                    .transpose()?;
                Value::Media(Media::Mesh(mesh))
            }
        })
    }

    fn image(&self, s: &Stored) -> Result<Image, String> {
        let Stored::Image {
            width,
            height,
            channels,
            pixels,
        } = s
        else {
            return Err("expected an image".into());
        };
        Image::new(*width, *height, *channels, self.blob(*pixels)?.to_vec())
            .map_err(|e| e.to_string())
    }

    fn audio(&self, s: &Stored) -> Result<Audio, String> {
        let Stored::Audio {
            rate,
            channels,
            samples,
        } = s
        else {
            return Err("expected audio".into());
        };
        let bytes = self.blob(*samples)?;
        let samples = bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Audio::new(*rate, *channels, samples).map_err(|e| e.to_string())
    }
}

/// Step outputs from bytes written by [`encode`].
pub fn decode(bytes: &[u8]) -> Result<BTreeMap<String, Value>, String> {
    let rest = bytes
        .strip_prefix(MAGIC.as_slice())
        .ok_or("not a step output file")?;
    let mut at = 0usize;
    let next = |at: &mut usize, n: usize| -> Result<&[u8], String> {
        let end = at.checked_add(n).ok_or("truncated")?;
        let slice = rest.get(*at..end).ok_or("truncated")?;
        *at = end;
        Ok(slice)
    };
    let len = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as usize;
    let header_len = len(next(&mut at, 8)?);
    let header: BTreeMap<String, Stored> =
        serde_json::from_slice(next(&mut at, header_len)?).map_err(|e| e.to_string())?;
    let mut blobs = Vec::new();
    while at < rest.len() {
        let n = len(next(&mut at, 8)?);
        blobs.push(next(&mut at, n)?.to_vec());
    }
    let reader = Reader { blobs };
    header
        .iter()
        .map(|(k, s)| Ok((k.clone(), reader.value(s)?)))
        .collect()
}

/// Hashes a media value's content (dimensions and samples, not a file).
pub fn digest_media(m: &Media, h: &mut Sha256) {
    let mut w = Writer { blobs: Vec::new() };
    let header = serde_json::to_vec(&w.media(m)).unwrap_or_default();
    h.update(&header);
    for b in &w.blobs {
        h.update((b.len() as u64).to_le_bytes());
        h.update(b);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_exactly() {
        let image = Image::new(2, 1, 3, vec![1, 2, 3, 4, 5, 6]).unwrap();
        let audio = Audio::new(8000, 1, vec![0.25, -0.5, 1.0]).unwrap();
        let video = Video::new(
            Rational::new(30000, 1001).unwrap(),
            vec![image.clone(), image.clone()],
            Some(audio.clone()),
        )
        .unwrap();
        let mesh = Mesh::new(
            vec![[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.5]],
            vec![[0, 1, 2]],
        )
        .unwrap();
        let outputs: BTreeMap<String, Value> = [
            ("a", Value::Text("hi".into())),
            ("b", Value::Number(1.5)),
            ("c", Value::Media(Media::Image(image))),
            ("d", Value::Media(Media::Audio(audio))),
            ("e", Value::Media(Media::Video(video))),
            (
                "f",
                Value::List(vec![Value::Media(Media::Mesh(mesh)), Value::Integer(3)]),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let bytes = encode(&outputs);
        assert_eq!(decode(&bytes).unwrap(), outputs);
        assert!(
            decode(&bytes[..bytes.len() - 3]).is_err(),
            "a truncated file is refused"
        );
    }
}
