//! A batch's messages as the column arrays the group commit's inserts read over `unnest`
//! (`append` and `append_one_round_trip`).

use chat_core::model::{Message, MessageKind, NewMessage};
use chat_core::StoreError;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

/// The fields of a message that an insert writes, borrowed from a [`Message`] or a
/// [`NewMessage`].
pub(super) struct MessageFields<'a> {
    pub conversation: Uuid,
    pub key: Option<&'a str>,
    pub sender: &'a chat_core::model::Sender,
    pub body: &'a str,
    pub kind: MessageKind,
    pub attachment: Option<&'a chat_core::attachment::AttachmentRef>,
}

/// Messages as the column arrays an insert reads over `unnest`, in the messages' order.
pub(super) struct MessageColumns<'a> {
    pub conversation: Vec<Uuid>,
    pub key: Vec<Option<&'a str>>,
    pub role: Vec<&'a str>,
    pub sender: Vec<&'a str>,
    pub name: Vec<Option<&'a str>>,
    pub body: Vec<&'a str>,
    pub kind: Vec<&'a str>,
    pub attachment: Vec<Option<String>>,
}

impl<'a> MessageColumns<'a> {
    /// Fails on an attachment that cannot be encoded.
    pub(super) fn new(
        messages: impl ExactSizeIterator<Item = MessageFields<'a>>,
    ) -> Result<Self, StoreError> {
        let n = messages.len();
        let mut columns = MessageColumns {
            conversation: Vec::with_capacity(n),
            key: Vec::with_capacity(n),
            role: Vec::with_capacity(n),
            sender: Vec::with_capacity(n),
            name: Vec::with_capacity(n),
            body: Vec::with_capacity(n),
            kind: Vec::with_capacity(n),
            attachment: Vec::with_capacity(n),
        };
        for m in messages {
            columns.conversation.push(m.conversation);
            columns.key.push(m.key);
            columns.role.push(m.sender.role.as_str());
            columns.sender.push(m.sender.id.as_str());
            columns.name.push(m.sender.name.as_deref());
            columns.body.push(m.body);
            columns.kind.push(m.kind.as_str());
            columns
                .attachment
                .push(crate::message_attachment::to_column(m.attachment)?);
        }
        Ok(columns)
    }

    /// The columns after `conversation_id` and `seq`, as both write statements bind them
    /// (`client_msg_id`, role, sender id, sender name, body, kind, attachment).
    pub(super) fn fields(&self) -> [&(dyn ToSql + Sync); 7] {
        [
            &self.key,
            &self.role,
            &self.sender,
            &self.name,
            &self.body,
            &self.kind,
            &self.attachment,
        ]
    }
}

/// Both message types carry the same fields under the same names.
macro_rules! message_fields_from {
    ($message:ty) => {
        impl<'a> From<&'a $message> for MessageFields<'a> {
            fn from(m: &'a $message) -> Self {
                MessageFields {
                    conversation: m.conversation_id.0,
                    key: m.client_msg_id.as_deref(),
                    sender: &m.sender,
                    body: &m.body,
                    kind: m.kind,
                    attachment: m.attachment.as_deref(),
                }
            }
        }
    };
}
message_fields_from!(Message);
message_fields_from!(NewMessage);
