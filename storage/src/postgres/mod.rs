//! [`PostgresStore`]: the [`Store`] on Postgres, through a `deadpool-postgres` pool.
//!
//! The pool is lazy: [`PostgresStore::connect`] does no I/O, connections are made on demand,
//! broken ones are discarded, and every wait (for a pool slot, a new connection, a recycled
//! one, a query) is bounded, so while Postgres is down calls fail fast with
//! [`StoreError::Unavailable`] and the store recovers by itself once Postgres is back.

// First: its `with_client!` is used by the modules below.
#[macro_use]
mod pool;

mod agents;
mod append;
mod append_one_round_trip;
mod append_plan;
mod attachments;
mod bus;
mod canned;
mod conninfo;
mod conversations;
mod errors;
mod import;
mod message_columns;
mod messages;
mod read_state;
mod rows;
mod schema;
mod search;
mod search_pending_list;
pub mod tls;
mod visibility;
mod visitor_context;
mod visitors;
mod waiting;
mod webhooks;

pub use bus::{CommitNotifier, PostgresBus, LISTENER_APP_PREFIX};

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chat_core::agents::AgentRecord;
use chat_core::model::{
    Agent, Conversation, ConversationId, ConversationStatus, Message, NewMessage, Visitor,
    VisitorId,
};
use chat_core::store::{Appended, ConversationFilter, Imported, ImportedMessage, Store};
use chat_core::webhook::{OutboxDepth, WebhookEvent, WebhookOutbox};
use chat_core::StoreError;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};

use crate::StorageError;
#[cfg(feature = "test-support")]
pub(crate) use errors::describe as describe_error;
use errors::pg_err;

/// How long to wait for a pool slot, a new connection or the recycling of an idle one.
const POOL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one store operation (all its queries) may take before it fails as unavailable.
const OP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long [`Store::health`] may take.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);

/// The [`Store`] on Postgres. Cheap to share behind an `Arc`; all clones of the pool are one.
///
/// ```no_run
/// # async fn demo() -> Result<(), chat_storage::StorageError> {
/// use chat_storage::PostgresStore;
/// let store = PostgresStore::connect("postgres://chat@127.0.0.1:5432/chat", 16)?;
/// store.migrate().await?;
/// store.check_schema().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    /// For connection errors' messages.
    ssl_mode: tls::SslMode,
    /// Sends the bus notification of each message inside its commit, when set.
    notifier: Option<Arc<bus::CommitNotifier>>,
    /// Writes the webhook events of the sites it wants inside their facts' commits, when set.
    outbox: Option<Arc<WebhookOutbox>>,
    /// Merges the search index's pending list in the background, when started.
    cleaner: Option<Arc<search_pending_list::PendingListCleaner>>,
    /// Whether the last group commit that looked found another gateway process listening on
    /// the bus (its notifications then carry the messages; see `append_one_round_trip`).
    peers_listen: Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = self.pool.status();
        f.debug_struct("PostgresStore")
            .field("max_size", &status.max_size)
            .field("size", &status.size)
            .field("available", &status.available)
            .field("ssl_mode", &self.ssl_mode)
            .finish()
    }
}

impl PostgresStore {
    /// Builds a pool of at most `pool_size` (at least 1) connections to `url`, a
    /// `postgres://user:password@host:port/db` URL or a `host=… dbname=…` string.
    ///
    /// Connects no socket: it fails only on an invalid URL or unusable TLS settings, and a
    /// database that is down now or later makes calls fail with [`StoreError::Unavailable`]
    /// until it is back. TLS follows the URL's `sslmode` and `sslrootcert` (see [`tls`]).
    pub fn connect(url: &str, pool_size: usize) -> Result<Self, StorageError> {
        Self::connect_with_ca(url, pool_size, None)
    }

    /// [`PostgresStore::connect`], with `ca` as the root CA file (PEM) when the URL has no
    /// `sslrootcert` (the gateway's `CHAT_DATABASE_CA`). The CA file is read now.
    pub fn connect_with_ca(
        url: &str,
        pool_size: usize,
        ca: Option<&std::path::Path>,
    ) -> Result<Self, StorageError> {
        let (mut pg, tls) = tls::configure(url, ca)?;
        let ssl_mode = tls.mode();
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(POOL_TIMEOUT);
        }
        if pg.get_application_name().is_none() {
            pg.application_name("chat-gateway");
        }
        pg.keepalives(true);
        pg.keepalives_idle(Duration::from_secs(30));
        let manager = Manager::from_config(
            pg,
            tls,
            ManagerConfig {
                // `is_closed()` on checkout; a connection that fails a query with a connection
                // error is additionally dropped from the pool (see `pool::finish`).
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_TIMEOUT))
            .create_timeout(Some(POOL_TIMEOUT))
            .recycle_timeout(Some(POOL_TIMEOUT))
            .build()
            .map_err(|e| StorageError::Pool(e.to_string()))?;
        Ok(Self {
            pool,
            ssl_mode,
            notifier: None,
            outbox: None,
            cleaner: None,
            peers_listen: Arc::default(),
        })
    }

    /// Writes a webhook event into the outbox (`webhook_outbox`) with every fact of a site
    /// `outbox` wants, inside the fact's own transaction (see `chat_core::webhook`).
    pub fn with_webhook_outbox(mut self, outbox: Arc<WebhookOutbox>) -> Self {
        self.outbox = Some(outbox);
        self
    }

    /// The outbox when it wants events of `site`.
    fn outbox_for(&self, site: &str) -> Option<&WebhookOutbox> {
        self.outbox.as_deref().filter(|outbox| outbox.wants(site))
    }

    /// Merges the search index's pending list in the background (each second in which this
    /// store has inserted enough messages), for as long as a clone of this store lives, so that
    /// inserts do not (see `search_pending_list`). Must be called inside a Tokio runtime.
    pub fn clean_search_index_in_background(mut self) -> Self {
        let mut owner_free = self.clone();
        owner_free.cleaner = None;
        self.cleaner = Some(search_pending_list::PendingListCleaner::start(owner_free));
        self
    }

    /// Tells the background merge, if any, that `messages` new messages were committed.
    fn inserted(&self, messages: usize) {
        if let Some(cleaner) = &self.cleaner {
            cleaner.inserted(messages);
        }
    }

    /// Sends the bus notification of every message this store commits inside the committing
    /// transaction, and only when another gateway process listens (see [`PostgresBus`]).
    pub fn notify_commits(mut self, notifier: CommitNotifier) -> Self {
        self.notifier = Some(Arc::new(notifier));
        self
    }
}

#[async_trait]
impl Store for PostgresStore {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    async fn health(&self) -> Result<(), StoreError> {
        with_client!(self, HEALTH_TIMEOUT, |client| {
            client.simple_query("SELECT 1").await.map_err(pg_err)?;
            Ok(())
        })
    }

    async fn open_conversation_count(&self) -> Result<Option<u64>, StoreError> {
        with_client!(self, HEALTH_TIMEOUT, |client| conversations::count_open(
            &client
        )
        .await)
    }

    async fn claim_webhook_events(
        &self,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<WebhookEvent>, StoreError> {
        with_client!(self, OP_TIMEOUT, |client| webhooks::claim(
            &client, limit, lease
        )
        .await)
    }

    async fn webhook_event_delivered(&self, id: uuid::Uuid) -> Result<(), StoreError> {
        with_client!(self, OP_TIMEOUT, |client| webhooks::delivered(&client, id)
            .await)
    }

    async fn webhook_event_failed(
        &self,
        id: uuid::Uuid,
        attempts: u32,
        retry_in: Option<Duration>,
        error: &str,
    ) -> Result<(), StoreError> {
        with_client!(self, OP_TIMEOUT, |client| {
            webhooks::failed(&client, id, attempts, retry_in, error).await
        })
    }

    async fn webhook_outbox_depth(&self) -> Result<OutboxDepth, StoreError> {
        with_client!(self, HEALTH_TIMEOUT, |client| webhooks::depth(&client)
            .await)
    }

    fn pool_status(&self) -> Option<chat_core::store::PoolStatus> {
        let status = self.pool.status();
        Some(chat_core::store::PoolStatus {
            open: status.size,
            idle: status.available,
            max: status.max_size,
        })
    }

    async fn put_visitor_context(
        &self,
        record: &chat_core::visitor_context::VisitorContextRecord,
    ) -> Result<bool, StoreError> {
        with_client!(self, OP_TIMEOUT, |client| visitor_context::put(
            &client, record
        )
        .await)
    }

    async fn visitor_context(
        &self,
        visitor_id: VisitorId,
    ) -> Result<Option<chat_core::visitor_context::VisitorContextRecord>, StoreError> {
        with_client!(self, OP_TIMEOUT, |client| {
            visitor_context::get(&client, visitor_id).await
        })
    }

    async fn mark_read(
        &self,
        id: ConversationId,
        reader: &chat_core::read_receipts::Reader,
        seq: i64,
    ) -> Result<chat_core::read_receipts::MarkedRead, StoreError> {
        with_client!(self, OP_TIMEOUT, |client| read_state::mark(
            &client, id, reader, seq
        )
        .await)
    }

    async fn read_marks(
        &self,
        ids: &[ConversationId],
    ) -> Result<Vec<chat_core::read_receipts::ReadMarks>, StoreError> {
        with_client!(self, OP_TIMEOUT, |client| read_state::marks(&client, ids)
            .await)
    }

    async fn list_conversations_for_agent(
        &self,
        filter: &ConversationFilter,
        agent_id: &str,
    ) -> Result<Vec<chat_core::read_receipts::AgentListing>, StoreError> {
        with_client!(self, OP_TIMEOUT, |client| read_state::list_for_agent(
            &client, filter, agent_id
        )
        .await)
    }

    async fn canned_responses(
        &self,
        site_id: &str,
    ) -> Result<Vec<chat_core::canned::CannedResponse>, StoreError> {
        with_client!(self, OP_TIMEOUT, |client| canned::list(&client, site_id)
            .await)
    }

    async fn canned_response(
        &self,
        id: uuid::Uuid,
    ) -> Result<Option<chat_core::canned::CannedResponse>, StoreError> {
        with_client!(self, OP_TIMEOUT, |client| canned::get(&client, id).await)
    }

    async fn create_canned_response(
        &self,
        site_id: &str,
        fields: &chat_core::canned::CannedFields,
        max_per_site: u32,
    ) -> Result<chat_core::canned::CannedWrite, StoreError> {
        with_client!(self, OP_TIMEOUT, |client| {
            canned::create(&mut client, site_id, fields, max_per_site).await
        })
    }

    async fn update_canned_response(
        &self,
        id: uuid::Uuid,
        fields: &chat_core::canned::CannedFields,
    ) -> Result<chat_core::canned::CannedWrite, StoreError> {
        with_client!(self, OP_TIMEOUT, |client| {
            canned::update(&client, id, fields).await
        })
    }

    async fn delete_canned_response(&self, id: uuid::Uuid) -> Result<bool, StoreError> {
        with_client!(self, OP_TIMEOUT, |client| canned::delete(&client, id).await)
    }

    async fn put_attachment(
        &self,
        attachment: &chat_core::attachment::Attachment,
        content: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        with_client!(self, OP_TIMEOUT, |client| {
            attachments::put(&client, attachment, content).await
        })
    }

    async fn attachment(
        &self,
        id: uuid::Uuid,
    ) -> Result<Option<chat_core::attachment::StoredAttachment>, StoreError> {
        with_client!(self, OP_TIMEOUT, |client| attachments::get(&client, id)
            .await)
    }

    async fn bind_attachment(
        &self,
        id: uuid::Uuid,
        conversation_id: ConversationId,
        visible_to_visitor: bool,
    ) -> Result<Option<chat_core::attachment::Attachment>, StoreError> {
        with_client!(self, OP_TIMEOUT, |client| {
            attachments::bind(&client, id, conversation_id, visible_to_visitor).await
        })
    }

    async fn delete_unsent_attachments(
        &self,
        uploaded_before: chrono::DateTime<chrono::Utc>,
        limit: u32,
    ) -> Result<Vec<uuid::Uuid>, StoreError> {
        with_client!(self, OP_TIMEOUT, |client| {
            attachments::delete_unsent(&client, uploaded_before, limit).await
        })
    }

    async fn search_conversations(
        &self,
        query: &chat_core::search::SearchQuery,
    ) -> Result<Vec<chat_core::search::StoredHit>, StoreError> {
        with_client!(self, OP_TIMEOUT, |client| search::search(&client, query)
            .await)
    }

    async fn ensure_visitor(&self, visitor: &Visitor) -> Result<Visitor, StoreError> {
        with_client!(self, OP_TIMEOUT, |client| visitors::ensure(
            &client, visitor
        )
        .await)
    }

    async fn visitor(&self, id: VisitorId) -> Result<Option<Visitor>, StoreError> {
        with_client!(self, OP_TIMEOUT, |client| visitors::get(&client, id).await)
    }

    async fn move_conversation(
        &self,
        id: ConversationId,
        to: VisitorId,
    ) -> Result<Conversation, StoreError> {
        with_client!(self, OP_TIMEOUT, |client| {
            visitors::move_conversation(&client, id, to).await
        })
    }

    async fn create_conversation(
        &self,
        site_id: &str,
        visitor_id: VisitorId,
    ) -> Result<Conversation, StoreError> {
        conversations::create(self, site_id, visitor_id).await
    }

    async fn conversation(&self, id: ConversationId) -> Result<Option<Conversation>, StoreError> {
        with_client!(self, OP_TIMEOUT, |client| conversations::get(&client, id)
            .await)
    }

    async fn open_conversation_of(
        &self,
        site_id: &str,
        visitor_id: VisitorId,
    ) -> Result<Option<Conversation>, StoreError> {
        with_client!(self, OP_TIMEOUT, |client| {
            conversations::open_of(&client, site_id, visitor_id).await
        })
    }

    async fn list_conversations(
        &self,
        filter: &ConversationFilter,
    ) -> Result<Vec<Conversation>, StoreError> {
        with_client!(self, OP_TIMEOUT, |client| conversations::list(
            &client, filter
        )
        .await)
    }

    async fn assign(
        &self,
        id: ConversationId,
        assignee: Option<&Agent>,
    ) -> Result<Conversation, StoreError> {
        conversations::assign(self, id, assignee).await
    }

    async fn set_waiting(
        &self,
        id: ConversationId,
        waiting: bool,
    ) -> Result<Conversation, StoreError> {
        with_client!(self, OP_TIMEOUT, |client| waiting::set(
            &client, id, waiting
        )
        .await)
    }

    async fn set_status(
        &self,
        id: ConversationId,
        status: ConversationStatus,
    ) -> Result<Conversation, StoreError> {
        conversations::set_status(self, id, status).await
    }

    async fn append_message(&self, message: NewMessage) -> Result<Appended, StoreError> {
        let appended = messages::append(self, message).await;
        if let Ok(Appended::Inserted(_)) = &appended {
            self.inserted(1);
        }
        appended
    }

    async fn visitor_messages_after(
        &self,
        conversation_id: ConversationId,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<Message>, StoreError> {
        with_client!(self, OP_TIMEOUT, |client| {
            visibility::messages_after(&client, conversation_id, after_seq, limit).await
        })
    }

    async fn visitor_message_count(
        &self,
        conversation_id: ConversationId,
        after_seq: i64,
        upto_seq: i64,
    ) -> Result<u64, StoreError> {
        with_client!(self, OP_TIMEOUT, |client| {
            visibility::count(&client, conversation_id, after_seq, upto_seq).await
        })
    }

    async fn record_agent(&self, agent: &AgentRecord) -> Result<(), StoreError> {
        with_client!(self, OP_TIMEOUT, |client| agents::record(&client, agent)
            .await)
    }

    async fn agent(&self, id: &str) -> Result<Option<AgentRecord>, StoreError> {
        with_client!(self, OP_TIMEOUT, |client| agents::get(&client, id).await)
    }

    async fn agents_of_site(&self, site: &str, limit: u32) -> Result<Vec<AgentRecord>, StoreError> {
        with_client!(self, OP_TIMEOUT, |client| agents::of_site(
            &client, site, limit
        )
        .await)
    }

    async fn import_messages(
        &self,
        messages: &[ImportedMessage],
    ) -> Result<Vec<Imported>, StoreError> {
        let imported = with_client!(self, OP_TIMEOUT, |client| import::import(
            &mut client,
            messages
        )
        .await)?;
        self.inserted(
            imported
                .iter()
                .filter(|i| matches!(i, Imported::Inserted { .. }))
                .count(),
        );
        Ok(imported)
    }

    async fn messages_after(
        &self,
        conversation_id: ConversationId,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<Message>, StoreError> {
        with_client!(self, OP_TIMEOUT, |client| {
            messages::after(&client, conversation_id, after_seq, limit).await
        })
    }
}
