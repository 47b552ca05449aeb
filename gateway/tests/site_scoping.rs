//! Sites as tenants (issue 13), against the real binary: agents scoped to one site, to both and
//! unscoped, on raw WebSocket and on long-polling, for every command and for live delivery; the
//! widget's agents-online count per site; API keys scoped per site; `CHAT_DEFAULT_AGENT_SITES`.
//! (Socket.IO: `gateway/tests/node/socketio.test.mjs`; two processes: `multi_process.rs`.)

mod common;

use common::poller::Poller;
use common::{Client, Gateway};
use serde_json::{json, Value};

const SHOP1: &str = "shop1";
const SHOP2: &str = "shop2";
const KEY_ALL: &str = "every-site-key-0123456789";
const KEY_SHOP1: &str = "shop1-only-key-0123456789";

/// An agent on one transport.
enum Agent {
    WebSocket(Box<Client>),
    Polling(Poller),
}

impl Agent {
    async fn connect(gw: &Gateway, polling: bool, token: &str) -> Agent {
        if polling {
            Agent::Polling(Poller::open(gw, &format!("/ws-admin/poll?token={token}")).await)
        } else {
            let url = gw.ws(&format!("/ws-admin/?token={token}"));
            Agent::WebSocket(Box::new(Client::connect(&url, &[]).await))
        }
    }

    fn welcome(&self) -> &Value {
        match self {
            Agent::WebSocket(c) => &c.welcome,
            Agent::Polling(p) => &p.welcome,
        }
    }

    async fn request(&mut self, command: Value) -> Value {
        match self {
            Agent::WebSocket(c) => c.request(command).await,
            Agent::Polling(p) => p.request(command).await,
        }
    }

    /// Every event up to and including the first that matches `pred`.
    async fn events_until(&mut self, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        match self {
            Agent::WebSocket(c) => {
                let mut seen = Vec::new();
                loop {
                    let event = c.next().await;
                    let done = pred(&event);
                    seen.push(event);
                    if done {
                        return seen;
                    }
                }
            }
            Agent::Polling(p) => p.poll_until(pred).await,
        }
    }
}

struct Visitor {
    client: Client,
    conversation: String,
}

async fn visitor_with_conversation(gw: &Gateway, site: &str) -> Visitor {
    let mut client = Client::connect(&gw.ws(&format!("/ws-visitor/?site={site}")), &[]).await;
    let ack = client
        .request(json!({"type":"send","body":format!("hello from {site}")}))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let conversation = ack["message"]["conversation_id"]
        .as_str()
        .unwrap()
        .to_string();
    Visitor {
        client,
        conversation,
    }
}

fn listed(ack: &Value) -> Vec<String> {
    ack["conversations"]
        .as_array()
        .unwrap_or_else(|| panic!("no conversations in {ack}"))
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect()
}

fn forbidden(answer: &Value) -> bool {
    answer["type"] == "error" && answer["code"] == "forbidden"
}

/// What an agent of `shop1` only may and may not do, on one transport.
async fn agent_of_one_site(gw: &Gateway, polling: bool, a: &mut Visitor, b: &mut Visitor) {
    let token = gw.agent_token_for("ann", "Ann", Some(SHOP1));
    let mut agent = Agent::connect(gw, polling, &token).await;
    assert_eq!(agent.welcome()["sites"], json!([SHOP1]));

    let all = agent.request(json!({"type":"list_conversations"})).await;
    let ids = listed(&all);
    assert!(
        ids.contains(&a.conversation) && !ids.contains(&b.conversation),
        "{all}"
    );
    let own = agent
        .request(json!({"type":"list_conversations","site":SHOP1}))
        .await;
    assert_eq!(listed(&own), ids);
    let (cb, ca) = (&b.conversation, &a.conversation);
    for command in [
        json!({"type":"list_conversations","site":SHOP2}),
        json!({"type":"history","conversation_id":cb}),
        json!({"type":"assign","conversation_id":cb}),
        json!({"type":"close","conversation_id":cb}),
        json!({"type":"send","conversation_id":cb,"body":"not yours"}),
        json!({"type":"resume","cursors":{ cb: 0 }}),
        json!({"type":"resume","cursors":{},"conversations_since":"2000-01-01T00:00:00Z","site":SHOP2}),
    ] {
        let answer = agent.request(command.clone()).await;
        assert!(
            forbidden(&answer),
            "{command} on polling={polling}: {answer}"
        );
    }
    let history = agent
        .request(json!({"type":"history","conversation_id":ca}))
        .await;
    assert_eq!(history["type"], "ack", "{history}");
    let since = agent
        .request(json!({"type":"resume","cursors":{},"conversations_since":"2000-01-01T00:00:00Z"}))
        .await;
    assert_eq!(since["type"], "ack", "{since}");

    // Live: the other site's message, sent first, never arrives; the own site's does.
    b.client
        .request(json!({"type":"send","body":"shop2 secret"}))
        .await;
    a.client
        .request(json!({"type":"send","body":"shop1 news"}))
        .await;
    let seen = agent
        .events_until(|e| e["type"] == "message" && e["message"]["body"] == "shop1 news")
        .await;
    for event in &seen {
        assert_ne!(
            event["message"]["conversation_id"].as_str(),
            Some(cb.as_str()),
            "{event}"
        );
        assert_ne!(
            event["conversation"]["id"].as_str(),
            Some(cb.as_str()),
            "{event}"
        );
    }
    let reply = agent
        .request(json!({"type":"send","conversation_id":ca,"body":"hi shop1"}))
        .await;
    assert_eq!(reply["type"], "ack", "{reply}");
}

/// An agent of both sites, and one whose token names none (every site by default), see both.
async fn agents_of_both_sites(gw: &Gateway, polling: bool, a: &mut Visitor, b: &mut Visitor) {
    for (id, sites) in [("bob", Some("shop1,shop2")), ("cat", None)] {
        let token = gw.agent_token_for(id, id, sites);
        let mut agent = Agent::connect(gw, polling, &token).await;
        let ids = listed(&agent.request(json!({"type":"list_conversations"})).await);
        assert!(ids.contains(&a.conversation) && ids.contains(&b.conversation));
        let history = agent
            .request(json!({"type":"history","conversation_id":b.conversation}))
            .await;
        assert_eq!(history["type"], "ack", "{id}: {history}");
        b.client
            .request(json!({"type":"send","body":format!("shop2 to {id}")}))
            .await;
        let want = format!("shop2 to {id}");
        agent
            .events_until(|e| e["type"] == "message" && e["message"]["body"] == want.as_str())
            .await;
    }
}

#[tokio::test]
async fn agents_see_only_their_sites_on_websocket_and_long_polling() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(dir.path(), &[("CHAT_SEND_RATE_PER_SEC", "0")]);
    let mut a = visitor_with_conversation(&gw, SHOP1).await;
    let mut b = visitor_with_conversation(&gw, SHOP2).await;
    for polling in [false, true] {
        agent_of_one_site(&gw, polling, &mut a, &mut b).await;
        agents_of_both_sites(&gw, polling, &mut a, &mut b).await;
    }
}

#[tokio::test]
async fn the_widget_counts_only_its_own_sites_agents() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(dir.path(), &[]);
    let mut v1 = Client::connect(&gw.ws("/ws-visitor/?site=shop1"), &[]).await;
    let mut v2 = Client::connect(&gw.ws("/ws-visitor/?site=shop2"), &[]).await;
    assert_eq!(v1.welcome["agents_online"], 0);
    let _ann = gw.agent_for("ann", "Ann", Some(SHOP1)).await;
    let presence = v1.wait_for(|e| e["type"] == "presence").await;
    assert_eq!(presence["agents_online"], 1);
    let v2_again = Client::connect(&gw.ws("/ws-visitor/?site=shop2"), &[]).await;
    assert_eq!(
        v2_again.welcome["agents_online"], 0,
        "shop1's agent is not shop2's"
    );
    let _every = gw.agent("every", "Every").await;
    let presence = v2.wait_for(|e| e["type"] == "presence").await;
    assert_eq!(
        presence["agents_online"], 1,
        "an agent of every site counts for shop2"
    );
    let presence = v1.wait_for(|e| e["type"] == "presence").await;
    assert_eq!(presence["agents_online"], 2);
}

async fn api(
    gw: &Gateway,
    method: reqwest::Method,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .request(method, gw.http(path))
        .bearer_auth(key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn api_keys_reach_only_their_sites() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(
        dir.path(),
        &[
            ("CHAT_API_KEY", KEY_ALL),
            ("CHAT_API_KEYS", &format!("{SHOP1}:{KEY_SHOP1}")),
        ],
    );
    let a = visitor_with_conversation(&gw, SHOP1).await;
    let b = visitor_with_conversation(&gw, SHOP2).await;
    let messages = |c: &str| format!("/chat/api/conversations/{c}/messages");
    let get = reqwest::Method::GET;
    let post = reqwest::Method::POST;

    let (status, _) = api(
        &gw,
        get.clone(),
        &messages(&a.conversation),
        KEY_SHOP1,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = api(
        &gw,
        get.clone(),
        &messages(&b.conversation),
        KEY_SHOP1,
        None,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );
    let reply = json!({"body":"from the shop1 key"});
    let (status, body) = api(
        &gw,
        post.clone(),
        &messages(&b.conversation),
        KEY_SHOP1,
        Some(reply.clone()),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let (status, _) = api(
        &gw,
        post.clone(),
        &messages(&a.conversation),
        KEY_SHOP1,
        Some(reply),
    )
    .await;
    assert_eq!(status, 201);
    let (status, _) = api(&gw, get.clone(), &messages(&b.conversation), KEY_ALL, None).await;
    assert_eq!(status, 200, "CHAT_API_KEY reaches every site");

    let (status, stats) = api(&gw, get.clone(), "/chat/api/stats", KEY_SHOP1, None).await;
    assert_eq!(status, 200);
    let sites: Vec<&String> = stats["sites"].as_object().unwrap().keys().collect();
    assert_eq!(sites, vec![SHOP1], "{stats}");
    assert_eq!(stats["sites"][SHOP1]["visitors_online"], 1, "{stats}");
    assert!(
        stats.get("connections").is_none(),
        "process-wide figures need every site: {stats}"
    );
    let (status, _) = api(
        &gw,
        get.clone(),
        "/chat/api/stats?site=shop2",
        KEY_SHOP1,
        None,
    )
    .await;
    assert_eq!(status, 403);
    let (_, stats) = api(&gw, get, "/chat/api/stats", KEY_ALL, None).await;
    assert_eq!(stats["sites"][SHOP2]["visitors_online"], 1, "{stats}");
    assert_eq!(stats["visitors_online"], 2, "{stats}");
}

#[tokio::test]
async fn agents_whose_token_names_no_site_get_the_default_sites() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(dir.path(), &[("CHAT_DEFAULT_AGENT_SITES", SHOP2)]);
    let a = visitor_with_conversation(&gw, SHOP1).await;
    let b = visitor_with_conversation(&gw, SHOP2).await;
    let token = gw.agent_token("dan", "Dan");
    let mut agent = Agent::connect(&gw, false, &token).await;
    assert_eq!(agent.welcome()["sites"], json!([SHOP2]));
    let ids = listed(&agent.request(json!({"type":"list_conversations"})).await);
    assert_eq!(ids, vec![b.conversation.clone()]);
    assert!(!ids.contains(&a.conversation));
    let every = gw.agent_token_for("eve", "Eve", Some("*"));
    let mut agent = Agent::connect(&gw, false, &every).await;
    assert_eq!(agent.welcome()["sites"], json!(["*"]));
    assert_eq!(
        listed(&agent.request(json!({"type":"list_conversations"})).await).len(),
        2
    );
}
