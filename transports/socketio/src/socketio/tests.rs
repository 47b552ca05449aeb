//! Namespace-layer tests over an in-memory WebSocket (Engine.IO frames in and out), and over
//! polling requests and the upgrade.

use super::packet::placeholder;
use super::*;
use crate::engineio::{Engine, EngineConfig, EngineRequest, Method, WsConnection, WsFrame};
use bytes::Bytes;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::sync::mpsc;

struct Client {
    tx: mpsc::Sender<WsFrame>,
    rx: mpsc::Receiver<WsFrame>,
}

impl Client {
    async fn send(&self, s: &str) {
        self.tx.send(WsFrame::Text(s.into())).await.unwrap();
    }
    async fn send_bin(&self, b: &'static [u8]) {
        self.tx
            .send(WsFrame::Binary(Bytes::from_static(b)))
            .await
            .unwrap();
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

type Auth = fn(ConnectRequest) -> std::future::Ready<Result<String, String>>;

fn authorize(req: ConnectRequest) -> std::future::Ready<Result<String, String>> {
    std::future::ready(match req.auth {
        Some(a) if a["token"] == "secret" => Ok(format!("user@{}", req.nsp)),
        Some(_) => Err("Not authorized".to_string()),
        None => Ok("anonymous".to_string()),
    })
}

/// An Engine.IO WebSocket session served by a Socket.IO server, past the `open` packet.
async fn setup(config: SocketIoConfig) -> (Client, Sockets<String>) {
    let (io, sockets) = SocketIo::new(config, authorize as Auth);
    let engine = Engine::with_handler(EngineConfig::default(), std::sync::Arc::new(io));
    let accept = engine
        .websocket_request("EIO=4&transport=websocket")
        .unwrap_or_else(|r| panic!("{}", r.body_text()));
    let (c2s_tx, c2s_rx) = mpsc::channel(16);
    let (s2c_tx, s2c_rx) = mpsc::channel(16);
    tokio::spawn(accept.serve(WsConnection {
        incoming: c2s_rx,
        outgoing: s2c_tx,
    }));
    let mut client = Client {
        tx: c2s_tx,
        rx: s2c_rx,
    };
    assert!(client.recv_text().await.starts_with("0{"));
    (client, sockets)
}

fn config() -> SocketIoConfig {
    SocketIoConfig {
        namespaces: vec!["/".into(), "/admin".into()],
        ..SocketIoConfig::default()
    }
}

/// Connects to `nsp`; returns the server socket.
async fn connect(
    client: &mut Client,
    sockets: &mut Sockets<String>,
    packet: &str,
) -> Socket<String> {
    client.send(packet).await;
    let answer = client.recv_text().await;
    let socket = sockets.accept().await.unwrap();
    let prefix = if socket.nsp() == "/" {
        "40".to_string()
    } else {
        format!("40{},", socket.nsp())
    };
    let data: Value = serde_json::from_str(answer.strip_prefix(&prefix).unwrap()).unwrap();
    assert_eq!(data, json!({ "sid": socket.id() }));
    socket
}

#[tokio::test]
async fn connect_to_the_main_namespace() {
    let (mut client, mut sockets) = setup(config()).await;
    let socket = connect(&mut client, &mut sockets, "40").await;
    assert_eq!(socket.nsp(), "/");
    assert_eq!(socket.data, "anonymous");
    assert_eq!(socket.id().len(), 20);
}

#[tokio::test]
async fn auth_payload_goes_to_the_authorizer() {
    let (mut client, mut sockets) = setup(config()).await;
    client.send(r#"40/admin,{"token":"wrong"}"#).await;
    assert_eq!(
        client.recv_text().await,
        r#"44/admin,{"message":"Not authorized"}"#
    );
    let socket = connect(&mut client, &mut sockets, r#"40/admin,{"token":"secret"}"#).await;
    assert_eq!(socket.nsp(), "/admin");
    assert_eq!(socket.data, "user@/admin");
    assert_eq!(socket.auth, Some(json!({"token":"secret"})));
}

#[tokio::test]
async fn unknown_namespace_is_refused() {
    let (mut client, _sockets) = setup(config()).await;
    client.send("40/nope,").await;
    assert_eq!(
        client.recv_text().await,
        r#"44/nope,{"message":"Invalid namespace"}"#
    );
}

#[tokio::test]
async fn events_and_acks_both_ways() {
    let (mut client, mut sockets) = setup(config()).await;
    let mut socket = connect(&mut client, &mut sockets, "40").await;

    client.send(r#"42["hello","world"]"#).await;
    let Some(SocketEvent::Event {
        name, args, ack, ..
    }) = socket.recv().await
    else {
        panic!("no event");
    };
    assert_eq!(
        (name.as_str(), args, ack.is_none()),
        ("hello", vec![json!("world")], true)
    );

    // Client → server with ack: `421["q",1]` answered by `431[2]`.
    client.send(r#"421["q",1]"#).await;
    let Some(SocketEvent::Event {
        name,
        ack: Some(ack),
        ..
    }) = socket.recv().await
    else {
        panic!("no event with ack");
    };
    assert_eq!((name.as_str(), ack.id()), ("q", 1));
    ack.send(vec![json!(2)], vec![]).unwrap();
    assert_eq!(client.recv_text().await, "431[2]");

    // Server → client with ack.
    let emitter = socket.emitter();
    emitter.emit("news", vec![json!({"a":1})], vec![]).unwrap();
    assert_eq!(client.recv_text().await, r#"42["news",{"a":1}]"#);
    let answer = emitter
        .emit_with_ack("ask", vec![json!(1)], vec![])
        .unwrap();
    assert_eq!(client.recv_text().await, r#"420["ask",1]"#);
    client.send(r#"430["yes"]"#).await;
    let got = answer.await.unwrap();
    assert_eq!(got.args, vec![json!("yes")]);
}

#[tokio::test]
async fn namespaces_are_independent() {
    let (mut client, mut sockets) = setup(config()).await;
    let mut main = connect(&mut client, &mut sockets, "40").await;
    let mut admin = connect(&mut client, &mut sockets, r#"40/admin,{"token":"secret"}"#).await;
    client.send(r#"42/admin,["x"]"#).await;
    client.send(r#"42["y"]"#).await;
    let Some(SocketEvent::Event { name, .. }) = admin.recv().await else {
        panic!()
    };
    assert_eq!(name, "x");
    let Some(SocketEvent::Event { name, .. }) = main.recv().await else {
        panic!()
    };
    assert_eq!(name, "y");
    admin.emitter().emit("z", vec![], vec![]).unwrap();
    assert_eq!(client.recv_text().await, r#"42/admin,["z"]"#);
    // Leaving one namespace keeps the other.
    client.send("41/admin,").await;
    assert!(matches!(
        admin.recv().await,
        Some(SocketEvent::Disconnected(
            DisconnectReason::ClientDisconnect
        ))
    ));
    assert!(admin.recv().await.is_none());
    assert_eq!(
        admin.emitter().emit("z", vec![], vec![]),
        Err(EmitError::Disconnected)
    );
    main.emitter().emit("still", vec![], vec![]).unwrap();
    assert_eq!(client.recv_text().await, r#"42["still"]"#);
}

#[tokio::test]
async fn binary_events_both_ways() {
    let (mut client, mut sockets) = setup(config()).await;
    let mut socket = connect(&mut client, &mut sockets, "40").await;
    client
        .send(r#"451-["upload",{"_placeholder":true,"num":0}]"#)
        .await;
    client.send_bin(&[1, 2, 3]).await;
    let Some(SocketEvent::Event {
        name,
        args,
        attachments,
        ..
    }) = socket.recv().await
    else {
        panic!()
    };
    assert_eq!(name, "upload");
    assert_eq!(packet::placeholder_num(&args[0]), Some(0));
    assert_eq!(attachments, vec![Bytes::from_static(&[1, 2, 3])]);

    socket
        .emitter()
        .emit(
            "file",
            vec![placeholder(0)],
            vec![Bytes::from_static(b"xy")],
        )
        .unwrap();
    assert_eq!(
        client.recv_text().await,
        r#"451-["file",{"_placeholder":true,"num":0}]"#
    );
    assert_eq!(
        client.recv().await,
        Some(WsFrame::Binary(Bytes::from_static(b"xy")))
    );
}

#[tokio::test]
async fn too_many_attachments_close_the_session() {
    let (mut client, mut sockets) = setup(SocketIoConfig {
        max_attachments: 1,
        ..config()
    })
    .await;
    let mut socket = connect(&mut client, &mut sockets, "40").await;
    client
        .send(r#"452-["x",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#)
        .await;
    assert!(matches!(
        socket.recv().await,
        Some(SocketEvent::Disconnected(
            DisconnectReason::ProtocolViolation(_)
        ))
    ));
    assert_eq!(client.recv_text().await, "1");
}

#[tokio::test]
async fn malformed_packet_closes_the_session() {
    let (mut client, mut sockets) = setup(config()).await;
    let mut socket = connect(&mut client, &mut sockets, "40").await;
    client.send(r#"42["unterminated""#).await;
    assert!(matches!(
        socket.recv().await,
        Some(SocketEvent::Disconnected(
            DisconnectReason::ProtocolViolation(_)
        ))
    ));
    assert_eq!(client.recv_text().await, "1");
}

#[tokio::test]
async fn server_side_disconnect() {
    let (mut client, mut sockets) = setup(config()).await;
    let mut socket = connect(&mut client, &mut sockets, "40").await;
    socket.emitter().disconnect().unwrap();
    assert_eq!(client.recv_text().await, "41");
    assert!(matches!(
        socket.recv().await,
        Some(SocketEvent::Disconnected(
            DisconnectReason::ServerDisconnect
        ))
    ));
    // The client may connect again on the same Engine.IO session.
    connect(&mut client, &mut sockets, "40").await;
}

#[tokio::test]
async fn transport_close_disconnects_sockets() {
    let (mut client, mut sockets) = setup(config()).await;
    let mut socket = connect(&mut client, &mut sockets, "40").await;
    let pending = socket.emitter().emit_with_ack("q", vec![], vec![]).unwrap();
    assert_eq!(client.recv_text().await, r#"420["q"]"#);
    client.send("1").await; // Engine.IO close
    assert!(matches!(
        socket.recv().await,
        Some(SocketEvent::Disconnected(
            DisconnectReason::TransportClosed(_)
        ))
    ));
    assert!(
        pending.await.is_err(),
        "pending acks fail when the connection ends"
    );
}

#[tokio::test(start_paused = true)]
async fn connect_timeout_closes_the_session() {
    let (mut client, _sockets) = setup(SocketIoConfig {
        connect_timeout: Duration::from_secs(5),
        ..config()
    })
    .await;
    let start = tokio::time::Instant::now();
    assert_eq!(client.recv_text().await, "1");
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    assert_eq!(client.recv().await, None);
}

#[tokio::test(start_paused = true)]
async fn connecting_in_time_disarms_the_timeout() {
    let (mut client, mut sockets) = setup(SocketIoConfig {
        connect_timeout: Duration::from_secs(5),
        ..config()
    })
    .await;
    let socket = connect(&mut client, &mut sockets, "40").await;
    // The next frame is the heartbeat, not a close.
    assert_eq!(client.recv_text().await, "2");
    client.send("3").await;
    socket.emitter().emit("alive", vec![], vec![]).unwrap();
    assert_eq!(client.recv_text().await, r#"42["alive"]"#);
}

#[tokio::test]
async fn client_connect_error_is_a_violation() {
    let (mut client, _sockets) = setup(config()).await;
    client.send(r#"44{"message":"x"}"#).await;
    assert_eq!(client.recv_text().await, "1");
}

// Over polling, and across the upgrade: the engine calls the Socket.IO layer from each POST's
// task and then from the WebSocket's, with no task of the layer's own in between.

fn polling(method: crate::engineio::Method, sid: Option<&str>, body: &str) -> EngineRequest {
    EngineRequest {
        method,
        query: match sid {
            Some(sid) => format!("EIO=4&transport=polling&sid={sid}"),
            None => "EIO=4&transport=polling".into(),
        },
        body: Bytes::from(body.to_owned()),
    }
}

/// A polling handshake on an engine served by `io`; returns the engine and the sid.
async fn polling_session<D: Send + 'static, A: Authorizer<D>>(
    io: SocketIo<D, A>,
    config: EngineConfig,
) -> (Engine, String) {
    let engine = Engine::with_handler(config, std::sync::Arc::new(io));
    let open = engine
        .handle_polling(polling(Method::Get, None, ""))
        .await
        .body_text();
    let hs: Value = serde_json::from_str(open.strip_prefix('0').unwrap()).unwrap();
    (engine, hs["sid"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn polling_then_upgrade_to_websocket() {
    let (io, mut sockets) = SocketIo::new(config(), authorize as Auth);
    let (engine, sid) = polling_session(io, EngineConfig::default()).await;
    let post = engine
        .handle_polling(polling(Method::Post, Some(&sid), "40"))
        .await;
    assert_eq!(post.body_text(), "ok");
    let answer = engine
        .handle_polling(polling(Method::Get, Some(&sid), ""))
        .await
        .body_text();
    assert!(answer.starts_with(r#"40{"sid":"#), "{answer}");
    let mut socket = sockets.accept().await.unwrap();

    // An event over polling.
    let post = engine
        .handle_polling(polling(Method::Post, Some(&sid), r#"42["over polling"]"#))
        .await;
    assert_eq!(post.status, 200);
    assert!(matches!(
        socket.recv().await,
        Some(SocketEvent::Event { name, .. }) if name == "over polling"
    ));

    // The upgrade, then events both ways over the WebSocket.
    let accept = engine
        .websocket_request(&format!("EIO=4&transport=websocket&sid={sid}"))
        .unwrap_or_else(|r| panic!("{}", r.body_text()));
    let (c2s_tx, c2s_rx) = mpsc::channel(16);
    let (s2c_tx, s2c_rx) = mpsc::channel(16);
    let task = tokio::spawn(accept.serve(WsConnection {
        incoming: c2s_rx,
        outgoing: s2c_tx,
    }));
    let mut client = Client {
        tx: c2s_tx,
        rx: s2c_rx,
    };
    client.send("2probe").await;
    assert_eq!(client.recv_text().await, "3probe");
    client.send("5").await;
    client.send(r#"421["over websocket"]"#).await;
    let Some(SocketEvent::Event { name, ack, .. }) = socket.recv().await else {
        panic!("no event");
    };
    assert_eq!(name, "over websocket");
    ack.unwrap().send(vec![json!("done")], vec![]).unwrap();
    assert_eq!(client.recv_text().await, r#"431["done"]"#);
    socket.emitter().emit("pushed", vec![], vec![]).unwrap();
    assert_eq!(client.recv_text().await, r#"42["pushed"]"#);

    drop(client);
    assert!(matches!(
        socket.recv().await,
        Some(SocketEvent::Disconnected(
            DisconnectReason::TransportClosed(_)
        ))
    ));
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn connect_timeout_over_polling() {
    let io_config = SocketIoConfig {
        connect_timeout: Duration::from_secs(5),
        ..config()
    };
    let (io, _sockets) = SocketIo::new(io_config, authorize as Auth);
    let (engine, sid) = polling_session(io, EngineConfig::default()).await;
    let start = tokio::time::Instant::now();
    // The pending poll ends with the session: the polling heartbeat keeps the deadline.
    let poll = engine
        .handle_polling(polling(Method::Get, Some(&sid), ""))
        .await;
    assert_eq!(poll.body_text(), "1");
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    assert!(!engine.has_session(&sid));
}

#[tokio::test]
async fn a_connect_authorized_after_the_session_closed_still_hands_its_socket_over() {
    let gate = std::sync::Arc::new(tokio::sync::Notify::new());
    let wait = gate.clone();
    let slow = move |_req: ConnectRequest| {
        let wait = wait.clone();
        async move {
            wait.notified().await;
            Ok::<_, String>("late".to_string())
        }
    };
    let (io, mut sockets) = SocketIo::new(config(), slow);
    let (engine, sid) = polling_session(io, EngineConfig::default()).await;
    let e2 = engine.clone();
    let s2 = sid.clone();
    let connect = tokio::spawn(async move {
        e2.handle_polling(polling(Method::Post, Some(&s2), "40"))
            .await
    });
    while !engine.session(&sid).is_some_and(|s| s.lock().post_active) {
        tokio::task::yield_now().await;
    }
    // An overlapping POST breaks the protocol: the session closes while the CONNECT waits.
    let overlapping = engine
        .handle_polling(polling(Method::Post, Some(&sid), "42[\"x\"]"))
        .await;
    assert_eq!(overlapping.status, 400);
    gate.notify_one();
    assert_eq!(connect.await.unwrap().status, 200);
    // The application still gets the socket its authorizer accepted, already disconnected, so
    // that whatever it opened for it is ended.
    let mut socket = sockets.accept().await.unwrap();
    assert_eq!(socket.data, "late");
    assert!(matches!(
        socket.recv().await,
        Some(SocketEvent::Disconnected(
            DisconnectReason::TransportClosed(Some(
                crate::engineio::CloseReason::ProtocolViolation(_)
            ))
        ))
    ));
    assert!(socket.recv().await.is_none());
}
