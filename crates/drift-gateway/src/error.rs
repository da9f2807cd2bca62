//! The one API error type: JSON `{code, message, details?}` with the right status. Service
//! errors and rejections become HTTP answers here, in one place; internal causes are logged
//! once here and never sent to clients.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use drift_core::domain::{IdError, Rejection};
use drift_service::ServiceError;
use serde_json::Value;
use utoipa::IntoResponses;

/// Every error code an answer carries, over HTTP, WebSocket or a refused connection: one
/// vocabulary, each with its HTTP status. The API document lists them (`ErrorBody.code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Malformed: not JSON, an unknown or mistyped field, a bad id. 400.
    BadRequest,
    /// No credential, or one that is revoked, expired or forged. 401.
    Unauthorized,
    /// The credential lacks the scope the call needs. 403.
    Forbidden,
    /// A page from an origin not in `--allowed-origins`. 403.
    OriginNotAllowed,
    /// No such workflow, definition or version (or another tenant's). 404.
    NotFound,
    /// The request's head or body came too slowly. 408.
    RequestTimeout,
    /// An answer to a screen that is no longer the current one (`details`: none). 409.
    StaleScreen,
    /// The workflow is not waiting on a screen (running, or ended). 409.
    NotWaiting,
    /// Back is not possible here (`details.node` is the node in the way). 409.
    CannotGoBack,
    /// A workflow with this id already exists. 409.
    AlreadyExists,
    /// A change that conflicts with what is stored (a published version). 409.
    Conflict,
    /// An answer link that can answer no more (`details.status`: `answered`, `moved_on`,
    /// `expired`, `revoked`). 410.
    LinkClosed,
    /// A body over its bound (`--max-command-bytes`, `--max-body-bytes`). 413.
    TooLarge,
    /// The answer does not fit the screen (`details`: `[{widgetId, message}]`). 422.
    InvalidAnswer,
    /// The node is not a disconnected node of this workflow. 422.
    NotExecutable,
    /// The callback URL is not in `--callback-allow`. 422.
    CallbackNotAllowed,
    /// An Idempotency-Key first used for a different request; nothing was started. 422.
    IdempotencyKeyReused,
    /// The definition does not validate (`details.errors`, each naming node and field). 422.
    InvalidDefinition,
    /// The graph could not be laid out (its JSON form still can). 422.
    LayoutFailed,
    /// Over the rate limit; `Retry-After` says when. 429.
    RateLimited,
    /// This address holds as many connections as one may (`--max-connections-per-peer`). 429.
    TooManyConnections,
    /// A socket following as many workflows as one may. 429.
    TooManySubscriptions,
    /// An unexpected failure (logged; nothing about it is sent). 500.
    Internal,
    /// The workflow's task keeps failing in the worker (`details`: attempts, cause). 502.
    WorkflowTaskFailing,
    /// Every place taken (connections, starts in flight); `Retry-After` says when. 503.
    Busy,
    /// Every sync waiter place taken (`--max-waiters`). 503.
    TooManyWaiters,
    /// Redis or Temporal is down; nothing was changed. 503.
    Unavailable,
    /// Temporal did not confirm in time; retry with the same request id. 504.
    OutcomeUnknown,
}

impl ErrorCode {
    /// The HTTP status every answer with this code has.
    pub fn status(self) -> StatusCode {
        use ErrorCode as C;
        match self {
            C::BadRequest => StatusCode::BAD_REQUEST,
            C::Unauthorized => StatusCode::UNAUTHORIZED,
            C::Forbidden | C::OriginNotAllowed => StatusCode::FORBIDDEN,
            C::NotFound => StatusCode::NOT_FOUND,
            C::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            C::StaleScreen | C::NotWaiting | C::CannotGoBack | C::AlreadyExists | C::Conflict => StatusCode::CONFLICT,
            C::LinkClosed => StatusCode::GONE,
            C::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            C::InvalidAnswer
            | C::NotExecutable
            | C::CallbackNotAllowed
            | C::IdempotencyKeyReused
            | C::InvalidDefinition
            | C::LayoutFailed => StatusCode::UNPROCESSABLE_ENTITY,
            C::RateLimited | C::TooManyConnections | C::TooManySubscriptions => StatusCode::TOO_MANY_REQUESTS,
            C::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            C::WorkflowTaskFailing => StatusCode::BAD_GATEWAY,
            C::Busy | C::TooManyWaiters | C::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            C::OutcomeUnknown => StatusCode::GATEWAY_TIMEOUT,
        }
    }
}

#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub details: Option<Value>,
    /// Seconds, for `Retry-After` (limits).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// The HTTP status: the code's, always.
    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
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
        Self::new(ErrorCode::BadRequest, m)
    }
    pub fn unauthorized(m: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, m)
    }
    /// A dependency is down. The cause goes to the log, the client gets what to do.
    fn unavailable(what: &str, cause: &dyn std::fmt::Display) -> Self {
        tracing::warn!(dependency = what, error = %cause, "dependency unavailable");
        Self::new(
            ErrorCode::Unavailable,
            format!("{what} is unreachable; nothing was changed, retry shortly"),
        )
    }
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(ErrorCode::Internal, "internal error")
    }
}

/// Every error's body.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for programs (see `ErrorCode`).
    pub code: ErrorCode,
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
        let mut r = (self.status(), axum::Json(self.body())).into_response();
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
            Rejection::StaleScreen { .. } => Self::new(ErrorCode::StaleScreen, message),
            Rejection::NotWaiting { .. } => Self::new(ErrorCode::NotWaiting, message),
            Rejection::CannotGoBack { node, .. } => ApiError {
                details: Some(serde_json::json!({ "node": node })),
                ..Self::new(ErrorCode::CannotGoBack, message)
            },
            Rejection::NotExecutable { .. } => Self::new(ErrorCode::NotExecutable, message),
            Rejection::InvalidAnswer { details } => ApiError {
                details: Some(serde_json::to_value(details).unwrap_or_default()),
                ..Self::new(ErrorCode::InvalidAnswer, message)
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
            S::NotFound(m) => Self::new(ErrorCode::NotFound, m),
            S::Unauthorized(m) => Self::unauthorized(m),
            S::Forbidden(m) => Self::new(ErrorCode::Forbidden, m),
            S::Rejected(r) => r.into(),
            S::CallbackNotAllowed(m) => Self::new(ErrorCode::CallbackNotAllowed, m),
            S::TooLarge(m) => Self::new(ErrorCode::TooLarge, m),
            S::IdempotencyKeyReused => Self::new(ErrorCode::IdempotencyKeyReused, e.to_string()),
            S::AlreadyExists => Self::new(ErrorCode::AlreadyExists, e.to_string()),
            S::Conflict(m) => Self::new(ErrorCode::Conflict, m),
            S::LinkClosed(status) => ApiError {
                details: Some(serde_json::json!({ "status": status })),
                ..Self::new(ErrorCode::LinkClosed, e.to_string())
            },
            S::InvalidDefinition(errors) => {
                let summary: Vec<String> = errors.iter().take(3).map(|e| e.to_string()).collect();
                ApiError {
                    details: Some(serde_json::json!({"errors": errors})),
                    ..Self::new(
                        ErrorCode::InvalidDefinition,
                        format!("the definition is not valid: {}", summary.join("; ")),
                    )
                }
            }
            S::Unavailable { dependency, cause } => Self::unavailable(dependency, &cause).retry_after(2),
            S::Busy(m) => {
                tracing::warn!(error = %m, "refused: busy");
                Self::new(ErrorCode::Busy, m).retry_after(2)
            }
            S::Uncertain(cause) => {
                tracing::warn!(error = %cause, "Temporal call timed out after it was sent");
                Self::new(
                    ErrorCode::OutcomeUnknown,
                    "Temporal did not confirm in time; the call may have been applied. Retry it with the same \
                     requestId (or Idempotency-Key, or workflowId): a retry is answered, never applied twice",
                )
                .retry_after(2)
            }
            S::TaskFailing(f) => ApiError {
                details: serde_json::to_value(&f).ok(),
                ..Self::new(
                    ErrorCode::WorkflowTaskFailing,
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
