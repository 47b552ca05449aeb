//! `/chat/health`: readiness, and `/chat/health/live`: liveness.
//!
//! Liveness answers 200 whenever the process serves requests at all (no store check): a
//! supervisor restarts a gateway only when that fails. Readiness (`/chat/health/ready`, and
//! `/chat/health` for compatibility) answers 200 only when the store answers and the gateway is
//! not shutting down, 503 otherwise: a load balancer sends new clients elsewhere meanwhile.
//!
//! The public route answers only `{"status":"ok"}` (200) or
//! `{"status":"unavailable"}` (503): store kind, errors, session counts and the version help an
//! attacker more than a load balancer. The details are served on the metrics listener
//! (`CHAT_METRICS_LISTEN`, at `/health` and `/chat/health`) and on the public route to callers
//! with `Authorization: Bearer <agent JWT or CHAT_API_KEY>`.

use chat_core::service::ChatService;
use serde_json::{json, Value};
use std::time::Duration;

/// Readiness: the store's health check, the shutdown flag and everything else worth knowing:
/// `(status, details)`.
pub async fn check(chat: &ChatService) -> (u16, Value) {
    let store = chat.store();
    let kind = store.kind();
    let check = tokio::time::timeout(Duration::from_secs(3), store.health()).await;
    let (status, state, error) = match check {
        Ok(Ok(())) => (200, "up", None),
        Ok(Err(e)) => (503, "down", Some(e.to_string())),
        Err(_) => (
            503,
            "down",
            Some("health check timed out after 3 s".to_string()),
        ),
    };
    let shutting_down = chat.is_shutting_down();
    let status = if shutting_down { 503 } else { status };
    let mut body = json!({
        "status": status_word(status),
        "store": { "kind": kind, "state": state },
        "sessions": chat.hub().subscriber_count(),
        "agents_online": chat.hub().agents_online().sessions,
        "version": env!("CARGO_PKG_VERSION"),
        "shutting_down": shutting_down,
    });
    if let Some(error) = error {
        body["store"]["error"] = json!(error);
    }
    (status, body)
}

/// Liveness: the process answers, whatever the store does.
pub fn live() -> Value {
    json!({ "status": "ok" })
}

/// The public body: the status word only.
pub fn public(status: u16) -> Value {
    json!({ "status": status_word(status) })
}

fn status_word(status: u16) -> &'static str {
    if status == 200 {
        "ok"
    } else {
        "unavailable"
    }
}
