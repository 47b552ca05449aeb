//! Caps on the TCP connections the edge holds (`CHAT_MAX_HTTP_CONNECTIONS`,
//! `CHAT_MAX_HTTP_CONNECTIONS_PER_IP`): every connection to the public listeners — pages of the
//! main site, assets, the HTTP API, long-polling, WebSocket handshakes — counts from the moment
//! Pingora hands it over (after the TLS handshake) until it closes or leaves Pingora (a chat
//! WebSocket, which the chat session limits count from then on).
//!
//! The chat session limits of [`crate::limits`] bound what a client can open inside the chat;
//! these bound the file descriptors and the per-connection state one client address can pin
//! with idle or half-open HTTP connections. A connection over a cap is answered with a `503` that
//! says why (HTTP/1, [`ConnectionRefusal::http1_answer`]; an HTTP/2 connection is closed) and
//! closed without reading its request.
//!
//! A connection parked outside Pingora while it waits (`crate::parked`: a held long-poll) keeps
//! its place.
//!
//! Per address, the TCP peer counts: request headers have not been read yet. A peer in
//! `CHAT_TRUSTED_PROXIES` (a load balancer carrying many clients) is only under the total cap.

use crate::client_addr::TrustedProxies;
use crate::limits::{LimitRefusal, Limits, Slot};
use crate::metrics;
use crate::parked::{self, Parking, Reenter};
use crate::wire_error::ConnectionRefusal;
use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::protocols::ALPN;
use pingora::server::ShutdownWatch;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// The caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionCaps {
    /// Connections held at once (`CHAT_MAX_HTTP_CONNECTIONS`).
    pub total: usize,
    /// Connections held at once from one TCP peer address (`CHAT_MAX_HTTP_CONNECTIONS_PER_IP`;
    /// IPv6 per /64).
    pub per_ip: usize,
}

/// The counts, shared by every connection of the listeners: the admission path's counting
/// table ([`Limits::counting`], without its open rate), and the proxies exempt per address.
pub struct ConnectionTable {
    caps: ConnectionCaps,
    trusted: TrustedProxies,
    counts: Limits,
}

impl ConnectionTable {
    /// An empty table with these caps; peers in `trusted` are counted in the total only.
    pub fn new(caps: ConnectionCaps, trusted: TrustedProxies) -> Arc<Self> {
        Arc::new(Self {
            caps,
            trusted,
            counts: Limits::counting(caps.total, caps.per_ip),
        })
    }

    /// Connections held now.
    pub fn open(&self) -> usize {
        self.counts.open()
    }

    /// A place for a connection from `peer` (given back when dropped), or why there is none.
    pub fn acquire(&self, peer: Option<IpAddr>) -> Result<Slot, ConnectionRefusal> {
        let address = peer.filter(|ip| !self.trusted.contains(*ip));
        self.counts
            .acquire(address)
            .map_err(|refusal| match refusal {
                LimitRefusal::TooManyFromAddress { .. } => ConnectionRefusal::TooManyFromAddress,
                // Counting only: no open rate, so the rest is the total.
                LimitRefusal::TooManyConnections { .. } | LimitRefusal::RateLimited { .. } => {
                    ConnectionRefusal::TooManyConnections
                }
            })
    }
}

/// The edge's app, behind the connection caps.
pub struct ConnectionCapped<A> {
    inner: Arc<A>,
    table: Arc<ConnectionTable>,
    /// Serves a connection again after it was parked (`crate::parked`), keeping its place.
    reentry: Arc<dyn Reenter>,
    /// `CHAT_KEEPALIVE_TIMEOUT_SECS`: the longest a parked connection waits for its next request.
    keepalive: Duration,
}

impl<A: ServerApp + Send + Sync + 'static> ConnectionCapped<A> {
    /// Wraps `inner`; a parked connection waits at most `keepalive` for its next request.
    pub fn new(inner: A, table: Arc<ConnectionTable>, keepalive: Duration) -> Self {
        let inner = Arc::new(inner);
        let reentry = Arc::new(Reentry {
            app: inner.clone(),
            table: table.clone(),
        });
        Self {
            inner,
            table,
            reentry,
            keepalive,
        }
    }
}

/// Serves a parked connection again with the app below the caps; its place travels with it.
struct Reentry<A> {
    app: Arc<A>,
    table: Arc<ConnectionTable>,
}

impl<A: ServerApp + Send + Sync + 'static> Reenter for Reentry<A> {
    fn serve(
        &self,
        stream: Stream,
        shutdown: ShutdownWatch,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let app = self.app.clone();
        Box::pin(async move {
            // An HTTP app never hands a connection back for reuse: it serves its requests
            // until the connection closes (or is parked again).
            let _ = app.process_new(stream, &shutdown).await;
        })
    }

    fn closed(&self) {
        metrics::set_http_connections(self.table.open());
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for ConnectionCapped<A> {
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let peer = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().cloned())
            .and_then(|a| a.as_inet().map(|a| a.ip()));
        let slot = match self.table.acquire(peer) {
            Ok(slot) => slot,
            Err(refusal) => {
                metrics::http_connection_refused(refusal.as_str());
                tracing::debug!(?peer, reason = refusal.as_str(), "connection refused");
                if !matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
                    let caps = self.table.caps;
                    let answer = refusal.http1_answer(caps.total, caps.per_ip);
                    let write = async {
                        stream.write_all(answer.as_bytes()).await?;
                        stream.flush().await
                    };
                    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), write).await;
                }
                return None;
            }
        };
        metrics::set_http_connections(self.table.open());
        // The slot goes with the connection: dropped when it closes, or kept by the task of
        // `crate::parked` that holds it outside Pingora.
        let parking = Parking::new(slot, self.reentry.clone(), shutdown.clone(), self.keepalive);
        let reuse = parked::serve(&self.inner, stream, parking).await;
        metrics::set_http_connections(self.table.open());
        reuse
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_count_per_address_and_in_total_and_give_places_back() {
        let trusted: TrustedProxies = "10.0.0.1".parse().unwrap();
        let table = ConnectionTable::new(
            ConnectionCaps {
                total: 3,
                per_ip: 2,
            },
            trusted,
        );
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = table.acquire(Some(a)).unwrap();
        let _second = table.acquire(Some(a)).unwrap();
        assert_eq!(
            table.acquire(Some(a)).unwrap_err(),
            ConnectionRefusal::TooManyFromAddress
        );
        let _third = table.acquire(Some(b)).unwrap();
        assert_eq!(
            table.acquire(Some(b)).unwrap_err(),
            ConnectionRefusal::TooManyConnections
        );
        drop(first);
        // A trusted proxy is only under the total cap.
        let proxy = "10.0.0.1".parse().unwrap();
        let _via_proxy = table.acquire(Some(proxy)).unwrap();
        assert_eq!(table.open(), 3);
        // The total is reached again: the next one is refused for it.
        assert_eq!(
            table.acquire(Some(a)).unwrap_err(),
            ConnectionRefusal::TooManyConnections
        );
    }
}
