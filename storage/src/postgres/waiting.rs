//! The `waiting` mark of a conversation on Postgres (offline capture, issue 15).

use chat_core::model::{Conversation, ConversationId};
use chat_core::StoreError;
use deadpool_postgres::ClientWrapper;

use super::errors::pg_err;
use super::rows::conversation_from_row;

/// Sets or clears `waiting` (and `updated_at`); the conversation as it is now.
pub(super) async fn set(
    client: &ClientWrapper,
    id: ConversationId,
    waiting: bool,
) -> Result<Conversation, StoreError> {
    let stmt = client
        .prepare_cached(concat!(
            "UPDATE conversations SET waiting = $2, updated_at = clock_timestamp() \
             WHERE id = $1 RETURNING ",
            conversation_columns!()
        ))
        .await
        .map_err(pg_err)?;
    match client
        .query_opt(&stmt, &[&id.0, &waiting])
        .await
        .map_err(pg_err)?
    {
        Some(row) => conversation_from_row(&row),
        None => Err(StoreError::NotFound("conversation")),
    }
}
