//! Extractors: who is calling and what they sent, parsed and checked once per request.

use super::error::ApiError;
use crate::domain::{Caller, WorkflowId};
use axum::extract::{FromRequest, FromRequestParts, OptionalFromRequestParts, Path, Request};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// The caller named by `X_TENANT_ID`, `X_CLIENT_ID` (both required) and `X_USERNAME_ID`.
fn caller(h: &HeaderMap) -> Result<Caller, ApiError> {
    let tenant = header(h, "X_TENANT_ID").ok_or_else(|| ApiError::bad_request("missing header X_TENANT_ID"))?;
    let client = header(h, "X_CLIENT_ID").ok_or_else(|| ApiError::bad_request("missing header X_CLIENT_ID"))?;
    Ok(Caller::new(tenant, client, header(h, "X_USERNAME_ID"))?)
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        caller(&parts.headers)
    }
}

/// Streams accept other authority (a stream token), so the caller headers are optional there.
impl<S: Send + Sync> OptionalFromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, ApiError> {
        Ok(caller(&parts.headers).ok())
    }
}

/// The `{id}` of a workflow route, checked.
pub struct WorkflowPath(pub WorkflowId);

impl<S: Send + Sync> FromRequestParts<S> for WorkflowPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(id) = <Path<String> as FromRequestParts<S>>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_request(e.body_text()))?;
        Ok(Self(WorkflowId::parse(&id)?))
    }
}

/// A caller acting on the workflow of the route's `{id}`: the headers and the path, parsed
/// once for every workflow handler.
pub struct OnWorkflow {
    pub caller: Caller,
    pub id: WorkflowId,
}

impl<S: Send + Sync> FromRequestParts<S> for OnWorkflow {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let caller = caller(&parts.headers)?;
        let WorkflowPath(id) = WorkflowPath::from_request_parts(parts, state).await?;
        Ok(Self { caller, id })
    }
}

/// A JSON body, with a 400 that says what is wrong with it (and 413 past the size limit).
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = axum::response::Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        use axum::response::IntoResponse;
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")).into_response())
    }
}

/// The bearer credential, if one was sent.
pub fn bearer(h: &HeaderMap) -> Option<&str> {
    header(h, "authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}
