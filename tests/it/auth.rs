//! Authentication and authorisation: credentials, tenants, scopes, tokens and tickets, each
//! against the real gateway, Temporal and Redis.

use crate::helpers::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

/// Runs the real `drift keys` command against `app`'s key store; stdout and stderr.
fn drift_keys(app: &TestApp, args: &[&str]) -> (String, String) {
    drift_keys_on(app, args, Some(&app.redis_url))
}

/// `drift keys` on the app's key store; a revocation is announced on `redis` when given.
fn drift_keys_on(app: &TestApp, args: &[&str], redis: Option<&str>) -> (String, String) {
    let mut cmd = std::process::Command::new(drift_bin());
    cmd.arg("keys")
        .arg("--database-url")
        .arg(&app.database_url)
        .args(["--key-prefix", &app.key_prefix])
        // No `drift dev` data folder to take a Redis from.
        .env(
            "DRIFT_DATA_DIR",
            std::env::temp_dir().join(format!("drift-keys-{}", app.key_prefix)),
        )
        .env_remove("DRIFT_REDIS_URL")
        .env_remove("DRIFT_REDIS_CLUSTER");
    if let Some(r) = redis {
        cmd.args(["--redis-url", r]);
    }
    let out = cmd.args(args).output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    );
    assert!(out.status.success(), "drift keys {args:?}: {stderr}");
    (stdout, stderr)
}

/// A call with exactly these headers (no credential of the app's own).
async fn raw(app: &TestApp, method: Method, path: &str, body: Option<Value>, headers: &[(&str, &str)]) -> Resp {
    let mut req = app.http.request(method, format!("{}{path}", app.base));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    Resp {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
    }
}

/// Whether Temporal knows the workflow (so "nothing was started" can be checked).
fn exists_in_temporal(app: &TestApp, id: &str) -> bool {
    std::process::Command::new("temporal")
        .args(["workflow", "describe", "--workflow-id", &format!("{}/{id}", app.tenant)])
        .args(["--address", &infra().temporal_address])
        .output()
        .unwrap()
        .status
        .success()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credential_a_revoked_key_and_an_expired_or_forged_jwt_get_401_and_start_nothing() {
    let app = spawn_app().await;
    let (key, stderr) = drift_keys(&app, &["create", "--tenant", &app.tenant, "--client", "ops"]);
    let key = key.trim().to_string();
    let key_id = stderr.split_whitespace().nth(1).unwrap().to_string();
    assert!(key_id.starts_with("key_"), "{stderr}");
    let start = |id: &str| json!({"workflow": "quick_screen", "workflowId": id, "params": {"n": 1}});

    let ok = raw(
        &app,
        Method::POST,
        "/v3/workflow/start",
        Some(start("by-key")),
        &[("authorization", &bearer(&key))],
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK, "a fresh key works: {ok:?}");
    assert_eq!(ok.body["workflowStatus"], "WAITING");
    let (list, _) = drift_keys(&app, &["list"]);
    assert!(
        list.contains(&key_id) && !list.contains(&key),
        "list shows ids, never keys:\n{list}"
    );

    let (_, said) = drift_keys(&app, &["revoke", &key_id]);
    assert!(said.contains("every gateway refuses it now"), "{said}");
    let expired = jwt(&app.tenant, "tests", ALL_SCOPES, -3600);
    let forged = {
        let claims = json!({"tenant": app.tenant, "client": "tests", "scope": ALL_SCOPES, "exp": chrono::Utc::now().timestamp() + 600});
        let key = jsonwebtoken::EncodingKey::from_secret(b"not-the-secret");
        jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
    };
    let cases = [
        ("no credential", None),
        ("revoked key", Some(key.clone())),
        ("expired JWT", Some(expired)),
        ("forged JWT", Some(forged)),
        ("made-up key", Some("drift_00000000_bm90IGEga2V5".to_string())),
        ("garbage", Some("not-a-credential".to_string())),
    ];
    for (i, (what, credential)) in cases.into_iter().enumerate() {
        let id = format!("never-{i}");
        let auth = credential.map(|c| bearer(&c));
        let mut headers = vec![("X_TENANT_ID", app.tenant.as_str()), ("X_CLIENT_ID", "tests")];
        if let Some(a) = &auth {
            headers.push(("authorization", a));
        }
        let r = raw(&app, Method::POST, "/v3/workflow/start", Some(start(&id)), &headers).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what}: {r:?}");
        assert_eq!(r.body["code"], "unauthorized", "{what}");
        assert!(!exists_in_temporal(&app, &id), "{what}: nothing is started");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_revoked_without_telling_redis_is_refused_after_the_gateways_next_revocation_check() {
    let app = spawn_app().await;
    let (key, stderr) = drift_keys(&app, &["create", "--tenant", &app.tenant, "--client", "ops"]);
    let (key, key_id) = (
        key.trim().to_string(),
        stderr.split_whitespace().nth(1).unwrap().to_string(),
    );
    let auth = bearer(&key);
    let headers = [("authorization", auth.as_str())];
    let get = || raw(&app, Method::GET, "/v3/definitions", None, &headers);
    // Twice: the second is answered from the gateway's cache of looked-up keys.
    for _ in 0..2 {
        assert_eq!(get().await.status, StatusCode::OK);
    }
    let (_, said) = drift_keys_on(&app, &["revoke", &key_id], None);
    assert!(said.contains("no Redis given"), "{said}");
    // The gateway checks the key store every 2 s by default.
    let deadline = std::time::Instant::now() + Duration::from_secs(6);
    loop {
        let r = get().await;
        if r.status == StatusCode::UNAUTHORIZED {
            assert_eq!(r.body["code"], "unauthorized");
            break;
        }
        assert_eq!(r.status, StatusCode::OK, "{r:?}");
        assert!(
            std::time::Instant::now() < deadline,
            "the revoked key is still accepted after 6 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_credential_finds_nothing_and_a_disagreeing_tenant_header_is_403() {
    let app = spawn_app().await;
    let id = id_of(&app.start("bank_account", json!({})).await);
    let other = bearer(&jwt("other-tenant", "tests", ALL_SCOPES, 600));
    let h = [("authorization", other.as_str())];
    let answer = json!({"viewResponse": {"selectedOptions": {"accountNumber": "1", "save": "save"}}});
    let node = json!({"node": "verify_account", "parameters": {"accountNumber": "12345678"}});
    for (what, method, path, body) in [
        ("read", Method::GET, format!("/v3/workflow/{id}"), None),
        ("resume", Method::PUT, format!("/v3/workflow/resume/{id}"), Some(answer)),
        (
            "execute",
            Method::POST,
            format!("/v3/workflow/{id}/disconnected-node/execute"),
            Some(node),
        ),
        (
            "terminate",
            Method::DELETE,
            format!("/v3/workflow/terminate/{id}"),
            None,
        ),
        ("deliveries", Method::GET, format!("/v3/workflow/{id}/deliveries"), None),
        ("back", Method::POST, format!("/v3/workflow/{id}/back"), Some(json!({}))),
    ] {
        let r = raw(&app, method, &path, body, &h).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{what}: {r:?}");
    }
    let sse = SseClient::connect(&app.events_url(&id, ""), &h).await;
    assert_eq!(sse.err(), Some(StatusCode::NOT_FOUND), "SSE");
    let mut ws = Ws::connect_with(&app.ws_url(""), &h).await.unwrap();
    ws.send(json!({"type": "subscribe", "requestId": "s", "workflowId": id}))
        .await;
    assert_eq!(ws.next_of("error", T).await["status"], 404, "WS subscribe");
    ws.send(json!({"type": "resume", "requestId": "r", "workflowId": id, "viewResponse": {"selectedOptions": {}}}))
        .await;
    assert_eq!(ws.next_of("error", T).await["status"], 404, "WS resume");
    ws.send(json!({"type": "back", "requestId": "b", "workflowId": id}))
        .await;
    assert_eq!(ws.next_of("error", T).await["status"], 404, "WS back");

    let mine = bearer(&app.token("tests"));
    for (header, value) in [("X_TENANT_ID", "other-tenant"), ("X_CLIENT_ID", "someone-else")] {
        let r = raw(
            &app,
            Method::GET,
            &format!("/v3/workflow/{id}"),
            None,
            &[("authorization", &mine), (header, value)],
        )
        .await;
        assert_eq!(
            r.status,
            StatusCode::FORBIDDEN,
            "{header} disagreeing with the credential: {r:?}"
        );
        assert_eq!(r.body["code"], "forbidden");
    }
    let st = app.get(&id).await;
    assert_eq!(
        (status_of(&st), st.body["seq"].as_u64()),
        ("WAITING", Some(1)),
        "untouched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_credential_and_a_stream_token_cannot_drive_a_workflow() {
    let app = spawn_app().await;
    let r = app.start("bank_account", json!({}));
    let r = r.await;
    let (id, token) = (id_of(&r), r.body["streamToken"].as_str().unwrap().to_string());
    let reader = bearer(&jwt(&app.tenant, "tests", "workflows:read", 600));
    let stream = bearer(&token);
    let answer = json!({"viewResponse": {"selectedOptions": {"accountNumber": "11112222", "save": "save"}}});
    let node = json!({"node": "verify_account", "parameters": {"accountNumber": "12345678"}});
    for (who, auth) in [("read-only JWT", &reader), ("stream token", &stream)] {
        let h = [("authorization", auth.as_str())];
        let read = raw(&app, Method::GET, &format!("/v3/workflow/{id}"), None, &h).await;
        assert_eq!(read.status, StatusCode::OK, "{who} reads: {read:?}");
        for (what, method, path, body) in [
            (
                "resume",
                Method::PUT,
                format!("/v3/workflow/resume/{id}"),
                Some(answer.clone()),
            ),
            (
                "execute",
                Method::POST,
                format!("/v3/workflow/{id}/disconnected-node/execute"),
                Some(node.clone()),
            ),
            (
                "terminate",
                Method::DELETE,
                format!("/v3/workflow/terminate/{id}"),
                None,
            ),
            ("back", Method::POST, format!("/v3/workflow/{id}/back"), Some(json!({}))),
            (
                "start",
                Method::POST,
                "/v3/workflow/start".into(),
                Some(json!({"workflow": "quick_screen"})),
            ),
        ] {
            let r = raw(&app, method, &path, body, &h).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{who} {what}: {r:?}");
        }
    }
    // Over the WebSocket, a token in the message reads but does not drive.
    let mut ws = Ws::connect(&app.ws_url("")).await;
    ws.send(json!({"type": "subscribe", "workflowId": id, "token": token}))
        .await;
    assert_eq!(ws.next_of("state", T).await["seq"], 1);
    ws.send(json!({"type": "resume", "requestId": "r", "workflowId": id, "token": token, "viewResponse": answer["viewResponse"]}))
        .await;
    let err = ws.next_of("error", T).await;
    assert_eq!(
        (err["requestId"].as_str(), err["status"].as_u64()),
        (Some("r"), Some(403))
    );
    ws.send(
        json!({"type": "execute-node", "requestId": "x", "workflowId": id, "token": token, "node": "verify_account"}),
    )
    .await;
    assert_eq!(ws.next_of("error", T).await["status"], 403);
    let st = app.get(&id).await;
    assert_eq!(
        (status_of(&st), st.body["seq"].as_u64()),
        ("WAITING", Some(1)),
        "untouched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_opens_its_socket_with_a_one_minute_ticket_instead_of_a_key_in_the_url() {
    let app = spawn_app().await;
    let r = app.call(Method::POST, "/v3/auth/ticket", None, &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.body["expiresIn"], 60);
    let ticket = r.body["ticket"].as_str().unwrap().to_string();
    let mut ws = Ws::connect(&app.ws_url(&format!("?ticket={ticket}"))).await;
    ws.send(json!({"type": "start", "requestId": "r1", "workflow": "quick_screen", "params": {"n": 3}}))
        .await;
    let s = ws.next_of("state", T).await;
    assert_eq!(s["state"]["workflowStatus"], "WAITING");

    let refused = Ws::connect_with(&app.ws_url("?ticket=forged.ticket"), &[]).await;
    assert_eq!(refused.err(), Some(StatusCode::UNAUTHORIZED));
    // A stream token is not a ticket.
    let token = app.start("quick_screen", json!({"n": 4})).await.body["streamToken"]
        .as_str()
        .unwrap()
        .to_string();
    let refused = Ws::connect_with(&app.ws_url(&format!("?ticket={token}")), &[]).await;
    assert_eq!(refused.err(), Some(StatusCode::UNAUTHORIZED));
    let r = raw(&app, Method::POST, "/v3/auth/ticket", None, &[]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "tickets need a credential");
}
