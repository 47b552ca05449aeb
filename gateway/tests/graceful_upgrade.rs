//! Zero-downtime upgrade: a new gateway started with `serve --upgrade` takes the listening
//! socket over when the old one gets SIGQUIT; the old one's sessions are told to reconnect
//! (1001) only once the new one accepts alone, and no acknowledged message is lost or doubled.

mod common;

use common::{Client, Gateway};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[tokio::test]
async fn sessions_move_to_the_new_process_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    // This visitor sends every 50 ms, faster than any person: the visitor send rate limit
    // (`CHAT_SEND_RATE_PER_SEC`, tested in hostile_limits.rs) is off here.
    let old = Gateway::start(dir.path(), &[("CHAT_SEND_RATE_PER_SEC", "0")]);
    let mut visitor = Client::connect(&old.ws("/ws-visitor/"), &[]).await;
    let token = visitor.welcome["visitor_token"]
        .as_str()
        .unwrap()
        .to_string();

    let mut new = Gateway::spawn(
        old.port,
        old.env.clone(),
        dir.path(),
        &["serve", "--upgrade"],
    );
    new.wait_for_line("UPGRADE_WAITING", Duration::from_secs(30));
    // SAFETY: signalling a child process we own.
    assert_eq!(unsafe { libc::kill(old.pid() as i32, libc::SIGQUIT) }, 0);
    new.wait_for_line("SERVER_OK", Duration::from_secs(30));

    // Keep sending through the handover; every command is acked, or the connection ends
    // first and the command is retried with the same client_msg_id.
    let started = Instant::now();
    let mut acked: BTreeMap<String, i64> = BTreeMap::new();
    let mut unacked: Vec<String> = Vec::new();
    let mut n = 0;
    let close_code = loop {
        n += 1;
        let id = format!("m{n}");
        visitor
            .send_raw(&json!({"type":"send","id":id,"client_msg_id":id,"body":id}).to_string())
            .await;
        // Events the send causes (the new conversation, our own message) may come first.
        let outcome = loop {
            match visitor.next_or_close().await {
                Ok(ev) if ev["type"] == "ack" && ev["id"] == json!(id) => break Ok(ev),
                Ok(ev) if ev["type"] == "error" => panic!("refused: {ev}"),
                Ok(_) => continue,
                Err(code) => break Err(code),
            }
        };
        match outcome {
            Ok(ack) => {
                acked.insert(id, ack["message"]["seq"].as_i64().unwrap());
            }
            Err(code) => {
                unacked.push(id);
                break code;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never told to reconnect"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(close_code, 1001, "going away, so the client reconnects");
    assert!(!acked.is_empty());

    // The same address now reaches the new process.
    let mut visitor = Client::connect(&old.ws(&format!("/ws-visitor/?token={token}")), &[]).await;
    let conversation = visitor.welcome["conversation"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    for id in &unacked {
        let ack = visitor
            .request(json!({"type":"send","client_msg_id":id,"body":id}))
            .await;
        acked.insert(id.clone(), ack["message"]["seq"].as_i64().unwrap());
    }
    let history = visitor
        .request(json!({"type":"history","conversation_id":conversation,"limit":500}))
        .await;
    let stored: Vec<(String, i64)> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["client_msg_id"].as_str().unwrap().to_string(),
                m["seq"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        stored.iter().map(|(_, s)| *s).collect::<Vec<_>>(),
        (1..=stored.len() as i64).collect::<Vec<_>>(),
        "no gap"
    );
    let stored: BTreeMap<String, i64> = stored.into_iter().collect();
    assert_eq!(stored, acked, "every acknowledged message exactly once");

    // The old process exits by itself once drained.
    let mut old = old;
    let deadline = Instant::now() + Duration::from_secs(30);
    while old.exit_status().is_none() {
        assert!(Instant::now() < deadline, "the old process did not exit");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        new.log().contains("websocket session opened"),
        "{}",
        new.log()
    );
}
