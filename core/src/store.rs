//! The [`Store`] trait: what the chat needs from a database. Implementations live in the
//! `chat-storage` crate (Postgres and the embedded default); both pass one conformance suite.

use crate::error::StoreError;
use crate::model::{
    Agent, Conversation, ConversationId, ConversationStatus, Message, NewMessage, Sender, SiteId,
    Visitor, VisitorId,
};
use crate::visitor_context::VisitorContextRecord;
use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// Result of [`Store::append_message`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Appended {
    /// The message was committed with a new sequence number.
    Inserted(Message),
    /// A message with the same `client_msg_id` already exists in the conversation; this is it.
    Duplicate(Message),
}

impl Appended {
    /// The committed message, new or original.
    pub fn message(&self) -> &Message {
        match self {
            Self::Inserted(m) | Self::Duplicate(m) => m,
        }
    }
}

/// One message of a chat history brought from another system (`chat-gateway import`), with
/// the ids it maps to already chosen by the importer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedMessage {
    /// The site of the conversation and the visitor.
    pub site_id: SiteId,
    /// The conversation; created (with `visitor_id`, `status`) when it does not exist yet.
    pub conversation_id: ConversationId,
    /// The visitor who started the conversation; created when missing.
    pub visitor_id: VisitorId,
    /// The status a conversation created by the import gets; an existing one keeps its own.
    pub status: ConversationStatus,
    /// The idempotency key: a message with this key already in the conversation is not written
    /// again.
    pub client_msg_id: String,
    /// Who wrote it.
    pub sender: Sender,
    /// The text.
    pub body: String,
    /// The original time, kept (at microsecond precision).
    pub created_at: DateTime<Utc>,
}

/// What [`Store::import_messages`] did with one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Imported {
    /// Written with the conversation's next sequence number; `conversation_created` when this
    /// message created its conversation.
    Inserted {
        /// The committed message.
        message: Message,
        /// Whether the conversation was created for it.
        conversation_created: bool,
    },
    /// Its `client_msg_id` was already in the conversation; this is the stored one.
    Existing(Message),
    /// Not written, with the reason: it is older than the conversation's newest message (the
    /// sequence would contradict the timestamps), or its conversation or visitor exists with
    /// another visitor or site.
    Refused(String),
}

/// Which conversations [`Store::list_conversations`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationFilter {
    /// Only these sites' (`None`: every site's).
    pub sites: Option<Vec<SiteId>>,
    /// Only in this status, when set.
    pub status: Option<ConversationStatus>,
    /// At most this many, most recently updated first.
    pub limit: u32,
}

/// Durable storage of visitors, conversations and messages.
///
/// Every method that returns `Ok` has committed what it wrote: the chat service acknowledges a
/// message to its sender and fans it out only after [`Store::append_message`] returns.
///
/// ```no_run
/// # use chat_core::store::Store;
/// # async fn demo(store: &dyn Store) -> Result<(), chat_core::StoreError> {
/// store.health().await?;
/// # Ok(()) }
/// ```
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// A short name for logs and `/chat/health`: `postgres` or `embedded`.
    fn kind(&self) -> &'static str;

    /// Succeeds when the store can serve queries right now.
    async fn health(&self) -> Result<(), StoreError>;

    /// Stores a visitor if no visitor with that id exists yet; returns the stored visitor.
    /// When the visitor exists and `visitor.profile` is set, the stored profile becomes that
    /// one, except that a verified profile is never replaced by an unverified one.
    async fn ensure_visitor(&self, visitor: &Visitor) -> Result<Visitor, StoreError>;

    /// Reads one visitor.
    async fn visitor(&self, id: VisitorId) -> Result<Option<Visitor>, StoreError>;

    /// Gives conversation `id` to visitor `to` (an anonymous visitor who logs in keeps their
    /// open conversation); returns it as it is now. `to` must exist, on the same site.
    async fn move_conversation(
        &self,
        id: ConversationId,
        to: VisitorId,
    ) -> Result<Conversation, StoreError>;

    /// Creates an open conversation for a visitor.
    async fn create_conversation(
        &self,
        site_id: &str,
        visitor_id: VisitorId,
    ) -> Result<Conversation, StoreError>;

    /// Reads one conversation.
    async fn conversation(&self, id: ConversationId) -> Result<Option<Conversation>, StoreError>;

    /// The visitor's most recently updated open conversation on the site, if any.
    async fn open_conversation_of(
        &self,
        site_id: &str,
        visitor_id: VisitorId,
    ) -> Result<Option<Conversation>, StoreError>;

    /// Conversations matching the filter, most recently updated first.
    async fn list_conversations(
        &self,
        filter: &ConversationFilter,
    ) -> Result<Vec<Conversation>, StoreError>;

    /// Sets or clears the assignee. [`StoreError::NotFound`] when the conversation does not exist.
    async fn assign(
        &self,
        id: ConversationId,
        assignee: Option<&Agent>,
    ) -> Result<Conversation, StoreError>;

    /// Sets the status. [`StoreError::NotFound`] when the conversation does not exist.
    async fn set_status(
        &self,
        id: ConversationId,
        status: ConversationStatus,
    ) -> Result<Conversation, StoreError>;

    /// Sets or clears the conversation's `waiting` mark (offline capture: the visitor wrote
    /// while no agent of the site was online), and its `updated_at`.
    /// [`StoreError::NotFound`] when the conversation does not exist.
    async fn set_waiting(
        &self,
        id: ConversationId,
        waiting: bool,
    ) -> Result<Conversation, StoreError>;

    /// Appends a message with the next sequence number of its conversation, atomically with
    /// the conversation's `last_seq` and `updated_at`. When `client_msg_id` is already present
    /// in the conversation, writes nothing and returns the original as [`Appended::Duplicate`].
    /// [`StoreError::NotFound`] when the conversation does not exist.
    async fn append_message(&self, message: NewMessage) -> Result<Appended, StoreError>;

    /// Messages with `seq > after_seq`, in order, at most `limit`.
    async fn messages_after(
        &self,
        conversation_id: ConversationId,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<Message>, StoreError>;

    /// Imports messages in order, in one transaction: each gets the next sequence number of
    /// its conversation (so a file sorted by time per conversation numbers them in time order,
    /// and live chat continues after them) and keeps its `created_at`; conversations and
    /// visitors are created as needed; a `client_msg_id` already present is
    /// [`Imported::Existing`] and writes nothing, so importing the same messages twice leaves
    /// the same rows. Stops at the first [`Imported::Refused`]: the answer then has fewer
    /// entries than `messages`, the refused one last, and nothing after it was attempted.
    async fn import_messages(
        &self,
        messages: &[ImportedMessage],
    ) -> Result<Vec<Imported>, StoreError> {
        let _ = messages;
        Err(StoreError::Other(format!(
            "the {} store cannot import messages",
            self.kind()
        )))
    }

    /// Stores `record` as the visitor's latest context (replacing the previous one, keeping the
    /// earlier `first_seen_at`) when the visitor exists; returns whether it was stored. A visitor
    /// without a row (one who never wrote) gets nothing stored: connecting alone writes nothing.
    async fn put_visitor_context(&self, record: &VisitorContextRecord) -> Result<bool, StoreError>;

    /// The visitor's latest context, if one was stored.
    async fn visitor_context(
        &self,
        visitor_id: VisitorId,
    ) -> Result<Option<VisitorContextRecord>, StoreError>;

    /// Conversations with status `open`, for the `chat_conversations_open` gauge; `None` when
    /// the store cannot count them cheaply.
    async fn open_conversation_count(&self) -> Result<Option<u64>, StoreError> {
        Ok(None)
    }

    /// The connection pool now, for the `chat_store_pool_connections` gauge; `None` for stores
    /// without a pool.
    fn pool_status(&self) -> Option<PoolStatus> {
        None
    }
}

/// A store's connection pool at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStatus {
    /// Connections that exist now.
    pub open: usize,
    /// Of those, connections idle and available now.
    pub idle: usize,
    /// The most connections the pool opens.
    pub max: usize,
}
