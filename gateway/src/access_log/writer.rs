//! The writer thread: the only place that touches the log's destination. Requests hand entries
//! over a bounded channel and never wait; the thread formats them and writes in batches. A
//! destination that blocks (a full stdout pipe nobody reads, a stalled disk) blocks this thread
//! alone, the channel fills, and further entries are dropped and counted
//! (`chat_access_log_dropped_total`).

use super::format::{write_line, Format};
use super::Entry;
use crate::reload::Reload;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Most bytes formatted before they are written out.
const BATCH_BYTES: usize = 64 * 1024;

/// What travels to the writer thread.
pub(super) enum Msg {
    /// A line to write.
    Entry(Box<Entry>),
    /// Look at the reopened file (sent by [`Reopen`]).
    Wake,
}

/// Where lines go.
pub(super) enum Sink {
    Stdout,
    Stderr,
    File(File),
    /// Any writer (tests).
    #[cfg(test)]
    Custom(Box<dyn Write + Send>),
}

impl Sink {
    fn write_batch(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            // Locked per batch only: a blocked write holds the lock, but std's exit path only
            // tries it, so the process still exits.
            Sink::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(bytes)?;
                out.flush()
            }
            Sink::Stderr => std::io::stderr().lock().write_all(bytes),
            Sink::File(file) => file.write_all(bytes),
            #[cfg(test)]
            Sink::Custom(w) => {
                w.write_all(bytes)?;
                w.flush()
            }
        }
    }
}

/// Opens `path` for appending, creating it readable by its owner and group only: access logs
/// hold client addresses.
pub(super) fn open_log_file(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
}

/// A file opened by a reload, for the writer to switch to.
pub(super) type Reopened = Arc<Mutex<Option<File>>>;

/// How long the writer lets lines gather after the first one of a batch arrived. A writer
/// blocked in `recv` must be woken by the sender (a futex call and a thread switch, several µs);
/// while it sleeps here instead, senders only queue. So a busy gateway wakes it about 50 times a
/// second rather than once per request, as Nginx's `access_log ... flush=` buffers; a line
/// reaches the destination at most this late.
pub(super) const GATHER: Duration = Duration::from_millis(20);

/// Runs until every sender is gone.
pub(super) fn run(rx: Receiver<Msg>, mut sink: Sink, format: Format, reopened: Reopened) {
    let mut batch = String::with_capacity(BATCH_BYTES);
    let mut last_error: Option<Instant> = None;
    while let Ok(first) = rx.recv() {
        std::thread::sleep(GATHER);
        // Everything queued now is written, in batches of about `BATCH_BYTES`.
        let mut next = Some(first);
        while next.is_some() {
            batch.clear();
            while let Some(msg) = next.take() {
                if let Msg::Entry(entry) = msg {
                    write_line(format, &entry, &mut batch);
                }
                next = rx.try_recv().ok();
                if batch.len() >= BATCH_BYTES {
                    break;
                }
            }
            if let Some(file) = reopened.lock().unwrap_or_else(|p| p.into_inner()).take() {
                sink = Sink::File(file);
            }
            if batch.is_empty() {
                continue;
            }
            if let Err(e) = sink.write_batch(batch.as_bytes()) {
                // Said at most once a minute: a full disk must not flood the error log too.
                if last_error.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                    tracing::error!(error = %e, "cannot write the access log");
                    last_error = Some(Instant::now());
                }
            }
        }
    }
}

/// Reopens the log file on SIGHUP (`crate::reload`), so that logrotate can move it away.
pub(super) struct Reopen {
    pub(super) path: Option<PathBuf>,
    pub(super) reopened: Reopened,
    pub(super) wake: SyncSender<Msg>,
}

impl Reload for Reopen {
    fn name(&self) -> &'static str {
        "access_log"
    }

    fn reload(&self) -> Result<String, String> {
        let Some(path) = &self.path else {
            return Ok("unchanged (not a file)".into());
        };
        let file =
            open_log_file(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        *self.reopened.lock().unwrap_or_else(|p| p.into_inner()) = Some(file);
        // The writer switches files before its next write; waking it closes the old file now
        // (a full queue is busy anyway and switches soon).
        let _ = self.wake.try_send(Msg::Wake);
        Ok(format!("reopened {}", path.display()))
    }
}
