//! Answer links over HTTP: making and revoking them (`/v3/workflow/{id}/links`, with a
//! credential), and the link's own endpoints under `/answer/{token}`, where the token is the
//! only authority. Those answers carry no referrer, no cache and no framing, and their paths
//! are never logged whole (see `redacted_path`).

use super::AppState;
use super::error::{ApiError, CommonErrors, ErrorBody};
use super::extract::{JsonBody, OnWorkflow};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use drift_core::domain::routes;
use drift_service::{IssuedLink, LinkBody};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::Value;
use std::time::Duration;

/// Where an answer link's page and endpoints live.
pub const ANSWER_PREFIX: &str = "/answer/";

/// How often an idle link stream says it is still there.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// How long the page's answer waits for the workflow to take it.
const ANSWER_WAIT: Duration = Duration::from_secs(20);

/// A path as logs may show it: an answer link's token is a credential, so only its first
/// characters are kept.
pub fn redacted_path(path: &str) -> std::borrow::Cow<'_, str> {
    match path.strip_prefix(ANSWER_PREFIX) {
        Some(rest) => {
            let (token, tail) = rest.split_once('/').map_or((rest, ""), |(t, r)| (t, r));
            let shown: String = token.chars().take(6).collect();
            let sep = if tail.is_empty() { "" } else { "/" };
            format!("{ANSWER_PREFIX}{shown}…{sep}{tail}").into()
        }
        None => path.into(),
    }
}

/// A link to one screen
///
/// A capability URL a person outside any app can open to answer the screen the workflow
/// waits on (or `seq`, if that is it): signed, expiring, answerable once, valid on every
/// gateway. Send it by email or chat; the page shows the screen and nothing else of the run.
#[utoipa::path(
    post,
    path = routes::LINKS.template(),
    tag = "workflows",
    operation_id = "createLink",
    params(("id" = String, Path, description = "The workflow id")),
    request_body = LinkBody,
    responses(
        (status = 201, description = "The link", body = IssuedLink),
        (status = 400, description = "A bad `ttlSecs` or `assignee`", body = ErrorBody),
        (status = 404, description = "No such workflow", body = ErrorBody),
        (status = 409, description = "The workflow is not waiting on a screen (`not_waiting`), or not on `seq` (`stale_screen`)", body = ErrorBody),
        CommonErrors,
    ),
    security(("apiKey" = ["workflows:drive"]), ("jwt" = ["workflows:drive"]))
)]
pub async fn create(
    State(s): State<AppState>,
    on: OnWorkflow,
    JsonBody(b): JsonBody<LinkBody>,
) -> Result<(StatusCode, Json<IssuedLink>), ApiError> {
    let link = s.service.issue_link(&on.caller, &on.id, b).await?;
    Ok((StatusCode::CREATED, Json(link)))
}

/// Revoke a workflow's links
///
/// Every answer link made so far for this workflow stops working, on every gateway; its page
/// says it was revoked. Links made afterwards work.
#[utoipa::path(
    delete,
    path = routes::LINKS.template(),
    tag = "workflows",
    operation_id = "revokeLinks",
    params(("id" = String, Path, description = "The workflow id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "No such workflow", body = ErrorBody),
        CommonErrors,
    ),
    security(("apiKey" = ["workflows:drive"]), ("jwt" = ["workflows:drive"]))
)]
pub async fn revoke(State(s): State<AppState>, on: OnWorkflow) -> Result<StatusCode, ApiError> {
    s.service.revoke_links(&on.caller, &on.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The link's screen as it changes (Server-Sent Events, `link` events with what `…/screen`
/// answers): the open page learns at once that the screen was answered elsewhere or the run
/// moved on. It ends once the link is no longer open.
pub async fn events(State(s): State<AppState>, Path(token): Path<String>) -> Response {
    guard(&s, &token, async {
        let (tenant, changes) = s.service.follow_link(&token, s.shutdown.clone()).await?;
        let slot = s.limits.stream(Some(tenant.as_str()))?;
        let events = changes.map(move |screen| {
            let _slot = &slot;
            let data = serde_json::to_string(&screen).expect("a link screen serializes");
            Ok::<_, std::convert::Infallible>(Event::default().event("link").data(data))
        });
        Ok(Sse::new(events)
            .keep_alive(KeepAlive::new().interval(KEEPALIVE))
            .into_response())
    })
    .await
}

/// What the link's page posts.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AnswerBody {
    /// The token the page got with the screen.
    form_token: String,
    view_response: Value,
}

/// Every answer-link request: counted against the link's rate first, then answered with
/// `guarded`'s headers, whether it succeeded or not.
async fn guard(
    s: &AppState,
    token: &str,
    handle: impl std::future::Future<Output = Result<Response, ApiError>>,
) -> Response {
    let answered = match s.limits.link_rate(token) {
        Ok(()) => handle.await,
        Err(limited) => Err(limited),
    };
    guarded(answered.unwrap_or_else(IntoResponse::into_response))
}

/// The headers every answer-link response carries: the token in the URL must not leak through
/// a referrer, a cache or a frame, and nothing here is for search engines.
fn guarded(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        );
    }
    h.insert("x-robots-tag", HeaderValue::from_static("noindex, nofollow"));
    r
}

/// The page a link opens (GET and HEAD: the page itself reads the screen, and only its own
/// POST answers). Its scripts, styles and calls come from this gateway alone.
pub async fn page(State(s): State<AppState>, Path(token): Path<String>) -> Response {
    guard(&s, &token, async {
        let csp = format!(
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; \
             form-action 'self'; base-uri 'none'; frame-ancestors {}",
            s.cfg.answer_frame_ancestors
        );
        // A source list that is no header value keeps the default policy: no framing at all.
        let mut r = (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            include_str!("../../../web-demo/answer.html"),
        )
            .into_response();
        if let Ok(v) = HeaderValue::from_str(&csp) {
            r.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
        }
        Ok(r)
    })
    .await
}

/// The link's screen as it stands (GET and HEAD: reading never answers).
pub async fn screen(State(s): State<AppState>, Path(token): Path<String>) -> Response {
    guard(&s, &token, async {
        Ok(Json(s.service.open_link(&token).await?).into_response())
    })
    .await
}

/// The page's answer: checked and sent as any resume, once per link.
pub async fn answer(
    State(s): State<AppState>,
    Path(token): Path<String>,
    JsonBody(b): JsonBody<AnswerBody>,
) -> Response {
    guard(&s, &token, async {
        let screen = s
            .service
            .answer_link(&token, &b.form_token, b.view_response, ANSWER_WAIT, &s.shutdown)
            .await?;
        Ok(Json(screen).into_response())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_links_path_is_logged_without_its_token() {
        assert_eq!(
            redacted_path("/answer/eyJrIjoiYSJ9.c2ln/screen"),
            "/answer/eyJrIj…/screen"
        );
        assert_eq!(redacted_path("/answer/eyJrIjoiYSJ9.c2ln"), "/answer/eyJrIj…");
        assert_eq!(redacted_path("/v3/workflow/a"), "/v3/workflow/a");
    }
}
