//! Decoding the embedded store's rows into the model.

use chat_core::model::{
    Agent, Conversation, ConversationId, ConversationStatus, Message, MessageKind, Role, Sender,
    VisitorId,
};
use chat_core::StoreError;
use rusqlite::Row;
use uuid::Uuid;

use crate::time::from_micros;

pub(super) fn bad_data(what: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Other(format!("invalid {what} in the embedded store: {detail}"))
}

pub(super) fn parse_uuid(s: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(s).map_err(|e| bad_data("uuid", e))
}

pub(super) fn timestamp(micros: i64) -> Result<chrono::DateTime<chrono::Utc>, StoreError> {
    from_micros(micros).ok_or_else(|| bad_data("timestamp", micros))
}

pub(super) struct ConversationRow {
    id: String,
    site_id: String,
    visitor_id: String,
    status: String,
    assignee_id: Option<String>,
    assignee_name: Option<String>,
    last_seq: i64,
    created_at: i64,
    updated_at: i64,
    visitor_last_seq: Option<i64>,
    waiting: bool,
}

pub(super) fn read_conversation(row: &Row<'_>) -> rusqlite::Result<ConversationRow> {
    Ok(ConversationRow {
        id: row.get(0)?,
        site_id: row.get(1)?,
        visitor_id: row.get(2)?,
        status: row.get(3)?,
        assignee_id: row.get(4)?,
        assignee_name: row.get(5)?,
        last_seq: row.get(6)?,
        created_at: row.get(7)?,
        updated_at: row.get(8)?,
        visitor_last_seq: row.get(9)?,
        waiting: row.get(10)?,
    })
}

pub(super) fn conversation_from(raw: ConversationRow) -> Result<Conversation, StoreError> {
    Ok(Conversation {
        id: ConversationId(parse_uuid(&raw.id)?),
        site_id: raw.site_id,
        visitor_id: VisitorId(parse_uuid(&raw.visitor_id)?),
        status: ConversationStatus::parse(&raw.status)
            .ok_or_else(|| bad_data("conversation status", &raw.status))?,
        assignee: raw.assignee_id.map(|id| Agent {
            id,
            name: raw.assignee_name.unwrap_or_default(),
        }),
        last_seq: raw.last_seq,
        visitor_last_seq: raw.visitor_last_seq,
        created_at: timestamp(raw.created_at)?,
        updated_at: timestamp(raw.updated_at)?,
        waiting: raw.waiting,
    })
}

/// The columns of `message_row_columns!()`, as stored; its fields are open to the store's
/// files because a search hit reads them from its own column indexes.
pub(super) struct MessageRow {
    pub(super) conversation_id: String,
    pub(super) seq: i64,
    pub(super) client_msg_id: Option<String>,
    pub(super) sender_role: String,
    pub(super) sender_id: String,
    pub(super) sender_name: Option<String>,
    pub(super) body: String,
    pub(super) created_at: i64,
    pub(super) kind: String,
    /// JSON (migration 12).
    pub(super) attachment: Option<String>,
}

pub(super) fn read_message(row: &Row<'_>) -> rusqlite::Result<MessageRow> {
    Ok(MessageRow {
        conversation_id: row.get(0)?,
        seq: row.get(1)?,
        client_msg_id: row.get(2)?,
        sender_role: row.get(3)?,
        sender_id: row.get(4)?,
        sender_name: row.get(5)?,
        body: row.get(6)?,
        created_at: row.get(7)?,
        kind: row.get(8)?,
        attachment: row.get(9)?,
    })
}

pub(super) fn message_from(raw: MessageRow) -> Result<Message, StoreError> {
    Ok(Message {
        attachment: crate::message_attachment::from_column(raw.attachment.as_deref())?,
        conversation_id: ConversationId(parse_uuid(&raw.conversation_id)?),
        seq: raw.seq,
        kind: MessageKind::parse(&raw.kind).ok_or_else(|| bad_data("message kind", &raw.kind))?,
        client_msg_id: raw.client_msg_id,
        sender: Sender {
            role: Role::parse(&raw.sender_role)
                .ok_or_else(|| bad_data("role", &raw.sender_role))?,
            id: raw.sender_id,
            name: raw.sender_name,
        },
        body: raw.body,
        created_at: timestamp(raw.created_at)?,
    })
}
