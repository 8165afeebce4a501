//! `GET /openapi.json`: the OpenAPI 3.1 document, generated from the
//! handlers' `#[utoipa::path]` attributes and their request types, with the
//! error envelope every endpoint may answer.

use axum::Json;
use utoipa::openapi::path::Operation;
use utoipa::openapi::{OpenApi as Document, RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::error::ErrorEnvelope;
use super::{jobs_api, media, metrics, openai, speech, uploads, workflows_api};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "anyforge",
        description = "OpenAI-compatible multimodal generation (chat, images, speech, transcription, videos, meshes) with workflow jobs."
    ),
    paths(
        openai::models,
        openai::chat_completions,
        openai::completions,
        media::image_generations,
        uploads::image_edits,
        speech::speech,
        uploads::transcriptions,
        media::meshes,
        jobs_api::create,
        jobs_api::list,
        jobs_api::retrieve,
        jobs_api::delete,
        jobs_api::content,
        jobs_api::job,
        jobs_api::cancel,
        jobs_api::events,
        jobs_api::run_workflow,
        jobs_api::file,
        workflows_api::nodes,
        workflows_api::list,
        workflows_api::validate,
        metrics::render,
        health,
        document,
    ),
    components(schemas(ErrorEnvelope)),
    modifiers(&ErrorResponses),
    tags(
        (name = "openai", description = "The OpenAI API's shapes"),
        (name = "anyforge", description = "Media the OpenAI API has no endpoint for"),
        (name = "workflows", description = "Workflow graphs and runs"),
        (name = "jobs", description = "Durable jobs, their events and files"),
        (name = "operations", description = "Health, metrics and this document"),
    )
)]
struct ApiDoc;

/// Every operation may answer the error envelope: 4XX for the request,
/// 5XX for the server (503 while starting or draining).
struct ErrorResponses;

impl Modify for ErrorResponses {
    fn modify(&self, doc: &mut Document) {
        let error = |what: &str| -> RefOr<Response> {
            ResponseBuilder::new()
                .description(what)
                .content(
                    "application/json",
                    utoipa::openapi::ContentBuilder::new()
                        .schema(Some(utoipa::openapi::Ref::from_schema_name(
                            "ErrorEnvelope",
                        )))
                        .build(),
                )
                .build()
                .into()
        };
        let add = |op: &mut Option<Operation>| {
            if let Some(op) = op {
                let r = &mut op.responses.responses;
                r.entry("4XX".into()).or_insert_with(|| {
                    error("Bad input (naming the field in `param`), 401, 404, 409, 413, or 429 with Retry-After")
                });
                r.entry("5XX".into()).or_insert_with(|| {
                    error("A server failure, or 503 while starting or draining")
                });
            }
        };
        for item in doc.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.delete,
                &mut item.put,
                &mut item.patch,
            ] {
                add(op);
            }
        }
    }
}

/// The document as served.
pub fn openapi() -> Document {
    ApiDoc::openapi()
}

#[utoipa::path(get, path = "/openapi.json", tag = "operations", responses((status = 200, description = "This document")))]
pub async fn document() -> Json<Document> {
    Json(openapi())
}

/// 200 while serving, 503 while draining (so balancers stop sending).
#[utoipa::path(get, path = "/health", tag = "operations", responses((status = 200, description = "`{status: ok}`; 503 `{status: draining}` while shutting down")))]
pub async fn health(
    axum::extract::State(state): axum::extract::State<super::Shared>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if state.drain.is_draining() {
        let body = Json(serde_json::json!({"status": "draining"}));
        return (axum::http::StatusCode::SERVICE_UNAVAILABLE, body).into_response();
    }
    Json(serde_json::json!({"status": "ok"})).into_response()
}
