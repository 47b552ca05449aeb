//! The peer benchmark harness (bench/README.md): starts each system fresh on loopback in turn —
//! Nginx + Node socket.io, socketioxide, the gateway on Socket.IO and on raw WebSocket — drives
//! it with one open-loop load generator at each rate (systems alternating at every rate, so the
//! machine's noise hits all of them), then measures idle memory per connection and handshakes
//! per second, prints one table and can write it into docs/benchmarks.md. `--smoke` is the small
//! run CI does: it fails when any system loses or refuses a message.

mod client;
mod idle;
mod load;
mod monitor;
mod procstat;
mod report;
mod systems;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;

use crate::idle::{IdleResult, IdleSpec};
use crate::load::LoadSpec;
use crate::monitor::Monitor;
use crate::report::{Criteria, RateRow, Report};
use crate::systems::{Programs, System};

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("client: {0}")]
    Client(String),
    #[error("system: {0}")]
    System(String),
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Usage(String),
}

#[derive(Parser, Debug)]
#[command(
    name = "chat-bench",
    about = "Peer benchmark: Nginx + Node, socketioxide and the gateway, side by side"
)]
struct Args {
    /// Systems, in the order they run at each rate: node, socketioxide, gateway-sio, gateway-ws.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "node,socketioxide,gateway-sio,gateway-ws"
    )]
    systems: Vec<String>,
    /// Open-loop rates (messages/s, all visitors together), run in this order.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "250,500,1000,2000,3000,4000"
    )]
    rates: Vec<u64>,
    #[arg(long, default_value_t = 200)]
    visitors: usize,
    #[arg(long, default_value_t = 4)]
    agents: usize,
    #[arg(long, default_value_t = 100)]
    body_bytes: usize,
    #[arg(long, default_value_t = 2.0)]
    warmup_secs: f64,
    /// Measured seconds per rate per system.
    #[arg(long, default_value_t = 10.0)]
    duration_secs: f64,
    /// After the last send, how long to wait for every delivery.
    #[arg(long, default_value_t = 10.0)]
    drain_secs: f64,
    /// Idle visitors opened per system for memory per connection and handshakes/s (0: skip).
    #[arg(long, default_value_t = 2000)]
    idle: usize,
    #[arg(long, default_value_t = 32)]
    handshake_concurrency: usize,
    #[arg(long, default_value_t = 50.0)]
    p99_limit_ms: f64,
    /// The rate whose p50/p99, CPU, transactions and RSS the summary shows.
    #[arg(long, default_value_t = 1000)]
    reference_rate: u64,
    /// The small CI run: 20 visitors, 1 agent, 2 s at 100 msg/s, 50 idle; implies --check.
    #[arg(long)]
    smoke: bool,
    /// Exit non-zero when any system lost a message, answered a send with an error, delivered
    /// nothing, or dropped an idle connection.
    #[arg(long)]
    check: bool,
    /// Write the tables into this Markdown file's peer-benchmark section.
    #[arg(long)]
    write_docs: Option<PathBuf>,
    /// The exact command line to record in the docs.
    #[arg(long, env = "BENCH_COMMAND", default_value = "bench/run")]
    command: String,
    #[arg(
        long,
        env = "BENCH_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    database_url: String,
    #[arg(long, default_value = "target/release/chat-gateway")]
    gateway_bin: PathBuf,
    #[arg(long, default_value = "target/release/chat-bench-socketioxide")]
    socketioxide_bin: PathBuf,
    #[arg(long, default_value = "bench/peers/node")]
    node_dir: PathBuf,
    #[arg(long, default_value = "nginx")]
    nginx: PathBuf,
    #[arg(long, default_value = "target/bench-harness")]
    work_dir: PathBuf,
    /// The systems listen on this port (Node behind Nginx on the next one).
    #[arg(long, default_value_t = 41000)]
    port_base: u16,
}

fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer; the servers inherit the raised limit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn absolute(p: PathBuf) -> PathBuf {
    if p.is_absolute() || p.components().count() == 1 {
        p
    } else {
        std::env::current_dir().map(|d| d.join(&p)).unwrap_or(p)
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("chat-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(mut args: Args) -> Result<bool, BenchError> {
    if args.smoke {
        (args.visitors, args.agents, args.rates, args.idle) = (20, 1, vec![100], 50);
        (
            args.warmup_secs,
            args.duration_secs,
            args.drain_secs,
            args.check,
        ) = (0.5, 2.0, 5.0, true);
        args.reference_rate = 100;
    }
    let systems: Vec<System> = args
        .systems
        .iter()
        .map(|s| System::parse(s).ok_or_else(|| BenchError::Usage(format!("unknown system {s}"))))
        .collect::<Result<_, _>>()?;
    raise_fd_limit();
    let programs = Programs {
        gateway_bin: absolute(args.gateway_bin.clone()),
        socketioxide_bin: absolute(args.socketioxide_bin.clone()),
        node_dir: absolute(args.node_dir.clone()),
        nginx_bin: absolute(args.nginx.clone()),
        work_dir: absolute(args.work_dir.clone()),
        port_base: args.port_base,
        database_url: args.database_url.clone(),
    };
    std::fs::create_dir_all(&programs.work_dir)?;
    let admin = Arc::new(systems::admin_connect(&args.database_url).await?);
    systems::drop_stale_databases(&admin).await?;
    let load_before = loadavg();
    let started = chrono::Utc::now();
    println!("chat-bench: load average at start {load_before}");

    let spec = |rate| LoadSpec {
        visitors: args.visitors,
        agents: args.agents,
        rate,
        body_bytes: args.body_bytes,
        warmup: Duration::from_secs_f64(args.warmup_secs),
        duration: Duration::from_secs_f64(args.duration_secs),
        drain: Duration::from_secs_f64(args.drain_secs),
    };
    let mut rate_rows = Vec::new();
    for &rate in &args.rates {
        for &system in &systems {
            let running = systems::start(system, &programs, &admin).await?;
            tokio::time::sleep(Duration::from_millis(300)).await;
            let monitor = Monitor {
                server_pids: running.server_pids(),
                database: running.database.clone(),
                database_url: running.database_url.clone(),
                admin: admin.clone(),
            };
            let outcome = load::run(
                &running.endpoint,
                &running.agent_token,
                &spec(rate),
                &monitor,
            )
            .await;
            let database = running.database.clone();
            let stopped = running.stop();
            systems::drop_database(&admin, &database).await?;
            let result = outcome?;
            stopped?;
            let usage = report::usage_of(&result);
            let row = RateRow {
                system,
                result,
                usage,
            };
            println!(
                "{:>13} {:>5} msg/s: achieved {:.0}, p50 {:.2} ms, p99 {:.1} ms, sent {}, missing {}, errors {}, load {}",
                system.slug(),
                rate,
                row.achieved(&Criteria { agents: args.agents, p99_limit_ms: 0.0, reference_rate: 0 }),
                row.p50_ms(),
                row.p99_ms(),
                row.result.sent,
                row.result.undelivered,
                row.result.ack_errors,
                loadavg()
            );
            rate_rows.push(row);
        }
    }
    let mut idle_rows: Vec<(System, IdleResult)> = Vec::new();
    if args.idle > 0 {
        for &system in &systems {
            let running = systems::start(system, &programs, &admin).await?;
            let spec = IdleSpec {
                connections: args.idle,
                concurrency: args.handshake_concurrency,
                settle: Duration::from_secs(2),
            };
            let outcome = idle::run(&running.endpoint, &running.server_pids(), &spec).await;
            let database = running.database.clone();
            let stopped = running.stop();
            systems::drop_database(&admin, &database).await?;
            let result = outcome?;
            stopped?;
            println!(
                "{:>13} idle: {} visitors, {:.1} KiB each, base RSS {:.1} MiB, {:.0} handshakes/s, {} still open",
                system.slug(),
                result.connections,
                result.per_connection_kib(),
                result.base_rss_kib as f64 / 1024.0,
                result.handshakes_per_sec,
                result.still_open
            );
            idle_rows.push((system, result));
        }
    }
    let load_after = loadavg();

    let report = Report {
        systems: &systems,
        rates: &rate_rows,
        idle: &idle_rows,
        criteria: Criteria {
            agents: args.agents,
            p99_limit_ms: args.p99_limit_ms,
            reference_rate: args.reference_rate,
        },
    };
    let summary = report.summary();
    let details = report.details();
    let limits = report.limits();
    println!("\n{summary}\n{details}\nWhat limited each figure: {limits}\nload average: {load_before} at start, {load_after} at end");

    if let Some(path) = &args.write_docs {
        let commit = std::process::Command::new("git")
            .args(["rev-parse", "--short", "HEAD"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        let body = docs_body(
            &args,
            &systems,
            started,
            &commit,
            &load_before,
            &load_after,
            &summary,
            &details,
            &limits,
        );
        let doc = std::fs::read_to_string(path).unwrap_or_default();
        std::fs::write(path, report::replace_section(&doc, &body))?;
        println!("wrote the results into {}", path.display());
    }

    if !args.check {
        return Ok(true);
    }
    let mut failed = 0;
    for row in &rate_rows {
        let r = &row.result;
        if r.window_deliveries == 0
            || r.undelivered > 0
            || r.ack_errors > 0
            || r.acked < r.sent
            || !r.agents_closed.is_empty()
        {
            eprintln!(
                "FAIL {} at {} msg/s: sent {}, acked {}, send errors {}, deliveries missing {}, delivered in window {}, agent sessions ended by the server {:?}",
                row.system.slug(),
                r.rate,
                r.sent,
                r.acked,
                r.ack_errors,
                r.undelivered,
                r.window_deliveries,
                r.agents_closed
            );
            failed += 1;
        }
    }
    for (system, r) in &idle_rows {
        if r.still_open < r.connections {
            eprintln!(
                "FAIL {} idle: {} of {} connections still open",
                system.slug(),
                r.still_open,
                r.connections
            );
            failed += 1;
        }
    }
    let cases = rate_rows.len() + idle_rows.len();
    println!("chat-bench: {} passed, {failed} failed", cases - failed);
    Ok(failed == 0)
}

#[allow(clippy::too_many_arguments)]
fn docs_body(
    args: &Args,
    systems: &[System],
    started: chrono::DateTime<chrono::Utc>,
    commit: &str,
    load_before: &str,
    load_after: &str,
    summary: &str,
    details: &str,
    limits: &str,
) -> String {
    let slugs: Vec<&str> = systems.iter().map(|s| s.slug()).collect();
    format!(
        "Written by the harness (`bench/`, see bench/README.md) on each full run; do not edit by hand.\n\n\
         Command: `{command}`. Date: {date} UTC. Commit: `{commit}`. Load average (/proc/loadavg): \
         {load_before} at start, {load_after} at end. Machine: {cpus} shared vCPUs; load generator, \
         servers and Postgres (fsync on) on the same machine, which other work may share: the load \
         averages say how busy it was.\n\n\
         Scenario: {visitors} visitors and {agents} agents on WebSocket, {body}-byte messages, \
         open-loop rates {rates} msg/s, {warmup} s warm-up then {duration} s measured per rate per \
         system, systems alternating at each rate in the order {order}, each started fresh with a \
         fresh database. Latency: agent receive − scheduled send (a timestamp in the body), HDR \
         histogram over all agents. A rate is sustained when nothing is lost, no send fails, the \
         agents receive ≥ 95 % of it and p99 ≤ {p99} ms. CPU: utime + stime from /proc of the \
         server processes (Nginx master + worker + Node for the Node peer) and of the Postgres \
         backends of the bench database, per message received. Transactions: \
         `pg_stat_database.xact_commit` of the bench database over the window (backends report at \
         most once a second, so a few % either way). Idle: {idle} visitors opened {conc} at a time \
         on a fresh server after 20 warm-up ones, RSS growth per connection; base RSS before any \
         client.\n\n{summary}\nEvery run:\n\n{details}\nWhat limited each figure: {limits}.\n",
        command = args.command,
        date = started.format("%Y-%m-%d %H:%M"),
        cpus = std::thread::available_parallelism().map_or(0, |n| n.get()),
        visitors = args.visitors,
        agents = args.agents,
        body = args.body_bytes,
        rates = args.rates.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(", "),
        warmup = args.warmup_secs,
        duration = args.duration_secs,
        order = slugs.join(", "),
        p99 = args.p99_limit_ms,
        idle = args.idle,
        conc = args.handshake_concurrency,
    )
}
