//! The `visitor_context` table of the embedded store: each visitor's latest context, as JSON
//! text, written only for a visitor who has a row.

use chat_core::model::VisitorId;
use chat_core::visitor_context::VisitorContextRecord;
use chat_core::StoreError;
use rusqlite::{params, Connection, OptionalExtension};

use super::errors::sqlite_err;
use super::rows::{bad_data, parse_uuid, timestamp};

/// Upserts `record` when its visitor exists (keeping the earlier `first_seen_at`); whether it
/// was stored.
pub(super) fn put(conn: &Connection, record: &VisitorContextRecord) -> Result<bool, StoreError> {
    let context =
        serde_json::to_string(&record.context).map_err(|e| bad_data("visitor context", e))?;
    let written = conn
        .prepare_cached(
            "INSERT INTO visitor_context \
             (visitor_id, context, ip, country, first_seen_at, updated_at) \
             SELECT ?1, ?2, ?3, ?4, ?5, ?6 WHERE EXISTS (SELECT 1 FROM visitors WHERE id = ?1) \
             ON CONFLICT (visitor_id) DO UPDATE SET context = excluded.context, \
             ip = excluded.ip, country = excluded.country, updated_at = excluded.updated_at, \
             first_seen_at = min(visitor_context.first_seen_at, excluded.first_seen_at)",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                record.visitor_id.0.to_string(),
                context,
                record.ip,
                record.country,
                record.first_seen_at.timestamp_micros(),
                record.updated_at.timestamp_micros(),
            ])
        })
        .map_err(sqlite_err)?;
    Ok(written > 0)
}

type Row = (String, String, Option<String>, Option<String>, i64, i64);

/// The visitor's stored context.
pub(super) fn get(
    conn: &Connection,
    visitor_id: VisitorId,
) -> Result<Option<VisitorContextRecord>, StoreError> {
    let row: Option<Row> = conn
        .prepare_cached(
            "SELECT visitor_id, context, ip, country, first_seen_at, updated_at \
             FROM visitor_context WHERE visitor_id = ?1",
        )
        .and_then(|mut stmt| {
            stmt.query_row([visitor_id.0.to_string()], |row| {
                Ok((
                    row.get(0)?,
                    row.get(1)?,
                    row.get(2)?,
                    row.get(3)?,
                    row.get(4)?,
                    row.get(5)?,
                ))
            })
            .optional()
        })
        .map_err(sqlite_err)?;
    let Some((id, context, ip, country, first_seen_at, updated_at)) = row else {
        return Ok(None);
    };
    Ok(Some(VisitorContextRecord {
        visitor_id: VisitorId(parse_uuid(&id)?),
        context: serde_json::from_str(&context).map_err(|e| bad_data("visitor context", e))?,
        ip,
        country,
        first_seen_at: timestamp(first_seen_at)?,
        updated_at: timestamp(updated_at)?,
    }))
}
