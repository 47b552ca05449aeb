//! # chat-transport-socketio
//!
//! Engine.IO v4 and Socket.IO v5 for the chat gateway, kept apart as in socketioxide:
//!
//! - [`engineio`] knows packets, sessions, heartbeats and transports (HTTP long-polling and
//!   WebSocket, including the upgrade from one to the other). It is HTTP-framework agnostic:
//!   the gateway hands it plain request parts and gets a plain [`engineio::EngineResponse`]
//!   back; a WebSocket is driven as two channels of [`engineio::WsFrame`]s.
//! - [`socketio`] knows namespaces, CONNECT with auth, events, acks (both ways), binary
//!   attachments and DISCONNECT, on top of an [`engineio::EngineSocket`].
//!
//! How the gateway is expected to drive it (see `README.md` for the full wiring plan):
//!
//! ```no_run
//! use chat_transport_socketio::engineio::{Engine, EngineConfig, EngineRequest, Method};
//! use chat_transport_socketio::socketio::{ConnectRequest, SocketEvent, SocketIo, SocketIoConfig};
//!
//! # async fn demo() {
//! let (engine, mut incoming) = Engine::new(EngineConfig::default());
//! let authorize = |req: ConnectRequest| async move {
//!     match req.auth {
//!         Some(auth) if auth["token"] == "secret" => Ok("agent-1".to_string()),
//!         _ => Err("Not authorized".to_string()),
//!     }
//! };
//! let (io, mut sockets) = SocketIo::new(SocketIoConfig::default(), authorize);
//! // One Socket.IO task per Engine.IO session.
//! tokio::spawn(async move {
//!     while let Some(session) = incoming.accept().await {
//!         let io = io.clone();
//!         tokio::spawn(async move { io.serve(session).await });
//!     }
//! });
//! // The application side: connected sockets and their events.
//! tokio::spawn(async move {
//!     while let Some(mut socket) = sockets.accept().await {
//!         tokio::spawn(async move {
//!             while let Some(SocketEvent::Event { name, args, ack, .. }) = socket.recv().await {
//!                 if let Some(ack) = ack {
//!                     let _ = ack.send(args, vec![]);
//!                 }
//!                 let _ = socket.emitter().emit(&name, vec![], vec![]);
//!             }
//!         });
//!     }
//! });
//! // The HTTP side: each polling request, as plain parts.
//! let response = engine
//!     .handle_polling(EngineRequest {
//!         method: Method::Get,
//!         query: "EIO=4&transport=polling".into(),
//!         body: Default::default(),
//!     })
//!     .await;
//! assert_eq!(response.status, 200);
//! # }
//! ```
//!
//! [`chat`] maps the chat protocol onto events and acks, with connection-state recovery, as
//! core's `Transport`: [`chat::SocketIoTransport`] serves a chat session over a connected
//! socket. `README.md` next to this crate lists what is implemented.

#![warn(missing_docs)]

pub mod chat;
pub mod engineio;
pub mod offset;
pub mod socketio;
