//! Starts `socketio-example-server` on a free port and checks the Engine.IO echo over polling,
//! the Socket.IO `/custom` namespace over WebSocket (auth, echo, binary, acks both ways), and two
//! cases of the official engine.io-protocol v4 suite (a `close` packet during a pending poll, a
//! second WebSocket after an upgrade).

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_socketio-example-server"))
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start socketio-example-server");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read the listening line");
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    Server { child, addr }
}

#[tokio::test]
async fn engineio_polling_echo() {
    let server = start();
    let base = format!("http://{}/engine.io/?EIO=4&transport=polling", server.addr);
    let http = reqwest::Client::new();

    let open = http
        .get(&base)
        .header("Origin", "http://example.test")
        .send()
        .await
        .unwrap();
    assert_eq!(open.status(), 200);
    assert_eq!(
        open.headers()["access-control-allow-origin"],
        "http://example.test"
    );
    assert_eq!(open.headers()["access-control-allow-credentials"], "true");
    let body = open.text().await.unwrap();
    let handshake: Value = serde_json::from_str(body.strip_prefix('0').unwrap()).unwrap();
    assert_eq!(handshake["upgrades"], json!(["websocket"]));
    assert_eq!(handshake["pingInterval"], 25000);
    let sid = handshake["sid"].as_str().unwrap();
    let url = format!("{base}&sid={sid}");

    // A text message and a binary one (`b` + base64 of [1, 2, 3]) in one payload.
    let posted = http
        .post(&url)
        .body("4hello é\x1ebAQID")
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 200);
    assert_eq!(posted.text().await.unwrap(), "ok");

    let mut echoed = Vec::new();
    while echoed.len() < 2 {
        let got = tokio::time::timeout(Duration::from_secs(5), http.get(&url).send())
            .await
            .expect("poll answered")
            .unwrap();
        assert_eq!(got.status(), 200);
        let text = got.text().await.unwrap();
        echoed.extend(text.split('\x1e').map(str::to_owned));
    }
    assert_eq!(echoed, ["4hello é", "bAQID"]);

    // Unsupported protocol version is refused with the protocol's error body.
    let eio3 = http
        .get(format!(
            "http://{}/engine.io/?EIO=3&transport=polling",
            server.addr
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(eio3.status(), 400);
    let error: Value = eio3.json().await.unwrap();
    assert_eq!(error["code"], 5);
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next(ws: &mut Ws) -> Message {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a frame within 5 s")
            .expect("socket open")
            .expect("frame");
        match &msg {
            Message::Text(t) if t.as_str() == "2" => ws.send(Message::text("3")).await.unwrap(),
            Message::Text(_) | Message::Binary(_) => return msg,
            _ => {}
        }
    }
}

async fn next_text(ws: &mut Ws) -> String {
    match next(ws).await {
        Message::Text(t) => t.as_str().to_owned(),
        other => panic!("expected text, got {other:?}"),
    }
}

#[tokio::test]
async fn socketio_custom_namespace_over_websocket() {
    let server = start();
    let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", server.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let open = next_text(&mut ws).await;
    let handshake: Value = serde_json::from_str(open.strip_prefix('0').unwrap()).unwrap();
    assert_eq!(handshake["upgrades"], json!([]));

    // CONNECT with auth → CONNECT answer, then `auth` with the handshake's auth payload.
    ws.send(Message::text(r#"40/custom,{"token":"abc"}"#))
        .await
        .unwrap();
    let connected = next_text(&mut ws).await;
    let sid: Value = serde_json::from_str(connected.strip_prefix("40/custom,").unwrap()).unwrap();
    assert!(sid["sid"].is_string(), "{connected}");
    assert_eq!(
        next_text(&mut ws).await,
        r#"42/custom,["auth",{"token":"abc"}]"#
    );

    // Event echo, same name and args.
    ws.send(Message::text(r#"42/custom,["hello",1,{"a":[true]}]"#))
        .await
        .unwrap();
    assert_eq!(
        next_text(&mut ws).await,
        r#"42/custom,["hello",1,{"a":[true]}]"#
    );

    // The suite's `message` → `message-back`.
    ws.send(Message::text(r#"42/custom,["message","x"]"#))
        .await
        .unwrap();
    assert_eq!(
        next_text(&mut ws).await,
        r#"42/custom,["message-back","x"]"#
    );

    // Client → server ack: called back with the same args.
    ws.send(Message::text(r#"42/custom,7["message-with-ack",1,"2"]"#))
        .await
        .unwrap();
    assert_eq!(next_text(&mut ws).await, r#"43/custom,7[1,"2"]"#);

    // Binary event echo.
    ws.send(Message::text(
        r#"451-/custom,["bin",{"_placeholder":true,"num":0}]"#,
    ))
    .await
    .unwrap();
    ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    assert_eq!(
        next_text(&mut ws).await,
        r#"451-/custom,["bin",{"_placeholder":true,"num":0}]"#
    );
    match next(&mut ws).await {
        Message::Binary(b) => assert_eq!(&b[..], &[1, 2, 3]),
        other => panic!("expected the attachment, got {other:?}"),
    }

    // Server → client ack: `ask` → `question` (with ack id) → our ack → `answer`.
    ws.send(Message::text(r#"42/custom,["ask","q?"]"#))
        .await
        .unwrap();
    let question = next_text(&mut ws).await;
    let rest = question.strip_prefix("42/custom,").unwrap();
    let bracket = rest.find('[').unwrap();
    let id: u64 = rest[..bracket].parse().expect("an ack id");
    assert_eq!(&rest[bracket..], r#"["question","q?"]"#);
    ws.send(Message::text(format!(r#"43/custom,{id}["yes",42]"#)))
        .await
        .unwrap();
    assert_eq!(next_text(&mut ws).await, r#"42/custom,["answer","yes",42]"#);

    // An unknown namespace is refused.
    ws.send(Message::text("40/nope,")).await.unwrap();
    assert_eq!(
        next_text(&mut ws).await,
        r#"44/nope,{"message":"Invalid namespace"}"#
    );
    ws.close(None).await.unwrap();
}

/// Opens an Engine.IO polling session on `/engine.io/`; returns its polling URL and sid.
async fn polling_session(http: &reqwest::Client, addr: &str) -> (String, String) {
    let base = format!("http://{addr}/engine.io/?EIO=4&transport=polling");
    let body = http.get(&base).send().await.unwrap().text().await.unwrap();
    let handshake: Value = serde_json::from_str(body.strip_prefix('0').unwrap()).unwrap();
    let sid = handshake["sid"].as_str().unwrap().to_owned();
    (format!("{base}&sid={sid}"), sid)
}

/// The official engine.io-protocol v4 suite's "close: HTTP long-polling forcefully closes the
/// session": a `close` packet POSTed while a GET is pending ends that GET with a noop, and the
/// next GET gets 400.
#[tokio::test]
async fn a_close_packet_ends_the_pending_poll_with_noop() {
    let server = start();
    let http = reqwest::Client::new();
    let (url, _) = polling_session(&http, &server.addr).await;
    let pending = tokio::spawn({
        let (http, url) = (http.clone(), url.clone());
        async move { http.get(&url).send().await.unwrap() }
    });
    // Give the GET time to be the pending one.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let closed = http.post(&url).body("1").send().await.unwrap();
    assert_eq!(closed.status(), 200);
    let poll = tokio::time::timeout(Duration::from_secs(5), pending)
        .await
        .expect("the pending poll is answered")
        .unwrap();
    assert_eq!(poll.status(), 200);
    assert_eq!(poll.text().await.unwrap(), "6");
    let after = http.get(&url).send().await.unwrap();
    assert_eq!(after.status(), 400);
}

/// The suite's "upgrade: ignores WebSocket connection with same sid after upgrade": a second
/// WebSocket for an upgraded session is accepted, then closed, and the first one carries on.
#[tokio::test]
async fn a_second_websocket_after_the_upgrade_is_closed() {
    let server = start();
    let http = reqwest::Client::new();
    let (_, sid) = polling_session(&http, &server.addr).await;
    let ws_url = format!(
        "ws://{}/engine.io/?EIO=4&transport=websocket&sid={sid}",
        server.addr
    );
    let (mut first, _) = tokio_tungstenite::connect_async(&ws_url).await.unwrap();
    first.send(Message::text("2probe")).await.unwrap();
    assert_eq!(next_text(&mut first).await, "3probe");
    first.send(Message::text("5")).await.unwrap();
    // The polling side answers 400 once the upgrade is through.
    let mut upgraded = false;
    for _ in 0..50 {
        let url = format!(
            "http://{}/engine.io/?EIO=4&transport=polling&sid={sid}",
            server.addr
        );
        if http.get(&url).send().await.unwrap().status() == 400 {
            upgraded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(upgraded, "the upgrade completed");

    let (mut second, _) = tokio_tungstenite::connect_async(&ws_url)
        .await
        .expect("the second WebSocket is accepted, not refused before the handshake");
    let end = tokio::time::timeout(Duration::from_secs(5), second.next())
        .await
        .expect("the second WebSocket is closed");
    assert!(
        matches!(end, None | Some(Ok(Message::Close(_))) | Some(Err(_))),
        "{end:?}"
    );

    first.send(Message::text("4hello")).await.unwrap();
    assert_eq!(next_text(&mut first).await, "4hello");
}
