//! The one API error type: JSON `{code, message, details?}` with the right status. Internal
//! causes are logged once here and never sent to clients.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: None,
        }
    }
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }
    pub fn bad_request(m: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", m)
    }
    pub fn not_found(m: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", m)
    }
    pub fn conflict(code: &'static str, m: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, m)
    }
    /// A dependency is down. The cause goes to the log, the client gets what to do.
    pub fn unavailable(what: &str, cause: &dyn std::fmt::Display) -> Self {
        tracing::warn!(dependency = what, error = %cause, "dependency unavailable");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("{what} is unreachable; nothing was changed, retry shortly"),
        )
    }
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"code": self.code, "message": self.message});
        if let Some(d) = self.details {
            body["details"] = d;
        }
        (self.status, axum::Json(body)).into_response()
    }
}

impl From<crate::temporal::client::TemporalError> for ApiError {
    fn from(e: crate::temporal::client::TemporalError) -> Self {
        use crate::temporal::client::TemporalError as T;
        match e {
            T::Unavailable(_) => ApiError::unavailable("Temporal", &e),
            T::NotFound => ApiError::not_found("no such workflow"),
            T::Ended => ApiError::conflict("not_waiting", "the workflow has ended"),
            T::AlreadyStarted => ApiError::conflict("already_exists", "a workflow with this id already exists"),
            T::Other(_) => ApiError::internal(&e),
        }
    }
}

impl From<crate::bus::StoreError> for ApiError {
    fn from(e: crate::bus::StoreError) -> Self {
        match e {
            crate::bus::StoreError::Unavailable(_) => ApiError::unavailable("Redis", &e),
            crate::bus::StoreError::Corrupt(_) => ApiError::internal(&e),
        }
    }
}

impl From<crate::bus::hub::HubError> for ApiError {
    fn from(e: crate::bus::hub::HubError) -> Self {
        ApiError::unavailable("Redis", &e)
    }
}
