//! Answer links: a capability URL for one screen of one run, for a person outside any app (an
//! approver reached by email or chat). A link names its tenant, workflow, screen `seq` and an
//! optional assignee, signed with a secret every gateway shares, and expires; it reads nothing
//! but that screen's view and answers nothing but that screen, once. Revoking a workflow's
//! links is a mark in Redis every gateway reads. Opening a link never answers: the answer needs
//! the page's own POST with a short-lived form token, so mail scanners and link previews that
//! fetch the URL change nothing.

use super::{CommandRequest, Delivery, Followed, Outcome, Service, ServiceError, require, riding_out};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use drift_core::domain::timeline::Via;
use drift_core::domain::{Caller, RequestId, Scope, ScopedWorkflowId, Scopes, TenantId, WorkflowId, WorkflowStatus};
use drift_core::engine::View;
pub use drift_core::links::LinkKeys;
use drift_core::links::{Claims, Kind, MAX_LINK_TTL_SECS};
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;

/// How long a link lives when its request does not say.
pub const DEFAULT_LINK_TTL: Duration = Duration::from_secs(72 * 3600);
/// The longest a link may live (and how long its marks are kept in Redis).
pub const MAX_LINK_TTL: Duration = Duration::from_secs(MAX_LINK_TTL_SECS);
/// How long the page's form token is good for: a page left open longer is reloaded.
const FORM_TTL: Duration = Duration::from_secs(3600);
/// The longest assignee label.
const MAX_ASSIGNEE: usize = 128;

/// `POST /v3/workflow/{id}/links`: a link for one screen.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LinkBody {
    /// The screen's `seq` (default: the screen the workflow waits on now).
    #[serde(default)]
    pub seq: Option<u64>,
    /// How long the link works, in seconds (default 72 hours, at most 30 days).
    #[serde(default)]
    pub ttl_secs: Option<u64>,
    /// Who the link is for (shown on the page and recorded with the answer), e.g. an email.
    #[serde(default)]
    pub assignee: Option<String>,
}

/// A link made.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IssuedLink {
    /// The page a person opens to answer (`--public-url` + `/answer/{token}`).
    pub url: String,
    /// The screen it answers.
    pub seq: u64,
    /// When it stops working (RFC 3339).
    pub expires_at: String,
}

/// Where a link's screen stands.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LinkStatus {
    /// The screen waits for an answer: the link may answer it.
    Open,
    /// Answered through an answer link (`answeredBy`, `answeredAt`).
    Answered,
    /// The run went on past this screen (answered elsewhere, timed out, or ended).
    MovedOn,
    Expired,
    Revoked,
}

/// What a link shows: its screen while it is open, and otherwise only what happened.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LinkScreen {
    pub status: LinkStatus,
    pub seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assignee: Option<String>,
    pub expires_at: String,
    /// Open: the screen to answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub view: Option<View>,
    /// Open: the token the page's answer carries (an hour long).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub form_token: Option<String>,
    /// Answered: the assignee of the link that answered (none when it named nobody).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answered_by: Option<String>,
    /// Answered: when (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answered_at: Option<String>,
}

/// Recorded when a link answers its screen.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Answered {
    by: Option<String>,
    at: String,
    link: String,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

fn rfc3339(secs: u64) -> String {
    chrono::DateTime::from_timestamp(secs as i64, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A new random secret (256 bits), for a deployment that configured none.
pub fn fresh_link_secret() -> String {
    B64.encode(rand::random::<[u8; 32]>())
}

/// A link as `issue_link` makes it, with any expiry (s since epoch), for tests.
#[cfg(test)]
pub(crate) fn issue_for_test(keys: &LinkKeys, tenant: &str, workflow: &str, seq: u64, expires: u64) -> String {
    keys.sign(&Claims {
        k: Kind::Link,
        t: tenant.into(),
        w: workflow.into(),
        q: seq,
        i: B64.encode(rand::random::<[u8; 12]>()),
        a: None,
        g: 0,
        e: expires,
    })
}

/// A link's claims, checked and parsed.
struct Link {
    claims: Claims,
    tenant: TenantId,
    workflow: WorkflowId,
}

impl Link {
    fn expired(&self) -> bool {
        self.claims.e * 1000 < now_ms()
    }

    fn request_id(&self) -> RequestId {
        RequestId::parse(&format!("link-{}", self.claims.i)).expect("a link id is url-safe base64")
    }

    /// `tenant/workflow`: where its workflow's keys are.
    fn scoped(&self) -> ScopedWorkflowId {
        ScopedWorkflowId::new(&self.tenant, &self.workflow)
    }

    /// Who answers through it: the link alone, for its tenant, with the assignee recorded.
    fn caller(&self) -> Caller {
        Caller {
            tenant: self.tenant.clone(),
            client: "answer-link".into(),
            user: self.claims.a.clone(),
            scopes: Scopes::of(&[Scope::Drive]),
        }
    }
}

/// One answer for every token that is not a good link: it says nothing about the workflow.
fn not_a_link() -> ServiceError {
    ServiceError::NotFound("this answer link is not valid".into())
}

impl Service {
    fn link_keys(&self) -> Result<&LinkKeys, ServiceError> {
        self.0.links.as_ref().ok_or_else(|| ServiceError::Unavailable {
            dependency: "answer links",
            cause: "this gateway has no answer-link secret".into(),
        })
    }

    fn parse_link(&self, token: &str) -> Result<Link, ServiceError> {
        let claims = self.link_keys()?.open(token, Kind::Link).ok_or_else(not_a_link)?;
        let tenant = TenantId::parse(&claims.t).map_err(|_| not_a_link())?;
        let workflow = WorkflowId::parse(&claims.w).map_err(|_| not_a_link())?;
        Ok(Link {
            claims,
            tenant,
            workflow,
        })
    }

    /// Makes a link for one screen of `id`: the one it waits on now, or `seq` if that is it.
    pub async fn issue_link(
        &self,
        caller: &Caller,
        id: &WorkflowId,
        body: LinkBody,
    ) -> Result<IssuedLink, ServiceError> {
        require(caller, Scope::Drive)?;
        let keys = self.link_keys()?;
        let ttl = match body.ttl_secs {
            None => DEFAULT_LINK_TTL,
            Some(0) => return Err(ServiceError::Invalid("ttlSecs must be at least 1".into())),
            Some(s) if s > MAX_LINK_TTL.as_secs() => {
                return Err(ServiceError::Invalid(format!(
                    "ttlSecs is at most {} (30 days)",
                    MAX_LINK_TTL.as_secs()
                )));
            }
            Some(s) => Duration::from_secs(s),
        };
        if let Some(a) = &body.assignee
            && (a.is_empty() || a.chars().count() > MAX_ASSIGNEE || a.chars().any(char::is_control))
        {
            return Err(ServiceError::Invalid(format!(
                "assignee must be 1-{MAX_ASSIGNEE} characters, without control characters"
            )));
        }
        let latest = self.reconciled_state(caller, id).await?;
        drift_core::domain::Rejection::check_resume(latest.workflow_status, latest.seq, body.seq)?;
        let marks = self.keys(&caller.scoped(id));
        let (generation, _) = riding_out(|| self.store().link_marks(&marks, latest.seq)).await?;
        let expires = now_ms() / 1000 + ttl.as_secs();
        let claims = Claims {
            k: Kind::Link,
            t: caller.tenant.as_str().into(),
            w: id.as_str().into(),
            q: latest.seq,
            i: B64.encode(rand::random::<[u8; 12]>()),
            a: body.assignee,
            g: generation,
            e: expires,
        };
        let token = keys.sign(&claims);
        tracing::info!(workflow = %id, seq = latest.seq, assignee = ?claims.a, link = %claims.i, "answer link issued");
        Ok(IssuedLink {
            url: keys.url(&token),
            seq: latest.seq,
            expires_at: rfc3339(expires),
        })
    }

    /// Closes every link issued so far for `id`, on every gateway.
    pub async fn revoke_links(&self, caller: &Caller, id: &WorkflowId) -> Result<(), ServiceError> {
        require(caller, Scope::Drive)?;
        self.link_keys()?;
        self.reconciled_state(caller, id).await?;
        let keys = self.keys(&caller.scoped(id));
        riding_out(|| self.store().revoke_links(&keys, MAX_LINK_TTL)).await?;
        tracing::info!(workflow = %id, "answer links revoked");
        Ok(())
    }

    /// What a link shows now. Reads only: opening a link never answers it.
    pub async fn open_link(&self, token: &str) -> Result<LinkScreen, ServiceError> {
        let link = self.parse_link(token)?;
        self.screen_of(&link).await
    }

    async fn screen_of(&self, link: &Link) -> Result<LinkScreen, ServiceError> {
        let keys = self.keys(&link.scoped());
        let seq = link.claims.q;
        let store = self.store();
        let ((generation, answered), latest) = tokio::try_join!(
            riding_out(|| store.link_marks(&keys, seq)),
            riding_out(|| store.latest(&keys))
        )?;
        let mut screen = LinkScreen {
            status: LinkStatus::MovedOn,
            seq,
            assignee: link.claims.a.clone(),
            expires_at: rfc3339(link.claims.e),
            view: None,
            form_token: None,
            answered_by: None,
            answered_at: None,
        };
        if let Some(a) = answered.and_then(|a| serde_json::from_str::<Answered>(&a).ok()) {
            screen.status = LinkStatus::Answered;
            screen.answered_by = a.by;
            screen.answered_at = Some(a.at);
            return Ok(screen);
        }
        if generation != link.claims.g {
            screen.status = LinkStatus::Revoked;
            return Ok(screen);
        }
        if link.expired() {
            screen.status = LinkStatus::Expired;
            return Ok(screen);
        }
        let latest = latest.map(|l| l.state);
        // Past the screen: answered by this link's own command (its record may not be written
        // yet, or its gateway stopped before writing it), or by anything else.
        if latest.as_ref().is_some_and(|l| l.seq > seq) {
            let (after, _) = riding_out(|| store.history_after(&keys, seq)).await?;
            let rid = link.request_id();
            if after
                .first()
                .is_some_and(|s| s.seq == seq + 1 && s.request_id.as_deref() == Some(rid.as_str()))
            {
                screen.status = LinkStatus::Answered;
                screen.answered_by = link.claims.a.clone();
            }
            return Ok(screen);
        }
        let waiting = latest.filter(|s| s.seq == seq && s.workflow_status == WorkflowStatus::Waiting);
        if let Some(state) = waiting {
            screen.status = LinkStatus::Open;
            screen.view = state.view;
            let form = Claims {
                k: Kind::Form,
                e: (now_ms() / 1000 + FORM_TTL.as_secs()).min(link.claims.e),
                ..link.claims.clone()
            };
            screen.form_token = Some(self.link_keys()?.sign(&form));
        }
        Ok(screen)
    }

    /// Answers a link's screen with `view_response`, through the same command path as any
    /// resume (checked, idempotent: the link's id is the request id), and waits for the
    /// workflow to take it. `form_token` is the one its page was given.
    pub async fn answer_link(
        &self,
        token: &str,
        form_token: &str,
        view_response: Value,
        wait: Duration,
        stop: &CancellationToken,
    ) -> Result<LinkScreen, ServiceError> {
        let link = self.parse_link(token)?;
        let keys = self.link_keys()?;
        let form_fits = keys
            .open(form_token, Kind::Form)
            .is_some_and(|f| f.i == link.claims.i && f.q == link.claims.q && f.e * 1000 >= now_ms());
        if !form_fits {
            return Err(ServiceError::Unauthorized(
                "this page has expired: reload it to answer".into(),
            ));
        }
        let now = self.screen_of(&link).await?;
        if now.status != LinkStatus::Open {
            return Err(ServiceError::LinkClosed(now.status));
        }
        let caller = link.caller();
        let request = CommandRequest::Resume {
            request_id: link.request_id(),
            seq: Some(link.claims.q),
            view_response,
            delivery: Delivery::default(),
        };
        let mut dispatched = self.command(&caller, &link.workflow, request, Via::Link).await?;
        let deadline = tokio::time::Instant::now() + wait;
        match self.wait(&mut dispatched, deadline, stop).await? {
            Outcome::Rejected(r) => return Err(r.into()),
            Outcome::State(_) | Outcome::NodeResult(_) | Outcome::Pending(_) => {}
        }
        let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let answered = Answered {
            by: link.claims.a.clone(),
            at,
            link: link.claims.i.clone(),
        };
        let record = serde_json::to_string(&answered).expect("serializes");
        let marks = self.keys(&link.scoped());
        let seq = link.claims.q;
        riding_out(|| self.store().record_link_answer(&marks, seq, &record, MAX_LINK_TTL)).await?;
        tracing::info!(
            workflow = %link.workflow, seq = link.claims.q, assignee = ?link.claims.a, link = %link.claims.i,
            "screen answered through an answer link"
        );
        self.screen_of(&link).await
    }
}

impl Service {
    /// A link's screen as it stands, then again each time that changes, until it is no longer
    /// open (or `shutdown`): the page of an open link learns at once that the run moved on.
    /// Only the link's own status travels; nothing of the run's later states. Also returns the
    /// tenant, whose stream places it takes.
    pub async fn follow_link(
        &self,
        token: &str,
        shutdown: CancellationToken,
    ) -> Result<(TenantId, impl Stream<Item = LinkScreen> + Send + 'static), ServiceError> {
        let link = self.parse_link(token)?;
        let first = self.screen_of(&link).await?;
        let reader = Caller {
            scopes: Scopes::of(&[Scope::Read]),
            ..link.caller()
        };
        let follow = match first.status {
            LinkStatus::Open => Some(
                self.follow(&reader, &link.workflow, Some(link.claims.q))
                    .await?
                    .via("answer page"),
            ),
            _ => None,
        };
        let tenant = link.tenant.clone();
        let watch = Watch {
            first: Some(first),
            states: follow.map(|f| Box::pin(self.stream(f, shutdown)) as Followers),
            service: self.clone(),
            link,
            last: LinkStatus::Open,
        };
        let changes = futures::stream::unfold(watch, |mut w| async move { w.next().await.map(|s| (s, w)) });
        Ok((tenant, changes))
    }
}

type Followers = std::pin::Pin<Box<dyn Stream<Item = Followed> + Send>>;

/// An open link's page, watching its screen.
struct Watch {
    first: Option<LinkScreen>,
    states: Option<Followers>,
    service: Service,
    link: Link,
    last: LinkStatus,
}

impl Watch {
    async fn next(&mut self) -> Option<LinkScreen> {
        if let Some(first) = self.first.take() {
            self.last = first.status;
            return Some(first);
        }
        if self.last != LinkStatus::Open {
            return None;
        }
        let states = self.states.as_mut()?;
        while let Some(item) = states.next().await {
            if !matches!(item, Followed::Out(_)) {
                continue;
            }
            let now = self.service.screen_of(&self.link).await.ok()?;
            if now.status != self.last {
                self.last = now.status;
                return Some(now);
            }
        }
        None
    }
}
