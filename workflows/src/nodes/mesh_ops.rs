//! Mesh nodes: normalise, transform, merge.

use modalities::{Media, Mesh};
use serde_json::json;

use crate::node::{media_output, output, spec, Inputs, Node, NodeSpec, Outputs, Port, StepContext};
use crate::types::{Base, PortType, Value};

const MESH: PortType = PortType::one(Base::Mesh);
const NUMBER: PortType = PortType::one(Base::Number);

/// `mesh.normalize`: centred on the origin, scaled into the unit cube.
pub struct MeshNormalize;

pub fn normalize_node() -> Box<dyn Node> {
    Box::new(MeshNormalize)
}

pub fn normalize_mesh(mesh: &Mesh) -> Mesh {
    let mut out = mesh.clone();
    if let Some([lo, hi]) = mesh.bbox() {
        let center: [f32; 3] = std::array::from_fn(|i| (lo[i] + hi[i]) / 2.0);
        let extent = (0..3).map(|i| hi[i] - lo[i]).fold(0f32, f32::max);
        let scale = if extent > 0.0 { 1.0 / extent } else { 1.0 };
        for p in &mut out.positions {
            *p = std::array::from_fn(|i| (p[i] - center[i]) * scale);
        }
    }
    out
}

impl Node for MeshNormalize {
    fn spec(&self) -> NodeSpec {
        NodeSpec {
            name: "mesh.normalize",
            doc: "centres a mesh on the origin and scales it into the unit cube",
            inputs: vec![Port::required(
                "mesh",
                PortType::one(Base::Mesh),
                "the mesh",
            )],
            outputs: vec![Port::output(
                "mesh",
                PortType::one(Base::Mesh),
                "the normalised mesh",
            )],
            uses_pack: false,
        }
    }
    fn run(&self, _: &StepContext, inputs: &Inputs) -> Result<Outputs, String> {
        Ok(output(
            "mesh",
            Value::Media(Media::Mesh(normalize_mesh(inputs.mesh("mesh")?))),
        ))
    }
}

pub struct Transform;
pub fn transform() -> Box<dyn Node> {
    Box::new(Transform)
}
/// Scales, then rotates about x, y and z (degrees, in that order), then moves.
pub fn transform_mesh(mesh: &Mesh, scale: f32, rotate: [f32; 3], translate: [f32; 3]) -> Mesh {
    let [rx, ry, rz] = rotate.map(f32::to_radians);
    let rot = |p: [f32; 3]| {
        let [x, y, z] = p;
        let (y, z) = (y * rx.cos() - z * rx.sin(), y * rx.sin() + z * rx.cos());
        let (x, z) = (x * ry.cos() + z * ry.sin(), -x * ry.sin() + z * ry.cos());
        let (x, y) = (x * rz.cos() - y * rz.sin(), x * rz.sin() + y * rz.cos());
        [x, y, z]
    };
    let mut out = mesh.clone();
    for p in &mut out.positions {
        let r = rot(p.map(|v| v * scale));
        *p = std::array::from_fn(|i| r[i] + translate[i]);
    }
    if let Some(normals) = &mut out.normals {
        normals.iter_mut().for_each(|n| *n = rot(*n));
    }
    out
}
impl Node for Transform {
    fn spec(&self) -> NodeSpec {
        let n = |name, doc| Port::with_default(name, NUMBER, json!(0.0), doc);
        spec(
            "mesh.transform",
            "scales, rotates (degrees about x, y, z) and moves a mesh",
            vec![
                Port::required("mesh", MESH, "the mesh"),
                Port::with_default("scale", NUMBER, json!(1.0), "uniform scale"),
                n("rotate_x", "degrees"),
                n("rotate_y", "degrees"),
                n("rotate_z", "degrees"),
                n("x", "move along x"),
                n("y", "move along y"),
                n("z", "move along z"),
            ],
            vec![Port::output("mesh", MESH, "the moved mesh")],
        )
    }
    fn run(&self, _: &StepContext, inputs: &Inputs) -> Result<Outputs, String> {
        let get = |n: &str| inputs.number(n).map(|v| v as f32);
        let scale = get("scale")?;
        if !(scale.is_finite() && scale > 0.0) {
            return Err(format!("scale: {scale} is not positive"));
        }
        let rotate = [get("rotate_x")?, get("rotate_y")?, get("rotate_z")?];
        let translate = [get("x")?, get("y")?, get("z")?];
        Ok(media_output(
            "mesh",
            Media::Mesh(transform_mesh(
                inputs.mesh("mesh")?,
                scale,
                rotate,
                translate,
            )),
        ))
    }
}

pub struct Merge;
pub fn merge() -> Box<dyn Node> {
    Box::new(Merge)
}
impl Node for Merge {
    fn spec(&self) -> NodeSpec {
        spec(
            "mesh.merge",
            "puts meshes together in one (attributes all meshes share are kept)",
            vec![Port::required(
                "meshes",
                PortType::list_of(Base::Mesh),
                "the meshes",
            )],
            vec![Port::output("mesh", MESH, "the merged mesh")],
        )
    }
    fn run(&self, _: &StepContext, inputs: &Inputs) -> Result<Outputs, String> {
        let meshes: Vec<&Mesh> = inputs
            .list("meshes")?
            .iter()
            .map(|v| match v {
                Value::Media(Media::Mesh(m)) => Ok(m),
                _ => Err("meshes: not a list of meshes".to_string()),
            })
            .collect::<Result<_, _>>()?;
        let (mut positions, mut triangles) = (Vec::new(), Vec::new());
        for m in &meshes {
            let base = positions.len() as u32;
            positions.extend_from_slice(&m.positions);
            triangles.extend(m.triangles.iter().map(|t| t.map(|i| i + base)));
        }
        let mut out = Mesh::new(positions, triangles).map_err(|e| e.to_string())?;
        if meshes.iter().all(|m| m.normals.is_some()) {
            out.normals = Some(
                meshes
                    .iter()
                    .flat_map(|m| m.normals.iter().flatten().copied())
                    .collect(),
            );
        }
        Ok(output("mesh", Value::Media(Media::Mesh(out))))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::node::run_node;

    fn triangle() -> Mesh {
        Mesh::new(
            vec![[0.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 4.0, 0.0]],
            vec![[0, 1, 2]],
        )
        .unwrap()
    }

    fn mesh(out: Outputs) -> Mesh {
        match out.into_iter().next() {
            Some((_, Value::Media(Media::Mesh(m)))) => m,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn normalize_transform_and_merge() {
        let m = |x: Mesh| Value::Media(Media::Mesh(x));
        let unit = mesh(run_node(&MeshNormalize, vec![("mesh", m(triangle()))]).unwrap());
        assert_eq!(unit.bbox(), Some([[-0.25, -0.5, 0.0], [0.25, 0.5, 0.0]]));
        let moved = mesh(
            run_node(
                &Transform,
                vec![
                    ("mesh", m(triangle())),
                    ("rotate_z", Value::Number(90.0)),
                    ("x", Value::Number(1.0)),
                ],
            )
            .unwrap(),
        );
        let p = moved.positions[1];
        assert!(
            (p[0] - 1.0).abs() < 1e-5 && (p[1] - 2.0).abs() < 1e-5,
            "{p:?}"
        );
        let both = mesh(
            run_node(
                &Merge,
                vec![("meshes", Value::List(vec![m(triangle()), m(triangle())]))],
            )
            .unwrap(),
        );
        assert_eq!((both.positions.len(), both.triangles[1]), (6, [3, 4, 5]));
    }
}
