//! Decoding Postgres rows into the model.

use chat_core::model::{
    Agent, Conversation, ConversationId, ConversationStatus, Message, MessageKind, Role, Sender,
    Visitor, VisitorId, VisitorProfile,
};
use chat_core::StoreError;
use chrono::{DateTime, Utc};
use tokio_postgres::Row;
use uuid::Uuid;

use super::errors::pg_err;

/// `id, site_id, created_at, user_id, name, email, verified`.
pub(crate) fn visitor_from_row(row: &Row) -> Result<Visitor, StoreError> {
    let user_id: Option<String> = row.try_get(3).map_err(pg_err)?;
    let name: Option<String> = row.try_get(4).map_err(pg_err)?;
    let email: Option<String> = row.try_get(5).map_err(pg_err)?;
    let profile =
        (user_id.is_some() || name.is_some() || email.is_some()).then(|| VisitorProfile {
            user_id,
            name,
            email,
            verified: row.try_get(6).unwrap_or(false),
        });
    Ok(Visitor {
        id: VisitorId(row.try_get::<_, Uuid>(0).map_err(pg_err)?),
        site_id: row.try_get(1).map_err(pg_err)?,
        created_at: row.try_get::<_, DateTime<Utc>>(2).map_err(pg_err)?,
        profile,
    })
}

/// The columns of `conversation_columns!()`, in order.
pub(crate) fn conversation_from_row(row: &Row) -> Result<Conversation, StoreError> {
    let status: String = row.try_get(3).map_err(pg_err)?;
    let status = ConversationStatus::parse(&status)
        .ok_or_else(|| StoreError::Other(format!("unknown conversation status {status:?}")))?;
    let assignee_id: Option<String> = row.try_get(4).map_err(pg_err)?;
    let assignee_name: Option<String> = row.try_get(5).map_err(pg_err)?;
    Ok(Conversation {
        id: ConversationId(row.try_get::<_, Uuid>(0).map_err(pg_err)?),
        site_id: row.try_get(1).map_err(pg_err)?,
        visitor_id: VisitorId(row.try_get::<_, Uuid>(2).map_err(pg_err)?),
        status,
        assignee: assignee_id.map(|id| Agent {
            id,
            name: assignee_name.unwrap_or_default(),
        }),
        last_seq: row.try_get(6).map_err(pg_err)?,
        visitor_last_seq: row.try_get(9).map_err(pg_err)?,
        created_at: row.try_get::<_, DateTime<Utc>>(7).map_err(pg_err)?,
        updated_at: row.try_get::<_, DateTime<Utc>>(8).map_err(pg_err)?,
        waiting: row.try_get(10).map_err(pg_err)?,
    })
}

/// The columns of `message_row_columns!()`, in order.
pub(crate) fn message_from_row(row: &Row) -> Result<Message, StoreError> {
    let role: String = row.try_get(3).map_err(pg_err)?;
    let role =
        Role::parse(&role).ok_or_else(|| StoreError::Other(format!("unknown role {role:?}")))?;
    let kind: String = row.try_get(8).map_err(pg_err)?;
    let kind = MessageKind::parse(&kind)
        .ok_or_else(|| StoreError::Other(format!("unknown message kind {kind:?}")))?;
    let attachment: Option<&str> = row.try_get(9).map_err(pg_err)?;
    Ok(Message {
        attachment: crate::message_attachment::from_column(attachment)?,
        conversation_id: ConversationId(row.try_get::<_, Uuid>(0).map_err(pg_err)?),
        seq: row.try_get(1).map_err(pg_err)?,
        kind,
        client_msg_id: row.try_get(2).map_err(pg_err)?,
        sender: Sender {
            role,
            id: row.try_get(4).map_err(pg_err)?,
            name: row.try_get(5).map_err(pg_err)?,
        },
        body: row.try_get(6).map_err(pg_err)?,
        created_at: row.try_get::<_, DateTime<Utc>>(7).map_err(pg_err)?,
    })
}
