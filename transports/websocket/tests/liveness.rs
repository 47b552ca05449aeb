//! The transport's own rules, over an in-memory duplex stream with a real embedded store:
//! pings and idle timeout, shutdown, slow consumers, frame limits.

use chat_core::model::{Principal, VisitorId};
use chat_core::service::{ChatService, ServiceConfig};
use chat_core::transport::{SessionEnd, Transport, TransportKind};
use chat_storage::EmbeddedStore;
use chat_transport_websocket::{Upgraded, WebSocketSettings, WebSocketTransport};
use futures_util::{SinkExt, StreamExt};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::DuplexStream;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

struct Rig {
    service: ChatService,
    _dir: tempfile::TempDir,
}

async fn rig(config: ServiceConfig) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open_async(dir.path().join("chat.sqlite3"))
        .await
        .unwrap();
    Rig {
        service: ChatService::new(Arc::new(store), config),
        _dir: dir,
    }
}

async fn visitor_session(rig: &Rig) -> chat_core::service::ChatSession {
    let principal = Principal::Visitor {
        visitor_id: VisitorId::new_random(),
        site_id: "default".into(),
    };
    rig.service
        .open_session(principal, None, TransportKind::WebSocket)
        .await
        .unwrap()
}

async fn start(
    rig: &Rig,
    settings: WebSocketSettings,
) -> (
    WebSocketStream<DuplexStream>,
    tokio::task::JoinHandle<SessionEnd>,
) {
    let session = visitor_session(rig).await;
    let (client, server) = tokio::io::duplex(64 * 1024);
    let transport = WebSocketTransport::new(settings);
    let task = tokio::spawn(async move {
        transport
            .serve(Upgraded::new(Box::new(server)), session)
            .await
    });
    let client = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
    (client, task)
}

async fn close_code(client: &mut WebSocketStream<DuplexStream>) -> u16 {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), client.next()).await {
            Ok(Some(Ok(Message::Close(Some(frame))))) => return u16::from(frame.code),
            Ok(Some(Ok(_))) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

/// Reads raw server frames (unmasked) from a peer that never writes a byte back.
async fn read_frame(io: &mut DuplexStream) -> Option<(u8, Vec<u8>)> {
    use tokio::io::AsyncReadExt;
    let mut head = [0u8; 2];
    io.read_exact(&mut head).await.ok()?;
    let len = match head[1] & 0x7f {
        126 => {
            let mut ext = [0u8; 2];
            io.read_exact(&mut ext).await.ok()?;
            u16::from_be_bytes(ext) as usize
        }
        127 => {
            let mut ext = [0u8; 8];
            io.read_exact(&mut ext).await.ok()?;
            u64::from_be_bytes(ext) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0u8; len];
    io.read_exact(&mut payload).await.ok()?;
    Some((head[0] & 0x0f, payload))
}

#[tokio::test]
async fn pings_and_closes_a_silent_peer_with_1008() {
    let rig = rig(ServiceConfig::default()).await;
    let session = visitor_session(&rig).await;
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    let transport = WebSocketTransport::new(WebSocketSettings {
        ping_interval: Duration::from_millis(100),
        idle_timeout: Duration::from_millis(350),
        ..WebSocketSettings::default()
    });
    let task = tokio::spawn(async move {
        transport
            .serve(Upgraded::new(Box::new(server)), session)
            .await
    });
    let mut pings = 0;
    let close_code = loop {
        let frame = tokio::time::timeout(Duration::from_secs(5), read_frame(&mut client))
            .await
            .expect("server went quiet without closing");
        match frame {
            Some((0x9, _)) => pings += 1,
            Some((0x8, payload)) => break u16::from_be_bytes([payload[0], payload[1]]),
            Some(_) => {}
            None => panic!("stream ended without a close frame"),
        }
    };
    assert!(pings >= 2, "saw {pings} pings");
    assert_eq!(close_code, 1008);
    assert_eq!(task.await.unwrap(), SessionEnd::PeerTimeout);
}

#[tokio::test]
async fn an_answering_peer_stays_connected() {
    let rig = rig(ServiceConfig::default()).await;
    let settings = WebSocketSettings {
        ping_interval: Duration::from_millis(100),
        idle_timeout: Duration::from_millis(350),
        ..WebSocketSettings::default()
    };
    let (mut client, task) = start(&rig, settings).await;
    // Reading drives tungstenite's automatic pong replies.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    while tokio::time::Instant::now() < deadline {
        if let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(50), client.next()).await
        {
            assert!(
                !matches!(msg, Ok(Message::Close(_))),
                "closed while answering pings"
            );
        }
    }
    assert!(!task.is_finished());
}

#[tokio::test]
async fn shutdown_closes_with_1001() {
    let rig = rig(ServiceConfig::default()).await;
    let (mut client, task) = start(&rig, WebSocketSettings::default()).await;
    let welcome = client.next().await.unwrap().unwrap();
    assert!(welcome.to_text().unwrap().contains("\"welcome\""));
    rig.service.begin_shutdown();
    assert_eq!(close_code(&mut client).await, 1001);
    assert_eq!(task.await.unwrap(), SessionEnd::ShuttingDown);
}

#[tokio::test]
async fn a_session_that_falls_behind_is_closed_with_1013_and_others_are_spared() {
    let rig = rig(ServiceConfig {
        session_queue: 4,
        ..ServiceConfig::default()
    })
    .await;
    let visitor = VisitorId::new_random();
    let principal = Principal::Visitor {
        visitor_id: visitor,
        site_id: "default".into(),
    };
    // The slow session: opened, never driven, so its queue fills.
    let slow = rig
        .service
        .open_session(principal.clone(), None, TransportKind::WebSocket)
        .await
        .unwrap();
    let (client, server) = tokio::io::duplex(64 * 1024);
    let mut fast = rig
        .service
        .open_session(principal.clone(), None, TransportKind::WebSocket)
        .await
        .unwrap();
    for i in 0..10 {
        rig.service
            .send(
                &principal,
                None,
                Some(format!("m{i}")),
                format!("message {i}"),
            )
            .await
            .unwrap();
        // The fast session keeps up.
        loop {
            if let chat_core::service::Outbound::Event(
                chat_core::protocol::ServerEvent::Message { message },
            ) = fast.next_event().await
            {
                assert_eq!(message.seq, i + 1);
                break;
            }
        }
    }
    let transport = WebSocketTransport::new(WebSocketSettings::default());
    let task =
        tokio::spawn(async move { transport.serve(Upgraded::new(Box::new(server)), slow).await });
    let mut client = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
    assert_eq!(close_code(&mut client).await, 1013);
    assert_eq!(task.await.unwrap(), SessionEnd::Lagged);
}

#[tokio::test]
async fn text_frames_are_answered_and_oversized_ones_closed_with_1009() {
    let rig = rig(ServiceConfig::default()).await;
    let settings = WebSocketSettings {
        max_message_bytes: 1024,
        ..WebSocketSettings::default()
    };
    let (mut client, task) = start(&rig, settings).await;
    client.next().await.unwrap().unwrap(); // welcome
    client
        .send(Message::Text(
            r#"{"type":"send","id":"1","body":"hi"}"#.into(),
        ))
        .await
        .unwrap();
    let mut saw_ack = false;
    while !saw_ack {
        let msg = client.next().await.unwrap().unwrap();
        let v: serde_json::Value = serde_json::from_str(msg.to_text().unwrap()).unwrap();
        saw_ack = v["type"] == "ack" && v["id"] == "1";
    }
    client
        .send(Message::Text("x".repeat(2048).into()))
        .await
        .unwrap();
    assert_eq!(close_code(&mut client).await, 1009);
    assert!(matches!(
        task.await.unwrap(),
        SessionEnd::ProtocolViolation(_)
    ));
}

#[tokio::test]
async fn a_client_close_is_answered_with_a_close_frame() {
    let rig = rig(ServiceConfig::default()).await;
    let (mut client, task) = start(&rig, WebSocketSettings::default()).await;
    client.next().await.unwrap().unwrap(); // welcome
    client.close(None).await.unwrap();
    // The client's stream ends cleanly only once the server's close reply arrived.
    loop {
        match tokio::time::timeout(Duration::from_secs(5), client.next()).await {
            Ok(None) => break,
            Ok(Some(Ok(_))) => continue,
            other => panic!("expected a clean end after the close handshake, got {other:?}"),
        }
    }
    assert_eq!(task.await.unwrap(), SessionEnd::ClientClosed);
}

#[tokio::test]
async fn bytes_read_ahead_by_the_edge_are_not_lost() {
    let rig = rig(ServiceConfig::default()).await;
    let session = visitor_session(&rig).await;
    // A masked client text frame, as the edge would have buffered it with the request head.
    let payload = br#"{"type":"send","id":"early","body":"first"}"#;
    let mask = [1u8, 2, 3, 4];
    let mut frame = vec![0x81, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    let (client, server) = tokio::io::duplex(64 * 1024);
    let transport = WebSocketTransport::new(WebSocketSettings::default());
    let _task = tokio::spawn(async move {
        transport
            .serve(
                Upgraded {
                    stream: Box::new(server),
                    read_ahead: frame,
                },
                session,
            )
            .await
    });
    let mut client = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), client.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(msg.to_text().unwrap()).unwrap();
        if v["id"] == "early" {
            assert_eq!(v["type"], "ack", "{v}");
            break;
        }
    }
}
