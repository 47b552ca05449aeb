//! The webhook outbox in the embedded store (migration 8, `webhook_outbox`; see
//! `chat_core::webhook`): rows written inside the transactions of the facts they report, and
//! claimed by this process's delivery worker. One connection behind a mutex serializes every
//! claim, so no two claims return the same row.

use chat_core::model::ConversationId;
use chat_core::webhook::{
    bounded_error, NewWebhookEvent, OutboxDepth, WebhookEvent, WebhookEventKind,
};
use chat_core::StoreError;
use rusqlite::{params, Connection, TransactionBehavior};
use uuid::Uuid;

use super::errors::sqlite_err;
use super::rows::{parse_uuid, timestamp};
use crate::time::now_micros;

/// Writes `events`, due at once, in the caller's transaction.
pub(super) fn insert(conn: &Connection, events: &[NewWebhookEvent]) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let now = now_micros().timestamp_micros();
    let mut stmt = conn
        .prepare_cached(
            "INSERT INTO webhook_outbox (id, site_id, conversation_id, event_type, payload, \
             created_at, next_attempt_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .map_err(sqlite_err)?;
    for event in events {
        stmt.execute(params![
            event.id.to_string(),
            event.site_id,
            event.conversation_id.0.to_string(),
            event.kind.as_str(),
            event.payload,
            event.created_at.timestamp_micros(),
            now,
        ])
        .map_err(sqlite_err)?;
    }
    Ok(())
}

fn micros(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

pub(super) fn claim(
    conn: &mut Connection,
    limit: u32,
    lease: std::time::Duration,
) -> Result<Vec<WebhookEvent>, StoreError> {
    let now = now_micros().timestamp_micros();
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sqlite_err)?;
    let raws = tx
        .prepare_cached(
            "UPDATE webhook_outbox SET attempts = attempts + 1, next_attempt_at = ?3 \
             WHERE position IN (SELECT position FROM webhook_outbox WHERE state = 'pending' \
             AND next_attempt_at <= ?1 ORDER BY next_attempt_at, position LIMIT ?2) \
             RETURNING id, site_id, conversation_id, event_type, payload, attempts, created_at, \
             position",
        )
        .and_then(|mut stmt| {
            stmt.query_map(
                params![now, i64::from(limit), now.saturating_add(micros(lease))],
                |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, String>(2)?,
                        row.get::<_, String>(3)?,
                        row.get::<_, String>(4)?,
                        row.get::<_, i64>(5)?,
                        row.get::<_, i64>(6)?,
                        row.get::<_, i64>(7)?,
                    ))
                },
            )?
            .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(sqlite_err)?;
    tx.commit().map_err(sqlite_err)?;
    let mut events = Vec::with_capacity(raws.len());
    for (id, site_id, conversation_id, kind, payload, attempts, created_at, position) in raws {
        events.push((
            position,
            WebhookEvent {
                id: parse_uuid(&id)?,
                site_id,
                conversation_id: ConversationId(parse_uuid(&conversation_id)?),
                kind: WebhookEventKind::parse(&kind),
                payload,
                attempts: u32::try_from(attempts.max(0)).unwrap_or(u32::MAX),
                created_at: timestamp(created_at)?,
            },
        ));
    }
    events.sort_unstable_by_key(|(position, _)| *position);
    Ok(events.into_iter().map(|(_, event)| event).collect())
}

pub(super) fn delivered(conn: &Connection, id: Uuid) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM webhook_outbox WHERE id = ?1")
        .and_then(|mut stmt| stmt.execute([id.to_string()]))
        .map_err(sqlite_err)?;
    Ok(())
}

pub(super) fn failed(
    conn: &Connection,
    id: Uuid,
    attempts: u32,
    retry_in: Option<std::time::Duration>,
    error: &str,
) -> Result<(), StoreError> {
    let error = bounded_error(error);
    let id = id.to_string();
    let attempts = i64::from(attempts);
    match retry_in {
        Some(delay) => {
            let due = now_micros()
                .timestamp_micros()
                .saturating_add(micros(delay));
            conn.prepare_cached(
                "UPDATE webhook_outbox SET next_attempt_at = ?3, last_error = ?4 \
                 WHERE id = ?1 AND attempts = ?2 AND state = 'pending'",
            )
            .and_then(|mut stmt| stmt.execute(params![id, attempts, due, error]))
        }
        None => conn
            .prepare_cached(
                "UPDATE webhook_outbox SET state = 'dead', last_error = ?3 \
                 WHERE id = ?1 AND attempts = ?2 AND state = 'pending'",
            )
            .and_then(|mut stmt| stmt.execute(params![id, attempts, error])),
    }
    .map_err(sqlite_err)?;
    Ok(())
}

pub(super) fn depth_of(conn: &mut Connection) -> Result<OutboxDepth, StoreError> {
    let (pending, dead): (i64, i64) = conn
        .query_row(
            "SELECT count(*) FILTER (WHERE state = 'pending'), \
             count(*) FILTER (WHERE state = 'dead') FROM webhook_outbox",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .map_err(sqlite_err)?;
    Ok(OutboxDepth {
        pending: pending.max(0) as u64,
        dead: dead.max(0) as u64,
    })
}
