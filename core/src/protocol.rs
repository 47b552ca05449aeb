//! The transport-neutral chat protocol: what a client may ask ([`ClientCommand`]) and what the
//! gateway tells it ([`ServerEvent`]). Every transport carries these same shapes; the raw WebSocket
//! and long-polling transports carry them as JSON text, one object per frame. `docs/protocol.md`
//! is the reference with example exchanges.
//!
//! ```
//! use chat_core::protocol::{decode_client_frame, ClientCommand};
//! let frame = decode_client_frame(r#"{"type":"send","id":"r1","body":"hello"}"#).unwrap();
//! assert_eq!(frame.id.as_deref(), Some("r1"));
//! assert!(matches!(frame.command, ClientCommand::Send { .. }));
//! ```

use crate::error::ErrorCode;
use crate::model::{
    Agent, Conversation, ConversationId, ConversationStatus, Message, Role, SiteId, VisitorId,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

impl ClientCommand {
    /// The `type` name of the command, as on the wire (a metric label: a fixed set).
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Send { .. } => "send",
            Self::Resume { .. } => "resume",
            Self::History { .. } => "history",
            Self::ListConversations { .. } => "list_conversations",
            Self::Assign { .. } => "assign",
            Self::Unassign { .. } => "unassign",
            Self::ListAgents { .. } => "list_agents",
            Self::Close { .. } => "close",
            Self::Auth { .. } => "auth",
            Self::Context { .. } => "context",
            Self::Visitor { .. } => "visitor",
            Self::Read { .. } => "read",
            Self::Typing { .. } => "typing",
            Self::SetStatus { .. } => "set_status",
            Self::SearchConversations { .. } => "search_conversations",
            Self::Contact { .. } => "contact",
        }
    }
}

/// One client frame: an optional request id that the answer echoes, and the command.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientFrame {
    /// Chosen by the client; echoed in the `ack` or `error` that answers this frame.
    pub id: Option<String>,
    /// What the client asks for.
    pub command: ClientCommand,
}

/// What a client may ask of the gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientCommand {
    /// Send a message. A visitor may omit `conversation_id`: their open conversation is used,
    /// or a new one is opened. Retrying with the same `client_msg_id` returns the original.
    Send {
        /// Target conversation (required for agents).
        #[serde(default)]
        conversation_id: Option<ConversationId>,
        /// Idempotency key chosen by the client, at most 128 characters.
        #[serde(default)]
        client_msg_id: Option<String>,
        /// The text (may be empty when `attachment_id` is given, but always present).
        body: String,
        /// Agents: an internal note, seen by agents only (visitors asking get `forbidden`).
        #[serde(default)]
        note: bool,
        /// An attachment this principal uploaded (`POST /chat/api/attachments`), sent with
        /// the text.
        #[serde(default)]
        attachment_id: Option<uuid::Uuid>,
    },
    /// Replay everything after each cursor (the last `seq` the client has seen per
    /// conversation), then continue live with no gap and no duplicate.
    Resume {
        /// Conversation id to the last sequence number seen.
        cursors: BTreeMap<ConversationId, i64>,
        /// Agents only: also replay a `conversation` event for every conversation of `site`
        /// changed after this instant (the list changes missed while away), oldest first.
        #[serde(default)]
        conversations_since: Option<chrono::DateTime<chrono::Utc>>,
        /// The site for `conversations_since` (default: every site of the agent).
        #[serde(default)]
        site: Option<String>,
    },
    /// Read a page of a conversation's messages after a sequence number. A page holds at most
    /// `limit` messages and at most the answer budget in bytes (`CHAT_WS_MAX_FRAME_BYTES`, at
    /// least one message); `more: true` in the ack says to ask again from the last `seq`.
    History {
        /// The conversation.
        conversation_id: ConversationId,
        /// Return messages with `seq` greater than this (0 for the start).
        #[serde(default)]
        after_seq: i64,
        /// Page size, at most 500 (default 100).
        #[serde(default)]
        limit: Option<u32>,
    },
    /// Agents: list conversations, newest activity first.
    ListConversations {
        /// The site whose conversations to list (default: every site the agent works for).
        #[serde(default)]
        site: Option<String>,
        /// Only conversations in this status.
        #[serde(default)]
        status: Option<ConversationStatus>,
        /// At most this many (default 100, at most 500).
        #[serde(default)]
        limit: Option<u32>,
    },
    /// Agents: assign a conversation to oneself, or to `agent_id` (an agent of the
    /// conversation's site, from `list_agents`). A change of assignee other than taking an
    /// unassigned conversation for oneself writes a `system` message to the conversation.
    Assign {
        /// The conversation.
        conversation_id: ConversationId,
        /// The agent to assign it to (default: oneself).
        #[serde(default)]
        agent_id: Option<String>,
    },
    /// Agents: leave a conversation unassigned (a `system` message says who did).
    Unassign {
        /// The conversation.
        conversation_id: ConversationId,
    },
    /// Agents: their colleagues with their statuses — the agents connected now who share a
    /// site with them, and the site's directory (those who opened a session since the directory
    /// began), for `assign`'s `agent_id`.
    ListAgents {
        /// Only agents of this site (one of the caller's); the directory's are listed when the
        /// site is known (this one, or the caller's only site).
        #[serde(default)]
        site: Option<String>,
    },
    /// Agents: close a conversation (visitors may close their own).
    Close {
        /// The conversation.
        conversation_id: ConversationId,
    },
    /// Agents: present a fresh JWT before the session's one expires, so the session goes on
    /// past the old token's `exp` (it must name the same agent).
    Auth {
        /// The new agent JWT.
        token: String,
    },
    /// Visitors: where they are now (page, language, time zone, the site's attributes). The
    /// latest report is stored for agents to read; bounds in [`crate::visitor_context`].
    Context {
        /// The report.
        context: crate::visitor_context::ReportedContext,
    },
    /// Agents: a conversation's visitor with their latest context.
    Visitor {
        /// The conversation.
        conversation_id: ConversationId,
    },
    /// The client has read conversation `conversation_id` up to `seq` (inclusive): stored (never
    /// backwards, clamped to the conversation's last message) and announced to the other side
    /// with a `read` event. A visitor may omit `conversation_id`: their open conversation.
    Read {
        /// The conversation (required for agents).
        #[serde(default)]
        conversation_id: Option<ConversationId>,
        /// The last `seq` read.
        seq: i64,
    },
    /// Says the user is typing (or stopped) in a conversation: the other side gets a `typing`
    /// event, never stored ([`crate::typing`]). A visitor may omit `conversation_id`: their open
    /// conversation is used.
    Typing {
        /// The conversation (required for agents).
        #[serde(default)]
        conversation_id: Option<ConversationId>,
        /// Typing now, or stopped.
        typing: bool,
    },
    /// Agents: sets their status for every session of theirs ([`crate::agent_status`]).
    SetStatus {
        /// `online`, `away` or `offline`.
        status: crate::agent_status::AgentStatus,
    },
    /// Agents: conversations whose messages, or whose visitor's name or email, match `query`
    /// ([`crate::search`]), most recently updated first, a page at a time.
    SearchConversations {
        /// The text, at most 200 bytes.
        query: String,
        /// Only this site's conversations (default: every site of the agent).
        #[serde(default)]
        site: Option<String>,
        /// Only conversations in this status.
        #[serde(default)]
        status: Option<ConversationStatus>,
        /// The `next_cursor` of the page before.
        #[serde(default)]
        cursor: Option<String>,
        /// Results per page (default 20, at most 50).
        #[serde(default)]
        limit: Option<u32>,
    },
    /// Visitors: an email address to be answered at (offline capture), stored unverified on
    /// the visitor's profile unless the main site verified it; at most
    /// [`MAX_CONTACT_EMAIL_BYTES`](crate::service::MAX_CONTACT_EMAIL_BYTES).
    Contact {
        /// The address the visitor typed.
        email: String,
    },
}

/// Every `type` a client frame may carry.
pub const CLIENT_COMMAND_TYPES: &[&str] = &[
    "send",
    "resume",
    "history",
    "list_conversations",
    "assign",
    "unassign",
    "list_agents",
    "close",
    "auth",
    "context",
    "visitor",
    "read",
    "typing",
    "set_status",
    "search_conversations",
    "contact",
];

/// Why a client frame could not be decoded. Carries the request id when one could be read,
/// so that the error event can still be correlated by the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FrameError {
    /// The request id, if the frame was JSON with a string `id`.
    pub id: Option<String>,
    /// `malformed_json`, `unknown_type` or `invalid_frame`.
    pub code: ErrorCode,
    /// Human-readable reason.
    pub message: String,
}

impl FrameError {
    /// The error event that answers the bad frame.
    pub fn to_event(&self) -> ServerEvent {
        ServerEvent::Error(ErrorEvent {
            id: self.id.clone(),
            code: self.code,
            message: self.message.clone(),
            retry_after_ms: None,
        })
    }
}

/// Decodes one JSON client frame, telling malformed JSON, unknown types and bad fields apart.
pub fn decode_client_frame(text: &str) -> Result<ClientFrame, FrameError> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| FrameError {
        id: None,
        code: ErrorCode::MalformedJson,
        message: format!("frame is not valid JSON: {e}"),
    })?;
    decode_client_value(value)
}

/// Decodes a client frame that is already JSON (transports whose framing parses JSON, such as
/// Socket.IO, build the object from the event name and its argument).
pub fn decode_client_value(mut value: serde_json::Value) -> Result<ClientFrame, FrameError> {
    let object = value.as_object_mut().ok_or_else(|| FrameError {
        id: None,
        code: ErrorCode::InvalidFrame,
        message: "frame must be a JSON object".into(),
    })?;
    let id = match object.remove("id") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) if s.len() <= 128 => Some(s),
        Some(_) => {
            return Err(FrameError {
                id: None,
                code: ErrorCode::InvalidFrame,
                message: "`id` must be a string of at most 128 bytes".into(),
            })
        }
    };
    let type_name = match object.get("type") {
        Some(serde_json::Value::String(t)) => t.clone(),
        _ => {
            return Err(FrameError {
                id,
                code: ErrorCode::InvalidFrame,
                message: "frame has no string `type`".into(),
            })
        }
    };
    if !CLIENT_COMMAND_TYPES.contains(&type_name.as_str()) {
        return Err(FrameError {
            id,
            code: ErrorCode::UnknownType,
            message: format!(
                "unknown frame type `{}`; expected one of {}",
                truncate(&type_name, 40),
                CLIENT_COMMAND_TYPES.join(", ")
            ),
        });
    }
    match serde_json::from_value::<ClientCommand>(value) {
        Ok(command) => Ok(ClientFrame { id, command }),
        Err(e) => Err(FrameError {
            id,
            code: ErrorCode::InvalidFrame,
            message: format!("invalid `{type_name}` frame: {e}"),
        }),
    }
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// The wire boundary: what the gateway tells a client, one JSON object per event whatever the
/// transport (docs/protocol.md). The only event type a client sees.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerEvent {
    /// First event of every session: who you are, and what to resume. (Boxed, as `Ack`: the
    /// two large variants would otherwise make every event, and every future holding one, as
    /// large as the largest answer.)
    Welcome(Box<Welcome>),
    /// A command succeeded.
    Ack(Box<Ack>),
    /// A command or frame failed; the session stays open.
    Error(ErrorEvent),
    /// A committed message in a conversation the session follows.
    Message {
        /// The message.
        message: Message,
    },
    /// A conversation was created or changed (assignee, status, new message).
    Conversation {
        /// Its new state.
        conversation: Conversation,
    },
    /// Visitors: how many agents are online now.
    Presence {
        /// Agents connected for the visitor's site.
        agents_online: u32,
    },
    /// A participant of a conversation the session follows has read it up to `seq`: the
    /// visitor (sent to the site's agents) or an agent (sent to the visitor, and to agents).
    Read {
        /// The conversation.
        conversation_id: ConversationId,
        /// Who read: `visitor` or `agent`.
        role: Role,
        /// Agents' sessions only: which agent read (visitors are told only that an agent did).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        agent_id: Option<crate::model::AgentId>,
        /// Read up to this `seq` (inclusive).
        seq: i64,
    },
    /// Someone started or stopped typing in a conversation the session follows (never stored).
    Typing(crate::typing::Typing),
    /// Agents: a colleague's status changed, or they connected or left.
    AgentStatus(crate::agent_status::AgentStatusView),
}

/// The `welcome` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Welcome {
    /// Visitor or agent.
    pub role: Role,
    /// Identifies this session in logs.
    pub session_id: String,
    /// Visitors: their id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visitor_id: Option<VisitorId>,
    /// Visitors: the token to present next time to resume as the same visitor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visitor_token: Option<String>,
    /// Agents: who the token says they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<Agent>,
    /// Agents: their status, shared by all their sessions (remembered across reconnects).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<crate::agent_status::AgentStatus>,
    /// Agents: the sites they work for (`["*"]`: every site).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sites: Option<Vec<SiteId>>,
    /// Visitors: their open conversation, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation: Option<Conversation>,
    /// Visitors: agents online for their site. Agents: agent sessions online.
    pub agents_online: u32,
    /// Visitors: the transport this visitor should use (`CHAT_WS_ROLLOUT_PERCENT`); a client on
    /// the other one should switch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_transport: Option<crate::rollout::PreferredTransport>,
    /// What uploads are accepted (`CHAT_MAX_UPLOAD_BYTES`, `CHAT_UPLOAD_TYPES`); absent when
    /// uploads are off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uploads: Option<UploadLimits>,
}

/// The `uploads` of the `welcome` event: the bounds a client checks before uploading.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadLimits {
    /// `CHAT_MAX_UPLOAD_BYTES`.
    pub max_bytes: u64,
    /// `CHAT_UPLOAD_TYPES`.
    pub types: Vec<String>,
}

/// The `ack` event: the answer to a successful command. Which fields are present depends on the
/// command (see `docs/protocol.md`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Ack {
    /// The request id of the command.
    #[serde(default)]
    pub id: Option<String>,
    /// `send`: the committed message (the original one on a retry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<Message>,
    /// `send`: true when `client_msg_id` was already stored and nothing new was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate: Option<bool>,
    /// `history`: the page of messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<Message>>,
    /// `history`: true when the page was cut (by `limit` or by bytes) and more messages follow
    /// the last one; ask again with `after_seq` set to its `seq`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub more: Option<bool>,
    /// `auth`: until when (Unix seconds) the session's credentials are now valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// `assign`, `close`: the conversation's new state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation: Option<Conversation>,
    /// `list_conversations`: the conversations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversations: Option<Vec<Conversation>>,
    /// `resume`: how many messages will be replayed as `message` events before live ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replayed: Option<u64>,
    /// `list_conversations`: the asking agent's read state of each listed conversation whose
    /// state is not all zeros (`unread`, `read_seq`, `visitor_read_seq`; absent means 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_state: Option<BTreeMap<ConversationId, crate::read_receipts::ConversationReadState>>,
    /// `read`: the reader's stored position now (at least the `seq` sent, unless clamped to
    /// the conversation's last message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_seq: Option<i64>,
    /// `visitor`: the conversation's visitor and their latest context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visitor: Option<Box<crate::visitor_context::VisitorView>>,
    /// `set_status`: the agent's status now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_status: Option<Box<crate::agent_status::AgentStatusView>>,
    /// `list_agents`: the caller's colleagues (connected, and the site's directory), by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agents: Option<Vec<crate::agent_status::AgentStatusView>>,
    /// `search_conversations`: the page of results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub results: Option<Vec<crate::search::SearchResult>>,
    /// `search_conversations`: present when more results may follow; the next page's `cursor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// The `error` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorEvent {
    /// The request id of the failed command, when known.
    #[serde(default)]
    pub id: Option<String>,
    /// Machine-readable reason.
    pub code: ErrorCode,
    /// Human-readable reason.
    pub message: String,
    /// `rate_limited`: milliseconds until the command will be accepted again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl ServerEvent {
    /// Serializes the event as one JSON text frame.
    pub fn to_json(&self) -> String {
        // Serializing these types cannot fail: all map keys are strings.
        serde_json::to_string(self).unwrap_or_else(|_| {
            String::from(r#"{"type":"error","code":"internal","message":"serialization failed"}"#)
        })
    }

    /// The `type` name of the event, as on the wire.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Welcome(_) => "welcome",
            Self::Ack(_) => "ack",
            Self::Error(_) => "error",
            Self::Message { .. } => "message",
            Self::Conversation { .. } => "conversation",
            Self::Presence { .. } => "presence",
            Self::Read { .. } => "read",
            Self::Typing(_) => "typing",
            Self::AgentStatus(_) => "agent_status",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_send_with_and_without_conversation() {
        let f = decode_client_frame(r#"{"type":"send","id":"a","client_msg_id":"c1","body":"hi"}"#)
            .unwrap();
        assert_eq!(
            f.command,
            ClientCommand::Send {
                attachment_id: None,
                conversation_id: None,
                client_msg_id: Some("c1".into()),
                body: "hi".into(),
                note: false,
            }
        );
        let id = ConversationId::new_random();
        let f = decode_client_frame(&format!(
            r#"{{"type":"send","conversation_id":"{id}","body":"x"}}"#
        ))
        .unwrap();
        assert!(
            matches!(f.command, ClientCommand::Send { conversation_id: Some(c), .. } if c == id)
        );
    }

    #[test]
    fn tells_malformed_unknown_and_invalid_apart() {
        assert_eq!(
            decode_client_frame("{nope").unwrap_err().code,
            ErrorCode::MalformedJson
        );
        let e = decode_client_frame(r#"{"type":"dance","id":"r9"}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::UnknownType);
        assert_eq!(e.id.as_deref(), Some("r9"));
        let e = decode_client_frame(r#"{"type":"send","id":"r2"}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidFrame);
        assert_eq!(e.id.as_deref(), Some("r2"));
        assert_eq!(
            decode_client_frame("[1,2]").unwrap_err().code,
            ErrorCode::InvalidFrame
        );
        assert_eq!(
            decode_client_frame(r#"{"id":"x"}"#).unwrap_err().code,
            ErrorCode::InvalidFrame
        );
        let e = decode_client_frame(r#"{"type":"send","body":"x","extra":1}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidFrame);
    }

    #[test]
    fn decodes_notes_and_assignment_to_another_agent() {
        let id = ConversationId::new_random();
        let f = decode_client_frame(&format!(
            r#"{{"type":"send","conversation_id":"{id}","body":"x","note":true}}"#
        ))
        .unwrap();
        assert!(matches!(f.command, ClientCommand::Send { note: true, .. }));
        let f = decode_client_frame(&format!(
            r#"{{"type":"assign","conversation_id":"{id}","agent_id":"bob"}}"#
        ))
        .unwrap();
        assert!(matches!(f.command, ClientCommand::Assign { agent_id: Some(a), .. } if a == "bob"));
        let f = decode_client_frame(&format!(r#"{{"type":"assign","conversation_id":"{id}"}}"#))
            .unwrap();
        assert!(matches!(
            f.command,
            ClientCommand::Assign { agent_id: None, .. }
        ));
        let f = decode_client_frame(&format!(
            r#"{{"type":"unassign","conversation_id":"{id}"}}"#
        ))
        .unwrap();
        assert!(matches!(f.command, ClientCommand::Unassign { .. }));
        let f = decode_client_frame(r#"{"type":"list_agents","site":"shop"}"#).unwrap();
        assert!(matches!(f.command, ClientCommand::ListAgents { site: Some(s) } if s == "shop"));
    }

    #[test]
    fn resume_cursors_are_keyed_by_conversation() {
        let id = ConversationId::new_random();
        let f =
            decode_client_frame(&format!(r#"{{"type":"resume","cursors":{{"{id}":7}}}}"#)).unwrap();
        match f.command {
            ClientCommand::Resume { cursors, .. } => assert_eq!(cursors.get(&id), Some(&7)),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn ack_round_trips_with_flattened_fields() {
        let ev = ServerEvent::Ack(Box::new(Ack {
            id: Some("r1".into()),
            replayed: Some(3),
            ..Ack::default()
        }));
        let json = ev.to_json();
        assert_eq!(json, r#"{"type":"ack","id":"r1","replayed":3}"#);
        let back: ServerEvent = serde_json::from_str(&json).unwrap();
        assert_eq!(back, ev);
    }
}
