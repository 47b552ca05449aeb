//! The cost of metrics: deliveries per second with histograms observed and with
//! `CHAT_METRICS_HISTOGRAMS=off`, side by side in one run, against the real `chat-gateway`
//! binary on loopback (embedded store). Results: `docs/benchmarks.md` ("Metrics cost").
//!
//! Each case starts a fresh gateway, connects `BENCH_AGENTS` agents (default 50) and one visitor
//! over raw WebSockets; the visitor sends `BENCH_MESSAGES` messages (default 2000, at most 32
//! unacknowledged), each of which is delivered to every agent, so every message costs one store
//! commit observation and one delivery observation per agent. Deliveries per second is
//! agents × messages over the time from the first send to the last delivery. Cases alternate
//! (on, off, on, off, …) for `BENCH_ROUNDS` rounds (default 3) and the median is reported.
//!
//! Run with `cargo bench -p chat-gateway --bench metrics`.

#[path = "../tests/common/mod.rs"]
mod common;

use common::Gateway;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Notify, Semaphore};
use tokio_tungstenite::tungstenite::Message as WsMessage;

const WARMUP: usize = 200;
const WINDOW: usize = 32;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn main() {
    let agents = env_usize("BENCH_AGENTS", 50);
    let messages = env_usize("BENCH_MESSAGES", 2000);
    let rounds = env_usize("BENCH_ROUNDS", 3);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    eprintln!(
        "metrics bench: {agents} agents, {messages} messages (+{WARMUP} warm-up), {rounds} rounds, {} CPUs",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let mut on = Vec::new();
    let mut off = Vec::new();
    for round in 0..rounds {
        for histograms in ["on", "off"] {
            let dir = tempfile::tempdir().unwrap();
            let gw = Gateway::start(
                dir.path(),
                &[
                    ("CHAT_LOG", "warn"),
                    ("CHAT_METRICS_HISTOGRAMS", histograms),
                    // Nobody may be dropped as a slow consumer while the machine is saturated.
                    ("CHAT_SESSION_QUEUE", "16384"),
                ],
            );
            let rate = runtime.block_on(deliveries_per_second(&gw, agents, messages));
            eprintln!("round {round}, histograms {histograms}: {rate:.0} deliveries/s");
            if histograms == "on" {
                on.push(rate);
            } else {
                off.push(rate);
            }
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (on_median, off_median) = (median(&mut on), median(&mut off));
    println!();
    println!("| histograms | deliveries/s (median of {rounds}) | runs |");
    println!("|---|---|---|");
    let runs = |v: &[f64]| {
        v.iter()
            .map(|r| format!("{r:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("| on (default) | {on_median:.0} | {} |", runs(&on));
    println!("| off | {off_median:.0} | {} |", runs(&off));
    println!(
        "\nhistograms on: {:+.1} % deliveries/s against off",
        (on_median / off_median - 1.0) * 100.0
    );
}

async fn deliveries_per_second(gw: &Gateway, agents: usize, messages: usize) -> f64 {
    let token = gw.agent_token("bench", "Bench");
    let delivered = Arc::new(AtomicUsize::new(0));
    let progress = Arc::new(Notify::new());
    for _ in 0..agents {
        let (mut ws, _) =
            tokio_tungstenite::connect_async(gw.ws(&format!("/ws-admin/?token={token}")))
                .await
                .unwrap();
        let delivered = delivered.clone();
        let progress = progress.clone();
        tokio::spawn(async move {
            while let Some(Ok(msg)) = ws.next().await {
                if let WsMessage::Text(text) = msg {
                    // Cheaper than parsing: only `message` events carry this.
                    if text.as_str().starts_with("{\"type\":\"message\"") {
                        delivered.fetch_add(1, Ordering::Relaxed);
                        progress.notify_one();
                    }
                }
            }
        });
    }
    let (visitor, _) = tokio_tungstenite::connect_async(gw.ws("/ws-visitor/"))
        .await
        .unwrap();
    let (mut sink, mut stream) = visitor.split();
    let window = Arc::new(Semaphore::new(WINDOW));
    let acks = window.clone();
    tokio::spawn(async move {
        while let Some(Ok(msg)) = stream.next().await {
            if let WsMessage::Text(text) = msg {
                let ev: Value = serde_json::from_str(text.as_str()).unwrap();
                match ev["type"].as_str() {
                    Some("ack") => acks.add_permits(1),
                    Some("error") => panic!("send failed: {ev}"),
                    _ => {}
                }
            }
        }
    });
    // The welcome events are not counted: only `message` events are.
    let counters = Counters {
        window,
        delivered,
        progress,
        agents,
    };
    phase(&mut sink, &counters, WARMUP, 0).await;
    let elapsed = phase(&mut sink, &counters, messages, WARMUP).await;
    (messages * agents) as f64 / elapsed.as_secs_f64()
}

struct Counters {
    window: Arc<Semaphore>,
    delivered: Arc<AtomicUsize>,
    progress: Arc<Notify>,
    agents: usize,
}

/// Sends `n` messages (ids from `from`) with at most [`WINDOW`] unacknowledged, and waits until
/// every agent has them all; returns the time taken.
async fn phase<S>(sink: &mut S, c: &Counters, n: usize, from: usize) -> Duration
where
    S: futures_util::Sink<WsMessage> + Unpin,
    S::Error: std::fmt::Debug,
{
    c.delivered.store(0, Ordering::Relaxed);
    let started = Instant::now();
    for i in from..from + n {
        let frame =
            json!({"type": "send", "id": format!("s{i}"), "body": format!("bench message {i}")})
                .to_string();
        c.window.acquire().await.unwrap().forget();
        sink.send(WsMessage::Text(frame.into())).await.unwrap();
    }
    let target = n * c.agents;
    while c.delivered.load(Ordering::Relaxed) < target {
        let _ = tokio::time::timeout(Duration::from_millis(50), c.progress.notified()).await;
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "only {} of {target} deliveries after 300 s",
            c.delivered.load(Ordering::Relaxed)
        );
    }
    started.elapsed()
}
