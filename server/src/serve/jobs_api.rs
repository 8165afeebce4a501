//! Asynchronous jobs: `/v1/videos` in the shape other servers use, workflow
//! runs, and the generic `/v1/jobs` and `/v1/files`.

use std::path::PathBuf;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use modalities::Media;
use pipelines::generate::CancelToken;
use pipelines::tasks::{Runner, TaskInputs, TaskName, TaskOptions, TaskOutput};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use super::jobs::{new_id, video_json, Job, Jobs};
use super::media::image_size;
use super::{ApiError, ApiJson, ApiResult, Shared};

fn jobs(state: &Shared) -> ApiResult<&std::sync::Arc<Jobs>> {
    state.jobs.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "this server keeps no jobs (start it with --data-dir)",
        )
    })
}

fn not_found(what: &str, id: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("no {what} {id:?}"))
}

/// Seconds as OpenAI sends them (a string such as "4") or a number.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
enum Seconds {
    Text(String),
    Number(f64),
}

#[derive(Deserialize, ToSchema)]
pub struct VideoBody {
    prompt: String,
    #[serde(default)]
    model: Option<String>,
    seconds: Option<Seconds>,
    size: Option<String>,
    seed: Option<u64>,
}

/// The form `/v1/videos` also reads (as the OpenAI SDK sends it).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct VideoForm {
    prompt: String,
    /// A first frame: the video starts from this image.
    #[schema(value_type = Option<String>, format = Binary)]
    input_reference: Option<Vec<u8>>,
    seconds: Option<String>,
    size: Option<String>,
    seed: Option<u64>,
    model: Option<String>,
}

/// Creates a video job from JSON, or from a form (as the OpenAI SDK sends
/// it) that may carry an `input_reference` image: then image-to-video.
#[utoipa::path(post, path = "/v1/videos", tag = "openai", request_body(content((VideoBody = "application/json"), (VideoForm = "multipart/form-data"))), responses((status = 200, description = "A `video` object, status `queued`")))]
pub async fn create(
    State(state): State<Shared>,
    request: axum::extract::Request,
) -> ApiResult<Json<Value>> {
    use axum::extract::FromRequest;
    let headers = request.headers().clone();
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let (body, reference) = if is_form {
        let multipart = axum::extract::Multipart::from_request(request, &state)
            .await
            .map_err(|e| ApiError::new(e.status(), e.body_text()))?;
        let form = super::uploads::read_form(&state, multipart).await?;
        let field = |n: &str| form.fields.get(n).cloned();
        let body = VideoBody {
            prompt: field("prompt").ok_or_else(|| ApiError::invalid("prompt", "required"))?,
            model: field("model"),
            seconds: field("seconds").map(Seconds::Text),
            size: field("size"),
            seed: form.number("seed")?,
        };
        (body, form.image("input_reference")?)
    } else {
        let ApiJson(body) = ApiJson::<VideoBody>::from_request(request, &state).await?;
        (body, None)
    };
    let seconds = match &body.seconds {
        None => None,
        Some(Seconds::Number(n)) => Some(*n),
        Some(Seconds::Text(t)) => Some(
            t.trim()
                .parse::<f64>()
                .map_err(|_| ApiError::invalid("seconds", format!("{t:?} is not a number")))?,
        ),
    };
    let longest = state.limits.max_video_seconds;
    if let Some(s) = seconds.filter(|s| !(s.is_finite() && *s > 0.0 && *s <= longest)) {
        return Err(ApiError::invalid(
            "seconds",
            format!("{s} is not in (0, {longest}] (this server's limit)"),
        ));
    }
    // Checked now, so a bad size is a 400 and not a failed job later.
    image_size(
        &state.runner,
        body.size.as_deref(),
        state.limits.max_image_side,
    )?;
    let store = jobs(&state)?;
    // The reference image is kept with the job, so a restart can still run it.
    let reference = match reference {
        None => None,
        Some(image) => {
            let path = store
                .dir
                .join("inputs")
                .join(format!("{}.png", new_id("ref")));
            image.write(&path, None).map_err(ApiError::internal)?;
            Some(path.to_string_lossy().into_owned())
        }
    };
    let request = json!({"prompt": body.prompt, "model": body.model, "seconds": seconds, "size": body.size, "seed": body.seed, "input_reference": reference});
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok());
    let job = store.submit("video", &request, key)?;
    Ok(Json(video_json(&job)))
}

fn video_job(state: &Shared, id: &str) -> ApiResult<Job> {
    jobs(state)?
        .get(id)?
        .filter(|j| j.kind == "video")
        .ok_or_else(|| not_found("video", id))
}

#[utoipa::path(get, path = "/v1/videos/{id}", tag = "openai", params(("id" = String, Path, description = "A video job id")), responses((status = 200, description = "A `video` object: status queued, in_progress, completed, failed or cancelled, and progress")))]
pub async fn retrieve(
    State(state): State<Shared>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(video_json(&video_job(&state, &id)?)))
}

#[utoipa::path(get, path = "/v1/videos", tag = "openai", responses((status = 200, description = "`{object: list, data: [video]}`, newest first")))]
pub async fn list(State(state): State<Shared>) -> ApiResult<Json<Value>> {
    let data: Vec<Value> = jobs(&state)?
        .list("video")?
        .iter()
        .map(video_json)
        .collect();
    Ok(Json(json!({"object": "list", "data": data})))
}

#[utoipa::path(delete, path = "/v1/videos/{id}", tag = "openai", params(("id" = String, Path, description = "A video job id")), responses((status = 200, description = "The deleted `video` object")))]
pub async fn delete(State(state): State<Shared>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let job = video_job(&state, &id)?;
    if job.status == "in_progress" {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "the video is being made; cancel it or wait",
        ));
    }
    jobs(&state)?.delete(&id)?;
    Ok(Json(
        json!({"id": id, "object": "video.deleted", "deleted": true}),
    ))
}

async fn file_response(path: PathBuf, mime: String) -> ApiResult<Response> {
    let bytes = tokio::fs::read(&path).await.map_err(ApiError::internal)?;
    Ok(([(header::CONTENT_TYPE, mime)], bytes).into_response())
}

#[utoipa::path(get, path = "/v1/videos/{id}/content", tag = "openai", params(("id" = String, Path, description = "A video job id")), responses((status = 200, description = "The MP4 file", content_type = "video/mp4")))]
pub async fn content(State(state): State<Shared>, Path(id): Path<String>) -> ApiResult<Response> {
    let job = video_job(&state, &id)?;
    if job.status != "completed" {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("video {id} is {}, not completed", job.status),
        ));
    }
    let file = jobs(&state)?
        .files(&id)?
        .into_iter()
        .next()
        .ok_or_else(|| not_found("content for video", &id))?;
    file_response(file.path, file.mime).await
}

#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs", params(("id" = String, Path, description = "A job id")), responses((status = 200, description = "A job: status, progress, per-step states and output files")))]
pub async fn job(State(state): State<Shared>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let store = jobs(&state)?;
    let job = store.get(&id)?.ok_or_else(|| not_found("job", &id))?;
    let files: Vec<Value> = store
        .files(&id)?
        .iter()
        .map(|f| json!({"id": f.id, "name": f.name, "bytes": f.bytes, "sha256": f.sha256, "content_type": f.mime}))
        .collect();
    Ok(Json(json!({
        "id": job.id, "object": "job", "kind": job.kind, "status": job.status, "progress": job.progress,
        "created_at": job.created_at, "completed_at": job.completed_at, "error": job.error, "files": files,
    })))
}

#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", tag = "jobs", params(("id" = String, Path, description = "A job id")), responses((status = 200, description = "The job, cancelled")))]
pub async fn cancel(State(state): State<Shared>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let store = jobs(&state)?;
    store.get(&id)?.ok_or_else(|| not_found("job", &id))?;
    store.cancel(&id)?;
    job(State(state.clone()), Path(id)).await
}

#[utoipa::path(get, path = "/v1/files/{id}/content", tag = "jobs", params(("id" = String, Path, description = "A file id from a job's outputs")), responses((status = 200, description = "The file's bytes, with its media type", content_type = "application/octet-stream")))]
pub async fn file(State(state): State<Shared>, Path(id): Path<String>) -> ApiResult<Response> {
    let file = jobs(&state)?
        .file(&id)?
        .ok_or_else(|| not_found("file", &id))?;
    file_response(file.path, file.mime).await
}

/// Runs one job (on the worker thread): its files, or why it failed.
pub fn run_job(
    runner: &Runner,
    store: &Jobs,
    job: &Job,
    cancel: &CancelToken,
) -> Result<Vec<(String, PathBuf, String)>, String> {
    match job.kind.as_str() {
        "video" => {
            let r = &job.request;
            // Checked against the limits when the job was submitted.
            let size = image_size(runner, r["size"].as_str(), u32::MAX).map_err(|e| e.message)?;
            let options = TaskOptions {
                prompt: r["prompt"].as_str().unwrap_or_default().to_string(),
                seconds: r["seconds"].as_f64(),
                size: size.grid,
                pixels: size.pixels,
                seed: r["seed"].as_u64(),
                ..TaskOptions::default()
            };
            store.set_progress(&job.id, 5.0);
            let (task, inputs) = match r["input_reference"].as_str() {
                None => (TaskName::TextToVideo, TaskInputs::default()),
                Some(path) => {
                    let image = modalities::Image::read(
                        std::path::Path::new(path),
                        &modalities::Limits::default(),
                    )
                    .map_err(|e| e.to_string())?;
                    (
                        TaskName::ImageToVideo,
                        TaskInputs {
                            image: Some(image),
                            ..TaskInputs::default()
                        },
                    )
                }
            };
            let result = runner
                .run_until(task, &options, &inputs, cancel)
                .map_err(|e| e.to_string())?;
            let Some(TaskOutput::Media(Media::Video(video))) = result.outputs.into_iter().next()
            else {
                return Err("the task made no video".into());
            };
            let path = store
                .dir
                .join("files")
                .join(format!("{}.mp4", new_id("video")));
            video.write(&path).map_err(|e| e.to_string())?;
            Ok(vec![("video.mp4".into(), path, "video/mp4".into())])
        }
        "workflow" => run_workflow_job(runner, store, job, cancel),
        other => Err(format!("unknown job kind {other:?}")),
    }
}

/// A workflow input over HTTP: media come as `data:` URLs (never as server
/// paths), everything else as JSON.
fn workflow_input(
    dir: &std::path::Path,
    name: &str,
    value: &Value,
    ty: workflows::PortType,
) -> Result<workflows::Value, String> {
    if ty.is_media() {
        let url = value
            .as_str()
            .ok_or_else(|| format!("{name}: a {ty} is sent as a data: URL"))?;
        let (mime, data) = url
            .strip_prefix("data:")
            .and_then(|r| r.split_once(";base64,"))
            .ok_or_else(|| format!("{name}: a {ty} is sent as a data: URL"))?;
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .map_err(|e| format!("{name}: {e}"))?;
        let ext = mime
            .rsplit('/')
            .next()
            .unwrap_or("bin")
            .replace("mpeg", "mp3")
            .replace("x-wav", "wav");
        let path = dir.join(format!("{name}.{ext}"));
        std::fs::write(&path, bytes).map_err(|e| format!("{name}: {e}"))?;
        return workflows::io::parse_input(
            name,
            &path.to_string_lossy(),
            ty,
            std::path::Path::new("/"),
        )
        .map_err(|e| e.to_string());
    }
    workflows::Value::from_literal(value, ty).map_err(|e| format!("{name}: {e}"))
}

fn load_workflow(request: &Value) -> Result<workflows::Workflow, String> {
    let limits = workflows::WorkflowLimits::default();
    match (request["workflow"].as_str(), request["yaml"].as_str()) {
        (Some(name), None) => {
            let yaml = crate::assets::builtin_workflow(name)
                .ok_or_else(|| format!("workflow: {name:?} is not a built-in workflow name"))?;
            workflows::load_str(yaml, &limits).map_err(|e| format!("workflow {name}: {e}"))
        }
        (None, Some(yaml)) => workflows::load_str(yaml, &limits).map_err(|e| e.to_string()),
        _ => Err("give either `workflow` (a built-in's name) or `yaml`".into()),
    }
}

#[derive(Deserialize, ToSchema)]
pub struct RunBody {
    workflow: Option<String>,
    yaml: Option<String>,
    /// The workflow's inputs by name; media as `data:` URLs.
    #[serde(default)]
    #[schema(value_type = Object)]
    inputs: serde_json::Map<String, Value>,
    #[serde(default)]
    seed: u64,
}

#[utoipa::path(post, path = "/v1/workflows/runs", tag = "workflows", request_body = RunBody, params(("Idempotency-Key" = Option<String>, Header, description = "The same key and body return the original job; a different body is 409")), responses((status = 200, description = "The job running the workflow")))]
pub async fn run_workflow(
    State(state): State<Shared>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<RunBody>,
) -> ApiResult<Json<Value>> {
    let request = json!({"workflow": body.workflow, "yaml": body.yaml, "inputs": body.inputs, "seed": body.seed});
    // Checked before the job is recorded: a bad workflow is a 400 with its errors.
    let wf = load_workflow(&request).map_err(|e| {
        ApiError::invalid(
            if body.yaml.is_some() {
                "yaml"
            } else {
                "workflow"
            },
            e,
        )
    })?;
    for name in body.inputs.keys() {
        if !wf.inputs.contains_key(name) {
            return Err(ApiError::invalid(
                "inputs",
                format!("the workflow has no input {name:?}"),
            ));
        }
    }
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok());
    let job = jobs(&state)?.submit("workflow", &request, key)?;
    self::job(State(state.clone()), Path(job.id)).await
}

#[utoipa::path(get, path = "/v1/jobs/{id}/events", tag = "jobs", params(("id" = String, Path, description = "A job id")), responses((status = 200, description = "Server-sent workflow progress events (queued, started, progress, cached, finished, failed), then the job's end", content_type = "text/event-stream")))]
pub async fn events(State(state): State<Shared>, Path(id): Path<String>) -> ApiResult<Response> {
    use axum::response::sse::{Event as SseEvent, Sse};
    let store = jobs(&state)?.clone();
    store.get(&id)?.ok_or_else(|| not_found("job", &id))?;
    // Replays what was recorded, then follows until the job ends.
    let stream = async_stream(store, id);
    Ok(Sse::new(tokio_stream::StreamExt::map(stream, |v: Value| {
        Ok::<_, std::convert::Infallible>(SseEvent::default().data(v.to_string()))
    }))
    .into_response())
}

fn async_stream(
    store: std::sync::Arc<Jobs>,
    id: String,
) -> tokio_stream::wrappers::ReceiverStream<Value> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        let mut seen = 0;
        loop {
            let (events, job) = match (store.events(&id, seen), store.get(&id)) {
                (Ok(e), Ok(Some(j))) => (e, j),
                _ => return,
            };
            for (seq, event) in events {
                seen = seq;
                if tx.send(event).await.is_err() {
                    return;
                }
            }
            if !matches!(job.status.as_str(), "queued" | "in_progress") {
                let _ = tx
                    .send(json!({"event": "job", "status": job.status, "error": job.error}))
                    .await;
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// Runs a workflow job: inputs bound, events recorded, outputs registered.
fn run_workflow_job(
    runner: &Runner,
    store: &Jobs,
    job: &Job,
    cancel: &CancelToken,
) -> Result<Vec<(String, PathBuf, String)>, String> {
    let wf = load_workflow(&job.request)?;
    let dir = store.dir.join("jobs").join(&job.id);
    std::fs::create_dir_all(dir.join("inputs")).map_err(|e| e.to_string())?;
    let mut given = std::collections::BTreeMap::new();
    if let Some(inputs) = job.request["inputs"].as_object() {
        for (name, value) in inputs {
            let ty = wf
                .inputs
                .get(name)
                .ok_or_else(|| format!("no input {name:?}"))?
                .ty;
            given.insert(
                name.clone(),
                workflow_input(&dir.join("inputs"), name, value, ty)?,
            );
        }
    }
    let inputs = workflows::run::bind_inputs(&wf, given).map_err(|e| e.to_string())?;
    let options = workflows::RunOptions {
        seed: job.request["seed"].as_u64().unwrap_or(0),
        cache_dir: Some(store.dir.join("step-cache")),
        cancel: cancel.clone(),
        ..workflows::RunOptions::default()
    };
    let total = wf.steps.len().max(1) as f64;
    let done = std::sync::atomic::AtomicUsize::new(0);
    let on_event = |e: &workflows::Event| {
        store.record_event(&job.id, &serde_json::to_value(e).unwrap_or(Value::Null));
        if matches!(
            e,
            workflows::Event::Finished { .. } | workflows::Event::Failed { .. }
        ) {
            let n = done.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            store.set_progress(&job.id, 100.0 * n as f64 / total);
        }
    };
    let report = workflows::run::run(&wf, &inputs, Some(runner), &options, &on_event)
        .map_err(|e| e.to_string())?;
    if let Some((step, reason)) = report.failed.first() {
        return Err(format!("step {step}: {reason}"));
    }
    let written = workflows::io::write_outputs(&dir.join("outputs"), &report.outputs)
        .map_err(|e| e.to_string())?;
    Ok(written
        .into_iter()
        .map(|w| {
            let name = w
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let mime = match w.path.extension().and_then(|e| e.to_str()) {
                Some("png") => "image/png",
                Some("jpg" | "jpeg") => "image/jpeg",
                Some("wav") => "audio/wav",
                Some("mp3") => "audio/mpeg",
                Some("mp4") => "video/mp4",
                Some("glb") => "model/gltf-binary",
                Some("txt") => "text/plain",
                _ => "application/octet-stream",
            };
            (name, w.path, mime.to_string())
        })
        .collect())
}
