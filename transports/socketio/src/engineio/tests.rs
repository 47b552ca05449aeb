//! Engine tests: handshake, errors, polling, heartbeat, WebSocket and the upgrade, all without
//! sockets (plain request structs and in-memory frame channels).

use super::*;
use bytes::Bytes;
use serde_json::Value;
use std::time::Duration;
use tokio::sync::mpsc;

const HS: &str = "EIO=4&transport=polling";

fn req(method: Method, query: &str, body: &'static [u8]) -> EngineRequest {
    EngineRequest {
        method,
        query: query.to_string(),
        body: Bytes::from_static(body),
    }
}

fn q(sid: &str) -> String {
    format!("EIO=4&transport=polling&sid={sid}")
}

async fn get(engine: &Engine, sid: &str) -> EngineResponse {
    engine.handle_polling(req(Method::Get, &q(sid), b"")).await
}

async fn post(engine: &Engine, sid: &str, body: &'static [u8]) -> EngineResponse {
    engine
        .handle_polling(req(Method::Post, &q(sid), body))
        .await
}

fn error_of(r: &EngineResponse) -> (u16, Value) {
    (
        r.status,
        serde_json::from_slice(&r.body).expect("JSON error body"),
    )
}

fn err_json(code: u8, message: &str) -> Value {
    serde_json::json!({ "code": code, "message": message })
}

/// A polling handshake; returns the sid and the server's socket.
async fn handshake(engine: &Engine, incoming: &mut Incoming) -> (String, EngineSocket) {
    let r = engine.handle_polling(req(Method::Get, HS, b"")).await;
    assert_eq!(r.status, 200, "{}", r.body_text());
    let body = r.body_text();
    let Ok(Packet::Open(hs)) = Packet::decode_text(&body) else {
        panic!("not an open packet: {body}");
    };
    let socket = incoming.accept().await.expect("socket");
    assert_eq!(socket.sid(), hs.sid);
    (hs.sid, socket)
}

async fn wait_poll_active(engine: &Engine, sid: &str) {
    for _ in 0..1000 {
        if engine.session(sid).is_some_and(|s| s.lock().poll_active) {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("poll never became active");
}

#[tokio::test]
async fn handshake_over_polling() {
    let (engine, mut incoming) = Engine::new(EngineConfig::default());
    let r = engine.handle_polling(req(Method::Get, HS, b"")).await;
    assert_eq!(r.status, 200);
    assert!(r
        .headers
        .iter()
        .any(|(k, v)| *k == "Content-Type" && v.starts_with("text/plain")));
    let body = r.body_text();
    assert!(body.starts_with("0{"), "{body}");
    let v: Value = serde_json::from_str(&body[1..]).unwrap();
    assert_eq!(v["upgrades"], serde_json::json!(["websocket"]));
    assert_eq!(v["pingInterval"], 25000);
    assert_eq!(v["pingTimeout"], 20000);
    assert_eq!(v["maxPayload"], 1_000_000);
    let sid = v["sid"].as_str().unwrap();
    assert_eq!(sid.len(), 20);
    let socket = incoming.accept().await.unwrap();
    assert_eq!(socket.sid(), sid);
    assert_eq!(socket.transport(), TransportType::Polling);
    assert_eq!(engine.session_count(), 1);
    drop(socket);
    assert_eq!(engine.session_count(), 0);
}

#[tokio::test]
async fn protocol_error_answers() {
    let (engine, _incoming) = Engine::new(EngineConfig::default());
    let cases = [
        (
            Method::Get,
            "EIO=3&transport=polling",
            err_json(5, "Unsupported protocol version"),
        ),
        (
            Method::Get,
            "transport=polling",
            err_json(5, "Unsupported protocol version"),
        ),
        (
            Method::Get,
            "EIO=4&transport=flashsocket",
            err_json(0, "Transport unknown"),
        ),
        (Method::Get, "EIO=4", err_json(0, "Transport unknown")),
        (
            Method::Get,
            "EIO=4&transport=polling&sid=nope",
            err_json(1, "Session ID unknown"),
        ),
        (
            Method::Post,
            "EIO=4&transport=polling",
            err_json(2, "Bad handshake method"),
        ),
        (
            Method::Get,
            "EIO=4&transport=websocket",
            err_json(3, "Bad request"),
        ),
    ];
    for (m, query, expected) in cases {
        let r = engine.handle_polling(req(m, query, b"")).await;
        assert_eq!(error_of(&r), (400, expected), "{query}");
    }
    // The exact body for EIO=3.
    let r = engine
        .handle_polling(req(Method::Get, "EIO=3&transport=polling", b""))
        .await;
    assert_eq!(
        r.body_text(),
        r#"{"code":5,"message":"Unsupported protocol version"}"#
    );
    assert_eq!(
        EngineError::Forbidden.response().status,
        403,
        "Forbidden is a 403"
    );
    let Err(r) = engine.websocket_request("EIO=3&transport=websocket") else {
        panic!("EIO=3 websocket accepted");
    };
    assert_eq!(
        error_of(&r),
        (400, err_json(5, "Unsupported protocol version"))
    );
    let Err(r) = engine.websocket_request("EIO=4&transport=websocket&sid=nope") else {
        panic!("unknown sid accepted");
    };
    assert_eq!(error_of(&r).1["code"], 1);
    assert_eq!(engine.session_count(), 0);
}

#[tokio::test]
async fn preflight_is_answered() {
    let (engine, _incoming) = Engine::new(EngineConfig::default());
    let r = engine.handle_polling(req(Method::Options, HS, b"")).await;
    assert_eq!(r.status, 204);
}

#[tokio::test]
async fn post_delivers_messages_and_binary() {
    let (engine, mut incoming) = Engine::new(EngineConfig::default());
    let (sid, mut socket) = handshake(&engine, &mut incoming).await;
    let r = post(&engine, &sid, b"4hello\x1e4\xe2\x82\xac\x1ebAQIDBA==").await;
    assert_eq!((r.status, r.body_text().as_str()), (200, "ok"));
    assert_eq!(
        socket.recv().await,
        Some(EngineMessage::Text("hello".into()))
    );
    assert_eq!(socket.recv().await, Some(EngineMessage::Text("€".into())));
    assert_eq!(
        socket.recv().await,
        Some(EngineMessage::Binary(Bytes::from_static(&[1, 2, 3, 4])))
    );
}

#[tokio::test]
async fn post_over_max_payload_is_413() {
    let config = EngineConfig {
        max_payload: 16,
        ..EngineConfig::default()
    };
    let (engine, mut incoming) = Engine::new(config);
    let (sid, mut socket) = handshake(&engine, &mut incoming).await;
    let r = post(&engine, &sid, b"4aaaaaaaaaaaaaaaa").await; // 17 bytes
    assert_eq!(r.status, 413);
    let r = post(&engine, &sid, b"4aaaaaaaaaaaaaaa").await; // 16 bytes
    assert_eq!(r.status, 200);
    assert_eq!(
        socket.recv().await,
        Some(EngineMessage::Text("aaaaaaaaaaaaaaa".into()))
    );
    // The handshake advertises the limit.
    let r = engine.handle_polling(req(Method::Get, HS, b"")).await;
    assert!(r.body_text().contains(r#""maxPayload":16"#));
}

#[tokio::test]
async fn too_many_packets_in_one_post_is_rejected() {
    let config = EngineConfig {
        max_packets_per_payload: 2,
        ..EngineConfig::default()
    };
    let (engine, mut incoming) = Engine::new(config);
    let (sid, socket) = handshake(&engine, &mut incoming).await;
    let r = post(&engine, &sid, b"4a\x1e4b\x1e4c").await;
    assert_eq!(error_of(&r).1["code"], 3);
    assert!(matches!(
        socket.close_reason(),
        Some(CloseReason::ProtocolViolation(_))
    ));
}

#[tokio::test]
async fn malformed_post_closes_the_session() {
    let (engine, mut incoming) = Engine::new(EngineConfig::default());
    let (sid, mut socket) = handshake(&engine, &mut incoming).await;
    let r = post(&engine, &sid, b"9garbage").await;
    assert_eq!(error_of(&r), (400, err_json(3, "Bad request")));
    assert_eq!(socket.recv().await, None);
    assert!(matches!(
        socket.close_reason(),
        Some(CloseReason::ProtocolViolation(_))
    ));
    let r = get(&engine, &sid).await;
    assert_eq!(error_of(&r).1["code"], 1);
}

#[tokio::test]
async fn get_returns_queued_packets_joined() {
    let (engine, mut incoming) = Engine::new(EngineConfig::default());
    let (sid, socket) = handshake(&engine, &mut incoming).await;
    socket.send(EngineMessage::Text("hello".into())).unwrap();
    socket.send(EngineMessage::Text("€".into())).unwrap();
    socket
        .send(EngineMessage::Binary(Bytes::from_static(&[1, 2, 3, 4])))
        .unwrap();
    let r = get(&engine, &sid).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body_text(), "4hello\x1e4€\x1ebAQIDBA==");
}

#[tokio::test]
async fn pending_get_is_woken_by_a_send() {
    let (engine, mut incoming) = Engine::new(EngineConfig::default());
    let (sid, socket) = handshake(&engine, &mut incoming).await;
    let e2 = engine.clone();
    let s2 = sid.clone();
    let pending = tokio::spawn(async move { get(&e2, &s2).await });
    wait_poll_active(&engine, &sid).await;
    socket
        .sender()
        .send(EngineMessage::Text("late".into()))
        .unwrap();
    assert_eq!(pending.await.unwrap().body_text(), "4late");
}

#[tokio::test]
async fn poll_respects_max_payload() {
    let config = EngineConfig {
        max_payload: 11,
        ..EngineConfig::default()
    };
    let (engine, mut incoming) = Engine::new(config);
    let (sid, socket) = handshake(&engine, &mut incoming).await;
    for m in ["aaaa", "bbbb", "cccc"] {
        socket.send(EngineMessage::Text(m.into())).unwrap();
    }
    assert_eq!(get(&engine, &sid).await.body_text(), "4aaaa\x1e4bbbb");
    assert_eq!(get(&engine, &sid).await.body_text(), "4cccc");
}

#[tokio::test]
async fn full_outbound_queue_closes_the_session() {
    let config = EngineConfig {
        max_buffered_packets: 2,
        ..EngineConfig::default()
    };
    let (engine, mut incoming) = Engine::new(config);
    let (_sid, socket) = handshake(&engine, &mut incoming).await;
    socket.send(EngineMessage::Text("1".into())).unwrap();
    socket.send(EngineMessage::Text("2".into())).unwrap();
    assert_eq!(
        socket.send(EngineMessage::Text("3".into())),
        Err(SendError::Lagged)
    );
    assert_eq!(socket.close_reason(), Some(CloseReason::Lagged));
    assert_eq!(
        socket.send(EngineMessage::Text("4".into())),
        Err(SendError::Closed)
    );
    assert_eq!(engine.session_count(), 0);
}

#[tokio::test]
async fn outbound_queue_is_bounded_in_bytes_too() {
    let config = EngineConfig {
        max_buffered_bytes: 100,
        ..EngineConfig::default()
    };
    let (engine, mut incoming) = Engine::new(config);
    let (_sid, socket) = handshake(&engine, &mut incoming).await;
    // One packet alone always fits, however large.
    socket.send(EngineMessage::Text("x".repeat(500))).unwrap();
    assert_eq!(
        socket.send(EngineMessage::Text("y".into())),
        Err(SendError::Lagged)
    );
    assert_eq!(socket.close_reason(), Some(CloseReason::Lagged));
}

#[tokio::test]
async fn concurrent_get_closes_the_session() {
    let (engine, mut incoming) = Engine::new(EngineConfig::default());
    let (sid, mut socket) = handshake(&engine, &mut incoming).await;
    let e2 = engine.clone();
    let s2 = sid.clone();
    let first = tokio::spawn(async move { get(&e2, &s2).await });
    wait_poll_active(&engine, &sid).await;
    let second = get(&engine, &sid).await;
    assert_eq!(error_of(&second), (400, err_json(3, "Bad request")));
    // The pending poll is answered with a close packet.
    assert_eq!(first.await.unwrap().body_text(), "1");
    assert_eq!(socket.recv().await, None);
    assert!(matches!(
        socket.close_reason(),
        Some(CloseReason::ProtocolViolation(_))
    ));
    assert_eq!(error_of(&get(&engine, &sid).await).1["code"], 1);
}

#[tokio::test(start_paused = true)]
async fn ping_timeout_closes_the_session() {
    let (engine, mut incoming) = Engine::new(EngineConfig::default());
    let start = tokio::time::Instant::now();
    let (sid, mut socket) = handshake(&engine, &mut incoming).await;
    // The poll is answered by the server's ping after pingInterval.
    let r = get(&engine, &sid).await;
    assert_eq!(r.body_text(), "2");
    assert_eq!(start.elapsed(), Duration::from_secs(25));
    // No pong: closed pingTimeout later.
    assert_eq!(socket.recv().await, None);
    assert_eq!(socket.close_reason(), Some(CloseReason::PingTimeout));
    assert_eq!(start.elapsed(), Duration::from_secs(45));
    assert_eq!(error_of(&get(&engine, &sid).await).1["code"], 1);
    assert_eq!(engine.session_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn pongs_keep_the_session_alive() {
    let (engine, mut incoming) = Engine::new(EngineConfig::default());
    let start = tokio::time::Instant::now();
    let (sid, socket) = handshake(&engine, &mut incoming).await;
    for _ in 0..4 {
        assert_eq!(get(&engine, &sid).await.body_text(), "2");
        assert_eq!(post(&engine, &sid, b"3").await.status, 200);
    }
    assert_eq!(start.elapsed(), Duration::from_secs(100));
    assert_eq!(socket.close_reason(), None);
}

#[tokio::test]
async fn a_client_close_ends_the_pending_poll_with_noop() {
    let (engine, mut incoming) = Engine::new(EngineConfig::default());
    let (sid, mut socket) = handshake(&engine, &mut incoming).await;
    socket.send(EngineMessage::Text("unread".into())).unwrap();
    assert_eq!(get(&engine, &sid).await.body_text(), "4unread");
    let e2 = engine.clone();
    let s2 = sid.clone();
    let pending = tokio::spawn(async move { get(&e2, &s2).await });
    wait_poll_active(&engine, &sid).await;
    assert_eq!(post(&engine, &sid, b"1").await.status, 200);
    // The protocol's "forcefully closes the session" case: the pending GET gets a noop, not a
    // close packet (the client asked for the close), and the session is gone for the next GET.
    let answer = pending.await.unwrap();
    assert_eq!((answer.status, answer.body_text()), (200, "6".to_string()));
    assert_eq!(socket.recv().await, None);
    assert_eq!(socket.close_reason(), Some(CloseReason::ClientClosed));
    assert_eq!(
        error_of(&get(&engine, &sid).await),
        (400, err_json(1, "Session ID unknown"))
    );
}

#[tokio::test(start_paused = true)]
async fn idle_poll_ends_with_noop_when_the_session_is_gone() {
    let (engine, mut incoming) = Engine::new(EngineConfig::default());
    let (sid, socket) = handshake(&engine, &mut incoming).await;
    let e2 = engine.clone();
    let s2 = sid.clone();
    let pending = tokio::spawn(async move { get(&e2, &s2).await });
    wait_poll_active(&engine, &sid).await;
    socket.close();
    assert_eq!(pending.await.unwrap().body_text(), "1");
}

/// A client end of an in-memory WebSocket.
struct WsClient {
    tx: mpsc::Sender<WsFrame>,
    rx: mpsc::Receiver<WsFrame>,
}

impl WsClient {
    async fn send_text(&self, s: &str) {
        self.tx.send(WsFrame::Text(s.into())).await.unwrap();
    }
    async fn recv(&mut self) -> Option<WsFrame> {
        tokio::time::timeout(Duration::from_secs(60), self.rx.recv())
            .await
            .expect("frame within 60 s")
    }
    async fn recv_text(&mut self) -> String {
        match self.recv().await {
            Some(WsFrame::Text(t)) => t,
            other => panic!("expected text frame, got {other:?}"),
        }
    }
}

fn ws_pair() -> (WsClient, WsConnection) {
    let (c2s_tx, c2s_rx) = mpsc::channel(16);
    let (s2c_tx, s2c_rx) = mpsc::channel(16);
    (
        WsClient {
            tx: c2s_tx,
            rx: s2c_rx,
        },
        WsConnection {
            incoming: c2s_rx,
            outgoing: s2c_tx,
        },
    )
}

fn open_ws(engine: &Engine, query: &str) -> (WsClient, tokio::task::JoinHandle<()>) {
    let accept = engine
        .websocket_request(query)
        .unwrap_or_else(|r| panic!("refused: {}", r.body_text()));
    let (client, conn) = ws_pair();
    (client, tokio::spawn(accept.serve(conn)))
}

#[tokio::test]
async fn direct_websocket_session() {
    let (engine, mut incoming) = Engine::new(EngineConfig::default());
    let (mut client, task) = open_ws(&engine, "EIO=4&transport=websocket");
    let open = client.recv_text().await;
    let Ok(Packet::Open(hs)) = Packet::decode_text(&open) else {
        panic!("{open}");
    };
    assert!(hs.upgrades.is_empty());
    let mut socket = incoming.accept().await.unwrap();
    assert_eq!(socket.sid(), hs.sid);
    assert_eq!(socket.transport(), TransportType::WebSocket);

    client.send_text("4hi").await;
    assert_eq!(socket.recv().await, Some(EngineMessage::Text("hi".into())));
    client
        .tx
        .send(WsFrame::Binary(Bytes::from_static(&[9, 9])))
        .await
        .unwrap();
    assert_eq!(
        socket.recv().await,
        Some(EngineMessage::Binary(Bytes::from_static(&[9, 9])))
    );
    socket.send(EngineMessage::Text("yo".into())).unwrap();
    assert_eq!(client.recv_text().await, "4yo");
    socket
        .send(EngineMessage::Binary(Bytes::from_static(&[1])))
        .unwrap();
    assert_eq!(
        client.recv().await,
        Some(WsFrame::Binary(Bytes::from_static(&[1])))
    );
    // Polling requests for a WebSocket session are refused.
    assert_eq!(error_of(&get(&engine, &hs.sid).await).1["code"], 3);

    drop(client);
    assert_eq!(socket.recv().await, None);
    assert_eq!(socket.close_reason(), Some(CloseReason::TransportClosed));
    task.await.unwrap();
}

#[tokio::test]
async fn websocket_close_packet_and_server_close() {
    let (engine, mut incoming) = Engine::new(EngineConfig::default());
    let (mut client, _task) = open_ws(&engine, "EIO=4&transport=websocket");
    client.recv_text().await;
    let mut socket = incoming.accept().await.unwrap();
    client.send_text("1").await;
    assert_eq!(socket.recv().await, None);
    assert_eq!(socket.close_reason(), Some(CloseReason::ClientClosed));

    let (mut client, task) = open_ws(&engine, "EIO=4&transport=websocket");
    client.recv_text().await;
    let socket = incoming.accept().await.unwrap();
    socket.close();
    assert_eq!(client.recv_text().await, "1");
    task.await.unwrap();
    assert_eq!(client.recv().await, None, "the engine drops its sender");
}

#[tokio::test]
async fn malformed_websocket_frame_closes_the_session() {
    let (engine, mut incoming) = Engine::new(EngineConfig::default());
    let (mut client, _task) = open_ws(&engine, "EIO=4&transport=websocket");
    client.recv_text().await;
    let mut socket = incoming.accept().await.unwrap();
    client.send_text("").await;
    assert_eq!(socket.recv().await, None);
    assert!(matches!(
        socket.close_reason(),
        Some(CloseReason::ProtocolViolation(_))
    ));
    assert_eq!(client.recv_text().await, "1");
}

#[tokio::test]
async fn websocket_frame_over_max_payload_closes_the_session() {
    let config = EngineConfig {
        max_payload: 8,
        ..EngineConfig::default()
    };
    let (engine, mut incoming) = Engine::new(config);
    let (mut client, _task) = open_ws(&engine, "EIO=4&transport=websocket");
    client.recv_text().await;
    let mut socket = incoming.accept().await.unwrap();
    client.send_text("4123456789").await;
    assert_eq!(socket.recv().await, None);
    assert!(matches!(
        socket.close_reason(),
        Some(CloseReason::ProtocolViolation(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn websocket_heartbeat_and_timeout() {
    let (engine, mut incoming) = Engine::new(EngineConfig::default());
    let (mut client, _task) = open_ws(&engine, "EIO=4&transport=websocket");
    client.recv_text().await;
    let mut socket = incoming.accept().await.unwrap();
    let start = tokio::time::Instant::now();
    assert_eq!(client.recv_text().await, "2");
    client.send_text("3").await;
    assert_eq!(client.recv_text().await, "2");
    assert_eq!(start.elapsed(), Duration::from_secs(50));
    // No pong this time.
    assert_eq!(socket.recv().await, None);
    assert_eq!(socket.close_reason(), Some(CloseReason::PingTimeout));
    assert_eq!(start.elapsed(), Duration::from_secs(70));
    let _ = client;
}

#[tokio::test]
async fn upgrade_from_polling_to_websocket() {
    let (engine, mut incoming) = Engine::new(EngineConfig::default());
    let (sid, mut socket) = handshake(&engine, &mut incoming).await;

    // A poll is pending when the WebSocket opens.
    let e2 = engine.clone();
    let s2 = sid.clone();
    let pending = tokio::spawn(async move { get(&e2, &s2).await });
    wait_poll_active(&engine, &sid).await;

    let (mut client, task) = open_ws(&engine, &format!("EIO=4&transport=websocket&sid={sid}"));
    // A second upgrade attempt while this one runs is refused.
    tokio::task::yield_now().await;
    client.send_text("2probe").await;
    assert_eq!(client.recv_text().await, "3probe");
    assert!(engine
        .websocket_request(&format!("EIO=4&transport=websocket&sid={sid}"))
        .is_err());

    // The pending poll is answered with noop.
    assert_eq!(pending.await.unwrap().body_text(), "6");
    // A message sent during the upgrade is buffered, not given to a poll.
    socket.send(EngineMessage::Text("buffered".into())).unwrap();
    assert_eq!(get(&engine, &sid).await.body_text(), "6");
    assert_eq!(socket.transport(), TransportType::Polling);

    client.send_text("5").await;
    // Buffered packets are flushed over the WebSocket after the upgrade.
    assert_eq!(client.recv_text().await, "4buffered");
    assert_eq!(socket.transport(), TransportType::WebSocket);

    // Polls and posts after the upgrade are rejected.
    assert_eq!(
        error_of(&get(&engine, &sid).await),
        (400, err_json(3, "Bad request"))
    );
    assert_eq!(error_of(&post(&engine, &sid, b"4x").await).1["code"], 3);

    client.send_text("4after").await;
    assert_eq!(
        socket.recv().await,
        Some(EngineMessage::Text("after".into()))
    );
    socket.send(EngineMessage::Text("ws".into())).unwrap();
    assert_eq!(client.recv_text().await, "4ws");

    drop(client);
    assert_eq!(socket.recv().await, None);
    task.await.unwrap();
}

#[tokio::test]
async fn a_second_websocket_after_the_upgrade_is_closed_and_the_first_kept() {
    let (engine, mut incoming) = Engine::new(EngineConfig::default());
    let (sid, mut socket) = handshake(&engine, &mut incoming).await;
    let (mut client, _task) = open_ws(&engine, &format!("EIO=4&transport=websocket&sid={sid}"));
    client.send_text("2probe").await;
    assert_eq!(client.recv_text().await, "3probe");
    client.send_text("5").await;
    while socket.transport() != TransportType::WebSocket {
        tokio::task::yield_now().await;
    }
    // Accepted (the gateway answers 101), then closed at once: its task ends and drops the
    // connection without a frame.
    let (mut second, second_task) =
        open_ws(&engine, &format!("EIO=4&transport=websocket&sid={sid}"));
    second_task.await.unwrap();
    assert_eq!(second.recv().await, None);
    // The first WebSocket carries on.
    assert_eq!(socket.close_reason(), None);
    client.send_text("4still-here").await;
    assert_eq!(
        socket.recv().await,
        Some(EngineMessage::Text("still-here".into()))
    );
    socket.send(EngineMessage::Text("back".into())).unwrap();
    assert_eq!(client.recv_text().await, "4back");
}

#[tokio::test]
async fn failed_upgrade_keeps_polling() {
    let (engine, mut incoming) = Engine::new(EngineConfig::default());
    let (sid, mut socket) = handshake(&engine, &mut incoming).await;
    let (mut client, task) = open_ws(&engine, &format!("EIO=4&transport=websocket&sid={sid}"));
    client.send_text("4not-a-probe").await;
    task.await.unwrap();
    assert_eq!(client.recv().await, None);
    assert_eq!(socket.transport(), TransportType::Polling);
    assert_eq!(socket.close_reason(), None);
    assert_eq!(post(&engine, &sid, b"4still").await.status, 200);
    assert_eq!(
        socket.recv().await,
        Some(EngineMessage::Text("still".into()))
    );
    // `5` without a probe fails too.
    let (client, task) = open_ws(&engine, &format!("EIO=4&transport=websocket&sid={sid}"));
    client.send_text("5").await;
    task.await.unwrap();
    assert_eq!(socket.transport(), TransportType::Polling);
}

#[tokio::test(start_paused = true)]
async fn upgrade_times_out() {
    let (engine, mut incoming) = Engine::new(EngineConfig::default());
    let (sid, socket) = handshake(&engine, &mut incoming).await;
    let (_client, task) = open_ws(&engine, &format!("EIO=4&transport=websocket&sid={sid}"));
    task.await.unwrap();
    assert_eq!(socket.transport(), TransportType::Polling);
}

#[tokio::test]
async fn websocket_disabled() {
    let config = EngineConfig {
        allow_websocket: false,
        ..EngineConfig::default()
    };
    let (engine, mut incoming) = Engine::new(config);
    let (sid, _socket) = handshake(&engine, &mut incoming).await;
    assert!(engine
        .websocket_request("EIO=4&transport=websocket")
        .is_err());
    let r = engine.handle_polling(req(Method::Get, HS, b"")).await;
    assert!(r.body_text().contains(r#""upgrades":[]"#));
    assert!(engine
        .websocket_request(&format!("EIO=4&transport=websocket&sid={sid}"))
        .is_err());
}
