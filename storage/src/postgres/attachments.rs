//! Attachments on Postgres ([`chat_core::attachment`], migration 12): their metadata and, unless
//! they are kept in `CHAT_UPLOAD_DIR`, their bytes in `attachments`.

use chat_core::attachment::{Attachment, StoredAttachment};
use chat_core::model::{ConversationId, Role};
use chat_core::StoreError;
use chrono::{DateTime, Utc};
use deadpool_postgres::Object;
use tokio_postgres::error::SqlState;
use tokio_postgres::Row;
use uuid::Uuid;

use super::errors::{pg_err, unique_violation};

/// The metadata's columns, in the order [`attachment_from_row`] reads them.
macro_rules! attachment_columns {
    () => {
        "id, site_id, conversation_id, uploader_role, uploader_id, name, content_type, size, \
         visible_to_visitor, created_at"
    };
}

const INSERT: &str = concat!(
    "INSERT INTO attachments (",
    attachment_columns!(),
    ", content) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
);

const SELECT: &str = concat!(
    "SELECT ",
    attachment_columns!(),
    ", content FROM attachments WHERE id = $1"
);

/// Binds in one statement: the row lock it takes makes a concurrent bind to another
/// conversation see the conversation this one set (and match nothing), and a concurrent
/// [`DELETE_UNSENT`] either see it sent or delete it first (then this matches nothing).
const BIND: &str = concat!(
    "UPDATE attachments SET conversation_id = $2, \
     visible_to_visitor = visible_to_visitor OR $3, sent_at = coalesce(sent_at, now()) \
     WHERE id = $1 AND (conversation_id IS NULL OR conversation_id = $2) RETURNING ",
    attachment_columns!()
);

/// Up to `$2` uploads never sent from before `$1`, oldest first, through the partial index.
/// Rows another sweeper (another process) holds are skipped rather than waited for; the
/// condition is checked again on the rows as they are once locked, so one sent meanwhile stays.
/// The pick is `MATERIALIZED`: run once, so `LIMIT` holds (a subquery in `IN` may be run again
/// while the statement deletes, and pick more).
const DELETE_UNSENT: &str = "WITH picked AS MATERIALIZED (SELECT id FROM attachments \
     WHERE sent_at IS NULL AND created_at < $1 ORDER BY created_at LIMIT $2 \
     FOR UPDATE SKIP LOCKED) \
     DELETE FROM attachments a USING picked \
     WHERE a.id = picked.id AND a.sent_at IS NULL RETURNING a.id";

fn attachment_from_row(row: &Row) -> Result<Attachment, StoreError> {
    let role: String = row.try_get(3).map_err(pg_err)?;
    let size: i64 = row.try_get(7).map_err(pg_err)?;
    Ok(Attachment {
        id: row.try_get(0).map_err(pg_err)?,
        site_id: row.try_get(1).map_err(pg_err)?,
        conversation_id: row
            .try_get::<_, Option<Uuid>>(2)
            .map_err(pg_err)?
            .map(ConversationId),
        uploader_role: Role::parse(&role)
            .ok_or_else(|| StoreError::Other(format!("unknown role {role:?}")))?,
        uploader_id: row.try_get(4).map_err(pg_err)?,
        name: row.try_get(5).map_err(pg_err)?,
        content_type: row.try_get(6).map_err(pg_err)?,
        size: u64::try_from(size)
            .map_err(|_| StoreError::Other(format!("invalid attachment size {size}")))?,
        visible_to_visitor: row.try_get(8).map_err(pg_err)?,
        created_at: row.try_get::<_, DateTime<Utc>>(9).map_err(pg_err)?,
    })
}

/// [`chat_core::store::Store::put_attachment`]. A conversation that does not exist is
/// [`StoreError::NotFound`].
pub(super) async fn put(
    client: &Object,
    attachment: &Attachment,
    content: Option<&[u8]>,
) -> Result<(), StoreError> {
    let size = i64::try_from(attachment.size)
        .map_err(|_| StoreError::Other(format!("attachment size {} too large", attachment.size)))?;
    let stmt = client.prepare_cached(INSERT).await.map_err(pg_err)?;
    let inserted = client
        .execute(
            &stmt,
            &[
                &attachment.id,
                &attachment.site_id,
                &attachment.conversation_id.map(|c| c.0),
                &attachment.uploader_role.as_str(),
                &attachment.uploader_id,
                &attachment.name,
                &attachment.content_type,
                &size,
                &attachment.visible_to_visitor,
                &attachment.created_at,
                &content,
            ],
        )
        .await;
    match inserted {
        Ok(_) => Ok(()),
        Err(e) if e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION) => {
            Err(StoreError::NotFound("conversation"))
        }
        Err(e) if unique_violation(&e) => Err(StoreError::Other(format!(
            "attachment {} is already stored",
            attachment.id
        ))),
        Err(e) => Err(pg_err(e)),
    }
}

/// [`chat_core::store::Store::attachment`].
pub(super) async fn get(client: &Object, id: Uuid) -> Result<Option<StoredAttachment>, StoreError> {
    let stmt = client.prepare_cached(SELECT).await.map_err(pg_err)?;
    let Some(row) = client.query_opt(&stmt, &[&id]).await.map_err(pg_err)? else {
        return Ok(None);
    };
    Ok(Some(StoredAttachment {
        attachment: attachment_from_row(&row)?,
        content: row.try_get(10).map_err(pg_err)?,
    }))
}

/// [`chat_core::store::Store::bind_attachment`]. A conversation that does not exist is
/// [`StoreError::NotFound`] (nothing changes).
pub(super) async fn bind(
    client: &Object,
    id: Uuid,
    conversation_id: ConversationId,
    visible_to_visitor: bool,
) -> Result<Option<Attachment>, StoreError> {
    let stmt = client.prepare_cached(BIND).await.map_err(pg_err)?;
    match client
        .query_opt(&stmt, &[&id, &conversation_id.0, &visible_to_visitor])
        .await
    {
        Ok(row) => row.as_ref().map(attachment_from_row).transpose(),
        Err(e) if e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION) => {
            Err(StoreError::NotFound("conversation"))
        }
        Err(e) => Err(pg_err(e)),
    }
}

/// [`chat_core::store::Store::delete_unsent_attachments`].
pub(super) async fn delete_unsent(
    client: &Object,
    uploaded_before: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<Uuid>, StoreError> {
    let stmt = client.prepare_cached(DELETE_UNSENT).await.map_err(pg_err)?;
    let rows = client
        .query(&stmt, &[&uploaded_before, &i64::from(limit)])
        .await
        .map_err(pg_err)?;
    rows.iter()
        .map(|row| row.try_get(0).map_err(pg_err))
        .collect()
}
