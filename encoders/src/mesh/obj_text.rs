//! The LLaMA-Mesh text form of the mesh tokens, for text backbones.

use modalities::Mesh;

use super::{check_bins, MeshFrame, QuantizedMesh};
use crate::error::{CodecError, Result};

/// The LLaMA-Mesh text form: `v x y z` with integer coordinates in
/// `0..bins`, then `f a b c` with 1-based indices.
pub fn to_obj_text(mesh: &Mesh, bins: u32, frame: MeshFrame) -> Result<String> {
    if frame.header_len() > 0 {
        return Err(CodecError::Codes(
            "the OBJ text form has no place for a stretched frame's size".into(),
        ));
    }
    let q = QuantizedMesh::from_mesh_in(mesh, bins, frame)?;
    let mut text = String::new();
    for v in &q.vertices {
        text.push_str(&format!("v {} {} {}\n", v[0], v[1], v[2]));
    }
    for f in &q.faces {
        text.push_str(&format!("f {} {} {}\n", f[0] + 1, f[1] + 1, f[2] + 1));
    }
    Ok(text)
}

/// Parses the LLaMA-Mesh text form (as a text backbone writes it: blank
/// lines and `#` comments are skipped; anything else is an error naming the
/// line). The result is repaired and put in canonical order.
pub fn from_obj_text(text: &str, bins: u32) -> Result<QuantizedMesh> {
    let bins = check_bins(bins)?;
    let (mut vertices, mut faces) = (Vec::new(), Vec::new());
    for (n, line) in text.lines().enumerate() {
        let bad = |why: &str| CodecError::Codes(format!("line {}: {why}: {line:?}", n + 1));
        let mut words = line.split_whitespace();
        let Some(tag) = words.next() else { continue };
        let values: Vec<&str> = words.collect();
        match tag {
            t if t.starts_with('#') => {}
            "v" | "f" if values.len() != 3 => return Err(bad("expected three numbers")),
            "v" => {
                let mut v = [0u32; 3];
                for (slot, word) in v.iter_mut().zip(&values) {
                    *slot = word
                        .parse::<u32>()
                        .ok()
                        .filter(|&c| c < bins)
                        .ok_or_else(|| {
                            bad(&format!("coordinates must be integers in 0..{bins}"))
                        })?;
                }
                vertices.push(v);
            }
            "f" => {
                let mut f = [0u32; 3];
                for (slot, word) in f.iter_mut().zip(&values) {
                    // `f 1/1 2/2 3/3` carries texture indices; the vertex comes first.
                    let index = word.split('/').next().unwrap_or_default();
                    *slot = index
                        .parse::<u32>()
                        .ok()
                        .filter(|&i| i >= 1)
                        .ok_or_else(|| bad("face indices must be positive integers"))?
                        - 1;
                }
                faces.push(f);
            }
            _ => return Err(bad("expected a `v` or `f` line")),
        }
    }
    if let Some(f) = faces
        .iter()
        .find(|f| f.iter().any(|&i| i as usize >= vertices.len()))
    {
        return Err(CodecError::Codes(format!(
            "face {:?} refers to a vertex past the {} defined",
            f.map(|i| i + 1),
            vertices.len()
        )));
    }
    let q = QuantizedMesh::canonical(bins, &vertices, &faces);
    if q.faces.is_empty() {
        return Err(CodecError::Codes(
            "the text defines no non-degenerate face".into(),
        ));
    }
    Ok(q)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::tests::cube;
    use super::*;

    #[test]
    fn obj_text_round_trips_and_names_bad_lines() {
        let text = to_obj_text(&cube(), 64, MeshFrame::BoundingBox).unwrap();
        assert_eq!(text.lines().filter(|l| l.starts_with("v ")).count(), 8);
        assert!(text.lines().all(|l| l
            .split_whitespace()
            .skip(1)
            .all(|w| w.parse::<u32>().is_ok())));
        let q = from_obj_text(&format!("# a cube\n\n{text}"), 64).unwrap();
        assert_eq!(q, QuantizedMesh::from_mesh(&cube(), 64).unwrap());
        for (bad, want) in [
            ("v 1 2\n", "line 1: expected three numbers"),
            ("v 1 2 64\n", "integers in 0..64"),
            ("v 1 2 3\nvt 0 0\n", "line 2: expected a `v` or `f` line"),
            ("v 1 2 3\nf 1 2 0\n", "positive integers"),
            ("v 1 2 3\nf 1 2 3\n", "past the 1 defined"),
        ] {
            let err = from_obj_text(bad, 64).unwrap_err().to_string();
            assert!(err.contains(want), "{bad:?}: {err}");
        }
    }
}
