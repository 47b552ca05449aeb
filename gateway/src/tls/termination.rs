//! TLS termination for the TLS listener (`CHAT_TLS_LISTEN`), in the gateway rather than in
//! Pingora's listener.
//!
//! Pingora's TLS listener runs tokio-rustls, whose buffered rustls connection keeps a 4 KiB read
//! buffer for a connection's life and cannot hand the connection over: an idle `wss://` chat
//! connection paid about 11 KiB for TLS. [`TlsTermination`] wraps the edge's app instead: a
//! connection to the TLS listener is taken off Pingora's L4 stream onto a bare socket
//! (`crate::bare_socket`), its handshake runs on [`TlsStream`] (rustls's unbuffered API, buffers
//! only while they hold bytes), and the app gets an [`EdgeTlsStream`], which tells Pingora what
//! its own TLS stream would: the negotiated ALPN protocol (`h2` or `http/1.1`), a TLS digest (so
//! requests know they came over TLS) and the peer's address.
//!
//! The handshake has a deadline, `CHAT_HEADER_TIMEOUT_SECS` (Pingora's listener had none: a
//! client that connected and sent nothing held its connection for ever); failures are counted in
//! `chat_tls_handshake_failures_total`. Certificates come from [`crate::tls::Certificates`], by
//! SNI, on every handshake.

use super::stream::TlsStream;
use crate::metrics;
use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::{SslDigest, ALPN};
use pingora::protocols::{GetProxyDigest, GetSocketDigest, GetTimingDigest};
use pingora::protocols::{Peek, Shutdown, Ssl, Stream, UniqueID, UniqueIDType};
use pingora::protocols::{SocketDigest, TimingDigest};
use pingora::server::ShutdownWatch;
use rustls::server::{ResolvesServerCert, ServerConfig, UnbufferedServerConnection};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// The server side of TLS: protocol versions 1.2 and 1.3 (as Pingora's "intermediate"
/// settings), certificates by SNI from `resolver`, ALPN `h2` then `http/1.1`, the ring provider
/// (as the certificate loader's).
pub fn server_config(
    resolver: Arc<dyn ResolvesServerCert>,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The TLS listener: its address and the handshake's configuration.
pub struct TlsListener {
    /// `CHAT_TLS_LISTEN`.
    pub listen: SocketAddr,
    /// From [`server_config`].
    pub config: Arc<ServerConfig>,
    /// A handshake not done within this is dropped (`CHAT_HEADER_TIMEOUT_SECS`).
    pub handshake_timeout: Duration,
}

impl TlsListener {
    /// Whether `stream` was accepted by this listener. An unspecified listen address
    /// (`0.0.0.0:443`) matches on the port alone.
    fn accepted(&self, stream: &Stream) -> bool {
        let local = stream
            .get_socket_digest()
            .and_then(|d| d.local_addr().cloned())
            .and_then(|a| a.as_inet().copied());
        local.is_some_and(|local| {
            local.port() == self.listen.port()
                && (self.listen.ip().is_unspecified() || local.ip() == self.listen.ip())
        })
    }
}

/// The edge's app with TLS terminated in front of it for connections to the TLS listener (see
/// the module documentation); connections to other listeners, or every connection when TLS is
/// off, pass through untouched.
pub struct TlsTermination<A> {
    inner: Arc<A>,
    tls: Option<TlsListener>,
}

impl<A> TlsTermination<A> {
    /// `inner` behind TLS for connections to `tls`.
    pub fn new(inner: A, tls: Option<TlsListener>) -> Self {
        Self {
            inner: Arc::new(inner),
            tls,
        }
    }
}

impl TlsListener {
    /// The handshake of a connection to this listener, under its deadline.
    async fn handshake(&self, stream: Stream) -> Result<EdgeTlsStream, &'static str> {
        let Some(l4) = crate::bare_socket::as_l4(&stream) else {
            return Err("refused");
        };
        let socket = stream.get_socket_digest();
        let peer = socket.as_ref().and_then(|d| d.peer_addr().cloned());
        let local = socket.as_ref().and_then(|d| d.local_addr().cloned());
        let tcp = crate::bare_socket::duplicate(l4).map_err(|e| {
            tracing::debug!(error = %e, "cannot take the TLS connection's socket");
            "refused"
        })?;
        drop(stream);
        let conn = UnbufferedServerConnection::new(self.config.clone()).map_err(|e| {
            tracing::debug!(error = %e, "cannot start a TLS connection");
            "refused"
        })?;
        let tls = match tokio::time::timeout(self.handshake_timeout, TlsStream::accept(tcp, conn))
            .await
        {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                let closed = matches!(
                    e.kind(),
                    io::ErrorKind::UnexpectedEof
                        | io::ErrorKind::ConnectionReset
                        | io::ErrorKind::BrokenPipe
                );
                tracing::debug!(?peer, error = %e, "TLS handshake failed");
                return Err(if closed { "closed" } else { "refused" });
            }
            Err(_) => {
                tracing::debug!(?peer, "TLS handshake timed out");
                return Err("timeout");
            }
        };
        // A digest of our own over the duplicated socket, its addresses already known.
        let socket = {
            use std::os::fd::AsRawFd;
            let digest = SocketDigest::from_raw_fd(tls.get_ref().as_raw_fd());
            let _ = digest.peer_addr.set(peer);
            let _ = digest.local_addr.set(local);
            Arc::new(digest)
        };
        let alpn = match tls.connection().alpn_protocol() {
            Some(b"h2") => Some(ALPN::H2),
            Some(b"http/1.1") => Some(ALPN::H1),
            _ => None,
        };
        let ssl = ssl_digest(tls.connection());
        Ok(EdgeTlsStream {
            tls,
            socket,
            ssl,
            alpn,
        })
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for TlsTermination<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let Some(tls) = self.tls.as_ref().filter(|tls| tls.accepted(&stream)) else {
            return self.inner.process_new(stream, shutdown).await;
        };
        // Boxed: the handshake's state (the TLS stream, its timer) lives only while it runs,
        // instead of widening this future, which plain connections run too, for their life.
        match Box::pin(tls.handshake(stream)).await {
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

/// The TLS digest Pingora hands to requests (`Session::digest().ssl_digest`): the protocol
/// version and cipher suite. One per combination, shared by every connection that negotiated
/// it, instead of one allocation per connection.
fn ssl_digest(conn: &UnbufferedServerConnection) -> Arc<SslDigest> {
    static DIGESTS: Mutex<Vec<(&'static str, &'static str, Arc<SslDigest>)>> =
        Mutex::new(Vec::new());
    let version = conn
        .protocol_version()
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    let cipher = conn
        .negotiated_cipher_suite()
        .and_then(|s| s.suite().as_str())
        .unwrap_or_default();
    let mut digests = DIGESTS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, _, digest)) = digests
        .iter()
        .find(|(v, c, _)| *v == version && *c == cipher)
    {
        return digest.clone();
    }
    let digest = Arc::new(SslDigest::new(cipher, version, None, None, Vec::new()));
    // Versions × suites is a small fixed set; the bound only guards against a surprise.
    if digests.len() < 64 {
        digests.push((version, cipher, digest.clone()));
    }
    digest
}

/// A TLS connection of the edge as Pingora's HTTP layer sees it (see the module documentation).
pub struct EdgeTlsStream {
    tls: TlsStream<TcpStream>,
    socket: Arc<SocketDigest>,
    ssl: Arc<SslDigest>,
    alpn: Option<ALPN>,
}

impl std::fmt::Debug for EdgeTlsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeTlsStream")
            .field("tls", &self.tls)
            .field("alpn", &self.alpn)
            .finish_non_exhaustive()
    }
}

impl AsyncRead for EdgeTlsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tls).poll_read(cx, buf)
    }
}

impl AsyncWrite for EdgeTlsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tls).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tls).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tls).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for EdgeTlsStream {
    async fn shutdown(&mut self) {
        use tokio::io::AsyncWriteExt;
        // `close_notify`, then FIN; a peer that already left makes this fail, which is fine.
        let _ = tokio::time::timeout(Duration::from_secs(1), AsyncWriteExt::shutdown(self)).await;
    }
}

impl UniqueID for EdgeTlsStream {
    fn id(&self) -> UniqueIDType {
        use std::os::fd::AsRawFd;
        self.tls.get_ref().as_raw_fd()
    }
}

impl Ssl for EdgeTlsStream {
    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        Some(self.ssl.clone())
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.alpn.clone()
    }
}

impl GetTimingDigest for EdgeTlsStream {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        Vec::new()
    }
}

impl GetProxyDigest for EdgeTlsStream {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        None
    }
}

impl GetSocketDigest for EdgeTlsStream {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        Some(self.socket.clone())
    }
}

impl Peek for EdgeTlsStream {}
