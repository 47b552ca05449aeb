//! The [`Transport`] trait: a wire protocol that carries chat sessions.
//!
//! A transport owns framing and liveness (pings, timeouts, size limits) and nothing else; it
//! turns frames into [`ClientFrame`](crate::protocol::ClientFrame)s for a
//! [`ChatSession`] and writes the events the session yields.
//!
//! The seam is exactly this: the gateway's admission path opens a [`ChatSession`] (an
//! authenticated principal), the transport [`serve`](Transport::serve)s it over one
//! `Connection` — submitting each client command with `ChatSession::handle` and writing its answer,
//! writing what `ChatSession::next_event` yields — and reports why it ended as a [`SessionEnd`].
//! The three transports implement it: `chat_transport_websocket::WebSocketTransport` (an
//! upgraded stream), `chat_transport_polling::PollingTransport` (the state a polling session's
//! HTTP requests share) and `chat_transport_socketio::chat::SocketIoTransport` (a Socket.IO
//! socket whose CONNECT opened the session). The gateway runs all of them through one generic
//! function (`gateway/src/run_session.rs`), which counts the session's end.

use crate::service::ChatSession;
use std::future::Future;

// Defined in `session_end.rs`, which neither `service/` nor `metrics.rs` reach through this
// file (this file imports `service`): kept here as the names transports use.
pub use crate::session_end::{SessionEnd, TransportKind};

/// A wire protocol that carries one chat session over one `Connection`.
///
/// ```
/// use chat_core::service::ChatSession;
/// use chat_core::transport::{SessionEnd, Transport, TransportKind};
/// struct Discard;
/// impl Transport for Discard {
///     type Connection = ();
///     fn kind(&self) -> TransportKind { TransportKind::WebSocket }
///     async fn serve(&self, _conn: (), _session: ChatSession) -> SessionEnd { SessionEnd::ClientClosed }
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
        session: ChatSession,
    ) -> impl Future<Output = SessionEnd> + Send;
}
