//! Prometheus metrics of the whole process, in the `prometheus` crate's default registry.
//!
//! Every crate records through the functions here (transports, stores, the gateway), so nothing
//! is plumbed through constructors. Labels are bounded: transports, roles, reasons and route
//! names are fixed sets in code, never ids or paths from the wire. `docs/metrics.md` documents
//! every metric; a test compares it with what `/metrics` exports.
//!
//! Histograms can be switched off at run time ([`set_histograms_enabled`], the gateway's
//! `CHAT_METRICS_HISTOGRAMS=off`) to measure what they cost; counters and gauges always count.

use crate::model::{Message, Role};
use crate::session_end::{SessionEnd, TransportKind};
use prometheus::core::Collector;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, TextEncoder,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, Once};
use std::time::Duration;

/// Every transport, in label order.
pub const TRANSPORTS: [TransportKind; 3] = [
    TransportKind::WebSocket,
    TransportKind::SocketIo,
    TransportKind::Polling,
];
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
/// Values of the `direction` label.
pub const DIRECTIONS: [&str; 2] = ["visitor_to_agent", "agent_to_visitor"];
/// Values of the `transport` label of `chat_messages_total`: the three transports plus the HTTP
/// API.
pub const MESSAGE_TRANSPORTS: [&str; 4] = ["websocket", "socketio", "polling", "http_api"];

static HISTOGRAMS: AtomicBool = AtomicBool::new(true);

/// Switches every histogram of this module on or off (on by default). Off, `observe_*` calls
/// return before touching a histogram; counters and gauges keep counting.
pub fn set_histograms_enabled(enabled: bool) {
    HISTOGRAMS.store(enabled, Ordering::Relaxed);
}

/// Whether histograms are observed.
pub fn histograms_enabled() -> bool {
    HISTOGRAMS.load(Ordering::Relaxed)
}

fn register<T: Collector + Clone + 'static>(metric: T) -> T {
    prometheus::default_registry()
        .register(Box::new(metric.clone()))
        .expect("metric names are unique");
    metric
}

fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    register(IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"))
}

fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"))
}

fn gauge(name: &str, help: &str) -> IntGauge {
    register(IntGauge::new(name, help).expect("valid metric"))
}

fn histogram_vec(name: &str, help: &str, labels: &[&str], buckets: &[f64]) -> HistogramVec {
    register(
        HistogramVec::new(
            HistogramOpts::new(name, help).buckets(buckets.to_vec()),
            labels,
        )
        .expect("valid metric"),
    )
}

/// Latency buckets in seconds, from half a millisecond to ten seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// `chat_connections_open{transport, role}` (gauge): network connections carrying chat now —
/// upgraded WebSockets (raw and Socket.IO) and HTTP polling requests in flight (raw long-polling
/// and Socket.IO polling). Emitted by the gateway's edge.
pub static CONNECTIONS_OPEN: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_vec(
        "chat_connections_open",
        "Network connections carrying chat now: upgraded WebSockets and polling requests in flight.",
        &["transport", "role"],
    )
});

/// `chat_sessions_open{transport, role}` (gauge): chat sessions open on this process. A session
/// outlives the polling requests that carry it. Emitted by `ChatService` when a session opens
/// and when it is dropped.
pub static SESSIONS_OPEN: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_vec(
        "chat_sessions_open",
        "Chat sessions open on this process.",
        &["transport", "role"],
    )
});

/// `chat_connects_total{transport, role}` (counter): chat sessions opened (authenticated
/// handshakes). Emitted by `ChatService::open_session`.
pub static CONNECTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "chat_connects_total",
        "Chat sessions opened.",
        &["transport", "role"],
    )
});

/// `chat_disconnects_total{transport, role, reason}` (counter): chat sessions ended, by why
/// (see [`DISCONNECT_REASONS`]). Emitted where each transport's serve loop returns.
pub static DISCONNECTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "chat_disconnects_total",
        "Chat sessions ended, by reason.",
        &["transport", "role", "reason"],
    )
});

/// `chat_handshake_failures_total{transport, role, reason}` (counter): session requests refused
/// before a session opened (see [`HandshakeFailure`]). Emitted by the gateway.
pub static HANDSHAKE_FAILURES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "chat_handshake_failures_total",
        "Session requests refused before a session opened, by reason.",
        &["transport", "role", "reason"],
    )
});

/// `chat_commands_refused_total{transport, reason}` (counter): commands of an open session (or
/// HTTP API requests) refused by a limit, not executed. `transport` is one of
/// [`MESSAGE_TRANSPORTS`]; `reason` is `rate_limited` (`CHAT_SEND_RATE_PER_SEC`).
pub static COMMANDS_REFUSED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "chat_commands_refused_total",
        "Commands refused by a limit (not executed), by reason.",
        &["transport", "reason"],
    )
});

/// `chat_http_connections_open` (gauge): TCP connections the public listeners hold now (after
/// the TLS handshake, until they close or a chat WebSocket leaves the HTTP layer). Emitted by
/// the gateway's connection caps.
pub static HTTP_CONNECTIONS_OPEN: LazyLock<IntGauge> = LazyLock::new(|| {
    gauge(
        "chat_http_connections_open",
        "TCP connections held by the public listeners.",
    )
});

/// `chat_http_connections_refused_total{reason}` (counter): connections closed at once by the
/// caps `CHAT_MAX_HTTP_CONNECTIONS` (`too_many_connections`) and
/// `CHAT_MAX_HTTP_CONNECTIONS_PER_IP` (`too_many_from_address`).
pub static HTTP_CONNECTIONS_REFUSED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "chat_http_connections_refused_total",
        "Connections refused by the connection caps, by reason.",
        &["reason"],
    )
});

/// `chat_config_reloads_total{part, result}` (counter): reloads on SIGHUP, per reloadable part
/// (`certificates`, `config`) and result (`ok`, `refused`: the old setting was kept). Emitted by
/// the gateway's `reload` module.
pub static CONFIG_RELOADS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "chat_config_reloads_total",
        "Reloads of a part of the configuration, by part and result.",
        &["part", "result"],
    )
});

/// `chat_access_log_dropped_total` (counter): access log lines dropped because the writer
/// could not keep up (its bounded queue was full, e.g. nobody reads the gateway's stdout).
/// Emitted by the gateway's `access_log` module; requests never wait for the log.
pub static ACCESS_LOG_DROPPED: LazyLock<prometheus::IntCounter> = LazyLock::new(|| {
    register(
        prometheus::IntCounter::new(
            "chat_access_log_dropped_total",
            "Access log lines dropped because the log writer could not keep up.",
        )
        .expect("valid metric"),
    )
});

/// An access log line was dropped (the writer's queue was full).
pub fn access_log_dropped() {
    ACCESS_LOG_DROPPED.inc();
}

/// A reload of `part` was applied (`ok`) or refused.
pub fn config_reload(part: &'static str, ok: bool) {
    CONFIG_RELOADS
        .with_label_values(&[part, if ok { "ok" } else { "refused" }])
        .inc();
}

/// The public listeners hold `open` connections.
pub fn set_http_connections(open: usize) {
    HTTP_CONNECTIONS_OPEN.set(i64::try_from(open).unwrap_or(i64::MAX));
}

/// A connection was refused by a connection cap (`reason`).
pub fn http_connection_refused(reason: &'static str) {
    HTTP_CONNECTIONS_REFUSED.with_label_values(&[reason]).inc();
}

/// A visitor's send on `transport` was refused by the send rate limit.
pub fn send_rate_limited(transport: TransportKind) {
    COMMANDS_REFUSED
        .with_label_values(&[transport.as_str(), "rate_limited"])
        .inc();
}

/// A send through the HTTP API was refused by the send rate limit.
pub fn api_send_rate_limited() {
    COMMANDS_REFUSED
        .with_label_values(&["http_api", "rate_limited"])
        .inc();
}

/// `chat_slow_consumer_disconnects_total{transport, role}` (counter): sessions ended because
/// their outbound queue overflowed (`CHAT_SESSION_QUEUE`). Emitted with the disconnect.
pub static SLOW_CONSUMER_DISCONNECTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "chat_slow_consumer_disconnects_total",
        "Sessions ended because their outbound queue overflowed.",
        &["transport", "role"],
    )
});

/// `chat_agents_online` (gauge): agent sessions connected to this process (the presence count
/// visitors see). Set by the gateway at scrape time.
pub static AGENTS_ONLINE: LazyLock<IntGauge> = LazyLock::new(|| {
    gauge(
        "chat_agents_online",
        "Agent sessions connected to this process.",
    )
});

/// `chat_visitors_online` (gauge): distinct visitors with at least one session on this process.
/// Set by the gateway at scrape time.
pub static VISITORS_ONLINE: LazyLock<IntGauge> = LazyLock::new(|| {
    gauge(
        "chat_visitors_online",
        "Distinct visitors with at least one session on this process.",
    )
});

/// `chat_conversations_open` (gauge): conversations with status `open` in the store (all
/// nodes). Refreshed by the gateway every few seconds.
pub static CONVERSATIONS_OPEN: LazyLock<IntGauge> = LazyLock::new(|| {
    gauge(
        "chat_conversations_open",
        "Conversations with status open in the store.",
    )
});

/// `chat_messages_total{direction, transport}` (counter): messages committed (retried
/// duplicates excluded), by who wrote them and what carried them in. Emitted by
/// `ChatSession::execute` and the HTTP API.
pub static MESSAGES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "chat_messages_total",
        "Messages committed, by direction and by the transport that carried them in.",
        &["direction", "transport"],
    )
});

/// `chat_store_commit_duration_seconds{store}` (histogram): time to commit one batch of
/// messages. Emitted by the stores' message writers.
pub static STORE_COMMIT_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    histogram_vec(
        "chat_store_commit_duration_seconds",
        "Time to commit one batch of messages to the store.",
        &["store"],
        LATENCY_BUCKETS,
    )
});

/// `chat_store_commit_batch_size{store}` (histogram): messages per store commit.
pub static STORE_COMMIT_BATCH: LazyLock<HistogramVec> = LazyLock::new(|| {
    histogram_vec(
        "chat_store_commit_batch_size",
        "Messages per store commit.",
        &["store"],
        &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0],
    )
});

/// `chat_delivery_latency_seconds{direction, transport}` (histogram): from the store commit of a
/// message (`created_at`) to its hand-over to the receiving session's transport, for live
/// deliveries to the other role (replays and echoes to the sender's own sessions excluded).
/// `transport` is the receiver's. Emitted by `ChatSession::next_event`.
pub static DELIVERY_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    histogram_vec(
        "chat_delivery_latency_seconds",
        "From store commit to hand-over to the receiving transport, live deliveries only.",
        &["direction", "transport"],
        LATENCY_BUCKETS,
    )
});

/// `chat_replayed_messages_total{transport}` (counter): messages replayed from the store by
/// `resume` (and Socket.IO connection-state recovery). Emitted by `ChatSession::resume`.
pub static REPLAYED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "chat_replayed_messages_total",
        "Messages replayed from the store on resume.",
        &["transport"],
    )
});

/// `chat_held_spilled_total{transport}` (counter): sessions whose messages held while waiting for
/// `resume` outgrew `CHAT_SESSION_QUEUE`, so the session let them go and will replay them from
/// the store instead (it is not closed). Emitted by `ChatSession::next_event`.
pub static HELD_SPILLED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "chat_held_spilled_total",
        "Sessions whose held messages were let go, to be replayed from the store.",
        &["transport"],
    )
});

/// `chat_http_requests_total{route, status}` (counter): HTTP requests answered on chat routes,
/// by route name (a fixed set, never the path) and status code (`101` for WebSocket upgrades).
/// Emitted by the edge's logging phase.
pub static HTTP_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "chat_http_requests_total",
        "HTTP requests on chat routes, by route name and status.",
        &["route", "status"],
    )
});

/// `chat_upstream_requests_total{status_class}` (counter): requests proxied to the main site, by
/// the status class sent downstream (`2xx`…`5xx`; `error` when no response was written).
pub static UPSTREAM_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "chat_upstream_requests_total",
        "Requests proxied to the main site, by status class.",
        &["status_class"],
    )
});

/// `chat_upstream_request_duration_seconds{status_class}` (histogram): time from request to the
/// end of the proxied response (for upgraded WebSockets: their lifetime).
pub static UPSTREAM_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    histogram_vec(
        "chat_upstream_request_duration_seconds",
        "Duration of requests proxied to the main site, by status class.",
        &["status_class"],
        LATENCY_BUCKETS,
    )
});

/// `chat_store_up` (gauge): 1 when the store answered its health check, 0 when not. Refreshed
/// by the gateway every few seconds.
pub static STORE_UP: LazyLock<IntGauge> = LazyLock::new(|| {
    gauge(
        "chat_store_up",
        "1 when the store answered its last health check, else 0.",
    )
});

/// `chat_store_pool_connections{state}` (gauge): the store's connection pool: `open`
/// (connections that exist), `idle` (available now) and `max` (the configured size).
pub static STORE_POOL: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_vec(
        "chat_store_pool_connections",
        "Store connection pool: open, idle and max connections.",
        &["state"],
    )
});

/// `chat_metrics_histograms_enabled` (gauge): 1 when histograms are observed
/// (`CHAT_METRICS_HISTOGRAMS`), else 0.
pub static HISTOGRAMS_ENABLED: LazyLock<IntGauge> = LazyLock::new(|| {
    gauge(
        "chat_metrics_histograms_enabled",
        "1 when latency and size histograms are observed, else 0.",
    )
});

/// Registers every metric (and the process collector) and creates the series of every bounded
/// label combination, so that dashboards see zeros instead of missing series. Idempotent.
pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        for transport in TRANSPORTS {
            let t = transport.as_str();
            REPLAYED.with_label_values(&[t]);
            HELD_SPILLED.with_label_values(&[t]);
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
        for direction in DIRECTIONS {
            for transport in MESSAGE_TRANSPORTS {
                MESSAGES.with_label_values(&[direction, transport]);
                COMMANDS_REFUSED.with_label_values(&[transport, "rate_limited"]);
            }
            for transport in TRANSPORTS {
                DELIVERY_SECONDS.with_label_values(&[direction, transport.as_str()]);
            }
        }
        for class in ["2xx", "3xx", "4xx", "5xx", "error"] {
            UPSTREAM_REQUESTS.with_label_values(&[class]);
            UPSTREAM_SECONDS.with_label_values(&[class]);
        }
        LazyLock::force(&AGENTS_ONLINE);
        LazyLock::force(&VISITORS_ONLINE);
        LazyLock::force(&CONVERSATIONS_OPEN);
        LazyLock::force(&STORE_COMMIT_SECONDS);
        LazyLock::force(&STORE_COMMIT_BATCH);
        LazyLock::force(&HTTP_REQUESTS);
        LazyLock::force(&HTTP_CONNECTIONS_OPEN);
        for reason in ["too_many_connections", "too_many_from_address"] {
            HTTP_CONNECTIONS_REFUSED.with_label_values(&[reason]);
        }
        LazyLock::force(&ACCESS_LOG_DROPPED);
        for part in ["certificates", "config", "access_log"] {
            for result in ["ok", "refused"] {
                CONFIG_RELOADS.with_label_values(&[part, result]);
            }
        }
        LazyLock::force(&STORE_UP);
        LazyLock::force(&STORE_POOL);
        HISTOGRAMS_ENABLED.set(i64::from(histograms_enabled()));
        #[cfg(target_os = "linux")]
        {
            let process = prometheus::process_collector::ProcessCollector::for_self();
            let _ = prometheus::default_registry().register(Box::new(process));
        }
    });
}

/// Creates the store series of `store` (`postgres` or `embedded`) from start-up, so that rates
/// over them start at zero rather than at the first commit.
pub fn init_store(store: &'static str) {
    STORE_COMMIT_SECONDS.with_label_values(&[store]);
    STORE_COMMIT_BATCH.with_label_values(&[store]);
}

/// Everything registered, in the Prometheus text format.
pub fn encode() -> String {
    init();
    HISTOGRAMS_ENABLED.set(i64::from(histograms_enabled()));
    let mut out = Vec::new();
    // Encoding into a Vec only fails on metrics without samples, which none of ours are.
    let _ = TextEncoder::new().encode(&prometheus::default_registry().gather(), &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// `visitor_to_agent` for messages written by visitors, `agent_to_visitor` for agents'.
pub fn direction(sender: Role) -> &'static str {
    match sender {
        Role::Visitor => "visitor_to_agent",
        Role::Agent => "agent_to_visitor",
    }
}

/// A session opened (`delta` 1) or closed (`delta` -1).
pub fn count_session(transport: TransportKind, role: Role, delta: i32) {
    let labels = [transport.as_str(), role.as_str()];
    SESSIONS_OPEN
        .with_label_values(&labels)
        .add(i64::from(delta));
    if delta > 0 {
        CONNECTS.with_label_values(&labels).inc();
    }
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

/// Why a session request was refused before a session opened.
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

/// A session request on `transport` for `role` was refused.
pub fn handshake_failed(transport: TransportKind, role: Role, reason: HandshakeFailure) {
    HANDSHAKE_FAILURES
        .with_label_values(&[transport.as_str(), role.as_str(), reason.as_str()])
        .inc();
}

/// A message written by `sender` was committed; `transport` is what carried it in (one of
/// [`MESSAGE_TRANSPORTS`]).
pub fn message_committed(sender: Role, transport: &'static str) {
    MESSAGES
        .with_label_values(&[direction(sender), transport])
        .inc();
}

/// One store commit of `batch_size` messages took `elapsed`. `store` is `postgres` or
/// `embedded`.
pub fn observe_store_commit(store: &'static str, batch_size: usize, elapsed: Duration) {
    if !histograms_enabled() {
        return;
    }
    STORE_COMMIT_SECONDS
        .with_label_values(&[store])
        .observe(elapsed.as_secs_f64());
    STORE_COMMIT_BATCH
        .with_label_values(&[store])
        .observe(batch_size as f64);
}

/// `message` is handed live to a session of `receiver` on `transport`. Only deliveries to the
/// other role are observed (not the echo to the sender's own sessions).
pub fn observe_delivery(message: &Message, receiver: Role, transport: TransportKind) {
    if !histograms_enabled() || message.sender.role == receiver {
        return;
    }
    let elapsed = (chrono::Utc::now() - message.created_at)
        .to_std()
        .unwrap_or_default();
    DELIVERY_SECONDS
        .with_label_values(&[direction(message.sender.role), transport.as_str()])
        .observe(elapsed.as_secs_f64());
}

/// `count` messages were replayed to a session on `transport`.
pub fn replayed(transport: TransportKind, count: u64) {
    REPLAYED
        .with_label_values(&[transport.as_str()])
        .inc_by(count);
}

/// A session on `transport` let its held messages go, to replay them from the store.
pub fn held_spilled(transport: TransportKind) {
    HELD_SPILLED.with_label_values(&[transport.as_str()]).inc();
}

/// A chat route (one of a fixed set of names) answered with `status`.
pub fn http_request(route: &'static str, status: u16) {
    HTTP_REQUESTS
        .with_label_values(&[route, status_label(status)])
        .inc();
}

fn status_label(status: u16) -> &'static str {
    // A fixed table keeps the label set bounded whatever a handler writes.
    match status {
        101 => "101",
        200 => "200",
        204 => "204",
        301 => "301",
        302 => "302",
        304 => "304",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        410 => "410",
        413 => "413",
        429 => "429",
        426 => "426",
        500 => "500",
        502 => "502",
        503 => "503",
        0 => "none",
        _ => "other",
    }
}

/// The `class` label values of the upstream metrics, in [`upstream_class`] order.
const UPSTREAM_CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "error"];

/// The index in [`UPSTREAM_CLASSES`] of a downstream status (`None`: nothing was written).
fn upstream_class(status: Option<u16>) -> usize {
    match status {
        Some(100..=199) => 0,
        Some(200..=299) => 1,
        Some(300..=399) => 2,
        Some(400..=499) => 3,
        Some(500..=599) => 4,
        _ => 5,
    }
}

/// The per-class children of the upstream metrics, looked up once: every proxied page counts
/// here, and `with_label_values` hashes the label and takes a lock on each call.
static UPSTREAM_BY_CLASS: LazyLock<[(prometheus::IntCounter, prometheus::Histogram); 6]> =
    LazyLock::new(|| {
        UPSTREAM_CLASSES.map(|class| {
            (
                UPSTREAM_REQUESTS.with_label_values(&[class]),
                UPSTREAM_SECONDS.with_label_values(&[class]),
            )
        })
    });

/// A proxied request ended with `status` sent downstream (`None`: nothing was written) after
/// `elapsed`.
pub fn upstream_request(status: Option<u16>, elapsed: Duration) {
    let (requests, seconds) = &UPSTREAM_BY_CLASS[upstream_class(status)];
    requests.inc();
    if histograms_enabled() {
        seconds.observe(elapsed.as_secs_f64());
    }
}

/// Online agents and distinct online visitors on this process.
pub fn set_online(agents: u32, visitors: usize) {
    AGENTS_ONLINE.set(i64::from(agents));
    VISITORS_ONLINE.set(visitors as i64);
}

/// The store's state: whether it answered a health check, its open conversations (when it
/// could count them) and its pool (`None` for stores without one).
pub fn set_store_state(
    up: bool,
    open_conversations: Option<u64>,
    pool: Option<crate::store::PoolStatus>,
) {
    STORE_UP.set(i64::from(up));
    if let Some(n) = open_conversations {
        CONVERSATIONS_OPEN.set(n as i64);
    }
    if let Some(pool) = pool {
        set_store_pool(pool.open, pool.idle, pool.max);
    }
}

/// The store pool: connections open, idle (available) and the configured maximum.
pub fn set_store_pool(open: usize, idle: usize, max: usize) {
    STORE_POOL.with_label_values(&["open"]).set(open as i64);
    STORE_POOL.with_label_values(&["idle"]).set(idle as i64);
    STORE_POOL.with_label_values(&["max"]).set(max as i64);
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
    fn every_bounded_series_exists_after_init_and_histograms_can_be_switched_off() {
        init();
        let text = encode();
        for name in [
            "chat_sessions_open",
            "chat_disconnects_total",
            "chat_messages_total",
            "chat_delivery_latency_seconds_bucket",
            "chat_handshake_failures_total",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
        set_histograms_enabled(false);
        observe_store_commit("test", 1, Duration::from_millis(1));
        set_histograms_enabled(true);
        assert_eq!(
            STORE_COMMIT_SECONDS
                .with_label_values(&["test"])
                .get_sample_count(),
            0
        );
        observe_store_commit("test", 3, Duration::from_millis(1));
        assert_eq!(
            STORE_COMMIT_BATCH
                .with_label_values(&["test"])
                .get_sample_sum(),
            3.0
        );
    }

    #[test]
    fn status_labels_are_bounded() {
        assert_eq!(status_label(200), "200");
        assert_eq!(status_label(418), "other");
    }
}
