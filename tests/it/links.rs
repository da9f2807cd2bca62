//! Answer links on the real servers: made with a credential, then opened and answered with the
//! link alone (no credential, no cookie), through the same command path as any resume; what a
//! mail scanner's or a link preview's fetch does (nothing); revoked, moved-on and forged links.

use crate::helpers::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Someone with the link and nothing else, fetching as a mail scanner or a chat preview would.
fn stranger(user_agent: &str) -> reqwest::Client {
    reqwest::Client::builder().user_agent(user_agent).build().unwrap()
}

/// Refund started and waiting on its first screen; its id.
async fn waiting_refund(app: &TestApp) -> String {
    let r = app.start("refund", json!({"orderId": "o-1"})).await;
    assert_eq!(status_of(&r), "WAITING", "{r:?}");
    id_of(&r)
}

async fn issue(app: &TestApp, id: &str, body: Value) -> Resp {
    app.call(Method::POST, &format!("/v3/workflow/{id}/links"), Some(body), &[])
        .await
}

/// The URL of a link made with no options.
async fn link_to(app: &TestApp, id: &str) -> String {
    let r = issue(app, id, json!({})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    r.body["url"].as_str().unwrap().to_string()
}

/// The link's own endpoints: its screen, and the page's answer.
async fn screen_of(url: &str) -> Resp {
    send(stranger("Mozilla/5.0").get(format!("{url}/screen"))).await
}

async fn answer(url: &str, form_token: &str, selected: Value) -> Resp {
    let body = json!({"formToken": form_token, "viewResponse": {"selectedOptions": selected}});
    send(stranger("Mozilla/5.0").post(url).json(&body)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_answers_its_screen_without_a_credential_once_and_the_run_moves_on() {
    let app = spawn_app().await;
    let id = waiting_refund(&app).await;
    let r = issue(&app, &id, json!({"assignee": "ann@example.com", "ttlSecs": 3600})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let url = r.body["url"].as_str().unwrap().to_string();
    assert!(url.starts_with(&format!("{}/answer/", app.base)), "{url}");
    assert_eq!(r.body["seq"], 1);

    // The page: served from the binary, guarded, and answering nothing by being fetched.
    let page = stranger("Mozilla/5.0").get(&url).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let h = page.headers().clone();
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert_eq!(h["cache-control"], "no-store");
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert!(page.text().await.unwrap().contains("/demo/answer.js"));

    let s = screen_of(&url).await;
    assert_eq!(s.status, StatusCode::OK, "{s:?}");
    assert_eq!(
        (s.body["status"].as_str(), s.body["seq"].as_u64()),
        (Some("open"), Some(1))
    );
    assert_eq!(s.body["view"]["layoutId"], "refund_reason");
    assert_eq!(s.body["assignee"], "ann@example.com");
    assert!(
        s.body.get("path").is_none() && s.body.get("disposition").is_none(),
        "only the screen: {s:?}"
    );
    let form = s.body["formToken"].as_str().unwrap().to_string();

    // A refusal is the same 422 a resume gets, and leaves the link open.
    let bad = answer(&url, &form, json!({"reason": "bored"})).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad:?}");
    assert_eq!(bad.body["details"][0]["widgetId"], "reason");
    assert_eq!(screen_of(&url).await.body["status"], "open");

    let done = answer(&url, &form, json!({"reason": "damaged"})).await;
    assert_eq!(done.status, StatusCode::OK, "{done:?}");
    assert_eq!(done.body["status"], "answered");
    assert_eq!(done.body["answeredBy"], "ann@example.com");
    assert!(done.body.get("view").is_none(), "an answered link shows no screen");
    // The run moved on, answered by the link's command.
    let a = app.get(&id).await.answer();
    assert_eq!((a.seq, a.node.as_deref()), (2, Some("confirm")));
    assert!(a.request_id.as_deref().is_some_and(|r| r.starts_with("link-")), "{a:?}");

    // The same page again: answered, by whom; nothing sent twice.
    let again = answer(&url, &form, json!({"reason": "wrong_item"})).await;
    assert_eq!(again.status, StatusCode::GONE, "{again:?}");
    assert_eq!(
        (again.body["code"].as_str(), again.body["details"]["status"].as_str()),
        (Some("link_closed"), Some("answered"))
    );
    assert_eq!(screen_of(&url).await.body["status"], "answered");
    assert_eq!(app.get(&id).await.answer().seq, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scanners_get_and_head_change_nothing_and_a_link_past_its_screen_says_the_run_moved_on() {
    let app = spawn_app().await;
    let id = waiting_refund(&app).await;
    let url = link_to(&app, &id).await;
    for agent in [
        "Microsoft Office Existence Discovery",
        "Slackbot-LinkExpanding 1.0",
        "curl/8.5",
    ] {
        let c = stranger(agent);
        for path in [url.clone(), format!("{url}/screen")] {
            assert_eq!(c.get(&path).send().await.unwrap().status(), StatusCode::OK);
            assert_eq!(c.head(&path).send().await.unwrap().status(), StatusCode::OK);
        }
    }
    assert_eq!(app.get(&id).await.answer().seq, 1, "fetching the link answered nothing");
    let form = screen_of(&url).await.body["formToken"].as_str().unwrap().to_string();
    // Answered in the app instead: the link says the run moved on, and answers nothing.
    assert_eq!(app.resume(&id, json!({"reason": "damaged"})).await.answer().seq, 2);
    assert_eq!(screen_of(&url).await.body["status"], "moved_on");
    let late = answer(&url, &form, json!({"reason": "damaged"})).await;
    assert_eq!(late.body["details"]["status"], "moved_on", "{late:?}");
    assert_eq!(app.get(&id).await.answer().seq, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_forged_or_other_tenants_link_answers_nothing() {
    let app = spawn_app().await;
    let id = waiting_refund(&app).await;
    let url = link_to(&app, &id).await;
    let form = screen_of(&url).await.body["formToken"].as_str().unwrap().to_string();
    let r = app
        .call(Method::DELETE, &format!("/v3/workflow/{id}/links"), None, &[])
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{r:?}");
    assert_eq!(screen_of(&url).await.body["status"], "revoked");
    let refused = answer(&url, &form, json!({"reason": "damaged"})).await;
    assert_eq!(refused.body["details"]["status"], "revoked", "{refused:?}");
    // A link made after the revocation works.
    let fresh = link_to(&app, &id).await;
    assert_eq!(screen_of(&fresh).await.body["status"], "open");

    // Forged and altered tokens: one answer, saying nothing of the workflow.
    let token = fresh.rsplit('/').next().unwrap();
    let (payload, sig) = token.split_once('.').unwrap();
    for bad in [
        format!("{payload}x.{sig}"),
        format!("{payload}.AAAA{sig}"),
        "nope".into(),
        form.clone(),
    ] {
        let r = screen_of(&format!("{}/answer/{bad}", app.base)).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{bad}: {r:?}");
        assert_eq!(r.body["message"], "this answer link is not valid");
    }
    // Another tenant cannot make, or revoke, links on this workflow.
    let other = jwt("someone-else", "tests", "workflows:drive workflows:read", 600);
    for method in [Method::POST, Method::DELETE] {
        let r = send(
            app.http
                .request(method, format!("{}/v3/workflow/{id}/links", app.base))
                .header("authorization", bearer(&other))
                .json(&json!({})),
        )
        .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{r:?}");
    }
    assert_eq!(app.get(&id).await.answer().seq, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_link_hammered_gets_429_while_another_still_opens_and_framing_is_as_configured() {
    let app = spawn_app_with(Opts {
        extra_args: vec!["--answer-frame-ancestors".into(), "https://intranet.example".into()],
        ..Opts::default()
    })
    .await;
    let id = waiting_refund(&app).await;
    let hammered = link_to(&app, &id).await;
    let other = link_to(&app, &id).await;
    let form = screen_of(&hammered).await.body["formToken"]
        .as_str()
        .unwrap()
        .to_string();
    let c = stranger("a-loop/1.0");
    let mut limited = None;
    for _ in 0..40 {
        let r = c.get(format!("{hammered}/screen")).send().await.unwrap();
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("a hammered link is limited within 40 requests");
    assert!(r.headers().contains_key("retry-after"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "rate_limited", "{body}");
    // Its answer is limited too, and answers nothing.
    let refused = answer(&hammered, &form, json!({"reason": "damaged"})).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS, "{refused:?}");
    assert_eq!(app.get(&id).await.answer().seq, 1);
    assert_eq!(
        screen_of(&other).await.body["status"],
        "open",
        "another link is not limited"
    );
    let page = stranger("Mozilla/5.0").get(&other).send().await.unwrap();
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.ends_with("frame-ancestors https://intranet.example"), "{csp}");
}

/// The approval example's params: someone asks to spend.
fn spend() -> Value {
    json!({"requester": "Dana", "amount": 1200, "currency": "EUR", "purpose": "conference travel"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_screen_whose_node_says_answer_link_carries_one_in_its_sync_state_and_the_link_answers_it() {
    let app = spawn_app().await;
    let r = app.start("approval", spend()).await;
    assert_eq!(status_of(&r), "WAITING", "{r:?}");
    let id = id_of(&r);
    let url = r.body["answerUrl"]
        .as_str()
        .expect("the sync state carries answerUrl")
        .to_string();
    assert!(url.starts_with(&format!("{}/answer/", app.base)), "{url}");
    assert_eq!(
        app.get(&id).await.body["answerUrl"],
        url.as_str(),
        "the stored state carries the same link"
    );

    let s = screen_of(&url).await;
    assert_eq!(
        (s.body["status"].as_str(), s.body["seq"].as_u64()),
        (Some("open"), Some(1)),
        "{s:?}"
    );
    // It lives the node's 72 hours from when the screen was shown (the workflow's clock).
    let expires = chrono::DateTime::parse_from_rfc3339(s.body["expiresAt"].as_str().unwrap()).unwrap();
    let left = expires.signed_duration_since(chrono::Utc::now()).num_seconds();
    assert!((72 * 3600 - 120..=72 * 3600 + 1).contains(&left), "{left} s left");
    let form = s.body["formToken"].as_str().unwrap().to_string();
    let done = answer(&url, &form, json!({"decision": "approve"})).await;
    assert_eq!(done.body["status"], "answered", "{done:?}");
    let end = app.get(&id).await;
    assert_eq!(status_of(&end), "COMPLETED", "{end:?}");
    assert_eq!(end.body["disposition"]["decision"], "approved");
    assert!(end.body.get("answerUrl").is_none(), "an end carries no link: {end:?}");

    // A screen whose node does not ask for a link carries none.
    let refund = app.start("refund", json!({"orderId": "o-1"})).await;
    assert!(refund.body.get("answerUrl").is_none(), "{refund:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_runs_webhook_carries_the_same_answer_url_as_its_live_state_and_a_revocation_closes_it() {
    use crate::webhooks::{Receiver, start_async};
    let app = spawn_app().await;
    let rx = Receiver::new(WEBHOOK_SECRET, vec![]);
    let callback = rx.serve(0).await;
    let (r, _) = start_async(&app, "approval", spend(), &callback).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
    let id = id_of(&r);
    rx.wait_delivered(1, std::time::Duration::from_secs(20)).await;
    let hit = rx.hits().remove(0);
    assert!(hit.verified && hit.status == "WAITING", "{hit:?}");
    let url = hit.answer_url.expect("the webhook carries answerUrl");
    let live = app
        .eventually(&id, std::time::Duration::from_secs(10), |s| s["seq"] == 1)
        .await;
    assert_eq!(
        live["answerUrl"],
        url.as_str(),
        "one link per screen, wherever it is read"
    );
    assert_eq!(screen_of(&url).await.body["status"], "open");

    let r = app
        .call(Method::DELETE, &format!("/v3/workflow/{id}/links"), None, &[])
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{r:?}");
    assert_eq!(screen_of(&url).await.body["status"], "revoked");
}
