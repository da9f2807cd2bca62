//! Live followers (SSE streams, WebSocket subscriptions): each subscribes first, then reads
//! what it missed from the store, then forwards live states, dropping duplicates by `seq`.

use super::{Outcome, Service, ServiceError};
use crate::bus::{Event, HubMsg, MessageKind, RedisKeys, Store, StoreError, Stored, Subscription};
use bytes::Bytes;
use tokio_util::sync::CancellationToken;

/// One thing to deliver to a follower.
#[derive(Debug, Clone)]
pub enum Out {
    State {
        seq: u64,
        terminal: bool,
        body: Bytes,
    },
    /// The history log no longer reaches back to `after`; the latest state follows.
    Gap {
        after: u64,
        latest: u64,
    },
}

/// A subscription and the delivery position of its follower.
pub struct Follow {
    sub: Subscription,
    keys: RedisKeys,
    last: Option<u64>,
}

fn state_out(st: &Stored) -> Out {
    Out::State {
        seq: st.seq,
        terminal: st.state.workflow_status.is_terminal(),
        body: Bytes::from(serde_json::to_vec(&st.state).expect("state serializes")),
    }
}

impl Follow {
    pub(super) fn new(sub: Subscription, keys: RedisKeys, since: Option<u64>) -> Self {
        Self { sub, keys, last: since }
    }

    /// What the store has that this follower has not seen.
    async fn catch_up(&mut self, store: &Store) -> Result<Vec<Out>, StoreError> {
        let mut out = Vec::new();
        match self.last {
            None => out.extend(store.latest(&self.keys).await?.as_ref().map(state_out)),
            Some(after) => {
                let (items, complete) = store.history_after(&self.keys, after).await?;
                let behind = match items.is_empty() {
                    // Nothing after `after`: fine, unless `after` is beyond what exists.
                    true => store.latest(&self.keys).await?.filter(|st| st.seq < after),
                    false if complete => None,
                    false => store.latest(&self.keys).await?,
                };
                match behind {
                    Some(st) => {
                        out.push(Out::Gap { after, latest: st.seq });
                        out.push(state_out(&st));
                    }
                    None => out.extend(items.iter().map(state_out)),
                }
            }
        }
        if let Some(seq) = out.iter().rev().find_map(|o| match o {
            Out::State { seq, .. } => Some(*seq),
            Out::Gap { .. } => None,
        }) {
            self.last = Some(seq);
        }
        Ok(out)
    }

    /// A live state, unless it was already delivered.
    fn accept(&mut self, e: &Event) -> Option<Out> {
        if self.last.is_some_and(|l| e.seq <= l) {
            return None;
        }
        self.last = Some(e.seq);
        Some(Out::State {
            seq: e.seq,
            terminal: e.terminal,
            body: e.body.clone(),
        })
    }
}

impl Service {
    /// Forwards one workflow's states to `deliver` until a terminal state, `shutdown`, the
    /// client being `gone`, or a delivery that fails (too slow). `reply` sees the answers to
    /// commands (rejections and node results), with the request id they answer.
    pub async fn forward<F, Fut>(
        &self,
        mut f: Follow,
        shutdown: CancellationToken,
        gone: impl std::future::Future<Output = ()>,
        deliver: F,
        mut reply: impl FnMut(&str, Result<Outcome, ServiceError>) -> futures::future::BoxFuture<'static, ()>,
    ) where
        F: Fn(Out) -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let store = self.store();
        tokio::pin!(gone);
        let mut pending = match f.catch_up(store).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "stream catch-up failed");
                return;
            }
        };
        loop {
            for o in pending.drain(..) {
                let terminal = matches!(o, Out::State { terminal: true, .. });
                if !deliver(o).await {
                    metrics::counter!("drift_stream_closed_slow_total").increment(1);
                    return;
                }
                metrics::counter!("drift_messages_delivered_total").increment(1);
                if terminal {
                    return;
                }
            }
            let msg = tokio::select! {
                _ = shutdown.cancelled() => return,
                // A client that went away is noticed now, not at the next state (which may be
                // days away): its task and its share of the hub channel are released.
                _ = &mut gone => {
                    metrics::counter!("drift_streams_gone_total").increment(1);
                    return;
                }
                m = f.sub.recv() => m,
            };
            match msg {
                HubMsg::Event(e) if e.kind == MessageKind::State => pending.extend(f.accept(&e)),
                HubMsg::Event(e) => {
                    if let Some(rid) = e.request_id.as_deref() {
                        reply(rid, Outcome::of(&e)).await;
                    }
                }
                // Missed messages (Redis reconnect, or this follower lagged): read them back.
                HubMsg::Resync => match f.catch_up(store).await {
                    Ok(v) => pending = v,
                    Err(e) => tracing::warn!(error = %e, "stream resync failed; will retry on the next message"),
                },
            }
        }
    }
}
