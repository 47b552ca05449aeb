//! Persisted messages per second and acknowledgement latency with the group-commit writer
//! ([`BatchingStore`]) against one commit per message, side by side in one run, at 1, 16 and
//! 256 concurrent senders, on Postgres and on the embedded store.
//!
//! ```text
//! cargo bench -p chat-storage --bench append_throughput            # throwaway cluster (fsync=off)
//! CHAT_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
//!   cargo bench -p chat-storage --bench append_throughput          # a durable server
//! BENCH_SECONDS=10 BENCH_CONCURRENCY=1,16,256 cargo bench …        # longer / other levels
//! BENCH_STORES=postgres BENCH_MODES=group cargo bench …             # a subset of the cases
//! BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/mine cargo bench …  # this database
//! BENCH_SEARCH_INDEX=none BENCH_BODY=varied cargo bench …            # the search index's cost
//! ```
//!
//! Each sender owns a conversation and sends one message at a time, waiting for its
//! acknowledgement (the store's `Ok`), for `BENCH_SECONDS` per case. `BENCH_STORES`
//! (`postgres,embedded`) and `BENCH_MODES` (`single,group`: commit per message, group commit)
//! choose the cases; `BENCH_DATABASE_URL` names an existing, empty or already migrated
//! database to use as it is, instead of a fresh one made on `CHAT_TEST_DATABASE_URL`'s server.
//!
//! `BENCH_SEARCH_INDEX` changes the Postgres search index (`messages_body_fts_idx`, migration
//! 0010) after migrating: `none` drops it, anything else is given to `ALTER INDEX … SET (…)`
//! (e.g. `fastupdate=off` or `gin_pending_list_limit=16384`); unset, it stays as migrated.
//! `BENCH_SEARCH_MERGE=inserts` leaves the index's pending list to the inserts to merge, as a
//! store does without `clean_search_index_in_background` (the default, `background`, is what the
//! gateway runs).
//! `BENCH_BODY=varied` sends eleven words drawn from a vocabulary of 20,000, common ones more
//! often, instead of the same sentence of eleven words every time (which gives a full-text index
//! nothing new to add after the first message).
//!
//! Besides throughput and latency, each Postgres case prints the transactions committed per
//! message (`pg_stat_database.xact_commit`, read after the case's connections have closed) and
//! the CPU time used, as a share of one core: the bench process, and the Postgres backends
//! serving this database (read from `/proc`, so only when Postgres runs on this machine; the
//! server's shared processes, such as the WAL writer, are not counted).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chat_core::model::{Conversation, MessageKind, NewMessage, Role, Sender, Visitor, VisitorId};
use chat_core::store::Store;
use chat_storage::test_support::TestPostgres;
use chat_storage::{BatchSettings, BatchingStore, EmbeddedStore, PostgresStore};

#[path = "append_throughput/body.rs"]
mod body;
use body::{random_state, Body};

struct Outcome {
    messages: u64,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

/// One visitor and conversation per sender.
async fn conversations(store: &dyn Store, senders: usize) -> Vec<Conversation> {
    let mut conversations = Vec::with_capacity(senders);
    for _ in 0..senders {
        let visitor = store
            .ensure_visitor(&Visitor {
                id: VisitorId::new_random(),
                site_id: "bench".into(),
                created_at: chrono::Utc::now(),
                profile: None,
            })
            .await
            .expect("visitor");
        conversations.push(
            store
                .create_conversation("bench", visitor.id)
                .await
                .expect("conversation"),
        );
    }
    conversations
}

async fn run_case(
    store: Arc<dyn Store>,
    conversations: Vec<Conversation>,
    seconds: u64,
    body: Body,
) -> Outcome {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for (n, conversation) in conversations.into_iter().enumerate() {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut i = 0u64;
            let mut random = random_state(n);
            while Instant::now() < deadline {
                i += 1;
                let sent = Instant::now();
                store
                    .append_message(NewMessage {
                        attachment: None,
                        conversation_id: conversation.id,
                        client_msg_id: Some(format!("{n}-{i}")),
                        sender: Sender {
                            role: Role::Visitor,
                            id: conversation.visitor_id.to_string(),
                            name: None,
                        },
                        body: body.text(&mut random),
                        kind: MessageKind::Text,
                    })
                    .await
                    .expect("append");
                latencies.push(sent.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("sender"));
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    Outcome {
        messages: latencies.len() as u64,
        elapsed,
        latencies,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx].as_secs_f64() * 1000.0
}

/// What a Postgres case cost besides time: transactions and CPU.
#[derive(Default)]
struct Costs {
    xacts_per_message: Option<f64>,
    /// CPU seconds per wall second (1.0 = one core) of the bench process.
    bench_cpu: f64,
    /// The same, of the Postgres backends serving the bench's database.
    postgres_cpu: Option<f64>,
}

fn report(store: &str, mode: &str, senders: usize, o: &Outcome, costs: &Costs) {
    println!(
        "| {store} | {mode} | {senders} | {:.0} | {:.2} | {:.2} | {} | {:.0}% | {} |",
        o.messages as f64 / o.elapsed.as_secs_f64(),
        percentile(&o.latencies, 0.50),
        percentile(&o.latencies, 0.99),
        costs
            .xacts_per_message
            .map_or_else(|| "-".into(), |x| format!("{x:.3}")),
        costs.bench_cpu * 100.0,
        match costs.postgres_cpu {
            Some(c) => format!("{:.0}%", c * 100.0),
            None => "-".into(),
        },
    );
}

/// CPU time (user + system) of process `pid` so far, from `/proc/<pid>/stat`.
fn cpu_time(pid: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after it are plain numbers.
    let after_name = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split(' ').collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // Clock ticks; 100 per second on Linux whatever the kernel's HZ.
    Some(Duration::from_millis((utime + stime) * 10))
}

/// Reads the database's statistics and its backends' CPU on a connection of its own.
struct Observer {
    client: tokio_postgres::Client,
    /// Queries made so far (each a transaction, counted in `xact_commit`).
    queries: i64,
}

/// How long closed backends are given to exit and report their statistics.
const REPORT_DELAY: Duration = Duration::from_millis(1500);

impl Observer {
    async fn connect(url: &str) -> Observer {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(connection);
        Observer { client, queries: 0 }
    }

    /// Transactions committed in this database, once the backends that closed have reported.
    async fn xact_commit(&mut self) -> i64 {
        self.queries += 1;
        let row = self
            .client
            .query_one(
                "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
                &[],
            )
            .await
            .expect("xact_commit");
        row.get(0)
    }

    /// CPU time so far of each backend serving this database, but this observer's own.
    async fn backend_cpu(&mut self) -> Option<HashMap<String, Duration>> {
        self.queries += 1;
        let rows = self
            .client
            .query(
                "SELECT pid::text FROM pg_stat_activity \
                 WHERE datname = current_database() AND pid <> pg_backend_pid()",
                &[],
            )
            .await
            .expect("pg_stat_activity");
        rows.iter()
            .map(|r| {
                let pid: String = r.get(0);
                cpu_time(&pid).map(|t| (pid, t))
            })
            .collect()
    }
}

/// Records the CPU time so far of the database's backends in `known` (pid: first seen, last
/// seen); `None` once a backend's `/proc` entry could not be read.
async fn see_backends(
    observer: &mut Observer,
    known: &mut Option<HashMap<String, (Duration, Duration)>>,
) {
    match (observer.backend_cpu().await, known.as_mut()) {
        (Some(now), Some(known)) => {
            for (pid, t) in now {
                known.entry(pid).or_insert((Duration::ZERO, t)).1 = t;
            }
        }
        _ => *known = None,
    }
}

/// Runs one Postgres case on `store`, then drops it (its connections close) before counting
/// the transactions.
async fn postgres_case(
    url: &str,
    store: Arc<dyn Store>,
    senders: usize,
    seconds: u64,
    body: Body,
) -> (Outcome, Costs) {
    // Made on connections of their own, closed before counting starts.
    let conversations = {
        let setup = PostgresStore::connect(url, 4).expect("connect");
        conversations(&setup, senders).await
    };
    tokio::time::sleep(REPORT_DELAY).await;
    let mut observer = Observer::connect(url).await;
    // Backends report their counters when they exit; those of earlier cases have.
    let xacts_before = observer.xact_commit().await;
    let bench_before = cpu_time("self").unwrap_or_default();
    // Backends opened during the run are seen by polling; a new one counts from zero.
    let mut backends: Option<HashMap<String, (Duration, Duration)>> = observer
        .backend_cpu()
        .await
        .map(|now| now.into_iter().map(|(pid, t)| (pid, (t, t))).collect());
    let running = run_case(store.clone(), conversations, seconds, body);
    tokio::pin!(running);
    let outcome = loop {
        tokio::select! {
            outcome = &mut running => break outcome,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {
                see_backends(&mut observer, &mut backends).await;
            }
        }
    };
    see_backends(&mut observer, &mut backends).await;
    let bench_cpu = cpu_time("self").unwrap_or_default() - bench_before;
    drop(store);
    let observed = observer.queries;
    drop(observer);
    // Let the closed backends exit and report their counters.
    tokio::time::sleep(REPORT_DELAY).await;
    let xacts = Observer::connect(url).await.xact_commit().await - xacts_before;
    let wall = outcome.elapsed.as_secs_f64();
    let costs = Costs {
        // Each of the observer's queries was a transaction of its own.
        xacts_per_message: Some((xacts - observed) as f64 / outcome.messages.max(1) as f64),
        bench_cpu: bench_cpu.as_secs_f64() / wall,
        postgres_cpu: backends.map(|b| {
            b.values()
                .map(|(start, end)| end.saturating_sub(*start).as_secs_f64())
                .sum::<f64>()
                / wall
        }),
    };
    (outcome, costs)
}

async fn embedded_case(
    store: Arc<dyn Store>,
    senders: usize,
    seconds: u64,
    body: Body,
) -> (Outcome, Costs) {
    let conversations = conversations(store.as_ref(), senders).await;
    let before = cpu_time("self").unwrap_or_default();
    let outcome = run_case(store, conversations, seconds, body).await;
    let bench_cpu = cpu_time("self").unwrap_or_default() - before;
    let costs = Costs {
        bench_cpu: bench_cpu.as_secs_f64() / outcome.elapsed.as_secs_f64(),
        ..Costs::default()
    };
    (outcome, costs)
}

/// Applies `BENCH_SEARCH_INDEX` to the migrated database; says what the index is now.
async fn set_search_index(client: &tokio_postgres::Client, variant: Option<&str>) -> String {
    let statement = match variant {
        None => return "as migrated".into(),
        Some("none") => "DROP INDEX messages_body_fts_idx".to_string(),
        Some(parameters) => format!("ALTER INDEX messages_body_fts_idx SET ({parameters})"),
    };
    client
        .batch_execute(&statement)
        .await
        .unwrap_or_else(|e| panic!("BENCH_SEARCH_INDEX: {statement}: {e}"));
    variant.unwrap_or_default().to_string()
}

fn list(var: &str, default: &str) -> Vec<String> {
    std::env::var(var)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing we need.
    let seconds: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let levels: Vec<usize> = list("BENCH_CONCURRENCY", "1,16,256")
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect();
    let stores = list("BENCH_STORES", "postgres,embedded");
    let modes = list("BENCH_MODES", "single,group");
    let search_index = std::env::var("BENCH_SEARCH_INDEX")
        .ok()
        .filter(|v| !v.is_empty());
    let body = match std::env::var("BENCH_BODY").as_deref() {
        Ok("varied") => Body::Varied,
        Ok("fixed") | Err(_) => Body::Fixed,
        Ok(other) => panic!("BENCH_BODY: {other}: expected fixed or varied"),
    };
    // As the gateway runs it: the search index's pending list merged in the background.
    let merge_in_background = match std::env::var("BENCH_SEARCH_MERGE").as_deref() {
        Ok("background") | Err(_) => true,
        Ok("inserts") => false,
        Ok(other) => panic!("BENCH_SEARCH_MERGE: {other}: expected background or inserts"),
    };
    let pool_size = 16;
    let batch = BatchSettings {
        writers: std::env::var("BENCH_WRITERS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(BatchSettings::default().writers),
        ..BatchSettings::default()
    };
    let mut _server = None;
    let url = match std::env::var("BENCH_DATABASE_URL") {
        Ok(url) if stores.iter().any(|s| s == "postgres") => url,
        _ => {
            let pg = TestPostgres::start();
            let url = pg.fresh_database();
            _server = Some(pg);
            url
        }
    };
    let postgres_store = |pool_size: usize| {
        let store = PostgresStore::connect(&url, pool_size).expect("connect");
        match merge_in_background {
            true => store.clean_search_index_in_background(),
            false => store,
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let (fsync, index) = runtime.block_on(async {
        let store = PostgresStore::connect(&url, 2).expect("connect");
        store.migrate().await.expect("migrate");
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(connection);
        let mut settings = Vec::new();
        for name in ["fsync", "synchronous_commit"] {
            let row = client
                .query_one(&format!("SHOW {name}"), &[])
                .await
                .expect("setting");
            settings.push(format!("{name}={}", row.get::<_, String>(0)));
        }
        let index = set_search_index(&client, search_index.as_deref()).await;
        (settings.join(", "), index)
    });
    println!(
        "append throughput, {seconds} s per case, Postgres pool {pool_size}, {fsync}, \
         search index: {index}, its pending list merged {}, {} bodies, embedded synchronous=FULL, \
         group commit: {} writers, batches of at most {}",
        match merge_in_background {
            true => "in the background",
            false => "by the inserts",
        },
        match body {
            Body::Fixed => "fixed",
            Body::Varied => "varied",
        },
        batch.writers,
        batch.max_batch
    );
    println!(
        "| store | mode | senders | messages/s | ack p50 ms | ack p99 ms | xact/msg | bench CPU | postgres CPU |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
    let wants = |store: &str, mode: &str| {
        stores.iter().any(|s| s == store) && modes.iter().any(|m| m == mode)
    };
    for &senders in &levels {
        runtime.block_on(async {
            if wants("postgres", "single") {
                let plain = postgres_store(pool_size);
                let (o, c) = postgres_case(&url, Arc::new(plain), senders, seconds, body).await;
                report("postgres", "commit per message", senders, &o, &c);
            }
            if wants("postgres", "group") {
                let batched = BatchingStore::spawn(postgres_store(pool_size), batch);
                let (o, c) = postgres_case(&url, Arc::new(batched), senders, seconds, body).await;
                report("postgres", "group commit", senders, &o, &c);
            }
            let path = dir.path().join(format!("bench-{senders}.db"));
            if wants("embedded", "single") {
                let plain = EmbeddedStore::open_async(path.clone())
                    .await
                    .expect("embedded");
                let (o, c) = embedded_case(Arc::new(plain), senders, seconds, body).await;
                report("embedded", "commit per message", senders, &o, &c);
            }
            if wants("embedded", "group") {
                let batched = BatchingStore::spawn(
                    EmbeddedStore::open_async(path).await.expect("embedded"),
                    batch,
                );
                let (o, c) = embedded_case(Arc::new(batched), senders, seconds, body).await;
                report("embedded", "group commit", senders, &o, &c);
            }
        });
    }
}
