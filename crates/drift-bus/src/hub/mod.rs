//! The gateway's one subscription layer. A few pub/sub connections (links) carry every workflow
//! channel any local sync waiter, SSE stream or WebSocket session wants; channels are
//! reference-counted, each message is parsed once and shared as `Arc<Event>`.
//!
//! On one server the links are `--hub-shards` connections to it (classic pub/sub). On a Redis
//! Cluster they are that many connections to each master, each channel subscribed (sharded
//! pub/sub) on the master that owns its slot. One manager task decides where every channel goes
//! and moves it when that changes: a subscription the server dropped by itself (a slot moved, a
//! failover), a refused one (MOVED), a lost connection (a killed node, `CLIENT KILL`), or a
//! periodic look at the slot map. A channel that had to be subscribed again gets `Resync`, so
//! its subscribers read back from the store whatever passed while it was away.

mod link;
mod placement;
mod registry;
mod topology;

use super::{Envelope, MessageKind, Notice, RedisTarget};
use drift_core::domain::JsonText;
use link::{Flavor, LinkCmd, Report};
use registry::Registry;
use serde_json::value::RawValue;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
pub(super) use topology::Replicas as ClusterReplicas;
pub use topology::slot;
use topology::{Node, Topology};

const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(3);
/// How often the hub reads a cluster's slot map even when nothing went wrong.
const TOPOLOGY_EVERY: Duration = Duration::from_secs(5);
const TOPOLOGY_TIMEOUT: Duration = Duration::from_secs(1);
/// Waits between attempts to subscribe channels whose node could not be reached.
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(1);
/// How long a channel stays subscribed after its last local subscriber left. A caller driving
/// a workflow sends its next call soon after the last answer (a system at once, a person in
/// seconds); within this it finds the channel subscribed, and Redis sees no UNSUBSCRIBE and
/// SUBSCRIBE in between.
pub(super) const LINGER: Duration = Duration::from_secs(2);

/// One message from a workflow channel.
#[derive(Debug)]
pub struct Event {
    pub kind: MessageKind,
    pub seq: u64,
    pub request_id: Option<String>,
    pub terminal: bool,
    /// The `traceparent` of the publish that sent it (see `Envelope::trace`).
    pub trace: Option<String>,
    /// The body JSON (`WorkflowState`, `Rejection` or `NodeResult`), serialized once.
    pub body: JsonText,
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
            trace: env.trace,
            body: JsonText::from_raw(env.body),
        })
    }
}

#[derive(Debug, Clone)]
pub enum HubMsg {
    Event(Arc<Event>),
    /// Messages may have been missed (a resubscription, lag, or a message this gateway cannot
    /// read): re-read state from Redis.
    Resync,
    /// The channel's source changed (not a workflow channel's message).
    Notice(Notice),
}

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("Redis pub/sub is unavailable: {0}")]
    Unavailable(String),
}

/// What the hub's handles ask of the manager. Unbounded because `Drop` cannot wait; its length
/// is bounded by live subscriptions.
enum Ctl {
    Want(String, oneshot::Sender<Result<(), String>>),
    Release(String),
}

#[derive(Clone)]
pub struct Hub {
    registry: Arc<Registry>,
    ctl: mpsc::UnboundedSender<Ctl>,
}

/// A reference to one channel; dropping it releases the channel.
pub struct Subscription {
    channel: String,
    /// None for a subscription on an in-memory bus, which holds nothing of a hub's.
    hub: Option<Hub>,
    rx: broadcast::Receiver<HubMsg>,
}

impl Subscription {
    /// A subscription on a bus that is not Redis (an in-memory one, for tests): it hears what
    /// is sent on `rx`, and dropping it releases nothing of a hub's.
    pub fn detached(rx: broadcast::Receiver<HubMsg>) -> Self {
        Self {
            channel: String::new(),
            hub: None,
            rx,
        }
    }

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
        if let Some(hub) = &self.hub
            && hub.registry.leave(&self.channel)
        {
            let _ = hub.ctl.send(Ctl::Release(std::mem::take(&mut self.channel)));
        }
    }
}

impl Hub {
    /// Starts the hub's manager for `target`, with `lanes` pub/sub connections per Redis node,
    /// until `shutdown`. Connections are made as channels need them.
    pub fn start(target: &RedisTarget, lanes: usize, shutdown: CancellationToken) -> anyhow::Result<Hub> {
        let seeds = target.seeds()?;
        let mut nodes = Vec::new();
        for s in &seeds {
            let (host, port) = super::conn::host_port(s)
                .ok_or_else(|| anyhow::anyhow!("the subscription hub needs Redis at a TCP address (host:port)"))?;
            nodes.push(Node { host, port });
        }
        let (flavor, topology) = match target {
            RedisTarget::Standalone(_) => (Flavor::Classic, Some(Topology::single(nodes[0].clone()))),
            RedisTarget::Cluster(_) => (Flavor::Sharded, None),
        };
        let registry = Arc::new(Registry::default());
        let (ctl, ctl_rx) = mpsc::unbounded_channel();
        let (reports, reports_rx) = mpsc::unbounded_channel();
        let (topo_tx, topo_rx) = mpsc::channel(1);
        let manager = Manager {
            registry: registry.clone(),
            flavor,
            lanes: lanes.max(1),
            like: seeds[0].clone(),
            seeds: nodes,
            topology,
            links: HashMap::new(),
            by_node: HashMap::new(),
            next_id: 0,
            placed: HashMap::new(),
            homeless: HashSet::new(),
            lost: HashSet::new(),
            waiters: HashMap::new(),
            retry_at: None,
            lingering: VecDeque::new(),
            backoff: RETRY_FIRST,
            refreshing: false,
            reports,
            topo_tx,
            shutdown: shutdown.clone(),
        };
        tokio::spawn(manager.run(ctl_rx, reports_rx, topo_rx));
        Ok(Hub { registry, ctl })
    }

    /// Subscribes to a channel; returns once Redis has confirmed it, so nothing published
    /// afterwards can be missed.
    pub async fn subscribe(&self, channel: &str) -> Result<Subscription, HubError> {
        let (rx, live) = self.registry.join(channel);
        let sub = Subscription {
            channel: channel.to_string(),
            hub: Some(self.clone()),
            rx,
        };
        if !live {
            let (tx, done) = oneshot::channel();
            self.ctl
                .send(Ctl::Want(channel.to_string(), tx))
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

    /// The channels subscribed right now.
    pub fn channels(&self) -> Vec<String> {
        self.registry.channels()
    }

    /// Channels subscribed right now.
    pub fn channel_count(&self) -> usize {
        self.registry.len()
    }
}

/// One link as the manager sees it.
struct LinkState {
    node: Node,
    lane: usize,
    tx: mpsc::UnboundedSender<LinkCmd>,
    /// Channels placed on it (asked for, confirmed or not).
    channels: HashSet<String>,
}

/// Where a channel is subscribed.
#[derive(Clone, Copy)]
struct Placement {
    link: u64,
    /// The server confirmed it (and has not dropped it since).
    confirmed: bool,
}

/// Decides which link carries each wanted channel, and moves channels when that changes.
struct Manager {
    registry: Arc<Registry>,
    flavor: Flavor,
    lanes: usize,
    /// Connection settings (credentials) every node is reached with.
    like: redis::ConnectionInfo,
    /// The configured nodes, asked for the slot map when no known master answers.
    seeds: Vec<Node>,
    /// None until a cluster's slot map was read.
    topology: Option<Topology>,
    links: HashMap<u64, LinkState>,
    by_node: HashMap<(Node, usize), u64>,
    next_id: u64,
    /// Wanted channels and the link each is placed on.
    placed: HashMap<String, Placement>,
    /// Wanted channels with no link yet: placed at the next attempt.
    homeless: HashSet<String>,
    /// Channels whose subscription was lost after it was live: `Resync` once live again.
    lost: HashSet<String>,
    waiters: HashMap<String, Vec<oneshot::Sender<Result<(), String>>>>,
    retry_at: Option<Instant>,
    /// Channels whose last subscriber left, with when they may be forgotten, oldest first.
    lingering: VecDeque<(Instant, String)>,
    backoff: Duration,
    refreshing: bool,
    reports: mpsc::UnboundedSender<Report>,
    topo_tx: mpsc::Sender<Result<Topology, String>>,
    shutdown: CancellationToken,
}

impl Manager {
    async fn run(
        mut self,
        mut ctl: mpsc::UnboundedReceiver<Ctl>,
        mut reports: mpsc::UnboundedReceiver<Report>,
        mut topo: mpsc::Receiver<Result<Topology, String>>,
    ) {
        let mut tick = tokio::time::interval(TOPOLOGY_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        match self.flavor {
            Flavor::Sharded => self.refresh(),
            Flavor::Classic => self.ensure_links(),
        }
        loop {
            let retry = self.retry_at;
            let forget_at = self.lingering.front().map(|(at, _)| *at);
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                c = ctl.recv() => match c {
                    Some(Ctl::Want(channel, reply)) => self.want(channel, reply),
                    Some(Ctl::Release(channel)) => self.lingering.push_back((Instant::now() + LINGER, channel)),
                    None => return,
                },
                Some(r) = reports.recv() => self.report(r),
                Some(t) = topo.recv() => self.topology_read(t),
                _ = tick.tick(), if self.flavor == Flavor::Sharded => self.refresh(),
                _ = async { tokio::time::sleep_until(forget_at.expect("guarded")).await }, if forget_at.is_some() => {
                    self.forget_lingering();
                }
                _ = async { tokio::time::sleep_until(retry.expect("guarded")).await }, if retry.is_some() => {
                    self.retry_at = None;
                    self.backoff = (self.backoff * 2).min(RETRY_MAX);
                    match self.flavor {
                        Flavor::Sharded => self.refresh(),
                        Flavor::Classic => {
                            self.ensure_links();
                            self.place_homeless();
                        }
                    }
                }
            }
        }
    }

    fn want(&mut self, channel: String, reply: oneshot::Sender<Result<(), String>>) {
        if !self.registry.wanted(&channel) {
            let _ = reply.send(Err("released".into()));
            return;
        }
        // Still subscribed for earlier subscribers (a new one may have come just as the last
        // one left).
        if self.registry.is_live(&channel) || self.placed.get(&channel).is_some_and(|p| p.confirmed) {
            self.registry.set_live(&channel, true);
            let _ = reply.send(Ok(()));
            return;
        }
        self.waiters.entry(channel.clone()).or_default().push(reply);
        if !self.placed.contains_key(&channel) && !self.homeless.contains(&channel) {
            self.place(vec![channel]);
        }
    }

    /// Unsubscribes the channels that lingered their time with no subscriber joining.
    fn forget_lingering(&mut self) {
        let now = Instant::now();
        while let Some((at, _)) = self.lingering.front()
            && *at <= now
        {
            let (_, channel) = self.lingering.pop_front().expect("a front");
            if self.registry.forget_idle(&channel, LINGER) {
                self.release(&channel);
            }
        }
    }

    fn release(&mut self, channel: &str) {
        // Wanted again already (a new subscriber came between): keep it.
        if self.registry.wanted(channel) {
            return;
        }
        self.waiters.remove(channel);
        self.lost.remove(channel);
        self.homeless.remove(channel);
        if let Some(id) = self.unplace(channel) {
            let _ = self.links[&id].tx.send(LinkCmd::Unsub(vec![channel.to_string()]));
        }
    }

    /// Places channels on the links of the nodes serving them (made as needed). Channels whose
    /// slot no node claims yet wait for the next attempt.
    fn place(&mut self, channels: Vec<String>) {
        let mut batches: HashMap<u64, Vec<String>> = HashMap::new();
        for c in channels {
            if !self.registry.wanted(&c) || self.placed.contains_key(&c) {
                continue;
            }
            let Some((node, lane)) = placement::home(self.topology.as_ref(), &c, self.lanes) else {
                self.homeless.insert(c);
                self.schedule_retry();
                continue;
            };
            let id = self.link_for(node, lane);
            self.links
                .get_mut(&id)
                .expect("link just found")
                .channels
                .insert(c.clone());
            self.placed.insert(
                c.clone(),
                Placement {
                    link: id,
                    confirmed: false,
                },
            );
            batches.entry(id).or_default().push(c);
        }
        for (id, chs) in batches {
            let _ = self.links[&id].tx.send(LinkCmd::Sub(chs));
        }
    }

    /// Every master gets its `lanes` links up front (and again after one is lost), so the
    /// number of Redis connections stays the same however channels come and go.
    fn ensure_links(&mut self) {
        for node in self.topology.as_ref().map(Topology::masters).unwrap_or_default() {
            for lane in 0..self.lanes {
                self.link_for(node.clone(), lane);
            }
        }
    }

    fn place_homeless(&mut self) {
        let homeless: Vec<String> = self.homeless.drain().collect();
        self.place(homeless);
    }

    fn unplace(&mut self, channel: &str) -> Option<u64> {
        let id = self.placed.remove(channel)?.link;
        if let Some(l) = self.links.get_mut(&id) {
            l.channels.remove(channel);
        }
        Some(id)
    }

    /// Whether `channel` is placed on `link` (reports from a link it left are stale).
    fn on(&self, channel: &str, link: u64) -> bool {
        self.placed.get(channel).is_some_and(|p| p.link == link)
    }

    /// The link to `node` for `lane`, started if there is none.
    fn link_for(&mut self, node: Node, lane: usize) -> u64 {
        if let Some(id) = self.by_node.get(&(node.clone(), lane)) {
            return *id;
        }
        self.next_id += 1;
        let id = self.next_id;
        let (tx, rx) = mpsc::unbounded_channel();
        let spec = link::Spec {
            id,
            info: topology::connection_info(&node, &self.like).unwrap_or_else(|_| self.like.clone()),
            node: node.clone(),
            flavor: self.flavor,
        };
        tokio::spawn(link::run(
            spec,
            self.registry.clone(),
            rx,
            self.reports.clone(),
            self.shutdown.clone(),
        ));
        self.by_node.insert((node.clone(), lane), id);
        self.links.insert(
            id,
            LinkState {
                node,
                lane,
                tx,
                channels: HashSet::new(),
            },
        );
        id
    }

    fn drop_link(&mut self, id: u64) -> Option<LinkState> {
        let l = self.links.remove(&id)?;
        if self.by_node.get(&(l.node.clone(), l.lane)) == Some(&id) {
            self.by_node.remove(&(l.node.clone(), l.lane));
        }
        Some(l)
    }

    /// A channel that stopped being subscribed where it was: not live, to be placed again, and
    /// resynced once it is.
    fn lose(&mut self, channel: String) {
        if self.registry.set_live(&channel, false) == Some(true) {
            self.lost.insert(channel.clone());
        }
        if self.registry.wanted(&channel) {
            self.homeless.insert(channel);
        }
    }

    fn report(&mut self, r: Report) {
        match r {
            Report::Confirmed { link, channels } => {
                self.backoff = RETRY_FIRST;
                for c in channels {
                    let Some(p) = self.placed.get_mut(&c).filter(|p| p.link == link) else {
                        continue;
                    };
                    p.confirmed = true;
                    self.registry.set_live(&c, true);
                    if self.lost.remove(&c) {
                        metrics::counter!(drift_core::metrics::HUB_RESUBSCRIBED.name).increment(1);
                        self.registry.dispatch(&c, HubMsg::Resync);
                    }
                    for w in self.waiters.remove(&c).into_iter().flatten() {
                        let _ = w.send(Ok(()));
                    }
                }
            }
            Report::Refused {
                link,
                channels,
                error,
                moved,
            } => {
                tracing::info!(%error, channels = channels.len(), "redis refused a subscription; placing it again");
                for c in channels {
                    if !self.on(&c, link) {
                        continue;
                    }
                    self.unplace(&c);
                    if !moved {
                        for w in self.waiters.remove(&c).into_iter().flatten() {
                            let _ = w.send(Err(error.clone()));
                        }
                    }
                    self.lose(c);
                }
                metrics::counter!(drift_core::metrics::HUB_SUBSCRIPTIONS_MOVED.name, "why" => "refused").increment(1);
                self.schedule_retry();
            }
            Report::Evicted { link, channel } => {
                if !self.on(&channel, link) {
                    return;
                }
                tracing::info!(%channel, "redis dropped a subscription (slot moved or failover); subscribing again");
                metrics::counter!(drift_core::metrics::HUB_SUBSCRIPTIONS_MOVED.name, "why" => "evicted").increment(1);
                self.unplace(&channel);
                self.lose(channel);
                self.schedule_retry();
            }
            Report::Down { link, error, was_up } => {
                let Some(state) = self.drop_link(link) else { return };
                if was_up {
                    tracing::warn!(%error, channels = state.channels.len(), "redis pub/sub connection lost; subscribing again");
                    metrics::counter!(drift_core::metrics::HUB_SUBSCRIPTIONS_MOVED.name, "why" => "connection lost")
                        .increment(state.channels.len() as u64);
                } else {
                    tracing::warn!(%error, "redis pub/sub connect failed; retrying");
                }
                for c in state.channels {
                    self.placed.remove(&c);
                    // Subscribers that never had the channel learn now that Redis is away.
                    if !was_up {
                        for w in self.waiters.remove(&c).into_iter().flatten() {
                            let _ = w.send(Err(error.clone()));
                        }
                    }
                    self.lose(c);
                }
                self.schedule_retry();
            }
        }
    }

    /// Schedules the next attempt to place homeless channels (reading the slot map first on a
    /// cluster). Attempts that keep failing come further apart, up to `RETRY_MAX`; a
    /// confirmation starts over.
    fn schedule_retry(&mut self) {
        if self.retry_at.is_none() {
            self.retry_at = Some(Instant::now() + self.backoff);
        }
    }

    /// Reads a cluster's slot map in the background (one read at a time).
    fn refresh(&mut self) {
        if self.refreshing {
            return;
        }
        self.refreshing = true;
        let mut candidates = self.topology.as_ref().map(Topology::masters).unwrap_or_default();
        candidates.extend(
            self.seeds
                .iter()
                .filter(|s| !candidates.contains(s))
                .cloned()
                .collect::<Vec<_>>(),
        );
        let (like, tx) = (self.like.clone(), self.topo_tx.clone());
        tokio::spawn(async move {
            let _ = tx
                .send(topology::fetch(&candidates, &like, TOPOLOGY_TIMEOUT).await)
                .await;
        });
    }

    /// A new slot map: channels whose slot another master serves now move there; homeless
    /// channels are placed.
    fn topology_read(&mut self, t: Result<Topology, String>) {
        self.refreshing = false;
        let t = match t {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the Redis Cluster's slot map; retrying");
                if !self.homeless.is_empty() {
                    self.schedule_retry();
                }
                return;
            }
        };
        if self.topology.as_ref() != Some(&t) {
            tracing::info!(masters = ?t.masters().iter().map(|n| n.to_string()).collect::<Vec<_>>(), "redis cluster slot map");
        }
        let moved: Vec<(String, u64)> = placement::moved(
            &t,
            self.placed.iter().map(|(c, p)| (c.as_str(), &self.links[&p.link].node)),
        )
        .into_iter()
        .map(|c| {
            let link = self.placed[&c].link;
            (c, link)
        })
        .collect();
        self.topology = Some(t);
        if !moved.is_empty() {
            tracing::info!(
                channels = moved.len(),
                "slots moved to other masters; moving their subscriptions"
            );
            metrics::counter!(drift_core::metrics::HUB_SUBSCRIPTIONS_MOVED.name, "why" => "slot map")
                .increment(moved.len() as u64);
        }
        for (c, id) in moved {
            self.unplace(&c);
            let _ = self.links[&id].tx.send(LinkCmd::Unsub(vec![c.clone()]));
            self.lose(c);
        }
        // Links to nodes that serve nothing now and carry nothing are closed.
        let masters = self.topology.as_ref().map(Topology::masters).unwrap_or_default();
        let idle: Vec<u64> = self
            .links
            .iter()
            .filter(|(_, l)| placement::idle(l.channels.len(), &l.node, &masters))
            .map(|(id, _)| *id)
            .collect();
        for id in idle {
            self.drop_link(id);
        }
        self.ensure_links();
        self.place_homeless();
    }
}
