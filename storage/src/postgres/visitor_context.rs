//! The `visitor_context` table on Postgres: each visitor's latest context (`jsonb`), written
//! only for a visitor who has a row.

use chat_core::model::VisitorId;
use chat_core::visitor_context::VisitorContextRecord;
use chat_core::StoreError;
use chrono::{DateTime, Utc};
use deadpool_postgres::ClientWrapper;
use uuid::Uuid;

use super::errors::pg_err;
use crate::time::truncate_micros;

fn bad_data(e: serde_json::Error) -> StoreError {
    StoreError::Other(format!("invalid visitor context in the database: {e}"))
}

/// Upserts `record` when its visitor exists (keeping the earlier `first_seen_at`); whether it
/// was stored.
pub(super) async fn put(
    client: &ClientWrapper,
    record: &VisitorContextRecord,
) -> Result<bool, StoreError> {
    let context = serde_json::to_string(&record.context).map_err(bad_data)?;
    let stmt = client
        .prepare_cached(
            "INSERT INTO visitor_context \
             (visitor_id, context, ip, country, first_seen_at, updated_at) \
             SELECT $1, $2::text::jsonb, $3, $4, $5, $6 \
             WHERE EXISTS (SELECT 1 FROM visitors WHERE id = $1) \
             ON CONFLICT (visitor_id) DO UPDATE SET context = excluded.context, \
             ip = excluded.ip, country = excluded.country, updated_at = excluded.updated_at, \
             first_seen_at = least(visitor_context.first_seen_at, excluded.first_seen_at)",
        )
        .await
        .map_err(pg_err)?;
    let written = client
        .execute(
            &stmt,
            &[
                &record.visitor_id.0,
                &context,
                &record.ip,
                &record.country,
                &truncate_micros(record.first_seen_at),
                &truncate_micros(record.updated_at),
            ],
        )
        .await
        .map_err(pg_err)?;
    Ok(written > 0)
}

/// The visitor's stored context.
pub(super) async fn get(
    client: &ClientWrapper,
    visitor_id: VisitorId,
) -> Result<Option<VisitorContextRecord>, StoreError> {
    let stmt = client
        .prepare_cached(
            "SELECT visitor_id, context::text, ip, country, first_seen_at, updated_at \
             FROM visitor_context WHERE visitor_id = $1",
        )
        .await
        .map_err(pg_err)?;
    let Some(row) = client
        .query_opt(&stmt, &[&visitor_id.0])
        .await
        .map_err(pg_err)?
    else {
        return Ok(None);
    };
    let context: String = row.try_get(1).map_err(pg_err)?;
    Ok(Some(VisitorContextRecord {
        visitor_id: VisitorId(row.try_get::<_, Uuid>(0).map_err(pg_err)?),
        context: serde_json::from_str(&context).map_err(bad_data)?,
        ip: row.try_get(2).map_err(pg_err)?,
        country: row.try_get(3).map_err(pg_err)?,
        first_seen_at: row.try_get::<_, DateTime<Utc>>(4).map_err(pg_err)?,
        updated_at: row.try_get::<_, DateTime<Utc>>(5).map_err(pg_err)?,
    }))
}
