//! Visitors on the embedded store: rows with the profile the main site gave (issue 13), and a
//! conversation handed from an anonymous visitor to the user they logged in as.

use chat_core::model::{Conversation, ConversationId, Visitor, VisitorId, VisitorProfile};
use chat_core::StoreError;
use rusqlite::{params, Connection, OptionalExtension, Row};

use super::errors::sqlite_err;
use super::rows::{conversation_from, parse_uuid, read_conversation, timestamp};
use crate::time::now_micros;

const VISITOR_COLUMNS: &str = "id, site_id, created_at, user_id, name, email, verified";

/// Raw columns of a visitor row, decoded outside rusqlite's closure.
struct VisitorRow {
    id: String,
    site_id: String,
    created_at: i64,
    user_id: Option<String>,
    name: Option<String>,
    email: Option<String>,
    verified: bool,
}

fn read_visitor(row: &Row<'_>) -> rusqlite::Result<VisitorRow> {
    Ok(VisitorRow {
        id: row.get(0)?,
        site_id: row.get(1)?,
        created_at: row.get(2)?,
        user_id: row.get(3)?,
        name: row.get(4)?,
        email: row.get(5)?,
        verified: row.get(6)?,
    })
}

fn visitor_from(raw: VisitorRow) -> Result<Visitor, StoreError> {
    let has_profile = raw.user_id.is_some() || raw.name.is_some() || raw.email.is_some();
    let profile = has_profile.then_some(VisitorProfile {
        user_id: raw.user_id,
        name: raw.name,
        email: raw.email,
        verified: raw.verified,
    });
    Ok(Visitor {
        id: VisitorId(parse_uuid(&raw.id)?),
        site_id: raw.site_id,
        created_at: timestamp(raw.created_at)?,
        profile,
    })
}

/// [`chat_core::store::Store::ensure_visitor`]: insert, or update the profile unless that would
/// replace a verified one with an unverified one (or change nothing).
pub(super) fn ensure(conn: &mut Connection, visitor: &Visitor) -> Result<Visitor, StoreError> {
    let id = visitor.id.0.to_string();
    let profile = visitor.profile.clone().unwrap_or_default();
    conn.prepare_cached(
        "INSERT INTO visitors (id, site_id, created_at, user_id, name, email, verified) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
         ON CONFLICT (id) DO UPDATE SET user_id = excluded.user_id, name = excluded.name, \
         email = excluded.email, verified = excluded.verified \
         WHERE ?8 AND (excluded.verified OR NOT visitors.verified) \
         AND (visitors.user_id, visitors.name, visitors.email, visitors.verified) \
         IS NOT (excluded.user_id, excluded.name, excluded.email, excluded.verified)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            id,
            visitor.site_id,
            visitor.created_at.timestamp_micros(),
            profile.user_id,
            profile.name,
            profile.email,
            profile.verified,
            visitor.profile.is_some(),
        ])
    })
    .map_err(sqlite_err)?;
    get(conn, visitor.id)?.ok_or(StoreError::NotFound("visitor"))
}

/// [`chat_core::store::Store::visitor`].
pub(super) fn get(conn: &mut Connection, id: VisitorId) -> Result<Option<Visitor>, StoreError> {
    let raw = conn
        .prepare_cached(&format!(
            "SELECT {VISITOR_COLUMNS} FROM visitors WHERE id = ?1"
        ))
        .and_then(|mut stmt| stmt.query_row([id.0.to_string()], read_visitor).optional())
        .map_err(sqlite_err)?;
    raw.map(visitor_from).transpose()
}

/// [`chat_core::store::Store::move_conversation`].
pub(super) fn move_conversation(
    conn: &mut Connection,
    id: ConversationId,
    to: VisitorId,
) -> Result<Conversation, StoreError> {
    let raw = conn
        .prepare_cached(concat!(
            "UPDATE conversations SET visitor_id = ?2, updated_at = ?3 WHERE id = ?1 \
             AND site_id = (SELECT site_id FROM visitors WHERE id = ?2) RETURNING ",
            conversation_columns!()
        ))
        .and_then(|mut stmt| {
            stmt.query_row(
                params![
                    id.0.to_string(),
                    to.0.to_string(),
                    now_micros().timestamp_micros()
                ],
                read_conversation,
            )
            .optional()
        })
        .map_err(sqlite_err)?;
    raw.map(conversation_from)
        .transpose()?
        .ok_or(StoreError::NotFound("conversation"))
}
