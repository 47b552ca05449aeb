//! The delivery worker: claims due events from the store's outbox, POSTs each to its site's
//! URL and records the outcome. One batch at a time; within a batch, one conversation's events
//! go one after the other, in outbox order, and different conversations' concurrently (at most
//! [`CONCURRENCY`] requests at once). So a conversation's events usually arrive in order; a
//! retry, or two processes sharing the work, can reorder them (`docs/webhooks.md`).

use super::signature::{sign, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use super::{retry_delay, WebhookConfig};
use crate::error::GatewayError;
use crate::metrics::webhooks as metrics;
use chat_core::store::Store;
use chat_core::webhook::{WebhookEvent, WebhookOutbox};
use rand::Rng;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Events claimed at once.
const CLAIM_BATCH: u32 = 32;
/// Requests in flight at once.
pub const CONCURRENCY: usize = 16;
/// How often the outbox is looked at when nothing woke the worker: events committed by other
/// processes, and retries coming due.
const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// How often `chat_webhook_outbox_events` is refreshed.
const DEPTH_REFRESH: Duration = Duration::from_secs(5);
/// Added to the request timeout to make a claim's lease: the time the worker has to record the
/// outcome before another worker may take the event.
const LEASE_MARGIN: Duration = Duration::from_secs(30);

/// What an attempt came to.
enum Outcome {
    /// The receiver answered `2xx`.
    Delivered,
    /// Worth retrying: a network error, a timeout, another status.
    Failed(String),
    /// Not worth retrying: the site has no URL any more.
    Undeliverable(String),
}

struct Worker {
    store: Arc<dyn Store>,
    outbox: Arc<WebhookOutbox>,
    config: WebhookConfig,
    client: reqwest::Client,
    concurrency: Semaphore,
}

/// Starts the worker and the outbox gauge on the current Tokio runtime, for as long as the
/// process runs. It takes up, at once, the events the store holds from before (of a process
/// that stopped or was killed), except those whose claim's lease has not ended yet.
pub fn start(
    store: Arc<dyn Store>,
    outbox: Arc<WebhookOutbox>,
    config: WebhookConfig,
) -> Result<(), GatewayError> {
    let client = reqwest::Client::builder()
        .timeout(config.timeout)
        .connect_timeout(config.timeout)
        // A redirect is a failed attempt: the receiver's URL is what the operator configured,
        // and following a redirect would send the signed event to another host.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("chat-gateway-webhooks/", env!("CARGO_PKG_VERSION")))
        .pool_max_idle_per_host(CONCURRENCY)
        .build()
        .map_err(|e| GatewayError::Other(format!("cannot build the webhook HTTP client: {e}")))?;
    let worker = Arc::new(Worker {
        store,
        outbox,
        config,
        client,
        concurrency: Semaphore::new(CONCURRENCY),
    });
    tokio::spawn(worker.clone().refresh_depth());
    tokio::spawn(worker.run());
    Ok(())
}

impl Worker {
    fn lease(&self) -> Duration {
        self.config.timeout + LEASE_MARGIN
    }

    async fn run(self: Arc<Self>) {
        let mut store_failing = false;
        loop {
            match self
                .store
                .claim_webhook_events(CLAIM_BATCH, self.lease())
                .await
            {
                Ok(events) if !events.is_empty() => {
                    store_failing = false;
                    self.deliver_batch(events).await;
                    continue;
                }
                Ok(_) => store_failing = false,
                Err(e) => {
                    // Once per outage; the store's own health check says more.
                    if !store_failing {
                        tracing::warn!(error = %e, "cannot claim webhook events; retrying");
                    }
                    store_failing = true;
                }
            }
            tokio::select! {
                _ = self.outbox.wait_committed() => {}
                _ = tokio::time::sleep(POLL_INTERVAL) => {}
            }
        }
    }

    async fn refresh_depth(self: Arc<Self>) {
        loop {
            if let Ok(depth) = self.store.webhook_outbox_depth().await {
                metrics::set_outbox(depth);
            }
            tokio::time::sleep(DEPTH_REFRESH).await;
        }
    }

    /// Delivers a batch: each conversation's events in order, conversations concurrently.
    async fn deliver_batch(&self, events: Vec<WebhookEvent>) {
        let mut by_conversation: Vec<Vec<WebhookEvent>> = Vec::new();
        let mut index = HashMap::new();
        for event in events {
            let i = *index.entry(event.conversation_id).or_insert_with(|| {
                by_conversation.push(Vec::new());
                by_conversation.len() - 1
            });
            by_conversation[i].push(event);
        }
        futures_util::future::join_all(by_conversation.into_iter().map(|events| async move {
            for event in events {
                self.deliver(event).await;
            }
        }))
        .await;
    }

    async fn deliver(&self, event: WebhookEvent) {
        let outcome = {
            // Never closed, so `acquire` cannot fail.
            let _permit = self.concurrency.acquire().await;
            self.attempt(&event).await
        };
        let kind = event.kind.map_or("unknown", |kind| kind.as_str());
        let recorded = match outcome {
            Outcome::Delivered => {
                metrics::delivery("delivered");
                tracing::debug!(event_id = %event.id, site = %event.site_id, kind, attempts = event.attempts, "webhook event delivered");
                // If this fails the event is sent again once its lease ends: at least once.
                self.store.webhook_event_delivered(event.id).await
            }
            Outcome::Failed(why) if event.attempts < self.config.max_attempts => {
                metrics::delivery("failed");
                let delay = retry_delay(event.attempts, rand::thread_rng().gen::<f64>());
                tracing::debug!(event_id = %event.id, site = %event.site_id, kind, attempts = event.attempts, error = %why, retry_in_ms = delay.as_millis() as u64, "webhook delivery failed; will retry");
                self.store
                    .webhook_event_failed(event.id, event.attempts, Some(delay), &why)
                    .await
            }
            Outcome::Failed(why) | Outcome::Undeliverable(why) => {
                metrics::delivery("dead");
                tracing::warn!(event_id = %event.id, site = %event.site_id, kind, attempts = event.attempts, error = %why, "webhook event given up: kept in the outbox as dead");
                self.store
                    .webhook_event_failed(event.id, event.attempts, None, &why)
                    .await
            }
        };
        if let Err(e) = recorded {
            tracing::warn!(event_id = %event.id, error = %e, "cannot record a webhook delivery's outcome; the event will be attempted again");
        }
    }

    async fn attempt(&self, event: &WebhookEvent) -> Outcome {
        let Some(target) = self.config.targets.for_site(&event.site_id) else {
            return Outcome::Undeliverable(format!(
                "CHAT_WEBHOOK_URLS has no URL for site {} any more",
                event.site_id
            ));
        };
        let timestamp = chrono::Utc::now().timestamp();
        let signature = sign(self.config.secret(), timestamp, event.payload.as_bytes());
        let request = self
            .client
            .post(target.url().clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("X-Chat-Event", event.kind.map_or("unknown", |k| k.as_str()))
            .header("X-Chat-Event-Id", event.id.to_string())
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(SIGNATURE_HEADER, signature)
            .body(event.payload.clone());
        // The answer's body is never read: only its status counts.
        match request.send().await {
            Ok(response) if response.status().is_success() => Outcome::Delivered,
            Ok(response) => Outcome::Failed(format!(
                "{} answered HTTP {}",
                target.origin(),
                response.status().as_u16()
            )),
            Err(e) => Outcome::Failed(format!(
                "{}: {}",
                target.origin(),
                describe(&e, self.config.timeout)
            )),
        }
    }
}

/// Why a request failed, without its URL (which may carry a credential).
fn describe(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!("no answer within {} s", timeout.as_secs());
    }
    let what = if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    // The innermost cause says most ("Connection refused", "invalid peer certificate").
    let mut root = None;
    let mut next = std::error::Error::source(e);
    while let Some(source) = next {
        root = Some(source);
        next = source.source();
    }
    match root {
        Some(cause) => format!("{what}: {cause}"),
        None => what.to_string(),
    }
}
