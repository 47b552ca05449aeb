//! Conversations in the embedded store: creating one (with its `conversation.created` event),
//! reading one, a visitor's open one, a filtered list or the count of the open ones, and
//! assigning or changing the status of one (with its webhook event when the site wants one).

use std::sync::Arc;

use chat_core::model::{Agent, Conversation, ConversationId, ConversationStatus, VisitorId};
use chat_core::store::ConversationFilter;
use chat_core::webhook::{NewWebhookEvent, WebhookEventKind, WebhookOutbox};
use chat_core::StoreError;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::errors::{constraint, sqlite_err};
use super::rows::{conversation_from, read_conversation};
use super::{webhooks, EmbeddedStore};
use crate::time::now_micros;

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

/// [`chat_core::store::Store::create_conversation`].
pub(super) async fn create(
    store: &EmbeddedStore,
    site_id: &str,
    visitor_id: VisitorId,
) -> Result<Conversation, StoreError> {
    let id = ConversationId::new_random().0.to_string();
    let outbox = store.outbox.clone().filter(|outbox| outbox.wants(site_id));
    let wrote_event = outbox.is_some();
    let site_id = site_id.to_string();
    let visitor_id = visitor_id.0.to_string();
    let created = store
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
                let event =
                    NewWebhookEvent::conversation(WebhookEventKind::ConversationCreated, &created);
                webhooks::insert(&tx, &[event])?;
            }
            tx.commit().map_err(sqlite_err)?;
            Ok(created)
        })
        .await;
    store.wake_outbox(wrote_event && created.is_ok());
    created
}

/// [`chat_core::store::Store::conversation`].
pub(super) fn get(
    conn: &mut Connection,
    id: ConversationId,
) -> Result<Option<Conversation>, StoreError> {
    let id = id.0.to_string();
    conn.prepare_cached(concat!(
        "SELECT ",
        conversation_columns!(),
        " FROM conversations WHERE id = ?1"
    ))
    .and_then(|mut stmt| stmt.query_row([&id], read_conversation).optional())
    .map_err(sqlite_err)?
    .map(conversation_from)
    .transpose()
}

/// [`chat_core::store::Store::open_conversation_of`].
pub(super) fn open_of(
    conn: &mut Connection,
    site_id: &str,
    visitor_id: VisitorId,
) -> Result<Option<Conversation>, StoreError> {
    let visitor_id = visitor_id.0.to_string();
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
}

/// [`chat_core::store::Store::list_conversations`].
pub(super) fn list(
    conn: &mut Connection,
    filter: &ConversationFilter,
) -> Result<Vec<Conversation>, StoreError> {
    // The site list as a JSON array (`NULL`: every site), read with `json_each`.
    let sites = filter
        .sites
        .as_ref()
        .map(|sites| serde_json::to_string(sites).unwrap_or_default());
    let status = filter.status.map(ConversationStatus::as_str);
    let limit = i64::from(filter.limit);
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
}

/// [`chat_core::store::Store::open_conversation_count`].
pub(super) fn count_open(conn: &mut Connection) -> Result<Option<u64>, StoreError> {
    conn.query_row(
        "SELECT count(*) FROM conversations WHERE status = 'open'",
        [],
        |row| row.get::<_, i64>(0),
    )
    .map(|n| Some(n.max(0) as u64))
    .map_err(sqlite_err)
}

/// [`chat_core::store::Store::assign`].
pub(super) async fn assign(
    store: &EmbeddedStore,
    id: ConversationId,
    assignee: Option<&Agent>,
) -> Result<Conversation, StoreError> {
    if let Some(outbox) = store.outbox.clone() {
        let change = ConversationChange::Assign(assignee.cloned());
        return change_with_event(store, outbox, id, change).await;
    }
    let id = id.0.to_string();
    let assignee_id = assignee.map(|a| a.id.clone());
    let assignee_name = assignee.map(|a| a.name.clone());
    store
        .call(move |conn| {
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

/// [`chat_core::store::Store::set_status`].
pub(super) async fn set_status(
    store: &EmbeddedStore,
    id: ConversationId,
    status: ConversationStatus,
) -> Result<Conversation, StoreError> {
    if let Some(outbox) = store.outbox.clone() {
        if status == ConversationStatus::Closed {
            let change = ConversationChange::Status(status);
            return change_with_event(store, outbox, id, change).await;
        }
    }
    let id = id.0.to_string();
    store
        .call(move |conn| {
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

/// An assignment or a status change with its webhook event, in one transaction.
async fn change_with_event(
    store: &EmbeddedStore,
    outbox: Arc<WebhookOutbox>,
    id: ConversationId,
    change: ConversationChange,
) -> Result<Conversation, StoreError> {
    let id = id.0.to_string();
    let changed = store
        .call(move |conn| change_conversation(conn, &outbox, &id, change))
        .await?;
    match changed {
        Some((conversation, wrote_event)) => {
            store.wake_outbox(wrote_event);
            Ok(conversation)
        }
        None => Err(StoreError::NotFound("conversation")),
    }
}

/// A conversation update that may produce an event.
enum ConversationChange {
    /// Sets the assignee; `conversation.assigned` when it differs from the previous one.
    Assign(Option<Agent>),
    /// Sets the status; `conversation.closed` when it becomes closed.
    Status(ConversationStatus),
}

/// Runs `change` on conversation `id` in one transaction with its event, when `outbox` wants
/// one; `Ok(None)`: no such conversation. The `bool`: an event was written.
fn change_conversation(
    conn: &mut Connection,
    outbox: &WebhookOutbox,
    id: &str,
    change: ConversationChange,
) -> Result<Option<(Conversation, bool)>, StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sqlite_err)?;
    let before: Option<(String, Option<String>)> = tx
        .prepare_cached("SELECT status, assignee_id FROM conversations WHERE id = ?1")
        .and_then(|mut stmt| {
            stmt.query_row([id], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()
        })
        .map_err(sqlite_err)?;
    let Some((old_status, old_assignee)) = before else {
        return Ok(None);
    };
    let now = now_micros().timestamp_micros();
    let (raw, kind) = match change {
        ConversationChange::Assign(assignee) => {
            let raw = tx
                .prepare_cached(ASSIGN)
                .and_then(|mut stmt| {
                    stmt.query_row(
                        params![
                            id,
                            assignee.as_ref().map(|a| a.id.as_str()),
                            assignee.as_ref().map(|a| a.name.as_str()),
                            now
                        ],
                        read_conversation,
                    )
                })
                .map_err(sqlite_err)?;
            let changed = old_assignee.as_deref() != assignee.as_ref().map(|a| a.id.as_str());
            (
                raw,
                changed.then_some(WebhookEventKind::ConversationAssigned),
            )
        }
        ConversationChange::Status(status) => {
            let raw = tx
                .prepare_cached(SET_STATUS)
                .and_then(|mut stmt| {
                    stmt.query_row(params![id, status.as_str(), now], read_conversation)
                })
                .map_err(sqlite_err)?;
            let closed = status == ConversationStatus::Closed && old_status != status.as_str();
            (raw, closed.then_some(WebhookEventKind::ConversationClosed))
        }
    };
    let conversation = conversation_from(raw)?;
    let event = kind.and_then(|kind| outbox.conversation_event(kind, &conversation));
    if let Some(event) = &event {
        webhooks::insert(&tx, std::slice::from_ref(event))?;
    }
    tx.commit().map_err(sqlite_err)?;
    Ok(Some((conversation, event.is_some())))
}
