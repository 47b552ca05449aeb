//! The gateway's metrics; [`crate::metrics_listener`] exports them with every other metric of
//! the process.
//!
//! The gateway owns the session-lifecycle metrics ([`sessions`]: connections, sessions open and
//! opened, disconnects, handshake failures, presence) and the HTTP edge's ([`http_edge`]: chat
//! routes, the main site, connection caps, reloads, the access log); only the gateway emits
//! them. The chat's own facts (messages, deliveries, replays, store commits) are
//! [`chat_core::metrics`], emitted where they happen. Both are process-wide statics in one
//! registry rather than an injected handle, for the reasons given there.
//! `docs/metrics.md` documents each metric.

pub mod http_edge;
pub mod sessions;
pub mod webhooks;

pub use http_edge::{
    access_log_dropped, config_reload, connection_parked, http_connection_refused, http_request,
    set_http_connections, tls_handshake_failed, upstream_request,
};
pub use sessions::{
    connection_opened, disconnect_reason, handshake_failed, session_ended, session_opened,
    HandshakeFailure, DISCONNECT_REASONS,
};

/// Registers every metric of the process, the chat's and the gateway's, and creates the series
/// of every bounded label combination, so that dashboards see zeros. Idempotent.
pub fn init() {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        chat_core::metrics::init();
        sessions::init();
        http_edge::init();
        webhooks::init();
    });
}

/// Everything registered, in the Prometheus text format.
pub fn encode() -> String {
    init();
    chat_core::metrics::encode()
}
