//! The writer tasks' shared queue: which queued appends form the next batch, and when it goes.
//!
//! A writer takes the first queued append and everything queued behind it. When another
//! writer's commit is under way and the batch is smaller than [`BATCH_ALONGSIDE_A_COMMIT`], it
//! does not start a commit beside that one: it waits for it to end, taking what arrives
//! meanwhile, and goes when that commit ends or when the batch reaches that size. On Postgres
//! most of a commit's cost is per transaction (docs/benchmarks.md, "One commit at a time until
//! the queue is deep"), so with a few senders two small commits side by side cost more than the
//! larger one that follows; with hundreds, the queue is deep and every writer stays busy.

use std::sync::atomic::{AtomicUsize, Ordering};

use chat_core::model::NewMessage;
use chat_core::store::Appended;
use chat_core::StoreError;
use tokio::sync::{mpsc, oneshot, Mutex, Notify};

/// Smallest batch a writer commits while another writer's commit is under way (at most
/// [`BatchSettings::max_batch`](super::BatchSettings::max_batch)).
pub const BATCH_ALONGSIDE_A_COMMIT: usize = 16;

/// An append waiting for its batch, and where its result goes.
pub(super) struct PendingAppend {
    pub(super) message: NewMessage,
    pub(super) reply: oneshot::Sender<Result<Appended, StoreError>>,
}

/// The queue and what the writers share besides it.
pub(super) struct Writers {
    queue: Mutex<mpsc::Receiver<PendingAppend>>,
    /// Writers whose batch is being committed.
    committing: AtomicUsize,
    /// Woken when a writer's commit ends.
    done: Notify,
    max_batch: usize,
    /// [`BATCH_ALONGSIDE_A_COMMIT`], at most `max_batch`.
    alongside: usize,
}

impl Writers {
    pub(super) fn new(queue: mpsc::Receiver<PendingAppend>, max_batch: usize) -> Self {
        let max_batch = max_batch.max(1);
        Self {
            queue: Mutex::new(queue),
            committing: AtomicUsize::new(0),
            done: Notify::new(),
            max_batch,
            alongside: BATCH_ALONGSIDE_A_COMMIT.min(max_batch),
        }
    }

    /// The next batch to commit, counted as committing until the [`Committing`] given with it
    /// is dropped (so a writer that panics does not leave the others waiting for it); `None`
    /// once the queue is closed and empty.
    pub(super) async fn next_batch(&self) -> Option<(Vec<PendingAppend>, Committing<'_>)> {
        let mut queue = self.queue.lock().await;
        let first = queue.recv().await?;
        let mut batch = vec![first];
        self.take_queued(&mut queue, &mut batch);
        while batch.len() < self.alongside {
            // Registered before the count is read, so a commit that ends in between wakes it.
            let done = self.done.notified();
            tokio::pin!(done);
            done.as_mut().enable();
            if self.committing.load(Ordering::Acquire) == 0 {
                break;
            }
            tokio::select! {
                _ = &mut done => break,
                next = queue.recv() => match next {
                    Some(next) => {
                        batch.push(next);
                        self.take_queued(&mut queue, &mut batch);
                    }
                    None => break,
                },
            }
        }
        // Counted before the queue is released, so the next writer to take it sees this commit.
        self.committing.fetch_add(1, Ordering::AcqRel);
        Some((batch, Committing(self)))
    }

    /// Moves what is queued into `batch`, up to the largest batch.
    fn take_queued(
        &self,
        queue: &mut mpsc::Receiver<PendingAppend>,
        batch: &mut Vec<PendingAppend>,
    ) {
        while batch.len() < self.max_batch {
            match queue.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
    }
}

/// A batch's commit under way: dropping it ends it and wakes a writer waiting for it.
pub(super) struct Committing<'a>(&'a Writers);

impl Drop for Committing<'_> {
    fn drop(&mut self) {
        self.0.committing.fetch_sub(1, Ordering::AcqRel);
        self.0.done.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_core::model::MessageKind;
    use std::sync::Arc;
    use std::time::Duration;
    use uuid::Uuid;

    fn append(n: u128) -> PendingAppend {
        let key = format!("k{n}");
        PendingAppend {
            message: crate::unit_fixtures::visitor_message(
                Uuid::from_u128(n),
                Some(&key),
                MessageKind::Text,
            ),
            reply: oneshot::channel().0,
        }
    }

    /// Writers with `queued` appends waiting, the sender kept open.
    fn queued(count: u128, max_batch: usize) -> (Arc<Writers>, mpsc::Sender<PendingAppend>) {
        let (tx, rx) = mpsc::channel(1024);
        for n in 0..count {
            tx.try_send(append(n)).unwrap();
        }
        (Arc::new(Writers::new(rx, max_batch)), tx)
    }

    type Next = tokio::task::JoinHandle<Option<usize>>;

    /// Takes the next batch in a task (its commit ends at once); answers its size.
    fn spawn_next(writers: &Arc<Writers>) -> Next {
        let writers = writers.clone();
        tokio::spawn(async move { writers.next_batch().await.map(|(batch, _)| batch.len()) })
    }

    async fn pending(task: &Next) -> bool {
        tokio::time::sleep(Duration::from_millis(50)).await;
        !task.is_finished()
    }

    #[tokio::test]
    async fn with_no_commit_under_way_a_batch_goes_at_once_with_what_is_queued() {
        let (writers, _tx) = queued(3, 256);
        let (batch, _committing) = writers.next_batch().await.unwrap();
        assert_eq!(batch.len(), 3);
        // The queue's largest batch holds.
        let (writers, _tx) = queued(40, 8);
        assert_eq!(writers.next_batch().await.unwrap().0.len(), 8);
    }

    #[tokio::test]
    async fn a_small_batch_waits_for_the_commit_under_way_and_grows_meanwhile() {
        let (writers, tx) = queued(1, 256);
        let (first, committing) = writers.next_batch().await.unwrap();
        assert_eq!(first.len(), 1);
        for n in 1..4 {
            tx.send(append(n)).await.unwrap();
        }
        let second = spawn_next(&writers);
        assert!(pending(&second).await, "went beside the commit under way");
        tx.send(append(4)).await.unwrap();
        assert!(pending(&second).await);
        drop(committing);
        let second = second.await.unwrap().unwrap();
        assert_eq!(second, 4, "the appends queued before and during the commit");
    }

    #[tokio::test]
    async fn a_batch_of_the_alongside_size_goes_beside_a_commit_under_way() {
        let (writers, tx) = queued(1, 256);
        let _committing = writers.next_batch().await.unwrap();
        let second = spawn_next(&writers);
        for n in 1..BATCH_ALONGSIDE_A_COMMIT as u128 {
            tx.send(append(n)).await.unwrap();
        }
        assert!(pending(&second).await);
        tx.send(append(100)).await.unwrap();
        let second = tokio::time::timeout(Duration::from_secs(5), second)
            .await
            .expect("a full-size batch waited for the commit under way")
            .unwrap()
            .unwrap();
        assert_eq!(second, BATCH_ALONGSIDE_A_COMMIT);
    }

    #[tokio::test]
    async fn with_batching_off_every_writer_commits_at_once() {
        let (writers, _tx) = queued(2, 1);
        let _committing = writers.next_batch().await.unwrap();
        let second = tokio::time::timeout(Duration::from_secs(5), writers.next_batch())
            .await
            .expect("a batch of one waited with CHAT_DB_WRITE_BATCH=1")
            .unwrap();
        assert_eq!(second.0.len(), 1);
    }

    #[tokio::test]
    async fn a_closed_queue_ends_a_waiting_batch_and_then_the_writers() {
        let (writers, tx) = queued(2, 256);
        let _committing = writers.next_batch().await.unwrap();
        tx.send(append(5)).await.unwrap();
        drop(tx);
        let last = writers.next_batch().await.unwrap();
        assert_eq!(last.0.len(), 1);
        assert!(writers.next_batch().await.is_none());
    }
}
