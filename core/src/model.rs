//! The chat's nouns: sites, visitors, agents, conversations and messages.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

/// Identifies one website served by the gateway. Most installations have one, `default`.
pub type SiteId = String;

/// Longest site id, in bytes.
pub const MAX_SITE_ID_BYTES: usize = 64;

/// Whether `site` is a valid site id: 1..=64 of `[A-Za-z0-9_-]`.
pub fn is_valid_site_id(site: &str) -> bool {
    !site.is_empty()
        && site.len() <= MAX_SITE_ID_BYTES
        && site
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The sites an agent works for (issue 13): every conversation, command, list, presence
/// count and statistic an agent sees is limited to them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Sites {
    /// Every site (the default for agents whose token names none: single-site deployments).
    #[default]
    All,
    /// Only these (never empty, sorted, no duplicates).
    Only(std::sync::Arc<[SiteId]>),
}

impl Sites {
    /// Only `sites` (sorted and deduplicated); `None` when the list is empty.
    pub fn only(sites: impl IntoIterator<Item = SiteId>) -> Option<Self> {
        let mut list: Vec<SiteId> = sites.into_iter().collect();
        list.sort_unstable();
        list.dedup();
        (!list.is_empty()).then(|| Self::Only(list.into()))
    }

    /// Parses `*` (every site) or a comma- or `|`-separated list of site ids.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text == "*" {
            return Ok(Self::All);
        }
        let mut list = Vec::new();
        for site in text.split([',', '|']).map(str::trim) {
            if !is_valid_site_id(site) {
                return Err(format!(
                    "`{}` is not a site id (1..=64 of [A-Za-z0-9_-]) or `*`",
                    site.chars().take(70).collect::<String>()
                ));
            }
            list.push(site.to_owned());
        }
        Self::only(list).ok_or_else(|| "no site listed".to_string())
    }

    /// Whether `site` is one of them.
    pub fn contains(&self, site: &str) -> bool {
        match self {
            Self::All => true,
            Self::Only(list) => list.binary_search_by(|s| s.as_str().cmp(site)).is_ok(),
        }
    }

    /// The list, or `None` for every site.
    pub fn list(&self) -> Option<&[SiteId]> {
        match self {
            Self::All => None,
            Self::Only(list) => Some(list),
        }
    }

    /// As the JWT's `sites` claim and the `welcome` event write them: the list, or `["*"]`.
    pub fn to_claim(&self) -> Vec<SiteId> {
        self.list()
            .map_or_else(|| vec!["*".to_owned()], <[SiteId]>::to_vec)
    }
}

impl fmt::Display for Sites {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::All => f.write_str("*"),
            Self::Only(list) => f.write_str(&list.join(",")),
        }
    }
}

/// Identifies an agent; taken from the `sub` claim of the agent's JWT.
pub type AgentId = String;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh random id.
            pub fn new_random() -> Self {
                Self(Uuid::new_v4())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

uuid_id!(
    /// Identifies a website visitor. Minted by the gateway on first contact.
    VisitorId
);
uuid_id!(
    /// Identifies a conversation between one visitor and the site's agents.
    ConversationId
);

/// A website visitor as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Visitor {
    /// The visitor's id.
    pub id: VisitorId,
    /// The site the visitor belongs to.
    pub site_id: SiteId,
    /// When the gateway first saw the visitor.
    pub created_at: DateTime<Utc>,
    /// Who the main site says the visitor is (`ChatWidgetConfig.user`), if it said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<VisitorProfile>,
}

/// Who a visitor is, as far as the main site said: shown to agents beside the conversation.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct VisitorProfile {
    /// The main site's user id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Email address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Whether the main site vouched for it with a valid `hash`.
    pub verified: bool,
}

/// An agent, as asserted by a verified JWT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agent {
    /// The `sub` claim.
    pub id: AgentId,
    /// The `name` claim, shown to visitors next to the agent's replies.
    pub name: String,
}

/// Whether a conversation still expects replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConversationStatus {
    /// Waiting for, or in, a chat.
    Open,
    /// Finished; a visitor writing again opens a new conversation.
    Closed,
}

impl ConversationStatus {
    /// The name used on the wire and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Closed => "closed",
        }
    }

    /// Parses the name used on the wire and in the database.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "open" => Some(Self::Open),
            "closed" => Some(Self::Closed),
            _ => None,
        }
    }
}

/// A conversation as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    /// The conversation's id.
    pub id: ConversationId,
    /// The site it belongs to.
    pub site_id: SiteId,
    /// The visitor who started it.
    pub visitor_id: VisitorId,
    /// Open or closed.
    pub status: ConversationStatus,
    /// The agent it is assigned to, if any.
    pub assignee: Option<Agent>,
    /// Sequence number of the newest message; 0 when there is none.
    pub last_seq: i64,
    /// Agents only: the `seq` of the newest message visitors see, when internal notes follow it
    /// (absent: the same as `last_seq`). A visitor's copy never has it: its `last_seq` is this
    /// (see [`crate::visibility`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visitor_last_seq: Option<i64>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed (message, assignment, status).
    pub updated_at: DateTime<Utc>,
    /// The visitor wrote while no agent of the site was online, and no agent has replied or
    /// taken it since (offline capture, issue 15). Absent on the wire when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub waiting: bool,
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A website visitor.
    Visitor,
    /// A support agent.
    Agent,
}

impl Role {
    /// The name used on the wire, in the database and in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Visitor => "visitor",
            Self::Agent => "agent",
        }
    }

    /// Parses the name used on the wire and in the database.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "visitor" => Some(Self::Visitor),
            "agent" => Some(Self::Agent),
            _ => None,
        }
    }
}

/// The author of a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sender {
    /// Visitor or agent.
    pub role: Role,
    /// The visitor id or the agent id.
    pub id: String,
    /// Display name (agents only; visitors are anonymous).
    pub name: Option<String>,
}

/// What a message is: text between the visitor and agents, an agents-only note, or a line the
/// gateway writes about the conversation (a transfer).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    /// A message of the chat, seen by the visitor and the agents.
    #[default]
    Text,
    /// An internal note: agents only, never sent to a visitor on any path
    /// ([`crate::visibility`]).
    Note,
    /// Written by the gateway about the conversation ("Alice transferred the conversation to
    /// Bob"); seen by the visitor and the agents.
    System,
}

impl MessageKind {
    /// The name used on the wire and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Note => "note",
            Self::System => "system",
        }
    }

    /// Parses the name used on the wire and in the database.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "text" => Some(Self::Text),
            "note" => Some(Self::Note),
            "system" => Some(Self::System),
            _ => None,
        }
    }

    /// Whether it is [`MessageKind::Text`] (left out of a message's JSON).
    pub fn is_text(&self) -> bool {
        *self == Self::Text
    }
}

/// The image types shown inline (`<img>`) by the widget and the console; every other type is
/// served as a download.
pub const INLINE_IMAGE_TYPES: [&str; 4] = ["image/png", "image/jpeg", "image/gif", "image/webp"];

/// What a message carries of its attachment (`message.attachment` on the wire): enough to show
/// it; the bytes are at `GET /chat/api/attachments/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentRef {
    /// The attachment's id.
    pub id: Uuid,
    /// The file name the uploader gave (cut to `crate::attachment::MAX_NAME_CHARS`, never a path).
    pub name: String,
    /// Its content type, one of `CHAT_UPLOAD_TYPES`.
    pub content_type: String,
    /// Its size in bytes.
    pub size: u64,
}

impl AttachmentRef {
    /// Whether the widget and the console show it inline.
    pub fn is_inline_image(&self) -> bool {
        INLINE_IMAGE_TYPES.contains(&self.content_type.as_str())
    }
}

/// A message as stored: immutable once committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// The conversation it belongs to.
    pub conversation_id: ConversationId,
    /// Position in the conversation, 1, 2, 3… with no gaps (in a visitor's view, internal
    /// notes leave holes: see [`crate::visibility`]).
    pub seq: i64,
    /// Text (absent on the wire), note or system.
    #[serde(default, skip_serializing_if = "MessageKind::is_text")]
    pub kind: MessageKind,
    /// The sender's own id for the message, which makes retries idempotent.
    pub client_msg_id: Option<String>,
    /// Who wrote it.
    pub sender: Sender,
    /// The text, never interpreted as HTML (may be empty when an attachment is carried).
    pub body: String,
    /// The file or image sent with the text, if any (absent on the wire when none). Boxed:
    /// most messages have none, and every queued message pays for the field's size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment: Option<Box<AttachmentRef>>,
    /// When the store committed it.
    pub created_at: DateTime<Utc>,
}

/// A message to append; the store assigns `seq` and `created_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// The conversation to append to.
    pub conversation_id: ConversationId,
    /// Idempotency key chosen by the sender.
    pub client_msg_id: Option<String>,
    /// Who wrote it.
    pub sender: Sender,
    /// The text.
    pub body: String,
    /// Text, note or system.
    pub kind: MessageKind,
    /// The attachment it carries, if any.
    pub attachment: Option<Box<AttachmentRef>>,
}

/// Who is on the other end of a session, after authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A visitor of `site_id`, proven by a gateway-signed visitor token.
    Visitor {
        /// The visitor's id.
        visitor_id: VisitorId,
        /// The site the visitor is on.
        site_id: SiteId,
    },
    /// An agent, proven by a JWT signed with `CHAT_ADMIN_JWT_SECRET` (or an API key).
    Agent {
        /// Who.
        agent: Agent,
        /// The sites the agent works for.
        sites: Sites,
    },
}

impl Principal {
    /// Visitor or agent.
    pub fn role(&self) -> Role {
        match self {
            Self::Visitor { .. } => Role::Visitor,
            Self::Agent { .. } => Role::Agent,
        }
    }

    /// The sender identity this principal writes messages as.
    pub fn as_sender(&self) -> Sender {
        match self {
            Self::Visitor { visitor_id, .. } => Sender {
                role: Role::Visitor,
                id: visitor_id.to_string(),
                name: None,
            },
            Self::Agent { agent, .. } => Sender {
                role: Role::Agent,
                id: agent.id.clone(),
                name: Some(agent.name.clone()),
            },
        }
    }
}
