//! Deterministic readers of generated media: what scene an image shows,
//! which way a clip moves, which solid a mesh is. They read the world's
//! own renderings back exactly (tests below), so a wrong reading of a
//! generated picture is the model's mistake, not the reader's.

use modalities::{Image, Mesh, Video};

use crate::world::{
    article, covers, on_background, Bounds, Colour, Direction, Object, Position, Proportion, Shape,
    Size, Solid, SolidSpec, CANVAS,
};

/// What an image shows: its background and the shapes on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    pub background: Colour,
    pub objects: Vec<Object>,
}

/// The nearest world colour of a pixel.
fn colour_of(rgb: &[u8]) -> Colour {
    let distance = |c: Colour| -> i32 {
        c.rgb()
            .iter()
            .zip(rgb)
            .map(|(&a, &b)| (i32::from(a) - i32::from(b)).pow(2))
            .sum()
    };
    Colour::ALL
        .iter()
        .copied()
        .min_by_key(|&c| distance(c))
        .unwrap_or(Colour::Black)
}

/// The image at the world's canvas size (generated images may be scaled up).
fn canvas(image: &Image) -> Option<Image> {
    if image.channels < 3 {
        return None;
    }
    image.resized_nearest(CANVAS, CANVAS).ok()
}

/// Reads the scene of `image`: the shapes of each region are the world
/// objects (at the scene's places) that cover it best.
pub fn read_scene(image: &Image) -> Option<Reading> {
    let (background, regions) = regions(&pixel_colours(image)?)?;
    let objects = regions
        .iter()
        .flat_map(|(colour, region)| placed_objects(region, CANVAS as usize, *colour))
        .collect();
    Some(Reading {
        background,
        objects,
    })
}

/// The nearest world colour of each pixel of the image at canvas size.
fn pixel_colours(image: &Image) -> Option<Vec<Colour>> {
    let image = canvas(image)?;
    let c = image.channels as usize;
    Some(
        (0..(CANVAS * CANVAS) as usize)
            .map(|i| colour_of(&image.pixels[i * c..i * c + 3]))
            .collect(),
    )
}

/// A region of one colour: its pixels' indices on the canvas.
type Region = (Colour, Vec<usize>);

/// A frame's background, its regions and the centre of what is not background.
type FrameReading = (Colour, Vec<Region>, Option<(f32, f32)>);

/// From each pixel's world colour: the most common colour is the
/// background, and each 4-connected region of another colour larger than
/// a few pixels is a region of shapes.
fn regions(colours: &[Colour]) -> Option<(Colour, Vec<Region>)> {
    let n = CANVAS as usize;
    let mut counts = [0usize; 8];
    for col in colours {
        counts[col.index()] += 1;
    }
    let background = Colour::ALL[(0..8).max_by_key(|&i| counts[i])?];
    let mut seen = vec![false; n * n];
    let mut regions = Vec::new();
    for start in 0..n * n {
        if seen[start] || colours[start] == background {
            continue;
        }
        let colour = colours[start];
        let mut region = vec![start];
        seen[start] = true;
        let mut i = 0;
        while i < region.len() {
            let (x, y) = (region[i] % n, region[i] / n);
            i += 1;
            let mut visit = |nx: usize, ny: usize| {
                let j = ny * n + nx;
                if !seen[j] && colours[j] == colour {
                    seen[j] = true;
                    region.push(j);
                }
            };
            if x > 0 {
                visit(x - 1, y);
            }
            if x + 1 < n {
                visit(x + 1, y);
            }
            if y > 0 {
                visit(x, y - 1);
            }
            if y + 1 < n {
                visit(x, y + 1);
            }
        }
        // Stray pixels are noise, not shapes: the smallest world shape
        // (a small triangle) covers 36 pixels.
        if region.len() >= 12 {
            regions.push((colour, region));
        }
    }
    Some((background, regions))
}

/// Pixels where the shapes drawn in `boxes` and `region` disagree.
fn disagreement(inside: &[bool], n: usize, shapes: &[(Shape, Bounds)]) -> usize {
    let mut wrong = 0;
    for y in 0..n {
        for x in 0..n {
            let covered = shapes
                .iter()
                .any(|&(shape, b)| covers(shape, b, x as u32, y as u32));
            wrong += usize::from(covered != inside[y * n + x]);
        }
    }
    wrong
}

fn mask(region: &[usize], n: usize) -> Vec<bool> {
    let mut inside = vec![false; n * n];
    for &i in region {
        inside[i] = true;
    }
    inside
}

/// The world objects (at the scene's places) whose pixels agree best with
/// `region`: one, or two when two shapes of one colour touch.
fn placed_objects(region: &[usize], n: usize, colour: Colour) -> Vec<Object> {
    let inside = mask(region, n);
    let mut candidates = Vec::new();
    for &shape in Shape::ALL {
        for &size in Size::ALL {
            for &position in Position::ALL {
                candidates.push(Object {
                    shape,
                    colour,
                    size,
                    position,
                });
            }
        }
    }
    let drawn = |o: &Object| (o.shape, o.bounds());
    let single = candidates
        .iter()
        .map(|o| (disagreement(&inside, n, &[drawn(o)]), o))
        .min_by_key(|(w, _)| *w);
    let Some((wrong, best)) = single else {
        return Vec::new();
    };
    // Antialiasing-free world shapes match exactly; a poor match may be two.
    if wrong <= 4 {
        return vec![*best];
    }
    let mut pair = (wrong, vec![*best]);
    for (i, a) in candidates.iter().enumerate() {
        for b in &candidates[i + 1..] {
            if a.bounds().overlaps(&b.bounds()) {
                continue;
            }
            let w = disagreement(&inside, n, &[drawn(a), drawn(b)]);
            if w < pair.0 {
                pair = (w, vec![*a, *b]);
            }
        }
    }
    pair.1
}

/// The shape whose drawing in the region's own box agrees best with it
/// (for clips, whose shapes travel between the scene's places).
fn shape_in_box(region: &[usize], n: usize) -> Option<Shape> {
    let inside = mask(region, n);
    let xs = region.iter().map(|i| i % n);
    let ys = region.iter().map(|i| i / n);
    let (x0, x1) = (xs.clone().min()?, xs.max()?);
    let (y0, y1) = (ys.clone().min()?, ys.max()?);
    let side = (x1 - x0 + 1).max(y1 - y0 + 1);
    // Triangles leave their box's top row empty: anchor at the bottom.
    let b = Bounds {
        x: x0 as u32,
        y: (y1 + 1).saturating_sub(side) as u32,
        side: side as u32,
    };
    Shape::ALL
        .iter()
        .copied()
        .min_by_key(|&s| disagreement(&inside, n, &[(s, b)]))
}

/// What a clip shows: its first frame's reading and the direction its one
/// shape moved (from the first to the last frame's centre).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MotionReading {
    pub background: Colour,
    pub shape: Option<Shape>,
    pub colour: Option<Colour>,
    pub direction: Option<Direction>,
    /// Frames that show exactly one shape, of `frames`.
    pub frames_with_one_shape: usize,
    pub frames: usize,
}

impl MotionReading {
    /// The clip in the world's words, as its prompt would say it when
    /// every part was read right ("a red circle moves left on a blue
    /// background"); what was not read is said plainly, so a report's
    /// failure reads "asked -> shown" like a picture's.
    pub fn describe(&self) -> String {
        let thing = match (self.colour, self.shape) {
            (Some(colour), Some(shape)) => format!("{} {colour} {shape}", article(colour.word())),
            (Some(colour), None) => format!("{} {colour} shape", article(colour.word())),
            _ => "no single shape".to_string(),
        };
        let motion = match self.direction {
            Some(direction) => format!("moves {direction}"),
            None => "stays still".to_string(),
        };
        let mut out = format!("{thing} {motion} {}", on_background(self.background));
        if self.frames_with_one_shape < self.frames {
            out.push_str(&format!(
                " (one shape in {} of {} frames)",
                self.frames_with_one_shape, self.frames
            ));
        }
        out
    }
}

pub fn read_motion(video: &Video) -> Option<MotionReading> {
    let readings: Vec<FrameReading> = video
        .frames
        .iter()
        .map(|f| {
            let colours = pixel_colours(f)?;
            let (background, regions) = regions(&colours)?;
            let centre = centre_of(&colours, background);
            Some((background, regions, centre))
        })
        .collect::<Option<_>>()?;
    let (background, first, start) = readings.first()?;
    let (_, _, end) = readings.last()?;
    let direction = match (start, end) {
        (Some((x0, y0)), Some((x1, y1))) => {
            let (dx, dy) = (x1 - x0, y1 - y0);
            if dx.abs().max(dy.abs()) < 2.0 {
                None
            } else if dx.abs() > dy.abs() {
                Some(if dx < 0.0 {
                    Direction::Left
                } else {
                    Direction::Right
                })
            } else {
                Some(if dy < 0.0 {
                    Direction::Up
                } else {
                    Direction::Down
                })
            }
        }
        _ => None,
    };
    let one = first.first().filter(|_| first.len() == 1);
    Some(MotionReading {
        background: *background,
        shape: one.and_then(|(_, region)| shape_in_box(region, CANVAS as usize)),
        colour: one.map(|(c, _)| *c),
        direction,
        frames_with_one_shape: readings.iter().filter(|(_, r, _)| r.len() == 1).count(),
        frames: readings.len(),
    })
}

/// The centre of the pixels that are not the background.
fn centre_of(colours: &[Colour], background: Colour) -> Option<(f32, f32)> {
    let n = CANVAS as usize;
    let (mut sx, mut sy, mut count) = (0f32, 0f32, 0f32);
    for y in 0..n {
        for x in 0..n {
            if colours.get(y * n + x).is_some_and(|&c| c != background) {
                sx += x as f32;
                sy += y as f32;
                count += 1.0;
            }
        }
    }
    (count > 0.0).then(|| (sx / count, sy / count))
}

/// Which solid a mesh is: the proportion from its bounding box (height
/// over width, y up), the class from the nearest of the six reference
/// solids once both are stretched to a unit box (a symmetric Chamfer
/// distance over vertices and face centres).
pub fn read_solid(mesh: &Mesh) -> Option<SolidSpec> {
    let points = shape_points(mesh)?;
    let solid = Solid::ALL
        .iter()
        .copied()
        .filter_map(|solid| {
            let reference = shape_points(
                &SolidSpec {
                    solid,
                    proportion: Proportion::Plain,
                }
                .mesh(),
            )?;
            Some((solid, chamfer(&points, &reference)))
        })
        .min_by(|a, b| a.1.total_cmp(&b.1))?
        .0;
    // Height over width, against the plain solid's own (a plain torus is flat).
    let plain = aspect(
        &SolidSpec {
            solid,
            proportion: Proportion::Plain,
        }
        .mesh(),
    )?;
    let ratio = aspect(mesh)? / plain;
    let proportion = Proportion::ALL.iter().copied().min_by(|a, b| {
        let d = |p: Proportion| (ratio.max(1e-3) / p.height()).ln().abs();
        d(*a).total_cmp(&d(*b))
    })?;
    Some(SolidSpec { solid, proportion })
}

/// Height (y) over the wider horizontal side.
fn aspect(mesh: &Mesh) -> Option<f32> {
    let (lo, hi) = bounds(&mesh.positions)?;
    let width = (hi[0] - lo[0]).max(hi[2] - lo[2]);
    (width > 0.0).then(|| (hi[1] - lo[1]) / width)
}

fn bounds(points: &[[f32; 3]]) -> Option<([f32; 3], [f32; 3])> {
    let first = *points.first()?;
    Some(points.iter().fold((first, first), |(mut lo, mut hi), p| {
        for k in 0..3 {
            lo[k] = lo[k].min(p[k]);
            hi[k] = hi[k].max(p[k]);
        }
        (lo, hi)
    }))
}

/// Vertices and face centres, stretched to the unit box.
fn shape_points(mesh: &Mesh) -> Option<Vec<[f32; 3]>> {
    let mut points = mesh.positions.clone();
    for t in &mesh.triangles {
        let p = |i: u32| mesh.positions.get(i as usize).copied();
        let (a, b, c) = (p(t[0])?, p(t[1])?, p(t[2])?);
        points.push([0, 1, 2].map(|k| (a[k] + b[k] + c[k]) / 3.0));
    }
    let (lo, hi) = bounds(&points)?;
    Some(
        points
            .iter()
            .map(|p| [0, 1, 2].map(|k| (p[k] - lo[k]) / (hi[k] - lo[k]).max(1e-6)))
            .collect(),
    )
}

fn chamfer(a: &[[f32; 3]], b: &[[f32; 3]]) -> f32 {
    let one_way = |from: &[[f32; 3]], to: &[[f32; 3]]| -> f32 {
        from.iter()
            .map(|p| {
                to.iter()
                    .map(|q| (0..3).map(|k| (p[k] - q[k]).powi(2)).sum::<f32>())
                    .fold(f32::INFINITY, f32::min)
            })
            .sum::<f32>()
            / from.len().max(1) as f32
    };
    one_way(a, b) + one_way(b, a)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::world::{Split, World};

    #[test]
    fn world_pictures_read_back_as_their_scenes_at_any_scale() {
        let mut world = World::new(3);
        for i in 0..300 {
            let split = if i % 2 == 0 {
                Split::Train
            } else {
                Split::HeldOut
            };
            let scene = world.scene(split);
            let mut image = scene.render();
            if i % 3 == 0 {
                image = image.resized_nearest(256, 256).unwrap();
            }
            let read = read_scene(&image).unwrap();
            assert_eq!(read.background, scene.background, "{}", scene.prompt());
            let mut want = scene.objects.clone();
            let mut got = read.objects.clone();
            want.sort_by_key(|o| (o.colour.index(), o.position.index()));
            got.sort_by_key(|o| (o.colour.index(), o.position.index()));
            assert_eq!(got, want, "{}", scene.prompt());
        }
    }

    #[test]
    fn clips_read_back_with_their_direction() {
        let mut world = World::new(4);
        for _ in 0..60 {
            let motion = world.motion(Split::HeldOut);
            let read = read_motion(&motion.render()).unwrap();
            assert_eq!(
                read.direction,
                Some(motion.direction),
                "{}",
                motion.prompt()
            );
            assert_eq!(read.shape, Some(motion.shape), "{}", motion.prompt());
            assert_eq!(read.colour, Some(motion.colour));
            assert_eq!(read.background, motion.background);
            assert_eq!(read.frames_with_one_shape, read.frames);
            assert_eq!(read.describe(), motion.prompt());
        }
    }

    /// The 2026-12-06 report showed a clip read wrong as a Rust struct
    /// (`MotionReading { background: Green, ... }`) beside the prompt.
    #[test]
    fn issue_8_a_clip_read_wrong_is_described_in_words() {
        let read = MotionReading {
            background: Colour::Green,
            shape: Some(Shape::Circle),
            colour: Some(Colour::Yellow),
            direction: None,
            frames_with_one_shape: 1,
            frames: 6,
        };
        assert_eq!(
            read.describe(),
            "a yellow circle stays still on a green background (one shape in 1 of 6 frames)"
        );
        let read = MotionReading {
            shape: None,
            direction: Some(Direction::Up),
            background: Colour::Orange,
            ..read
        };
        assert_eq!(
            read.describe(),
            "a yellow shape moves up on an orange background (one shape in 1 of 6 frames)"
        );
        let read = MotionReading {
            colour: None,
            ..read
        };
        assert!(read.describe().starts_with("no single shape moves up"));
    }

    #[test]
    fn solids_read_back_through_the_mesh_codec() {
        use encoders::Codec;
        let codec = encoders::mesh::MeshCodec::new(64).unwrap();
        for &solid in Solid::ALL {
            for &proportion in Proportion::ALL {
                let spec = SolidSpec { solid, proportion };
                let codes = codec.encode(&modalities::Media::Mesh(spec.mesh())).unwrap();
                let modalities::Media::Mesh(mesh) = codec.decode(&codes).unwrap() else {
                    panic!("not a mesh")
                };
                assert_eq!(read_solid(&mesh), Some(spec), "{}", spec.prompt());
                // Varied sizes read as the same solid, through a stretched
                // frame whose cube holds the tallest.
                let stretched = encoders::mesh::MeshCodec::new(64)
                    .unwrap()
                    .with_frame(encoders::mesh::MeshFrame::new(Some(2.0), true).unwrap());
                for seed in 0..20 {
                    let codes = stretched
                        .encode(&modalities::Media::Mesh(spec.varied_mesh(seed)))
                        .unwrap();
                    let modalities::Media::Mesh(mesh) = stretched.decode(&codes).unwrap() else {
                        panic!("not a mesh")
                    };
                    assert_eq!(read_solid(&mesh), Some(spec), "{} {seed}", spec.prompt());
                }
            }
        }
    }

    #[test]
    fn a_wrong_picture_reads_as_what_it_shows() {
        let mut world = World::new(5);
        let scene = world.scene(Split::Train);
        let mut other = scene.clone();
        other.background = Colour::ALL
            .iter()
            .copied()
            .find(|c| *c != scene.background && scene.objects.iter().all(|o| o.colour != *c))
            .unwrap();
        assert_ne!(
            read_scene(&other.render()).unwrap().background,
            scene.background
        );
        let noise = Image {
            width: 32,
            height: 32,
            channels: 3,
            pixels: (0..32 * 32 * 3).map(|i| (i * 97 % 251) as u8).collect(),
        };
        let read = read_scene(&noise).unwrap();
        assert!(read.objects.len() != 1 || read.objects[0] != scene.objects[0]);
    }
}
