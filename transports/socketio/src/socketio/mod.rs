//! Socket.IO v5 as an Engine.IO [`EngineHandler`](crate::engineio::EngineHandler): namespaces,
//! CONNECT with an auth payload checked by an [`Authorizer`], events and acks in both
//! directions, binary attachments, DISCONNECT and the connect timeout.

mod conn;
pub mod packet;
mod server;

pub use conn::{AckPayload, AckResponder, DisconnectReason, EmitError, Emitter, SocketEvent};
pub use packet::{Decoder, Packet, PacketError, PacketType};
pub use server::{Authorizer, ConnectRequest, Socket, SocketIo, SocketIoConfig, Sockets};

#[cfg(test)]
mod tests;
