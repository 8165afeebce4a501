//! Binary glTF through the `gltf` crate. Only the embedded binary chunk and
//! `data:` URIs are ever read: a buffer naming a path or URL is refused, and
//! every buffer's claimed length is checked against the bytes it really has.

use base64::Engine;
use gltf::buffer::Source;
use gltf::mesh::Mode;

use super::Mesh;
use crate::limits::check;
use crate::{Format, Limits, MediaError, Result};

fn malformed(reason: impl std::fmt::Display) -> MediaError {
    MediaError::malformed(Format::Glb, reason)
}

type Mat4 = [[f32; 4]; 4];

fn mul(a: &Mat4, b: &Mat4) -> Mat4 {
    std::array::from_fn(|c| std::array::from_fn(|r| (0..4).map(|k| a[k][r] * b[c][k]).sum()))
}

fn apply(m: &Mat4, p: [f32; 3], w: f32) -> [f32; 3] {
    std::array::from_fn(|r| m[0][r] * p[0] + m[1][r] * p[1] + m[2][r] * p[2] + m[3][r] * w)
}

const IDENTITY: Mat4 = [
    [1.0, 0.0, 0.0, 0.0],
    [0.0, 1.0, 0.0, 0.0],
    [0.0, 0.0, 1.0, 0.0],
    [0.0, 0.0, 0.0, 1.0],
];

/// Checks the GLB header and chunk lengths against the bytes really there;
/// the `gltf` crate subtracts before it checks (fuzzing found the overflow).
fn check_container(bytes: &[u8]) -> Result<()> {
    let u32_at = |at: usize| {
        bytes
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let (Some(version), Some(length), Some(json_len)) = (u32_at(4), u32_at(8), u32_at(12)) else {
        return Err(malformed(format!(
            "{} bytes is too short for a GLB header",
            bytes.len()
        )));
    };
    if version != 2 {
        return Err(malformed(format!("GLB version {version} is not 2")));
    }
    let length = length as usize;
    if length < 20 || length > bytes.len() {
        return Err(malformed(format!(
            "header claims {length} bytes but the file has {}",
            bytes.len()
        )));
    }
    if bytes.get(16..20) != Some(b"JSON") {
        return Err(malformed("the first chunk is not JSON"));
    }
    let json_end = 20usize.saturating_add(json_len as usize);
    if json_end > length {
        return Err(malformed(format!(
            "JSON chunk claims {json_len} bytes past the end of the file"
        )));
    }
    if json_end + 8 <= length {
        let bin_len = u32_at(json_end).unwrap_or(0) as usize;
        if json_end + 8 + bin_len > length {
            return Err(malformed(format!(
                "BIN chunk claims {bin_len} bytes past the end of the file"
            )));
        }
    }
    check_references(&bytes[20..json_end])
}

/// The element types the reader accepts for what it reads (fuzzing found an
/// accessor of the wrong type tripping an assertion inside the gltf crate).
fn check_layout(doc: &serde_json::Value, attribute: &str, index: &serde_json::Value) -> Result<()> {
    const FLOAT: u64 = 5126;
    const UBYTE: u64 = 5121;
    const USHORT: u64 = 5123;
    const UINT: u64 = 5125;
    let allowed: (&[&str], &[u64]) = match attribute {
        "POSITION" | "NORMAL" => (&["VEC3"], &[FLOAT]),
        "TEXCOORD_0" => (&["VEC2"], &[FLOAT, UBYTE, USHORT]),
        "COLOR_0" => (&["VEC3", "VEC4"], &[FLOAT, UBYTE, USHORT]),
        "indices" => (&["SCALAR"], &[UBYTE, USHORT, UINT]),
        _ => return Ok(()),
    };
    let accessor = index
        .as_u64()
        .and_then(|i| doc.get("accessors")?.get(i as usize));
    let kind = accessor.and_then(|a| a.get("type")?.as_str()).unwrap_or("");
    let component = accessor
        .and_then(|a| a.get("componentType")?.as_u64())
        .unwrap_or(0);
    if allowed.0.contains(&kind) && allowed.1.contains(&component) {
        Ok(())
    } else {
        Err(malformed(format!(
            "{attribute} accessor is {kind} of component type {component}, which it cannot be"
        )))
    }
}

/// Checks that every index the document uses points at something that
/// exists. The gltf crate's own validator indexes unchecked (fuzzing found a
/// primitive naming a missing accessor), so this runs first.
fn check_references(json: &[u8]) -> Result<()> {
    use serde_json::Value;
    let doc: Value =
        serde_json::from_slice(json).map_err(|e| malformed(format!("JSON chunk: {e}")))?;
    let count = |key: &str| doc.get(key).and_then(Value::as_array).map_or(0, Vec::len);
    let items = |key: &str| {
        doc.get(key)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let check = |what: String, index: &Value, target: &str| -> Result<()> {
        match index.as_u64() {
            Some(i) if (i as usize) < count(target) => Ok(()),
            _ => Err(malformed(format!(
                "{what} refers to {target}[{index}], which does not exist"
            ))),
        }
    };
    for (m, mesh) in items("meshes").iter().enumerate() {
        for (p, primitive) in mesh
            .get("primitives")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let what = || format!("meshes[{m}].primitives[{p}]");
            for (name, index) in primitive
                .get("attributes")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                check(what(), index, "accessors")?;
                check_layout(&doc, name, index)?;
            }
            if let Some(index) = primitive.get("indices") {
                check(what(), index, "accessors")?;
                check_layout(&doc, "indices", index)?;
            }
        }
    }
    for (a, accessor) in items("accessors").iter().enumerate() {
        if let Some(view) = accessor.get("bufferView") {
            check(format!("accessors[{a}]"), view, "bufferViews")?;
        }
    }
    for (v, view) in items("bufferViews").iter().enumerate() {
        check(
            format!("bufferViews[{v}]"),
            view.get("buffer").unwrap_or(&Value::Null),
            "buffers",
        )?;
    }
    for (n, node) in items("nodes").iter().enumerate() {
        if let Some(mesh) = node.get("mesh") {
            check(format!("nodes[{n}]"), mesh, "meshes")?;
        }
        for child in node
            .get("children")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            check(format!("nodes[{n}].children"), child, "nodes")?;
        }
    }
    for (s, scene) in items("scenes").iter().enumerate() {
        for node in scene
            .get("nodes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            check(format!("scenes[{s}]"), node, "nodes")?;
        }
    }
    if let Some(scene) = doc.get("scene") {
        check("scene".into(), scene, "scenes")?;
    }
    Ok(())
}

pub(super) fn decode(bytes: &[u8], limits: &Limits) -> Result<Mesh> {
    check_container(bytes)?;
    let gltf = gltf::Gltf::from_slice(bytes).map_err(malformed)?;
    let mut buffers: Vec<Vec<u8>> = Vec::new();
    for buffer in gltf.buffers() {
        let data = match buffer.source() {
            Source::Bin => gltf
                .blob
                .clone()
                .ok_or_else(|| malformed("buffer refers to a missing BIN chunk"))?,
            Source::Uri(uri) if uri.starts_with("data:") => {
                let (_, encoded) = uri
                    .split_once(";base64,")
                    .ok_or_else(|| malformed("data URI is not base64"))?;
                base64::engine::general_purpose::STANDARD
                    .decode(encoded)
                    .map_err(|e| malformed(format!("data URI: {e}")))?
            }
            Source::Uri(uri) => {
                let shown: String = uri.chars().take(80).collect();
                return Err(malformed(format!(
                    "buffer {} refers to an external file {shown:?}; only embedded data is read",
                    buffer.index()
                )));
            }
        };
        if buffer.length() > data.len() {
            return Err(malformed(format!(
                "buffer {} claims {} bytes but holds {}",
                buffer.index(),
                buffer.length(),
                data.len()
            )));
        }
        buffers.push(data);
    }
    // Walk the scene graph so node transforms place each mesh; without a
    // scene, take every mesh as it is.
    let mut placed: Vec<(gltf::Mesh, Mat4)> = Vec::new();
    match gltf.default_scene().or_else(|| gltf.scenes().next()) {
        Some(scene) => {
            let mut stack: Vec<(gltf::Node, Mat4)> = scene.nodes().map(|n| (n, IDENTITY)).collect();
            let mut visited = 0usize;
            while let Some((node, parent)) = stack.pop() {
                visited += 1;
                // Validation rejects cycles, but bound the walk regardless.
                check("glTF node visits", visited as u64, 1_000_000)?;
                let world = mul(&parent, &node.transform().matrix());
                if let Some(mesh) = node.mesh() {
                    placed.push((mesh, world));
                }
                stack.extend(node.children().map(|c| (c, world)));
            }
        }
        None => placed.extend(gltf.meshes().map(|m| (m, IDENTITY))),
    }
    let mut out = Mesh::default();
    let (mut normals, mut uvs, mut colors) = (Some(Vec::new()), Some(Vec::new()), Some(Vec::new()));
    for (mesh, world) in placed {
        for primitive in mesh.primitives() {
            let mode = primitive.mode();
            if !matches!(
                mode,
                Mode::Triangles | Mode::TriangleStrip | Mode::TriangleFan
            ) {
                continue;
            }
            let count = primitive
                .get(&gltf::Semantic::Positions)
                .map_or(0, |a| a.count());
            check(
                "vertex count",
                (out.positions.len() + count) as u64,
                limits.max_vertices,
            )?;
            let reader = primitive.reader(|b| buffers.get(b.index()).map(Vec::as_slice));
            let positions: Vec<[f32; 3]> = reader
                .read_positions()
                .ok_or_else(|| {
                    malformed(format!(
                        "mesh {} has a primitive without readable positions",
                        mesh.index()
                    ))
                })?
                .map(|p| apply(&world, p, 1.0))
                .collect();
            if positions.len() != count {
                return Err(malformed("position accessor runs past its buffer"));
            }
            let base = out.positions.len() as u32;
            let indices: Vec<u32> = match reader.read_indices() {
                Some(i) => {
                    let n = primitive.indices().map_or(0, |a| a.count());
                    check("index count", n as u64, limits.max_faces.saturating_mul(3))?;
                    i.into_u32().collect()
                }
                None => (0..count as u32).collect(),
            };
            if let Some(bad) = indices.iter().find(|&&i| i as usize >= count) {
                return Err(malformed(format!(
                    "mesh {} index {bad} is past its {count} vertices",
                    mesh.index()
                )));
            }
            let triangles: Vec<[u32; 3]> = match mode {
                Mode::Triangles => indices
                    .chunks_exact(3)
                    .map(|t| [t[0], t[1], t[2]])
                    .collect(),
                Mode::TriangleStrip => indices
                    .windows(3)
                    .enumerate()
                    .map(|(k, t)| {
                        if k % 2 == 0 {
                            [t[0], t[1], t[2]]
                        } else {
                            [t[1], t[0], t[2]]
                        }
                    })
                    .collect(),
                _ => (1..indices.len().saturating_sub(1))
                    .map(|k| [indices[0], indices[k], indices[k + 1]])
                    .collect(),
            };
            check(
                "face count",
                (out.triangles.len() + triangles.len()) as u64,
                limits.max_faces,
            )?;
            out.triangles
                .extend(triangles.iter().map(|t| t.map(|i| base + i)));
            out.positions.extend(positions);
            take(
                &mut normals,
                reader.read_normals().map(|n| {
                    n.map(|v| {
                        if world == IDENTITY {
                            v
                        } else {
                            normalize(apply(&world, v, 0.0))
                        }
                    })
                    .collect()
                }),
                count,
            );
            take(
                &mut uvs,
                reader.read_tex_coords(0).map(|t| t.into_f32().collect()),
                count,
            );
            take(
                &mut colors,
                reader.read_colors(0).map(|c| c.into_rgba_f32().collect()),
                count,
            );
        }
    }
    out.normals = normals.filter(|v| !v.is_empty());
    out.uvs = uvs.filter(|v| !v.is_empty());
    out.colors = colors.filter(|v| !v.is_empty());
    Ok(out)
}

/// Keeps an attribute only while every primitive has it, with one value a vertex.
fn take<T>(acc: &mut Option<Vec<T>>, values: Option<Vec<T>>, count: usize) {
    match (acc.as_mut(), values) {
        (Some(a), Some(v)) if v.len() == count => a.extend(v),
        _ => *acc = None,
    }
}

fn normalize(v: [f32; 3]) -> [f32; 3] {
    let len = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
    if len > 0.0 {
        v.map(|c| c / len)
    } else {
        v
    }
}

pub(super) fn encode(mesh: &Mesh) -> Result<Vec<u8>> {
    use serde_json::json;
    let mut bin: Vec<u8> = Vec::new();
    let mut views = Vec::new();
    let mut accessors = Vec::new();
    let mut attributes = serde_json::Map::new();
    // Appends one tightly packed view and its accessor; views start 4-aligned.
    let mut push = |bytes: Vec<u8>,
                    count: usize,
                    kind: &str,
                    component: u32,
                    target: u32,
                    extra: serde_json::Value|
     -> usize {
        while !bin.len().is_multiple_of(4) {
            bin.push(0);
        }
        views.push(json!({"buffer": 0, "byteOffset": bin.len(), "byteLength": bytes.len(), "target": target}));
        bin.extend(bytes);
        let mut accessor = json!({"bufferView": views.len() - 1, "componentType": component, "count": count, "type": kind});
        if let (Some(a), Some(e)) = (accessor.as_object_mut(), extra.as_object()) {
            a.extend(e.clone());
        }
        accessors.push(accessor);
        accessors.len() - 1
    };
    const FLOAT: u32 = 5126;
    const UINT: u32 = 5125;
    const ARRAY: u32 = 34962;
    const ELEMENTS: u32 = 34963;
    let floats =
        |v: &mut dyn Iterator<Item = f32>| v.flat_map(f32::to_le_bytes).collect::<Vec<u8>>();
    let n = mesh.positions.len();
    let [lo, hi] = mesh.bbox().unwrap_or([[0.0; 3]; 2]);
    let pos = push(
        floats(&mut mesh.positions.iter().flatten().copied()),
        n,
        "VEC3",
        FLOAT,
        ARRAY,
        json!({"min": lo, "max": hi}),
    );
    attributes.insert("POSITION".into(), pos.into());
    if let Some(normals) = &mesh.normals {
        let i = push(
            floats(&mut normals.iter().flatten().copied()),
            n,
            "VEC3",
            FLOAT,
            ARRAY,
            json!({}),
        );
        attributes.insert("NORMAL".into(), i.into());
    }
    if let Some(uvs) = &mesh.uvs {
        let i = push(
            floats(&mut uvs.iter().flatten().copied()),
            n,
            "VEC2",
            FLOAT,
            ARRAY,
            json!({}),
        );
        attributes.insert("TEXCOORD_0".into(), i.into());
    }
    if let Some(colors) = &mesh.colors {
        let i = push(
            floats(&mut colors.iter().flatten().copied()),
            n,
            "VEC4",
            FLOAT,
            ARRAY,
            json!({}),
        );
        attributes.insert("COLOR_0".into(), i.into());
    }
    let index_bytes: Vec<u8> = mesh
        .triangles
        .iter()
        .flatten()
        .flat_map(|i| i.to_le_bytes())
        .collect();
    let indices = push(
        index_bytes,
        mesh.triangles.len() * 3,
        "SCALAR",
        UINT,
        ELEMENTS,
        json!({}),
    );
    while !bin.len().is_multiple_of(4) {
        bin.push(0);
    }
    let document = json!({
        "asset": {"version": "2.0", "generator": "anyforge"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0}],
        "meshes": [{"primitives": [{"attributes": attributes, "indices": indices, "mode": 4}]}],
        "buffers": [{"byteLength": bin.len()}],
        "bufferViews": views,
        "accessors": accessors,
    });
    let mut json_bytes =
        serde_json::to_vec(&document).map_err(|e| MediaError::encode(Format::Glb, e))?;
    while json_bytes.len() % 4 != 0 {
        json_bytes.push(b' ');
    }
    let total = 12 + 8 + json_bytes.len() + 8 + bin.len();
    let total = u32::try_from(total)
        .map_err(|_| MediaError::encode(Format::Glb, "mesh is over the 4 GiB GLB limit"))?;
    let mut out = Vec::with_capacity(total as usize);
    out.extend_from_slice(b"glTF");
    out.extend_from_slice(&2u32.to_le_bytes());
    out.extend_from_slice(&total.to_le_bytes());
    out.extend_from_slice(&(json_bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(b"JSON");
    out.extend_from_slice(&json_bytes);
    out.extend_from_slice(&(bin.len() as u32).to_le_bytes());
    out.extend_from_slice(b"BIN\0");
    out.extend_from_slice(&bin);
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::mesh::tests::cube;

    #[test]
    fn round_trip_keeps_everything() {
        let m = cube();
        let back = decode(&encode(&m).unwrap(), &Limits::default()).unwrap();
        assert_eq!(back, m);
    }
}
