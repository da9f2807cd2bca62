//! One run's story for operators: each state it published (seq, time, and how the request that
//! led to it came in), with every webhook attempt of that state and the receiver's answer. Built
//! from what Redis keeps of the run (its state history, the requests the gateways took, the
//! attempts the workers made), joined here, away from I/O.

use super::{AttemptRecord, WorkflowStatus};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Requests and webhook attempts shown per workflow in its timeline (the newest). Redis keeps
/// one more of each (`TIMELINE_KEPT + 1`), so that a list read back longer than this says older
/// entries were let go.
pub const TIMELINE_KEPT: usize = 1_000;

/// How a request reached Drift.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    /// A blocking HTTP call, answered with the next state.
    Sync,
    /// An HTTP call answered 202; the states go to its callback as webhooks.
    Async,
    /// A message on the live WebSocket.
    Ws,
    /// A person's answer through an answer link's page.
    Link,
}

/// What a request asked for.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RequestKind {
    Start,
    Resume,
    Back,
    Execute,
    Terminate,
}

/// A request a gateway passed on to a run, as recorded for its timeline.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RequestNote {
    pub request_id: String,
    pub kind: RequestKind,
    pub via: Via,
    pub at: DateTime<Utc>,
}

/// A published state as the timeline reads it back.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishedState {
    pub seq: u64,
    /// When Redis stored it (absent for states of releases before timelines).
    pub at: Option<DateTime<Utc>>,
    pub status: WorkflowStatus,
    pub node: Option<String>,
    /// The nodes run since the previous state, ending at `node`.
    pub path: Vec<String>,
    pub request_id: Option<String>,
}

/// One state of the run, oldest first in a `Timeline`.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TimelineState {
    pub seq: u64,
    /// When it was published.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<DateTime<Utc>>,
    pub status: WorkflowStatus,
    /// The screen, timer or end node it is at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The nodes run since the previous state, ending at `node` (a graph draws the path taken).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub path: Vec<String>,
    /// The request it answers (absent when the run moved by itself: a timer, a timeout).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// What that request asked for, and how it came: `sync`, `async`, `ws` or `link`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<RequestKind>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<Via>,
    /// Every webhook attempt of this state, oldest first, with the receiver's answer.
    pub webhooks: Vec<AttemptRecord>,
}

/// `GET /v3/workflow/{id}/timeline`.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Timeline {
    pub workflow_id: String,
    pub states: Vec<TimelineState>,
    /// False when older states are no longer kept (`--history-len`, `--state-ttl-secs`): the
    /// timeline starts later than the run.
    pub complete: bool,
    /// False when more than 1,000 requests were noted for this run: only the newest 1,000 are
    /// kept, and a state whose request was let go shows no `request` or `mode`.
    pub requests_complete: bool,
    /// False when more than 1,000 webhook attempts were recorded for this run: only the newest
    /// 1,000 are kept, and a state whose attempts were let go shows fewer `webhooks`.
    pub webhooks_complete: bool,
}

impl Timeline {
    /// Joins a run's states (any order) with the requests (newest first, as kept) and the
    /// webhook attempts (newest first) recorded for it. A request recorded twice (a retried
    /// call) counts once, as first recorded. Past `TIMELINE_KEPT` of either, the oldest are
    /// left out and the timeline says that list is not complete.
    pub fn build(
        workflow_id: &str,
        mut states: Vec<PublishedState>,
        mut requests: Vec<RequestNote>,
        mut attempts: Vec<AttemptRecord>,
    ) -> Self {
        states.sort_by_key(|s| s.seq);
        let requests_complete = requests.len() <= TIMELINE_KEPT;
        let webhooks_complete = attempts.len() <= TIMELINE_KEPT;
        requests.truncate(TIMELINE_KEPT);
        attempts.truncate(TIMELINE_KEPT);
        let mut by_request: HashMap<String, RequestNote> = HashMap::new();
        for note in requests.into_iter().rev() {
            by_request.entry(note.request_id.clone()).or_insert(note);
        }
        let mut by_seq: HashMap<u64, Vec<AttemptRecord>> = HashMap::new();
        for a in attempts.into_iter().rev() {
            by_seq.entry(a.seq).or_default().push(a);
        }
        let complete = states.first().is_none_or(|s| s.seq <= 1);
        let states = states
            .into_iter()
            .map(|s| {
                let note = s.request_id.as_ref().and_then(|r| by_request.get(r));
                TimelineState {
                    seq: s.seq,
                    at: s.at,
                    status: s.status,
                    node: s.node,
                    path: s.path,
                    request: note.map(|n| n.kind),
                    mode: note.map(|n| n.via),
                    request_id: s.request_id,
                    webhooks: by_seq.remove(&s.seq).unwrap_or_default(),
                }
            })
            .collect();
        Self {
            workflow_id: workflow_id.to_string(),
            states,
            complete,
            requests_complete,
            webhooks_complete,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::AttemptState;

    fn state(seq: u64, request: Option<&str>) -> PublishedState {
        PublishedState {
            seq,
            at: Some(Utc::now()),
            status: WorkflowStatus::Waiting,
            node: Some(format!("n{seq}")),
            path: vec![format!("n{seq}")],
            request_id: request.map(str::to_string),
        }
    }

    fn note(id: &str, kind: RequestKind, via: Via) -> RequestNote {
        RequestNote {
            request_id: id.into(),
            kind,
            via,
            at: Utc::now(),
        }
    }

    fn attempt(seq: u64, n: u32, status: u16) -> AttemptRecord {
        AttemptRecord {
            url: "http://127.0.0.1:9/h".into(),
            seq,
            attempt: n,
            state: if status == 200 {
                AttemptState::Delivered
            } else {
                AttemptState::Retrying
            },
            last_error: None,
            next_retry_at: None,
            updated_at: Utc::now(),
            webhook_id: None,
            client: None,
            status: Some(status),
            resend: false,
        }
    }

    #[test]
    fn each_state_shows_how_its_request_came_and_its_own_attempts_in_order() {
        let t = Timeline::build(
            "wf-1",
            vec![state(2, Some("r-2")), state(1, Some("s-1")), state(3, None)],
            // Newest first, as kept; r-2 recorded twice (a retried call).
            vec![
                note("r-2", RequestKind::Resume, Via::Link),
                note("r-2", RequestKind::Resume, Via::Ws),
                note("s-1", RequestKind::Start, Via::Async),
            ],
            vec![attempt(2, 1, 200), attempt(1, 2, 200), attempt(1, 1, 500)],
        );
        assert!(t.complete);
        let seqs: Vec<_> = t.states.iter().map(|s| s.seq).collect();
        assert_eq!(seqs, [1, 2, 3]);
        assert_eq!(t.states[0].mode, Some(Via::Async));
        assert_eq!(t.states[0].request, Some(RequestKind::Start));
        assert_eq!(t.states[1].mode, Some(Via::Ws), "the first record of a retried request");
        assert_eq!(t.states[2].mode, None, "moved by itself");
        let answers: Vec<_> = t.states[0].webhooks.iter().map(|a| (a.attempt, a.status)).collect();
        assert_eq!(answers, [(1, Some(500)), (2, Some(200))]);
        assert_eq!(t.states[1].webhooks.len(), 1);
        assert!(t.states[2].webhooks.is_empty());
    }

    #[test]
    fn a_timeline_whose_first_states_were_let_go_says_it_is_not_complete() {
        let t = Timeline::build("wf-1", vec![state(5, None), state(6, None)], vec![], vec![]);
        assert!(!t.complete);
        assert!(Timeline::build("wf-1", vec![], vec![], vec![]).complete);
    }

    #[test]
    fn a_timeline_past_its_kept_requests_or_attempts_says_which_list_was_cut_and_keeps_the_newest() {
        let notes = |n: usize| -> Vec<RequestNote> {
            // Newest first, as kept: r-n … r-1.
            (1..=n)
                .rev()
                .map(|i| note(&format!("r-{i}"), RequestKind::Resume, Via::Sync))
                .collect()
        };
        let attempts = |n: u64| -> Vec<AttemptRecord> { (1..=n).rev().map(|s| attempt(s, 1, 200)).collect() };
        let kept = TIMELINE_KEPT as u64;
        let states = || vec![state(1, Some("r-1")), state(kept + 1, Some(&format!("r-{}", kept + 1)))];

        let full = Timeline::build("wf-1", states(), notes(TIMELINE_KEPT), attempts(kept));
        assert!(
            full.requests_complete && full.webhooks_complete,
            "exactly the bound is all of it"
        );
        assert_eq!(full.states[0].mode, Some(Via::Sync));

        let cut = Timeline::build("wf-1", states(), notes(TIMELINE_KEPT + 1), attempts(kept + 1));
        assert!(!cut.requests_complete && !cut.webhooks_complete);
        assert_eq!(cut.states[0].mode, None, "the oldest request was let go");
        assert!(cut.states[0].webhooks.is_empty(), "and so was the oldest attempt");
        assert_eq!(cut.states[1].mode, Some(Via::Sync), "the newest are kept");
        assert_eq!(cut.states[1].webhooks.len(), 1);

        let only_requests = Timeline::build("wf-1", states(), notes(TIMELINE_KEPT + 1), attempts(3));
        assert!(!only_requests.requests_complete && only_requests.webhooks_complete);
    }
}
