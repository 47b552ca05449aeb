//! The database schema's version on Postgres: migrating it ([`PostgresStore::migrate`]), reading
//! it, and checking that it is recent enough for this binary.

use chat_core::StoreError;

use super::errors::{self, pg_err};
use super::pool::finish;
use super::{PostgresStore, OP_TIMEOUT};
use crate::migrations::{self, MigrationInfo, MigrationReport};
use crate::StorageError;

/// Key of the advisory lock that serializes migrations across processes ("chatmigr").
const MIGRATION_LOCK_KEY: i64 = 0x6368_6174_6d69_6772;

impl PostgresStore {
    /// The schema version this binary needs.
    pub fn expected_schema_version() -> i64 {
        migrations::latest(migrations::POSTGRES)
    }

    /// Applies the migrations the database lacks, each in its own transaction, and records
    /// them in `chat_schema_migrations(version, name, applied_at)`. A Postgres advisory lock
    /// serializes concurrent runs (two gateways migrating at once are safe). Idempotent.
    pub async fn migrate(&self) -> Result<MigrationReport, StorageError> {
        let mut client = self.client().await?;
        let mut applied = Vec::new();
        for m in migrations::POSTGRES {
            let fail = |message: String| StorageError::Migration {
                version: m.version,
                name: m.name,
                message,
            };
            let tx = client.transaction().await.map_err(pg_err)?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK_KEY])
                .await
                .map_err(pg_err)?;
            tx.batch_execute(
                "CREATE TABLE IF NOT EXISTS chat_schema_migrations (
                     version    bigint      PRIMARY KEY,
                     name       text        NOT NULL,
                     applied_at timestamptz NOT NULL DEFAULT now()
                 )",
            )
            .await
            .map_err(pg_err)?;
            let done: bool = tx
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM chat_schema_migrations WHERE version = $1)",
                    &[&m.version],
                )
                .await
                .map_err(pg_err)?
                .try_get(0)
                .map_err(pg_err)?;
            if done {
                tx.commit().await.map_err(pg_err)?;
                continue;
            }
            tx.batch_execute(m.sql)
                .await
                .map_err(|e| fail(errors::describe(&e)))?;
            tx.execute(
                "INSERT INTO chat_schema_migrations (version, name, applied_at) \
                 VALUES ($1, $2, clock_timestamp())",
                &[&m.version, &m.name],
            )
            .await
            .map_err(|e| fail(errors::describe(&e)))?;
            tx.commit().await.map_err(|e| fail(errors::describe(&e)))?;
            tracing::info!(
                version = m.version,
                name = m.name,
                "applied Postgres migration"
            );
            applied.push(MigrationInfo {
                version: m.version,
                name: m.name,
            });
        }
        // On the same connection: a pool of one must not wait for a second.
        let version = read_schema_version(&client).await?;
        Ok(MigrationReport { applied, version })
    }

    /// The schema version recorded in the database: 0 when it was never migrated.
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        let client = self.client().await?;
        let result = tokio::time::timeout(OP_TIMEOUT, read_schema_version(&client)).await;
        finish(client, result)
    }

    /// Succeeds when the database schema is at least at the version this binary needs;
    /// otherwise [`StoreError::NotMigrated`] (whose message tells the operator to run
    /// `chat-gateway migrate`). A newer schema is accepted: migrations are additive, so an
    /// older gateway keeps working during a rolling upgrade.
    pub async fn check_schema(&self) -> Result<(), StoreError> {
        let found = self.schema_version().await?;
        let expected = Self::expected_schema_version();
        if found < expected {
            return Err(StoreError::NotMigrated { found, expected });
        }
        if found > expected {
            tracing::warn!(
                found,
                expected,
                "the database schema is newer than this gateway's; continuing"
            );
        }
        Ok(())
    }
}

/// The schema version recorded in the database: 0 when it was never migrated.
async fn read_schema_version(client: &tokio_postgres::Client) -> Result<i64, StoreError> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('chat_schema_migrations') IS NOT NULL",
            &[],
        )
        .await
        .map_err(pg_err)?
        .try_get(0)
        .map_err(pg_err)?;
    if !exists {
        return Ok(0);
    }
    client
        .query_one(
            "SELECT coalesce(max(version), 0)::bigint FROM chat_schema_migrations",
            &[],
        )
        .await
        .map_err(pg_err)?
        .try_get(0)
        .map_err(pg_err)
}
