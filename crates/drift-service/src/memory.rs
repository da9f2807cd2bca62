//! In-memory adapters behind the service's ports, for its unit tests: a bus that keeps states
//! and answers as the Redis publish script does (stored only when newer, a bounded history,
//! answers by request id, every fresh message on the workflow's channel), and a runtime that
//! records what it is asked and answers as its test says. No Redis, no Temporal.

use crate::ports::{Channels, Runtime, States, Webhooks};
use async_trait::async_trait;
use drift_bus::{
    Envelope, Event, HubError, HubMsg, Layout, Notice, Publication, RedisKeys, StoreError, Stored, Subscription,
};
use drift_core::domain::runs::{RunSummary, RunsPage, RunsRequest};
use drift_core::domain::timeline::{PublishedState, RequestNote};
use drift_core::domain::{
    AttemptRecord, Command, ScopedWorkflowId, TenantId, WorkflowId, WorkflowStart, WorkflowState, WorkflowStatus,
};
use drift_temporal::{Inspection, TemporalError};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;

/// One workflow's data, as Redis keeps it under its keys.
#[derive(Default)]
struct Kept {
    latest: Option<Stored>,
    history: BTreeMap<u64, Stored>,
    high_seq: u64,
    answers: HashMap<String, String>,
    attempt: Option<AttemptRecord>,
    /// Raised by each revocation of the workflow's answer links.
    link_generation: u64,
    /// Who answered each screen through a link (its record), by seq.
    link_answers: HashMap<u64, String>,
    /// The timeline's requests and attempts, newest first.
    requests: Vec<RequestNote>,
    attempts: Vec<AttemptRecord>,
}

/// Adds `entry` at the head of a timeline list, keeping as many as Redis does
/// (`TIMELINE_KEPT + 1`: the one more says older ones were let go).
fn journal<T>(list: &mut Vec<T>, entry: T) {
    list.insert(0, entry);
    list.truncate(drift_core::domain::timeline::TIMELINE_KEPT + 1);
}

#[derive(Default)]
struct BusData {
    /// By the workflow's `latest` key.
    workflows: HashMap<String, Kept>,
    channels: HashMap<String, broadcast::Sender<HubMsg>>,
    tickets: HashSet<String>,
    /// Each tenant's first attempts, as (workflow, seq, Unix ms).
    delivered: HashMap<String, Vec<(WorkflowId, u64, i64)>>,
}

/// The store and the hub in one, as they share Redis.
pub struct MemoryBus {
    layout: Layout,
    /// States kept in each workflow's history (`--history-len`).
    history_len: usize,
    data: Mutex<BusData>,
}

impl MemoryBus {
    /// Records a webhook attempt, as the worker's delivery activity does (a first attempt is
    /// indexed for its tenant at `at_ms`).
    pub fn record_attempt(&self, scoped: &ScopedWorkflowId, rec: AttemptRecord, at_ms: i64) {
        let keys = self.layout.keys(scoped);
        let mut data = self.data.lock().unwrap();
        if rec.attempt == 1 {
            let (tenant, id) = scoped.parts();
            let id = WorkflowId::parse(id).expect("a scoped id's workflow id parses");
            data.delivered
                .entry(tenant.to_string())
                .or_default()
                .push((id, rec.seq, at_ms));
        }
        if let Some(k) = data.workflows.get_mut(&keys.latest) {
            journal(&mut k.attempts, rec.clone());
            k.attempt = Some(rec);
        }
    }

    /// Changes what is kept of `workflow`, as writes under its keys do.
    fn kept(&self, workflow: &ScopedWorkflowId, change: impl FnOnce(&mut Kept)) {
        let keys = self.layout.keys(workflow);
        change(self.data.lock().unwrap().workflows.entry(keys.latest).or_default());
    }

    pub fn new(history_len: usize) -> Arc<Self> {
        Arc::new(Self {
            layout: Layout::new("test").expect("a valid prefix"),
            history_len,
            data: Mutex::default(),
        })
    }

    fn sender(data: &mut BusData, channel: &str) -> broadcast::Sender<HubMsg> {
        data.channels
            .entry(channel.to_string())
            .or_insert_with(|| broadcast::channel(64).0)
            .clone()
    }

    /// Tells every subscriber of `channel` that messages may have been missed.
    pub fn resync(&self, channel: &str) {
        let tx = Self::sender(&mut self.data.lock().unwrap(), channel);
        let _ = tx.send(HubMsg::Resync);
    }

    /// Publishes `state` as the workflow does.
    pub fn publish_state(&self, id: &ScopedWorkflowId, state: &WorkflowState) {
        self.apply(&Publication::state(id, state));
    }

    /// Stores `state` as the latest without publishing it: a message lost on its way.
    pub fn store_only(&self, id: &ScopedWorkflowId, state: &WorkflowState) {
        self.apply_quietly(&Publication::state(id, state), true);
    }

    /// What the publish script does: store a state only when newer, keep answers by request
    /// id, and publish what is fresh.
    fn apply(&self, p: &Publication) {
        self.apply_quietly(p, false);
    }

    fn apply_quietly(&self, p: &Publication, quiet: bool) {
        let keys = self.layout.keys(&p.workflow);
        let mut data = self.data.lock().unwrap();
        let kept = data.workflows.entry(keys.latest.clone()).or_default();
        let mut fresh = true;
        if p.store {
            let env: Envelope<WorkflowState> = serde_json::from_str(&p.message).expect("a state envelope");
            let stored = Stored {
                seq: env.seq,
                request_id: env.request_id,
                trace: env.trace,
                // As the publish script stamps it.
                at: Some(chrono::Utc::now().timestamp_millis()),
                state: env.body,
            };
            fresh = kept.latest.as_ref().is_none_or(|l| stored.seq > l.seq);
            if fresh {
                kept.history.insert(stored.seq, stored.clone());
                while kept.history.len() > self.history_len {
                    kept.history.pop_first();
                }
                kept.latest = Some(stored);
            }
            kept.high_seq = kept.high_seq.max(p.seq);
        }
        if let Some(rid) = &p.request_id {
            kept.answers.entry(rid.clone()).or_insert_with(|| p.message.clone());
        }
        if fresh && !quiet {
            let event = Event::parse(p.message.as_bytes()).expect("a readable envelope");
            let _ = Self::sender(&mut data, &keys.channel).send(HubMsg::Event(Arc::new(event)));
        }
    }
}

#[async_trait]
impl States for MemoryBus {
    fn layout(&self) -> &Layout {
        &self.layout
    }
    async fn take_ticket(&self, ticket: &str, _valid_for: Duration) -> Result<bool, StoreError> {
        Ok(self.data.lock().unwrap().tickets.insert(ticket.to_string()))
    }
    async fn latest(&self, keys: &RedisKeys) -> Result<Option<Stored>, StoreError> {
        let data = self.data.lock().unwrap();
        Ok(data.workflows.get(&keys.latest).and_then(|k| k.latest.clone()))
    }
    async fn answer_and_latest(
        &self,
        keys: &RedisKeys,
        request_id: &str,
    ) -> Result<(Option<Event>, Option<Stored>), StoreError> {
        let data = self.data.lock().unwrap();
        let Some(kept) = data.workflows.get(&keys.latest) else {
            return Ok((None, None));
        };
        let answer = kept.answers.get(request_id).and_then(|m| Event::parse(m.as_bytes()));
        Ok((answer, kept.latest.clone()))
    }
    async fn high_seq(&self, keys: &RedisKeys) -> Result<u64, StoreError> {
        let data = self.data.lock().unwrap();
        Ok(data.workflows.get(&keys.latest).map_or(0, |k| k.high_seq))
    }
    async fn history_after(&self, keys: &RedisKeys, after: u64) -> Result<(Vec<Stored>, bool), StoreError> {
        let data = self.data.lock().unwrap();
        let items: Vec<Stored> = data
            .workflows
            .get(&keys.latest)
            .map(|k| k.history.range(after + 1..).map(|(_, s)| s.clone()).collect())
            .unwrap_or_default();
        let complete = items.first().is_none_or(|f| f.seq == after + 1);
        Ok((items, complete))
    }
    async fn publish(&self, p: &Publication) -> Result<(), StoreError> {
        self.apply(p);
        Ok(())
    }
    async fn last_attempt(&self, keys: &RedisKeys) -> Result<Option<AttemptRecord>, StoreError> {
        let data = self.data.lock().unwrap();
        Ok(data.workflows.get(&keys.latest).and_then(|k| k.attempt.clone()))
    }
    async fn timeline(
        &self,
        keys: &RedisKeys,
    ) -> Result<(Vec<PublishedState>, Vec<RequestNote>, Vec<AttemptRecord>), StoreError> {
        let data = self.data.lock().unwrap();
        let Some(k) = data.workflows.get(&keys.latest) else {
            return Ok(Default::default());
        };
        let states = k.history.values().map(Stored::published).collect();
        Ok((states, k.requests.clone(), k.attempts.clone()))
    }
    async fn note_request(&self, workflow: &ScopedWorkflowId, note: &RequestNote) {
        self.kept(workflow, |k| journal(&mut k.requests, note.clone()));
    }
    async fn record_resend(&self, workflow: &ScopedWorkflowId, rec: &AttemptRecord) {
        self.kept(workflow, |k| journal(&mut k.attempts, rec.clone()));
    }
    async fn deliveries_between(
        &self,
        tenant: &TenantId,
        from_ms: i64,
        to_ms: i64,
        limit: usize,
    ) -> Result<Vec<(WorkflowId, u64, i64)>, StoreError> {
        let data = self.data.lock().unwrap();
        let mut found: Vec<_> = data
            .delivered
            .get(tenant.as_str())
            .into_iter()
            .flatten()
            .filter(|(_, _, at)| (from_ms..=to_ms).contains(at))
            .cloned()
            .collect();
        found.sort_by_key(|(_, _, at)| *at);
        found.truncate(limit);
        Ok(found)
    }
    async fn notify(&self, channel: &str, notice: Notice) -> Result<(), StoreError> {
        let tx = Self::sender(&mut self.data.lock().unwrap(), channel);
        let _ = tx.send(HubMsg::Notice(notice));
        Ok(())
    }
    async fn link_marks(&self, keys: &RedisKeys, seq: u64) -> Result<(u64, Option<String>), StoreError> {
        let data = self.data.lock().unwrap();
        Ok(data
            .workflows
            .get(&keys.latest)
            .map_or((0, None), |k| (k.link_generation, k.link_answers.get(&seq).cloned())))
    }
    async fn revoke_links(&self, keys: &RedisKeys, _keep: Duration) -> Result<(), StoreError> {
        let mut data = self.data.lock().unwrap();
        data.workflows.entry(keys.latest.clone()).or_default().link_generation += 1;
        Ok(())
    }
    async fn record_link_answer(
        &self,
        keys: &RedisKeys,
        seq: u64,
        record: &str,
        _keep: Duration,
    ) -> Result<(), StoreError> {
        let mut data = self.data.lock().unwrap();
        let kept = data.workflows.entry(keys.latest.clone()).or_default();
        kept.link_answers.insert(seq, record.to_string());
        Ok(())
    }
    async fn probe(&self) -> Result<(), String> {
        Ok(())
    }
}

#[async_trait]
impl Channels for MemoryBus {
    async fn subscribe(&self, channel: &str) -> Result<Subscription, HubError> {
        let tx = Self::sender(&mut self.data.lock().unwrap(), channel);
        Ok(Subscription::detached(tx.subscribe()))
    }
    fn channels(&self) -> Vec<String> {
        let data = self.data.lock().unwrap();
        data.channels
            .iter()
            .filter(|(_, tx)| tx.receiver_count() > 0)
            .map(|(c, _)| c.clone())
            .collect()
    }
    fn channel_count(&self) -> usize {
        self.channels().len()
    }
}

/// What the memory runtime does when a run starts or gets a command.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Behaviour {
    /// Publishes the next state at once: WAITING at `node` with seq one past the last.
    Answers { node: &'static str },
    /// Takes the call and publishes nothing (a worker that is down, a slow node).
    Silent,
}

/// One run the runtime was asked to start, and what it was sent since.
pub struct Run {
    pub start: WorkflowStart,
    pub fingerprint: Option<String>,
    pub commands: Vec<Command>,
    pub ended: bool,
}

/// A runtime that keeps its runs in memory and publishes on a `MemoryBus` as its behaviour
/// says, counting every call.
pub struct MemoryRuntime {
    bus: Arc<MemoryBus>,
    behaviour: Mutex<Behaviour>,
    runs: Mutex<HashMap<ScopedWorkflowId, Run>>,
}

impl MemoryRuntime {
    pub fn new(bus: Arc<MemoryBus>, behaviour: Behaviour) -> Arc<Self> {
        Arc::new(Self {
            bus,
            behaviour: Mutex::new(behaviour),
            runs: Mutex::default(),
        })
    }

    /// Runs started (each id once).
    pub fn started(&self) -> usize {
        self.runs.lock().unwrap().len()
    }

    /// Commands sent to the run `id`.
    pub fn commands(&self, id: &ScopedWorkflowId) -> Vec<Command> {
        self.runs
            .lock()
            .unwrap()
            .get(id)
            .map(|r| r.commands.clone())
            .unwrap_or_default()
    }

    /// Publishes the run's next state, if its behaviour answers.
    fn answer(&self, id: &ScopedWorkflowId, workflow_id: &str, seq: u64, request_id: Option<String>) {
        if let Behaviour::Answers { node } = *self.behaviour.lock().unwrap() {
            let mut state = WorkflowState::bare(workflow_id, WorkflowStatus::Waiting, seq);
            state.node = Some(node.to_string());
            state.view = Some(drift_core::engine::View {
                layout_id: node.to_string(),
                node: node.to_string(),
                input_options: vec![],
                disposition: None,
            });
            state.request_id = request_id;
            self.bus.publish_state(id, &state);
        }
    }
}

#[async_trait]
impl Runtime for MemoryRuntime {
    async fn start(&self, start: WorkflowStart, fingerprint: Option<&str>) -> Result<(), TemporalError> {
        let id = start.scoped_id();
        let (seq, rid) = (
            start.seq_base + 1,
            start.request_id.as_ref().map(|r| r.as_str().to_string()),
        );
        let workflow_id = start.workflow_id.as_str().to_string();
        {
            let mut runs = self.runs.lock().unwrap();
            if runs.get(&id).is_some_and(|r| !r.ended) {
                return Err(TemporalError::AlreadyStarted);
            }
            runs.insert(
                id.clone(),
                Run {
                    start,
                    fingerprint: fingerprint.map(str::to_string),
                    commands: vec![],
                    ended: false,
                },
            );
        }
        self.answer(&id, &workflow_id, seq, rid);
        Ok(())
    }
    async fn fingerprint(&self, id: &ScopedWorkflowId) -> Result<Option<String>, TemporalError> {
        let runs = self.runs.lock().unwrap();
        runs.get(id)
            .map(|r| r.fingerprint.clone())
            .ok_or(TemporalError::NotFound)
    }
    async fn signal(&self, id: &ScopedWorkflowId, cmd: Command) -> Result<(), TemporalError> {
        let rid = cmd.request_id().to_string();
        let workflow_id = {
            let mut runs = self.runs.lock().unwrap();
            let run = runs.get_mut(id).ok_or(TemporalError::NotFound)?;
            if run.ended {
                return Err(TemporalError::Ended);
            }
            run.commands.push(cmd);
            run.start.workflow_id.as_str().to_string()
        };
        let seq = self.bus.high_seq(&self.bus.layout.keys(id)).await.unwrap_or(0) + 1;
        self.answer(id, &workflow_id, seq, Some(rid));
        Ok(())
    }
    /// A run it knows has no state to give beyond what it published; one it does not know is
    /// not found (as Temporal answers for another tenant's id).
    async fn query_state(&self, id: &ScopedWorkflowId) -> Result<Option<WorkflowState>, TemporalError> {
        match self.runs.lock().unwrap().contains_key(id) {
            true => Ok(None),
            false => Err(TemporalError::NotFound),
        }
    }
    async fn terminate(&self, id: &ScopedWorkflowId, _reason: &str) -> Result<(), TemporalError> {
        let mut runs = self.runs.lock().unwrap();
        let run = runs.get_mut(id).ok_or(TemporalError::NotFound)?;
        run.ended = true;
        Ok(())
    }
    async fn deliver(&self, _tenant: &TenantId, _id: &ScopedWorkflowId, _state: &WorkflowState) {}
    async fn inspect(&self, id: &ScopedWorkflowId) -> Result<Inspection, TemporalError> {
        match self.runs.lock().unwrap().get(id) {
            Some(_) => Ok(Inspection::default()),
            None => Err(TemporalError::NotFound),
        }
    }
    async fn ping(&self) -> Result<(), TemporalError> {
        Ok(())
    }
    /// The runs it started, oldest first: by tenant, definition, version and status (a run
    /// not ended waits on its behaviour's node); the page token is an offset.
    async fn runs(&self, tenant: &TenantId, req: &RunsRequest) -> Result<RunsPage, TemporalError> {
        let f = &req.filter;
        let node = match *self.behaviour.lock().unwrap() {
            Behaviour::Answers { node } => Some(node.to_string()),
            _ => None,
        };
        let runs = self.runs.lock().unwrap();
        let mut all: Vec<RunSummary> = runs
            .values()
            .filter(|r| &r.start.tenant == tenant)
            .map(|r| RunSummary {
                workflow_id: r.start.workflow_id.as_str().to_string(),
                definition: Some(r.start.definition.id.clone()),
                version: Some(r.start.definition.version.clone()),
                status: match r.ended {
                    true => WorkflowStatus::Terminated,
                    false => WorkflowStatus::Waiting,
                },
                waiting_on: node.clone().filter(|_| !r.ended),
                waiting_since: None,
                started_at: None,
                closed_at: None,
            })
            .filter(|r| f.definition.as_ref().is_none_or(|d| r.definition.as_ref() == Some(d)))
            .filter(|r| f.version.as_ref().is_none_or(|v| r.version.as_ref() == Some(v)))
            .filter(|r| f.status.is_none_or(|s| r.status == s))
            .filter(|r| f.waiting_on.as_ref().is_none_or(|n| r.waiting_on.as_ref() == Some(n)))
            .collect();
        all.sort_by(|a, b| a.workflow_id.cmp(&b.workflow_id));
        let from: usize = match &req.page_token {
            Some(t) => t.parse().map_err(|_| TemporalError::BadPageToken)?,
            None => 0,
        };
        let page: Vec<RunSummary> = all.iter().skip(from).take(req.page_size).cloned().collect();
        let next = from + page.len();
        Ok(RunsPage {
            runs: page,
            next_page_token: (next < all.len()).then(|| next.to_string()),
        })
    }
}

/// Resends, recorded instead of sent; each answers as the test says.
#[derive(Default)]
pub struct MemoryWebhooks {
    pub sent: Mutex<Vec<(drift_temporal::webhook::Delivery, drift_core::domain::Callback)>>,
}

#[async_trait]
impl Webhooks for MemoryWebhooks {
    async fn send(
        &self,
        d: &drift_temporal::webhook::Delivery,
        cb: &drift_core::domain::Callback,
    ) -> (drift_temporal::webhook::Resent, Option<u16>) {
        self.sent.lock().unwrap().push((d.clone(), cb.clone()));
        (drift_temporal::webhook::Resent::Delivered, Some(200))
    }
}
