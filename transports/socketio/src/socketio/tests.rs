//! Namespace-layer tests over an in-memory WebSocket (Engine.IO frames in and out).

use super::packet::placeholder;
use super::*;
use crate::engineio::{Engine, EngineConfig, WsConnection, WsFrame};
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
    let (engine, mut incoming) = Engine::new(EngineConfig::default());
    let (io, sockets) = SocketIo::new(config, authorize as Auth);
    let accept = engine
        .websocket_request("EIO=4&transport=websocket")
        .unwrap_or_else(|r| panic!("{}", r.body_text()));
    let (c2s_tx, c2s_rx) = mpsc::channel(16);
    let (s2c_tx, s2c_rx) = mpsc::channel(16);
    tokio::spawn(accept.serve(WsConnection {
        incoming: c2s_rx,
        outgoing: s2c_tx,
    }));
    tokio::spawn(async move {
        while let Some(socket) = incoming.accept().await {
            let io = io.clone();
            tokio::spawn(async move { io.serve(socket).await });
        }
    });
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
