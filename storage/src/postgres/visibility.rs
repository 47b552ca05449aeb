//! What visitors see of a conversation on Postgres (issue 15): every message but internal
//! notes (`kind = 'note'`, migration 6).

use chat_core::model::{ConversationId, Message};
use chat_core::StoreError;
use deadpool_postgres::Object;

use super::errors::pg_err;
use super::rows::message_from_row;

const VISITOR_MESSAGES_AFTER: &str = concat!(
    "SELECT ",
    message_row_columns!(),
    " FROM messages WHERE conversation_id = $1 AND seq > $2 AND kind <> 'note' \
     ORDER BY seq LIMIT $3"
);

const VISITOR_MESSAGE_COUNT: &str = "SELECT count(*) FROM messages \
     WHERE conversation_id = $1 AND seq > $2 AND seq <= $3 AND kind <> 'note'";

/// [`chat_core::store::Store::visitor_messages_after`].
pub(super) async fn messages_after(
    client: &Object,
    conversation_id: ConversationId,
    after_seq: i64,
    limit: u32,
) -> Result<Vec<Message>, StoreError> {
    let stmt = client
        .prepare_cached(VISITOR_MESSAGES_AFTER)
        .await
        .map_err(pg_err)?;
    let rows = client
        .query(&stmt, &[&conversation_id.0, &after_seq, &i64::from(limit)])
        .await
        .map_err(pg_err)?;
    rows.iter().map(message_from_row).collect()
}

/// [`chat_core::store::Store::visitor_message_count`].
pub(super) async fn count(
    client: &Object,
    conversation_id: ConversationId,
    after_seq: i64,
    upto_seq: i64,
) -> Result<u64, StoreError> {
    let stmt = client
        .prepare_cached(VISITOR_MESSAGE_COUNT)
        .await
        .map_err(pg_err)?;
    let row = client
        .query_one(&stmt, &[&conversation_id.0, &after_seq, &upto_seq])
        .await
        .map_err(pg_err)?;
    let n: i64 = row.try_get(0).map_err(pg_err)?;
    Ok(n.max(0) as u64)
}
