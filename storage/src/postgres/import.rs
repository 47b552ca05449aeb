//! [`Store::import_messages`](chat_core::store::Store) on Postgres: one transaction per call,
//! the conversation row locked while its next sequence number is taken, as a live append does.

use chat_core::model::{ConversationId, VisitorId};
use chat_core::store::{Imported, ImportedMessage};
use chat_core::StoreError;
use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use uuid::Uuid;

use super::errors::pg_err;
use super::rows::message_from_row;
use super::SELECT_DUPLICATE;
use crate::import::{check, ExistingConversation};
use crate::time::truncate_micros;

/// Imports `messages` in order inside `tx` (the caller commits), stopping after the first
/// refusal.
pub(super) async fn import_in(
    tx: &Transaction<'_>,
    messages: &[ImportedMessage],
) -> Result<Vec<Imported>, StoreError> {
    let mut results = Vec::with_capacity(messages.len());
    for message in messages {
        let outcome = import_one(tx, message).await?;
        let refused = matches!(outcome, Imported::Refused(_));
        results.push(outcome);
        if refused {
            break;
        }
    }
    Ok(results)
}

async fn import_one(
    tx: &Transaction<'_>,
    message: &ImportedMessage,
) -> Result<Imported, StoreError> {
    let conversation_id = message.conversation_id.0;
    let created_at = truncate_micros(message.created_at);
    let duplicate = tx.prepare_cached(SELECT_DUPLICATE).await.map_err(pg_err)?;
    if let Some(row) = tx
        .query_opt(&duplicate, &[&conversation_id, &message.client_msg_id])
        .await
        .map_err(pg_err)?
    {
        return Ok(Imported::Existing(message_from_row(&row)?));
    }
    let visitor_site: Option<String> = tx
        .query_opt(
            &tx.prepare_cached("SELECT site_id FROM visitors WHERE id = $1")
                .await
                .map_err(pg_err)?,
            &[&message.visitor_id.0],
        )
        .await
        .map_err(pg_err)?
        .map(|row| row.try_get(0))
        .transpose()
        .map_err(pg_err)?;
    let existing = existing_conversation(tx, message.conversation_id).await?;
    if let Err(why) = check(message, visitor_site.as_deref(), existing.as_ref()) {
        return Ok(Imported::Refused(why));
    }
    if visitor_site.is_none() {
        tx.execute(
            &tx.prepare_cached(
                "INSERT INTO visitors (id, site_id, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO NOTHING",
            )
            .await
            .map_err(pg_err)?,
            &[&message.visitor_id.0, &message.site_id, &created_at],
        )
        .await
        .map_err(pg_err)?;
    }
    let conversation_created = existing.is_none();
    if conversation_created {
        tx.execute(
            &tx.prepare_cached(
                "INSERT INTO conversations \
             (id, site_id, visitor_id, status, last_seq, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, 0, $5, $5)",
            )
            .await
            .map_err(pg_err)?,
            &[
                &conversation_id,
                &message.site_id,
                &message.visitor_id.0,
                &message.status.as_str(),
                &created_at,
            ],
        )
        .await
        .map_err(pg_err)?;
    }
    let seq: i64 = tx
        .query_one(
            &tx.prepare_cached(
                "UPDATE conversations SET last_seq = last_seq + 1, \
             updated_at = greatest(updated_at, $2) WHERE id = $1 RETURNING last_seq",
            )
            .await
            .map_err(pg_err)?,
            &[&conversation_id, &created_at],
        )
        .await
        .map_err(pg_err)?
        .try_get(0)
        .map_err(pg_err)?;
    let row = tx
        .query_one(
            &tx.prepare_cached(concat!(
                "INSERT INTO messages (",
                message_columns!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING ",
                message_columns!()
            ))
            .await
            .map_err(pg_err)?,
            &[
                &conversation_id,
                &seq,
                &message.client_msg_id,
                &message.sender.role.as_str(),
                &message.sender.id,
                &message.sender.name,
                &message.body,
                &created_at,
            ],
        )
        .await
        .map_err(pg_err)?;
    Ok(Imported::Inserted {
        message: message_from_row(&row)?,
        conversation_created,
    })
}

/// The conversation's owner, `last_seq` and newest message time, its row locked until the
/// transaction ends (a live append to it waits, and then numbers after the import).
async fn existing_conversation(
    tx: &Transaction<'_>,
    id: ConversationId,
) -> Result<Option<ExistingConversation>, StoreError> {
    let Some(row) = tx
        .query_opt(
            &tx.prepare_cached(
                "SELECT c.site_id, c.visitor_id, c.last_seq, \
             (SELECT m.created_at FROM messages m WHERE m.conversation_id = c.id \
              AND m.seq = c.last_seq) \
             FROM conversations c WHERE c.id = $1 FOR UPDATE OF c",
            )
            .await
            .map_err(pg_err)?,
            &[&id.0],
        )
        .await
        .map_err(pg_err)?
    else {
        return Ok(None);
    };
    Ok(Some(ExistingConversation {
        site_id: row.try_get(0).map_err(pg_err)?,
        visitor_id: VisitorId(row.try_get::<_, Uuid>(1).map_err(pg_err)?),
        last_seq: row.try_get(2).map_err(pg_err)?,
        last_created_at: row.try_get::<_, Option<DateTime<Utc>>>(3).map_err(pg_err)?,
    }))
}
