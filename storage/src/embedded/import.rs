//! [`Store::import_messages`](chat_core::store::Store) on SQLite: one immediate transaction per
//! call (the only writer meanwhile), the same rules as Postgres.

use chat_core::store::{Imported, ImportedMessage};
use chat_core::StoreError;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::errors::sqlite_err;
use super::messages::SELECT_DUPLICATE;
use super::rows::{message_from, parse_uuid, read_message, timestamp};
use crate::import::{check, ExistingConversation};
use chat_core::model::VisitorId;

/// Imports `messages` in order in one transaction, stopping after the first refusal.
pub(super) fn import(
    conn: &mut Connection,
    messages: &[ImportedMessage],
) -> Result<Vec<Imported>, StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sqlite_err)?;
    let mut results = Vec::with_capacity(messages.len());
    for message in messages {
        let outcome = import_one(&tx, message)?;
        let refused = matches!(outcome, Imported::Refused(_));
        results.push(outcome);
        if refused {
            break;
        }
    }
    tx.commit().map_err(sqlite_err)?;
    Ok(results)
}

fn import_one(conn: &Connection, message: &ImportedMessage) -> Result<Imported, StoreError> {
    let conversation_id = message.conversation_id.0.to_string();
    let visitor_id = message.visitor_id.0.to_string();
    let created_at = message.created_at.timestamp_micros();
    let duplicate = conn
        .prepare_cached(SELECT_DUPLICATE)
        .and_then(|mut stmt| {
            stmt.query_row(
                params![conversation_id, message.client_msg_id],
                read_message,
            )
            .optional()
        })
        .map_err(sqlite_err)?;
    if let Some(raw) = duplicate {
        return Ok(Imported::Existing(message_from(raw)?));
    }
    let visitor_site: Option<String> = conn
        .prepare_cached("SELECT site_id FROM visitors WHERE id = ?1")
        .and_then(|mut stmt| stmt.query_row([&visitor_id], |row| row.get(0)).optional())
        .map_err(sqlite_err)?;
    let existing = existing_conversation(conn, &conversation_id)?;
    if let Err(why) = check(message, visitor_site.as_deref(), existing.as_ref()) {
        return Ok(Imported::Refused(why));
    }
    if visitor_site.is_none() {
        conn.prepare_cached(
            "INSERT INTO visitors (id, site_id, created_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (id) DO NOTHING",
        )
        .and_then(|mut stmt| stmt.execute(params![visitor_id, message.site_id, created_at]))
        .map_err(sqlite_err)?;
    }
    let conversation_created = existing.is_none();
    if conversation_created {
        conn.prepare_cached(
            "INSERT INTO conversations \
             (id, site_id, visitor_id, status, last_seq, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, 0, ?5, ?5)",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                conversation_id,
                message.site_id,
                visitor_id,
                message.status.as_str(),
                created_at
            ])
        })
        .map_err(sqlite_err)?;
    }
    let seq: i64 = conn
        .prepare_cached(
            "UPDATE conversations SET last_seq = last_seq + 1, visitor_last_seq = NULL, \
             updated_at = max(updated_at, ?2) WHERE id = ?1 RETURNING last_seq",
        )
        .and_then(|mut stmt| stmt.query_row(params![conversation_id, created_at], |r| r.get(0)))
        .map_err(sqlite_err)?;
    let raw = conn
        .prepare_cached(concat!(
            "INSERT INTO messages (",
            message_columns!(),
            ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) RETURNING ",
            message_row_columns!()
        ))
        .and_then(|mut stmt| {
            stmt.query_row(
                params![
                    conversation_id,
                    seq,
                    message.client_msg_id,
                    message.sender.role.as_str(),
                    message.sender.id,
                    message.sender.name,
                    message.body,
                    created_at
                ],
                read_message,
            )
        })
        .map_err(sqlite_err)?;
    Ok(Imported::Inserted {
        message: message_from(raw)?,
        conversation_created,
    })
}

fn existing_conversation(
    conn: &Connection,
    id: &str,
) -> Result<Option<ExistingConversation>, StoreError> {
    let raw: Option<(String, String, i64, Option<i64>)> = conn
        .prepare_cached(
            "SELECT c.site_id, c.visitor_id, c.last_seq, \
             (SELECT m.created_at FROM messages m WHERE m.conversation_id = c.id \
              AND m.seq = c.last_seq) \
             FROM conversations c WHERE c.id = ?1",
        )
        .and_then(|mut stmt| {
            stmt.query_row([id], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
            })
            .optional()
        })
        .map_err(sqlite_err)?;
    let Some((site_id, visitor_id, last_seq, last_created_at)) = raw else {
        return Ok(None);
    };
    Ok(Some(ExistingConversation {
        site_id,
        visitor_id: VisitorId(parse_uuid(&visitor_id)?),
        last_seq,
        last_created_at: last_created_at.map(timestamp).transpose()?,
    }))
}
