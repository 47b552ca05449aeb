//! What the crate's unit tests build over and over.

use chat_core::model::{ConversationId, MessageKind, NewMessage, Role, Sender};
use uuid::Uuid;

/// A visitor's message "hi" of `kind` to `conversation`, with `key` as its `client_msg_id`.
pub(crate) fn visitor_message(
    conversation: Uuid,
    key: Option<&str>,
    kind: MessageKind,
) -> NewMessage {
    NewMessage {
        attachment: None,
        conversation_id: ConversationId(conversation),
        client_msg_id: key.map(str::to_string),
        sender: Sender {
            role: Role::Visitor,
            id: "v".into(),
            name: None,
        },
        body: "hi".into(),
        kind,
    }
}
