//! Engine.IO v4: packets, sessions, heartbeats, HTTP long-polling, WebSocket and the upgrade
//! between them. HTTP-framework agnostic: see [`Engine::handle_polling`] and
//! [`Engine::websocket_request`].

mod config;
mod engine;
pub mod packet;
mod session;
mod socket;
mod ws;

pub use engine::{Engine, EngineConfig, EngineError, EngineRequest, EngineResponse, Method};
pub use packet::{Handshake, Packet, PacketError, WsFrame};
pub use session::{
    CloseReason, EngineHandler, EngineMessage, EngineSender, Handling, SendError, SessionHandler,
    TransportType,
};
pub use socket::{EngineSocket, Incoming};
pub use ws::{WsAccept, WsConnection, WsLink};

#[cfg(test)]
mod tests;
