//! Video as a sequence of image grids: each frame through an image codec,
//! with the exact frame rate kept. Which frames are encoded is the reader's
//! choice (`modalities::Sampling`: every frame, N frames, or a target fps).

use modalities::{Kind, Media, Video};

use crate::codes::{Codes, Fps, VideoCodes};
use crate::error::{CodecError, Result};
use crate::{Codec, Structure};

pub struct VideoCodec {
    frames: Box<dyn Codec>,
    max_frames: usize,
}

impl VideoCodec {
    /// `frames` must be an image codec.
    pub fn new(frames: Box<dyn Codec>, max_frames: usize) -> VideoCodec {
        VideoCodec { frames, max_frames }
    }

    fn check_frames(&self, n: usize) -> Result<()> {
        crate::limits::check("the frame count", n as f64, self.max_frames as f64)
    }
}

impl Codec for VideoCodec {
    fn kind(&self) -> Kind {
        Kind::Video
    }

    fn vocab_size(&self) -> usize {
        self.frames.vocab_size()
    }

    fn structure(&self) -> Structure {
        match self.frames.structure() {
            Structure::Image { downsample } => Structure::Video { downsample },
            other => other,
        }
    }

    fn encode(&self, media: &Media) -> Result<Codes> {
        let Media::Video(video) = media else {
            return Err(CodecError::Input(format!(
                "the video codec encodes video, not {}",
                media.kind()
            )));
        };
        self.check_frames(video.frames.len())?;
        let frames = video
            .frames
            .iter()
            .enumerate()
            .map(
                |(n, frame)| match self.frames.encode(&Media::Image(frame.clone())) {
                    Ok(Codes::Image(codes)) => Ok(codes),
                    Ok(other) => Err(CodecError::Input(format!(
                        "the frame codec produced {} codes",
                        other.kind()
                    ))),
                    Err(e) => Err(CodecError::Input(format!("frame {n}: {e}"))),
                },
            )
            .collect::<Result<Vec<_>>>()?;
        Ok(Codes::Video(VideoCodes {
            fps: Fps::from_rational(video.fps),
            frames,
        }))
    }

    fn decode(&self, codes: &Codes) -> Result<Media> {
        let Codes::Video(v) = codes else {
            return Err(CodecError::Codes(format!(
                "the video codec decodes video codes, not {}",
                codes.kind()
            )));
        };
        self.check_frames(v.frames.len())?;
        let frames = v
            .frames
            .iter()
            .enumerate()
            .map(
                |(n, grid)| match self.frames.decode(&Codes::Image(grid.clone())) {
                    Ok(Media::Image(image)) => Ok(image),
                    Ok(other) => Err(CodecError::Codes(format!(
                        "the frame codec produced {}",
                        other.kind()
                    ))),
                    Err(e) => Err(CodecError::Codes(format!("frame {n}: {e}"))),
                },
            )
            .collect::<Result<Vec<_>>>()?;
        Ok(Media::Video(Video::new(
            v.fps.to_rational()?,
            frames,
            None,
        )?))
    }
}
