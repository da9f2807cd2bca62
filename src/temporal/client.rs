//! The gateway's calls into Temporal, with errors sorted into what callers can act on.

use super::delivery::{self, Delivery, DeliveryWorkflow};
use super::workflow::{DriftWorkflow, WorkflowInput};
use crate::bus::RedisKeys;
use crate::domain::{Command, ScopedWorkflowId, TenantId, WorkflowStart, WorkflowState};
use std::time::Duration;
use temporalio_client::{
    Client, ClientOptions, Connection, ConnectionOptions, RetryOptions, WorkflowIdConflictPolicy,
    WorkflowIdReusePolicy, WorkflowQueryOptions, WorkflowSignalOptions, WorkflowStartOptions, WorkflowTerminateOptions,
    errors::{WorkflowInteractionError, WorkflowQueryError, WorkflowStartError},
};
use tokio::sync::OnceCell;
use tonic::Code;

#[derive(Debug, thiserror::Error)]
pub enum TemporalError {
    #[error("Temporal is unreachable: {0}")]
    Unavailable(String),
    #[error("workflow already exists")]
    AlreadyStarted,
    #[error("workflow not found")]
    NotFound,
    #[error("workflow has ended")]
    Ended,
    #[error("Temporal error: {0}")]
    Other(String),
}

fn from_status(s: &tonic::Status) -> TemporalError {
    match s.code() {
        Code::NotFound if s.message().contains("already completed") => TemporalError::Ended,
        Code::NotFound => TemporalError::NotFound,
        Code::FailedPrecondition => TemporalError::Ended,
        Code::AlreadyExists => TemporalError::AlreadyStarted,
        Code::Unavailable | Code::DeadlineExceeded | Code::Unknown | Code::Cancelled => {
            TemporalError::Unavailable(s.message().to_string())
        }
        _ => TemporalError::Other(format!("{:?}: {}", s.code(), s.message())),
    }
}

fn from_interaction(e: WorkflowInteractionError) -> TemporalError {
    match e {
        WorkflowInteractionError::NotFound(s) => from_status(&s),
        WorkflowInteractionError::Rpc(s) => from_status(&s),
        other => TemporalError::Other(other.to_string()),
    }
}

#[derive(Debug, Clone)]
pub struct TemporalConfig {
    pub address: String,
    pub namespace: String,
    pub task_queue: String,
}

/// Connects to Temporal with bounded timeouts, so an unreachable server is reported quickly.
pub async fn connect(cfg: &TemporalConfig) -> Result<Client, TemporalError> {
    let url = if cfg.address.contains("://") {
        cfg.address.clone()
    } else {
        format!("http://{}", cfg.address)
    };
    let url = url::Url::parse(&url).map_err(|e| TemporalError::Other(format!("bad Temporal address {url:?}: {e}")))?;
    let opts = ConnectionOptions::new(url)
        .identity(format!("drift@{}", std::process::id()))
        .connect_timeout(Duration::from_secs(3))
        .retry_options(
            RetryOptions::builder()
                .max_elapsed_time(Some(Duration::from_secs(4)))
                .max_retries(4)
                .build(),
        )
        .build();
    let conn = Connection::connect(opts)
        .await
        .map_err(|e| TemporalError::Unavailable(e.to_string()))?;
    Client::new(conn, ClientOptions::new(cfg.namespace.clone()).build())
        .map_err(|e| TemporalError::Other(e.to_string()))
}

/// A lazily (re)connecting Temporal client for the gateway.
pub struct Temporal {
    pub cfg: TemporalConfig,
    client: OnceCell<Client>,
    /// Set when a worker shares this client in-process: starts then go eager.
    eager: bool,
}

impl Temporal {
    pub fn new(cfg: TemporalConfig) -> Self {
        Self {
            cfg,
            client: OnceCell::new(),
            eager: false,
        }
    }

    /// Uses an already-connected client that an in-process worker also uses.
    pub fn with_client(cfg: TemporalConfig, client: Client) -> Self {
        Self {
            cfg,
            client: OnceCell::new_with(Some(client)),
            eager: true,
        }
    }

    pub async fn client(&self) -> Result<&Client, TemporalError> {
        self.client.get_or_try_init(|| connect(&self.cfg)).await
    }

    /// Starts a workflow. `AlreadyStarted` means the id is taken; with `idempotent`, also by a
    /// run that has ended (the id names that run for good).
    pub async fn start(&self, start: WorkflowStart, idempotent: bool) -> Result<(), TemporalError> {
        let client = self.client().await?;
        let opts = WorkflowStartOptions::new(self.cfg.task_queue.clone(), start.scoped_id().to_string())
            .id_conflict_policy(WorkflowIdConflictPolicy::Fail)
            .id_reuse_policy(if idempotent {
                WorkflowIdReusePolicy::RejectDuplicate
            } else {
                WorkflowIdReusePolicy::AllowDuplicate
            })
            .enable_eager_workflow_start(self.eager)
            .build();
        let input = WorkflowInput { start, carry: None };
        match client.start_workflow(DriftWorkflow::run, input, opts).await {
            Ok(_) => Ok(()),
            Err(WorkflowStartError::AlreadyStarted { .. }) => Err(TemporalError::AlreadyStarted),
            Err(WorkflowStartError::Rpc(s)) => Err(from_status(&s)),
            Err(e) => Err(TemporalError::Other(e.to_string())),
        }
    }

    pub async fn signal(&self, id: &ScopedWorkflowId, cmd: Command) -> Result<(), TemporalError> {
        let client = self.client().await?;
        client
            .get_workflow_handle::<DriftWorkflow>(id.as_str())
            .signal(DriftWorkflow::command, cmd, WorkflowSignalOptions::default())
            .await
            .map_err(from_interaction)
    }

    pub async fn query_state(&self, id: &ScopedWorkflowId) -> Result<Option<WorkflowState>, TemporalError> {
        let client = self.client().await?;
        client
            .get_workflow_handle::<DriftWorkflow>(id.as_str())
            .query(DriftWorkflow::state, (), WorkflowQueryOptions::default())
            .await
            .map_err(|e| match e {
                WorkflowQueryError::NotFound(s) | WorkflowQueryError::Rpc(s) => from_status(&s),
                other => TemporalError::Other(other.to_string()),
            })
    }

    pub async fn terminate(&self, id: &ScopedWorkflowId, reason: &str) -> Result<(), TemporalError> {
        let client = self.client().await?;
        client
            .get_workflow_handle::<DriftWorkflow>(id.as_str())
            .terminate(WorkflowTerminateOptions::builder().reason(reason.to_string()).build())
            .await
            .map_err(from_interaction)
    }

    /// Hands a state the workflow could not publish itself (its TERMINATED end) to its
    /// delivery workflow, if it has one (async mode), for the last callback it used.
    pub async fn deliver(&self, tenant: &TenantId, id: &ScopedWorkflowId, keys: &RedisKeys, state: &WorkflowState) {
        let Ok(client) = self.client().await else { return };
        let deliveries_id = delivery::workflow_id(id);
        let r = client
            .get_workflow_handle::<DeliveryWorkflow>(&deliveries_id)
            .signal(
                DeliveryWorkflow::deliver,
                Delivery::of(None, keys, tenant, None, state),
                WorkflowSignalOptions::default(),
            )
            .await;
        if let Err(e) = r.map_err(from_interaction)
            && !matches!(e, TemporalError::NotFound | TemporalError::Ended)
        {
            tracing::warn!(error = %e, deliveries_id, "could not hand the state to the delivery workflow");
        }
    }

    /// Probes the server (for `/readyz`).
    pub async fn ping(&self) -> Result<(), TemporalError> {
        let client = self.client().await?;
        let mut svc = client.connection().workflow_service();
        svc.get_system_info(tonic::Request::new(Default::default()))
            .await
            .map(|_| ())
            .map_err(|s| from_status(&s))
    }
}
