//! `/v1/images/generations` and `/v1/meshes`.

use axum::extract::State;

use axum::Json;
use base64::Engine as _;
use modalities::{Format, Media};
use pipelines::tasks::{TaskInputs, TaskName, TaskOptions, TaskOutput};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use super::{ApiError, ApiJson, ApiResult, Shared};

/// A media task's outputs.
pub(super) async fn run_task(
    state: &Shared,
    task: TaskName,
    options: TaskOptions,
) -> ApiResult<Vec<Media>> {
    super::drain::run_task(state, task, options, TaskInputs::default())
        .await?
        .into_iter()
        .map(|o| match o {
            TaskOutput::Media(m) => Ok(m),
            TaskOutput::Text(_) => Err(ApiError::internal("the task returned text")),
        })
        .collect()
}

pub(super) fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The `response_format` (only `b64_json`) and `output_format` of an image request.
pub(super) fn image_format(response: Option<&str>, output: Option<&str>) -> ApiResult<Format> {
    if let Some(f) = response.filter(|f| *f != "b64_json") {
        return Err(ApiError::invalid(
            "response_format",
            format!("{f:?}: only b64_json is served (the server keeps no URLs)"),
        ));
    }
    match output.unwrap_or("png") {
        "png" => Ok(Format::Png),
        "jpeg" | "jpg" => Ok(Format::Jpeg),
        "webp" => Ok(Format::Webp),
        other => Err(ApiError::invalid(
            "output_format",
            format!("{other:?} is not png, jpeg or webp"),
        )),
    }
}

/// Where a request's `size` goes: a grid of the pack's codec, or, for a
/// pack whose model makes one grid, the output size in pixels.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct ImageSize {
    pub grid: Option<[usize; 2]>,
    pub pixels: Option<[u32; 2]>,
}

/// A `WIDTHxHEIGHT` size (or `auto`) for the pack's image codec.
pub(super) fn image_size(
    runner: &pipelines::tasks::Runner,
    size: Option<&str>,
    max_side: u32,
) -> ApiResult<ImageSize> {
    let layout = runner
        .pack()
        .image
        .as_ref()
        .ok_or_else(|| ApiError::invalid("model", "the pack makes no images"))?;
    let d = layout.downsample;
    let Some(s) = size.filter(|s| *s != "auto") else {
        return Ok(ImageSize::default());
    };
    match s
        .split_once('x')
        .and_then(|(w, h)| Some((w.parse::<usize>().ok()?, h.parse::<usize>().ok()?)))
    {
        Some((w, h)) if w.max(h) > max_side as usize => Err(ApiError::invalid(
            "size",
            format!("{s:?} is larger than this server's limit of {max_side} pixels a side"),
        )),
        Some((w, h)) if w > 0 && h > 0 && layout.fixed_grid.is_some() => Ok(ImageSize {
            grid: None,
            pixels: Some([w as u32, h as u32]),
        }),
        Some((w, h)) if w > 0 && h > 0 && w % d == 0 && h % d == 0 => Ok(ImageSize {
            grid: Some([h / d, w / d]),
            pixels: None,
        }),
        _ => Err(ApiError::invalid(
            "size",
            format!("{s:?} is not WIDTHxHEIGHT in multiples of {d}"),
        )),
    }
}

/// Images as OpenAI's `data` list of `b64_json` entries.
pub(super) fn image_data(images: &[Media], format: Format) -> ApiResult<Vec<Value>> {
    images
        .iter()
        .map(|m| match m {
            Media::Image(i) => {
                Ok(json!({"b64_json": b64(&i.encode(format, None).map_err(ApiError::internal)?)}))
            }
            _ => Err(ApiError::internal("not an image")),
        })
        .collect()
}

#[derive(Deserialize, ToSchema)]
pub struct ImageBody {
    prompt: String,
    n: Option<usize>,
    size: Option<String>,
    response_format: Option<String>,
    output_format: Option<String>,
    seed: Option<u64>,
    #[serde(default)]
    #[allow(dead_code)]
    model: Option<String>,
}

#[utoipa::path(post, path = "/v1/images/generations", tag = "openai", request_body = ImageBody, responses((status = 200, description = "`{created, data: [{b64_json}], output_format}`")))]
pub async fn image_generations(
    State(state): State<Shared>,
    ApiJson(body): ApiJson<ImageBody>,
) -> ApiResult<Json<Value>> {
    let n = body.n.unwrap_or(1);
    if n == 0 || n > state.limits.max_n {
        return Err(ApiError::invalid(
            "n",
            format!("{n} is not in 1..={}", state.limits.max_n),
        ));
    }
    let format = image_format(
        body.response_format.as_deref(),
        body.output_format.as_deref(),
    )?;
    let size = image_size(
        &state.runner,
        body.size.as_deref(),
        state.limits.max_image_side,
    )?;
    let options = TaskOptions {
        prompt: body.prompt,
        n,
        size: size.grid,
        pixels: size.pixels,
        seed: body.seed,
        ..TaskOptions::default()
    };
    let images = run_task(&state, TaskName::TextToImage, options).await?;
    let data = image_data(&images, format)?;
    Ok(Json(
        json!({"created": super::openai_created(), "data": data, "output_format": body.output_format.unwrap_or_else(|| "png".into())}),
    ))
}

#[derive(Deserialize, ToSchema)]
pub struct MeshBody {
    prompt: String,
    format: Option<String>,
    seed: Option<u64>,
}

#[utoipa::path(post, path = "/v1/meshes", tag = "anyforge", request_body = MeshBody, responses((status = 200, description = "`{created, data: [{b64_json, format, vertices, faces}]}`")))]
pub async fn meshes(
    State(state): State<Shared>,
    ApiJson(body): ApiJson<MeshBody>,
) -> ApiResult<Json<Value>> {
    let name = body.format.unwrap_or_else(|| "glb".into());
    let format = match name.as_str() {
        "obj" => Format::Obj,
        "glb" => Format::Glb,
        "ply" => Format::Ply,
        "stl" => Format::Stl,
        other => {
            return Err(ApiError::invalid(
                "format",
                format!("{other:?} is not obj, glb, ply or stl"),
            ))
        }
    };
    let options = TaskOptions {
        prompt: body.prompt,
        seed: body.seed,
        ..TaskOptions::default()
    };
    let mut outputs = run_task(&state, TaskName::TextToMesh, options).await?;
    let Some(Media::Mesh(mesh)) = outputs.pop() else {
        return Err(ApiError::internal("the task returned no mesh"));
    };
    let bytes = mesh.encode(format).map_err(ApiError::internal)?;
    Ok(Json(json!({
        "created": super::openai_created(),
        "data": [{"b64_json": b64(&bytes), "format": name, "vertices": mesh.positions.len(), "faces": mesh.triangles.len()}],
    })))
}
