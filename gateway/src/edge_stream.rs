//! The edge's connections on streams of our own instead of Pingora's L4 stream.
//!
//! [`OwnStreams`] wraps the edge's app: every accepted connection is taken off Pingora's L4
//! stream onto a bare socket (`crate::bare_socket`) and handed to the app as an [`EdgeStream`]:
//! - on the TLS listener (`CHAT_TLS_LISTEN`), after the TLS handshake, over our TLS stream
//!   (`crate::tls::termination`, `crate::tls::stream`);
//! - on the plain listener, over [`GatheredWrites`]: writes wait for a flush, so a response's
//!   head and body leave in one system call (Pingora's stream sent a proxied page's head and
//!   body separately), and the buffer is freed once sent, so an idle connection holds none.
//!
//! [`EdgeStream`] tells Pingora's HTTP layer what its own stream would: the peer's address, and
//! for TLS the negotiated ALPN protocol (`h2` or `http/1.1`) and a TLS digest (so requests know
//! they came over TLS). A connection whose socket cannot be taken (the descriptor cannot be
//! duplicated: the process is out of descriptors) stays on Pingora's stream, plain, or is
//! refused, TLS.

use crate::gathered_writes::GatheredWrites;
use crate::metrics;
use crate::tls::stream::TlsStream;
use crate::tls::termination::TlsListener;
use async_trait::async_trait;
use bytes::BytesMut;
use pingora::apps::ServerApp;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::{SslDigest, ALPN};
use pingora::protocols::{GetProxyDigest, GetSocketDigest, GetTimingDigest};
use pingora::protocols::{Peek, Shutdown, Ssl, Stream, UniqueID, UniqueIDType};
use pingora::protocols::{SocketDigest, TimingDigest};
use pingora::server::ShutdownWatch;
use std::io;
use std::os::fd::RawFd;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A plain TCP connection of the edge.
pub type PlainStream = EdgeStream<GatheredWrites<TcpStream>>;

/// A TLS connection of the edge.
pub type TlsEdgeStream = EdgeStream<TlsStream<TcpStream>>;

/// What a TLS connection negotiated, as Pingora's HTTP layer asks for it.
#[derive(Debug, Clone)]
pub struct Negotiated {
    /// The protocol version and cipher suite, shared by every connection that negotiated them.
    pub ssl: Arc<SslDigest>,
    /// `h2` or `http/1.1`, if the client offered ALPN.
    pub alpn: Option<ALPN>,
}

/// A connection of the edge as Pingora's HTTP layer sees it (see the module documentation).
pub struct EdgeStream<S> {
    io: S,
    fd: RawFd,
    socket: Arc<SocketDigest>,
    tls: Option<Negotiated>,
    /// Bytes already read from the socket, read again first: a request head the gateway's own
    /// HTTP/1.1 front (`crate::h1_front`) read, then handed to Pingora.
    unread: BytesMut,
}

impl<S> EdgeStream<S> {
    /// `io` on the socket `fd`, whose digest is `socket`.
    pub fn new(io: S, fd: RawFd, socket: Arc<SocketDigest>, tls: Option<Negotiated>) -> Self {
        Self {
            io,
            fd,
            socket,
            tls,
            unread: BytesMut::new(),
        }
    }

    /// Puts `bytes` in front of what is read next.
    pub fn put_back(&mut self, mut bytes: BytesMut) {
        if !self.unread.is_empty() {
            bytes.extend_from_slice(&self.unread);
        }
        self.unread = bytes;
    }

    /// Takes the bytes put back and not read yet.
    pub fn take_unread(&mut self) -> BytesMut {
        std::mem::take(&mut self.unread)
    }
}

impl PlainStream {
    /// A plain connection taken off Pingora's stream.
    pub fn plain(taken: crate::bare_socket::Taken) -> Self {
        use std::os::fd::AsRawFd;
        let fd = taken.tcp.as_raw_fd();
        Self::new(GatheredWrites::new(taken.tcp), fd, taken.socket, None)
    }

    /// The bare socket, for a connection that leaves HTTP (a chat WebSocket after its `101`),
    /// unless bytes written are still waiting for a flush or bytes put back were not read.
    pub fn into_tcp(self) -> Result<TcpStream, Box<Self>> {
        if !self.unread.is_empty() {
            return Err(Box::new(self));
        }
        let Self {
            io,
            fd,
            socket,
            tls,
            unread,
        } = self;
        io.into_inner().map_err(|io| {
            Box::new(Self {
                io,
                fd,
                socket,
                tls,
                unread,
            })
        })
    }

    /// Waits until the socket has something to read (or bytes were put back), without a buffer:
    /// an idle kept-alive connection holds none.
    pub async fn readable(&self) -> io::Result<()> {
        if self.unread.is_empty() {
            self.io.get_ref().readable().await?;
        }
        Ok(())
    }
}

impl<S> std::fmt::Debug for EdgeStream<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeStream")
            .field("fd", &self.fd)
            .field("alpn", &self.tls.as_ref().map(|t| &t.alpn))
            .finish_non_exhaustive()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for EdgeStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.unread.is_empty() {
            let n = self.unread.len().min(buf.remaining());
            buf.put_slice(&self.unread.split_to(n));
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for EdgeStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[async_trait]
impl<S: AsyncWrite + Unpin + Send> Shutdown for EdgeStream<S> {
    async fn shutdown(&mut self) {
        use tokio::io::AsyncWriteExt;
        // What is gathered (TLS: then `close_notify`), then FIN; a peer that already left
        // makes this fail, which is fine.
        let _ = tokio::time::timeout(Duration::from_secs(1), AsyncWriteExt::shutdown(self)).await;
    }
}

impl<S> UniqueID for EdgeStream<S> {
    fn id(&self) -> UniqueIDType {
        self.fd
    }
}

impl<S> Ssl for EdgeStream<S> {
    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.tls.as_ref().map(|t| t.ssl.clone())
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.tls.as_ref().and_then(|t| t.alpn.clone())
    }
}

impl<S> GetTimingDigest for EdgeStream<S> {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        Vec::new()
    }
}

impl<S> GetProxyDigest for EdgeStream<S> {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        None
    }
}

impl<S> GetSocketDigest for EdgeStream<S> {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        Some(self.socket.clone())
    }
}

impl<S> Peek for EdgeStream<S> {}

/// The edge's app on our own streams (see the module documentation).
pub struct OwnStreams<A> {
    inner: Arc<A>,
    tls: Option<TlsListener>,
}

impl<A> OwnStreams<A> {
    /// `inner`, with TLS terminated in front of it for connections to `tls`.
    pub fn new(inner: A, tls: Option<TlsListener>) -> Self {
        Self {
            inner: Arc::new(inner),
            tls,
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for OwnStreams<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let tls = self.tls.as_ref().filter(|tls| tls.accepted(&stream));
        let taken = match crate::bare_socket::take(stream) {
            Ok(taken) => taken,
            Err(stream) if tls.is_none() => return self.inner.process_new(stream, shutdown).await,
            Err(_) => {
                metrics::tls_handshake_failed("refused");
                return None;
            }
        };
        let Some(tls) = tls else {
            return self
                .inner
                .process_new(Box::new(PlainStream::plain(taken)), shutdown)
                .await;
        };
        // Boxed: the handshake's state (the TLS stream, its timer) lives only while it runs,
        // instead of widening this future, which plain connections run too, for their life.
        match Box::pin(tls.handshake(taken)).await {
            Ok(tls) => self.inner.process_new(Box::new(tls), shutdown).await,
            Err(reason) => {
                metrics::tls_handshake_failed(reason);
                None
            }
        }
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}
