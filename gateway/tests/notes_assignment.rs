//! Issue 15, internal notes and assignment, against the real binary: a note reaches agents
//! and never the visitor, on any path (live over WebSocket and long-polling, `resume` replay,
//! `history`, the conversation's `last_seq`, the HTTP API's visitor view); a conversation is
//! transferred between agents on two gateway processes, with a `system` message everyone sees.

mod common;

use common::poller::Poller;
use common::setup::{conversation_of, two_gateways_on_postgres};
use common::{call, Client, Gateway};
use serde_json::{json, Value};

const API_KEY: &str = "test-api-key-notes-0123456789";
const SECRET: &str = "internal: VIP, refund approved";

fn no_note(events: &[Value]) {
    for e in events {
        let text = e.to_string();
        assert!(!text.contains(SECRET), "a visitor got the note: {text}");
        assert_ne!(e["message"]["kind"], "note", "{e}");
    }
}

fn seqs(messages: &Value) -> Vec<i64> {
    messages
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_i64().unwrap())
        .collect()
}

async fn api_messages(gw: &Gateway, conversation: &str, query: &str) -> (u16, Value) {
    let (status, _, body) = call(
        &reqwest::Client::new(),
        reqwest::Method::GET,
        &gw.http(&format!(
            "/chat/api/conversations/{conversation}/messages{query}"
        )),
        None,
        &[("X-API-Key", API_KEY)],
    )
    .await;
    (status, body)
}

#[tokio::test]
async fn a_note_reaches_agents_and_never_the_visitor_on_any_path() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(dir.path(), &[("CHAT_API_KEY", API_KEY)]);
    let mut visitor = Client::connect(&gw.ws("/ws-visitor/"), &[]).await;
    let vtoken = visitor.welcome["visitor_token"]
        .as_str()
        .unwrap()
        .to_string();
    let ack = visitor
        .request(json!({"type":"send","client_msg_id":"v1","body":"my order is late"}))
        .await;
    let conversation = conversation_of(&ack);
    assert_eq!(ack["message"]["seq"], 1, "{ack}");
    assert!(
        ack["message"].get("kind").is_none(),
        "text has no kind: {ack}"
    );
    // The same visitor over long-polling, resumed at the start.
    let mut poller = Poller::open(
        &gw,
        &format!("/ws-visitor/poll?site=default&token={vtoken}"),
    )
    .await;
    let answer = poller
        .request(json!({"type":"resume","cursors":{conversation.clone(): 1}}))
        .await;
    assert_eq!(answer["replayed"], 0, "{answer}");

    let mut alice = gw.agent("alice", "Alice").await;
    alice.resume_from_start().await;
    let mut bob = gw.agent("bob", "Bob").await;
    bob.resume_from_start().await;

    // A visitor may not write one.
    let refused = visitor
        .request(json!({"type":"send","body":"let me in","note":true}))
        .await;
    assert_eq!(refused["code"], "forbidden", "{refused}");

    let note = alice
        .request(json!({"type":"send","conversation_id":conversation,"client_msg_id":"n1","body":SECRET,"note":true}))
        .await;
    assert_eq!(note["type"], "ack", "{note}");
    assert_eq!(
        (
            note["message"]["seq"].as_i64(),
            note["message"]["kind"].as_str()
        ),
        (Some(2), Some("note"))
    );
    let reply = alice
        .request(json!({"type":"send","conversation_id":conversation,"client_msg_id":"a1","body":"on its way"}))
        .await;
    assert_eq!(reply["message"]["seq"], 3, "{reply}");

    // Another agent gets the note live, in order.
    let got = bob
        .wait_for(|e| e["type"] == "message" && e["message"]["seq"] == 2)
        .await;
    assert_eq!(
        (
            got["message"]["kind"].as_str(),
            got["message"]["body"].as_str()
        ),
        (Some("note"), Some(SECRET))
    );

    // Live over WebSocket: the reply, and nothing of the note before it.
    visitor
        .wait_for(|e| e["type"] == "message" && e["message"]["seq"] == 3)
        .await;
    no_note(&visitor.backlog);
    // Live over long-polling.
    let events = poller
        .poll_until(|e| e["type"] == "message" && e["message"]["seq"] == 3)
        .await;
    no_note(&events);
    assert!(
        !events.iter().any(|e| e["message"]["seq"] == 2),
        "{events:?}"
    );

    // `history`, on both transports.
    let page = visitor
        .request(json!({"type":"history","conversation_id":conversation}))
        .await;
    assert_eq!(seqs(&page["messages"]), vec![1, 3], "{page}");
    no_note(std::slice::from_ref(&page));
    let page = poller
        .request(json!({"type":"history","conversation_id":conversation,"after_seq":1}))
        .await;
    assert_eq!(seqs(&page["messages"]), vec![3], "{page}");
    assert_eq!(page["more"], false, "{page}");
    let page = bob
        .request(json!({"type":"history","conversation_id":conversation}))
        .await;
    assert_eq!(seqs(&page["messages"]), vec![1, 2, 3], "{page}");

    // A trailing note: the visitor's view of the conversation ends at the reply.
    let note2 = alice
        .request(json!({"type":"send","conversation_id":conversation,"body":format!("{SECRET} (2)"),"note":true}))
        .await;
    assert_eq!(note2["message"]["seq"], 4, "{note2}");
    let listed = alice
        .request(json!({"type":"list_conversations","site":"default"}))
        .await;
    let listed = &listed["conversations"][0];
    assert_eq!(
        (
            listed["last_seq"].as_i64(),
            listed["visitor_last_seq"].as_i64()
        ),
        (Some(4), Some(3)),
        "{listed}"
    );

    // `resume` replay on a new connection: exactly what the visitor may see, counted exactly.
    let mut again = Client::connect(&gw.ws(&format!("/ws-visitor/?token={vtoken}")), &[]).await;
    let welcomed = &again.welcome["conversation"];
    assert_eq!(welcomed["last_seq"], 3, "{welcomed}");
    assert!(welcomed.get("visitor_last_seq").is_none(), "{welcomed}");
    let resumed = again
        .request(json!({"type":"resume","cursors":{conversation.clone(): 0}}))
        .await;
    assert_eq!(resumed["replayed"], 2, "{resumed}");
    let first = again.wait_for(|e| e["type"] == "message").await;
    let second = again.wait_for(|e| e["type"] == "message").await;
    assert_eq!(
        (
            first["message"]["seq"].as_i64(),
            second["message"]["seq"].as_i64()
        ),
        (Some(1), Some(3))
    );
    let resumed = again
        .request(json!({"type":"resume","cursors":{conversation.clone(): 1}}))
        .await;
    assert_eq!(resumed["replayed"], 0, "already delivered: {resumed}");
    // After the note, a new message still arrives live: the hole is no gap.
    let after = alice
        .request(json!({"type":"send","conversation_id":conversation,"body":"anything else?"}))
        .await;
    assert_eq!(after["message"]["seq"], 5, "{after}");
    again
        .wait_for(|e| e["type"] == "message" && e["message"]["seq"] == 5)
        .await;
    no_note(&again.backlog);
    // Resume over long-polling, from before the notes.
    let mut poller2 = Poller::open(
        &gw,
        &format!("/ws-visitor/poll?site=default&token={vtoken}"),
    )
    .await;
    let answer = poller2
        .request(json!({"type":"resume","cursors":{conversation.clone(): 1}}))
        .await;
    assert_eq!(answer["replayed"], 2, "{answer}");
    let events = poller2
        .poll_until(|e| e["type"] == "message" && e["message"]["seq"] == 5)
        .await;
    no_note(&events);
    let replayed: Vec<i64> = events
        .iter()
        .filter(|e| e["type"] == "message")
        .map(|e| e["message"]["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(replayed, vec![3, 5]);

    // The HTTP API: agents read notes; the visitor view leaves them out.
    let (status, body) = api_messages(&gw, &conversation, "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(seqs(&body["messages"]), vec![1, 2, 3, 4, 5]);
    assert_eq!(body["messages"][1]["kind"], "note");
    let (status, body) = api_messages(&gw, &conversation, "?audience=visitor").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(seqs(&body["messages"]), vec![1, 3, 5], "{body}");
    no_note(std::slice::from_ref(&body));
    let (status, body) =
        api_messages(&gw, &conversation, "?audience=visitor&after_seq=1&limit=1").await;
    assert_eq!((status, seqs(&body["messages"])), (200, vec![3]), "{body}");
    assert_eq!(body["more"], true, "{body}");
    let (status, _) = api_messages(&gw, &conversation, "?audience=everyone").await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn a_conversation_is_transferred_between_agents_on_two_processes() {
    let dir = tempfile::tempdir().unwrap();
    let (_pg, a, b) = two_gateways_on_postgres(dir.path());

    let mut visitor = Client::connect(&a.ws("/ws-visitor/"), &[]).await;
    visitor.resume_from_start().await;
    let ack = visitor
        .request(json!({"type":"send","body":"hello?"}))
        .await;
    let conversation = conversation_of(&ack);
    let mut alice = a.agent("alice", "Alice").await;
    alice.resume_from_start().await;
    let mut bob = b.agent("bob", "Bob").await;
    bob.resume_from_start().await;
    let carol = a.agent_for("carol", "Carol", Some("elsewhere")).await;

    // The directory: every agent who connected, whichever process, each as an `agent_status`
    // event shows them (`connected` comes from the roster, which crosses processes).
    let listed = alice
        .request(json!({"type":"list_agents","site":"default"}))
        .await;
    let agents = listed["agents"].as_array().expect("agents");
    let entry = |id: &str| agents.iter().find(|a| a["agent"]["id"] == id).cloned();
    assert_eq!(entry("alice").unwrap()["connected"], true, "{listed}");
    assert_eq!(entry("bob").unwrap()["agent"]["name"], "Bob", "{listed}");
    assert!(
        entry("carol").is_none(),
        "not an agent of the site: {listed}"
    );
    let unnamed = alice.request(json!({"type":"list_agents"})).await;
    assert!(unnamed["agents"].is_array(), "{unnamed}");

    // Taking an unassigned conversation says nothing in it (as before).
    let taken = alice
        .request(json!({"type":"assign","conversation_id":conversation}))
        .await;
    assert_eq!(taken["conversation"]["assignee"]["id"], "alice", "{taken}");
    assert_eq!(taken["conversation"]["last_seq"], 1, "{taken}");

    let unknown = alice
        .request(json!({"type":"assign","conversation_id":conversation,"agent_id":"nobody"}))
        .await;
    assert_eq!(unknown["code"], "not_found", "{unknown}");
    let other_site = alice
        .request(json!({"type":"assign","conversation_id":conversation,"agent_id":"carol"}))
        .await;
    assert_eq!(other_site["code"], "forbidden", "{other_site}");
    drop(carol);

    // The transfer, from process A to an agent on process B.
    let moved = alice
        .request(json!({"type":"assign","conversation_id":conversation,"agent_id":"bob"}))
        .await;
    assert_eq!(moved["type"], "ack", "{moved}");
    assert_eq!(moved["conversation"]["assignee"]["id"], "bob", "{moved}");
    assert_eq!(moved["conversation"]["assignee"]["name"], "Bob", "{moved}");
    assert_eq!(moved["conversation"]["last_seq"], 2, "{moved}");
    let line = "Alice transferred the conversation to Bob";
    let told = bob
        .wait_for(|e| e["type"] == "conversation" && e["conversation"]["assignee"]["id"] == "bob")
        .await;
    assert_eq!(told["conversation"]["id"], conversation.as_str());
    let system = bob
        .wait_for(|e| e["type"] == "message" && e["message"]["seq"] == 2)
        .await;
    assert_eq!(
        (
            system["message"]["kind"].as_str(),
            system["message"]["body"].as_str()
        ),
        (Some("system"), Some(line))
    );
    let seen = visitor
        .wait_for(|e| e["type"] == "message" && e["message"]["seq"] == 2)
        .await;
    assert_eq!(
        (
            seen["message"]["kind"].as_str(),
            seen["message"]["body"].as_str()
        ),
        (Some("system"), Some(line))
    );
    visitor
        .wait_for(|e| e["type"] == "conversation" && e["conversation"]["assignee"]["id"] == "bob")
        .await;
    // Assigning it to whoever has it already writes nothing.
    let same = alice
        .request(json!({"type":"assign","conversation_id":conversation,"agent_id":"bob"}))
        .await;
    assert_eq!(same["conversation"]["last_seq"], 2, "{same}");

    // Bob, on B, hands it back to nobody; the visitor on A sees that too.
    let left = bob
        .request(json!({"type":"unassign","conversation_id":conversation}))
        .await;
    assert_eq!(left["conversation"]["assignee"], Value::Null, "{left}");
    let seen = visitor
        .wait_for(|e| e["type"] == "message" && e["message"]["seq"] == 3)
        .await;
    assert_eq!(
        seen["message"]["body"], "Bob unassigned the conversation",
        "{seen}"
    );
    let history = visitor
        .request(json!({"type":"history","conversation_id":conversation}))
        .await;
    assert_eq!(seqs(&history["messages"]), vec![1, 2, 3], "{history}");
    drop((a, b));
}
