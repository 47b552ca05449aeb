//! What every layer says about a session's transport and its end: the [`TransportKind`] label
//! and the [`SessionEnd`] a transport reports. A file of its own so that the service and the
//! metrics, which the [`Transport`](crate::transport::Transport) trait's file imports, can name
//! them without importing that file back.

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
