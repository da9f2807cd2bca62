//! The one way anything reaches a workflow's channel: a Lua script that stores a state as the
//! latest one and in the bounded history, then publishes it, atomically in one round trip. On a
//! cluster every key it touches and the channel share the workflow's hash slot, and it publishes
//! with SPUBLISH (sharded pub/sub: only the slot's node carries the message).

use super::{Conn, Envelope, Layout, MessageKind};
use crate::domain::{NodeResult, Rejection, RequestId, ScopedWorkflowId, WorkflowState};
use serde::{Deserialize, Serialize};
use std::sync::LazyLock;
use std::time::Duration;

/// A state is published only when it is stored: one whose `seq` is not newer than the stored
/// one was published already (storing and publishing are one atomic step), so a repeat — a
/// replayed or retried publish, or the local activity after the workflow's early hand-over —
/// changes nothing and publishes nothing. KEYS[3] keeps the highest `seq` of the workflow id
/// across runs, for longer than the states (ARGV[7]). Every message that answers a request
/// (ARGV[8]) — a state, a rejection or a node result — is also kept by request id in KEYS[4],
/// the newest ARGV[9] of them (their order in KEYS[5]), so an answer survives a lost message.
/// ARGV[10] is the publish command: PUBLISH on one server, SPUBLISH on a cluster.
const PUBLISH_SCRIPT: &str = r#"
local fresh = true
if ARGV[4] == '1' then
  local cur = tonumber(redis.call('HGET', KEYS[1], 'seq') or '-1')
  local seq = tonumber(ARGV[2])
  fresh = seq > cur
  if fresh then
    redis.call('HSET', KEYS[1], 'seq', seq, 'msg', ARGV[3])
    redis.call('ZREMRANGEBYSCORE', KEYS[2], seq, seq)
    redis.call('ZADD', KEYS[2], seq, ARGV[3])
    redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -(tonumber(ARGV[5]) + 1))
    redis.call('EXPIRE', KEYS[1], ARGV[6])
    redis.call('EXPIRE', KEYS[2], ARGV[6])
  end
  if seq > tonumber(redis.call('GET', KEYS[3]) or '0') then
    redis.call('SET', KEYS[3], seq, 'EX', ARGV[7])
  else
    redis.call('EXPIRE', KEYS[3], ARGV[7])
  end
end
if ARGV[8] ~= '' then
  if redis.call('HSET', KEYS[4], ARGV[8], ARGV[3]) == 1 then
    redis.call('LPUSH', KEYS[5], ARGV[8])
    if redis.call('LLEN', KEYS[5]) > tonumber(ARGV[9]) then
      redis.call('HDEL', KEYS[4], redis.call('RPOP', KEYS[5]))
    end
  end
  redis.call('EXPIRE', KEYS[4], ARGV[6])
  redis.call('EXPIRE', KEYS[5], ARGV[6])
end
if not fresh then
  return 0
end
return redis.call(ARGV[10], ARGV[1], ARGV[3])
"#;

/// Answers kept per workflow for retried commands and waiters that missed a message.
const ANSWERS_KEPT: usize = 1_000;

/// How long the per-workflow `seq` high-water mark outlives its states.
const SEQ_TTL_FACTOR: u64 = 8;

/// How long and how much published history Redis keeps.
#[derive(Debug, Clone)]
pub struct Retention {
    pub history_len: usize,
    pub ttl: Duration,
}

/// One message ready to publish (serializable: the worker passes it to a local activity). It
/// names its workflow, never a key: the publisher derives those from its own `Layout`, so a
/// workflow's history does not pin the key layout.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Publication {
    pub workflow: ScopedWorkflowId,
    pub seq: u64,
    /// The serialized `Envelope`.
    pub message: String,
    /// States are stored as the workflow's state; rejections and node results are not.
    pub store: bool,
    /// The request this message answers: kept by it, whatever its kind.
    #[serde(default)]
    pub request_id: Option<String>,
}

impl Publication {
    fn new<B: Serialize>(workflow: &ScopedWorkflowId, env: &Envelope<B>, store: bool) -> Self {
        Self {
            workflow: workflow.clone(),
            seq: env.seq,
            message: serde_json::to_string(env).expect("envelopes serialize"),
            store,
            request_id: env.request_id.clone(),
        }
    }

    pub fn state(workflow: &ScopedWorkflowId, state: &WorkflowState) -> Self {
        let env = Envelope {
            kind: MessageKind::State,
            seq: state.seq,
            request_id: state.request_id.clone(),
            terminal: state.workflow_status.is_terminal(),
            body: state,
        };
        Self::new(workflow, &env, true)
    }

    /// A refused command, for the caller waiting on `request_id`; `seq` is the current state's.
    pub fn rejection(workflow: &ScopedWorkflowId, seq: u64, request_id: &RequestId, r: &Rejection) -> Self {
        Self::answer(workflow, MessageKind::Rejection, seq, request_id, r)
    }

    /// An execute-node result, for the caller waiting on `request_id`.
    pub fn result(workflow: &ScopedWorkflowId, seq: u64, request_id: &RequestId, r: &NodeResult) -> Self {
        Self::answer(workflow, MessageKind::Result, seq, request_id, r)
    }

    /// Answers to one caller are published, never stored as the workflow's state.
    fn answer<B: Serialize>(
        workflow: &ScopedWorkflowId,
        kind: MessageKind,
        seq: u64,
        request_id: &RequestId,
        body: B,
    ) -> Self {
        let env = Envelope {
            kind,
            seq,
            request_id: Some(request_id.to_string()),
            terminal: false,
            body,
        };
        Self::new(workflow, &env, false)
    }
}

/// Publishes over one multiplexed, reconnecting connection.
#[derive(Clone)]
pub struct Publisher {
    conn: Conn,
    retention: Retention,
    layout: Layout,
}

impl Publisher {
    pub fn new(conn: Conn, retention: Retention, layout: Layout) -> Self {
        Self {
            conn,
            retention,
            layout,
        }
    }

    pub fn retention(&self) -> &Retention {
        &self.retention
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub(crate) fn conn(&self) -> &Conn {
        &self.conn
    }

    pub async fn publish(&self, p: &Publication) -> redis::RedisResult<()> {
        static SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(PUBLISH_SCRIPT));
        let keys = self.layout.keys(&p.workflow);
        let mut conn = self.conn.clone();
        SCRIPT
            .key(&keys.latest)
            .key(&keys.history)
            .key(&keys.seq)
            .key(&keys.answers)
            .key(&keys.answer_order)
            .arg(&keys.channel)
            .arg(p.seq)
            .arg(&p.message)
            .arg(if p.store { "1" } else { "0" })
            .arg(self.retention.history_len)
            .arg(self.retention.ttl.as_secs().max(1))
            .arg(self.retention.ttl.as_secs().max(1).saturating_mul(SEQ_TTL_FACTOR))
            .arg(p.request_id.as_deref().unwrap_or_default())
            .arg(ANSWERS_KEPT)
            .arg(publish_command(&self.conn))
            .invoke_async::<i64>(&mut conn)
            .await
            .map(|_| ())
    }
}

/// Classic pub/sub on one server; sharded pub/sub on a cluster, where a classic PUBLISH would be
/// broadcast to every node.
pub(crate) fn publish_command(conn: &Conn) -> &'static str {
    match conn.is_cluster() {
        true => "SPUBLISH",
        false => "PUBLISH",
    }
}
