//! The [`Transport`] trait: a wire protocol that carries chat sessions.
//!
//! A transport owns framing and liveness (pings, timeouts, size limits) and nothing else; it
//! turns frames into [`ClientFrame`](crate::protocol::ClientFrame)s for a
//! [`ChatSession`] and writes the events the session yields.

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
