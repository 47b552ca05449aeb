//! The session-lifecycle metrics, which only the gateway emits: connections carrying chat,
//! sessions open and opened, why sessions ended, and why session requests were refused.
//! `docs/metrics.md` documents each.

use chat_core::metrics::{counter_vec, gauge, gauge_vec, TRANSPORTS};
use chat_core::model::Role;
use chat_core::service::SessionCounts;
use chat_core::transport::{SessionEnd, TransportKind};
use prometheus::{IntCounterVec, IntGauge, IntGaugeVec};
use std::sync::LazyLock;

/// Every role.
pub const ROLES: [Role; 2] = [Role::Visitor, Role::Agent];
/// Values of the `reason` label of `chat_disconnects_total`.
pub const DISCONNECT_REASONS: [&str; 7] = [
    "client_closed",
    "peer_timeout",
    "protocol_violation",
    "slow_consumer",
    "shutting_down",
    "connection_error",
    "token_expired",
];

/// `chat_connections_open{transport, role}` (gauge): network connections carrying chat now —
/// upgraded WebSockets (raw and Socket.IO) and HTTP polling requests in flight (raw long-polling
/// and Socket.IO polling). Emitted by the endpoints ([`connection_opened`]).
pub static CONNECTIONS_OPEN: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_vec(
        "chat_connections_open",
        "Network connections carrying chat now: upgraded WebSockets and polling requests in flight.",
        &["transport", "role"],
    )
});

/// `chat_sessions_open{transport, role}` (gauge): chat sessions open on this process, read from
/// the chat service's own counts at scrape time ([`set_sessions_open`]). A session outlives the
/// polling requests that carry it.
pub static SESSIONS_OPEN: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_vec(
        "chat_sessions_open",
        "Chat sessions open on this process.",
        &["transport", "role"],
    )
});

/// `chat_connects_total{transport, role}` (counter): chat sessions opened (authenticated
/// handshakes). Emitted by the admission path when it opens one ([`session_opened`]).
pub static CONNECTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "chat_connects_total",
        "Chat sessions opened.",
        &["transport", "role"],
    )
});

/// `chat_disconnects_total{transport, role, reason}` (counter): chat sessions ended, by why
/// (see [`DISCONNECT_REASONS`]). Emitted by `run_session` (`gateway/src/run_session.rs`), the
/// one place every transport's session ends, when it returns its [`SessionEnd`]
/// ([`session_ended`]).
pub static DISCONNECTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "chat_disconnects_total",
        "Chat sessions ended, by reason.",
        &["transport", "role", "reason"],
    )
});

/// `chat_slow_consumer_disconnects_total{transport, role}` (counter): sessions ended because
/// their outbound queue overflowed (`CHAT_SESSION_QUEUE`). Emitted with the disconnect.
pub static SLOW_CONSUMER_DISCONNECTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "chat_slow_consumer_disconnects_total",
        "Sessions ended because their outbound queue overflowed.",
        &["transport", "role"],
    )
});

/// `chat_handshake_failures_total{transport, role, reason}` (counter): session requests refused
/// before a session opened (see [`HandshakeFailure`]). Emitted by the admission path and the
/// Socket.IO endpoint.
pub static HANDSHAKE_FAILURES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "chat_handshake_failures_total",
        "Session requests refused before a session opened, by reason.",
        &["transport", "role", "reason"],
    )
});

/// `chat_agents_online` (gauge): agent sessions connected to this process (the presence count
/// visitors see). Set at scrape time.
pub static AGENTS_ONLINE: LazyLock<IntGauge> = LazyLock::new(|| {
    gauge(
        "chat_agents_online",
        "Agent sessions connected to this process.",
    )
});

/// `chat_visitors_online` (gauge): distinct visitors with at least one session on this process.
/// Set at scrape time.
pub static VISITORS_ONLINE: LazyLock<IntGauge> = LazyLock::new(|| {
    gauge(
        "chat_visitors_online",
        "Distinct visitors with at least one session on this process.",
    )
});

/// Why a session request was refused before a session opened: the `reason` of
/// `chat_handshake_failures_total` (`crate::wire_error` maps each refusal onto one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeFailure {
    /// Missing, expired or invalid credentials (401, Socket.IO CONNECT refused).
    Unauthorized,
    /// The `Origin` is not in `CHAT_ALLOWED_ORIGINS` / `ADMIN_ALLOWED_ORIGINS` (403).
    ForbiddenOrigin,
    /// Not a valid handshake: no upgrade, wrong WebSocket version, bad Engine.IO query (400/426).
    BadRequest,
    /// The store could not open the session (503).
    Unavailable,
    /// Anything else (500).
    Internal,
    /// Too many session opens from one client address (`CHAT_SESSION_OPENS_PER_IP_PER_MIN`, 429).
    RateLimited,
    /// Too many sessions open from one client address (`CHAT_MAX_CONNECTIONS_PER_IP`, 429).
    TooManyFromAddress,
    /// The gateway holds its most sessions (`CHAT_MAX_CONNECTIONS`, 503).
    TooManyConnections,
}

impl HandshakeFailure {
    /// Every reason.
    pub const ALL: [HandshakeFailure; 8] = [
        Self::Unauthorized,
        Self::ForbiddenOrigin,
        Self::BadRequest,
        Self::Unavailable,
        Self::Internal,
        Self::RateLimited,
        Self::TooManyFromAddress,
        Self::TooManyConnections,
    ];

    /// The `reason` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::ForbiddenOrigin => "forbidden_origin",
            Self::BadRequest => "bad_request",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
            Self::RateLimited => "rate_limited",
            Self::TooManyFromAddress => "too_many_from_address",
            Self::TooManyConnections => "too_many_connections",
        }
    }
}

/// Creates the series of every bounded label combination, so that dashboards see zeros.
pub(super) fn init() {
    for transport in TRANSPORTS {
        let t = transport.as_str();
        for role in ROLES {
            let r = role.as_str();
            CONNECTIONS_OPEN.with_label_values(&[t, r]);
            SESSIONS_OPEN.with_label_values(&[t, r]);
            CONNECTS.with_label_values(&[t, r]);
            SLOW_CONSUMER_DISCONNECTS.with_label_values(&[t, r]);
            for reason in DISCONNECT_REASONS {
                DISCONNECTS.with_label_values(&[t, r, reason]);
            }
            for reason in HandshakeFailure::ALL {
                HANDSHAKE_FAILURES.with_label_values(&[t, r, reason.as_str()]);
            }
        }
    }
    LazyLock::force(&AGENTS_ONLINE);
    LazyLock::force(&VISITORS_ONLINE);
}

/// A session request on `transport` for `role` was refused.
pub fn handshake_failed(transport: TransportKind, role: Role, reason: HandshakeFailure) {
    HANDSHAKE_FAILURES
        .with_label_values(&[transport.as_str(), role.as_str(), reason.as_str()])
        .inc();
}

/// A chat session for `role` opened on `transport`.
pub fn session_opened(transport: TransportKind, role: Role) {
    CONNECTS
        .with_label_values(&[transport.as_str(), role.as_str()])
        .inc();
}

/// The `reason` label of a [`SessionEnd`].
pub fn disconnect_reason(end: &SessionEnd) -> &'static str {
    match end {
        SessionEnd::ClientClosed => "client_closed",
        SessionEnd::PeerTimeout => "peer_timeout",
        SessionEnd::ProtocolViolation(_) => "protocol_violation",
        SessionEnd::Lagged => "slow_consumer",
        SessionEnd::ShuttingDown => "shutting_down",
        SessionEnd::ConnectionError(_) => "connection_error",
        SessionEnd::CredentialsExpired => "token_expired",
    }
}

/// A transport's serve loop returned `end` for a session of `role`.
pub fn session_ended(transport: TransportKind, role: Role, end: &SessionEnd) {
    let (t, r) = (transport.as_str(), role.as_str());
    DISCONNECTS
        .with_label_values(&[t, r, disconnect_reason(end)])
        .inc();
    if *end == SessionEnd::Lagged {
        SLOW_CONSUMER_DISCONNECTS.with_label_values(&[t, r]).inc();
    }
}

/// The sessions open now, by transport and role (pairs without one are 0).
pub fn set_sessions_open(counts: &SessionCounts) {
    for transport in TRANSPORTS {
        for role in ROLES {
            let open = counts
                .by_transport_and_role
                .iter()
                .find(|(t, r, _)| *t == transport && *r == role)
                .map_or(0, |(_, _, n)| *n);
            SESSIONS_OPEN
                .with_label_values(&[transport.as_str(), role.as_str()])
                .set(i64::from(open));
        }
    }
}

/// Online agents and distinct online visitors on this process.
pub fn set_online(agents: u32, visitors: usize) {
    AGENTS_ONLINE.set(i64::from(agents));
    VISITORS_ONLINE.set(visitors as i64);
}

/// Counts a network connection as open until dropped.
pub struct ConnectionGuard(IntGauge);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// A connection for `role` on `transport` opened; it counts until the guard is dropped.
pub fn connection_opened(transport: TransportKind, role: Role) -> ConnectionGuard {
    let gauge = CONNECTIONS_OPEN.with_label_values(&[transport.as_str(), role.as_str()]);
    gauge.inc();
    ConnectionGuard(gauge)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_session_end_has_a_documented_reason() {
        let ends = [
            SessionEnd::ClientClosed,
            SessionEnd::PeerTimeout,
            SessionEnd::ProtocolViolation("binary frame".into()),
            SessionEnd::Lagged,
            SessionEnd::ShuttingDown,
            SessionEnd::ConnectionError("reset".into()),
            SessionEnd::CredentialsExpired,
        ];
        let reasons: Vec<_> = ends.iter().map(disconnect_reason).collect();
        assert_eq!(reasons, DISCONNECT_REASONS);
    }
}
