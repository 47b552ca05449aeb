//! The `conversation_reads` table on Postgres (migration 0007): each participant's last read
//! `seq` per conversation, and the agents' list with unread counts computed beside it.

use chat_core::model::ConversationId;
use chat_core::read_receipts::{
    AgentListing, ConversationReadState, MarkedRead, ReadMarks, Reader, UNREAD_CAP,
};
use chat_core::store::ConversationFilter;
use chat_core::StoreError;
use deadpool_postgres::ClientWrapper;
use uuid::Uuid;

use super::errors::pg_err;
use super::rows::conversation_from_row;

/// Moves the reader's position forward (clamped to `last_seq`; never back): returns the new
/// `seq` when a row was written, none when the position stayed (or the conversation is missing).
const ADVANCE: &str = "\
    INSERT INTO conversation_reads (conversation_id, reader_role, reader_id, seq, read_at) \
    SELECT c.id, $2, $3, least($4, c.last_seq), clock_timestamp() FROM conversations c \
    WHERE c.id = $1 AND least($4, c.last_seq) > 0 \
    ON CONFLICT (conversation_id, reader_role, reader_id) DO UPDATE \
    SET seq = excluded.seq, read_at = excluded.read_at \
    WHERE conversation_reads.seq < excluded.seq \
    RETURNING seq";

/// The reader's position where [`ADVANCE`] wrote nothing: no row means no conversation.
const CURRENT: &str = "\
    SELECT coalesce(r.seq, 0) FROM conversations c LEFT JOIN conversation_reads r \
    ON r.conversation_id = c.id AND r.reader_role = $2 AND r.reader_id = $3 WHERE c.id = $1";

const MARKS: &str = "\
    SELECT conversation_id, \
    coalesce(max(seq) FILTER (WHERE reader_role = 'visitor'), 0), \
    coalesce(max(seq) FILTER (WHERE reader_role = 'agent'), 0) \
    FROM conversation_reads WHERE conversation_id = ANY($1) GROUP BY conversation_id";

/// The agents' list: the page of conversations first (the same plans as `list_conversations`,
/// migration 0004's index), then, for those rows only, the agent's and the visitor's positions
/// and the unread count, which reads at most `UNREAD_CAP` visitor messages per conversation
/// along the messages' primary key.
macro_rules! list_for_agent {
    ($filter:literal) => {
        concat!(
            "SELECT ",
            conversation_columns!(),
            ", coalesce(a.seq, 0), coalesce(v.seq, 0), \
             (SELECT count(*) FROM (SELECT 1 FROM messages m WHERE m.conversation_id = l.id \
             AND m.seq > coalesce(a.seq, 0) AND m.sender_role = 'visitor' \
             ORDER BY m.seq LIMIT $4) u) \
             FROM (SELECT ",
            conversation_columns!(),
            ", activity_minute FROM conversations WHERE ",
            $filter,
            " ORDER BY activity_minute DESC, updated_at DESC, id DESC LIMIT $3) l \
             LEFT JOIN conversation_reads a ON a.conversation_id = l.id \
             AND a.reader_role = 'agent' AND a.reader_id = $5 \
             LEFT JOIN conversation_reads v ON v.conversation_id = l.id \
             AND v.reader_role = 'visitor' AND v.reader_id = '' \
             ORDER BY l.activity_minute DESC, l.updated_at DESC, l.id DESC"
        )
    };
}

pub(super) async fn mark(
    client: &ClientWrapper,
    id: ConversationId,
    reader: &Reader,
    seq: i64,
) -> Result<MarkedRead, StoreError> {
    let role = reader.role().as_str();
    let reader_id = reader.stored_id();
    let stmt = client.prepare_cached(ADVANCE).await.map_err(pg_err)?;
    if let Some(row) = client
        .query_opt(&stmt, &[&id.0, &role, &reader_id, &seq])
        .await
        .map_err(pg_err)?
    {
        return Ok(MarkedRead {
            seq: row.try_get(0).map_err(pg_err)?,
            advanced: true,
        });
    }
    let stmt = client.prepare_cached(CURRENT).await.map_err(pg_err)?;
    match client
        .query_opt(&stmt, &[&id.0, &role, &reader_id])
        .await
        .map_err(pg_err)?
    {
        Some(row) => Ok(MarkedRead {
            seq: row.try_get(0).map_err(pg_err)?,
            advanced: false,
        }),
        None => Err(StoreError::NotFound("conversation")),
    }
}

pub(super) async fn marks(
    client: &ClientWrapper,
    ids: &[ConversationId],
) -> Result<Vec<ReadMarks>, StoreError> {
    let ids: Vec<Uuid> = ids.iter().map(|id| id.0).collect();
    let stmt = client.prepare_cached(MARKS).await.map_err(pg_err)?;
    let rows = client.query(&stmt, &[&ids]).await.map_err(pg_err)?;
    rows.iter()
        .map(|row| {
            Ok(ReadMarks {
                conversation_id: ConversationId(row.try_get(0).map_err(pg_err)?),
                visitor_seq: row.try_get(1).map_err(pg_err)?,
                agent_seq: row.try_get(2).map_err(pg_err)?,
            })
        })
        .collect()
}

pub(super) async fn list_for_agent(
    client: &ClientWrapper,
    filter: &ConversationFilter,
    agent_id: &str,
) -> Result<Vec<AgentListing>, StoreError> {
    let status = filter.status.map(|s| s.as_str());
    let limit = i64::from(filter.limit);
    let cap = i64::from(UNREAD_CAP);
    // As `list_conversations`: one statement per shape, so each gets the plan that uses the
    // (site_id, activity_minute) index where it can.
    let rows = match &filter.sites {
        Some(sites) => {
            let stmt = client
                .prepare_cached(list_for_agent!(
                    "site_id = ANY($1) AND ($2::text IS NULL OR status = $2::text)"
                ))
                .await
                .map_err(pg_err)?;
            client
                .query(&stmt, &[sites, &status, &limit, &cap, &agent_id])
                .await
        }
        None => {
            let stmt = client
                .prepare_cached(list_for_agent!(
                    "$1::text[] IS NULL AND ($2::text IS NULL OR status = $2::text)"
                ))
                .await
                .map_err(pg_err)?;
            let every: Option<Vec<String>> = None;
            client
                .query(&stmt, &[&every, &status, &limit, &cap, &agent_id])
                .await
        }
    }
    .map_err(pg_err)?;
    rows.iter()
        .map(|row| {
            // After the 11 of `conversation_columns!()`.
            let unread: i64 = row.try_get(13).map_err(pg_err)?;
            Ok(AgentListing {
                conversation: conversation_from_row(row)?,
                read: ConversationReadState {
                    unread: unread.clamp(0, i64::from(UNREAD_CAP)) as u32,
                    read_seq: row.try_get(11).map_err(pg_err)?,
                    visitor_read_seq: row.try_get(12).map_err(pg_err)?,
                },
            })
        })
        .collect()
}
