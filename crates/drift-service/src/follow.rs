//! Live followers (SSE streams, WebSocket subscriptions): each subscribes first, then reads
//! what it missed from the store, then forwards live states, dropping duplicates by `seq`.

use super::{Outcome, Service, ServiceError, States};
use drift_bus::{Event, HubMsg, MessageKind, RedisKeys, StoreError, Stored, Subscription};
use drift_core::domain::JsonText;
use futures::Stream;
use std::collections::VecDeque;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// One thing to deliver to a follower.
#[derive(Debug, Clone)]
pub enum Out {
    State {
        seq: u64,
        terminal: bool,
        body: JsonText,
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
    /// The last `seq` the follower has: named by its client (`since`), then delivered here.
    last: Option<u64>,
    /// Whether `last` was delivered here (not only named by the client).
    delivered: bool,
    /// Who the states go to (`sse`, `ws`, `answer page`), named on each delivery's span.
    receiver: &'static str,
}

/// A state from the store, delivered to `receiver` (a follower that was behind): its span goes
/// under the publish that stored it, as a live delivery's does (see `Follow::accept`).
fn state_out(st: &Stored, receiver: &'static str) -> Out {
    drift_bus::trace::delivered(receiver, st.trace.as_deref(), st.seq);
    Out::State {
        seq: st.seq,
        terminal: st.state.workflow_status.is_terminal(),
        body: JsonText::of(&st.state),
    }
}

/// Whether the catch-up of a follower past some `seq` must read the latest state too: when the
/// history after it is incomplete (trimmed), or empty for a follower that was not given
/// anything here (its client may have named a `seq` beyond what exists).
fn needs_latest(items: &[Stored], complete: bool, delivered: bool) -> bool {
    match items.is_empty() {
        true => !delivered,
        false => !complete,
    }
}

/// What a follower past `after` gets from the store's history after it (`complete`: reaching
/// back to `after + 1`) and its latest state (read when `needs_latest`).
fn caught_up(
    after: u64,
    delivered: bool,
    items: Vec<Stored>,
    latest: Option<&Stored>,
    receiver: &'static str,
) -> Vec<Out> {
    let behind = match items.is_empty() {
        // A store behind what this follower was given (a Redis failover took a state before it
        // reached the replica) is catching up: its publish is repeated.
        true if delivered => None,
        // Nothing after `after`: fine, unless the client named a `seq` beyond what exists.
        true => latest.filter(|st| st.seq < after),
        false => latest,
    };
    match behind {
        Some(st) => vec![Out::Gap { after, latest: st.seq }, state_out(st, receiver)],
        None => items.iter().map(|st| state_out(st, receiver)).collect(),
    }
}

impl Follow {
    pub(super) fn new(sub: Subscription, keys: RedisKeys, since: Option<u64>) -> Self {
        Self {
            sub,
            keys,
            last: since,
            delivered: false,
            receiver: "stream",
        }
    }

    /// Names the transport the states go out on (see `receiver`).
    pub fn via(mut self, receiver: &'static str) -> Self {
        self.receiver = receiver;
        self
    }

    /// What the store has that this follower has not seen.
    async fn catch_up(&mut self, store: &dyn States) -> Result<Vec<Out>, StoreError> {
        let mut out = Vec::new();
        match self.last {
            None => out.extend(
                store
                    .latest(&self.keys)
                    .await?
                    .as_ref()
                    .map(|st| state_out(st, self.receiver)),
            ),
            Some(after) => {
                let (items, complete) = store.history_after(&self.keys, after).await?;
                let latest = match needs_latest(&items, complete, self.delivered) {
                    true => store.latest(&self.keys).await?,
                    false => None,
                };
                out = caught_up(after, self.delivered, items, latest.as_ref(), self.receiver);
            }
        }
        if let Some(seq) = out.iter().rev().find_map(|o| match o {
            Out::State { seq, .. } => Some(*seq),
            Out::Gap { .. } => None,
        }) {
            self.last = Some(seq);
            self.delivered = true;
        }
        Ok(out)
    }

    /// A live state, unless it was already delivered.
    fn accept(&mut self, e: &Event) -> Option<Out> {
        if self.last.is_some_and(|l| e.seq <= l) {
            return None;
        }
        self.last = Some(e.seq);
        self.delivered = true;
        drift_bus::trace::delivered(self.receiver, e.trace.as_deref(), e.seq);
        Some(Out::State {
            seq: e.seq,
            terminal: e.terminal,
            body: e.body.clone(),
        })
    }
}

/// What a follower's stream yields.
#[derive(Debug)]
pub enum Followed {
    Out(Out),
    /// The answer to a command (a rejection or a node result), with the request id it answers.
    Reply(String, Result<Outcome, ServiceError>),
}

/// A follower's position and what it still has to hand out. It lives inside the stream, so an
/// idle follower is this struct and a pending `recv`: no task, no queue of its own.
struct Following {
    f: Follow,
    store: Arc<dyn States>,
    shutdown: CancellationToken,
    pending: VecDeque<Out>,
    caught_up: bool,
    ended: bool,
}

impl Following {
    async fn next(&mut self) -> Option<Followed> {
        if self.ended {
            return None;
        }
        if !self.caught_up {
            self.caught_up = true;
            // Boxed: the Redis reads are large futures that an idle follower must not carry.
            match Box::pin(self.f.catch_up(&*self.store)).await {
                Ok(v) => self.pending.extend(v),
                Err(e) => {
                    tracing::warn!(error = %e, "stream catch-up failed");
                    return None;
                }
            }
        }
        loop {
            if let Some(o) = self.pending.pop_front() {
                self.ended = matches!(o, Out::State { terminal: true, .. });
                metrics::counter!(drift_core::metrics::MESSAGES_DELIVERED.name).increment(1);
                return Some(Followed::Out(o));
            }
            let msg = tokio::select! {
                _ = self.shutdown.cancelled() => return None,
                m = self.f.sub.recv() => m,
            };
            match msg {
                HubMsg::Event(e) if e.kind == MessageKind::State => self.pending.extend(self.f.accept(&e)),
                HubMsg::Event(e) => {
                    if let Some(rid) = e.request_id.as_deref() {
                        return Some(Followed::Reply(rid.to_string(), Outcome::of(&e)));
                    }
                }
                // Missed messages (Redis reconnect, or this follower lagged behind the hub's
                // buffer because its client reads slowly): read them back; states supersede.
                HubMsg::Resync | HubMsg::Notice(_) => {
                    if !self.resync().await {
                        return None;
                    }
                }
            }
        }
    }

    /// Reads back what was missed, trying again until it works: nothing newer is taken from
    /// the hub first, or what was missed would be skipped for good. (Right after a Redis
    /// failover the store's client may still send reads to the old master while the hub is
    /// already subscribed on the new one.) False at shutdown.
    async fn resync(&mut self) -> bool {
        let mut pause = RESYNC_FIRST;
        loop {
            match Box::pin(self.f.catch_up(&*self.store)).await {
                Ok(v) => {
                    self.pending = v.into();
                    return true;
                }
                Err(e) => tracing::warn!(error = %e, retry_in = ?pause, "stream resync failed; trying again"),
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => return false,
                _ = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(RESYNC_MAX);
        }
    }
}

/// Waits between a follower's attempts to read back what it missed.
const RESYNC_FIRST: std::time::Duration = std::time::Duration::from_millis(50);
const RESYNC_MAX: std::time::Duration = std::time::Duration::from_secs(2);

impl Service {
    /// A workflow's states (and answers to commands) from the follower's position: what it
    /// missed, then live, until a terminal state or `shutdown`. It is driven by its consumer, so
    /// a client that reads slowly only falls behind in the hub's buffer and is resynced from the
    /// latest state; dropping the stream releases its share of the hub channel.
    pub fn stream(&self, f: Follow, shutdown: CancellationToken) -> impl Stream<Item = Followed> + Send + 'static {
        let state = Following {
            f,
            store: self.store().clone(),
            shutdown,
            pending: VecDeque::new(),
            caught_up: false,
            ended: false,
        };
        futures::stream::unfold(state, |mut st| async move { st.next().await.map(|d| (d, st)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drift_core::domain::{WorkflowState, WorkflowStatus};

    fn stored(seq: u64) -> Stored {
        Stored {
            trace: None,
            at: None,
            seq,
            request_id: None,
            state: WorkflowState::bare("w", WorkflowStatus::Waiting, seq),
        }
    }

    fn seqs(out: &[Out]) -> Vec<String> {
        out.iter()
            .map(|o| match o {
                Out::State { seq, .. } => seq.to_string(),
                Out::Gap { after, latest } => format!("gap {after}..{latest}"),
            })
            .collect()
    }

    #[test]
    fn a_follower_catches_up_from_history_or_is_told_of_the_gap_and_given_the_latest() {
        // History reaches back: every state after `after`, no latest read.
        let items = vec![stored(3), stored(4)];
        assert!(!needs_latest(&items, true, false));
        assert_eq!(seqs(&caught_up(2, false, items, None, "test")), ["3", "4"]);

        // Trimmed: the gap, then the latest only.
        let items = vec![stored(7), stored(8)];
        assert!(needs_latest(&items, false, false));
        assert_eq!(
            seqs(&caught_up(2, false, items, Some(&stored(8)), "test")),
            ["gap 2..8", "8"]
        );

        // Nothing after a seq the client named: up to date, unless it named one beyond the
        // latest (then the gap and the latest: its client is ahead of what exists).
        assert!(needs_latest(&[], true, false));
        assert!(caught_up(5, false, vec![], Some(&stored(5)), "test").is_empty());
        assert_eq!(
            seqs(&caught_up(9, false, vec![], Some(&stored(5)), "test")),
            ["gap 9..5", "5"]
        );

        // Nothing after a seq this follower was given: the store is behind it (a failover took
        // a state before the replica had it) and is catching up; no gap, nothing older.
        assert!(!needs_latest(&[], true, true));
        assert!(caught_up(5, true, vec![], Some(&stored(4)), "test").is_empty());
    }
}
