//! The webhook delivery metrics, which only the gateway's delivery worker emits
//! (`crate::webhooks`). `docs/metrics.md` documents each.

use chat_core::metrics::{counter_vec, gauge_vec};
use chat_core::webhook::OutboxDepth;
use prometheus::{IntCounterVec, IntGaugeVec};
use std::sync::LazyLock;

/// Values of the `result` label of `chat_webhook_deliveries_total`.
pub const RESULTS: [&str; 3] = ["delivered", "failed", "dead"];
/// Values of the `state` label of `chat_webhook_outbox_events`.
pub const STATES: [&str; 2] = ["pending", "dead"];

/// `chat_webhook_deliveries_total{result}` (counter): webhook delivery attempts by outcome —
/// `delivered` (the receiver answered `2xx`; the event left the outbox), `failed` (an error,
/// a timeout or another status; the event will be retried), `dead` (the last allowed attempt
/// failed, or the site has no URL any more; the event is kept, never retried).
pub static DELIVERIES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "chat_webhook_deliveries_total",
        "Webhook delivery attempts, by result.",
        &["result"],
    )
});

/// `chat_webhook_outbox_events{state}` (gauge): rows in the webhook outbox, `pending` (waiting
/// for a first attempt or a retry) or `dead`; read from the store every 5 s, so every node
/// sharing a Postgres reports the same numbers.
pub static OUTBOX: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_vec(
        "chat_webhook_outbox_events",
        "Events in the webhook outbox, by state.",
        &["state"],
    )
});

/// Registers the metrics with a zero series for every label value.
pub fn init() {
    for result in RESULTS {
        DELIVERIES.with_label_values(&[result]);
    }
    for state in STATES {
        OUTBOX.with_label_values(&[state]);
    }
}

/// One attempt ended with `result` (one of [`RESULTS`]).
pub fn delivery(result: &'static str) {
    DELIVERIES.with_label_values(&[result]).inc();
}

/// The outbox as the store counted it.
pub fn set_outbox(depth: OutboxDepth) {
    OUTBOX
        .with_label_values(&["pending"])
        .set(i64::try_from(depth.pending).unwrap_or(i64::MAX));
    OUTBOX
        .with_label_values(&["dead"])
        .set(i64::try_from(depth.dead).unwrap_or(i64::MAX));
}
