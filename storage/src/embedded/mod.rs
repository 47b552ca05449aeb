//! [`EmbeddedStore`]: the [`Store`] in a single SQLite file, the default when no database is
//! configured.
//!
//! The file is opened in WAL mode with `synchronous=FULL` (a returned `Ok` is durable), foreign
//! keys on and a busy timeout. Its schema is versioned like Postgres's
//! (`migrations/embedded/`) and migrated when the file is opened. Calls run on Tokio's blocking
//! pool against one connection behind a mutex: one writer at a time, which also serializes
//! appends to a conversation.

mod agents;
mod append;
mod attachments;
mod canned;
mod conversations;
mod errors;
mod import;
mod messages;
mod read_state;
mod rows;
mod schema;
mod search;
mod visibility;
mod visitor_context;
mod visitors;
mod waiting;
mod webhooks;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
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
use rusqlite::Connection;
use uuid::Uuid;

use crate::migrations::MigrationReport;
use crate::StorageError;
use errors::sqlite_err;
pub(crate) use schema::read_schema_version;

/// How long SQLite waits for a lock held by another connection to the same file.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The [`Store`] in a single SQLite file.
///
/// ```no_run
/// # fn demo() -> Result<(), chat_storage::StorageError> {
/// let store = chat_storage::EmbeddedStore::open("/var/lib/chat-gateway/chat.db")?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct EmbeddedStore {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
    /// Writes the webhook events of the sites it wants inside their facts' commits, when set.
    outbox: Option<Arc<WebhookOutbox>>,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.path)
            .finish()
    }
}

impl EmbeddedStore {
    /// Opens (creating it and its parent directories if needed) the store at `path` and
    /// migrates its schema. Blocking; from async code prefer [`EmbeddedStore::open_async`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StorageError> {
        Self::open_and_migrate(path.as_ref()).map(|(store, _)| store)
    }

    /// [`EmbeddedStore::open`] on Tokio's blocking pool.
    pub async fn open_async(path: PathBuf) -> Result<Self, StorageError> {
        tokio::task::spawn_blocking(move || Self::open(path))
            .await
            .map_err(|e| StorageError::Store(StoreError::Other(e.to_string())))?
    }

    /// Writes a webhook event into the outbox (`webhook_outbox`) with every fact of a site
    /// `outbox` wants, inside the fact's own transaction (see `chat_core::webhook`).
    pub fn with_webhook_outbox(mut self, outbox: Arc<WebhookOutbox>) -> Self {
        self.outbox = Some(outbox);
        self
    }

    /// Wakes the outbox's worker after a commit that wrote events.
    fn wake_outbox(&self, wrote_events: bool) {
        if let (true, Some(outbox)) = (wrote_events, &self.outbox) {
            outbox.committed();
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn open_and_migrate(path: &Path) -> Result<(Self, MigrationReport), StorageError> {
        let fail = |message: String| StorageError::Embedded {
            path: path.to_path_buf(),
            message,
        };
        if let Some(parent) = path.parent() {
            crate::files::create_private_dir(parent)
                .map_err(|e| fail(format!("cannot create {}: {e}", parent.display())))?;
        }
        // Created 0600 before SQLite opens it: SQLite gives its -wal and -shm files the mode of
        // the database file.
        crate::files::create_private_file(path)
            .map_err(|e| fail(format!("cannot create {}: {e}", path.display())))?;
        if crate::files::readable_by_others(path) {
            tracing::warn!(
                path = %path.display(),
                "the store file is readable by other users; chmod 600 it"
            );
        }
        let mut conn = Connection::open(path).map_err(|e| fail(e.to_string()))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| fail(e.to_string()))?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .map_err(|e| fail(format!("cannot enable WAL: {e}")))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(path = %path.display(), mode, "SQLite journal mode is not WAL");
        }
        conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
            .map_err(|e| fail(e.to_string()))?;
        let report = schema::migrate(&mut conn)?;
        let store = Self {
            conn: Arc::new(Mutex::new(conn)),
            path: path.to_path_buf(),
            outbox: None,
        };
        Ok((store, report))
    }

    /// Runs `f` with the connection on Tokio's blocking pool.
    async fn call<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock cannot leave a transaction open (dropping it rolls
            // back), so a poisoned connection is still consistent.
            let mut guard = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Other(format!("embedded store task failed: {e}")))?
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    fn kind(&self) -> &'static str {
        "embedded"
    }

    async fn health(&self) -> Result<(), StoreError> {
        self.call(|conn| {
            conn.query_row("SELECT 1", [], |row| row.get::<_, i64>(0))
                .map_err(sqlite_err)?;
            Ok(())
        })
        .await
    }

    async fn visitor_messages_after(
        &self,
        conversation_id: ConversationId,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<Message>, StoreError> {
        self.call(move |conn| visibility::messages_after(conn, conversation_id, after_seq, limit))
            .await
    }

    async fn visitor_message_count(
        &self,
        conversation_id: ConversationId,
        after_seq: i64,
        upto_seq: i64,
    ) -> Result<u64, StoreError> {
        self.call(move |conn| visibility::count(conn, conversation_id, after_seq, upto_seq))
            .await
    }

    async fn record_agent(&self, agent: &AgentRecord) -> Result<(), StoreError> {
        let agent = agent.clone();
        self.call(move |conn| agents::record(conn, &agent)).await
    }

    async fn agent(&self, id: &str) -> Result<Option<AgentRecord>, StoreError> {
        let id = id.to_owned();
        self.call(move |conn| agents::get(conn, &id)).await
    }

    async fn agents_of_site(&self, site: &str, limit: u32) -> Result<Vec<AgentRecord>, StoreError> {
        let site = site.to_owned();
        self.call(move |conn| agents::of_site(conn, &site, limit))
            .await
    }

    async fn import_messages(
        &self,
        messages: &[ImportedMessage],
    ) -> Result<Vec<Imported>, StoreError> {
        let messages = messages.to_vec();
        self.call(move |conn| import::import(conn, &messages)).await
    }

    async fn put_visitor_context(
        &self,
        record: &chat_core::visitor_context::VisitorContextRecord,
    ) -> Result<bool, StoreError> {
        let record = record.clone();
        self.call(move |conn| visitor_context::put(conn, &record))
            .await
    }

    async fn visitor_context(
        &self,
        visitor_id: VisitorId,
    ) -> Result<Option<chat_core::visitor_context::VisitorContextRecord>, StoreError> {
        self.call(move |conn| visitor_context::get(conn, visitor_id))
            .await
    }

    async fn mark_read(
        &self,
        id: ConversationId,
        reader: &chat_core::read_receipts::Reader,
        seq: i64,
    ) -> Result<chat_core::read_receipts::MarkedRead, StoreError> {
        let reader = reader.clone();
        self.call(move |conn| read_state::mark(conn, id, &reader, seq))
            .await
    }

    async fn read_marks(
        &self,
        ids: &[ConversationId],
    ) -> Result<Vec<chat_core::read_receipts::ReadMarks>, StoreError> {
        let ids = ids.to_vec();
        self.call(move |conn| read_state::marks(conn, &ids)).await
    }

    async fn list_conversations_for_agent(
        &self,
        filter: &ConversationFilter,
        agent_id: &str,
    ) -> Result<Vec<chat_core::read_receipts::AgentListing>, StoreError> {
        let filter = filter.clone();
        let agent_id = agent_id.to_owned();
        self.call(move |conn| read_state::list_for_agent(conn, &filter, &agent_id))
            .await
    }

    async fn canned_responses(
        &self,
        site_id: &str,
    ) -> Result<Vec<chat_core::canned::CannedResponse>, StoreError> {
        let site_id = site_id.to_owned();
        self.call(move |conn| canned::list(conn, &site_id)).await
    }

    async fn canned_response(
        &self,
        id: Uuid,
    ) -> Result<Option<chat_core::canned::CannedResponse>, StoreError> {
        self.call(move |conn| canned::get(conn, id)).await
    }

    async fn create_canned_response(
        &self,
        site_id: &str,
        fields: &chat_core::canned::CannedFields,
        max_per_site: u32,
    ) -> Result<chat_core::canned::CannedWrite, StoreError> {
        let (site_id, fields) = (site_id.to_owned(), fields.clone());
        self.call(move |conn| canned::create(conn, &site_id, &fields, max_per_site))
            .await
    }

    async fn update_canned_response(
        &self,
        id: Uuid,
        fields: &chat_core::canned::CannedFields,
    ) -> Result<chat_core::canned::CannedWrite, StoreError> {
        let fields = fields.clone();
        self.call(move |conn| canned::update(conn, id, &fields))
            .await
    }

    async fn delete_canned_response(&self, id: Uuid) -> Result<bool, StoreError> {
        self.call(move |conn| canned::delete(conn, id)).await
    }

    async fn search_conversations(
        &self,
        query: &chat_core::search::SearchQuery,
    ) -> Result<Vec<chat_core::search::StoredHit>, StoreError> {
        let query = query.clone();
        self.call(move |conn| search::search(conn, &query)).await
    }

    async fn put_attachment(
        &self,
        attachment: &chat_core::attachment::Attachment,
        content: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        let (attachment, content) = (attachment.clone(), content.map(<[u8]>::to_vec));
        self.call(move |conn| attachments::put(conn, &attachment, content.as_deref()))
            .await
    }

    async fn attachment(
        &self,
        id: Uuid,
    ) -> Result<Option<chat_core::attachment::StoredAttachment>, StoreError> {
        self.call(move |conn| attachments::get(conn, id)).await
    }

    async fn bind_attachment(
        &self,
        id: Uuid,
        conversation_id: ConversationId,
        visible_to_visitor: bool,
    ) -> Result<Option<chat_core::attachment::Attachment>, StoreError> {
        self.call(move |conn| attachments::bind(conn, id, conversation_id, visible_to_visitor))
            .await
    }

    async fn delete_unsent_attachments(
        &self,
        uploaded_before: chrono::DateTime<chrono::Utc>,
        limit: u32,
    ) -> Result<Vec<Uuid>, StoreError> {
        self.call(move |conn| attachments::delete_unsent(conn, uploaded_before, limit))
            .await
    }

    async fn ensure_visitor(&self, visitor: &Visitor) -> Result<Visitor, StoreError> {
        let visitor = visitor.clone();
        self.call(move |conn| visitors::ensure(conn, &visitor))
            .await
    }

    async fn visitor(&self, id: VisitorId) -> Result<Option<Visitor>, StoreError> {
        self.call(move |conn| visitors::get(conn, id)).await
    }

    async fn move_conversation(
        &self,
        id: ConversationId,
        to: VisitorId,
    ) -> Result<Conversation, StoreError> {
        self.call(move |conn| visitors::move_conversation(conn, id, to))
            .await
    }

    async fn create_conversation(
        &self,
        site_id: &str,
        visitor_id: VisitorId,
    ) -> Result<Conversation, StoreError> {
        conversations::create(self, site_id, visitor_id).await
    }

    async fn conversation(&self, id: ConversationId) -> Result<Option<Conversation>, StoreError> {
        self.call(move |conn| conversations::get(conn, id)).await
    }

    async fn open_conversation_of(
        &self,
        site_id: &str,
        visitor_id: VisitorId,
    ) -> Result<Option<Conversation>, StoreError> {
        let site_id = site_id.to_owned();
        self.call(move |conn| conversations::open_of(conn, &site_id, visitor_id))
            .await
    }

    async fn list_conversations(
        &self,
        filter: &ConversationFilter,
    ) -> Result<Vec<Conversation>, StoreError> {
        let filter = filter.clone();
        self.call(move |conn| conversations::list(conn, &filter))
            .await
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
        self.call(move |conn| waiting::set(conn, id, waiting)).await
    }

    async fn set_status(
        &self,
        id: ConversationId,
        status: ConversationStatus,
    ) -> Result<Conversation, StoreError> {
        conversations::set_status(self, id, status).await
    }

    async fn append_message(&self, message: NewMessage) -> Result<Appended, StoreError> {
        messages::append(self, message).await
    }

    async fn open_conversation_count(&self) -> Result<Option<u64>, StoreError> {
        self.call(conversations::count_open).await
    }

    async fn claim_webhook_events(
        &self,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<WebhookEvent>, StoreError> {
        self.call(move |conn| webhooks::claim(conn, limit, lease))
            .await
    }

    async fn webhook_event_delivered(&self, id: Uuid) -> Result<(), StoreError> {
        self.call(move |conn| webhooks::delivered(conn, id)).await
    }

    async fn webhook_event_failed(
        &self,
        id: Uuid,
        attempts: u32,
        retry_in: Option<Duration>,
        error: &str,
    ) -> Result<(), StoreError> {
        let error = error.to_owned();
        self.call(move |conn| webhooks::failed(conn, id, attempts, retry_in, &error))
            .await
    }

    async fn webhook_outbox_depth(&self) -> Result<OutboxDepth, StoreError> {
        self.call(webhooks::depth_of).await
    }

    fn pool_status(&self) -> Option<chat_core::store::PoolStatus> {
        // One connection behind a mutex: idle when nobody holds it.
        let idle = usize::from(self.conn.try_lock().is_ok());
        Some(chat_core::store::PoolStatus {
            open: 1,
            idle,
            max: 1,
        })
    }

    async fn messages_after(
        &self,
        conversation_id: ConversationId,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<Message>, StoreError> {
        self.call(move |conn| messages::after(conn, conversation_id, after_seq, limit))
            .await
    }
}
