//! Group commit on Postgres ([`AppendBatch`] for [`PostgresStore`]): a batch of appends is one
//! transaction of a fixed number of statements, whatever its size, in two round trips:
//!
//! 1. `BEGIN`; lock the batch's conversations in id order (`FOR UPDATE`, so concurrent
//!    batches, from this process's other writers or from other gateway processes, cannot
//!    deadlock); read which of the batch's client message ids are already stored, and the
//!    clock. Each statement runs after the one before it, so the second sees everything
//!    committed before the locks were granted, and nothing can commit to these conversations
//!    until this transaction ends (every writer of `messages` holds its conversation's lock).
//! 2. With the sequence numbers and duplicates worked out in Rust (`append_plan`), one
//!    statement writes: the `UPDATE` of the conversations' `last_seq` and the `INSERT` of the
//!    new messages, both over `unnest` arrays, and the bus notifications when a peer listens;
//!    then the webhook events when a site of the batch has a webhook, and `COMMIT`.
//!
//! The statements are few because each has a cost beside its work: it ends in its own `Sync`,
//! so its answer is one more `send` and one more wake-up on each side (five statements instead
//! of eight took 10–14 % off this side's CPU per message at 1 and 16 senders; docs/benchmarks.md,
//! "Fewer statements per batch").
//!
//! A batch with nothing to work out between reading and writing goes in one round trip
//! instead (`append_one_round_trip`).
//!
//! The row locks, held until `COMMIT`, make the order of the sequence numbers of a conversation
//! the order of the commits, with no gap. A message's `created_at` is the clock read after its
//! conversation's lock was granted, so it never goes back as `seq` grows.

use std::collections::HashMap;

use chat_core::bus::BusEvent;
use chat_core::model::{NewMessage, VisitorId};
use chat_core::store::{Appended, Store};
use chat_core::webhook::NewWebhookEvent;
use chat_core::StoreError;
use chrono::{DateTime, Utc};
use deadpool_postgres::Object;
use futures_util::future::join3;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::append_plan::{plan, Locked};
use super::errors::{self, pg_err, unique_violation};
use super::message_columns::{MessageColumns, MessageFields};
use super::pool::{finish, OperationError};
use super::rows::message_from_row;
use super::{append_one_round_trip, bus, webhooks, PostgresStore, OP_TIMEOUT};
use std::sync::atomic::Ordering;

/// The batch's conversations, locked in id order.
const LOCK_CONVERSATIONS: &str = "SELECT id, visitor_id, last_seq, site_id, visitor_last_seq \
     FROM conversations WHERE id = ANY($1) ORDER BY id FOR UPDATE";

/// The batch's messages already stored, by (conversation, `client_msg_id`): one probe of
/// `messages_client_msg_id_idx` per key. The lateral subquery (kept apart by `OFFSET 0`) leaves
/// the planner no other plan, so a generic plan made while `messages` is empty is still right
/// at millions of rows (a join there could be, and was, a hash join over a full scan).
///
/// Each row ends with the clock, read after the locks were granted; the outer join makes one
/// row of `NULL` message columns when nothing is stored, so the clock is always there.
const SELECT_PRESENT_AND_CLOCK: &str = concat!(
    "SELECT m.*, clock_timestamp() FROM (VALUES (1)) AS one(x) LEFT JOIN (SELECT p.* FROM \
     unnest($1::uuid[], $2::text[]) AS k(conversation_id, client_msg_id) \
     CROSS JOIN LATERAL (SELECT ",
    message_row_columns!(),
    " FROM messages WHERE conversation_id = k.conversation_id \
     AND client_msg_id = k.client_msg_id OFFSET 0) p) m ON true"
);

/// The column of [`SELECT_PRESENT_AND_CLOCK`] after the message's.
const CLOCK_COLUMN: usize = 10;

/// Starts a batch's transaction. Its statements use their generic plans: Postgres would
/// otherwise plan each of them again at every execution (their array parameters make the
/// generic plan look dearer than a custom one), which was 18 % of the backends' CPU at 16
/// senders (docs/benchmarks.md, "Group commit without planning"). A generic plan is made once
/// per connection and kept, so it must not depend on how big the tables were then: every
/// statement of the batch is written to go through the primary key or a unique index, and
/// sequential scans are ruled out while it is planned (on a new deployment's few
/// conversations a scan looks cheapest, and stays in the plan as the table grows).
pub(super) const BEGIN: &str = "BEGIN; SET LOCAL plan_cache_mode = force_generic_plan; \
     SET LOCAL enable_seqscan = off";

/// The batch's writes in one statement: the conversations' new `last_seq`s (`bumped`), the
/// new messages (`inserted`), and the bus notifications ($1–$3, [`bus::notify_peers!`]), which
/// Postgres delivers if and only if the transaction commits. Data-modifying `WITH` queries
/// run to completion whether or not anything reads them. In `bumped`, `c.id = ANY($4)` repeats
/// the join's condition as one the primary key answers, so that no plan, even one made on an
/// empty table, scans every conversation.
const WRITE_MESSAGES: &str = concat!(
    "WITH bumped AS (UPDATE conversations c SET last_seq = u.last_seq, \
     visitor_last_seq = u.visitor_last_seq, updated_at = $7 \
     FROM unnest($4::uuid[], $5::bigint[], $6::bigint[]) AS u(id, last_seq, visitor_last_seq) \
     WHERE c.id = u.id AND c.id = ANY($4)), \
     inserted AS (INSERT INTO messages (",
    message_columns!(),
    ", kind, attachment) SELECT c, s, k, r, i, n, b, $7, d, a FROM unnest($8::uuid[], \
     $9::bigint[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], \
     $15::text[], $16::text[]) AS m(c, s, k, r, i, n, b, d, a)) ",
    bus::notify_peers!()
);

/// Why one attempt at committing a batch failed.
pub(super) enum BatchFailure {
    /// Another transaction committed a conflicting row first or the database broke a deadlock:
    /// the same batch may well succeed when tried again.
    Retry(String),
    /// Something in the batch itself is wrong; committing its messages one by one isolates it.
    Isolate(String),
    /// The database cannot be reached or did not answer in time.
    Unavailable(StoreError),
}

impl OperationError for BatchFailure {
    fn is_unavailable(&self) -> bool {
        matches!(self, BatchFailure::Unavailable(_))
    }

    fn timed_out() -> Self {
        BatchFailure::Unavailable(StoreError::timed_out())
    }
}

pub(super) fn classify(e: tokio_postgres::Error) -> BatchFailure {
    if errors::is_connection_error(&e) {
        BatchFailure::Unavailable(pg_err(e))
    } else if unique_violation(&e)
        || matches!(
            e.code(),
            Some(&SqlState::T_R_DEADLOCK_DETECTED) | Some(&SqlState::T_R_SERIALIZATION_FAILURE)
        )
    {
        BatchFailure::Retry(errors::describe(&e))
    } else {
        BatchFailure::Isolate(errors::describe(&e))
    }
}

/// Attempts at a whole batch before falling back to one transaction per message.
const BATCH_ATTEMPTS: usize = 3;

impl PostgresStore {
    async fn try_append_batch(
        &self,
        batch: &[NewMessage],
        order: &[usize],
    ) -> Result<Vec<Option<Appended>>, BatchFailure> {
        // Dropping this future halfway (a cancelled caller) would leave the connection inside
        // a transaction: the guard then takes it out of the pool, never to be reused.
        let guard = TransactionGuard(Some(
            self.client().await.map_err(BatchFailure::Unavailable)?,
        ));
        let client = guard.client();
        let attempt = async {
            match append_one_round_trip::fits(self, batch, order) {
                true => self.append_in_one_round_trip(client, batch, order).await,
                false => self.append_in_transaction(client, batch, order).await,
            }
        };
        let result = match tokio::time::timeout(OP_TIMEOUT, attempt).await {
            Ok(Err(failure)) if !failure.is_unavailable() && !client.is_closed() => {
                // Ends the transaction the failure left open (after a failed `COMMIT`, only a
                // warning); a connection that cannot even do that is not reused.
                match client.batch_execute("ROLLBACK").await {
                    Ok(()) => Ok(Err(failure)),
                    Err(e) => Ok(Err(BatchFailure::Unavailable(pg_err(e)))),
                }
            }
            other => other,
        };
        // A timed-out or failed connection is discarded by `finish`.
        let client = guard.release();
        finish(client, result)
    }

    async fn append_in_transaction(
        &self,
        client: &Object,
        batch: &[NewMessage],
        order: &[usize],
    ) -> Result<Vec<Option<Appended>>, BatchFailure> {
        let (lock, present, write) = futures_util::future::try_join3(
            client.prepare_cached(LOCK_CONVERSATIONS),
            client.prepare_cached(SELECT_PRESENT_AND_CLOCK),
            client.prepare_cached(WRITE_MESSAGES),
        )
        .await
        .map_err(classify)?;

        // Round trip 1: lock, then read what is stored and the clock.
        let mut ids: Vec<Uuid> = order.iter().map(|&i| batch[i].conversation_id.0).collect();
        ids.dedup(); // `order` is sorted by conversation
        let keyed: Vec<&NewMessage> = batch.iter().filter(|m| m.client_msg_id.is_some()).collect();
        let key_conversations: Vec<Uuid> = keyed.iter().map(|m| m.conversation_id.0).collect();
        let keys: Vec<&str> = keyed
            .iter()
            .filter_map(|m| m.client_msg_id.as_deref())
            .collect();
        let (begun, locked, present) = join3(
            client.batch_execute(BEGIN),
            client.query(&lock, &[&ids]),
            client.query(&present, &[&key_conversations, &keys]),
        )
        .await;
        begun.map_err(classify)?;
        let locked = locked
            .map_err(classify)?
            .iter()
            .map(|row| {
                Ok((
                    row.try_get(0)?,
                    Locked {
                        visitor_id: row.try_get(1)?,
                        site_id: row.try_get::<_, &str>(3)?.into(),
                        last_seq: row.try_get(2)?,
                        visitor_last_seq: row.try_get(4)?,
                        bumped: false,
                    },
                ))
            })
            .collect::<Result<HashMap<Uuid, Locked>, tokio_postgres::Error>>()
            .map_err(classify)?;
        let present = present.map_err(classify)?;
        let now: DateTime<Utc> = match present.first() {
            Some(row) => row.try_get(CLOCK_COLUMN).map_err(classify)?,
            None => return Err(BatchFailure::Isolate("no clock was read".into())),
        };
        let present = present
            .iter()
            .filter(|row| matches!(row.try_get::<_, Option<Uuid>>(0), Ok(Some(_))))
            .map(|row| {
                let message = message_from_row(row)?;
                let key = message.client_msg_id.clone().unwrap_or_default();
                Ok(((message.conversation_id.0, key), message))
            })
            .collect::<Result<HashMap<_, _>, StoreError>>()
            .map_err(|e| BatchFailure::Isolate(e.to_string()))?;

        let plan = plan(batch, order, locked, present, now);

        // Round trip 2: write, notify, commit.
        let payloads: Vec<String> = match &self.notifier {
            Some(notifier) => plan
                .inserts
                .iter()
                .zip(&plan.visitors)
                .map(|(message, (visitor, site))| {
                    notifier.payload(&BusEvent::committed(
                        VisitorId(*visitor),
                        site.to_string(),
                        message.clone(),
                    ))
                })
                .collect(),
            None => Vec::new(),
        };
        // Without a notifier there are no payloads, and the write statement notifies no one.
        let listener_app = self.notifier.as_ref().map_or("", |n| n.listener_app());
        // The `message.created` events of the sites with a webhook, in this transaction; none
        // (and no statement) when no site of the batch has one.
        let events: Vec<NewWebhookEvent> = match &self.outbox {
            Some(outbox) => plan
                .inserts
                .iter()
                .zip(&plan.visitors)
                .filter(|(_, (_, site))| outbox.wants(site))
                .map(|(message, (visitor, site))| {
                    NewWebhookEvent::message(message, site, VisitorId(*visitor))
                })
                .collect(),
            None => Vec::new(),
        };
        // Prepared before round trip 2, so that the insert travels before `COMMIT`.
        let outbox_insert = match events.is_empty() {
            true => None,
            false => Some(
                client
                    .prepare_cached(webhooks::INSERT_EVENTS)
                    .await
                    .map_err(classify)?,
            ),
        };
        let event_columns = webhooks::EventColumns::new(&events);
        let bump_ids: Vec<Uuid> = plan.bumps.iter().map(|b| b.0).collect();
        let bump_seqs: Vec<i64> = plan.bumps.iter().map(|b| b.1).collect();
        let bump_visible: Vec<Option<i64>> = plan.bumps.iter().map(|b| b.2).collect();
        let m = &plan.inserts;
        let seq: Vec<i64> = m.iter().map(|m| m.seq).collect();
        let columns = MessageColumns::new(m.iter().map(MessageFields::from))
            .map_err(|e| BatchFailure::Isolate(e.to_string()))?;
        let writes = async {
            if m.is_empty() {
                return Ok(());
            }
            let mut write_params: Vec<&(dyn ToSql + Sync)> = vec![
                &bus::CHANNEL,
                &payloads,
                &listener_app,
                &bump_ids,
                &bump_seqs,
                &bump_visible,
                &now,
                &columns.conversation,
                &seq,
            ];
            write_params.extend(columns.fields());
            let written = async {
                let notified = client.execute(&write, &write_params).await?;
                if !payloads.is_empty() {
                    // Whether a peer listens, for the next batch's choice of path.
                    self.peers_listen.store(notified > 0, Ordering::Relaxed);
                }
                Ok(())
            };
            let outboxed = async {
                match &outbox_insert {
                    Some(stmt) => client
                        .execute(stmt, &event_columns.params())
                        .await
                        .map(drop),
                    None => Ok(()),
                }
            };
            let (written, outboxed): (Result<(), tokio_postgres::Error>, _) =
                futures_util::future::join(written, outboxed).await;
            written?;
            outboxed
        };
        // `COMMIT` travels with the writes; after a failed write it only ends the (aborted)
        // transaction, and the write's error is what counts.
        let (written, committed) =
            futures_util::future::join(writes, client.batch_execute("COMMIT")).await;
        written.map_err(classify)?;
        committed.map_err(classify)?;
        if let (Some(outbox), false) = (&self.outbox, events.is_empty()) {
            outbox.committed();
        }
        self.inserted(plan.inserts.len());
        Ok(plan.results)
    }
}

/// Holds a connection while it may be inside a transaction; dropped before
/// [`TransactionGuard::release`], it takes the connection out of the pool.
struct TransactionGuard(Option<Object>);

impl TransactionGuard {
    fn client(&self) -> &Object {
        self.0.as_ref().expect("held until released")
    }

    fn release(mut self) -> Object {
        self.0.take().expect("held until released")
    }
}

impl Drop for TransactionGuard {
    fn drop(&mut self) {
        if let Some(client) = self.0.take() {
            drop(Object::take(client));
        }
    }
}

#[async_trait::async_trait]
impl crate::batch::AppendBatch for PostgresStore {
    async fn append_batch(&self, batch: Vec<NewMessage>) -> Vec<Result<Appended, StoreError>> {
        // Sorted by conversation, so the batch's rows are locked in id order; the sort is
        // stable, so appends to one conversation keep their arrival order.
        let mut order: Vec<usize> = (0..batch.len()).collect();
        order.sort_by_key(|&i| batch[i].conversation_id.0);
        for attempt in 1..=BATCH_ATTEMPTS {
            match self.try_append_batch(&batch, &order).await {
                Ok(results) => {
                    return results
                        .into_iter()
                        .map(|r| r.ok_or(StoreError::NotFound("conversation")))
                        .collect()
                }
                Err(BatchFailure::Unavailable(e)) => {
                    let why = e.to_string();
                    return batch
                        .iter()
                        .map(|_| Err(StoreError::Unavailable(why.clone())))
                        .collect();
                }
                Err(BatchFailure::Retry(why)) => {
                    tracing::debug!(attempt, %why, "batch append conflicted; retrying");
                }
                Err(BatchFailure::Isolate(why)) => {
                    tracing::warn!(%why, size = batch.len(), "batch append failed; committing its messages one by one");
                    break;
                }
            }
        }
        let mut results = Vec::with_capacity(batch.len());
        for message in batch {
            results.push(self.append_message(message).await);
        }
        results
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The generic plan of each of the batch's statements that reads a table, made in a batch's
    /// transaction on a new deployment's database (never analyzed, a few conversations), goes
    /// through an index: the plan is kept for as long as the connection lives, while the
    /// tables grow.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn generic_plans_made_on_a_new_database_scan_no_table() {
        let server = tokio::task::spawn_blocking(crate::test_support::TestPostgres::shared)
            .await
            .expect("test Postgres");
        // The server (and its databases) lives as long as `server`.
        let url = {
            let server = std::sync::Arc::clone(&server);
            tokio::task::spawn_blocking(move || server.fresh_database())
                .await
                .expect("fresh database")
        };
        let store = PostgresStore::connect(&url, 1).expect("connect");
        store.migrate().await.expect("migrate");
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(connection);
        // A few conversations, where a sequential scan would be the cheapest plan.
        client
            .batch_execute(
                "INSERT INTO visitors (id, site_id, created_at) \
                 VALUES ('00000000-0000-0000-0000-000000000001', 's', now()); \
                 INSERT INTO conversations (id, site_id, visitor_id, status, created_at, \
                 updated_at) SELECT gen_random_uuid(), 's', \
                 '00000000-0000-0000-0000-000000000001', 'open', now(), now() \
                 FROM generate_series(1, 50)",
            )
            .await
            .expect("a few conversations");
        client.batch_execute(BEGIN).await.expect("begin");
        for (name, statement, parameters) in [
            ("lock", LOCK_CONVERSATIONS, 1),
            ("present", SELECT_PRESENT_AND_CLOCK, 2),
            ("write", WRITE_MESSAGES, 16),
            (
                "one_statement",
                append_one_round_trip::APPEND_IN_ONE_STATEMENT,
                11,
            ),
        ] {
            client
                .batch_execute(&format!("PREPARE {name} AS {statement}"))
                .await
                .expect("prepare");
            let nulls = vec!["NULL"; parameters].join(", ");
            let plan: Vec<String> = client
                .query(&format!("EXPLAIN EXECUTE {name}({nulls})"), &[])
                .await
                .expect("explain")
                .iter()
                .map(|row| row.get(0))
                .collect();
            let plan = plan.join("\n");
            assert!(!plan.contains("Seq Scan"), "{name}:\n{plan}");
            assert!(plan.contains("Index"), "{name}:\n{plan}");
        }
    }
}
