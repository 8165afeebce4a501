//! Scenes: one or two shapes on a background, their words and their pixels.
//!
//! Shapes sit on the image codec's 4-pixel patch grid: a measured prototype
//! lost shape identity when shapes were jittered off it.

use modalities::Image;
use serde::Serialize;

use super::vocab::{article, on_background, Colour, Position, Shape, Size};

/// Side of a world image, in pixels.
pub const CANVAS: u32 = 32;
/// Side of the image codec's patches: every edge in the world lies on it.
pub const PATCH: u32 = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Object {
    pub shape: Shape,
    pub colour: Colour,
    pub size: Size,
    pub position: Position,
}

/// A shape's square box on the canvas: left, top, side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub x: u32,
    pub y: u32,
    pub side: u32,
}

impl Bounds {
    pub fn overlaps(&self, other: &Bounds) -> bool {
        self.x < other.x + other.side
            && other.x < self.x + self.side
            && self.y < other.y + other.side
            && other.y < self.y + self.side
    }
}

impl Size {
    pub const fn side(self) -> u32 {
        match self {
            Size::Small => 8,
            Size::Large => 16,
        }
    }
}

impl Object {
    /// "a large red circle at the top left".
    pub fn phrase(&self) -> String {
        format!(
            "{} {} {} {} {}",
            article(self.size.word()),
            self.size,
            self.colour,
            self.shape,
            self.position.phrase()
        )
    }

    /// The box of the shape: the 3 x 3 places of each size spread evenly
    /// over the canvas, on the patch grid.
    pub fn bounds(&self) -> Bounds {
        let side = self.size.side();
        let step = (CANVAS - side) / 2 / PATCH * PATCH;
        let margin = (CANVAS - side - 2 * step) / 2;
        let (row, column) = self.position.cell();
        Bounds {
            x: margin + column as u32 * step,
            y: margin + row as u32 * step,
            side,
        }
    }
}

/// Whether the pixel at `(px, py)` (its centre) lies inside `shape` drawn in `b`.
pub fn covers(shape: Shape, b: Bounds, px: u32, py: u32) -> bool {
    if px < b.x || py < b.y || px >= b.x + b.side || py >= b.y + b.side {
        return false;
    }
    let (x, y) = ((px - b.x) as f32 + 0.5, (py - b.y) as f32 + 0.5);
    let s = b.side as f32;
    match shape {
        Shape::Square => true,
        Shape::Circle => {
            let r = s / 2.0;
            (x - r).powi(2) + (y - r).powi(2) <= r * r
        }
        // Apex at the top centre, base along the bottom edge.
        Shape::Triangle => (x - s / 2.0).abs() <= y / 2.0,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Scene {
    pub background: Colour,
    /// Zero (after a removal), one or two shapes, none overlapping.
    pub objects: Vec<Object>,
}

impl Scene {
    /// "a large red circle at the top left on a blue background".
    pub fn prompt(&self) -> String {
        let shapes: Vec<String> = self.objects.iter().map(Object::phrase).collect();
        let lead = if shapes.is_empty() {
            "nothing".to_string()
        } else {
            shapes.join(" and ")
        };
        format!("{lead} {}", on_background(self.background))
    }

    /// The scene with its shapes in reading order (by place: top left
    /// first), the one order its sentence names them in, so a caption has
    /// one right answer.
    pub fn in_reading_order(mut self) -> Scene {
        self.objects.sort_by_key(|o| o.position.index());
        self
    }

    /// Every shape differs from the background and from the others' boxes.
    pub fn is_valid(&self) -> bool {
        let boxes: Vec<Bounds> = self.objects.iter().map(Object::bounds).collect();
        self.objects.len() <= 2
            && self.objects.iter().all(|o| o.colour != self.background)
            && boxes
                .iter()
                .enumerate()
                .all(|(i, a)| boxes[i + 1..].iter().all(|b| !a.overlaps(b)))
    }

    /// The one object of a shape, when the scene has exactly one.
    pub fn only(&self, shape: Shape) -> Option<usize> {
        let mut found = self
            .objects
            .iter()
            .enumerate()
            .filter(|(_, o)| o.shape == shape);
        match (found.next(), found.next()) {
            (Some((i, _)), None) => Some(i),
            _ => None,
        }
    }

    pub fn render(&self) -> Image {
        let mut pixels = Vec::with_capacity((CANVAS * CANVAS * 3) as usize);
        for py in 0..CANVAS {
            for px in 0..CANVAS {
                let colour = self
                    .objects
                    .iter()
                    .rev()
                    .find(|o| covers(o.shape, o.bounds(), px, py))
                    .map_or(self.background, |o| o.colour);
                pixels.extend(colour.rgb());
            }
        }
        Image {
            width: CANVAS,
            height: CANVAS,
            channels: 3,
            pixels,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(shape: Shape, size: Size, position: Position) -> Object {
        Object {
            shape,
            colour: Colour::Red,
            size,
            position,
        }
    }

    #[test]
    fn boxes_lie_on_the_patch_grid_inside_the_canvas() {
        for &size in Size::ALL {
            for &position in Position::ALL {
                let b = object(Shape::Square, size, position).bounds();
                assert_eq!((b.x % PATCH, b.y % PATCH), (0, 0), "{size} {position}");
                assert!(b.x + b.side <= CANVAS && b.y + b.side <= CANVAS);
            }
        }
        let small = object(Shape::Square, Size::Small, Position::TopLeft).bounds();
        let large = object(Shape::Square, Size::Large, Position::BottomRight).bounds();
        assert_eq!((small.x, small.y, large.x, large.y), (0, 0, 16, 16));
    }

    #[test]
    fn prompts_read_as_the_issue_writes_them() {
        let scene = Scene {
            background: Colour::Blue,
            objects: vec![Object {
                shape: Shape::Circle,
                colour: Colour::Red,
                size: Size::Large,
                position: Position::TopLeft,
            }],
        };
        assert_eq!(
            scene.prompt(),
            "a large red circle at the top left on a blue background"
        );
    }

    #[test]
    fn shapes_cover_what_their_names_say() {
        let b = Bounds {
            x: 0,
            y: 0,
            side: 16,
        };
        let area = |shape| {
            (0..16)
                .flat_map(|y| (0..16).map(move |x| (x, y)))
                .filter(|&(x, y)| covers(shape, b, x, y))
                .count()
        };
        assert_eq!(area(Shape::Square), 256);
        // pi r^2 = 201 and half the box = 128, within a pixel row.
        assert!(
            (190..=212).contains(&area(Shape::Circle)),
            "{}",
            area(Shape::Circle)
        );
        assert!(
            (120..=140).contains(&area(Shape::Triangle)),
            "{}",
            area(Shape::Triangle)
        );
        // The triangle's apex is at the top, its base at the bottom.
        assert!(!covers(Shape::Triangle, b, 1, 1) && covers(Shape::Triangle, b, 1, 15));
    }

    #[test]
    fn rendering_paints_the_background_and_the_shape() {
        let scene = Scene {
            background: Colour::Blue,
            objects: vec![object(Shape::Square, Size::Small, Position::Center)],
        };
        let image = scene.render();
        let at = |x: u32, y: u32| {
            let i = ((y * CANVAS + x) * 3) as usize;
            [image.pixels[i], image.pixels[i + 1], image.pixels[i + 2]]
        };
        assert_eq!(at(0, 0), Colour::Blue.rgb());
        assert_eq!(at(15, 15), Colour::Red.rgb());
        let crowded = Scene {
            background: Colour::Blue,
            objects: vec![
                object(Shape::Square, Size::Large, Position::TopLeft),
                object(Shape::Circle, Size::Large, Position::Center),
            ],
        };
        assert!(!crowded.is_valid(), "overlapping boxes");
    }
}
