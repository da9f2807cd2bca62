//! The one way anything reaches a workflow's channel: a Lua script that stores a state as the
//! latest one and in the bounded history, then publishes it, atomically in one round trip. On a
//! cluster every key it touches and the channel share the workflow's hash slot, and it publishes
//! with SPUBLISH (sharded pub/sub: only the slot's node carries the message).

use super::hub::{ClusterReplicas, slot};
use super::{Conn, Envelope, Layout, MessageKind, RedisKeys};
use drift_core::domain::timeline::RequestNote;
use drift_core::domain::{AttemptRecord, NodeResult, Rejection, RequestId, ScopedWorkflowId, WorkflowState};
use drift_core::links::{LinkDue, LinkKeys};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

/// A state is published only when it is stored: one whose `seq` is not newer than the stored
/// one was published already (storing and publishing are one atomic step), so a repeat — a
/// replayed or retried publish, or the local activity after the workflow's early hand-over —
/// changes nothing and publishes nothing. KEYS[3] keeps the highest `seq` of the workflow id
/// across runs, for longer than the states (ARGV[7]). Every message that answers a request
/// (ARGV[8]) — a state, a rejection or a node result — is also kept by request id in KEYS[4],
/// the newest ARGV[9] of them (their order in KEYS[5]), so an answer survives a lost message.
/// ARGV[10] is the publish command: PUBLISH on one server, SPUBLISH on a cluster. The message
/// (ARGV[3], an `Envelope`'s JSON object) gets `at`, Redis's clock in Unix ms, so a timeline
/// says when each state was published without a write of its own.
const PUBLISH_SCRIPT: &str = r#"
local now = redis.call('TIME')
local msg = '{"at":' .. now[1] .. string.format('%03d', math.floor(tonumber(now[2]) / 1000)) .. ',' .. string.sub(ARGV[3], 2)
local fresh = true
if ARGV[4] == '1' then
  local cur = tonumber(redis.call('HGET', KEYS[1], 'seq') or '-1')
  local seq = tonumber(ARGV[2])
  fresh = seq > cur
  if fresh then
    redis.call('HSET', KEYS[1], 'seq', seq, 'msg', msg)
    redis.call('ZREMRANGEBYSCORE', KEYS[2], seq, seq)
    redis.call('ZADD', KEYS[2], seq, msg)
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
  if redis.call('HSET', KEYS[4], ARGV[8], msg) == 1 then
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
return redis.call(ARGV[10], ARGV[1], msg)
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
    /// A screen whose node says `answerLink`: the publisher signs the link into the state
    /// (`answerUrl`) where the secret is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer_link: Option<LinkDue>,
}

impl Publication {
    fn new<B: Serialize>(workflow: &ScopedWorkflowId, env: &Envelope<B>, store: bool) -> Self {
        Self {
            workflow: workflow.clone(),
            seq: env.seq,
            message: serde_json::to_string(env).expect("envelopes serialize"),
            store,
            request_id: env.request_id.clone(),
            answer_link: None,
        }
    }

    /// Carries the `traceparent` of the span that publishes it (see `Envelope::trace`). A
    /// W3C traceparent is hex digits and dashes, so it is spliced in without re-serializing.
    pub fn traced(mut self, traceparent: Option<String>) -> Self {
        if let Some(tp) = traceparent.filter(|tp| tp.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'))
            && let Some(rest) = self.message.strip_prefix('{')
        {
            self.message = format!("{{\"trace\":\"{tp}\",{rest}");
        }
        self
    }

    /// The state is a screen due an answer link (see `Session::answer_link`).
    pub fn with_answer_link(mut self, due: Option<LinkDue>) -> Self {
        self.answer_link = due;
        self
    }

    pub fn state(workflow: &ScopedWorkflowId, state: &WorkflowState) -> Self {
        let env = Envelope {
            kind: MessageKind::State,
            seq: state.seq,
            request_id: state.request_id.clone(),
            terminal: state.workflow_status.is_terminal(),
            trace: None,
            at: None,
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
            trace: None,
            at: None,
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
    replication: Arc<Replication>,
    /// Signs answer links into screens that ask for them (None: they go without, warned once).
    links: Option<Arc<LinkKeys>>,
    /// The early hand-overs of this process, shared by its clones.
    early: Arc<EarlyHandOvers>,
}

/// How long the publish of record waits for the early hand-over of the same state.
const HAND_OVER_WAIT: Duration = Duration::from_secs(2);
/// Hand-overs remembered at most: one whose publish of record never came (its run evicted or
/// ended in between) is forgotten when the map is full.
const HAND_OVERS_KEPT: usize = 4_096;

/// A hand-over's outcome as it comes: `None` while in flight, `Some(stored)` after.
type HandOver = tokio::sync::watch::Receiver<Option<bool>>;

/// States a workflow handed to the publisher ahead of its publish of record (the local
/// activity, on the same worker), by workflow and seq, with how each went. The publish of
/// record of a state the hand-over stored skips its own script, which would find it stored and
/// publish nothing: one Redis script per state, not two.
#[derive(Default)]
struct EarlyHandOvers(Mutex<std::collections::HashMap<(ScopedWorkflowId, u64), HandOver>>);

impl EarlyHandOvers {
    /// Registers a hand-over of `p` about to start; None when the map is full of ones in flight.
    fn begin(&self, p: &Publication) -> Option<tokio::sync::watch::Sender<Option<bool>>> {
        let mut m = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if m.len() >= HAND_OVERS_KEPT {
            // Done (or abandoned) ones whose publish of record never came.
            m.retain(|_, rx| rx.borrow().is_none() && rx.has_changed().is_ok());
            if m.len() >= HAND_OVERS_KEPT {
                return None;
            }
        }
        let (tx, rx) = tokio::sync::watch::channel(None);
        m.insert((p.workflow.clone(), p.seq), rx);
        Some(tx)
    }

    /// Whether an early hand-over of this process stored `p` (waiting for one in flight).
    async fn stored(&self, p: &Publication) -> bool {
        let rx = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&(p.workflow.clone(), p.seq));
        let Some(mut rx) = rx else { return false };
        // A hand-over given up on drops its sender: then this publish runs its script.
        matches!(
            tokio::time::timeout(HAND_OVER_WAIT, rx.wait_for(Option::is_some)).await,
            Ok(Ok(done)) if *done == Some(true)
        )
    }
}

/// How long a publish waits for the replicas of its master to take a state.
const REPLICA_WAIT: Duration = Duration::from_secs(1);
/// How long a reading of which masters have how many replicas is used.
const REPLICAS_FRESH: Duration = Duration::from_secs(2);

/// How many replicas a state must reach before its publish counts (`--redis-replica-acks`):
/// Redis replicates asynchronously, so a master that dies right after taking a state may leave
/// a replica without it; the publish then fails and is repeated on the replica that took over.
/// Only healthy replicas are waited for (a master without any is not waited on).
struct Replication {
    acks: usize,
    /// The replicas of each master as last read, and when.
    seen: Mutex<Option<(Instant, Arc<Replicas>)>>,
    refreshing: AtomicBool,
}

impl Replication {
    /// How many replicas a state in `slot` must reach by the reading `replicas`: as many as
    /// asked for, at most as many healthy ones as its master has.
    fn wanted_of(&self, replicas: &Replicas, slot: u16) -> usize {
        self.acks.min(replicas.of_slot(slot))
    }

    /// Whether the last reading says a publish to `latest_key` waits for replicas (false with
    /// none asked for, or before the first reading). The key's slot is worked out only then.
    fn seen_waiting(&self, latest_key: &str) -> bool {
        self.acks > 0
            && self
                .seen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .as_ref()
                .is_some_and(|(_, replicas)| self.wanted_of(replicas, slot(latest_key.as_bytes())) > 0)
    }
}

/// Healthy replicas per master: from `CLUSTER NODES` on a cluster, from `ROLE` on one server.
enum Replicas {
    Cluster(ClusterReplicas),
    Single(usize),
}

impl Replicas {
    async fn read(conn: &Conn) -> redis::RedisResult<Self> {
        let mut c = conn.clone();
        if conn.is_cluster() {
            let nodes: String = redis::cmd("CLUSTER").arg("NODES").query_async(&mut c).await?;
            return Ok(Self::Cluster(ClusterReplicas::parse(&nodes)));
        }
        // ROLE on a master: ["master", offset, [[host, port, offset], …]]
        let role: Vec<redis::Value> = redis::cmd("ROLE").query_async(&mut c).await?;
        Ok(Self::Single(match role.get(2) {
            Some(redis::Value::Array(replicas)) => replicas.len(),
            _ => 0,
        }))
    }

    fn of_slot(&self, slot: u16) -> usize {
        match self {
            Self::Cluster(r) => r.of_slot(slot),
            Self::Single(n) => *n,
        }
    }
}

impl Publisher {
    /// `replica_acks`: how many replicas of its master must hold a state before its publish
    /// counts (0: none).
    pub fn new(conn: Conn, retention: Retention, layout: Layout, replica_acks: usize) -> Self {
        Self {
            conn,
            retention,
            layout,
            replication: Arc::new(Replication {
                acks: replica_acks,
                seen: Mutex::new(None),
                refreshing: AtomicBool::new(false),
            }),
            links: None,
            early: Arc::default(),
        }
    }

    /// Signs answer links with `keys` (see `answer_url`).
    pub fn with_links(mut self, keys: Option<LinkKeys>) -> Self {
        self.links = keys.map(Arc::new);
        self
    }

    /// The answer link for `due` on `workflow`, in the workflow's current link generation (a
    /// revocation closes it with the links made before). The same link each time it is made
    /// for one screen. None when this process has no link key.
    pub async fn answer_url(&self, workflow: &ScopedWorkflowId, due: LinkDue) -> redis::RedisResult<Option<String>> {
        let Some(keys) = &self.links else {
            static WARNED: AtomicBool = AtomicBool::new(false);
            if !WARNED.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "a screen asks for an answer link, but this worker has no --public-url: its states go without answerUrl"
                );
            }
            return Ok(None);
        };
        let mut conn = self.conn.clone();
        let generation: Option<u64> = conn
            .hget(self.layout.keys(workflow).links, super::LINK_GENERATION)
            .await?;
        let (tenant, id) = workflow.parts();
        Ok(Some(keys.screen_link(tenant, id, due, generation.unwrap_or(0))))
    }

    /// `p` with its answer link signed into the state's body, when it is due one.
    async fn linked<'a>(&self, p: &'a Publication) -> redis::RedisResult<Cow<'a, Publication>> {
        let Some(due) = p.answer_link else {
            return Ok(Cow::Borrowed(p));
        };
        let Some(url) = self.answer_url(&p.workflow, due).await? else {
            return Ok(Cow::Borrowed(p));
        };
        let mut env: serde_json::Value = serde_json::from_str(&p.message).map_err(|e| {
            redis::RedisError::from((redis::ErrorKind::Client, "a publication is not JSON", e.to_string()))
        })?;
        env["body"]["answerUrl"] = url.into();
        Ok(Cow::Owned(Publication {
            message: env.to_string(),
            answer_link: None,
            ..p.clone()
        }))
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Records a workflow's webhook attempt for operators: as its last attempt (no optional
    /// field of an earlier attempt lingers) and in its timeline's
    /// attempts. Best effort: an attempt is not repeated because its record could not be written.
    pub async fn record_attempt(&self, workflow: &ScopedWorkflowId, rec: &AttemptRecord) {
        let keys = self.layout.keys(workflow);
        let ttl = self.retention.ttl.as_secs().max(60) as i64;
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        pipe.hdel(&keys.deliveries, AttemptRecord::OPTIONAL_FIELDS)
            .ignore()
            .hset_multiple(&keys.deliveries, &rec.to_fields())
            .ignore()
            .expire(&keys.deliveries, ttl)
            .ignore();
        journal(
            &mut pipe,
            &keys.attempts,
            &serde_json::to_string(rec).expect("records serialize"),
            ttl,
        );
        let written: redis::RedisResult<()> = pipe.query_async(&mut conn).await;
        if let Err(e) = written {
            tracing::debug!(error = %e, "could not record a webhook attempt");
        }
        if rec.attempt == 1 {
            self.index_delivery(workflow, rec.seq, ttl).await;
        }
    }

    /// Records a request a gateway passed on to `workflow`, for its timeline (best effort: the
    /// request is not refused because its note could not be written).
    pub async fn note_request(&self, workflow: &ScopedWorkflowId, note: &RequestNote) {
        let key = self.layout.keys(workflow).requests;
        self.add_to_timeline(&key, &serde_json::to_string(note).expect("notes serialize"))
            .await;
    }

    /// Records an attempt sent on an operator's request (a resend) in the timeline only: the
    /// last attempt of the worker's schedule stays what `…/deliveries` shows.
    pub async fn record_resend(&self, workflow: &ScopedWorkflowId, rec: &AttemptRecord) {
        let key = self.layout.keys(workflow).attempts;
        self.add_to_timeline(&key, &serde_json::to_string(rec).expect("records serialize"))
            .await;
    }

    async fn add_to_timeline(&self, key: &str, entry: &str) {
        let ttl = self.retention.ttl.as_secs().max(60) as i64;
        let mut pipe = redis::pipe();
        journal(&mut pipe, key, entry, ttl);
        let written: redis::RedisResult<()> = pipe.query_async(&mut self.conn.clone()).await;
        if let Err(e) = written {
            tracing::debug!(error = %e, key, "could not add to a workflow's timeline");
        }
    }

    /// Adds a state's delivery to its tenant's index at the time of its first attempt (a
    /// repeated first attempt keeps the first time), forgetting what is past the retention or
    /// past `DELIVERY_INDEX_MAX`. Best effort, like the record.
    async fn index_delivery(&self, workflow: &ScopedWorkflowId, seq: u64, ttl_secs: i64) {
        let (tenant, id) = workflow.parts();
        let Ok(tenant) = drift_core::domain::TenantId::parse(tenant) else {
            return;
        };
        let key = self.layout.tenant_deliveries(&tenant);
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or_default();
        let mut conn = self.conn.clone();
        let written: redis::RedisResult<()> = redis::pipe()
            .cmd("ZADD")
            .arg(&key)
            .arg("NX")
            .arg(now_ms)
            .arg(crate::delivery_member(id, seq))
            .ignore()
            .zrembyscore(&key, "-inf", now_ms - ttl_secs * 1000)
            .ignore()
            .cmd("ZREMRANGEBYRANK")
            .arg(&key)
            .arg(0)
            .arg(-(crate::DELIVERY_INDEX_MAX + 1))
            .ignore()
            .expire(&key, ttl_secs)
            .ignore()
            .query_async(&mut conn)
            .await;
        if let Err(e) = written {
            tracing::debug!(error = %e, "could not index a webhook delivery");
        }
    }

    /// The publish of record: stored, published, and held by as many replicas as asked for
    /// (an error otherwise, so the caller repeats it).
    pub async fn publish(&self, p: &Publication) -> redis::RedisResult<()> {
        // The keys are worked out once: for the slot's replicas (when asked for) and the script.
        let keys = (self.replication.acks > 0).then(|| self.layout.keys(&p.workflow));
        let want = match &keys {
            None => 0,
            Some(k) => self.replicas_wanted(slot(k.latest.as_bytes())).await?,
        };
        // No replica to wait for, and stored by its early hand-over already: done.
        if want == 0 && p.store && self.early.stored(p).await {
            return Ok(());
        }
        let p = self.linked(p).await?;
        let (keys, args) = self.script_input(&p, keys.unwrap_or_else(|| self.layout.keys(&p.workflow)));
        if want == 0 {
            return self.run_script(keys, args).await;
        }
        // One pipeline, sent whole to the slot's master on one connection (and re-sent whole
        // if that connection breaks): the WAIT is always about this script's writes.
        let mut conn = self.conn.clone();
        let (_, acked): (i64, usize) = redis::pipe()
            .cmd("EVAL")
            .arg(PUBLISH_SCRIPT)
            .arg(keys.len())
            .arg(&keys)
            .arg(&args)
            .cmd("WAIT")
            .arg(want)
            .arg(REPLICA_WAIT.as_millis() as u64)
            .query_async(&mut conn)
            .await?;
        if acked < want {
            metrics::counter!(drift_core::metrics::PUBLISH_UNREPLICATED.name).increment(1);
            return Err(redis::RedisError::from((
                redis::ErrorKind::Io,
                "a state did not reach its replicas",
                format!("{acked} of {want} replicas took it within {REPLICA_WAIT:?}"),
            )));
        }
        Ok(())
    }

    /// Stores and publishes without waiting for replicas: the workflow's early hand-over, ahead
    /// of its publish of record. Registered at once, before the returned future runs, so that
    /// the publish of record (`publish`, on this process) finds it and, once it has stored the
    /// state, runs no script of its own; dropping the future unfinished leaves that to it.
    pub fn hand_over(&self, p: &Publication) -> impl Future<Output = redis::RedisResult<()>> + Send + 'static {
        let keys = self.layout.keys(&p.workflow);
        // Registered only where the publish of record could skip its script: not where it
        // waits for replicas (it runs its script and WAIT then, and would never collect it).
        let done = (p.store && !self.replication.seen_waiting(&keys.latest))
            .then(|| self.early.begin(p))
            .flatten();
        let (this, p) = (self.clone(), p.clone());
        async move {
            let stored = async {
                let p = this.linked(&p).await?;
                let (keys, args) = this.script_input(&p, keys);
                this.run_script(keys, args).await
            }
            .await;
            if let Some(done) = done {
                let _ = done.send(Some(stored.is_ok()));
            }
            stored
        }
    }

    async fn run_script(&self, keys: [String; 5], args: Vec<String>) -> redis::RedisResult<()> {
        static SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(PUBLISH_SCRIPT));
        let mut invocation = SCRIPT.prepare_invoke();
        invocation.key(&keys).arg(&args);
        let mut conn = self.conn.clone();
        invocation.invoke_async::<i64>(&mut conn).await.map(|_| ())
    }

    /// The script's KEYS and ARGV for a publication (see `PUBLISH_SCRIPT`).
    fn script_input(&self, p: &Publication, k: RedisKeys) -> ([String; 5], Vec<String>) {
        let ttl = self.retention.ttl.as_secs().max(1);
        let args = vec![
            k.channel,
            p.seq.to_string(),
            p.message.clone(),
            if p.store { "1" } else { "0" }.to_string(),
            self.retention.history_len.to_string(),
            ttl.to_string(),
            ttl.saturating_mul(SEQ_TTL_FACTOR).to_string(),
            p.request_id.clone().unwrap_or_default(),
            ANSWERS_KEPT.to_string(),
            publish_command(&self.conn).to_string(),
        ];
        ([k.latest, k.history, k.seq, k.answers, k.answer_order], args)
    }

    /// How many replicas a state in `slot` must reach: as many as asked for, at most as many
    /// healthy ones as its master has. The reading is refreshed every `REPLICAS_FRESH`, by one
    /// caller while the others use the last one.
    async fn replicas_wanted(&self, slot: u16) -> redis::RedisResult<usize> {
        let r = &self.replication;
        if r.acks == 0 {
            return Ok(0);
        }
        let cached = r.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let replicas = match cached {
            Some((at, replicas)) if at.elapsed() < REPLICAS_FRESH => replicas,
            Some((_, replicas)) if r.refreshing.swap(true, Ordering::AcqRel) => replicas,
            _ => {
                let read = Replicas::read(&self.conn).await;
                r.refreshing.store(false, Ordering::Release);
                let replicas = Arc::new(read?);
                *r.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
                    Some((Instant::now(), replicas.clone()));
                replicas
            }
        };
        Ok(r.wanted_of(&replicas, slot))
    }
}

/// Adds `entry` at the head of a workflow's timeline list `key`, keeping the newest
/// `TIMELINE_KEPT + 1` for `ttl_secs`: the timeline shows `TIMELINE_KEPT`, and the one more
/// tells it that older entries were let go.
pub(crate) fn journal(pipe: &mut redis::Pipeline, key: &str, entry: &str, ttl_secs: i64) {
    let kept = drift_core::domain::timeline::TIMELINE_KEPT as isize;
    pipe.lpush(key, entry)
        .ignore()
        .ltrim(key, 0, kept)
        .ignore()
        .expire(key, ttl_secs)
        .ignore();
}

/// Classic pub/sub on one server; sharded pub/sub on a cluster, where a classic PUBLISH would be
/// broadcast to every node.
pub(crate) fn publish_command(conn: &Conn) -> &'static str {
    match conn.is_cluster() {
        true => "SPUBLISH",
        false => "PUBLISH",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drift_core::domain::{TenantId, WorkflowId, WorkflowStatus};

    fn publication() -> Publication {
        let scoped = ScopedWorkflowId::new(&TenantId::parse("acme").unwrap(), &WorkflowId::parse("w1").unwrap());
        Publication::state(&scoped, &WorkflowState::bare("w1", WorkflowStatus::Waiting, 3))
    }

    #[test]
    fn a_traced_publication_carries_its_traceparent_to_each_delivery() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let p = publication().traced(Some(tp.into()));
        let e = crate::Event::parse(p.message.as_bytes()).expect("still an envelope");
        assert_eq!((e.trace.as_deref(), e.seq), (Some(tp), 3));
    }

    #[test]
    fn a_traceparent_that_is_not_one_is_left_out_of_the_message() {
        let plain = publication();
        for bad in [None, Some("00-x\",\"seq\":9-01".to_string())] {
            let p = publication().traced(bad);
            assert_eq!(p.message, plain.message);
        }
    }

    #[tokio::test]
    async fn the_publish_of_record_skips_its_script_only_for_a_state_its_hand_over_stored() {
        let early = EarlyHandOvers::default();
        let p = publication();
        // None registered (another worker's state, or a replay): the script runs.
        assert!(!early.stored(&p).await);
        // Stored: skipped, once (the entry is taken).
        early.begin(&p).unwrap().send(Some(true)).unwrap();
        assert!(early.stored(&p).await);
        assert!(!early.stored(&p).await);
        // Failed, or given up on unfinished (its sender dropped): the script runs.
        early.begin(&p).unwrap().send(Some(false)).unwrap();
        assert!(!early.stored(&p).await);
        drop(early.begin(&p));
        assert!(!early.stored(&p).await);
        // In flight: the publish of record waits for it.
        let tx = early.begin(&p).unwrap();
        let mut waiting = std::pin::pin!(early.stored(&p));
        assert!(
            futures::poll!(&mut waiting).is_pending(),
            "it answered before the hand-over finished"
        );
        tx.send(Some(true)).unwrap();
        assert!(waiting.await);
    }

    #[test]
    fn hand_overs_are_registered_only_where_the_last_reading_shows_no_replica_to_wait_for() {
        let replication = |acks, seen: Option<usize>| Replication {
            acks,
            seen: Mutex::new(seen.map(|n| (Instant::now(), Arc::new(Replicas::Single(n))))),
            refreshing: AtomicBool::new(false),
        };
        assert!(
            !replication(0, Some(2)).seen_waiting("drift:{wf-1}:latest"),
            "none asked for"
        );
        assert!(
            !replication(1, None).seen_waiting("drift:{wf-1}:latest"),
            "not read yet: the publish may skip"
        );
        assert!(
            !replication(1, Some(0)).seen_waiting("drift:{wf-1}:latest"),
            "a master without replicas"
        );
        assert!(replication(1, Some(1)).seen_waiting("drift:{wf-1}:latest"));
    }

    #[test]
    fn a_publish_waits_for_as_many_replicas_as_asked_for_and_no_more_than_its_master_has() {
        let replication = |acks| Replication {
            acks,
            seen: Mutex::new(None),
            refreshing: AtomicBool::new(false),
        };
        assert_eq!(
            replication(2).wanted_of(&Replicas::Single(1), 7),
            1,
            "one healthy replica"
        );
        assert_eq!(replication(1).wanted_of(&Replicas::Single(3), 7), 1, "one asked for");
        assert_eq!(replication(0).wanted_of(&Replicas::Single(3), 7), 0, "none asked for");
    }

    #[test]
    fn hand_overs_whose_publish_of_record_never_came_are_forgotten_when_the_map_is_full() {
        let early = EarlyHandOvers::default();
        let seq = |n| Publication {
            seq: n,
            ..publication()
        };
        let mut in_flight = vec![];
        for n in 0..HAND_OVERS_KEPT as u64 {
            let tx = early.begin(&seq(n)).unwrap();
            match n % 2 {
                0 => drop(tx.send(Some(true))),
                _ => in_flight.push(tx),
            }
        }
        // Full: the done half goes, the in-flight half stays.
        assert!(early.begin(&seq(u64::MAX)).is_some());
        assert_eq!(early.0.lock().unwrap().len(), HAND_OVERS_KEPT / 2 + 1);
        // Full of hand-overs in flight: a new one is not registered (its state is left to the
        // publish of record's script).
        for n in HAND_OVERS_KEPT as u64..2 * HAND_OVERS_KEPT as u64 {
            if let Some(tx) = early.begin(&seq(n)) {
                in_flight.push(tx);
            }
        }
        assert!(early.begin(&seq(u64::MAX - 1)).is_none());
        assert_eq!(early.0.lock().unwrap().len(), HAND_OVERS_KEPT);
    }
}
