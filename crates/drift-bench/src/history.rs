//! What one round leaves in Temporal's history, read back from the server: each event's type
//! and encoded size. Temporal's CPU per round follows what it writes and the tasks it makes
//! (workflow tasks, timers, visibility writes), so a change to a round is weighed here in
//! events and bytes, beside the floor's round on the same server.

use prost::Message;
use std::collections::BTreeMap;
use temporalio_common::protos::temporal::api::common::v1::WorkflowExecution;
use temporalio_common::protos::temporal::api::enums::v1::EventType;
use temporalio_common::protos::temporal::api::workflowservice::v1::GetWorkflowExecutionHistoryRequest;

/// One run's history: each event's type (Temporal's name, without `EVENT_TYPE_`) and size.
pub struct History {
    pub side: &'static str,
    pub events: Vec<(String, usize)>,
}

impl History {
    pub fn bytes(&self) -> usize {
        self.events.iter().map(|(_, b)| b).sum()
    }

    /// Count and bytes of each event type.
    fn by_type(&self) -> BTreeMap<&str, (usize, usize)> {
        let mut m = BTreeMap::new();
        for (t, b) in &self.events {
            let e = m.entry(t.as_str()).or_insert((0, 0));
            e.0 += 1;
            e.1 += b;
        }
        m
    }
}

/// Reads the history of `workflow_id`'s latest run (every page), once the run has closed: a
/// caller has its last state as soon as it is published, before the workflow task that
/// publishes it completes.
pub async fn read(
    client: &temporalio_client::Client,
    side: &'static str,
    workflow_id: &str,
) -> anyhow::Result<History> {
    use temporalio_common::protos::temporal::api::enums::v1::HistoryEventFilterType;
    let mut svc = client.connection().workflow_service();
    let execution = || {
        Some(WorkflowExecution {
            workflow_id: workflow_id.to_string(),
            run_id: String::new(),
        })
    };
    // A long poll for the close event.
    let closed = svc.get_workflow_execution_history(tonic::Request::new(GetWorkflowExecutionHistoryRequest {
        namespace: "default".into(),
        execution: execution(),
        wait_new_event: true,
        history_event_filter_type: HistoryEventFilterType::CloseEvent as i32,
        ..Default::default()
    }));
    tokio::time::timeout(std::time::Duration::from_secs(10), closed)
        .await
        .map_err(|_| anyhow::anyhow!("{workflow_id} did not close within 10 s"))?
        .map_err(|s| anyhow::anyhow!("waiting for {workflow_id} to close: {}", s.message()))?;
    let mut events = vec![];
    let mut token = vec![];
    loop {
        let r = svc
            .get_workflow_execution_history(tonic::Request::new(GetWorkflowExecutionHistoryRequest {
                namespace: "default".into(),
                execution: execution(),
                maximum_page_size: 1000,
                next_page_token: token,
                ..Default::default()
            }))
            .await
            .map_err(|s| anyhow::anyhow!("reading {workflow_id}'s history: {}", s.message()))?
            .into_inner();
        for e in r.history.map(|h| h.events).unwrap_or_default() {
            let name = EventType::try_from(e.event_type)
                .map(|t| t.as_str_name().trim_start_matches("EVENT_TYPE_").to_string())
                .unwrap_or_else(|_| format!("type {}", e.event_type));
            events.push((name, e.encoded_len()));
        }
        if r.next_page_token.is_empty() {
            break;
        }
        token = r.next_page_token;
    }
    Ok(History { side, events })
}

/// The table of event types, each side's count and bytes, and the totals.
pub fn table(sides: &[History]) -> Vec<Vec<String>> {
    let maps: Vec<_> = sides.iter().map(History::by_type).collect();
    let mut types: Vec<&str> = maps.iter().flat_map(|m| m.keys().copied()).collect();
    types.sort();
    types.dedup();
    let mut rows = vec![];
    let mut header = vec!["event".to_string()];
    for s in sides {
        header.push(format!("{} events", s.side));
        header.push(format!("{} bytes", s.side));
    }
    rows.push(header);
    for t in types {
        let mut row = vec![t.to_lowercase()];
        for m in &maps {
            let (n, b) = m.get(t).copied().unwrap_or((0, 0));
            row.push(n.to_string());
            row.push(b.to_string());
        }
        rows.push(row);
    }
    let mut total = vec!["total".to_string()];
    for s in sides {
        total.push(s.events.len().to_string());
        total.push(s.bytes().to_string());
    }
    rows.push(total);
    rows
}

pub fn print(sides: &[History]) {
    println!("\nOne round's history in Temporal, per event type (count, encoded bytes):");
    for row in table(sides) {
        let mut line = format!("{:<46}", row[0]);
        for c in &row[1..] {
            line += &format!(" {:>13}", c);
        }
        println!("{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_a_row_per_event_type_of_either_side_and_the_totals() {
        let h = |side, e: &[(&str, usize)]| History {
            side,
            events: e.iter().map(|(t, b)| (t.to_string(), *b)).collect(),
        };
        let t = table(&[
            h(
                "drift",
                &[
                    ("TIMER_STARTED", 10),
                    ("MARKER_RECORDED", 300),
                    ("MARKER_RECORDED", 200),
                ],
            ),
            h("floor", &[("MARKER_RECORDED", 100)]),
        ]);
        assert_eq!(
            t[0],
            ["event", "drift events", "drift bytes", "floor events", "floor bytes"]
        );
        assert_eq!(t[1], ["marker_recorded", "2", "500", "1", "100"]);
        assert_eq!(t[2], ["timer_started", "1", "10", "0", "0"]);
        assert_eq!(t[3], ["total", "3", "510", "1", "100"]);
    }
}
