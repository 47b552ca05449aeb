//! Readings taken at both ends of a measured window: CPU of the server process(es), of the
//! Postgres backends serving the bench database and of the load generator itself, the servers'
//! RSS, and the database's committed transactions.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use crate::procstat;

#[derive(Clone)]
pub struct Monitor {
    pub server_pids: Vec<u32>,
    pub database: String,
    pub database_url: String,
    pub admin: Arc<tokio_postgres::Client>,
}

#[derive(Clone, Debug)]
pub struct Snapshot {
    pub at: Instant,
    pub server_ticks: HashMap<u32, u64>,
    pub postgres_ticks: HashMap<u32, u64>,
    pub loadgen_ticks: u64,
    pub server_rss_kib: u64,
    /// `pg_stat_database.xact_commit` of the bench database (None when the query failed).
    pub xact_commit: Option<i64>,
}

/// CPU seconds, RSS and transactions between two snapshots.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    pub secs: f64,
    pub server_cpu_secs: f64,
    pub postgres_cpu_secs: f64,
    pub loadgen_cpu_secs: f64,
    pub server_rss_kib: u64,
    pub xacts: Option<i64>,
}

impl Monitor {
    /// `ANALYZE` of the bench database, as autovacuum would do within its first minute: each
    /// system starts on a fresh, empty database, and a server's cached plans made while its
    /// tables were empty (a sequential scan is then the cheapest) would otherwise stay for the
    /// whole window, which a real deployment sees only in its first minute (docs/benchmarks.md,
    /// "Plans made on empty tables"). Every system gets the same. A failure is reported and
    /// the run goes on.
    pub async fn analyze(&self) {
        let analyzed = async {
            let client = crate::systems::admin_connect(&self.database_url).await?;
            client.batch_execute("ANALYZE").await?;
            Ok::<_, crate::BenchError>(())
        };
        if let Err(error) = analyzed.await {
            eprintln!("ANALYZE of {} failed: {error}", self.database);
        }
    }

    pub async fn snapshot(&self) -> Snapshot {
        let xact_commit = self
            .admin
            .query_one(
                "SELECT xact_commit FROM pg_stat_database WHERE datname = $1",
                &[&self.database],
            )
            .await
            .ok()
            .map(|row| row.get::<_, i64>(0));
        Snapshot {
            at: Instant::now(),
            server_ticks: procstat::ticks_of(&self.server_pids),
            postgres_ticks: procstat::postgres_backends(&self.database),
            loadgen_ticks: procstat::cpu_ticks(std::process::id()).unwrap_or(0),
            server_rss_kib: procstat::rss_of(&self.server_pids),
            xact_commit,
        }
    }
}

pub fn usage(before: &Snapshot, after: &Snapshot) -> Usage {
    let hz = procstat::ticks_per_sec();
    Usage {
        secs: after.at.duration_since(before.at).as_secs_f64(),
        server_cpu_secs: procstat::ticks_between(&before.server_ticks, &after.server_ticks) as f64
            / hz,
        postgres_cpu_secs: procstat::ticks_between(&before.postgres_ticks, &after.postgres_ticks)
            as f64
            / hz,
        loadgen_cpu_secs: after.loadgen_ticks.saturating_sub(before.loadgen_ticks) as f64 / hz,
        server_rss_kib: after.server_rss_kib,
        xacts: match (before.xact_commit, after.xact_commit) {
            (Some(b), Some(a)) => Some(a - b),
            _ => None,
        },
    }
}
