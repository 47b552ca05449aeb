//! Cleans the search index's pending list in the background, so that no insert has to.
//!
//! The search index (`messages_body_fts_idx`, migration 0010) is a GIN index with `fastupdate`:
//! an insert appends its words to the index's pending list, and the insert that finds the list
//! over `gin_pending_list_limit` merges all of it into the index's tree, inside its own
//! statement. For the gateway that insert is a whole batch of messages, whose senders all wait
//! for the merge. With the server's 4 MB list that was a 100-190 ms stall every few seconds at
//! 10,000 msg/s; with migration 0013's 256 kB list the stalls were short but the merges many,
//! 38 % of the writing backends' CPU at 256 senders (docs/benchmarks.md, "The search index's
//! pending list" and "The pending list cleaned in the background").
//!
//! So the store merges the list itself, from a connection of its own pool that no message waits
//! on: every [`CLEAN_INTERVAL`] in which it has inserted at least [`MERGE_AFTER`] messages since
//! its last merge, it calls `gin_clean_pending_list`, which merges what is pending while inserts
//! go on appending. An idle gateway sends Postgres nothing, and the merges add at most one
//! transaction per [`MERGE_AFTER`] messages (issue 12 counts transactions per message).
//! Migration 0014 raises the list's limit to 16 MB so that the inserts only merge when this task
//! cannot keep up (or does not run: an older gateway, or a database role that does not own the
//! index). Several gateway processes each run one; Postgres lets one merge at a time and the
//! others find little left.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chat_core::StoreError;

use super::errors::pg_err;
use super::PostgresStore;

/// How often the pending list is merged into the index. At 14,000 messages/s about 3 MB
/// gather in a second: small enough for every search to read through quickly, large enough
/// that each merge rewrites a common word's posting list once for many messages.
const CLEAN_INTERVAL: Duration = Duration::from_secs(1);

/// The messages this store inserts before its next merge: a second of messages at any busy
/// rate; at a few messages a second, a merge every minute or so of a list that is still small.
const MERGE_AFTER: u64 = 256;

/// How long one merge may take before it is cancelled (its connection discarded; it is tried
/// again at the next interval, and what it had merged stays merged).
const CLEAN_TIMEOUT: Duration = Duration::from_secs(60);

const CLEAN: &str = "SELECT gin_clean_pending_list('messages_body_fts_idx'::regclass)";

/// The running cleaner; dropping the last clone of the store that owns it stops it.
#[derive(Debug)]
pub(super) struct PendingListCleaner {
    task: tokio::task::JoinHandle<()>,
    /// Messages inserted since the last merge began.
    inserted: Arc<AtomicU64>,
}

impl Drop for PendingListCleaner {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PendingListCleaner {
    /// Starts the cleaner on the current Tokio runtime, with `store` (a clone that owns no
    /// cleaner, so that the owner's last clone going away stops this one).
    pub(super) fn start(store: PostgresStore) -> Arc<Self> {
        let inserted = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(run(store, Arc::clone(&inserted)));
        Arc::new(Self { task, inserted })
    }

    /// Counts `messages` committed by the store.
    pub(super) fn inserted(&self, messages: usize) {
        self.inserted.fetch_add(messages as u64, Ordering::Relaxed);
    }
}

async fn run(store: PostgresStore, inserted: Arc<AtomicU64>) {
    let mut ticks = tokio::time::interval(CLEAN_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A failure is logged once per streak of failures (a database that is down says so
    // everywhere else already), and the end of the streak once.
    let mut failing = false;
    loop {
        ticks.tick().await;
        if inserted.load(Ordering::Relaxed) < MERGE_AFTER {
            continue;
        }
        // Taken now: what is inserted during the merge may miss it, and counts for the next.
        let since_last = inserted.swap(0, Ordering::Relaxed);
        let started = Instant::now();
        match clean(&store).await {
            Ok(pages) => {
                if failing {
                    tracing::info!("the search index's pending list is cleaned again");
                    failing = false;
                }
                if pages > 0 {
                    tracing::debug!(
                        pages,
                        messages = since_last,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "merged the search index's pending list"
                    );
                }
            }
            Err(error) => {
                // Counted again, so that the next tick tries again.
                inserted.fetch_add(since_last, Ordering::Relaxed);
                if !failing {
                    failing = true;
                    tracing::warn!(
                        %error,
                        "cannot clean the search index's pending list; inserts will merge it \
                         themselves, later and slower (the database role must own \
                         messages_body_fts_idx)"
                    );
                }
            }
        }
    }
}

/// Merges the pending list; returns how many of its pages were removed.
async fn clean(store: &PostgresStore) -> Result<i64, StoreError> {
    with_client!(store, CLEAN_TIMEOUT, |client| {
        let row = client.query_one(CLEAN, &[]).await.map_err(pg_err)?;
        row.try_get::<_, i64>(0).map_err(pg_err)
    })
}
