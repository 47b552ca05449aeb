//! The embedded store's SQLite errors as [`StoreError`]s.

use chat_core::StoreError;

/// Busy/locked/cannot-open errors are [`StoreError::Unavailable`], others
/// [`StoreError::Other`].
pub(super) fn sqlite_err(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode;
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked | ErrorCode::CannotOpen) => {
            StoreError::Unavailable(e.to_string())
        }
        _ => StoreError::Other(e.to_string()),
    }
}

pub(super) fn constraint(e: &rusqlite::Error, extended_code: i32) -> bool {
    e.sqlite_error()
        .is_some_and(|s| s.extended_code == extended_code)
}
