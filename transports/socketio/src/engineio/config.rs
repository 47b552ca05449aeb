//! [`EngineConfig`]: the engine's limits and timers, read by the engine and by every session.

use std::time::Duration;

/// Limits and timers of the engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// How often the server pings (`pingInterval`).
    pub ping_interval: Duration,
    /// How long the client has to answer a ping (`pingTimeout`).
    pub ping_timeout: Duration,
    /// The largest polling body or WebSocket frame accepted, in bytes (`maxPayload`).
    pub max_payload: usize,
    /// The most packets in one polling body.
    pub max_packets_per_payload: usize,
    /// The per-session outbound queue, in packets; a client that lets it fill is closed.
    pub max_buffered_packets: usize,
    /// The per-session outbound queue, in bytes: a packet that would take the queue past it
    /// closes the session as for [`EngineConfig::max_buffered_packets`] (one packet alone always
    /// fits).
    pub max_buffered_bytes: usize,
    /// The per-session queue of messages not yet taken by the layer above, for an engine made
    /// with [`Engine::new`](super::Engine::new) (an [`EngineHandler`](super::EngineHandler)
    /// takes each message as it comes).
    pub inbound_queue: usize,
    /// New sessions not yet taken from [`Incoming`](super::Incoming) (an engine made with
    /// [`Engine::new`](super::Engine::new)); over it, handshakes get 503.
    pub accept_queue: usize,
    /// How long a polling-to-WebSocket upgrade may take, from the WebSocket opening to `5`.
    pub upgrade_timeout: Duration,
    /// Whether clients may open WebSockets (directly or by upgrade).
    pub allow_websocket: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            ping_interval: Duration::from_secs(25),
            ping_timeout: Duration::from_secs(20),
            max_payload: 1_000_000,
            max_packets_per_payload: 256,
            max_buffered_packets: 1024,
            max_buffered_bytes: 4 * 1024 * 1024,
            inbound_queue: 64,
            accept_queue: 1024,
            upgrade_timeout: Duration::from_secs(10),
            allow_websocket: true,
        }
    }
}
