//! Two gateway processes on one Postgres: events cross between them on the LISTEN/NOTIFY bus,
//! agent presence is shared and expires when a process dies, and a client resumes on the other
//! process after its own was killed.

mod common;

use common::setup::{conversation_of, two_gateways_on_postgres};
use common::Client;
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test]
async fn a_visitor_on_one_process_and_an_agent_on_another_chat_and_share_presence() {
    let dir = tempfile::tempdir().unwrap();
    let (_pg, a, b) = two_gateways_on_postgres(dir.path());

    let mut visitor = Client::connect(&a.ws("/ws-visitor/"), &[]).await;
    assert_eq!(visitor.welcome["agents_online"], 0);
    let mut agent = b.agent("alice", "Alice").await;
    // Presence crosses processes.
    visitor.wait_for_agents_online(1).await;

    let ack = visitor
        .request(json!({"type":"send","client_msg_id":"v1","body":"hello from A"}))
        .await;
    assert_eq!(ack["message"]["seq"], 1, "{ack}");
    let conversation = conversation_of(&ack);
    let seen = agent
        .wait_for(|e| e["type"] == "message" && e["message"]["seq"] == 1)
        .await;
    assert_eq!(seen["message"]["body"], "hello from A");

    let reply = agent
        .request(json!({"type":"send","conversation_id":conversation,"client_msg_id":"a1","body":"hi from B"}))
        .await;
    assert_eq!(reply["message"]["seq"], 2, "{reply}");
    let got = visitor
        .wait_for(|e| e["type"] == "message" && e["message"]["seq"] == 2)
        .await;
    assert_eq!(got["message"]["body"], "hi from B");

    // A message larger than a notification can carry travels by reference.
    let big = "é".repeat(3_900);
    let ack = visitor
        .request(json!({"type":"send","client_msg_id":"v2","body":big}))
        .await;
    assert_eq!(ack["message"]["seq"], 3, "{ack}");
    let seen = agent
        .wait_for(|e| e["type"] == "message" && e["message"]["seq"] == 3)
        .await;
    assert_eq!(seen["message"]["body"], big);

    // The agent's process dies without a word: its agents stop counting once it goes silent.
    let started = Instant::now();
    drop(agent);
    b.stop();
    loop {
        // A request now and then keeps the client's 10-second read timeout from firing.
        visitor
            .request(json!({"type":"history","conversation_id":conversation}))
            .await;
        if visitor
            .backlog
            .iter()
            .any(|e| e["type"] == "presence" && e["agents_online"] == 0)
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "presence still counts the dead process's agent"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    drop(a);
}

#[tokio::test]
async fn a_client_resumes_on_the_other_process_after_its_own_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let (_pg, a, b) = two_gateways_on_postgres(dir.path());

    let mut agent = b.agent("bob", "Bob").await;
    let mut visitor = Client::connect(&a.ws("/ws-visitor/"), &[]).await;
    let vtoken = visitor.welcome["visitor_token"]
        .as_str()
        .unwrap()
        .to_string();
    let first = visitor
        .request(json!({"type":"send","client_msg_id":"m1","body":"one"}))
        .await;
    let conversation = conversation_of(&first);
    agent
        .wait_for(|e| e["type"] == "message" && e["message"]["seq"] == 1)
        .await;

    // Process A is killed; the agent keeps writing while the visitor is away.
    a.stop();
    for i in 2..=4 {
        let ack = agent
            .request(json!({"type":"send","conversation_id":conversation,"client_msg_id":format!("a{i}"),"body":format!("reply {i}")}))
            .await;
        assert_eq!(ack["message"]["seq"], i);
    }

    // The visitor comes back on B, resumes from seq 1 and gets exactly 2, 3, 4, then live 5.
    let mut visitor = Client::connect(&b.ws(&format!("/ws-visitor/?token={vtoken}")), &[]).await;
    let resumed = visitor
        .request(json!({"type":"resume","cursors":{conversation.clone(): 1}}))
        .await;
    assert_eq!(resumed["replayed"], 3, "{resumed}");
    // A retry of the first message (its ack might have been lost with A) is not a duplicate.
    let retry = visitor
        .request(json!({"type":"send","client_msg_id":"m1","body":"one"}))
        .await;
    assert_eq!(retry["duplicate"], true, "{retry}");
    assert_eq!(retry["message"]["seq"], 1);
    agent
        .request(json!({"type":"send","conversation_id":conversation,"client_msg_id":"a5","body":"live"}))
        .await;
    let mut seqs = Vec::new();
    while seqs.last() != Some(&5) {
        let e = visitor.wait_for(|e| e["type"] == "message").await;
        seqs.push(e["message"]["seq"].as_i64().unwrap());
    }
    assert_eq!(seqs, [2, 3, 4, 5]);
}

#[tokio::test]
async fn presence_and_live_delivery_are_per_site_across_processes() {
    let dir = tempfile::tempdir().unwrap();
    let (_pg, a, b) = two_gateways_on_postgres(dir.path());

    // An agent of shop1 on process B.
    let mut ann = b.agent_for("ann", "Ann", Some("shop1")).await;
    // Visitors of both sites on process A: only shop1's widget says someone is online.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut shop1 = loop {
        let v = Client::connect(&a.ws("/ws-visitor/?site=shop1"), &[]).await;
        if v.welcome["agents_online"] == 1 || Instant::now() > deadline {
            break v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(shop1.welcome["agents_online"], 1, "{}", shop1.welcome);
    let mut shop2 = Client::connect(&a.ws("/ws-visitor/?site=shop2"), &[]).await;
    assert_eq!(shop2.welcome["agents_online"], 0, "{}", shop2.welcome);

    // Messages committed on A reach B's shop1 agent only for shop1.
    shop2
        .request(json!({"type":"send","body":"shop2 secret"}))
        .await;
    shop1
        .request(json!({"type":"send","body":"shop1 hello"}))
        .await;
    loop {
        let event = ann.next().await;
        assert_ne!(event["message"]["body"], "shop2 secret", "{event}");
        if event["message"]["body"] == "shop1 hello" {
            break;
        }
    }

    // An agent of shop2 joins on B: shop2's widget on A hears of it, shop1's count is unchanged.
    let _bob = b.agent_for("bob", "Bob", Some("shop2")).await;
    let presence = shop2.wait_for(|e| e["type"] == "presence").await;
    assert_eq!(presence["agents_online"], 1);
    drop(ann);
    let presence = shop1.wait_for(|e| e["type"] == "presence").await;
    assert_eq!(presence["agents_online"], 0, "shop1's only agent left");
}
