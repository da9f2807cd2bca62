//! The one generic workflow type: it runs the pure interpreter, performs the effects it asks
//! for, publishes every stable state and answers commands (resume, execute-node) that arrive
//! as signals.

use super::activities::{DriftActivities, PublishInput};
use super::delivery::{DeliveryState, DeliveryWorkflow};
use crate::engine::{Cursor, Effect, EndStatus, Machine, Prepared, View, initial_context};
use crate::model::{
    Command, Delivery, Envelope, Links, MessageKind, NodeResult, RedisKeys, Rejection, WorkflowInput, WorkflowState,
    WorkflowStatus,
};
use futures::FutureExt;
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::time::Duration;
use temporalio_common::{ActivityCloseTimeouts, RetryPolicy as TRetry};
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    ActivityOptions, ChildWorkflowOptions, ContinueAsNewOptions, LocalActivityOptions, ParentClosePolicy,
    SignalWorkflowOptions, SyncWorkflowContext, WorkflowContext, WorkflowContextView, WorkflowResult,
};

pub const WORKFLOW_TYPE: &str = "drift";

#[workflow]
#[derive(Default)]
pub struct DriftWorkflow {
    inbox: VecDeque<Command>,
    /// The last published state, for the `state` query.
    last: Option<WorkflowState>,
}

/// Everything the run loop carries between nodes (and across continue-as-new).
struct Run {
    input: WorkflowInput,
    cursor: Cursor,
    seq: u64,
    /// The command whose answer the next published state is.
    answering: Option<String>,
}

#[workflow_methods]
impl DriftWorkflow {
    #[run(name = "drift")]
    pub async fn run(ctx: &mut WorkflowContext<Self>, input: WorkflowInput) -> WorkflowResult<Value> {
        let mut input = input;
        ctx.state_mut(|s| s.inbox.extend(std::mem::take(&mut input.inbox)));
        let cursor = input.cursor.take().unwrap_or_else(|| Cursor {
            ctx: initial_context(&input.definition, input.params.clone(), input.thread_context.clone()),
            node: input.definition.start_node.clone(),
        });
        let mut run = Run {
            seq: input.seq,
            answering: input.request_id.take(),
            cursor,
            input,
        };
        let def = run.input.definition.clone();
        let machine = Machine::new(&def);
        loop {
            if ctx.history_length() >= run.input.history_limit || ctx.continue_as_new_suggested() {
                let mut next = run.input.clone();
                next.cursor = Some(run.cursor.clone());
                next.seq = run.seq;
                next.request_id = run.answering.clone();
                next.inbox = ctx.state_mut(|s| s.inbox.drain(..).collect());
                ctx.continue_as_new(next, ContinueAsNewOptions::default())?;
            }
            match machine.next_effect(&mut run.cursor) {
                Effect::Http {
                    instance,
                    request,
                    retry,
                } => {
                    let opts = http_activity_options(&request, &retry);
                    let result = ctx.execute_activity(DriftActivities::http_call, request, opts).await;
                    machine.http_done(&mut run.cursor, &instance, result.map_err(|e| activity_message(&e)));
                }
                Effect::Screen { instance, view } => {
                    publish_state(ctx, &mut run, WorkflowStatus::Waiting, Some(view.clone()), None, None).await;
                    loop {
                        let cmd = next_command(ctx).await?;
                        match cmd {
                            Command::Resume {
                                request_id,
                                seq,
                                view_response,
                                callback,
                            } => {
                                if seq.is_some_and(|s| s != run.seq) {
                                    reject(
                                        ctx,
                                        &run,
                                        &request_id,
                                        409,
                                        "stale_screen",
                                        format!(
                                            "this answer is for screen seq {}, the workflow is at seq {}",
                                            seq.unwrap_or_default(),
                                            run.seq
                                        ),
                                        vec![],
                                    )
                                    .await;
                                    continue;
                                }
                                match machine.answer(&mut run.cursor, &instance, &view, &view_response) {
                                    Ok(()) => {
                                        run.answering = Some(request_id);
                                        if callback.is_some() {
                                            run.input.callback = callback;
                                        }
                                        break;
                                    }
                                    Err(details) => {
                                        reject(
                                            ctx,
                                            &run,
                                            &request_id,
                                            422,
                                            "invalid_answer",
                                            "the answer does not fit the screen".into(),
                                            details,
                                        )
                                        .await;
                                    }
                                }
                            }
                            Command::Execute {
                                request_id,
                                node,
                                parameters,
                            } => {
                                execute_node(ctx, &machine, &mut run, request_id, node, parameters).await;
                            }
                        }
                    }
                }
                Effect::Wait {
                    instance,
                    duration_ms,
                    until_ms,
                } => {
                    publish_state(ctx, &mut run, WorkflowStatus::SchedulerWaiting, None, None, None).await;
                    let now_ms = ctx
                        .workflow_time()
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .map(|d| d.as_millis() as i64)
                        .unwrap_or_default();
                    let ms = duration_ms.unwrap_or_else(|| until_ms.map(|u| (u - now_ms).max(0) as u64).unwrap_or(0));
                    let timer = ctx.timer(Duration::from_millis(ms.max(1)));
                    futures::pin_mut!(timer);
                    loop {
                        let cmd = temporalio_sdk::workflows::select! {
                            _ = &mut timer => None,
                            c = next_command(ctx).fuse() => Some(c?),
                        };
                        match cmd {
                            None => break,
                            Some(Command::Execute {
                                request_id,
                                node,
                                parameters,
                            }) => {
                                execute_node(ctx, &machine, &mut run, request_id, node, parameters).await;
                            }
                            Some(Command::Resume { request_id, .. }) => {
                                reject(
                                    ctx,
                                    &run,
                                    &request_id,
                                    409,
                                    "not_waiting",
                                    "the workflow is waiting on a timer, not for input".into(),
                                    vec![],
                                )
                                .await;
                            }
                        }
                    }
                    machine.effect_done(&mut run.cursor, &instance, json!({"firedAt": ctx.workflow_time().map(|t| chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339())}));
                }
                Effect::Child {
                    instance,
                    workflow,
                    version,
                    params,
                } => {
                    let output = start_child(ctx, &run, &instance, &workflow, version.as_deref(), params).await;
                    match output {
                        Ok(out) => machine.effect_done(&mut run.cursor, &instance, out),
                        Err(msg) => machine.http_done(&mut run.cursor, &instance, Err(msg)),
                    }
                }
                Effect::End {
                    status,
                    disposition,
                    error_message,
                } => {
                    let st = match status {
                        EndStatus::Completed => WorkflowStatus::Completed,
                        EndStatus::Failed => WorkflowStatus::Failed,
                    };
                    // Commands that raced the end get an answer rather than a timeout.
                    let pending: Vec<Command> = ctx.state_mut(|s| s.inbox.drain(..).collect());
                    publish_state(ctx, &mut run, st, None, disposition.clone(), error_message.clone()).await;
                    for c in pending {
                        reject(
                            ctx,
                            &run,
                            c.request_id(),
                            409,
                            "not_waiting",
                            "the workflow has ended".into(),
                            vec![],
                        )
                        .await;
                    }
                    return Ok(json!({"status": st, "disposition": disposition, "errorMessage": error_message}));
                }
            }
        }
    }

    #[signal(name = "command")]
    pub fn command(&mut self, _ctx: &mut SyncWorkflowContext<Self>, cmd: Command) {
        self.inbox.push_back(cmd);
    }

    #[query(name = "state")]
    pub fn state(&self, _ctx: &WorkflowContextView) -> Option<WorkflowState> {
        self.last.clone()
    }
}

async fn next_command(ctx: &WorkflowContext<DriftWorkflow>) -> WorkflowResult<Command> {
    ctx.wait_condition(|s| !s.inbox.is_empty()).await?;
    Ok(ctx.state_mut(|s| s.inbox.pop_front()).expect("inbox has a command"))
}

fn activity_message(e: &temporalio_common::error::ActivityExecutionError) -> String {
    let mut msg = e.to_string();
    let mut cause = e.failure().and_then(|f| f.cause.as_deref());
    while let Some(c) = cause {
        if !c.message.is_empty() {
            msg = c.message.clone();
        }
        cause = c.cause.as_deref();
    }
    msg
}

/// An HTTP node's activity options: its timeout per attempt and its retry policy, whether it
/// runs on the flow or as a disconnected node.
fn http_activity_options(request: &crate::engine::HttpRequest, retry: &crate::dsl::RetryPolicy) -> ActivityOptions {
    ActivityOptions::with_close_timeouts(ActivityCloseTimeouts::ScheduleAndStartToClose {
        schedule_to_close: Duration::from_millis(
            request
                .timeout_ms
                .saturating_mul(retry.max_attempts as u64)
                .saturating_add(60_000),
        ),
        start_to_close: Duration::from_millis(request.timeout_ms + 1_000),
    })
    .retry_policy(
        TRetry::builder()
            .initial_interval(Duration::from_millis(retry.initial_interval_ms))
            .backoff_coefficient(retry.backoff_coefficient.max(1.0))
            .maximum_interval(Duration::from_millis(retry.max_interval_ms))
            .maximum_attempts(retry.max_attempts)
            .build(),
    )
    .build()
}

fn publish_options() -> LocalActivityOptions {
    LocalActivityOptions::builder()
        .start_to_close_timeout(Duration::from_secs(5))
        // Redis being away must not lose a state: keep trying, with backoff.
        .retry_policy(
            TRetry::builder()
                .initial_interval(Duration::from_millis(50))
                .backoff_coefficient(2.0)
                .maximum_interval(Duration::from_secs(5))
                .maximum_attempts(0)
                .build(),
        )
        .build()
}

async fn send<B: Serialize>(ctx: &WorkflowContext<DriftWorkflow>, keys: &RedisKeys, env: &Envelope<B>, store: bool) {
    let input = PublishInput {
        keys: keys.clone(),
        seq: env.seq,
        message: serde_json::to_string(env).expect("envelope serializes"),
        store,
    };
    // With unlimited retries this only fails if the workflow is cancelled or terminated.
    let _ = ctx
        .execute_local_activity(DriftActivities::publish, input, publish_options())
        .await;
}

async fn publish_state(
    ctx: &WorkflowContext<DriftWorkflow>,
    run: &mut Run,
    status: WorkflowStatus,
    view: Option<View>,
    disposition: Option<Value>,
    error_message: Option<String>,
) {
    run.seq += 1;
    let state = WorkflowState {
        workflow_id: run.input.workflow_id.clone(),
        workflow_status: status,
        seq: run.seq,
        view,
        disposition,
        error_message,
        request_id: run.answering.take(),
        links: Links::for_workflow(&run.input.workflow_id),
    };
    ctx.state_mut(|s| s.last = Some(state.clone()));
    let body = run
        .input
        .callback
        .is_some()
        .then(|| serde_json::to_string(&state).expect("state serializes"));
    let env = Envelope {
        kind: MessageKind::State,
        seq: run.seq,
        request_id: state.request_id.clone(),
        terminal: status.is_terminal(),
        body: state,
    };
    send(ctx, &run.input.keys, &env, true).await;
    if let Some(body) = body {
        notify(ctx, run, status.is_terminal(), body).await;
    }
}

/// Hands a state to this workflow's delivery workflow (started on first use). Only the
/// hand-over is awaited, never the receiver.
async fn notify(ctx: &WorkflowContext<DriftWorkflow>, run: &mut Run, terminal: bool, body: String) {
    let Some(cb) = run.input.callback.clone() else { return };
    let id = deliveries_id(&run.input.tenant, &run.input.workflow_id);
    if !run.input.deliveries_started {
        let opts = ChildWorkflowOptions::builder()
            .workflow_id(id.clone())
            .parent_close_policy(ParentClosePolicy::Abandon)
            .build();
        if let Err(e) = ctx
            .start_child_workflow(DeliveryWorkflow::run, DeliveryState::default(), opts)
            .await
        {
            // Already running (e.g. started before a continue-as-new): signal it all the same.
            tracing::debug!(error = %e, "delivery workflow start");
        }
        run.input.deliveries_started = true;
    }
    let d = Delivery {
        callback: Some(cb),
        webhook_id: webhook_id(&run.input.workflow_id, run.seq),
        seq: run.seq,
        terminal,
        body,
        status_key: run.input.keys.deliveries(),
    };
    if let Err(e) = ctx
        .external_workflow(id, None)
        .signal(DeliveryWorkflow::deliver, d, SignalWorkflowOptions::default())
        .await
    {
        tracing::warn!(error = %e, "could not hand a state to the delivery workflow");
    }
}

/// The delivery workflow's id for a workflow.
pub fn deliveries_id(tenant: &str, workflow_id: &str) -> String {
    format!("{tenant}/{workflow_id}/deliveries")
}

/// `webhook-id`: stable per workflow and seq, so receivers can deduplicate retries.
pub fn webhook_id(workflow_id: &str, seq: u64) -> String {
    format!("{workflow_id}:{seq}")
}

#[allow(clippy::too_many_arguments)]
async fn reject(
    ctx: &WorkflowContext<DriftWorkflow>,
    run: &Run,
    request_id: &str,
    status: u16,
    code: &str,
    message: String,
    details: Vec<crate::engine::FieldError>,
) {
    let env = Envelope {
        kind: MessageKind::Rejection,
        seq: run.seq,
        request_id: Some(request_id.to_string()),
        terminal: false,
        body: Rejection {
            status,
            code: code.into(),
            message,
            details,
        },
    };
    send(ctx, &run.input.keys, &env, false).await;
}

/// Runs a disconnected node against the current context and publishes its result to the
/// caller. The flow's position, status and `seq` stay as they are.
async fn execute_node(
    ctx: &WorkflowContext<DriftWorkflow>,
    machine: &Machine<'_>,
    run: &mut Run,
    request_id: String,
    node: String,
    parameters: Option<Value>,
) {
    if !machine.is_executable(&node) {
        let msg = format!("{node:?} is not an HTTP or SCRIPT node of this workflow");
        return reject(ctx, run, &request_id, 422, "not_executable", msg, vec![]).await;
    }
    let outcome = match machine.prepare_execute(&mut run.cursor, &node, parameters.as_ref()) {
        Ok(Prepared::Done(v)) => Ok(v),
        Ok(Prepared::Http { request, retry }) => {
            let opts = http_activity_options(&request, &retry);
            let res = ctx.execute_activity(DriftActivities::http_call, request, opts).await;
            machine.finish_execute(&mut run.cursor, &node, res.map_err(|e| activity_message(&e)))
        }
        Err(e) => Err(e),
    };
    let body = match outcome {
        Ok(response) => NodeResult {
            workflow_id: run.input.workflow_id.clone(),
            node,
            status: "SUCCESS".into(),
            response,
        },
        Err(msg) => NodeResult {
            workflow_id: run.input.workflow_id.clone(),
            node,
            status: "FAILED".into(),
            response: json!({"error": msg}),
        },
    };
    let env = Envelope {
        kind: MessageKind::Result,
        seq: run.seq,
        request_id: Some(request_id),
        terminal: false,
        body,
    };
    send(ctx, &run.input.keys, &env, false).await;
}

/// Starts a CHILD node's workflow (abandoned on parent close: the parent goes on).
async fn start_child(
    ctx: &WorkflowContext<DriftWorkflow>,
    run: &Run,
    instance: &str,
    workflow: &str,
    _version: Option<&str>,
    params: Value,
) -> Result<Value, String> {
    let def = run
        .input
        .children
        .get(workflow)
        .cloned()
        .ok_or_else(|| format!("child workflow definition {workflow:?} was not pinned at start"))?;
    let n = ctx.history_length();
    let child_public = format!("{}.{instance}.{n}", run.input.workflow_id);
    let scoped = format!("{}/{child_public}", run.input.tenant);
    let input = WorkflowInput {
        definition: def,
        children: run.input.children.clone(),
        workflow_id: child_public.clone(),
        tenant: run.input.tenant.clone(),
        keys: RedisKeys::new(&run.input.key_prefix, &scoped),
        params,
        thread_context: run.input.thread_context.clone(),
        request_id: None,
        cursor: None,
        seq: 0,
        inbox: vec![],
        history_limit: run.input.history_limit,
        key_prefix: run.input.key_prefix.clone(),
        callback: None,
        deliveries_started: false,
    };
    let opts = ChildWorkflowOptions::builder()
        .workflow_id(scoped)
        .parent_close_policy(ParentClosePolicy::Abandon)
        .build();
    ctx.start_child_workflow(DriftWorkflow::run, input, opts)
        .await
        .map_err(|e| format!("child workflow did not start: {e}"))?;
    Ok(json!({"workflowId": child_public}))
}
