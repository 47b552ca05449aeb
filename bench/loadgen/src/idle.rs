//! Idle memory per connection and handshakes per second: on a fresh server, the RSS with no
//! client (base), then after a few warm-up visitors, then after N more idle visitors opened with
//! a fixed number of handshakes in flight (the time to open them gives handshakes/s). Every
//! connection is kept open and answers pings until the end, and must still be open then.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{self, Endpoint, Incoming, Role, Ws};
use crate::load::source_address;
use crate::procstat;
use crate::BenchError;

const WARMUP_CONNECTIONS: usize = 20;

#[derive(Clone, Copy, Debug)]
pub struct IdleSpec {
    pub connections: usize,
    pub concurrency: usize,
    pub settle: Duration,
}

#[derive(Clone, Copy, Debug)]
pub struct IdleResult {
    pub connections: usize,
    pub base_rss_kib: u64,
    pub before_kib: u64,
    pub after_kib: u64,
    pub handshakes_per_sec: f64,
    pub still_open: usize,
}

impl IdleResult {
    pub fn per_connection_kib(&self) -> f64 {
        self.after_kib.saturating_sub(self.before_kib) as f64 / self.connections.max(1) as f64
    }
}

/// Keeps a connection open, answering Engine.IO pings; `open` counts it while it lives.
fn keep(mut ws: Ws, proto: client::Proto, open: Arc<AtomicUsize>) -> JoinHandle<()> {
    open.fetch_add(1, Ordering::SeqCst);
    tokio::spawn(async move {
        while let Some(Ok(frame)) = ws.next().await {
            let Message::Text(text) = frame else { continue };
            match client::classify(proto, text.as_str()) {
                Incoming::Ping if ws.send(Message::text("3")).await.is_err() => break,
                Incoming::Closed => break,
                _ => {}
            }
        }
        open.fetch_sub(1, Ordering::SeqCst);
    })
}

pub async fn run(
    endpoint: &Endpoint,
    server_pids: &[u32],
    spec: &IdleSpec,
) -> Result<IdleResult, BenchError> {
    let open = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let base_rss_kib = procstat::rss_of(server_pids);
    for i in 0..WARMUP_CONNECTIONS {
        let ws = client::connect(endpoint, &Role::Visitor, source_address(i)).await?;
        tasks.push(keep(ws, endpoint.proto, open.clone()));
    }
    tokio::time::sleep(spec.settle).await;
    let before_kib = procstat::rss_of(server_pids);

    let started = Instant::now();
    let opened = futures_util::stream::iter(0..spec.connections)
        .map(|i| {
            client::connect(
                endpoint,
                &Role::Visitor,
                source_address(WARMUP_CONNECTIONS + i),
            )
        })
        .buffer_unordered(spec.concurrency.max(1))
        .collect::<Vec<_>>()
        .await;
    let handshake_secs = started.elapsed().as_secs_f64();
    for ws in opened {
        tasks.push(keep(ws?, endpoint.proto, open.clone()));
    }
    tokio::time::sleep(spec.settle).await;
    let after_kib = procstat::rss_of(server_pids);
    let still_open = open
        .load(Ordering::SeqCst)
        .saturating_sub(WARMUP_CONNECTIONS);
    for task in &tasks {
        task.abort();
    }
    Ok(IdleResult {
        connections: spec.connections,
        base_rss_kib,
        before_kib,
        after_kib,
        handshakes_per_sec: spec.connections as f64 / handshake_secs.max(1e-9),
        still_open,
    })
}
