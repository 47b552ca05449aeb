//! The chat's own metrics: messages committed, commands refused, deliveries, replays, store
//! commits and the store's state, in the `prometheus` crate's default registry. Also the
//! registration helpers and the histogram switch every metric of the process uses.
//!
//! Only chat facts live here. The session lifecycle (connections, sessions open, disconnects,
//! handshake failures) and the HTTP edge (routes, statuses, the main site, connection caps) are
//! the gateway's (`gateway/src/metrics/`), the one layer that emits them.
//!
//! The metrics are process-wide statics rather than a handle passed down: the message path
//! records through them from the service, the sessions and the stores, and a handle would be one
//! more field in every session (whose size is measured per idle connection) and one more
//! constructor argument in every crate, for a registry there is one of per process. Labels are
//! bounded: transports, directions, reasons and store kinds are fixed sets in code, never ids or
//! paths from the wire. `docs/metrics.md` documents every metric; a test compares it with what
//! `/metrics` exports.
//!
//! Histograms can be switched off at run time ([`set_histograms_enabled`], the gateway's
//! `CHAT_METRICS_HISTOGRAMS=off`) to measure what they cost; counters and gauges always count.

use crate::model::{Message, Role};
use crate::session_end::TransportKind;
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

/// Registers `metric` in the default registry.
pub fn register<T: Collector + Clone + 'static>(metric: T) -> T {
    prometheus::default_registry()
        .register(Box::new(metric.clone()))
        .expect("metric names are unique");
    metric
}

/// A registered gauge vector.
pub fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    register(IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"))
}

/// A registered counter vector.
pub fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"))
}

/// A registered gauge.
pub fn gauge(name: &str, help: &str) -> IntGauge {
    register(IntGauge::new(name, help).expect("valid metric"))
}

/// A registered histogram vector.
pub fn histogram_vec(name: &str, help: &str, labels: &[&str], buckets: &[f64]) -> HistogramVec {
    register(
        HistogramVec::new(
            HistogramOpts::new(name, help).buckets(buckets.to_vec()),
            labels,
        )
        .expect("valid metric"),
    )
}

/// Latency buckets in seconds, from half a millisecond to ten seconds.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

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

/// A visitor's send on `transport` was refused by the send rate limit.
pub fn send_rate_limited(transport: TransportKind) {
    COMMANDS_REFUSED
        .with_label_values(&[transport.as_str(), "rate_limited"])
        .inc();
}

/// `chat_command_rate_limited_total{command}`: commands of every transport answered
/// `rate_limited` (not executed), by command: `send` and the commands whose own limits keep
/// them from flooding (`typing`, `read`, `set_status`, `context`, `contact`,
/// `search_conversations`).
pub static COMMAND_RATE_LIMITED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "chat_command_rate_limited_total",
        "Commands answered rate_limited (not executed), by command.",
        &["command"],
    )
});

/// The commands with a rate limit, in label order.
pub const RATE_LIMITED_COMMANDS: [&str; 7] = [
    "send",
    "typing",
    "read",
    "set_status",
    "context",
    "contact",
    "search_conversations",
];

/// A command of type `command` was answered `rate_limited`.
pub fn command_rate_limited(command: &'static str) {
    COMMAND_RATE_LIMITED.with_label_values(&[command]).inc();
}

/// A send through the HTTP API was refused by the send rate limit.
pub fn api_send_rate_limited() {
    COMMANDS_REFUSED
        .with_label_values(&["http_api", "rate_limited"])
        .inc();
}

/// `chat_attachments_uploaded_total{role}`: attachments stored (issue 15), by the uploader's
/// role; `chat_attachment_bytes_total{role}`: their bytes.
pub static ATTACHMENTS_UPLOADED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "chat_attachments_uploaded_total",
        "Attachments uploaded and stored, by the uploader's role.",
        &["role"],
    )
});

/// See [`ATTACHMENTS_UPLOADED`].
pub static ATTACHMENT_BYTES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "chat_attachment_bytes_total",
        "Bytes of attachments uploaded and stored, by the uploader's role.",
        &["role"],
    )
});

/// `chat_upload_refused_total{reason}`: uploads refused before anything was stored.
pub static UPLOADS_REFUSED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "chat_upload_refused_total",
        "Uploads refused before anything was stored, by reason.",
        &["reason"],
    )
});

/// The `reason` values of `chat_upload_refused_total`.
pub const UPLOAD_REFUSALS: [&str; 6] = [
    "too_large",
    "empty",
    "type_not_allowed",
    "content_mismatch",
    "rate_limited",
    "busy",
];

/// An attachment of `size` bytes was stored.
pub fn attachment_uploaded(role: Role, size: u64) {
    ATTACHMENTS_UPLOADED
        .with_label_values(&[role.as_str()])
        .inc();
    ATTACHMENT_BYTES
        .with_label_values(&[role.as_str()])
        .inc_by(size);
}

/// `chat_attachments_swept_total`: uploads deleted because no message carried them within
/// `CHAT_UPLOAD_UNSENT_TTL_SECS`.
pub static ATTACHMENTS_SWEPT: LazyLock<prometheus::IntCounter> = LazyLock::new(|| {
    register(
        prometheus::IntCounter::new(
            "chat_attachments_swept_total",
            "Uploads deleted because no message carried them within CHAT_UPLOAD_UNSENT_TTL_SECS.",
        )
        .expect("valid metric"),
    )
});

/// `n` unsent uploads were deleted.
pub fn attachments_swept(n: usize) {
    ATTACHMENTS_SWEPT.inc_by(n as u64);
}

/// An upload was refused for `reason` (one of [`UPLOAD_REFUSALS`]).
pub fn upload_refused(reason: &'static str) {
    UPLOADS_REFUSED.with_label_values(&[reason]).inc();
}

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
        for role in [Role::Visitor, Role::Agent] {
            ATTACHMENTS_UPLOADED.with_label_values(&[role.as_str()]);
            ATTACHMENT_BYTES.with_label_values(&[role.as_str()]);
        }
        for command in RATE_LIMITED_COMMANDS {
            COMMAND_RATE_LIMITED.with_label_values(&[command]);
        }
        for reason in UPLOAD_REFUSALS {
            UPLOADS_REFUSED.with_label_values(&[reason]);
        }
        LazyLock::force(&ATTACHMENTS_SWEPT);
        LazyLock::force(&CONVERSATIONS_OPEN);
        LazyLock::force(&STORE_COMMIT_SECONDS);
        LazyLock::force(&STORE_COMMIT_BATCH);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bounded_series_exists_after_init_and_histograms_can_be_switched_off() {
        init();
        let text = encode();
        for name in [
            "chat_messages_total",
            "chat_commands_refused_total",
            "chat_delivery_latency_seconds_bucket",
            "chat_replayed_messages_total",
            "chat_store_up",
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
}
