//! [`PostgresBus`]: the [`Bus`] between gateway processes on Postgres LISTEN/NOTIFY, so that
//! several gateways sharing one database need no other service.
//!
//! Each process keeps two dedicated connections (outside the pool): one `LISTEN`s on the
//! `chat_events` channel, one sends `pg_notify` for what this process committed, many events
//! per round trip. A notification carries the event as JSON when it fits (Postgres limits a
//! payload to 8000 bytes); a larger message travels as its position and receivers read it from
//! the store. When the listening connection breaks, notifications sent meanwhile are lost: after
//! reconnecting, the bus reports [`Inbound::Gap`] and the chat service tells every local session
//! to resume from the store.
//!
//! Messages do not go through the publishing connection: the store sends their notifications
//! with `pg_notify` inside the transaction that commits them ([`CommitNotifier`]), and only
//! when another process listens on the database. Every listening connection carries the
//! application name `chat-gateway-bus:<node>`, so a committing transaction sees its peers in
//! `pg_stat_activity` (an older gateway's listener is recognised by its `LISTEN` query). A
//! process that joins waits, once it listens, for the transactions then in progress to end
//! before it serves anyone: a transaction that looked for peers before the newcomer was
//! visible has committed by then, and the newcomer's sessions read it from the store.

use std::sync::Mutex;
use std::time::Duration;

use chat_core::bus::{Bus, BusEvent, Inbound};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_postgres::AsyncMessage;

use super::tls::{self, MakeRustls};

use crate::StorageError;

/// The notification channel every gateway process listens on.
pub const CHANNEL: &str = "chat_events";
/// Largest event JSON sent inline; Postgres refuses payloads of 8000 bytes or more, and the
/// envelope adds the node id.
const INLINE_LIMIT: usize = 7_800;
/// Events waiting to be published; beyond this they are dropped (receivers recover from the
/// store).
const OUTBOUND_QUEUE: usize = 16_384;
/// Most events sent in one `pg_notify` round trip.
const PUBLISH_BATCH: usize = 512;
/// Prefix of the application name of every listening connection (then the node id).
pub const LISTENER_APP_PREFIX: &str = "chat-gateway-bus:";
/// How long a joining process waits at most for the transactions in progress to end.
const JOIN_WAIT: Duration = Duration::from_secs(30);
/// Sends notifications, in order, only when another process listens on this database: `$1`
/// is the channel, `$2` the payloads, `$3` the caller's own listener's application name. A
/// macro, so that the group commit's write statement can end with the same query.
macro_rules! notify_peers {
    () => {
        concat!(
            "SELECT pg_notify($1, p) FROM unnest($2::text[]) WITH ORDINALITY AS t(p, i) WHERE ",
            $crate::postgres::bus::peers_listen!(),
            " ORDER BY i"
        )
    };
}
pub(crate) use notify_peers;

/// Whether another gateway process listens on this database (`$3`: the caller's own
/// listener's application name).
macro_rules! peers_listen {
    () => {
        "EXISTS (SELECT 1 FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name <> $3 \
         AND (application_name LIKE 'chat-gateway-bus:%' OR query = 'LISTEN chat_events'))"
    };
}
pub(crate) use peers_listen;

/// [`notify_peers!`] as a statement of its own.
pub(crate) const NOTIFY_PEERS: &str = notify_peers!();
/// Wait between reconnection attempts.
const RECONNECT_DELAY: Duration = Duration::from_millis(500);

#[derive(Deserialize)]
struct Envelope {
    /// The publishing node.
    o: String,
    /// The event.
    e: BusEvent,
}

/// The [`Bus`] on Postgres LISTEN/NOTIFY.
///
/// ```no_run
/// # async fn demo() -> Result<(), chat_storage::StorageError> {
/// use chat_storage::postgres::PostgresBus;
/// let bus = PostgresBus::start("postgres://chat@127.0.0.1:5432/chat").await?;
/// # Ok(()) }
/// ```
pub struct PostgresBus {
    node_id: String,
    /// Whether a store sends message notifications inside its commits (see [`CommitNotifier`]).
    store_notifies: std::sync::atomic::AtomicBool,
    outbound: mpsc::Sender<BusEvent>,
    inbound: Mutex<Option<mpsc::Receiver<Inbound>>>,
}

impl std::fmt::Debug for PostgresBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresBus")
            .field("node_id", &self.node_id)
            .finish()
    }
}

impl PostgresBus {
    /// Connects, starts listening, and spawns the bus tasks on the current Tokio runtime.
    /// Returns once this process is listening, so nothing published after that is missed.
    /// TLS follows the URL's `sslmode` and `sslrootcert`, as for [`super::PostgresStore`].
    pub async fn start(url: &str) -> Result<Self, StorageError> {
        Self::start_with_ca(url, None).await
    }

    /// [`PostgresBus::start`], with `ca` as the root CA file (PEM) when the URL has no
    /// `sslrootcert` (the gateway's `CHAT_DATABASE_CA`).
    pub async fn start_with_ca(
        url: &str,
        ca: Option<&std::path::Path>,
    ) -> Result<Self, StorageError> {
        let (mut config, tls) = tls::configure(url, ca)?;
        let node_id = uuid::Uuid::new_v4().simple().to_string();
        config.application_name(format!("{LISTENER_APP_PREFIX}{node_id}"));
        let (inbound_tx, inbound_rx) = mpsc::channel(OUTBOUND_QUEUE);
        let listening = join(&config, &tls).await.map_err(|e| {
            let e = match super::errors::pg_err(e) {
                chat_core::StoreError::Unavailable(message) => {
                    chat_core::StoreError::Unavailable(tls::explain(message, tls.mode()))
                }
                other => other,
            };
            StorageError::Store(e)
        })?;
        tokio::spawn(run_listener(
            config.clone(),
            tls.clone(),
            node_id.clone(),
            inbound_tx,
            listening,
        ));
        let (outbound, outbound_rx) = mpsc::channel(OUTBOUND_QUEUE);
        let mut publishing = config;
        publishing.application_name("chat-gateway-bus-publisher");
        tokio::spawn(run_publisher(publishing, tls, node_id.clone(), outbound_rx));
        Ok(Self {
            store_notifies: std::sync::atomic::AtomicBool::new(false),
            node_id,
            outbound,
            inbound: Mutex::new(Some(inbound_rx)),
        })
    }
}

impl PostgresBus {
    /// What a store needs to send this process's message notifications inside its commits;
    /// from now on the bus tells the chat service that the store does so.
    pub fn commit_notifier(&self) -> CommitNotifier {
        self.store_notifies
            .store(true, std::sync::atomic::Ordering::Release);
        CommitNotifier {
            node_id: self.node_id.clone(),
            listener_app: format!("{LISTENER_APP_PREFIX}{}", self.node_id),
        }
    }
}

/// Sends a process's message notifications inside the transaction that commits the messages,
/// and only when another gateway process listens (see the module's documentation).
#[derive(Debug, Clone)]
pub struct CommitNotifier {
    node_id: String,
    listener_app: String,
}

impl CommitNotifier {
    /// The notification payload for `event`, as the bus's receivers read it.
    pub(crate) fn payload(&self, event: &BusEvent) -> String {
        envelope(&self.node_id, event)
    }

    /// This process's node id, as its notifications' envelopes carry it.
    pub(crate) fn node_id(&self) -> &str {
        &self.node_id
    }

    /// This process's listener's application name (not a peer).
    pub(crate) fn listener_app(&self) -> &str {
        &self.listener_app
    }
}

fn envelope(node_id: &str, event: &BusEvent) -> String {
    let json = event.to_json_within(INLINE_LIMIT);
    format!("{{\"o\":\"{node_id}\",\"e\":{json}}}")
}

impl Bus for PostgresBus {
    fn node_id(&self) -> &str {
        &self.node_id
    }

    fn store_publishes_messages(&self) -> bool {
        self.store_notifies
            .load(std::sync::atomic::Ordering::Acquire)
    }

    fn publish(&self, event: BusEvent) {
        if self.outbound.try_send(event).is_err() {
            tracing::warn!("the bus's outbound queue is full; an event was dropped (other processes recover it from the store)");
        }
    }

    fn take_inbound(&self) -> Option<mpsc::Receiver<Inbound>> {
        self.inbound
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }
}

/// A connection that has run `LISTEN`, with its notifications forwarded to the receiver.
struct Listening {
    _client: tokio_postgres::Client,
    notifications: mpsc::UnboundedReceiver<String>,
}

async fn listen(
    config: &tokio_postgres::Config,
    tls: &MakeRustls,
) -> Result<Listening, tokio_postgres::Error> {
    let (client, mut connection) = config.connect(tls.clone()).await?;
    let (tx, notifications) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        // Driving the connection is what receives notifications; it ends when the connection
        // breaks, which closes `notifications`.
        while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    if tx.send(n.payload().to_string()).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, "the bus's listening connection broke");
                    return;
                }
            }
        }
    });
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    Ok(Listening {
        _client: client,
        notifications,
    })
}

/// Listens, then waits until the transactions in progress now have ended (see the module's
/// documentation): after that, every message committed is either in the store for this
/// process's sessions to read, or notified to it.
async fn join(
    config: &tokio_postgres::Config,
    tls: &MakeRustls,
) -> Result<Listening, tokio_postgres::Error> {
    let listening = listen(config, tls).await?;
    let row = listening
        ._client
        .query_one(
            "SELECT coalesce(array_agg(x::text), '{}'::text[]) \
             FROM pg_snapshot_xip(pg_current_snapshot()) AS x",
            &[],
        )
        .await?;
    let in_progress: Vec<String> = row.try_get(0)?;
    let deadline = tokio::time::Instant::now() + JOIN_WAIT;
    while !in_progress.is_empty() {
        let row = listening
            ._client
            .query_one(
                "SELECT count(*) FROM unnest($1::text[]) AS x \
                 WHERE pg_xact_status(x::xid8) = 'in progress'",
                &[&in_progress],
            )
            .await?;
        let left: i64 = row.try_get(0)?;
        if left == 0 {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(
                left,
                "joined the bus while transactions were still in progress after {JOIN_WAIT:?}"
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(listening)
}

async fn run_listener(
    config: tokio_postgres::Config,
    tls: MakeRustls,
    node_id: String,
    inbound: mpsc::Sender<Inbound>,
    mut listening: Listening,
) {
    loop {
        while let Some(payload) = listening.notifications.recv().await {
            let envelope: Envelope = match serde_json::from_str(&payload) {
                Ok(envelope) => envelope,
                Err(error) => {
                    tracing::warn!(%error, "ignoring an unreadable bus notification");
                    continue;
                }
            };
            if envelope.o == node_id {
                continue;
            }
            if inbound.send(Inbound::Event(envelope.e)).await.is_err() {
                return; // the chat service is gone
            }
        }
        listening = loop {
            tokio::time::sleep(RECONNECT_DELAY).await;
            if inbound.is_closed() {
                return;
            }
            match listen(&config, &tls).await {
                Ok(listening) => break listening,
                Err(error) => {
                    tracing::debug!(%error, "the bus cannot listen yet; retrying");
                }
            }
        };
        tracing::info!("the bus is listening again");
        if inbound.send(Inbound::Gap).await.is_err() {
            return;
        }
    }
}

async fn run_publisher(
    config: tokio_postgres::Config,
    tls: MakeRustls,
    node_id: String,
    mut outbound: mpsc::Receiver<BusEvent>,
) {
    let listener_app = format!("{LISTENER_APP_PREFIX}{node_id}");
    let mut client: Option<(tokio_postgres::Client, tokio_postgres::Statement)> = None;
    while let Some(first) = outbound.recv().await {
        let mut payloads = Vec::with_capacity(16);
        let mut next = Some(first);
        while let Some(event) = next {
            payloads.push(envelope(&node_id, &event));
            next = if payloads.len() < PUBLISH_BATCH {
                outbound.try_recv().ok()
            } else {
                None
            };
        }
        for attempt in 1..=3 {
            if client.as_ref().is_none_or(|(c, _)| c.is_closed()) {
                client = match config.connect(tls.clone()).await {
                    Ok((c, connection)) => {
                        tokio::spawn(async move {
                            let _ = connection.await;
                        });
                        // Prepared once per connection; nothing is sent when no other process
                        // listens.
                        match c.prepare(NOTIFY_PEERS).await {
                            Ok(stmt) => Some((c, stmt)),
                            Err(error) => {
                                tracing::debug!(%error, attempt, "the bus cannot prepare its notification");
                                None
                            }
                        }
                    }
                    Err(error) => {
                        tracing::debug!(%error, attempt, "the bus cannot connect to publish");
                        None
                    }
                };
            }
            if let Some((c, stmt)) = &client {
                let sent = c.execute(stmt, &[&CHANNEL, &payloads, &listener_app]).await;
                match sent {
                    Ok(_) => break,
                    Err(error) => {
                        tracing::debug!(%error, attempt, "publishing on the bus failed");
                        client = None;
                    }
                }
            }
            if attempt == 3 {
                tracing::warn!(
                    events = payloads.len(),
                    "the bus could not publish; other processes recover these events from the store"
                );
            } else {
                tokio::time::sleep(RECONNECT_DELAY).await;
            }
        }
    }
}
