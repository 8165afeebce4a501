//! Motion: a small shape sliding one patch per frame across a background.

use modalities::{Image, Rational, Video};
use serde::Serialize;

use super::scene::{covers, Bounds, CANVAS, PATCH};
use super::vocab::{article, on_background, Colour, Direction, Shape, Size};

/// Frames of a motion clip, and their rate (the video codec's 8 fps).
pub const FRAMES: u32 = 6;
pub const FPS: u32 = 8;

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Motion {
    pub shape: Shape,
    pub colour: Colour,
    pub background: Colour,
    pub direction: Direction,
    /// Where the shape's box starts (on the patch grid).
    pub start: (u32, u32),
}

impl Motion {
    /// "a red circle moves left on a blue background".
    pub fn prompt(&self) -> String {
        let colour = self.colour.word();
        format!(
            "{} {colour} {} moves {} {}",
            article(colour),
            self.shape,
            self.direction,
            on_background(self.background)
        )
    }

    /// The box in frame `i`.
    pub fn bounds(&self, i: u32) -> Bounds {
        let (dx, dy) = self.direction.step();
        let travel = (i * PATCH) as i32;
        Bounds {
            x: (self.start.0 as i32 + dx * travel) as u32,
            y: (self.start.1 as i32 + dy * travel) as u32,
            side: Size::Small.side(),
        }
    }

    /// The coordinate across the motion: the middle line of the canvas (on
    /// the grid). One line, not a random one, so the sentence decides the
    /// clip: a model asked for it has one right answer to draw, where a
    /// random line left each place too unlikely for greedy decoding to
    /// draw the shape anywhere.
    pub const ACROSS: u32 = (CANVAS - Size::Small.side()) / 2 / PATCH * PATCH;

    /// Where a clip moving in `direction` starts, `across` being its
    /// coordinate on the other axis: at the edge it moves away from, so
    /// every frame stays on the canvas.
    pub fn starts(direction: Direction, across: u32) -> (u32, u32) {
        let far = CANVAS - Size::Small.side();
        match direction {
            Direction::Left => (far, across),
            Direction::Right => (0, across),
            Direction::Up => (across, far),
            Direction::Down => (across, 0),
        }
    }

    pub fn render(&self) -> Video {
        let frames = (0..FRAMES)
            .map(|i| {
                let b = self.bounds(i);
                let mut pixels = Vec::with_capacity((CANVAS * CANVAS * 3) as usize);
                for py in 0..CANVAS {
                    for px in 0..CANVAS {
                        let c = if covers(self.shape, b, px, py) {
                            self.colour
                        } else {
                            self.background
                        };
                        pixels.extend(c.rgb());
                    }
                }
                Image {
                    width: CANVAS,
                    height: CANVAS,
                    channels: 3,
                    pixels,
                }
            })
            .collect();
        Video {
            width: CANVAS,
            height: CANVAS,
            fps: Rational { num: FPS, den: 1 },
            frames,
            audio: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_frame_stays_on_the_canvas_and_the_grid_moving_the_right_way() {
        for &direction in Direction::ALL {
            let m = Motion {
                shape: Shape::Square,
                colour: Colour::Red,
                background: Colour::Black,
                direction,
                start: Motion::starts(direction, 12),
            };
            let (first, last) = (m.bounds(0), m.bounds(FRAMES - 1));
            for i in 0..FRAMES {
                let b = m.bounds(i);
                assert!(
                    b.x + b.side <= CANVAS && b.y + b.side <= CANVAS,
                    "{direction} {i}"
                );
                assert_eq!((b.x % PATCH, b.y % PATCH), (0, 0));
            }
            let (dx, dy) = direction.step();
            assert_eq!(
                (
                    (last.x as i32 - first.x as i32).signum(),
                    (last.y as i32 - first.y as i32).signum()
                ),
                (dx, dy),
                "{direction}"
            );
        }
        let v = Motion {
            shape: Shape::Circle,
            colour: Colour::Red,
            background: Colour::Blue,
            direction: Direction::Left,
            start: Motion::starts(Direction::Left, 0),
        }
        .render();
        assert_eq!((v.frames.len() as u32, v.fps.num), (FRAMES, FPS));
        assert_eq!(
            v.frames[0].pixels[..3],
            Colour::Blue.rgb(),
            "the top left corner is background"
        );
    }
}
