//! # chat-transport-socketio
//!
//! Engine.IO v4 and Socket.IO v5 for the chat gateway, kept apart as in socketioxide:
//!
//! - [`engineio`] knows packets, sessions, heartbeats and transports (HTTP long-polling and
//!   WebSocket, including the upgrade from one to the other). It is HTTP-framework agnostic:
//!   the gateway hands it plain request parts and gets a plain [`engineio::EngineResponse`]
//!   back; a WebSocket is any [`engineio::WsLink`] of [`engineio::WsFrame`]s. It reports each
//!   session to an [`engineio::EngineHandler`], in the task that carries the session.
//! - [`socketio`] knows namespaces, CONNECT with auth, events, acks (both ways), binary
//!   attachments and DISCONNECT: [`socketio::SocketIo`] is the engine's handler.
//!
//! How the gateway is expected to drive it (see `README.md` for the full wiring plan):
//!
//! ```no_run
//! use chat_transport_socketio::engineio::{Engine, EngineConfig, EngineRequest, Method};
//! use chat_transport_socketio::socketio::{ConnectRequest, SocketEvent, SocketIo, SocketIoConfig};
//! use std::sync::Arc;
//!
//! # async fn demo() {
//! let authorize = |req: ConnectRequest| async move {
//!     match req.auth {
//!         Some(auth) if auth["token"] == "secret" => Ok("agent-1".to_string()),
//!         _ => Err("Not authorized".to_string()),
//!     }
//! };
//! let (io, mut sockets) = SocketIo::new(SocketIoConfig::default(), authorize);
//! // Socket.IO decodes each session's packets in the task that carries the session.
//! let engine = Engine::with_handler(EngineConfig::default(), Arc::new(io));
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
