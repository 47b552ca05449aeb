//! HTTP long-polling (`/ws-visitor/poll`, `/ws-admin/poll`) against the real binary: chat with a
//! WebSocket agent, batching and cursors, concurrent polls, expiry and resume, bad input.

mod common;

use common::poller::Poller;
use common::{call, Client, Gateway};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const HOLD_SECS: &str = "1";
const TTL_SECS: &str = "3";

fn start(dir: &std::path::Path) -> Gateway {
    Gateway::start(
        dir,
        &[
            ("CHAT_POLL_HOLD_SECS", HOLD_SECS),
            ("CHAT_POLL_SESSION_TTL_SECS", TTL_SECS),
            ("CHAT_WS_MAX_FRAME_BYTES", "4096"),
            ("CHAT_API_KEY", "polling-test-key"),
            ("CHAT_ALLOWED_ORIGINS", "https://shop.example"),
        ],
    )
}

fn messages(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["type"] == "message")
        .map(|e| e["message"]["body"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_polling_visitor_and_a_websocket_agent_chat_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let gw = start(dir.path());
    let token = gw.agent_token("alice", "Alice");
    let mut agent = Client::connect(&gw.ws(&format!("/ws-admin/?token={token}")), &[]).await;
    // As the protocol asks, a client resumes right after `welcome` (here with nothing to resume);
    // until then live messages are held back.
    agent.request(json!({"type":"resume","cursors":{}})).await;

    let mut visitor = Poller::open(&gw, "/ws-visitor/poll?site=default").await;
    assert_eq!(visitor.welcome["role"], "visitor");
    assert_eq!(visitor.welcome["agents_online"], 1);

    let (status, _, stats) = call(
        &visitor.http,
        reqwest::Method::GET,
        &gw.http("/chat/api/stats"),
        None,
        &[("Authorization", "Bearer polling-test-key")],
    )
    .await;
    assert_eq!(status, 200, "{stats}");
    assert_eq!(stats["connections"]["polling"]["visitor"], 1, "{stats}");

    let ack = visitor
        .request(json!({"type":"send","id":"v1","client_msg_id":"v-1","body":"hello from polling"}))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(ack["id"], "v1");
    let conversation = ack["message"]["conversation_id"]
        .as_str()
        .unwrap()
        .to_string();
    let live = agent.wait_for(|e| e["type"] == "message").await;
    assert_eq!(live["message"]["body"], "hello from polling");

    let reply = agent
        .request(json!({"type":"send","conversation_id":conversation,"body":"hi, Alice here"}))
        .await;
    assert_eq!(reply["type"], "ack", "{reply}");
    let events = visitor
        .poll_until(|e| e["type"] == "message" && e["message"]["seq"] == 2)
        .await;
    assert_eq!(
        messages(&events),
        ["hello from polling", "hi, Alice here"],
        "{events:?}"
    );

    // An agent can poll too (token in the Authorization header).
    let http = reqwest::Client::new();
    let (status, _, body) = call(
        &http,
        reqwest::Method::POST,
        &gw.http("/ws-admin/poll/"),
        None,
        &[("Authorization", &format!("Bearer {token}"))],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["events"][0]["role"], "agent", "{body}");
}

#[tokio::test]
async fn polls_time_out_empty_and_deliver_every_event_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let gw = start(dir.path());
    let mut visitor = Poller::open(&gw, "/ws-visitor/poll?site=default").await;

    // Nothing to say: the GET is held for about CHAT_POLL_HOLD_SECS, then an empty batch.
    let started = Instant::now();
    let (status, body) = visitor.get_at(1).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"cursor": 1, "events": []}));
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert!(started.elapsed() < Duration::from_secs(5));

    // Five sends in one POST: five answers, in order.
    let frames: Vec<Value> = (1..=5)
        .map(|i| json!({"type":"send","id":format!("m{i}"),"body":format!("message {i}")}))
        .collect();
    let (status, body) = visitor.post(Value::Array(frames).to_string()).await;
    assert_eq!(status, 200, "{body}");
    let answers = body["answers"].as_array().unwrap();
    assert_eq!(answers.len(), 5, "{body}");
    for (i, answer) in answers.iter().enumerate() {
        assert_eq!(answer["type"], "ack", "{answer}");
        assert_eq!(answer["id"], format!("m{}", i + 1));
        assert_eq!(answer["message"]["seq"], i as u64 + 1);
    }

    // Poll with an advancing cursor: every message once, in order.
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.len() < 5 && Instant::now() < deadline {
        got.extend(messages(&visitor.poll().await));
    }
    let expected: Vec<String> = (1..=5).map(|i| format!("message {i}")).collect();
    assert_eq!(got, expected);
    // Nothing repeats afterwards.
    let more = visitor.poll().await;
    assert!(messages(&more).is_empty(), "{more:?}");

    // A cursor past the last event is refused.
    let (status, body) = visitor.get_at(visitor.cursor + 10).await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test]
async fn a_newer_get_answers_the_older_one_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let gw = start(dir.path());
    let visitor = Poller::open(&gw, "/ws-visitor/poll?site=default").await;

    let first = {
        let http = visitor.http.clone();
        let url = format!("{}?sid={}&cursor=1", visitor.url, visitor.sid);
        tokio::spawn(async move {
            let started = Instant::now();
            let (status, _, body) = call(&http, reqwest::Method::GET, &url, None, &[]).await;
            ((status, body), started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let second = visitor.get_at(1).await;
    let second_took = started.elapsed();
    let ((status, body), first_took) = first.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"cursor": 1, "events": []}));
    assert!(
        first_took < Duration::from_millis(900),
        "the older GET should be answered when the newer arrives, took {first_took:?}"
    );
    assert_eq!(second.0, 200);
    assert_eq!(second.1, json!({"cursor": 1, "events": []}));
    assert!(
        second_took >= Duration::from_millis(900),
        "the newer GET holds, took {second_took:?}"
    );
}

#[tokio::test]
async fn an_expired_session_answers_410_and_a_new_one_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let gw = start(dir.path());
    let token = gw.agent_token("bob", "Bob");
    let mut agent = Client::connect(&gw.ws(&format!("/ws-admin/?token={token}")), &[]).await;

    let visitor = Poller::open(&gw, "/ws-visitor/poll?site=default").await;
    let visitor_token = visitor.welcome["visitor_token"]
        .as_str()
        .unwrap()
        .to_string();
    let ack = visitor.request(json!({"type":"send","body":"one"})).await;
    let conversation = ack["message"]["conversation_id"]
        .as_str()
        .unwrap()
        .to_string();

    // No GET for longer than the TTL: the session expires and the stats drop it.
    tokio::time::sleep(Duration::from_secs(TTL_SECS.parse::<u64>().unwrap() + 2)).await;
    let (status, body) = visitor.get_at(1).await;
    assert_eq!(status, 410, "{body}");
    assert_eq!(body["error"], "session_expired");
    let (status, body) = visitor
        .post(json!({"type":"send","body":"x"}).to_string())
        .await;
    assert_eq!(status, 410, "{body}");
    let (status, _, stats) = call(
        &visitor.http,
        reqwest::Method::GET,
        &gw.http("/chat/api/stats"),
        None,
        &[("Authorization", "Bearer polling-test-key")],
    )
    .await;
    assert_eq!(status, 200, "{stats}");
    assert!(stats["connections"].get("polling").is_none(), "{stats}");

    for body in ["two", "three"] {
        let ack = agent
            .request(json!({"type":"send","conversation_id":conversation,"body":body}))
            .await;
        assert_eq!(ack["type"], "ack", "{ack}");
    }

    let mut visitor = Poller::open(
        &gw,
        &format!("/ws-visitor/poll?site=default&token={visitor_token}"),
    )
    .await;
    assert_eq!(visitor.welcome["conversation"]["id"], conversation.as_str());
    let resumed = visitor
        .request(json!({"type":"resume","cursors":{conversation.clone(): 1}}))
        .await;
    assert_eq!(resumed["replayed"], 2, "{resumed}");
    let events = visitor
        .poll_until(|e| e["type"] == "message" && e["message"]["seq"] == 3)
        .await;
    assert_eq!(messages(&events), ["two", "three"]);
}

#[tokio::test]
async fn bad_input_gets_clear_answers() {
    let dir = tempfile::tempdir().unwrap();
    let gw = start(dir.path());
    let visitor = Poller::open(&gw, "/ws-visitor/poll?site=default").await;

    // Not JSON at all: 400.
    let (status, body) = visitor.post("{not json".into()).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "malformed_json");
    // JSON, but bad frames: per-frame errors, same codes as the WebSocket.
    let (status, body) = visitor
        .post(r#"[{"type":"dance","id":"a"},{"type":"send","id":"b"},{"type":"send","id":"c","body":"ok"}]"#.into())
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["answers"][0]["code"], "unknown_type", "{body}");
    assert_eq!(body["answers"][1]["code"], "invalid_frame", "{body}");
    assert_eq!(body["answers"][2]["type"], "ack", "{body}");
    // Over CHAT_WS_MAX_FRAME_BYTES: 413.
    let big = json!({"type":"send","body":"x".repeat(5000)}).to_string();
    let (status, body) = visitor.post(big).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"], "too_large");
    // The session still works.
    let answer = visitor
        .request(json!({"type":"send","id":"d","body":"still here"}))
        .await;
    assert_eq!(answer["type"], "ack", "{answer}");

    let http = reqwest::Client::new();
    // Unknown sid: 410.
    for method in [reqwest::Method::GET, reqwest::Method::POST] {
        let (status, _, body) = call(
            &http,
            method,
            &gw.http("/ws-visitor/poll?sid=0123456789abcdef&cursor=1"),
            Some("{}".into()),
            &[],
        )
        .await;
        assert_eq!(status, 410, "{body}");
        assert_eq!(body["error"], "session_expired");
    }
    // Wrong origin: 403.
    let (status, _, body) = call(
        &http,
        reqwest::Method::POST,
        &gw.http("/ws-visitor/poll?site=default"),
        None,
        &[("Origin", "https://evil.example")],
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"], "forbidden");
    // An allowed origin gets CORS headers.
    let response = http
        .post(gw.http("/ws-visitor/poll?site=default"))
        .header("Origin", "https://shop.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "https://shop.example"
    );
    // Bad agent token: 401.
    let (status, _, body) = call(
        &http,
        reqwest::Method::POST,
        &gw.http("/ws-admin/poll?token=not-a-jwt"),
        None,
        &[],
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "unauthorized");
}
