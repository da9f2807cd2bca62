//! Which Redis a deployment uses — one server (`--redis-url`) or a Redis Cluster
//! (`--redis-cluster`) — and the one command connection type over both, so the store and the
//! publisher never ask which. A server of the other kind than configured is refused at start and
//! by `/readyz`, with the flag to use instead.

use redis::aio::ConnectionLike;
use redis::{Cmd, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, Pipeline, RedisFuture, Value};
use std::time::Duration;

/// Where Drift's Redis is.
#[derive(Debug, Clone, PartialEq)]
pub enum RedisTarget {
    /// One server: `redis://[user:password@]host:port`.
    Standalone(String),
    /// A Redis Cluster, by some of its nodes (the rest are discovered).
    Cluster(Vec<String>),
}

impl RedisTarget {
    /// From the two flags; exactly one may be given. None: neither.
    pub fn from_flags(url: Option<&str>, cluster: &[String]) -> Result<Option<Self>, String> {
        let nodes: Vec<String> = cluster
            .iter()
            .map(|n| n.trim())
            .filter(|n| !n.is_empty())
            .map(|n| match n.contains("://") {
                true => n.to_string(),
                false => format!("redis://{n}"),
            })
            .collect();
        match (url, nodes.is_empty()) {
            (Some(_), false) => {
                Err("give either --redis-url (one server) or --redis-cluster (a cluster's nodes), not both".into())
            }
            (Some(u), true) => Ok(Some(Self::Standalone(u.to_string()))),
            (None, false) => {
                for n in &nodes {
                    n.as_str().into_connection_info().map_err(|e| {
                        format!(
                            "--redis-cluster: {} is not host:port ({e})",
                            drift_core::redact::redact(n)
                        )
                    })?;
                }
                Ok(Some(Self::Cluster(nodes)))
            }
            (None, true) => Ok(None),
        }
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }

    /// For logs and errors: addresses without passwords.
    pub fn describe(&self) -> String {
        match self {
            Self::Standalone(u) => format!("Redis at {}", drift_core::redact::redact(u)),
            Self::Cluster(nodes) => format!(
                "the Redis Cluster at {}",
                nodes
                    .iter()
                    .map(|n| drift_core::redact::redact(n))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        }
    }

    /// The servers to start from: the one server, or the cluster's seed nodes.
    pub fn seeds(&self) -> redis::RedisResult<Vec<ConnectionInfo>> {
        match self {
            Self::Standalone(u) => Ok(vec![u.as_str().into_connection_info()?]),
            Self::Cluster(nodes) => nodes.iter().map(|n| n.as_str().into_connection_info()).collect(),
        }
    }
}

/// `host:port` of a TCP address (the form cluster topology uses).
pub(crate) fn host_port(info: &ConnectionInfo) -> Option<(String, u16)> {
    match info.addr() {
        ConnectionAddr::Tcp(h, p) => Some((h.clone(), *p)),
        _ => None,
    }
}

/// A command connection to either kind of deployment: multiplexed, reconnecting, with bounded
/// timeouts so a lost Redis is reported quickly. On a cluster, each command goes to the node
/// that owns its keys' slot, following redirections after failovers and slot moves.
#[derive(Clone)]
pub enum Conn {
    Single(redis::aio::ConnectionManager),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl Conn {
    pub async fn connect(target: &RedisTarget, timeout: Duration, retries: usize) -> redis::RedisResult<Self> {
        match target {
            RedisTarget::Standalone(url) => {
                let client = redis::Client::open(url.as_str())?;
                let conn = redis::aio::ConnectionManager::new_with_config(
                    client,
                    redis::aio::ConnectionManagerConfig::new()
                        .set_connection_timeout(Some(timeout))
                        .set_response_timeout(Some(timeout))
                        .set_number_of_retries(retries),
                )
                .await?;
                Ok(Self::Single(conn))
            }
            RedisTarget::Cluster(nodes) => {
                let client = redis::cluster::ClusterClientBuilder::new(nodes.iter().map(String::as_str))
                    .connection_timeout(timeout)
                    .response_timeout(timeout)
                    .retries(retries as u32)
                    .build()?;
                Ok(Self::Cluster(client.get_async_connection().await?))
            }
        }
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }

    /// Refuses a server of the other kind than configured, saying which flag to use. On a
    /// cluster node given as one server, multi-key commands would fail (CROSSSLOT, MOVED) and
    /// classic pub/sub would be broadcast to every node.
    pub async fn check_kind(&mut self) -> Result<(), String> {
        match self {
            Self::Single(c) => {
                let info: String = redis::cmd("INFO")
                    .arg("cluster")
                    .query_async(c)
                    .await
                    .map_err(|e| e.to_string())?;
                if info.lines().any(|l| l.trim() == "cluster_enabled:1") {
                    return Err(
                        "this Redis is a cluster node (cluster_enabled:1): give the cluster's nodes with \
                         --redis-cluster host:port,… (DRIFT_REDIS_CLUSTER) instead of --redis-url"
                            .into(),
                    );
                }
                Ok(())
            }
            Self::Cluster(c) => {
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query_async(c)
                    .await
                    .map_err(|e| explain_cluster(&e))?;
                match info.lines().find_map(|l| l.trim().strip_prefix("cluster_state:")) {
                    Some(_) => Ok(()),
                    None => Err(format!("unexpected CLUSTER INFO answer: {info:?}")),
                }
            }
        }
    }
}

/// Explains what a connection error means for the one who configured `target`.
pub fn explain(target: &RedisTarget, e: &redis::RedisError) -> String {
    match target.is_cluster() {
        true => explain_cluster(e),
        false => e.to_string(),
    }
}

/// A cluster client's errors, in terms of what to check or change.
fn explain_cluster(e: &redis::RedisError) -> String {
    let text = e.to_string();
    if text.contains("cluster support disabled") {
        return "this Redis is not a cluster node (cluster support disabled): give one server with \
                --redis-url (DRIFT_REDIS_URL) instead of --redis-cluster"
            .into();
    }
    if e.kind() == redis::ErrorKind::ClusterConnectionNotFound || text.contains("ClusterConnectionNotFound") {
        return format!(
            "no node answered with the cluster's slots ({text}): check the addresses, and that the \
             cluster was created (redis-cli --cluster create …)"
        );
    }
    text
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_of_the_two_redis_flags_names_the_target() {
        assert_eq!(RedisTarget::from_flags(None, &[]).unwrap(), None);
        assert_eq!(
            RedisTarget::from_flags(Some("redis://h:1"), &[]).unwrap(),
            Some(RedisTarget::Standalone("redis://h:1".into()))
        );
        assert_eq!(
            RedisTarget::from_flags(None, &["127.0.0.1:7000".into(), " redis://:pw@h:7001 ".into()]).unwrap(),
            Some(RedisTarget::Cluster(vec![
                "redis://127.0.0.1:7000".into(),
                "redis://:pw@h:7001".into()
            ]))
        );
        let both = RedisTarget::from_flags(Some("redis://h:1"), &["h:2".into()]).unwrap_err();
        assert!(both.contains("not both"), "{both}");
        assert!(RedisTarget::from_flags(None, &["h:notaport".into()]).is_err());
        let shown = RedisTarget::Cluster(vec!["redis://:secret@h:1".into()]).describe();
        assert!(!shown.contains("secret"), "{shown}");
    }
}
