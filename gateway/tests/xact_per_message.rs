//! Postgres transactions per chat message: a visitor sends N messages through a real gateway
//! on a throwaway Postgres while an agent receives them, and `pg_stat_database.xact_commit`
//! of the chat database is read before and after (issue 12: at most 1.2 per message for one
//! gateway process). Prints the figure; `docs/benchmarks.md` quotes it.

mod common;

use common::setup::migrated_postgres;
use common::{Client, Gateway};
use serde_json::json;
use std::process::Command;
use std::time::Duration;

/// Messages sent per measurement; background work (presence heartbeats, pool checks) adds a
/// few transactions per run, which this many messages makes small.
const MESSAGES: usize = 300;

/// Committed transactions of the database of `url` so far. Statistics reach
/// `pg_stat_database` at most once a second from a busy backend, and within 10 s from one
/// that went idle, so this waits first.
async fn xact_commit(url: &str) -> i64 {
    tokio::time::sleep(Duration::from_secs(11)).await;
    let out = Command::new("psql")
        .args([
            url,
            "-XAtc",
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// Sends `MESSAGES` visitor messages after the first one (each acknowledged before the next)
/// and waits until the agent has them all; returns transactions per message.
async fn measure(url: &str, visitor: &mut Client, mut agent: Client, tag: &str) -> f64 {
    agent.resume_from_start().await;
    let before = xact_commit(url).await;
    let last = MESSAGES as i64 + 1;
    // The agent reads as the messages arrive (a held or slow session is disconnected).
    let reader = tokio::spawn(async move {
        agent
            .wait_for(|e| e["type"] == "message" && e["message"]["seq"] == last)
            .await;
    });
    for i in 0..MESSAGES {
        let ack = visitor
            .request(
                json!({"type":"send","client_msg_id":format!("{tag}-{i}"),"body":"x".repeat(100)}),
            )
            .await;
        assert!(ack["message"]["seq"].is_i64(), "{ack}");
    }
    reader.await.unwrap();
    let after = xact_commit(url).await;
    // The reading connection itself commits one transaction.
    (after - before - 1) as f64 / MESSAGES as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gateway_commits_about_one_transaction_per_message() {
    let dir = tempfile::tempdir().unwrap();
    let (_pg, url) = migrated_postgres(dir.path());
    let gw = Gateway::start(
        dir.path(),
        &[("CHAT_DATABASE_URL", &url), ("CHAT_SEND_RATE_PER_SEC", "0")],
    );

    let agent = gw.agent("alice", "Alice").await;
    let mut visitor = Client::connect(&gw.ws("/ws-visitor/"), &[]).await;
    // The first message creates the visitor and the conversation.
    visitor
        .request(json!({"type":"send","client_msg_id":"warm","body":"hello"}))
        .await;
    let per_message = measure(&url, &mut visitor, agent, "one").await;
    println!("XACT_PER_MESSAGE one_gateway={per_message:.2} messages={MESSAGES}");
    assert!(
        per_message <= 1.2,
        "{per_message:.2} Postgres transactions per message with one gateway"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_notify_inside_the_committing_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let (_pg, url) = migrated_postgres(dir.path());
    let a = Gateway::start(
        dir.path(),
        &[("CHAT_DATABASE_URL", &url), ("CHAT_SEND_RATE_PER_SEC", "0")],
    );
    let b = Gateway::start(
        dir.path(),
        &[("CHAT_DATABASE_URL", &url), ("CHAT_SEND_RATE_PER_SEC", "0")],
    );

    // The visitor on A, the agent on B: every message crosses the bus.
    let agent = b.agent("bob", "Bob").await;
    let mut visitor = Client::connect(&a.ws("/ws-visitor/"), &[]).await;
    visitor
        .request(json!({"type":"send","client_msg_id":"warm","body":"hello"}))
        .await;
    let per_message = measure(&url, &mut visitor, agent, "two").await;
    println!("XACT_PER_MESSAGE two_gateways={per_message:.2} messages={MESSAGES}");
    assert!(
        per_message <= 1.2,
        "{per_message:.2} Postgres transactions per message with two gateways"
    );
}

/// The read a send no longer makes must not cost correctness: once an agent's `close` is
/// acknowledged, the visitor's next send (made before the visitor's session has even passed
/// on the close event) opens a new conversation, as it did when every send read the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_after_an_agent_closed_the_conversation_opens_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let (_pg, url) = migrated_postgres(dir.path());
    let gw = Gateway::start(
        dir.path(),
        &[("CHAT_DATABASE_URL", &url), ("CHAT_SEND_RATE_PER_SEC", "0")],
    );
    let mut agent = gw.agent("carol", "Carol").await;
    let mut visitor = Client::connect(&gw.ws("/ws-visitor/"), &[]).await;
    let mut conversation = None;
    for round in 0..3 {
        let first = visitor
            .request(json!({"type":"send","client_msg_id":format!("r{round}-a"),"body":"one"}))
            .await;
        let id = first["message"]["conversation_id"].clone();
        assert!(id.is_string(), "{first}");
        assert_ne!(
            Some(&id),
            conversation.as_ref(),
            "a closed conversation was written to"
        );
        let again = visitor
            .request(json!({"type":"send","client_msg_id":format!("r{round}-b"),"body":"two"}))
            .await;
        assert_eq!(again["message"]["conversation_id"], id, "{again}");
        let closed = agent
            .request(json!({"type":"close","conversation_id":id}))
            .await;
        assert_eq!(closed["type"], "ack", "{closed}");
        conversation = Some(id);
    }
}
