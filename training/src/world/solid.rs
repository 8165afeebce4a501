//! The mesh world: six solids, each plain, tall or flat.

use std::f32::consts::TAU;

use modalities::Mesh;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::vocab::{article, Proportion, Solid};

/// Segments around curved solids: enough to read as round, few enough to
/// stay a short token sequence (9 mesh tokens a face: a sphere is 48 faces).
const SEGMENTS: u32 = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct SolidSpec {
    pub solid: Solid,
    pub proportion: Proportion,
}

impl Proportion {
    /// Height scale: y is up.
    pub fn height(self) -> f32 {
        match self {
            Proportion::Plain => 1.0,
            Proportion::Tall => 2.0,
            Proportion::Flat => 0.35,
        }
    }
}

impl SolidSpec {
    /// "a tall cube", "a torus".
    pub fn prompt(&self) -> String {
        match self.proportion {
            Proportion::Plain => format!("{} {}", article(self.solid.word()), self.solid),
            p => format!("{} {p} {}", article(p.word()), self.solid),
        }
    }

    /// The solid, about the origin, 1 wide and `height()` high.
    pub fn mesh(&self) -> Mesh {
        let (mut positions, triangles) = match self.solid {
            Solid::Cube => cube(),
            Solid::Pyramid => pyramid(),
            Solid::Cylinder => lathe(&[(0.0, -0.5), (0.5, -0.5), (0.5, 0.5), (0.0, 0.5)]),
            Solid::Cone => lathe(&[(0.0, -0.5), (0.5, -0.5), (0.0, 0.5)]),
            Solid::Sphere => {
                let profile: Vec<(f32, f32)> = (0..=4)
                    .map(|i| {
                        let a = std::f32::consts::PI * (i as f32 / 4.0 - 0.5);
                        (0.5 * a.cos(), 0.5 * a.sin())
                    })
                    .collect();
                lathe(&profile)
            }
            Solid::Torus => torus(),
        };
        let h = self.proportion.height();
        for p in &mut positions {
            p[1] *= h;
        }
        Mesh {
            positions,
            triangles,
            normals: None,
            uvs: None,
            colors: None,
        }
    }
}

impl SolidSpec {
    /// The solid at a size and proportion drawn from `seed`, still read as
    /// itself: 0.8 to 0.9 of its width (so a tall one stays within the
    /// cube of side 2), its height a further 0.9 to 1.1 times. Training
    /// meshes vary, so the faces a model writes cannot hang on one exact
    /// size; the ranges keep the heights of plain, tall and flat solids
    /// apart, so the height alone still says the proportion (a wider
    /// spread, 0.55 to 0.85 and 0.87 to 1.15, made tall and plain heights
    /// overlap, and a model trained on it made a held-out tall pyramid flat).
    pub fn varied_mesh(&self, seed: u64) -> Mesh {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let size = rng.random_range(0.8..=0.9f32);
        let height = size * rng.random_range(0.9..=1.1f32);
        let mut mesh = self.mesh();
        for p in &mut mesh.positions {
            *p = [p[0] * size, p[1] * height, p[2] * size];
        }
        mesh
    }
}

type Geometry = (Vec<[f32; 3]>, Vec<[u32; 3]>);

fn cube() -> Geometry {
    let positions = (0..8)
        .map(|i| {
            let c = |bit: u32| if i >> bit & 1 == 1 { 0.5 } else { -0.5 };
            [c(0), c(1), c(2)]
        })
        .collect();
    // Two triangles per face, wound outwards.
    let quads = [
        [0, 2, 3, 1],
        [4, 5, 7, 6],
        [0, 1, 5, 4],
        [2, 6, 7, 3],
        [0, 4, 6, 2],
        [1, 3, 7, 5],
    ];
    let triangles = quads
        .iter()
        .flat_map(|q| [[q[0], q[1], q[2]], [q[0], q[2], q[3]]])
        .collect();
    (positions, triangles)
}

fn pyramid() -> Geometry {
    let positions = vec![
        [-0.5, -0.5, -0.5],
        [0.5, -0.5, -0.5],
        [0.5, -0.5, 0.5],
        [-0.5, -0.5, 0.5],
        [0.0, 0.5, 0.0],
    ];
    let triangles = vec![
        [0, 1, 2],
        [0, 2, 3],
        [0, 4, 1],
        [1, 4, 2],
        [2, 4, 3],
        [3, 4, 0],
    ];
    (positions, triangles)
}

/// A surface of revolution about y from a profile of (radius, y) points;
/// points on the axis become single vertices (poles).
fn lathe(profile: &[(f32, f32)]) -> Geometry {
    let mut positions = Vec::new();
    // Each profile point's vertex indices around the axis.
    let mut rings: Vec<Vec<u32>> = Vec::new();
    for &(r, y) in profile {
        if r.abs() < 1e-6 {
            positions.push([0.0, y, 0.0]);
            rings.push(vec![positions.len() as u32 - 1; SEGMENTS as usize]);
        } else {
            let start = positions.len() as u32;
            for s in 0..SEGMENTS {
                let a = TAU * s as f32 / SEGMENTS as f32;
                positions.push([r * a.cos(), y, r * a.sin()]);
            }
            rings.push((start..start + SEGMENTS).collect());
        }
    }
    let mut triangles = Vec::new();
    for pair in rings.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        for s in 0..SEGMENTS as usize {
            let t = (s + 1) % SEGMENTS as usize;
            for tri in [[a[s], b[s], b[t]], [a[s], b[t], a[t]]] {
                // Triangles that collapse at a pole are left out.
                if tri[0] != tri[1] && tri[1] != tri[2] && tri[0] != tri[2] {
                    triangles.push(tri);
                }
            }
        }
    }
    (positions, triangles)
}

fn torus() -> Geometry {
    let (major, minor, sides) = (0.35, 0.15, 6u32);
    let mut positions = Vec::new();
    for s in 0..SEGMENTS {
        let a = TAU * s as f32 / SEGMENTS as f32;
        for k in 0..sides {
            let b = TAU * k as f32 / sides as f32;
            let r = major + minor * b.cos();
            positions.push([r * a.cos(), minor * b.sin(), r * a.sin()]);
        }
    }
    let at = |s: u32, k: u32| (s % SEGMENTS) * sides + k % sides;
    let mut triangles = Vec::new();
    for s in 0..SEGMENTS {
        for k in 0..sides {
            let (p, q, r, t) = (at(s, k), at(s + 1, k), at(s + 1, k + 1), at(s, k + 1));
            triangles.push([p, q, r]);
            triangles.push([p, r, t]);
        }
    }
    (positions, triangles)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn extent(mesh: &Mesh, axis: usize) -> f32 {
        let (lo, hi) = mesh
            .positions
            .iter()
            .fold((f32::MAX, f32::MIN), |(lo, hi), p| {
                (lo.min(p[axis]), hi.max(p[axis]))
            });
        hi - lo
    }

    #[test]
    fn every_solid_is_a_valid_closed_mesh_with_its_proportions() {
        for &solid in Solid::ALL {
            for &proportion in Proportion::ALL {
                let spec = SolidSpec { solid, proportion };
                let mesh = spec.mesh();
                let checked = Mesh::new(mesh.positions.clone(), mesh.triangles.clone());
                assert!(checked.is_ok(), "{}: {checked:?}", spec.prompt());
                // Closed: every edge is shared by exactly two triangles.
                let mut edges = std::collections::HashMap::new();
                for t in &mesh.triangles {
                    for (a, b) in [(t[0], t[1]), (t[1], t[2]), (t[2], t[0])] {
                        *edges.entry((a.min(b), a.max(b))).or_insert(0) += 1;
                    }
                }
                assert!(
                    edges.values().all(|&n| n == 2),
                    "{} is not closed",
                    spec.prompt()
                );
                let ratio = extent(&mesh, 1) / extent(&mesh, 0);
                let base = SolidSpec {
                    solid,
                    proportion: Proportion::Plain,
                }
                .mesh();
                let plain = extent(&base, 1) / extent(&base, 0);
                assert!(
                    (ratio / plain - proportion.height()).abs() < 1e-4,
                    "{}",
                    spec.prompt()
                );
            }
        }
        assert_eq!(
            SolidSpec {
                solid: Solid::Cube,
                proportion: Proportion::Tall
            }
            .prompt(),
            "a tall cube"
        );
    }

    /// Varied sizes keep each proportion's heights apart from the others'
    /// and every solid within the cube of side 2.
    #[test]
    fn varied_solids_keep_the_heights_of_their_proportions_apart() {
        let spec = |proportion| SolidSpec {
            solid: Solid::Cube,
            proportion,
        };
        let heights = |proportion| {
            let h: Vec<f32> = (0..200)
                .map(|seed| extent(&spec(proportion).varied_mesh(seed), 1))
                .collect();
            let lo = h.iter().copied().fold(f32::INFINITY, f32::min);
            let hi = h.iter().copied().fold(0f32, f32::max);
            (lo, hi)
        };
        let (flat, plain, tall) = (
            heights(Proportion::Flat),
            heights(Proportion::Plain),
            heights(Proportion::Tall),
        );
        assert!(
            flat.1 < plain.0 && plain.1 < tall.0,
            "{flat:?} {plain:?} {tall:?}"
        );
        assert!(
            tall.1 <= 2.0 && plain.1 - plain.0 > 0.1,
            "{plain:?} {tall:?}"
        );
        assert_ne!(
            spec(Proportion::Plain).varied_mesh(1),
            spec(Proportion::Plain).varied_mesh(2)
        );
    }
}
