//! 3D meshes: positions, triangles and optional per-vertex normals, UVs and
//! colours. Read and written as OBJ, PLY (ASCII and binary), STL (ASCII and
//! binary) and binary glTF. Polygons are fan-triangulated on read.

mod glb;
mod obj;
mod ply;
mod stl;

use std::path::Path;

use serde::Serialize;

use crate::format::SNIFF_BYTES;
use crate::limits::check;
use crate::{read_bounded, write_atomic, Format, Kind, Limits, MediaError, Result};
pub use ply::PlyEncoding;

/// A triangle mesh. Attribute vectors, when present, have one entry per vertex.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Mesh {
    pub positions: Vec<[f32; 3]>,
    pub triangles: Vec<[u32; 3]>,
    pub normals: Option<Vec<[f32; 3]>>,
    pub uvs: Option<Vec<[f32; 2]>>,
    /// Linear RGBA in [0, 1].
    pub colors: Option<Vec<[f32; 4]>>,
}

/// What `probe` reports about a mesh file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MeshInfo {
    pub format: Format,
    pub vertices: usize,
    /// Triangles after triangulation.
    pub faces: usize,
    pub bbox: Option<[[f32; 3]; 2]>,
}

impl Mesh {
    /// A mesh from positions and triangles, validated.
    pub fn new(positions: Vec<[f32; 3]>, triangles: Vec<[u32; 3]>) -> Result<Mesh> {
        let mesh = Mesh {
            positions,
            triangles,
            ..Mesh::default()
        };
        mesh.validate()?;
        Ok(mesh)
    }

    /// Checks what every reader and writer relies on: finite coordinates,
    /// face indices in range, attributes with one entry per vertex.
    pub fn validate(&self) -> Result<()> {
        let n = self.positions.len();
        if let Some(i) = self
            .positions
            .iter()
            .position(|p| p.iter().any(|c| !c.is_finite()))
        {
            return Err(MediaError::Invalid(format!(
                "vertex {i} has a non-finite coordinate {:?}",
                self.positions[i]
            )));
        }
        for (f, tri) in self.triangles.iter().enumerate() {
            if let Some(&bad) = tri.iter().find(|&&v| v as usize >= n) {
                return Err(MediaError::Invalid(format!(
                    "face {f} uses vertex {bad}, but the mesh has {n} vertices"
                )));
            }
        }
        let check_len = |name: &str, len: Option<usize>| match len {
            Some(len) if len != n => Err(MediaError::Invalid(format!(
                "{name} has {len} entries for {n} vertices"
            ))),
            _ => Ok(()),
        };
        check_len("normals", self.normals.as_ref().map(Vec::len))?;
        check_len("uvs", self.uvs.as_ref().map(Vec::len))?;
        check_len("colors", self.colors.as_ref().map(Vec::len))?;
        let finite = |v: &[f32]| v.iter().all(|c| c.is_finite());
        let attributes_finite = self.normals.iter().flatten().all(|v| finite(v))
            && self.uvs.iter().flatten().all(|v| finite(v))
            && self.colors.iter().flatten().all(|v| finite(v));
        if !attributes_finite {
            return Err(MediaError::Invalid(
                "a vertex attribute has a non-finite value".into(),
            ));
        }
        Ok(())
    }

    /// Axis-aligned bounding box `[min, max]`, or `None` for an empty mesh.
    pub fn bbox(&self) -> Option<[[f32; 3]; 2]> {
        let first = *self.positions.first()?;
        Some(self.positions.iter().fold([first, first], |[lo, hi], p| {
            [
                std::array::from_fn(|i| lo[i].min(p[i])),
                std::array::from_fn(|i| hi[i].max(p[i])),
            ]
        }))
    }

    /// Decodes a mesh file held in memory. `ext` is a hint for binary STL,
    /// whose only signature is its size.
    pub fn decode(bytes: &[u8], ext: Option<&str>, limits: &Limits) -> Result<Mesh> {
        let format = detect_mesh(bytes, ext)?;
        let mesh = crate::guard(format, || match format {
            Format::Obj => obj::decode(bytes, limits),
            Format::Ply => ply::decode(bytes, limits),
            Format::Stl => stl::decode(bytes, limits),
            _ => glb::decode(bytes, limits),
        })?;
        check(
            "vertex count",
            mesh.positions.len() as u64,
            limits.max_vertices,
        )?;
        check("face count", mesh.triangles.len() as u64, limits.max_faces)?;
        mesh.validate()
            .map_err(|e| MediaError::malformed(format, e))?;
        Ok(mesh)
    }

    pub fn read(path: &Path, limits: &Limits) -> Result<Mesh> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        Mesh::decode(&read_bounded(path, limits)?, ext.as_deref(), limits)
    }

    /// Encodes as OBJ, PLY (binary little-endian), STL (binary) or GLB.
    pub fn encode(&self, format: Format) -> Result<Vec<u8>> {
        self.validate()?;
        match format {
            Format::Obj => Ok(obj::encode(self)),
            Format::Ply => Ok(ply::encode(self, PlyEncoding::BinaryLittleEndian)),
            Format::Stl => stl::encode(self),
            Format::Glb => glb::encode(self),
            other => Err(MediaError::Unsupported(format!(
                "cannot write meshes as {other}"
            ))),
        }
    }

    /// PLY in the chosen encoding.
    pub fn encode_ply(&self, encoding: PlyEncoding) -> Result<Vec<u8>> {
        self.validate()?;
        Ok(ply::encode(self, encoding))
    }

    /// ASCII STL.
    pub fn encode_stl_ascii(&self) -> Result<Vec<u8>> {
        self.validate()?;
        Ok(stl::encode_ascii(self))
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        match Format::for_output(path) {
            Some((format, Kind::Mesh)) => write_atomic(path, &self.encode(format)?),
            _ => Err(MediaError::Unsupported(format!(
                "{}: not a mesh extension (obj, ply, stl, glb)",
                path.display()
            ))),
        }
    }

    /// Per-face unit normal (zero for a degenerate face).
    pub fn face_normal(&self, tri: [u32; 3]) -> [f32; 3] {
        let [a, b, c] = tri.map(|i| self.positions[i as usize]);
        let u = [b[0] - a[0], b[1] - a[1], b[2] - a[2]];
        let v = [c[0] - a[0], c[1] - a[1], c[2] - a[2]];
        let n = [
            u[1] * v[2] - u[2] * v[1],
            u[2] * v[0] - u[0] * v[2],
            u[0] * v[1] - u[1] * v[0],
        ];
        let len = (n[0] * n[0] + n[1] * n[1] + n[2] * n[2]).sqrt();
        if len > 0.0 {
            n.map(|x| x / len)
        } else {
            [0.0; 3]
        }
    }
}

/// Vertex and face counts and bounding box.
pub fn probe(bytes: &[u8], ext: Option<&str>, limits: &Limits) -> Result<MeshInfo> {
    let format = detect_mesh(bytes, ext)?;
    let mesh = Mesh::decode(bytes, ext, limits)?;
    Ok(MeshInfo {
        format,
        vertices: mesh.positions.len(),
        faces: mesh.triangles.len(),
        bbox: mesh.bbox(),
    })
}

fn detect_mesh(bytes: &[u8], ext: Option<&str>) -> Result<Format> {
    let head = &bytes[..bytes.len().min(SNIFF_BYTES)];
    match Format::detect(head, bytes.len() as u64, ext) {
        Some(f) if f.kind() == Some(Kind::Mesh) => Ok(f),
        Some(f) => Err(MediaError::Invalid(format!("expected a mesh, found {f}"))),
        None => Err(MediaError::UnknownFormat(
            "not an OBJ, PLY, STL or GLB mesh".into(),
        )),
    }
}

/// Splits a polygon into a triangle fan, the triangulation OBJ and PLY
/// readers conventionally use for convex faces.
pub(crate) fn fan(polygon: &[u32], out: &mut Vec<[u32; 3]>) {
    for i in 1..polygon.len().saturating_sub(1) {
        out.push([polygon[0], polygon[i], polygon[i + 1]]);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;

    /// A unit cube with quads split into triangles, normals, UVs and colours.
    pub(crate) fn cube() -> Mesh {
        let positions: Vec<[f32; 3]> = (0..8)
            .map(|i| [(i & 1) as f32, ((i >> 1) & 1) as f32, ((i >> 2) & 1) as f32])
            .collect();
        let quads = [
            [0, 2, 3, 1],
            [4, 5, 7, 6],
            [0, 1, 5, 4],
            [2, 6, 7, 3],
            [0, 4, 6, 2],
            [1, 3, 7, 5],
        ];
        let mut triangles = Vec::new();
        for q in quads {
            fan(&q, &mut triangles);
        }
        let mut mesh = Mesh::new(positions, triangles).unwrap();
        mesh.normals = Some(
            mesh.positions
                .iter()
                .map(|p| {
                    let v = p.map(|c| c - 0.5);
                    let l = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
                    v.map(|c| c / l)
                })
                .collect(),
        );
        mesh.uvs = Some(mesh.positions.iter().map(|p| [p[0], p[1]]).collect());
        mesh.colors = Some(
            mesh.positions
                .iter()
                .map(|p| [p[0], p[1], p[2], 1.0])
                .collect(),
        );
        mesh
    }

    #[test]
    fn validation_names_the_problem() {
        let err = Mesh::new(vec![[0.0; 3]; 2], vec![[0, 1, 2]])
            .unwrap_err()
            .to_string();
        assert!(err.contains("face 0 uses vertex 2"), "{err}");
        let err = Mesh::new(vec![[f32::NAN, 0.0, 0.0]], vec![])
            .unwrap_err()
            .to_string();
        assert!(err.contains("vertex 0"), "{err}");
    }

    #[test]
    fn bbox_of_cube() {
        assert_eq!(cube().bbox(), Some([[0.0; 3], [1.0; 3]]));
        assert_eq!(Mesh::default().bbox(), None);
    }
}
