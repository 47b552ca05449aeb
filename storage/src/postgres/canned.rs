//! Canned responses on Postgres ([`chat_core::canned`]).

use chat_core::canned::{CannedFields, CannedResponse, CannedWrite};
use chat_core::StoreError;
use chrono::{DateTime, Utc};
use deadpool_postgres::Object;
use tokio_postgres::Row;
use uuid::Uuid;

use super::errors::{pg_err, unique_violation};

const COLUMNS: &str = "id, site_id, shortcut, title, body, created_at, updated_at";

fn canned_from_row(row: &Row) -> Result<CannedResponse, StoreError> {
    Ok(CannedResponse {
        id: row.try_get(0).map_err(pg_err)?,
        site_id: row.try_get(1).map_err(pg_err)?,
        shortcut: row.try_get(2).map_err(pg_err)?,
        title: row.try_get(3).map_err(pg_err)?,
        body: row.try_get(4).map_err(pg_err)?,
        created_at: row.try_get::<_, DateTime<Utc>>(5).map_err(pg_err)?,
        updated_at: row.try_get::<_, DateTime<Utc>>(6).map_err(pg_err)?,
    })
}

/// [`chat_core::store::Store::canned_responses`].
pub(super) async fn list(
    client: &Object,
    site_id: &str,
) -> Result<Vec<CannedResponse>, StoreError> {
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM canned_responses WHERE site_id = $1 ORDER BY shortcut"
        ))
        .await
        .map_err(pg_err)?;
    let rows = client.query(&stmt, &[&site_id]).await.map_err(pg_err)?;
    rows.iter().map(canned_from_row).collect()
}

/// [`chat_core::store::Store::canned_response`].
pub(super) async fn get(client: &Object, id: Uuid) -> Result<Option<CannedResponse>, StoreError> {
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM canned_responses WHERE id = $1"
        ))
        .await
        .map_err(pg_err)?;
    let row = client.query_opt(&stmt, &[&id]).await.map_err(pg_err)?;
    row.as_ref().map(canned_from_row).transpose()
}

/// [`chat_core::store::Store::create_canned_response`]: the count and the insert under a
/// per-site advisory lock, so concurrent creates cannot pass the limit together.
pub(super) async fn create(
    client: &mut Object,
    site_id: &str,
    fields: &CannedFields,
    max_per_site: u32,
) -> Result<CannedWrite, StoreError> {
    let tx = client.transaction().await.map_err(pg_err)?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('chat.canned_responses:' || $1, 0))",
        &[&site_id],
    )
    .await
    .map_err(pg_err)?;
    let count: i64 = tx
        .query_one(
            "SELECT count(*) FROM canned_responses WHERE site_id = $1",
            &[&site_id],
        )
        .await
        .and_then(|row| row.try_get(0))
        .map_err(pg_err)?;
    if count >= i64::from(max_per_site) {
        return Ok(CannedWrite::LimitReached);
    }
    let row = tx
        .query_opt(
            &format!(
                "INSERT INTO canned_responses ({COLUMNS}) \
                 VALUES ($1, $2, $3, $4, $5, now(), now()) \
                 ON CONFLICT (site_id, shortcut) DO NOTHING RETURNING {COLUMNS}"
            ),
            &[
                &Uuid::new_v4(),
                &site_id,
                &fields.shortcut,
                &fields.title,
                &fields.body,
            ],
        )
        .await
        .map_err(pg_err)?;
    let Some(row) = row else {
        return Ok(CannedWrite::ShortcutTaken);
    };
    let canned = canned_from_row(&row)?;
    tx.commit().await.map_err(pg_err)?;
    Ok(CannedWrite::Stored(canned))
}

/// [`chat_core::store::Store::update_canned_response`].
pub(super) async fn update(
    client: &Object,
    id: Uuid,
    fields: &CannedFields,
) -> Result<CannedWrite, StoreError> {
    let stmt = client
        .prepare_cached(&format!(
            "UPDATE canned_responses SET shortcut = $2, title = $3, body = $4, \
             updated_at = now() WHERE id = $1 RETURNING {COLUMNS}"
        ))
        .await
        .map_err(pg_err)?;
    match client
        .query_opt(&stmt, &[&id, &fields.shortcut, &fields.title, &fields.body])
        .await
    {
        Ok(Some(row)) => canned_from_row(&row).map(CannedWrite::Stored),
        Ok(None) => Err(StoreError::NotFound("canned response")),
        Err(e) if unique_violation(&e) => Ok(CannedWrite::ShortcutTaken),
        Err(e) => Err(pg_err(e)),
    }
}

/// [`chat_core::store::Store::delete_canned_response`].
pub(super) async fn delete(client: &Object, id: Uuid) -> Result<bool, StoreError> {
    let stmt = client
        .prepare_cached("DELETE FROM canned_responses WHERE id = $1")
        .await
        .map_err(pg_err)?;
    Ok(client.execute(&stmt, &[&id]).await.map_err(pg_err)? > 0)
}
