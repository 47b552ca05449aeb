//! Canned responses on the embedded store ([`chat_core::canned`]).

use chat_core::canned::{CannedFields, CannedResponse, CannedWrite};
use chat_core::StoreError;
use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};
use uuid::Uuid;

use super::errors::{constraint, sqlite_err};
use super::rows::{parse_uuid, timestamp};
use crate::time::now_micros;

const COLUMNS: &str = "id, site_id, shortcut, title, body, created_at, updated_at";

struct CannedRow {
    id: String,
    site_id: String,
    shortcut: String,
    title: String,
    body: String,
    created_at: i64,
    updated_at: i64,
}

fn read(row: &Row<'_>) -> rusqlite::Result<CannedRow> {
    Ok(CannedRow {
        id: row.get(0)?,
        site_id: row.get(1)?,
        shortcut: row.get(2)?,
        title: row.get(3)?,
        body: row.get(4)?,
        created_at: row.get(5)?,
        updated_at: row.get(6)?,
    })
}

fn canned_from(raw: CannedRow) -> Result<CannedResponse, StoreError> {
    Ok(CannedResponse {
        id: parse_uuid(&raw.id)?,
        site_id: raw.site_id,
        shortcut: raw.shortcut,
        title: raw.title,
        body: raw.body,
        created_at: timestamp(raw.created_at)?,
        updated_at: timestamp(raw.updated_at)?,
    })
}

fn unique_violation(e: &rusqlite::Error) -> bool {
    constraint(e, rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE)
}

/// [`chat_core::store::Store::canned_responses`].
pub(super) fn list(conn: &Connection, site_id: &str) -> Result<Vec<CannedResponse>, StoreError> {
    let raws = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM canned_responses WHERE site_id = ?1 ORDER BY shortcut"
        ))
        .and_then(|mut stmt| {
            stmt.query_map([site_id], read)?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(sqlite_err)?;
    raws.into_iter().map(canned_from).collect()
}

/// [`chat_core::store::Store::canned_response`].
pub(super) fn get(conn: &Connection, id: Uuid) -> Result<Option<CannedResponse>, StoreError> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM canned_responses WHERE id = ?1"
    ))
    .and_then(|mut stmt| stmt.query_row([id.to_string()], read).optional())
    .map_err(sqlite_err)?
    .map(canned_from)
    .transpose()
}

/// [`chat_core::store::Store::create_canned_response`]: the count and the insert in one
/// immediate transaction (the store's one connection writes alone anyway).
pub(super) fn create(
    conn: &mut Connection,
    site_id: &str,
    fields: &CannedFields,
    max_per_site: u32,
) -> Result<CannedWrite, StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sqlite_err)?;
    let count: i64 = tx
        .query_row(
            "SELECT count(*) FROM canned_responses WHERE site_id = ?1",
            [site_id],
            |row| row.get(0),
        )
        .map_err(sqlite_err)?;
    if count >= i64::from(max_per_site) {
        return Ok(CannedWrite::LimitReached);
    }
    let now = now_micros().timestamp_micros();
    let inserted = tx
        .prepare_cached(&format!(
            "INSERT INTO canned_responses ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6) \
             RETURNING {COLUMNS}"
        ))
        .and_then(|mut stmt| {
            stmt.query_row(
                params![
                    Uuid::new_v4().to_string(),
                    site_id,
                    fields.shortcut,
                    fields.title,
                    fields.body,
                    now
                ],
                read,
            )
        });
    let raw = match inserted {
        Ok(raw) => raw,
        Err(e) if unique_violation(&e) => return Ok(CannedWrite::ShortcutTaken),
        Err(e) => return Err(sqlite_err(e)),
    };
    tx.commit().map_err(sqlite_err)?;
    canned_from(raw).map(CannedWrite::Stored)
}

/// [`chat_core::store::Store::update_canned_response`].
pub(super) fn update(
    conn: &Connection,
    id: Uuid,
    fields: &CannedFields,
) -> Result<CannedWrite, StoreError> {
    let updated = conn
        .prepare_cached(&format!(
            "UPDATE canned_responses SET shortcut = ?2, title = ?3, body = ?4, updated_at = ?5 \
             WHERE id = ?1 RETURNING {COLUMNS}"
        ))
        .and_then(|mut stmt| {
            stmt.query_row(
                params![
                    id.to_string(),
                    fields.shortcut,
                    fields.title,
                    fields.body,
                    now_micros().timestamp_micros()
                ],
                read,
            )
            .optional()
        });
    match updated {
        Ok(Some(raw)) => canned_from(raw).map(CannedWrite::Stored),
        Ok(None) => Err(StoreError::NotFound("canned response")),
        Err(e) if unique_violation(&e) => Ok(CannedWrite::ShortcutTaken),
        Err(e) => Err(sqlite_err(e)),
    }
}

/// [`chat_core::store::Store::delete_canned_response`].
pub(super) fn delete(conn: &Connection, id: Uuid) -> Result<bool, StoreError> {
    conn.prepare_cached("DELETE FROM canned_responses WHERE id = ?1")
        .and_then(|mut stmt| stmt.execute([id.to_string()]))
        .map(|n| n > 0)
        .map_err(sqlite_err)
}
