//! Mapping driver and pool errors onto [`StoreError`] / [`StorageError`].

use chat_core::StoreError;
use deadpool_postgres::PoolError;
use tokio_postgres::error::SqlState;

use crate::StorageError;

/// The error with its cause chain, on one line.
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({}): {}", db.severity(), db.code().code(), db.message()),
        None => {
            // tokio-postgres's own text is only the kind ("error performing TLS handshake");
            // the why is in the cause.
            let mut text = e.to_string();
            let mut cause = std::error::Error::source(e);
            while let Some(c) = cause {
                text.push_str(": ");
                text.push_str(&c.to_string());
                cause = c.source();
            }
            text
        }
    }
}

/// Whether `e` means the server cannot be reached or the connection is gone.
pub(crate) fn is_connection_error(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        // 08: connection exception; 57P01-3: admin/crash shutdown, cannot connect now;
        // 53300: too many connections.
        return code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300");
    }
    if std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>()) {
        return true;
    }
    let text = e.to_string();
    [
        "error connecting to server",
        "timeout waiting for server",
        "error communicating with the server",
        "error performing TLS handshake",
    ]
    .iter()
    .any(|prefix| text.starts_with(prefix))
}

/// A query error: connection errors are [`StoreError::Unavailable`], others
/// [`StoreError::Other`].
pub(crate) fn pg_err(e: tokio_postgres::Error) -> StoreError {
    if is_connection_error(&e) {
        StoreError::Unavailable(describe(&e))
    } else {
        StoreError::Other(describe(&e))
    }
}

/// Whether `e` is a unique violation.
pub(crate) fn unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

/// A pool error: no connection could be had (timeout, connect failure, closed pool) is
/// [`StoreError::Unavailable`].
pub(crate) fn pool_err(e: PoolError) -> StorageError {
    let store = match e {
        PoolError::Timeout(kind) => {
            StoreError::Unavailable(format!("no database connection in time ({kind:?})"))
        }
        PoolError::Backend(e) => StoreError::Unavailable(describe(&e)),
        PoolError::Closed => StoreError::Unavailable("the connection pool is closed".into()),
        other => StoreError::Other(other.to_string()),
    };
    StorageError::Store(store)
}
