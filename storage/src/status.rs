//! Read-only schema status of the configured store, for `chat-gateway check`: which version a
//! store is at and which migrations it lacks, without creating, migrating or writing anything.

use crate::migrations::{self, Migration, MigrationInfo};
use crate::{PostgresStore, StorageError, StoreConfig};
use chat_core::StoreError;
use rusqlite::OpenFlags;
use std::path::Path;

/// What a store's schema looks like next to this binary's migrations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaStatus {
    /// Whether the store exists: always true for Postgres (the database answered); for the
    /// embedded store, whether its file does (it is created at the gateway's first start).
    pub exists: bool,
    /// The version recorded in the store: 0 when never migrated (or the file does not exist).
    pub found: i64,
    /// The version this binary needs.
    pub expected: i64,
    /// The migrations of this binary the store lacks, in order.
    pub pending: Vec<MigrationInfo>,
}

impl SchemaStatus {
    fn new(exists: bool, found: i64, list: &[Migration]) -> Self {
        Self {
            exists,
            found,
            expected: migrations::latest(list),
            pending: list
                .iter()
                .filter(|m| m.version > found)
                .map(|m| MigrationInfo {
                    version: m.version,
                    name: m.name,
                })
                .collect(),
        }
    }
}

/// Reads the schema version of the configured store. Postgres: one connection, one read-only
/// query (an unreachable server fails with `StorageError::Store(StoreError::Unavailable(..))`,
/// after the connect timeout). Embedded: the file is opened read-only when it exists and left
/// alone otherwise; unlike [`crate::open`], nothing is created or migrated.
pub async fn schema_status(config: &StoreConfig) -> Result<SchemaStatus, StorageError> {
    match config {
        StoreConfig::Postgres { url, ca, .. } => {
            let store = PostgresStore::connect_with_ca(url, 1, ca.as_deref())?;
            let found = store.schema_version().await?;
            Ok(SchemaStatus::new(true, found, migrations::POSTGRES))
        }
        StoreConfig::Embedded { path, .. } => {
            let path = path.clone();
            tokio::task::spawn_blocking(move || embedded_status(&path))
                .await
                .map_err(|e| StorageError::Store(StoreError::Other(e.to_string())))?
        }
    }
}

fn embedded_status(path: &Path) -> Result<SchemaStatus, StorageError> {
    if !path.exists() {
        return Ok(SchemaStatus::new(false, 0, migrations::EMBEDDED));
    }
    let fail = |message: String| StorageError::Embedded {
        path: path.to_path_buf(),
        message,
    };
    let conn = rusqlite::Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| fail(e.to_string()))?;
    let found = crate::embedded::read_schema_version(&conn).map_err(|e| fail(e.to_string()))?;
    Ok(SchemaStatus::new(true, found, migrations::EMBEDDED))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BatchSettings;

    fn embedded(path: &Path) -> StoreConfig {
        StoreConfig::Embedded {
            path: path.to_path_buf(),
            batch: BatchSettings::default(),
        }
    }

    #[tokio::test]
    async fn embedded_status_creates_nothing_and_sees_the_migrated_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("chat.sqlite3");
        let status = schema_status(&embedded(&path)).await.unwrap();
        assert!(!status.exists && status.found == 0, "{status:?}");
        assert_eq!(
            status.pending.last().map(|m| m.version),
            Some(status.expected)
        );
        assert!(!path.exists() && !path.parent().unwrap().exists());

        crate::EmbeddedStore::open(&path).unwrap();
        let status = schema_status(&embedded(&path)).await.unwrap();
        assert!(
            status.exists && status.found == status.expected,
            "{status:?}"
        );
        assert!(status.pending.is_empty());

        std::fs::write(dir.path().join("garbage"), b"not a database at all").unwrap();
        let e = schema_status(&embedded(&dir.path().join("garbage")))
            .await
            .unwrap_err();
        assert!(matches!(e, StorageError::Embedded { .. }), "{e}");
    }
}
