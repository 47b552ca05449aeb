//! Conversation search on Postgres ([`chat_core::search`]): words through the GIN index of
//! migration 0010 (`to_tsvector('simple', body)`, each word a prefix), CJK words as
//! case-insensitive substrings (`ILIKE`), and the whole query against the visitor's name and
//! email. The query's text only ever travels as bound parameters.

use chat_core::model::{ConversationStatus, Message, MessageKind, Role, Sender};
use chat_core::search::{SearchQuery, StoredHit};
use chat_core::StoreError;
use chrono::{DateTime, Utc};
use deadpool_postgres::Object;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;
use uuid::Uuid;

use super::errors::pg_err;
use super::rows::conversation_from_row;
use crate::like_pattern;

/// The statement for `words` prefix words and `substrings` substring words: `$1` sites (or
/// NULL), `$2` status (or NULL), `$3`/`$4` the cursor (or NULL), `$5` the limit, `$6` the
/// visitor pattern, then the tsquery (when there are words), then one pattern per substring.
fn statement(words: bool, substrings: usize) -> String {
    let mut text_conditions = Vec::new();
    let mut next = 7;
    if words {
        text_conditions.push(format!(
            "to_tsvector('simple', m.body) @@ to_tsquery('simple', ${next})"
        ));
        next += 1;
    }
    for _ in 0..substrings {
        text_conditions.push(format!("m.body ILIKE ${next} ESCAPE '\\'"));
        next += 1;
    }
    format!(
        "WITH hits AS (SELECT m.conversation_id, max(m.seq) AS seq FROM messages m \
         WHERE {} GROUP BY m.conversation_id) \
         SELECT c.id, c.site_id, c.visitor_id, c.status, c.assignee_id, c.assignee_name, \
         c.last_seq, c.created_at, c.updated_at, c.visitor_last_seq, c.waiting, \
         m.seq, m.client_msg_id, m.sender_role, m.sender_id, m.sender_name, m.body, m.created_at, m.kind, \
         m.attachment \
         FROM conversations c \
         LEFT JOIN hits h ON h.conversation_id = c.id \
         LEFT JOIN messages m ON m.conversation_id = h.conversation_id AND m.seq = h.seq \
         WHERE ($1::text[] IS NULL OR c.site_id = ANY($1::text[])) \
         AND ($2::text IS NULL OR c.status = $2::text) \
         AND ($3::timestamptz IS NULL OR (c.updated_at, c.id) < ($3::timestamptz, $4::uuid)) \
         AND (h.conversation_id IS NOT NULL OR c.visitor_id IN (SELECT v.id FROM visitors v \
              WHERE ($1::text[] IS NULL OR v.site_id = ANY($1::text[])) \
              AND (v.name ILIKE $6 ESCAPE '\\' OR v.email ILIKE $6 ESCAPE '\\'))) \
         ORDER BY c.updated_at DESC, c.id DESC LIMIT $5",
        text_conditions.join(" AND ")
    )
}

/// Each word as a prefix, all required: `'refund':* & 'late':*`. Words hold letters and
/// digits only ([`chat_core::search::SearchText`]), so quoting them is enough.
fn tsquery(words: &[String]) -> String {
    words
        .iter()
        .map(|w| format!("'{w}':*"))
        .collect::<Vec<_>>()
        .join(" & ")
}

fn hit_from_row(row: &Row) -> Result<StoredHit, StoreError> {
    let conversation = conversation_from_row(row)?;
    let seq: Option<i64> = row.try_get(crate::CONVERSATION_COLUMNS).map_err(pg_err)?;
    let message = match seq {
        None => None,
        Some(seq) => {
            let role: String = row
                .try_get(crate::CONVERSATION_COLUMNS + 2)
                .map_err(pg_err)?;
            let attachment: Option<&str> = row
                .try_get(crate::CONVERSATION_COLUMNS + 8)
                .map_err(pg_err)?;
            Some(Message {
                attachment: crate::message_attachment::from_column(attachment)?,
                conversation_id: conversation.id,
                seq,
                client_msg_id: row
                    .try_get(crate::CONVERSATION_COLUMNS + 1)
                    .map_err(pg_err)?,
                sender: Sender {
                    role: Role::parse(&role)
                        .ok_or_else(|| StoreError::Other(format!("unknown role {role:?}")))?,
                    id: row
                        .try_get(crate::CONVERSATION_COLUMNS + 3)
                        .map_err(pg_err)?,
                    name: row
                        .try_get(crate::CONVERSATION_COLUMNS + 4)
                        .map_err(pg_err)?,
                },
                body: row
                    .try_get(crate::CONVERSATION_COLUMNS + 5)
                    .map_err(pg_err)?,
                created_at: row
                    .try_get::<_, DateTime<Utc>>(crate::CONVERSATION_COLUMNS + 6)
                    .map_err(pg_err)?,
                kind: {
                    let kind: String = row
                        .try_get(crate::CONVERSATION_COLUMNS + 7)
                        .map_err(pg_err)?;
                    MessageKind::parse(&kind).ok_or_else(|| {
                        StoreError::Other(format!("unknown message kind {kind:?}"))
                    })?
                },
            })
        }
    };
    Ok(StoredHit {
        conversation,
        message,
    })
}

/// [`chat_core::store::Store::search_conversations`].
pub(super) async fn search(
    client: &Object,
    query: &SearchQuery,
) -> Result<Vec<StoredHit>, StoreError> {
    let text = &query.text;
    let stmt = client
        .prepare_cached(&statement(!text.words.is_empty(), text.substrings.len()))
        .await
        .map_err(pg_err)?;
    let status = query.status.map(ConversationStatus::as_str);
    let after_time: Option<DateTime<Utc>> = query.after.map(|a| a.updated_at);
    let after_id: Option<Uuid> = query.after.map(|a| a.id.0);
    let limit = i64::from(query.limit);
    let people = like_pattern(&text.whole);
    let words = (!text.words.is_empty()).then(|| tsquery(&text.words));
    let substrings: Vec<String> = text.substrings.iter().map(|s| like_pattern(s)).collect();
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![
        &query.sites,
        &status,
        &after_time,
        &after_id,
        &limit,
        &people,
    ];
    if let Some(words) = &words {
        params.push(words);
    }
    for pattern in &substrings {
        params.push(pattern);
    }
    let rows = client.query(&stmt, &params).await.map_err(pg_err)?;
    rows.iter().map(hit_from_row).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_become_prefixes_joined_by_and() {
        assert_eq!(
            tsquery(&["refund".into(), "late".into()]),
            "'refund':* & 'late':*"
        );
        let sql = statement(true, 2);
        assert!(sql.contains("to_tsquery('simple', $7)"));
        assert!(sql.contains("m.body ILIKE $8") && sql.contains("m.body ILIKE $9"));
        assert!(!statement(false, 1).contains("to_tsquery"));
    }
}
