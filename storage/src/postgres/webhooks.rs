//! The webhook outbox on Postgres (migration 8, `webhook_outbox`; see `chat_core::webhook`):
//! rows written inside the transactions of the facts they report, and claimed by the delivery
//! workers of every gateway process sharing the database.
//!
//! A claim is one statement: it picks due rows with `FOR UPDATE SKIP LOCKED` (so concurrent
//! claims, from this process or another, skip each other's rows instead of waiting or taking
//! them twice) and moves their `next_attempt_at` a lease ahead, which keeps them from being
//! claimed again while their delivery runs. The database's clock decides what is due, so
//! processes with skewed clocks agree.

use chat_core::model::ConversationId;
use chat_core::webhook::{
    bounded_error, NewWebhookEvent, OutboxDepth, WebhookEvent, WebhookEventKind,
};
use chat_core::StoreError;
use deadpool_postgres::{GenericClient, Object};
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::errors::pg_err;

/// Writes events, due at once (by the database's clock, which decides what is due).
pub(super) const INSERT_EVENTS: &str = "INSERT INTO webhook_outbox \
     (id, site_id, conversation_id, event_type, payload, created_at, next_attempt_at) \
     SELECT i, s, c, t, p, a, clock_timestamp() FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::text[], \
     $5::text[], $6::timestamptz[]) AS e(i, s, c, t, p, a)";

const CLAIM: &str = "UPDATE webhook_outbox o SET attempts = o.attempts + 1, \
     next_attempt_at = clock_timestamp() + $2 * interval '1 millisecond' \
     FROM (SELECT position FROM webhook_outbox WHERE state = 'pending' \
           AND next_attempt_at <= clock_timestamp() ORDER BY next_attempt_at, position \
           LIMIT $1 FOR UPDATE SKIP LOCKED) due \
     WHERE o.position = due.position \
     RETURNING o.id, o.site_id, o.conversation_id, o.event_type, o.payload, o.attempts, \
     o.created_at, o.position";

const DELIVERED: &str = "DELETE FROM webhook_outbox WHERE id = $1";

const RETRY: &str = "UPDATE webhook_outbox SET \
     next_attempt_at = clock_timestamp() + $3 * interval '1 millisecond', last_error = $4 \
     WHERE id = $1 AND attempts = $2 AND state = 'pending'";

const DEAD: &str = "UPDATE webhook_outbox SET state = 'dead', last_error = $3 \
     WHERE id = $1 AND attempts = $2 AND state = 'pending'";

const DEPTH: &str = "SELECT count(*) FILTER (WHERE state = 'pending'), \
     count(*) FILTER (WHERE state = 'dead') FROM webhook_outbox";

/// The parameters of [`INSERT_EVENTS`] for some events.
pub(super) struct EventColumns<'a> {
    ids: Vec<Uuid>,
    sites: Vec<&'a str>,
    conversations: Vec<Uuid>,
    kinds: Vec<&'static str>,
    payloads: Vec<&'a str>,
    at: Vec<chrono::DateTime<chrono::Utc>>,
}

impl<'a> EventColumns<'a> {
    pub(super) fn new(events: &'a [NewWebhookEvent]) -> Self {
        Self {
            ids: events.iter().map(|e| e.id).collect(),
            sites: events.iter().map(|e| e.site_id.as_str()).collect(),
            conversations: events.iter().map(|e| e.conversation_id.0).collect(),
            kinds: events.iter().map(|e| e.kind.as_str()).collect(),
            payloads: events.iter().map(|e| e.payload.as_str()).collect(),
            at: events.iter().map(|e| e.created_at).collect(),
        }
    }

    pub(super) fn params(&self) -> [&(dyn ToSql + Sync); 6] {
        [
            &self.ids,
            &self.sites,
            &self.conversations,
            &self.kinds,
            &self.payloads,
            &self.at,
        ]
    }
}

/// Writes `events` in the caller's transaction.
pub(super) async fn insert<C: GenericClient>(
    client: &C,
    events: &[NewWebhookEvent],
) -> Result<(), tokio_postgres::Error> {
    if events.is_empty() {
        return Ok(());
    }
    let stmt = client.prepare_cached(INSERT_EVENTS).await?;
    let columns = EventColumns::new(events);
    client.execute(&stmt, &columns.params()).await.map(drop)
}

pub(super) async fn claim(
    client: &Object,
    limit: u32,
    lease: std::time::Duration,
) -> Result<Vec<WebhookEvent>, StoreError> {
    let stmt = client.prepare_cached(CLAIM).await.map_err(pg_err)?;
    let lease_ms = lease.as_millis().min(i64::MAX as u128) as f64;
    let rows = client
        .query(&stmt, &[&i64::from(limit), &lease_ms])
        .await
        .map_err(pg_err)?;
    let mut events = rows
        .iter()
        .map(|row| {
            let kind: &str = row.try_get(3)?;
            let attempts: i32 = row.try_get(5)?;
            Ok((
                row.try_get::<_, i64>(7)?,
                WebhookEvent {
                    id: row.try_get(0)?,
                    site_id: row.try_get(1)?,
                    conversation_id: ConversationId(row.try_get(2)?),
                    kind: WebhookEventKind::parse(kind),
                    payload: row.try_get(4)?,
                    attempts: attempts.max(0) as u32,
                    created_at: row.try_get(6)?,
                },
            ))
        })
        .collect::<Result<Vec<_>, tokio_postgres::Error>>()
        .map_err(pg_err)?;
    // `RETURNING` has no order: the outbox's.
    events.sort_unstable_by_key(|(position, _)| *position);
    Ok(events.into_iter().map(|(_, event)| event).collect())
}

pub(super) async fn delivered(client: &Object, id: Uuid) -> Result<(), StoreError> {
    let stmt = client.prepare_cached(DELIVERED).await.map_err(pg_err)?;
    client.execute(&stmt, &[&id]).await.map_err(pg_err)?;
    Ok(())
}

pub(super) async fn failed(
    client: &Object,
    id: Uuid,
    attempts: u32,
    retry_in: Option<std::time::Duration>,
    error: &str,
) -> Result<(), StoreError> {
    let attempts = i32::try_from(attempts).unwrap_or(i32::MAX);
    let error = bounded_error(error);
    match retry_in {
        Some(delay) => {
            let stmt = client.prepare_cached(RETRY).await.map_err(pg_err)?;
            let delay_ms = delay.as_millis().min(i64::MAX as u128) as f64;
            client
                .execute(&stmt, &[&id, &attempts, &delay_ms, &error])
                .await
        }
        None => {
            let stmt = client.prepare_cached(DEAD).await.map_err(pg_err)?;
            client.execute(&stmt, &[&id, &attempts, &error]).await
        }
    }
    .map_err(pg_err)?;
    Ok(())
}

pub(super) async fn depth(client: &Object) -> Result<OutboxDepth, StoreError> {
    let row = client.query_one(DEPTH, &[]).await.map_err(pg_err)?;
    let pending: i64 = row.try_get(0).map_err(pg_err)?;
    let dead: i64 = row.try_get(1).map_err(pg_err)?;
    Ok(OutboxDepth {
        pending: pending.max(0) as u64,
        dead: dead.max(0) as u64,
    })
}
