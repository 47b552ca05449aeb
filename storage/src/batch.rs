//! Group commit: [`BatchingStore`] lets many concurrent `append_message` calls share one
//! transaction, so that message throughput grows with concurrency instead of being capped by
//! the latency of one commit.
//!
//! Each call still returns only after *its* message is committed (docs/promises.md, promise 1:
//! persisted before acknowledged). A writer task
//! takes the first queued append, then everything else already queued (up to
//! [`BatchSettings::max_batch`]), and commits them together; appends that arrive while a batch
//! commits form the next one, which another writer commits beside it only once it holds
//! [`BATCH_ALONGSIDE_A_COMMIT`] appends, and otherwise when the first commit ends (`writers.rs`).
//! A lone sender therefore waits for one commit, as without batching, while 256 concurrent
//! senders share a handful of commits.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chat_core::agents::AgentRecord;
use chat_core::attachment::{Attachment, StoredAttachment};
use chat_core::canned::{CannedFields, CannedResponse, CannedWrite};
use chat_core::model::{
    Agent, Conversation, ConversationId, ConversationStatus, Message, NewMessage, Visitor,
    VisitorId,
};
use chat_core::read_receipts::{AgentListing, MarkedRead, ReadMarks, Reader};
use chat_core::search::{SearchQuery, StoredHit};
use chat_core::store::{
    Appended, ConversationFilter, Imported, ImportedMessage, PoolStatus, Store,
};
use chat_core::visitor_context::VisitorContextRecord;
use chat_core::webhook::{OutboxDepth, WebhookEvent};
use chat_core::StoreError;
use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

mod writers;

pub use writers::BATCH_ALONGSIDE_A_COMMIT;
use writers::{PendingAppend, Writers};

/// A store that can commit several appends in one transaction.
///
/// `append_batch` returns one result per message, in the order given. An `Ok` result means
/// the message is committed; a message that fails (say, its conversation does not exist) must
/// not make the others fail, except when the whole commit fails.
#[async_trait]
pub trait AppendBatch: Store {
    /// Appends `batch` in as few transactions as possible (ideally one).
    async fn append_batch(&self, batch: Vec<NewMessage>) -> Vec<Result<Appended, StoreError>>;
}

/// How [`BatchingStore`] batches (`CHAT_DB_WRITE_BATCH`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSettings {
    /// Most messages in one commit. 1 turns batching off: every message is its own commit.
    pub max_batch: usize,
    /// Writer tasks committing batches concurrently (each holds one connection while it
    /// commits).
    pub writers: usize,
}

impl BatchSettings {
    /// Most messages the writers can commit at once, and so publish to sessions in one burst:
    /// a whole batch from each writer.
    pub fn largest_burst(&self) -> usize {
        self.max_batch.saturating_mul(self.writers.max(1))
    }
}

impl Default for BatchSettings {
    fn default() -> Self {
        Self {
            max_batch: 256,
            writers: 2,
        }
    }
}

/// Wraps a store so that `append_message` goes through batching writer tasks; every other
/// method goes straight to the inner store.
///
/// ```no_run
/// # async fn demo() -> Result<(), chat_storage::StorageError> {
/// use chat_storage::batch::{BatchSettings, BatchingStore};
/// use chat_storage::EmbeddedStore;
/// let store = BatchingStore::spawn(EmbeddedStore::open("/tmp/chat.db")?, BatchSettings::default());
/// # Ok(()) }
/// ```
pub struct BatchingStore<S> {
    inner: Arc<S>,
    queue: mpsc::Sender<PendingAppend>,
}

impl<S: AppendBatch> BatchingStore<S> {
    /// Starts the writer tasks on the current Tokio runtime. They stop when the store is
    /// dropped, after committing what was queued.
    pub fn spawn(inner: S, settings: BatchSettings) -> Self {
        let inner = Arc::new(inner);
        let max_batch = settings.max_batch.max(1);
        // Bounded, so a store slower than the senders pushes back on them instead of queueing
        // without limit.
        let (queue, rx) = mpsc::channel(max_batch * settings.writers.max(1) * 4);
        let writers = Arc::new(Writers::new(rx, max_batch));
        for _ in 0..settings.writers.max(1) {
            tokio::spawn(write_batches(inner.clone(), writers.clone()));
        }
        Self { inner, queue }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

async fn write_batches<S: AppendBatch>(store: Arc<S>, writers: Arc<Writers>) {
    while let Some((batch, committing)) = writers.next_batch().await {
        let (messages, replies): (Vec<_>, Vec<_>) =
            batch.into_iter().map(|p| (p.message, p.reply)).unzip();
        let size = messages.len();
        let started = Instant::now();
        let results = store.append_batch(messages).await;
        if results
            .iter()
            .any(|r| matches!(r, Ok(Appended::Inserted(_))))
        {
            chat_core::metrics::observe_store_commit(store.kind(), size, started.elapsed());
        }
        tracing::trace!(
            size,
            elapsed_us = started.elapsed().as_micros() as u64,
            "committed a batch of appends"
        );
        drop(committing);
        for (reply, result) in replies.into_iter().zip(results) {
            // The caller may have gone away (its connection closed); the message is committed
            // or not regardless, and its retry will find it.
            let _ = reply.send(result);
        }
    }
}

/// Writes the [`Store`] impl of [`BatchingStore`]: the methods given in full between the
/// braces, then, for each signature listed after them, a method that calls the inner store's
/// method of the same name. A trait method with a default body that is in neither would use
/// that default instead of the inner store's: every `Store` method is to be in one of the two.
macro_rules! impl_store_forwarding_to_inner {
    (
        { $($own:tt)* }
        $(async fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)*
    ) => {
        #[async_trait]
        impl<S: AppendBatch> Store for BatchingStore<S> {
            $($own)*

            $(
                async fn $name(&self $(, $arg: $ty)*) -> $ret {
                    self.inner.$name($($arg),*).await
                }
            )*
        }
    };
}

impl_store_forwarding_to_inner! {
    {
        fn kind(&self) -> &'static str {
            self.inner.kind()
        }

        fn pool_status(&self) -> Option<PoolStatus> {
            self.inner.pool_status()
        }

        async fn append_message(&self, message: NewMessage) -> Result<Appended, StoreError> {
            let (reply, answer) = oneshot::channel();
            self.queue
                .send(PendingAppend { message, reply })
                .await
                .map_err(|_| StoreError::Unavailable("the store's writer has stopped".into()))?;
            answer.await.map_err(|_| {
                StoreError::Unavailable(
                    "the store's writer stopped before answering; retry with the same client_msg_id"
                        .into(),
                )
            })?
        }
    }

    async fn health(&self) -> Result<(), StoreError>;
    async fn ensure_visitor(&self, visitor: &Visitor) -> Result<Visitor, StoreError>;
    async fn visitor(&self, id: VisitorId) -> Result<Option<Visitor>, StoreError>;
    async fn move_conversation(&self, id: ConversationId, to: VisitorId)
        -> Result<Conversation, StoreError>;
    async fn create_conversation(&self, site_id: &str, visitor_id: VisitorId)
        -> Result<Conversation, StoreError>;
    async fn conversation(&self, id: ConversationId) -> Result<Option<Conversation>, StoreError>;
    async fn open_conversation_of(&self, site_id: &str, visitor_id: VisitorId)
        -> Result<Option<Conversation>, StoreError>;
    async fn list_conversations(&self, filter: &ConversationFilter)
        -> Result<Vec<Conversation>, StoreError>;
    async fn assign(&self, id: ConversationId, assignee: Option<&Agent>)
        -> Result<Conversation, StoreError>;
    async fn set_waiting(&self, id: ConversationId, waiting: bool)
        -> Result<Conversation, StoreError>;
    async fn set_status(&self, id: ConversationId, status: ConversationStatus)
        -> Result<Conversation, StoreError>;
    async fn messages_after(&self, conversation_id: ConversationId, after_seq: i64, limit: u32)
        -> Result<Vec<Message>, StoreError>;
    async fn visitor_messages_after(
        &self, conversation_id: ConversationId, after_seq: i64, limit: u32
    ) -> Result<Vec<Message>, StoreError>;
    async fn visitor_message_count(
        &self, conversation_id: ConversationId, after_seq: i64, upto_seq: i64
    ) -> Result<u64, StoreError>;
    async fn record_agent(&self, agent: &AgentRecord) -> Result<(), StoreError>;
    async fn agent(&self, id: &str) -> Result<Option<AgentRecord>, StoreError>;
    async fn agents_of_site(&self, site: &str, limit: u32) -> Result<Vec<AgentRecord>, StoreError>;
    async fn import_messages(&self, messages: &[ImportedMessage])
        -> Result<Vec<Imported>, StoreError>;
    async fn put_visitor_context(&self, record: &VisitorContextRecord) -> Result<bool, StoreError>;
    async fn visitor_context(&self, visitor_id: VisitorId)
        -> Result<Option<VisitorContextRecord>, StoreError>;
    async fn mark_read(&self, id: ConversationId, reader: &Reader, seq: i64)
        -> Result<MarkedRead, StoreError>;
    async fn read_marks(&self, ids: &[ConversationId]) -> Result<Vec<ReadMarks>, StoreError>;
    async fn list_conversations_for_agent(&self, filter: &ConversationFilter, agent_id: &str)
        -> Result<Vec<AgentListing>, StoreError>;
    async fn canned_responses(&self, site_id: &str) -> Result<Vec<CannedResponse>, StoreError>;
    async fn canned_response(&self, id: Uuid) -> Result<Option<CannedResponse>, StoreError>;
    async fn create_canned_response(
        &self, site_id: &str, fields: &CannedFields, max_per_site: u32
    ) -> Result<CannedWrite, StoreError>;
    async fn update_canned_response(&self, id: Uuid, fields: &CannedFields)
        -> Result<CannedWrite, StoreError>;
    async fn delete_canned_response(&self, id: Uuid) -> Result<bool, StoreError>;
    async fn search_conversations(&self, query: &SearchQuery)
        -> Result<Vec<StoredHit>, StoreError>;
    async fn put_attachment(&self, attachment: &Attachment, content: Option<&[u8]>)
        -> Result<(), StoreError>;
    async fn attachment(&self, id: Uuid) -> Result<Option<StoredAttachment>, StoreError>;
    async fn bind_attachment(
        &self, id: Uuid, conversation_id: ConversationId, visible_to_visitor: bool
    ) -> Result<Option<Attachment>, StoreError>;
    async fn delete_unsent_attachments(&self, uploaded_before: DateTime<Utc>, limit: u32)
        -> Result<Vec<Uuid>, StoreError>;
    async fn open_conversation_count(&self) -> Result<Option<u64>, StoreError>;
    async fn claim_webhook_events(&self, limit: u32, lease: Duration)
        -> Result<Vec<WebhookEvent>, StoreError>;
    async fn webhook_event_delivered(&self, id: Uuid) -> Result<(), StoreError>;
    async fn webhook_event_failed(
        &self, id: Uuid, attempts: u32, retry_in: Option<Duration>, error: &str
    ) -> Result<(), StoreError>;
    async fn webhook_outbox_depth(&self) -> Result<OutboxDepth, StoreError>;
}
