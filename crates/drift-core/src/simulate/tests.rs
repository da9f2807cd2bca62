use super::*;
use crate::domain::WorkflowStatus;
use crate::dsl::{Registry, validate};

fn example(name: &str) -> Definition {
    let path = format!("{}/../../examples/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let d: Definition = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert!(validate(&d, &Registry::default()).is_empty());
    d
}

fn scenario(v: Value) -> Scenario {
    serde_json::from_value(v).unwrap()
}

fn run(d: &Definition, v: Value) -> Report {
    simulate(d, &BTreeMap::new(), &scenario(v), Limits::default())
}

fn refund_answers() -> Value {
    json!({
        "params": {"orderId": "o-1"},
        "answers": [
            {"node": "refund_reason", "viewResponse": {"selectedOptions": {"reason": "damaged"}}},
            {"node": "confirm", "viewResponse": {"selectedOptions": {"action": "confirm"}}}
        ],
        "responses": {
            "fetch_order": {"status": 200, "body": {"orderId": "o-1", "amount": 120, "currency": "EUR"}},
            "issue_refund": {"status": 201, "body": {"refundId": "rf-9", "status": "issued"}}
        }
    })
}

fn path(r: &Report) -> Vec<&str> {
    r.path.iter().map(|s| s.node.as_str()).collect()
}

#[test]
fn refund_with_the_examples_answers_runs_to_completed_through_both_screens() {
    let r = run(&example("refund"), refund_answers());
    assert_eq!(
        path(&r),
        [
            "fetch_order",
            "check_amount",
            "refund_reason",
            "confirm",
            "decide",
            "issue_refund",
            "refunded"
        ]
    );
    assert_eq!(
        r.path[0].output,
        Some(json!({"orderId": "o-1", "amount": 120, "currency": "EUR"}))
    );
    assert_eq!(
        r.path[1].output,
        Some(json!("refund_reason")),
        "a branch's output is where it went"
    );
    assert_eq!(r.path[2].output, Some(json!({"reason": "damaged"})));
    assert_eq!(r.path[5].output, Some(json!({"refundId": "rf-9", "status": "issued"})));
    let screens: Vec<_> = r
        .screens
        .iter()
        .map(|s| (s.seq, s.node.as_str(), s.view.layout_id.as_str()))
        .collect();
    assert_eq!(
        screens,
        [(1, "refund_reason", "refund_reason"), (2, "confirm", "refund_confirm")]
    );
    assert_eq!(r.final_state.workflow_status, WorkflowStatus::Completed);
    assert_eq!(r.final_state.seq, 3);
    assert_eq!(
        r.final_state.disposition,
        Some(json!({"refundId": "rf-9", "message": "Refund issued"}))
    );
    assert_eq!(r.final_state.context["refund_reason:viewResponse"]["reason"], "damaged");
    assert!(r.final_state.context.get("_enum_store").is_none());
    assert!(
        r.rejections.is_empty() && r.stopped.is_none() && r.unused_answers == 0,
        "{r:?}"
    );
}

#[test]
fn an_answer_the_screen_refuses_is_listed_and_the_next_one_is_given_to_the_same_screen() {
    let mut sc = refund_answers();
    sc["answers"].as_array_mut().unwrap().insert(
        0,
        json!({"node": "refund_reason", "viewResponse": {"selectedOptions": {"reason": "bored"}}}),
    );
    let r = run(&example("refund"), sc);
    assert_eq!(r.rejections.len(), 1, "{r:?}");
    assert_eq!(
        (r.rejections[0].answer, r.rejections[0].node.as_str()),
        (0, "refund_reason")
    );
    assert_eq!(r.rejections[0].details[0].widget_id, "reason");
    assert_eq!(r.final_state.workflow_status, WorkflowStatus::Completed);
    assert_eq!(r.screens.len(), 2, "a rejection shows no new screen");
}

#[test]
fn a_run_out_of_answers_is_left_waiting_on_its_screen() {
    let mut sc = refund_answers();
    sc["answers"].as_array_mut().unwrap().truncate(1);
    let r = run(&example("refund"), sc);
    assert_eq!(r.final_state.workflow_status, WorkflowStatus::Waiting);
    assert_eq!(r.final_state.node.as_deref(), Some("confirm"));
    assert_eq!(r.final_state.view.as_ref().unwrap().layout_id, "refund_confirm");
    assert_eq!(r.final_state.seq, 2);
    assert!(r.stopped.is_none());
}

#[test]
fn an_answer_for_another_screen_stops_the_simulation_naming_both() {
    let mut sc = refund_answers();
    sc["answers"].as_array_mut().unwrap().remove(0);
    let r = run(&example("refund"), sc);
    let s = r.stopped.expect("stopped");
    assert_eq!(
        (s.reason, s.node.as_str()),
        (StopReason::AnswerForAnotherScreen, "refund_reason")
    );
    assert!(s.message.contains("\"confirm\""), "{}", s.message);
    assert_eq!(r.unused_answers, 1);
}

#[test]
fn a_large_order_goes_to_manual_review() {
    let mut sc = refund_answers();
    sc["responses"]["fetch_order"]["body"]["amount"] = json!(900);
    sc["answers"] = json!([{"node": "manual_review", "viewResponse": {"selectedOptions": {"ack": "ok"}}}]);
    let r = run(&example("refund"), sc);
    assert_eq!(path(&r), ["fetch_order", "check_amount", "manual_review", "in_review"]);
    assert_eq!(
        r.final_state.disposition,
        Some(json!({"message": "Sent to manual review"}))
    );
}

#[test]
fn responses_listed_per_attempt_are_retried_as_the_activity_would_and_a_client_error_is_final() {
    // maxAttempts 2: a 503 then a 200 succeeds on the second attempt.
    let mut sc = refund_answers();
    sc["responses"]["fetch_order"] = json!([
        {"status": 503},
        {"status": 200, "body": {"orderId": "o-1", "amount": 10, "currency": "EUR"}}
    ]);
    let r = run(&example("refund"), sc.clone());
    assert_eq!(r.path[0].attempts, Some(2));
    assert_eq!(r.final_state.workflow_status, WorkflowStatus::Completed);
    // Two 503s use up the attempts: the failure node ends the run with the upstream's status.
    sc["responses"]["fetch_order"] = json!([{"status": 503}]);
    let r = run(&example("refund"), sc.clone());
    assert_eq!(
        r.path[0].error.as_deref(),
        Some("the upstream answered 503 Service Unavailable")
    );
    assert_eq!(path(&r), ["fetch_order", "failed"]);
    assert_eq!(r.final_state.workflow_status, WorkflowStatus::Failed);
    assert!(r.final_state.error_message.as_deref().unwrap().contains("503"));
    // A 404 is not tried again.
    sc["responses"]["fetch_order"] = json!([{"status": 404}, {"status": 200}]);
    let r = run(&example("refund"), sc);
    assert_eq!(r.path[0].attempts, Some(1));
    assert_eq!(r.final_state.workflow_status, WorkflowStatus::Failed);
}

#[test]
fn an_http_node_with_no_stubbed_response_stops_the_simulation_by_name() {
    let mut sc = refund_answers();
    sc["responses"].as_object_mut().unwrap().remove("issue_refund");
    let r = run(&example("refund"), sc);
    let s = r.stopped.expect("stopped");
    assert_eq!((s.reason, s.node.as_str()), (StopReason::NoResponse, "issue_refund"));
    assert_eq!(r.final_state.workflow_status, WorkflowStatus::Running);
}

fn looping() -> Definition {
    serde_json::from_value(json!({
        "id": "loop", "startNode": "a",
        "states": {
            "a": {"node": {"type": "SCRIPT", "script": "1"}, "nextNode": "b"},
            "b": {"node": {"type": "WAIT", "durationMs": 1000}, "nextNode": "a"}
        }
    }))
    .unwrap()
}

#[test]
fn an_endless_flow_is_stopped_at_the_effect_limit_and_a_slow_one_by_time() {
    let d = looping();
    let r = simulate(&d, &BTreeMap::new(), &Scenario::default(), Limits::default());
    let s = r.stopped.expect("stopped");
    assert_eq!(s.reason, StopReason::Limit, "{s:?}");
    assert_eq!(r.path.len(), 2 * MAX_EFFECTS);
    let limits = Limits {
        time: Duration::ZERO,
        ..Limits::default()
    };
    let r = simulate(&d, &BTreeMap::new(), &Scenario::default(), limits);
    assert_eq!(r.stopped.expect("stopped").reason, StopReason::Time);
}

#[test]
fn a_wait_elapses_at_once_on_the_simulated_clock() {
    let d: Definition = serde_json::from_value(json!({
        "id": "w", "startNode": "pause",
        "states": {
            "pause": {"node": {"type": "WAIT", "durationMs": 90000}, "nextNode": "done"},
            "done": {"node": {"type": "SUCCESS"}}
        }
    }))
    .unwrap();
    let r = run(&d, json!({"now": "2026-01-01T00:00:00Z"}));
    assert_eq!(r.path[0].output, Some(json!({"firedAt": "2026-01-01T00:01:30+00:00"})));
    assert_eq!(
        (r.final_state.workflow_status, r.final_state.seq),
        (WorkflowStatus::Completed, 2)
    );
}

fn examples_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// Each case of `examples/ID.test.json` against `def`: the failures, as printed.
fn example_cases(id: &str, def: &Definition) -> Vec<(String, Vec<String>)> {
    use cases::{TestFile, check};
    let file = examples_dir().join(format!("{id}.test.json"));
    let tests: TestFile = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    let reg = Registry::load_dirs(&[examples_dir()]).unwrap();
    let def = reg.compile(def).unwrap();
    tests
        .cases
        .iter()
        .map(|c| {
            let r = simulate(&def, &BTreeMap::new(), &c.scenario(), Limits::default());
            (
                c.name.clone(),
                check(&r, &c.expect).iter().map(ToString::to_string).collect(),
            )
        })
        .collect()
}

#[test]
fn every_example_passes_its_definition_tests() {
    let reg = Registry::load_dirs(&[examples_dir()]).unwrap();
    for id in ["refund", "bank_account", "monthly_report"] {
        for (name, failures) in example_cases(id, reg.workflow(id, None).unwrap()) {
            assert!(failures.is_empty(), "{id}: {name}: {failures:#?}");
        }
    }
}

#[test]
fn a_changed_branch_rule_fails_refunds_tests_naming_the_case_step_and_expectation() {
    let mut def = example("refund");
    let Some(Node::Branch(b)) = &mut def.states.get_mut("check_amount").unwrap().node else {
        panic!("check_amount is a branch")
    };
    b.choices[0].rule = "ctx.fetch_order.amount < enums.autoRefundLimit".into();
    let results = example_cases("refund", &def);
    let (name, failures) = &results[0];
    assert_eq!(name, "a small order is refunded after the reason and the confirmation");
    assert!(
        failures.contains(&"path (at step 3): expected \"refund_reason\", got the end of the path; the path was fetch_order → check_amount".to_string()),
        "{failures:#?}"
    );
    assert!(
        failures.contains(
            &"screens[0].layoutId (at screen seq 1 (manual_review)): expected \"refund_reason\", got \"manual_review\""
                .to_string()
        ),
        "{failures:#?}"
    );
    // The case that fetches nothing but a failure does not pass the branch: it still passes.
    assert!(results.last().unwrap().1.is_empty(), "{results:#?}");
}

#[test]
fn a_hostile_script_cannot_hold_the_simulation_past_its_time() {
    // A script that never ends is cut off by the interpreter's operation limit; a loop of
    // scripts that each stay just under it, by the simulation's clock.
    let d: Definition = serde_json::from_value(json!({
        "id": "hostile", "startNode": "spin", "defaultFailureNode": "failed",
        "states": {
            "spin": {"node": {"type": "SCRIPT", "script": "let x = 0; while x < 20000 { x += 1; } x"}, "nextNode": "spin"},
            "failed": {"node": {"type": "FAILURE"}}
        }
    }))
    .unwrap();
    let limits = Limits {
        time: Duration::from_millis(300),
        ..Limits::default()
    };
    let t0 = Instant::now();
    let r = simulate(&d, &BTreeMap::new(), &Scenario::default(), limits);
    assert!(t0.elapsed() < Duration::from_secs(2), "took {:?}", t0.elapsed());
    assert_eq!(r.stopped.map(|s| s.reason), Some(StopReason::Time));
}

#[test]
fn back_in_a_simulation_returns_to_the_screen_before_with_its_answer_as_a_real_run_does() {
    let mut sc = refund_answers();
    let answers = sc["answers"].as_array_mut().unwrap();
    answers.insert(1, json!({"node": "confirm", "back": true}));
    answers.insert(
        2,
        json!({"node": "refund_reason", "viewResponse": {"selectedOptions": {"reason": "wrong_item"}}}),
    );
    let r = run(&example("refund"), sc);
    assert_eq!(r.final_state.workflow_status, WorkflowStatus::Completed, "{r:#?}");
    let shown: Vec<(u64, &str, bool)> = r
        .screens
        .iter()
        .map(|s| (s.seq, s.node.as_str(), s.can_go_back))
        .collect();
    // The first screen follows an HTTP node (Back cannot cross it); confirm can go back.
    assert_eq!(
        shown,
        [
            (1, "refund_reason", false),
            (2, "confirm", true),
            (3, "refund_reason", false),
            (4, "confirm", true)
        ]
    );
    assert_eq!(r.screens[2].previous_answer, Some(json!({"reason": "damaged"})));
    assert!(
        r.path.iter().any(|s| s.node == "confirm" && s.went_back),
        "{:?}",
        r.path
    );
    assert_eq!(
        r.final_state.context["refund_reason:viewResponse"]["reason"],
        "wrong_item"
    );
    assert_eq!((r.final_state.seq, r.unused_answers), (5, 0));
}

#[test]
fn back_that_cannot_apply_is_refused_in_a_simulation_naming_what_stands_in_the_way() {
    let mut sc = refund_answers();
    let answers = sc["answers"].as_array_mut().unwrap();
    answers.insert(0, json!({"node": "refund_reason", "back": true}));
    let r = run(&example("refund"), sc);
    assert_eq!(r.final_state.workflow_status, WorkflowStatus::Completed, "{r:#?}");
    assert_eq!(r.rejections.len(), 1, "{:?}", r.rejections);
    let refused = &r.rejections[0];
    assert_eq!((refused.answer, refused.node.as_str()), (0, "refund_reason"));
    let why = refused.cannot_go_back.as_ref().expect("a Back refusal");
    assert_eq!((why.node.as_str(), why.why), ("fetch_order", BackBlock::Crossed));
    assert!(matches!(refused.rejection(), Rejection::CannotGoBack { .. }));
}

#[test]
fn a_screen_whose_node_says_answer_link_lists_when_its_link_would_expire() {
    let d = example("approval");
    let r = run(
        &d,
        json!({"params": {"requester": "Dana", "amount": 5, "currency": "EUR", "purpose": "pens"},
        "now": "2026-01-01T00:00:00Z",
        "answers": [{"node": "approve", "viewResponse": {"selectedOptions": {"decision": "approve"}}}]}),
    );
    assert_eq!(
        r.screens[0].answer_link_expires_at.as_deref(),
        Some("2026-01-04T00:00:00Z"),
        "{r:?}"
    );
}
