//! What a call can fail with, and how the adapters' errors map onto it: one place, so each
//! transport maps one enum to its answers.

use drift_bus::{HubError, StoreError};
use drift_core::domain::{IdError, Rejection, WorkflowStatus};
use drift_temporal::TemporalError;

/// Why a call did not happen. Transports map each to their own answer, in one place each.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Id(#[from] IdError),
    #[error("{0}")]
    NotFound(String),
    /// No credential, or one that is unknown, revoked, expired or forged.
    #[error("{0}")]
    Unauthorized(String),
    /// A valid credential that does not allow this.
    #[error("{0}")]
    Forbidden(String),
    #[error(transparent)]
    Rejected(#[from] Rejection),
    #[error("{0}")]
    CallbackNotAllowed(String),
    #[error("a workflow with this id already exists")]
    AlreadyExists,
    /// A definition that does not validate; each error names its node and field.
    #[error("the definition is not valid")]
    InvalidDefinition(Vec<drift_core::dsl::ValidationError>),
    /// A change that conflicts with what is stored (a published version, an existing id).
    #[error("{0}")]
    Conflict(String),
    /// An Idempotency-Key first used for a different request; nothing was started.
    #[error(
        "this Idempotency-Key was first used for a different request (another workflow, version, params, mode or \
         callback); send a new key for a new request"
    )]
    IdempotencyKeyReused,
    /// A command's payload over the configured cap.
    #[error("{0}")]
    TooLarge(String),
    /// Temporal or Redis could not be reached; nothing was changed.
    #[error("{dependency} is unavailable: {cause}")]
    Unavailable { dependency: &'static str, cause: String },
    /// Too much is waiting for a dependency already; this call was refused untouched.
    #[error("{0}")]
    Busy(String),
    /// The call may or may not have been applied (a timeout after it was sent).
    #[error("outcome unknown: {0}")]
    Uncertain(String),
    /// The workflow cannot move: its workflow task keeps failing in the worker. A command sent
    /// to it was delivered and is applied if the task recovers.
    #[error("the workflow's task keeps failing ({}, attempt {}): {}", .0.cause, .0.attempts, .0.message)]
    TaskFailing(drift_core::domain::TaskFailing),
    /// An answer link that can no longer answer: its screen was answered, the run moved on,
    /// or the link expired or was revoked.
    #[error("{}", link_closed_message(*.0))]
    LinkClosed(crate::links::LinkStatus),
    #[error("{0}")]
    Internal(String),
}

fn link_closed_message(status: crate::links::LinkStatus) -> &'static str {
    use crate::links::LinkStatus as S;
    match status {
        S::Answered => "this screen was already answered through an answer link",
        S::MovedOn => "the workflow has moved on past this screen",
        S::Expired => "this answer link has expired",
        S::Revoked => "this answer link was revoked",
        S::Open => "this answer link is open",
    }
}

impl From<TemporalError> for ServiceError {
    fn from(e: TemporalError) -> Self {
        match e {
            TemporalError::Unavailable(cause) => Self::Unavailable {
                dependency: "Temporal",
                cause,
            },
            TemporalError::NotFound => Self::NotFound("no such workflow".into()),
            TemporalError::Ended => Self::Rejected(Rejection::NotWaiting {
                status: WorkflowStatus::Terminated,
            }),
            TemporalError::AlreadyStarted => Self::AlreadyExists,
            TemporalError::Uncertain(cause) => Self::Uncertain(cause),
            TemporalError::Other(m) => Self::Internal(format!("Temporal: {m}")),
            TemporalError::NotIndexed(register) => Self::Unavailable {
                dependency: "The runs list",
                cause: format!(
                    "Drift's search attributes are not registered in the Temporal namespace; register them: {register}"
                ),
            },
            TemporalError::BadPageToken => Self::Invalid("`pageToken` is not one this list gave".into()),
            TemporalError::Busy => Self::Busy(
                "too many workflow starts are waiting for Temporal on this gateway; nothing was started, retry \
                 shortly"
                    .into(),
            ),
        }
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(cause) => Self::Unavailable {
                dependency: "Redis",
                cause: cause.to_string(),
            },
            StoreError::Corrupt(m) => Self::Internal(format!("corrupt state in Redis: {m}")),
        }
    }
}

impl From<HubError> for ServiceError {
    fn from(e: HubError) -> Self {
        Self::Unavailable {
            dependency: "Redis",
            cause: e.to_string(),
        }
    }
}
