//! `/v1/workflows` (the built-ins), `/v1/workflows/validate` and `/v1/nodes`.

use std::path::PathBuf;

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;
use workflows::{WorkflowError, WorkflowLimits};

use super::{ApiError, ApiJson, ApiResult, Shared};

/// The built-in workflows' folder (`assets/workflows` in the source tree).
pub fn builtin_dir() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/workflows")
}

fn ports(ports: &[workflows::node::Port]) -> Vec<Value> {
    ports
        .iter()
        .map(|p| json!({"name": p.name, "type": p.ty.to_string(), "default": p.default, "optional": p.optional, "description": p.doc}))
        .collect()
}

#[utoipa::path(get, path = "/v1/nodes", tag = "workflows", responses((status = 200, description = "The node catalog: each node's inputs, outputs and their types")))]
pub async fn nodes() -> Json<Value> {
    let data: Vec<Value> = workflows::nodes::REGISTRY
        .iter()
        .map(|make| {
            let s = make().spec();
            json!({"name": s.name, "description": s.doc, "inputs": ports(&s.inputs), "outputs": ports(&s.outputs), "uses_pack": s.uses_pack})
        })
        .collect();
    Json(json!({"object": "list", "data": data}))
}

#[utoipa::path(get, path = "/v1/workflows", tag = "workflows", responses((status = 200, description = "The built-in workflows with their inputs and outputs")))]
pub async fn list() -> ApiResult<Json<Value>> {
    let mut data = Vec::new();
    let entries = std::fs::read_dir(builtin_dir()).map_err(ApiError::internal)?;
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    paths.sort();
    for path in paths {
        let wf = workflows::load(&path, &WorkflowLimits::default()).map_err(ApiError::internal)?;
        let inputs: Vec<Value> = wf
            .inputs
            .iter()
            .map(|(name, i)| json!({"name": name, "type": i.ty.to_string(), "required": i.default.is_none() && !i.optional}))
            .collect();
        let outputs: Vec<&str> = wf.outputs.iter().map(|o| o.file.as_str()).collect();
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        data.push(json!({"name": name, "title": wf.name, "inputs": inputs, "outputs": outputs, "steps": wf.steps.len()}));
    }
    Ok(Json(json!({"object": "list", "data": data})))
}

#[derive(Deserialize, ToSchema)]
pub struct ValidateBody {
    yaml: String,
}

#[utoipa::path(post, path = "/v1/workflows/validate", tag = "workflows", request_body = ValidateBody, responses((status = 200, description = "`{valid, errors: [{line, column, message}]}`")))]
pub async fn validate(
    State(state): State<Shared>,
    ApiJson(body): ApiJson<ValidateBody>,
) -> ApiResult<Json<Value>> {
    Ok(Json(
        match workflows::load_str(&body.yaml, &state.limits.workflow) {
            Ok(wf) => {
                json!({"valid": true, "name": wf.name, "steps": wf.steps.len(), "errors": []})
            }
            Err(WorkflowError::Invalid(issues)) => json!({
                "valid": false,
                "errors": issues.iter().map(|i| json!({"line": i.loc.line, "column": i.loc.column, "message": i.message})).collect::<Vec<_>>(),
            }),
            Err(other) => {
                json!({"valid": false, "errors": [{"line": null, "column": null, "message": other.to_string()}]})
            }
        },
    ))
}
