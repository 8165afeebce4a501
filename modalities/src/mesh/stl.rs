//! STL through `stl_io`. Binary STL's triangle count is checked against the
//! file size before reading; vertices shared by triangles are merged.

use std::collections::HashMap;
use std::io::Cursor;

use super::Mesh;
use crate::limits::check;
use crate::{Format, Limits, MediaError, Result};

fn malformed(reason: impl std::fmt::Display) -> MediaError {
    MediaError::malformed(Format::Stl, reason)
}

pub(super) fn decode(bytes: &[u8], limits: &Limits) -> Result<Mesh> {
    let ascii = bytes.trim_ascii_start().starts_with(b"solid")
        && bytes.windows(5).take(4096).any(|w| w == b"facet");
    if !ascii {
        let Some(count) = bytes
            .get(80..84)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        else {
            return Err(malformed(format!(
                "{} bytes is too short for a binary STL header",
                bytes.len()
            )));
        };
        let expected = 84 + 50 * u64::from(count);
        if expected != bytes.len() as u64 {
            return Err(malformed(format!(
                "header claims {count} triangles ({expected} bytes) but the file has {} bytes",
                bytes.len()
            )));
        }
        check("face count", count.into(), limits.max_faces)?;
    }
    let mut cursor = Cursor::new(bytes);
    let triangles = stl_io::create_stl_reader(&mut cursor).map_err(malformed)?;
    let mut mesh = Mesh::default();
    let mut index: HashMap<[u32; 3], u32> = HashMap::new();
    for (f, triangle) in triangles.enumerate() {
        let triangle = triangle.map_err(|e| malformed(format!("triangle {f}: {e}")))?;
        check("face count", f as u64 + 1, limits.max_faces)?;
        let corners = triangle.vertices.map(|v| {
            let key = v.0.map(f32::to_bits);
            *index.entry(key).or_insert_with(|| {
                mesh.positions.push(v.0);
                (mesh.positions.len() - 1) as u32
            })
        });
        mesh.triangles.push(corners);
    }
    check(
        "vertex count",
        mesh.positions.len() as u64,
        limits.max_vertices,
    )?;
    Ok(mesh)
}

fn triangles(mesh: &Mesh) -> Vec<stl_io::Triangle> {
    mesh.triangles
        .iter()
        .map(|&t| stl_io::Triangle {
            normal: stl_io::Normal::new(mesh.face_normal(t)),
            vertices: t.map(|i| stl_io::Vertex::new(mesh.positions[i as usize])),
        })
        .collect()
}

pub(super) fn encode(mesh: &Mesh) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    stl_io::write_stl(&mut out, triangles(mesh).iter())
        .map_err(|e| MediaError::encode(Format::Stl, e))?;
    Ok(out)
}

pub(super) fn encode_ascii(mesh: &Mesh) -> Vec<u8> {
    use std::fmt::Write;
    let mut out = String::from("solid anyforge\n");
    for t in triangles(mesh) {
        let n = t.normal.0;
        let _ = writeln!(
            out,
            "  facet normal {} {} {}\n    outer loop",
            n[0], n[1], n[2]
        );
        for v in t.vertices {
            let _ = writeln!(out, "      vertex {} {} {}", v.0[0], v.0[1], v.0[2]);
        }
        out.push_str("    endloop\n  endfacet\n");
    }
    out.push_str("endsolid anyforge\n");
    out.into_bytes()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::mesh::tests::cube;

    #[test]
    fn round_trips_binary_and_ascii() {
        let m = cube();
        for bytes in [encode(&m).unwrap(), encode_ascii(&m)] {
            let back = decode(&bytes, &Limits::default()).unwrap();
            assert_eq!(back.positions.len(), 8, "shared corners merged");
            assert_eq!(back.triangles.len(), 12);
            let corners = |mesh: &Mesh| {
                mesh.triangles
                    .iter()
                    .map(|t| t.map(|i| mesh.positions[i as usize]))
                    .collect::<Vec<_>>()
            };
            assert_eq!(corners(&back), corners(&m));
        }
    }

    #[test]
    fn lying_triangle_count_refused() {
        let mut stl = encode(&cube()).unwrap();
        stl[80..84].copy_from_slice(&u32::MAX.to_le_bytes());
        let err = decode(&stl, &Limits::default()).unwrap_err().to_string();
        assert!(err.contains("claims 4294967295 triangles"), "{err}");
    }
}
