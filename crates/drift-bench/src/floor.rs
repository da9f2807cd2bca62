//! The benchmark's floor: the smallest workflow that does what a Drift screen round trip does —
//! publish a screen to Redis from a local activity, wait for a signal, publish the next — on the
//! raw Temporal SDK, with nothing of Drift in between. `drift bench` runs it on the same
//! Temporal and Redis as the gateway it measures, so every Drift figure has a floor beside it.

use drift_bus::{Conn, Hub, RedisTarget};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, Instant};
use temporalio_client::{Client, WorkflowSignalOptions, WorkflowStartOptions};
use temporalio_common::RetryPolicy as TRetry;
use temporalio_common::search_attributes::SearchAttributes;
use temporalio_macros::{activities, workflow, workflow_methods};
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use temporalio_sdk::{LocalActivityOptions, SyncWorkflowContext, WorkflowContext, WorkflowResult};
use temporalio_sdk::{Runtime, Worker, WorkerOptions};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FloorInput {
    pub channel: String,
    /// Padding (`drift bench --floor-input-bytes`): a start input as large as Drift's.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pad: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FloorScreen {
    pub channel: String,
    pub n: u32,
}

pub struct FloorActivities {
    redis: Conn,
}

#[activities]
impl FloorActivities {
    #[activity(name = "floor_publish")]
    pub async fn floor_publish(self: Arc<Self>, _ctx: ActivityContext, s: FloorScreen) -> Result<(), ActivityError> {
        let mut c = self.redis.clone();
        // As Drift's publish does: sharded on a cluster.
        let command = if c.is_cluster() { "SPUBLISH" } else { "PUBLISH" };
        let _: i64 = redis::cmd(command)
            .arg(&s.channel)
            .arg(s.n)
            .query_async(&mut c)
            .await
            .map_err(|e| ActivityError::from(anyhow::anyhow!(e)))?;
        Ok(())
    }
}

#[workflow]
#[derive(Default)]
pub struct FloorWorkflow {
    go: bool,
}

fn la() -> LocalActivityOptions {
    LocalActivityOptions::builder()
        .start_to_close_timeout(Duration::from_secs(5))
        .retry_policy(TRetry::builder().maximum_attempts(3).build())
        .build()
}

#[workflow_methods]
impl FloorWorkflow {
    #[run(name = "drift-floor")]
    pub async fn run(ctx: &mut WorkflowContext<Self>, input: FloorInput) -> WorkflowResult<()> {
        let screen = |n| FloorScreen {
            channel: input.channel.clone(),
            n,
        };
        let _ = ctx
            .execute_local_activity(FloorActivities::floor_publish, screen(1), la())
            .await;
        ctx.wait_condition(|s| s.go).await?;
        let _ = ctx
            .execute_local_activity(FloorActivities::floor_publish, screen(2), la())
            .await;
        Ok(())
    }

    #[signal(name = "go")]
    pub fn go(&mut self, _ctx: &mut SyncWorkflowContext<Self>, _unit: ()) {
        self.go = true;
    }
}

/// A floor worker on its own thread, polling `task_queue` (it runs the Update-based peer too).
pub fn spawn_floor_worker(
    client: Client,
    redis: RedisTarget,
    task_queue: String,
    shutdown: CancellationToken,
) -> anyhow::Result<std::thread::JoinHandle<anyhow::Result<()>>> {
    drift_temporal::on_own_thread("floor-worker", "floor worker", shutdown, move || async move {
        let redis = Conn::connect(&redis, Duration::from_secs(3), 3).await?;
        let runtime = Runtime::from_current_tokio(Default::default())?;
        let opts = WorkerOptions::new(task_queue)
            .register_workflow::<FloorWorkflow>()?
            .register_workflow::<crate::peer::PeerWorkflow>()?
            .register_activities(FloorActivities { redis })
            .build();
        let worker = Worker::new(&runtime, client, opts)?;
        Ok((runtime, worker))
    })
}

/// What a floor start carries beyond its channel, to tell each one's part in what a round
/// costs Temporal: padding in its input (`--floor-input-bytes`) and the runs list's search
/// attributes (`--floor-search-attributes`).
#[derive(Debug, Clone, Default)]
pub struct FloorStart {
    pub pad: String,
    pub attrs: Option<SearchAttributes>,
}

impl FloorStart {
    /// `input_bytes` of padding; with `attrs`, the search attributes a `drift bench load` run
    /// starts with (of `tenant`, waiting on its screen since now).
    pub fn new(input_bytes: usize, attrs: bool, tenant: &str) -> Self {
        let attrs = attrs.then(|| {
            let now = chrono::Utc::now().timestamp_millis();
            drift_temporal::search::waiting_from_start(tenant, "bench_load", "1", "ask", now)
        });
        Self {
            pad: "x".repeat(input_bytes),
            attrs,
        }
    }
}

/// How long the floor waits after a screen before answering it.
pub const SETTLE: Duration = Duration::from_millis(20);

/// One floor round's workflow id and its two latencies.
pub struct FloorRound {
    pub id: String,
    pub started: Duration,
    pub resumed: Duration,
}

/// One floor round: start → first screen, then, `settle` later, signal → next screen (and the
/// end), as seen by a subscriber on a shared subscription hub (the way Drift's gateway sees
/// states).
pub async fn floor_round(
    client: &Client,
    hub: &Hub,
    task_queue: &str,
    start: &FloorStart,
    eager: bool,
    settle: Duration,
) -> anyhow::Result<FloorRound> {
    let id = format!("floor-{}", uuid::Uuid::now_v7().simple());
    let channel = format!("floor:{id}");
    let mut sub = hub.subscribe(&channel).await?;
    let t = Instant::now();
    let mut opts = WorkflowStartOptions::new(task_queue.to_string(), id.clone())
        .enable_eager_workflow_start(eager)
        .build();
    opts.search_attributes = start.attrs.clone();
    client
        .start_workflow(
            FloorWorkflow::run,
            FloorInput {
                channel: channel.clone(),
                pad: start.pad.clone(),
            },
            opts,
        )
        .await
        .map_err(|e| anyhow::anyhow!("floor start: {e}"))?;
    next(&mut sub).await?;
    let started = t.elapsed();
    // A person answers a screen after the workflow task that showed it has completed; so does
    // a Drift resume in `drift bench`. Signalling at once would instead land inside that task
    // and be handed back with its completion, a path no real resume takes.
    if !settle.is_zero() {
        tokio::time::sleep(settle).await;
    }
    let t = Instant::now();
    client
        .get_workflow_handle::<FloorWorkflow>(&id)
        .signal(FloorWorkflow::go, (), WorkflowSignalOptions::default())
        .await
        .map_err(|e| anyhow::anyhow!("floor signal: {e}"))?;
    next(&mut sub).await?;
    let resumed = t.elapsed();
    Ok(FloorRound { id, started, resumed })
}

/// The next message on the floor's channel (a bare number: not an envelope).
async fn next(sub: &mut drift_bus::Subscription) -> anyhow::Result<()> {
    tokio::time::timeout(Duration::from_secs(10), sub.recv())
        .await
        .map_err(|_| anyhow::anyhow!("floor screen never arrived"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::FloorStart;

    #[test]
    fn a_floor_asked_for_search_attributes_starts_with_every_one_drift_registers_and_its_tenant() {
        assert!(FloorStart::new(0, false, "acme").attrs.is_none());
        let attrs = FloorStart::new(16, true, "acme").attrs.expect("asked for");
        let mut names: Vec<&str> = attrs.keys().collect();
        names.sort_unstable();
        let mut registered: Vec<&str> = drift_temporal::search::ATTRIBUTES.iter().map(|(n, _)| *n).collect();
        registered.sort_unstable();
        assert_eq!(names, registered);
        assert_eq!(attrs.get(&drift_temporal::search::TENANT).as_deref(), Some("acme"));
        assert_eq!(FloorStart::new(16, true, "acme").pad.len(), 16);
    }
}
