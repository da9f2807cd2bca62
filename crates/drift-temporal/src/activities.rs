//! Activities: HTTP node calls (regular activities, with the node's retry policy) and state
//! publishing (a local activity: one Redis round trip per stable state).

use super::payload::Json;
use crate::egress::{Egress, EgressError};
use crate::webhook::{Attempted, Delivery, DeliveryConfig, DeliveryOutcome};
use drift_bus::{Publication, Publisher};
use drift_core::domain::{AttemptRecord, AttemptState};
use drift_core::engine::{HttpRequest, HttpResponse};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use temporalio_common::error::ApplicationFailure;
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};

pub struct DriftActivities {
    pub publisher: Publisher,
    pub outbound: Outbound,
    pub delivery: DeliveryConfig,
}

/// The HTTP clients for HTTP nodes and webhooks. Every connection goes through the egress
/// policy's resolver; redirects are followed only when a node asks, each hop checked again.
pub struct Outbound {
    egress: Egress,
    plain: reqwest::Client,
    redirecting: reqwest::Client,
    /// Largest response body an HTTP node may read.
    max_response_bytes: usize,
}

impl Outbound {
    pub fn new(egress: Egress, max_response_bytes: usize) -> reqwest::Result<Self> {
        let checked = egress.clone();
        let follow = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= 5 {
                attempt.error("more than 5 redirects")
            } else if let Err(e) = checked.check_url(attempt.url()) {
                attempt.error(e)
            } else {
                attempt.follow()
            }
        });
        let client = |policy| {
            reqwest::Client::builder()
                .dns_resolver(egress.resolver())
                .redirect(policy)
                .build()
        };
        Ok(Self {
            plain: client(reqwest::redirect::Policy::none())?,
            redirecting: client(follow)?,
            egress,
            max_response_bytes,
        })
    }
}

/// A failure a caller may see: what went wrong, never where (internal URLs) or what the
/// upstream said (its body); those go to the operator's log.
fn upstream_failure(retryable: bool, public: String) -> ActivityError {
    let err = anyhow::anyhow!("{public}").into_boxed_dyn_error();
    if retryable {
        ActivityError::from(anyhow::anyhow!("{public}"))
    } else {
        ActivityError::application(ApplicationFailure::non_retryable(err))
    }
}

#[activities]
impl DriftActivities {
    #[activity(name = "publish")]
    pub async fn publish(
        self: Arc<Self>,
        _ctx: ActivityContext,
        Json(p): Json<Publication>,
    ) -> Result<(), ActivityError> {
        self.publisher.publish(&p).await?;
        metrics::counter!(drift_core::metrics::MESSAGES_PUBLISHED.name).increment(1);
        Ok(())
    }

    /// One webhook attempt, signed per Standard Webhooks. Failures are retried on the
    /// configured schedule (with jitter) through Temporal's retry, with `next_retry_delay`.
    #[activity(name = "deliver_webhook")]
    pub async fn deliver_webhook(
        self: Arc<Self>,
        ctx: ActivityContext,
        d: Delivery,
    ) -> Result<DeliveryOutcome, ActivityError> {
        let attempt = ctx.info().attempt.max(1);
        let Some(cb) = d.callback.clone() else {
            return Ok(DeliveryOutcome::GaveUp);
        };
        // A screen due an answer link gets it signed in here, where the secret is.
        let d = match (d.answer_link, &d.workflow) {
            (Some(due), Some(w)) => match self.publisher.answer_url(w, due).await? {
                Some(url) => d.with_answer_url(&url),
                None => d,
            },
            _ => d,
        };
        // Attempts are recorded for operators where the delivery names its workflow.
        let record = |state: AttemptState, error: Option<&str>, next: Option<Duration>, status: Option<u16>| {
            let now = chrono::Utc::now();
            let rec = AttemptRecord {
                url: cb.url.clone(),
                seq: d.seq,
                attempt,
                state,
                last_error: error.map(str::to_string),
                next_retry_at: next.map(|n| now + n),
                updated_at: now,
                webhook_id: Some(d.webhook_id.clone()),
                client: Some(cb.client.clone()),
                status,
                resend: false,
            };
            let (publisher, workflow) = (&self.publisher, &d.workflow);
            async move {
                if let Some(w) = workflow {
                    publisher.record_attempt(w, &rec).await;
                }
            }
        };
        let attempted = crate::webhook::attempt(
            &self.outbound.plain,
            &self.outbound.egress,
            &self.delivery,
            &d,
            &cb,
            attempt,
        )
        .await;
        let (url, id, status) = (&cb.url, &d.webhook_id, attempted.status());
        match attempted {
            Attempted::Delivered(_) => {
                record(AttemptState::Delivered, None, None, status).await;
                metrics::counter!(drift_core::metrics::WEBHOOK_DELIVERED.name).increment(1);
                tracing::info!(%url, webhook_id = %id, attempt, "webhook delivered");
                Ok(DeliveryOutcome::Delivered)
            }
            Attempted::Gone => {
                record(
                    AttemptState::Gone,
                    Some("410 Gone: no more deliveries to this URL"),
                    None,
                    status,
                )
                .await;
                tracing::warn!(%url, "receiver answered 410 Gone; deliveries to it stop");
                Ok(DeliveryOutcome::Gone)
            }
            Attempted::Retry { error, after, .. } => {
                record(AttemptState::Retrying, Some(&error), Some(after), status).await;
                tracing::warn!(%url, webhook_id = %id, attempt, retry_in = ?after, %error, "webhook attempt failed");
                Err(ActivityError::application(
                    ApplicationFailure::builder(anyhow::anyhow!("{error}").into_boxed_dyn_error())
                        .next_retry_delay(after)
                        .build(),
                ))
            }
            Attempted::GiveUp { error, .. } => {
                record(AttemptState::Failed, Some(&error), None, status).await;
                tracing::error!(%url, webhook_id = %id, attempt, %error, "webhook delivery gave up");
                Ok(DeliveryOutcome::GaveUp)
            }
        }
    }

    /// One HTTP call. Network errors, 5xx and 429 are retried by Temporal with the node's
    /// policy; other 4xx, refused addresses and oversized bodies fail at once. A worker that
    /// is shutting down cancels it (see `graceful_shutdown_period`).
    #[activity(name = "http_call")]
    pub async fn http_call(
        self: Arc<Self>,
        ctx: ActivityContext,
        req: HttpRequest,
    ) -> Result<HttpResponse, ActivityError> {
        tokio::select! {
            r = self.call(&req) => r,
            _ = ctx.cancelled() => Err(ActivityError::cancelled()),
        }
    }
}

impl DriftActivities {
    async fn call(&self, req: &HttpRequest) -> Result<HttpResponse, ActivityError> {
        let out = &self.outbound;
        // The run's node output budget, when it is below the worker's own cap, names itself.
        let (limit, which) = match req.max_response_bytes {
            Some(b) if b < out.max_response_bytes as u64 => {
                (b as usize, "the run's node output budget (--max-node-output-bytes)")
            }
            _ => (out.max_response_bytes, "the worker's --max-response-bytes"),
        };
        let method = reqwest::Method::from_bytes(req.method.as_bytes())
            .map_err(|_| upstream_failure(false, format!("{:?} is not an HTTP method", req.method)))?;
        let url = url::Url::parse(&req.url).map_err(|_| upstream_failure(false, "the node's URL is invalid".into()))?;
        if let Err(e) = out.egress.check_url(&url) {
            tracing::warn!(url = %req.url, error = %e, "HTTP node refused: internal address");
            return Err(upstream_failure(
                false,
                "the node's URL leads to an address that is not allowed".into(),
            ));
        }
        let client = if req.follow_redirects {
            &out.redirecting
        } else {
            &out.plain
        };
        let mut builder = client
            .request(method, url)
            .timeout(Duration::from_millis(req.timeout_ms));
        for (k, v) in &req.headers {
            builder = builder.header(k, v);
        }
        // The API the node calls can join the run's trace (a node's own header wins).
        for (k, v) in drift_bus::trace::current_headers() {
            if !req.headers.keys().any(|h| h.eq_ignore_ascii_case(k)) {
                builder = builder.header(k, v);
            }
        }
        if let Some(body) = &req.body {
            builder = builder.json(body);
        }
        let mut resp = builder.send().await.map_err(|e| {
            tracing::warn!(url = %req.url, error = %e, "HTTP node request failed");
            let refused = EgressError::refusal_in(&e).is_some();
            upstream_failure(
                !refused,
                if refused {
                    "the node's URL leads to an address that is not allowed".into()
                } else if e.is_timeout() {
                    "the upstream did not answer in time".into()
                } else {
                    "the upstream could not be reached".into()
                },
            )
        })?;
        let status = resp.status();
        let headers: BTreeMap<String, String> = resp
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.to_string(), v.to_str().ok()?.to_string())))
            .collect();
        let mut bytes = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| {
            tracing::warn!(url = %req.url, error = %e, "reading an HTTP node's response failed");
            upstream_failure(true, "reading the upstream's answer failed".into())
        })? {
            if bytes.len() + chunk.len() > limit {
                tracing::warn!(url = %req.url, limit, "HTTP node response too large");
                return Err(upstream_failure(
                    false,
                    format!(
                        "the upstream's answer is larger than {} bytes, {which}",
                        drift_core::engine::grouped(limit as u64)
                    ),
                ));
            }
            bytes.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            tracing::warn!(
                url = %req.url, %status,
                body = %String::from_utf8_lossy(&bytes[..bytes.len().min(500)]),
                "HTTP node: upstream answered an error"
            );
        }
        if let Some(f) = drift_core::engine::status_failure(status.as_u16()) {
            return Err(upstream_failure(f.retryable, f.message));
        }
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Ok(HttpResponse {
            status: status.as_u16(),
            headers,
            body,
        })
    }
}
