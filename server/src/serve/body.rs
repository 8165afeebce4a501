//! The JSON body extractor of every endpoint: the body size limit applies
//! as it is read, nesting deeper than the configured depth is refused before
//! parsing, and a body that does not fit the request type is a 400 naming
//! the field.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

use super::{ApiError, Shared};

pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Shared> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &Shared) -> Result<Self, ApiError> {
        let json_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                let mime = v.split(';').next().unwrap_or("").trim();
                mime == "application/json" || mime.ends_with("+json")
            });
        if !json_type {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "the body must be JSON (Content-Type: application/json)",
            ));
        }
        let bytes = Bytes::from_request(request, state).await.map_err(|r| {
            let status = r.status();
            let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
                format!(
                    "the body is larger than the limit of {} bytes",
                    state.limits.max_body_bytes
                )
            } else {
                r.body_text()
            };
            ApiError::new(status, message)
        })?;
        let depth = json_depth(&bytes);
        if depth > state.limits.max_json_depth {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "the JSON body nests {depth} levels deep; the limit is {}",
                    state.limits.max_json_depth
                ),
            ));
        }
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if path == "." || path.is_empty() {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("invalid JSON body: {inner}"),
                )
            } else {
                ApiError::invalid(&path, inner)
            }
        })?;
        de.end().map_err(|e| {
            ApiError::new(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}"))
        })?;
        Ok(ApiJson(value))
    }
}

/// The deepest nesting of arrays and objects, counted without parsing (so
/// a hostile body costs one pass over its bytes).
pub fn json_depth(bytes: &[u8]) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &b in bytes {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::json_depth;

    #[test]
    fn depth_counts_nesting_outside_strings() {
        assert_eq!(json_depth(br#"{"a": [1, {"b": 2}]}"#), 3);
        assert_eq!(json_depth(br#"{"a": "[[[[{{{\"]]"}"#), 1);
        assert_eq!(json_depth(b"[[[[]]]]"), 4);
        assert_eq!(json_depth(b"17"), 0);
    }
}
