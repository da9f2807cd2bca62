//! One pub/sub connection to one Redis node, used for nothing else. It (un)subscribes what the
//! hub's manager asks, hands each message straight to the channel's local subscribers, and
//! reports what it cannot keep: a channel the server dropped by itself (a slot moved away, a
//! failover made the node a replica), a subscription the server refused (MOVED), or the
//! connection itself.
//!
//! It speaks RESP2 over its own socket rather than through redis-rs's pub/sub: that has no
//! sharded subscriptions, and its multiplexed connection takes an unsolicited `SUNSUBSCRIBE` for
//! the reply to whatever command is pending. Here every confirmation is matched to the pending
//! command by its channel name, and anything else is the server's own doing.

use super::registry::Registry;
use super::topology::Node;
use super::{Event, HubMsg};
use crate::Notice;
use futures::StreamExt;
use redis::{ConnectionInfo, Value};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// An idle connection is checked this often; one that leaves a PING unanswered this long is
/// given up (a node that vanished without closing the socket).
const PING_EVERY: Duration = Duration::from_secs(5);
/// Commands written in one go.
const BATCH: usize = 512;

/// Classic pub/sub on one server; sharded pub/sub on a cluster (a classic message is broadcast
/// to every node of a cluster, a sharded one stays on its slot's node).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Classic,
    Sharded,
}

impl Flavor {
    fn subscribe(self) -> &'static str {
        match self {
            Self::Classic => "SUBSCRIBE",
            Self::Sharded => "SSUBSCRIBE",
        }
    }

    fn unsubscribe(self) -> &'static str {
        match self {
            Self::Classic => "UNSUBSCRIBE",
            Self::Sharded => "SUNSUBSCRIBE",
        }
    }
}

/// What the manager asks of a link.
#[derive(Debug)]
pub enum LinkCmd {
    Sub(Vec<String>),
    Unsub(Vec<String>),
}

/// What a link tells the manager.
#[derive(Debug)]
pub enum Report {
    /// The server confirmed these subscriptions.
    Confirmed { link: u64, channels: Vec<String> },
    /// The server refused to subscribe these; `moved` when another node serves them now.
    Refused {
        link: u64,
        channels: Vec<String>,
        error: String,
        moved: bool,
    },
    /// The server dropped this subscription by itself.
    Evicted { link: u64, channel: String },
    /// The connection is gone (or never came up: `was_up` false).
    Down { link: u64, error: String, was_up: bool },
}

/// Who a link is.
pub struct Spec {
    pub id: u64,
    pub node: Node,
    /// The node's connection settings (credentials).
    pub info: ConnectionInfo,
    pub flavor: Flavor,
}

/// A command whose replies are still due.
#[derive(Debug)]
enum Pending {
    /// One confirmation per channel still due.
    Sub(Vec<String>),
    Unsub(Vec<String>),
    Ping(tokio::time::Instant),
}

type Reader = FramedRead<tokio::net::tcp::OwnedReadHalf, redis::ValueCodec>;

/// Runs one link until its connection fails, the manager drops it, or `shutdown`.
pub async fn run(
    spec: Spec,
    registry: Arc<Registry>,
    mut cmds: mpsc::UnboundedReceiver<LinkCmd>,
    reports: mpsc::UnboundedSender<Report>,
    shutdown: CancellationToken,
) {
    let link = spec.id;
    let (mut reader, mut writer) = match tokio::time::timeout(CONNECT_TIMEOUT, connect(&spec)).await {
        Ok(Ok(rw)) => rw,
        failed => {
            let error = match failed {
                Ok(Err(e)) => e,
                _ => "connect timed out".to_string(),
            };
            let _ = reports.send(Report::Down {
                link,
                error: format!("{}: {error}", spec.node),
                was_up: false,
            });
            return;
        }
    };
    let mut state = Link {
        id: link,
        flavor: spec.flavor,
        registry,
        reports: reports.clone(),
        pending: VecDeque::new(),
    };
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
    let error = loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            cmd = cmds.recv() => {
                let Some(first) = cmd else { return };
                let mut batch = vec![first];
                while batch.len() < BATCH {
                    match cmds.try_recv() {
                        Ok(c) => batch.push(c),
                        Err(_) => break,
                    }
                }
                let bytes = state.encode(batch);
                if let Err(e) = writer.write_all(&bytes).await {
                    break e.to_string();
                }
            }
            frame = reader.next() => match frame {
                Some(Ok(v)) => {
                    if let Err(e) = state.handle(v) {
                        break e;
                    }
                }
                Some(Err(e)) => break e.to_string(),
                None => break "the server closed the connection".to_string(),
            },
            _ = ping.tick() => {
                if state.ping_overdue() {
                    break format!("no answer to PING within {PING_EVERY:?}");
                }
                state.pending.push_back(Pending::Ping(tokio::time::Instant::now()));
                if let Err(e) = writer.write_all(&redis::cmd("PING").get_packed_command()).await {
                    break e.to_string();
                }
            }
        }
    };
    let _ = reports.send(Report::Down {
        link,
        error: format!("{}: {error}", spec.node),
        was_up: true,
    });
}

/// Connects and authenticates (RESP2: in subscribed mode every reply is a plain array).
async fn connect(spec: &Spec) -> Result<(Reader, tokio::net::tcp::OwnedWriteHalf), String> {
    let stream = TcpStream::connect((spec.node.host.as_str(), spec.node.port))
        .await
        .map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    let (r, mut w) = stream.into_split();
    let mut reader = FramedRead::new(r, redis::ValueCodec::default());
    let settings = spec.info.redis_settings();
    if let Some(password) = settings.password() {
        let mut auth = redis::cmd("AUTH");
        if let Some(user) = settings.username() {
            auth.arg(user);
        }
        auth.arg(password);
        w.write_all(&auth.get_packed_command())
            .await
            .map_err(|e| e.to_string())?;
        match reader.next().await {
            Some(Ok(Value::Okay)) => {}
            Some(Ok(Value::ServerError(e))) => return Err(format!("AUTH refused: {}", e.code())),
            Some(Ok(other)) => return Err(format!("AUTH answered {other:?}")),
            Some(Err(e)) => return Err(e.to_string()),
            None => return Err("the server closed the connection during AUTH".into()),
        }
    }
    Ok((reader, w))
}

struct Link {
    id: u64,
    flavor: Flavor,
    registry: Arc<Registry>,
    reports: mpsc::UnboundedSender<Report>,
    pending: VecDeque<Pending>,
}

impl Link {
    /// The commands for a batch, in order; a sharded (un)subscribe names channels of one slot
    /// only (else CROSSSLOT), so those are split by slot.
    fn encode(&mut self, batch: Vec<LinkCmd>) -> Vec<u8> {
        let mut bytes = Vec::new();
        for cmd in batch {
            let (name, channels, sub) = match cmd {
                LinkCmd::Sub(c) => (self.flavor.subscribe(), c, true),
                LinkCmd::Unsub(c) => (self.flavor.unsubscribe(), c, false),
            };
            for group in self.groups(channels) {
                bytes.extend(redis::cmd(name).arg(&group).get_packed_command());
                self.pending.push_back(if sub {
                    Pending::Sub(group)
                } else {
                    Pending::Unsub(group)
                });
            }
        }
        bytes
    }

    fn groups(&self, mut channels: Vec<String>) -> Vec<Vec<String>> {
        channels.sort();
        channels.dedup();
        match self.flavor {
            Flavor::Classic => vec![channels],
            Flavor::Sharded => {
                let mut by_slot = std::collections::BTreeMap::<u16, Vec<String>>::new();
                for c in channels {
                    by_slot.entry(super::slot(c.as_bytes())).or_default().push(c);
                }
                by_slot.into_values().collect()
            }
        }
        .into_iter()
        .filter(|g| !g.is_empty())
        .collect()
    }

    fn ping_overdue(&self) -> bool {
        self.pending
            .iter()
            .any(|p| matches!(p, Pending::Ping(at) if at.elapsed() >= PING_EVERY))
    }

    /// One frame from the server.
    fn handle(&mut self, v: Value) -> Result<(), String> {
        let items = match v {
            Value::Array(items) | Value::Push { data: items, .. } => items,
            Value::SimpleString(s) if s.eq_ignore_ascii_case("PONG") => return self.pong(),
            Value::ServerError(e) => return self.refused(e),
            other => return Err(format!("unexpected frame {other:?}")),
        };
        let text = |i: usize| match items.get(i) {
            Some(Value::BulkString(b)) => std::str::from_utf8(b).ok(),
            _ => None,
        };
        let kind = text(0).unwrap_or_default().to_ascii_lowercase();
        match kind.as_str() {
            "message" | "smessage" => {
                let (Some(channel), Some(Value::BulkString(payload))) = (text(1), items.get(2)) else {
                    return Err("a message frame without channel or payload".into());
                };
                self.registry.dispatch(channel, message(payload));
                Ok(())
            }
            "subscribe" | "ssubscribe" => {
                let channel = text(1).ok_or("a subscribe confirmation without a channel")?;
                if !self.take_due(channel, true) {
                    return Err(format!(
                        "a confirmation for {channel:?} while {:?} was due",
                        self.pending.front()
                    ));
                }
                let _ = self.reports.send(Report::Confirmed {
                    link: self.id,
                    channels: vec![channel.to_string()],
                });
                Ok(())
            }
            "unsubscribe" | "sunsubscribe" => {
                let channel = text(1).ok_or("an unsubscribe without a channel")?;
                // Not asked for: the server dropped the subscription by itself.
                if !self.take_due(channel, false) {
                    let _ = self.reports.send(Report::Evicted {
                        link: self.id,
                        channel: channel.to_string(),
                    });
                }
                Ok(())
            }
            "pong" => self.pong(),
            _ => Ok(()),
        }
    }

    /// Takes `channel` off the confirmations the next pending (un)subscribe still awaits; false
    /// when that command is not one of the kind or does not name it.
    fn take_due(&mut self, channel: &str, subscribe: bool) -> bool {
        let due = match (self.pending.front_mut(), subscribe) {
            (Some(Pending::Sub(due)), true) | (Some(Pending::Unsub(due)), false) => due,
            _ => return false,
        };
        let Some(i) = due.iter().position(|c| c == channel) else {
            return false;
        };
        due.swap_remove(i);
        if due.is_empty() {
            self.pending.pop_front();
        }
        true
    }

    fn pong(&mut self) -> Result<(), String> {
        match self.pending.pop_front() {
            Some(Pending::Ping(_)) => Ok(()),
            other => Err(format!("a PONG while {other:?} was due")),
        }
    }

    fn refused(&mut self, e: redis::ServerError) -> Result<(), String> {
        use redis::ServerErrorKind as K;
        let error = format!("{} {}", e.code(), e.details().unwrap_or_default());
        match self.pending.pop_front() {
            Some(Pending::Sub(channels)) => {
                let moved = matches!(
                    e.kind(),
                    Some(K::Moved | K::Ask | K::TryAgain | K::ClusterDown | K::MasterDown)
                );
                let _ = self.reports.send(Report::Refused {
                    link: self.id,
                    channels,
                    error,
                    moved,
                });
                Ok(())
            }
            // An unsubscribe refused (its slot moved away) leaves nothing subscribed here.
            Some(Pending::Unsub(_)) => Ok(()),
            other => Err(format!("{error} while {other:?} was due")),
        }
    }
}

/// A channel message as subscribers get it: an envelope parsed once, or a notice. Anything
/// else (a newer release's message) may have carried what a subscriber waits for, so it is
/// told to re-read its source.
fn message(payload: &[u8]) -> HubMsg {
    if let Some(ev) = Event::parse(payload) {
        return HubMsg::Event(Arc::new(ev));
    }
    match serde_json::from_slice::<Notice>(payload) {
        Ok(n) => HubMsg::Notice(n),
        // Not a warning: bare payloads are published on purpose (the benchmark's floor, an
        // older gateway's "changed").
        Err(_) => {
            tracing::debug!(
                len = payload.len(),
                "a channel message that is neither an envelope nor a notice; subscribers re-read their source"
            );
            HubMsg::Resync
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(parts: &[&str]) -> Value {
        Value::Array(parts.iter().map(|p| Value::BulkString(p.as_bytes().to_vec())).collect())
    }

    fn link(pending: Vec<Pending>) -> (Link, mpsc::UnboundedReceiver<Report>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let l = Link {
            id: 7,
            flavor: Flavor::Sharded,
            registry: Arc::new(Registry::default()),
            reports: tx,
            pending: pending.into(),
        };
        (l, rx)
    }

    #[test]
    fn a_channel_message_is_an_envelope_a_notice_or_a_reason_to_re_read() {
        let env = br#"{"kind":"state","seq":4,"terminal":true,"body":{"seq":4}}"#;
        let HubMsg::Event(e) = message(env) else {
            panic!("an envelope")
        };
        assert_eq!((e.seq, e.terminal, e.body.as_str()), (4, true, r#"{"seq":4}"#));
        let notice = serde_json::to_vec(&Notice::DefinitionsChanged).unwrap();
        assert_eq!(notice, br#"{"notice":"definitionsChanged"}"#);
        assert!(matches!(message(&notice), HubMsg::Notice(Notice::DefinitionsChanged)));
        assert!(
            matches!(message(b"changed"), HubMsg::Resync),
            "an earlier release's notice"
        );
    }

    fn names(c: &[&str]) -> Vec<String> {
        c.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn confirmations_are_matched_by_name_and_anything_unasked_is_the_servers_doing() {
        let (mut l, mut reports) = link(vec![Pending::Sub(names(&["a", "b"])), Pending::Unsub(names(&["c"]))]);
        let (mut rx, _) = l.registry.join("a");
        // Out of order within one command is fine.
        l.handle(frame(&["ssubscribe", "b", "1"])).unwrap();
        l.handle(frame(&["smessage", "a", "not an envelope"])).unwrap();
        l.handle(frame(&["ssubscribe", "a", "2"])).unwrap();
        assert!(
            matches!(rx.try_recv(), Ok(HubMsg::Resync)),
            "a message that is no state says: re-read"
        );
        // The server drops `a` by itself (its slot moved) while `c`'s unsubscribe is pending.
        l.handle(frame(&["sunsubscribe", "a", "1"])).unwrap();
        l.handle(frame(&["sunsubscribe", "c", "0"])).unwrap();
        assert!(l.pending.is_empty());
        let got: Vec<String> = std::iter::from_fn(|| reports.try_recv().ok())
            .map(|r| match r {
                Report::Confirmed { link: 7, channels } => format!("confirmed {}", channels.join(",")),
                Report::Evicted { link: 7, channel } => format!("evicted {channel}"),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(got, ["confirmed b", "confirmed a", "evicted a"]);
    }

    #[test]
    fn a_refused_subscription_says_whether_another_node_serves_it_and_a_stray_reply_breaks_the_link() {
        let (mut l, mut reports) = link(vec![Pending::Sub(names(&["a"])), Pending::Sub(names(&["b"]))]);
        let moved = redis::parse_redis_value(b"-MOVED 3999 127.0.0.1:7001\r\n").unwrap();
        l.handle(moved).unwrap();
        let denied = redis::parse_redis_value(b"-NOPERM no access\r\n").unwrap();
        l.handle(denied).unwrap();
        let refused: Vec<(Vec<String>, bool)> = std::iter::from_fn(|| reports.try_recv().ok())
            .map(|r| match r {
                Report::Refused { channels, moved, .. } => (channels, moved),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(refused, [(names(&["a"]), true), (names(&["b"]), false)]);
        // A confirmation nobody asked for means the replies no longer line up: start over.
        assert!(l.handle(frame(&["ssubscribe", "z", "1"])).is_err());
        assert!(l.handle(Value::SimpleString("PONG".into())).is_err());
    }

    #[test]
    fn a_sharded_batch_is_split_by_slot_and_a_classic_one_is_not() {
        let (mut l, _) = link(vec![]);
        let channels = names(&["x:{t/1}:ch", "y:{t/1}:ch", "x:{t/2}:ch"]);
        let bytes = l.encode(vec![LinkCmd::Sub(channels.clone())]);
        assert_eq!(l.pending.len(), 2, "{:?}", l.pending);
        assert_eq!(bytes.windows(10).filter(|w| w == b"SSUBSCRIBE").count(), 2);
        l.flavor = Flavor::Classic;
        l.pending.clear();
        l.encode(vec![LinkCmd::Sub(channels), LinkCmd::Unsub(names(&["q"]))]);
        assert_eq!(l.pending.len(), 2);
    }
}
