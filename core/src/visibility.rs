//! Who sees what (issue 15): internal notes are for agents only. This is the one rule every
//! path to a visitor goes through: a session passes each event it gives its client through
//! [`event_for`] (live fan-out, `resume` replay, gap fill, `history`, Socket.IO recovery, the
//! `welcome` and every answer), and the service's reads for a visitor ask the store for the
//! messages visitors see and pass them through [`visible_to`] again. Transports never decide.
//!
//! Notes take a `seq` like any message, so agents' cursors stay exact. A visitor's view has
//! holes where notes are: the `seq` of the messages a visitor receives still increases, every
//! message after a visitor's cursor that the visitor may see is replayed once, and a
//! visitor's copy of a conversation has as `last_seq` the newest message the visitor sees
//! (docs/protocol.md, "Internal notes").

use crate::model::{Conversation, Message, MessageKind, Role};
use crate::protocol::ServerEvent;

/// Whether `role` may see messages of `kind`.
pub fn kind_visible_to(role: Role, kind: MessageKind) -> bool {
    match kind {
        MessageKind::Text | MessageKind::System => true,
        MessageKind::Note => role == Role::Agent,
    }
}

/// Whether `role` may see `message`.
pub fn visible_to(role: Role, message: &Message) -> bool {
    kind_visible_to(role, message.kind)
}

/// `conversation` as `role` sees it: a visitor's `last_seq` is that of the newest message the
/// visitor sees (a trailing note does not show), and agents see it as stored.
pub fn conversation_for(role: Role, mut conversation: Conversation) -> Conversation {
    if role == Role::Visitor {
        if let Some(visible) = conversation.visitor_last_seq.take() {
            conversation.last_seq = visible;
        }
    }
    conversation
}

/// `event` as `role` may see it: `None` for a message it may not see, conversations as it sees
/// them, answers with what it may not see left out.
pub fn event_for(role: Role, event: ServerEvent) -> Option<ServerEvent> {
    if role == Role::Agent {
        return Some(event);
    }
    Some(match event {
        ServerEvent::Message { message } => {
            if !visible_to(role, &message) {
                return None;
            }
            ServerEvent::Message { message }
        }
        ServerEvent::Conversation { conversation } => ServerEvent::Conversation {
            conversation: conversation_for(role, conversation),
        },
        ServerEvent::Welcome(mut welcome) => {
            welcome.conversation = welcome
                .conversation
                .take()
                .map(|c| conversation_for(role, c));
            ServerEvent::Welcome(welcome)
        }
        ServerEvent::Ack(mut ack) => {
            ack.message = ack.message.take().filter(|m| visible_to(role, m));
            if let Some(messages) = &mut ack.messages {
                messages.retain(|m| visible_to(role, m));
            }
            ack.conversation = ack.conversation.take().map(|c| conversation_for(role, c));
            if let Some(list) = ack.conversations.take() {
                ack.conversations = Some(
                    list.into_iter()
                        .map(|c| conversation_for(role, c))
                        .collect(),
                );
            }
            ServerEvent::Ack(ack)
        }
        // Read positions, typing and statuses carry no message content (an agent's read
        // position may be a note's `seq`: a visitor's client only compares it with its own).
        other @ (ServerEvent::Error(_)
        | ServerEvent::Presence { .. }
        | ServerEvent::Read { .. }
        | ServerEvent::Typing(_)
        | ServerEvent::AgentStatus(_)) => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ConversationId, ConversationStatus, Sender, VisitorId};
    use crate::protocol::{Ack, Welcome};

    fn message(seq: i64, kind: MessageKind) -> Message {
        Message {
            attachment: None,
            conversation_id: ConversationId::new_random(),
            seq,
            kind,
            client_msg_id: None,
            sender: Sender {
                role: Role::Agent,
                id: "a1".into(),
                name: Some("Alice".into()),
            },
            body: format!("{kind:?} {seq}"),
            created_at: chrono::Utc::now(),
        }
    }

    fn conversation(last_seq: i64, visitor_last_seq: Option<i64>) -> Conversation {
        Conversation {
            id: ConversationId::new_random(),
            site_id: "default".into(),
            visitor_id: VisitorId::new_random(),
            status: ConversationStatus::Open,
            assignee: None,
            last_seq,
            visitor_last_seq,
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
            waiting: false,
        }
    }

    #[test]
    fn notes_are_for_agents_only() {
        for kind in [MessageKind::Text, MessageKind::System, MessageKind::Note] {
            assert!(visible_to(Role::Agent, &message(1, kind)));
        }
        assert!(visible_to(Role::Visitor, &message(1, MessageKind::Text)));
        assert!(visible_to(Role::Visitor, &message(1, MessageKind::System)));
        assert!(!visible_to(Role::Visitor, &message(1, MessageKind::Note)));
    }

    #[test]
    fn a_note_event_never_reaches_a_visitor_and_always_reaches_an_agent() {
        let note = ServerEvent::Message {
            message: message(4, MessageKind::Note),
        };
        assert_eq!(event_for(Role::Visitor, note.clone()), None);
        assert_eq!(event_for(Role::Agent, note.clone()), Some(note));
        let system = ServerEvent::Message {
            message: message(5, MessageKind::System),
        };
        assert_eq!(event_for(Role::Visitor, system.clone()), Some(system));
    }

    #[test]
    fn answers_to_a_visitor_leave_notes_out() {
        let ack = ServerEvent::Ack(Box::new(Ack {
            messages: Some(vec![
                message(1, MessageKind::Text),
                message(2, MessageKind::Note),
                message(3, MessageKind::System),
            ]),
            message: Some(message(2, MessageKind::Note)),
            more: Some(false),
            ..Ack::default()
        }));
        let Some(ServerEvent::Ack(seen)) = event_for(Role::Visitor, ack.clone()) else {
            panic!("the ack itself goes through");
        };
        let seqs: Vec<i64> = seen.messages.unwrap().iter().map(|m| m.seq).collect();
        assert_eq!(seqs, vec![1, 3]);
        assert_eq!(seen.message, None);
        assert_eq!(event_for(Role::Agent, ack.clone()), Some(ack));
    }

    #[test]
    fn a_visitors_conversation_ends_at_the_last_message_it_sees() {
        let trailing_note = conversation(7, Some(5));
        let seen = conversation_for(Role::Visitor, trailing_note.clone());
        assert_eq!((seen.last_seq, seen.visitor_last_seq), (5, None));
        assert_eq!(
            conversation_for(Role::Agent, trailing_note.clone()),
            trailing_note
        );
        let no_note = conversation(7, None);
        assert_eq!(conversation_for(Role::Visitor, no_note.clone()).last_seq, 7);
        let event = ServerEvent::Conversation {
            conversation: trailing_note.clone(),
        };
        let Some(ServerEvent::Conversation { conversation }) = event_for(Role::Visitor, event)
        else {
            panic!("conversation events go through");
        };
        assert_eq!(conversation.last_seq, 5);
        let welcome = ServerEvent::Welcome(Box::new(Welcome {
            uploads: None,
            role: Role::Visitor,
            session_id: "s".into(),
            visitor_id: None,
            visitor_token: None,
            agent: None,
            status: None,
            sites: None,
            conversation: Some(trailing_note),
            agents_online: 0,
            preferred_transport: None,
        }));
        let Some(ServerEvent::Welcome(welcome)) = event_for(Role::Visitor, welcome) else {
            panic!("welcome goes through");
        };
        assert_eq!(welcome.conversation.unwrap().last_seq, 5);
    }
}
