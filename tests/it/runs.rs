//! The runs list (`GET /v3/workflows`) against a real Temporal's visibility: the search
//! attributes `drift dev`'s server registers, set by the gateway at start and by the workflow as
//! it waits and ends.

use crate::helpers::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

async fn runs(app: &TestApp, query: &str) -> Resp {
    app.call(Method::GET, &format!("/v3/workflows{query}"), None, &[]).await
}

fn ids(r: &Resp) -> Vec<String> {
    let mut v: Vec<String> = r.body["runs"]
        .as_array()
        .unwrap_or_else(|| panic!("no runs in {r:?}"))
        .iter()
        .map(|x| x["workflowId"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

/// Asks until the list answers `want` (visibility trails each run by a moment); the last answer.
async fn listing(app: &TestApp, query: &str, want: &[&String]) -> Resp {
    let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    want.sort();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let r = runs(app, query).await;
        assert_eq!(r.status, StatusCode::OK, "{query}: {r:?}");
        if ids(&r) == want {
            return r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{query} never listed {want:?}; last: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_finds_the_refunds_waiting_on_confirm_longer_than_a_second_and_nothing_of_another_tenant() {
    let app = spawn_app().await;
    // Two refunds on their first screen; one of them answered, so it waits on `confirm`.
    let a = id_of(&app.start("refund", json!({"orderId": "o-1"})).await);
    let b = id_of(&app.start("refund", json!({"orderId": "o-2"})).await);
    let answered = app.resume(&b, json!({"reason": "damaged"})).await;
    assert_eq!(answered.body["view"]["node"], "confirm", "{answered:?}");
    // Another definition's run, ended.
    let other = id_of(&app.start("quick_screen", json!({"n": 1})).await);
    let done = app.resume(&other, json!({"ok": "ok"})).await;
    assert_eq!(done.body["workflowStatus"], "COMPLETED", "{done:?}");

    listing(&app, "?definition=refund", &[&a, &b]).await;
    listing(&app, "?definition=refund&waitingOn=refund_reason", &[&a]).await;
    let waiting = listing(&app, "?definition=refund&waitingOn=confirm", &[&b]).await;
    let run = &waiting.body["runs"][0];
    assert_eq!(
        (
            run["status"].as_str(),
            run["version"].as_str(),
            run["definition"].as_str()
        ),
        (Some("WAITING"), Some("1"), Some("refund")),
        "{run}"
    );
    assert!(run["waitingSince"].is_string() && run["startedAt"].is_string(), "{run}");
    // The must-show query: waiting on confirm for more than a second (asked until it has).
    let long = listing(
        &app,
        "?definition=refund&waitingOn=confirm&waitingLongerThanSecs=1",
        &[&b],
    )
    .await;
    println!(
        "GET /v3/workflows?definition=refund&waitingOn=confirm&waitingLongerThanSecs=1\n{}",
        serde_json::to_string_pretty(&long.body).unwrap()
    );
    let none = runs(&app, "?definition=refund&waitingOn=confirm&waitingLongerThanSecs=3600").await;
    assert_eq!(ids(&none), Vec::<String>::new());
    // By status: the ended run, as Drift ended it. Its end set no attribute (Temporal's own
    // Completed says it), and its first screen's wait was in its start attributes: it reads
    // COMPLETED, and is no longer among the waiting.
    let ended = listing(&app, "?status=COMPLETED", &[&other]).await;
    let run_ended = &ended.body["runs"][0];
    assert_eq!(run_ended["status"], "COMPLETED", "{run_ended}");
    assert!(run_ended.get("waitingOn").is_none_or(Value::is_null), "{run_ended}");
    // One more on that first screen: its start attributes alone say where it waits, and since when.
    let shown = id_of(&app.start("quick_screen", json!({"n": 2})).await);
    listing(&app, "?status=WAITING&definition=quick_screen", &[&shown]).await;
    let first = listing(&app, "?definition=quick_screen&waitingOn=show", &[&shown]).await;
    assert!(first.body["runs"][0]["waitingSince"].is_string(), "{first:?}");
    listing(&app, "?status=WAITING&definition=refund", &[&a, &b]).await;
    let started = run["startedAt"].as_str().unwrap();
    listing(
        &app,
        &format!("?definition=refund&startedAfter={}", "2000-01-01T00:00:00Z"),
        &[&a, &b],
    )
    .await;
    let before = runs(&app, &format!("?startedBefore={}", "2000-01-01T00:00:00Z")).await;
    assert_eq!(ids(&before), Vec::<String>::new(), "started {started}");

    // Paging: one at a time, the token goes on, and the last page has none.
    let p1 = runs(&app, "?definition=refund&pageSize=1").await;
    let token = p1.body["nextPageToken"].as_str().expect("a next page").to_string();
    let p2 = runs(&app, &format!("?definition=refund&pageSize=1&pageToken={token}")).await;
    assert_eq!(p2.status, StatusCode::OK, "{p2:?}");
    let mut both = [ids(&p1), ids(&p2)].concat();
    both.sort();
    let mut want = vec![a.clone(), b.clone()];
    want.sort();
    assert_eq!(both, want);

    // Another tenant, with every scope, sees none of these runs, however it filters.
    let mallory = jwt("mallory-runs", "m", ALL_SCOPES, 600);
    for q in [
        "",
        "?definition=refund",
        "?status=COMPLETED",
        &format!("?pageToken={token}"),
    ] {
        let r = send(
            app.http
                .get(format!("{}/v3/workflows{q}", app.base))
                .header("authorization", bearer(&mallory)),
        )
        .await;
        assert!(
            r.status == StatusCode::OK && ids(&r).is_empty() || r.status == StatusCode::BAD_REQUEST,
            "{q}: {r:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_filter_is_refused_by_name_and_a_caller_without_the_read_scope_is_refused() {
    let app = spawn_app().await;
    for (q, names) in [
        ("?status=SLEEPING", "`status`"),
        ("?waitingOn=a'%20OR%20'1", "`waitingOn`"),
        ("?startedAfter=yesterday", "`startedAfter`"),
        ("?pageSize=1000", "`pageSize`"),
        ("?waitingLongerThanSecs=-1", "waitingLongerThanSecs"),
        ("?tenant=other", "tenant"),
        ("?pageToken=bm90LWEtdG9rZW4", "`pageToken`"),
    ] {
        let r = runs(&app, q).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q}: {r:?}");
        let message = r.body["message"].as_str().unwrap_or_default();
        assert!(message.contains(names), "{q}: {message}");
    }
    let starter = jwt(&app.tenant, "s", "workflows:start", 600);
    let r = send(
        app.http
            .get(format!("{}/v3/workflows", app.base))
            .header("authorization", bearer(&starter)),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r:?}");
    let _: Value = r.body;
}
