//! One open-loop run at a fixed rate: V visitors send 100-byte messages round-robin on a fixed
//! schedule (message i is due at start + i / rate, whatever the server does), A agents receive
//! every one, and the latency of each (agent receive − scheduled send, one monotonic clock) goes
//! into an HDR histogram. Only messages scheduled in the measured window (after the warm-up)
//! count; the server's and Postgres' figures are read at the window's two ends by `Monitor`.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;

use crate::client::{self, Endpoint, Incoming, Proto, Role};
use crate::monitor::{Monitor, Snapshot};
use crate::BenchError;

#[derive(Clone, Debug)]
pub struct LoadSpec {
    pub visitors: usize,
    pub agents: usize,
    pub rate: u64,
    pub body_bytes: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// After the last send, how long to wait for every agent to receive everything.
    pub drain: Duration,
}

#[derive(Debug)]
pub struct LoadResult {
    pub rate: u64,
    pub sent: u64,
    pub acked: u64,
    pub ack_errors: u64,
    /// Messages sent but not received by some agent by the end of the drain (summed over agents).
    pub undelivered: u64,
    /// Agents whose session the server ended during the run, and how.
    pub agents_closed: Vec<String>,
    /// Deliveries (summed over agents) of messages scheduled in the window.
    pub window_deliveries: u64,
    pub window: Duration,
    /// Visitor → agent latency in µs of messages scheduled in the window, all agents.
    pub latency_us: Histogram<u64>,
    pub before: Snapshot,
    pub after: Snapshot,
}

impl LoadResult {
    /// Messages per second the agents received, of those scheduled in the window.
    pub fn achieved_rate(&self, agents: usize) -> f64 {
        self.window_deliveries as f64 / agents.max(1) as f64 / self.window.as_secs_f64()
    }
}

struct AgentTally {
    received: u64,
    /// How the server ended the agent's session before the run did, if it did.
    closed_by_server: Option<String>,
    in_window: u64,
    latency_us: Histogram<u64>,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("constant bounds are valid")
}

/// The client source addresses: 127.0.0.2, 127.0.0.3, … (so no one address runs out of ports).
pub fn source_address(i: usize) -> IpAddr {
    IpAddr::from([127, 0, 0, 2 + (i % 250) as u8])
}

pub async fn run(
    endpoint: &Endpoint,
    agent_token: &str,
    spec: &LoadSpec,
    monitor: &Monitor,
) -> Result<LoadResult, BenchError> {
    let base = Instant::now();
    // The measured window in ns since `base`, set once the clients are connected.
    let window = Arc::new((AtomicU64::new(u64::MAX), AtomicU64::new(u64::MAX)));
    let (stop_tx, stop_rx) = watch::channel(false);
    // Deliveries of benchmark messages, all agents together, for the drain.
    let delivered = Arc::new(AtomicU64::new(0));

    let mut agent_tasks = Vec::new();
    for a in 0..spec.agents {
        let role = Role::Agent {
            token: agent_token.to_string(),
        };
        let ws = client::connect(endpoint, &role, source_address(a)).await?;
        let proto = endpoint.proto;
        let mut stop = stop_rx.clone();
        let window = window.clone();
        let delivered = delivered.clone();
        agent_tasks.push(tokio::spawn(async move {
            let mut ws = ws;
            let mut tally = AgentTally {
                received: 0,
                closed_by_server: None,
                in_window: 0,
                latency_us: histogram(),
            };
            loop {
                let frame = tokio::select! {
                    f = ws.next() => f,
                    _ = stop.changed() => break,
                };
                let text = match frame {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(c))) => {
                        tally.closed_by_server =
                            Some(c.map_or("close".into(), |c| format!("close {}", c.code)));
                        break;
                    }
                    None => {
                        tally.closed_by_server = Some("connection ended".into());
                        break;
                    }
                    Some(Err(e)) => {
                        tally.closed_by_server = Some(format!("read error: {e}"));
                        break;
                    }
                    Some(Ok(_)) => continue,
                };
                match client::classify(proto, text.as_str()) {
                    Incoming::Message(Some((_, sent_ns))) => {
                        let now_ns = base.elapsed().as_nanos() as u64;
                        tally.received += 1;
                        delivered.fetch_add(1, Ordering::Relaxed);
                        let (from, to) = (
                            window.0.load(Ordering::Acquire),
                            window.1.load(Ordering::Acquire),
                        );
                        if (from..to).contains(&sent_ns) {
                            tally.in_window += 1;
                            tally
                                .latency_us
                                .saturating_record(now_ns.saturating_sub(sent_ns) / 1000);
                        }
                    }
                    Incoming::Ping if ws.send(Message::text("3")).await.is_err() => break,
                    Incoming::Closed => {
                        tally.closed_by_server = Some(format!("Socket.IO {text:.40}"));
                        break;
                    }
                    _ => {}
                }
            }
            ws.close(None).await.ok();
            tally
        }));
    }

    let acked = Arc::new(AtomicU64::new(0));
    let ack_errors = Arc::new(AtomicU64::new(0));
    let mut senders = Vec::with_capacity(spec.visitors);
    let mut visitor_tasks = Vec::new();
    for v in 0..spec.visitors {
        let ws = client::connect(endpoint, &Role::Visitor, source_address(spec.agents + v)).await?;
        let (mut sink, mut stream) = ws.split();
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        senders.push(tx.clone());
        visitor_tasks.push(tokio::spawn(async move {
            while let Some(text) = rx.recv().await {
                if sink.send(Message::text(text)).await.is_err() {
                    break;
                }
            }
            sink.close().await.ok();
        }));
        let (proto, acked, ack_errors) = (endpoint.proto, acked.clone(), ack_errors.clone());
        let mut stop = stop_rx.clone();
        visitor_tasks.push(tokio::spawn(async move {
            loop {
                let frame = tokio::select! {
                    f = stream.next() => f,
                    _ = stop.changed() => break,
                };
                let text = match frame {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => continue,
                };
                match client::classify(proto, text.as_str()) {
                    Incoming::Ack { error } => {
                        acked.fetch_add(1, Ordering::Relaxed);
                        if error {
                            ack_errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Incoming::Ping if proto == Proto::SocketIo => {
                        tx.send("3".to_string()).ok();
                    }
                    _ => {}
                }
            }
        }));
    }

    // The schedule starts now: everything above was connection setup.
    let start_ns = base.elapsed().as_nanos() as u64;
    let warm_end_ns = start_ns + spec.warmup.as_nanos() as u64;
    let window_end_ns = warm_end_ns + spec.duration.as_nanos() as u64;
    window.0.store(warm_end_ns, Ordering::Release);
    window.1.store(window_end_ns, Ordering::Release);
    let monitor_task = {
        let monitor = monitor.clone();
        let (window_start, window_end) = (
            base + Duration::from_nanos(warm_end_ns),
            base + Duration::from_nanos(window_end_ns),
        );
        tokio::spawn(async move {
            // Half-way through the warm-up: the tables hold what the first second wrote.
            let analyze_at = base + Duration::from_nanos(start_ns + (warm_end_ns - start_ns) / 2);
            tokio::time::sleep_until(analyze_at.into()).await;
            monitor.analyze().await;
            tokio::time::sleep_until(window_start.into()).await;
            let before = monitor.snapshot().await;
            tokio::time::sleep_until(window_end.into()).await;
            let after = monitor.snapshot().await;
            (before, after)
        })
    };

    let interval_ns = 1e9 / spec.rate as f64;
    let total = ((window_end_ns - start_ns) as f64 / interval_ns) as u64;
    let mut sent = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while sent < total {
        tick.tick().await;
        let now_ns = base.elapsed().as_nanos() as u64;
        while sent < total {
            let due_ns = start_ns + (sent as f64 * interval_ns) as u64;
            if due_ns > now_ns {
                break;
            }
            let frame = client::send_frame(
                endpoint.proto,
                sent,
                &client::body(sent, due_ns, spec.body_bytes),
            );
            senders[sent as usize % senders.len()].send(frame).ok();
            sent += 1;
        }
    }
    let (before, after) = monitor_task
        .await
        .map_err(|e| BenchError::Client(format!("monitor: {e}")))?;

    // Drain: wait until every send is answered and every agent has every message, or the drain
    // time is up.
    let drain_until = Instant::now() + spec.drain;
    let expected = sent * spec.agents as u64;
    while Instant::now() < drain_until
        && (acked.load(Ordering::Relaxed) < sent || delivered.load(Ordering::Relaxed) < expected)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop_tx.send(true).ok();
    drop(senders);
    let mut received = Vec::new();
    let mut latency_us = histogram();
    let mut window_deliveries = 0;
    let mut agents_closed = Vec::new();
    for task in agent_tasks {
        let tally = task
            .await
            .map_err(|e| BenchError::Client(format!("agent task: {e}")))?;
        agents_closed.extend(tally.closed_by_server);
        received.push(tally.received);
        window_deliveries += tally.in_window;
        latency_us.add(&tally.latency_us).ok();
    }
    for task in visitor_tasks {
        task.await.ok();
    }
    let undelivered = received.iter().map(|r| sent.saturating_sub(*r)).sum();
    Ok(LoadResult {
        rate: spec.rate,
        sent,
        acked: acked.load(Ordering::Relaxed),
        ack_errors: ack_errors.load(Ordering::Relaxed),
        undelivered,
        agents_closed,
        window_deliveries,
        window: spec.duration,
        latency_us,
        before,
        after,
    })
}
