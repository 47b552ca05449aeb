//! Persisted messages per second and acknowledgement latency with the group-commit writer
//! ([`BatchingStore`]) against one commit per message, side by side in one run, at 1, 16 and
//! 256 concurrent senders, on Postgres and on the embedded store.
//!
//! ```text
//! cargo bench -p chat-storage --bench append_throughput            # throwaway cluster (fsync=off)
//! CHAT_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
//!   cargo bench -p chat-storage --bench append_throughput          # a durable server
//! BENCH_SECONDS=10 BENCH_CONCURRENCY=1,16,256 cargo bench …        # longer / other levels
//! ```
//!
//! Each sender owns a conversation and sends one message at a time, waiting for its
//! acknowledgement (the store's `Ok`), for `BENCH_SECONDS` per case.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chat_core::model::{NewMessage, Role, Sender, Visitor, VisitorId};
use chat_core::store::Store;
use chat_storage::test_support::TestPostgres;
use chat_storage::{BatchSettings, BatchingStore, EmbeddedStore, PostgresStore};

struct Outcome {
    messages: u64,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

async fn run_case(store: Arc<dyn Store>, senders: usize, seconds: u64) -> Outcome {
    let mut conversations = Vec::with_capacity(senders);
    for _ in 0..senders {
        let visitor = store
            .ensure_visitor(&Visitor {
                id: VisitorId::new_random(),
                site_id: "bench".into(),
                created_at: chrono::Utc::now(),
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
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for (n, conversation) in conversations.into_iter().enumerate() {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut i = 0u64;
            while Instant::now() < deadline {
                i += 1;
                let sent = Instant::now();
                store
                    .append_message(NewMessage {
                        conversation_id: conversation.id,
                        client_msg_id: Some(format!("{n}-{i}")),
                        sender: Sender {
                            role: Role::Visitor,
                            id: conversation.visitor_id.to_string(),
                            name: None,
                        },
                        body: "a typical chat message of about sixty characters, give or take"
                            .into(),
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

fn report(store: &str, mode: &str, senders: usize, o: &Outcome) {
    println!(
        "| {store} | {mode} | {senders} | {:.0} | {:.2} | {:.2} |",
        o.messages as f64 / o.elapsed.as_secs_f64(),
        percentile(&o.latencies, 0.50),
        percentile(&o.latencies, 0.99),
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing we need.
    let seconds: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let levels: Vec<usize> = std::env::var("BENCH_CONCURRENCY")
        .unwrap_or_else(|_| "1,16,256".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let pool_size = 16;
    let batch = BatchSettings {
        writers: std::env::var("BENCH_WRITERS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(BatchSettings::default().writers),
        ..BatchSettings::default()
    };
    let pg = TestPostgres::start();
    let url = pg.fresh_database();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let fsync = runtime.block_on(async {
        let store = PostgresStore::connect(&url, 2).expect("connect");
        store.migrate().await.expect("migrate");
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(connection);
        let row = client.query_one("SHOW fsync", &[]).await.expect("fsync");
        row.get::<_, String>(0)
    });
    println!(
        "append throughput, {seconds} s per case, Postgres pool {pool_size}, fsync={fsync}, \
         embedded synchronous=FULL, group commit: {} writers, batches of at most {}",
        batch.writers, batch.max_batch
    );
    println!("| store | mode | senders | messages/s | ack p50 ms | ack p99 ms |");
    println!("|---|---|---:|---:|---:|---:|");
    for &senders in &levels {
        runtime.block_on(async {
            let plain = PostgresStore::connect(&url, pool_size).expect("connect");
            let o = run_case(Arc::new(plain), senders, seconds).await;
            report("postgres", "commit per message", senders, &o);
            let batched = BatchingStore::spawn(
                PostgresStore::connect(&url, pool_size).expect("connect"),
                batch,
            );
            let o = run_case(Arc::new(batched), senders, seconds).await;
            report("postgres", "group commit", senders, &o);

            let path = dir.path().join(format!("bench-{senders}.db"));
            let plain = EmbeddedStore::open_async(path.clone())
                .await
                .expect("embedded");
            let o = run_case(Arc::new(plain), senders, seconds).await;
            report("embedded", "commit per message", senders, &o);
            let batched = BatchingStore::spawn(
                EmbeddedStore::open_async(path).await.expect("embedded"),
                batch,
            );
            let o = run_case(Arc::new(batched), senders, seconds).await;
            report("embedded", "group commit", senders, &o);
        });
    }
}
