//! A visitor, their conversation and their messages, for tests that need a few rows in any
//! [`Store`].

use chat_core::model::{Conversation, MessageKind, NewMessage, Role, Sender, Visitor, VisitorId};
use chat_core::store::Store;

/// A new visitor of site `s` and a new conversation of theirs, in `store`.
pub async fn visitor_conversation(store: &dyn Store) -> (Visitor, Conversation) {
    let visitor = store
        .ensure_visitor(&Visitor {
            id: VisitorId::new_random(),
            site_id: "s".into(),
            created_at: chrono::Utc::now(),
            profile: None,
        })
        .await
        .expect("visitor");
    let conversation = store
        .create_conversation("s", visitor.id)
        .await
        .expect("conversation");
    (visitor, conversation)
}

/// A text message from `conversation`'s visitor.
pub fn visitor_text(
    conversation: &Conversation,
    client_msg_id: Option<&str>,
    body: &str,
) -> NewMessage {
    NewMessage {
        attachment: None,
        conversation_id: conversation.id,
        client_msg_id: client_msg_id.map(str::to_string),
        sender: Sender {
            role: Role::Visitor,
            id: conversation.visitor_id.to_string(),
            name: None,
        },
        body: body.into(),
        kind: MessageKind::Text,
    }
}
