//! The gateway's calls into Temporal, with errors sorted into what callers can act on.

use super::delivery::{self, Delivery, DeliveryState, DeliveryWorkflow};
use super::payload::Json;
use super::workflow::{DriftWorkflow, WorkflowInput};
use drift_core::domain::{Command, ScopedWorkflowId, TaskFailing, TenantId, WorkflowStart, WorkflowState};
use std::time::Duration;
use temporalio_client::{
    Client, ClientOptions, Connection, ConnectionOptions, GrpcCompression, RetryOptions, WorkflowFetchHistoryOptions,
    WorkflowIdConflictPolicy, WorkflowIdReusePolicy, WorkflowQueryOptions, WorkflowSignalOptions, WorkflowStartOptions,
    WorkflowTerminateOptions,
    errors::{WorkflowInteractionError, WorkflowQueryError, WorkflowStartError},
};
use tokio::sync::OnceCell;

/// The memo field that holds what an idempotent start asked for.
const FINGERPRINT_MEMO: &str = "driftIdempotencyFingerprint";
use tonic::Code;

#[derive(Debug, thiserror::Error)]
pub enum TemporalError {
    #[error("Temporal is unreachable: {0}")]
    Unavailable(String),
    /// The call reached Temporal but its answer did not come back in time: it may have been
    /// applied.
    #[error("Temporal did not answer in time: {0}")]
    Uncertain(String),
    #[error("workflow already exists")]
    AlreadyStarted,
    #[error("workflow not found")]
    NotFound,
    #[error("workflow has ended")]
    Ended,
    #[error("Temporal error: {0}")]
    Other(String),
    /// Nothing was sent: too many starts were already in flight for too long.
    #[error("too many workflow starts in flight")]
    Busy,
    /// The namespace lacks Drift's search attributes (the commands that register them).
    #[error("the runs list needs Drift's search attributes registered in the namespace: {0}")]
    NotIndexed(String),
    #[error("the page token is not one this list gave")]
    BadPageToken,
}

/// Start calls in flight to Temporal at once. A burst beyond this waits its turn in the
/// gateway instead of piling onto the server until every call misses its deadline (then
/// nobody knows which workflows started).
pub const STARTS_IN_FLIGHT: usize = 128;
/// How long a start may wait for its turn; it is then refused, with nothing started.
pub const START_TURN_WAIT: Duration = Duration::from_secs(30);

fn from_query(e: WorkflowQueryError) -> TemporalError {
    match e {
        WorkflowQueryError::NotFound(s) | WorkflowQueryError::Rpc(s) => from_status(&s),
        other => TemporalError::Other(other.to_string()),
    }
}

fn from_status(s: &tonic::Status) -> TemporalError {
    match s.code() {
        // The server says a workflow has ended only in this message: its status carries no
        // detail that does (checked against the dev server; a test holds the mapping).
        Code::NotFound if s.message().contains("already completed") => TemporalError::Ended,
        Code::NotFound => TemporalError::NotFound,
        Code::FailedPrecondition => TemporalError::Ended,
        Code::AlreadyExists => TemporalError::AlreadyStarted,
        Code::DeadlineExceeded | Code::Cancelled => TemporalError::Uncertain(s.message().to_string()),
        Code::Unavailable | Code::Unknown => TemporalError::Unavailable(s.message().to_string()),
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
    /// Carry the trace through Temporal (the SDK's OpenTelemetry interceptors): set when the
    /// process exports traces.
    pub traced: bool,
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
        // Gzip (the SDK's default) costs a deflate per RPC on both ends — a large share of the
        // CPU a resume used here — and saves nothing next to the cluster.
        .grpc_compression(GrpcCompression::None)
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
    // The plugin is the client's and, through it, the worker's (`Worker::new` applies the
    // client's plugins): starts and signals inject the trace, workflows and activities
    // continue it.
    let options = match cfg.traced {
        true => ClientOptions::new(cfg.namespace.clone())
            .plugin(crate::trace::OpenTelemetryPlugin::builder().build())
            .build(),
        false => ClientOptions::new(cfg.namespace.clone()).build(),
    };
    Client::new(conn, options).map_err(|e| TemporalError::Other(e.to_string()))
}

/// How a workflow ended outside Drift, and why (as Temporal recorded it).
#[derive(Debug, Clone, PartialEq)]
pub struct Ended {
    pub status: EndedAs,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndedAs {
    Terminated,
    TimedOut,
    Failed,
}

/// What Temporal says of a workflow Drift still shows running.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inspection {
    /// It ended without publishing its end (terminated, timed out, failed outside Drift).
    pub ended: Option<Ended>,
    /// Its workflow task keeps failing: it cannot move until the worker can run it.
    pub task_failing: Option<TaskFailing>,
}

/// The attempt from which a failing workflow task counts as stuck. A task that timed out may
/// be a worker restarting, so it takes one more.
const FAILED_ATTEMPTS: i32 = 2;
const TIMED_OUT_ATTEMPTS: i32 = 3;

/// A lazily (re)connecting Temporal client for the gateway.
pub struct Temporal {
    pub cfg: TemporalConfig,
    client: OnceCell<Client>,
    /// Set when a worker shares this client in-process: starts then go eager.
    eager: bool,
    starts: tokio::sync::Semaphore,
    start_turn_wait: Duration,
    /// Whether the namespace has Drift's search attributes, and when that was read: a yes is
    /// kept, a no is read again after `INDEX_RECHECK` (an operator may register them).
    indexed: std::sync::Mutex<Option<(bool, std::time::Instant)>>,
}

/// How long a namespace found without Drift's search attributes is taken to be so.
const INDEX_RECHECK: Duration = Duration::from_secs(60);

impl Temporal {
    pub fn new(cfg: TemporalConfig) -> Self {
        Self {
            cfg,
            client: OnceCell::new(),
            eager: false,
            starts: tokio::sync::Semaphore::new(STARTS_IN_FLIGHT),
            start_turn_wait: START_TURN_WAIT,
            indexed: Default::default(),
        }
    }

    /// Uses an already-connected client that an in-process worker also uses.
    pub fn with_client(cfg: TemporalConfig, client: Client) -> Self {
        Self {
            cfg,
            client: OnceCell::new_with(Some(client)),
            eager: true,
            starts: tokio::sync::Semaphore::new(STARTS_IN_FLIGHT),
            start_turn_wait: START_TURN_WAIT,
            indexed: Default::default(),
        }
    }

    /// At most `in_flight` starts go to Temporal at once; one that waits longer than
    /// `turn_wait` for its turn is refused (`Busy`), with nothing started.
    pub fn with_start_limit(self, in_flight: usize, turn_wait: Duration) -> Self {
        Self {
            starts: tokio::sync::Semaphore::new(in_flight.max(1)),
            start_turn_wait: turn_wait,
            ..self
        }
    }

    pub async fn client(&self) -> Result<&Client, TemporalError> {
        self.client.get_or_try_init(|| connect(&self.cfg)).await
    }

    /// Starts a workflow. `AlreadyStarted` means the id is taken; for an idempotent start (one
    /// with the `fingerprint` of what was asked, kept in the workflow's memo), also by a run that
    /// has ended (the id names that run for good).
    pub async fn start(&self, mut start: WorkflowStart, fingerprint: Option<&str>) -> Result<(), TemporalError> {
        let client = self.client().await?;
        start.runs_indexed = self.runs_indexed().await;
        start.lean_index = start.runs_indexed;
        let mut opts = WorkflowStartOptions::new(self.cfg.task_queue.clone(), start.scoped_id().to_string())
            .id_conflict_policy(WorkflowIdConflictPolicy::Fail)
            .id_reuse_policy(if fingerprint.is_some() {
                WorkflowIdReusePolicy::RejectDuplicate
            } else {
                WorkflowIdReusePolicy::AllowDuplicate
            })
            .enable_eager_workflow_start(self.eager)
            .build();
        if let Some(f) = fingerprint {
            let mut memo = temporalio_common::MemoValues::new();
            memo.insert(FINGERPRINT_MEMO, f.to_string());
            opts.memo = Some(memo);
        }
        opts.execution_timeout = start.execution_timeout_ms.map(Duration::from_millis);
        if start.runs_indexed {
            opts.search_attributes = Some(crate::search::at_start(&start, chrono::Utc::now().timestamp_millis()));
        }
        let input = WorkflowInput { start, carry: None };
        let _turn = match tokio::time::timeout(self.start_turn_wait, self.starts.acquire()).await {
            Ok(Ok(permit)) => permit,
            _ => return Err(TemporalError::Busy),
        };
        match client.start_workflow(DriftWorkflow::run, Json(input), opts).await {
            Ok(_) => Ok(()),
            Err(WorkflowStartError::AlreadyStarted { .. }) => Err(TemporalError::AlreadyStarted),
            Err(WorkflowStartError::Rpc(s)) => Err(from_status(&s)),
            Err(e) => Err(TemporalError::Other(e.to_string())),
        }
    }

    /// The fingerprint an idempotent start left in the workflow's memo (None: the workflow was
    /// started without one, e.g. by a release before fingerprints).
    pub async fn fingerprint(&self, id: &ScopedWorkflowId) -> Result<Option<String>, TemporalError> {
        use temporalio_client::WorkflowDescribeOptions;
        let client = self.client().await?;
        let description = client
            .get_workflow_handle::<DriftWorkflow>(id.as_str())
            .describe(WorkflowDescribeOptions::default())
            .await
            .map_err(from_interaction)?;
        description
            .memo()
            .get::<String>(FINGERPRINT_MEMO)
            .map_err(|e| TemporalError::Other(format!("reading the workflow's memo: {e}")))
    }

    pub async fn signal(&self, id: &ScopedWorkflowId, cmd: Command) -> Result<(), TemporalError> {
        let client = self.client().await?;
        client
            .get_workflow_handle::<DriftWorkflow>(id.as_str())
            .signal(DriftWorkflow::command, Json(cmd), WorkflowSignalOptions::default())
            .await
            .map_err(from_interaction)
    }

    pub async fn query_state(&self, id: &ScopedWorkflowId) -> Result<Option<WorkflowState>, TemporalError> {
        let client = self.client().await?;
        client
            .get_workflow_handle::<DriftWorkflow>(id.as_str())
            .query(DriftWorkflow::state, (), WorkflowQueryOptions::default())
            .await
            .map_err(from_query)
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
    pub async fn deliver(&self, tenant: &TenantId, id: &ScopedWorkflowId, state: &WorkflowState) {
        let Ok(client) = self.client().await else { return };
        let deliveries_id = delivery::workflow_id(id);
        let r = client
            .get_workflow_handle::<DeliveryWorkflow>(&deliveries_id)
            .signal(
                DeliveryWorkflow::deliver,
                Delivery::of(None, id, tenant, None, state),
                WorkflowSignalOptions::default(),
            )
            .await;
        if let Err(e) = r.map_err(from_interaction)
            && !matches!(e, TemporalError::NotFound | TemporalError::Ended)
        {
            tracing::warn!(error = %e, deliveries_id, "could not hand the state to the delivery workflow");
        }
    }

    /// Where a workflow's webhook deliveries stand, from its delivery workflow, and whether they
    /// are over (its terminal state handled: nothing more will be attempted). None: it has no
    /// delivery workflow (it was never async).
    pub async fn deliveries(&self, id: &ScopedWorkflowId) -> Result<Option<(DeliveryState, bool)>, TemporalError> {
        use temporalio_client::{WorkflowDescribeOptions, WorkflowExecutionStatus as S};
        let client = self.client().await?;
        let handle = client.get_workflow_handle::<DeliveryWorkflow>(&delivery::workflow_id(id));
        let description = match handle.describe(WorkflowDescribeOptions::default()).await {
            Ok(d) => d,
            Err(e) => match from_interaction(e) {
                TemporalError::NotFound => return Ok(None),
                other => return Err(other),
            },
        };
        let state = handle
            .query(DeliveryWorkflow::status, (), WorkflowQueryOptions::default())
            .await
            .map_err(from_query)?;
        Ok(Some((state, description.status() == S::Completed)))
    }

    /// How the workflow stands in Temporal, for a workflow Drift still shows running: whether
    /// it ended without publishing its end itself (terminated from Temporal's CLI or UI, timed
    /// out, failed on a server limit), or keeps failing its workflow task. Nothing for the ends
    /// Drift publishes (completion, the workflow's own failure states).
    pub async fn inspect(&self, id: &ScopedWorkflowId) -> Result<Inspection, TemporalError> {
        use temporalio_client::{HistoryEventFilterType, WorkflowDescribeOptions, WorkflowExecutionStatus as S};
        use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;
        let client = self.client().await?;
        let handle = client.get_workflow_handle::<DriftWorkflow>(id.as_str());
        let description = handle
            .describe(WorkflowDescribeOptions::default())
            .await
            .map_err(from_interaction)?;
        let status = match description.status() {
            S::Terminated | S::Canceled => EndedAs::Terminated,
            S::TimedOut => EndedAs::TimedOut,
            S::Failed => EndedAs::Failed,
            _ => {
                let attempt = description
                    .raw_description
                    .pending_workflow_task
                    .as_ref()
                    .map_or(0, |t| t.attempt);
                let task_failing = match attempt >= FAILED_ATTEMPTS {
                    true => self.task_failure(id, attempt).await?,
                    false => None,
                };
                return Ok(Inspection {
                    ended: None,
                    task_failing,
                });
            }
        };
        let close = handle
            .fetch_history(
                WorkflowFetchHistoryOptions::builder()
                    .event_filter_type(HistoryEventFilterType::CloseEvent)
                    .build(),
            )
            .into_events()
            .await
            .map_err(from_interaction)?;
        let reason = close.last().and_then(|e| e.attributes.as_ref()).and_then(|a| match a {
            Attributes::WorkflowExecutionTerminatedEventAttributes(t) => Some(t.reason.clone()),
            Attributes::WorkflowExecutionFailedEventAttributes(f) => f.failure.as_ref().map(|f| f.message.clone()),
            _ => None,
        });
        let reason = match (status, reason.filter(|r| !r.is_empty())) {
            (EndedAs::TimedOut, _) => "the workflow ran past its execution timeout".to_string(),
            (_, Some(r)) => r,
            (EndedAs::Terminated, None) => "terminated outside Drift".to_string(),
            (_, None) => "the workflow failed outside Drift".to_string(),
        };
        Ok(Inspection {
            ended: Some(Ended { status, reason }),
            task_failing: None,
        })
    }

    /// Why a workflow task on its `attempt`th try keeps failing: the newest task failure (or
    /// timeout) in the history, read from its end.
    async fn task_failure(&self, id: &ScopedWorkflowId, attempt: i32) -> Result<Option<TaskFailing>, TemporalError> {
        use temporalio_common::protos::temporal::api::common::v1::WorkflowExecution;
        use temporalio_common::protos::temporal::api::enums::v1::WorkflowTaskFailedCause;
        use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;
        use temporalio_common::protos::temporal::api::workflowservice::v1::GetWorkflowExecutionHistoryReverseRequest;
        let client = self.client().await?;
        let request = GetWorkflowExecutionHistoryReverseRequest {
            namespace: self.cfg.namespace.clone(),
            execution: Some(WorkflowExecution {
                workflow_id: id.to_string(),
                run_id: String::new(),
            }),
            maximum_page_size: 200,
            next_page_token: vec![],
        };
        let history = client
            .connection()
            .workflow_service()
            .get_workflow_execution_history_reverse(tonic::Request::new(request))
            .await
            .map_err(|s| from_status(&s))?
            .into_inner()
            .history
            .unwrap_or_default();
        let found = history.events.iter().find_map(|e| match e.attributes.as_ref()? {
            Attributes::WorkflowTaskFailedEventAttributes(f) => {
                let cause = WorkflowTaskFailedCause::try_from(f.cause)
                    .map(|c| c.as_str_name())
                    .unwrap_or("WORKFLOW_TASK_FAILED_CAUSE_UNSPECIFIED");
                let cause = cause
                    .trim_start_matches("WORKFLOW_TASK_FAILED_CAUSE_")
                    .to_ascii_lowercase();
                let message = f.failure.as_ref().map(|f| f.message.clone()).unwrap_or_default();
                Some((FAILED_ATTEMPTS, cause, message))
            }
            Attributes::WorkflowTaskTimedOutEventAttributes(_) => Some((
                TIMED_OUT_ATTEMPTS,
                "timed_out".to_string(),
                "no worker finished the workflow task in time".to_string(),
            )),
            _ => None,
        });
        Ok(found
            .filter(|(from, ..)| attempt >= *from)
            .map(|(_, cause, message)| TaskFailing {
                attempts: attempt as u32,
                cause,
                message,
            }))
    }

    /// Whether runs started now keep Drift's search attributes: the namespace has them all
    /// registered (read once; a no again after a minute). Unreadable counts as no: a start
    /// never fails for the runs list's sake.
    pub async fn runs_indexed(&self) -> bool {
        let known = *self.indexed.lock().unwrap_or_else(|p| p.into_inner());
        match known {
            Some((true, _)) => return true,
            Some((false, at)) if at.elapsed() < INDEX_RECHECK => return false,
            _ => {}
        }
        let found = self.registered_attributes().await;
        let all = found.as_ref().is_ok_and(crate::search::all_registered);
        if !all {
            tracing::warn!(
                namespace = %self.cfg.namespace,
                error = ?found.as_ref().err(),
                "Drift's search attributes are not all registered (with their types): runs start without them, \
                 and GET /v3/workflows lists none of them. Register them: {}",
                crate::search::registration_hint()
            );
        }
        // An answer is kept; a failed read is not (Temporal being away for a moment must not
        // leave a minute of starts unlisted).
        if found.is_ok() {
            *self.indexed.lock().unwrap_or_else(|p| p.into_inner()) = Some((all, std::time::Instant::now()));
        }
        all
    }

    async fn registered_attributes(&self) -> Result<std::collections::HashMap<String, i32>, TemporalError> {
        use temporalio_common::protos::temporal::api::operatorservice::v1::ListSearchAttributesRequest;
        let client = self.client().await?;
        let mut svc = client.connection().operator_service();
        let r = svc
            .list_search_attributes(tonic::Request::new(ListSearchAttributesRequest {
                namespace: self.cfg.namespace.clone(),
            }))
            .await
            .map_err(|s| from_status(&s))?
            .into_inner();
        Ok(r.custom_attributes)
    }

    /// One page of `tenant`'s runs matching `req`'s filter, newest first (Temporal's
    /// visibility). `Unavailable` when the search attributes are not registered.
    pub async fn runs(
        &self,
        tenant: &TenantId,
        req: &drift_core::domain::runs::RunsRequest,
    ) -> Result<drift_core::domain::runs::RunsPage, TemporalError> {
        use base64::Engine as _;
        use temporalio_common::protos::temporal::api::workflowservice::v1::ListWorkflowExecutionsRequest;
        if !self.runs_indexed().await {
            return Err(TemporalError::NotIndexed(crate::search::registration_hint()));
        }
        let token = match &req.page_token {
            Some(t) => base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(t)
                .map_err(|_| TemporalError::BadPageToken)?,
            None => Vec::new(),
        };
        let client = self.client().await?;
        let mut svc = client.connection().workflow_service();
        let query = crate::search::query(tenant.as_str(), &req.filter, chrono::Utc::now());
        let r = svc
            .list_workflow_executions(tonic::Request::new(ListWorkflowExecutionsRequest {
                namespace: self.cfg.namespace.clone(),
                page_size: req.page_size as i32,
                next_page_token: token,
                query,
            }))
            .await
            .map_err(|s| match s.code() {
                // A token this list did not give: the server cannot read it (it says only
                // "something went wrong"), or it belongs to another query.
                Code::InvalidArgument | Code::Unknown | Code::Internal if req.page_token.is_some() => {
                    TemporalError::BadPageToken
                }
                _ => from_status(&s),
            })?
            .into_inner();
        Ok(drift_core::domain::runs::RunsPage {
            runs: r.executions.iter().filter_map(crate::search::summary).collect(),
            next_page_token: (!r.next_page_token.is_empty())
                .then(|| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&r.next_page_token)),
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeout_after_sending_is_not_reported_as_nothing_changed() {
        let t = from_status(&tonic::Status::deadline_exceeded("slow"));
        assert!(matches!(t, TemporalError::Uncertain(_)), "{t:?}");
        assert!(matches!(
            from_status(&tonic::Status::unavailable("down")),
            TemporalError::Unavailable(_)
        ));
        assert!(matches!(
            from_status(&tonic::Status::not_found("workflow execution already completed")),
            TemporalError::Ended
        ));
    }
}
