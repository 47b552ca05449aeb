//! The [`Transport`] trait: a wire protocol that carries chat sessions.
//!
//! A transport owns framing and liveness (pings, timeouts, size limits) and nothing else; it
//! turns frames into [`ClientFrame`](crate::protocol::ClientFrame)s for a
//! [`Session`] and writes the events the session yields.

use crate::service::Session;
use std::future::Future;

/// Which transport carries a session; a label for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportKind {
    /// Raw JSON frames over WebSocket.
    WebSocket,
    /// Engine.IO v4 / Socket.IO v5.
    SocketIo,
    /// Raw JSON over HTTP long-polling.
    Polling,
}

impl TransportKind {
    /// `websocket`, `socketio` or `polling`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WebSocket => "websocket",
            Self::SocketIo => "socketio",
            Self::Polling => "polling",
        }
    }
}

/// Why a session ended, as a transport reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEnd {
    /// The client closed normally.
    ClientClosed,
    /// The client stopped answering pings.
    PeerTimeout,
    /// The client broke the wire protocol (binary where text is expected, oversized frame…).
    ProtocolViolation(String),
    /// The session's outbound queue overflowed.
    Lagged,
    /// The gateway is shutting down.
    ShuttingDown,
    /// The agent's token expired and was not renewed.
    CredentialsExpired,
    /// The connection failed (reset, I/O error).
    ConnectionError(String),
}

/// A wire protocol that carries one chat session over one `Connection`.
///
/// ```
/// use chat_core::service::Session;
/// use chat_core::transport::{SessionEnd, Transport, TransportKind};
/// struct Discard;
/// impl Transport for Discard {
///     type Connection = ();
///     fn kind(&self) -> TransportKind { TransportKind::WebSocket }
///     async fn serve(&self, _conn: (), _session: Session) -> SessionEnd { SessionEnd::ClientClosed }
/// }
/// ```
pub trait Transport: Send + Sync + 'static {
    /// What the transport runs on (an upgraded stream, a polling session handle…).
    type Connection: Send + 'static;

    /// The label of this transport.
    fn kind(&self) -> TransportKind;

    /// Drives `session` over `connection` until either side ends it.
    fn serve(
        &self,
        connection: Self::Connection,
        session: Session,
    ) -> impl Future<Output = SessionEnd> + Send;
}
