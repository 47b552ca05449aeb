//! Offline capture (issue 15) against the real binary over raw WebSocket: a visitor's `contact`
//! email is validated, bounded and rate-limited, stored unverified on their profile (never over
//! a profile the main site verified) and read by agents with `visitor`; a conversation written
//! to while no agent of the site is online is marked `waiting` until an agent replies or takes
//! it.

mod common;

use chat_core::identity::IdentitySecret;
use common::{Client, Gateway};
use serde_json::{json, Value};

const SECRET: &str = "offline-capture-secret-0123456789abcdef";

fn start(dir: &std::path::Path) -> Gateway {
    Gateway::start(dir, &[("CHAT_IDENTITY_SECRET", SECRET)])
}

async fn agent(gw: &Gateway) -> Client {
    gw.agent("alice", "Alice").await
}

async fn profile_seen_by(agent: &mut Client, conversation: &str) -> Value {
    let answer = agent
        .request(json!({"type":"visitor","conversation_id": conversation}))
        .await;
    assert_eq!(answer["type"], "ack", "{answer}");
    answer["visitor"]["profile"].clone()
}

async fn listed(agent: &mut Client, conversation: &str) -> Value {
    let list = agent.request(json!({"type":"list_conversations"})).await;
    list["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == conversation)
        .cloned()
        .unwrap_or_else(|| panic!("{conversation} not listed: {list}"))
}

#[tokio::test]
async fn contact_is_checked_stored_unverified_and_read_by_agents() {
    let dir = tempfile::tempdir().unwrap();
    let gw = start(dir.path());
    let mut visitor = Client::connect(&gw.ws("/ws-visitor/"), &[]).await;
    assert_eq!(visitor.welcome["agents_online"], 0);

    // Before writing: the address alone gives the visitor a row.
    let ack = visitor
        .request(json!({"type":"contact","email":"ann@example.com"}))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");

    // Refusals say why; a bad address changes nothing.
    let refused = visitor
        .request(json!({"type":"contact","email":"not an email"}))
        .await;
    assert_eq!(refused["code"], "bad_request", "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("email"));
    let long = format!("{}@example.com", "a".repeat(300));
    let refused = visitor
        .request(json!({"type":"contact","email": long}))
        .await;
    assert_eq!(refused["code"], "too_large", "{refused}");
    // Three at once, then one every 5 s.
    let limited = visitor
        .request(json!({"type":"contact","email":"ann@example.com"}))
        .await;
    assert_eq!(limited["code"], "rate_limited", "{limited}");
    assert!(limited["retry_after_ms"].as_u64().unwrap() > 0);
    let refused = visitor.request(json!({"type":"contact","email": 5})).await;
    assert_eq!(refused["code"], "invalid_frame", "{refused}");

    // Written while no agent is online: the conversation waits, and says so.
    let sent = visitor
        .request(json!({"type":"send","body":"Do you ship to Norway?"}))
        .await;
    let conversation = sent["message"]["conversation_id"]
        .as_str()
        .unwrap()
        .to_string();
    let marked = visitor
        .wait_for(|e| e["type"] == "conversation" && e["conversation"]["waiting"] == true)
        .await;
    assert_eq!(marked["conversation"]["id"], conversation.as_str());

    // An agent connecting later sees the address (unverified) and the mark.
    let mut alice = agent(&gw).await;
    let profile = profile_seen_by(&mut alice, &conversation).await;
    assert_eq!(profile["email"], "ann@example.com", "{profile}");
    assert_eq!(profile["verified"], false, "{profile}");
    assert_eq!(listed(&mut alice, &conversation).await["waiting"], true);

    // Agents leave no contact; their reply ends the wait.
    let refused = alice
        .request(json!({"type":"contact","email":"alice@example.com"}))
        .await;
    assert_eq!(refused["code"], "forbidden", "{refused}");
    // An internal note answers nobody: the visitor is still waiting.
    let note = alice
        .request(
            json!({"type":"send","conversation_id": conversation,"body":"Ask Bob","note":true}),
        )
        .await;
    assert_eq!(note["type"], "ack", "{note}");
    assert_eq!(listed(&mut alice, &conversation).await["waiting"], true);
    let reply = alice
        .request(json!({"type":"send","conversation_id": conversation,"body":"Yes we do"}))
        .await;
    assert_eq!(reply["type"], "ack", "{reply}");
    let cleared = alice
        .wait_for(|e| e["type"] == "conversation" && e["conversation"]["id"] == conversation)
        .await;
    assert!(
        cleared["conversation"].get("waiting").is_none(),
        "{cleared}"
    );
    assert!(listed(&mut alice, &conversation)
        .await
        .get("waiting")
        .is_none());

    // With an agent online, writing does not mark it again.
    let again = visitor
        .request(json!({"type":"send","body":"Great, thanks"}))
        .await;
    assert_eq!(again["type"], "ack", "{again}");
    alice
        .wait_for(|e| e["type"] == "message" && e["message"]["body"] == "Great, thanks")
        .await;
    assert!(listed(&mut alice, &conversation)
        .await
        .get("waiting")
        .is_none());
}

#[tokio::test]
async fn a_verified_profile_keeps_its_email_and_an_unverified_one_keeps_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let gw = start(dir.path());
    let hash = IdentitySecret::new(SECRET.as_bytes()).hash("u42");
    let mut verified = Client::connect(
        &gw.ws(&format!(
            "/ws-visitor/?user_id=u42&user_name=Ann&user_email=ann%40example.com&user_hash={hash}"
        )),
        &[],
    )
    .await;
    let sent = verified
        .request(json!({"type":"send","body":"hello"}))
        .await;
    let verified_conversation = sent["message"]["conversation_id"]
        .as_str()
        .unwrap()
        .to_string();
    let ack = verified
        .request(json!({"type":"contact","email":"someone.else@example.com"}))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");

    let mut unverified = Client::connect(
        &gw.ws("/ws-visitor/?user_id=u7&user_name=Bo&user_email=bo%40old.example"),
        &[],
    )
    .await;
    let sent = unverified.request(json!({"type":"send","body":"hi"})).await;
    let unverified_conversation = sent["message"]["conversation_id"]
        .as_str()
        .unwrap()
        .to_string();
    let ack = unverified
        .request(json!({"type":"contact","email":"bo@new.example"}))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");

    let mut alice = agent(&gw).await;
    let profile = profile_seen_by(&mut alice, &verified_conversation).await;
    assert_eq!(profile["email"], "ann@example.com", "{profile}");
    assert_eq!(profile["verified"], true);
    assert_eq!(profile["name"], "Ann");
    let profile = profile_seen_by(&mut alice, &unverified_conversation).await;
    assert_eq!(profile["email"], "bo@new.example", "{profile}");
    assert_eq!(profile["name"], "Bo", "{profile}");
    assert_eq!(profile["user_id"], "u7");
    assert_eq!(profile["verified"], false);
}

#[tokio::test]
async fn taking_a_waiting_conversation_ends_the_wait() {
    let dir = tempfile::tempdir().unwrap();
    let gw = start(dir.path());
    let mut visitor = Client::connect(&gw.ws("/ws-visitor/"), &[]).await;
    let sent = visitor
        .request(json!({"type":"send","body":"anyone?"}))
        .await;
    let conversation = sent["message"]["conversation_id"]
        .as_str()
        .unwrap()
        .to_string();
    visitor
        .wait_for(|e| e["type"] == "conversation" && e["conversation"]["waiting"] == true)
        .await;

    let mut alice = agent(&gw).await;
    assert_eq!(listed(&mut alice, &conversation).await["waiting"], true);
    let taken = alice
        .request(json!({"type":"assign","conversation_id": conversation}))
        .await;
    assert_eq!(taken["type"], "ack", "{taken}");
    assert_eq!(taken["conversation"]["assignee"]["id"], "alice");
    assert!(taken["conversation"].get("waiting").is_none(), "{taken}");
    let seen = visitor
        .wait_for(|e| {
            e["type"] == "conversation"
                && e["conversation"]["assignee"]["id"] == "alice"
                && e["conversation"].get("waiting").is_none()
        })
        .await;
    assert_eq!(seen["conversation"]["id"], conversation.as_str());
}
