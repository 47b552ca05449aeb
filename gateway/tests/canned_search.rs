//! Canned responses and conversation search (issue 15), against the real binary: the canned
//! responses' HTTP API with site scoping (an API key or agent of another site gets 403), its
//! bounds and limit; search over a raw WebSocket command and over HTTP, scoped per site, paged,
//! with hostile queries. (Socket.IO: `gateway/tests/node/socketio.test.mjs`; the console:
//! `web/tests/canned-search.test.mjs`; both stores: `storage/tests/conformance.rs`.)

mod common;

use common::setup::visitor_writes;
use common::{call, Client, Gateway};
use reqwest::Method;
use serde_json::{json, Value};

const KEY_ALL: &str = "every-site-key-0123456789";
const KEY_SHOP1: &str = "shop1-only-key-0123456789";
const KEY_SHOP2: &str = "shop2-only-key-0123456789";
const CANNED: &str = "/chat/api/canned-responses";
const SEARCH: &str = "/chat/api/conversations/search";

fn gateway(dir: &std::path::Path) -> Gateway {
    Gateway::start(
        dir,
        &[
            ("CHAT_API_KEY", KEY_ALL),
            (
                "CHAT_API_KEYS",
                &format!("shop1:{KEY_SHOP1},shop2:{KEY_SHOP2}"),
            ),
        ],
    )
}

async fn api(
    gw: &Gateway,
    method: Method,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let http = reqwest::Client::new();
    let (status, _, value) = call(
        &http,
        method,
        &gw.http(path),
        body.map(|b| b.to_string()),
        &[("X-API-Key", key)],
    )
    .await;
    (status, value)
}

/// The status of [`api`]'s answer, alone.
async fn status_of(
    gw: &Gateway,
    method: Method,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> u16 {
    api(gw, method, path, key, body).await.0
}

/// A visitor of `site` who wrote `body`; returns the conversation id.
async fn conversation_written(gw: &Gateway, site: &str, body: &str) -> String {
    visitor_writes(gw, &format!("/ws-visitor/?site={site}"), body)
        .await
        .1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canned_responses_over_http_are_scoped_per_site() {
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(dir.path());
    let greet = json!({"site": "shop1", "shortcut": "greet", "title": "Greeting", "body": "Hi {{visitor.name}}!"});

    let (status, created) = api(&gw, Method::POST, CANNED, KEY_SHOP1, Some(greet.clone())).await;
    assert_eq!(status, 201, "{created}");
    let canned = &created["canned_response"];
    assert_eq!(
        (canned["site_id"].as_str(), canned["shortcut"].as_str()),
        (Some("shop1"), Some("greet"))
    );
    let id = canned["id"].as_str().unwrap().to_owned();
    let one = format!("/chat/api/canned-responses/{id}");

    // The same shortcut again on the site: 409; on another site: its own.
    let (status, body) = api(&gw, Method::POST, CANNED, KEY_ALL, Some(greet.clone())).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("conflict")),
        "{body}"
    );
    let mut other = greet.clone();
    other["site"] = json!("shop2");
    assert_eq!(
        status_of(&gw, Method::POST, CANNED, KEY_SHOP2, Some(other)).await,
        201
    );

    // Another site's key: 403 on every operation of shop1.
    let (status, body) = api(
        &gw,
        Method::GET,
        "/chat/api/canned-responses?site=shop1",
        KEY_SHOP2,
        None,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );
    assert_eq!(
        status_of(&gw, Method::POST, CANNED, KEY_SHOP2, Some(greet.clone())).await,
        403
    );
    let change = json!({"shortcut": "hello", "title": "Hello", "body": "Hello {{agent.name}}"});
    assert_eq!(
        status_of(&gw, Method::PUT, &one, KEY_SHOP2, Some(change.clone())).await,
        403
    );
    assert_eq!(
        status_of(&gw, Method::DELETE, &one, KEY_SHOP2, None).await,
        403
    );
    // An agent JWT scoped to shop2 likewise.
    let shop2_agent = gw.agent_token_for("bob", "Bob", Some("shop2"));
    let http = reqwest::Client::new();
    let (status, _, _) = call(
        &http,
        Method::GET,
        &gw.http("/chat/api/canned-responses?site=shop1"),
        None,
        &[("Authorization", &format!("Bearer {shop2_agent}"))],
    )
    .await;
    assert_eq!(status, 403);
    // No credentials: 401.
    let (status, _, _) = call(
        &http,
        Method::GET,
        &gw.http("/chat/api/canned-responses?site=shop1"),
        None,
        &[],
    )
    .await;
    assert_eq!(status, 401);

    // The site's own agent (JWT) lists, changes and deletes.
    let shop1_agent = gw.agent_token_for("ann", "Ann", Some("shop1"));
    let bearer = format!("Bearer {shop1_agent}");
    let (status, _, listed) = call(
        &http,
        Method::GET,
        &gw.http("/chat/api/canned-responses?site=shop1"),
        None,
        &[("Authorization", &bearer)],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        listed["canned_responses"].as_array().unwrap().len(),
        1,
        "{listed}"
    );
    assert_eq!(listed["canned_responses"][0]["id"], json!(id));
    let (status, _, changed) = call(
        &http,
        Method::PUT,
        &gw.http(&one),
        Some(change.to_string()),
        &[("Authorization", &bearer)],
    )
    .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["canned_response"]["shortcut"], "hello");
    assert_eq!(changed["canned_response"]["site_id"], "shop1");

    // Bounds and shapes.
    for (bad, code) in [
        (
            json!({"site": "shop1", "shortcut": "Bad Shortcut", "title": "t", "body": "b"}),
            "bad_request",
        ),
        (
            json!({"site": "shop1", "shortcut": "ok", "title": "", "body": "b"}),
            "bad_request",
        ),
        (
            json!({"site": "shop1", "shortcut": "ok", "title": "t", "body": "x".repeat(4001)}),
            "bad_request",
        ),
        (
            json!({"site": "shop1", "shortcut": "ok", "title": "t"}),
            "invalid_frame",
        ),
        (
            json!({"site": "shop1", "shortcut": "ok", "title": "t", "body": "b", "extra": 1}),
            "invalid_frame",
        ),
        (
            json!({"shortcut": "ok", "title": "t", "body": "b"}),
            "invalid_frame",
        ),
    ] {
        let (status, body) = api(&gw, Method::POST, CANNED, KEY_ALL, Some(bad.clone())).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some(code)),
            "{bad}: {body}"
        );
    }
    let (status, _) = api(
        &gw,
        Method::PUT,
        &one,
        KEY_ALL,
        Some(json!({"site": "shop2", "shortcut": "x", "title": "t", "body": "b"})),
    )
    .await;
    assert_eq!(status, 400, "a response keeps its site");
    assert_eq!(
        status_of(&gw, Method::GET, CANNED, KEY_ALL, None).await,
        400
    );
    assert_eq!(
        status_of(
            &gw,
            Method::GET,
            "/chat/api/canned-responses/not-a-uuid",
            KEY_ALL,
            None
        )
        .await,
        404
    );
    assert_eq!(
        status_of(&gw, Method::PATCH, &one, KEY_ALL, None).await,
        405
    );

    // Delete: 204, then 404.
    assert_eq!(
        status_of(&gw, Method::DELETE, &one, KEY_SHOP1, None).await,
        204
    );
    assert_eq!(
        status_of(&gw, Method::DELETE, &one, KEY_SHOP1, None).await,
        404
    );
    let (_, listed) = api(
        &gw,
        Method::GET,
        "/chat/api/canned-responses?site=shop1",
        KEY_SHOP1,
        None,
    )
    .await;
    assert_eq!(listed["canned_responses"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_holds_at_most_200_canned_responses() {
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(dir.path());
    for i in 0..200 {
        let body = json!({"site": "shop1", "shortcut": format!("r{i}"), "title": "t", "body": "b"});
        let (status, answer) = api(&gw, Method::POST, CANNED, KEY_ALL, Some(body)).await;
        assert_eq!(status, 201, "{i}: {answer}");
    }
    let body = json!({"site": "shop1", "shortcut": "one-more", "title": "t", "body": "b"});
    let (status, answer) = api(&gw, Method::POST, CANNED, KEY_ALL, Some(body)).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (409, Some("conflict")),
        "{answer}"
    );
    assert!(
        answer["message"].as_str().unwrap().contains("200"),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_over_websocket_and_http_is_scoped_and_paged() {
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(dir.path());
    let late = conversation_written(&gw, "shop1", "My parcel arrived late, I want a refund").await;
    let chinese = conversation_written(&gw, "shop1", "我想要退款，谢谢").await;
    let other_refund = conversation_written(&gw, "shop1", "Refund status?").await;
    let elsewhere = conversation_written(&gw, "shop2", "refund please").await;

    // Raw WebSocket: an agent of shop1 finds shop1's conversations only, newest first.
    let mut agent = gw.agent_for("ann", "Ann", Some("shop1")).await;
    let ack = agent
        .request(json!({"type": "search_conversations", "query": "refund"}))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let found: Vec<&str> = ack["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["conversation"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(found, [other_refund.as_str(), late.as_str()], "{ack}");
    assert_eq!(ack["results"][1]["seq"], 1);
    assert_eq!(
        ack["results"][1]["snippet"],
        "My parcel arrived late, I want a refund"
    );
    assert!(ack.get("next_cursor").is_none(), "{ack}");

    // Paged: one at a time.
    let page = agent
        .request(json!({"type": "search_conversations", "query": "refund", "limit": 1}))
        .await;
    assert_eq!(
        page["results"][0]["conversation"]["id"],
        json!(other_refund)
    );
    let cursor = page["next_cursor"].as_str().expect("a cursor").to_owned();
    let page = agent
        .request(json!({"type": "search_conversations", "query": "refund", "limit": 1, "cursor": cursor}))
        .await;
    assert_eq!(
        page["results"][0]["conversation"]["id"],
        json!(late),
        "{page}"
    );

    // Chinese as a substring; status filter; another site forbidden; hostile text harmless.
    let ack = agent
        .request(json!({"type": "search_conversations", "query": "退款"}))
        .await;
    assert_eq!(
        ack["results"][0]["conversation"]["id"],
        json!(chinese),
        "{ack}"
    );
    let ack = agent
        .request(json!({"type": "search_conversations", "query": "refund", "status": "closed"}))
        .await;
    assert_eq!(ack["results"], json!([]), "{ack}");
    let ack = agent
        .request(json!({"type": "search_conversations", "query": "refund", "site": "shop2"}))
        .await;
    assert_eq!(
        (ack["type"].as_str(), ack["code"].as_str()),
        (Some("error"), Some("forbidden"))
    );
    for hostile in [
        r#""refund" OR 1=1 --"#,
        "'); DROP TABLE messages; --",
        "refund*:* & !(",
    ] {
        let ack = agent
            .request(json!({"type": "search_conversations", "query": hostile}))
            .await;
        assert_eq!(ack["type"], "ack", "{hostile}: {ack}");
    }
    for bad in [json!(""), json!("\"*()"), json!("x".repeat(201))] {
        let ack = agent
            .request(json!({"type": "search_conversations", "query": bad}))
            .await;
        assert_eq!(ack["code"], "bad_request", "{ack}");
    }
    let ack = agent
        .request(json!({"type": "search_conversations", "query": "refund", "cursor": "garbage"}))
        .await;
    assert_eq!(ack["code"], "bad_request", "{ack}");

    // A visitor may not search.
    let mut visitor = Client::connect(&gw.ws("/ws-visitor/?site=shop1"), &[]).await;
    let ack = visitor
        .request(json!({"type": "search_conversations", "query": "refund"}))
        .await;
    assert_eq!(ack["code"], "forbidden", "{ack}");

    // HTTP: the same answer; a key of shop2 sees shop2's only, and not shop1's.
    let (status, body) = api(
        &gw,
        Method::GET,
        "/chat/api/conversations/search?q=refund",
        KEY_SHOP2,
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"].as_array().unwrap().len(), 1);
    assert_eq!(body["results"][0]["conversation"]["id"], json!(elsewhere));
    let (status, _) = api(
        &gw,
        Method::GET,
        "/chat/api/conversations/search?q=refund&site=shop1",
        KEY_SHOP2,
        None,
    )
    .await;
    assert_eq!(status, 403);
    let (status, body) = api(
        &gw,
        Method::GET,
        "/chat/api/conversations/search?q=%E9%80%80%E6%AC%BE&site=shop1&status=open",
        KEY_SHOP1,
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0]["conversation"]["id"], json!(chinese));
    assert_eq!(
        status_of(&gw, Method::GET, SEARCH, KEY_ALL, None).await,
        400
    );
    assert_eq!(
        status_of(
            &gw,
            Method::GET,
            "/chat/api/conversations/search?q=a&status=nope",
            KEY_ALL,
            None
        )
        .await,
        400
    );
    assert_eq!(
        status_of(
            &gw,
            Method::POST,
            "/chat/api/conversations/search?q=a",
            KEY_ALL,
            None
        )
        .await,
        405
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searching_is_rate_limited_per_agent() {
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(dir.path());
    let token = gw.agent_token("ann", "Ann");
    let mut agent = Client::connect(&gw.ws(&format!("/ws-admin/?token={token}")), &[]).await;
    let mut limited = None;
    for _ in 0..30 {
        let ack = agent
            .request(json!({"type": "search_conversations", "query": "anything"}))
            .await;
        if ack["type"] == "error" {
            limited = Some(ack);
            break;
        }
    }
    let limited = limited.expect("refused within 30 searches");
    assert_eq!(limited["code"], "rate_limited", "{limited}");
    assert!(limited["retry_after_ms"].as_u64().unwrap() > 0);
    // The HTTP endpoint counts for the same agent.
    let http = reqwest::Client::new();
    let (status, retry_after, _) = call(
        &http,
        Method::GET,
        &gw.http("/chat/api/conversations/search?q=anything"),
        None,
        &[("Authorization", &format!("Bearer {token}"))],
    )
    .await;
    assert_eq!(status, 429);
    assert!(retry_after.is_some());
}
