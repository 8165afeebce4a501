//! `/v1/workflows` (the built-ins), `/v1/workflows/validate` and `/v1/nodes`.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;
use workflows::{WorkflowError, WorkflowLimits};

use super::{ApiError, ApiJson, ApiResult, Shared};

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
    for (name, yaml) in crate::assets::builtin_workflows() {
        let wf = workflows::load_str(yaml, &WorkflowLimits::default())
            .map_err(|e| ApiError::internal(format!("built-in workflow {name}: {e}")))?;
        let inputs: Vec<Value> = wf
            .inputs
            .iter()
            .map(|(name, i)| json!({"name": name, "type": i.ty.to_string(), "required": i.default.is_none() && !i.optional}))
            .collect();
        let outputs: Vec<&str> = wf.outputs.iter().map(|o| o.file.as_str()).collect();
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
