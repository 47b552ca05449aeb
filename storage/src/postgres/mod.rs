//! [`PostgresStore`]: the [`Store`] on Postgres, through a `deadpool-postgres` pool.
//!
//! The pool is lazy: [`PostgresStore::connect`] does no I/O, connections are made on demand,
//! broken ones are discarded, and every wait (for a pool slot, a new connection, a recycled
//! one, a query) is bounded, so while Postgres is down calls fail fast with
//! [`StoreError::Unavailable`] and the store recovers by itself once Postgres is back.

mod agents;
mod append;
mod attachments;
mod bus;
mod canned;
mod conninfo;
mod errors;
mod import;
mod read_state;
mod rows;
mod search;
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
use chat_core::bus::BusEvent;
use chat_core::model::{
    Agent, Conversation, ConversationId, ConversationStatus, Message, MessageKind, NewMessage,
    Visitor, VisitorId,
};
use chat_core::store::{Appended, ConversationFilter, Imported, ImportedMessage, Store};
use chat_core::webhook::{NewWebhookEvent, OutboxDepth, WebhookEvent, WebhookOutbox};
use chat_core::StoreError;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio_postgres::error::SqlState;

use crate::migrations::{self, MigrationInfo, MigrationReport};
use crate::StorageError;
#[cfg(feature = "test-support")]
pub(crate) use errors::describe as describe_error;
use errors::{pg_err, pool_err, unique_violation};
use rows::{conversation_from_row, message_from_row};

/// How long to wait for a pool slot, a new connection or the recycling of an idle one.
const POOL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one store operation (all its queries) may take before it fails as unavailable.
const OP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long [`Store::health`] may take.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);
/// Key of the advisory lock that serializes migrations across processes ("chatmigr").
const MIGRATION_LOCK_KEY: i64 = 0x6368_6174_6d69_6772;

const SELECT_DUPLICATE: &str = concat!(
    "SELECT ",
    message_row_columns!(),
    " FROM messages WHERE conversation_id = $1 AND client_msg_id = $2"
);

const CREATE_CONVERSATION: &str = concat!(
    "INSERT INTO conversations (id, site_id, visitor_id, status, last_seq, created_at, \
     updated_at) VALUES ($1, $2, $3, 'open', 0, now(), now()) RETURNING ",
    conversation_columns!()
);

/// A failed conversation insert: an unknown visitor is [`StoreError::NotFound`].
fn create_error(e: tokio_postgres::Error) -> StoreError {
    if e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION) {
        StoreError::NotFound("visitor")
    } else {
        pg_err(e)
    }
}

/// Sets a conversation's assignee (`$2` id, `$3` name).
const ASSIGN: &str = concat!(
    "UPDATE conversations SET assignee_id = $2, assignee_name = $3, \
     updated_at = clock_timestamp() WHERE id = $1 RETURNING ",
    conversation_columns!()
);

/// Sets a conversation's status (`$2`).
const SET_STATUS: &str = concat!(
    "UPDATE conversations SET status = $2, updated_at = clock_timestamp() \
     WHERE id = $1 RETURNING ",
    conversation_columns!()
);

/// The visitors of conversations (`$1`: their ids), for bus notifications.
const SELECT_VISITORS: &str =
    "SELECT id, visitor_id, site_id FROM conversations WHERE id = ANY($1)";

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
                // error is additionally dropped from the pool (see `finish`).
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

    /// Sends the bus notification of every message this store commits inside the committing
    /// transaction, and only when another gateway process listens (see [`PostgresBus`]).
    pub fn notify_commits(mut self, notifier: CommitNotifier) -> Self {
        self.notifier = Some(Arc::new(notifier));
        self
    }

    /// The schema version this binary needs.
    pub fn expected_schema_version() -> i64 {
        migrations::latest(migrations::POSTGRES)
    }

    /// Applies the migrations the database lacks, each in its own transaction, and records
    /// them in `chat_schema_migrations(version, name, applied_at)`. A Postgres advisory lock
    /// serializes concurrent runs (two gateways migrating at once are safe). Idempotent.
    pub async fn migrate(&self) -> Result<MigrationReport, StorageError> {
        let mut client = self.client().await?;
        let mut applied = Vec::new();
        for m in migrations::POSTGRES {
            let fail = |message: String| StorageError::Migration {
                version: m.version,
                name: m.name,
                message,
            };
            let tx = client.transaction().await.map_err(pg_err)?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK_KEY])
                .await
                .map_err(pg_err)?;
            tx.batch_execute(
                "CREATE TABLE IF NOT EXISTS chat_schema_migrations (
                     version    bigint      PRIMARY KEY,
                     name       text        NOT NULL,
                     applied_at timestamptz NOT NULL DEFAULT now()
                 )",
            )
            .await
            .map_err(pg_err)?;
            let done: bool = tx
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM chat_schema_migrations WHERE version = $1)",
                    &[&m.version],
                )
                .await
                .map_err(pg_err)?
                .try_get(0)
                .map_err(pg_err)?;
            if done {
                tx.commit().await.map_err(pg_err)?;
                continue;
            }
            tx.batch_execute(m.sql)
                .await
                .map_err(|e| fail(errors::describe(&e)))?;
            tx.execute(
                "INSERT INTO chat_schema_migrations (version, name, applied_at) \
                 VALUES ($1, $2, clock_timestamp())",
                &[&m.version, &m.name],
            )
            .await
            .map_err(|e| fail(errors::describe(&e)))?;
            tx.commit().await.map_err(|e| fail(errors::describe(&e)))?;
            tracing::info!(
                version = m.version,
                name = m.name,
                "applied Postgres migration"
            );
            applied.push(MigrationInfo {
                version: m.version,
                name: m.name,
            });
        }
        // On the same connection: a pool of one must not wait for a second.
        let version = read_schema_version(&client).await?;
        Ok(MigrationReport { applied, version })
    }

    /// The schema version recorded in the database: 0 when it was never migrated.
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        let client = self.client().await?;
        let result = tokio::time::timeout(OP_TIMEOUT, read_schema_version(&client)).await;
        finish(client, result)
    }

    /// Succeeds when the database schema is at least at the version this binary needs;
    /// otherwise [`StoreError::NotMigrated`] (whose message tells the operator to run
    /// `chat-gateway migrate`). A newer schema is accepted: migrations are additive, so an
    /// older gateway keeps working during a rolling upgrade.
    pub async fn check_schema(&self) -> Result<(), StoreError> {
        let found = self.schema_version().await?;
        let expected = Self::expected_schema_version();
        if found < expected {
            return Err(StoreError::NotMigrated { found, expected });
        }
        if found > expected {
            tracing::warn!(
                found,
                expected,
                "the database schema is newer than this gateway's; continuing"
            );
        }
        Ok(())
    }

    async fn client(&self) -> Result<Object, StoreError> {
        self.pool.get().await.map_err(|e| match pool_err(e) {
            StorageError::Store(StoreError::Unavailable(message)) => {
                StoreError::Unavailable(tls::explain(message, self.ssl_mode))
            }
            StorageError::Store(e) => e,
            other => StoreError::Other(other.to_string()),
        })
    }
}

/// The schema version recorded in the database: 0 when it was never migrated.
async fn read_schema_version(client: &tokio_postgres::Client) -> Result<i64, StoreError> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('chat_schema_migrations') IS NOT NULL",
            &[],
        )
        .await
        .map_err(pg_err)?
        .try_get(0)
        .map_err(pg_err)?;
    if !exists {
        return Ok(0);
    }
    client
        .query_one(
            "SELECT coalesce(max(version), 0)::bigint FROM chat_schema_migrations",
            &[],
        )
        .await
        .map_err(pg_err)?
        .try_get(0)
        .map_err(pg_err)
}

/// An operation's error, as far as the pool cares: whether the connection is to be discarded.
trait OperationError {
    /// The connection failed (its error, not the query's): do not reuse it.
    fn is_unavailable(&self) -> bool;
    /// The error of an operation that did not finish in time.
    fn timed_out() -> Self;
}

impl OperationError for StoreError {
    fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }

    fn timed_out() -> Self {
        StoreError::Unavailable("the database did not answer in time".into())
    }
}

/// Ends an operation on a pooled connection: a timed-out operation, or one that failed with a
/// connection error, takes its connection out of the pool instead of returning it.
fn finish<T, E: OperationError>(
    client: Object,
    result: Result<Result<T, E>, tokio::time::error::Elapsed>,
) -> Result<T, E> {
    match result {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => {
            if e.is_unavailable() || client.is_closed() {
                drop(Object::take(client));
            }
            Err(e)
        }
        Err(_) => {
            drop(Object::take(client));
            Err(E::timed_out())
        }
    }
}

/// Runs `$body` with a pooled connection bound to `$client`, bounded by `$timeout`.
macro_rules! with_client {
    ($self:ident, $timeout:expr, |$client:ident| $body:expr) => {{
        #[allow(unused_mut)]
        let mut $client = $self.client().await?;
        let result = tokio::time::timeout($timeout, async { $body }).await;
        finish($client, result)
    }};
}

impl PostgresStore {
    /// An assignment or a status change with its webhook event, in one transaction.
    async fn change_with_event(
        &self,
        outbox: &WebhookOutbox,
        id: ConversationId,
        change: webhooks::ConversationChange<'_>,
    ) -> Result<Conversation, StoreError> {
        let changed = with_client!(self, OP_TIMEOUT, |client| {
            webhooks::change_conversation(&mut client, outbox, id, change).await
        })?;
        match changed {
            Some((conversation, wrote_event)) => {
                if wrote_event {
                    outbox.committed();
                }
                Ok(conversation)
            }
            None => Err(StoreError::NotFound("conversation")),
        }
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
        with_client!(self, HEALTH_TIMEOUT, |client| {
            let row = client
                .query_one(
                    "SELECT count(*) FROM conversations WHERE status = 'open'",
                    &[],
                )
                .await
                .map_err(pg_err)?;
            let n: i64 = row.try_get(0).map_err(pg_err)?;
            Ok(Some(n.max(0) as u64))
        })
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
        let id = ConversationId::new_random();
        let outbox = self.outbox_for(site_id);
        let created = with_client!(self, OP_TIMEOUT, |client| {
            let stmt = client
                .prepare_cached(CREATE_CONVERSATION)
                .await
                .map_err(pg_err)?;
            if outbox.is_none() {
                return match client
                    .query_one(&stmt, &[&id.0, &site_id, &visitor_id.0])
                    .await
                {
                    Ok(row) => conversation_from_row(&row),
                    Err(e) => Err(create_error(e)),
                };
            }
            // With its `conversation.created` event, in one transaction.
            let tx = client.transaction().await.map_err(pg_err)?;
            let row = tx
                .query_one(&stmt, &[&id.0, &site_id, &visitor_id.0])
                .await
                .map_err(create_error)?;
            let created = conversation_from_row(&row)?;
            let event = NewWebhookEvent::conversation(
                chat_core::webhook::WebhookEventKind::ConversationCreated,
                &created,
            );
            webhooks::insert(&tx, &[event]).await.map_err(pg_err)?;
            tx.commit().await.map_err(pg_err)?;
            Ok(created)
        });
        if created.is_ok() {
            if let Some(outbox) = outbox {
                outbox.committed();
            }
        }
        created
    }

    async fn conversation(&self, id: ConversationId) -> Result<Option<Conversation>, StoreError> {
        with_client!(self, OP_TIMEOUT, |client| {
            let stmt = client
                .prepare_cached(concat!(
                    "SELECT ",
                    conversation_columns!(),
                    " FROM conversations WHERE id = $1"
                ))
                .await
                .map_err(pg_err)?;
            let row = client.query_opt(&stmt, &[&id.0]).await.map_err(pg_err)?;
            row.as_ref().map(conversation_from_row).transpose()
        })
    }

    async fn open_conversation_of(
        &self,
        site_id: &str,
        visitor_id: VisitorId,
    ) -> Result<Option<Conversation>, StoreError> {
        with_client!(self, OP_TIMEOUT, |client| {
            let stmt = client
                .prepare_cached(concat!(
                    "SELECT ",
                    conversation_columns!(),
                    " FROM conversations WHERE site_id = $1 AND visitor_id = $2 \
                     AND status = 'open' ORDER BY updated_at DESC, id DESC LIMIT 1"
                ))
                .await
                .map_err(pg_err)?;
            let row = client
                .query_opt(&stmt, &[&site_id, &visitor_id.0])
                .await
                .map_err(pg_err)?;
            row.as_ref().map(conversation_from_row).transpose()
        })
    }

    async fn list_conversations(
        &self,
        filter: &ConversationFilter,
    ) -> Result<Vec<Conversation>, StoreError> {
        let status = filter.status.map(ConversationStatus::as_str);
        let limit = i64::from(filter.limit);
        with_client!(self, OP_TIMEOUT, |client| {
            // Two statements rather than one with `$1 IS NULL OR …`: each gets a plan that
            // uses the (site_id, activity_minute) index where it can. Ordering by the minute
            // first is the same order as by `updated_at` (migration 0004).
            let rows = match &filter.sites {
                Some(sites) => {
                    let stmt = client
                        .prepare_cached(concat!(
                            "SELECT ",
                            conversation_columns!(),
                            " FROM conversations WHERE site_id = ANY($1) \
                             AND ($2::text IS NULL OR status = $2::text) \
                             ORDER BY activity_minute DESC, updated_at DESC, id DESC LIMIT $3"
                        ))
                        .await
                        .map_err(pg_err)?;
                    client.query(&stmt, &[sites, &status, &limit]).await
                }
                None => {
                    let stmt = client
                        .prepare_cached(concat!(
                            "SELECT ",
                            conversation_columns!(),
                            " FROM conversations WHERE ($1::text IS NULL OR status = $1::text) \
                             ORDER BY activity_minute DESC, updated_at DESC, id DESC LIMIT $2"
                        ))
                        .await
                        .map_err(pg_err)?;
                    client.query(&stmt, &[&status, &limit]).await
                }
            }
            .map_err(pg_err)?;
            rows.iter().map(conversation_from_row).collect()
        })
    }

    async fn assign(
        &self,
        id: ConversationId,
        assignee: Option<&Agent>,
    ) -> Result<Conversation, StoreError> {
        if let Some(outbox) = &self.outbox {
            let change = webhooks::ConversationChange::Assign(assignee);
            return self.change_with_event(outbox, id, change).await;
        }
        let assignee_id = assignee.map(|a| a.id.as_str());
        let assignee_name = assignee.map(|a| a.name.as_str());
        with_client!(self, OP_TIMEOUT, |client| {
            let stmt = client.prepare_cached(ASSIGN).await.map_err(pg_err)?;
            let row = client
                .query_opt(&stmt, &[&id.0, &assignee_id, &assignee_name])
                .await
                .map_err(pg_err)?;
            match row {
                Some(row) => conversation_from_row(&row),
                None => Err(StoreError::NotFound("conversation")),
            }
        })
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
        if let Some(outbox) = &self.outbox {
            if status == ConversationStatus::Closed {
                let change = webhooks::ConversationChange::Status(status);
                return self.change_with_event(outbox, id, change).await;
            }
        }
        with_client!(self, OP_TIMEOUT, |client| {
            let stmt = client.prepare_cached(SET_STATUS).await.map_err(pg_err)?;
            let row = client
                .query_opt(&stmt, &[&id.0, &status.as_str()])
                .await
                .map_err(pg_err)?;
            match row {
                Some(row) => conversation_from_row(&row),
                None => Err(StoreError::NotFound("conversation")),
            }
        })
    }

    async fn append_message(&self, message: NewMessage) -> Result<Appended, StoreError> {
        let conversation_id = message.conversation_id.0;
        let started = std::time::Instant::now();
        with_client!(self, OP_TIMEOUT, |client| {
            // A retry of a committed message is answered without a transaction or a lock.
            if let Some(client_msg_id) = &message.client_msg_id {
                let stmt = client
                    .prepare_cached(SELECT_DUPLICATE)
                    .await
                    .map_err(pg_err)?;
                if let Some(row) = client
                    .query_opt(&stmt, &[&conversation_id, client_msg_id])
                    .await
                    .map_err(pg_err)?
                {
                    return Ok(Appended::Duplicate(message_from_row(&row)?));
                }
            }
            let attachment = crate::message_attachment::to_column(message.attachment.as_deref())?;
            let tx = client.transaction().await.map_err(pg_err)?;
            // The row lock taken here serializes concurrent appends to one conversation.
            let bump = tx
                .prepare_cached(
                    "UPDATE conversations SET last_seq = last_seq + 1, \
                     visitor_last_seq = CASE WHEN $2 THEN coalesce(visitor_last_seq, last_seq) \
                     END, updated_at = clock_timestamp() WHERE id = $1 \
                     RETURNING last_seq, updated_at, site_id, visitor_id",
                )
                .await
                .map_err(pg_err)?;
            let hidden = message.kind == MessageKind::Note;
            let Some(row) = tx
                .query_opt(&bump, &[&conversation_id, &hidden])
                .await
                .map_err(pg_err)?
            else {
                return Err(StoreError::NotFound("conversation"));
            };
            let seq: i64 = row.try_get(0).map_err(pg_err)?;
            let created_at: chrono::DateTime<chrono::Utc> = row.try_get(1).map_err(pg_err)?;
            let site_id: &str = row.try_get(2).map_err(pg_err)?;
            let outbox = self.outbox_for(site_id);
            let visitor_id = VisitorId(row.try_get(3).map_err(pg_err)?);
            let insert = tx
                .prepare_cached(
                    "INSERT INTO messages (conversation_id, seq, client_msg_id, sender_role, \
                     sender_id, sender_name, body, created_at, kind, attachment) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .await
                .map_err(pg_err)?;
            let inserted = tx
                .execute(
                    &insert,
                    &[
                        &conversation_id,
                        &seq,
                        &message.client_msg_id,
                        &message.sender.role.as_str(),
                        &message.sender.id,
                        &message.sender.name,
                        &message.body,
                        &created_at,
                        &message.kind.as_str(),
                        &attachment,
                    ],
                )
                .await;
            match inserted {
                Ok(_) => {
                    if let Some(notifier) = &self.notifier {
                        let visitor = tx.prepare_cached(SELECT_VISITORS).await.map_err(pg_err)?;
                        let rows = tx
                            .query(&visitor, &[&vec![conversation_id]])
                            .await
                            .map_err(pg_err)?;
                        let Some(visitor_id) = rows.first() else {
                            return Err(StoreError::NotFound("conversation"));
                        };
                        let site_id: String = visitor_id.try_get(2).map_err(pg_err)?;
                        let visitor_id = VisitorId(visitor_id.try_get(1).map_err(pg_err)?);
                        let event = BusEvent::committed(
                            visitor_id,
                            site_id,
                            Message {
                                attachment: message.attachment.clone(),
                                conversation_id: message.conversation_id,
                                seq,
                                kind: message.kind,
                                client_msg_id: message.client_msg_id.clone(),
                                sender: message.sender.clone(),
                                body: message.body.clone(),
                                created_at,
                            },
                        );
                        let notify = tx.prepare_cached(bus::NOTIFY_PEERS).await.map_err(pg_err)?;
                        tx.execute(
                            &notify,
                            &[
                                &bus::CHANNEL,
                                &vec![notifier.payload(&event)],
                                &notifier.listener_app(),
                            ],
                        )
                        .await
                        .map_err(pg_err)?;
                    }
                    let committed = Message {
                        attachment: message.attachment.clone(),
                        conversation_id: message.conversation_id,
                        seq,
                        kind: message.kind,
                        client_msg_id: message.client_msg_id.clone(),
                        sender: message.sender.clone(),
                        body: message.body.clone(),
                        created_at,
                    };
                    if outbox.is_some() {
                        let event = NewWebhookEvent::message(&committed, site_id, visitor_id);
                        webhooks::insert(&tx, &[event]).await.map_err(pg_err)?;
                    }
                    tx.commit().await.map_err(pg_err)?;
                    if let Some(outbox) = outbox {
                        outbox.committed();
                    }
                    chat_core::metrics::observe_store_commit("postgres", 1, started.elapsed());
                    Ok(Appended::Inserted(committed))
                }
                Err(e) if unique_violation(&e) && message.client_msg_id.is_some() => {
                    // A concurrent append with the same client_msg_id committed first.
                    tx.rollback().await.map_err(pg_err)?;
                    let stmt = client
                        .prepare_cached(SELECT_DUPLICATE)
                        .await
                        .map_err(pg_err)?;
                    let row = client
                        .query_opt(&stmt, &[&conversation_id, &message.client_msg_id])
                        .await
                        .map_err(pg_err)?;
                    match row {
                        Some(row) => Ok(Appended::Duplicate(message_from_row(&row)?)),
                        None => Err(StoreError::Other(format!(
                            "unique violation on append without a visible original: {}",
                            errors::describe(&e)
                        ))),
                    }
                }
                Err(e) => Err(pg_err(e)),
            }
        })
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
        with_client!(self, OP_TIMEOUT, |client| {
            let tx = client.transaction().await.map_err(pg_err)?;
            let results = import::import_in(&tx, messages).await?;
            tx.commit().await.map_err(pg_err)?;
            Ok(results)
        })
    }

    async fn messages_after(
        &self,
        conversation_id: ConversationId,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<Message>, StoreError> {
        let limit = i64::from(limit);
        with_client!(self, OP_TIMEOUT, |client| {
            let stmt = client
                .prepare_cached(concat!(
                    "SELECT ",
                    message_row_columns!(),
                    " FROM messages WHERE conversation_id = $1 AND seq > $2 \
                     ORDER BY seq LIMIT $3"
                ))
                .await
                .map_err(pg_err)?;
            let rows = client
                .query(&stmt, &[&conversation_id.0, &after_seq, &limit])
                .await
                .map_err(pg_err)?;
            rows.iter().map(message_from_row).collect()
        })
    }
}
