//! Conversation search on the embedded store ([`chat_core::search`]): words through the FTS5
//! table of migration 0010 (each word a prefix: `"word"*`), CJK words as substrings (`LIKE`,
//! case-insensitive for ASCII only, as SQLite's `LIKE` is), and the whole query against the
//! visitor's name and email. The query's text only ever travels as bound parameters.

use chat_core::model::ConversationStatus;
use chat_core::search::{SearchQuery, StoredHit};
use chat_core::StoreError;
use rusqlite::types::Value;
use rusqlite::{params_from_iter, Connection};

use super::errors::sqlite_err;
use super::rows::{conversation_from, message_from, read_conversation, MessageRow};
use crate::like_pattern;

/// The statement: `?1` sites as a JSON array (or NULL), `?2` status (or NULL), `?3`/`?4` the
/// cursor (or NULL), `?5` the limit, `?6` the visitor pattern, then the FTS5 query (when there
/// are words), then one pattern per substring.
fn statement(words: bool, substrings: usize) -> String {
    let mut next = 7;
    let mut conditions = Vec::new();
    let source = if words {
        conditions.push(format!("messages_fts MATCH ?{next}"));
        next += 1;
        "messages_fts m"
    } else {
        "messages m"
    };
    for _ in 0..substrings {
        conditions.push(format!("m.body LIKE ?{next} ESCAPE '\\'"));
        next += 1;
    }
    format!(
        "WITH hits AS (SELECT m.conversation_id AS conversation_id, max(m.seq) AS seq \
         FROM {source} WHERE {} GROUP BY m.conversation_id) \
         SELECT c.id, c.site_id, c.visitor_id, c.status, c.assignee_id, c.assignee_name, \
         c.last_seq, c.created_at, c.updated_at, c.visitor_last_seq, c.waiting, \
         m.conversation_id, m.seq, m.client_msg_id, m.sender_role, m.sender_id, m.sender_name, \
         m.body, m.created_at, m.kind, m.attachment \
         FROM conversations c \
         LEFT JOIN hits h ON h.conversation_id = c.id \
         LEFT JOIN messages m ON m.conversation_id = h.conversation_id AND m.seq = h.seq \
         WHERE (?1 IS NULL OR c.site_id IN (SELECT value FROM json_each(?1))) \
         AND (?2 IS NULL OR c.status = ?2) \
         AND (?3 IS NULL OR c.updated_at < ?3 OR (c.updated_at = ?3 AND c.id < ?4)) \
         AND (h.conversation_id IS NOT NULL OR c.visitor_id IN (SELECT v.id FROM visitors v \
              WHERE (?1 IS NULL OR v.site_id IN (SELECT value FROM json_each(?1))) \
              AND (v.name LIKE ?6 ESCAPE '\\' OR v.email LIKE ?6 ESCAPE '\\'))) \
         ORDER BY c.updated_at DESC, c.id DESC LIMIT ?5",
        conditions.join(" AND ")
    )
}

/// Each word as a quoted prefix, all required: `"refund"* "late"*`. Words hold letters and
/// digits only ([`chat_core::search::SearchText`]), so quoting them is enough.
fn fts_query(words: &[String]) -> String {
    words
        .iter()
        .map(|w| format!("\"{w}\"*"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// [`chat_core::store::Store::search_conversations`].
pub(super) fn search(conn: &Connection, query: &SearchQuery) -> Result<Vec<StoredHit>, StoreError> {
    let text = &query.text;
    let mut values: Vec<Value> = vec![
        query.sites.as_ref().map_or(Value::Null, |s| {
            Value::Text(serde_json::to_string(s).unwrap_or_default())
        }),
        query.status.map_or(Value::Null, |s| {
            Value::Text(ConversationStatus::as_str(s).into())
        }),
        query.after.map_or(Value::Null, |a| {
            Value::Integer(a.updated_at.timestamp_micros())
        }),
        query
            .after
            .map_or(Value::Null, |a| Value::Text(a.id.0.to_string())),
        Value::Integer(i64::from(query.limit)),
        Value::Text(like_pattern(&text.whole)),
    ];
    if !text.words.is_empty() {
        values.push(Value::Text(fts_query(&text.words)));
    }
    values.extend(text.substrings.iter().map(|s| Value::Text(like_pattern(s))));
    let rows = conn
        .prepare_cached(&statement(!text.words.is_empty(), text.substrings.len()))
        .and_then(|mut stmt| {
            stmt.query_map(params_from_iter(values), |row| {
                let conversation = read_conversation(row)?;
                let seq: Option<i64> = row.get(crate::CONVERSATION_COLUMNS + 1)?;
                let message = match seq {
                    None => None,
                    Some(seq) => Some(MessageRow {
                        conversation_id: row.get(crate::CONVERSATION_COLUMNS)?,
                        seq,
                        client_msg_id: row.get(crate::CONVERSATION_COLUMNS + 2)?,
                        sender_role: row.get(crate::CONVERSATION_COLUMNS + 3)?,
                        sender_id: row.get(crate::CONVERSATION_COLUMNS + 4)?,
                        sender_name: row.get(crate::CONVERSATION_COLUMNS + 5)?,
                        body: row.get(crate::CONVERSATION_COLUMNS + 6)?,
                        created_at: row.get(crate::CONVERSATION_COLUMNS + 7)?,
                        kind: row.get(crate::CONVERSATION_COLUMNS + 8)?,
                        attachment: row.get(crate::CONVERSATION_COLUMNS + 9)?,
                    }),
                };
                Ok((conversation, message))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(sqlite_err)?;
    rows.into_iter()
        .map(|(conversation, message)| {
            Ok(StoredHit {
                conversation: conversation_from(conversation)?,
                message: message.map(message_from).transpose()?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_become_quoted_prefixes() {
        assert_eq!(
            fts_query(&["refund".into(), "late".into()]),
            r#""refund"* "late"*"#
        );
        let sql = statement(true, 1);
        assert!(sql.contains("messages_fts MATCH ?7") && sql.contains("m.body LIKE ?8"));
        assert!(statement(false, 1).contains("FROM messages m WHERE m.body LIKE ?7"));
    }
}
