//! Wavefront OBJ through `tobj`. Material libraries are never opened: an
//! `mtllib` line can name any path, and geometry is all we read.

use std::io::{BufReader, Cursor};

use super::Mesh;
use crate::limits::check;
use crate::{Format, Limits, MediaError, Result};

pub(super) fn decode(bytes: &[u8], limits: &Limits) -> Result<Mesh> {
    // Count statements first so a huge file is refused before parsing.
    let (mut vertices, mut faces) = (0u64, 0u64);
    for line in bytes.split(|&b| b == b'\n') {
        let line = line.trim_ascii_start();
        if line.starts_with(b"v ") || line.starts_with(b"v\t") {
            vertices += 1;
        } else if line.starts_with(b"f ") || line.starts_with(b"f\t") {
            faces += 1;
        }
    }
    check("vertex count", vertices, limits.max_vertices)?;
    check("face count", faces, limits.max_faces)?;
    let options = tobj::LoadOptions {
        triangulate: true,
        single_index: true,
        ignore_points: true,
        ignore_lines: true,
    };
    let mut reader = BufReader::new(Cursor::new(bytes));
    let (models, _materials) = tobj::load_obj_buf(&mut reader, &options, |_| {
        Err(tobj::LoadError::OpenFileFailed)
    })
    .map_err(|e| MediaError::malformed(Format::Obj, e))?;
    let mut mesh = Mesh::default();
    let has = |f: fn(&tobj::Mesh) -> bool| !models.is_empty() && models.iter().all(|m| f(&m.mesh));
    let (with_normals, with_uvs, with_colors) = (
        has(|m| !m.normals.is_empty()),
        has(|m| !m.texcoords.is_empty()),
        has(|m| !m.vertex_color.is_empty()),
    );
    let (mut normals, mut uvs, mut colors) = (Vec::new(), Vec::new(), Vec::new());
    for model in &models {
        let m = &model.mesh;
        let base = mesh.positions.len() as u32;
        let count = m.positions.len() / 3;
        mesh.positions
            .extend(m.positions.chunks_exact(3).map(|p| [p[0], p[1], p[2]]));
        for tri in m.indices.chunks_exact(3) {
            if let Some(&bad) = tri.iter().find(|&&i| i as usize >= count) {
                return Err(MediaError::malformed(
                    Format::Obj,
                    format!("a face in {:?} uses missing vertex {}", model.name, bad + 1),
                ));
            }
            mesh.triangles
                .push([base + tri[0], base + tri[1], base + tri[2]]);
        }
        if with_normals {
            normals.extend(m.normals.chunks_exact(3).map(|n| [n[0], n[1], n[2]]));
        }
        if with_uvs {
            uvs.extend(m.texcoords.chunks_exact(2).map(|t| [t[0], t[1]]));
        }
        if with_colors {
            colors.extend(
                m.vertex_color
                    .chunks_exact(3)
                    .map(|c| [c[0], c[1], c[2], 1.0]),
            );
        }
    }
    let n = mesh.positions.len();
    mesh.normals = (with_normals && normals.len() == n).then_some(normals);
    mesh.uvs = (with_uvs && uvs.len() == n).then_some(uvs);
    mesh.colors = (with_colors && colors.len() == n).then_some(colors);
    Ok(mesh)
}

pub(super) fn encode(mesh: &Mesh) -> Vec<u8> {
    use std::fmt::Write;
    let mut out = String::from("# written by anyforge\n");
    for (i, p) in mesh.positions.iter().enumerate() {
        let _ = write!(out, "v {} {} {}", p[0], p[1], p[2]);
        if let Some(c) = mesh.colors.as_ref().map(|c| c[i]) {
            let _ = write!(out, " {} {} {}", c[0], c[1], c[2]);
        }
        out.push('\n');
    }
    for t in mesh.uvs.iter().flatten() {
        let _ = writeln!(out, "vt {} {}", t[0], t[1]);
    }
    for n in mesh.normals.iter().flatten() {
        let _ = writeln!(out, "vn {} {} {}", n[0], n[1], n[2]);
    }
    // Attributes are per vertex, so every reference uses one index.
    let corner = |i: u32| -> String {
        let i = i + 1;
        match (mesh.uvs.is_some(), mesh.normals.is_some()) {
            (true, true) => format!("{i}/{i}/{i}"),
            (true, false) => format!("{i}/{i}"),
            (false, true) => format!("{i}//{i}"),
            (false, false) => i.to_string(),
        }
    };
    for t in &mesh.triangles {
        let _ = writeln!(out, "f {} {} {}", corner(t[0]), corner(t[1]), corner(t[2]));
    }
    out.into_bytes()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::mesh::tests::cube;

    #[test]
    fn round_trip_with_attributes() {
        let m = cube();
        let back = decode(&encode(&m), &Limits::default()).unwrap();
        assert_eq!(back.triangles.len(), 12);
        // tobj may reorder vertices: compare the triangle soup.
        let soup = |m: &Mesh| {
            let mut v: Vec<String> = m
                .triangles
                .iter()
                .map(|t| format!("{:?}", t.map(|i| m.positions[i as usize])))
                .collect();
            v.sort();
            v
        };
        assert_eq!(soup(&back), soup(&m));
        assert!(back.normals.is_some() && back.uvs.is_some() && back.colors.is_some());
    }

    #[test]
    fn quads_are_triangulated_and_negative_indices_resolved() {
        let obj = b"v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nf -4 -3 -2 -1\n";
        let m = decode(obj, &Limits::default()).unwrap();
        assert_eq!((m.positions.len(), m.triangles.len()), (4, 2));
    }
}
