//! Visitor context against the real binary: the widget's `context` reports are stored with the
//! client address and its GeoIP country (a MaxMind file written by the test), over raw
//! WebSocket and long-polling; bounds and the rate limit are refused with clear errors;
//! visitors cannot read it; agents read it with `visitor` and over the HTTP API.

mod common;
#[path = "common/mmdb.rs"]
mod mmdb;

use common::{call, Client, Gateway};
use serde_json::{json, Value};

const API_KEY: &str = "visitor-context-key-0123456789";

fn start(dir: &std::path::Path) -> Gateway {
    let geoip = dir.join("countries.mmdb");
    std::fs::write(&geoip, mmdb::country_db(&[([127, 0, 0, 0], 8, "FR")])).unwrap();
    Gateway::start(
        dir,
        &[
            ("CHAT_API_KEY", API_KEY),
            ("CHAT_GEOIP_DB", geoip.to_str().unwrap()),
        ],
    )
}

fn page(url: &str, title: &str) -> Value {
    json!({
        "url": url,
        "title": title,
        "referrer": "https://search.example/?q=shoes",
        "language": "fr-FR",
        "time_zone": "Europe/Paris",
        "user_agent": "Mozilla/5.0 (test)",
        "attributes": {"plan": "pro", "seats": 3, "trial": false}
    })
}

async fn api_visitor(gw: &Gateway, conversation: &str, key: Option<&str>) -> (u16, Value) {
    let headers: Vec<(&str, &str)> = key.map(|k| ("X-API-Key", k)).into_iter().collect();
    let (status, _, body) = call(
        &reqwest::Client::new(),
        reqwest::Method::GET,
        &gw.http(&format!("/chat/api/conversations/{conversation}/visitor")),
        None,
        &headers,
    )
    .await;
    (status, body)
}

#[tokio::test]
async fn context_over_websocket_is_stored_with_address_and_country_and_read_by_agents() {
    let dir = tempfile::tempdir().unwrap();
    let gw = start(dir.path());
    let mut visitor = Client::connect(&gw.ws("/ws-visitor/"), &[]).await;

    // Before the visitor's first message nothing is stored; the report waits for it.
    let ack = visitor
        .request(json!({"type":"context","context": page("https://shop.example/", "Home")}))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let sent = visitor.request(json!({"type":"send","body":"hello"})).await;
    let conversation = sent["message"]["conversation_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, body) = api_visitor(&gw, &conversation, Some(API_KEY)).await;
    assert_eq!(status, 200, "{body}");
    let v = &body["visitor"];
    assert_eq!(v["id"], visitor.welcome["visitor_id"], "{body}");
    assert_eq!(v["site_id"], "default");
    assert_eq!(v["context"]["url"], "https://shop.example/", "{body}");
    assert_eq!(v["context"]["ip"], "127.0.0.1");
    assert_eq!(v["context"]["country"], "FR");
    assert_eq!(v["context"]["attributes"]["seats"], 3);
    let first_seen = v["first_seen_at"].clone();

    // A navigation: the latest report wins, first seen stays.
    let ack = visitor
        .request(json!({"type":"context","context": page("https://shop.example/cart", "Cart")}))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let mut agent = Client::connect(
        &gw.ws(&format!(
            "/ws-admin/?token={}",
            gw.agent_token("ana", "Ana")
        )),
        &[],
    )
    .await;
    let answer = agent
        .request(json!({"type":"visitor","conversation_id": conversation}))
        .await;
    assert_eq!(answer["type"], "ack", "{answer}");
    assert_eq!(
        answer["visitor"]["context"]["url"],
        "https://shop.example/cart"
    );
    assert_eq!(answer["visitor"]["context"]["title"], "Cart");
    assert_eq!(answer["visitor"]["first_seen_at"], first_seen);

    // Visitors cannot read it, not even their own; agents cannot report one.
    let refused = visitor
        .request(json!({"type":"visitor","conversation_id": conversation}))
        .await;
    assert_eq!(refused["code"], "forbidden", "{refused}");
    let refused = agent
        .request(json!({"type":"context","context": page("https://x.example/", "X")}))
        .await;
    assert_eq!(refused["code"], "forbidden", "{refused}");

    // The HTTP API wants credentials, and a real conversation.
    assert_eq!(api_visitor(&gw, &conversation, None).await.0, 401);
    let missing = chat_core::model::ConversationId::new_random().to_string();
    assert_eq!(api_visitor(&gw, &missing, Some(API_KEY)).await.0, 404);
}

#[tokio::test]
async fn bounds_and_rate_are_refused_with_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let gw = start(dir.path());
    let mut visitor = Client::connect(&gw.ws("/ws-visitor/"), &[]).await;
    let long_url = format!("https://shop.example/{}", "a".repeat(2048));
    let refused = visitor
        .request(json!({"type":"context","context":{"url": long_url}}))
        .await;
    assert_eq!(refused["code"], "too_large", "{refused}");
    assert!(
        refused["message"].as_str().unwrap().contains("url"),
        "{refused}"
    );
    let refused = visitor
        .request(json!({"type":"context","context":{"attributes":{"bad key!":1}}}))
        .await;
    assert_eq!(refused["code"], "bad_request", "{refused}");
    let refused = visitor
        .request(json!({"type":"context","context":{"url":"javascript:alert(1)"}}))
        .await;
    assert_eq!(refused["code"], "bad_request", "{refused}");
    let refused = visitor
        .request(json!({"type":"context","context":{"ip":"10.0.0.1"}}))
        .await;
    assert_eq!(refused["code"], "invalid_frame", "{refused}");
    // Five at once are allowed (three were spent above, the unknown field is refused before
    // the session sees it); the sixth is refused with when to retry; the session stays.
    let mut codes = Vec::new();
    for i in 0..4 {
        let answer = visitor
            .request(
                json!({"type":"context","context":{"url": format!("https://shop.example/{i}")}}),
            )
            .await;
        codes.push(answer["code"].as_str().unwrap_or("ok").to_string());
        if answer["code"] == "rate_limited" {
            assert!(
                answer["retry_after_ms"].as_u64().unwrap() <= 1000,
                "{answer}"
            );
        }
    }
    assert_eq!(codes, ["ok", "ok", "rate_limited", "rate_limited"]);
    let sent = visitor
        .request(json!({"type":"send","body":"still here"}))
        .await;
    assert_eq!(sent["type"], "ack", "{sent}");
}

#[tokio::test]
async fn context_over_long_polling_is_stored_too() {
    let dir = tempfile::tempdir().unwrap();
    let gw = start(dir.path());
    let http = reqwest::Client::new();
    let url = gw.http("/ws-visitor/poll");
    let (status, _, opened) = call(&http, reqwest::Method::POST, &url, None, &[]).await;
    assert_eq!(status, 200, "{opened}");
    let sid = opened["sid"].as_str().unwrap().to_string();
    let post = |frames: Value| {
        let http = http.clone();
        let url = format!("{url}?sid={sid}");
        async move {
            let (status, _, body) = call(
                &http,
                reqwest::Method::POST,
                &url,
                Some(frames.to_string()),
                &[],
            )
            .await;
            assert_eq!(status, 200, "{body}");
            body["answers"].clone()
        }
    };
    let answers = post(json!([
        {"type":"send","id":"s1","body":"hi from polling"},
        {"type":"context","id":"c1","context": page("https://shop.example/poll", "Polling page")}
    ]))
    .await;
    assert_eq!(answers[0]["type"], "ack", "{answers}");
    assert_eq!(answers[1]["type"], "ack", "{answers}");
    let conversation = answers[0]["message"]["conversation_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, body) = api_visitor(&gw, &conversation, Some(API_KEY)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["visitor"]["context"]["url"],
        "https://shop.example/poll"
    );
    assert_eq!(body["visitor"]["context"]["ip"], "127.0.0.1");
    assert_eq!(body["visitor"]["context"]["country"], "FR");
}
