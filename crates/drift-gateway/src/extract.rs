//! Extractors: who is calling and what they sent, parsed and checked once per request.

use super::AppState;
use super::error::{ApiError, ErrorCode};
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use drift_core::domain::{Caller, WorkflowId};
use drift_service::{Identity, Legacy, Presented};
use serde::de::DeserializeOwned;

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// The original API's tenant, client and user headers.
pub fn legacy(h: &HeaderMap) -> Legacy<'_> {
    Legacy {
        tenant: header(h, "X_TENANT_ID"),
        client: header(h, "X_CLIENT_ID"),
        user: header(h, "X_USERNAME_ID"),
    }
}

/// The authenticated caller: `Authorization: Bearer <API key or JWT>`, with the compatibility
/// headers checked against it.
impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, ApiError> {
        let t0 = std::time::Instant::now();
        let caller = s
            .service
            .identify_required(presented(&parts.headers), None)
            .await?
            .into_caller();
        // One step of a request traced end to end, with "command dispatched" and "answer ready".
        tracing::debug!(authenticated_in = ?t0.elapsed(), "caller authenticated");
        s.limits.rate(&caller)?;
        Ok(caller)
    }
}

/// Whether a `Host` names this machine by address or as `localhost` — which a DNS-rebinding
/// page cannot make its browser send.
pub fn is_local_host(host: &str) -> bool {
    let name = match host.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok()
}

/// Refuses browser pages from origins not allowed to use the API: a page a user visits must
/// not open sockets or streams to the gateway with the user's credentials or network position.
/// Requests without `Origin` (not from a browser page) pass.
pub struct AllowedOrigin;

impl FromRequestParts<AppState> for AllowedOrigin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, ApiError> {
        let Some(origin) = parts.headers.get(axum::http::header::ORIGIN) else {
            return Ok(Self);
        };
        let origin = origin
            .to_str()
            .unwrap_or_default()
            .trim_end_matches('/')
            .to_ascii_lowercase();
        let allowed = &s.cfg.allowed_origins;
        let listed = allowed.iter().any(|o| o == "*" || *o == origin);
        // A page the gateway served itself, reached by address or as localhost.
        let own = header(&parts.headers, "host").is_some_and(|host| {
            is_local_host(host) && origin.split_once("://").map(|(_, a)| a) == Some(&host.to_ascii_lowercase())
        });
        if listed || own {
            return Ok(Self);
        }
        Err(ApiError::new(
            ErrorCode::OriginNotAllowed,
            "pages from this origin may not use this API (see --allowed-origins)",
        ))
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

impl FromRequestParts<AppState> for OnWorkflow {
    type Rejection = ApiError;

    /// Also takes the workflow's stream token, which grants reading it and nothing else.
    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, ApiError> {
        let WorkflowPath(id) = WorkflowPath::from_request_parts(parts, s).await?;
        let caller = match s
            .service
            .identify_required(presented(&parts.headers), Some(&id))
            .await?
        {
            Identity::Credential(c) => {
                s.limits.rate(&c)?;
                c
            }
            Identity::StreamToken(c) => c,
        };
        Ok(Self { caller, id })
    }
}

/// A JSON body, with a 400 that says what is wrong with it (and 413 past the size limit).
pub struct JsonBody<T>(pub T);

/// Read whole within the body timeout: a body trickled a byte at a time gets 408, not a
/// connection held for as long as the client likes.
impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = axum::response::Response;

    async fn from_request(req: Request, s: &AppState) -> Result<Self, Self::Rejection> {
        use axum::response::IntoResponse;
        let limit = s.cfg.body_timeout;
        let bytes = match tokio::time::timeout(limit, axum::body::Bytes::from_request(req, s)).await {
            Ok(read) => read.map_err(IntoResponse::into_response)?,
            Err(_) => {
                metrics::counter!(drift_core::metrics::BODIES_TIMED_OUT.name).increment(1);
                let mut refused = ApiError::new(
                    ErrorCode::RequestTimeout,
                    format!(
                        "the request body did not arrive within {} ms; send it whole, then retry",
                        limit.as_millis()
                    ),
                )
                .into_response();
                // The rest of the body is not read: the connection cannot carry another request.
                refused.headers_mut().insert(
                    axum::http::header::CONNECTION,
                    axum::http::HeaderValue::from_static("close"),
                );
                return Err(refused);
            }
        };
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")).into_response())
    }
}

/// What the request's headers present as its identity (a query's token or ticket is added by
/// the handlers that take one).
pub fn presented(h: &HeaderMap) -> Presented<'_> {
    Presented {
        bearer: bearer(h),
        legacy: legacy(h),
        ..Default::default()
    }
}

/// The bearer credential, if one was sent.
pub fn bearer(h: &HeaderMap) -> Option<&str> {
    let v = header(h, "authorization")?;
    let (scheme, credential) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| credential.trim())
}
