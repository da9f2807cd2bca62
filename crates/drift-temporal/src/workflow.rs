//! The one generic workflow type: it executes what the core's session machine decides (the
//! interpreter's effects, screen and timer commands, Back, continue-as-new) with Temporal's
//! timers, activities, signals and children, and publishes every stable state. What a command
//! does is decided in `drift_core::session`; here is only the order of Temporal calls, which
//! the replayed histories in `tests/histories` hold.

use super::activities::DriftActivities;
use super::delivery::{self, Delivery, DeliveryState, DeliveryWorkflow};
use super::payload::Json;
use drift_bus::{Publication, Publisher};
use drift_core::domain::{Command, Rejection, RequestId, WorkflowState, WorkflowStatus};
use drift_core::engine::{Effect, EndStatus, Machine, OverBudget, View};
use drift_core::links::LinkDue;
use drift_core::session::{Execution, Inbox, OnScreen, OnTimer, Session, timer_fires_at};
use futures::FutureExt;
use serde_json::{Value, json};
use std::time::Duration;
use temporalio_common::{ActivityCloseTimeouts, RetryPolicy as TRetry};
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    ActivityOptions, ChildWorkflowOptions, ContinueAsNewOptions, LocalActivityOptions, ParentClosePolicy,
    SignalWorkflowOptions, SyncWorkflowContext, WorkflowContext, WorkflowContextView, WorkflowResult,
};

pub use drift_core::session::WorkflowInput;

#[workflow]
#[derive(Default)]
pub struct DriftWorkflow {
    /// Commands not handled yet, and the request ids taken (to drop retries).
    inbox: Inbox,
    /// The last published state, for the `state` query.
    last: Option<WorkflowState>,
    /// The status the run last set in its search attributes (see `index`).
    indexed: Option<WorkflowStatus>,
    /// The screen a lean run's start attributes say it waits on, until its first wait.
    first_wait: Option<String>,
}

/// Whether the history is as long as a run should get: time to continue as new.
fn over_budget(ctx: &WorkflowContext<DriftWorkflow>, run: &Session) -> bool {
    ctx.history_length() >= run.start.history_limit || ctx.continue_as_new_suggested()
}

/// Continues as new with what the session carries (see `Session::carry_over`). Returns,
/// instead of continuing, why the run cannot go on when that would not fit its carry budget.
fn continue_as_new(ctx: &WorkflowContext<DriftWorkflow>, run: &Session) -> WorkflowResult<OverBudget> {
    let carried = match ctx.state(|s| run.carry_over(&s.inbox)) {
        Ok(carried) => carried,
        Err(over) => return Ok(over),
    };
    if carried.let_go > 0 {
        tracing::warn!(
            workflow = %run.scoped, let_go = carried.let_go, kept = carried.kept,
            "Back's oldest screens let go to fit the carry budget"
        );
    }
    // Carried: the next run takes them.
    ctx.state_mut(|s| s.inbox.carried());
    match ctx.continue_as_new(Json(carried.input), ContinueAsNewOptions::default())? {}
}

#[workflow_methods]
impl DriftWorkflow {
    #[run(name = "drift")]
    pub async fn run(ctx: &mut WorkflowContext<Self>, Json(input): Json<WorkflowInput>) -> WorkflowResult<Value> {
        // A run that begins on a replay is being rebuilt from its history: its worker no longer
        // held it (it fell out of the cache, or the worker restarted). Operators size
        // `--worker-cached-workflows` by this.
        if ctx.is_replaying() {
            let task_queue = ctx.info().task_queue().to_string();
            metrics::counter!(drift_core::metrics::WORKFLOW_REPLAYS.name, "task_queue" => task_queue).increment(1);
        }
        // A first run set RUNNING at its start; a continued one says again what it does.
        let continued = input.carry.is_some();
        let (mut run, inbox) = Session::new(input);
        if !continued {
            let first_wait = run.start.first_screen().map(String::from);
            ctx.state_mut(|s| {
                s.indexed = Some(WorkflowStatus::Running);
                s.first_wait = first_wait;
            });
        }
        // Signals delivered with the run's first task are in the inbox already: keep them.
        ctx.state_mut(|s| s.inbox.extend(inbox));
        // The machine borrows the definition while the run changes around it: the start's
        // shared copy (see `dsl::shared`), not one of its own.
        let def = run.start.definition.clone();
        let machine = Machine::new(&def).with_budgets(run.start.budgets);
        loop {
            if over_budget(ctx, &run) {
                let over = continue_as_new(ctx, &run)?;
                return Ok(fail(ctx, &mut run, over).await);
            }
            let (effect, reopened) = run.next_effect(&machine);
            match effect {
                Effect::Http {
                    instance,
                    request,
                    retry,
                } => {
                    index(ctx, &run, WorkflowStatus::Running, None);
                    let opts = http_activity_options(&request, &retry);
                    let result = ctx.execute_activity(DriftActivities::http_call, request, opts).await;
                    run.http_done(&machine, instance, result.map_err(|e| activity_message(&e)));
                }
                Effect::Screen {
                    instance,
                    view,
                    timeout_ms,
                } => {
                    run.screen_shown(reopened, timeout_ms, now_ms(ctx));
                    let shown = match reopened {
                        true => Ok(()),
                        false => publish_state(ctx, &mut run, WorkflowStatus::Waiting, Some(view.clone())).await,
                    };
                    let over = match shown {
                        Ok(()) => on_screen(ctx, &machine, &mut run, instance, view).await?,
                        Err(over) => Some(over),
                    };
                    if let Some(over) = over {
                        return Ok(fail(ctx, &mut run, over).await);
                    }
                }
                Effect::Wait {
                    instance,
                    duration_ms,
                    until_ms,
                } => {
                    let shown = match reopened {
                        true => Ok(()),
                        false => publish_state(ctx, &mut run, WorkflowStatus::SchedulerWaiting, None).await,
                    };
                    let over = match shown {
                        Ok(()) => on_timer(ctx, &machine, &mut run, instance, duration_ms, until_ms).await?,
                        Err(over) => Some(over),
                    };
                    if let Some(over) = over {
                        return Ok(fail(ctx, &mut run, over).await);
                    }
                }
                Effect::Child {
                    instance,
                    workflow,
                    params,
                    ..
                } => {
                    index(ctx, &run, WorkflowStatus::Running, None);
                    let started = start_child(ctx, &run, &instance, &workflow, params).await;
                    run.child_done(&machine, instance, started);
                }
                Effect::End {
                    status,
                    disposition,
                    error_message,
                } => return Ok(end(ctx, &mut run, status, disposition, error_message).await),
            }
        }
    }

    #[signal(name = "command")]
    pub fn command(&mut self, _ctx: &mut SyncWorkflowContext<Self>, Json(cmd): Json<Command>) {
        // A retry of a command already taken is dropped: its answer is (or will be) published once.
        self.inbox.offer(cmd);
    }

    #[query(name = "state")]
    pub fn state(&self, _ctx: &WorkflowContextView) -> Option<WorkflowState> {
        self.last.clone()
    }
}

async fn next_command(ctx: &WorkflowContext<DriftWorkflow>) -> WorkflowResult<Command> {
    ctx.wait_condition(|s| !s.inbox.is_empty()).await?;
    Ok(ctx.state_mut(|s| s.inbox.pop()).expect("inbox has a command"))
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
fn http_activity_options(
    request: &drift_core::engine::HttpRequest,
    retry: &drift_core::dsl::RetryPolicy,
) -> ActivityOptions {
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

thread_local! {
    /// The publisher of the worker whose thread runs this workflow code (each worker has a
    /// thread of its own), for the early hand-over in `send`.
    static EARLY: std::cell::RefCell<Option<Publisher>> = const { std::cell::RefCell::new(None) };
}

/// Lets workflow code on this worker thread hand its states to `publisher` at once.
pub(crate) fn publish_early_with(publisher: Publisher) {
    EARLY.with(|e| *e.borrow_mut() = Some(publisher));
}

/// How long an early hand-over may take before it is left to the local activity.
const EARLY_WAIT: Duration = Duration::from_secs(2);

async fn send(ctx: &WorkflowContext<DriftWorkflow>, p: Publication) {
    // With traces on, the publish is a span under the run's (its ids come from the workflow's
    // random stream, so a replay names the same span and exports none), and the message
    // carries it: each delivery of it, on any gateway, joins the trace.
    let mut span = drift_bus::trace::enabled().then(|| {
        use opentelemetry::KeyValue;
        drift_bus::trace::start(
            "publish",
            opentelemetry::trace::SpanKind::Producer,
            &opentelemetry::Context::current(),
            vec![
                KeyValue::new("drift.workflow", p.workflow.to_string()),
                KeyValue::new("drift.seq", p.seq as i64),
                KeyValue::new("drift.stored", p.store),
            ],
        )
    });
    let p = match &span {
        Some(cx) => p.traced(drift_bus::trace::traceparent(cx)),
        None => p,
    };
    // The waiting caller gets the message as soon as the workflow has made it: handed to the
    // publisher now, ahead of the local activity (its dispatch costs about half a millisecond
    // on every state). The activity stays the publish of record, retried until Redis takes
    // it: it waits for the hand-over and, when that stored the state, runs no script of its
    // own (one Redis script per state); a hand-over that failed or timed out leaves the state
    // to it, and whichever script comes second finds the state stored. Not on replay:
    // those messages went out the first time. Only states: an answer that is not stored would
    // go out twice.
    if p.store
        && !ctx.is_replaying()
        && let Some(publisher) = EARLY.with(|e| e.borrow().clone())
    {
        let handed = publisher.hand_over(&p);
        let span = span.take();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(EARLY_WAIT, handed).await;
            drop(span);
        });
    }
    // With unlimited retries this only fails if the workflow is cancelled or terminated.
    let _ = ctx
        .execute_local_activity(DriftActivities::publish, Json(p), publish_options())
        .await;
    drop(span);
}

/// Publishes a stable state (and hands it to the webhook deliveries), unless it is over the
/// run's state budget: then nothing is published, and the caller ends the run.
async fn publish_state(
    ctx: &WorkflowContext<DriftWorkflow>,
    run: &mut Session,
    status: WorkflowStatus,
    view: Option<View>,
) -> Result<(), OverBudget> {
    let state = run.state(status, view)?;
    publish(ctx, run, state).await;
    Ok(())
}

/// Publishes `state` as the run's next one: it takes the next seq and answers the pending
/// command.
async fn publish(ctx: &WorkflowContext<DriftWorkflow>, run: &mut Session, state: WorkflowState) {
    run.published(&state);
    ctx.state_mut(|s| s.last = Some(state.clone()));
    let link = run.answer_link(&state, now_ms(ctx));
    send(ctx, Publication::state(&run.scoped, &state).with_answer_link(link)).await;
    if run.callback.is_some() {
        notify(ctx, run, &state, link).await;
    }
    index(ctx, run, state.workflow_status, state.node.as_deref());
}

/// Keeps the run's status, and the node it waits on since when, in its search attributes for
/// the runs list: on each wait, on its end, and when it goes back to running a node (not on
/// every step). Only in runs started with the attributes registered: decided at start, so every
/// replay of the run issues the same commands. Each upsert is a visibility write in Temporal:
/// a lean run skips the first wait its start attributes already say, and a COMPLETED end.
fn index(ctx: &WorkflowContext<DriftWorkflow>, run: &Session, status: WorkflowStatus, node: Option<&str>) {
    use crate::search::{STATUS, WAITING_ON, WAITING_SINCE, timestamp};
    if !run.start.runs_indexed {
        return;
    }
    let waiting = matches!(status, WorkflowStatus::Waiting | WorkflowStatus::SchedulerWaiting);
    let (before, first_wait) = ctx.state_mut(|s| (s.indexed.replace(status), s.first_wait.take()));
    if !waiting && before == Some(status) {
        return;
    }
    let said_at_start = waiting && first_wait.is_some() && first_wait.as_deref() == node;
    let completed = run.start.lean_index && status == WorkflowStatus::Completed;
    if said_at_start || completed {
        return;
    }
    let mut updates = vec![STATUS.value_set(status.to_string())];
    // Not unset when the run moves on: the server refuses an unset Datetime (the task would
    // fail, and the run stand still), and every query and summary reads them with the status.
    if let Some(n) = node.filter(|_| waiting) {
        updates.push(WAITING_ON.value_set(n.to_string()));
        updates.push(WAITING_SINCE.value_set(timestamp(now_ms(ctx))));
    }
    ctx.upsert_search_attributes(updates);
}

/// Hands a state to this workflow's delivery workflow (started on first use). Only the
/// hand-over is awaited, never the receiver.
async fn notify(ctx: &WorkflowContext<DriftWorkflow>, run: &mut Session, state: &WorkflowState, link: Option<LinkDue>) {
    let Some(cb) = run.callback.clone() else { return };
    let id = delivery::workflow_id(&run.scoped);
    let d = Delivery::of(Some(cb), &run.scoped, &run.start.tenant, Some(&run.start.run), state).with_answer_link(link);
    // The delivery workflow of this id may be one an earlier run started that is just ending
    // (its last state delivered): when the hand-over finds it gone, start a new one and retry.
    for attempt in 0..3 {
        if !run.deliveries_started || attempt > 0 {
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
            run.deliveries_started = true;
        }
        match ctx
            .external_workflow(id.clone(), None)
            .signal(DeliveryWorkflow::deliver, d.clone(), SignalWorkflowOptions::default())
            .await
        {
            Ok(_) => return,
            Err(e) => tracing::warn!(error = %e, attempt, "could not hand a state to the delivery workflow"),
        }
    }
}

/// The workflow's clock (replays read the same), in ms since epoch.
fn now_ms(ctx: &WorkflowContext<DriftWorkflow>) -> i64 {
    ctx.workflow_time()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// Waits on a published screen for a valid answer (rejecting the others), running execute-node
/// commands meanwhile, until it is answered or its `timeoutMs` (a durable timer) passes. `Some`
/// when the run cannot go on within its budgets (the caller ends it).
async fn on_screen(
    ctx: &WorkflowContext<DriftWorkflow>,
    machine: &Machine<'_>,
    run: &mut Session,
    instance: String,
    view: View,
) -> WorkflowResult<Option<OverBudget>> {
    let left_ms = run.screen_left_ms(now_ms(ctx));
    let deadline = async {
        match left_ms {
            Some(ms) => {
                let _ = ctx.timer(Duration::from_millis(ms)).await;
            }
            None => std::future::pending::<()>().await,
        }
    }
    .fuse();
    futures::pin_mut!(deadline);
    loop {
        // Many commands on one screen (execute-node calls) must not exhaust the history:
        // continue as new, still waiting on this screen.
        if over_budget(ctx, run) {
            run.hold_screen(&instance, &view);
            return Ok(Some(continue_as_new(ctx, run)?));
        }
        let cmd = temporalio_sdk::workflows::select! {
            _ = &mut deadline => None,
            c = next_command(ctx).fuse() => Some(c?),
        };
        let Some(cmd) = cmd else {
            run.screen_timed_out(machine, &instance);
            return Ok(None);
        };
        match run.on_screen(machine, &instance, &view, cmd, now_ms(ctx)) {
            OnScreen::Answered => return Ok(None),
            OnScreen::Reject(request_id, r) => reject(ctx, run, &request_id, &r).await,
            OnScreen::WentBack(view) => {
                // The main loop waits on it again, as published.
                return Ok(publish_state(ctx, run, WorkflowStatus::Waiting, Some(view)).await.err());
            }
            OnScreen::Execute {
                request_id,
                node,
                parameters,
            } => execute_node(ctx, machine, run, request_id, node, parameters).await,
        }
    }
}

/// Waits on a published timer (a duration, or until a time), running execute-node commands
/// meanwhile; an answer to a screen is refused. `Some` when the run cannot go on within its
/// budgets.
async fn on_timer(
    ctx: &WorkflowContext<DriftWorkflow>,
    machine: &Machine<'_>,
    run: &mut Session,
    instance: String,
    duration_ms: Option<u64>,
    until_ms: Option<i64>,
) -> WorkflowResult<Option<OverBudget>> {
    let now_ms = now_ms(ctx);
    let fires_at = timer_fires_at(duration_ms, until_ms, now_ms);
    let timer = ctx.timer(Duration::from_millis((fires_at - now_ms).max(1) as u64));
    futures::pin_mut!(timer);
    loop {
        // Commands during a long wait must not exhaust the history either.
        if over_budget(ctx, run) {
            run.hold_timer(&instance, fires_at);
            return Ok(Some(continue_as_new(ctx, run)?));
        }
        let cmd = temporalio_sdk::workflows::select! {
            _ = &mut timer => None,
            c = next_command(ctx).fuse() => Some(c?),
        };
        let Some(cmd) = cmd else { break };
        match run.on_timer(cmd) {
            OnTimer::Execute {
                request_id,
                node,
                parameters,
            } => execute_node(ctx, machine, run, request_id, node, parameters).await,
            OnTimer::Reject(request_id, r) => reject(ctx, run, &request_id, &r).await,
        }
    }
    let fired_at = ctx
        .workflow_time()
        .map(|t| chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339());
    run.timer_fired(machine, &instance, fired_at);
    Ok(None)
}

/// Publishes the end state, answers commands that raced it, and gives the run's result.
async fn end(
    ctx: &WorkflowContext<DriftWorkflow>,
    run: &mut Session,
    status: EndStatus,
    disposition: Option<Value>,
    error_message: Option<String>,
) -> Value {
    let pending: Vec<Command> = ctx.state_mut(|s| s.inbox.drain());
    let ending = run.ending(status, disposition, error_message);
    if let Some(over) = &ending.over {
        over_budget_seen(run, over);
    }
    let result = ending.result();
    let st = ending.state.workflow_status;
    publish(ctx, run, ending.state).await;
    for c in pending {
        reject(ctx, run, c.request_id(), &Rejection::NotWaiting { status: st }).await;
    }
    result
}

/// Ends a run that would go over one of its budgets: FAILED, naming the node and the budget.
async fn fail(ctx: &WorkflowContext<DriftWorkflow>, run: &mut Session, over: OverBudget) -> Value {
    over_budget_seen(run, &over);
    end(ctx, run, EndStatus::Failed, None, Some(over.to_string())).await
}

fn over_budget_seen(run: &Session, over: &OverBudget) {
    tracing::warn!(workflow = %run.scoped, error = %over, "run ends: over a budget");
}

async fn reject(ctx: &WorkflowContext<DriftWorkflow>, run: &Session, request_id: &RequestId, r: &Rejection) {
    send(ctx, Publication::rejection(&run.scoped, run.seq, request_id, r)).await;
}

/// Runs a disconnected node against the current context and publishes its result to the
/// caller. The flow's position, status and `seq` stay as they are.
async fn execute_node(
    ctx: &WorkflowContext<DriftWorkflow>,
    machine: &Machine<'_>,
    run: &mut Session,
    request_id: RequestId,
    node: String,
    parameters: Option<Value>,
) {
    let result = match run.execute(machine, &node, parameters.as_ref()) {
        Execution::Reject(r) => return reject(ctx, run, &request_id, &r).await,
        Execution::Done(result) => result,
        Execution::Http { request, retry } => {
            let opts = http_activity_options(&request, &retry);
            let res = ctx.execute_activity(DriftActivities::http_call, request, opts).await;
            run.executed(machine, &node, res.map_err(|e| activity_message(&e)))
        }
    };
    send(ctx, Publication::result(&run.scoped, run.seq, &request_id, &result)).await;
}

/// Starts a CHILD node's workflow (abandoned on parent close: the parent goes on).
async fn start_child(
    ctx: &WorkflowContext<DriftWorkflow>,
    run: &Session,
    instance: &str,
    workflow: &str,
    params: Value,
) -> Result<Value, String> {
    let child = run.child_start(instance, workflow, params, ctx.history_length() as u64)?;
    let mut opts = ChildWorkflowOptions::builder()
        .workflow_id(child.scoped.to_string())
        .parent_close_policy(ParentClosePolicy::Abandon)
        .build();
    if child.input.start.runs_indexed {
        opts.search_attributes = Some(crate::search::at_start(&child.input.start, now_ms(ctx)));
    }
    ctx.start_child_workflow(DriftWorkflow::run, Json(child.input), opts)
        .await
        .map_err(|e| format!("child workflow did not start: {e}"))?;
    Ok(json!({"workflowId": child.workflow_id}))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use drift_core::domain::{TenantId, WorkflowId, WorkflowStart};
    use drift_core::dsl::Definition;

    /// A caller's start of `wf-1` for tenant `t`: default budgets, no callback, no search attributes.
    pub(crate) fn a_start(definition: Definition) -> WorkflowStart {
        WorkflowStart {
            definition: definition.into(),
            children: Default::default(),
            workflow_id: WorkflowId::parse("wf-1").unwrap(),
            tenant: TenantId::parse("t").unwrap(),
            params: json!({}),
            thread_context: json!({}),
            request_id: None,
            callback: None,
            history_limit: 100,
            run: "r".into(),
            seq_base: 0,
            execution_timeout_ms: None,
            budgets: drift_core::engine::Budgets::default(),
            depth: 0,
            runs_indexed: false,
            lean_index: false,
        }
    }

    #[test]
    fn a_workflow_started_before_the_layout_change_reads_its_input_and_names_no_key() {
        let def: Definition = serde_json::from_value(json!({
            "id": "w", "startNode": "done", "states": {"done": {"node": {"type": "SUCCESS"}}}
        }))
        .unwrap();
        let input = WorkflowInput {
            start: a_start(def),
            carry: None,
        };
        let mut wire = serde_json::to_value(&input).unwrap();
        assert!(wire.get("keyPrefix").is_none(), "no key names on the wire: {wire}");
        // As gateways before the change wrote it: the start named the deployment's key prefix.
        wire["keyPrefix"] = json!("drift");
        let old: WorkflowInput = serde_json::from_value(wire).unwrap();
        assert_eq!(old, input);
        // What it publishes names the workflow only; the worker's layout makes the keys.
        let p = Publication::state(
            &old.start.scoped_id(),
            &WorkflowState::bare("wf-1", WorkflowStatus::Waiting, 1),
        );
        let wire = serde_json::to_value(&p).unwrap();
        assert_eq!(wire["workflow"], "t/wf-1");
        assert!(wire.get("keys").is_none(), "{wire}");
    }
}
