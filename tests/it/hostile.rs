//! A corpus of hostile and malformed requests against a waiting workflow: every one is refused
//! with a 4xx, none causes a 5xx or a panic, and the workflow's Temporal history is unchanged.

use crate::helpers::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// One request of the corpus.
struct Case {
    what: String,
    method: Method,
    path: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Option<Vec<u8>>,
}

fn case(what: &str, method: Method, path: &str, body: Option<&str>) -> Case {
    Case {
        what: what.into(),
        method,
        path: path.into(),
        headers: vec![],
        body: body.map(|b| b.as_bytes().to_vec()),
    }
}

impl Case {
    fn header(mut self, k: &str, v: impl AsRef<[u8]>) -> Self {
        self.headers.push((k.into(), v.as_ref().to_vec()));
        self
    }
    fn json(what: &str, method: Method, path: &str, v: Value) -> Case {
        case(what, method, path, Some(&v.to_string()))
    }
}

/// Events in the workflow's Temporal history (all runs of it).
fn history_len(app: &TestApp, id: &str) -> usize {
    let out = std::process::Command::new("temporal")
        .args(["workflow", "show", "--workflow-id", &format!("{}/{id}", app.tenant)])
        .args(["--address", &infra().temporal_address, "--output", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["events"].as_array().map(Vec::len).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corpus_of_hostile_requests_gets_4xx_every_time_with_no_panic_and_no_history_change() {
    let app = spawn_app().await;
    let id = id_of(&app.start("bank_account", json!({})).await);
    let token = app.start("quick_screen", json!({"n": 1})).await.body["streamToken"]
        .as_str()
        .unwrap()
        .to_string();
    let used_key = format!("used-{}", uid());
    let first = app
        .call(
            Method::POST,
            "/v3/workflow/start",
            Some(json!({"workflow": "quick_screen", "params": {"n": 1}})),
            &[("idempotency-key", used_key.as_str())],
        )
        .await;
    assert_eq!(status_of(&first), "WAITING", "{first:?}");
    let before = history_len(&app, &id);
    assert!(before > 0, "the history is read");
    let panics_before = SERVER_PANICS.load(Ordering::SeqCst);

    let start = "/v3/workflow/start";
    let resume = format!("/v3/workflow/resume/{id}");
    let execute = format!("/v3/workflow/{id}/disconnected-node/execute");
    let answer = |selected: Value| json!({"viewResponse": {"selectedOptions": selected}});
    let nested = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let big_field = "x".repeat(50 * 1024);
    let huge = "y".repeat(900 * 1024);
    let none_jwt = {
        use base64::Engine;
        let b = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let claims = json!({"tenant": app.tenant, "client": "tests", "scope": ALL_SCOPES, "exp": 4102444800u64});
        format!(
            "{}.{}.",
            b.encode(r#"{"alg":"none","typ":"JWT"}"#),
            b.encode(claims.to_string())
        )
    };
    let mut corpus = vec![
        // Malformed and mistyped bodies.
        case("not JSON", Method::POST, start, Some("{not json")),
        case("empty body", Method::POST, start, Some("")),
        case("a JSON array", Method::POST, start, Some("[]")),
        case("JSON null", Method::POST, start, Some("null")),
        case("5000-deep nesting", Method::POST, start, Some(&nested)),
        case("invalid UTF-8", Method::POST, start, None),
        Case::json("workflow is a number", Method::POST, start, json!({"workflow": 5})),
        Case::json(
            "params is a list",
            Method::POST,
            start,
            json!({"workflow": "quick_screen", "params": [1]}),
        ),
        Case::json(
            "params is a string",
            Method::POST,
            start,
            json!({"workflow": "quick_screen", "params": "x"}),
        ),
        Case::json(
            "unknown field",
            Method::POST,
            start,
            json!({"workflow": "quick_screen", "admin": true}),
        ),
        Case::json(
            "traversal in workflowId",
            Method::POST,
            start,
            json!({"workflow": "quick_screen", "workflowId": "../x"}),
        ),
        Case::json(
            "slash in workflowId",
            Method::POST,
            start,
            json!({"workflow": "quick_screen", "workflowId": "other/x"}),
        ),
        Case::json(
            "long workflowId",
            Method::POST,
            start,
            json!({"workflow": "quick_screen", "workflowId": "w".repeat(200)}),
        ),
        Case::json(
            "bad requestId",
            Method::POST,
            start,
            json!({"workflow": "quick_screen", "requestId": "a b"}),
        ),
        Case::json(
            "unknown mode",
            Method::POST,
            start,
            json!({"workflow": "quick_screen", "mode": "turbo"}),
        ),
        Case::json(
            "ftp callback",
            Method::POST,
            start,
            json!({"workflow": "quick_screen", "callbackUrl": "ftp://x/y"}),
        ),
        Case::json(
            "callback with credentials",
            Method::POST,
            start,
            json!({"workflow": "quick_screen", "callbackUrl": "https://u:p@hooks.example.com/"}),
        ),
        Case::json(
            "unknown workflow",
            Method::POST,
            start,
            json!({"workflow": "../../etc/passwd"}),
        ),
        Case::json(
            "unknown version",
            Method::POST,
            start,
            json!({"workflow": "quick_screen", "version": "999"}),
        ),
        Case::json(
            "oversized params",
            Method::POST,
            start,
            json!({"workflow": "quick_screen", "params": {"b": huge.clone()}}),
        ),
        // Hostile headers (each on an otherwise invalid call, so nothing could start anyway).
        case("wait=1e20", Method::POST, start, Some("{}")).header("prefer", "wait=1e20"),
        case("wait=-1", Method::POST, start, Some("{}")).header("prefer", "wait=-1"),
        case("wait=NaN", Method::POST, start, Some("{}")).header("prefer", "wait=NaN"),
        case("wait=inf", Method::POST, start, Some("{}")).header("prefer", "wait=inf, wait=1e400"),
        case(
            "long Idempotency-Key",
            Method::POST,
            start,
            Some(r#"{"workflow":"quick_screen"}"#),
        )
        .header("idempotency-key", "k".repeat(300)),
        case(
            "binary Idempotency-Key",
            Method::POST,
            start,
            Some(r#"{"workflow":"quick_screen"}"#),
        )
        .header("idempotency-key", [0xff, 0xfe, 0x80]),
        case("binary tenant header", Method::POST, start, Some("{}")).header("X_TENANT_ID", [0xff, 0xc3]),
        // A valid start under two credentials: ambiguous, whichever is first.
        case(
            "two Authorization headers",
            Method::POST,
            start,
            Some(r#"{"workflow":"quick_screen","params":{"n":9}}"#),
        )
        .header("authorization", bearer(&app.token("tests")))
        .header("authorization", "Bearer dk_forged_00000000000000000000"),
        case(
            "an Idempotency-Key used for another request",
            Method::POST,
            start,
            Some(r#"{"workflow":"bank_account"}"#),
        )
        .header("idempotency-key", &used_key),
        case(
            "other tenant header",
            Method::POST,
            start,
            Some(r#"{"workflow":"quick_screen"}"#),
        )
        .header("X_TENANT_ID", "someone-else"),
        case(
            "long tenant header",
            Method::POST,
            start,
            Some(r#"{"workflow":"quick_screen"}"#),
        )
        .header("X_TENANT_ID", "t".repeat(5000)),
        case(
            "long user header",
            Method::POST,
            start,
            Some(r#"{"workflow":"quick_screen"}"#),
        )
        .header("X_USERNAME_ID", "u".repeat(5000)),
        case("huge Last-Event-ID", Method::POST, start, Some("{}")).header("last-event-id", "9".repeat(400)),
        // Resumes that must never reach the workflow.
        Case::json(
            "answer for an unknown widget",
            Method::PUT,
            &resume,
            answer(json!({"nope": "x"})),
        ),
        Case::json(
            "50 KB unknown field",
            Method::PUT,
            &resume,
            answer(json!({"accountNumber": "11112222", "save": "save", "junk": big_field.clone()})),
        ),
        Case::json(
            "900 KB unknown field",
            Method::PUT,
            &resume,
            answer(json!({"junk": huge.clone()})),
        ),
        Case::json(
            "missing required widget",
            Method::PUT,
            &resume,
            answer(json!({"save": "save"})),
        ),
        Case::json(
            "value not allowed",
            Method::PUT,
            &resume,
            answer(json!({"accountNumber": "1", "save": "delete-everything"})),
        ),
        Case::json(
            "selectedOptions is a list",
            Method::PUT,
            &resume,
            json!({"viewResponse": {"selectedOptions": []}}),
        ),
        Case::json(
            "viewResponse is a list",
            Method::PUT,
            &resume,
            json!({"viewResponse": []}),
        ),
        Case::json(
            "viewResponse is a string",
            Method::PUT,
            &resume,
            json!({"viewResponse": "x"}),
        ),
        Case::json("no viewResponse", Method::PUT, &resume, json!({})),
        Case::json(
            "negative seq",
            Method::PUT,
            &resume,
            json!({"viewResponse": {"selectedOptions": {}}, "seq": -1}),
        ),
        Case::json(
            "seq is a string",
            Method::PUT,
            &resume,
            json!({"viewResponse": {"selectedOptions": {}}, "seq": "1"}),
        ),
        Case::json(
            "stale seq",
            Method::PUT,
            &resume,
            json!({"viewResponse": {"selectedOptions": {"accountNumber": "11112222", "save": "save"}}, "seq": 99}),
        ),
        Case::json(
            "unknown top-level field",
            Method::PUT,
            &resume,
            json!({"viewResponse": {"selectedOptions": {}}, "force": true}),
        ),
        Case::json(
            "bad requestId",
            Method::PUT,
            &resume,
            json!({"viewResponse": {"selectedOptions": {}}, "requestId": "x".repeat(300)}),
        ),
        Case::json("invalid answer, wait=NaN", Method::PUT, &resume, answer(json!({}))),
        Case::json(
            "resume of an unknown workflow",
            Method::PUT,
            "/v3/workflow/resume/wf-none",
            answer(json!({})),
        ),
        Case::json(
            "traversal in the path",
            Method::PUT,
            "/v3/workflow/resume/..%2F..%2Fx",
            answer(json!({})),
        ),
        Case::json(
            "dots in the path",
            Method::PUT,
            "/v3/workflow/resume/%2E%2E",
            answer(json!({})),
        ),
        Case::json(
            "long id in the path",
            Method::PUT,
            &format!("/v3/workflow/resume/{}", "w".repeat(300)),
            answer(json!({})),
        ),
        // Execute-node and the rest.
        Case::json(
            "parameters is a list",
            Method::POST,
            &execute,
            json!({"node": "verify_account", "parameters": [1]}),
        ),
        Case::json("node is a number", Method::POST, &execute, json!({"node": 5})),
        Case::json(
            "oversized parameters",
            Method::POST,
            &execute,
            json!({"node": "verify_account", "parameters": {"a": big_field.clone(), "b": big_field.clone()}}),
        ),
        case(
            "terminate with a bad id",
            Method::DELETE,
            "/v3/workflow/terminate/a%20b",
            None,
        ),
        case("state of a NUL id", Method::GET, "/v3/workflow/%00", None),
        case(
            "SSE with a bad lastEventId",
            Method::GET,
            &format!("/v3/workflow/{id}/events?lastEventId=abc"),
            None,
        ),
        case("unknown route", Method::GET, "/v3/workflow/x/y/z", None),
        case("wrong method", Method::PATCH, start, Some("{}")),
    ];
    // Credentials that are no credentials (on a valid start).
    for (what, auth) in [
        ("empty bearer", "Bearer ".to_string()),
        ("basic auth", "Basic YWRtaW46YWRtaW4=".to_string()),
        ("10 KB bearer", format!("Bearer {}", "a".repeat(10_000))),
        ("alg none JWT", format!("Bearer {none_jwt}")),
        ("stream token to start", format!("Bearer {token}")),
        ("key-shaped garbage", "Bearer drift_deadbeef_AAAA".to_string()),
    ] {
        corpus.push(Case {
            what: what.into(),
            method: Method::POST,
            path: start.into(),
            headers: vec![("authorization".into(), auth.into_bytes())],
            body: Some(br#"{"workflow":"quick_screen"}"#.to_vec()),
        });
    }
    let waits = ["wait=NaN", "wait=-1", "wait=1e20"];
    for (i, w) in waits.iter().enumerate() {
        corpus.push(
            Case::json(
                &format!("invalid answer, {w}"),
                Method::PUT,
                &resume,
                answer(json!({"n": i})),
            )
            .header("prefer", w),
        );
    }
    // Definitions: malformed, mistyped, oversized, immutable, or naming what is not there.
    let defs = "/v3/definitions";
    let deep_states = json!({"id": "deep", "startNode": "a", "states": {"a": {"node": {"type": "SUCCESS", "disposition": serde_json::from_str::<Value>(&format!("{}{}", "[".repeat(120), "]".repeat(120))).unwrap()}}}});
    corpus.extend([
        case("definition: not JSON", Method::POST, defs, Some("{\"id\":")),
        case("definition: a list", Method::POST, defs, Some("[1,2]")),
        case("definition: 5000-deep nesting", Method::POST, defs, Some(&nested)),
        Case::json("definition: no id", Method::POST, defs, json!({"startNode": "a", "states": {}})),
        Case::json("definition: id with a slash", Method::POST, defs, json!({"id": "../etc", "startNode": "a", "states": {}})),
        Case::json("definition: unknown node type", Method::POST, defs, json!({"id": "h1", "startNode": "a", "states": {"a": {"node": {"type": "SHELL", "cmd": "rm -rf /"}}}})),
        Case::json("definition: script that does not compile", Method::POST, defs, json!({"id": "h2", "startNode": "a", "states": {"a": {"node": {"type": "SCRIPT", "script": "fn ("}, "nextNode": "a"}}})),
        Case::json("definition: deep disposition, bad start", Method::POST, defs, {let mut d = deep_states.clone(); d["startNode"] = json!("zz"); d}),
        Case::json("definition: 900 KB", Method::POST, defs, json!({"id": "big", "startNode": "a", "states": {}, "description": huge})),
        Case::json("definition: edit published refund v1", Method::PUT, "/v3/definitions/refund", json!({"version": "1", "id": "refund", "startNode": "a", "states": {}})),
        Case::json("definition: body id differs from path", Method::PUT, "/v3/definitions/refund", json!({"id": "other", "startNode": "a", "states": {}})),
        case("definition: 300-char id in path", Method::GET, &format!("/v3/definitions/{}", "a".repeat(300)), None),
        case("definition: unknown version", Method::GET, "/v3/definitions/refund?version=999", None),
        case("definition: version -1", Method::GET, "/v3/definitions/refund?version=-1", None),
        case("definition: delete a published version", Method::DELETE, "/v3/definitions/refund?version=1", None),
        Case::json("definition: activate a missing version", Method::POST, "/v3/definitions/refund/activate", json!({"version": 99})),
        Case::json("definition: activate version as text", Method::POST, "/v3/definitions/refund/activate", json!({"version": "1; DROP TABLE"})),
        case("definition: publish with no SNAPSHOT", Method::POST, "/v3/definitions/never-made/publish", None),
        case("definition: graph as png", Method::GET, "/v3/definitions/refund/graph?format=png", None),
        Case::json("node: bad script", Method::POST, "/v3/nodes", json!({"id": "hn", "node": {"type": "SCRIPT", "script": "let"}})),
    ]);
    // Answer links: forged, altered, replayed as the wrong kind, oversized; bad link requests.
    let link_url = app
        .call(Method::POST, &format!("/v3/workflow/{id}/links"), Some(json!({})), &[])
        .await
        .body["url"]
        .as_str()
        .expect("a link to the bank screen")
        .to_string();
    let link = link_url.split_once("/answer/").unwrap().1.to_string();
    let (payload, sig) = link.split_once('.').unwrap();
    let links = format!("/v3/workflow/{id}/links");
    let long = "a".repeat(3000);
    let tampered = format!("{payload}A.{sig}");
    corpus.extend([
        case(
            "link: forged token",
            Method::GET,
            "/answer/eyJrIjoiYSJ9.c2ln/screen",
            None,
        ),
        case(
            "link: altered payload",
            Method::GET,
            &format!("/answer/{tampered}/screen"),
            None,
        ),
        case(
            "link: 3000-character token",
            Method::GET,
            &format!("/answer/{long}/screen"),
            None,
        ),
        Case::json(
            "link: answer without a form token",
            Method::POST,
            &format!("/answer/{link}"),
            answer(json!({})),
        ),
        Case::json(
            "link: the link as its own form token",
            Method::POST,
            &format!("/answer/{link}"),
            json!({"formToken": link, "viewResponse": {"selectedOptions": {}}}),
        ),
        Case::json(
            "link: a forged link's answer",
            Method::POST,
            &format!("/answer/{tampered}"),
            json!({"formToken": link, "viewResponse": {"selectedOptions": {}}}),
        ),
        case(
            "link: answer not JSON",
            Method::POST,
            &format!("/answer/{link}"),
            Some("{\"formToken\":"),
        ),
        Case::json(
            "link: 900 KB answer",
            Method::POST,
            &format!("/answer/{link}"),
            json!({"formToken": "x", "viewResponse": {"selectedOptions": {"a": huge}}}),
        ),
        Case::json("link: ttlSecs 0", Method::POST, &links, json!({"ttlSecs": 0})),
        Case::json(
            "link: ttlSecs of ten years",
            Method::POST,
            &links,
            json!({"ttlSecs": 315_360_000u64}),
        ),
        Case::json(
            "link: assignee with a newline",
            Method::POST,
            &links,
            json!({"assignee": "ann\r\nSet-Cookie: x=1"}),
        ),
        Case::json("link: for a screen long gone", Method::POST, &links, json!({"seq": 0})),
        Case::json(
            "link: unknown field",
            Method::POST,
            &links,
            json!({"url": "https://evil.example"}),
        ),
    ]);
    corpus[5].body = Some(vec![b'{', 0xff, 0xfe, b'}']);
    assert!(corpus.len() >= 60, "{}", corpus.len());

    // A connection the server closed after refusing an oversized body is not reused.
    let http = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let mut server_errors = Vec::new();
    for c in &corpus {
        let mut req = http.request(c.method.clone(), format!("{}{}", app.base, c.path));
        if !c.headers.iter().any(|(k, _)| k == "authorization") {
            req = req.header("authorization", bearer(&app.token("tests")));
        }
        for (k, v) in &c.headers {
            req = req.header(k.as_str(), reqwest::header::HeaderValue::from_bytes(v).unwrap());
        }
        if let Some(b) = &c.body {
            req = req.header("content-type", "application/json").body(b.clone());
        }
        let r = match req.send().await {
            Ok(r) => r,
            // A server may answer 413 and close before the client finished sending.
            Err(_) if c.body.as_ref().is_some_and(|b| b.len() > 64 * 1024) => continue,
            Err(e) => panic!("{}: {e}", c.what),
        };
        let status = r.status();
        let body = r.text().await.unwrap_or_default();
        if !status.is_client_error() {
            server_errors.push(format!("{}: {status} {}", c.what, &body[..body.len().min(200)]));
        }
    }
    assert!(server_errors.is_empty(), "not 4xx:\n{}", server_errors.join("\n"));
    // The refused definition calls stored and changed nothing.
    let v = app
        .call(Method::GET, "/v3/definitions/refund/versions", None, &[])
        .await;
    assert_eq!(v.body["versions"].as_array().map(Vec::len), Some(1), "{v:?}");
    assert_eq!(v.body["active"]["version"], 1);
    for path in [
        "definitions/h1",
        "definitions/h2",
        "definitions/deep",
        "definitions/big",
        "definitions/other",
        "nodes/hn",
    ] {
        let r = app
            .call(Method::GET, &format!("/v3/{path}?version=SNAPSHOT"), None, &[])
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}: {r:?}");
    }

    // WebSocket: a 16 MiB frame closes the socket; bad messages get error replies.
    let auth = bearer(&app.token("ws"));
    let mut ws = Ws::connect_with(&app.ws_url(""), &[("authorization", &auth)])
        .await
        .unwrap();
    for (msg, status) in [
        ("{not json".to_string(), 400),
        (json!({"type": "launch-missiles"}).to_string(), 400),
        (
            json!({"type": "resume", "workflowId": "../x", "viewResponse": {}}).to_string(),
            400,
        ),
        (
            json!({"type": "resume", "workflowId": id, "viewResponse": {"selectedOptions": {"junk": big_field}}})
                .to_string(),
            422,
        ),
    ] {
        ws.send_text(msg).await;
        assert_eq!(ws.next_of("error", Duration::from_secs(10)).await["status"], status);
    }
    ws.send_text("z".repeat(16 << 20)).await;
    assert!(
        ws.next(Duration::from_secs(10)).await.is_none(),
        "a 16 MiB frame closes the socket"
    );

    // No wait needed: every call above has been answered, and a signal is in the history
    // before Temporal answers it; a handler's panic is counted before its connection ends.
    assert_eq!(
        SERVER_PANICS.load(Ordering::SeqCst),
        panics_before,
        "a request caused a panic"
    );
    assert_eq!(
        history_len(&app, &id),
        before,
        "no bad input reached the workflow's history"
    );
    let st = app.get(&id).await;
    assert_eq!((status_of(&st), st.body["seq"].as_u64()), ("WAITING", Some(1)));
    // An extreme wait on a valid call is capped, not an error.
    let capped = app
        .call(
            Method::POST,
            "/v3/workflow/start",
            Some(json!({"workflow": "quick_screen", "params": {"n": 2}})),
            &[("prefer", "wait=1e20")],
        )
        .await;
    assert_eq!(status_of(&capped), "WAITING", "{capped:?}");
    // And the workflow still takes a good answer.
    let ok = app
        .resume(&id, json!({"accountNumber": "11112222", "save": "save"}))
        .await;
    assert_eq!(status_of(&ok), "COMPLETED", "{ok:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_oversized_or_invalid_answers_leave_the_workflow_waiting_with_a_small_history() {
    let app = spawn_app().await;
    let id = id_of(&app.start("bank_account", json!({})).await);
    let junk = "j".repeat(60 * 1024);
    let huge = "h".repeat(900 * 1024);
    let http = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let mut refused = 0;
    for i in 0..60 {
        let selected = match i % 3 {
            0 => json!({"junk": junk}),
            1 => json!({"accountNumber": "1", "save": "save", "extra": huge}),
            _ => json!({"save": format!("not-a-choice-{i}")}),
        };
        let r = http
            .put(format!("{}/v3/workflow/resume/{id}", app.base))
            .header("authorization", bearer(&app.token("tests")))
            .json(&json!({"viewResponse": {"selectedOptions": selected}}))
            .send()
            .await;
        match r {
            Ok(r) if r.status().is_client_error() => refused += 1,
            Err(_) if i % 3 == 1 => refused += 1, // closed after its 413
            other => panic!("answer {i}: {other:?}"),
        }
    }
    assert_eq!(refused, 60);
    let out = std::process::Command::new("temporal")
        .args(["workflow", "show", "--workflow-id", &format!("{}/{id}", app.tenant)])
        .args(["--address", &infra().temporal_address, "--output", "json"])
        .output()
        .unwrap();
    assert!(out.stdout.len() < 1 << 20, "history is {} bytes", out.stdout.len());
    eprintln!("hostile: 60 bad answers refused; history {} bytes", out.stdout.len());
    let st = app.get(&id).await;
    assert_eq!((status_of(&st), st.body["seq"].as_u64()), ("WAITING", Some(1)));
}
