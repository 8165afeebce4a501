//! One error type for every handler, answered in OpenAI's envelope:
//! `{"error": {"message", "type", "param", "code"}}` with the right status.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use pipelines::PipelineError;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub param: Option<String>,
    pub code: Option<&'static str>,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            param: None,
            code: None,
            retry_after: None,
        }
    }

    /// Bad input in a named field.
    pub fn invalid(param: &str, message: impl std::fmt::Display) -> ApiError {
        ApiError {
            param: Some(param.into()),
            ..ApiError::new(StatusCode::BAD_REQUEST, format!("{param}: {message}"))
        }
    }

    pub fn internal(message: impl std::fmt::Display) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message.to_string())
    }

    fn kind(&self) -> &'static str {
        match self.status.as_u16() {
            401 => "authentication_error",
            404 => "not_found_error",
            429 => "rate_limit_error",
            400..=499 => "invalid_request_error",
            _ => "server_error",
        }
    }
}

/// The body of every error answer, as OpenAI's API writes it.
#[derive(Serialize, ToSchema)]
pub struct ErrorEnvelope {
    error: ErrorBody,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// What is wrong, naming the field, line or file.
    message: String,
    /// invalid_request_error, authentication_error, not_found_error,
    /// rate_limit_error or server_error.
    #[serde(rename = "type")]
    kind: &'static str,
    /// The request field at fault, when one is.
    param: Option<String>,
    /// A machine-readable reason (e.g. `queue_full`).
    code: Option<&'static str>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorEnvelope {
            error: ErrorBody {
                kind: self.kind(),
                message: self.message,
                param: self.param,
                code: self.code,
            },
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            if let Ok(v) = seconds.to_string().parse() {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        response
    }
}

/// `field: reason` messages name their field as the error's `param`.
fn param_of(message: &str) -> Option<String> {
    let (head, _) = message.split_once(':')?;
    (!head.is_empty()
        && head
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.'))
    .then(|| head.to_string())
}

impl From<PipelineError> for ApiError {
    fn from(e: PipelineError) -> ApiError {
        match e {
            PipelineError::Busy(n) => ApiError {
                code: Some("queue_full"),
                retry_after: Some(1),
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!("the queue is full ({n} requests waiting); retry later"),
                )
            },
            // Only a draining server cancels work whose client is still there.
            PipelineError::Cancelled => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the request was cancelled (the server is shutting down)",
            ),
            PipelineError::Request(m) => ApiError {
                param: param_of(&m),
                ..ApiError::new(StatusCode::BAD_REQUEST, m)
            },
            e
            @ (PipelineError::Codec(_) | PipelineError::Media(_) | PipelineError::Template(_)) => {
                ApiError::new(StatusCode::BAD_REQUEST, e.to_string())
            }
            other => ApiError::internal(other),
        }
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(r: axum::extract::rejection::JsonRejection) -> ApiError {
        let status = match r.status() {
            StatusCode::PAYLOAD_TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, r.body_text())
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
