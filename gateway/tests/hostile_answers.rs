//! Hostile clients against the real binary: answers bounded in bytes (history pages, long-polling
//! POSTs and GETs, resume replays) and agent sessions bounded by their token's lifetime.

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::{metrics_text, Client, Gateway, SECRET};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The frame limit, and with it the answer budget, in these tests (the default).
const FRAME_BYTES: usize = 65536;
/// The longest message: 4,000 characters.
const LONG: usize = 4000;

fn start(dir: &std::path::Path) -> Gateway {
    Gateway::start(
        dir,
        &[
            // Generous send limits: these tests flood on purpose, to build long histories.
            ("CHAT_SEND_RATE_PER_SEC", "10000"),
            ("CHAT_SEND_BURST", "10000"),
        ],
    )
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An HS256 agent JWT signed with the test secret.
fn jwt(sub: &str, exp: u64) -> String {
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = URL_SAFE_NO_PAD
        .encode(json!({"sub": sub, "name": sub, "exp": exp, "iat": now()}).to_string());
    let signing_input = format!("{header}.{claims}");
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(signing_input.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{signature}")
}

/// Peak resident memory of a process, in KiB (`VmHWM`).
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/<pid>/status")
}

/// A visitor that wrote `count` messages of [`LONG`] characters; returns the conversation id.
async fn long_conversation(gateway: &Gateway, count: usize) -> (Client, String) {
    let mut visitor = Client::connect(&gateway.ws("/ws-visitor/"), &[]).await;
    let mut conversation = String::new();
    for i in 0..count {
        let body = format!("{i:04}{}", "x".repeat(LONG - 4));
        let ack = visitor
            .request(json!({"type": "send", "client_msg_id": format!("m{i}"), "body": body}))
            .await;
        assert_eq!(ack["type"], "ack", "{ack}");
        conversation = ack["message"]["conversation_id"]
            .as_str()
            .unwrap()
            .to_owned();
    }
    (visitor, conversation)
}

async fn post(url: &str, body: String) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(url)
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn a_flood_of_history_frames_in_one_poll_post_is_refused_and_memory_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let gateway = start(dir.path());
    let poll = gateway.http("/ws-visitor/poll");
    // The attacker: a polling visitor who wrote 60 long messages.
    let (status, opened) = post(&poll, String::new()).await;
    assert_eq!(status, 200, "{opened}");
    let opened: Value = serde_json::from_str(&opened).unwrap();
    let sid = opened["sid"].as_str().unwrap().to_owned();
    let url = format!("{poll}?sid={sid}");
    let mut conversation = String::new();
    for batch in 0..6 {
        let frames: Vec<Value> = (0..10)
            .map(|i| {
                json!({"type": "send", "id": format!("s{batch}-{i}"),
                       "client_msg_id": format!("m{batch}-{i}"), "body": "y".repeat(LONG)})
            })
            .collect();
        let (status, body) = post(&url, Value::from(frames).to_string()).await;
        assert_eq!(status, 200, "{body}");
        let answers: Value = serde_json::from_str(&body).unwrap();
        for answer in answers["answers"].as_array().unwrap() {
            assert_eq!(answer["type"], "ack", "{answer}");
            conversation = answer["message"]["conversation_id"]
                .as_str()
                .unwrap()
                .to_owned();
        }
    }
    let history = json!({"type": "history", "conversation_id": conversation, "limit": 500});
    let before = peak_rss_kib(gateway.pid());

    // 700 history frames in one POST: refused as a whole, nothing run.
    let flood: Vec<Value> = (0..700).map(|_| history.clone()).collect();
    let (status, body) = post(&url, Value::from(flood).to_string()).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("CHAT_POLL_MAX_FRAMES_PER_POST"), "{body}");

    // The most frames a POST may carry: answers stop at the answer budget; the frames past it
    // are not run and say so.
    let most: Vec<Value> = (0..16)
        .map(|i| {
            let mut frame = history.clone();
            frame["id"] = json!(format!("h{i}"));
            frame
        })
        .collect();
    for _ in 0..20 {
        let (status, body) = post(&url, Value::from(most.clone()).to_string()).await;
        assert_eq!(status, 200, "{body}");
        assert!(
            body.len() < 2 * FRAME_BYTES,
            "a POST answered {} bytes",
            body.len()
        );
        let answers: Value = serde_json::from_str(&body).unwrap();
        let answers = answers["answers"].as_array().unwrap();
        assert_eq!(answers.len(), 16);
        assert_eq!(answers[0]["type"], "ack");
        assert_eq!(
            answers[0]["more"], true,
            "60 long messages need several pages"
        );
        let page = answers[0]["messages"].as_array().unwrap().len();
        assert!((1..60).contains(&page), "page of {page}");
        assert_eq!(answers[15]["type"], "error");
        assert_eq!(answers[15]["code"], "too_large");
    }
    let after = peak_rss_kib(gateway.pid());
    // Before the bounds, the same attack took the gateway from ~19 MB to 541 MB.
    assert!(
        after < before + 64 * 1024,
        "peak RSS grew from {before} KiB to {after} KiB"
    );
    eprintln!("peak RSS before the attack {before} KiB, after {after} KiB");
}

#[tokio::test]
async fn a_long_history_of_long_messages_arrives_in_pages_over_a_session_that_stays_open() {
    let dir = tempfile::tempdir().unwrap();
    let gateway = start(dir.path());
    let (_visitor, conversation) = long_conversation(&gateway, 500).await;
    let token = gateway.agent_token("alice", "Alice");
    let mut agent = Client::connect(&gateway.ws(&format!("/ws-admin/?token={token}")), &[]).await;

    // What the console does when a conversation is opened: pages of up to 500, following `more`.
    let mut after = 0;
    let mut pages = 0;
    let mut seqs = Vec::new();
    loop {
        let ack = agent
            .request(json!({"type": "history", "conversation_id": conversation,
                            "after_seq": after, "limit": 500}))
            .await;
        assert_eq!(ack["type"], "ack", "{ack}");
        assert!(
            ack.to_string().len() <= FRAME_BYTES + 2 * LONG + 1024,
            "a history page of {} bytes",
            ack.to_string().len()
        );
        pages += 1;
        let messages = ack["messages"].as_array().unwrap();
        seqs.extend(messages.iter().map(|m| m["seq"].as_i64().unwrap()));
        after = *seqs.last().unwrap();
        if ack["more"] == false {
            break;
        }
    }
    assert_eq!(seqs, (1..=500).collect::<Vec<i64>>());
    assert!(
        pages >= 30,
        "500 messages of 4,000 characters in {pages} pages"
    );

    // A resume from nothing streams all 500 as events, and the session is still usable.
    let ack = agent
        .request(json!({"type": "resume", "cursors": {conversation.clone(): 0}}))
        .await;
    assert_eq!(ack["replayed"], 500, "{ack}");
    for seq in 1..=500 {
        let event = agent.wait_for(|e| e["type"] == "message").await;
        assert_eq!(event["message"]["seq"], seq);
    }
    let ack = agent.request(json!({"type": "list_conversations"})).await;
    assert_eq!(ack["type"], "ack", "{ack}");

    // The HTTP API pages the same way.
    let response = reqwest::Client::new()
        .get(gateway.http(&format!(
            "/chat/api/conversations/{conversation}/messages?limit=500"
        )))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["more"], true);
    assert!(body["messages"].as_array().unwrap().len() < 500);
}

#[tokio::test]
async fn an_agent_session_ends_when_its_token_expires_unless_renewed_with_auth() {
    let dir = tempfile::tempdir().unwrap();
    let gateway = start(dir.path());

    // Not renewed: an error event says why, then close code 4001.
    let short = jwt("alice", now() + 2);
    let mut agent = Client::connect(&gateway.ws(&format!("/ws-admin/?token={short}")), &[]).await;
    let started = std::time::Instant::now();
    let notice = agent.wait_for(|e| e["type"] == "error").await;
    assert_eq!(notice["code"], "token_expired", "{notice}");
    assert_eq!(agent.closed_with().await, 4001);
    assert!(started.elapsed() < Duration::from_secs(5));

    // Renewed in time with a fresh token of the same agent: the session goes on past the old
    // token's expiry (5 s: room for a slow machine to send the commands below before it).
    let mut agent = Client::connect(
        &gateway.ws(&format!("/ws-admin/?token={}", jwt("bob", now() + 5))),
        &[],
    )
    .await;
    let refused = agent
        .request(json!({"type": "auth", "token": jwt("mallory", now() + 600)}))
        .await;
    assert_eq!(refused["code"], "forbidden", "{refused}");
    let refused = agent
        .request(json!({"type": "auth", "token": "not.a.jwt"}))
        .await;
    assert_eq!(refused["code"], "unauthorized", "{refused}");
    let fresh_until = now() + 600;
    let ack = agent
        .request(json!({"type": "auth", "token": jwt("bob", fresh_until)}))
        .await;
    assert_eq!(ack["expires_at"], fresh_until, "{ack}");
    tokio::time::sleep(Duration::from_secs(7)).await;
    let ack = agent.request(json!({"type": "list_conversations"})).await;
    assert_eq!(ack["type"], "ack", "{ack}");

    // Visitors' tokens do not expire: `auth` is not theirs.
    let mut visitor = Client::connect(&gateway.ws("/ws-visitor/"), &[]).await;
    let refused = visitor
        .request(json!({"type": "auth", "token": jwt("bob", fresh_until)}))
        .await;
    assert_eq!(refused["code"], "forbidden", "{refused}");

    // The expiry is counted as a disconnect reason.
    let metrics = metrics_text(&gateway).await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("chat_disconnects_total")
                && l.contains("reason=\"token_expired\"")
                && l.ends_with(" 1")),
        "{metrics}"
    );
}
