//! The runs list's side of Temporal: the search attributes Drift keeps on each run (its tenant,
//! definition and version from the start; its status and the node it waits on as it goes), the
//! visibility query a checked filter becomes, and a listed execution read back as a summary.

use chrono::{DateTime, SecondsFormat, Utc};
use drift_core::domain::WorkflowStatus;
use drift_core::domain::runs::{RunSummary, RunsFilter};
use temporalio_common::protos::temporal::api::enums::v1::WorkflowExecutionStatus;
use temporalio_common::protos::temporal::api::workflow::v1::WorkflowExecutionInfo;
use temporalio_common::search_attributes::{SearchAttributeKey, SearchAttributeUpdate, SearchAttributes, Timestamp};

pub const TENANT: SearchAttributeKey<String> = SearchAttributeKey::keyword("DriftTenant");
pub const DEFINITION: SearchAttributeKey<String> = SearchAttributeKey::keyword("DriftDefinition");
pub const VERSION: SearchAttributeKey<String> = SearchAttributeKey::keyword("DriftVersion");
pub const STATUS: SearchAttributeKey<String> = SearchAttributeKey::keyword("DriftStatus");
pub const WAITING_ON: SearchAttributeKey<String> = SearchAttributeKey::keyword("DriftWaitingOn");
pub const WAITING_SINCE: SearchAttributeKey<Timestamp> = SearchAttributeKey::datetime("DriftWaitingSince");

/// Every attribute, with its Temporal type: what `drift dev` registers and a cluster's operator
/// creates (`temporal operator search-attribute create --name NAME --type TYPE`). A run upserts
/// them only where each is registered with its type: one of another type would fail the run's
/// workflow task.
pub const ATTRIBUTES: [(&str, &str); 6] = [
    ("DriftTenant", "Keyword"),
    ("DriftDefinition", "Keyword"),
    ("DriftVersion", "Keyword"),
    ("DriftStatus", "Keyword"),
    ("DriftWaitingOn", "Keyword"),
    ("DriftWaitingSince", "Datetime"),
];

/// Whether `registered` (name → Temporal's `IndexedValueType`) has each attribute, typed as
/// Drift sets it.
pub fn all_registered(registered: &std::collections::HashMap<String, i32>) -> bool {
    use temporalio_common::protos::temporal::api::enums::v1::IndexedValueType as T;
    ATTRIBUTES.iter().all(|(name, kind)| {
        let want = match *kind {
            "Datetime" => T::Datetime,
            _ => T::Keyword,
        };
        registered.get(*name) == Some(&(want as i32))
    })
}

/// What a run starts with: whose, which definition and version, running — or, in a lean run
/// whose start node is a screen, already waiting on it since `now_ms` (its first wait then
/// upserts nothing).
pub fn at_start(start: &drift_core::domain::WorkflowStart, now_ms: i64) -> SearchAttributes {
    let (tenant, definition) = (start.tenant.as_str(), &start.definition);
    match start.first_screen() {
        Some(screen) => waiting_from_start(tenant, &definition.id, &definition.version, screen, now_ms),
        None => {
            let mut attrs = started(tenant, &definition.id, &definition.version);
            attrs.push(STATUS.value_set(WorkflowStatus::Running.to_string()));
            SearchAttributes::new(attrs)
        }
    }
}

/// What a lean run starts with: `tenant`'s run of `definition` at `version`, waiting on
/// `screen` since `now_ms` (also what `drift bench --floor-search-attributes` gives the floor).
pub fn waiting_from_start(
    tenant: &str,
    definition: &str,
    version: &str,
    screen: &str,
    now_ms: i64,
) -> SearchAttributes {
    let mut attrs = started(tenant, definition, version);
    attrs.extend([
        STATUS.value_set(WorkflowStatus::Waiting.to_string()),
        WAITING_ON.value_set(screen.to_string()),
        WAITING_SINCE.value_set(timestamp(now_ms)),
    ]);
    SearchAttributes::new(attrs)
}

/// Whose run, of which definition and version: set at every start.
fn started(tenant: &str, definition: &str, version: &str) -> Vec<SearchAttributeUpdate> {
    vec![
        TENANT.value_set(tenant.to_string()),
        DEFINITION.value_set(definition.to_string()),
        VERSION.value_set(version.to_string()),
    ]
}

/// The registration a cluster needs, as commands an operator can paste.
pub fn registration_hint() -> String {
    ATTRIBUTES
        .iter()
        .map(|(n, t)| format!("temporal operator search-attribute create --name {n} --type {t}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// A string literal of the visibility query language. Every value reaching here was checked
/// at the edge (ids, statuses, times Drift formats); quotes are escaped all the same.
fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn time(t: DateTime<Utc>) -> String {
    lit(&t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// The visibility query for `tenant`'s runs matching `f` (`now`: what "waiting longer than"
/// counts back from).
pub fn query(tenant: &str, f: &RunsFilter, now: DateTime<Utc>) -> String {
    let mut q = vec![
        format!("WorkflowType = {}", lit("drift")),
        format!("DriftTenant = {}", lit(tenant)),
        // A run that continued as new goes on as the next execution of its id: listed once.
        "ExecutionStatus != 'ContinuedAsNew'".to_string(),
    ];
    if let Some(d) = &f.definition {
        q.push(format!("DriftDefinition = {}", lit(d)));
    }
    if let Some(v) = &f.version {
        q.push(format!("DriftVersion = {}", lit(v)));
    }
    match f.status {
        // A run Temporal ended (terminated, timed out) keeps the last status it set.
        Some(s @ (WorkflowStatus::Running | WorkflowStatus::Waiting | WorkflowStatus::SchedulerWaiting)) => {
            q.push(format!(
                "ExecutionStatus = 'Running' AND DriftStatus = {}",
                lit(&s.to_string())
            ));
        }
        // A lean run's COMPLETED end is Temporal's own Completed (its attribute still says
        // where it last was); FAILED and TERMINATED ends, Completed too in Temporal, say so.
        Some(WorkflowStatus::Completed) => {
            q.push(
                "(DriftStatus = 'COMPLETED' OR (ExecutionStatus = 'Completed' AND DriftStatus != 'FAILED' AND \
                 DriftStatus != 'TERMINATED'))"
                    .into(),
            );
        }
        Some(WorkflowStatus::Failed) => {
            q.push("DriftStatus = 'FAILED'".into());
        }
        Some(WorkflowStatus::Terminated) => {
            q.push("(DriftStatus = 'TERMINATED' OR ExecutionStatus IN ('Terminated', 'TimedOut', 'Canceled'))".into());
        }
        None => {}
    }
    // The node and the time stay set after a run moves on: read with a waiting status only.
    const WAITS: &str = "ExecutionStatus = 'Running' AND DriftStatus IN ('WAITING', 'SCHEDULER_WAITING')";
    if let Some(n) = &f.waiting_on {
        q.push(format!("{WAITS} AND DriftWaitingOn = {}", lit(n)));
    }
    if let Some(t) = f.started_after {
        q.push(format!("StartTime > {}", time(t)));
    }
    if let Some(t) = f.started_before {
        q.push(format!("StartTime < {}", time(t)));
    }
    if let Some(d) = f.waiting_longer_than {
        let since = now - chrono::Duration::from_std(d).unwrap_or_default();
        q.push(format!("{WAITS} AND DriftWaitingSince < {}", time(since)));
    }
    q.join(" AND ")
}

/// A protobuf time (seconds, nanoseconds) as a UTC time.
fn utc(seconds: i64, nanos: i32) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(seconds, u32::try_from(nanos).unwrap_or(0))
}

/// A listed execution as the runs list shows it: the scoped id's tenant prefix taken off.
pub fn summary(info: &WorkflowExecutionInfo) -> Option<RunSummary> {
    let scoped = &info.execution.as_ref()?.workflow_id;
    let (_, id) = scoped.split_once('/')?;
    let attrs = SearchAttributes::from_proto(info.search_attributes.as_ref()?);
    let running = info.status == WorkflowExecutionStatus::Running as i32;
    let completed = info.status == WorkflowExecutionStatus::Completed as i32;
    let ended_outside = matches!(
        WorkflowExecutionStatus::try_from(info.status),
        Ok(WorkflowExecutionStatus::Terminated | WorkflowExecutionStatus::TimedOut | WorkflowExecutionStatus::Canceled)
    );
    let set: Option<WorkflowStatus> = attrs
        .get(&STATUS)
        .and_then(|s| serde_json::from_value(serde_json::Value::String(s)).ok());
    let status = match (set, running, ended_outside) {
        (_, _, true) => WorkflowStatus::Terminated,
        (Some(s), true, _) => s,
        (None, true, _) => WorkflowStatus::Running,
        (Some(s), false, _) if s.is_terminal() => s,
        // A lean run's COMPLETED end sets nothing: Temporal's Completed says it.
        (_, false, _) if completed => WorkflowStatus::Completed,
        // Ended without saying how (failed its task, or ended before its last upsert).
        (_, false, _) => WorkflowStatus::Failed,
    };
    let waiting = running && matches!(status, WorkflowStatus::Waiting | WorkflowStatus::SchedulerWaiting);
    Some(RunSummary {
        workflow_id: id.to_string(),
        definition: attrs.get(&DEFINITION),
        version: attrs.get(&VERSION),
        status,
        waiting_on: attrs.get(&WAITING_ON).filter(|_| waiting),
        waiting_since: attrs
            .get(&WAITING_SINCE)
            .filter(|_| waiting)
            .and_then(|t| utc(t.seconds(), t.nanos())),
        started_at: info.start_time.as_ref().and_then(|t| utc(t.seconds, t.nanos)),
        closed_at: info.close_time.as_ref().and_then(|t| utc(t.seconds, t.nanos)),
    })
}

/// Workflow time (Unix ms) as a search attribute's timestamp.
pub fn timestamp(ms: i64) -> Timestamp {
    Timestamp::new(ms.div_euclid(1000), (ms.rem_euclid(1000) * 1_000_000) as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_always_names_the_tenant_and_each_filter_given() {
        let now = DateTime::parse_from_rfc3339("2026-12-05T10:00:00Z").unwrap().to_utc();
        let f = RunsFilter {
            definition: Some("refund".into()),
            status: Some(WorkflowStatus::Waiting),
            waiting_on: Some("confirm".into()),
            waiting_longer_than: Some(std::time::Duration::from_secs(3600)),
            ..Default::default()
        };
        assert_eq!(
            query("acme", &f, now),
            "WorkflowType = 'drift' AND DriftTenant = 'acme' AND ExecutionStatus != 'ContinuedAsNew' AND \
             DriftDefinition = 'refund' AND \
             ExecutionStatus = 'Running' AND DriftStatus = 'WAITING' AND ExecutionStatus = 'Running' AND \
             DriftStatus IN ('WAITING', 'SCHEDULER_WAITING') AND DriftWaitingOn = 'confirm' AND \
             ExecutionStatus = 'Running' AND DriftStatus IN ('WAITING', 'SCHEDULER_WAITING') AND \
             DriftWaitingSince < '2026-12-05T09:00:00.000Z'"
        );
        assert_eq!(
            query("acme", &RunsFilter::default(), now),
            "WorkflowType = 'drift' AND DriftTenant = 'acme' AND ExecutionStatus != 'ContinuedAsNew'"
        );
    }

    #[test]
    fn attributes_count_as_registered_only_all_of_them_each_with_its_type() {
        use temporalio_common::protos::temporal::api::enums::v1::IndexedValueType as T;
        let mut reg: std::collections::HashMap<String, i32> = ATTRIBUTES
            .iter()
            .map(|(n, k)| {
                (
                    n.to_string(),
                    if *k == "Datetime" { T::Datetime } else { T::Keyword } as i32,
                )
            })
            .collect();
        assert!(all_registered(&reg));
        reg.insert("DriftWaitingSince".into(), T::Keyword as i32);
        assert!(
            !all_registered(&reg),
            "a Datetime registered as Keyword would fail each upsert"
        );
        reg.remove("DriftWaitingSince");
        assert!(!all_registered(&reg));
    }

    fn start(start_node: &str, lean: bool) -> drift_core::domain::WorkflowStart {
        use drift_core::domain::{TenantId, WorkflowStart};
        let definition = serde_json::from_value(serde_json::json!({
            "id": "refund", "startNode": start_node, "states": {
                "ask": {"node": {"type": "INSTRUCTION", "layoutId": "l"}, "nextNode": "done"},
                "done": {"node": {"type": "SUCCESS"}}}
        }))
        .unwrap();
        WorkflowStart {
            tenant: TenantId::parse("acme").unwrap(),
            runs_indexed: true,
            lean_index: lean,
            ..crate::workflow::tests::a_start(definition)
        }
    }

    #[test]
    fn a_lean_run_that_starts_on_a_screen_starts_waiting_on_it_and_any_other_starts_running() {
        let at = |s: &drift_core::domain::WorkflowStart| {
            let a = at_start(s, 1_733_392_800_123);
            (
                a.get(&STATUS),
                a.get(&WAITING_ON),
                a.get(&WAITING_SINCE).map(|t| t.seconds()),
            )
        };
        assert_eq!(
            at(&start("ask", true)),
            (Some("WAITING".into()), Some("ask".into()), Some(1_733_392_800))
        );
        assert_eq!(at(&start("done", true)), (Some("RUNNING".into()), None, None));
        // A run from before lean starts (and a replay of one) starts as it did.
        assert_eq!(at(&start("ask", false)), (Some("RUNNING".into()), None, None));
    }

    fn listed(status: WorkflowExecutionStatus, drift_status: &str) -> WorkflowStatus {
        let attrs = SearchAttributes::new([
            TENANT.value_set("acme".to_string()),
            STATUS.value_set(drift_status.to_string()),
            WAITING_ON.value_set("ask".to_string()),
        ]);
        let info = WorkflowExecutionInfo {
            execution: Some(
                temporalio_common::protos::temporal::api::common::v1::WorkflowExecution {
                    workflow_id: "acme/wf-1".into(),
                    run_id: String::new(),
                },
            ),
            status: status as i32,
            search_attributes: Some(attrs.to_proto()),
            ..Default::default()
        };
        let s = summary(&info).unwrap();
        assert!(
            s.waiting_on.is_none() || status == WorkflowExecutionStatus::Running,
            "{s:?}"
        );
        s.status
    }

    #[test]
    fn an_ended_run_reads_as_it_ended_whatever_wait_its_attributes_last_said() {
        use WorkflowExecutionStatus as E;
        assert_eq!(listed(E::Completed, "WAITING"), WorkflowStatus::Completed);
        assert_eq!(listed(E::Completed, "RUNNING"), WorkflowStatus::Completed);
        assert_eq!(listed(E::Completed, "FAILED"), WorkflowStatus::Failed);
        assert_eq!(listed(E::Completed, "TERMINATED"), WorkflowStatus::Terminated);
        assert_eq!(listed(E::TimedOut, "WAITING"), WorkflowStatus::Terminated);
        assert_eq!(listed(E::Running, "WAITING"), WorkflowStatus::Waiting);
    }

    #[test]
    fn a_quote_in_a_value_cannot_end_its_literal() {
        assert_eq!(lit("a' OR DriftTenant = 'b"), "'a\\' OR DriftTenant = \\'b'");
    }

    #[test]
    fn workflow_time_becomes_a_timestamp_to_the_millisecond() {
        let t = timestamp(1_733_392_800_123);
        assert_eq!((t.seconds(), t.nanos()), (1_733_392_800, 123_000_000));
    }
}
