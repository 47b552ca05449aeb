//! Writes gathered until a flush, in a buffer that exists only while it holds bytes.
//!
//! Pingora's HTTP/1 layer writes a response's head, its body and (chunked) each chunk's frame
//! separately, then flushes. Under its own L4 stream a `BufWriter` of fixed capacity gathered
//! them, but only up to that capacity (512 bytes on the edge, `crate::server`'s
//! `edge_l4_buffers`), kept for the connection's life: a proxied 2.7 KB page left as two
//! `sendto`, head then body, where Nginx makes one `writev`. [`GatheredWrites`] gathers up to
//! [`COALESCE`] bytes until the flush, and frees the buffer once it was sent, so an idle
//! connection holds none. [`Pending`] is the buffer, shared with the TLS stream
//! (`crate::tls::stream`), which gathers its ciphertext the same way.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes gathered from small writes before they are sent without waiting for a flush.
pub const COALESCE: usize = 16 * 1024;

/// Most bytes one `poll_write` takes; a larger write is taken in parts.
pub const MAX_WRITE: usize = 64 * 1024;

/// Bytes with a read position; the allocation is dropped once everything was consumed.
#[derive(Debug, Default)]
pub struct Pending {
    /// The bytes, read and unread.
    pub bytes: Vec<u8>,
    /// Where the unread bytes start.
    pub at: usize,
}

impl Pending {
    /// Whether every byte was consumed.
    pub fn is_empty(&self) -> bool {
        self.at == self.bytes.len()
    }

    /// The bytes not consumed yet.
    pub fn unread(&self) -> &[u8] {
        &self.bytes[self.at..]
    }

    /// Marks `n` more bytes consumed; frees the buffer once all are.
    pub fn consume(&mut self, n: usize) {
        self.at += n;
        if self.is_empty() {
            *self = Self::default();
        }
    }

    /// Forgets consumed bytes (keeping the allocation) so that new ones start at 0.
    pub fn rewind_if_empty(&mut self) {
        if self.is_empty() {
            self.bytes.clear();
            self.at = 0;
        }
    }

    /// Writes everything unread to `io`; ready once all of it left.
    pub fn poll_send<W: AsyncWrite + Unpin>(
        &mut self,
        io: &mut W,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while !self.is_empty() {
            let n = ready!(Pin::new(&mut *io).poll_write(cx, self.unread()))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.consume(n);
        }
        Poll::Ready(Ok(()))
    }
}

/// The gathering policy of a writer that buffers in [`Pending`]: at most `COALESCE` bytes, plus
/// one write's worth.
impl Pending {
    /// Before a write is taken: past `COALESCE` bytes, what is gathered goes first.
    pub fn poll_room<W: AsyncWrite + Unpin>(
        &mut self,
        io: &mut W,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        if self.unread().len() >= COALESCE {
            ready!(self.poll_send(io, cx))?;
        }
        Poll::Ready(Ok(()))
    }

    /// After a write was taken: past `COALESCE` bytes, sending starts now; what the socket
    /// does not take yet is sent by the next call.
    pub fn start_sending_if_full<W: AsyncWrite + Unpin>(
        &mut self,
        io: &mut W,
        cx: &mut Context<'_>,
    ) -> io::Result<()> {
        if self.unread().len() >= COALESCE {
            if let Poll::Ready(Err(e)) = self.poll_send(io, cx) {
                return Err(e);
            }
        }
        Ok(())
    }
}

/// `io` with its writes gathered until a flush (see the module documentation); reads pass
/// straight through.
#[derive(Debug)]
pub struct GatheredWrites<S> {
    io: S,
    outgoing: Pending,
}

impl<S> GatheredWrites<S> {
    /// `io`, nothing gathered yet.
    pub fn new(io: S) -> Self {
        Self {
            io,
            outgoing: Pending::default(),
        }
    }

    /// The stream under it.
    pub fn get_ref(&self) -> &S {
        &self.io
    }

    /// The stream under it, unless bytes written are still waiting for a flush.
    pub fn into_inner(self) -> Result<S, Self> {
        if self.outgoing.is_empty() {
            Ok(self.io)
        } else {
            Err(self)
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for GatheredWrites<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for GatheredWrites<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.outgoing.poll_room(&mut this.io, cx))?;
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let data = &data[..data.len().min(MAX_WRITE)];
        if this.outgoing.is_empty() && data.len() >= COALESCE {
            // Large enough to go as it is, without a copy.
            return Pin::new(&mut this.io).poll_write(cx, data);
        }
        this.outgoing.rewind_if_empty();
        this.outgoing.bytes.extend_from_slice(data);
        this.outgoing.start_sending_if_full(&mut this.io, cx)?;
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.outgoing.poll_send(&mut this.io, cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.outgoing.poll_send(&mut this.io, cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A writer that records each write it was given, as the socket would see system calls.
    #[derive(Default)]
    struct Recorder {
        writes: Vec<usize>,
    }

    impl AsyncWrite for Recorder {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            data: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.writes.push(data.len());
            Poll::Ready(Ok(data.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn a_head_and_its_body_leave_in_one_write_at_the_flush_and_nothing_is_kept() {
        let mut stream = GatheredWrites::new(Recorder::default());
        stream.write_all(&[b'h'; 250]).await.unwrap();
        stream.write_all(&[b'b'; 2700]).await.unwrap();
        stream.write_all(b"0\r\n\r\n").await.unwrap();
        assert!(stream.io.writes.is_empty(), "nothing sent before the flush");
        stream.flush().await.unwrap();
        assert_eq!(stream.io.writes, [2955]);
        assert_eq!(
            stream.outgoing.bytes.capacity(),
            0,
            "the buffer is freed once sent"
        );
        assert!(stream.into_inner().is_ok());
    }

    #[tokio::test]
    async fn gathering_stops_at_the_bound_and_large_writes_are_not_copied() {
        let mut stream = GatheredWrites::new(Recorder::default());
        stream.write_all(&[1; 1000]).await.unwrap();
        stream.write_all(&[2; COALESCE]).await.unwrap();
        // The 1,000 bytes and the large write went together once past the bound.
        assert_eq!(stream.io.writes, [1000 + COALESCE]);
        stream.write_all(&[3; COALESCE + 1]).await.unwrap();
        assert_eq!(stream.io.writes, [1000 + COALESCE, COALESCE + 1]);
        stream.write_all(&[4; 3 * MAX_WRITE]).await.unwrap();
        assert_eq!(&stream.io.writes[2..], [MAX_WRITE; 3]);
        stream.flush().await.unwrap();
        assert_eq!(stream.io.writes.len(), 5);
    }

    #[tokio::test]
    async fn bytes_not_flushed_keep_the_stream_from_being_unwrapped() {
        let (client, server) = tokio::io::duplex(64);
        let mut stream = GatheredWrites::new(server);
        stream.write_all(b"pending").await.unwrap();
        let mut stream = stream.into_inner().expect_err("bytes wait for a flush");
        stream.flush().await.unwrap();
        let mut client = client;
        let mut got = [0; 7];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"pending");
        client.write_all(b"in").await.unwrap();
        let mut read = [0; 2];
        stream.read_exact(&mut read).await.unwrap();
        assert_eq!(&read, b"in");
        assert!(stream.into_inner().is_ok());
    }
}
