//! Reading a workflow's state, and mending what Redis missed: a state lost with Redis is
//! read back from Temporal and stored again; an end nobody published (a terminate, a timeout)
//! is published for the workflow, on demand and by a background sweep.

use super::{Service, ServiceError, require, riding_out};
use drift_core::domain::RequestId;
use drift_core::domain::timeline::{RequestKind, Via};
use drift_core::domain::{
    Caller, Scope, ScopedWorkflowId, TaskFailing, TenantId, WorkflowId, WorkflowState, WorkflowStatus,
};
use drift_temporal::{EndedAs, Inspection, TemporalError};
use futures::StreamExt;

/// What Temporal says of a workflow Drift shows running.
pub(super) enum Checked {
    /// It ended outside Drift: its end, now published.
    Ended(Box<WorkflowState>),
    TaskFailing(TaskFailing),
    Fine,
}

/// Counts and logs a run found stuck on a failing workflow task.
fn task_failing_seen(scoped: &ScopedWorkflowId, f: TaskFailing) -> TaskFailing {
    metrics::counter!(drift_core::metrics::WORKFLOW_TASK_FAILING.name).increment(1);
    tracing::warn!(
        workflow = %scoped, attempts = f.attempts, cause = %f.cause, message = %f.message,
        "workflow task keeps failing"
    );
    f
}

impl Service {
    /// Terminates a workflow and publishes its end for it (it can no longer publish itself).
    pub async fn terminate(&self, caller: &Caller, id: &WorkflowId) -> Result<WorkflowState, ServiceError> {
        require(caller, Scope::Drive)?;
        let scoped = caller.scoped(id);
        self.0
            .runtime
            .terminate(&scoped, &format!("terminated by {} via API", caller.client))
            .await?;
        // The TERMINATED state answers this call: the run's timeline says who ended it, and how.
        let request_id = RequestId::generate();
        let state = self
            .publish_end(&caller.tenant, id, WorkflowStatus::Terminated, None, Some(&request_id))
            .await?;
        self.note_request(&scoped, &request_id, RequestKind::Terminate, Via::Sync);
        Ok(state)
    }

    /// The latest state, for a caller who may read it.
    pub async fn current(&self, caller: &Caller, id: &WorkflowId) -> Result<WorkflowState, ServiceError> {
        require(caller, Scope::Read)?;
        self.reconciled_state(caller, id).await
    }

    /// The latest state, from Redis or (before anything was published) from Temporal. A state
    /// Temporal has and Redis does not is stored and published again: Redis lost it, or it is
    /// under key names from before an upgrade of the layout. (The publish never replaces a
    /// newer state, so a race with the workflow's own publish changes nothing.)
    pub(super) async fn state_of(&self, caller: &Caller, id: &WorkflowId) -> Result<WorkflowState, ServiceError> {
        let scoped = caller.scoped(id);
        let keys = self.keys(&scoped);
        match riding_out(|| self.0.states.latest(&keys)).await? {
            Some(st) => Ok(st.state),
            None => self.restored_state(caller, id).await,
        }
    }

    /// The state Redis does not have (expired, or lost with a Redis), read from Temporal and
    /// stored again.
    pub(super) async fn restored_state(&self, caller: &Caller, id: &WorkflowId) -> Result<WorkflowState, ServiceError> {
        let scoped = caller.scoped(id);
        let st = self.queried(caller, id).await?;
        if st.seq > 0 {
            match self
                .0
                .states
                .publish(&drift_bus::Publication::state(&scoped, &st))
                .await
            {
                Ok(()) => metrics::counter!(drift_core::metrics::STATES_RESTORED.name).increment(1),
                Err(e) => tracing::warn!(error = %e, "could not store a state read back from Temporal"),
            }
        }
        Ok(st)
    }

    /// The latest state as readers should see it: a workflow Drift still shows running that
    /// ended outside Drift (Temporal's CLI or UI, a timeout, a server limit) gets that end
    /// published now; one whose workflow task keeps failing says so.
    pub(super) async fn reconciled_state(
        &self,
        caller: &Caller,
        id: &WorkflowId,
    ) -> Result<WorkflowState, ServiceError> {
        let st = self.state_of(caller, id).await?;
        if st.workflow_status.is_terminal() {
            return Ok(st);
        }
        Ok(match self.reconcile(&caller.tenant, id).await {
            Checked::Ended(end) => *end,
            Checked::TaskFailing(f) => WorkflowState {
                workflow_task_failing: Some(f),
                ..st
            },
            Checked::Fine => st,
        })
    }

    /// What Temporal says of a workflow Drift shows running. An end outside Drift is
    /// published now.
    pub(super) async fn reconcile(&self, tenant: &TenantId, id: &WorkflowId) -> Checked {
        let scoped = ScopedWorkflowId::new(tenant, id);
        let Some(seen) = self.inspected(&scoped).await else {
            return Checked::Fine;
        };
        if let Some(f) = seen.task_failing {
            return Checked::TaskFailing(task_failing_seen(&scoped, f));
        }
        let Some(ended) = seen.ended else {
            return Checked::Fine;
        };
        let status = match ended.status {
            EndedAs::Terminated => WorkflowStatus::Terminated,
            EndedAs::TimedOut | EndedAs::Failed => WorkflowStatus::Failed,
        };
        metrics::counter!(drift_core::metrics::EXTERNAL_ENDS.name).increment(1);
        match self.publish_end(tenant, id, status, Some(ended.reason), None).await {
            Ok(end) => Checked::Ended(Box::new(end)),
            Err(_) => Checked::Fine,
        }
    }

    /// Why an answer has not come, when it is that the workflow's task keeps failing.
    pub(super) async fn task_failing(&self, scoped: &ScopedWorkflowId) -> Option<TaskFailing> {
        let seen = self.inspected(scoped).await?;
        seen.task_failing.map(|f| task_failing_seen(scoped, f))
    }

    /// What Temporal says of the workflow, or nothing if it cannot say now (the caller goes
    /// on with what Drift shows; the next look asks again).
    async fn inspected(&self, scoped: &ScopedWorkflowId) -> Option<Inspection> {
        self.0
            .runtime
            .inspect(scoped)
            .await
            .inspect_err(|e| tracing::debug!(error = %e, "could not check the workflow in Temporal"))
            .ok()
    }

    /// Publishes an end the workflow cannot publish itself, above every seq its id ever had
    /// (even after its states expired), and hands it to its webhook deliveries.
    pub(super) async fn publish_end(
        &self,
        tenant: &TenantId,
        id: &WorkflowId,
        status: WorkflowStatus,
        error_message: Option<String>,
        request_id: Option<&RequestId>,
    ) -> Result<WorkflowState, ServiceError> {
        let scoped = ScopedWorkflowId::new(tenant, id);
        let keys = self.keys(&scoped);
        let seq = self.0.states.high_seq(&keys).await? + 1;
        let state = WorkflowState {
            error_message,
            request_id: request_id.map(|r| r.to_string()),
            ..WorkflowState::bare(id.as_str(), status, seq)
        };
        self.0
            .states
            .publish(&drift_bus::Publication::state(&scoped, &state))
            .await?;
        self.0.runtime.deliver(tenant, &scoped, &state).await;
        Ok(state)
    }

    /// Checks, every `every`, the workflows live followers on this gateway hold, so an end
    /// outside Drift reaches them within that time; stops with `shutdown`.
    pub fn spawn_reconciler(&self, every: std::time::Duration, shutdown: tokio_util::sync::CancellationToken) {
        let service = self.clone();
        tokio::spawn(async move {
            let layout = service.0.states.layout().clone();
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(every) => {}
                }
                let followed: Vec<(TenantId, WorkflowId)> = service
                    .0
                    .channels
                    .channels()
                    .iter()
                    .filter_map(|c| layout.workflow_of_channel(c))
                    .collect();
                futures::stream::iter(followed)
                    .for_each_concurrent(8, |(tenant, id)| {
                        let service = service.clone();
                        async move {
                            let keys = service.keys(&ScopedWorkflowId::new(&tenant, &id));
                            let running = matches!(
                                service.0.states.latest(&keys).await,
                                Ok(Some(st)) if !st.state.workflow_status.is_terminal()
                            );
                            if running {
                                service.reconcile(&tenant, &id).await;
                            }
                        }
                    })
                    .await;
            }
        });
    }

    /// The state Temporal's query gives, before anything was published.
    pub(super) async fn queried(&self, caller: &Caller, id: &WorkflowId) -> Result<WorkflowState, ServiceError> {
        let scoped = caller.scoped(id);
        match self.0.runtime.query_state(&scoped).await {
            Ok(Some(st)) => Ok(st),
            Ok(None) => Ok(WorkflowState::bare(id.as_str(), WorkflowStatus::Running, 0)),
            Err(TemporalError::NotFound) => Err(ServiceError::NotFound(format!("no workflow {:?}", id.as_str()))),
            Err(e) => Err(e.into()),
        }
    }
}
