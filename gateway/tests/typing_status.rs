//! Typing indicators and agent status (issue 15) against the real binary: typing both ways over
//! raw WebSocket and long-polling, never stored nor replayed, rate-limited, site scoped, stopped
//! when its session ends; away and offline agents out of the visitors' presence, statuses shared
//! by an agent's sessions and told to colleagues; both across two processes on one Postgres.
//! (Socket.IO: `gateway/tests/node/typing-status.test.mjs`; the browser:
//! `web/tests/typing-status.test.mjs`.)

mod common;

use common::poller::Poller;
use common::setup::{conversation_of, two_gateways_on_postgres};
use common::{Client, Gateway};
use serde_json::{json, Value};
use std::time::Duration;

/// A visitor who wrote once (so has a conversation) and an agent following it, both past the
/// resume grace. Returns (visitor, agent, conversation id).
async fn chat(
    gw: &Gateway,
    site: &str,
    agent_id: &str,
    sites: Option<&str>,
) -> (Client, Client, String) {
    let mut visitor = Client::connect(&gw.ws(&format!("/ws-visitor/?site={site}")), &[]).await;
    let mut agent = gw
        .agent_for(agent_id, &agent_id.to_uppercase(), sites)
        .await;
    agent.resume_from_start().await;
    let ack = visitor
        .request(json!({"type":"send","client_msg_id":"v1","body":"hello"}))
        .await;
    let conversation = ack["message"]["conversation_id"]
        .as_str()
        .unwrap()
        .to_string();
    agent
        .wait_for(|e| {
            e["type"] == "message" && e["message"]["conversation_id"] == conversation.as_str()
        })
        .await;
    (visitor, agent, conversation)
}

fn is_typing(e: &Value) -> bool {
    e["type"] == "typing"
}

/// Every event a client has received until one matches `pred` (included).
async fn events_until(client: &mut Client, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let event = client.next().await;
        let done = pred(&event);
        seen.push(event);
        if done {
            return seen;
        }
    }
}

#[tokio::test]
async fn typing_reaches_the_other_side_and_is_never_stored_nor_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(dir.path(), &[]);
    let (mut visitor, mut agent, conversation) = chat(&gw, "default", "alice", None).await;
    let visitor_id = visitor.welcome["visitor_id"].as_str().unwrap().to_string();

    // The visitor types: no conversation named, their open one is used.
    let ack = visitor
        .request(json!({"type":"typing","typing":true}))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let seen = agent.wait_for(is_typing).await;
    assert_eq!(seen["conversation_id"], conversation.as_str(), "{seen}");
    assert_eq!(seen["typing"], true);
    assert_eq!(seen["expires_in_ms"], 6000);
    assert_eq!(seen["sender"]["role"], "visitor");
    assert_eq!(seen["sender"]["id"], visitor_id.as_str());

    // The agent types: the visitor sees who.
    let ack = agent
        .request(json!({"type":"typing","conversation_id":conversation,"typing":true}))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let seen = visitor.wait_for(is_typing).await;
    assert_eq!(
        seen["sender"],
        json!({"role":"agent","id":"alice","name":"ALICE"})
    );
    assert_eq!(seen["typing"], true);
    // Stopped: no expiry on a `false`.
    agent
        .request(json!({"type":"typing","conversation_id":conversation,"typing":false}))
        .await;
    let seen = visitor.wait_for(is_typing).await;
    assert_eq!(seen["typing"], false);
    assert!(seen.get("expires_in_ms").is_none(), "{seen}");
    // The agent never got their own typing back.
    let ack = agent
        .request(json!({"type":"history","conversation_id":conversation}))
        .await;
    assert!(!agent.backlog.iter().any(is_typing), "{:?}", agent.backlog);

    // Never stored: history holds the one message only.
    assert_eq!(ack["messages"].as_array().unwrap().len(), 1, "{ack}");
    // Never replayed: a reconnecting visitor resuming from 0 gets the message, no typing.
    let token = visitor.welcome["visitor_token"]
        .as_str()
        .unwrap()
        .to_string();
    drop(visitor);
    let mut again = Client::connect(&gw.ws(&format!("/ws-visitor/?token={token}")), &[]).await;
    let ack = again
        .request(json!({"type":"resume","cursors":{conversation.clone(): 0}}))
        .await;
    assert_eq!(ack["replayed"], 1, "{ack}");
    let replay = events_until(&mut again, |e| e["type"] == "message").await;
    // A marker after the replay: anything replayed came before its answer.
    again
        .request(json!({"type":"history","conversation_id":conversation}))
        .await;
    assert!(
        !replay.iter().chain(again.backlog.iter()).any(is_typing),
        "{replay:?}"
    );

    // Refusals say why.
    let err = agent.request(json!({"type":"typing","typing":true})).await;
    assert_eq!(err["code"], "bad_request", "{err}");
    let mut stranger = Client::connect(&gw.ws("/ws-visitor/"), &[]).await;
    let err = stranger
        .request(json!({"type":"typing","typing":true}))
        .await;
    assert_eq!(err["code"], "bad_request", "no conversation yet: {err}");
    let err = stranger
        .request(json!({"type":"typing","conversation_id":conversation,"typing":true}))
        .await;
    assert_eq!(
        err["code"], "forbidden",
        "another visitor's conversation: {err}"
    );
    let err = stranger
        .request(json!({"type":"set_status","status":"away"}))
        .await;
    assert_eq!(err["code"], "forbidden", "{err}");
    let err = agent.request(json!({"type":"typing","typing":"yes"})).await;
    assert_eq!(err["code"], "invalid_frame", "{err}");
}

#[tokio::test]
async fn typing_over_long_polling_reaches_the_agent_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(dir.path(), &[]);
    let mut visitor = Poller::open(&gw, "/ws-visitor/poll?site=default").await;
    let ack = visitor
        .request(json!({"type":"send","client_msg_id":"p1","body":"over polling"}))
        .await;
    let conversation = ack["message"]["conversation_id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut agent = gw.agent("alice", "Alice").await;
    agent.resume_from_start().await;

    let ack = visitor
        .request(json!({"type":"typing","typing":true}))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let seen = agent.wait_for(is_typing).await;
    assert_eq!(seen["conversation_id"], conversation.as_str());

    agent
        .request(json!({"type":"typing","conversation_id":conversation,"typing":true}))
        .await;
    let events = visitor.poll_until(is_typing).await;
    let seen = events.iter().find(|e| is_typing(e)).unwrap();
    assert_eq!(seen["sender"]["id"], "alice");
}

#[tokio::test]
async fn a_typing_flood_is_rate_limited_and_reaches_nobody() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(dir.path(), &[]);
    let (mut visitor, mut agent, _) = chat(&gw, "default", "alice", None).await;

    // 40 frames at once, then count the answers.
    for i in 0..40 {
        visitor
            .send_raw(
                &json!({"type":"typing","id":format!("t{i}"),"typing":i % 2 == 0}).to_string(),
            )
            .await;
    }
    let mut accepted = 0;
    let mut limited = 0;
    while accepted + limited < 40 {
        let answer = visitor
            .wait_for(|e| e["id"].as_str().is_some_and(|id| id.starts_with('t')))
            .await;
        match answer["type"].as_str() {
            Some("ack") => accepted += 1,
            _ => {
                assert_eq!(answer["code"], "rate_limited", "{answer}");
                assert!(answer["retry_after_ms"].as_u64().unwrap() > 0, "{answer}");
                limited += 1;
            }
        }
    }
    assert!(
        (5..=7).contains(&accepted),
        "burst of 5 (and what refilled meanwhile): {accepted}"
    );
    // Each refusal is counted, under its command.
    assert_eq!(
        common::metric(
            &gw,
            "chat_command_rate_limited_total",
            &[("command", "typing")]
        )
        .await,
        limited as f64
    );
    assert_eq!(
        common::metric(
            &gw,
            "chat_command_rate_limited_total",
            &[("command", "read")]
        )
        .await,
        0.0
    );

    // What reached the agent: exactly the accepted ones, before the message that follows them.
    visitor
        .request(json!({"type":"send","client_msg_id":"v2","body":"marker"}))
        .await;
    let events = events_until(&mut agent, |e| {
        e["type"] == "message" && e["message"]["body"] == "marker"
    })
    .await;
    let typing = events
        .iter()
        .chain(agent.backlog.iter())
        .filter(|e| is_typing(e))
        .count();
    assert_eq!(typing, accepted, "{events:?}");

    // The allowance comes back: 2 a second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let ack = visitor
        .request(json!({"type":"typing","typing":true}))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
}

#[tokio::test]
async fn typing_is_site_scoped() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(dir.path(), &[]);
    let (mut shop_visitor, mut shop_agent, _) = chat(&gw, "shop1", "alice", Some("shop1")).await;
    let (mut other_visitor, mut other_agent, other_conversation) =
        chat(&gw, "shop2", "bob", Some("shop2")).await;

    shop_visitor
        .request(json!({"type":"typing","typing":true}))
        .await;
    shop_agent.wait_for(is_typing).await;
    // Bob (shop2) sees nothing of it: a shop2 message after it arrives with no typing before.
    other_visitor
        .request(json!({"type":"send","client_msg_id":"v2","body":"marker"}))
        .await;
    let events = events_until(&mut other_agent, |e| {
        e["type"] == "message" && e["message"]["body"] == "marker"
    })
    .await;
    assert!(
        !events
            .iter()
            .chain(other_agent.backlog.iter())
            .any(is_typing),
        "{events:?}"
    );
    // Nor may he type into another site's conversation, nor alice into his.
    let err = shop_agent
        .request(json!({"type":"typing","conversation_id":other_conversation,"typing":true}))
        .await;
    assert_eq!(err["code"], "forbidden", "{err}");
    // An agent's typing reaches the conversation's visitor only.
    other_agent
        .request(json!({"type":"typing","conversation_id":other_conversation,"typing":true}))
        .await;
    other_visitor.wait_for(is_typing).await;
    shop_visitor
        .request(json!({"type":"send","client_msg_id":"v3","body":"marker"}))
        .await;
    let events = events_until(&mut shop_visitor, |e| {
        e["type"] == "message" && e["message"]["body"] == "marker"
    })
    .await;
    assert!(!events.iter().any(is_typing), "{events:?}");
}

#[tokio::test]
async fn a_session_that_ends_while_typing_says_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(dir.path(), &[]);
    let (mut visitor, mut agent, conversation) = chat(&gw, "default", "alice", None).await;
    agent
        .request(json!({"type":"typing","conversation_id":conversation,"typing":true}))
        .await;
    assert_eq!(visitor.wait_for(is_typing).await["typing"], true);
    drop(agent);
    let seen = visitor.wait_for(is_typing).await;
    assert_eq!(seen["typing"], false, "{seen}");
    assert_eq!(seen["sender"]["id"], "alice");
}

#[tokio::test]
async fn away_and_offline_agents_do_not_count_and_the_status_is_the_agents() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(dir.path(), &[]);
    let mut visitor = Client::connect(&gw.ws("/ws-visitor/"), &[]).await;
    assert_eq!(visitor.welcome["agents_online"], 0);
    let alice_token = gw.agent_token("alice", "Alice");
    let mut alice = Client::connect(&gw.ws(&format!("/ws-admin/?token={alice_token}")), &[]).await;
    assert_eq!(alice.welcome["status"], "online");
    visitor.wait_for_agents_online(1).await;
    let mut bob = gw.agent("bob", "Bob").await;
    visitor.wait_for_agents_online(2).await;
    let seen = alice
        .wait_for(|e| e["type"] == "agent_status" && e["agent"]["id"] == "bob")
        .await;
    assert_eq!(seen["connected"], true, "{seen}");

    // Away: out of presence; colleagues are told.
    let ack = alice
        .request(json!({"type":"set_status","status":"away"}))
        .await;
    assert_eq!(ack["agent_status"]["status"], "away", "{ack}");
    visitor.wait_for_agents_online(1).await;
    let seen = bob
        .wait_for(|e| {
            e["type"] == "agent_status" && e["agent"]["id"] == "alice" && e["status"] == "away"
        })
        .await;
    assert_eq!(seen["sites"], json!(["*"]));
    let ack = bob
        .request(json!({"type":"set_status","status":"offline"}))
        .await;
    assert_eq!(ack["agent_status"]["status"], "offline", "{ack}");
    visitor.wait_for_agents_online(0).await;

    // A second session of alice shares her status and does not count either.
    let mut alice2 = Client::connect(&gw.ws(&format!("/ws-admin/?token={alice_token}")), &[]).await;
    assert_eq!(alice2.welcome["status"], "away");
    let list = alice2.request(json!({"type":"list_agents"})).await;
    let statuses: Vec<(String, String)> = list["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["agent"]["id"].as_str().unwrap().into(),
                a["status"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        vec![
            ("alice".into(), "away".into()),
            ("bob".into(), "offline".into())
        ]
    );

    // Back online from one session: both of hers count again.
    alice2
        .request(json!({"type":"set_status","status":"online"}))
        .await;
    visitor.wait_for_agents_online(2).await;
    alice
        .wait_for(|e| {
            e["type"] == "agent_status" && e["agent"]["id"] == "alice" && e["status"] == "online"
        })
        .await;

    // The status survives a reconnect: every session gone, then a new one.
    alice
        .request(json!({"type":"set_status","status":"away"}))
        .await;
    visitor.wait_for_agents_online(0).await;
    drop(alice);
    drop(alice2);
    bob.wait_for(|e| {
        e["type"] == "agent_status" && e["agent"]["id"] == "alice" && e["connected"] == false
    })
    .await;
    let alice = Client::connect(&gw.ws(&format!("/ws-admin/?token={alice_token}")), &[]).await;
    assert_eq!(alice.welcome["status"], "away");
    // A visitor arriving now sees nobody online.
    let late = Client::connect(&gw.ws("/ws-visitor/"), &[]).await;
    assert_eq!(late.welcome["agents_online"], 0);

    // Bad values are refused by shape.
    let err = bob
        .request(json!({"type":"set_status","status":"busy"}))
        .await;
    assert_eq!(err["code"], "invalid_frame", "{err}");
    drop(alice);
}

#[tokio::test]
async fn list_agents_and_status_events_are_site_scoped() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(dir.path(), &[]);
    let mut alice = gw.agent_for("alice", "Alice", Some("shop1")).await;
    let mut bob = gw.agent_for("bob", "Bob", Some("shop2")).await;
    let mut carol = gw.agent_for("carol", "Carol", Some("shop1,shop2")).await;

    let ids = |ack: &Value| -> Vec<String> {
        ack["agents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["agent"]["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        ids(&alice.request(json!({"type":"list_agents"})).await),
        ["alice", "carol"]
    );
    assert_eq!(
        ids(&carol.request(json!({"type":"list_agents"})).await),
        ["alice", "bob", "carol"]
    );
    assert_eq!(
        ids(&carol
            .request(json!({"type":"list_agents","site":"shop2"}))
            .await),
        ["bob", "carol"]
    );
    let err = alice
        .request(json!({"type":"list_agents","site":"shop2"}))
        .await;
    assert_eq!(err["code"], "forbidden", "{err}");

    bob.request(json!({"type":"set_status","status":"away"}))
        .await;
    carol
        .wait_for(|e| {
            e["type"] == "agent_status" && e["agent"]["id"] == "bob" && e["status"] == "away"
        })
        .await;
    // Alice shares no site with bob: a marker (her own change) arrives with nothing of bob before.
    alice
        .request(json!({"type":"set_status","status":"away"}))
        .await;
    let events = events_until(&mut alice, |e| {
        e["type"] == "agent_status" && e["agent"]["id"] == "alice"
    })
    .await;
    assert!(
        !events
            .iter()
            .any(|e| e["type"] == "agent_status" && e["agent"]["id"] == "bob"),
        "{events:?}"
    );
}

#[tokio::test]
async fn typing_and_status_cross_gateway_processes() {
    let dir = tempfile::tempdir().unwrap();
    let (_pg, a, b) = two_gateways_on_postgres(dir.path());

    let mut visitor = Client::connect(&a.ws("/ws-visitor/"), &[]).await;
    let mut alice = b.agent("alice", "Alice").await;
    alice.resume_from_start().await;
    visitor.wait_for_agents_online(1).await;
    let ack = visitor
        .request(json!({"type":"send","client_msg_id":"v1","body":"hello from A"}))
        .await;
    let conversation = conversation_of(&ack);
    alice.wait_for(|e| e["type"] == "message").await;

    // Typing both ways between the processes.
    visitor
        .request(json!({"type":"typing","typing":true}))
        .await;
    let seen = alice.wait_for(is_typing).await;
    assert_eq!(seen["conversation_id"], conversation.as_str());
    alice
        .request(json!({"type":"typing","conversation_id":conversation,"typing":true}))
        .await;
    let seen = visitor.wait_for(is_typing).await;
    assert_eq!(seen["sender"]["id"], "alice");

    // A colleague on A hears of alice (on B) and lists her.
    let mut bob = a.agent("bob", "Bob").await;
    visitor.wait_for_agents_online(2).await;

    // Alice goes away on B: the visitor on A sees one agent fewer, bob hears of it.
    alice
        .request(json!({"type":"set_status","status":"away"}))
        .await;
    visitor.wait_for_agents_online(1).await;
    bob.wait_for(|e| {
        e["type"] == "agent_status" && e["agent"]["id"] == "alice" && e["status"] == "away"
    })
    .await;
    let list = bob.request(json!({"type":"list_agents"})).await;
    let alice_seen = list["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["agent"]["id"] == "alice")
        .cloned()
        .unwrap_or_else(|| panic!("alice not listed on A: {list}"));
    assert_eq!(alice_seen["status"], "away");

    // Her session on A shares the status set on B, and does not count.
    let mut alice_on_a = Client::connect(
        &a.ws(&format!(
            "/ws-admin/?token={token_a}",
            token_a = a.agent_token("alice", "Alice")
        )),
        &[],
    )
    .await;
    assert_eq!(alice_on_a.welcome["status"], "away");
    // Back online on A: both of her sessions count (one per process).
    alice_on_a
        .request(json!({"type":"set_status","status":"online"}))
        .await;
    visitor.wait_for_agents_online(3).await;
    alice
        .wait_for(|e| {
            e["type"] == "agent_status" && e["agent"]["id"] == "alice" && e["status"] == "online"
        })
        .await;
    drop(bob);
}
