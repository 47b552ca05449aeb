//! A server-side TLS stream on rustls's *unbuffered* API: its buffers exist only while they hold
//! bytes.
//!
//! Why not tokio-rustls (or Pingora's TLS stream on top of it): rustls's buffered connection
//! keeps the 4,096-byte buffer of its last read for the connection's life, and Pingora's stream
//! adds its own struct, write buffer and digests; an idle `wss://` connection paid about 11 KiB
//! for TLS (docs/benchmarks.md, "`wss://`: where its 11 KiB go"). Here the caller owns the
//! buffers (rustls/rustls#794): ciphertext received (a partial record), plaintext decrypted and
//! not yet read, ciphertext encrypted and not yet written. Each is freed as soon as it is empty,
//! so an idle connection holds only rustls's session state and the socket.
//!
//! Every buffer is bounded: a TLS record is at most 16 KiB plus overhead (rustls refuses a
//! larger one), the socket is read only when the reader has consumed everything decrypted, and
//! writes gather until a flush or 16 KiB (as a `BufWriter` would), then must leave before more
//! is taken.

use crate::gathered_writes::{Pending, MAX_WRITE};
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, InsufficientSizeError, UnbufferedStatus,
};
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes asked of the socket per read (into a stack buffer): one full TLS record (16 KiB of
/// plaintext plus at most 256 bytes of overhead).
const READ_CHUNK: usize = 16 * 1024 + 256;

/// Ciphertext one record adds to its plaintext, at most (TLS 1.2 AES-GCM: 5 header + 8 nonce +
/// 16 tag; TLS 1.3: 5 header + 1 type + 16 tag); a buffer too small is grown and the call
/// retried, so this only sizes the first try.
const RECORD_OVERHEAD: usize = 40;

/// Largest plaintext per record.
const MAX_FRAGMENT: usize = 16 * 1024;

/// What the caller of [`TlsStream::advance`] wants from rustls.
enum Goal<'a, 'b> {
    /// Finish the handshake.
    Handshake,
    /// Plaintext to read: into this buffer first, what does not fit into `plaintext`.
    Read(&'a mut ReadBuf<'b>),
    /// Encrypt these bytes.
    Write(&'a [u8]),
    /// Encrypt a `close_notify` alert.
    CloseNotify,
}

/// Where [`TlsStream::advance`] stopped.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// The handshake is done.
    Handshaken,
    /// Plaintext is waiting in `plaintext`.
    Plaintext,
    /// Nothing more can happen before more ciphertext arrives.
    NeedsBytes,
    /// The goal's bytes (or alert) were encrypted into `outgoing`.
    Encrypted,
    /// The peer sent `close_notify`: no more plaintext will come.
    PeerClosed,
}

/// A TLS server connection over `S` (a TCP socket in the gateway); see the module documentation.
pub struct TlsStream<S> {
    io: S,
    conn: UnbufferedServerConnection,
    /// Ciphertext received and not yet processed (a partial record, or records behind the
    /// plaintext not yet read).
    incoming: Vec<u8>,
    /// Plaintext decrypted and not yet read.
    plaintext: Pending,
    /// Ciphertext (handshake, alerts, application data) not yet written to `io`.
    outgoing: Pending,
    peer_closed: bool,
    close_notify_sent: bool,
}

impl<S> std::fmt::Debug for TlsStream<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream")
            .field("incoming", &self.incoming.len())
            .field("plaintext", &self.plaintext.unread().len())
            .field("outgoing", &self.outgoing.unread().len())
            .field("peer_closed", &self.peer_closed)
            .finish_non_exhaustive()
    }
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream<S> {
    /// Runs the server side of the handshake on `io`. Bytes the client sends behind its
    /// `Finished` (its first request) are kept for the first read. No deadline here: the caller
    /// puts one around it.
    pub async fn accept(io: S, conn: UnbufferedServerConnection) -> io::Result<Self> {
        let mut stream = Self {
            io,
            conn,
            incoming: Vec::new(),
            plaintext: Pending::default(),
            outgoing: Pending::default(),
            peer_closed: false,
            close_notify_sent: false,
        };
        std::future::poll_fn(|cx| stream.poll_handshake(cx)).await?;
        Ok(stream)
    }

    /// The rustls connection (its negotiated ALPN protocol, SNI, version and cipher suite).
    pub fn connection(&self) -> &UnbufferedServerConnection {
        &self.conn
    }

    /// The transport under TLS.
    pub fn get_ref(&self) -> &S {
        &self.io
    }

    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let outcome = self.advance_or_alert(cx, Goal::Handshake)?;
            // The server's flight (and the tickets after the client's `Finished`) goes out
            // before waiting for the client.
            ready!(self.poll_write_outgoing(cx))?;
            match outcome {
                Outcome::Handshaken => return Poll::Ready(Ok(())),
                Outcome::NeedsBytes => {
                    if ready!(self.poll_fill(cx))? == 0 {
                        return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
                    }
                }
                Outcome::PeerClosed => {
                    return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
                }
                Outcome::Plaintext | Outcome::Encrypted => {}
            }
        }
    }

    /// Feeds the ciphertext received to rustls until `goal` is reached or more bytes are
    /// needed: decrypted records go to `plaintext`, handshake records and alerts to `outgoing`.
    fn advance(&mut self, mut goal: Goal<'_, '_>) -> io::Result<Outcome> {
        let Self {
            conn,
            incoming,
            plaintext,
            outgoing,
            peer_closed,
            ..
        } = self;
        loop {
            let UnbufferedStatus { mut discard, state } = conn.process_tls_records(incoming);
            let state = match state {
                Ok(state) => state,
                Err(e) => {
                    take_alert(conn, outgoing);
                    return Err(tls_error(e));
                }
            };
            let outcome = match state {
                ConnectionState::ReadTraffic(mut traffic) => {
                    while let Some(record) = traffic.next_record() {
                        let record = record.map_err(tls_error)?;
                        discard += record.discard;
                        let mut payload = record.payload;
                        // Straight into the reader's buffer when it has room: no copy kept.
                        if let Goal::Read(buf) = &mut goal {
                            let n = payload.len().min(buf.remaining());
                            buf.put_slice(&payload[..n]);
                            payload = &payload[n..];
                        }
                        if payload.is_empty() {
                            continue;
                        }
                        plaintext.rewind_if_empty();
                        plaintext.bytes.extend_from_slice(payload);
                    }
                    matches!(goal, Goal::Read(_)).then_some(Outcome::Plaintext)
                }
                ConnectionState::EncodeTlsData(mut data) => {
                    // A certificate chain fits in most first tries; a larger one is retried.
                    append_to(outgoing, 4096, |buf| {
                        data.encode(buf).map_err(|e| match e {
                            EncodeError::InsufficientSize(InsufficientSizeError {
                                required_size,
                            }) => TooSmall::Needs(required_size),
                            e => TooSmall::Failed(e.to_string()),
                        })
                    })?;
                    None
                }
                // The encoded bytes are ours now; `poll_write_outgoing` sends them.
                ConnectionState::TransmitTlsData(data) => {
                    data.done();
                    None
                }
                ConnectionState::BlockedHandshake => Some(Outcome::NeedsBytes),
                ConnectionState::WriteTraffic(mut traffic) => match goal {
                    // TLS 1.3 lets the server send before the client's `Finished`: checked
                    // below, once `traffic` no longer borrows the connection.
                    Goal::Handshake => Some(Outcome::Handshaken),
                    Goal::Read(_) => Some(Outcome::NeedsBytes),
                    Goal::Write(data) => {
                        let records = data.len().div_ceil(MAX_FRAGMENT).max(1);
                        let want = data.len() + records * RECORD_OVERHEAD;
                        append_to(outgoing, want, |buf| {
                            traffic.encrypt(data, buf).map_err(|e| match e {
                                EncryptError::InsufficientSize(InsufficientSizeError {
                                    required_size,
                                }) => TooSmall::Needs(required_size),
                                e => TooSmall::Failed(e.to_string()),
                            })
                        })?;
                        Some(Outcome::Encrypted)
                    }
                    Goal::CloseNotify => {
                        let start = spare(outgoing, 64);
                        let n = traffic
                            .queue_close_notify(&mut outgoing.bytes[start..])
                            .map_err(|e| io::Error::other(e.to_string()))?;
                        outgoing.bytes.truncate(start + n);
                        Some(Outcome::Encrypted)
                    }
                },
                ConnectionState::PeerClosed => {
                    *peer_closed = true;
                    match goal {
                        Goal::Read(_) | Goal::Handshake => Some(Outcome::PeerClosed),
                        Goal::Write(_) | Goal::CloseNotify => None,
                    }
                }
                ConnectionState::Closed => {
                    *peer_closed = true;
                    match goal {
                        Goal::Read(_) | Goal::Handshake => Some(Outcome::PeerClosed),
                        // Both sides said `close_notify`: nothing more may be sent.
                        Goal::Write(_) => return Err(io::ErrorKind::BrokenPipe.into()),
                        Goal::CloseNotify => Some(Outcome::Encrypted),
                    }
                }
                // Early data is off in the server configuration; anything else is a rustls
                // state this code does not know.
                other => return Err(io::Error::other(format!("unexpected TLS state {other:?}"))),
            };
            let outcome = match outcome {
                Some(Outcome::Handshaken) if conn.is_handshaking() => Some(Outcome::NeedsBytes),
                outcome => outcome,
            };
            if discard > 0 {
                incoming.drain(..discard);
            }
            if incoming.is_empty() {
                *incoming = Vec::new();
            }
            if let Some(outcome) = outcome {
                return Ok(outcome);
            }
        }
    }

    /// [`Self::advance`]; on a TLS error, the alert rustls queued for the peer (say
    /// `handshake_failure`, `bad_record_mac`) is sent if the socket takes it at once, so that
    /// the client learns why rather than seeing the connection reset.
    fn advance_or_alert(
        &mut self,
        cx: &mut Context<'_>,
        goal: Goal<'_, '_>,
    ) -> io::Result<Outcome> {
        self.advance(goal).inspect_err(|_| {
            let _ = self.poll_write_outgoing(cx);
        })
    }

    /// Reads ciphertext from the socket behind what `incoming` holds; `Ok(0)` at its end.
    /// The read goes to the stack first, so a socket with nothing to read costs no allocation
    /// and `incoming` grows only by what arrived.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let mut chunk = [std::mem::MaybeUninit::<u8>::uninit(); READ_CHUNK];
        let mut buf = ReadBuf::uninit(&mut chunk);
        ready!(Pin::new(&mut self.io).poll_read(cx, &mut buf))?;
        self.incoming.extend_from_slice(buf.filled());
        Poll::Ready(Ok(buf.filled().len()))
    }

    /// Writes out `outgoing`; ready once all of it left.
    fn poll_write_outgoing(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.outgoing.poll_send(&mut self.io, cx)
    }
}

/// After an error, what rustls still queued for the peer (records of the handshake so far and
/// the alert, each its own chunk) into `outgoing`.
fn take_alert(conn: &mut UnbufferedServerConnection, outgoing: &mut Pending) {
    // Each call hands out one queued chunk; the bound only guards against a surprise.
    for _ in 0..16 {
        match conn.process_tls_records(&mut []).state {
            Ok(ConnectionState::EncodeTlsData(mut chunk)) => {
                let encoded = append_to(outgoing, 512, |buf| {
                    chunk.encode(buf).map_err(|e| match e {
                        EncodeError::InsufficientSize(InsufficientSizeError { required_size }) => {
                            TooSmall::Needs(required_size)
                        }
                        e => TooSmall::Failed(e.to_string()),
                    })
                });
                if encoded.is_err() {
                    return;
                }
            }
            Ok(ConnectionState::TransmitTlsData(data)) => data.done(),
            _ => return,
        }
    }
}

/// Why an encoder wrote nothing.
enum TooSmall {
    /// The buffer was too small; it needs this many bytes.
    Needs(usize),
    /// Anything else.
    Failed(String),
}

/// Appends to `pending` what `encode` writes into a spare of `want` bytes; a spare too small is
/// grown to the size the encoder asked for and the encoder tried again.
fn append_to(
    pending: &mut Pending,
    mut want: usize,
    mut encode: impl FnMut(&mut [u8]) -> Result<usize, TooSmall>,
) -> io::Result<()> {
    loop {
        let start = spare(pending, want);
        let written = encode(&mut pending.bytes[start..]);
        pending
            .bytes
            .truncate(start + *written.as_ref().unwrap_or(&0));
        match written {
            Ok(_) => return Ok(()),
            Err(TooSmall::Needs(size)) if size > want => want = size,
            Err(TooSmall::Needs(size)) => {
                return Err(io::Error::other(format!(
                    "TLS encoder asked for {size} bytes again"
                )))
            }
            Err(TooSmall::Failed(why)) => return Err(io::Error::other(why)),
        }
    }
}

/// Grows `pending`'s buffer by `want` zeroed bytes for an encoder and returns where they start;
/// the caller truncates to what was written.
fn spare(pending: &mut Pending, want: usize) -> usize {
    pending.rewind_if_empty();
    let start = pending.bytes.len();
    pending.bytes.resize(start + want, 0);
    start
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.plaintext.is_empty() {
                let n = this.plaintext.unread().len().min(buf.remaining());
                buf.put_slice(&this.plaintext.unread()[..n]);
                this.plaintext.consume(n);
                return Poll::Ready(Ok(()));
            }
            if this.peer_closed {
                return Poll::Ready(Ok(()));
            }
            let filled = buf.filled().len();
            let outcome = this.advance_or_alert(cx, Goal::Read(buf))?;
            // Alerts and key updates rustls answered while reading; a socket that cannot take
            // them now gets them with the next write or flush.
            if let Poll::Ready(Err(e)) = this.poll_write_outgoing(cx) {
                return Poll::Ready(Err(e));
            }
            if buf.filled().len() > filled {
                return Poll::Ready(Ok(()));
            }
            match outcome {
                Outcome::Plaintext => {}
                Outcome::PeerClosed => return Poll::Ready(Ok(())),
                _ => {
                    // A peer that closes TCP without `close_notify` ends the stream as well:
                    // HTTP's own framing says whether what came was complete.
                    if ready!(this.poll_fill(cx))? == 0 {
                        this.peer_closed = true;
                        return Poll::Ready(Ok(()));
                    }
                }
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // Small writes gather until a flush, as Pingora's own buffered stream did: an HTTP/1
        // response's head and body leave in one system call. Past `COALESCE` bytes, what is
        // gathered goes first, so at most `COALESCE` plus one write's worth is ever buffered.
        ready!(this.outgoing.poll_room(&mut this.io, cx))?;
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let data = &data[..data.len().min(MAX_WRITE)];
        this.advance_or_alert(cx, Goal::Write(data))?;
        this.outgoing.start_sending_if_full(&mut this.io, cx)?;
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_write_outgoing(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.close_notify_sent {
            ready!(this.poll_write_outgoing(cx))?;
            this.close_notify_sent = true;
            this.advance(Goal::CloseNotify)?;
        }
        ready!(this.poll_write_outgoing(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
