//! [`EmbeddedStore`]: the [`Store`] in a single SQLite file, the default when no database is
//! configured.
//!
//! The file is opened in WAL mode with `synchronous=FULL` (a returned `Ok` is durable), foreign
//! keys on and a busy timeout. Its schema is versioned like Postgres's
//! (`migrations/embedded/`) and migrated when the file is opened. Calls run on Tokio's blocking
//! pool against one connection behind a mutex: one writer at a time, which also serializes
//! appends to a conversation.

mod agents;
mod attachments;
mod canned;
mod import;
mod read_state;
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
    Agent, Conversation, ConversationId, ConversationStatus, Message, MessageKind, NewMessage,
    Role, Sender, Visitor, VisitorId,
};
use chat_core::store::{Appended, ConversationFilter, Imported, ImportedMessage, Store};
use chat_core::webhook::{NewWebhookEvent, OutboxDepth, WebhookEvent, WebhookOutbox};
use chat_core::StoreError;
use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};
use uuid::Uuid;

use crate::migrations::{self, MigrationInfo, MigrationReport};
use crate::time::{from_micros, now_micros};
use crate::StorageError;

/// How long SQLite waits for a lock held by another connection to the same file.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const SELECT_DUPLICATE: &str = concat!(
    "SELECT ",
    message_row_columns!(),
    " FROM messages WHERE conversation_id = ?1 AND client_msg_id = ?2"
);

/// Sets a conversation's assignee (`?2` id, `?3` name) at `?4`.
const ASSIGN: &str = concat!(
    "UPDATE conversations SET assignee_id = ?2, assignee_name = ?3, updated_at = ?4 \
     WHERE id = ?1 RETURNING ",
    conversation_columns!()
);

/// Sets a conversation's status (`?2`) at `?3`.
const SET_STATUS: &str = concat!(
    "UPDATE conversations SET status = ?2, updated_at = ?3 WHERE id = ?1 RETURNING ",
    conversation_columns!()
);

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

    /// An assignment or a status change with its webhook event, in one transaction.
    async fn change_with_event(
        &self,
        outbox: Arc<WebhookOutbox>,
        id: ConversationId,
        change: webhooks::ConversationChange,
    ) -> Result<Conversation, StoreError> {
        let id = id.0.to_string();
        let changed = self
            .call(move |conn| webhooks::change_conversation(conn, &outbox, &id, change))
            .await?;
        match changed {
            Some((conversation, wrote_event)) => {
                self.wake_outbox(wrote_event);
                Ok(conversation)
            }
            None => Err(StoreError::NotFound("conversation")),
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version this binary needs (and migrates the file to on open).
    pub fn expected_schema_version() -> i64 {
        migrations::latest(migrations::EMBEDDED)
    }

    /// The schema version recorded in the file.
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        self.call(|conn| schema_version(conn).map_err(sqlite_err))
            .await
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
        let report = migrate(&mut conn)?;
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

/// The schema version recorded in an open file (0 when never migrated), for read-only callers.
pub(crate) fn read_schema_version(conn: &Connection) -> rusqlite::Result<i64> {
    schema_version(conn)
}

fn schema_version(conn: &Connection) -> rusqlite::Result<i64> {
    let exists: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' \
         AND name = 'chat_schema_migrations')",
        [],
        |row| row.get(0),
    )?;
    if !exists {
        return Ok(0);
    }
    conn.query_row(
        "SELECT coalesce(max(version), 0) FROM chat_schema_migrations",
        [],
        |row| row.get(0),
    )
}

/// Applies the migrations the file lacks, each in its own (immediate, so exclusive for
/// writers) transaction.
fn migrate(conn: &mut Connection) -> Result<MigrationReport, StorageError> {
    let mut applied = Vec::new();
    for m in migrations::EMBEDDED {
        let fail = |e: rusqlite::Error| StorageError::Migration {
            version: m.version,
            name: m.name,
            message: e.to_string(),
        };
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(fail)?;
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS chat_schema_migrations (
                 version    INTEGER PRIMARY KEY,
                 name       TEXT    NOT NULL,
                 applied_at INTEGER NOT NULL
             ) STRICT",
        )
        .map_err(fail)?;
        let done: bool = tx
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM chat_schema_migrations WHERE version = ?1)",
                [m.version],
                |row| row.get(0),
            )
            .map_err(fail)?;
        if done {
            tx.commit().map_err(fail)?;
            continue;
        }
        tx.execute_batch(m.sql).map_err(fail)?;
        tx.execute(
            "INSERT INTO chat_schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
            params![m.version, m.name, now_micros().timestamp_micros()],
        )
        .map_err(fail)?;
        tx.commit().map_err(fail)?;
        tracing::info!(
            version = m.version,
            name = m.name,
            "applied embedded migration"
        );
        applied.push(MigrationInfo {
            version: m.version,
            name: m.name,
        });
    }
    let version = schema_version(conn).map_err(|e| StorageError::Store(sqlite_err(e)))?;
    Ok(MigrationReport { applied, version })
}

/// Busy/locked/cannot-open errors are [`StoreError::Unavailable`], others
/// [`StoreError::Other`].
fn sqlite_err(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode;
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked | ErrorCode::CannotOpen) => {
            StoreError::Unavailable(e.to_string())
        }
        _ => StoreError::Other(e.to_string()),
    }
}

fn constraint(e: &rusqlite::Error, extended_code: i32) -> bool {
    e.sqlite_error()
        .is_some_and(|s| s.extended_code == extended_code)
}

fn bad_data(what: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Other(format!("invalid {what} in the embedded store: {detail}"))
}

fn parse_uuid(s: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(s).map_err(|e| bad_data("uuid", e))
}

fn timestamp(micros: i64) -> Result<chrono::DateTime<chrono::Utc>, StoreError> {
    from_micros(micros).ok_or_else(|| bad_data("timestamp", micros))
}

struct ConversationRow {
    id: String,
    site_id: String,
    visitor_id: String,
    status: String,
    assignee_id: Option<String>,
    assignee_name: Option<String>,
    last_seq: i64,
    created_at: i64,
    updated_at: i64,
    visitor_last_seq: Option<i64>,
    waiting: bool,
}

fn read_conversation(row: &Row<'_>) -> rusqlite::Result<ConversationRow> {
    Ok(ConversationRow {
        id: row.get(0)?,
        site_id: row.get(1)?,
        visitor_id: row.get(2)?,
        status: row.get(3)?,
        assignee_id: row.get(4)?,
        assignee_name: row.get(5)?,
        last_seq: row.get(6)?,
        created_at: row.get(7)?,
        updated_at: row.get(8)?,
        visitor_last_seq: row.get(9)?,
        waiting: row.get(10)?,
    })
}

fn conversation_from(raw: ConversationRow) -> Result<Conversation, StoreError> {
    Ok(Conversation {
        id: ConversationId(parse_uuid(&raw.id)?),
        site_id: raw.site_id,
        visitor_id: VisitorId(parse_uuid(&raw.visitor_id)?),
        status: ConversationStatus::parse(&raw.status)
            .ok_or_else(|| bad_data("conversation status", &raw.status))?,
        assignee: raw.assignee_id.map(|id| Agent {
            id,
            name: raw.assignee_name.unwrap_or_default(),
        }),
        last_seq: raw.last_seq,
        visitor_last_seq: raw.visitor_last_seq,
        created_at: timestamp(raw.created_at)?,
        updated_at: timestamp(raw.updated_at)?,
        waiting: raw.waiting,
    })
}

struct MessageRow {
    conversation_id: String,
    seq: i64,
    client_msg_id: Option<String>,
    sender_role: String,
    sender_id: String,
    sender_name: Option<String>,
    body: String,
    created_at: i64,
    kind: String,
    /// JSON (migration 12).
    attachment: Option<String>,
}

fn read_message(row: &Row<'_>) -> rusqlite::Result<MessageRow> {
    Ok(MessageRow {
        conversation_id: row.get(0)?,
        seq: row.get(1)?,
        client_msg_id: row.get(2)?,
        sender_role: row.get(3)?,
        sender_id: row.get(4)?,
        sender_name: row.get(5)?,
        body: row.get(6)?,
        created_at: row.get(7)?,
        kind: row.get(8)?,
        attachment: row.get(9)?,
    })
}

fn message_from(raw: MessageRow) -> Result<Message, StoreError> {
    Ok(Message {
        attachment: crate::message_attachment::from_column(raw.attachment.as_deref())?,
        conversation_id: ConversationId(parse_uuid(&raw.conversation_id)?),
        seq: raw.seq,
        kind: MessageKind::parse(&raw.kind).ok_or_else(|| bad_data("message kind", &raw.kind))?,
        client_msg_id: raw.client_msg_id,
        sender: Sender {
            role: Role::parse(&raw.sender_role)
                .ok_or_else(|| bad_data("role", &raw.sender_role))?,
            id: raw.sender_id,
            name: raw.sender_name,
        },
        body: raw.body,
        created_at: timestamp(raw.created_at)?,
    })
}

fn conversation_by_id(conn: &Connection, id: &str) -> Result<Option<Conversation>, StoreError> {
    conn.prepare_cached(concat!(
        "SELECT ",
        conversation_columns!(),
        " FROM conversations WHERE id = ?1"
    ))
    .and_then(|mut stmt| stmt.query_row([id], read_conversation).optional())
    .map_err(sqlite_err)?
    .map(conversation_from)
    .transpose()
}

fn duplicate_of(
    conn: &Connection,
    conversation_id: &str,
    client_msg_id: &str,
) -> Result<Option<Message>, StoreError> {
    conn.prepare_cached(SELECT_DUPLICATE)
        .and_then(|mut stmt| {
            stmt.query_row(params![conversation_id, client_msg_id], read_message)
                .optional()
        })
        .map_err(sqlite_err)?
        .map(message_from)
        .transpose()
}

/// Appends one message inside the caller's transaction (which holds SQLite's write lock, so
/// the duplicate check and the insert cannot race another writer), with its `message.created`
/// event when `outbox` wants the conversation's site.
fn append_in(
    conn: &Connection,
    message: NewMessage,
    outbox: Option<&WebhookOutbox>,
) -> Result<Appended, StoreError> {
    let conversation_id = message.conversation_id.0.to_string();
    if let Some(client_msg_id) = &message.client_msg_id {
        if let Some(original) = duplicate_of(conn, &conversation_id, client_msg_id)? {
            return Ok(Appended::Duplicate(original));
        }
    }
    let attachment = crate::message_attachment::to_column(message.attachment.as_deref())?;
    let created_at = now_micros();
    let bumped: Option<(i64, String, String)> = conn
        .prepare_cached(
            "UPDATE conversations SET last_seq = last_seq + 1, updated_at = ?2, \
             visitor_last_seq = CASE WHEN ?3 THEN coalesce(visitor_last_seq, last_seq) END \
             WHERE id = ?1 RETURNING last_seq, site_id, visitor_id",
        )
        .and_then(|mut stmt| {
            stmt.query_row(
                params![
                    conversation_id,
                    created_at.timestamp_micros(),
                    message.kind == MessageKind::Note
                ],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .optional()
        })
        .map_err(sqlite_err)?;
    let Some((seq, site_id, visitor_id)) = bumped else {
        return Err(StoreError::NotFound("conversation"));
    };
    conn.prepare_cached(
        "INSERT INTO messages (conversation_id, seq, client_msg_id, sender_role, sender_id, \
         sender_name, body, created_at, kind, attachment) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            conversation_id,
            seq,
            message.client_msg_id,
            message.sender.role.as_str(),
            message.sender.id,
            message.sender.name,
            message.body,
            created_at.timestamp_micros(),
            message.kind.as_str(),
            attachment,
        ])
    })
    .map_err(sqlite_err)?;
    let committed = Message {
        attachment: message.attachment,
        conversation_id: message.conversation_id,
        seq,
        kind: message.kind,
        client_msg_id: message.client_msg_id,
        sender: message.sender,
        body: message.body,
        created_at,
    };
    if outbox.is_some_and(|outbox| outbox.wants(&site_id)) {
        let visitor_id = VisitorId(parse_uuid(&visitor_id)?);
        let event = NewWebhookEvent::message(&committed, &site_id, visitor_id);
        webhooks::insert(conn, &[event])?;
    }
    Ok(Appended::Inserted(committed))
}

/// Appends `batch` in one transaction (one fsync), each message under its own savepoint so
/// that one failing message leaves the others in the commit.
fn append_batch(
    conn: &mut Connection,
    batch: Vec<NewMessage>,
    outbox: Option<&WebhookOutbox>,
) -> Vec<Result<Appended, StoreError>> {
    let count = batch.len();
    let mut tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => {
            let why = sqlite_err(e).to_string();
            return (0..count)
                .map(|_| Err(StoreError::Other(why.clone())))
                .collect();
        }
    };
    let mut results = Vec::with_capacity(count);
    for message in batch {
        let result = match tx.savepoint() {
            Ok(sp) => match append_in(&sp, message, outbox) {
                Ok(appended) => sp.commit().map_err(sqlite_err).map(|()| appended),
                // Dropping the savepoint rolls back this message only.
                Err(e) => Err(e),
            },
            Err(e) => Err(sqlite_err(e)),
        };
        results.push(result);
    }
    if let Err(e) = tx.commit() {
        let why = sqlite_err(e).to_string();
        return results
            .into_iter()
            .map(|r| match r {
                // Nothing of the transaction is committed, not even an insert that succeeded.
                Ok(Appended::Inserted(_)) | Err(_) => Err(StoreError::Other(why.clone())),
                duplicate @ Ok(Appended::Duplicate(_)) => duplicate,
            })
            .collect();
    }
    results
}

#[async_trait]
impl crate::batch::AppendBatch for EmbeddedStore {
    async fn append_batch(&self, batch: Vec<NewMessage>) -> Vec<Result<Appended, StoreError>> {
        let count = batch.len();
        let outbox = self.outbox.clone();
        match self
            .call(move |conn| Ok(append_batch(conn, batch, outbox.as_deref())))
            .await
        {
            Ok(results) => {
                let inserted = results
                    .iter()
                    .any(|r| matches!(r, Ok(Appended::Inserted(_))));
                // Whether the site wanted an event is known in the transaction only; a spurious
                // wake-up costs one empty claim.
                self.wake_outbox(inserted);
                results
            }
            Err(e) => {
                let why = e.to_string();
                (0..count)
                    .map(|_| Err(StoreError::Other(why.clone())))
                    .collect()
            }
        }
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
        let id = ConversationId::new_random().0.to_string();
        let outbox = self.outbox.clone().filter(|outbox| outbox.wants(site_id));
        let wrote_event = outbox.is_some();
        let site_id = site_id.to_string();
        let visitor_id = visitor_id.0.to_string();
        let created = self
            .call(move |conn| {
                let now = now_micros().timestamp_micros();
                // With its `conversation.created` event when the site wants one, in one transaction.
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(sqlite_err)?;
                let raw = tx
                    .prepare_cached(concat!(
                        "INSERT INTO conversations \
                     (id, site_id, visitor_id, status, last_seq, created_at, updated_at) \
                     VALUES (?1, ?2, ?3, 'open', 0, ?4, ?4) RETURNING ",
                        conversation_columns!()
                    ))
                    .and_then(|mut stmt| {
                        stmt.query_row(params![id, site_id, visitor_id, now], read_conversation)
                    });
                let created = match raw {
                    Ok(raw) => conversation_from(raw)?,
                    Err(e) if constraint(&e, rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY) => {
                        return Err(StoreError::NotFound("visitor"))
                    }
                    Err(e) => return Err(sqlite_err(e)),
                };
                if outbox.is_some() {
                    let event = NewWebhookEvent::conversation(
                        chat_core::webhook::WebhookEventKind::ConversationCreated,
                        &created,
                    );
                    webhooks::insert(&tx, &[event])?;
                }
                tx.commit().map_err(sqlite_err)?;
                Ok(created)
            })
            .await;
        self.wake_outbox(wrote_event && created.is_ok());
        created
    }

    async fn conversation(&self, id: ConversationId) -> Result<Option<Conversation>, StoreError> {
        let id = id.0.to_string();
        self.call(move |conn| conversation_by_id(conn, &id)).await
    }

    async fn open_conversation_of(
        &self,
        site_id: &str,
        visitor_id: VisitorId,
    ) -> Result<Option<Conversation>, StoreError> {
        let site_id = site_id.to_string();
        let visitor_id = visitor_id.0.to_string();
        self.call(move |conn| {
            conn.prepare_cached(concat!(
                "SELECT ",
                conversation_columns!(),
                " FROM conversations WHERE site_id = ?1 AND visitor_id = ?2 \
                 AND status = 'open' ORDER BY updated_at DESC, id DESC LIMIT 1"
            ))
            .and_then(|mut stmt| {
                stmt.query_row(params![site_id, visitor_id], read_conversation)
                    .optional()
            })
            .map_err(sqlite_err)?
            .map(conversation_from)
            .transpose()
        })
        .await
    }

    async fn list_conversations(
        &self,
        filter: &ConversationFilter,
    ) -> Result<Vec<Conversation>, StoreError> {
        // The site list as a JSON array (`NULL`: every site), read with `json_each`.
        let sites = filter
            .sites
            .as_ref()
            .map(|sites| serde_json::to_string(sites).unwrap_or_default());
        let status = filter.status.map(ConversationStatus::as_str);
        let limit = i64::from(filter.limit);
        self.call(move |conn| {
            let raws = conn
                .prepare_cached(concat!(
                    "SELECT ",
                    conversation_columns!(),
                    " FROM conversations WHERE (?1 IS NULL OR site_id IN \
                     (SELECT value FROM json_each(?1))) AND (?2 IS NULL OR status = ?2) \
                     ORDER BY updated_at DESC, id DESC LIMIT ?3"
                ))
                .and_then(|mut stmt| {
                    stmt.query_map(params![sites, status, limit], read_conversation)?
                        .collect::<rusqlite::Result<Vec<_>>>()
                })
                .map_err(sqlite_err)?;
            raws.into_iter().map(conversation_from).collect()
        })
        .await
    }

    async fn assign(
        &self,
        id: ConversationId,
        assignee: Option<&Agent>,
    ) -> Result<Conversation, StoreError> {
        if let Some(outbox) = self.outbox.clone() {
            let change = webhooks::ConversationChange::Assign(assignee.cloned());
            return self.change_with_event(outbox, id, change).await;
        }
        let id = id.0.to_string();
        let assignee_id = assignee.map(|a| a.id.clone());
        let assignee_name = assignee.map(|a| a.name.clone());
        self.call(move |conn| {
            let now = now_micros().timestamp_micros();
            conn.prepare_cached(ASSIGN)
                .and_then(|mut stmt| {
                    stmt.query_row(
                        params![id, assignee_id, assignee_name, now],
                        read_conversation,
                    )
                    .optional()
                })
                .map_err(sqlite_err)?
                .map(conversation_from)
                .unwrap_or(Err(StoreError::NotFound("conversation")))
        })
        .await
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
        if let Some(outbox) = self.outbox.clone() {
            if status == ConversationStatus::Closed {
                let change = webhooks::ConversationChange::Status(status);
                return self.change_with_event(outbox, id, change).await;
            }
        }
        let id = id.0.to_string();
        self.call(move |conn| {
            let now = now_micros().timestamp_micros();
            conn.prepare_cached(SET_STATUS)
                .and_then(|mut stmt| {
                    stmt.query_row(params![id, status.as_str(), now], read_conversation)
                        .optional()
                })
                .map_err(sqlite_err)?
                .map(conversation_from)
                .unwrap_or(Err(StoreError::NotFound("conversation")))
        })
        .await
    }

    async fn append_message(&self, message: NewMessage) -> Result<Appended, StoreError> {
        let started = std::time::Instant::now();
        let outbox = self.outbox.clone();
        let appended = self
            .call(move |conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(sqlite_err)?;
                let appended = append_in(&tx, message, outbox.as_deref())?;
                tx.commit().map_err(sqlite_err)?;
                Ok(appended)
            })
            .await;
        if let Ok(Appended::Inserted(_)) = &appended {
            chat_core::metrics::observe_store_commit("embedded", 1, started.elapsed());
            self.wake_outbox(true);
        }
        appended
    }

    async fn open_conversation_count(&self) -> Result<Option<u64>, StoreError> {
        self.call(|conn| {
            conn.query_row(
                "SELECT count(*) FROM conversations WHERE status = 'open'",
                [],
                |row| row.get::<_, i64>(0),
            )
            .map(|n| Some(n.max(0) as u64))
            .map_err(sqlite_err)
        })
        .await
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
        let conversation_id = conversation_id.0.to_string();
        let limit = i64::from(limit);
        self.call(move |conn| {
            let raws = conn
                .prepare_cached(concat!(
                    "SELECT ",
                    message_row_columns!(),
                    " FROM messages WHERE conversation_id = ?1 AND seq > ?2 \
                     ORDER BY seq LIMIT ?3"
                ))
                .and_then(|mut stmt| {
                    stmt.query_map(params![conversation_id, after_seq, limit], read_message)?
                        .collect::<rusqlite::Result<Vec<_>>>()
                })
                .map_err(sqlite_err)?;
            raws.into_iter().map(message_from).collect()
        })
        .await
    }
}
