//! Discrete codes on disk: one JSON shape per kind (docs/codes.md).
//!
//! Parsing checks the shape (rectangular grids, non-empty, one list per
//! level); each codec then checks the values against its own code range.

use std::path::Path;

use modalities::Kind;
use serde::{Deserialize, Serialize};

use crate::error::{CodecError, Result};

/// An image's codes: `height` rows of `width` codes, row-major.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageCodes {
    pub height: usize,
    pub width: usize,
    pub codes: Vec<Vec<u32>>,
}

/// Audio codes: one list per codebook level, coarsest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AudioCodes {
    pub sample_rate: u32,
    pub codes: Vec<Vec<u32>>,
    /// Where these codes begin in a longer stream, in codes of the coarsest
    /// level (0 for a whole utterance). A decoder whose output depends on
    /// absolute time (SNAC's seeded noise) uses it, so a stream decoded in
    /// chunks matches the whole.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Video codes: the frame rate and one image grid per frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VideoCodes {
    /// Frames per second, exact when written as `"num/den"`.
    pub fps: Fps,
    pub frames: Vec<ImageCodes>,
}

/// A frame rate as JSON writes it: a number (`25`, `29.97`) or an exact
/// fraction (`"30000/1001"`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Fps {
    Number(f64),
    #[serde(with = "fraction")]
    Fraction(u32, u32),
}

mod fraction {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(num: &u32, den: &u32, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{num}/{den}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<(u32, u32), D::Error> {
        let text = String::deserialize(d)?;
        let (n, m) = text
            .split_once('/')
            .ok_or_else(|| D::Error::custom(format!("fps {text:?} is not num/den")))?;
        let parse = |v: &str| {
            v.trim()
                .parse::<u32>()
                .map_err(|_| D::Error::custom(format!("fps {text:?} is not num/den")))
        };
        Ok((parse(n)?, parse(m)?))
    }
}

/// A mesh as a token sequence (see `mesh`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshCodes {
    pub bins: u32,
    pub tokens: Vec<u32>,
}

/// Text as token ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TextCodes {
    pub ids: Vec<u32>,
}

/// Codes of any kind, tagged by `"kind"` in JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Codes {
    Text(TextCodes),
    Image(ImageCodes),
    Audio(AudioCodes),
    Video(VideoCodes),
    Mesh(MeshCodes),
}

impl Codes {
    /// The image grid, for an image codec; an error naming the kind otherwise.
    pub fn image(&self) -> Result<&ImageCodes> {
        match self {
            Codes::Image(grid) => Ok(grid),
            other => Err(CodecError::Codes(format!(
                "an image codec decodes image codes, not {}",
                other.kind()
            ))),
        }
    }

    /// The audio levels, for an audio codec; an error naming the kind otherwise.
    pub fn audio(&self) -> Result<&AudioCodes> {
        match self {
            Codes::Audio(levels) => Ok(levels),
            other => Err(CodecError::Codes(format!(
                "an audio codec decodes audio codes, not {}",
                other.kind()
            ))),
        }
    }

    pub fn kind(&self) -> Kind {
        match self {
            Codes::Text(_) => Kind::Text,
            Codes::Image(_) => Kind::Image,
            Codes::Audio(_) => Kind::Audio,
            Codes::Video(_) => Kind::Video,
            Codes::Mesh(_) => Kind::Mesh,
        }
    }

    /// Parses and checks the shape (not the code range, which is the codec's).
    pub fn from_json(text: &str) -> Result<Codes> {
        let codes: Codes =
            serde_json::from_str(text).map_err(|e| CodecError::Codes(format!("{e}")))?;
        codes.check_shape()?;
        Ok(codes)
    }

    /// Reads a codes file, refusing files over `max_bytes` before reading.
    pub fn read(path: &Path, max_bytes: u64) -> Result<Codes> {
        let io = |e| modalities::MediaError::io(path, e);
        let size = std::fs::metadata(path).map_err(io)?.len();
        if size > max_bytes {
            return Err(CodecError::Codes(format!(
                "{}: {size} bytes is over the limit of {max_bytes}",
                path.display()
            )));
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        Codes::from_json(&text).map_err(|e| match e {
            CodecError::Codes(why) => CodecError::Codes(format!("{}: {why}", path.display())),
            other => other,
        })
    }

    pub fn to_json(&self) -> String {
        // Serialising plain structs of numbers cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Writes atomically (temp file beside the destination, then rename).
    pub fn write(&self, path: &Path) -> Result<()> {
        Ok(modalities::write_atomic(path, self.to_json().as_bytes())?)
    }

    fn check_shape(&self) -> Result<()> {
        match self {
            Codes::Text(t) if t.ids.is_empty() => Err(CodecError::Codes("no text ids".into())),
            Codes::Image(i) => i.check_shape(),
            Codes::Audio(a) => {
                if a.codes.is_empty() || a.codes.iter().any(|l| l.is_empty()) {
                    return Err(CodecError::Codes(
                        "audio codes need at least one non-empty level".into(),
                    ));
                }
                if a.sample_rate == 0 {
                    return Err(CodecError::Codes("sample_rate must be positive".into()));
                }
                Ok(())
            }
            Codes::Video(v) => {
                if v.frames.is_empty() {
                    return Err(CodecError::Codes("video codes have no frames".into()));
                }
                v.fps.check()?;
                for (n, f) in v.frames.iter().enumerate() {
                    f.check_shape()
                        .map_err(|e| CodecError::Codes(format!("frame {n}: {e}")))?;
                }
                Ok(())
            }
            Codes::Mesh(m) if m.tokens.is_empty() => {
                Err(CodecError::Codes("no mesh tokens".into()))
            }
            _ => Ok(()),
        }
    }
}

impl ImageCodes {
    pub fn check_shape(&self) -> Result<()> {
        if self.height == 0 || self.width == 0 {
            return Err(CodecError::Codes("an image grid must not be empty".into()));
        }
        if self.codes.len() != self.height {
            return Err(CodecError::Codes(format!(
                "height is {} but there are {} rows",
                self.height,
                self.codes.len()
            )));
        }
        if let Some((r, row)) = self
            .codes
            .iter()
            .enumerate()
            .find(|(_, row)| row.len() != self.width)
        {
            return Err(CodecError::Codes(format!(
                "row {r} has {} codes, expected width {}",
                row.len(),
                self.width
            )));
        }
        Ok(())
    }

    /// The codes row-major in one list.
    pub fn flat(&self) -> Vec<u32> {
        self.codes.iter().flatten().copied().collect()
    }
}

impl Fps {
    pub fn check(&self) -> Result<()> {
        let ok = match *self {
            Fps::Number(f) => f.is_finite() && f > 0.0 && f <= 1000.0,
            Fps::Fraction(n, d) => n > 0 && d > 0 && n / d <= 1000,
        };
        if ok {
            Ok(())
        } else {
            Err(CodecError::Codes(format!(
                "fps {self:?} must be positive and at most 1000"
            )))
        }
    }

    /// As an exact rational, approximating decimals to 1/1000 (29.97 becomes
    /// 30000/1001, the NTSC rate it stands for).
    pub fn to_rational(self) -> Result<modalities::Rational> {
        self.check()?;
        let (n, d) = match self {
            Fps::Fraction(n, d) => (n, d),
            Fps::Number(f) if (f - f.round()).abs() < 1e-9 => (f.round() as u32, 1),
            Fps::Number(f) => {
                // 23.976, 29.97, 59.94: the NTSC rates n*1000/1001.
                let ntsc = (f * 1.001).round();
                if (ntsc * 1000.0 / 1001.0 - f).abs() < 0.005 {
                    (ntsc as u32 * 1000, 1001)
                } else {
                    ((f * 1000.0).round() as u32, 1000)
                }
            }
        };
        Ok(modalities::Rational::new(n, d)?)
    }

    pub fn from_rational(r: modalities::Rational) -> Fps {
        if r.den == 1 {
            Fps::Number(f64::from(r.num))
        } else {
            Fps::Fraction(r.num, r.den)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_through_json() {
        for text in [
            r#"{"kind":"image","height":2,"width":3,"codes":[[1,2,3],[4,5,6]]}"#,
            r#"{"kind":"audio","sample_rate":24000,"codes":[[1,2],[3,4,5,6]]}"#,
            r#"{"kind":"video","fps":25.0,"frames":[{"height":1,"width":1,"codes":[[7]]}]}"#,
            r#"{"kind":"video","fps":"30000/1001","frames":[{"height":1,"width":1,"codes":[[7]]}]}"#,
            r#"{"kind":"mesh","bins":128,"tokens":[1,2,3]}"#,
            r#"{"kind":"text","ids":[5,6]}"#,
        ] {
            let codes = Codes::from_json(text).unwrap();
            assert_eq!(codes.to_json(), text);
        }
    }

    #[test]
    fn malformed_shapes_name_the_problem() {
        for (text, want) in [
            (
                r#"{"kind":"image","height":2,"width":3,"codes":[[1,2,3]]}"#,
                "2 but there are 1 rows",
            ),
            (
                r#"{"kind":"image","height":1,"width":3,"codes":[[1,2]]}"#,
                "row 0 has 2 codes",
            ),
            (
                r#"{"kind":"image","height":0,"width":0,"codes":[]}"#,
                "must not be empty",
            ),
            (
                r#"{"kind":"audio","sample_rate":24000,"codes":[]}"#,
                "non-empty level",
            ),
            (
                r#"{"kind":"video","fps":0,"frames":[{"height":1,"width":1,"codes":[[7]]}]}"#,
                "fps",
            ),
            (r#"{"kind":"video","fps":25,"frames":[]}"#, "no frames"),
            (
                r#"{"kind":"mesh","bins":128,"tokens":[]}"#,
                "no mesh tokens",
            ),
            (r#"{"kind":"sound","ids":[1]}"#, "unknown variant"),
            (r#"{"kind":"text","ids":[-1]}"#, "invalid value"),
        ] {
            let err = Codes::from_json(text).unwrap_err().to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn decimal_rates_become_exact_fractions() {
        let r = Fps::Number(29.97).to_rational().unwrap();
        assert_eq!((r.num, r.den), (30000, 1001));
        let r = Fps::Number(25.0).to_rational().unwrap();
        assert_eq!((r.num, r.den), (25, 1));
        let r = Fps::Number(12.5).to_rational().unwrap();
        assert_eq!((r.num, r.den), (12500, 1000));
    }
}
