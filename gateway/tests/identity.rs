//! Known visitors and replies by the website's user id (issue 13), against the real binary: a
//! verified user is one visitor on every device; wrong hashes, hashes without a secret and a
//! known user's token without the user are refused; unverified fields are marked and merge
//! nothing; an anonymous visitor who logs in keeps their open conversation; the HTTP API replies
//! by user id, live or stored, idempotently, within the key's sites.

mod common;

use chat_core::identity::IdentitySecret;
use common::setup::conversation_of;
use common::{connect_raw, Client, Gateway};
use serde_json::{json, Value};

const SECRET: &str = "identity-secret-0123456789abcdef-0123";
const API_KEY: &str = "identity-test-api-key-0123";

fn start(dir: &std::path::Path) -> Gateway {
    Gateway::start(
        dir,
        &[
            ("CHAT_IDENTITY_SECRET", SECRET),
            ("CHAT_API_KEY", API_KEY),
            ("CHAT_API_KEYS", "shop2:shop2-only-key-0123456789"),
        ],
    )
}

fn hash(user: &str) -> String {
    IdentitySecret::new(SECRET.as_bytes()).hash(user)
}

/// `/ws-visitor/` of `site` as user `user` (with `hash` when given), presenting `token`.
fn visitor_path(site: &str, user: &str, hash: Option<&str>, token: Option<&str>) -> String {
    let mut path = format!(
        "/ws-visitor/?site={site}&user_id={user}&user_name=Ann%20Lee&user_email=ann%40example.com"
    );
    if let Some(hash) = hash {
        path.push_str(&format!("&user_hash={hash}"));
    }
    if let Some(token) = token {
        path.push_str(&format!("&token={token}"));
    }
    path
}

async fn as_user(gw: &Gateway, site: &str, user: &str) -> Client {
    let h = hash(user);
    Client::connect(&gw.ws(&visitor_path(site, user, Some(&h), None)), &[]).await
}

/// The HTTP status a refused WebSocket handshake got.
async fn refused_status(gw: &Gateway, path: &str) -> u16 {
    match connect_raw(&gw.ws(path), &[]).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("{path}: {other}"),
        Ok(_) => panic!("{path}: accepted"),
    }
}

async fn agent(gw: &Gateway) -> Client {
    gw.agent("alice", "Alice").await
}

async fn profile_of(agent: &mut Client, conversation: &str) -> Value {
    let ack = agent
        .request(json!({"type":"visitor","conversation_id":conversation}))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    ack["visitor"]["profile"].clone()
}

#[tokio::test]
async fn a_verified_user_is_one_visitor_on_every_device() {
    let dir = tempfile::tempdir().unwrap();
    let gw = start(dir.path());
    let mut phone = as_user(&gw, "shop1", "u42").await;
    let ack = phone
        .request(json!({"type":"send","body":"from the phone"}))
        .await;
    let conversation = conversation_of(&ack);
    let mut laptop = as_user(&gw, "shop1", "u42").await;
    assert_eq!(laptop.welcome["visitor_id"], phone.welcome["visitor_id"]);
    assert_eq!(laptop.welcome["conversation"]["id"], json!(conversation));
    let history = laptop
        .request(json!({"type":"history","conversation_id":conversation}))
        .await;
    assert_eq!(history["messages"][0]["body"], "from the phone");
    phone
        .request(json!({"type":"send","body":"still me"}))
        .await;
    let live = laptop.wait_for(|e| e["type"] == "message").await;
    assert_eq!(live["message"]["body"], "still me");

    // Another site's user with the same id is someone else.
    let other = as_user(&gw, "shop2", "u42").await;
    assert_ne!(other.welcome["visitor_id"], phone.welcome["visitor_id"]);

    let mut alice = agent(&gw).await;
    let profile = profile_of(&mut alice, &conversation).await;
    assert_eq!(
        profile,
        json!({"user_id":"u42","name":"Ann Lee","email":"ann@example.com","verified":true})
    );
}

#[tokio::test]
async fn wrong_hashes_and_a_users_token_without_the_user_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let gw = start(dir.path());
    let wrong = hash("someone-else");
    assert_eq!(
        refused_status(&gw, &visitor_path("shop1", "u42", Some(&wrong), None)).await,
        401
    );
    assert_eq!(
        refused_status(&gw, &visitor_path("shop1", "u42", Some("zz"), None)).await,
        401
    );
    let long = "x".repeat(129);
    assert_eq!(
        refused_status(&gw, &visitor_path("shop1", &long, None, None)).await,
        401
    );

    let user = as_user(&gw, "shop1", "u42").await;
    let token = user.welcome["visitor_token"].as_str().unwrap().to_string();
    let alone = format!("/ws-visitor/?site=shop1&token={token}");
    assert_eq!(
        refused_status(&gw, &alone).await,
        401,
        "a known user's token needs the user"
    );
    let as_other = hash("u43");
    let path = visitor_path("shop1", "u43", Some(&as_other), Some(&token));
    let other = Client::connect(&gw.ws(&path), &[]).await;
    assert_ne!(other.welcome["visitor_id"], user.welcome["visitor_id"]);

    // A gateway without the secret cannot check a hash: refused, not silently unverified.
    let dir2 = tempfile::tempdir().unwrap();
    let plain = Gateway::start(dir2.path(), &[]);
    let right = hash("u42");
    assert_eq!(
        refused_status(&plain, &visitor_path("shop1", "u42", Some(&right), None)).await,
        401
    );
}

#[tokio::test]
async fn unverified_fields_are_marked_and_merge_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let gw = start(dir.path());
    let mut claimed = Client::connect(&gw.ws(&visitor_path("shop1", "u42", None, None)), &[]).await;
    let conversation = conversation_of(
        &claimed
            .request(json!({"type":"send","body":"I say I am u42"}))
            .await,
    );
    let real = as_user(&gw, "shop1", "u42").await;
    assert_ne!(real.welcome["visitor_id"], claimed.welcome["visitor_id"]);
    assert!(
        real.welcome.get("conversation").is_none(),
        "{}",
        real.welcome
    );
    let mut alice = agent(&gw).await;
    let profile = profile_of(&mut alice, &conversation).await;
    assert_eq!(profile["verified"], false, "{profile}");
    assert_eq!(profile["name"], "Ann Lee");
}

#[tokio::test]
async fn an_anonymous_visitor_who_logs_in_keeps_the_open_conversation() {
    let dir = tempfile::tempdir().unwrap();
    let gw = start(dir.path());
    let mut anonymous = Client::connect(&gw.ws("/ws-visitor/?site=shop1"), &[]).await;
    let conversation = conversation_of(
        &anonymous
            .request(json!({"type":"send","body":"before login"}))
            .await,
    );
    let token = anonymous.welcome["visitor_token"]
        .as_str()
        .unwrap()
        .to_string();
    let h = hash("u7");
    let mut user = Client::connect(
        &gw.ws(&visitor_path("shop1", "u7", Some(&h), Some(&token))),
        &[],
    )
    .await;
    assert_ne!(user.welcome["visitor_id"], anonymous.welcome["visitor_id"]);
    assert_eq!(
        user.welcome["conversation"]["id"],
        json!(conversation),
        "{}",
        user.welcome
    );
    assert_eq!(user.welcome["conversation"]["last_seq"], 1);
    let ack = user
        .request(json!({"type":"send","body":"after login"}))
        .await;
    assert_eq!(conversation_of(&ack), conversation);
    assert_eq!(ack["message"]["seq"], 2);
    let user_id = user.welcome["visitor_id"].clone();
    anonymous
        .wait_for(|e| e["type"] == "conversation" && e["conversation"]["visitor_id"] == user_id)
        .await;

    // A user who already has an open conversation keeps it; the anonymous one stays put.
    let mut other_anon = Client::connect(&gw.ws("/ws-visitor/?site=shop1"), &[]).await;
    let other_conversation = conversation_of(
        &other_anon
            .request(json!({"type":"send","body":"another browser"}))
            .await,
    );
    let token = other_anon.welcome["visitor_token"]
        .as_str()
        .unwrap()
        .to_string();
    let again = Client::connect(
        &gw.ws(&visitor_path("shop1", "u7", Some(&h), Some(&token))),
        &[],
    )
    .await;
    assert_eq!(again.welcome["conversation"]["id"], json!(conversation));
    let mut alice = agent(&gw).await;
    let history = alice
        .request(json!({"type":"history","conversation_id":other_conversation}))
        .await;
    assert_eq!(history["messages"].as_array().unwrap().len(), 1);
    assert_eq!(
        profile_of(&mut alice, &other_conversation).await,
        Value::Null,
        "the anonymous one is still anonymous"
    );
}

async fn reply(gw: &Gateway, key: &str, site: &str, user: &str, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(gw.http(&format!("/chat/api/sites/{site}/users/{user}/messages")))
        .header("X-API-Key", key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn replies_by_user_id_reach_the_user_live_or_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let gw = start(dir.path());
    let mut online = as_user(&gw, "shop1", "u42").await;
    let body = json!({"body":"Your order shipped","client_msg_id":"ship-1"});
    let (status, sent) = reply(&gw, API_KEY, "shop1", "u42", body.clone()).await;
    assert_eq!(
        (status, sent["delivery"].as_str()),
        (201, Some("live")),
        "{sent}"
    );
    let live = online.wait_for(|e| e["type"] == "message").await;
    assert_eq!(live["message"]["body"], "Your order shipped");
    let (status, again) = reply(&gw, API_KEY, "shop1", "u42", body).await;
    assert_eq!(
        (status, again["duplicate"].as_bool()),
        (200, Some(true)),
        "{again}"
    );
    assert_eq!(again["message"]["seq"], sent["message"]["seq"]);

    // A user who is not connected (and never was): stored, seen on their first visit.
    let (status, stored) = reply(
        &gw,
        API_KEY,
        "shop1",
        "user%2F99",
        json!({"body":"Welcome aboard"}),
    )
    .await;
    assert_eq!(
        (status, stored["delivery"].as_str()),
        (201, Some("stored")),
        "{stored}"
    );
    let h = hash("user/99");
    let later = Client::connect(
        &gw.ws(&visitor_path("shop1", "user%2F99", Some(&h), None)),
        &[],
    )
    .await;
    assert_eq!(
        later.welcome["conversation"]["last_seq"], 1,
        "{}",
        later.welcome
    );

    let (status, _) = reply(
        &gw,
        "shop2-only-key-0123456789",
        "shop1",
        "u42",
        json!({"body":"x"}),
    )
    .await;
    assert_eq!(status, 403, "a key of another site");
    let (status, _) = reply(&gw, API_KEY, "bad%20site", "u42", json!({"body":"x"})).await;
    assert_eq!(status, 400);
    let long = "x".repeat(129);
    let (status, _) = reply(&gw, API_KEY, "shop1", &long, json!({"body":"x"})).await;
    assert_eq!(status, 400);
}
