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
    assert_eq!(cur.ctx["calc"], json!(42));
    assert_eq!(request.url, "http://x.test/orders/o-7?v=42");
    assert_eq!(request.body, Some(json!({"n": 42})));
    m.http_done(&mut cur, "fetch", ok(json!({"ok": true})));
    assert_eq!(cur.ctx["fetch"], json!(true));

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
    assert_eq!(cur.ctx["_error"]["node"], json!("calc"));
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
        Some("HTTP call failed: the upstream answered 503")
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
