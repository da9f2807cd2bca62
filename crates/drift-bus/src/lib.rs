//! Everything Redis: which Redis (one server or a cluster) and the one connection type that
//! hides which, where a workflow's data lives (its keys, named in one place), what travels on its
//! channel (the envelope), the one atomic publish the worker and gateway share, reads of stored
//! states, and the gateway's shared subscription hub.

mod conn;
mod hub;
mod publish;
mod store;
pub mod trace;
mod watch;

pub use conn::{Conn, RedisTarget, explain};
pub use hub::{Event, Hub, HubError, HubMsg, Subscription};
pub use publish::{Publication, Publisher, Retention};
pub use store::{Store, StoreError, Stored};
pub use watch::{Watch, Woke};

use drift_core::domain::{ScopedWorkflowId, TenantId, WorkflowId};
use serde::{Deserialize, Serialize};

/// A deployment's Redis layout: every key and channel starts with its prefix (so deployments
/// and tests can share one Redis), and a workflow's keys and channel share one hash tag (the
/// scoped workflow id in braces), so on a cluster they live in one slot: the publish script can
/// touch them all at once, and the channel is served by the node that holds the keys.
///
/// Only the gateway's and the worker's configuration name the prefix: no workflow input carries
/// a key, so the layout can change under running workflows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    prefix: String,
}

impl Layout {
    /// `prefix` may not contain braces: a brace would change which part of a key is hashed.
    pub fn new(prefix: &str) -> Result<Self, String> {
        if prefix.is_empty() || prefix.contains(['{', '}']) || prefix.chars().any(char::is_whitespace) {
            return Err(format!(
                "the key prefix {prefix:?} must be non-empty, without braces or spaces"
            ));
        }
        Ok(Self { prefix: prefix.into() })
    }

    /// One workflow's keys and channel.
    pub fn keys(&self, scoped: &ScopedWorkflowId) -> RedisKeys {
        // Made on every call, publish and request note: joined by hand, not through `format!`'s
        // machinery (about 1% of Drift's own CPU per round in its profile).
        let tag = [self.prefix.as_str(), ":{", scoped.as_str(), "}:"].concat();
        let key = |suffix: &str| [tag.as_str(), suffix].concat();
        RedisKeys {
            channel: key("ch"),
            latest: key("latest"),
            history: key("hist"),
            deliveries: key("deliv"),
            seq: key("seq"),
            answers: key("ans"),
            answer_order: key("anso"),
            links: key("links"),
            requests: key("reqs"),
            attempts: key("atts"),
        }
    }

    /// The workflow a channel made by `keys` belongs to; None for any other channel.
    pub fn workflow_of_channel(&self, channel: &str) -> Option<(TenantId, WorkflowId)> {
        let scoped = channel
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix(":{")?
            .strip_suffix("}:ch")?;
        let (tenant, id) = scoped.split_once('/')?;
        Some((TenantId::parse(tenant).ok()?, WorkflowId::parse(id).ok()?))
    }

    /// A tenant's webhook deliveries by the time of their first attempt: members
    /// `{workflow id}/{seq}`, scored by Unix milliseconds; replays read a time range of it.
    pub fn tenant_deliveries(&self, tenant: &TenantId) -> String {
        format!("{}:deliveries:{{{tenant}}}", self.prefix)
    }

    /// The key that records a socket ticket's use (by the ticket's digest, never the ticket).
    pub fn used_ticket(&self, ticket: &str) -> String {
        format!("{}:ticket:{}", self.prefix, drift_core::digest::sha256_hex_128(ticket))
    }

    /// The secret answer links are signed with, when none is configured: made once, shared by
    /// every gateway on this Redis.
    pub fn link_secret(&self) -> String {
        format!("{}:link-secret", self.prefix)
    }

    /// The channel on which gateways tell each other that definitions changed.
    pub fn definitions_channel(&self) -> String {
        format!("{}:definitions", self.prefix)
    }

    /// The channel on which a revocation is announced to every gateway.
    pub fn keys_channel(&self) -> String {
        format!("{}:keys", self.prefix)
    }
}

/// Deliveries a tenant's index keeps at most (the oldest go first); it also forgets what is
/// older than the states' retention.
pub const DELIVERY_INDEX_MAX: isize = 100_000;

/// One delivery in a tenant's index: `{workflow id}/{seq}`.
pub fn delivery_member(id: &str, seq: u64) -> String {
    format!("{id}/{seq}")
}

/// Reads back `delivery_member`.
pub fn parse_delivery_member(member: &str) -> Option<(WorkflowId, u64)> {
    let (id, seq) = member.rsplit_once('/')?;
    Some((WorkflowId::parse(id).ok()?, seq.parse().ok()?))
}

/// Where one workflow's Redis data lives (see `Layout`).
#[derive(Debug, Clone, PartialEq)]
pub struct RedisKeys {
    pub channel: String,
    pub latest: String,
    pub history: String,
    /// The last webhook attempt, for operators.
    pub deliveries: String,
    /// The highest `seq` ever published for this workflow id, across runs; kept longer than
    /// the states themselves so a reused id never goes back.
    pub seq: String,
    /// The answer to each recent command, by request id (and their order, to bound them).
    pub answers: String,
    pub answer_order: String,
    /// The workflow's answer links: when they were last revoked, and who answered each
    /// screen through one.
    pub links: String,
    /// The requests gateways passed on to the workflow and how each came (newest first,
    /// `RequestNote`s as JSON), for its timeline.
    pub requests: String,
    /// Every webhook attempt of the workflow (newest first, `AttemptRecord`s as JSON), for its
    /// timeline.
    pub attempts: String,
}

/// The field of a workflow's links hash holding its link generation (raised by each
/// revocation): the store reads and raises it, the publisher signs screen links with it.
const LINK_GENERATION: &str = "generation";

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MessageKind {
    State,
    Rejection,
    Result,
}

/// A message on a channel that is not a workflow's: its source changed, re-read it. Old
/// gateways read any message that is not an envelope this way, so new notices stay readable.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "notice", rename_all = "camelCase")]
pub enum Notice {
    DefinitionsChanged,
    /// An API key was revoked: gateways forget the keys they have cached.
    KeysRevoked,
}

/// What travels on a workflow's channel. `body` is a `WorkflowState`, `Rejection` or
/// `NodeResult` according to `kind`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope<B> {
    pub kind: MessageKind,
    pub seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(default)]
    pub terminal: bool,
    /// The W3C `traceparent` of the publish that sent it (when traces are on), so each
    /// delivery's span joins the run's trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
    /// When Redis stored it (Unix ms): set by the publish script, absent before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<i64>,
    pub body: B,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scoped(t: &str, w: &str) -> ScopedWorkflowId {
        ScopedWorkflowId::new(&TenantId::parse(t).unwrap(), &WorkflowId::parse(w).unwrap())
    }

    #[test]
    fn a_workflows_keys_and_channel_share_one_hash_slot() {
        let layout = Layout::new("drift").unwrap();
        let k = layout.keys(&scoped("acme", "wf-1.a:b"));
        let slot = |key: &str| hub::slot(key.as_bytes());
        let all = [
            &k.channel,
            &k.latest,
            &k.history,
            &k.deliveries,
            &k.seq,
            &k.answers,
            &k.answer_order,
            &k.links,
            &k.requests,
            &k.attempts,
        ];
        assert!(all.iter().all(|key| slot(key) == slot(&k.channel)), "{all:?}");
        // The names data already in Redis is under: never to change.
        let names = all.map(|key| key.strip_prefix("drift:{acme/wf-1.a:b}:").unwrap_or(key));
        assert_eq!(
            names,
            [
                "ch", "latest", "hist", "deliv", "seq", "ans", "anso", "links", "reqs", "atts"
            ]
        );
        // Another workflow of the same tenant is hashed on its own id.
        assert_ne!(slot(&layout.keys(&scoped("acme", "wf-2")).channel), slot(&k.channel));
    }

    #[test]
    fn the_channel_name_is_read_back_by_the_layout_that_wrote_it() {
        let layout = Layout::new("t1").unwrap();
        let k = layout.keys(&scoped("acme", "wf-1"));
        let (t, w) = layout.workflow_of_channel(&k.channel).unwrap();
        assert_eq!((t.as_str(), w.as_str()), ("acme", "wf-1"));
        assert_eq!(layout.workflow_of_channel(&layout.definitions_channel()), None);
        assert_eq!(Layout::new("t").unwrap().workflow_of_channel(&k.channel), None);
        assert_eq!(layout.workflow_of_channel(&k.latest), None);
    }

    #[test]
    fn a_prefix_that_would_move_the_hash_tag_is_refused() {
        assert!(Layout::new("a{b").is_err());
        assert!(Layout::new("a}").is_err());
        assert!(Layout::new("").is_err());
        assert!(Layout::new("drift-prod").is_ok());
    }
}
