//! Engine.IO v4: packets, sessions, heartbeats, HTTP long-polling, WebSocket and the upgrade
//! between them. HTTP-framework agnostic: see [`Engine::handle_polling`] and
//! [`Engine::websocket_request`].

mod config;
mod engine;
mod handler;
pub mod packet;
mod session;
mod ws;

pub use engine::{Engine, EngineConfig, EngineError, EngineRequest, EngineResponse, Method};
pub use handler::{EngineHandler, EngineSocket, Handling, Incoming, SessionHandler};
pub use packet::{Handshake, Packet, PacketError, WsFrame};
pub use session::{CloseReason, EngineMessage, EngineSender, SendError, TransportType};
pub use ws::{WsAccept, WsConnection, WsLink};

#[cfg(test)]
mod tests;
