//! Messages on Postgres: appending one (a batch of them is `append.rs`'s group commit) and
//! reading a conversation's after a sequence number (what visitors see is `visibility.rs`).

use chat_core::bus::BusEvent;
use chat_core::model::{ConversationId, Message, MessageKind, NewMessage, VisitorId};
use chat_core::store::Appended;
use chat_core::webhook::NewWebhookEvent;
use chat_core::StoreError;
use deadpool_postgres::Object;

use super::errors::{self, pg_err, unique_violation};
use super::rows::message_from_row;
use super::{bus, webhooks, PostgresStore, OP_TIMEOUT};

const SELECT_DUPLICATE: &str = concat!(
    "SELECT ",
    message_row_columns!(),
    " FROM messages WHERE conversation_id = $1 AND client_msg_id = $2"
);

/// The visitors of conversations (`$1`: their ids), for bus notifications.
const SELECT_VISITORS: &str =
    "SELECT id, visitor_id, site_id FROM conversations WHERE id = ANY($1)";

/// [`chat_core::store::Store::append_message`]: one transaction, with the bus notification
/// and the `message.created` event when they are wanted.
pub(super) async fn append(
    store: &PostgresStore,
    message: NewMessage,
) -> Result<Appended, StoreError> {
    let conversation_id = message.conversation_id.0;
    let started = std::time::Instant::now();
    with_client!(store, OP_TIMEOUT, |client| {
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
        let outbox = store.outbox_for(site_id);
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
                if let Some(notifier) = &store.notifier {
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
                    let event = BusEvent::committed(visitor_id, site_id, committed.clone());
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

/// [`chat_core::store::Store::messages_after`].
pub(super) async fn after(
    client: &Object,
    conversation_id: ConversationId,
    after_seq: i64,
    limit: u32,
) -> Result<Vec<Message>, StoreError> {
    let limit = i64::from(limit);
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
}
