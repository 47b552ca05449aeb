//! TLS termination for the TLS listener (`CHAT_TLS_LISTEN`), in the gateway rather than in
//! Pingora's listener.
//!
//! Pingora's TLS listener runs tokio-rustls, whose buffered rustls connection keeps a 4 KiB read
//! buffer for a connection's life and cannot hand the connection over: an idle `wss://` chat
//! connection paid about 11 KiB for TLS. Instead a connection to the TLS listener is taken off
//! Pingora's L4 stream onto a bare socket (`crate::edge_stream`'s `OwnStreams`), its handshake
//! runs here on [`TlsStream`] (rustls's unbuffered API, buffers only while they hold bytes), and
//! the app gets a [`TlsEdgeStream`].
//!
//! The handshake has a deadline, `CHAT_HEADER_TIMEOUT_SECS` (Pingora's listener had none: a
//! client that connected and sent nothing held its connection for ever); failures are counted in
//! `chat_tls_handshake_failures_total`. Certificates come from [`crate::tls::Certificates`], by
//! SNI, on every handshake.

use super::stream::TlsStream;
use crate::bare_socket::Taken;
use crate::edge_stream::{Negotiated, TlsEdgeStream};
use pingora::protocols::tls::{SslDigest, ALPN};
use pingora::protocols::Stream;
use rustls::server::{ResolvesServerCert, ServerConfig, UnbufferedServerConnection};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
    pub fn accepted(&self, stream: &Stream) -> bool {
        let local = stream
            .get_socket_digest()
            .and_then(|d| d.local_addr().cloned())
            .and_then(|a| a.as_inet().copied());
        local.is_some_and(|local| {
            local.port() == self.listen.port()
                && (self.listen.ip().is_unspecified() || local.ip() == self.listen.ip())
        })
    }

    /// The handshake of a connection to this listener, under its deadline.
    pub async fn handshake(&self, taken: Taken) -> Result<TlsEdgeStream, &'static str> {
        let Taken { tcp, socket } = taken;
        let peer = socket.peer_addr().cloned();
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
        let alpn = match tls.connection().alpn_protocol() {
            Some(b"h2") => Some(ALPN::H2),
            Some(b"http/1.1") => Some(ALPN::H1),
            _ => None,
        };
        let ssl = ssl_digest(tls.connection());
        use std::os::fd::AsRawFd;
        let fd = tls.get_ref().as_raw_fd();
        Ok(TlsEdgeStream::new(
            tls,
            fd,
            socket,
            Some(Negotiated { ssl, alpn }),
        ))
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
