#![allow(clippy::unwrap_used)]
//! Meshes written by trimesh (see `tests/fixtures/meshes/make.py`), read by
//! anyforge and compared with what trimesh itself read back from each file.

mod common;

use std::path::Path;

use common::fixture;
use modalities::mesh::{probe, PlyEncoding};
use modalities::{Limits, Mesh};

fn expected() -> serde_json::Value {
    let text = std::fs::read_to_string(fixture("meshes/expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn trimesh_files_match_trimesh() {
    let expected = expected();
    let table = expected.as_object().unwrap();
    assert_eq!(table.len(), 7);
    for (name, want) in table {
        let path = fixture(&format!("meshes/{name}"));
        let bytes = std::fs::read(&path).unwrap();
        let ext = path.extension().and_then(|e| e.to_str());
        let info = probe(&bytes, ext, &Limits::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            info.vertices as u64,
            want["vertices"].as_u64().unwrap(),
            "{name} vertices"
        );
        assert_eq!(
            info.faces as u64,
            want["faces"].as_u64().unwrap(),
            "{name} faces"
        );
        let bbox = info.bbox.unwrap();
        for (i, corner) in want["bbox"].as_array().unwrap().iter().enumerate() {
            for (j, v) in corner.as_array().unwrap().iter().enumerate() {
                let v = v.as_f64().unwrap() as f32;
                assert!(
                    (bbox[i][j] - v).abs() < 1e-5,
                    "{name} bbox[{i}][{j}] {} vs {v}",
                    bbox[i][j]
                );
            }
        }
    }
}

#[test]
fn vertex_colours_from_trimesh_stl_and_glb() {
    let mesh = Mesh::read(&fixture("meshes/cylinder.glb"), &Limits::default()).unwrap();
    let colors = mesh.colors.expect("trimesh writes COLOR_0");
    let [r, g, b, a] = colors[0];
    assert!(
        (r - 1.0).abs() < 0.01
            && (g - 128.0 / 255.0).abs() < 0.01
            && b.abs() < 0.01
            && (a - 1.0).abs() < 0.01
    );
}

#[test]
fn every_writer_round_trips_every_fixture() {
    let limits = Limits::default();
    for name in [
        "box.obj",
        "sphere_binary.ply",
        "cylinder.stl",
        "cylinder.glb",
    ] {
        let mesh = Mesh::read(&fixture(&format!("meshes/{name}")), &limits).unwrap();
        let soup = |m: &Mesh| {
            let mut tris: Vec<[[u32; 3]; 3]> = m
                .triangles
                .iter()
                .map(|t| t.map(|i| m.positions[i as usize].map(f32::to_bits)))
                .collect();
            tris.sort();
            tris
        };
        let outputs = [
            ("obj", mesh.encode(modalities::Format::Obj).unwrap()),
            ("ply", mesh.encode(modalities::Format::Ply).unwrap()),
            ("ply-ascii", mesh.encode_ply(PlyEncoding::Ascii).unwrap()),
            ("stl", mesh.encode(modalities::Format::Stl).unwrap()),
            ("stl-ascii", mesh.encode_stl_ascii().unwrap()),
            ("glb", mesh.encode(modalities::Format::Glb).unwrap()),
        ];
        for (kind, bytes) in outputs {
            let back = Mesh::decode(&bytes, Some(kind.split('-').next().unwrap()), &limits)
                .unwrap_or_else(|e| panic!("{name} as {kind}: {e}"));
            assert_eq!(
                soup(&back),
                soup(&mesh),
                "{name} as {kind}: the same triangles"
            );
        }
    }
}

#[test]
fn convert_obj_to_glb_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("box.glb");
    modalities::convert(&fixture("meshes/box.obj"), &out, &Limits::default()).unwrap();
    let back = Mesh::read(&out, &Limits::default()).unwrap();
    assert_eq!((back.positions.len(), back.triangles.len()), (8, 12));
    assert!(Path::new(&out).metadata().unwrap().len() > 0);
}
