//! The gateway's one subscription layer. A few Redis pub/sub connections (shards) carry every
//! workflow channel any local sync waiter, SSE stream or WebSocket session wants; channels are
//! reference-counted, each message is parsed once and shared as `Arc<Event>`.

use super::{Envelope, MessageKind};
use bytes::Bytes;
use futures::StreamExt;
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// Per-channel fan-out buffer. States supersede each other, so a subscriber that falls this
/// far behind is told to resync from the latest state instead of getting a backlog.
const CHANNEL_BUFFER: usize = 64;
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(3);
const BATCH: usize = 512;

/// One message from a workflow channel.
#[derive(Debug)]
pub struct Event {
    pub kind: MessageKind,
    pub seq: u64,
    pub request_id: Option<String>,
    pub terminal: bool,
    /// The body JSON (`WorkflowState`, `Rejection` or `NodeResult`), serialized once.
    pub body: Bytes,
}

impl Event {
    /// Parses a published envelope without re-serializing its body.
    pub fn parse(raw: &[u8]) -> Option<Event> {
        let env: Envelope<&RawValue> = serde_json::from_slice(raw).ok()?;
        Some(Event {
            kind: env.kind,
            seq: env.seq,
            request_id: env.request_id,
            terminal: env.terminal,
            body: Bytes::copy_from_slice(env.body.get().as_bytes()),
        })
    }
}

#[derive(Debug, Clone)]
pub enum HubMsg {
    Event(Arc<Event>),
    /// Messages may have been missed (reconnect or lag): re-read state from Redis.
    Resync,
}

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("Redis pub/sub is unavailable: {0}")]
    Unavailable(String),
}

struct Entry {
    tx: broadcast::Sender<HubMsg>,
    refs: usize,
    confirmed: bool,
}

enum Ctl {
    Sub(String, oneshot::Sender<Result<(), String>>),
    Unsub(String),
}

struct Shard {
    registry: Mutex<HashMap<String, Entry>>,
    // Unbounded because Drop cannot wait; its length is bounded by live subscriptions.
    ctl: mpsc::UnboundedSender<Ctl>,
}

#[derive(Clone)]
pub struct Hub {
    shards: Arc<Vec<Arc<Shard>>>,
}

/// A reference to one channel; dropping it releases the channel.
pub struct Subscription {
    channel: String,
    shard: Arc<Shard>,
    rx: broadcast::Receiver<HubMsg>,
}

impl Subscription {
    /// The next message; a lagging receiver gets `Resync`.
    pub async fn recv(&mut self) -> HubMsg {
        match self.rx.recv().await {
            Ok(m) => m,
            Err(broadcast::error::RecvError::Lagged(_)) => HubMsg::Resync,
            // The sender lives as long as any subscription on the channel (this one included).
            Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut reg = self.shard.registry.lock().expect("hub registry");
        if let Some(e) = reg.get_mut(&self.channel) {
            e.refs -= 1;
            if e.refs == 0 {
                reg.remove(&self.channel);
                let _ = self.shard.ctl.send(Ctl::Unsub(self.channel.clone()));
            }
        }
    }
}

impl Hub {
    /// Starts `shards` pub/sub connections (each reconnecting by itself) until `shutdown`.
    pub fn start(client: redis::Client, shards: usize, shutdown: CancellationToken) -> Hub {
        let mut list = Vec::new();
        for i in 0..shards.max(1) {
            let (tx, rx) = mpsc::unbounded_channel();
            let shard = Arc::new(Shard {
                registry: Mutex::new(HashMap::new()),
                ctl: tx,
            });
            tokio::spawn(run_shard(i, client.clone(), shard.clone(), rx, shutdown.clone()));
            list.push(shard);
        }
        Hub { shards: Arc::new(list) }
    }

    fn shard(&self, channel: &str) -> &Arc<Shard> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        channel.hash(&mut h);
        &self.shards[(h.finish() as usize) % self.shards.len()]
    }

    /// Subscribes to a channel; returns once Redis has confirmed it, so nothing published
    /// afterwards can be missed.
    pub async fn subscribe(&self, channel: &str) -> Result<Subscription, HubError> {
        let shard = self.shard(channel).clone();
        let (rx, confirmed) = {
            let mut reg = shard.registry.lock().expect("hub registry");
            let e = reg.entry(channel.to_string()).or_insert_with(|| Entry {
                tx: broadcast::channel(CHANNEL_BUFFER).0,
                refs: 0,
                confirmed: false,
            });
            e.refs += 1;
            (e.tx.subscribe(), e.confirmed)
        };
        let sub = Subscription {
            channel: channel.to_string(),
            shard: shard.clone(),
            rx,
        };
        if !confirmed {
            let (tx, done) = oneshot::channel();
            shard
                .ctl
                .send(Ctl::Sub(channel.to_string(), tx))
                .map_err(|_| HubError::Unavailable("hub stopped".into()))?;
            match tokio::time::timeout(SUBSCRIBE_TIMEOUT + Duration::from_millis(500), done).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => return Err(HubError::Unavailable(e)),
                Ok(Err(_)) => return Err(HubError::Unavailable("hub stopped".into())),
                Err(_) => return Err(HubError::Unavailable("subscribe timed out".into())),
            }
        }
        Ok(sub)
    }

    /// The channels subscribed right now, across shards.
    pub fn channels(&self) -> Vec<String> {
        self.shards
            .iter()
            .flat_map(|s| {
                s.registry
                    .lock()
                    .expect("hub registry")
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Channels subscribed right now, across shards.
    pub fn channel_count(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.registry.lock().expect("hub registry").len())
            .sum()
    }
}

fn mark(shard: &Shard, channels: &[String], confirmed: bool) {
    let mut reg = shard.registry.lock().expect("hub registry");
    for c in channels {
        if let Some(e) = reg.get_mut(c) {
            e.confirmed = confirmed;
        }
    }
}

async fn run_shard(
    idx: usize,
    client: redis::Client,
    shard: Arc<Shard>,
    mut ctl: mpsc::UnboundedReceiver<Ctl>,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let conn = tokio::select! {
            _ = shutdown.cancelled() => return,
            c = tokio::time::timeout(SUBSCRIBE_TIMEOUT, client.get_async_pubsub()) => c,
        };
        let pubsub = match conn {
            Ok(Ok(p)) => p,
            failure => {
                let why = match failure {
                    Ok(Err(e)) => e.to_string(),
                    _ => "connect timed out".to_string(),
                };
                tracing::warn!(shard = idx, error = %why, "redis pub/sub connect failed; retrying");
                // Fail waiting subscribers now rather than leave them hanging.
                let deadline = tokio::time::sleep(backoff);
                tokio::pin!(deadline);
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = &mut deadline => break,
                        c = ctl.recv() => match c {
                            Some(Ctl::Sub(_, reply)) => { let _ = reply.send(Err(why.clone())); }
                            Some(Ctl::Unsub(_)) => {}
                            None => return,
                        }
                    }
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        backoff = Duration::from_millis(50);
        let (mut sink, mut stream) = pubsub.split();

        // Resubscribe what local subscribers still want, then tell them to catch up.
        let wanted: Vec<String> = shard.registry.lock().expect("hub registry").keys().cloned().collect();
        if !wanted.is_empty() {
            match tokio::time::timeout(SUBSCRIBE_TIMEOUT, sink.subscribe(&wanted)).await {
                Ok(Ok(())) => {
                    mark(&shard, &wanted, true);
                    let reg = shard.registry.lock().expect("hub registry");
                    for e in reg.values() {
                        let _ = e.tx.send(HubMsg::Resync);
                    }
                    tracing::info!(
                        shard = idx,
                        channels = wanted.len(),
                        "redis pub/sub reconnected and resubscribed"
                    );
                }
                _ => continue,
            }
        }

        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                msg = stream.next() => {
                    let Some(msg) = msg else { break };
                    let channel = msg.get_channel_name();
                    // A message that is not a state envelope (a notice such as "definitions
                    // changed") still says something happened: subscribers re-read the source.
                    let out = match Event::parse(msg.get_payload_bytes()) {
                        Some(ev) => HubMsg::Event(Arc::new(ev)),
                        None => HubMsg::Resync,
                    };
                    let reg = shard.registry.lock().expect("hub registry");
                    if let Some(e) = reg.get(channel) {
                        let _ = e.tx.send(out);
                    }
                }
                c = ctl.recv() => {
                    let Some(first) = c else { return };
                    let mut batch = vec![first];
                    while batch.len() < BATCH {
                        match ctl.try_recv() {
                            Ok(c) => batch.push(c),
                            Err(_) => break,
                        }
                    }
                    if !apply(&shard, &mut sink, batch).await {
                        break;
                    }
                }
            }
        }
        let lost: Vec<String> = shard.registry.lock().expect("hub registry").keys().cloned().collect();
        mark(&shard, &lost, false);
        tracing::warn!(shard = idx, "redis pub/sub connection lost; reconnecting");
    }
}

/// Applies a batch of (un)subscribe requests in order, one round trip each way. Returns false
/// when the connection failed.
async fn apply(shard: &Shard, sink: &mut redis::aio::PubSubSink, batch: Vec<Ctl>) -> bool {
    let mut subs = Vec::new();
    let mut replies = Vec::new();
    let mut unsubs = Vec::new();
    for c in batch {
        match c {
            Ctl::Sub(ch, reply) => {
                subs.push(ch);
                replies.push(reply);
            }
            Ctl::Unsub(ch) => unsubs.push(ch),
        }
    }
    // A channel released and wanted again before we got here stays subscribed.
    {
        let reg = shard.registry.lock().expect("hub registry");
        unsubs.retain(|c| !reg.contains_key(c));
        subs.retain(|c| reg.contains_key(c));
    }
    let mut ok = true;
    if !unsubs.is_empty() {
        ok &= matches!(
            tokio::time::timeout(SUBSCRIBE_TIMEOUT, sink.unsubscribe(&unsubs)).await,
            Ok(Ok(()))
        );
    }
    if !replies.is_empty() {
        subs.sort();
        subs.dedup();
        let res = if subs.is_empty() {
            Ok(())
        } else {
            match tokio::time::timeout(SUBSCRIBE_TIMEOUT, sink.subscribe(&subs)).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("subscribe timed out".to_string()),
            }
        };
        if res.is_ok() {
            mark(shard, &subs, true);
        } else {
            ok = false;
        }
        for r in replies {
            let _ = r.send(res.clone());
        }
    }
    ok
}
