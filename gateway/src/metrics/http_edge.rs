//! The HTTP edge's metrics: requests on chat routes by status, requests proxied to the main
//! site, the connection caps, configuration reloads and the access log. `docs/metrics.md`
//! documents each.

use chat_core::metrics::LATENCY_BUCKETS;
use chat_core::metrics::{counter_vec, gauge, histogram_vec, histograms_enabled, register};
use prometheus::{HistogramVec, IntCounterVec, IntGauge};
use std::sync::LazyLock;
use std::time::Duration;

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

/// `chat_http_connections_open` (gauge): TCP connections the public listeners hold now (after
/// the TLS handshake, until they close or a chat WebSocket leaves the HTTP layer). Emitted by
/// the connection caps.
pub static HTTP_CONNECTIONS_OPEN: LazyLock<IntGauge> = LazyLock::new(|| {
    gauge(
        "chat_http_connections_open",
        "TCP connections held by the public listeners.",
    )
});

/// `chat_http_connections_parked` (gauge): HTTP/1.1 connections waiting outside Pingora: a held
/// long-poll, or the idle keep-alive wait after a long-polling answer (`crate::parked`). They
/// are also in `chat_http_connections_open`.
pub static HTTP_CONNECTIONS_PARKED: LazyLock<IntGauge> = LazyLock::new(|| {
    gauge(
        "chat_http_connections_parked",
        "HTTP/1.1 connections waiting outside Pingora (held long-polls, idle keep-alive after one).",
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

/// `chat_tls_handshake_failures_total{reason}` (counter): connections to the TLS listener
/// closed before their handshake finished: `timeout` (not done within
/// `CHAT_HEADER_TIMEOUT_SECS`), `refused` (a TLS error: not TLS, no common cipher suite, a bad
/// record), `closed` (the client hung up). Emitted by `crate::tls::termination`.
pub static TLS_HANDSHAKE_FAILURES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "chat_tls_handshake_failures_total",
        "Connections to the TLS listener closed before their handshake finished, by reason.",
        &["reason"],
    )
});

/// The `reason` values of `chat_tls_handshake_failures_total`.
pub const TLS_HANDSHAKE_FAILURE_REASONS: [&str; 3] = ["timeout", "refused", "closed"];

/// `chat_config_reloads_total{part, result}` (counter): reloads on SIGHUP, per reloadable part
/// (`certificates`, `config`, `access_log`) and result (`ok`, `refused`: the old setting was
/// kept). Emitted by the `reload` module.
pub static CONFIG_RELOADS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "chat_config_reloads_total",
        "Reloads of a part of the configuration, by part and result.",
        &["part", "result"],
    )
});

/// `chat_access_log_dropped_total` (counter): access log lines dropped because the writer
/// could not keep up (its bounded queue was full, e.g. nobody reads the gateway's stdout).
/// Emitted by the `access_log` module; requests never wait for the log.
pub static ACCESS_LOG_DROPPED: LazyLock<prometheus::IntCounter> = LazyLock::new(|| {
    register(
        prometheus::IntCounter::new(
            "chat_access_log_dropped_total",
            "Access log lines dropped because the log writer could not keep up.",
        )
        .expect("valid metric"),
    )
});

/// Creates the series of every bounded label combination, so that dashboards see zeros.
pub(super) fn init() {
    for class in ["2xx", "3xx", "4xx", "5xx", "error"] {
        UPSTREAM_REQUESTS.with_label_values(&[class]);
        UPSTREAM_SECONDS.with_label_values(&[class]);
    }
    LazyLock::force(&HTTP_REQUESTS);
    LazyLock::force(&HTTP_CONNECTIONS_OPEN);
    LazyLock::force(&HTTP_CONNECTIONS_PARKED);
    for reason in ["too_many_connections", "too_many_from_address"] {
        HTTP_CONNECTIONS_REFUSED.with_label_values(&[reason]);
    }
    LazyLock::force(&ACCESS_LOG_DROPPED);
    for reason in TLS_HANDSHAKE_FAILURE_REASONS {
        TLS_HANDSHAKE_FAILURES.with_label_values(&[reason]);
    }
    for part in ["certificates", "config", "access_log"] {
        for result in ["ok", "refused"] {
            CONFIG_RELOADS.with_label_values(&[part, result]);
        }
    }
}

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

/// Counts a connection in `chat_http_connections_parked` until the guard is dropped.
pub fn connection_parked() -> ParkedGuard {
    HTTP_CONNECTIONS_PARKED.inc();
    ParkedGuard(())
}

/// Takes a connection out of `chat_http_connections_parked` when dropped.
pub struct ParkedGuard(());

impl Drop for ParkedGuard {
    fn drop(&mut self) {
        HTTP_CONNECTIONS_PARKED.dec();
    }
}

/// A connection was refused by a connection cap (`reason`).
pub fn http_connection_refused(reason: &'static str) {
    HTTP_CONNECTIONS_REFUSED.with_label_values(&[reason]).inc();
}

/// A connection to the TLS listener closed before its handshake finished; `reason` is one of
/// [`TLS_HANDSHAKE_FAILURE_REASONS`].
pub fn tls_handshake_failed(reason: &'static str) {
    TLS_HANDSHAKE_FAILURES.with_label_values(&[reason]).inc();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_labels_are_bounded() {
        assert_eq!(status_label(200), "200");
        assert_eq!(status_label(418), "other");
        assert_eq!(upstream_class(Some(502)), 4);
        assert_eq!(upstream_class(None), 5);
    }
}
