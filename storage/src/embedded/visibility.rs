//! What visitors see of a conversation in the embedded store (issue 15): every message but
//! internal notes (`kind = 'note'`, migration 6).

use chat_core::model::{ConversationId, Message};
use chat_core::StoreError;
use rusqlite::{params, Connection};

use super::errors::sqlite_err;
use super::rows::{message_from, read_message};

/// [`chat_core::store::Store::visitor_messages_after`].
pub(super) fn messages_after(
    conn: &Connection,
    conversation_id: ConversationId,
    after_seq: i64,
    limit: u32,
) -> Result<Vec<Message>, StoreError> {
    let raws = conn
        .prepare_cached(concat!(
            "SELECT ",
            message_row_columns!(),
            " FROM messages WHERE conversation_id = ?1 AND seq > ?2 AND kind <> 'note' \
             ORDER BY seq LIMIT ?3"
        ))
        .and_then(|mut stmt| {
            stmt.query_map(
                params![conversation_id.0.to_string(), after_seq, i64::from(limit)],
                read_message,
            )?
            .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(sqlite_err)?;
    raws.into_iter().map(message_from).collect()
}

/// [`chat_core::store::Store::visitor_message_count`].
pub(super) fn count(
    conn: &Connection,
    conversation_id: ConversationId,
    after_seq: i64,
    upto_seq: i64,
) -> Result<u64, StoreError> {
    let n: i64 = conn
        .prepare_cached(
            "SELECT count(*) FROM messages WHERE conversation_id = ?1 AND seq > ?2 \
             AND seq <= ?3 AND kind <> 'note'",
        )
        .and_then(|mut stmt| {
            stmt.query_row(
                params![conversation_id.0.to_string(), after_seq, upto_seq],
                |row| row.get(0),
            )
        })
        .map_err(sqlite_err)?;
    Ok(n.max(0) as u64)
}
