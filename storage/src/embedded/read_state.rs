//! The `conversation_reads` table of the embedded store (migration 0007): each participant's
//! last read `seq` per conversation, and the agents' list with unread counts beside it.

use chat_core::model::ConversationId;
use chat_core::read_receipts::{
    AgentListing, ConversationReadState, MarkedRead, ReadMarks, Reader, UNREAD_CAP,
};
use chat_core::store::ConversationFilter;
use chat_core::StoreError;
use rusqlite::{params, Connection, OptionalExtension};

use super::errors::sqlite_err;
use super::rows::{conversation_from, parse_uuid, read_conversation};
use crate::time::now_micros;

/// Moves the reader's position forward (clamped to `last_seq`; never back): the new `seq` when
/// a row was written. (The `SELECT` needs its `WHERE` for SQLite to read `ON CONFLICT` as the
/// upsert's, not a join's `ON`.)
const ADVANCE: &str = "\
    INSERT INTO conversation_reads (conversation_id, reader_role, reader_id, seq, read_at) \
    SELECT c.id, ?2, ?3, min(?4, c.last_seq), ?5 FROM conversations c \
    WHERE c.id = ?1 AND min(?4, c.last_seq) > 0 \
    ON CONFLICT (conversation_id, reader_role, reader_id) DO UPDATE \
    SET seq = excluded.seq, read_at = excluded.read_at \
    WHERE conversation_reads.seq < excluded.seq \
    RETURNING seq";

const CURRENT: &str = "\
    SELECT coalesce(r.seq, 0) FROM conversations c LEFT JOIN conversation_reads r \
    ON r.conversation_id = c.id AND r.reader_role = ?2 AND r.reader_id = ?3 WHERE c.id = ?1";

const MARKS: &str = "\
    SELECT conversation_id, \
    coalesce(max(CASE WHEN reader_role = 'visitor' THEN seq END), 0), \
    coalesce(max(CASE WHEN reader_role = 'agent' THEN seq END), 0) \
    FROM conversation_reads WHERE conversation_id IN (SELECT value FROM json_each(?1)) \
    GROUP BY conversation_id";

/// The page of conversations first (as `list_conversations`), then for those rows only the
/// positions and the unread count (at most `UNREAD_CAP` visitor messages read per
/// conversation, along the messages' primary key).
const LIST_FOR_AGENT: &str = concat!(
    "SELECT ",
    conversation_columns!(),
    ", coalesce(a.seq, 0), coalesce(v.seq, 0), \
     (SELECT count(*) FROM (SELECT 1 FROM messages m WHERE m.conversation_id = l.id \
     AND m.seq > coalesce(a.seq, 0) AND m.sender_role = 'visitor' ORDER BY m.seq LIMIT ?4)) \
     FROM (SELECT ",
    conversation_columns!(),
    " FROM conversations WHERE (?1 IS NULL OR site_id IN (SELECT value FROM json_each(?1))) \
     AND (?2 IS NULL OR status = ?2) ORDER BY updated_at DESC, id DESC LIMIT ?3) l \
     LEFT JOIN conversation_reads a ON a.conversation_id = l.id \
     AND a.reader_role = 'agent' AND a.reader_id = ?5 \
     LEFT JOIN conversation_reads v ON v.conversation_id = l.id \
     AND v.reader_role = 'visitor' AND v.reader_id = '' \
     ORDER BY l.updated_at DESC, l.id DESC"
);

pub(super) fn mark(
    conn: &Connection,
    id: ConversationId,
    reader: &Reader,
    seq: i64,
) -> Result<MarkedRead, StoreError> {
    let id = id.0.to_string();
    let role = reader.role().as_str();
    let reader_id = reader.stored_id();
    let written: Option<i64> = conn
        .prepare_cached(ADVANCE)
        .and_then(|mut stmt| {
            stmt.query_row(
                params![id, role, reader_id, seq, now_micros().timestamp_micros()],
                |row| row.get(0),
            )
            .optional()
        })
        .map_err(sqlite_err)?;
    if let Some(seq) = written {
        return Ok(MarkedRead {
            seq,
            advanced: true,
        });
    }
    let current: Option<i64> = conn
        .prepare_cached(CURRENT)
        .and_then(|mut stmt| {
            stmt.query_row(params![id, role, reader_id], |row| row.get(0))
                .optional()
        })
        .map_err(sqlite_err)?;
    match current {
        Some(seq) => Ok(MarkedRead {
            seq,
            advanced: false,
        }),
        None => Err(StoreError::NotFound("conversation")),
    }
}

pub(super) fn marks(
    conn: &Connection,
    ids: &[ConversationId],
) -> Result<Vec<ReadMarks>, StoreError> {
    let ids: Vec<String> = ids.iter().map(|id| id.0.to_string()).collect();
    let ids = serde_json::to_string(&ids).unwrap_or_default();
    let rows: Vec<(String, i64, i64)> = conn
        .prepare_cached(MARKS)
        .and_then(|mut stmt| {
            stmt.query_map([ids], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
                .collect()
        })
        .map_err(sqlite_err)?;
    rows.into_iter()
        .map(|(id, visitor_seq, agent_seq)| {
            Ok(ReadMarks {
                conversation_id: ConversationId(parse_uuid(&id)?),
                visitor_seq,
                agent_seq,
            })
        })
        .collect()
}

pub(super) fn list_for_agent(
    conn: &Connection,
    filter: &ConversationFilter,
    agent_id: &str,
) -> Result<Vec<AgentListing>, StoreError> {
    // The site list as a JSON array (`NULL`: every site), read with `json_each`.
    let sites = filter
        .sites
        .as_ref()
        .map(|sites| serde_json::to_string(sites).unwrap_or_default());
    let status = filter.status.map(|s| s.as_str());
    let rows = conn
        .prepare_cached(LIST_FOR_AGENT)
        .and_then(|mut stmt| {
            stmt.query_map(
                params![
                    sites,
                    status,
                    i64::from(filter.limit),
                    i64::from(UNREAD_CAP),
                    agent_id
                ],
                |row| {
                    Ok((
                        read_conversation(row)?,
                        row.get::<_, i64>(crate::CONVERSATION_COLUMNS)?,
                        row.get::<_, i64>(crate::CONVERSATION_COLUMNS + 1)?,
                        row.get::<_, i64>(crate::CONVERSATION_COLUMNS + 2)?,
                    ))
                },
            )?
            .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(sqlite_err)?;
    rows.into_iter()
        .map(|(raw, read_seq, visitor_read_seq, unread)| {
            Ok(AgentListing {
                conversation: conversation_from(raw)?,
                read: ConversationReadState {
                    unread: unread.clamp(0, i64::from(UNREAD_CAP)) as u32,
                    read_seq,
                    visitor_read_seq,
                },
            })
        })
        .collect()
}
