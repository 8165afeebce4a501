//! Multipart endpoints: `/v1/images/edits` and `/v1/audio/transcriptions`.

use std::collections::HashMap;

use axum::extract::{Multipart, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use modalities::{Audio, Image, Media};
use pipelines::tasks::{TaskInputs, TaskName, TaskOptions, TaskOutput};
use serde_json::json;
use utoipa::ToSchema;

use super::drain::run_task;
use super::{ApiError, ApiResult, Shared};

/// The form `/v1/images/edits` reads (documents it in `/openapi.json`).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct EditForm {
    /// The image to edit (PNG, JPEG or WebP).
    #[schema(value_type = String, format = Binary)]
    image: Vec<u8>,
    /// White where the edit regenerates, black where it keeps the image.
    #[schema(value_type = Option<String>, format = Binary)]
    mask: Option<Vec<u8>>,
    prompt: String,
    n: Option<usize>,
    /// Only `b64_json`.
    response_format: Option<String>,
    /// png (default), jpeg or webp.
    output_format: Option<String>,
    seed: Option<u64>,
    model: Option<String>,
}

/// The form `/v1/audio/transcriptions` reads.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct TranscriptionForm {
    /// The audio (WAV, MP3, FLAC, OGG, M4A...).
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    /// json (default), text, srt, vtt or verbose_json.
    response_format: Option<String>,
    model: Option<String>,
    language: Option<String>,
}

/// A multipart form: file fields as bytes, the rest as text.
pub(super) struct Form {
    pub(super) files: HashMap<String, Vec<u8>>,
    pub(super) fields: HashMap<String, String>,
    /// Decoding limits for the uploaded media (configuration).
    limits: modalities::Limits,
}

pub(super) async fn read_form(state: &Shared, mut multipart: Multipart) -> ApiResult<Form> {
    let mut form = Form {
        files: HashMap::new(),
        fields: HashMap::new(),
        limits: state.limits.media.clone(),
    };
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| ApiError::new(e.status(), format!("multipart: {}", e.body_text())))?
    {
        // The newer SDKs send `image[]` for lists of images.
        let name = field
            .name()
            .unwrap_or_default()
            .trim_end_matches("[]")
            .to_string();
        let is_file = field.file_name().is_some();
        let bytes = field
            .bytes()
            .await
            .map_err(|e| ApiError::new(e.status(), format!("{name}: {}", e.body_text())))?;
        if is_file {
            form.files.entry(name).or_insert_with(|| bytes.to_vec());
        } else {
            let text = String::from_utf8(bytes.to_vec())
                .map_err(|_| ApiError::invalid(&name, "not UTF-8 text"))?;
            form.fields.insert(name, text);
        }
    }
    Ok(form)
}

impl Form {
    pub(super) fn number<T: std::str::FromStr>(&self, name: &str) -> ApiResult<Option<T>> {
        self.fields
            .get(name)
            .map(|v| {
                v.trim()
                    .parse()
                    .map_err(|_| ApiError::invalid(name, format!("{v:?} is not a number")))
            })
            .transpose()
    }

    pub(super) fn image(&self, name: &str) -> ApiResult<Option<Image>> {
        self.files
            .get(name)
            .map(|b| Image::decode(b, &self.limits).map_err(|e| ApiError::invalid(name, e)))
            .transpose()
    }
}

#[utoipa::path(post, path = "/v1/images/edits", tag = "openai", request_body(content = EditForm, content_type = "multipart/form-data"), responses((status = 200, description = "`{created, data: [{b64_json}], output_format}`")))]
pub async fn image_edits(
    State(state): State<Shared>,
    multipart: Multipart,
) -> ApiResult<Json<serde_json::Value>> {
    let form = read_form(&state, multipart).await?;
    let image = form
        .image("image")?
        .ok_or_else(|| ApiError::invalid("image", "an image file is required"))?;
    let mask = form.image("mask")?;
    let prompt = form
        .fields
        .get("prompt")
        .cloned()
        .ok_or_else(|| ApiError::invalid("prompt", "required"))?;
    let n = form.number::<usize>("n")?.unwrap_or(1);
    if n == 0 || n > state.limits.max_n {
        return Err(ApiError::invalid(
            "n",
            format!("{n} is not in 1..={}", state.limits.max_n),
        ));
    }
    let format = super::media::image_format(
        form.fields.get("response_format").map(String::as_str),
        form.fields.get("output_format").map(String::as_str),
    )?;
    let options = TaskOptions {
        prompt,
        n,
        seed: form.number("seed")?,
        ..TaskOptions::default()
    };
    let inputs = TaskInputs {
        image: Some(image),
        mask,
        ..TaskInputs::default()
    };
    let outputs = run_task(&state, TaskName::ImageEdit, options, inputs).await?;
    let images: Vec<Media> = outputs
        .into_iter()
        .filter_map(|o| match o {
            TaskOutput::Media(m) => Some(m),
            TaskOutput::Text(_) => None,
        })
        .collect();
    let data = super::media::image_data(&images, format)?;
    Ok(Json(
        json!({"created": super::openai_created(), "data": data}),
    ))
}

/// `HH:MM:SS,mmm` (SRT) or `HH:MM:SS.mmm` (VTT).
fn timestamp(seconds: f64, sep: char) -> String {
    let ms = (seconds * 1000.0).round() as u64;
    format!(
        "{:02}:{:02}:{:02}{sep}{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

#[utoipa::path(post, path = "/v1/audio/transcriptions", tag = "openai", request_body(content = TranscriptionForm, content_type = "multipart/form-data"), responses((status = 200, description = "`{text}` (json), plain text, SRT, VTT or verbose JSON with segments", content_type = "application/json")))]
pub async fn transcriptions(
    State(state): State<Shared>,
    multipart: Multipart,
) -> ApiResult<Response> {
    let form = read_form(&state, multipart).await?;
    let bytes = form
        .files
        .get("file")
        .ok_or_else(|| ApiError::invalid("file", "an audio file is required"))?;
    let audio =
        Audio::decode(bytes, &state.limits.media).map_err(|e| ApiError::invalid("file", e))?;
    let duration = audio.duration_s();
    let format = form
        .fields
        .get("response_format")
        .cloned()
        .unwrap_or_else(|| "json".into());
    if !["json", "text", "srt", "vtt", "verbose_json"].contains(&format.as_str()) {
        return Err(ApiError::invalid(
            "response_format",
            format!("{format:?} is not json, text, srt, vtt or verbose_json"),
        ));
    }
    let options = TaskOptions {
        temperature: form.number("temperature")?,
        ..TaskOptions::default()
    };
    let inputs = TaskInputs {
        audio: Some(audio),
        ..TaskInputs::default()
    };
    let text = match run_task(&state, TaskName::Transcribe, options, inputs)
        .await?
        .pop()
    {
        Some(TaskOutput::Text(t)) => t.trim().to_string(),
        _ => return Err(ApiError::internal("the task returned no text")),
    };
    // One segment: the model gives no timings of its own.
    let plain = |body: String| {
        ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
    };
    Ok(match format.as_str() {
        "text" => plain(text),
        "srt" => plain(format!("1\n{} --> {}\n{text}\n", timestamp(0.0, ','), timestamp(duration, ','))),
        "vtt" => plain(format!("WEBVTT\n\n{} --> {}\n{text}\n", timestamp(0.0, '.'), timestamp(duration, '.'))),
        "verbose_json" => Json(json!({
            "task": "transcribe", "language": form.fields.get("language").cloned().unwrap_or_else(|| "unknown".into()),
            "duration": duration, "text": text,
            "segments": [{"id": 0, "start": 0.0, "end": duration, "text": text}],
        }))
        .into_response(),
        _ => Json(json!({"text": text})).into_response(),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamps() {
        assert_eq!(super::timestamp(3725.5, ','), "01:02:05,500");
        assert_eq!(super::timestamp(0.0, '.'), "00:00:00.000");
    }
}
