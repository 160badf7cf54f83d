//! `api::Error` and its one mapping to HTTP: a status code and a Kubernetes `Status` body, so
//! kubectl and client libraries show the message as they would Kubernetes' own.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// What went wrong with a request, named for what the client does next.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No valid bearer token: authenticate.
    #[error("{0}")]
    Unauthorized(String),
    /// The request itself is malformed (bad selector, mismatched namespace, unreadable body).
    #[error("{0}")]
    BadRequest(String),
    /// No such path, kind or resource.
    #[error("{0}")]
    NotFound(String),
    /// Refused by admission or by a storage rule.
    #[error(transparent)]
    Admission(#[from] admission::Error),
    /// This path does not take this method; the second field lists the methods it takes.
    #[error("{0}")]
    MethodNotAllowed(String, &'static str),
    /// The media type of the body is not one this endpoint accepts.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The body, or what a patch would make of the object, is over a documented limit.
    #[error("{0}")]
    TooLarge(String),
    /// This identity is writing faster than its limit: retry after the delay.
    #[error("{0}")]
    TooManyRequests(String, std::time::Duration),
}

impl From<storage::Error> for Error {
    fn from(e: storage::Error) -> Self {
        Error::Admission(admission::Error::Storage(e))
    }
}

/// A `Status` object with `code`, `reason` and `message`, and optionally `details.causes`.
fn status(code: StatusCode, reason: &str, message: String, causes: Vec<serde_json::Value>) -> Response {
    let mut body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    if !causes.is_empty() {
        body["details"] = json!({ "causes": causes });
    }
    (code, Json(body)).into_response()
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        use admission::Error as A;
        use storage::Error as S;
        let message = self.to_string();
        match self {
            Error::Unauthorized(_) => status(StatusCode::UNAUTHORIZED, "Unauthorized", message, vec![]),
            Error::BadRequest(_) => status(StatusCode::BAD_REQUEST, "BadRequest", message, vec![]),
            Error::NotFound(_) => status(StatusCode::NOT_FOUND, "NotFound", message, vec![]),
            Error::MethodNotAllowed(_, allow) => {
                let mut response = status(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", message, vec![]);
                response.headers_mut().insert(axum::http::header::ALLOW, axum::http::HeaderValue::from_static(allow));
                response
            }
            Error::UnsupportedMediaType(_) => {
                status(StatusCode::UNSUPPORTED_MEDIA_TYPE, "UnsupportedMediaType", message, vec![])
            }
            Error::TooLarge(_) => status(StatusCode::PAYLOAD_TOO_LARGE, "RequestEntityTooLarge", message, vec![]),
            Error::TooManyRequests(_, after) => {
                let seconds = after.as_secs() + u64::from(after.subsec_nanos() > 0);
                let mut response = status(StatusCode::TOO_MANY_REQUESTS, "TooManyRequests", message, vec![]);
                response.headers_mut().insert(axum::http::header::RETRY_AFTER, seconds.max(1).into());
                response
            }
            Error::Admission(A::Invalid { errors, .. }) => {
                let causes = errors
                    .iter()
                    .map(|e| json!({"reason": "FieldValueInvalid", "field": e.path, "message": e.message}))
                    .collect();
                status(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", message, causes)
            }
            Error::Admission(A::Forbidden { .. }) => status(StatusCode::FORBIDDEN, "Forbidden", message, vec![]),
            Error::Admission(A::Storage(e)) => match e {
                S::NotFound(_) => status(StatusCode::NOT_FOUND, "NotFound", message, vec![]),
                S::AlreadyExists(_) => status(StatusCode::CONFLICT, "AlreadyExists", message, vec![]),
                S::Conflict(_) => status(StatusCode::CONFLICT, "Conflict", message, vec![]),
                S::Invalid(_) => status(StatusCode::BAD_REQUEST, "BadRequest", message, vec![]),
                S::Unavailable(_) => status(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", message, vec![]),
                S::Corrupt(_) | S::ChainBroken(_) => {
                    status(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", message, vec![])
                }
            },
        }
    }
}
