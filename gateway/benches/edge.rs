//! Edge benchmarks against the real `chat-gateway` binary on loopback (method and recorded
//! results: `docs/benchmarks.md`):
//!
//! 1. idle memory per visitor WebSocket through the Pingora edge, for `ws://` and `wss://`:
//!    the gateway's VmRSS before and after opening N idle connections, divided by N;
//! 2. visitor→agent delivery latency: a visitor sends M messages one after another (each awaits
//!    its `ack`); for each, the time from the visitor's send call to the agent receiving the
//!    `message` event, on the embedded store and on Postgres.
//!
//! Run with `cargo bench -p chat-gateway --bench edge`. Scale with the environment variables
//! `BENCH_IDLE_CONNECTIONS` (default 3000), `BENCH_MESSAGES` (default 3000) and
//! `BENCH_POSTGRES=0` (skip the Postgres run), or the arguments `--idle N`, `--messages N` and
//! `--no-postgres`; `BENCH_CONNECT_CONCURRENCY` (default 32 handshakes in flight) and
//! `BENCH_SETTLE_SECS` (default 2) tune the idle-memory phase.

#[path = "../tests/common/mod.rs"]
mod common;

use chat_storage::test_support::TestPostgres;
use common::{Gateway, Ws};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpSocket;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::Connector;

/// Idle connections opened (and kept) before the baseline RSS reading, so that one-time costs
/// (lazy statics, first TLS handshake, thread-local buffers) are not charged to the measured ones.
const IDLE_WARMUP: usize = 20;
/// Client source ports used per loopback address before moving on to the next 127.0.0.x.
const PORTS_PER_SOURCE_IP: usize = 20_000;
/// Messages sent (and discarded) before the measured ones.
const LATENCY_WARMUP: usize = 100;
/// Gateway log level: per-connection debug logging would distort both measurements.
const GATEWAY_LOG: &str = "warn";

struct Settings {
    idle: usize,
    messages: usize,
    postgres: bool,
    /// Handshakes in flight at once while opening idle connections.
    connect_concurrency: usize,
    /// Wait after the last idle connection before reading the RSS again.
    settle: Duration,
}

impl Settings {
    fn read() -> Settings {
        let env_usize = |name: &str, default: usize| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.trim().is_empty())
                .map(|v| {
                    v.trim()
                        .parse()
                        .unwrap_or_else(|e| panic!("{name}={v:?}: {e}"))
                })
                .unwrap_or(default)
        };
        let mut s = Settings {
            idle: env_usize("BENCH_IDLE_CONNECTIONS", 3000),
            messages: env_usize("BENCH_MESSAGES", 3000),
            postgres: std::env::var("BENCH_POSTGRES").map_or(true, |v| v.trim() != "0"),
            connect_concurrency: env_usize("BENCH_CONNECT_CONCURRENCY", 32),
            settle: Duration::from_secs(env_usize("BENCH_SETTLE_SECS", 2) as u64),
        };
        // `cargo bench` passes `--bench`; other unknown arguments (filters) are ignored too.
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut number = |flag: &str| -> usize {
                let v = args
                    .next()
                    .unwrap_or_else(|| panic!("{flag} needs a number"));
                v.parse().unwrap_or_else(|e| panic!("{flag} {v:?}: {e}"))
            };
            match arg.as_str() {
                "--idle" => s.idle = number("--idle"),
                "--messages" => s.messages = number("--messages"),
                "--no-postgres" => s.postgres = false,
                _ => {}
            }
        }
        assert!(
            s.idle > 0 && s.messages > 0 && s.connect_concurrency > 0,
            "counts must be positive"
        );
        s
    }
}

fn main() {
    let settings = Settings::read();
    // The bench holds one descriptor per client socket; the gateway (which inherits the limit)
    // one per accepted connection, plus its store, listeners and log pipes.
    raise_fd_limit((settings.idle + IDLE_WARMUP) as u64 + 256);
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(settings));
}

async fn run(settings: Settings) {
    let started = Instant::now();
    eprintln!(
        "edge bench: {} idle connections ({} handshakes at a time), {} messages (+{LATENCY_WARMUP} warm-up), postgres {}, {} CPUs",
        settings.idle,
        settings.connect_concurrency,
        settings.messages,
        if settings.postgres { "on" } else { "off" },
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );

    let plain = idle_memory(&settings, false).await;
    let tls = idle_memory(&settings, true).await;

    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(dir.path(), &[("CHAT_LOG", GATEWAY_LOG)]);
    let embedded = latency(&gw, settings.messages).await;
    drop(gw);

    let postgres = if settings.postgres {
        let pg = tokio::task::spawn_blocking(TestPostgres::start)
            .await
            .unwrap();
        let url = pg.fresh_database();
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().display().to_string();
        let out = Command::new(env!("CARGO_BIN_EXE_chat-gateway"))
            .env("CHAT_DATABASE_URL", &url)
            .env("CHAT_DATA_DIR", &data)
            .arg("migrate")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "migrate failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let gw = Gateway::start(
            dir.path(),
            &[("CHAT_DATABASE_URL", &url), ("CHAT_LOG", GATEWAY_LOG)],
        );
        assert!(
            gw.log().contains("store=postgres"),
            "gateway is not on Postgres:\n{}",
            gw.log()
        );
        let stats = latency(&gw, settings.messages).await;
        drop(gw);
        drop(pg);
        Some(stats)
    } else {
        None
    };

    println!();
    println!("## Idle memory per WebSocket connection (gateway VmRSS)");
    println!();
    println!("| transport | connections | RSS before (MiB) | RSS after (MiB) | delta (MiB) | per connection (KiB) | gateway fds after | gateway threads after | connect time (s) |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in [&plain, &tls] {
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} | {:.1} |",
            r.transport,
            r.connections,
            r.rss_before_kib as f64 / 1024.0,
            r.rss_after_kib as f64 / 1024.0,
            (r.rss_after_kib as f64 - r.rss_before_kib as f64) / 1024.0,
            (r.rss_after_kib as f64 - r.rss_before_kib as f64) / r.connections as f64,
            r.fds_after,
            r.threads_after,
            r.connect_time.as_secs_f64(),
        );
    }
    println!();
    println!(
        "## Visitor→agent delivery latency ({} messages, sequential, ms)",
        settings.messages
    );
    println!();
    println!("| store | measure | p50 | p90 | p99 | max | mean |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    let mut rows = vec![("embedded", &embedded)];
    if let Some(pg) = &postgres {
        rows.push(("postgres", pg));
    }
    for (store, l) in rows {
        for (what, s) in [
            ("send → agent `message`", &l.delivery),
            ("send → visitor `ack`", &l.ack),
        ] {
            println!(
                "| {store} | {what} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
                s.p50, s.p90, s.p99, s.max, s.mean
            );
        }
    }
    println!();
    eprintln!(
        "edge bench done in {:.0} s",
        started.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------------------------------------
// Idle memory

struct IdleResult {
    transport: &'static str,
    connections: usize,
    rss_before_kib: u64,
    rss_after_kib: u64,
    fds_after: usize,
    threads_after: u64,
    connect_time: Duration,
}

/// How the bench reaches the gateway's visitor endpoint.
#[derive(Clone)]
struct Target {
    port: u16,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Target {
    /// Opens visitor WebSocket number `i` (its source address depends on `i`) and reads its
    /// `welcome`.
    async fn visitor(&self, i: usize) -> Result<Ws, String> {
        let source = source_address(i);
        let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
        socket
            .bind(SocketAddr::new(source.into(), 0))
            .map_err(|e| format!("bind {source}: {e}"))?;
        let tcp = socket
            .connect(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), self.port))
            .await
            .map_err(|e| format!("connect from {source}: {e}"))?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        let (url, connector) = match &self.tls {
            Some(config) => (
                format!("wss://localhost:{}/ws-visitor/?site=default", self.port),
                Some(Connector::Rustls(config.clone())),
            ),
            None => (
                format!("ws://127.0.0.1:{}/ws-visitor/?site=default", self.port),
                None,
            ),
        };
        let (mut ws, _) =
            tokio_tungstenite::client_async_tls_with_config(url, tcp, None, connector)
                .await
                .map_err(|e| format!("handshake: {e}"))?;
        let welcome = next_json(&mut ws).await?;
        if welcome["type"] != "welcome" {
            return Err(format!("first event is not welcome: {welcome}"));
        }
        Ok(ws)
    }
}

/// 127.0.0.1 for the first 20,000 connections, then 127.0.0.2, … (Linux routes all of
/// 127.0.0.0/8 to loopback), so that huge counts do not run out of source ports.
fn source_address(i: usize) -> Ipv4Addr {
    let n = i / PORTS_PER_SOURCE_IP;
    assert!(n < 254 * 256, "too many connections");
    Ipv4Addr::new(127, 0, (n / 254) as u8, (1 + n % 254) as u8)
}

/// Idle connections kept open by tasks that read them (answering the gateway's pings), counting
/// how many are still up.
struct IdleConnections {
    tasks: JoinSet<()>,
    open: Arc<AtomicUsize>,
}

impl IdleConnections {
    fn new() -> Self {
        IdleConnections {
            tasks: JoinSet::new(),
            open: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Opens `count` more connections, `concurrency` at a time, numbering them from `first`.
    async fn open(&mut self, target: &Target, first: usize, count: usize, concurrency: usize) {
        let mut handshakes = futures_util::stream::iter(first..first + count)
            .map(|i| {
                let target = target.clone();
                async move { target.visitor(i).await.map_err(|e| format!("#{i}: {e}")) }
            })
            .buffer_unordered(concurrency);
        while let Some(ws) = handshakes.next().await {
            let mut ws = ws.unwrap_or_else(|e| panic!("opening idle connection {e}"));
            let open = self.open.clone();
            open.fetch_add(1, Ordering::SeqCst);
            self.tasks.spawn(async move {
                // Reading lets tungstenite answer pings; nothing else is expected.
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_close() {
                        break;
                    }
                }
                open.fetch_sub(1, Ordering::SeqCst);
            });
        }
    }

    fn open_now(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}

async fn idle_memory(settings: &Settings, tls: bool) -> IdleResult {
    let n = settings.idle;
    let concurrency = settings.connect_concurrency;
    let transport = if tls { "wss:// (TLS)" } else { "ws://" };
    eprintln!("idle memory, {transport}: starting the gateway");
    let dir = tempfile::tempdir().unwrap();
    let (gw, target) = if tls {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let cert_path = dir.path().join("cert.pem");
        let key_path = dir.path().join("key.pem");
        std::fs::write(&cert_path, cert.cert.pem()).unwrap();
        std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
        let tls_port = common::free_port();
        let gw = Gateway::start(
            dir.path(),
            &[
                ("CHAT_TLS_CERT", &cert_path.display().to_string()),
                ("CHAT_TLS_KEY", &key_path.display().to_string()),
                ("CHAT_TLS_LISTEN", &format!("127.0.0.1:{tls_port}")),
                ("CHAT_LOG", GATEWAY_LOG),
            ],
        );
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.cert.der().clone()).unwrap();
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        (
            gw,
            Target {
                port: tls_port,
                tls: Some(Arc::new(config)),
            },
        )
    } else {
        let gw = Gateway::start(dir.path(), &[("CHAT_LOG", GATEWAY_LOG)]);
        let port = gw.port;
        (gw, Target { port, tls: None })
    };
    let pid = gw.pid();

    let mut idle = IdleConnections::new();
    idle.open(&target, 0, IDLE_WARMUP, concurrency).await;
    tokio::time::sleep(settings.settle).await;
    let rss_before_kib = rss_kib(pid);

    eprintln!("idle memory, {transport}: opening {n} connections");
    let t = Instant::now();
    idle.open(&target, IDLE_WARMUP, n, concurrency).await;
    let connect_time = t.elapsed();
    tokio::time::sleep(settings.settle).await;
    let rss_after_kib = rss_kib(pid);
    let threads_after = proc_status_field(pid, "Threads:");
    let fds_after = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(
        idle.open_now(),
        IDLE_WARMUP + n,
        "some idle connections were closed by the gateway:\n{}",
        gw.log()
    );
    eprintln!(
        "idle memory, {transport}: {} KiB -> {} KiB over {n} connections (opened in {:.1} s)",
        rss_before_kib,
        rss_after_kib,
        connect_time.as_secs_f64()
    );

    // The gateway goes first, so that the TIME_WAIT states land on its side, not on the
    // client's source ports.
    drop(gw);
    idle.tasks.shutdown().await;
    IdleResult {
        transport,
        connections: n,
        rss_before_kib,
        rss_after_kib,
        fds_after,
        threads_after,
        connect_time,
    }
}

/// VmRSS of `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    proc_status_field(pid, "VmRSS:")
}

/// A numeric field of `/proc/<pid>/status` (`kB` units dropped).
fn proc_status_field(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

fn raise_fd_limit(needed: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed to them.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
            }
        }
    }
    assert!(
        limit.rlim_cur >= needed,
        "{needed} file descriptors needed but the limit is {} (hard {}): lower BENCH_IDLE_CONNECTIONS",
        limit.rlim_cur,
        limit.rlim_max
    );
}

// ---------------------------------------------------------------------------------------------
// Delivery latency

struct Stats {
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
    mean: f64,
}

impl Stats {
    /// Nearest-rank percentiles of `samples`, in milliseconds.
    fn of(samples: &[Duration]) -> Stats {
        let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        let pct = |q: f64| ms[((q * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1];
        Stats {
            p50: pct(0.50),
            p90: pct(0.90),
            p99: pct(0.99),
            max: ms[ms.len() - 1],
            mean: ms.iter().sum::<f64>() / ms.len() as f64,
        }
    }
}

struct LatencyResult {
    /// Visitor's send call → agent reads the `message` event.
    delivery: Stats,
    /// Visitor's send call → visitor reads its `ack`.
    ack: Stats,
}

async fn latency(gw: &Gateway, messages: usize) -> LatencyResult {
    let total = LATENCY_WARMUP + messages;
    let store = if gw.env.contains_key("CHAT_DATABASE_URL") {
        "postgres"
    } else {
        "embedded"
    };
    eprintln!("latency, {store}: {total} messages");
    let token = gw.agent_token("bench-agent", "Bench Agent");
    let (mut agent, _) =
        tokio_tungstenite::connect_async(gw.ws(&format!("/ws-admin/?token={token}")))
            .await
            .unwrap();
    let welcome = next_json(&mut agent).await.unwrap();
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    let (mut visitor, _) = tokio_tungstenite::connect_async(gw.ws("/ws-visitor/?site=default"))
        .await
        .unwrap();
    let welcome = next_json(&mut visitor).await.unwrap();
    assert_eq!(welcome["type"], "welcome", "{welcome}");

    // The agent's reader: stamps each `message` event as soon as its frame is read.
    let (received_tx, mut received_rx) = tokio::sync::mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        while let Some(Ok(msg)) = agent.next().await {
            let at = Instant::now();
            let WsMessage::Text(text) = msg else {
                continue;
            };
            let ev: Value = serde_json::from_str(text.as_str()).unwrap();
            if ev["type"] != "message" {
                continue;
            }
            let index = ev["message"]["client_msg_id"]
                .as_str()
                .and_then(|id| id.strip_prefix("bench-"))
                .and_then(|i| i.parse::<usize>().ok());
            if let Some(index) = index {
                if received_tx.send((index, at)).is_err() {
                    return;
                }
            }
        }
    });

    let mut sent = Vec::with_capacity(total);
    let mut acked = Vec::with_capacity(total);
    for i in 0..total {
        let id = format!("s{i}");
        let frame = json!({
            "type": "send",
            "id": id,
            "client_msg_id": format!("bench-{i}"),
            "body": format!("benchmark message number {i}"),
        })
        .to_string();
        let t0 = Instant::now();
        visitor.send(WsMessage::Text(frame.into())).await.unwrap();
        sent.push(t0);
        loop {
            let ev = next_json(&mut visitor).await.unwrap();
            if ev["id"] == id.as_str() {
                assert_eq!(ev["type"], "ack", "send {i} failed: {ev}");
                acked.push(Instant::now());
                break;
            }
        }
    }

    let mut received: Vec<Option<Instant>> = vec![None; total];
    let mut missing = total;
    while missing > 0 {
        let (index, at) = tokio::time::timeout(Duration::from_secs(30), received_rx.recv())
            .await
            .unwrap_or_else(|_| panic!("the agent is missing {missing} messages after 30 s"))
            .expect("agent connection ended");
        if index < total && received[index].replace(at).is_none() {
            missing -= 1;
        }
    }
    reader.abort();

    let delivery: Vec<Duration> = (LATENCY_WARMUP..total)
        .map(|i| received[i].unwrap() - sent[i])
        .collect();
    let ack: Vec<Duration> = (LATENCY_WARMUP..total)
        .map(|i| acked[i] - sent[i])
        .collect();
    let result = LatencyResult {
        delivery: Stats::of(&delivery),
        ack: Stats::of(&ack),
    };
    eprintln!(
        "latency, {store}: delivery p50 {:.3} ms, p99 {:.3} ms",
        result.delivery.p50, result.delivery.p99
    );
    result
}

/// The next JSON text frame (10 s at most).
async fn next_json(ws: &mut Ws) -> Result<Value, String> {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .map_err(|_| "no frame within 10 s".to_string())?
            .ok_or("socket ended")?
            .map_err(|e| e.to_string())?;
        match msg {
            WsMessage::Text(t) => {
                return serde_json::from_str(t.as_str()).map_err(|e| format!("{e}: {t}"))
            }
            WsMessage::Close(frame) => return Err(format!("closed: {frame:?}")),
            _ => continue,
        }
    }
}
