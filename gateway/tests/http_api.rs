//! The HTTP API against the real binary: replies reach a connected visitor at once on any
//! transport and say so; history reads; online statistics; bad input.

mod common;

use common::{Client, Gateway};
use serde_json::{json, Value};

const API_KEY: &str = "test-api-key-0123456789";

async fn post(gw: &Gateway, path: &str, key: &str, body: &str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(gw.http(path))
        .bearer_auth(key)
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn get(gw: &Gateway, path: &str, key: Option<&str>) -> (u16, Value) {
    let mut request = reqwest::Client::new().get(gw.http(path));
    if let Some(key) = key {
        request = request.header("X-API-Key", key);
    }
    let resp = request.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_reply_sent_over_http_reaches_the_visitor_live_or_waits_in_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(dir.path(), &[("CHAT_API_KEY", API_KEY)]);
    let mut visitor = Client::connect(&gw.ws("/ws-visitor/"), &[]).await;
    let vtoken = visitor.welcome["visitor_token"]
        .as_str()
        .unwrap()
        .to_string();
    let ack = visitor
        .request(json!({"type":"send","body":"anyone?"}))
        .await;
    let conversation = ack["message"]["conversation_id"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("/chat/api/conversations/{conversation}/messages");

    let (status, sent) = post(
        &gw,
        &path,
        API_KEY,
        r#"{"body":"Hello from the API","client_msg_id":"api-1"}"#,
    )
    .await;
    assert_eq!(status, 201, "{sent}");
    assert_eq!(sent["delivery"], "live");
    assert_eq!(sent["message"]["seq"], 2);
    let live = visitor
        .wait_for(|e| e["type"] == "message" && e["message"]["seq"] == 2)
        .await;
    assert_eq!(live["message"]["body"], "Hello from the API");

    // Idempotent by client_msg_id.
    let (status, again) = post(
        &gw,
        &path,
        API_KEY,
        r#"{"body":"Hello from the API","client_msg_id":"api-1"}"#,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["message"]["seq"], 2);

    // With an agent JWT, and the visitor gone: stored, then replayed on resume.
    drop(visitor);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let jwt = gw.agent_token("alice", "Alice");
    let (status, stored) = post(&gw, &path, &jwt, r#"{"body":"Still there?"}"#).await;
    assert_eq!(status, 201, "{stored}");
    assert_eq!(stored["delivery"], "stored");
    assert_eq!(stored["message"]["sender"]["name"], "Alice");

    let (status, page) = get(&gw, &format!("{path}?after_seq=1"), Some(API_KEY)).await;
    assert_eq!(status, 200);
    let seqs: Vec<i64> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, [2, 3]);

    let mut visitor = Client::connect(&gw.ws(&format!("/ws-visitor/?token={vtoken}")), &[]).await;
    let resumed = visitor
        .request(json!({"type":"resume","cursors":{conversation.clone(): 2}}))
        .await;
    assert_eq!(resumed["replayed"], 1);
}

#[tokio::test]
async fn stats_count_sessions_by_transport_and_role() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(dir.path(), &[("CHAT_API_KEY", API_KEY)]);
    let token = gw.agent_token("alice", "Alice");
    let _v1 = Client::connect(&gw.ws("/ws-visitor/"), &[]).await;
    let _v2 = Client::connect(&gw.ws("/ws-visitor/"), &[]).await;
    let _a = Client::connect(&gw.ws(&format!("/ws-admin/?token={token}")), &[]).await;
    let (status, stats) = get(&gw, "/chat/api/stats", Some(API_KEY)).await;
    assert_eq!(status, 200, "{stats}");
    assert_eq!(stats["connections"]["websocket"]["visitor"], 2, "{stats}");
    assert_eq!(stats["connections"]["websocket"]["agent"], 1, "{stats}");
    assert_eq!(stats["visitors_online"], 2);
    assert_eq!(stats["agents_online"], 1);
    drop(_v1);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (_, stats) = get(&gw, "/chat/api/stats", Some(API_KEY)).await;
    assert_eq!(stats["connections"]["websocket"]["visitor"], 1, "{stats}");
}

#[tokio::test]
async fn bad_requests_get_clear_answers() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(dir.path(), &[("CHAT_API_KEY", API_KEY)]);
    let missing = "/chat/api/conversations/00000000-0000-4000-8000-000000000000/messages";
    assert_eq!(get(&gw, "/chat/api/stats", None).await.0, 401);
    assert_eq!(get(&gw, "/chat/api/stats", Some("wrong-key")).await.0, 401);
    let (status, e) = post(&gw, missing, API_KEY, r#"{"body":"hi"}"#).await;
    assert_eq!((status, e["error"].as_str()), (404, Some("not_found")));
    assert_eq!(
        post(
            &gw,
            "/chat/api/conversations/not-a-uuid/messages",
            API_KEY,
            r#"{"body":"hi"}"#
        )
        .await
        .0,
        404
    );

    let mut visitor = Client::connect(&gw.ws("/ws-visitor/"), &[]).await;
    let ack = visitor.request(json!({"type":"send","body":"x"})).await;
    let path = format!(
        "/chat/api/conversations/{}/messages",
        ack["message"]["conversation_id"].as_str().unwrap()
    );
    let (status, e) = post(&gw, &path, API_KEY, "{not json").await;
    assert_eq!((status, e["error"].as_str()), (400, Some("malformed_json")));
    let (status, e) = post(&gw, &path, API_KEY, r#"{"text":"wrong field"}"#).await;
    assert_eq!((status, e["error"].as_str()), (400, Some("invalid_frame")));
    let (status, e) = post(
        &gw,
        &path,
        API_KEY,
        &json!({"body": "y".repeat(5000)}).to_string(),
    )
    .await;
    assert_eq!((status, e["error"].as_str()), (413, Some("too_large")));
    let (status, _) = post(
        &gw,
        &path,
        API_KEY,
        &json!({"body": "z".repeat(70_000)}).to_string(),
    )
    .await;
    assert_eq!(status, 413);
    let (status, e) = get(&gw, &format!("{path}?after_seq=-4"), Some(API_KEY)).await;
    assert_eq!((status, e["error"].as_str()), (400, Some("bad_request")));
}

/// The widget on a customer's site uploads across origins: the preflight is answered, and a
/// refusal carries the CORS headers too, or the page could not read the `message` it shows.
#[tokio::test]
async fn attachment_refusals_are_readable_across_origins() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(dir.path(), &[]);
    let visitor = Client::connect(&gw.ws("/ws-visitor/"), &[]).await;
    let token = visitor.welcome["visitor_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let shop = "http://127.0.0.1:1";
    let http = reqwest::Client::new();
    let url = gw.http("/chat/api/attachments?name=setup.exe");

    let preflight = http
        .request(reqwest::Method::OPTIONS, &url)
        .header("Origin", shop)
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "authorization,content-type",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 204);
    assert_eq!(preflight.headers()["access-control-allow-origin"], shop);
    assert_eq!(
        preflight.headers()["access-control-allow-headers"],
        "authorization,content-type"
    );

    // A type the gateway refuses, and no credentials at all: both readable by the page.
    for (bearer, status, error) in [
        (Some(token.as_str()), 415, "unsupported_type"),
        (None, 401, "unauthorized"),
    ] {
        let mut request = http
            .post(&url)
            .header("Origin", shop)
            .header("Content-Type", "application/x-msdownload")
            .body(&b"MZ\x90\x00"[..]);
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        let resp = request.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), status);
        assert_eq!(resp.headers()["access-control-allow-origin"], shop);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], error, "{body}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // A page of an origin CHAT_ALLOWED_ORIGINS does not allow gets nothing to read.
    let foreign = http
        .post(&url)
        .header("Origin", "https://evil.example")
        .bearer_auth(&token)
        .header("Content-Type", "image/png")
        .body(&b"\x89PNG\r\n\x1a\n"[..])
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 403);
    assert!(!foreign
        .headers()
        .contains_key("access-control-allow-origin"));
    drop(visitor);
    gw.stop();
}
