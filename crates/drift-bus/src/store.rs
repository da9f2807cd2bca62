//! Reads of published states (latest, and the short history log) and the gateway's own
//! publishes, over one multiplexed connection shared by all requests.

use super::{Conn, Envelope, Layout, Notice, Publication, Publisher, RedisKeys, RedisTarget, Retention};
use drift_core::domain::timeline::{PublishedState, RequestNote};
use drift_core::domain::{AttemptRecord, ScopedWorkflowId, TenantId, WorkflowId, WorkflowState};
use redis::AsyncCommands;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("Redis is unavailable: {0}")]
    Unavailable(#[from] redis::RedisError),
    #[error("corrupt state in Redis: {0}")]
    Corrupt(String),
}

#[derive(Clone)]
pub struct Store {
    conn: Conn,
    publisher: Publisher,
}

/// A stored state message.
#[derive(Debug, Clone)]
pub struct Stored {
    pub seq: u64,
    pub request_id: Option<String>,
    /// The `traceparent` of the publish that stored it: a follower catching up on it
    /// delivers it under that publish, as a live follower does.
    pub trace: Option<String>,
    /// When Redis stored it (Unix ms, see `Envelope::at`).
    pub at: Option<i64>,
    pub state: WorkflowState,
}

impl Stored {
    /// The state as a run's timeline shows it.
    pub fn published(&self) -> PublishedState {
        PublishedState {
            seq: self.seq,
            at: self.at.and_then(chrono::DateTime::from_timestamp_millis),
            status: self.state.workflow_status,
            node: self.state.node.clone(),
            path: self.state.path.clone(),
            request_id: self.request_id.clone(),
        }
    }
}

fn parse(raw: &str) -> Result<Stored, StoreError> {
    let env: Envelope<WorkflowState> = serde_json::from_str(raw).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(Stored {
        seq: env.seq,
        request_id: env.request_id,
        trace: env.trace,
        at: env.at,
        state: env.body,
    })
}

impl Store {
    /// Connects, and refuses a Redis of the other kind than `target` says (see `Conn`).
    /// `replica_acks`: see `Publisher::new`.
    pub async fn connect(
        target: &RedisTarget,
        retention: Retention,
        layout: Layout,
        replica_acks: usize,
    ) -> anyhow::Result<Self> {
        let mut conn = Conn::connect(target, Duration::from_secs(2), 1)
            .await
            .map_err(|e| anyhow::anyhow!("{}", super::explain(target, &e)))?;
        conn.check_kind().await.map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(Self {
            publisher: Publisher::new(conn.clone(), retention, layout, replica_acks),
            conn,
        })
    }

    /// Where each workflow's data lives.
    pub fn layout(&self) -> &Layout {
        self.publisher.layout()
    }

    /// Records a socket ticket's use: true the first time (on any gateway), false after.
    /// Remembered for as long as the ticket is valid.
    pub async fn take_ticket(&self, ticket: &str, valid_for: Duration) -> Result<bool, StoreError> {
        let mut c = self.conn.clone();
        let set: Option<String> = redis::cmd("SET")
            .arg(self.layout().used_ticket(ticket))
            .arg(1)
            .arg("NX")
            .arg("EX")
            .arg(valid_for.as_secs().max(1))
            .query_async(&mut c)
            .await?;
        Ok(set.is_some())
    }

    /// What is recorded of a workflow's answer links for screen `seq`: their generation (raised
    /// by each revocation; 0: never revoked) and the answer given through a link, if any (its
    /// JSON).
    pub async fn link_marks(&self, keys: &RedisKeys, seq: u64) -> Result<(u64, Option<String>), StoreError> {
        let mut c = self.conn.clone();
        let (generation, answered): (Option<u64>, Option<String>) = redis::cmd("HMGET")
            .arg(&keys.links)
            .arg(super::LINK_GENERATION)
            .arg(answered_field(seq))
            .query_async(&mut c)
            .await?;
        Ok((generation.unwrap_or(0), answered))
    }

    /// Closes every answer link of a workflow made so far: its link generation goes up.
    pub async fn revoke_links(&self, keys: &RedisKeys, keep: Duration) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        let _: () = redis::pipe()
            .hincr(&keys.links, super::LINK_GENERATION, 1)
            .ignore()
            .expire(&keys.links, keep.as_secs().max(1) as i64)
            .ignore()
            .query_async(&mut c)
            .await?;
        Ok(())
    }

    /// Records the answer given to screen `seq` through a link (its JSON), kept for `keep`.
    pub async fn record_link_answer(
        &self,
        keys: &RedisKeys,
        seq: u64,
        record: &str,
        keep: Duration,
    ) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        let _: () = redis::pipe()
            .hset(&keys.links, answered_field(seq), record)
            .ignore()
            .expire(&keys.links, keep.as_secs().max(1) as i64)
            .ignore()
            .query_async(&mut c)
            .await?;
        Ok(())
    }

    /// The secret answer links are signed with: `fresh` the first time any gateway asks, the
    /// same one after, on every gateway.
    pub async fn link_secret(&self, fresh: &str) -> Result<String, StoreError> {
        let mut c = self.conn.clone();
        let key = self.layout().link_secret();
        let _: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(fresh)
            .arg("NX")
            .query_async(&mut c)
            .await?;
        let secret: Option<String> = c.get(&key).await?;
        secret.ok_or_else(|| StoreError::Corrupt("the answer-link secret vanished".into()))
    }

    /// The newest published state, if any.
    pub async fn latest(&self, keys: &RedisKeys) -> Result<Option<Stored>, StoreError> {
        let mut c = self.conn.clone();
        let raw: Option<String> = c.hget(&keys.latest, "msg").await?;
        raw.as_deref().map(parse).transpose()
    }

    /// A command's reads in one round trip: the published answer to `request_id`, if any
    /// (`answer`), and the latest state (`latest`).
    pub async fn answer_and_latest(
        &self,
        keys: &RedisKeys,
        request_id: &str,
    ) -> Result<(Option<super::Event>, Option<Stored>), StoreError> {
        let mut c = self.conn.clone();
        let (answer, latest): (Option<Vec<u8>>, Option<String>) = redis::pipe()
            .hget(&keys.answers, request_id)
            .hget(&keys.latest, "msg")
            .query_async(&mut c)
            .await?;
        let answer = answer
            .map(|r| super::Event::parse(&r).ok_or_else(|| StoreError::Corrupt("an unreadable answer".into())))
            .transpose()?;
        Ok((answer, latest.as_deref().map(parse).transpose()?))
    }

    /// The highest `seq` ever published for the workflow id (0: none), across runs.
    pub async fn high_seq(&self, keys: &RedisKeys) -> Result<u64, StoreError> {
        let mut c = self.conn.clone();
        let (mark, latest): (Option<u64>, Option<u64>) = redis::pipe()
            .get(&keys.seq)
            .hget(&keys.latest, "seq")
            .query_async(&mut c)
            .await?;
        Ok(mark.unwrap_or_default().max(latest.unwrap_or_default()))
    }

    /// States with `seq > after`, oldest first, and whether the log still reaches back that far.
    pub async fn history_after(&self, keys: &RedisKeys, after: u64) -> Result<(Vec<Stored>, bool), StoreError> {
        let mut c = self.conn.clone();
        let raw: Vec<(String, f64)> = c
            .zrangebyscore_withscores(&keys.history, format!("({after}"), "+inf")
            .await?;
        let items = raw.iter().map(|(m, _)| parse(m)).collect::<Result<Vec<_>, _>>()?;
        let complete = match items.first() {
            None => true,
            Some(first) => first.seq == after + 1,
        };
        Ok((items, complete))
    }

    /// What a workflow's timeline is built from, in one round trip: its kept states, the
    /// requests noted for it and its webhook attempts (both newest first). An entry that does
    /// not read back is left out, not fatal: the timeline is for looking, not for deciding.
    pub async fn timeline(
        &self,
        keys: &RedisKeys,
    ) -> Result<(Vec<PublishedState>, Vec<RequestNote>, Vec<AttemptRecord>), StoreError> {
        let mut c = self.conn.clone();
        let (states, requests, attempts): (Vec<String>, Vec<String>, Vec<String>) = redis::pipe()
            .zrange(&keys.history, 0, -1)
            .lrange(&keys.requests, 0, -1)
            .lrange(&keys.attempts, 0, -1)
            .query_async(&mut c)
            .await?;
        let states = states
            .iter()
            .filter_map(|raw| parse(raw).ok())
            .map(|st| st.published())
            .collect();
        let requests = requests
            .iter()
            .filter_map(|raw| serde_json::from_str(raw).ok())
            .collect();
        let attempts = attempts
            .iter()
            .filter_map(|raw| serde_json::from_str(raw).ok())
            .collect();
        Ok((states, requests, attempts))
    }

    /// Records a request passed on to a workflow (see `Publisher::note_request`).
    pub async fn note_request(&self, workflow: &ScopedWorkflowId, note: &RequestNote) {
        self.publisher.note_request(workflow, note).await
    }

    /// Records a resend in the workflow's timeline (see `Publisher::record_resend`).
    pub async fn record_resend(&self, workflow: &ScopedWorkflowId, rec: &AttemptRecord) {
        self.publisher.record_resend(workflow, rec).await
    }

    /// A tenant's deliveries first attempted in `[from_ms, to_ms]`, oldest first, at most
    /// `limit`, each with the time of its first attempt (Unix ms).
    pub async fn deliveries_between(
        &self,
        tenant: &TenantId,
        from_ms: i64,
        to_ms: i64,
        limit: usize,
    ) -> Result<Vec<(WorkflowId, u64, i64)>, StoreError> {
        let mut c = self.conn.clone();
        let raw: Vec<(String, f64)> = c
            .zrangebyscore_limit_withscores(
                self.publisher.layout().tenant_deliveries(tenant),
                from_ms,
                to_ms,
                0,
                limit as isize,
            )
            .await?;
        Ok(raw
            .into_iter()
            .filter_map(|(m, at)| {
                let (id, seq) = crate::parse_delivery_member(&m)?;
                Some((id, seq, at as i64))
            })
            .collect())
    }

    /// Publishes on a workflow's behalf (the TERMINATED state after a terminate).
    pub async fn publish(&self, p: &Publication) -> Result<(), StoreError> {
        Ok(self.publisher.publish(p).await?)
    }

    /// The last recorded webhook attempt of a workflow, if any.
    pub async fn last_attempt(&self, keys: &RedisKeys) -> Result<Option<AttemptRecord>, StoreError> {
        let mut c = self.conn.clone();
        let m: BTreeMap<String, String> = c.hgetall(&keys.deliveries).await?;
        if m.is_empty() {
            return Ok(None);
        }
        AttemptRecord::from_fields(m)
            .map(Some)
            .map_err(|e| StoreError::Corrupt(format!("an unreadable webhook attempt record: {e}")))
    }

    /// Publishes a notice (not a workflow state) on a channel.
    pub async fn notify(&self, channel: &str, notice: Notice) -> Result<(), StoreError> {
        publish_notice(self.conn.clone(), channel, notice).await
    }

    /// Publishes one notice from a process that is not a gateway (e.g. `drift keys revoke`).
    pub async fn announce(target: &RedisTarget, channel: &str, notice: Notice) -> Result<(), StoreError> {
        publish_notice(Conn::connect(target, Duration::from_secs(3), 1).await?, channel, notice).await
    }

    /// Reachable, and of the kind configured (a cluster node given as one server is not ready).
    pub async fn probe(&self) -> Result<(), String> {
        let mut c = self.conn.clone();
        c.check_kind().await
    }
}

async fn publish_notice(mut c: Conn, channel: &str, notice: Notice) -> Result<(), StoreError> {
    let _: i64 = redis::cmd(super::publish::publish_command(&c))
        .arg(channel)
        .arg(serde_json::to_string(&notice).expect("notices serialize"))
        .query_async(&mut c)
        .await?;
    Ok(())
}

/// The field of a workflow's links hash that records who answered screen `seq` through a link.
fn answered_field(seq: u64) -> String {
    format!("answered:{seq}")
}
