//! PLY through `ply-rs-bw`. The header is read and its element counts checked
//! against the limits and the file size before any payload is read.

use std::io::Cursor;

use ply_rs_bw::parser::{Parser, Reader};
use ply_rs_bw::ply::{DefaultElement, Encoding, Property, PropertyType, ScalarType};

use super::{fan, Mesh};
use crate::limits::check;
use crate::{Format, Limits, MediaError, Result};

/// How a PLY file's payload is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlyEncoding {
    Ascii,
    BinaryLittleEndian,
}

fn malformed(reason: impl std::fmt::Display) -> MediaError {
    MediaError::malformed(Format::Ply, reason)
}

fn scalar_bytes(t: &ScalarType) -> u64 {
    match t {
        ScalarType::Char | ScalarType::UChar => 1,
        ScalarType::Short | ScalarType::UShort => 2,
        ScalarType::Int | ScalarType::UInt | ScalarType::Float => 4,
        ScalarType::Double => 8,
    }
}

pub(super) fn decode(bytes: &[u8], limits: &Limits) -> Result<Mesh> {
    let parser = Parser::<DefaultElement>::new();
    let mut reader = Reader::new(Cursor::new(bytes));
    let header = parser.read_header(&mut reader).map_err(malformed)?;
    let payload_bytes = bytes.len() as u64;
    for (name, element) in &header.elements {
        let count = element.count as u64;
        match name.as_str() {
            "vertex" => check("vertex count", count, limits.max_vertices)?,
            "face" => check("face count", count, limits.max_faces)?,
            _ => {}
        }
        // Each element needs at least this many bytes, so a count the file
        // cannot hold is refused before the parser reserves for it.
        let min_bytes: u64 = match header.encoding {
            Encoding::Ascii => 2,
            _ => element
                .properties
                .values()
                .map(|p| match &p.data_type {
                    PropertyType::Scalar(t) => scalar_bytes(t),
                    PropertyType::List(count_type, _) => scalar_bytes(count_type),
                })
                .sum::<u64>()
                .max(1),
        };
        if count.saturating_mul(min_bytes) > payload_bytes {
            return Err(malformed(format!(
                "header claims {count} {name} elements, more than the {payload_bytes}-byte file can hold"
            )));
        }
    }
    let payload = parser
        .read_payload(&mut reader, &header)
        .map_err(malformed)?;
    let vertices = payload
        .get("vertex")
        .ok_or_else(|| malformed("no vertex element"))?;
    let mut mesh = Mesh::default();
    let num = |e: &DefaultElement, key: &str| e.get(key).and_then(scalar);
    let first = vertices.first();
    let has = |keys: &[&str]| first.is_some_and(|e| keys.iter().all(|k| e.contains_key(*k)));
    let uv_keys = [["u", "v"], ["s", "t"], ["texture_u", "texture_v"]]
        .into_iter()
        .find(|k| has(k));
    let with_normals = has(&["nx", "ny", "nz"]);
    let with_colors = has(&["red", "green", "blue"]);
    let (mut normals, mut uvs, mut colors) = (Vec::new(), Vec::new(), Vec::new());
    for (i, v) in vertices.iter().enumerate() {
        let p = ["x", "y", "z"].map(|k| num(v, k));
        let [Some(x), Some(y), Some(z)] = p else {
            return Err(malformed(format!("vertex {i} lacks a numeric x, y or z")));
        };
        mesh.positions.push([x as f32, y as f32, z as f32]);
        if with_normals {
            normals.push(["nx", "ny", "nz"].map(|k| num(v, k).unwrap_or(0.0) as f32));
        }
        if let Some([u, w]) = uv_keys {
            uvs.push([
                num(v, u).unwrap_or(0.0) as f32,
                num(v, w).unwrap_or(0.0) as f32,
            ]);
        }
        if with_colors {
            let channel = |k: &str| match v.get(k) {
                Some(Property::UChar(c)) => f32::from(*c) / 255.0,
                Some(p) => scalar(p).unwrap_or(1.0) as f32,
                None => 1.0,
            };
            colors.push([
                channel("red"),
                channel("green"),
                channel("blue"),
                channel("alpha"),
            ]);
        }
    }
    let count = mesh.positions.len();
    if let Some(faces) = payload.get("face") {
        let mut polygon = Vec::new();
        for (f, face) in faces.iter().enumerate() {
            let list = face
                .get("vertex_indices")
                .or_else(|| face.get("vertex_index"))
                .and_then(index_list)
                .ok_or_else(|| malformed(format!("face {f} has no vertex_indices list")))?;
            polygon.clear();
            for idx in list {
                if idx < 0 || idx as u64 >= count as u64 {
                    return Err(malformed(format!(
                        "face {f} uses vertex {idx}, but there are {count} vertices"
                    )));
                }
                polygon.push(idx as u32);
            }
            fan(&polygon, &mut mesh.triangles);
            check("face count", mesh.triangles.len() as u64, limits.max_faces)?;
        }
    }
    mesh.normals = with_normals.then_some(normals);
    mesh.uvs = uv_keys.map(|_| uvs);
    mesh.colors = with_colors.then_some(colors);
    Ok(mesh)
}

fn scalar(p: &Property) -> Option<f64> {
    Some(match *p {
        Property::Char(v) => f64::from(v),
        Property::UChar(v) => f64::from(v),
        Property::Short(v) => f64::from(v),
        Property::UShort(v) => f64::from(v),
        Property::Int(v) => f64::from(v),
        Property::UInt(v) => f64::from(v),
        Property::Float(v) => f64::from(v),
        Property::Double(v) => v,
        _ => return None,
    })
}

fn index_list(p: &Property) -> Option<Vec<i64>> {
    Some(match p {
        Property::ListChar(v) => v.iter().map(|&x| i64::from(x)).collect(),
        Property::ListUChar(v) => v.iter().map(|&x| i64::from(x)).collect(),
        Property::ListShort(v) => v.iter().map(|&x| i64::from(x)).collect(),
        Property::ListUShort(v) => v.iter().map(|&x| i64::from(x)).collect(),
        Property::ListInt(v) => v.iter().map(|&x| i64::from(x)).collect(),
        Property::ListUInt(v) => v.iter().map(|&x| i64::from(x)).collect(),
        _ => return None,
    })
}

pub(super) fn encode(mesh: &Mesh, encoding: PlyEncoding) -> Vec<u8> {
    let mut header = format!(
        "ply\nformat {} 1.0\ncomment written by anyforge\nelement vertex {}\nproperty float x\nproperty float y\nproperty float z\n",
        match encoding {
            PlyEncoding::Ascii => "ascii",
            PlyEncoding::BinaryLittleEndian => "binary_little_endian",
        },
        mesh.positions.len()
    );
    if mesh.normals.is_some() {
        header.push_str("property float nx\nproperty float ny\nproperty float nz\n");
    }
    if mesh.uvs.is_some() {
        header.push_str("property float s\nproperty float t\n");
    }
    if mesh.colors.is_some() {
        header.push_str(
            "property uchar red\nproperty uchar green\nproperty uchar blue\nproperty uchar alpha\n",
        );
    }
    header.push_str(&format!(
        "element face {}\nproperty list uchar uint vertex_indices\nend_header\n",
        mesh.triangles.len()
    ));
    let mut out = header.into_bytes();
    let to_u8 = |c: f32| (c.clamp(0.0, 1.0) * 255.0).round() as u8;
    for i in 0..mesh.positions.len() {
        let mut floats: Vec<f32> = mesh.positions[i].to_vec();
        floats.extend(
            mesh.normals
                .as_ref()
                .map(|n| n[i].to_vec())
                .unwrap_or_default(),
        );
        floats.extend(mesh.uvs.as_ref().map(|t| t[i].to_vec()).unwrap_or_default());
        let colour: Vec<u8> = mesh
            .colors
            .as_ref()
            .map(|c| c[i].map(to_u8).to_vec())
            .unwrap_or_default();
        match encoding {
            PlyEncoding::Ascii => {
                let mut fields: Vec<String> = floats.iter().map(f32::to_string).collect();
                fields.extend(colour.iter().map(u8::to_string));
                out.extend_from_slice(fields.join(" ").as_bytes());
                out.push(b'\n');
            }
            PlyEncoding::BinaryLittleEndian => {
                floats
                    .iter()
                    .for_each(|f| out.extend_from_slice(&f.to_le_bytes()));
                out.extend_from_slice(&colour);
            }
        }
    }
    for t in &mesh.triangles {
        match encoding {
            PlyEncoding::Ascii => {
                out.extend_from_slice(format!("3 {} {} {}\n", t[0], t[1], t[2]).as_bytes())
            }
            PlyEncoding::BinaryLittleEndian => {
                out.push(3);
                t.iter()
                    .for_each(|i| out.extend_from_slice(&i.to_le_bytes()));
            }
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::mesh::tests::cube;

    #[test]
    fn round_trips_in_both_encodings() {
        let m = cube();
        for encoding in [PlyEncoding::Ascii, PlyEncoding::BinaryLittleEndian] {
            let back = decode(&encode(&m, encoding), &Limits::default()).unwrap();
            assert_eq!(back.positions, m.positions);
            assert_eq!(back.triangles, m.triangles);
            assert_eq!(back.normals, m.normals);
            assert_eq!(back.uvs, m.uvs);
            // Colours pass through 8 bits.
            let worst = back
                .colors
                .unwrap()
                .iter()
                .flatten()
                .zip(m.colors.iter().flatten().flatten())
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(worst <= 0.5 / 255.0 + 1e-6);
        }
    }

    #[test]
    fn billions_of_vertices_refused_before_reading() {
        let ply = b"ply\nformat binary_little_endian 1.0\nelement vertex 4000000000\nproperty float x\nproperty float y\nproperty float z\nend_header\n";
        let err = decode(ply, &Limits::default()).unwrap_err().to_string();
        assert!(err.contains("vertex count"), "{err}");
        let small = Limits {
            max_vertices: u64::MAX,
            ..Limits::default()
        };
        let err = decode(ply, &small).unwrap_err().to_string();
        assert!(err.contains("more than the"), "{err}");
    }
}
