//! Reads of published states (latest, and the short history log) and the gateway's own
//! publishes, over one multiplexed connection shared by all requests.

use super::{Conn, Envelope, Layout, Notice, Publication, Publisher, RedisKeys, RedisTarget, Retention};
use crate::domain::{AttemptRecord, WorkflowState};
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
    pub state: WorkflowState,
}

fn parse(raw: &str) -> Result<Stored, StoreError> {
    let env: Envelope<WorkflowState> = serde_json::from_str(raw).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(Stored {
        seq: env.seq,
        request_id: env.request_id,
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

    /// The newest published state, if any.
    pub async fn latest(&self, keys: &RedisKeys) -> Result<Option<Stored>, StoreError> {
        let mut c = self.conn.clone();
        let raw: Option<String> = c.hget(&keys.latest, "msg").await?;
        raw.as_deref().map(parse).transpose()
    }

    /// The published answer to request `request_id`, if there is one.
    pub async fn answer(&self, keys: &RedisKeys, request_id: &str) -> Result<Option<super::Event>, StoreError> {
        let mut c = self.conn.clone();
        let raw: Option<Vec<u8>> = c.hget(&keys.answers, request_id).await?;
        raw.map(|r| super::Event::parse(&r).ok_or_else(|| StoreError::Corrupt("an unreadable answer".into())))
            .transpose()
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
        let mut c = self.conn.clone();
        let _: i64 = redis::cmd(super::publish::publish_command(&self.conn))
            .arg(channel)
            .arg(serde_json::to_string(&notice).expect("notices serialize"))
            .query_async(&mut c)
            .await?;
        Ok(())
    }

    /// Reachable, and of the kind configured (a cluster node given as one server is not ready).
    pub async fn probe(&self) -> Result<(), String> {
        let mut c = self.conn.clone();
        c.check_kind().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ScopedWorkflowId, WorkflowStatus};

    /// The publish script against a real redis-server: what readers see after out-of-order,
    /// repeated and answering publishes, and after the history is trimmed.
    #[tokio::test]
    async fn the_publish_script_keeps_the_newest_state_a_bounded_history_and_each_answer_once() {
        let port = crate::dev::free_port().unwrap();
        let dir = std::env::temp_dir().join(format!("drift-store-test-{port}-{}", std::process::id()));
        let redis = crate::dev::start_redis(&dir, port).unwrap();
        let url = format!("redis://127.0.0.1:{port}");
        crate::dev::wait_redis(&url, Duration::from_secs(20)).await.unwrap();
        let retention = Retention {
            history_len: 3,
            ttl: Duration::from_secs(60),
        };
        let store = Store::connect(&RedisTarget::Standalone(url), retention, Layout::new("t").unwrap(), 0)
            .await
            .unwrap();
        let wf = ScopedWorkflowId::try_from("t/w".to_string()).unwrap();
        let keys = store.layout().keys(&wf);
        let state = |seq, rid: Option<&str>| WorkflowState {
            request_id: rid.map(str::to_string),
            ..WorkflowState::bare("w", WorkflowStatus::Waiting, seq)
        };
        let publish = |st: WorkflowState| {
            let (store, wf) = (store.clone(), wf.clone());
            async move { store.publish(&Publication::state(&wf, &st)).await.unwrap() }
        };

        publish(state(1, None)).await;
        publish(state(3, Some("r3"))).await;
        // Older and repeated publishes (a retried or replayed activity) change nothing.
        publish(state(2, None)).await;
        publish(state(3, Some("r3"))).await;
        assert_eq!(store.latest(&keys).await.unwrap().unwrap().seq, 3);
        assert_eq!(store.high_seq(&keys).await.unwrap(), 3);
        let (after_1, complete) = store.history_after(&keys, 1).await.unwrap();
        assert_eq!(
            (after_1.iter().map(|s| s.seq).collect::<Vec<_>>(), complete),
            (vec![3], false)
        );
        // The answer to r3 is kept by its request id.
        assert_eq!(store.answer(&keys, "r3").await.unwrap().unwrap().seq, 3);
        assert!(store.answer(&keys, "r-unknown").await.unwrap().is_none());

        // The history keeps the last three; a follower from before them is told it is incomplete.
        for seq in 4..=7 {
            publish(state(seq, None)).await;
        }
        let (items, complete) = store.history_after(&keys, 1).await.unwrap();
        assert_eq!(
            (items.iter().map(|s| s.seq).collect::<Vec<_>>(), complete),
            (vec![5, 6, 7], false)
        );
        let (items, complete) = store.history_after(&keys, 4).await.unwrap();
        assert_eq!((items.len(), complete), (3, true));
        let (items, complete) = store.history_after(&keys, 7).await.unwrap();
        assert_eq!((items.len(), complete), (0, true));
        redis.stop().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
