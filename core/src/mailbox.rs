//! A bounded queue with one receiver that costs almost nothing while it is empty: the queue of
//! events for each connection.
//!
//! `tokio::sync::mpsc` allocates its shared state with cache-padded halves and a first block of
//! 32 slots when the channel is made: ≈ 770 bytes per channel, before anything is sent, in every
//! idle connection (issue-12 heap profile, docs/benchmarks.md). A `Mailbox` is one allocation of
//! about 120 bytes, and its queue grows only with what is actually waiting in it.
//!
//! A sender either gives up on a full mailbox ([`MailboxSender::try_send`]: the hub, for which a
//! full mailbox means the session is too slow) or waits for room ([`MailboxSender::send`]:
//! back-pressure between two layers of one connection); the receiver awaits
//! [`MailboxReceiver::recv`], which is cancel-safe.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;

struct Shared<T> {
    state: Mutex<State<T>>,
    /// Woken on every send and when the last sender goes away.
    ready: Notify,
    /// Woken when a value is taken (room for a waiting sender) and when the receiver goes away.
    room: Notify,
    senders: AtomicUsize,
    capacity: usize,
}

struct State<T> {
    queue: VecDeque<T>,
    /// The receiver is gone.
    receiver_gone: bool,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic while the lock was held leaves a valid queue behind.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Why [`MailboxSender::try_send`] did not queue the value.
#[derive(Debug, PartialEq, Eq)]
pub enum TrySendError<T> {
    /// The mailbox holds `capacity` values already.
    Full(T),
    /// The receiver was dropped.
    Closed(T),
}

/// The sending side; clone it for more senders.
pub struct MailboxSender<T> {
    shared: Arc<Shared<T>>,
}

/// The receiving side.
pub struct MailboxReceiver<T> {
    shared: Arc<Shared<T>>,
}

/// A mailbox that holds at most `capacity` values (at least 1).
pub fn mailbox<T>(capacity: usize) -> (MailboxSender<T>, MailboxReceiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: VecDeque::new(),
            receiver_gone: false,
        }),
        ready: Notify::new(),
        room: Notify::new(),
        senders: AtomicUsize::new(1),
        capacity: capacity.max(1),
    });
    (
        MailboxSender {
            shared: shared.clone(),
        },
        MailboxReceiver { shared },
    )
}

impl<T> MailboxSender<T> {
    /// Queues `value` unless the mailbox is full or its receiver is gone.
    pub fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        {
            let mut state = self.shared.lock();
            if state.receiver_gone {
                return Err(TrySendError::Closed(value));
            }
            if state.queue.len() >= self.shared.capacity {
                return Err(TrySendError::Full(value));
            }
            state.queue.push_back(value);
        }
        self.shared.ready.notify_one();
        Ok(())
    }

    /// Queues `value`, waiting while the mailbox is full; `Err(value)` once the receiver is
    /// gone.
    pub async fn send(&self, mut value: T) -> Result<(), T> {
        loop {
            // Registered before trying, so a value taken in between still wakes it.
            let room = self.shared.room.notified();
            match self.try_send(value) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Closed(value)) => return Err(value),
                Err(TrySendError::Full(back)) => value = back,
            }
            room.await;
        }
    }
}

impl<T> Clone for MailboxSender<T> {
    fn clone(&self) -> Self {
        self.shared.senders.fetch_add(1, Ordering::Relaxed);
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for MailboxSender<T> {
    fn drop(&mut self) {
        if self.shared.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.shared.ready.notify_one();
        }
    }
}

impl<T> std::fmt::Debug for MailboxSender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailboxSender").finish_non_exhaustive()
    }
}

impl<T> std::fmt::Debug for MailboxReceiver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let queued = self.shared.lock().queue.len();
        f.debug_struct("MailboxReceiver")
            .field("queued", &queued)
            .finish()
    }
}

impl<T> MailboxReceiver<T> {
    /// The next value, in order; `None` once every sender is gone and the mailbox is empty.
    /// Cancel-safe: a value is only taken when it is returned.
    pub async fn recv(&mut self) -> Option<T> {
        loop {
            // Registered before the queue is looked at, so a send in between still wakes it
            // (`notify_one` also keeps a permit when nobody waits).
            let ready = self.shared.ready.notified();
            {
                let mut state = self.shared.lock();
                if let Some(value) = state.queue.pop_front() {
                    if state.queue.is_empty() && state.queue.capacity() > SHRINK_ABOVE {
                        // A burst is over: an idle connection does not keep its high-water mark.
                        state.queue.shrink_to_fit();
                    }
                    drop(state);
                    self.shared.room.notify_one();
                    return Some(value);
                }
            }
            if self.shared.senders.load(Ordering::Acquire) == 0 {
                return None;
            }
            ready.await;
        }
    }

    /// Takes the next value if one is waiting.
    pub fn try_recv(&mut self) -> Option<T> {
        let value = self.shared.lock().queue.pop_front();
        if value.is_some() {
            self.shared.room.notify_one();
        }
        value
    }
}

/// Queue capacity kept while empty; above it, an emptied queue gives its memory back.
const SHRINK_ABOVE: usize = 8;

impl<T> Drop for MailboxReceiver<T> {
    fn drop(&mut self) {
        {
            let mut state = self.shared.lock();
            state.receiver_gone = true;
            state.queue.clear();
        }
        self.shared.room.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn delivers_in_order_and_refuses_over_capacity() {
        let (tx, mut rx) = mailbox(2);
        tx.try_send(1).unwrap();
        tx.try_send(2).unwrap();
        assert_eq!(tx.try_send(3), Err(TrySendError::Full(3)));
        assert_eq!(rx.recv().await, Some(1));
        tx.try_send(3).unwrap();
        assert_eq!(rx.recv().await, Some(2));
        assert_eq!(rx.recv().await, Some(3));
        assert_eq!(rx.try_recv(), None);
    }

    #[tokio::test]
    async fn a_waiting_receiver_is_woken_and_ends_with_the_last_sender() {
        let (tx, mut rx) = mailbox(4);
        let tx2 = tx.clone();
        let waiter = tokio::spawn(async move {
            let first = rx.recv().await;
            let end = rx.recv().await;
            (first, end)
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        tx.try_send("hello").unwrap();
        drop(tx);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "one sender is still there");
        drop(tx2);
        assert_eq!(waiter.await.unwrap(), (Some("hello"), None));
    }

    #[tokio::test]
    async fn a_cancelled_recv_loses_nothing() {
        let (tx, mut rx) = mailbox(4);
        // A recv that is dropped before anything arrives...
        assert!(tokio::time::timeout(Duration::from_millis(10), rx.recv())
            .await
            .is_err());
        // ...leaves the value sent afterwards for the next one.
        tx.try_send(7).unwrap();
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(5), rx.recv()).await,
            Ok(Some(7))
        );
    }

    #[tokio::test]
    async fn send_waits_for_room_and_fails_once_the_receiver_is_gone() {
        let (tx, mut rx) = mailbox(1);
        tx.send(1).await.unwrap();
        let tx2 = tx.clone();
        let blocked = tokio::spawn(async move { tx2.send(2).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!blocked.is_finished(), "the mailbox is full");
        assert_eq!(rx.recv().await, Some(1));
        assert_eq!(blocked.await.unwrap(), Ok(()));
        assert_eq!(rx.recv().await, Some(2));
        tx.send(3).await.unwrap();
        let tx3 = tx.clone();
        let waiting = tokio::spawn(async move { tx3.send(4).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(rx);
        assert_eq!(waiting.await.unwrap(), Err(4));
    }

    #[test]
    fn sends_fail_once_the_receiver_is_gone() {
        let (tx, rx) = mailbox(4);
        drop(rx);
        assert_eq!(tx.try_send(1), Err(TrySendError::Closed(1)));
    }

    #[tokio::test]
    async fn an_emptied_queue_gives_back_a_burst() {
        let (tx, mut rx) = mailbox(1000);
        for n in 0..500 {
            tx.try_send(n).unwrap();
        }
        for _ in 0..500 {
            rx.recv().await;
        }
        assert!(rx.shared.lock().queue.capacity() <= SHRINK_ABOVE);
    }
}
