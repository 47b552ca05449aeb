//! The `waiting` mark of a conversation in the embedded store (offline capture, issue 15).

use chat_core::model::{Conversation, ConversationId};
use chat_core::StoreError;
use rusqlite::{params, Connection, OptionalExtension};

use super::errors::sqlite_err;
use super::rows::{conversation_from, read_conversation};
use crate::time::now_micros;

/// Sets or clears `waiting` (and `updated_at`); the conversation as it is now.
pub(super) fn set(
    conn: &Connection,
    id: ConversationId,
    waiting: bool,
) -> Result<Conversation, StoreError> {
    let now = now_micros().timestamp_micros();
    conn.prepare_cached(concat!(
        "UPDATE conversations SET waiting = ?2, updated_at = ?3 WHERE id = ?1 RETURNING ",
        conversation_columns!()
    ))
    .and_then(|mut stmt| {
        stmt.query_row(params![id.0.to_string(), waiting, now], read_conversation)
            .optional()
    })
    .map_err(sqlite_err)?
    .map(conversation_from)
    .unwrap_or(Err(StoreError::NotFound("conversation")))
}
