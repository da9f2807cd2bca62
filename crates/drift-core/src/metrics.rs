//! Every metric Drift exports, defined once: its name, kind, labels and what it counts. Each
//! crate names its series from here (never a literal), and the process describes them all to
//! the exporter at start, so `/metrics` carries a `# HELP` line for each.

/// How a series behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One series: what `/metrics` calls it, and what it means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric {
    pub name: &'static str,
    pub kind: Kind,
    /// The labels it carries, each with what it says.
    pub labels: &'static [&'static str],
    /// The values its one label takes, when they are known ahead: the process exports each of
    /// those series from its start (at zero), like every unlabelled one, so dashboards and
    /// alerts see a series before its first event.
    pub values: &'static [&'static str],
    pub help: &'static str,
}

impl Metric {
    const fn valued(self, values: &'static [&'static str]) -> Self {
        Self { values, ..self }
    }
}

const fn counter(name: &'static str, labels: &'static [&'static str], help: &'static str) -> Metric {
    Metric {
        name,
        kind: Kind::Counter,
        labels,
        values: &[],
        help,
    }
}

const fn gauge(name: &'static str, help: &'static str) -> Metric {
    Metric {
        name,
        kind: Kind::Gauge,
        labels: &[],
        values: &[],
        help,
    }
}

pub const REQUEST_SECONDS: Metric = Metric {
    name: "drift_request_seconds",
    kind: Kind::Histogram,
    labels: &["endpoint", "mode", "status"],
    values: &[],
    help: "Time from a /v3 workflow call's arrival to its answer, by endpoint (start, resume, back, execute), \
           mode (sync, async) and HTTP status",
};
pub const WORKFLOWS_STARTED: Metric = counter("drift_workflows_started_total", &[], "Workflows started");
pub const IDEMPOTENCY_KEY_REUSED: Metric = counter(
    "drift_idempotency_key_reused_total",
    &[],
    "Starts refused because their Idempotency-Key was first used for a different request",
);
pub const COMMANDS_DEDUPLICATED: Metric = counter(
    "drift_commands_deduplicated_total",
    &[],
    "Commands retried with a request id already answered: given the first answer, not sent again",
);
pub const TICKET_REPLAYS: Metric = counter(
    "drift_ticket_replays_total",
    &[],
    "WebSocket tickets presented a second time (refused)",
);
pub const WORKFLOW_TASK_FAILING: Metric = counter(
    "drift_workflow_task_failing_total",
    &[],
    "Waits and reads that found a workflow whose task keeps failing in the worker",
);
pub const STATES_RESTORED: Metric = counter(
    "drift_states_restored_total",
    &[],
    "States read back from Temporal and stored again because Redis no longer had them",
);
pub const EXTERNAL_ENDS: Metric = counter(
    "drift_external_ends_total",
    &[],
    "Workflows found ended outside Drift (terminated, timed out) whose end Drift published for them",
);
pub const MESSAGES_PUBLISHED: Metric = counter(
    "drift_messages_published_total",
    &[],
    "States, rejections and node results published by the worker's publish activity",
);
pub const MESSAGES_DELIVERED: Metric = counter(
    "drift_messages_delivered_total",
    &[],
    "States handed to live followers (SSE streams and WebSocket subscriptions)",
);
pub const PUBLISH_UNREPLICATED: Metric = counter(
    "drift_publish_unreplicated_total",
    &[],
    "Publishes that no replica acknowledged in time (--redis-replica-acks); retried by the activity",
);
pub const HUB_RESUBSCRIBED: Metric = counter(
    "drift_hub_resubscribed_total",
    &[],
    "Hub channels subscribed again after their subscription was lost; their followers resync",
);
pub const HUB_SUBSCRIPTIONS_MOVED: Metric = counter(
    "drift_hub_subscriptions_moved_total",
    &["why"],
    "Hub channel subscriptions moved to another Redis connection or node, by why (refused, evicted, connection \
     lost, slot map)",
)
.valued(&["refused", "evicted", "connection lost", "slot map"]);
pub const HUB_CHANNELS: Metric = gauge("drift_hub_channels", "Channels the hub is subscribed to now");
pub const WEBHOOK_ATTEMPTS: Metric = counter("drift_webhook_attempts_total", &[], "Webhook delivery attempts");
pub const WEBHOOK_DELIVERED: Metric = counter(
    "drift_webhook_delivered_total",
    &[],
    "Webhook deliveries a receiver accepted (2xx)",
);
pub const WORKFLOW_REPLAYS: Metric = counter(
    "drift_workflow_replays_total",
    &["task_queue"],
    "Workflow tasks that replayed history on this worker (a cache miss), by task queue",
);
pub const LIMITED: Metric = counter(
    "drift_limited_total",
    &["limit"],
    "Calls refused at a gateway limit, by limit (rate, link: one answer link's rate, waiters, streams, \
     ws_unclaimed: a socket without credentials closed for following nothing in time)",
)
.valued(&["rate", "link", "waiters", "streams", "ws_unclaimed"]);
pub const CONNECTIONS_REFUSED: Metric = counter(
    "drift_connections_refused_total",
    &["limit"],
    "Connections refused at accept, by limit (gateway: --max-connections, peer: --max-connections-per-peer)",
)
.valued(&["gateway", "peer"]);
pub const CONNECTIONS_TIMED_OUT: Metric = counter(
    "drift_connections_timed_out_total",
    &[],
    "Connections closed because their client read or sent too slowly",
);
pub const BODIES_TIMED_OUT: Metric = counter(
    "drift_bodies_timed_out_total",
    &[],
    "Requests refused because their body came too slowly (408)",
);
pub const HTTP_CONNECTIONS: Metric = gauge("drift_http_connections", "Open client connections");
pub const SSE_CONNECTIONS: Metric = gauge("drift_sse_connections", "Open SSE streams");
pub const WS_CONNECTIONS: Metric = gauge("drift_ws_connections", "Open WebSockets");
pub const SYNC_WAITERS: Metric = gauge(
    "drift_sync_waiters",
    "Sync calls waiting now for their answer (bounded by --max-waiters)",
);
pub const MEMORY_TRIMS: Metric = counter(
    "drift_memory_trims_total",
    &[],
    "Times the process returned free heap memory to the operating system",
);

/// Every series, for describing them to the exporter and for the documentation.
pub const ALL: &[Metric] = &[
    REQUEST_SECONDS,
    WORKFLOWS_STARTED,
    IDEMPOTENCY_KEY_REUSED,
    COMMANDS_DEDUPLICATED,
    TICKET_REPLAYS,
    WORKFLOW_TASK_FAILING,
    STATES_RESTORED,
    EXTERNAL_ENDS,
    MESSAGES_PUBLISHED,
    MESSAGES_DELIVERED,
    PUBLISH_UNREPLICATED,
    HUB_RESUBSCRIBED,
    HUB_SUBSCRIPTIONS_MOVED,
    HUB_CHANNELS,
    WEBHOOK_ATTEMPTS,
    WEBHOOK_DELIVERED,
    WORKFLOW_REPLAYS,
    LIMITED,
    CONNECTIONS_REFUSED,
    CONNECTIONS_TIMED_OUT,
    BODIES_TIMED_OUT,
    HTTP_CONNECTIONS,
    SSE_CONNECTIONS,
    WS_CONNECTIONS,
    SYNC_WAITERS,
    MEMORY_TRIMS,
];

/// `docs/metrics.md`: every series as a table, written from `ALL` (a test keeps the file so).
pub fn reference() -> String {
    let mut out = String::from(
        "# Metrics\n\nEvery gateway serves Prometheus metrics at `/metrics` on its listen address, and every \
         `drift worker` on `--metrics-listen` (the worker's series: webhook attempts, publishes, cache misses; a \
         gateway with an embedded worker has both). Each series is defined \
         once, in `drift-core/src/metrics.rs` (name, kind, labels, description), and described to the exporter \
         at start, so `/metrics` prints a `# HELP` line for each. This page is written from that list \
         (`DRIFT_WRITE_METRICS_DOC=1 cargo test -p drift-core metrics`), and a test fails when it is stale; \
         another refuses a series named by a literal anywhere in the crates. Series known ahead (the unlabelled \
         ones, and each listed value of a label) are exported from the start at zero, so a `rate()` reads 0 \
         rather than no data before the first event.\n\n\
         [`grafana-dashboard.json`](grafana-dashboard.json) is a Grafana dashboard of every series (import it \
         and pick the Prometheus data source); a test checks each of its queries against a real `/metrics`: \
         every series it names is exported, every label it groups by is the series' own, every counter is \
         read through `rate()`, and no series is left off.\n\n\
         | series | kind | labels | what it counts |\n|---|---|---|---|\n",
    );
    for m in ALL {
        let labels: Vec<String> = m
            .labels
            .iter()
            .map(|l| match m.values {
                [] => format!("`{l}`"),
                values => format!("`{l}` ({})", values.join(", ")),
            })
            .collect();
        let labels = if labels.is_empty() {
            "-".to_string()
        } else {
            labels.join(", ")
        };
        let kind = format!("{:?}", m.kind).to_lowercase();
        out.push_str(&format!("| `{}` | {kind} | {labels} | {} |\n", m.name, m.help));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metrics_page_lists_every_series_as_defined_here() {
        let page = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/metrics.md");
        if std::env::var_os("DRIFT_WRITE_METRICS_DOC").is_some() {
            std::fs::write(&page, reference()).unwrap();
        }
        let kept = std::fs::read_to_string(&page).unwrap_or_default();
        assert!(
            kept == reference(),
            "docs/metrics.md is stale: DRIFT_WRITE_METRICS_DOC=1 cargo test -p drift-core metrics writes it"
        );
    }

    #[test]
    fn every_metric_is_named_once_and_described() {
        let mut names: Vec<&str> = ALL.iter().map(|m| m.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), ALL.len(), "a name defined twice");
        for m in ALL {
            assert!(m.name.starts_with("drift_") && !m.help.is_empty(), "{m:?}");
            assert_eq!(
                m.kind == Kind::Counter,
                m.name.ends_with("_total"),
                "{}: counters end in _total",
                m.name
            );
        }
    }

    /// No crate names a series with a literal: each comes from here, so it is described.
    #[test]
    fn no_crate_names_a_metric_with_a_literal() {
        let crates = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let literal = ["counter!(\"", "gauge!(\"", "histogram!(\"", "GaugeGuard::new(\""];
        let mut found = vec![];
        let mut stack = vec![crates];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() && p.file_name().is_some_and(|n| n != "target" && n != "node_modules") {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    let text = std::fs::read_to_string(&p).unwrap();
                    for (i, line) in text.lines().enumerate() {
                        if literal.iter().any(|l| line.contains(l)) && !line.trim_start().starts_with("//") {
                            found.push(format!("{}:{}: {}", p.display(), i + 1, line.trim()));
                        }
                    }
                }
            }
        }
        assert!(
            found.is_empty(),
            "name these from drift_core::metrics:\n{}",
            found.join("\n")
        );
    }
}
