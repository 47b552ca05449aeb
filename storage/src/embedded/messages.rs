//! Messages in the embedded store: appending one (a batch of them is `append.rs`'s group
//! commit) and reading a conversation's after a sequence number (what visitors see is
//! `visibility.rs`).

use chat_core::model::{ConversationId, Message, MessageKind, NewMessage, VisitorId};
use chat_core::store::Appended;
use chat_core::webhook::{NewWebhookEvent, WebhookOutbox};
use chat_core::StoreError;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::errors::sqlite_err;
use super::rows::{message_from, parse_uuid, read_message};
use super::{webhooks, EmbeddedStore};
use crate::time::now_micros;

/// A conversation's message with a `client_msg_id` (`?1`, `?2`).
pub(super) const SELECT_DUPLICATE: &str = concat!(
    "SELECT ",
    message_row_columns!(),
    " FROM messages WHERE conversation_id = ?1 AND client_msg_id = ?2"
);

/// The message already stored with `client_msg_id` in the conversation, if any.
fn duplicate_of(
    conn: &Connection,
    conversation_id: &str,
    client_msg_id: &str,
) -> Result<Option<Message>, StoreError> {
    conn.prepare_cached(SELECT_DUPLICATE)
        .and_then(|mut stmt| {
            stmt.query_row(params![conversation_id, client_msg_id], read_message)
                .optional()
        })
        .map_err(sqlite_err)?
        .map(message_from)
        .transpose()
}

/// Appends one message inside the caller's transaction (which holds SQLite's write lock, so
/// the duplicate check and the insert cannot race another writer), with its `message.created`
/// event when `outbox` wants the conversation's site.
pub(super) fn append_in(
    conn: &Connection,
    message: NewMessage,
    outbox: Option<&WebhookOutbox>,
) -> Result<Appended, StoreError> {
    let conversation_id = message.conversation_id.0.to_string();
    if let Some(client_msg_id) = &message.client_msg_id {
        if let Some(original) = duplicate_of(conn, &conversation_id, client_msg_id)? {
            return Ok(Appended::Duplicate(original));
        }
    }
    let attachment = crate::message_attachment::to_column(message.attachment.as_deref())?;
    let created_at = now_micros();
    let bumped: Option<(i64, String, String)> = conn
        .prepare_cached(
            "UPDATE conversations SET last_seq = last_seq + 1, updated_at = ?2, \
             visitor_last_seq = CASE WHEN ?3 THEN coalesce(visitor_last_seq, last_seq) END \
             WHERE id = ?1 RETURNING last_seq, site_id, visitor_id",
        )
        .and_then(|mut stmt| {
            stmt.query_row(
                params![
                    conversation_id,
                    created_at.timestamp_micros(),
                    message.kind == MessageKind::Note
                ],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .optional()
        })
        .map_err(sqlite_err)?;
    let Some((seq, site_id, visitor_id)) = bumped else {
        return Err(StoreError::NotFound("conversation"));
    };
    conn.prepare_cached(
        "INSERT INTO messages (conversation_id, seq, client_msg_id, sender_role, sender_id, \
         sender_name, body, created_at, kind, attachment) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            conversation_id,
            seq,
            message.client_msg_id,
            message.sender.role.as_str(),
            message.sender.id,
            message.sender.name,
            message.body,
            created_at.timestamp_micros(),
            message.kind.as_str(),
            attachment,
        ])
    })
    .map_err(sqlite_err)?;
    let committed = Message {
        attachment: message.attachment,
        conversation_id: message.conversation_id,
        seq,
        kind: message.kind,
        client_msg_id: message.client_msg_id,
        sender: message.sender,
        body: message.body,
        created_at,
    };
    if outbox.is_some_and(|outbox| outbox.wants(&site_id)) {
        let visitor_id = VisitorId(parse_uuid(&visitor_id)?);
        let event = NewWebhookEvent::message(&committed, &site_id, visitor_id);
        webhooks::insert(conn, &[event])?;
    }
    Ok(Appended::Inserted(committed))
}

/// [`chat_core::store::Store::append_message`]: one transaction, with the `message.created`
/// event when the site wants one.
pub(super) async fn append(
    store: &EmbeddedStore,
    message: NewMessage,
) -> Result<Appended, StoreError> {
    let started = std::time::Instant::now();
    let outbox = store.outbox.clone();
    let appended = store
        .call(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sqlite_err)?;
            let appended = append_in(&tx, message, outbox.as_deref())?;
            tx.commit().map_err(sqlite_err)?;
            Ok(appended)
        })
        .await;
    if let Ok(Appended::Inserted(_)) = &appended {
        chat_core::metrics::observe_store_commit("embedded", 1, started.elapsed());
        store.wake_outbox(true);
    }
    appended
}

/// [`chat_core::store::Store::messages_after`].
pub(super) fn after(
    conn: &mut Connection,
    conversation_id: ConversationId,
    after_seq: i64,
    limit: u32,
) -> Result<Vec<Message>, StoreError> {
    let conversation_id = conversation_id.0.to_string();
    let limit = i64::from(limit);
    let raws = conn
        .prepare_cached(concat!(
            "SELECT ",
            message_row_columns!(),
            " FROM messages WHERE conversation_id = ?1 AND seq > ?2 \
             ORDER BY seq LIMIT ?3"
        ))
        .and_then(|mut stmt| {
            stmt.query_map(params![conversation_id, after_seq, limit], read_message)?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(sqlite_err)?;
    raws.into_iter().map(message_from).collect()
}
