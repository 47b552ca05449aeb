//! Conversations on Postgres: creating one (with its `conversation.created` event), reading one,
//! a visitor's open one, a filtered list or the count of the open ones, and assigning or
//! changing the status of one (with its webhook event when the site wants one).

use chat_core::model::{Agent, Conversation, ConversationId, ConversationStatus, VisitorId};
use chat_core::store::ConversationFilter;
use chat_core::webhook::{NewWebhookEvent, WebhookEventKind, WebhookOutbox};
use chat_core::StoreError;
use deadpool_postgres::Object;
use tokio_postgres::error::SqlState;

use super::errors::pg_err;
use super::rows::conversation_from_row;
use super::{webhooks, PostgresStore, OP_TIMEOUT};

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

/// [`chat_core::store::Store::create_conversation`].
pub(super) async fn create(
    store: &PostgresStore,
    site_id: &str,
    visitor_id: VisitorId,
) -> Result<Conversation, StoreError> {
    let id = ConversationId::new_random();
    let outbox = store.outbox_for(site_id);
    let created = with_client!(store, OP_TIMEOUT, |client| {
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
        let event = NewWebhookEvent::conversation(WebhookEventKind::ConversationCreated, &created);
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

/// [`chat_core::store::Store::conversation`].
pub(super) async fn get(
    client: &Object,
    id: ConversationId,
) -> Result<Option<Conversation>, StoreError> {
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
}

/// [`chat_core::store::Store::open_conversation_of`].
pub(super) async fn open_of(
    client: &Object,
    site_id: &str,
    visitor_id: VisitorId,
) -> Result<Option<Conversation>, StoreError> {
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
}

/// [`chat_core::store::Store::list_conversations`].
pub(super) async fn list(
    client: &Object,
    filter: &ConversationFilter,
) -> Result<Vec<Conversation>, StoreError> {
    let status = filter.status.map(ConversationStatus::as_str);
    let limit = i64::from(filter.limit);
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
}

/// [`chat_core::store::Store::open_conversation_count`].
pub(super) async fn count_open(client: &Object) -> Result<Option<u64>, StoreError> {
    let row = client
        .query_one(
            "SELECT count(*) FROM conversations WHERE status = 'open'",
            &[],
        )
        .await
        .map_err(pg_err)?;
    let n: i64 = row.try_get(0).map_err(pg_err)?;
    Ok(Some(n.max(0) as u64))
}

/// [`chat_core::store::Store::assign`].
pub(super) async fn assign(
    store: &PostgresStore,
    id: ConversationId,
    assignee: Option<&Agent>,
) -> Result<Conversation, StoreError> {
    if let Some(outbox) = &store.outbox {
        let change = ConversationChange::Assign(assignee);
        return change_with_event(store, outbox, id, change).await;
    }
    let assignee_id = assignee.map(|a| a.id.as_str());
    let assignee_name = assignee.map(|a| a.name.as_str());
    with_client!(store, OP_TIMEOUT, |client| {
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

/// [`chat_core::store::Store::set_status`].
pub(super) async fn set_status(
    store: &PostgresStore,
    id: ConversationId,
    status: ConversationStatus,
) -> Result<Conversation, StoreError> {
    if let Some(outbox) = &store.outbox {
        if status == ConversationStatus::Closed {
            let change = ConversationChange::Status(status);
            return change_with_event(store, outbox, id, change).await;
        }
    }
    with_client!(store, OP_TIMEOUT, |client| {
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

/// An assignment or a status change with its webhook event, in one transaction.
async fn change_with_event(
    store: &PostgresStore,
    outbox: &WebhookOutbox,
    id: ConversationId,
    change: ConversationChange<'_>,
) -> Result<Conversation, StoreError> {
    let changed = with_client!(store, OP_TIMEOUT, |client| {
        change_conversation(&mut client, outbox, id, change).await
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

/// A conversation update that may produce an event: the statement returning the conversation
/// as updated, and the columns it read before (locked), so the event is written only when the
/// fact changed something.
enum ConversationChange<'a> {
    /// Sets the assignee; `conversation.assigned` when it differs from the previous one.
    Assign(Option<&'a Agent>),
    /// Sets the status; `conversation.closed` when it becomes closed.
    Status(ConversationStatus),
}

/// Runs `change` on conversation `id` in a transaction that also writes its event when
/// `outbox` wants one; `Ok(None)`: no such conversation.
async fn change_conversation(
    client: &mut Object,
    outbox: &WebhookOutbox,
    id: ConversationId,
    change: ConversationChange<'_>,
) -> Result<Option<(Conversation, bool)>, StoreError> {
    let tx = client.transaction().await.map_err(pg_err)?;
    let before = tx
        .prepare_cached("SELECT status, assignee_id FROM conversations WHERE id = $1 FOR UPDATE")
        .await
        .map_err(pg_err)?;
    let Some(before) = tx.query_opt(&before, &[&id.0]).await.map_err(pg_err)? else {
        return Ok(None);
    };
    let old_status: String = before.try_get(0).map_err(pg_err)?;
    let old_assignee: Option<String> = before.try_get(1).map_err(pg_err)?;
    let (row, kind) = match change {
        ConversationChange::Assign(assignee) => {
            let stmt = tx.prepare_cached(ASSIGN).await.map_err(pg_err)?;
            let assignee_id = assignee.map(|a| a.id.as_str());
            let assignee_name = assignee.map(|a| a.name.as_str());
            let row = tx
                .query_one(&stmt, &[&id.0, &assignee_id, &assignee_name])
                .await
                .map_err(pg_err)?;
            let changed = old_assignee.as_deref() != assignee_id;
            (
                row,
                changed.then_some(WebhookEventKind::ConversationAssigned),
            )
        }
        ConversationChange::Status(status) => {
            let stmt = tx.prepare_cached(SET_STATUS).await.map_err(pg_err)?;
            let row = tx
                .query_one(&stmt, &[&id.0, &status.as_str()])
                .await
                .map_err(pg_err)?;
            let closed = status == ConversationStatus::Closed && old_status != status.as_str();
            (row, closed.then_some(WebhookEventKind::ConversationClosed))
        }
    };
    let conversation = conversation_from_row(&row)?;
    let event = kind.and_then(|kind| outbox.conversation_event(kind, &conversation));
    if let Some(event) = &event {
        webhooks::insert(&tx, std::slice::from_ref(event))
            .await
            .map_err(pg_err)?;
    }
    tx.commit().await.map_err(pg_err)?;
    Ok(Some((conversation, event.is_some())))
}
