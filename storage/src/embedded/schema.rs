//! The embedded store's schema version: migrating the file (when it is opened) and reading the
//! version it is at.

use chat_core::StoreError;
use rusqlite::{params, Connection, TransactionBehavior};

use super::errors::sqlite_err;
use super::EmbeddedStore;
use crate::migrations::{self, MigrationInfo, MigrationReport};
use crate::time::now_micros;
use crate::StorageError;

impl EmbeddedStore {
    /// The schema version this binary needs (and migrates the file to on open).
    pub fn expected_schema_version() -> i64 {
        migrations::latest(migrations::EMBEDDED)
    }

    /// The schema version recorded in the file.
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        self.call(|conn| schema_version(conn).map_err(sqlite_err))
            .await
    }
}

/// The schema version recorded in an open file (0 when never migrated), for read-only callers.
pub(crate) fn read_schema_version(conn: &Connection) -> rusqlite::Result<i64> {
    schema_version(conn)
}

fn schema_version(conn: &Connection) -> rusqlite::Result<i64> {
    let exists: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' \
         AND name = 'chat_schema_migrations')",
        [],
        |row| row.get(0),
    )?;
    if !exists {
        return Ok(0);
    }
    conn.query_row(
        "SELECT coalesce(max(version), 0) FROM chat_schema_migrations",
        [],
        |row| row.get(0),
    )
}

/// Applies the migrations the file lacks, each in its own (immediate, so exclusive for
/// writers) transaction.
pub(super) fn migrate(conn: &mut Connection) -> Result<MigrationReport, StorageError> {
    let mut applied = Vec::new();
    for m in migrations::EMBEDDED {
        let fail = |e: rusqlite::Error| StorageError::Migration {
            version: m.version,
            name: m.name,
            message: e.to_string(),
        };
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(fail)?;
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS chat_schema_migrations (
                 version    INTEGER PRIMARY KEY,
                 name       TEXT    NOT NULL,
                 applied_at INTEGER NOT NULL
             ) STRICT",
        )
        .map_err(fail)?;
        let done: bool = tx
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM chat_schema_migrations WHERE version = ?1)",
                [m.version],
                |row| row.get(0),
            )
            .map_err(fail)?;
        if done {
            tx.commit().map_err(fail)?;
            continue;
        }
        tx.execute_batch(m.sql).map_err(fail)?;
        tx.execute(
            "INSERT INTO chat_schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
            params![m.version, m.name, now_micros().timestamp_micros()],
        )
        .map_err(fail)?;
        tx.commit().map_err(fail)?;
        tracing::info!(
            version = m.version,
            name = m.name,
            "applied embedded migration"
        );
        applied.push(MigrationInfo {
            version: m.version,
            name: m.name,
        });
    }
    let version = schema_version(conn).map_err(|e| StorageError::Store(sqlite_err(e)))?;
    Ok(MigrationReport { applied, version })
}
