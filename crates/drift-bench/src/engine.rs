//! The `engine` side of `drift bench load --engine`: Drift's own workflow, worker and publisher,
//! driven as the floor is driven: by callers in this process that start and signal over
//! Temporal's client and wait on the subscription hub, with no gateway in between. Set beside
//! the floor and the gateway's side, it splits what a Drift round adds into what the workflow
//! engine adds (its workflow code, payloads and Redis publish) and what the gateway adds (the
//! HTTP hop, authentication, the checks, the journal).

use anyhow::{Context, bail};
use clap::Parser;
use drift_bus::{Hub, HubMsg, Layout, MessageKind, Subscription};
use drift_core::domain::{Caller, Command, RequestId, Scopes, WorkflowId, WorkflowStart};
use drift_core::dsl::{Definition, Registry};
use drift_temporal::{Temporal, TemporalConfig};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The gateway's and worker's settings at their defaults, as `drift serve` would have them with
/// no flags (and what the environment's `DRIFT_*` variables say, as for `drift dev`).
#[derive(Parser)]
struct Defaults {
    #[command(flatten)]
    common: drift_server::config::Common,
    #[command(flatten)]
    gateway: drift_server::config::GatewayArgs,
}

/// Drift's worker in this process on a task queue of its own, and what a start needs.
pub struct Engine {
    temporal: Temporal,
    hub: Hub,
    layout: Layout,
    definition: Arc<Definition>,
    /// Who the runs are started as: the bench's tenant, as the gateway's caller would be.
    caller: Caller,
    history_limit: u32,
    execution_timeout_ms: u64,
    budgets: drift_core::engine::Budgets,
    stop: CancellationToken,
    worker: std::thread::JoinHandle<anyhow::Result<()>>,
}

impl Engine {
    /// Starts the worker (Drift's, at its default settings) and the hub on the gateway's
    /// Temporal and Redis, under the gateway's key prefix. `definition` is the DSL JSON every
    /// round runs.
    pub async fn start(ends: &crate::Endpoints, definition: &Value) -> anyhow::Result<Engine> {
        let hint = "the engine side needs --temporal-address and --redis-url (or a drift dev data folder)";
        let address = ends.temporal_address.clone().context(hint)?;
        let redis = ends.redis.clone().context(hint)?;
        let d = Defaults::try_parse_from(["drift"]).context("the gateway's default settings")?;
        let task_queue = format!("drift-engine-{}", std::process::id());
        let mut common = d.common;
        common.key_prefix = ends.key_prefix.clone();
        common.task_queue = task_queue.clone();
        let cfg = TemporalConfig {
            address: address.clone(),
            namespace: common.namespace.clone(),
            task_queue: task_queue.clone(),
            traced: false,
        };
        let client = drift_temporal::connect(&cfg)
            .await
            .with_context(|| format!("connecting to Temporal at {address} for the engine side"))?;
        let stop = CancellationToken::new();
        let worker_cfg = drift_server::startup::worker_config(&common, &redis, None)?;
        let layout = worker_cfg.layout.clone();
        let worker = drift_temporal::spawn_worker(client.clone(), worker_cfg, stop.clone())?;
        let hub = Hub::start(&redis, 1, stop.clone())?;
        let parsed: Definition = serde_json::from_value(definition.clone()).context("the bench's definition")?;
        let definition = Registry::default()
            .compile(&parsed)
            .map_err(|e| anyhow::anyhow!("compiling the bench's definition: {e}"))?;
        let caller = Caller::new(&ends.tenant, "bench-engine", None, Scopes::all())
            .map_err(|e| anyhow::anyhow!("tenant {:?}: {e}", ends.tenant))?;
        // As the gateway's dispatch: the definition's own timeout, else the default one.
        let execution_timeout_ms = definition
            .execution_timeout_ms
            .unwrap_or(d.gateway.execution_timeout_secs * 1000);
        Ok(Engine {
            // Sharing the worker's client, as `drift dev`'s gateway does: starts go eager.
            temporal: Temporal::with_client(cfg, client),
            hub,
            layout,
            definition: Arc::new(definition),
            caller,
            history_limit: d.gateway.history_limit,
            execution_timeout_ms,
            budgets: d.gateway.budgets()?,
            stop,
            worker,
        })
    }

    /// One round: start → the screen, `think` later the answer → the end, as the gateway
    /// dispatches them (the same start and command), waited on through the hub.
    pub async fn round(&self, think: Duration) -> anyhow::Result<()> {
        let start = WorkflowStart {
            definition: self.definition.clone(),
            children: Default::default(),
            workflow_id: WorkflowId::generate(),
            tenant: self.caller.tenant.clone(),
            params: json!({}),
            thread_context: self.caller.thread_context(),
            request_id: Some(RequestId::generate()),
            callback: None,
            history_limit: self.history_limit,
            run: uuid::Uuid::now_v7().simple().to_string(),
            seq_base: 0,
            execution_timeout_ms: Some(self.execution_timeout_ms),
            budgets: self.budgets,
            depth: 0,
            runs_indexed: false,
            lean_index: false,
        };
        let scoped = start.scoped_id();
        let mut sub = self.hub.subscribe(&self.layout.keys(&scoped).channel).await?;
        self.temporal
            .start(start, None)
            .await
            .map_err(|e| anyhow::anyhow!("engine start: {e}"))?;
        let screen = next_state(&mut sub).await?;
        if screen.terminal {
            bail!("engine start: the run ended instead of showing its screen");
        }
        if !think.is_zero() {
            tokio::time::sleep(think).await;
        }
        let answer = Command::Resume {
            request_id: RequestId::generate(),
            seq: Some(screen.seq),
            view_response: json!({"selectedOptions": {"answer": "x"}}),
            callback: None,
        };
        self.temporal
            .signal(&scoped, answer)
            .await
            .map_err(|e| anyhow::anyhow!("engine answer: {e}"))?;
        while !next_state(&mut sub).await?.terminal {}
        Ok(())
    }

    /// Asks the worker to stop without waiting for it (a caller still holds the engine).
    pub fn stop_now(&self) {
        self.stop.cancel();
    }

    pub async fn stop(self) {
        self.stop.cancel();
        crate::stop_worker(self.worker, "the engine side's").await;
    }
}

/// The next state on a run's channel: its `seq` and whether it ends the run.
struct Seen {
    seq: u64,
    terminal: bool,
}

async fn next_state(sub: &mut Subscription) -> anyhow::Result<Seen> {
    let wait = async {
        loop {
            match sub.recv().await {
                HubMsg::Event(e) if e.kind == MessageKind::State => {
                    break Ok(Seen {
                        seq: e.seq,
                        terminal: e.terminal,
                    });
                }
                HubMsg::Event(e) if e.kind == MessageKind::Rejection => {
                    break Err(anyhow::anyhow!("the run refused the command: {}", e.body.as_str()));
                }
                HubMsg::Resync => break Err(anyhow::anyhow!("the hub lost messages on this run's channel")),
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .map_err(|_| anyhow::anyhow!("no state from the engine's run within 10 s"))?
}
