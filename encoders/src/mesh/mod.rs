//! The mesh tokenizer: no weights, only geometry.
//!
//! Vertices are normalised into the unit cube centred on the origin (the
//! bounding box's centre, scaled by its longest side, as MeshGPT does; or,
//! with [`MeshFrame::Fixed`], a fixed cube about the origin, so the codes
//! keep the mesh's size and proportions; or, with [`MeshFrame::Stretched`],
//! each axis of the bounding box stretched over the grid, its size kept in
//! three tokens before the faces) and quantised to `bins` levels per
//! axis. Vertices that fall in the same cell merge; faces
//! that collapse are dropped. Vertices are sorted by z, then y, then x;
//! each face is rotated to start at its lowest vertex (keeping its winding)
//! and faces are sorted by their vertices, as PolyGen and MeshGPT order them.
//!
//! Two forms of the result:
//! - tokens: each face as its three vertices' quantised (z, y, x), nine
//!   tokens per face, every token in `0..bins` ([`MeshCodec`]);
//! - text: the OBJ form with integer coordinates that LLaMA-Mesh uses,
//!   `v x y z` lines then `f a b c` lines (1-based), for text backbones
//!   ([`to_obj_text`], [`from_obj_text`]).
//!
//! Decoding repairs what it can (merges duplicate vertices, drops degenerate
//! and repeated faces) and rejects what it cannot, with the reason.

use std::collections::{BTreeSet, HashMap};

use modalities::{Kind, Media, Mesh};

use crate::codes::{Codes, MeshCodes};
use crate::error::{CodecError, Result};
use crate::{Codec, Structure};

mod obj_text;
pub use obj_text::{from_obj_text, to_obj_text};

/// Bins per axis unless the caller chooses (MeshGPT and PolyGen use 128).
pub const DEFAULT_BINS: u32 = 128;
/// Most bins a codec accepts; more would outgrow any backbone's vocabulary.
pub const MAX_BINS: u32 = 4096;

/// Which cube of space the `bins`³ grid covers.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub enum MeshFrame {
    /// Each mesh's own bounding box, centred, scaled by its longest side:
    /// every mesh fills the grid, whatever its size.
    #[default]
    BoundingBox,
    /// The cube of side `extent` centred on the origin, the same for every
    /// mesh: a tall solid and a plain one share their widths' codes, so a
    /// model can learn size and shape apart. Vertices outside are an error.
    Fixed { extent: f32 },
    /// Each axis of the mesh's bounding box stretched over the whole grid,
    /// and the box's size (a side of at most `extent`) in three tokens
    /// before the faces: the faces hold the shape alone and the three
    /// tokens its size and proportions, so a tall pyramid has a pyramid's
    /// faces and a tall solid's size tokens.
    Stretched { extent: f32 },
}

impl MeshFrame {
    /// `None` is the bounding box; `Some(extent)` a fixed cube, or with
    /// `stretch` the stretched box within it. The extent must be positive
    /// and finite; stretching needs one.
    pub fn new(extent: Option<f32>, stretch: bool) -> Result<MeshFrame> {
        match (extent, stretch) {
            (None, false) => Ok(MeshFrame::BoundingBox),
            (None, true) => Err(CodecError::Codes(
                "a stretched mesh frame needs the extent its size tokens measure".into(),
            )),
            (Some(e), _) if !(e.is_finite() && e > 0.0) => Err(CodecError::Codes(format!(
                "the mesh extent must be positive and finite, got {e}"
            ))),
            (Some(e), false) => Ok(MeshFrame::Fixed { extent: e }),
            (Some(e), true) => Ok(MeshFrame::Stretched { extent: e }),
        }
    }

    /// Tokens before the faces: the size of a stretched box.
    pub fn header_len(self) -> usize {
        match self {
            MeshFrame::Stretched { .. } => 3,
            _ => 0,
        }
    }
}

/// A mesh on the integer grid, in canonical order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuantizedMesh {
    pub bins: u32,
    /// `[x, y, z]`, each in `0..bins`, sorted by (z, y, x), no duplicates,
    /// every one used by a face.
    pub vertices: Vec<[u32; 3]>,
    /// Each starts at its lowest index; sorted; no degenerate or repeated faces.
    pub faces: Vec<[u32; 3]>,
    /// In a stretched frame, the box's side on x, y, z: `s` is `(s + 1) /
    /// bins` of the frame's extent.
    pub size: Option<[u32; 3]>,
}

fn check_bins(bins: u32) -> Result<u32> {
    if (2..=MAX_BINS).contains(&bins) {
        Ok(bins)
    } else {
        Err(CodecError::Codes(format!(
            "bins must be between 2 and {MAX_BINS}, got {bins}"
        )))
    }
}

impl QuantizedMesh {
    /// Normalises a mesh into its bounding box and quantises it.
    pub fn from_mesh(mesh: &Mesh, bins: u32) -> Result<QuantizedMesh> {
        QuantizedMesh::from_mesh_in(mesh, bins, MeshFrame::BoundingBox)
    }

    /// Quantises a mesh on the grid over `frame`.
    pub fn from_mesh_in(mesh: &Mesh, bins: u32, frame: MeshFrame) -> Result<QuantizedMesh> {
        let bins = check_bins(bins)?;
        mesh.validate()?;
        let [lo, hi] = mesh
            .bbox()
            .ok_or_else(|| CodecError::Input("the mesh has no vertices".into()))?;
        let (centre, extent) = match frame {
            MeshFrame::BoundingBox => {
                let extent = (0..3).map(|a| hi[a] - lo[a]).fold(0f32, f32::max);
                if extent <= 0.0 || !extent.is_finite() {
                    return Err(CodecError::Input(
                        "the mesh has no extent (all vertices at one point)".into(),
                    ));
                }
                let centre: [f32; 3] = std::array::from_fn(|a| (lo[a] + hi[a]) / 2.0);
                (centre, [extent; 3])
            }
            MeshFrame::Fixed { extent } => {
                // Half a bin of slack: a vertex on the cube's face belongs in it.
                let limit = extent / 2.0 * (1.0 + 1.0 / bins as f32);
                if let Some(a) = (0..3).find(|&a| lo[a] < -limit || hi[a] > limit) {
                    return Err(CodecError::Input(format!(
                        "the mesh spans {}..{} on axis {}, outside the codec's cube of side {extent}",
                        lo[a],
                        hi[a],
                        ["x", "y", "z"][a]
                    )));
                }
                ([0.0; 3], [extent; 3])
            }
            MeshFrame::Stretched { extent } => {
                let limit = extent * (1.0 + 1.0 / bins as f32);
                if let Some(a) = (0..3).find(|&a| hi[a] - lo[a] > limit) {
                    return Err(CodecError::Input(format!(
                        "the mesh is {} long on axis {}, more than the codec's extent {extent}",
                        hi[a] - lo[a],
                        ["x", "y", "z"][a]
                    )));
                }
                let centre: [f32; 3] = std::array::from_fn(|a| (lo[a] + hi[a]) / 2.0);
                (centre, std::array::from_fn(|a| hi[a] - lo[a]))
            }
        };
        let cell = |p: [f32; 3]| -> [u32; 3] {
            std::array::from_fn(|a| {
                // A flat axis (a plane) sits in the middle bin.
                let unit = if extent[a] > 0.0 {
                    (p[a] - centre[a]) / extent[a] + 0.5
                } else {
                    0.5
                };
                ((unit * bins as f32).floor() as i64).clamp(0, i64::from(bins) - 1) as u32
            })
        };
        let vertices: Vec<[u32; 3]> = mesh.positions.iter().map(|&p| cell(p)).collect();
        let mut q = QuantizedMesh::canonical(bins, &vertices, &mesh.triangles);
        if let MeshFrame::Stretched { extent: cube } = frame {
            q.size = Some(extent.map(|side| {
                let s = (side / cube * bins as f32).round() as i64 - 1;
                s.clamp(0, i64::from(bins) - 1) as u32
            }));
        }
        if q.faces.is_empty() {
            return Err(CodecError::Input(format!(
                "no triangle survives quantisation to {bins} bins (the mesh is degenerate or too fine)"
            )));
        }
        Ok(q)
    }

    /// Merges equal vertices, drops degenerate and repeated faces, and
    /// orders everything canonically. Face indices must be in range.
    fn canonical(bins: u32, vertices: &[[u32; 3]], faces: &[[u32; 3]]) -> QuantizedMesh {
        let zyx = |v: &[u32; 3]| [v[2], v[1], v[0]];
        let unique: BTreeSet<[u32; 3]> = vertices.iter().map(zyx).collect();
        let sorted: Vec<[u32; 3]> = unique.into_iter().collect();
        let index: HashMap<[u32; 3], u32> = sorted
            .iter()
            .enumerate()
            .map(|(i, v)| (*v, i as u32))
            .collect();
        let remap = |i: u32| index[&zyx(&vertices[i as usize])];
        let mut seen = BTreeSet::new();
        for f in faces {
            let f = f.map(remap);
            if f[0] == f[1] || f[1] == f[2] || f[0] == f[2] {
                continue;
            }
            let first = (0..3).min_by_key(|&k| f[k]).unwrap_or(0);
            let rotated = [f[first], f[(first + 1) % 3], f[(first + 2) % 3]];
            if !collinear(&sorted, rotated) {
                seen.insert(rotated);
            }
        }
        // Drop vertices no face uses; renumbering keeps the order, so faces
        // stay sorted and still start at their lowest vertex.
        let mut renumber = vec![u32::MAX; sorted.len()];
        seen.iter()
            .flatten()
            .for_each(|&i| renumber[i as usize] = 0);
        let mut next = 0;
        let mut vertices = Vec::new();
        for (slot, v) in renumber.iter_mut().zip(&sorted) {
            if *slot == 0 {
                *slot = next;
                next += 1;
                vertices.push([v[2], v[1], v[0]]);
            }
        }
        QuantizedMesh {
            bins,
            vertices,
            faces: seen
                .into_iter()
                .map(|f| f.map(|i| renumber[i as usize]))
                .collect(),
            size: None,
        }
    }

    /// Vertex positions in the unit cube centred on the origin (cell centres).
    pub fn to_mesh(&self) -> Result<Mesh> {
        self.to_mesh_in(MeshFrame::BoundingBox)
    }

    /// The mesh in `frame`'s space: the unit cube about the origin for the
    /// bounding box (whose size the codes do not keep), the fixed cube's
    /// own units otherwise (a stretched box centred on the origin).
    pub fn to_mesh_in(&self, frame: MeshFrame) -> Result<Mesh> {
        let b = self.bins as f32;
        let scale: [f32; 3] = match frame {
            MeshFrame::BoundingBox => [1.0; 3],
            MeshFrame::Fixed { extent } => [extent; 3],
            MeshFrame::Stretched { extent } => {
                let size = self.size.ok_or_else(|| {
                    CodecError::Codes("a stretched mesh frame needs the mesh's size tokens".into())
                })?;
                size.map(|s| (s as f32 + 1.0) / b * extent)
            }
        };
        let positions = self
            .vertices
            .iter()
            .map(|v| std::array::from_fn(|a| ((v[a] as f32 + 0.5) / b - 0.5) * scale[a]))
            .collect();
        Ok(Mesh::new(positions, self.faces.clone())?)
    }

    /// The size (z, y, x) in a stretched frame, then nine tokens per face:
    /// (z, y, x) of each of its vertices.
    pub fn tokens(&self) -> Vec<u32> {
        let header = self.size.map(|s| [s[2], s[1], s[0]]);
        header
            .into_iter()
            .flatten()
            .chain(self.faces.iter().flat_map(|f| {
                f.iter().flat_map(|&i| {
                    let v = self.vertices[i as usize];
                    [v[2], v[1], v[0]]
                })
            }))
            .collect()
    }

    /// Rebuilds a mesh from tokens, repairing duplicates and degenerate faces.
    pub fn from_tokens(bins: u32, tokens: &[u32]) -> Result<QuantizedMesh> {
        QuantizedMesh::from_tokens_in(bins, tokens, MeshFrame::BoundingBox)
    }

    /// Rebuilds a mesh from the tokens of `frame` (a stretched frame's
    /// start with the size).
    pub fn from_tokens_in(bins: u32, tokens: &[u32], frame: MeshFrame) -> Result<QuantizedMesh> {
        let bins = check_bins(bins)?;
        let header = frame.header_len();
        if tokens.len() < header {
            return Err(CodecError::Codes(format!(
                "{} tokens cannot hold the {header} size tokens of a stretched mesh",
                tokens.len()
            )));
        }
        if let Some((at, &t)) = tokens.iter().enumerate().find(|(_, &t)| t >= bins) {
            return Err(CodecError::Codes(format!(
                "token {t} at position {at} is outside 0..{bins}"
            )));
        }
        let (size, tokens) = tokens.split_at(header);
        if tokens.is_empty() || !tokens.len().is_multiple_of(9) {
            return Err(CodecError::Codes(format!(
                "{} face tokens is not a positive multiple of 9 (3 vertices x (z, y, x) per face)",
                tokens.len()
            )));
        }
        let vertices: Vec<[u32; 3]> = tokens.chunks_exact(3).map(|c| [c[2], c[1], c[0]]).collect();
        let faces: Vec<[u32; 3]> = (0..vertices.len() as u32 / 3)
            .map(|f| [3 * f, 3 * f + 1, 3 * f + 2])
            .collect();
        let mut q = QuantizedMesh::canonical(bins, &vertices, &faces);
        if q.faces.is_empty() {
            return Err(CodecError::Codes(
                "every face is degenerate (repeated or collinear vertices)".into(),
            ));
        }
        if let [z, y, x] = *size {
            q.size = Some([x, y, z]);
        }
        Ok(q)
    }
}

/// True when the face's three grid points lie on one line (zero area).
fn collinear(zyx: &[[u32; 3]], f: [u32; 3]) -> bool {
    let p = f.map(|i| zyx[i as usize].map(i64::from));
    let (a, b) = (
        [p[1][0] - p[0][0], p[1][1] - p[0][1], p[1][2] - p[0][2]],
        [p[2][0] - p[0][0], p[2][1] - p[0][1], p[2][2] - p[0][2]],
    );
    let cross = [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ];
    cross == [0, 0, 0]
}

/// The token form as a [`Codec`], `mesh[:BINS]` on the command line.
#[derive(Debug, Clone, Copy)]
pub struct MeshCodec {
    bins: u32,
    frame: MeshFrame,
    max_faces: usize,
}

impl MeshCodec {
    pub fn new(bins: u32) -> Result<MeshCodec> {
        Ok(MeshCodec {
            bins: check_bins(bins)?,
            frame: MeshFrame::BoundingBox,
            max_faces: crate::CodecLimits::default().max_faces,
        })
    }

    pub fn with_frame(mut self, frame: MeshFrame) -> MeshCodec {
        self.frame = frame;
        self
    }

    pub fn frame(&self) -> MeshFrame {
        self.frame
    }

    pub fn with_limits(mut self, limits: &crate::CodecLimits) -> MeshCodec {
        self.max_faces = limits.max_faces;
        self
    }

    /// Parses `mesh` or `mesh:BINS`.
    pub fn from_spec(spec: &str) -> Result<MeshCodec> {
        match spec.strip_prefix("mesh:") {
            None => MeshCodec::new(DEFAULT_BINS),
            Some(n) => MeshCodec::new(n.parse().map_err(|_| {
                CodecError::UnknownCodec(
                    spec.into(),
                    "expected mesh:BINS with BINS a number".into(),
                )
            })?),
        }
    }
}

impl Codec for MeshCodec {
    fn kind(&self) -> Kind {
        Kind::Mesh
    }

    fn vocab_size(&self) -> usize {
        self.bins as usize
    }

    fn structure(&self) -> Structure {
        Structure::Mesh { bins: self.bins }
    }

    fn encode(&self, media: &Media) -> Result<Codes> {
        let Media::Mesh(mesh) = media else {
            return Err(CodecError::Input(format!(
                "the mesh codec encodes meshes, not {}",
                media.kind()
            )));
        };
        crate::limits::check(
            "the face count",
            mesh.triangles.len() as f64,
            self.max_faces as f64,
        )?;
        let q = QuantizedMesh::from_mesh_in(mesh, self.bins, self.frame)?;
        Ok(Codes::Mesh(MeshCodes {
            bins: self.bins,
            tokens: q.tokens(),
        }))
    }

    fn decode(&self, codes: &Codes) -> Result<Media> {
        let Codes::Mesh(m) = codes else {
            return Err(CodecError::Codes(format!(
                "the mesh codec decodes mesh codes, not {}",
                codes.kind()
            )));
        };
        if m.bins != self.bins {
            return Err(CodecError::Codes(format!(
                "the codes use {} bins, the codec {}",
                m.bins, self.bins
            )));
        }
        Ok(Media::Mesh(
            QuantizedMesh::from_tokens_in(m.bins, &m.tokens, self.frame)?.to_mesh_in(self.frame)?,
        ))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    pub(super) fn cube() -> Mesh {
        let p: Vec<[f32; 3]> = (0..8)
            .map(|i| [(i & 1) as f32, ((i >> 1) & 1) as f32, ((i >> 2) & 1) as f32])
            .map(|v| [v[0] * 2.0 + 1.0, v[1] * 2.0 - 3.0, v[2] * 2.0])
            .collect();
        let t = vec![
            [0, 2, 1],
            [1, 2, 3],
            [4, 5, 6],
            [5, 7, 6],
            [0, 1, 4],
            [1, 5, 4],
            [2, 6, 3],
            [3, 6, 7],
            [0, 4, 2],
            [2, 4, 6],
            [1, 3, 5],
            [3, 7, 5],
        ];
        Mesh::new(p, t).unwrap()
    }

    fn tetrahedron() -> Mesh {
        Mesh::new(
            vec![
                [0.1, 0.2, 0.3],
                [1.7, 0.0, 0.1],
                [0.4, 1.1, 0.0],
                [0.5, 0.4, 0.9],
            ],
            vec![[0, 2, 1], [0, 1, 3], [1, 2, 3], [0, 3, 2]],
        )
        .unwrap()
    }

    /// The mesh in the codec's unit cube, for comparing with decoded output.
    fn normalised(mesh: &Mesh) -> Vec<[f32; 3]> {
        let [lo, hi] = mesh.bbox().unwrap();
        let extent = (0..3).map(|a| hi[a] - lo[a]).fold(0f32, f32::max);
        mesh.positions
            .iter()
            .map(|p| std::array::from_fn(|a| (p[a] - (lo[a] + hi[a]) / 2.0) / extent))
            .collect()
    }

    fn decode(codec: &MeshCodec, codes: &Codes) -> Mesh {
        match codec.decode(codes).unwrap() {
            Media::Mesh(m) => m,
            other => panic!("decoded {:?}", other.kind()),
        }
    }

    #[test]
    fn primitives_round_trip_within_half_a_bin() {
        for bins in [16, 128, 1024] {
            let codec = MeshCodec::new(bins).unwrap();
            for mesh in [cube(), tetrahedron()] {
                let codes = codec.encode(&Media::Mesh(mesh.clone())).unwrap();
                let Codes::Mesh(m) = &codes else { panic!() };
                assert_eq!(m.tokens.len(), 9 * mesh.triangles.len());
                assert!(m.tokens.iter().all(|&t| t < bins));
                let back = decode(&codec, &codes);
                assert_eq!(back.triangles.len(), mesh.triangles.len());
                assert_eq!(back.positions.len(), mesh.positions.len());
                let half_bin = 0.5 / bins as f32 + 1e-6;
                // Every original vertex has a decoded vertex within half a bin.
                for p in normalised(&mesh) {
                    let nearest = back
                        .positions
                        .iter()
                        .map(|q| (0..3).map(|a| (p[a] - q[a]).abs()).fold(0f32, f32::max))
                        .fold(f32::INFINITY, f32::min);
                    assert!(nearest <= half_bin, "bins {bins}: {p:?} is {nearest} away");
                }
            }
        }
    }

    /// The test cube with its height scaled by `h`.
    fn stretched_cube(h: f32) -> Mesh {
        let mut m = cube();
        m.positions.iter_mut().for_each(|p| p[1] *= h);
        m
    }

    fn mesh_tokens(codec: &MeshCodec, mesh: Mesh) -> Vec<u32> {
        match codec.encode(&Media::Mesh(mesh)).unwrap() {
            Codes::Mesh(m) => m.tokens,
            other => panic!("{other:?}"),
        }
    }

    /// In a fixed frame, stretching a mesh along y changes only its y
    /// codes, and decoding gives back the mesh in its own units.
    #[test]
    fn a_fixed_frame_keeps_size_and_proportion_in_the_codes() {
        let frame = MeshFrame::new(Some(8.0), false).unwrap();
        let codec = MeshCodec::new(64).unwrap().with_frame(frame);
        let tokens = |m: Mesh| mesh_tokens(&codec, m);
        let (plain, tall) = (tokens(stretched_cube(1.0)), tokens(stretched_cube(1.25)));
        assert_eq!(plain.len(), tall.len());
        for (i, (a, b)) in plain.iter().zip(&tall).enumerate() {
            // Tokens run (z, y, x) per vertex.
            assert_eq!(a == b, i % 3 != 1, "token {i}: {a} vs {b}");
        }
        let back = decode(&codec, &codec.encode(&Media::Mesh(cube())).unwrap());
        for p in &back.positions {
            let near = cube()
                .positions
                .iter()
                .any(|q| (0..3).all(|a| (p[a] - q[a]).abs() <= 4.0 / 64.0 + 1e-5));
            assert!(near, "{p:?} is not a cube corner");
        }
        let e = codec
            .encode(&Media::Mesh(stretched_cube(3.0)))
            .unwrap_err()
            .to_string();
        assert!(e.contains("axis y") && e.contains("side 8"), "{e}");
        assert!(MeshFrame::new(Some(-1.0), false).is_err());
        assert_eq!(MeshFrame::new(None, false).unwrap(), MeshFrame::BoundingBox);
    }

    /// In a stretched frame a tall cube has the plain cube's face tokens
    /// and differs only in its y size token; decoding restores its size.
    #[test]
    fn a_stretched_frame_keeps_shape_in_the_faces_and_size_in_three_tokens() {
        let frame = MeshFrame::new(Some(8.0), true).unwrap();
        let codec = MeshCodec::new(64).unwrap().with_frame(frame);
        let tokens = |m: Mesh| mesh_tokens(&codec, m);
        let (plain, tall) = (tokens(stretched_cube(1.0)), tokens(stretched_cube(1.5)));
        // The cube is 2 x 2 x 2: a quarter of the extent, 16 bins (s = 15).
        assert_eq!(plain[..3], [15, 15, 15]);
        assert_eq!(tall[..3], [15, 23, 15], "(z, y, x): only y grows");
        assert_eq!(plain[3..], tall[3..], "the same faces");
        let back = decode(
            &codec,
            &Codes::Mesh(MeshCodes {
                bins: 64,
                tokens: tall.clone(),
            }),
        );
        let [lo, hi] = back.bbox().unwrap();
        let sides: Vec<f32> = (0..3).map(|a| hi[a] - lo[a]).collect();
        // Cell centres: the outer vertices sit half a bin inside the box.
        assert!((sides[1] / sides[0] - 1.5).abs() < 0.01, "{sides:?}");
        assert!((sides[0] - 2.0 * 63.0 / 64.0).abs() < 1e-4, "{sides:?}");
        // Errors: a size token out of range, a mesh longer than the
        // extent, a frame without an extent, the text form.
        let mut bad = tall.clone();
        bad[1] = 64;
        let e = QuantizedMesh::from_tokens_in(64, &bad, frame).unwrap_err();
        assert!(e.to_string().contains("position 1"), "{e}");
        let e = codec
            .encode(&Media::Mesh(stretched_cube(5.0)))
            .unwrap_err()
            .to_string();
        assert!(e.contains("axis y") && e.contains("extent 8"), "{e}");
        assert!(MeshFrame::new(None, true).is_err());
        assert!(to_obj_text(&cube(), 64, frame).is_err());
        assert!(QuantizedMesh::from_tokens(64, &tall[3..])
            .unwrap()
            .to_mesh_in(frame)
            .is_err());
    }

    #[test]
    fn order_is_canonical_under_vertex_and_face_permutation() {
        let mesh = cube();
        let codec = MeshCodec::new(64).unwrap();
        let want = codec.encode(&Media::Mesh(mesh.clone())).unwrap();
        // Reverse the vertices, rotate each face, reverse the face order.
        let n = mesh.positions.len() as u32;
        let positions: Vec<[f32; 3]> = mesh.positions.iter().rev().copied().collect();
        let triangles: Vec<[u32; 3]> = mesh
            .triangles
            .iter()
            .rev()
            .map(|t| [n - 1 - t[1], n - 1 - t[2], n - 1 - t[0]])
            .collect();
        let shuffled = Mesh::new(positions, triangles).unwrap();
        assert_eq!(codec.encode(&Media::Mesh(shuffled)).unwrap(), want);
        // Faces start at their lowest vertex; vertices ascend by (z, y, x).
        let q = QuantizedMesh::from_mesh(&mesh, 64).unwrap();
        assert!(q.faces.iter().all(|f| f[0] < f[1] && f[0] < f[2]));
        assert!(q.faces.windows(2).all(|w| w[0] < w[1]));
        let zyx: Vec<[u32; 3]> = q.vertices.iter().map(|v| [v[2], v[1], v[0]]).collect();
        assert!(zyx.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn decoding_repairs_duplicates_and_degenerate_faces() {
        let codec = MeshCodec::new(8).unwrap();
        let face = [0, 0, 0, 0, 0, 5, 0, 5, 0]; // (z, y, x) x 3
        let degenerate = [1, 1, 1, 1, 1, 1, 2, 2, 2]; // a repeated vertex
        let collinear = [0, 0, 0, 0, 0, 1, 0, 0, 2];
        let tokens: Vec<u32> = [face, face, degenerate, collinear].concat();
        let mesh = decode(&codec, &Codes::Mesh(MeshCodes { bins: 8, tokens }));
        assert_eq!(mesh.triangles.len(), 1);
        assert_eq!(mesh.positions.len(), 3);
    }

    #[test]
    fn undecodable_tokens_are_rejected_with_a_reason() {
        let codec = MeshCodec::new(8).unwrap();
        for (tokens, bins, want) in [
            (vec![1, 2, 3], 8, "not a positive multiple of 9"),
            (vec![0, 0, 0, 0, 0, 9, 0, 5, 0], 8, "token 9 at position 5"),
            (vec![1; 9], 8, "every face is degenerate"),
            (vec![0; 9], 16, "the codes use 16 bins, the codec 8"),
        ] {
            let err = codec
                .decode(&Codes::Mesh(MeshCodes { bins, tokens }))
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{err}");
        }
        assert!(MeshCodec::from_spec("mesh:1").is_err());
        assert!(MeshCodec::from_spec("mesh:lots").is_err());
        assert_eq!(MeshCodec::from_spec("mesh").unwrap().vocab_size(), 128);
    }

    #[test]
    fn flat_or_empty_meshes_cannot_be_encoded() {
        let point = Mesh::new(vec![[1.0; 3]; 3], vec![[0, 1, 2]]).unwrap();
        let err = QuantizedMesh::from_mesh(&point, 128)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no extent"), "{err}");
    }
}
