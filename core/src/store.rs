//! The [`Store`] trait: what the chat needs from a database. Implementations live in the
//! `chat-storage` crate (Postgres and the embedded default); both pass one conformance suite.

use crate::agents::AgentRecord;
use crate::attachment::{Attachment, StoredAttachment};
use crate::canned::{CannedFields, CannedResponse, CannedWrite};
use crate::error::StoreError;
use crate::model::{
    Agent, Conversation, ConversationId, ConversationStatus, Message, NewMessage, Sender, SiteId,
    Visitor, VisitorId,
};
use crate::read_receipts::{AgentListing, MarkedRead, ReadMarks, Reader};
use crate::search::{SearchQuery, StoredHit};
use crate::visitor_context::VisitorContextRecord;
use crate::webhook::{OutboxDepth, WebhookEvent};
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
    /// the conversation's `last_seq`, `visitor_last_seq` (left as the `last_seq` before a note,
    /// cleared by any other message) and `updated_at`. When `client_msg_id` is already present
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

    /// Messages visitors see ([`crate::visibility`]: every kind but notes) with
    /// `seq > after_seq`, in order, at most `limit`.
    async fn visitor_messages_after(
        &self,
        conversation_id: ConversationId,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<Message>, StoreError>;

    /// How many messages visitors see have `after_seq < seq <= upto_seq`.
    async fn visitor_message_count(
        &self,
        conversation_id: ConversationId,
        after_seq: i64,
        upto_seq: i64,
    ) -> Result<u64, StoreError>;

    /// Writes `agent` into the agent directory, replacing what it held for that id.
    async fn record_agent(&self, agent: &AgentRecord) -> Result<(), StoreError>;

    /// One agent of the directory.
    async fn agent(&self, id: &str) -> Result<Option<AgentRecord>, StoreError>;

    /// The agents of the directory who work for `site` (their sites list it, or are every
    /// site), by name then id, at most `limit`.
    async fn agents_of_site(&self, site: &str, limit: u32) -> Result<Vec<AgentRecord>, StoreError>;

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

    /// Moves `reader`'s last read `seq` of conversation `id` forward to `seq`, clamped to the
    /// conversation's `last_seq`; never backwards (a smaller `seq` changes nothing). Returns the
    /// stored position and whether this call moved it. [`StoreError::NotFound`] when the
    /// conversation does not exist.
    async fn mark_read(
        &self,
        id: ConversationId,
        reader: &Reader,
        seq: i64,
    ) -> Result<MarkedRead, StoreError>;

    /// How far the participants of each of `ids` have read (one query; conversations without
    /// any read position, or that do not exist, are left out).
    async fn read_marks(&self, ids: &[ConversationId]) -> Result<Vec<ReadMarks>, StoreError>;

    /// [`Store::list_conversations`] as agent `agent_id` sees it: each conversation with the
    /// agent's unread count (messages from the visitor after the agent's last read `seq`, at
    /// most [`UNREAD_CAP`](crate::read_receipts::UNREAD_CAP)), its read position and the
    /// visitor's. One query, whatever the number of conversations.
    async fn list_conversations_for_agent(
        &self,
        filter: &ConversationFilter,
        agent_id: &str,
    ) -> Result<Vec<AgentListing>, StoreError>;
    /// The canned responses of `site_id`, by shortcut.
    async fn canned_responses(&self, site_id: &str) -> Result<Vec<CannedResponse>, StoreError> {
        let _ = site_id;
        Err(self.lacks("canned responses"))
    }

    /// One canned response.
    async fn canned_response(&self, id: uuid::Uuid) -> Result<Option<CannedResponse>, StoreError> {
        let _ = id;
        Err(self.lacks("canned responses"))
    }

    /// Creates a canned response of `site_id`, unless the site holds `max_per_site` already
    /// ([`CannedWrite::LimitReached`]) or one with the same shortcut
    /// ([`CannedWrite::ShortcutTaken`]); the count and the insert are one atomic step.
    async fn create_canned_response(
        &self,
        site_id: &str,
        fields: &CannedFields,
        max_per_site: u32,
    ) -> Result<CannedWrite, StoreError> {
        let _ = (site_id, fields, max_per_site);
        Err(self.lacks("canned responses"))
    }

    /// Replaces a canned response's fields (its site stays). [`StoreError::NotFound`] when it
    /// does not exist; [`CannedWrite::ShortcutTaken`] when another of its site has the shortcut.
    async fn update_canned_response(
        &self,
        id: uuid::Uuid,
        fields: &CannedFields,
    ) -> Result<CannedWrite, StoreError> {
        let _ = (id, fields);
        Err(self.lacks("canned responses"))
    }

    /// Deletes a canned response; returns whether it existed.
    async fn delete_canned_response(&self, id: uuid::Uuid) -> Result<bool, StoreError> {
        let _ = id;
        Err(self.lacks("canned responses"))
    }

    /// Conversations matching `query` ([`crate::search`] says what matches), most recently
    /// updated first (then by id, descending), each with its newest matching message.
    async fn search_conversations(
        &self,
        query: &SearchQuery,
    ) -> Result<Vec<StoredHit>, StoreError> {
        let _ = query;
        Err(self.lacks("search"))
    }

    /// Stores an attachment's metadata and, unless they are kept in `CHAT_UPLOAD_DIR`
    /// (`content` is `None`), its bytes. Ids are random; storing an id twice is an error.
    async fn put_attachment(
        &self,
        attachment: &Attachment,
        content: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        let _ = (attachment, content);
        Err(self.lacks("attachments"))
    }

    /// An attachment, with its bytes when the store holds them.
    async fn attachment(&self, id: uuid::Uuid) -> Result<Option<StoredAttachment>, StoreError> {
        let _ = id;
        Err(self.lacks("attachments"))
    }

    /// Records that a message of `conversation_id` carries attachment `id`: its conversation
    /// becomes `conversation_id` when it had none, and it becomes visible to the visitor when
    /// `visible_to_visitor` (never the other way back). Returns the attachment as it is now,
    /// or `None` when it does not exist or belongs to another conversation (then nothing
    /// changes). One atomic step.
    async fn bind_attachment(
        &self,
        id: uuid::Uuid,
        conversation_id: ConversationId,
        visible_to_visitor: bool,
    ) -> Result<Option<Attachment>, StoreError> {
        let _ = (id, conversation_id, visible_to_visitor);
        Err(self.lacks("attachments"))
    }

    /// Deletes up to `limit` attachments that no message carries (never bound by
    /// [`Store::bind_attachment`]) and that were uploaded before `uploaded_before`; returns
    /// their ids, so that bytes kept outside the store can go too.
    async fn delete_unsent_attachments(
        &self,
        uploaded_before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<uuid::Uuid>, StoreError> {
        let _ = (uploaded_before, limit);
        Err(self.lacks("attachments"))
    }

    /// The error of a feature this store does not have.
    fn lacks(&self, what: &str) -> StoreError {
        StoreError::Other(format!("the {} store has no {what}", self.kind()))
    }

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

    /// Claims up to `limit` due webhook events (pending, their next attempt due), oldest
    /// first, for one delivery attempt each: each gets its `attempts` raised by one and its
    /// next attempt moved `lease` ahead, so no other worker (of this process or another) claims
    /// it while this one delivers; if this process dies, the event is due again once the lease
    /// ends. Concurrent claims never return the same event. See [`crate::webhook`].
    async fn claim_webhook_events(
        &self,
        limit: u32,
        lease: std::time::Duration,
    ) -> Result<Vec<WebhookEvent>, StoreError> {
        let _ = (limit, lease);
        Ok(Vec::new())
    }

    /// Ends a delivered event's life: it leaves the outbox.
    async fn webhook_event_delivered(&self, id: uuid::Uuid) -> Result<(), StoreError> {
        let _ = id;
        Ok(())
    }

    /// Records a failed attempt of the event claimed with `attempts`: with `retry_in`, it is
    /// due again that long from now; without, it is dead (kept, never retried). Does nothing
    /// when the event was delivered or claimed again since (its lease ended), so a slow worker
    /// cannot undo another's progress. `error` is kept (bounded) for inspection.
    async fn webhook_event_failed(
        &self,
        id: uuid::Uuid,
        attempts: u32,
        retry_in: Option<std::time::Duration>,
        error: &str,
    ) -> Result<(), StoreError> {
        let _ = (id, attempts, retry_in, error);
        Ok(())
    }

    /// Rows in the webhook outbox, by state.
    async fn webhook_outbox_depth(&self) -> Result<OutboxDepth, StoreError> {
        Ok(OutboxDepth::default())
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
