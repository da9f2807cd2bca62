//! Runs a Temporal worker for the generic workflow. `Worker::run` is not `Send`, so it gets a
//! thread of its own with a single-threaded runtime.

use super::activities::{DriftActivities, Outbound};
use super::delivery::DeliveryWorkflow;
use super::workflow::DriftWorkflow;
use drift_bus::{Conn, Layout, Publisher, RedisTarget, Retention};
use temporalio_client::Client;
use temporalio_sdk::runtime::worker_tuner::{FixedSizeSlotSupplier, TunerHolder};
use temporalio_sdk::{Runtime, Worker, WorkerOptions};
use tokio_util::sync::CancellationToken;

/// Workflow tasks are CPU work on this thread; the SDK's default number of slots.
const WORKFLOW_TASK_SLOTS: usize = 100;

pub struct WorkerConfig {
    pub task_queue: String,
    pub redis: RedisTarget,
    /// Where workflows' Redis data lives: the worker derives every key from it and the scoped
    /// workflow id (workflow inputs carry none).
    pub layout: Layout,
    /// Replicas a state must reach before its publish counts (see `Publisher::new`).
    pub replica_acks: usize,
    pub retention: Retention,
    /// Signs answer links into screens whose node says `answerLink` (None: without a public
    /// URL, those states go without `answerUrl`).
    pub links: Option<drift_core::links::LinkKeys>,
    pub delivery: crate::webhook::DeliveryConfig,
    pub egress: crate::egress::Egress,
    pub max_response_bytes: usize,
    pub activity_slots: usize,
    pub cached_workflows: usize,
    /// The drain time after a shutdown signal: activities still running after half of it are
    /// cancelled, so the worker can end within it.
    pub drain: std::time::Duration,
}

/// Starts the worker thread. It stops when `shutdown` is cancelled; the returned handle ends
/// when the worker has drained.
pub fn spawn(
    client: Client,
    cfg: WorkerConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<std::thread::JoinHandle<anyhow::Result<()>>> {
    on_own_thread("drift-worker", "worker", shutdown, move || async move {
        let mut conn = Conn::connect(&cfg.redis, std::time::Duration::from_secs(3), 6)
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "connecting to {}: {}",
                    cfg.redis.describe(),
                    drift_bus::explain(&cfg.redis, &e)
                )
            })?;
        conn.check_kind()
            .await
            .map_err(|e| anyhow::anyhow!("{}: {e}", cfg.redis.describe()))?;
        let outbound = Outbound::new(cfg.egress.clone(), cfg.max_response_bytes)?;
        let runtime = Runtime::from_current_tokio(Default::default())?;
        let publisher = Publisher::new(conn, cfg.retention, cfg.layout, cfg.replica_acks).with_links(cfg.links);
        super::workflow::publish_early_with(publisher.clone());
        let opts = WorkerOptions::new(cfg.task_queue.clone())
            .register_workflow::<DriftWorkflow>()?
            .register_workflow::<DeliveryWorkflow>()?
            .register_activities(DriftActivities {
                publisher,
                outbound,
                delivery: cfg.delivery,
            })
            .tuner(
                TunerHolder::builder()
                    .workflow_task_slot_supplier(FixedSizeSlotSupplier::new(WORKFLOW_TASK_SLOTS))
                    .activity_task_slot_supplier(FixedSizeSlotSupplier::new(cfg.activity_slots))
                    .local_activity_task_slot_supplier(FixedSizeSlotSupplier::new(cfg.activity_slots))
                    .nexus_task_slot_supplier(FixedSizeSlotSupplier::new(WORKFLOW_TASK_SLOTS))
                    .build(),
            )
            .max_cached_workflows(cfg.cached_workflows)
            .graceful_shutdown_period(cfg.drain / 2)
            .build();
        let worker = Worker::new(&runtime, client, opts)?;
        // Exported from the start, at zero: the replay rate reads 0 rather than "no data".
        drop(metrics::counter!(drift_core::metrics::WORKFLOW_REPLAYS.name, "task_queue" => cfg.task_queue.clone()));
        tracing::info!(task_queue = %cfg.task_queue, cached_workflows = cfg.cached_workflows, "worker running");
        Ok((runtime, worker))
    })
}

/// Runs an SDK worker on a thread of its own, named `thread`, with a single-threaded runtime
/// (`Worker::run` is not `Send`). `setup` builds the worker there; this returns once setup has
/// succeeded or failed. The thread ends when the worker has drained after `shutdown`.
pub fn on_own_thread<F, Fut>(
    thread: &str,
    what: &'static str,
    shutdown: CancellationToken,
    setup: F,
) -> anyhow::Result<std::thread::JoinHandle<anyhow::Result<()>>>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<(Runtime, Worker)>>,
{
    let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel::<anyhow::Result<()>>(1);
    let handle = std::thread::Builder::new().name(thread.into()).spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async move {
            let (_runtime, mut worker) = match setup().await {
                Ok(v) => {
                    let _ = ready_tx.send(Ok(()));
                    v
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(anyhow::anyhow!("{what} setup failed: {e:#}")));
                    return Err(e);
                }
            };
            let shutdown_handle = worker.shutdown_handle();
            tokio::task::spawn_local(async move {
                shutdown.cancelled().await;
                shutdown_handle();
            });
            worker.run().await.map_err(|e| anyhow::anyhow!("{what} stopped: {e}"))
        })
    })?;
    ready_rx
        .recv()
        .map_err(|_| anyhow::anyhow!("{what} thread died during setup"))??;
    Ok(handle)
}
