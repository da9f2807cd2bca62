//! Starts and commands: checked, subscribed to *before* they reach Temporal (so no answer can
//! slip past), dispatched, and handed back as a `Dispatched` to wait on, forward or drop.

use super::wait::Outcome;
use super::{CommandRequest, Delivery, Follow, Mode, Service, ServiceError, StartRequest, require, riding_out};
use drift_bus::{RedisKeys, Subscription};
use drift_core::domain::timeline::{RequestKind, Via};
use drift_core::domain::{
    BackBlock, Callback, Caller, Command, Rejection, RequestId, Scope, ScopedWorkflowId, WorkflowId, WorkflowStart,
    WorkflowState, WorkflowStatus,
};
use drift_core::dsl::Definition;
use drift_temporal::TemporalError;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The size of a value's JSON, counted without building it.
fn json_len(v: &Value) -> usize {
    drift_core::engine::json_len(v) as usize
}

/// A command or start on its way: subscribed (unless async) and dispatched.
pub struct Dispatched {
    pub id: WorkflowId,
    pub request_id: RequestId,
    /// Where to follow the workflow live (SSE, WebSocket) without a credential.
    pub stream_token: String,
    /// Async mode: later states go to the callback, nobody waits here.
    pub is_async: bool,
    pub(super) keys: RedisKeys,
    /// The workflow in Temporal, for asking why an answer is not coming.
    pub(super) scoped: ScopedWorkflowId,
    /// Subscribed before dispatch; None in async mode.
    pub(super) subscription: Option<Subscription>,
    /// The `seq` the service's check saw (0: nothing published yet).
    pub(super) seen: u64,
    /// False when an idempotent start found its workflow already there.
    pub(super) fresh: bool,
    /// A retried command's first answer: nothing was dispatched again.
    pub(super) answered: Option<drift_bus::Event>,
}

impl Dispatched {
    /// The first answer of a retried command (its `seq` and what it was), if this was one.
    pub fn take_answer(&mut self) -> Option<(u64, Result<Outcome, ServiceError>)> {
        self.answered.take().map(|e| (e.seq, Outcome::of(&e)))
    }

    /// The subscription as a live follower, from just after what the check saw.
    pub fn into_follow(self) -> Option<Follow> {
        let since = (self.seen > 0).then_some(self.seen);
        self.subscription.map(|sub| Follow::new(sub, self.keys, since))
    }
}

/// The command a request asks for, if the workflow's latest state allows it.
fn checked_command(
    req: CommandRequest,
    latest: &WorkflowState,
    callback: Option<Callback>,
) -> Result<Command, ServiceError> {
    Ok(match req {
        CommandRequest::Resume {
            request_id,
            seq,
            view_response,
            ..
        } => {
            Rejection::check_resume(latest.workflow_status, latest.seq, seq)?;
            // Checked here too, so an answer that cannot fit never enters the workflow's
            // history; the workflow checks again for answers that raced a change.
            if let Some(view) = &latest.view {
                drift_core::engine::validate_answer(view, &view_response)
                    .map_err(|details| Rejection::InvalidAnswer { details })?;
            }
            Command::Resume {
                request_id,
                seq: Some(seq.unwrap_or(latest.seq)),
                view_response,
                callback,
            }
        }
        CommandRequest::Back { request_id, seq } => {
            Rejection::check_resume(latest.workflow_status, latest.seq, seq)?;
            if !latest.can_go_back {
                let screen = latest.node.as_deref().unwrap_or_default();
                let (node, why) = BackBlock::of(screen, latest.back_blocked_by.as_deref(), latest.back_dropped);
                return Err(Rejection::CannotGoBack { node, why }.into());
            }
            Command::Back {
                request_id,
                seq: Some(seq.unwrap_or(latest.seq)),
            }
        }
        CommandRequest::Execute {
            request_id,
            node,
            parameters,
        } => {
            Rejection::check_execute(latest.workflow_status)?;
            Command::Execute {
                request_id,
                node,
                parameters,
            }
        }
    })
}

/// The id a start runs under, and whether it was generated (a generated id has never named a
/// run: there is no earlier seq to read).
fn workflow_id_to_start(
    caller: &Caller,
    asked: Option<WorkflowId>,
    idempotency_key: Option<&str>,
) -> Result<(WorkflowId, bool), ServiceError> {
    Ok(match (asked, idempotency_key) {
        (Some(w), _) => (w, false),
        // The same key from the same tenant and client always names the same workflow.
        (None, Some(k)) => {
            let named = format!("{}\n{}\n{k}", caller.tenant, caller.client);
            (
                WorkflowId::parse(&format!("idem-{}", drift_core::digest::sha256_hex_128(named)))?,
                false,
            )
        }
        (None, None) => (WorkflowId::generate(), true),
    })
}

impl Service {
    /// The definition a start asks for, compiled against the current nodes.
    fn definition_to_start(&self, workflow: &str, version: Option<&str>) -> Result<Definition, ServiceError> {
        let reg = self.0.catalog.registry();
        let def = reg.workflow(workflow, version).ok_or_else(|| {
            ServiceError::NotFound(match version {
                None | Some("ACTIVE") if reg.workflow(workflow, Some("LATEST")).is_some() => format!(
                    "workflow definition {workflow:?} has no ACTIVE version; activate one (POST /v3/definitions/{workflow}/activate)",
                ),
                v => format!("no workflow definition {workflow:?} version {:?}", v.unwrap_or("ACTIVE")),
            })
        })?;
        reg.compile(def).map_err(ServiceError::Internal)
    }

    /// The callback for a call: an allowed `callbackUrl`, or the client's default for
    /// `mode: "async"`. None means the caller follows the answer itself.
    pub(super) async fn resolve_callback(
        &self,
        caller: &Caller,
        d: &Delivery,
    ) -> Result<Option<Callback>, ServiceError> {
        let wants_async = match d.mode {
            None => d.callback_url.is_some(),
            Some(Mode::Async) => true,
            Some(Mode::Sync) if d.callback_url.is_none() => false,
            Some(Mode::Sync) => {
                return Err(ServiceError::Invalid(
                    "a callbackUrl needs mode \"async\" (or no mode)".into(),
                ));
            }
        };
        if !wants_async {
            return Ok(None);
        }
        let url = match &d.callback_url {
            Some(u) => u.clone(),
            None => self
                .0
                .cfg
                .client_callbacks
                .get(&caller.client)
                .cloned()
                .ok_or_else(|| {
                    ServiceError::Invalid(format!(
                        "mode \"async\" needs a callbackUrl: client {:?} has no default callback configured",
                        caller.client
                    ))
                })?,
        };
        let checked = self
            .0
            .cfg
            .allowlist
            .check(&url)
            .map_err(ServiceError::CallbackNotAllowed)?;
        // A name a bare `*` matched must not lead to an internal address (deliveries check
        // again, at connection time).
        if checked.resolve_check {
            drift_temporal::egress::Egress::default()
                .resolve(&checked.host, checked.port)
                .await
                .map_err(|e| ServiceError::CallbackNotAllowed(format!("callbackUrl: {e}")))?;
        }
        Ok(Some(Callback {
            url,
            client: caller.client.clone(),
        }))
    }

    /// Every definition a CHILD node of `def` (or of its children) may start, pinned now.
    pub(super) fn pin_children(&self, def: &Definition) -> Result<BTreeMap<String, Definition>, ServiceError> {
        self.0.catalog.registry().children_of(def).map_err(|e| match e {
            drift_core::dsl::ChildError::NotFound(m) => ServiceError::NotFound(m),
            drift_core::dsl::ChildError::Compile(m) => ServiceError::Internal(m),
        })
    }

    /// Subscribes to `keys`' channel unless the answer goes to a callback.
    pub(super) async fn subscribe_unless(
        &self,
        is_async: bool,
        keys: &RedisKeys,
    ) -> Result<Option<Subscription>, ServiceError> {
        Ok(match is_async {
            true => None,
            false => Some(riding_out(|| self.0.channels.subscribe(&keys.channel)).await?),
        })
    }

    /// Starts a workflow. An idempotent retry (same key, same tenant and client) finds the
    /// workflow the first call started instead of starting another.
    pub async fn start(&self, caller: &Caller, req: StartRequest) -> Result<Dispatched, ServiceError> {
        require(caller, Scope::Start)?;
        let size = json_len(&req.params);
        if size > self.0.cfg.max_command_bytes {
            // The params become the workflow's context and enter its history: capped like answers.
            return Err(ServiceError::TooLarge(format!(
                "the start's params are {size} bytes; at most {} are accepted",
                self.0.cfg.max_command_bytes
            )));
        }
        let callback = self.resolve_callback(caller, &req.delivery).await?;
        let definition = self.definition_to_start(&req.workflow, req.version.as_deref())?;
        let execution_timeout = definition
            .execution_timeout_ms
            .unwrap_or(self.0.cfg.execution_timeout.as_millis() as u64);
        let children = self.pin_children(&definition)?;
        let fingerprint = req.idempotency_key.as_ref().map(|_| req.fingerprint());
        let (id, generated) = workflow_id_to_start(caller, req.workflow_id.clone(), req.idempotency_key.as_deref())?;
        let is_async = callback.is_some();
        let start = WorkflowStart {
            definition: Arc::new(definition),
            children: children.into_iter().map(|(k, d)| (k, Arc::new(d))).collect(),
            workflow_id: id.clone(),
            tenant: caller.tenant.clone(),
            params: req.params,
            thread_context: caller.thread_context(),
            request_id: Some(req.request_id.clone()),
            callback,
            history_limit: self.0.cfg.history_limit,
            run: uuid::Uuid::now_v7().simple().to_string(),
            seq_base: 0,
            execution_timeout_ms: Some(execution_timeout),
            budgets: self.0.cfg.budgets,
            depth: 0,
            runs_indexed: false,
            lean_index: false,
        };
        let keys = self.keys(&start.scoped_id());
        // A reused id goes on from its earlier runs' seq, so readers see the new run. The read
        // and the subscription are independent round trips: both happen before the dispatch,
        // at the same time.
        let seq_base = async {
            // Without the read, the subscription is the Redis step that refuses the call (and
            // starts nothing) while Redis is away; an async start subscribes to nothing, so it
            // still reads.
            match generated && !is_async {
                true => Ok(0),
                false => riding_out(|| self.0.states.high_seq(&keys)).await,
            }
        };
        let (seq_base, subscription) = tokio::try_join!(seq_base, self.subscribe_unless(is_async, &keys))?;
        let start = WorkflowStart { seq_base, ..start };
        let scoped = start.scoped_id();
        let t0 = std::time::Instant::now();
        let fresh = match self.0.runtime.start(start, fingerprint.as_deref()).await {
            Ok(()) => {
                metrics::counter!(drift_core::metrics::WORKFLOWS_STARTED.name).increment(1);
                true
            }
            Err(TemporalError::AlreadyStarted) if fingerprint.is_some() => {
                // A retry must ask for what the key was first used for (IETF Idempotency-Key
                // draft); a workflow started without a fingerprint (an earlier release) passes.
                let first = riding_out(|| self.0.runtime.fingerprint(&scoped)).await?;
                if first.is_some_and(|f| Some(f) != fingerprint) {
                    metrics::counter!(drift_core::metrics::IDEMPOTENCY_KEY_REUSED.name).increment(1);
                    return Err(ServiceError::IdempotencyKeyReused);
                }
                false
            }
            Err(e) => return Err(e.into()),
        };
        // Like "command dispatched": with "caller authenticated" and "answer ready", one start
        // traced step by step.
        tracing::debug!(request_id = %req.request_id, started = ?t0.elapsed(), "start dispatched");
        if fresh {
            let via = if is_async { Via::Async } else { req.via };
            self.note_request(&scoped, &req.request_id, RequestKind::Start, via);
        }
        Ok(Dispatched {
            stream_token: self.0.tokens.issue(&caller.tenant, &id),
            scoped: caller.scoped(&id),
            id,
            request_id: req.request_id,
            is_async,
            keys,
            subscription,
            seen: 0,
            fresh,
            answered: None,
        })
    }

    /// Sends a resume or execute-node after checking it against the current state, so a
    /// command that cannot apply never reaches the workflow.
    /// `via`: how the command came in, for the run's timeline (any command with a callback
    /// counts as `Async`).
    pub async fn command(
        &self,
        caller: &Caller,
        id: &WorkflowId,
        req: CommandRequest,
        via: Via,
    ) -> Result<Dispatched, ServiceError> {
        require(caller, Scope::Drive)?;
        let payload = match &req {
            CommandRequest::Resume { view_response, .. } => json_len(view_response),
            CommandRequest::Execute { parameters, .. } => parameters.as_ref().map_or(0, json_len),
            CommandRequest::Back { .. } => 0,
        };
        if payload > self.0.cfg.max_command_bytes {
            return Err(ServiceError::TooLarge(format!(
                "the command's payload is {payload} bytes; at most {} are accepted",
                self.0.cfg.max_command_bytes
            )));
        }
        let callback = match &req {
            CommandRequest::Resume { delivery, .. } => self.resolve_callback(caller, delivery).await?,
            CommandRequest::Execute { .. } | CommandRequest::Back { .. } => None,
        };
        // A retried command (same request id) gets its first answer and is not sent again.
        let scoped = caller.scoped(id);
        let keys = self.keys(&scoped);
        let is_async = callback.is_some();
        // The checks' reads and the subscription are independent round trips, all before the
        // dispatch: done at once. (A retried command drops its subscription unused.)
        let ((first, latest), subscription) = tokio::try_join!(
            riding_out(|| self.0.states.answer_and_latest(&keys, req.request_id().as_str())),
            self.subscribe_unless(is_async, &keys)
        )?;
        if let Some(first) = first {
            metrics::counter!(drift_core::metrics::COMMANDS_DEDUPLICATED.name).increment(1);
            return Ok(Dispatched {
                scoped: caller.scoped(id),
                id: id.clone(),
                request_id: req.request_id().clone(),
                stream_token: self.0.tokens.issue(&caller.tenant, id),
                is_async: callback.is_some(),
                seen: first.seq,
                keys,
                subscription: None,
                fresh: true,
                answered: Some(first),
            });
        }
        let latest = match latest {
            Some(st) => st.state,
            None => self.restored_state(caller, id).await?,
        };
        let kind = match &req {
            CommandRequest::Resume { .. } => RequestKind::Resume,
            CommandRequest::Execute { .. } => RequestKind::Execute,
            CommandRequest::Back { .. } => RequestKind::Back,
        };
        let cmd = checked_command(req, &latest, callback)?;
        let request_id = cmd.request_id().clone();
        let t0 = std::time::Instant::now();
        match self.0.runtime.signal(&scoped, cmd).await {
            Ok(()) => {}
            // Drift still showed it waiting, but it ended outside Drift: publish how.
            Err(TemporalError::Ended) => {
                let status = match self.reconcile(&caller.tenant, id).await {
                    super::reconcile::Checked::Ended(end) => end.workflow_status,
                    _ => WorkflowStatus::Terminated,
                };
                return Err(Rejection::NotWaiting { status }.into());
            }
            Err(e) => return Err(e.into()),
        }
        tracing::debug!(%request_id, signalled = ?t0.elapsed(), "command dispatched");
        self.note_request(&scoped, &request_id, kind, if is_async { Via::Async } else { via });
        Ok(Dispatched {
            scoped: caller.scoped(id),
            id: id.clone(),
            request_id,
            stream_token: self.0.tokens.issue(&caller.tenant, id),
            is_async,
            keys,
            subscription,
            seen: latest.seq,
            fresh: true,
            answered: None,
        })
    }
}
