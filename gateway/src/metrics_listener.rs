//! The metrics listener (`CHAT_METRICS_LISTEN`): `GET /metrics` in the Prometheus text format,
//! and the detailed health report at `/health` and `/chat/health` (readiness; also at
//! `/health/ready`, with liveness at `/health/live`), on a listener of its own so
//! that it is never exposed with the public one.

use crate::config::Config;
use crate::error::GatewayError;
use crate::metrics::{encode, init, sessions};
use async_trait::async_trait;
use chat_core::service::ChatService;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use pingora::server::Server;
use pingora::services::listening::Service;
use std::time::Duration;

/// How often the store gauges (`chat_store_up`, `chat_conversations_open`,
/// `chat_store_pool_connections`) are refreshed.
pub const STORE_REFRESH: Duration = Duration::from_secs(5);

/// Serves `/metrics`.
pub struct MetricsApp {
    chat: ChatService,
}

#[async_trait]
impl ServeHttp for MetricsApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path();
        let (status, content_type, body) = if path == "/metrics" {
            // Hub gauges are read at scrape time: they cost a lock, not a query.
            let hub = self.chat.hub();
            sessions::set_online(hub.agents_online().sessions, hub.visitors_online());
            sessions::set_sessions_open(&self.chat.session_counts());
            (
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                encode().into_bytes(),
            )
        } else if matches!(path, "/health/live" | "/chat/health/live") {
            (
                200,
                "application/json",
                crate::health::live().to_string().into_bytes(),
            )
        } else if matches!(
            path,
            "/health" | "/chat/health" | "/health/ready" | "/chat/health/ready"
        ) {
            let (status, body) = crate::health::check(&self.chat).await;
            (status, "application/json", body.to_string().into_bytes())
        } else {
            (
                404,
                "text/plain",
                b"metrics are at /metrics, health at /health\n".to_vec(),
            )
        };
        Response::builder()
            .status(status)
            .header("Content-Type", content_type)
            .header("Content-Length", body.len().to_string())
            .header("Cache-Control", "no-store")
            .body(body)
            .unwrap_or_default()
    }
}

/// Registers the metrics, applies `CHAT_METRICS_HISTOGRAMS`, adds the `/metrics` listener to
/// `server` (unless `CHAT_METRICS_LISTEN=off`) and starts refreshing the store gauges on
/// `runtime`.
pub fn start(
    config: &Config,
    server: &mut Server,
    runtime: &tokio::runtime::Runtime,
    chat: &ChatService,
    upgrade: bool,
) -> Result<(), GatewayError> {
    chat_core::metrics::set_histograms_enabled(config.metrics_histograms);
    init();
    chat_core::metrics::init_store(chat.store().kind());
    let Some(listen) = config.metrics_listen else {
        return Ok(());
    };
    // During a graceful upgrade the old process still holds the port and hands it over.
    if !upgrade {
        std::net::TcpListener::bind(listen).map_err(|e| {
            GatewayError::Other(format!(
                "cannot listen on {listen} (CHAT_METRICS_LISTEN): {e}"
            ))
        })?;
    }
    let mut service = Service::new(
        "chat-gateway metrics".to_string(),
        MetricsApp { chat: chat.clone() },
    );
    service.threads = Some(1);
    service.add_tcp(&listen.to_string());
    server.add_service(service);
    runtime.spawn(refresh_store_gauges(chat.clone()));
    tracing::info!(%listen, histograms = config.metrics_histograms, "metrics at /metrics");
    Ok(())
}

/// Every [`STORE_REFRESH`]: the store's health, its open conversations and its pool.
async fn refresh_store_gauges(chat: ChatService) {
    let mut tick = tokio::time::interval(STORE_REFRESH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let store = chat.store();
        let up = matches!(
            tokio::time::timeout(Duration::from_secs(3), store.health()).await,
            Ok(Ok(()))
        );
        let open = if up {
            match tokio::time::timeout(Duration::from_secs(3), store.open_conversation_count())
                .await
            {
                Ok(Ok(n)) => n,
                _ => None,
            }
        } else {
            None
        };
        chat_core::metrics::set_store_state(up, open, store.pool_status());
    }
}
