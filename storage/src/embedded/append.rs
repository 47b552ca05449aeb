//! Group commit in the embedded store ([`AppendBatch`](crate::batch::AppendBatch) for
//! [`EmbeddedStore`]): a batch of appends is one transaction, so one fsync.

use async_trait::async_trait;
use chat_core::model::NewMessage;
use chat_core::store::Appended;
use chat_core::webhook::WebhookOutbox;
use chat_core::StoreError;
use rusqlite::{Connection, TransactionBehavior};

use super::errors::sqlite_err;
use super::messages::append_in;
use super::EmbeddedStore;

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
