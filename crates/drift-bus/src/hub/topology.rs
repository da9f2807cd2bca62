//! Which Redis node serves a channel. One server serves them all; on a cluster, the master that
//! owns the channel's hash slot, as `CLUSTER SLOTS` says. The hub asks again whenever a node
//! drops a subscription or a connection, and every few seconds besides.

use redis::{ConnectionInfo, IntoConnectionInfo, Value};
use std::time::Duration;

/// Hash slots of a Redis Cluster.
const SLOTS: u16 = 16384;

/// The hash slot of a key or shard channel: CRC16 of its hash tag (the part between the first
/// `{` and the next `}`, when not empty), else of the whole name.
pub fn slot(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = &key[open + 1..];
        let close = rest.iter().position(|&b| b == b'}')?;
        (close > 0).then(|| &rest[..close])
    });
    crc16::State::<crc16::XMODEM>::calculate(tagged.unwrap_or(key)) % SLOTS
}

/// A Redis node's address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Node {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// Slots `first..=last`, served by `master`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Range {
    first: u16,
    last: u16,
    master: Node,
}

/// Who serves which slots.
#[derive(Debug, Clone, PartialEq)]
pub struct Topology {
    /// Sorted and non-overlapping.
    ranges: Vec<Range>,
}

impl Topology {
    /// One server for everything.
    pub fn single(node: Node) -> Self {
        Self {
            ranges: vec![Range {
                first: 0,
                last: SLOTS - 1,
                master: node,
            }],
        }
    }

    /// A slot map from `(first, last, master)` ranges (sorted, not overlapping).
    #[cfg(test)]
    pub fn of_ranges(ranges: Vec<(u16, u16, Node)>) -> Self {
        Self {
            ranges: ranges
                .into_iter()
                .map(|(first, last, master)| Range { first, last, master })
                .collect(),
        }
    }

    fn range(&self, slot: u16) -> Option<&Range> {
        let i = self.ranges.partition_point(|r| r.last < slot);
        self.ranges.get(i).filter(|r| r.first <= slot)
    }

    /// The master serving `slot`; None while no node claims it.
    pub fn node_for(&self, slot: u16) -> Option<&Node> {
        self.range(slot).map(|r| &r.master)
    }

    /// Every master, once each.
    pub fn masters(&self) -> Vec<Node> {
        let mut out: Vec<Node> = self.ranges.iter().map(|r| r.master.clone()).collect();
        out.sort();
        out.dedup();
        out
    }

    /// Reads a `CLUSTER SLOTS` answer given by `asked` (which an empty host means).
    fn parse(v: &Value, asked: &Node) -> Result<Self, String> {
        let Value::Array(entries) = v else {
            return Err(format!("CLUSTER SLOTS answered {v:?}"));
        };
        let mut ranges = Vec::new();
        for e in entries {
            let Value::Array(parts) = e else {
                return Err(format!("a CLUSTER SLOTS entry is {e:?}"));
            };
            let (Some(Value::Int(first)), Some(Value::Int(last)), Some(Value::Array(master))) =
                (parts.first(), parts.get(1), parts.get(2))
            else {
                return Err(format!("a CLUSTER SLOTS entry is {e:?}"));
            };
            let host = match master.first() {
                Some(Value::BulkString(h)) => String::from_utf8_lossy(h).into_owned(),
                _ => return Err(format!("a CLUSTER SLOTS master is {master:?}")),
            };
            let Some(Value::Int(port)) = master.get(1) else {
                return Err(format!("a CLUSTER SLOTS master is {master:?}"));
            };
            let host = match host.as_str() {
                // "The node that answered" (it does not know its own address).
                "" | "?" => asked.host.clone(),
                _ => host,
            };
            ranges.push(Range {
                first: *first as u16,
                last: *last as u16,
                master: Node {
                    host,
                    port: *port as u16,
                },
            });
        }
        if ranges.is_empty() {
            return Err("the cluster serves no slots yet".into());
        }
        ranges.sort();
        Ok(Self { ranges })
    }
}

/// How many replicas each master has, by slot, from `CLUSTER NODES`. (`CLUSTER SLOTS` leaves
/// out replicas whose replication offset it knows as 0, as on an idle cluster.) Replicas marked
/// failed or suspected (`fail`, `fail?`) do not count.
#[derive(Debug, Clone, PartialEq)]
pub struct Replicas {
    /// Sorted `(first, last, replicas)` slot ranges.
    ranges: Vec<(u16, u16, usize)>,
}

impl Replicas {
    pub fn parse(cluster_nodes: &str) -> Self {
        let lines: Vec<Vec<&str>> = cluster_nodes.lines().map(|l| l.split_whitespace().collect()).collect();
        let healthy_replicas_of = |id: &str| {
            lines
                .iter()
                .filter(|f| f.len() > 3 && f[3] == id)
                .filter(|f| f[2].split(',').any(|flag| flag == "slave") && !f[2].contains("fail"))
                .count()
        };
        let mut ranges = Vec::new();
        for f in lines
            .iter()
            .filter(|f| f.len() > 8 && f[2].split(',').any(|flag| flag == "master"))
        {
            let replicas = healthy_replicas_of(f[0]);
            // Slots: `5461`, `0-5460`; `[…->-…]`/`[…-<-…]` mark slots being moved (not owned yet).
            for slots in f[8..].iter().filter(|s| !s.starts_with('[')) {
                let (first, last) = slots.split_once('-').unwrap_or((slots, slots));
                if let (Ok(first), Ok(last)) = (first.parse(), last.parse()) {
                    ranges.push((first, last, replicas));
                }
            }
        }
        ranges.sort();
        Self { ranges }
    }

    pub fn of_slot(&self, slot: u16) -> usize {
        let i = self.ranges.partition_point(|(_, last, _)| *last < slot);
        self.ranges
            .get(i)
            .filter(|(first, _, _)| *first <= slot)
            .map_or(0, |(_, _, n)| *n)
    }
}

/// A node's connection settings: its address, with the credentials of the configured seeds.
pub fn connection_info(node: &Node, like: &ConnectionInfo) -> redis::RedisResult<ConnectionInfo> {
    Ok((node.host.as_str(), node.port)
        .into_connection_info()?
        .set_redis_settings(like.redis_settings().clone()))
}

/// Asks the nodes in turn (the known masters first, then the seeds) for the slot map; the
/// first answer wins.
pub async fn fetch(candidates: &[Node], like: &ConnectionInfo, timeout: Duration) -> Result<Topology, String> {
    let mut last = String::from("no Redis Cluster node to ask");
    for node in candidates {
        let asked = async {
            let client = redis::Client::open(connection_info(node, like)?)?;
            let cfg = redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout));
            let mut c = client.get_multiplexed_async_connection_with_config(&cfg).await?;
            redis::cmd("CLUSTER").arg("SLOTS").query_async::<Value>(&mut c).await
        };
        match tokio::time::timeout(timeout * 2, asked).await {
            Ok(Ok(v)) => match Topology::parse(&v, node) {
                Ok(t) => return Ok(t),
                Err(e) => last = format!("{node}: {e}"),
            },
            Ok(Err(e)) => last = format!("{node}: {e}"),
            Err(_) => last = format!("{node}: no answer in time"),
        }
    }
    Err(last)
}

/// A node on loopback, for the hub's unit tests.
#[cfg(test)]
pub(super) fn node(port: u16) -> Node {
    Node {
        host: "127.0.0.1".into(),
        port,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_the_hash_tag_as_redis_computes_them() {
        // Values from `CLUSTER KEYSLOT`.
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"{user1000}.following"), slot(b"{user1000}.followers"));
        assert_eq!(slot(b"{user1000}.following"), slot(b"user1000"));
        // An empty tag hashes the whole name; only the first tag counts.
        assert_eq!(
            slot(b"foo{}{bar}"),
            crc16::State::<crc16::XMODEM>::calculate(b"foo{}{bar}") % SLOTS
        );
        assert_eq!(slot(b"foo{{bar}}zap"), slot(b"{bar"));
    }

    #[test]
    fn cluster_nodes_answers_count_each_masters_healthy_replicas_by_slot() {
        // As Redis 7 prints it (ids shortened), with a replica of m2 suspected and one of m3 failed.
        let text = "\
m1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460
r1 127.0.0.1:7003@17003 slave m1 0 1700000000000 1 connected
m2 127.0.0.1:7001@17001 master - 0 1700000000000 2 connected 5461-10921 10922 [10923->-m3]
r2 127.0.0.1:7004@17004 slave,fail? m2 0 1700000000000 2 connected
m3 127.0.0.1:7002@17002 master - 0 1700000000000 3 connected 10923-16383
r3 127.0.0.1:7005@17005 slave,fail m3 0 1700000000000 3 disconnected
r4 127.0.0.1:7006@17006 slave m3 0 1700000000000 3 connected
";
        let r = Replicas::parse(text);
        assert_eq!(r.of_slot(0), 1);
        assert_eq!(r.of_slot(5460), 1);
        assert_eq!(r.of_slot(10922), 0);
        assert_eq!(r.of_slot(16383), 1);
        assert_eq!(Replicas::parse("").of_slot(1), 0);
    }

    #[test]
    fn cluster_slots_answers_map_every_slot_to_its_master() {
        let entry = |a: i64, b: i64, port: i64, host: &str| {
            Value::Array(vec![
                Value::Int(a),
                Value::Int(b),
                Value::Array(vec![
                    Value::BulkString(host.as_bytes().to_vec()),
                    Value::Int(port),
                    Value::BulkString(b"id".to_vec()),
                ]),
                Value::Array(vec![
                    Value::BulkString(b"127.0.0.1".to_vec()),
                    Value::Int(port + 3),
                    Value::BulkString(b"replica".to_vec()),
                ]),
            ])
        };
        let v = Value::Array(vec![
            entry(10923, 16383, 7002, "127.0.0.1"),
            entry(0, 5460, 7000, "127.0.0.1"),
            entry(5461, 10922, 7001, ""),
        ]);
        let t = Topology::parse(&v, &node(7001)).unwrap();
        assert_eq!(t.node_for(0), Some(&node(7000)));
        assert_eq!(t.node_for(5461), Some(&node(7001)));
        assert_eq!(t.node_for(16383), Some(&node(7002)));
        assert_eq!(t.masters(), vec![node(7000), node(7001), node(7002)]);
        let partial = Topology::parse(&Value::Array(vec![entry(100, 200, 7000, "h")]), &node(1)).unwrap();
        assert_eq!(partial.node_for(99), None);
        assert_eq!(partial.node_for(201), None);
        assert!(Topology::parse(&Value::Array(vec![]), &node(1)).is_err());
        assert!(Topology::parse(&Value::Okay, &node(1)).is_err());
    }
}
