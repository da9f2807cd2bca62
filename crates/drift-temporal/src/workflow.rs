//! The one generic workflow type: it runs the pure interpreter, performs the effects it asks
//! for, publishes every stable state and answers commands (resume, execute-node) that arrive
//! as signals. It speaks only domain terms: a refused command is a `Rejection`, never a status.

use super::activities::DriftActivities;
use super::delivery::{self, Delivery, DeliveryState, DeliveryWorkflow};
use drift_bus::{Publication, Publisher};
use drift_core::domain::{
    BackBlock, Callback, Command, NodeOutcome, NodeResult, Rejection, RequestId, ScopedWorkflowId, WorkflowId,
    WorkflowStart, WorkflowState, WorkflowStatus,
};
use drift_core::dsl::Definition;
use drift_core::engine::back::{BackPoint, BackStack, drop_to_fit};
use drift_core::engine::{
    Budget, Cursor, Effect, EndStatus, Machine, Measured, NodeError, OverBudget, Prepared, View, initial_context,
    json_len,
};
use futures::FutureExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;
use temporalio_common::{ActivityCloseTimeouts, RetryPolicy as TRetry};
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    ActivityOptions, ChildWorkflowOptions, ContinueAsNewOptions, LocalActivityOptions, ParentClosePolicy,
    SignalWorkflowOptions, SyncWorkflowContext, WorkflowContext, WorkflowContextView, WorkflowResult,
};

/// The workflow's input: the start, plus what a continued-as-new run carries over.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowInput {
    #[serde(flatten)]
    pub start: WorkflowStart,
    #[serde(default)]
    pub carry: Option<Carry>,
}

/// Where a run was when it continued as new.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Carry {
    cursor: Cursor,
    seq: u64,
    answering: Option<RequestId>,
    inbox: Vec<Command>,
    callback: Option<Callback>,
    deliveries_started: bool,
    /// Request ids taken recently, so a retried command is applied once.
    #[serde(default)]
    taken: Vec<RequestId>,
    /// A screen the run was waiting on (already published): the next run waits on it again.
    #[serde(default)]
    open_screen: Option<(String, View)>,
    /// When that screen's `timeoutMs` runs out (ms since epoch): its deadline, not restarted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    open_screen_deadline: Option<i64>,
    /// A timer the run was waiting on (already published), with when it fires (ms since epoch).
    #[serde(default)]
    open_timer: Option<(String, i64)>,
    /// The screens Back may return to, each as what changed (see `BackStack::carried`).
    #[serde(default)]
    back: Vec<BackPoint>,
    /// Older screens were let go: Back stops short of the first one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    back_dropped: bool,
    #[serde(default)]
    back_blocked_by: Option<String>,
}

/// How many recent request ids a workflow remembers.
const TAKEN_KEPT: usize = 256;

#[workflow]
#[derive(Default)]
pub struct DriftWorkflow {
    inbox: VecDeque<Command>,
    /// Request ids of commands already taken (bounded), to drop retries.
    taken: VecDeque<RequestId>,
    /// The last published state, for the `state` query.
    last: Option<WorkflowState>,
}

/// Everything the run loop carries between nodes (and across continue-as-new).
struct Run {
    start: WorkflowStart,
    /// `tenant/workflowId`: what its publications name (the worker knows the keys).
    scoped: ScopedWorkflowId,
    cursor: Cursor,
    seq: u64,
    /// The command whose answer the next published state is.
    answering: Option<RequestId>,
    callback: Option<Callback>,
    deliveries_started: bool,
    open_screen: Option<(String, View)>,
    /// When the screen shown now stops waiting for an answer (its `timeoutMs`), ms since epoch.
    screen_deadline: Option<i64>,
    open_timer: Option<(String, i64)>,
    back: BackStack,
    /// The HTTP or CHILD node run since the last screen answered (Back cannot cross it).
    back_blocked_by: Option<String>,
    /// The answer the next published screen had before (it was returned to with Back).
    prefill: Option<Value>,
    /// The screens whose definition forbids Back from them (`"back": false`).
    no_back: BTreeSet<String>,
}

/// Whether the history is as long as a run should get: time to continue as new.
fn over_budget(ctx: &WorkflowContext<DriftWorkflow>, run: &Run) -> bool {
    ctx.history_length() >= run.start.history_limit || ctx.continue_as_new_suggested()
}

/// Continues as new, carrying the run's definition and position, unhandled commands and recent
/// request ids, within the run's carry budget: the oldest of Back's screens are let go until it
/// fits. Returns, instead of continuing, why the run cannot go on when it would not fit even
/// without them (Temporal would refuse the input, and the run would never move again).
fn continue_as_new(ctx: &WorkflowContext<DriftWorkflow>, run: &Run, def: &Definition) -> WorkflowResult<OverBudget> {
    let (inbox, taken) = ctx.state(|s| (s.inbox.iter().cloned().collect(), s.taken.iter().cloned().collect()));
    let mut input = run.carry_over(def, inbox, taken);
    let carry = input.carry.as_mut().expect("carry_over carries");
    let mut back = std::mem::take(&mut carry.back);
    let base = json_len(&input);
    let budgets = &run.start.budgets;
    if let Err(over) = budgets.check(Budget::Carry, &run.cursor.node, Measured::Carry, base) {
        return Ok(over);
    }
    let let_go = drop_to_fit(&mut back, |points| base + json_len(points) <= budgets.carry_bytes);
    if let_go > 0 {
        tracing::warn!(
            workflow = %run.scoped, let_go, kept = back.len(),
            "Back's oldest screens let go to fit the carry budget"
        );
    }
    let carry = input.carry.as_mut().expect("carry_over carries");
    carry.back = back;
    carry.back_dropped |= let_go > 0;
    // Carried: the next run takes them.
    ctx.state_mut(|s| s.inbox.clear());
    match ctx.continue_as_new(input, ContinueAsNewOptions::default())? {}
}

impl Run {
    fn new(input: WorkflowInput) -> (Self, Vec<Command>, Vec<RequestId>) {
        let WorkflowInput { start, carry } = input;
        let scoped = start.scoped_id();
        let carry = carry.unwrap_or_else(|| Carry {
            cursor: Cursor::new(
                initial_context(&start.definition, start.params.clone(), start.thread_context.clone()),
                start.definition.start_node.clone(),
            ),
            seq: start.seq_base,
            answering: start.request_id.clone(),
            inbox: vec![],
            callback: start.callback.clone(),
            deliveries_started: false,
            taken: start.request_id.iter().cloned().collect(),
            open_screen: None,
            open_screen_deadline: None,
            open_timer: None,
            back: vec![],
            back_dropped: false,
            back_blocked_by: None,
        });
        let back = BackStack::carried_in(carry.back, carry.back_dropped, &carry.cursor);
        let run = Run {
            scoped,
            back,
            cursor: carry.cursor,
            seq: carry.seq,
            answering: carry.answering,
            callback: carry.callback,
            deliveries_started: carry.deliveries_started,
            open_screen: carry.open_screen,
            screen_deadline: carry.open_screen_deadline,
            open_timer: carry.open_timer,
            back_blocked_by: carry.back_blocked_by,
            prefill: None,
            no_back: start
                .definition
                .states
                .iter()
                .filter(
                    |(_, e)| matches!(&e.node, Some(drift_core::dsl::Node::Instruction(i)) if i.back == Some(false)),
                )
                .map(|(name, _)| name.clone())
                .collect(),
            start,
        };
        (run, carry.inbox, carry.taken)
    }

    fn carry_over(&self, def: &Definition, inbox: Vec<Command>, taken: Vec<RequestId>) -> WorkflowInput {
        WorkflowInput {
            start: WorkflowStart {
                definition: def.clone(),
                ..self.start.clone()
            },
            carry: Some(Carry {
                cursor: self.cursor.clone(),
                seq: self.seq,
                answering: self.answering.clone(),
                inbox,
                callback: self.callback.clone(),
                deliveries_started: self.deliveries_started,
                taken,
                open_screen: self.open_screen.clone(),
                open_screen_deadline: self.open_screen.as_ref().and(self.screen_deadline),
                open_timer: self.open_timer.clone(),
                back: self.back.carried(&self.cursor),
                back_dropped: self.back.dropped(),
                back_blocked_by: self.back_blocked_by.clone(),
            }),
        }
    }
}

#[workflow_methods]
impl DriftWorkflow {
    #[run(name = "drift")]
    pub async fn run(ctx: &mut WorkflowContext<Self>, input: WorkflowInput) -> WorkflowResult<Value> {
        // A run that begins on a replay is being rebuilt from its history: its worker no longer
        // held it (it fell out of the cache, or the worker restarted). Operators size
        // `--worker-cached-workflows` by this.
        if ctx.is_replaying() {
            let task_queue = ctx.info().task_queue().to_string();
            metrics::counter!(drift_core::metrics::WORKFLOW_REPLAYS.name, "task_queue" => task_queue).increment(1);
        }
        let (mut run, inbox, taken) = Run::new(input);
        ctx.state_mut(|s| {
            s.inbox.extend(inbox);
            s.taken.extend(taken);
        });
        // The machine borrows the definition while the run changes around it. Taken out of the
        // start rather than copied: it is most of what a cached workflow holds in memory.
        let def = std::mem::take(&mut run.start.definition);
        let machine = Machine::new(&def).with_budgets(run.start.budgets);
        loop {
            if over_budget(ctx, &run) {
                let over = continue_as_new(ctx, &run, &def)?;
                return Ok(fail(ctx, &mut run, over).await);
            }
            let (effect, reopened) = run.next_effect(&machine);
            match effect {
                Effect::Http {
                    instance,
                    request,
                    retry,
                } => {
                    let opts = http_activity_options(&request, &retry);
                    let result = ctx.execute_activity(DriftActivities::http_call, request, opts).await;
                    machine.http_done(&mut run.cursor, &instance, result.map_err(|e| activity_message(&e)));
                    run.past_no_return(instance);
                }
                Effect::Screen {
                    instance,
                    view,
                    timeout_ms,
                } => {
                    // A screen shown again after continue-as-new or Back keeps the deadline it
                    // was published with (one carried from before deadlines were kept starts
                    // its timeout again, as it used to).
                    if !reopened || run.screen_deadline.is_none() {
                        run.screen_deadline = deadline_of(ctx, timeout_ms);
                    }
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
                    match start_child(ctx, &run, &instance, &workflow, params).await {
                        Ok(out) => machine.effect_done(&mut run.cursor, &instance, out),
                        Err(msg) => machine.effect_failed(&mut run.cursor, &instance, NodeError::Child(msg)),
                    }
                    run.past_no_return(instance);
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
    pub fn command(&mut self, _ctx: &mut SyncWorkflowContext<Self>, cmd: Command) {
        // A retry of a command already taken: its answer is (or will be) published once.
        if self.taken.contains(cmd.request_id()) {
            return;
        }
        if self.taken.len() >= TAKEN_KEPT {
            self.taken.pop_front();
        }
        self.taken.push_back(cmd.request_id().clone());
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
    // The waiting caller gets the message as soon as the workflow has made it: handed to the
    // publisher now, ahead of the local activity (its dispatch costs about half a millisecond
    // on every state). The activity stays the publish of record, retried until Redis takes
    // it; whichever comes second finds the state stored and publishes nothing. Not on replay:
    // those messages went out the first time. Only states: an answer that is not stored would
    // go out twice.
    if p.store
        && !ctx.is_replaying()
        && let Some(publisher) = EARLY.with(|e| e.borrow().clone())
    {
        let p = p.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(EARLY_WAIT, publisher.hand_over(&p)).await;
        });
    }
    // With unlimited retries this only fails if the workflow is cancelled or terminated.
    let _ = ctx
        .execute_local_activity(DriftActivities::publish, p, publish_options())
        .await;
}

/// Publishes a stable state (and hands it to the webhook deliveries), unless it is over the
/// run's state budget: then nothing is published, and the caller ends the run.
async fn publish_state(
    ctx: &WorkflowContext<DriftWorkflow>,
    run: &mut Run,
    status: WorkflowStatus,
    view: Option<View>,
) -> Result<(), OverBudget> {
    let state = run.next_state(status, view, None, None);
    run.fits(&state)?;
    publish(ctx, run, state).await;
    Ok(())
}

/// Publishes `state` as the run's next one: it takes the next seq and answers the pending
/// command.
async fn publish(ctx: &WorkflowContext<DriftWorkflow>, run: &mut Run, state: WorkflowState) {
    run.seq = state.seq;
    run.cursor.trail.clear();
    run.answering = None;
    run.prefill = None;
    ctx.state_mut(|s| s.last = Some(state.clone()));
    send(ctx, Publication::state(&run.scoped, &state)).await;
    if run.callback.is_some() {
        notify(ctx, run, &state).await;
    }
}

/// Hands a state to this workflow's delivery workflow (started on first use). Only the
/// hand-over is awaited, never the receiver.
async fn notify(ctx: &WorkflowContext<DriftWorkflow>, run: &mut Run, state: &WorkflowState) {
    let Some(cb) = run.callback.clone() else { return };
    let id = delivery::workflow_id(&run.scoped);
    let d = Delivery::of(Some(cb), &run.scoped, &run.start.tenant, Some(&run.start.run), state);
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

impl Run {
    /// An HTTP or CHILD node ran: it is not undone, so Back cannot cross it.
    fn past_no_return(&mut self, node: String) {
        self.back.clear();
        self.back_blocked_by = Some(node);
    }

    /// Why Back cannot apply on `screen` (what stands in the way), or `None` when it can.
    fn back_block(&self, screen: &str) -> Option<(String, BackBlock)> {
        if self.no_back.contains(screen) {
            return Some((screen.to_string(), BackBlock::Forbidden));
        }
        match self.back.is_empty() {
            true => Some(BackBlock::of(
                screen,
                self.back_blocked_by.as_deref(),
                self.back.dropped(),
            )),
            false => None,
        }
    }

    /// Whether `state` keeps to the run's state budget (a backstop: the engine measures
    /// screens and ends before they get here).
    fn fits(&self, state: &WorkflowState) -> Result<(), OverBudget> {
        let node = state.node.as_deref().unwrap_or(&self.cursor.node);
        self.start
            .budgets
            .check(Budget::State, node, Measured::State, json_len(state))
    }

    /// The state the run would publish next (with the next seq), answering the pending command.
    fn next_state(
        &self,
        status: WorkflowStatus,
        view: Option<View>,
        disposition: Option<Value>,
        error_message: Option<String>,
    ) -> WorkflowState {
        let path = self.cursor.trail.clone();
        // On a screen: whether Back can apply, or what stands in the way.
        let block = match (status, &view) {
            (WorkflowStatus::Waiting, Some(v)) => Some(self.back_block(&v.node)),
            _ => None,
        };
        let can_go_back = block.as_ref().is_some_and(Option::is_none);
        let view_deadline = view.as_ref().and(self.screen_deadline);
        let (back_blocked_by, back_dropped) = match block {
            Some(Some((node, BackBlock::Crossed | BackBlock::Forbidden))) => (Some(node), false),
            Some(Some((_, BackBlock::Dropped))) => (None, true),
            _ => (None, false),
        };
        WorkflowState {
            view,
            disposition,
            error_message,
            node: path.last().cloned(),
            path,
            request_id: self.answering.clone().map(String::from),
            can_go_back,
            back_blocked_by,
            back_dropped,
            previous_answer: self.prefill.clone(),
            expires_at: match (status, &view_deadline) {
                (WorkflowStatus::Waiting, Some(at)) => chrono::DateTime::from_timestamp_millis(*at)
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
                _ => None,
            },
            ..WorkflowState::bare(self.start.workflow_id.as_str(), status, self.seq + 1)
        }
    }

    /// The next effect: a screen or timer carried over from the previous run (still open and
    /// published, so `true`), or what the machine asks for.
    fn next_effect(&mut self, machine: &Machine<'_>) -> (Effect, bool) {
        if let Some((instance, until)) = self.open_timer.take() {
            self.open_screen = None;
            let wait = Effect::Wait {
                instance,
                duration_ms: None,
                until_ms: Some(until),
            };
            return (wait, true);
        }
        if let Some((instance, view)) = self.open_screen.take() {
            let timeout_ms = screen_timeout(machine.definition(), &instance);
            let screen = Effect::Screen {
                instance,
                view,
                timeout_ms,
            };
            return (screen, true);
        }
        (machine.next_effect(&mut self.cursor), false)
    }
}

/// The workflow's clock (replays read the same), in ms since epoch.
fn now_ms(ctx: &WorkflowContext<DriftWorkflow>) -> i64 {
    ctx.workflow_time()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// A screen's `timeoutMs`, if it has one.
fn screen_timeout(def: &Definition, instance: &str) -> Option<u64> {
    match def.states.get(instance).and_then(|e| e.node.as_ref()) {
        Some(drift_core::dsl::Node::Instruction(i)) => i.timeout_ms,
        _ => None,
    }
}

/// When a screen published now with `timeout_ms` stops waiting.
fn deadline_of(ctx: &WorkflowContext<DriftWorkflow>, timeout_ms: Option<u64>) -> Option<i64> {
    timeout_ms.map(|ms| now_ms(ctx) + ms.max(1) as i64)
}

/// Waits on a published screen for a valid answer (rejecting the others), running execute-node
/// commands meanwhile, until it is answered or its `timeoutMs` (a durable timer) passes. `Some`
/// when the run cannot go on within its budgets (the caller ends it).
async fn on_screen(
    ctx: &WorkflowContext<DriftWorkflow>,
    machine: &Machine<'_>,
    run: &mut Run,
    instance: String,
    view: View,
) -> WorkflowResult<Option<OverBudget>> {
    let left_ms = run.screen_deadline.map(|at| (at - now_ms(ctx)).max(1) as u64);
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
            run.open_screen = Some((instance.clone(), view.clone()));
            return Ok(Some(continue_as_new(ctx, run, machine.definition())?));
        }
        let cmd = temporalio_sdk::workflows::select! {
            _ = &mut deadline => None,
            c = next_command(ctx).fuse() => Some(c?),
        };
        let Some(cmd) = cmd else {
            machine.screen_timed_out(&mut run.cursor, &instance);
            return Ok(None);
        };
        match cmd {
            Command::Resume {
                request_id,
                seq,
                view_response,
                callback,
            } => {
                // Where Back returns to: the run as it is on this screen, outputs of nodes run
                // from it (execute-node) included.
                let shown = run.cursor.clone();
                let checked = Rejection::check_resume(WorkflowStatus::Waiting, run.seq, seq).and_then(|()| {
                    machine
                        .answer(&mut run.cursor, &instance, &view, &view_response)
                        .map_err(|details| Rejection::InvalidAnswer { details })
                });
                match checked {
                    Ok(()) => {
                        run.answering = Some(request_id);
                        if callback.is_some() {
                            run.callback = callback;
                        }
                        let answer = view_response.get("selectedOptions").cloned().unwrap_or(Value::Null);
                        run.back.push(instance, view, answer, shown);
                        return Ok(None);
                    }
                    Err(r) => reject(ctx, run, &request_id, &r).await,
                }
            }
            Command::Back { request_id, seq } => {
                let checked = Rejection::check_resume(WorkflowStatus::Waiting, run.seq, seq).and_then(|()| {
                    match run.back_block(&instance) {
                        None => Ok(()),
                        Some((node, why)) => Err(Rejection::CannotGoBack { node, why }),
                    }
                });
                match checked {
                    Ok(()) => {
                        let p = run.back.pop().expect("checked: not empty");
                        run.cursor = p.cursor;
                        run.cursor.trail = vec![p.instance.clone()];
                        run.answering = Some(request_id);
                        run.prefill = Some(p.answer);
                        run.screen_deadline = deadline_of(ctx, screen_timeout(machine.definition(), &p.instance));
                        if let Err(over) = publish_state(ctx, run, WorkflowStatus::Waiting, Some(p.view.clone())).await
                        {
                            return Ok(Some(over));
                        }
                        // The main loop waits on it again, as published.
                        run.open_screen = Some((p.instance, p.view));
                        return Ok(None);
                    }
                    Err(r) => reject(ctx, run, &request_id, &r).await,
                }
            }
            Command::Execute {
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
    run: &mut Run,
    instance: String,
    duration_ms: Option<u64>,
    until_ms: Option<i64>,
) -> WorkflowResult<Option<OverBudget>> {
    let now_ms = now_ms(ctx);
    let fires_at = until_ms.unwrap_or(now_ms + duration_ms.unwrap_or(0) as i64);
    let timer = ctx.timer(Duration::from_millis((fires_at - now_ms).max(1) as u64));
    futures::pin_mut!(timer);
    loop {
        // Commands during a long wait must not exhaust the history either.
        if over_budget(ctx, run) {
            run.open_timer = Some((instance.clone(), fires_at));
            return Ok(Some(continue_as_new(ctx, run, machine.definition())?));
        }
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
            }) => execute_node(ctx, machine, run, request_id, node, parameters).await,
            Some(Command::Resume { request_id, .. } | Command::Back { request_id, .. }) => {
                let status = WorkflowStatus::SchedulerWaiting;
                reject(ctx, run, &request_id, &Rejection::NotWaiting { status }).await
            }
        }
    }
    let fired_at = ctx
        .workflow_time()
        .map(|t| chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339());
    machine.effect_done(&mut run.cursor, &instance, json!({ "firedAt": fired_at }));
    Ok(None)
}

/// Publishes the end state, answers commands that raced it, and gives the run's result.
async fn end(
    ctx: &WorkflowContext<DriftWorkflow>,
    run: &mut Run,
    status: EndStatus,
    disposition: Option<Value>,
    error_message: Option<String>,
) -> Value {
    let st = match status {
        EndStatus::Completed => WorkflowStatus::Completed,
        EndStatus::Failed => WorkflowStatus::Failed,
    };
    let pending: Vec<Command> = ctx.state_mut(|s| s.inbox.drain(..).collect());
    let state = run.next_state(st, None, disposition, error_message);
    // An end too large to publish ends the run all the same, as FAILED, saying why.
    let state = match run.fits(&state) {
        Ok(()) => state,
        Err(over) => {
            over_budget_seen(run, &over);
            run.next_state(WorkflowStatus::Failed, None, None, Some(over.to_string()))
        }
    };
    let result = json!({
        "status": state.workflow_status,
        "disposition": state.disposition,
        "errorMessage": state.error_message,
    });
    let st = state.workflow_status;
    publish(ctx, run, state).await;
    for c in pending {
        reject(ctx, run, c.request_id(), &Rejection::NotWaiting { status: st }).await;
    }
    result
}

/// Ends a run that would go over one of its budgets: FAILED, naming the node and the budget.
async fn fail(ctx: &WorkflowContext<DriftWorkflow>, run: &mut Run, over: OverBudget) -> Value {
    over_budget_seen(run, &over);
    end(ctx, run, EndStatus::Failed, None, Some(over.to_string())).await
}

fn over_budget_seen(run: &Run, over: &OverBudget) {
    tracing::warn!(workflow = %run.scoped, error = %over, "run ends: over a budget");
}

async fn reject(ctx: &WorkflowContext<DriftWorkflow>, run: &Run, request_id: &RequestId, r: &Rejection) {
    send(ctx, Publication::rejection(&run.scoped, run.seq, request_id, r)).await;
}

/// Runs a disconnected node against the current context and publishes its result to the
/// caller. The flow's position, status and `seq` stay as they are.
async fn execute_node(
    ctx: &WorkflowContext<DriftWorkflow>,
    machine: &Machine<'_>,
    run: &mut Run,
    request_id: RequestId,
    node: String,
    parameters: Option<Value>,
) {
    if !machine.is_executable(&node) {
        return reject(ctx, run, &request_id, &Rejection::NotExecutable { node }).await;
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
    let (status, response) = match outcome {
        Ok(response) => (NodeOutcome::Success, response),
        Err(e) => (NodeOutcome::Failed, json!({"error": e.to_string()})),
    };
    let result = NodeResult {
        workflow_id: run.start.workflow_id.to_string(),
        node,
        status,
        response,
    };
    send(ctx, Publication::result(&run.scoped, run.seq, &request_id, &result)).await;
}

/// Starts a CHILD node's workflow (abandoned on parent close: the parent goes on).
async fn start_child(
    ctx: &WorkflowContext<DriftWorkflow>,
    run: &Run,
    instance: &str,
    workflow: &str,
    params: Value,
) -> Result<Value, String> {
    let def = run
        .start
        .children
        .get(workflow)
        .cloned()
        .ok_or_else(|| format!("child workflow definition {workflow:?} was not pinned at start"))?;
    let budgets = &run.start.budgets;
    let depth = u64::from(run.start.depth) + 1;
    budgets
        .check(Budget::ChildDepth, instance, Measured::ChildDepth, depth)
        .map_err(|e| e.to_string())?;
    let n = ctx.history_length();
    let child_id = WorkflowId::derived(&run.start.workflow_id, instance, n as u64);
    let input = WorkflowInput {
        start: run.start.child(child_id.clone(), def, params),
        carry: None,
    };
    budgets
        .check(Budget::Carry, instance, Measured::ChildStart, json_len(&input))
        .map_err(|e| e.to_string())?;
    let opts = ChildWorkflowOptions::builder()
        .workflow_id(ScopedWorkflowId::new(&run.start.tenant, &child_id).to_string())
        .parent_close_policy(ParentClosePolicy::Abandon)
        .build();
    ctx.start_child_workflow(DriftWorkflow::run, input, opts)
        .await
        .map_err(|e| format!("child workflow did not start: {e}"))?;
    Ok(json!({"workflowId": child_id}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use drift_core::domain::TenantId;

    #[test]
    fn a_workflow_started_before_the_layout_change_reads_its_input_and_names_no_key() {
        let def: Definition = serde_json::from_value(json!({
            "id": "w", "startNode": "done", "states": {"done": {"node": {"type": "SUCCESS"}}}
        }))
        .unwrap();
        let input = WorkflowInput {
            start: WorkflowStart {
                definition: def,
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
            },
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
