use super::*;
use crate::dsl::{Definition, Registry, validate};
use serde_json::json;

fn def(v: Value) -> Definition {
    let d: Definition = serde_json::from_value(v).unwrap();
    let errors = validate(&d, &Registry::default());
    assert!(errors.is_empty(), "{errors:?}");
    d
}

fn screen(id: &str, widget: &str, values: &[&str]) -> Value {
    json!({"node": {"type": "INSTRUCTION", "layoutId": id, "inputOptions": [
        {"id": widget, "tags": {"values": ["ui.dropdown"]},
         "possibleValues": values.iter().map(|v| json!({"displayValue": v, "value": v})).collect::<Vec<_>>()}
    ]}, "nextNode": "route"})
}

fn flow() -> Definition {
    def(json!({
        "id": "t", "startNode": "calc", "defaultFailureNode": "failed",
        "states": {
            "calc": {"node": {"type": "SCRIPT", "script": "input.amount * 2"},
                     "parameters": {"amount": "$.params.amount"}, "nextNode": "fetch"},
            "fetch": {"node": {"type": "HTTP", "method": "POST", "url": "http://x.test/orders/{{ params.id }}",
                               "query": {"v": "{{ ctx.calc }}"}, "body": {"n": "{{ ctx.calc }}"},
                               "transformer": "response.body.ok"}, "nextNode": "ask"},
            "ask": screen("confirm", "choice", &["yes", "no"]),
            "route": {"node": {"type": "BRANCH", "choices": [
                {"rule": "ctx[\"ask:viewResponse\"].choice == \"yes\"", "nextNode": "pause"}], "defaultNode": "done"}},
            "pause": {"node": {"type": "WAIT", "durationMs": 50}, "nextNode": "kid"},
            "kid": {"node": {"type": "CHILD", "workflow": "other"}, "parameters": {"x": "$.calc"}, "nextNode": "done"},
            "done": {"node": {"type": "SUCCESS", "disposition": {"total": "{{ ctx.calc }}"}}},
            "failed": {"node": {"type": "FAILURE"}},
            "verify": {"node": {"type": "SCRIPT", "script": "input.acct.len() == 8"}}
        }
    }))
}

fn ok(body: Value) -> Result<HttpResponse, String> {
    Ok(HttpResponse {
        status: 200,
        headers: Default::default(),
        body,
    })
}

#[test]
fn every_node_type_runs_in_order_through_the_pure_interpreter() {
    let d = flow();
    let m = Machine::new(&d);
    let mut cur = Cursor::new(
        initial_context(&d, json!({"amount": 21, "id": "o-7"}), json!({"tenant": "t1"})),
        d.start_node.clone(),
    );

    let Effect::Http { instance, request, .. } = m.next_effect(&mut cur) else {
        panic!()
    };
    assert_eq!(instance, "fetch");
    assert_eq!(cur.ctx()["calc"], json!(42));
    assert_eq!(request.url, "http://x.test/orders/o-7?v=42");
    assert_eq!(request.body, Some(json!({"n": 42})));
    m.http_done(&mut cur, "fetch", ok(json!({"ok": true})));
    assert_eq!(cur.ctx()["fetch"], json!(true));

    let Effect::Screen { view, .. } = m.next_effect(&mut cur) else {
        panic!()
    };
    assert_eq!(view.layout_id, "confirm");
    let bad = m.answer(&mut cur, "ask", &view, &json!({"selectedOptions": {"choice": "maybe"}}));
    assert_eq!(bad.unwrap_err()[0].widget_id, "choice");
    let missing = m.answer(&mut cur, "ask", &view, &json!({"selectedOptions": {}}));
    assert_eq!(missing.unwrap_err()[0].message, "required");
    m.answer(&mut cur, "ask", &view, &json!({"selectedOptions": {"choice": "yes"}}))
        .unwrap();

    let Effect::Wait { duration_ms, .. } = m.next_effect(&mut cur) else {
        panic!()
    };
    assert_eq!(duration_ms, Some(50));
    m.effect_done(&mut cur, "pause", Value::Null);

    let Effect::Child { workflow, params, .. } = m.next_effect(&mut cur) else {
        panic!()
    };
    assert_eq!((workflow.as_str(), params), ("other", json!({"x": 42})));
    m.effect_done(&mut cur, "kid", json!({"workflowId": "c"}));

    let end = m.next_effect(&mut cur);
    assert_eq!(
        end,
        Effect::End {
            status: EndStatus::Completed,
            disposition: Some(json!({"total": 42})),
            error_message: None
        }
    );
}

#[test]
fn failing_http_routes_to_the_default_failure_node_with_its_error() {
    let d = flow();
    let m = Machine::new(&d);
    let mut cur = Cursor::new(
        initial_context(&d, json!({"amount": 1, "id": "a"}), json!({})),
        d.start_node.clone(),
    );
    m.next_effect(&mut cur);
    m.http_done(&mut cur, "fetch", Err("503 Service Unavailable".into()));
    let Effect::End {
        status, error_message, ..
    } = m.next_effect(&mut cur)
    else {
        panic!()
    };
    assert_eq!(status, EndStatus::Failed);
    assert!(error_message.unwrap().contains("503 Service Unavailable"));
}

#[test]
fn failing_script_routes_to_the_default_failure_node() {
    let d = flow();
    let m = Machine::new(&d);
    let mut cur = Cursor::new(
        initial_context(&d, json!({"amount": "text", "id": "a"}), json!({})),
        d.start_node.clone(),
    );
    let Effect::End {
        status, error_message, ..
    } = m.next_effect(&mut cur)
    else {
        panic!()
    };
    assert_eq!(status, EndStatus::Failed);
    assert!(error_message.unwrap().contains("script failed"));
    assert_eq!(cur.ctx()["_error"]["node"], json!("calc"));
}

#[test]
fn disconnected_node_runs_without_moving_the_cursor() {
    let d = flow();
    let m = Machine::new(&d);
    let mut cur = Cursor::new(initial_context(&d, json!({}), json!({})), "ask".into());
    for _ in 0..3 {
        let out = m
            .prepare_execute(&mut cur, "verify", Some(&json!({"acct": "12345678"})))
            .unwrap();
        assert_eq!(out, Prepared::Done(json!(true)));
    }
    assert_eq!(cur.node, "ask");
    assert!(m.prepare_execute(&mut cur, "ask", None).is_err());
}

#[test]
fn a_loop_without_a_stable_state_is_stopped() {
    let d = def(json!({"id": "l", "startNode": "a", "states": {
        "a": {"node": {"type": "SCRIPT", "script": "1"}, "nextNode": "b"},
        "b": {"node": {"type": "BRANCH", "choices": [], "defaultNode": "a"}}}}));
    let mut cur = Cursor::new(initial_context(&d, json!({}), json!({})), "a".into());
    let Effect::End {
        status, error_message, ..
    } = Machine::new(&d).next_effect(&mut cur)
    else {
        panic!()
    };
    assert_eq!(status, EndStatus::Failed);
    assert!(error_message.unwrap().contains("without reaching a stable state"));
}

#[test]
fn validation_names_the_node_and_field() {
    let d: Definition = serde_json::from_value(json!({"id": "v", "startNode": "nope", "states": {
        "a": {"node": {"type": "SCRIPT", "script": "1 +"}, "nextNode": "ghost"},
        "p": {"node": {"type": "SCRIPT", "script": "1"}, "parameters": {"x": "$[bad"}},
        "s": {"node": {"type": "INSTRUCTION", "layoutId": "x"}, "nextNode": "a"}}}))
    .unwrap();
    let errors = validate(&d, &Registry::default());
    let has = |node: Option<&str>, field: &str| errors.iter().any(|e| e.node.as_deref() == node && e.field == field);
    assert!(has(None, "startNode"), "{errors:?}");
    assert!(has(Some("a"), "nextNode"), "{errors:?}");
    assert!(has(Some("a"), "node.script"), "{errors:?}");
    assert!(has(Some("p"), "parameters.x"), "{errors:?}");
    let d: Definition = serde_json::from_value(json!({"id": "u", "startNode": "a", "states": {
        "a": {"node": {"type": "SUCCESS"}},
        "s": {"node": {"type": "INSTRUCTION", "layoutId": "x"}, "nextNode": "a"}}}))
    .unwrap();
    let errors = validate(&d, &Registry::default());
    assert!(
        errors
            .iter()
            .any(|e| e.node.as_deref() == Some("s") && e.message.contains("unreachable")),
        "{errors:?}"
    );
}

#[test]
fn dynamic_values_and_dependent_values_are_checked() {
    let d = def(json!({"id": "dv", "startNode": "s", "states": {
        "s": {"node": {"type": "INSTRUCTION", "layoutId": "pick",
            "inputOptions": [
                {"id": "country", "tags": {"values": ["ui.dropdown"]}},
                {"id": "city", "parentId": "country", "tags": {"values": ["ui.dropdown"]},
                 "possibleDependentValues": {"fr": [{"displayValue": "Paris", "value": "paris"}]}}],
            "possibleDynamicValues": {"country": "params.countries"}}, "nextNode": "e"},
        "e": {"node": {"type": "SUCCESS"}}}}));
    let m = Machine::new(&d);
    let mut cur = Cursor::new(
        initial_context(&d, json!({"countries": ["fr", "de"]}), json!({})),
        "s".into(),
    );
    let Effect::Screen { view, .. } = m.next_effect(&mut cur) else {
        panic!()
    };
    assert_eq!(view.input_options[0].possible_values.len(), 2);
    assert!(
        m.answer(
            &mut cur.clone(),
            "s",
            &view,
            &json!({"selectedOptions": {"country": "fr", "city": "lyon"}})
        )
        .is_err()
    );
    m.answer(
        &mut cur,
        "s",
        &view,
        &json!({"selectedOptions": {"country": "fr", "city": "paris"}}),
    )
    .unwrap();
}

fn without_failure_node() -> Definition {
    def(json!({
        "id": "t", "startNode": "fetch",
        "states": {
            "fetch": {"node": {"type": "HTTP", "method": "GET", "url": "http://x.test/"}, "nextNode": "ask"},
            "ask": {"node": {"type": "INSTRUCTION", "layoutId": "l", "timeoutMs": 1000, "inputOptions": []},
                    "nextNode": "done"},
            "done": {"node": {"type": "SUCCESS"}}
        }
    }))
}

#[test]
fn a_failure_with_nowhere_to_go_ends_the_run_with_its_own_message_and_leaves_the_position() {
    let d = without_failure_node();
    let m = Machine::new(&d);
    let mut cur = Cursor::new(initial_context(&d, json!({}), json!({})), d.start_node.clone());
    let Effect::Http { instance, .. } = m.next_effect(&mut cur) else {
        panic!()
    };
    m.http_done(&mut cur, &instance, Err("the upstream answered 503".into()));
    assert_eq!(cur.node, "fetch", "no synthetic node");
    let Effect::End {
        status, error_message, ..
    } = m.next_effect(&mut cur)
    else {
        panic!()
    };
    assert_eq!(status, EndStatus::Failed);
    assert_eq!(
        error_message.as_deref(),
        Some("HTTP node \"fetch\" failed: the upstream answered 503")
    );

    let mut cur = Cursor::new(initial_context(&d, json!({}), json!({})), "ask".into());
    let Effect::Screen { instance, .. } = m.next_effect(&mut cur) else {
        panic!()
    };
    m.screen_timed_out(&mut cur, &instance);
    let Effect::End { error_message, .. } = m.next_effect(&mut cur) else {
        panic!()
    };
    assert_eq!(
        error_message.as_deref(),
        Some("screen \"ask\" was not answered in time")
    );
}

#[test]
fn a_cursor_parked_by_an_earlier_release_still_reads_as_failed() {
    let d = without_failure_node();
    let m = Machine::new(&d);
    let mut cur: Cursor = serde_json::from_value(json!({
        "ctx": {"_error": {"node": "fetch", "message": "HTTP call failed: boom"}},
        "node": "_end_failed"
    }))
    .unwrap();
    let Effect::End { error_message, .. } = m.next_effect(&mut cur) else {
        panic!()
    };
    assert_eq!(error_message.as_deref(), Some("HTTP call failed: boom"));
}

#[test]
fn node_errors_keep_the_wording_runs_have_always_shown() {
    assert_eq!(Where::Rule(2).err("x").to_string(), "choice 2 rule failed: x");
    assert_eq!(
        Where::Parameter("amount".into()).err("y").to_string(),
        "parameter amount: y"
    );
    assert_eq!(
        Where::Until(Some("soon".into())).err("z").to_string(),
        "until \"soon\": z"
    );
    assert_eq!(
        NodeError::NoNextNode("a".into()).to_string(),
        "state \"a\" has no nextNode"
    );
}

fn small_budgets() -> Budgets {
    Budgets {
        context_bytes: 4_000,
        state_bytes: 1_000,
        node_output_bytes: 2_000,
        carry_bytes: 8_000,
        max_child_depth: 2,
    }
}

/// Runs `d` from its start within `small_budgets` to its (failed) end: the message, the cursor.
fn failed_within_small_budgets(d: &Definition) -> (String, Cursor) {
    let m = Machine::new(d).with_budgets(small_budgets());
    let mut cur = Cursor::new(initial_context(d, json!({}), json!({})), d.start_node.clone());
    let Effect::End {
        status, error_message, ..
    } = m.next_effect(&mut cur)
    else {
        panic!("no end")
    };
    assert_eq!(status, EndStatus::Failed);
    (error_message.unwrap(), cur)
}

#[test]
fn a_context_kept_current_by_put_and_remove_measures_as_its_json() {
    let mut cur = Cursor::new(json!({}), "a".into());
    assert_eq!(cur.ctx_bytes(), 2);
    cur.put("a", json!("x".repeat(10)));
    cur.put("b\"q", json!({"n": [1, 2]}));
    cur.put("a", json!(1));
    cur.remove("b\"q");
    cur.put("c", Value::Null);
    let measured = cur.ctx_bytes();
    assert_eq!(measured, json_len(cur.ctx()), "{}", cur.ctx());
    cur.remove("a");
    cur.remove("c");
    assert_eq!(cur.ctx_bytes(), 2);
}

#[test]
fn a_node_output_over_its_budget_fails_the_node_naming_it_and_leaves_the_context_as_it_was() {
    let d = def(json!({"id": "big", "startNode": "make", "states": {
        "make": {"node": {"type": "SCRIPT", "script": "let s = \"x\"; s.pad(3000, \"x\"); s"}, "nextNode": "done"},
        "done": {"node": {"type": "SUCCESS"}}}}));
    let (msg, cur) = failed_within_small_budgets(&d);
    assert!(
        msg.starts_with("node \"make\": its output is 3,002 bytes, over the node output budget of 2,000 bytes (--max-node-output-bytes)"),
        "{msg}"
    );
    assert!(cur.ctx().get("make").is_none(), "not stored");
}

#[test]
fn outputs_that_together_outgrow_the_context_budget_fail_the_node_that_would_cross_it() {
    let d = def(
        json!({"id": "grow", "startNode": "a", "defaultFailureNode": "failed", "states": {
        "a": {"node": {"type": "SCRIPT", "script": "let s = \"x\"; s.pad(1500, \"x\"); s"}, "nextNode": "b"},
        "b": {"node": {"type": "SCRIPT", "script": "let s = \"y\"; s.pad(1500, \"y\"); s"}, "nextNode": "c"},
        "c": {"node": {"type": "SCRIPT", "script": "let s = \"z\"; s.pad(1500, \"z\"); s"}, "nextNode": "done"},
        "done": {"node": {"type": "SUCCESS"}},
        "failed": {"node": {"type": "FAILURE"}}}}),
    );
    let (msg, mut cur) = failed_within_small_budgets(&d);
    assert!(
        msg.contains("node \"c\": the run's context would be") && msg.contains("(--max-context-bytes)"),
        "{msg}"
    );
    assert!(cur.ctx_bytes() <= 4_000);
    assert_eq!(cur.ctx()["_error"]["node"], json!("c"));
}

#[test]
fn a_screen_over_the_state_budget_fails_and_an_answer_the_context_cannot_hold_is_refused() {
    let d = def(json!({"id": "wide", "startNode": "ask", "states": {
        "ask": {"node": {"type": "INSTRUCTION", "layoutId": "l", "inputOptions": [
                    {"id": "pick", "tags": {"values": ["ui.dropdown"]}},
                    {"id": "note", "tags": {"values": ["ui.free_text"]}}],
                 "possibleDynamicValues": {"pick": "params.items"}}, "nextNode": "done"},
        "done": {"node": {"type": "SUCCESS"}}}}));
    let m = Machine::new(&d).with_budgets(small_budgets());
    let items: Vec<String> = (0..200).map(|i| format!("item-{i}")).collect();
    let mut cur = Cursor::new(
        initial_context(&d, json!({"items": items}), json!({})),
        d.start_node.clone(),
    );
    let Effect::End { error_message, .. } = m.next_effect(&mut cur) else {
        panic!()
    };
    let msg = error_message.unwrap();
    assert!(
        msg.contains("node \"ask\": its screen is") && msg.contains("(--max-state-bytes)"),
        "{msg}"
    );

    let mut cur = Cursor::new(
        initial_context(&d, json!({"items": ["a"]}), json!({})),
        d.start_node.clone(),
    );
    let Effect::Screen { view, .. } = m.next_effect(&mut cur) else {
        panic!()
    };
    let answer = json!({"selectedOptions": {"pick": "a", "note": "n".repeat(5_000)}});
    let refused = m.answer(&mut cur, "ask", &view, &answer).unwrap_err();
    assert!(refused[0].message.contains("(--max-context-bytes)"), "{refused:?}");
    assert_eq!(cur.node, "ask", "still on the screen");
    m.answer(
        &mut cur,
        "ask",
        &view,
        &json!({"selectedOptions": {"pick": "a", "note": "ok"}}),
    )
    .unwrap();
}

#[test]
fn an_http_request_carries_the_node_output_budget_for_its_response() {
    let d = flow();
    let m = Machine::new(&d).with_budgets(small_budgets());
    let mut cur = Cursor::new(
        initial_context(&d, json!({"amount": 1, "id": "o"}), json!({})),
        d.start_node.clone(),
    );
    let Effect::Http { request, .. } = m.next_effect(&mut cur) else {
        panic!()
    };
    assert_eq!(request.max_response_bytes, Some(2_000));
    let unbounded = Machine::new(&d).with_budgets(Budgets::UNBOUNDED);
    let mut cur = Cursor::new(
        initial_context(&d, json!({"amount": 1, "id": "o"}), json!({})),
        d.start_node.clone(),
    );
    let Effect::Http { request, .. } = unbounded.next_effect(&mut cur) else {
        panic!()
    };
    assert_eq!(
        request.max_response_bytes, None,
        "runs from before budgets ask as they did"
    );
}

#[test]
fn a_child_cycle_is_refused_naming_its_path_whether_direct_or_through_another_definition() {
    let wf = |id: &str, child: &str| -> Definition {
        serde_json::from_value(json!({"id": id, "startNode": "spawn", "states": {
            "spawn": {"node": {"type": "CHILD", "workflow": child}, "nextNode": "done"},
            "done": {"node": {"type": "SUCCESS"}}}}))
        .unwrap()
    };
    let errors = validate(&wf("selfish", "selfish"), &Registry::default());
    let e = errors.iter().find(|e| e.field == "node.workflow").expect("refused");
    assert_eq!(e.node.as_deref(), Some("spawn"));
    assert!(e.message.contains("selfish → selfish"), "{e}");

    let mut reg = Registry::default();
    reg.insert_workflow(1, wf("b", "c"));
    reg.activate_workflow("b", 1);
    reg.insert_workflow(1, wf("c", "a"));
    reg.activate_workflow("c", 1);
    let errors = validate(&wf("a", "b"), &reg);
    let e = errors.iter().find(|e| e.field == "node.workflow").expect("refused");
    assert!(e.message.contains("a → b → c → a"), "{e}");
    // A child that pins an earlier version of its parent, which starts nothing, is no cycle.
    let mut reg = Registry::default();
    reg.insert_workflow(
        1,
        def(json!({"id": "a", "startNode": "done", "states": {"done": {"node": {"type": "SUCCESS"}}}})),
    );
    reg.activate_workflow("a", 1);
    let pinned: Definition = serde_json::from_value(json!({"id": "a", "startNode": "spawn", "states": {
        "spawn": {"node": {"type": "CHILD", "workflow": "a", "version": "1"}, "nextNode": "done"},
        "done": {"node": {"type": "SUCCESS"}}}}))
    .unwrap();
    assert!(validate(&pinned, &reg).is_empty());
}
