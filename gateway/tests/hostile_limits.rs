//! The admission limits against the real binary, with small limits set through the
//! environment: per-address and total connection caps (raw WebSocket, long-polling, Socket.IO
//! handshake) answered before the upgrade while another address is unaffected, the session-open
//! rate, the visitor send rate (`rate_limited` with `retry_after_ms`, session still usable), the
//! HTTP API's 429, polling sids bound to their role's path, no visitor row before the first
//! send, and agent JWT rules (audience, issuer, `nbf`, lifetime).

mod common;

use common::{call, connect_raw, metric, tcp_from, Client, Gateway, Ws, SECRET};
use serde_json::{json, Value};
use std::net::IpAddr;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::MaybeTlsStream;

const OTHER: &str = "127.0.0.2";

fn visitor_path() -> &'static str {
    "/ws-visitor/?site=default"
}

/// A WebSocket to the gateway from `from` (a loopback address of this machine).
async fn connect_from(gw: &Gateway, from: &str, path: &str) -> Result<Ws, WsError> {
    let request = gw.ws(path).into_client_request().unwrap();
    let stream = tcp_from(gw, from).await;
    tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(stream))
        .await
        .map(|(ws, _)| ws)
}

/// The status, `Retry-After` and JSON body of a refused upgrade.
fn refusal(err: WsError) -> (u16, Option<String>, Value) {
    match err {
        WsError::Http(resp) => {
            let retry_after = resp
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
            let body = resp
                .body()
                .as_deref()
                .map(|b| serde_json::from_slice(b).unwrap_or(Value::Null))
                .unwrap_or(Value::Null);
            (resp.status().as_u16(), retry_after, body)
        }
        other => panic!("expected an HTTP refusal, got {other}"),
    }
}

fn http_from(from: Option<&str>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder();
    if let Some(from) = from {
        builder = builder.local_address(from.parse::<IpAddr>().unwrap());
    }
    builder.build().unwrap()
}

#[tokio::test]
async fn the_per_address_cap_refuses_before_the_upgrade_and_other_addresses_are_unaffected() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(
        dir.path(),
        &[
            ("CHAT_MAX_CONNECTIONS_PER_IP", "2"),
            ("CHAT_POLL_SESSION_TTL_SECS", "2"),
        ],
    );
    let http = http_from(None);
    // One long-polling session and one WebSocket fill the address's two places.
    let (status, _, opened) = call(
        &http,
        reqwest::Method::POST,
        &gw.http("/ws-visitor/poll?site=default"),
        None,
        &[],
    )
    .await;
    assert_eq!(status, 200, "{opened}");
    let first = Client::connect(&gw.ws(visitor_path()), &[]).await;

    // Raw WebSocket: 429 before the upgrade, with the reason.
    let (status, _, body) = refusal(connect_raw(&gw.ws(visitor_path()), &[]).await.unwrap_err());
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"], "too_many_connections", "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("CHAT_MAX_CONNECTIONS_PER_IP"),
        "{body}"
    );
    // Agents count too.
    let token = gw.agent_token("alice", "Alice");
    let (status, _, _) = refusal(
        connect_raw(&gw.ws(&format!("/ws-admin/?token={token}")), &[])
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 429);
    // Long-polling open: 429 with the same body.
    let (status, _, body) = call(
        &http,
        reqwest::Method::POST,
        &gw.http("/ws-visitor/poll?site=default"),
        None,
        &[],
    )
    .await;
    assert_eq!(
        (status, &body["error"]),
        (429, &json!("too_many_connections"))
    );
    // Socket.IO: the Engine.IO handshake is refused, in Engine.IO's error shape.
    let (status, _, body) = call(
        &http,
        reqwest::Method::GET,
        &gw.http("/ws-visitor/?EIO=4&transport=polling"),
        None,
        &[],
    )
    .await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"], "too_many_connections", "{body}");
    assert_eq!(body["code"], 3, "{body}");

    // Another address is unaffected, on every transport.
    let other = Client::from_ws(connect_from(&gw, OTHER, visitor_path()).await.unwrap()).await;
    assert_eq!(other.welcome["type"], "welcome");
    let other_http = http_from(Some(OTHER));
    let (status, _, body) = call(
        &other_http,
        reqwest::Method::GET,
        &gw.http("/ws-visitor/?EIO=4&transport=polling"),
        None,
        &[],
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // A closed WebSocket gives its place back...
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(5);
    let again = loop {
        match connect_raw(&gw.ws(visitor_path()), &[]).await {
            Ok(ws) => break Client::from_ws(ws).await,
            Err(e) if Instant::now() < deadline => {
                let _ = refusal(e);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the closed WebSocket's place never came back: {e}"),
        }
    };
    // ...and so does an expired long-polling session (TTL 2 s; its sweep may take a little more).
    let deadline = Instant::now() + Duration::from_secs(10);
    let _third = loop {
        match connect_raw(&gw.ws(visitor_path()), &[]).await {
            Ok(ws) => break Client::from_ws(ws).await,
            Err(e) if Instant::now() < deadline => {
                assert_eq!(refusal(e).0, 429);
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => panic!("the expired polling session's place never came back: {e}"),
        }
    };
    drop(again);
    assert!(
        metric(
            &gw,
            "chat_handshake_failures_total",
            &[("reason", "too_many_from_address")]
        )
        .await
            >= 4.0
    );
}

#[tokio::test]
async fn the_total_cap_answers_503_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(dir.path(), &[("CHAT_MAX_CONNECTIONS", "1")]);
    let _only = Client::connect(&gw.ws(visitor_path()), &[]).await;
    let (status, retry_after, body) =
        refusal(connect_from(&gw, OTHER, visitor_path()).await.unwrap_err());
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "unavailable", "{body}");
    assert_eq!(retry_after.as_deref(), Some("5"));
    assert!(
        metric(
            &gw,
            "chat_handshake_failures_total",
            &[
                ("transport", "websocket"),
                ("reason", "too_many_connections")
            ]
        )
        .await
            >= 1.0
    );
}

#[tokio::test]
async fn session_opens_are_rate_limited_per_address() {
    let dir = tempfile::tempdir().unwrap();
    // The bucket holds at least CHAT_MAX_CONNECTIONS_PER_IP opens: both are 3 here.
    let gw = Gateway::start(
        dir.path(),
        &[
            ("CHAT_SESSION_OPENS_PER_IP_PER_MIN", "3"),
            ("CHAT_MAX_CONNECTIONS_PER_IP", "3"),
        ],
    );
    for _ in 0..3 {
        drop(Client::connect(&gw.ws(visitor_path()), &[]).await);
    }
    // Wait until the three sessions are gone, so that what refuses the next one is the rate,
    // not the per-address cap.
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&gw, "chat_sessions_open", &[]).await > 0.0 {
        assert!(Instant::now() < deadline, "sessions never closed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (status, retry_after, body) =
        refusal(connect_raw(&gw.ws(visitor_path()), &[]).await.unwrap_err());
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"], "rate_limited", "{body}");
    let retry_ms = body["retry_after_ms"].as_u64().expect("retry_after_ms");
    assert!(retry_ms > 0 && retry_ms <= 20_000, "{body}");
    let retry_after: u64 = retry_after.expect("Retry-After").parse().unwrap();
    assert!((1..=20).contains(&retry_after));
    // Long-polling opens share the address's bucket: 429 with Retry-After.
    let (status, retry_after, body) = call(
        &http_from(None),
        reqwest::Method::POST,
        &gw.http("/ws-visitor/poll?site=default"),
        None,
        &[],
    )
    .await;
    assert_eq!((status, &body["error"]), (429, &json!("rate_limited")));
    assert!(retry_after.is_some());
    // Another address has its own bucket.
    let other = connect_from(&gw, OTHER, visitor_path()).await;
    assert!(other.is_ok());
    assert!(
        metric(
            &gw,
            "chat_handshake_failures_total",
            &[("reason", "rate_limited")]
        )
        .await
            >= 2.0
    );
}

#[tokio::test]
async fn sends_over_the_rate_get_rate_limited_and_the_session_stays_usable() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(
        dir.path(),
        &[
            // One token every 2 s: slow enough that a loaded machine does not refill the
            // bucket between the commands below.
            ("CHAT_SEND_RATE_PER_SEC", "0.5"),
            ("CHAT_SEND_BURST", "3"),
            ("CHAT_API_KEY", "server-key"),
        ],
    );
    let mut visitor = Client::connect(&gw.ws(visitor_path()), &[]).await;
    let mut conversation = Value::Null;
    for i in 0..3 {
        let ack = visitor
            .request(json!({"type":"send","client_msg_id":format!("m{i}"),"body":format!("m{i}")}))
            .await;
        assert_eq!(ack["type"], "ack", "{ack}");
        conversation = ack["message"]["conversation_id"].clone();
    }
    let refused = visitor
        .request(json!({"type":"send","client_msg_id":"m3","body":"m3"}))
        .await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["code"], "rate_limited", "{refused}");
    let wait = refused["retry_after_ms"].as_u64().expect("retry_after_ms");
    assert!(wait > 0 && wait <= 2000, "{refused}");
    // Retried after the wait, the same command is accepted: the session stayed usable.
    tokio::time::sleep(Duration::from_millis(wait)).await;
    let ack = visitor
        .request(json!({"type":"send","client_msg_id":"m3","body":"m3"}))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(
        ack["duplicate"], false,
        "the refused send wrote nothing: {ack}"
    );
    // The bucket is the visitor's, not the connection's: reconnecting with the same visitor
    // token does not refill it.
    let token = visitor.welcome["visitor_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut again =
        Client::connect(&gw.ws(&format!("{}&token={token}", visitor_path())), &[]).await;
    // A fresh bucket would take both (burst 3); the visitor's own has at most one token unless
    // the machine stalled for 4 s.
    let mut codes = Vec::new();
    for id in ["m4", "m5"] {
        let answer = again
            .request(json!({"type":"send","client_msg_id":id,"body":id}))
            .await;
        codes.push(answer["code"].as_str().unwrap_or("ack").to_owned());
    }
    assert!(codes.iter().any(|c| c == "rate_limited"), "{codes:?}");
    let accepted = codes.iter().filter(|c| *c == "ack").count();
    drop(again);
    // Other commands are not limited.
    let history = visitor
        .request(json!({"type":"history","conversation_id":conversation}))
        .await;
    assert_eq!(
        history["messages"].as_array().unwrap().len(),
        4 + accepted,
        "{history}"
    );

    // Long-polling gets it too, as an error answer of the POST.
    let http = http_from(None);
    let (status, _, opened) = call(
        &http,
        reqwest::Method::POST,
        &gw.http("/ws-visitor/poll?site=default"),
        None,
        &[],
    )
    .await;
    assert_eq!(status, 200, "{opened}");
    let sid = opened["sid"].as_str().unwrap();
    let frames: Vec<Value> = (0..4)
        .map(|i| json!({"type":"send","id":format!("p{i}"),"body":format!("p{i}")}))
        .collect();
    let (status, _, answers) = call(
        &http,
        reqwest::Method::POST,
        &gw.http(&format!("/ws-visitor/poll?sid={sid}")),
        Some(Value::Array(frames).to_string()),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{answers}");
    let answers = answers["answers"].as_array().unwrap();
    assert!(
        answers[..3].iter().all(|a| a["type"] == "ack"),
        "{answers:?}"
    );
    assert_eq!(answers[3]["code"], "rate_limited", "{answers:?}");
    assert!(answers[3]["retry_after_ms"].as_u64().is_some());

    // The HTTP API: an agent with a JWT gets 429 with Retry-After; the API key is not limited.
    let token = gw.agent_token("alice", "Alice");
    let url = gw.http(&format!(
        "/chat/api/conversations/{}/messages",
        conversation.as_str().unwrap()
    ));
    let bearer = format!("Bearer {token}");
    let mut statuses = Vec::new();
    for i in 0..4 {
        let (status, retry_after, body) = call(
            &http,
            reqwest::Method::POST,
            &url,
            Some(json!({"body": format!("a{i}")}).to_string()),
            &[("Authorization", &bearer)],
        )
        .await;
        if status == 429 {
            assert_eq!(body["error"], "rate_limited", "{body}");
            assert!(retry_after.is_some() && body["retry_after_ms"].is_u64());
        }
        statuses.push(status);
    }
    assert_eq!(statuses, [201, 201, 201, 429]);
    for i in 0..5 {
        let (status, _, body) = call(
            &http,
            reqwest::Method::POST,
            &url,
            Some(json!({"body": format!("k{i}")}).to_string()),
            &[("X-API-Key", "server-key")],
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    for (transport, at_least) in [("websocket", 1.0), ("polling", 1.0), ("http_api", 1.0)] {
        let n = metric(
            &gw,
            "chat_commands_refused_total",
            &[("transport", transport), ("reason", "rate_limited")],
        )
        .await;
        assert!(n >= at_least, "{transport}: {n}");
    }
}

#[tokio::test]
async fn a_polling_sid_is_refused_on_the_other_roles_path() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(dir.path(), &[]);
    let http = http_from(None);
    let open = |path: String, headers: Vec<(&'static str, String)>| {
        let http = http.clone();
        async move {
            let mut request = http.post(path);
            for (k, v) in headers {
                request = request.header(k, v);
            }
            let body: Value = request.send().await.unwrap().json().await.unwrap();
            body["sid"].as_str().unwrap().to_string()
        }
    };
    let visitor_sid = open(gw.http("/ws-visitor/poll?site=default"), vec![]).await;
    let token = gw.agent_token("alice", "Alice");
    let agent_sid = open(
        gw.http("/ws-admin/poll"),
        vec![("Authorization", format!("Bearer {token}"))],
    )
    .await;
    for (path, sid) in [
        ("/ws-admin/poll", &visitor_sid),
        ("/ws-visitor/poll", &agent_sid),
    ] {
        let (status, _, body) = call(
            &http,
            reqwest::Method::GET,
            &gw.http(&format!("{path}?sid={sid}&cursor=1")),
            None,
            &[],
        )
        .await;
        assert_eq!(
            (status, &body["error"]),
            (403, &json!("forbidden")),
            "{path}"
        );
        let (status, _, body) = call(
            &http,
            reqwest::Method::POST,
            &gw.http(&format!("{path}?sid={sid}")),
            Some(json!({"type":"list_conversations","id":"l"}).to_string()),
            &[],
        )
        .await;
        assert_eq!(
            (status, &body["error"]),
            (403, &json!("forbidden")),
            "{path}"
        );
    }
    // A visitor sid named with another site is refused too.
    let (status, _, body) = call(
        &http,
        reqwest::Method::GET,
        &gw.http(&format!(
            "/ws-visitor/poll?sid={visitor_sid}&cursor=1&site=other"
        )),
        None,
        &[],
    )
    .await;
    assert_eq!(
        (status, &body["error"]),
        (403, &json!("forbidden")),
        "{body}"
    );
    // On its own path, each still works.
    let (status, _, body) = call(
        &http,
        reqwest::Method::POST,
        &gw.http(&format!("/ws-admin/poll?sid={agent_sid}")),
        Some(json!({"type":"list_conversations","id":"l"}).to_string()),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["answers"][0]["type"], "ack", "{body}");
    let (status, _, body) = call(
        &http,
        reqwest::Method::POST,
        &gw.http(&format!("/ws-visitor/poll?sid={visitor_sid}")),
        Some(json!({"type":"send","id":"s","body":"hello"}).to_string()),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["answers"][0]["type"], "ack", "{body}");
}

fn visitor_rows(gw: &Gateway) -> i64 {
    let db = rusqlite::Connection::open_with_flags(
        gw.data_dir.join("chat.sqlite3"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    db.query_row("SELECT COUNT(*) FROM visitors", [], |row| row.get(0))
        .unwrap()
}

#[tokio::test]
async fn connecting_without_sending_writes_no_visitor_row() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(dir.path(), &[]);
    let mut visitor = Client::connect(&gw.ws(visitor_path()), &[]).await;
    let (status, _, _) = call(
        &http_from(None),
        reqwest::Method::POST,
        &gw.http("/ws-visitor/poll?site=default"),
        None,
        &[],
    )
    .await;
    assert_eq!(status, 200);
    let token = visitor.welcome["visitor_token"]
        .as_str()
        .unwrap()
        .to_string();
    drop(Client::connect(&gw.ws(&format!("{}&token={token}", visitor_path())), &[]).await);
    assert_eq!(visitor_rows(&gw), 0, "connects alone wrote visitor rows");
    // The first send writes the visitor with its conversation; later ones add nothing.
    for body in ["hello", "again"] {
        let ack = visitor.request(json!({"type":"send","body":body})).await;
        assert_eq!(ack["type"], "ack", "{ack}");
    }
    assert_eq!(visitor_rows(&gw), 1);
}

fn jwt(claims: &Value) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(signing_input.as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{sig}")
}

#[tokio::test]
async fn agent_tokens_with_wrong_audience_issuer_future_nbf_or_long_lifetime_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(
        dir.path(),
        &[
            ("CHAT_ADMIN_JWT_AUDIENCE", "chat"),
            ("CHAT_ADMIN_JWT_ISSUER", "https://shop.example"),
            ("CHAT_ADMIN_JWT_MAX_TTL_SECS", "3600"),
        ],
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let good = json!({"sub":"alice","name":"Alice","iat":now,"exp":now + 900,"aud":"chat","iss":"https://shop.example"});
    let agent = Client::connect(&gw.ws(&format!("/ws-admin/?token={}", jwt(&good))), &[]).await;
    assert_eq!(agent.welcome["agent"]["id"], "alice");
    let (status, _, body) = call(
        &http_from(None),
        reqwest::Method::GET,
        &gw.http("/chat/api/whoami"),
        None,
        &[("Authorization", &format!("Bearer {}", jwt(&good)))],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["expires_at"], now + 900, "{body}");
    // `chat-gateway token` mints with the configured audience and issuer.
    let minted = gw.agent_token("bob", "Bob");
    let bob = Client::connect(&gw.ws(&format!("/ws-admin/?token={minted}")), &[]).await;
    assert_eq!(bob.welcome["agent"]["id"], "bob");

    let with = |key: &str, value: Value| {
        let mut claims = good.clone();
        claims[key] = value;
        claims
    };
    let mut no_aud = good.clone();
    no_aud.as_object_mut().unwrap().remove("aud");
    let cases = [
        ("wrong audience", with("aud", json!("other")), "audience"),
        ("no audience", no_aud, "aud"),
        (
            "wrong issuer",
            with("iss", json!("https://evil.example")),
            "issuer",
        ),
        ("future nbf", with("nbf", json!(now + 600)), "nbf"),
        (
            "too long a lifetime",
            with("exp", json!(now + 7200)),
            "CHAT_ADMIN_JWT_MAX_TTL_SECS",
        ),
    ];
    for (case, claims, reason) in cases {
        let token = jwt(&claims);
        let (status, _, body) = refusal(
            connect_raw(&gw.ws(&format!("/ws-admin/?token={token}")), &[])
                .await
                .unwrap_err(),
        );
        assert_eq!(status, 401, "{case}: {body}");
        assert_eq!(body["error"], "unauthorized", "{case}: {body}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(reason), "{case}: {message}");
        // The HTTP API gives the same reason.
        let (status, _, body) = call(
            &http_from(None),
            reqwest::Method::GET,
            &gw.http("/chat/api/whoami"),
            None,
            &[("Authorization", &format!("Bearer {token}"))],
        )
        .await;
        assert_eq!(status, 401, "{case}: {body}");
        assert!(body["message"].as_str().unwrap().contains(reason), "{case}");
    }
}

/// The per-address cap counts the client address: behind a trusted proxy, the one the proxy puts
/// in `X-Forwarded-For`; from an untrusted peer, the peer (a forged header changes nothing).
#[tokio::test]
async fn behind_a_trusted_proxy_the_cap_counts_the_forwarded_address() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(
        dir.path(),
        &[
            ("CHAT_MAX_CONNECTIONS_PER_IP", "1"),
            ("CHAT_TRUSTED_PROXIES", "127.0.0.1/32"),
        ],
    );
    let url = gw.ws(visitor_path());
    let from = |client: &str| [("X-Forwarded-For", client.to_owned())];
    let a = from("203.0.113.5");
    let first = connect_raw(&url, &[(a[0].0, a[0].1.as_str())]).await;
    let _first = first.expect("first session of 203.0.113.5");
    let second = connect_raw(&url, &[(a[0].0, a[0].1.as_str())]).await;
    let (status, _, body) = refusal(second.expect_err("a second session of 203.0.113.5"));
    assert_eq!(
        (status, body["error"].as_str()),
        (429, Some("too_many_connections"))
    );
    // Another client behind the same proxy has its own place; the proxy's address is not one.
    let b = from("198.51.100.7, 203.0.113.9");
    let _other = connect_raw(&url, &[(b[0].0, b[0].1.as_str())])
        .await
        .expect("203.0.113.9 (the rightmost untrusted entry) is another client");

    // 127.0.0.2 is not a trusted proxy: its forged header is ignored and it counts as itself.
    let _own = forwarded_from(&gw, OTHER, "192.0.2.1")
        .await
        .expect("127.0.0.2's first session");
    let (status, _, _) = refusal(
        forwarded_from(&gw, OTHER, "192.0.2.2")
            .await
            .expect_err("a forged X-Forwarded-For does not make a new client"),
    );
    assert_eq!(status, 429);
}

/// A visitor WebSocket from `from` carrying `X-Forwarded-For: forwarded`.
async fn forwarded_from(gw: &Gateway, from: &str, forwarded: &str) -> Result<Ws, WsError> {
    let mut request = gw.ws(visitor_path()).into_client_request().unwrap();
    request
        .headers_mut()
        .insert("X-Forwarded-For", forwarded.parse().unwrap());
    let stream = tcp_from(gw, from).await;
    tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(stream))
        .await
        .map(|(ws, _)| ws)
}
