//! # chat-storage
//!
//! Implementations of [`chat_core::store::Store`]:
//!
//! - [`PostgresStore`]: Postgres through a `deadpool-postgres` pool. Its schema is versioned
//!   and migrated explicitly ([`PostgresStore::migrate`], the gateway's `chat-gateway migrate`);
//!   [`open`] refuses a database that is behind with [`StoreError::NotMigrated`].
//! - [`EmbeddedStore`]: a single SQLite file, the default when no database is configured. Its
//!   schema is migrated automatically when the file is opened.
//!
//! Both keep the same promises and pass the same conformance suite (`tests/conformance.rs`):
//! a returned `Ok` means committed, sequence numbers are 1, 2, 3… per conversation with no gap,
//! and a retried `client_msg_id` returns the original message instead of writing a second one.
//!
//! With the `test-support` feature, [`test_support`] provides throwaway Postgres clusters for
//! tests (this crate's and the gateway's).
#![warn(missing_docs)]

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

pub use chat_core::store::{Appended, ConversationFilter, Imported, ImportedMessage, Store};
pub use chat_core::StoreError;

// Column lists shared by both stores' queries, in the order their row readers expect.
macro_rules! conversation_columns {
    () => {
        "id, site_id, visitor_id, status, assignee_id, assignee_name, last_seq, created_at, \
         updated_at, visitor_last_seq, waiting"
    };
}

/// How many columns `conversation_columns!()` names: a query that selects more after them reads
/// those from this index on (a test below ties the two).
pub(crate) const CONVERSATION_COLUMNS: usize = 11;

macro_rules! message_columns {
    () => {
        "conversation_id, seq, client_msg_id, sender_role, sender_id, sender_name, body, \
         created_at"
    };
}

/// The columns a message is read from: those written by every insert, then `kind` (migration
/// 6) and `attachment` (migration 12, JSON; see `message_attachment`), which inserts of text
/// (imports) leave to their defaults.
macro_rules! message_row_columns {
    () => {
        concat!(message_columns!(), ", kind, attachment")
    };
}

pub mod attachment_dir;
pub mod batch;
pub mod embedded;
pub mod files;
mod import;
mod like;
mod message_attachment;
mod migrations;
pub mod postgres;
mod status;
#[cfg(feature = "test-support")]
pub mod test_support;
mod time;
#[cfg(test)]
mod unit_fixtures;

pub use attachment_dir::AttachmentDir;
pub use batch::{AppendBatch, BatchSettings, BatchingStore};
pub use embedded::EmbeddedStore;
pub(crate) use like::like_pattern;
pub use migrations::{MigrationInfo, MigrationReport};
pub use postgres::{PostgresBus, PostgresStore};
pub use status::{schema_status, SchemaStatus};

/// Errors from building a store or migrating its schema. Errors of queries are
/// [`StoreError`]s, as the [`Store`] trait says.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The database URL could not be parsed.
    #[error("invalid database URL: {0}")]
    InvalidUrl(String),
    /// The connection pool could not be built.
    #[error("cannot build the database connection pool: {0}")]
    Pool(String),
    /// The embedded store's file could not be opened or prepared.
    #[error("cannot open the embedded store at {path}: {message}")]
    Embedded {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A migration failed; it was rolled back.
    #[error("migration {version} ({name}) failed: {message}")]
    Migration {
        /// The migration's version.
        version: i64,
        /// The migration's name.
        name: &'static str,
        /// What went wrong.
        message: String,
    },
    /// The database's TLS settings cannot be used: an unknown `sslmode`, a CA file that is
    /// missing, unreadable or holds no certificate.
    #[error("database TLS: {0}")]
    Tls(String),
    /// A TLS handshake with the database failed; says why (the certificate is not signed by
    /// the CA, the server name does not match the certificate's names, ...).
    #[error("{0}")]
    TlsHandshake(String),
    /// The store failed: unavailable, not migrated (see [`StoreError::NotMigrated`]), or other.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Which store the gateway uses.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// Postgres at `url` (e.g. `postgres://chat@127.0.0.1:5432/chat`), with a pool of at most
    /// `pool_size` connections.
    Postgres {
        /// The connection URL (`postgres://…`) or key-value string (`host=… dbname=…`).
        url: String,
        /// Maximum number of pooled connections.
        pool_size: usize,
        /// How concurrent appends share commits.
        batch: BatchSettings,
        /// Root CA file (PEM) for the server's certificate when the URL has no `sslrootcert`
        /// (the gateway's `CHAT_DATABASE_CA`); see [`postgres::tls`].
        ca: Option<PathBuf>,
    },
    /// A single SQLite file at `path`; parent directories are created.
    Embedded {
        /// The database file.
        path: PathBuf,
        /// How concurrent appends share commits.
        batch: BatchSettings,
    },
}

impl fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Postgres {
                url,
                pool_size,
                batch,
                ca,
            } => f
                .debug_struct("Postgres")
                .field("url", &redact_url(url))
                .field("pool_size", pool_size)
                .field("batch", batch)
                .field("ca", ca)
                .finish(),
            Self::Embedded { path, batch } => f
                .debug_struct("Embedded")
                .field("path", path)
                .field("batch", batch)
                .finish(),
        }
    }
}

/// The URL with its password (if any) replaced by `***`, for logs: the password of the
/// user-info part (which may itself contain `/`, `?`, `#` or `@`), `password=` /
/// `sslpassword=` query parameters, and `password=` in the key-value form (quoted or not).
pub fn redact_url(url: &str) -> String {
    if let Some(scheme_end) = url.find("://") {
        let prefix = &url[..scheme_end + 3];
        let rest = &url[scheme_end + 3..];
        // The user-info ends at the last `@`: passwords are often not percent-encoded, so `/`,
        // `?`, `#` or `@` inside one must not end it early. (An `@` in a query value makes this
        // hide more than the password, which is harmless in a log.)
        let userinfo_end = rest.rfind('@');
        let (authority, tail) = match userinfo_end {
            Some(at) => {
                let userinfo = &rest[..at];
                let redacted = match userinfo.find(':') {
                    Some(colon) => format!("{}:***", &userinfo[..colon]),
                    None => userinfo.to_string(),
                };
                (format!("{redacted}@"), &rest[at + 1..])
            }
            None => (String::new(), rest),
        };
        let tail = match tail.split_once('?') {
            Some((path, query)) => {
                let query: Vec<String> = query
                    .split('&')
                    .map(|pair| match pair.split_once('=') {
                        Some((k, _)) if k.to_ascii_lowercase().contains("password") => {
                            format!("{k}=***")
                        }
                        _ => pair.to_string(),
                    })
                    .collect();
                format!("{path}?{}", query.join("&"))
            }
            None => tail.to_string(),
        };
        return format!("{prefix}{authority}{tail}");
    }
    redact_key_value(url)
}

/// `password=...` (or `password = '...'`) of a libpq key-value connection string.
fn redact_key_value(conninfo: &str) -> String {
    let mut out = String::with_capacity(conninfo.len());
    let mut rest = conninfo;
    while let Some(found) = find_password_key(rest) {
        let (before, after) = rest.split_at(found);
        out.push_str(before);
        let eq = after.find('=').unwrap_or(after.len() - 1);
        out.push_str(&after[..=eq]);
        let value = after[eq + 1..].trim_start();
        let skipped = after[eq + 1..].len() - value.len();
        out.push_str(&after[eq + 1..eq + 1 + skipped]);
        out.push_str("***");
        let consumed = if let Some(quoted) = value.strip_prefix('\'') {
            // Quoted value: up to the closing unescaped quote.
            let mut end = quoted.len();
            let mut escaped = false;
            for (i, c) in quoted.char_indices() {
                match c {
                    '\\' if !escaped => escaped = true,
                    '\'' if !escaped => {
                        end = i + 1;
                        break;
                    }
                    _ => escaped = false,
                }
            }
            1 + end
        } else {
            value.find(char::is_whitespace).unwrap_or(value.len())
        };
        rest = &value[consumed.min(value.len())..];
    }
    out.push_str(rest);
    out
}

/// Byte offset of a `password` / `sslpassword` key (followed by optional spaces and `=`).
fn find_password_key(s: &str) -> Option<usize> {
    let lower = s.to_ascii_lowercase();
    let mut from = 0;
    while let Some(i) = lower[from..].find("password") {
        let start = from + i;
        let after = lower[start + "password".len()..].trim_start();
        if after.starts_with('=') {
            // Back up to the start of the key (e.g. `sslpassword`).
            let key_start = lower[..start]
                .rfind(|c: char| c.is_whitespace())
                .map_or(0, |w| w + 1);
            return Some(key_start);
        }
        from = start + "password".len();
    }
    None
}

/// Opens the configured store for the gateway.
///
/// For Postgres this builds the pool and checks the schema: a database that has not been
/// migrated to this binary's version fails with
/// `StorageError::Store(StoreError::NotMigrated { .. })`, whose message tells the operator to
/// run `chat-gateway migrate`. An unreachable database fails with
/// `StorageError::Store(StoreError::Unavailable(..))`. The embedded store migrates itself.
///
/// Unless `batch.max_batch` is 1, appends go through a [`BatchingStore`] (group commit); its
/// writer tasks run on the current Tokio runtime.
pub async fn open(config: &StoreConfig) -> Result<Arc<dyn Store>, StorageError> {
    match config {
        StoreConfig::Postgres {
            url,
            pool_size,
            batch,
            ca,
        } => {
            let store = PostgresStore::connect_with_ca(url, *pool_size, ca.as_deref())?;
            store.check_schema().await?;
            Ok(with_batching(store, *batch))
        }
        StoreConfig::Embedded { path, batch } => {
            let store = EmbeddedStore::open_async(path.clone()).await?;
            Ok(with_batching(store, *batch))
        }
    }
}

/// [`open`], and for Postgres also the [`PostgresBus`] between gateway processes, started
/// first so that the store sends each message's notification inside its commit (and only when
/// another process listens). The embedded store has no bus.
pub async fn open_with_bus(
    config: &StoreConfig,
) -> Result<(Arc<dyn Store>, Option<PostgresBus>), StorageError> {
    open_with_bus_and_outbox(config, None).await
}

/// [`open_with_bus`], with the webhook outbox (`chat_core::webhook`) when `outbox` is set: the
/// store then writes the webhook event of every fact of a site the outbox wants inside the
/// fact's transaction.
pub async fn open_with_bus_and_outbox(
    config: &StoreConfig,
    outbox: Option<Arc<chat_core::webhook::WebhookOutbox>>,
) -> Result<(Arc<dyn Store>, Option<PostgresBus>), StorageError> {
    match config {
        StoreConfig::Postgres {
            url,
            pool_size,
            batch,
            ca,
        } => {
            let mut store = PostgresStore::connect_with_ca(url, *pool_size, ca.as_deref())?
                .clean_search_index_in_background();
            store.check_schema().await?;
            let bus = PostgresBus::start_with_ca(url, ca.as_deref()).await?;
            store = store.notify_commits(bus.commit_notifier());
            if let Some(outbox) = outbox {
                store = store.with_webhook_outbox(outbox);
            }
            Ok((with_batching(store, *batch), Some(bus)))
        }
        StoreConfig::Embedded { path, batch } => {
            let mut store = EmbeddedStore::open_async(path.clone()).await?;
            if let Some(outbox) = outbox {
                store = store.with_webhook_outbox(outbox);
            }
            Ok((with_batching(store, *batch), None))
        }
    }
}

fn with_batching<S: AppendBatch>(store: S, batch: BatchSettings) -> Arc<dyn Store> {
    if batch.max_batch > 1 {
        Arc::new(BatchingStore::spawn(store, batch))
    } else {
        Arc::new(store)
    }
}

/// Migrates the configured store to this binary's schema version (`chat-gateway migrate`).
/// Safe to run while gateways are running and from several processes at once.
pub async fn migrate(config: &StoreConfig) -> Result<MigrationReport, StorageError> {
    match config {
        StoreConfig::Postgres {
            url, pool_size, ca, ..
        } => {
            let store = PostgresStore::connect_with_ca(url, (*pool_size).max(1), ca.as_deref())?;
            store.migrate().await
        }
        StoreConfig::Embedded { path, .. } => {
            let path = path.clone();
            tokio::task::spawn_blocking(move || EmbeddedStore::open_and_migrate(&path))
                .await
                .map_err(|e| StorageError::Store(StoreError::Other(e.to_string())))?
                .map(|(_, report)| report)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("postgres://chat:secret@db:5432/chat"),
            "postgres://chat:***@db:5432/chat"
        );
        assert_eq!(
            redact_url("postgres://chat@db:5432/chat"),
            "postgres://chat@db:5432/chat"
        );
        assert_eq!(
            redact_url("host=db password=secret dbname=chat"),
            "host=db password=*** dbname=chat"
        );
        // Passwords with the characters that end a URL authority, and in the query.
        for (url, secret) in [
            ("postgres://chat:se/cr?et@db:5432/chat", "se/cr?et"),
            (
                "postgres://chat:p@ss#word@db/chat?sslmode=require",
                "p@ss#word",
            ),
            ("postgresql://db/chat?user=chat&password=hunter2", "hunter2"),
            (
                "postgresql://db/chat?sslpassword=hunter2&sslmode=verify-full",
                "hunter2",
            ),
            ("host=db password = 'two words' dbname=chat", "two words"),
            ("host=db PASSWORD='it\\'s' dbname=chat", "it"),
            ("host=db sslpassword=hunter2", "hunter2"),
        ] {
            let redacted = redact_url(url);
            assert!(!redacted.contains(secret), "{url} -> {redacted}");
            assert!(redacted.contains("***"), "{url} -> {redacted}");
        }
        assert_eq!(
            redact_url("postgres://chat:p@ss@db/chat?sslmode=require"),
            "postgres://chat:***@db/chat?sslmode=require"
        );
        assert_eq!(
            redact_url("host=db password = 'two words' dbname=chat"),
            "host=db password = *** dbname=chat"
        );
    }
}

#[cfg(test)]
mod conversation_columns_tests {
    #[test]
    fn the_count_matches_the_list() {
        assert_eq!(
            conversation_columns!().split(',').count(),
            super::CONVERSATION_COLUMNS
        );
    }
}
