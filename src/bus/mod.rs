//! Redis: the shared subscription hub (gateway side) and the store of latest states and short
//! histories that publishing writes.

pub mod hub;

use crate::model::{Envelope, MessageKind, RedisKeys, WorkflowState};
use crate::temporal::activities::{PublishInput, Retention, publish};
use redis::AsyncCommands;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("Redis is unavailable: {0}")]
    Unavailable(#[from] redis::RedisError),
    #[error("corrupt state in Redis: {0}")]
    Corrupt(String),
}

/// Reads of published state over one multiplexed connection shared by all requests.
#[derive(Clone)]
pub struct Store {
    conn: redis::aio::ConnectionManager,
    pub retention: Retention,
}

/// A stored state message: parsed fields plus the body bytes to answer with.
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
    pub async fn connect(url: &str, retention: Retention) -> Result<Self, StoreError> {
        let client = redis::Client::open(url)?;
        let conn = redis::aio::ConnectionManager::new_with_config(
            client,
            redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(Some(Duration::from_secs(2)))
                .set_response_timeout(Some(Duration::from_secs(2)))
                .set_number_of_retries(1),
        )
        .await?;
        Ok(Self { conn, retention })
    }

    /// The newest published state, if any.
    pub async fn latest(&self, keys: &RedisKeys) -> Result<Option<Stored>, StoreError> {
        let mut c = self.conn.clone();
        let raw: Option<String> = c.hget(&keys.latest, "msg").await?;
        raw.as_deref().map(parse).transpose()
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

    /// Publishes a state on the workflow's behalf (the TERMINATED state after a terminate).
    pub async fn publish_state(&self, keys: &RedisKeys, state: &WorkflowState) -> Result<(), StoreError> {
        let env = Envelope {
            kind: MessageKind::State,
            seq: state.seq,
            request_id: state.request_id.clone(),
            terminal: state.workflow_status.is_terminal(),
            body: state,
        };
        let input = PublishInput {
            keys: keys.clone(),
            seq: state.seq,
            message: serde_json::to_string(&env).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            store: true,
        };
        let mut c = self.conn.clone();
        publish(&mut c, &self.retention, &input).await?;
        Ok(())
    }

    /// The last recorded webhook attempt of a workflow, if any.
    pub async fn delivery_status(
        &self,
        keys: &RedisKeys,
    ) -> Result<Option<std::collections::BTreeMap<String, String>>, StoreError> {
        let mut c = self.conn.clone();
        let m: std::collections::BTreeMap<String, String> = c.hgetall(keys.deliveries()).await?;
        Ok((!m.is_empty()).then_some(m))
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        let _: String = redis::cmd("PING").query_async(&mut c).await?;
        Ok(())
    }

    /// `CLIENT LIST` lines, for tests and operators checking connection counts.
    pub async fn client_list(&self) -> Result<String, StoreError> {
        let mut c = self.conn.clone();
        Ok(redis::cmd("CLIENT").arg("LIST").query_async(&mut c).await?)
    }
}
