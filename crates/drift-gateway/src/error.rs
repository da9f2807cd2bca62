//! The one API error type: JSON `{code, message, details?}` with the right status. Service
//! errors and rejections become HTTP answers here, in one place; internal causes are logged
//! once here and never sent to clients.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use drift_core::domain::{IdError, Rejection};
use drift_service::ServiceError;
use serde_json::Value;
use utoipa::IntoResponses;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Option<Value>,
    /// Seconds, for `Retry-After` (limits).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }
    pub fn bad_request(m: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", m)
    }
    pub fn unauthorized(m: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", m)
    }
    /// A dependency is down. The cause goes to the log, the client gets what to do.
    fn unavailable(what: &str, cause: &dyn std::fmt::Display) -> Self {
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

/// Every error's body.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for programs: `bad_request`, `unauthorized`, `forbidden`, `not_found`,
    /// `stale_screen`, `not_waiting`, `invalid_answer`, `not_executable`, `callback_not_allowed`,
    /// `idempotency_key_reused`, `already_exists`, `conflict`, `invalid_definition`,
    /// `too_large`, `rate_limited`, `busy`, `unavailable`, `outcome_unknown`,
    /// `workflow_task_failing`, `internal`…
    pub code: &'static str,
    /// What went wrong and what to do, for people.
    pub message: String,
    /// `invalid_answer`: `[{widgetId, message}]`; `invalid_definition`: `{errors: [...]}`;
    /// `workflow_task_failing`: `{attempts, cause, message}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}

impl ApiError {
    /// The body a client gets for this error.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            code: self.code,
            message: self.message.clone(),
            details: self.details.clone(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, axum::Json(self.body())).into_response();
        if let Some(secs) = self.retry_after {
            r.headers_mut().insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        r
    }
}

impl From<Rejection> for ApiError {
    fn from(r: Rejection) -> Self {
        let message = r.to_string();
        match r {
            Rejection::StaleScreen { .. } => Self::new(StatusCode::CONFLICT, "stale_screen", message),
            Rejection::NotWaiting { .. } => Self::new(StatusCode::CONFLICT, "not_waiting", message),
            Rejection::CannotGoBack { node, .. } => ApiError {
                details: Some(serde_json::json!({ "node": node })),
                ..Self::new(StatusCode::CONFLICT, "cannot_go_back", message)
            },
            Rejection::NotExecutable { .. } => Self::new(StatusCode::UNPROCESSABLE_ENTITY, "not_executable", message),
            Rejection::InvalidAnswer { details } => ApiError {
                details: Some(serde_json::to_value(details).unwrap_or_default()),
                ..Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_answer", message)
            },
        }
    }
}

impl From<IdError> for ApiError {
    fn from(e: IdError) -> Self {
        Self::bad_request(e.to_string())
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        use ServiceError as S;
        match e {
            S::Invalid(m) => Self::bad_request(m),
            S::Id(e) => e.into(),
            S::NotFound(m) => Self::new(StatusCode::NOT_FOUND, "not_found", m),
            S::Unauthorized(m) => Self::unauthorized(m),
            S::Forbidden(m) => Self::new(StatusCode::FORBIDDEN, "forbidden", m),
            S::Rejected(r) => r.into(),
            S::CallbackNotAllowed(m) => Self::new(StatusCode::UNPROCESSABLE_ENTITY, "callback_not_allowed", m),
            S::TooLarge(m) => Self::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", m),
            S::IdempotencyKeyReused => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                e.to_string(),
            ),
            S::AlreadyExists => Self::new(StatusCode::CONFLICT, "already_exists", e.to_string()),
            S::Conflict(m) => Self::new(StatusCode::CONFLICT, "conflict", m),
            S::InvalidDefinition(errors) => {
                let summary: Vec<String> = errors.iter().take(3).map(|e| e.to_string()).collect();
                ApiError {
                    details: Some(serde_json::json!({"errors": errors})),
                    ..Self::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "invalid_definition",
                        format!("the definition is not valid: {}", summary.join("; ")),
                    )
                }
            }
            S::Unavailable { dependency, cause } => Self::unavailable(dependency, &cause).retry_after(2),
            S::Busy(m) => {
                tracing::warn!(error = %m, "refused: busy");
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "busy", m).retry_after(2)
            }
            S::Uncertain(cause) => {
                tracing::warn!(error = %cause, "Temporal call timed out after it was sent");
                Self::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "outcome_unknown",
                    "Temporal did not confirm in time; the call may have been applied. Retry it with the same \
                     requestId (or Idempotency-Key, or workflowId): a retry is answered, never applied twice",
                )
                .retry_after(2)
            }
            S::TaskFailing(f) => ApiError {
                details: serde_json::to_value(&f).ok(),
                ..Self::new(
                    StatusCode::BAD_GATEWAY,
                    "workflow_task_failing",
                    format!(
                        "the workflow cannot move: its workflow task keeps failing in the worker (attempt {}, {}: \
                         {}). A command sent to it was delivered and is applied if the worker recovers; fix the \
                         cause, or terminate the workflow",
                        f.attempts, f.cause, f.message
                    ),
                )
            },
            S::Internal(m) => Self::internal(&m),
        }
    }
}

/// What any authenticated call may answer besides its own statuses, for the API document
/// (`responses(…, CommonErrors)` on each handler).
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum CommonErrors {
    /// Malformed: not JSON, an unknown or mistyped field, a bad id.
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// No credential, or one that is revoked, expired or forged.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// The credential lacks the scope the call needs.
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// Over the rate limit; `Retry-After` says when to come back. Nothing was done.
    #[response(status = 429)]
    RateLimited(ErrorBody),
    /// `busy` (every waiter place taken) or `unavailable` (Redis or Temporal down); nothing
    /// was changed; `Retry-After` says when to retry.
    #[response(status = 503)]
    Unavailable(ErrorBody),
}
