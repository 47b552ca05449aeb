//! Read receipts end to end (issue 15): the `read` command stores a participant's position and
//! the `read` event tells the other side, on raw WebSocket and long-polling, across two gateway
//! processes; agents' unread counts come from the server; a flood of `read` is refused and
//! writes nothing more.

mod common;

use common::poller::Poller;
use common::setup::{conversation_of, two_gateways_on_postgres};
use common::{Client, Gateway};
use serde_json::{json, Value};
use std::time::Duration;

/// The asking agent's read state of `conversation` in a `list_conversations` ack (all zeros
/// when the entry is absent).
async fn read_state(agent: &mut Client, conversation: &str) -> (u64, u64, u64) {
    let ack = agent.request(json!({"type":"list_conversations"})).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert!(
        ack["conversations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == conversation),
        "{ack}"
    );
    let state = &ack["read_state"][conversation];
    (
        state["unread"].as_u64().unwrap_or(0),
        state["read_seq"].as_u64().unwrap_or(0),
        state["visitor_read_seq"].as_u64().unwrap_or(0),
    )
}

fn is_read(e: &Value, role: &str, seq: u64) -> bool {
    e["type"] == "read" && e["role"] == role && e["seq"] == seq
}

#[tokio::test]
async fn reads_reach_the_other_side_and_unread_goes_to_zero() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(dir.path(), &[]);
    let mut alice = gw.agent("alice", "Alice").await;
    let mut bob = gw.agent("bob", "Bob").await;
    // An agent of another site only: told nothing, allowed nothing (docs/sites.md).
    let mut outsider = gw.agent_for("olga", "Olga", Some("elsewhere")).await;
    let mut visitor = Client::connect(&gw.ws("/ws-visitor/"), &[]).await;
    visitor.resume_from_start().await;

    let mut conversation = String::new();
    for i in 1..=3 {
        let ack = visitor
            .request(
                json!({"type":"send","client_msg_id":format!("v{i}"),"body":format!("hello {i}")}),
            )
            .await;
        conversation = conversation_of(&ack);
    }
    alice
        .wait_for(|e| e["type"] == "message" && e["message"]["seq"] == 3)
        .await;
    assert_eq!(read_state(&mut alice, &conversation).await, (3, 0, 0));

    // The agent reads: the visitor is told an agent saw it (not which), colleagues are told who.
    let ack = alice
        .request(json!({"type":"read","conversation_id":conversation,"seq":3}))
        .await;
    assert_eq!(
        (&ack["type"], &ack["read_seq"]),
        (&json!("ack"), &json!(3)),
        "{ack}"
    );
    let seen = visitor.wait_for(|e| e["type"] == "read").await;
    assert!(is_read(&seen, "agent", 3), "{seen}");
    assert_eq!(seen["conversation_id"], conversation.as_str());
    assert!(
        seen.get("agent_id").is_none(),
        "visitors are not told which agent: {seen}"
    );
    let told = bob.wait_for(|e| e["type"] == "read").await;
    assert!(is_read(&told, "agent", 3), "{told}");
    assert_eq!(told["agent_id"], "alice");
    assert_eq!(read_state(&mut alice, &conversation).await, (0, 3, 0));
    assert_eq!(
        read_state(&mut bob, &conversation).await,
        (3, 0, 0),
        "bob read nothing"
    );

    // The agent replies; the agent's own messages never count as unread.
    let reply = alice
        .request(json!({"type":"send","conversation_id":conversation,"body":"hi!"}))
        .await;
    assert_eq!(reply["message"]["seq"], 4, "{reply}");
    assert_eq!(read_state(&mut alice, &conversation).await, (0, 3, 0));

    // The visitor reads (naming no conversation: their open one): agents are told.
    visitor
        .wait_for(|e| e["type"] == "message" && e["message"]["seq"] == 4)
        .await;
    let ack = visitor.request(json!({"type":"read","seq":4})).await;
    assert_eq!(ack["read_seq"], 4, "{ack}");
    // (Agents are also told of their own reads: a console's other tabs clear their badges.)
    let told = alice
        .wait_for(|e| e["type"] == "read" && e["role"] == "visitor")
        .await;
    assert!(is_read(&told, "visitor", 4), "{told}");
    assert!(told.get("agent_id").is_none(), "{told}");
    assert_eq!(read_state(&mut alice, &conversation).await, (0, 3, 4));

    // Past the last message: clamped, and nothing new to announce. Backwards: unchanged.
    let ack = visitor.request(json!({"type":"read","seq":99})).await;
    assert_eq!(ack["read_seq"], 4, "{ack}");
    let ack = alice
        .request(json!({"type":"read","conversation_id":conversation,"seq":1}))
        .await;
    assert_eq!(ack["read_seq"], 3, "{ack}");
    let ack = visitor.request(json!({"type":"read","seq":-1})).await;
    assert_eq!(ack["code"], "bad_request", "{ack}");

    let ack = outsider
        .request(json!({"type":"read","conversation_id":conversation,"seq":1}))
        .await;
    assert_eq!(ack["code"], "forbidden", "{ack}");
    assert!(
        !outsider.backlog.iter().any(|e| e["type"] == "read"),
        "another site's agent was told: {:?}",
        outsider.backlog
    );

    // Another visitor may not mark this conversation.
    let mut stranger = Client::connect(&gw.ws("/ws-visitor/"), &[]).await;
    let ack = stranger
        .request(json!({"type":"read","conversation_id":conversation,"seq":1}))
        .await;
    assert_eq!(ack["code"], "forbidden", "{ack}");
    let ack = stranger.request(json!({"type":"read","seq":1})).await;
    assert_eq!(ack["code"], "bad_request", "no open conversation: {ack}");

    // A reconnecting visitor learns how far the agents read when it resumes; an agent loading
    // the conversation from its start learns how far the visitor read.
    let token = visitor.welcome["visitor_token"]
        .as_str()
        .unwrap()
        .to_string();
    drop(visitor);
    let mut again = Client::connect(&gw.ws(&format!("/ws-visitor/?token={token}")), &[]).await;
    let ack = again
        .request(json!({"type":"resume","cursors":{conversation.clone():4}}))
        .await;
    assert_eq!(ack["replayed"], 0, "{ack}");
    let seen = again.wait_for(|e| e["type"] == "read").await;
    assert!(is_read(&seen, "agent", 3), "{seen}");
    let mut carol = gw.agent("carol", "Carol").await;
    let ack = carol
        .request(json!({"type":"history","conversation_id":conversation}))
        .await;
    assert_eq!(ack["messages"].as_array().unwrap().len(), 4, "{ack}");
    let seen = carol.wait_for(|e| e["type"] == "read").await;
    assert!(is_read(&seen, "visitor", 4), "{seen}");
    gw.stop();
}

#[tokio::test]
async fn a_flood_of_read_is_refused_and_writes_each_position_once() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(dir.path(), &[]);
    let mut alice = gw.agent("alice", "Alice").await;
    let mut visitor = Client::connect(&gw.ws("/ws-visitor/"), &[]).await;
    visitor.resume_from_start().await;
    let ack = visitor.request(json!({"type":"send","body":"one"})).await;
    let conversation = conversation_of(&ack);
    alice.wait_for(|e| e["type"] == "message").await;

    // 40 frames at once, all for the same position.
    for i in 0..40 {
        visitor
            .send_raw(
                &json!({"type":"read","id":format!("f{i}"),"conversation_id":conversation,"seq":1})
                    .to_string(),
            )
            .await;
    }
    let (mut acks, mut limited) = (0, 0);
    for _ in 0..40 {
        let answer = visitor
            .wait_for(|e| e["type"] == "ack" || e["type"] == "error")
            .await;
        match answer["type"].as_str() {
            Some("ack") => acks += 1,
            _ => {
                assert_eq!(answer["code"], "rate_limited", "{answer}");
                assert!(answer["retry_after_ms"].as_u64().unwrap() > 0, "{answer}");
                limited += 1;
            }
        }
    }
    // The burst (10), perhaps one more refilled meanwhile; the rest refused.
    assert!((10..=12).contains(&acks), "acks {acks}, limited {limited}");
    assert_eq!(acks + limited, 40);

    // One position stored, so one announcement, however many frames said it.
    let told = alice.wait_for(|e| e["type"] == "read").await;
    assert!(is_read(&told, "visitor", 1), "{told}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    alice.request(json!({"type":"list_conversations"})).await;
    let more = alice.backlog.iter().filter(|e| e["type"] == "read").count();
    assert_eq!(
        more, 0,
        "a repeated position is announced again: {:?}",
        alice.backlog
    );

    // After the refused ones, the sustained rate lets reads through again.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let ack = visitor
        .request(json!({"type":"read","conversation_id":conversation,"seq":1}))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    gw.stop();
}

#[tokio::test]
async fn reads_over_long_polling() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(dir.path(), &[]);
    let mut alice = gw.agent("alice", "Alice").await;
    let mut visitor = Poller::open(&gw, "/ws-visitor/poll?site=default").await;
    visitor.request(json!({"type":"resume","cursors":{}})).await;
    let ack = visitor
        .request(json!({"type":"send","body":"over polling"}))
        .await;
    let conversation = conversation_of(&ack);
    alice.wait_for(|e| e["type"] == "message").await;

    let ack = visitor.request(json!({"type":"read","seq":1})).await;
    assert_eq!(ack["read_seq"], 1, "{ack}");
    let told = alice.wait_for(|e| e["type"] == "read").await;
    assert!(is_read(&told, "visitor", 1), "{told}");

    let ack = alice
        .request(json!({"type":"read","conversation_id":conversation,"seq":1}))
        .await;
    assert_eq!(ack["read_seq"], 1, "{ack}");
    let own = alice
        .wait_for(|e| e["type"] == "read" && e["role"] == "agent")
        .await;
    assert_eq!(own["agent_id"], "alice", "{own}");
    // (The visitor's sessions hear of its own read too; the agent's is the one that matters.)
    let agent_read = |e: &Value| e["type"] == "read" && e["role"] == "agent";
    let events = visitor.poll_until(agent_read).await;
    let seen = events.iter().find(|e| agent_read(e)).unwrap();
    assert!(is_read(seen, "agent", 1), "{seen}");
    gw.stop();
}

#[tokio::test]
async fn reads_cross_gateway_processes() {
    let dir = tempfile::tempdir().unwrap();
    let (_pg, a, b) = two_gateways_on_postgres(dir.path());

    let mut visitor = Client::connect(&a.ws("/ws-visitor/"), &[]).await;
    visitor.resume_from_start().await;
    let mut alice = b.agent("alice", "Alice").await;
    let mut conversation = String::new();
    for i in 1..=2 {
        let ack = visitor
            .request(json!({"type":"send","body":format!("from A {i}")}))
            .await;
        conversation = conversation_of(&ack);
    }
    alice
        .wait_for(|e| e["type"] == "message" && e["message"]["seq"] == 2)
        .await;
    assert_eq!(read_state(&mut alice, &conversation).await, (2, 0, 0));

    // The agent on B reads: the visitor on A is told over the bus.
    let ack = alice
        .request(json!({"type":"read","conversation_id":conversation,"seq":2}))
        .await;
    assert_eq!(ack["read_seq"], 2, "{ack}");
    let seen = visitor.wait_for(|e| e["type"] == "read").await;
    assert!(is_read(&seen, "agent", 2), "{seen}");
    assert_eq!(read_state(&mut alice, &conversation).await, (0, 2, 0));

    // The visitor on A reads the reply: the agent on B is told.
    alice
        .request(json!({"type":"send","conversation_id":conversation,"body":"from B"}))
        .await;
    visitor
        .wait_for(|e| e["type"] == "message" && e["message"]["seq"] == 3)
        .await;
    visitor.request(json!({"type":"read","seq":3})).await;
    let told = alice
        .wait_for(|e| e["type"] == "read" && e["role"] == "visitor")
        .await;
    assert!(is_read(&told, "visitor", 3), "{told}");
    assert_eq!(read_state(&mut alice, &conversation).await, (0, 2, 3));
    drop((a, b));
}
