//! `GET /v3/workflow/{id}/events`: Server-Sent Events. The current state, then every state
//! live; `id:` is the state's `seq`, so a reconnect with `Last-Event-ID` resumes after it.

use super::AppState;
use super::error::ApiError;
use super::extract::{AllowedOrigin, WorkflowPath, presented};
use super::limits::StreamSlot;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use drift_service::{Followed, Out, Presented};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::convert::Infallible;
use std::time::Duration;

const KEEPALIVE: Duration = Duration::from_secs(15);

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventsQuery {
    token: Option<String>,
    last_event_id: Option<u64>,
}

/// The data of a `gap` event: the states after `after` are no longer kept; the latest state
/// (`latest`) follows as the next `state` event.
#[derive(Serialize, utoipa::ToSchema)]
pub struct GapEvent {
    pub after: u64,
    pub latest: u64,
    pub message: &'static str,
}

fn event(o: Out) -> Event {
    match o {
        Out::State { seq, body, .. } => Event::default().event("state").id(seq.to_string()).data(body.as_str()),
        Out::Gap { after, latest } => Event::default().event("gap").data(
            serde_json::to_string(&GapEvent {
                after,
                latest,
                message: "history no longer reaches back; the latest state follows",
            })
            .expect("a gap serializes"),
        ),
    }
}

/// Follow a workflow live (Server-Sent Events)
///
/// The current state, then every state as it happens, as `state` events whose `id:` is the
/// state's `seq`; reconnecting with `Last-Event-ID` (or `?lastEventId=`) resumes after it. A
/// `gap` event says the history no longer reaches back (the latest state follows). The stream
/// ends after the terminal state; a reconnect after it gets 204 (do not reconnect). Browsers
/// pass the start's `streamToken` as `?token=`.
#[utoipa::path(
    get,
    path = drift_core::domain::routes::EVENTS.template(),
    tag = "live",
    operation_id = "events",
    params(
        ("id" = String, Path, description = "The workflow id"),
        ("token" = Option<String>, Query, description = "A stream token (from a start's answer)"),
        ("lastEventId" = Option<u64>, Query, description = "Resume after this seq (as `Last-Event-ID`)"),
        ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this seq"),
    ),
    responses(
        (status = 200, description = "`text/event-stream` of `state` and `gap` events (see the AsyncAPI document)", content_type = "text/event-stream", body = String),
        (status = 204, description = "The workflow ended at or before `Last-Event-ID`: do not reconnect"),
        (status = 404, description = "No such workflow (or another tenant's)", body = crate::error::ErrorBody),
        crate::error::CommonErrors,
    ),
    security(("apiKey" = ["workflows:read"]), ("jwt" = ["workflows:read"]), ("streamToken" = []))
)]
pub async fn events(
    State(s): State<AppState>,
    _: AllowedOrigin,
    headers: HeaderMap,
    WorkflowPath(id): WorkflowPath,
    Query(q): Query<EventsQuery>,
) -> Result<Response, ApiError> {
    // A stream token (browsers' EventSource cannot set headers), or a credential.
    let presented = Presented {
        query_token: q.token.as_deref(),
        ..presented(&headers)
    };
    let caller = s.service.identify_required(presented, Some(&id)).await?.into_caller();
    let since = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .or(q.last_event_id);
    // A browser reconnecting after the end (it sends the terminal seq, or more) is told to stop:
    // 204 is how SSE says "do not reconnect".
    if let Some(since) = since {
        let latest = s.service.current(&caller, &id).await?;
        if latest.workflow_status.is_terminal() && since >= latest.seq {
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
    }
    let slot = s.limits.stream(Some(caller.tenant.as_str()))?;
    let follow = s.service.follow(&caller, &id, since).await?.via("sse");
    // The response body is the follower's stream itself: hyper pulls the next state when the
    // socket can take it, and drops the stream (and with it the subscription and the stream
    // slot) when the client goes. Nothing else is kept per connection.
    let open = Open::new(slot);
    let states = s.service.stream(follow, s.shutdown.clone()).filter_map(move |d| {
        let _open = &open;
        std::future::ready(match d {
            Followed::Out(o) => Some(Ok::<_, Infallible>(event(o))),
            Followed::Reply(..) => None,
        })
    });
    Ok(Sse::new(states)
        .keep_alive(KeepAlive::new().interval(KEEPALIVE))
        .into_response())
}

/// An open SSE stream: counted while it lives, holding its tenant's stream slot.
struct Open {
    _slot: StreamSlot,
    _counted: drift_service::telemetry::GaugeGuard,
}

impl Open {
    fn new(slot: StreamSlot) -> Self {
        Self {
            _slot: slot,
            _counted: drift_service::telemetry::GaugeGuard::new(drift_core::metrics::SSE_CONNECTIONS.name),
        }
    }
}
