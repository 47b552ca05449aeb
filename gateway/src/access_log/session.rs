//! The record of one chat session (WebSocket or long-polling): what its opening request said,
//! the bytes an upgraded connection carries, and the line written when it ends.

use super::{AccessLog, Entry, SessionFields};
use chat_transport_upgraded::Upgraded;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes through an upgraded connection.
#[derive(Default)]
pub(super) struct Counts {
    sent: AtomicU64,
    received: AtomicU64,
}

/// A chat session being recorded: what its opening request said, and its byte counts.
pub struct SessionRecord {
    pub(super) log: AccessLog,
    pub(super) started: Instant,
    pub(super) client: Option<IpAddr>,
    pub(super) method: String,
    pub(super) path: String,
    pub(super) protocol: &'static str,
    pub(super) status: u16,
    /// Whether the connection's bytes are counted ([`SessionRecord::count`]).
    pub(super) counted: bool,
    pub(super) referer: Option<String>,
    pub(super) user_agent: Option<String>,
    pub(super) transport: &'static str,
    pub(super) role: &'static str,
    pub(super) counts: Arc<Counts>,
}

impl SessionRecord {
    /// The connection, counting the bytes it carries (when the log is on).
    pub fn count(&mut self, upgraded: Upgraded) -> Upgraded {
        if !self.log.enabled() {
            return upgraded;
        }
        self.counted = true;
        self.counts
            .received
            .fetch_add(upgraded.read_ahead.len() as u64, Ordering::Relaxed);
        Upgraded {
            stream: Box::new(Counted {
                inner: upgraded.stream,
                counts: self.counts.clone(),
            }),
            read_ahead: upgraded.read_ahead,
        }
    }

    /// Writes the session's line; `reason` is a `chat_disconnects_total` reason word.
    pub fn end(self, reason: &'static str) {
        let counted = |n: &AtomicU64| self.counted.then(|| n.load(Ordering::Relaxed));
        self.log.record(Entry {
            time: SystemTime::now(),
            client: self.client,
            method: self.method,
            path: self.path,
            protocol: self.protocol,
            status: self.status,
            bytes_sent: counted(&self.counts.sent),
            bytes_received: counted(&self.counts.received),
            duration: self.started.elapsed(),
            upstream: None,
            referer: self.referer,
            user_agent: self.user_agent,
            session: Some(SessionFields {
                transport: self.transport,
                role: self.role,
                reason,
            }),
        });
    }
}

/// A stream that counts what goes through it.
struct Counted<S> {
    inner: S,
    counts: Arc<Counts>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len().saturating_sub(before);
        self.counts
            .received
            .fetch_add(read as u64, Ordering::Relaxed);
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &polled {
            self.counts.sent.fetch_add(*n as u64, Ordering::Relaxed);
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
