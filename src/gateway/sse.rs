//! `GET /v3/workflow/{id}/events`: Server-Sent Events. The current state, then every state
//! live; `id:` is the state's `seq`, so a reconnect with `Last-Event-ID` resumes after it.

use super::AppState;
use super::error::ApiError;
use super::extract::{AllowedOrigin, WorkflowPath, bearer, legacy};
use crate::service::{Credentials, Out, is_token};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

const KEEPALIVE: Duration = Duration::from_secs(15);
const QUEUE: usize = 16;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventsQuery {
    token: Option<String>,
    last_event_id: Option<u64>,
}

fn event(o: Out) -> Event {
    match o {
        Out::State { seq, body, .. } => Event::default()
            .event("state")
            .id(seq.to_string())
            .data(String::from_utf8_lossy(&body)),
        Out::Gap { after, latest } => Event::default().event("gap").data(
            json!({"after": after, "latest": latest, "message": "history no longer reaches back; the latest state follows"})
                .to_string(),
        ),
    }
}

pub async fn events(
    State(s): State<AppState>,
    _: AllowedOrigin,
    headers: HeaderMap,
    WorkflowPath(id): WorkflowPath,
    Query(q): Query<EventsQuery>,
) -> Result<Response, ApiError> {
    // A stream token (browsers' EventSource cannot set headers), or a credential.
    let caller = match q.token.as_deref().or(bearer(&headers)) {
        Some(t) if is_token(t) => s.service.authorize(Credentials::StreamToken(t), &id)?,
        credential => s.service.authenticate(credential, legacy(&headers)).await?,
    };
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
    let follow = s.service.follow(&caller, &id, since).await?;
    let (tx, rx) = mpsc::channel::<Result<Event, Infallible>>(QUEUE);
    metrics::gauge!("drift_sse_connections").increment(1.0);
    tokio::spawn(async move {
        let deliver = |o: Out| {
            let tx = tx.clone();
            async move {
                let sent = tokio::time::timeout(super::SLOW_CONSUMER_GRACE, tx.send(Ok(event(o)))).await;
                matches!(sent, Ok(Ok(())))
            }
        };
        let gone = {
            let tx = tx.clone();
            async move { tx.closed().await }
        };
        s.service
            .forward(follow, s.shutdown.clone(), gone, deliver, |_, _| Box::pin(async {}))
            .await;
        metrics::gauge!("drift_sse_connections").decrement(1.0);
        drop(slot);
    });
    Ok(Sse::new(ReceiverStream::new(rx))
        .keep_alive(KeepAlive::new().interval(KEEPALIVE))
        .into_response())
}
