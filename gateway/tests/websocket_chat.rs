//! Visitor and agent chat over real WebSockets against the real binary (embedded store).

mod common;

use common::{connect_raw, Client, Gateway, SECRET};
use serde_json::json;

fn visitor_url(gw: &Gateway) -> String {
    gw.ws("/ws-visitor/?site=default")
}

#[tokio::test]
async fn visitor_and_agent_exchange_messages_and_history_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(dir.path(), &[]);
    let token = gw.agent_token("alice", "Alice");

    let mut agent = Client::connect(&gw.ws(&format!("/ws-admin/?token={token}")), &[]).await;
    assert_eq!(agent.welcome["role"], "agent");
    assert_eq!(agent.welcome["agent"]["name"], "Alice");

    let mut visitor = Client::connect(&visitor_url(&gw), &[]).await;
    assert_eq!(visitor.welcome["role"], "visitor");
    assert_eq!(visitor.welcome["agents_online"], 1);
    let visitor_token = visitor.welcome["visitor_token"]
        .as_str()
        .unwrap()
        .to_string();

    let ack = visitor
        .request(json!({"type":"send","client_msg_id":"v-1","body":"Hello <b>there</b>"}))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(ack["duplicate"], false);
    let conversation = ack["message"]["conversation_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(ack["message"]["seq"], 1);

    // The agent sees the new conversation and the message live.
    let created = agent.wait_for(|e| e["type"] == "conversation").await;
    assert_eq!(created["conversation"]["id"], conversation.as_str());
    let live = agent.wait_for(|e| e["type"] == "message").await;
    assert_eq!(live["message"]["body"], "Hello <b>there</b>");

    let assigned = agent
        .request(json!({"type":"assign","conversation_id":conversation}))
        .await;
    assert_eq!(
        assigned["conversation"]["assignee"]["id"], "alice",
        "{assigned}"
    );
    let reply = agent
        .request(json!({"type":"send","conversation_id":conversation,"client_msg_id":"a-1","body":"Hi, Alice here"}))
        .await;
    assert_eq!(reply["message"]["seq"], 2, "{reply}");
    let got = visitor
        .wait_for(|e| e["type"] == "message" && e["message"]["seq"] == 2)
        .await;
    assert_eq!(got["message"]["sender"]["name"], "Alice");

    // A retry with the same client_msg_id returns the original, not a new message.
    let retry = visitor
        .request(json!({"type":"send","client_msg_id":"v-1","body":"Hello <b>there</b>"}))
        .await;
    assert_eq!(retry["duplicate"], true);
    assert_eq!(retry["message"]["seq"], 1);

    let list = agent
        .request(json!({"type":"list_conversations","status":"open"}))
        .await;
    assert_eq!(list["conversations"][0]["last_seq"], 2, "{list}");

    drop(visitor);
    drop(agent);
    gw.stop();

    // Restart on the same data directory: the visitor resumes with their token.
    let gw = Gateway::start(dir.path(), &[]);
    let mut visitor =
        Client::connect(&format!("{}&token={visitor_token}", visitor_url(&gw)), &[]).await;
    assert_eq!(visitor.welcome["conversation"]["id"], conversation.as_str());
    assert_eq!(visitor.welcome["conversation"]["last_seq"], 2);
    let history = visitor
        .request(json!({"type":"history","conversation_id":conversation}))
        .await;
    let bodies: Vec<&str> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["Hello <b>there</b>", "Hi, Alice here"]);
}

#[tokio::test]
async fn resume_replays_what_was_missed_without_gap_or_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(dir.path(), &[]);
    let token = gw.agent_token("bob", "Bob");
    let mut visitor = Client::connect(&visitor_url(&gw), &[]).await;
    let vtoken = visitor.welcome["visitor_token"]
        .as_str()
        .unwrap()
        .to_string();
    let first = visitor.request(json!({"type":"send","body":"one"})).await;
    let conversation = first["message"]["conversation_id"]
        .as_str()
        .unwrap()
        .to_string();
    drop(visitor);

    let mut agent = Client::connect(&gw.ws(&format!("/ws-admin/?token={token}")), &[]).await;
    for body in ["two", "three", "four"] {
        let ack = agent
            .request(json!({"type":"send","conversation_id":conversation,"body":body}))
            .await;
        assert_eq!(ack["type"], "ack", "{ack}");
    }

    let mut visitor = Client::connect(&format!("{}&token={vtoken}", visitor_url(&gw)), &[]).await;
    let resumed = visitor
        .request(json!({"type":"resume","cursors":{conversation.clone(): 1}}))
        .await;
    assert_eq!(resumed["replayed"], 3, "{resumed}");
    // Meanwhile a live message arrives; it must follow the replay exactly once.
    agent
        .request(json!({"type":"send","conversation_id":conversation,"body":"five"}))
        .await;
    let mut seqs = Vec::new();
    while seqs.len() < 4 {
        let ev = visitor.wait_for(|e| e["type"] == "message").await;
        seqs.push(ev["message"]["seq"].as_i64().unwrap());
    }
    assert_eq!(seqs, [2, 3, 4, 5]);
}

#[tokio::test]
async fn bad_frames_get_error_events_and_the_connection_stays_up() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(dir.path(), &[("CHAT_MAX_MESSAGE_CHARS", "50")]);
    let token = gw.agent_token("alice", "Alice");
    let mut visitor = Client::connect(&visitor_url(&gw), &[]).await;

    visitor.send_raw("{not json").await;
    let e = visitor.wait_for(|e| e["type"] == "error").await;
    assert_eq!(e["code"], "malformed_json");

    let e = visitor.request(json!({"type":"dance"})).await;
    assert_eq!(e["code"], "unknown_type");
    let e = visitor.request(json!({"type":"send"})).await;
    assert_eq!(e["code"], "invalid_frame");
    let e = visitor
        .request(json!({"type":"send","body":"x".repeat(51)}))
        .await;
    assert_eq!(e["code"], "too_large");
    let e = visitor.request(json!({"type":"send","body":"   "})).await;
    assert_eq!(e["code"], "bad_request");
    let e = visitor.request(json!({"type":"list_conversations"})).await;
    assert_eq!(e["code"], "forbidden");

    // Still up: a good send works.
    let ok = visitor
        .request(json!({"type":"send","body":"still here"}))
        .await;
    assert_eq!(ok["type"], "ack", "{ok}");
    let conversation = ok["message"]["conversation_id"]
        .as_str()
        .unwrap()
        .to_string();

    // Another visitor may not touch this conversation.
    let mut other = Client::connect(&visitor_url(&gw), &[]).await;
    let e = other
        .request(json!({"type":"send","conversation_id":conversation,"body":"hijack"}))
        .await;
    assert_eq!(e["code"], "forbidden", "{e}");
    let e = other
        .request(json!({"type":"history","conversation_id":conversation}))
        .await;
    assert_eq!(e["code"], "forbidden");
    let e = other
        .request(json!({"type":"resume","cursors":{conversation.clone(): 0}}))
        .await;
    assert_eq!(e["code"], "forbidden");

    // An agent replying to a conversation that does not exist.
    let mut agent = Client::connect(&gw.ws(&format!("/ws-admin/?token={token}")), &[]).await;
    let e = agent
        .request(json!({"type":"send","conversation_id":"00000000-0000-4000-8000-000000000000","body":"hello?"}))
        .await;
    assert_eq!(e["code"], "not_found", "{e}");
    let e = agent
        .request(json!({"type":"assign","conversation_id":"00000000-0000-4000-8000-000000000000"}))
        .await;
    assert_eq!(e["code"], "not_found", "{e}");
}

#[tokio::test]
async fn oversized_frames_close_with_1009_and_binary_with_1008() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(dir.path(), &[("CHAT_WS_MAX_FRAME_BYTES", "4096")]);
    let mut visitor = Client::connect(&visitor_url(&gw), &[]).await;
    let big = json!({"type":"send","body":"y".repeat(5000)}).to_string();
    visitor.send_raw(&big).await;
    assert_eq!(visitor.closed_with().await, 1009);

    let mut visitor = Client::connect(&visitor_url(&gw), &[]).await;
    use futures_util::SinkExt;
    visitor
        .ws
        .send(tokio_tungstenite::tungstenite::Message::Binary(
            vec![1, 2, 3].into(),
        ))
        .await
        .unwrap();
    assert_eq!(visitor.closed_with().await, 1008);
    // The gateway is unaffected.
    let mut again = Client::connect(&visitor_url(&gw), &[]).await;
    assert_eq!(
        again.request(json!({"type":"send","body":"ok"})).await["type"],
        "ack"
    );
}

fn upgrade_status(err: tokio_tungstenite::tungstenite::Error) -> u16 {
    match err {
        tokio_tungstenite::tungstenite::Error::Http(resp) => resp.status().as_u16(),
        other => panic!("expected an HTTP refusal, got {other}"),
    }
}

fn jwt(header: &str, claims: &serde_json::Value, key: &[u8]) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key).unwrap();
    mac.update(signing_input.as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{sig}")
}

#[tokio::test]
async fn bad_credentials_and_origins_are_refused_before_the_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(
        dir.path(),
        &[
            ("CHAT_ALLOWED_ORIGINS", "https://shop.example"),
            ("ADMIN_ALLOWED_ORIGINS", "https://admin.example"),
        ],
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let hs256 = r#"{"alg":"HS256","typ":"JWT"}"#;
    let cases = [
        ("missing", String::new()),
        (
            "expired",
            jwt(
                hs256,
                &json!({"sub":"a","exp":now - 600}),
                SECRET.as_bytes(),
            ),
        ),
        (
            "wrong key",
            jwt(
                hs256,
                &json!({"sub":"a","exp":now + 600}),
                b"not-the-secret",
            ),
        ),
        ("alg none", {
            use base64::engine::general_purpose::URL_SAFE_NO_PAD;
            use base64::Engine;
            format!(
                "{}.{}.",
                URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
                URL_SAFE_NO_PAD.encode(json!({"sub":"a","exp":now + 600}).to_string())
            )
        }),
        ("no exp", jwt(hs256, &json!({"sub":"a"}), SECRET.as_bytes())),
    ];
    for (name, token) in cases {
        let err = connect_raw(&gw.ws(&format!("/ws-admin/?token={token}")), &[])
            .await
            .expect_err(name);
        assert_eq!(upgrade_status(err), 401, "{name}");
    }
    let good = gw.agent_token("alice", "Alice");
    let err = connect_raw(
        &gw.ws(&format!("/ws-admin/?token={good}")),
        &[("Origin", "https://shop.example")],
    )
    .await
    .unwrap_err();
    assert_eq!(upgrade_status(err), 403);
    Client::connect(
        &gw.ws(&format!("/ws-admin/?token={good}")),
        &[("Origin", "https://admin.example")],
    )
    .await;

    let err = connect_raw(&visitor_url(&gw), &[("Origin", "https://evil.example")])
        .await
        .unwrap_err();
    assert_eq!(upgrade_status(err), 403);
    Client::connect(&visitor_url(&gw), &[("Origin", "https://shop.example")]).await;

    let err = connect_raw(
        &format!("{}&token=v1.forged.default.AAAA", visitor_url(&gw)),
        &[],
    )
    .await
    .unwrap_err();
    assert_eq!(upgrade_status(err), 401);

    // Plain HTTP on a socket path explains itself.
    let resp = reqwest::get(gw.http("/ws-visitor/")).await.unwrap();
    assert_eq!(resp.status(), 400);
    let whoami = reqwest::Client::new()
        .get(gw.http("/chat/api/whoami"))
        .bearer_auth(&good)
        .send()
        .await
        .unwrap();
    assert_eq!(whoami.status(), 200);
    let whoami: serde_json::Value = whoami.json().await.unwrap();
    assert_eq!(whoami["agent"]["id"], "alice");
}

#[tokio::test]
async fn widget_console_and_health_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(dir.path(), &[]);
    let widget = reqwest::get(gw.http("/chat/widget/widget.js"))
        .await
        .unwrap();
    assert_eq!(widget.status(), 200);
    assert!(widget.headers()["content-type"]
        .to_str()
        .unwrap()
        .contains("javascript"));
    let widget = widget.text().await.unwrap();
    for legacy in ["/widget/widget.js", "/widget/widgetScript.js"] {
        assert_eq!(
            reqwest::get(gw.http(legacy))
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
            widget
        );
    }
    let console = reqwest::get(gw.http("/chat/admin/")).await.unwrap();
    assert_eq!(console.status(), 200);
    // Publicly the status only; the details on the metrics listener.
    let public = reqwest::get(gw.http("/chat/health")).await.unwrap();
    assert_eq!(public.status(), 200);
    assert_eq!(public.text().await.unwrap(), r#"{"status":"ok"}"#);
    let health_url = gw.metrics_url().replace("/metrics", "/health");
    let health: serde_json::Value = reqwest::get(health_url)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["store"]["kind"], "embedded");
    assert_eq!(health["store"]["state"], "up");
    assert_eq!(
        reqwest::get(gw.http("/chat/nothing"))
            .await
            .unwrap()
            .status(),
        404
    );
    let log = gw.log();
    for line in [
        "SERVER_OK port=",
        "DB_OK",
        "WS_OK visitor=/ws-visitor admin=/ws-admin",
        "P0_OK: chat_widget + admin_panel + message_persist",
    ] {
        assert!(log.contains(line), "missing start-up line {line}:\n{log}");
    }
}

#[tokio::test]
async fn sigterm_tells_every_session_to_reconnect_with_1001() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(dir.path(), &[]);
    let token = gw.agent_token("alice", "Alice");
    let mut visitor = Client::connect(&visitor_url(&gw), &[]).await;
    let mut agent = Client::connect(&gw.ws(&format!("/ws-admin/?token={token}")), &[]).await;
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(gw.pid() as i32, libc::SIGTERM) }, 0);
    assert_eq!(visitor.closed_with().await, 1001);
    assert_eq!(agent.closed_with().await, 1001);
}

#[tokio::test]
async fn welcome_tells_each_visitor_its_rollout_transport_stably() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(dir.path(), &[("CHAT_WS_ROLLOUT_PERCENT", "50")]);
    let mut seen = std::collections::HashMap::new();
    for _ in 0..40 {
        let visitor = Client::connect(&visitor_url(&gw), &[]).await;
        let preferred = visitor.welcome["preferred_transport"]
            .as_str()
            .unwrap()
            .to_string();
        let token = visitor.welcome["visitor_token"]
            .as_str()
            .unwrap()
            .to_string();
        *seen.entry(preferred.clone()).or_insert(0) += 1;
        drop(visitor);
        // The same visitor gets the same answer on every connection.
        let again = Client::connect(&format!("{}&token={token}", visitor_url(&gw)), &[]).await;
        assert_eq!(again.welcome["preferred_transport"], preferred.as_str());
    }
    assert!(
        seen.get("websocket").copied().unwrap_or(0) > 0
            && seen.get("polling").copied().unwrap_or(0) > 0,
        "{seen:?}"
    );
}

#[tokio::test]
async fn an_agent_resuming_gets_the_conversation_changes_it_missed() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(dir.path(), &[]);
    let token = gw.agent_token("carol", "Carol");
    let mut visitor = Client::connect(&gw.ws("/ws-visitor/"), &[]).await;
    let old = visitor
        .request(json!({"type":"send","body":"before the agent left"}))
        .await;
    let old_conversation = old["message"]["conversation_id"].clone();
    // The old conversation was last changed exactly then.
    let since = old["message"]["created_at"].clone();

    // While no agent is connected: the visitor closes the old conversation and opens a new one.
    visitor
        .request(json!({"type":"close","conversation_id":old_conversation}))
        .await;
    let new = visitor
        .request(json!({"type":"send","body":"while the agent was away"}))
        .await;
    let new_conversation = new["message"]["conversation_id"].clone();
    assert_ne!(new_conversation, old_conversation);

    let mut agent = Client::connect(&gw.ws(&format!("/ws-admin/?token={token}")), &[]).await;
    let ack = agent
        .request(json!({"type":"resume","cursors":{},"conversations_since":since}))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let mut changed = Vec::new();
    while changed.len() < 2 {
        let e = agent.wait_for(|e| e["type"] == "conversation").await;
        changed.push((
            e["conversation"]["id"].clone(),
            e["conversation"]["status"].clone(),
        ));
    }
    assert_eq!(
        changed,
        [
            (old_conversation, json!("closed")),
            (new_conversation, json!("open"))
        ],
        "oldest change first"
    );

    // Visitors cannot list conversations, so they cannot ask for this either.
    let refused = visitor
        .request(json!({"type":"resume","cursors":{},"conversations_since":since}))
        .await;
    assert_eq!(refused["code"], "forbidden", "{refused}");
}

#[tokio::test]
async fn a_message_committed_between_welcome_and_resume_arrives_once_and_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(dir.path(), &[]);
    let token = gw.agent_token("dave", "Dave");
    let mut agent = Client::connect(&gw.ws(&format!("/ws-admin/?token={token}")), &[]).await;
    let mut visitor = Client::connect(&gw.ws("/ws-visitor/"), &[]).await;
    let vtoken = visitor.welcome["visitor_token"]
        .as_str()
        .unwrap()
        .to_string();
    let mut conversation = json!(null);
    for i in 1..=3 {
        let ack = visitor
            .request(json!({"type":"send","client_msg_id":format!("v{i}"),"body":"v"}))
            .await;
        conversation = ack["message"]["conversation_id"].clone();
    }
    drop(visitor);
    for i in 4..=5 {
        agent
            .request(json!({"type":"send","conversation_id":conversation,"body":format!("a{i}")}))
            .await;
    }
    // The visitor is back; seq 6 is committed after its welcome and before its resume.
    let mut visitor = Client::connect(&gw.ws(&format!("/ws-visitor/?token={vtoken}")), &[]).await;
    agent
        .request(json!({"type":"send","conversation_id":conversation,"body":"a6"}))
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let ack = visitor
        .request(json!({"type":"resume","cursors":{conversation.as_str().unwrap(): 3}}))
        .await;
    assert_eq!(ack["replayed"], 3, "{ack}");
    agent
        .request(json!({"type":"send","conversation_id":conversation,"body":"a7"}))
        .await;
    let mut seqs = Vec::new();
    while seqs.last() != Some(&7) {
        let e = visitor.wait_for(|e| e["type"] == "message").await;
        seqs.push(e["message"]["seq"].as_i64().unwrap());
    }
    assert_eq!(seqs, [4, 5, 6, 7], "in order, each once");
}
