//! Group commit on Postgres in one round trip, for the batches that need nothing worked out
//! between reading and writing: a message per conversation, no notes, no webhook outbox, and no
//! other gateway process listening on the bus (then each message's notification needs the
//! full message, which only the two-round-trip path in `append.rs` sends). These are the batches
//! of a single gateway at low and moderate rates, where the cost per transaction, not per
//! message, is what Postgres spends (docs/benchmarks.md, "A batch in one round trip").
//!
//! `BEGIN`, one statement and `COMMIT` travel together. The statement reads which of the
//! batch's `client_msg_id`s are stored, bumps each conversation's `last_seq` with an `UPDATE`
//! (which locks the row and, when another transaction committed to it meanwhile, numbers from
//! what that one committed), and inserts each message with its conversation's new `last_seq`.
//! Its duplicate check sees what was committed when the statement began; an original committed
//! after that (a client's retry racing it) makes the insert fail on the unique
//! `(conversation_id, client_msg_id)` index, nothing is committed, and the batch is tried
//! again, when the check sees it. The conversations come sorted by id and the statement's
//! plan updates them in the order they come (a nested loop over its input, driving the primary
//! key), so two batches take their locks in the same order; a deadlock Postgres would still
//! find is retried like any conflict. Each message's `created_at` is read after its row's lock
//! was granted (the update computes it again when it had to wait).

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use chat_core::model::{MessageKind, NewMessage};
use chat_core::store::Appended;
use deadpool_postgres::Object;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::append::{classify, BatchFailure, BEGIN};
use super::message_columns::{MessageColumns, MessageFields};
use super::rows::message_from_row;
use super::{bus, PostgresStore};

/// The batch's appends in one statement: `$1` the bus channel, `$2` this node's id (the
/// notification's envelope; empty: notify no one), `$3` this process's listener (see [`bus::peers_listen!`]), then
/// the messages as arrays. Each row is a message, stored now or before (`dup`), and how many
/// notifications were sent. A notification, sent only when a peer listens, carries the
/// message's position (`message_ref`): the peer reads it from the store.
pub(super) const APPEND_IN_ONE_STATEMENT: &str = concat!(
    "WITH input AS MATERIALIZED (SELECT * FROM unnest($4::uuid[], $5::text[], $6::text[], \
     $7::text[], $8::text[], $9::text[], $10::text[], $11::text[]) AS m(c, k, r, i, n, b, d, a)), \
     present AS MATERIALIZED (SELECT p.* FROM input CROSS JOIN LATERAL (SELECT ",
    message_row_columns!(),
    " FROM messages WHERE conversation_id = input.c AND client_msg_id = input.k OFFSET 0) p), \
     bumped AS (UPDATE conversations c SET last_seq = c.last_seq + 1, visitor_last_seq = NULL, \
     updated_at = clock_timestamp() FROM input WHERE c.id = input.c AND c.id = ANY($4) \
     AND NOT EXISTS (SELECT 1 FROM present WHERE present.conversation_id = input.c) \
     RETURNING c.id, c.last_seq, c.updated_at, c.visitor_id, c.site_id), \
     inserted AS (INSERT INTO messages (",
    message_columns!(),
    ", kind, attachment) SELECT b.id, b.last_seq, input.k, input.r, input.i, input.n, input.b, \
     b.updated_at, input.d, input.a FROM bumped b JOIN input ON input.c = b.id RETURNING ",
    message_row_columns!(),
    "), notified AS (SELECT pg_notify($1, json_build_object('o', $2::text, 'e', \
     json_build_object('kind', 'message_ref', 'visitor_id', b.visitor_id, 'site_id', b.site_id, \
     'conversation_id', b.id, 'seq', b.last_seq))::text) FROM bumped b WHERE $2::text <> '' AND ",
    bus::peers_listen!(),
    ") SELECT inserted.*, false AS dup, (SELECT count(*) FROM notified) AS notified \
     FROM inserted UNION ALL SELECT present.*, true, 0 FROM present"
);

/// The columns of [`APPEND_IN_ONE_STATEMENT`] after the message's.
const DUP_COLUMN: usize = 10;
const NOTIFIED_COLUMN: usize = 11;

/// Largest batch sent in one round trip. Above it the per-message work dominates and the one
/// statement's joins cost Postgres more than the round trip saves (at 256 senders with every
/// batch in one round trip: 81 µs of Postgres CPU per message against 74; docs/benchmarks.md,
/// "A batch in one round trip").
const MAX_BATCH: usize = 16;

/// Whether `batch` (`order`: its indexes sorted by conversation) can be appended in one round
/// trip.
pub(super) fn fits(store: &PostgresStore, batch: &[NewMessage], order: &[usize]) -> bool {
    batch.len() <= MAX_BATCH
        && store.outbox.is_none()
        && !store.peers_listen.load(Ordering::Relaxed)
        && batch.iter().all(|m| m.kind != MessageKind::Note)
        && order
            .windows(2)
            .all(|w| batch[w[0]].conversation_id != batch[w[1]].conversation_id)
}

impl PostgresStore {
    /// Appends a batch that [`fits`], in one round trip.
    pub(super) async fn append_in_one_round_trip(
        &self,
        client: &Object,
        batch: &[NewMessage],
        order: &[usize],
    ) -> Result<Vec<Option<Appended>>, BatchFailure> {
        let statement = client
            .prepare_cached(APPEND_IN_ONE_STATEMENT)
            .await
            .map_err(classify)?;
        let columns = MessageColumns::new(order.iter().map(|&i| MessageFields::from(&batch[i])))
            .map_err(|e| BatchFailure::Isolate(e.to_string()))?;
        let (node, listener_app) = match &self.notifier {
            Some(notifier) => (notifier.node_id(), notifier.listener_app()),
            // No notifier (a store opened without the bus): no node id, and nothing is sent.
            None => ("", ""),
        };
        let mut params: Vec<&(dyn ToSql + Sync)> =
            vec![&bus::CHANNEL, &node, &listener_app, &columns.conversation];
        params.extend(columns.fields());
        // `COMMIT` travels with the statement; after a failed statement it only ends the
        // (aborted) transaction, and the statement's error is what counts.
        let (begun, rows, committed) = futures_util::future::join3(
            client.batch_execute(BEGIN),
            client.query(&statement, &params),
            client.batch_execute("COMMIT"),
        )
        .await;
        begun.map_err(classify)?;
        let rows = rows.map_err(classify)?;
        committed.map_err(classify)?;

        let index: HashMap<Uuid, usize> = order
            .iter()
            .map(|&i| (batch[i].conversation_id.0, i))
            .collect();
        let mut results: Vec<Option<Appended>> = vec![None; batch.len()];
        let (mut inserted, mut notified) = (0, 0);
        for row in &rows {
            let message =
                message_from_row(row).map_err(|e| BatchFailure::Isolate(e.to_string()))?;
            let duplicate: bool = row.try_get(DUP_COLUMN).map_err(classify)?;
            notified += row.try_get::<_, i64>(NOTIFIED_COLUMN).map_err(classify)?;
            let Some(&i) = index.get(&message.conversation_id.0) else {
                return Err(BatchFailure::Isolate(
                    "a row for a conversation not in the batch".into(),
                ));
            };
            results[i] = Some(match duplicate {
                true => Appended::Duplicate(message),
                false => {
                    inserted += 1;
                    Appended::Inserted(message)
                }
            });
        }
        if notified > 0 {
            // A peer listens: its notifications should carry the messages, which the
            // two-round-trip path sends; it tells when no peer listens any more.
            self.peers_listen.store(true, Ordering::Relaxed);
        }
        self.inserted(inserted);
        Ok(results)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(conversation: u128, kind: MessageKind) -> NewMessage {
        let key = format!("k{conversation}");
        crate::unit_fixtures::visitor_message(Uuid::from_u128(conversation), Some(&key), kind)
    }

    fn fits_batch(store: &PostgresStore, batch: &[NewMessage]) -> bool {
        let mut order: Vec<usize> = (0..batch.len()).collect();
        order.sort_by_key(|&i| batch[i].conversation_id.0);
        fits(store, batch, &order)
    }

    #[test]
    fn only_batches_with_nothing_to_work_out_between_reading_and_writing_fit() {
        // Connects no socket.
        let store = PostgresStore::connect("postgres://chat@127.0.0.1:1/chat", 1).unwrap();
        let text = |c| message(c, MessageKind::Text);
        assert!(fits_batch(&store, &[text(1)]));
        assert!(fits_batch(
            &store,
            &[text(3), message(1, MessageKind::System), text(2)]
        ));
        // Larger batches: the per-message work dominates.
        let large: Vec<NewMessage> = (0..=MAX_BATCH as u128).map(text).collect();
        assert!(!fits_batch(&store, &large));
        assert!(fits_batch(&store, &large[..MAX_BATCH]));
        // Two messages to one conversation: the second is numbered after the first.
        assert!(!fits_batch(&store, &[text(1), text(2), text(1)]));
        // A note keeps what visitors see.
        assert!(!fits_batch(
            &store,
            &[text(1), message(2, MessageKind::Note)]
        ));
        // A peer listens: its notifications carry the messages.
        store.peers_listen.store(true, Ordering::Relaxed);
        assert!(!fits_batch(&store, &[text(1)]));
        store.peers_listen.store(false, Ordering::Relaxed);
        // Webhook events are written beside the messages.
        let outbox = chat_core::webhook::WebhookOutbox::new(chat_core::model::Sites::All);
        let store = store.with_webhook_outbox(outbox);
        assert!(!fits_batch(&store, &[text(1)]));
    }
}
