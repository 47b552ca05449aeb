//! Attachments on the embedded store ([`chat_core::attachment`], migration 12): their metadata
//! and, unless they are kept in `CHAT_UPLOAD_DIR`, their bytes in `attachments`.

use chat_core::attachment::{Attachment, StoredAttachment};
use chat_core::model::{ConversationId, Role};
use chat_core::StoreError;
use rusqlite::{params, Connection, OptionalExtension, Row};
use uuid::Uuid;

use super::errors::{constraint, sqlite_err};
use super::rows::{bad_data, parse_uuid, timestamp};
use crate::time::now_micros;

/// The metadata's columns, in the order [`read`] reads them.
macro_rules! attachment_columns {
    () => {
        "id, site_id, conversation_id, uploader_role, uploader_id, name, content_type, size, \
         visible_to_visitor, created_at"
    };
}

const INSERT: &str = concat!(
    "INSERT INTO attachments (",
    attachment_columns!(),
    ", content) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
);

const SELECT: &str = concat!(
    "SELECT ",
    attachment_columns!(),
    ", content FROM attachments WHERE id = ?1"
);

/// Binds in one statement (the store's one connection writes alone anyway); `?4`: now.
const BIND: &str = concat!(
    "UPDATE attachments SET conversation_id = ?2, \
     visible_to_visitor = visible_to_visitor OR ?3, sent_at = coalesce(sent_at, ?4) \
     WHERE id = ?1 AND (conversation_id IS NULL OR conversation_id = ?2) RETURNING ",
    attachment_columns!()
);

/// Up to `?2` uploads never sent from before `?1`, oldest first, through the partial index.
const DELETE_UNSENT: &str = "DELETE FROM attachments WHERE id IN (SELECT id FROM attachments \
     WHERE sent_at IS NULL AND created_at < ?1 ORDER BY created_at LIMIT ?2) RETURNING id";

struct AttachmentRow {
    id: String,
    site_id: String,
    conversation_id: Option<String>,
    uploader_role: String,
    uploader_id: String,
    name: String,
    content_type: String,
    size: i64,
    visible_to_visitor: bool,
    created_at: i64,
}

fn read(row: &Row<'_>) -> rusqlite::Result<AttachmentRow> {
    Ok(AttachmentRow {
        id: row.get(0)?,
        site_id: row.get(1)?,
        conversation_id: row.get(2)?,
        uploader_role: row.get(3)?,
        uploader_id: row.get(4)?,
        name: row.get(5)?,
        content_type: row.get(6)?,
        size: row.get(7)?,
        visible_to_visitor: row.get(8)?,
        created_at: row.get(9)?,
    })
}

fn attachment_from(raw: AttachmentRow) -> Result<Attachment, StoreError> {
    Ok(Attachment {
        id: parse_uuid(&raw.id)?,
        site_id: raw.site_id,
        conversation_id: raw
            .conversation_id
            .as_deref()
            .map(parse_uuid)
            .transpose()?
            .map(ConversationId),
        uploader_role: Role::parse(&raw.uploader_role)
            .ok_or_else(|| bad_data("role", &raw.uploader_role))?,
        uploader_id: raw.uploader_id,
        name: raw.name,
        content_type: raw.content_type,
        size: u64::try_from(raw.size).map_err(|_| bad_data("attachment size", raw.size))?,
        visible_to_visitor: raw.visible_to_visitor,
        created_at: timestamp(raw.created_at)?,
    })
}

fn foreign_key_violation(e: &rusqlite::Error) -> bool {
    constraint(e, rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY)
}

/// [`chat_core::store::Store::put_attachment`]. A conversation that does not exist is
/// [`StoreError::NotFound`].
pub(super) fn put(
    conn: &Connection,
    attachment: &Attachment,
    content: Option<&[u8]>,
) -> Result<(), StoreError> {
    let size = i64::try_from(attachment.size)
        .map_err(|_| StoreError::Other(format!("attachment size {} too large", attachment.size)))?;
    let inserted = conn.prepare_cached(INSERT).and_then(|mut stmt| {
        stmt.execute(params![
            attachment.id.to_string(),
            attachment.site_id,
            attachment.conversation_id.map(|c| c.0.to_string()),
            attachment.uploader_role.as_str(),
            attachment.uploader_id,
            attachment.name,
            attachment.content_type,
            size,
            attachment.visible_to_visitor,
            attachment.created_at.timestamp_micros(),
            content,
        ])
    });
    match inserted {
        Ok(_) => Ok(()),
        Err(e) if foreign_key_violation(&e) => Err(StoreError::NotFound("conversation")),
        Err(e) if constraint(&e, rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY) => Err(
            StoreError::Other(format!("attachment {} is already stored", attachment.id)),
        ),
        Err(e) => Err(sqlite_err(e)),
    }
}

/// [`chat_core::store::Store::attachment`].
pub(super) fn get(conn: &Connection, id: Uuid) -> Result<Option<StoredAttachment>, StoreError> {
    let found = conn
        .prepare_cached(SELECT)
        .and_then(|mut stmt| {
            stmt.query_row([id.to_string()], |row| {
                Ok((read(row)?, row.get::<_, Option<Vec<u8>>>(10)?))
            })
            .optional()
        })
        .map_err(sqlite_err)?;
    found
        .map(|(raw, content)| {
            Ok(StoredAttachment {
                attachment: attachment_from(raw)?,
                content,
            })
        })
        .transpose()
}

/// [`chat_core::store::Store::bind_attachment`]. A conversation that does not exist is
/// [`StoreError::NotFound`] (nothing changes).
pub(super) fn bind(
    conn: &Connection,
    id: Uuid,
    conversation_id: ConversationId,
    visible_to_visitor: bool,
) -> Result<Option<Attachment>, StoreError> {
    let bound = conn.prepare_cached(BIND).and_then(|mut stmt| {
        stmt.query_row(
            params![
                id.to_string(),
                conversation_id.0.to_string(),
                visible_to_visitor,
                now_micros().timestamp_micros()
            ],
            read,
        )
        .optional()
    });
    match bound {
        Ok(raw) => raw.map(attachment_from).transpose(),
        Err(e) if foreign_key_violation(&e) => Err(StoreError::NotFound("conversation")),
        Err(e) => Err(sqlite_err(e)),
    }
}

/// [`chat_core::store::Store::delete_unsent_attachments`].
pub(super) fn delete_unsent(
    conn: &Connection,
    uploaded_before: chrono::DateTime<chrono::Utc>,
    limit: u32,
) -> Result<Vec<Uuid>, StoreError> {
    let ids = conn
        .prepare_cached(DELETE_UNSENT)
        .and_then(|mut stmt| {
            stmt.query_map(
                params![uploaded_before.timestamp_micros(), i64::from(limit)],
                |row| row.get::<_, String>(0),
            )?
            .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(sqlite_err)?;
    ids.iter().map(|id| parse_uuid(id)).collect()
}
