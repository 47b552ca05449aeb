//! [`run_session`]: how every transport's chat sessions run, generic over core's
//! [`Transport`] — the one place a session's end is counted. The endpoints (`endpoints/`) and
//! the Socket.IO engines (`socketio.rs`) call it once they have admitted a session and hold
//! its transport's `Connection`.

use crate::metrics;
use chat_core::service::ChatSession;
use chat_core::transport::{SessionEnd, Transport};

/// Runs an admitted chat `session` over `connection` with `transport` until either side ends
/// it, on its own task, then counts why it ended (`chat_disconnects_total`) and calls `on_end`
/// (the access log's session line). Every transport's sessions go through here.
pub fn run_session<T: Transport>(
    transport: T,
    connection: T::Connection,
    session: ChatSession,
    on_end: impl FnOnce(&SessionEnd) + Send + 'static,
) {
    tokio::spawn(async move {
        let kind = transport.kind();
        let role = session.principal().role();
        let end = transport.serve(connection, session).await;
        metrics::session_ended(kind, role, &end);
        tracing::debug!(transport = kind.as_str(), ?end, "chat session ended");
        on_end(&end);
    });
}
