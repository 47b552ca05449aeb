//! Connection deadlines of the edge (`CHAT_KEEPALIVE_TIMEOUT_SECS`, `CHAT_HEADER_TIMEOUT_SECS`,
//! `CHAT_H2_IDLE_TIMEOUT_SECS`).
//!
//! Pingora 0.9 reads a request head with a timeout *per read*: 60 s for the first request of a
//! connection, and none at all between requests on a kept-alive connection (an HTTP/1.1 client
//! gets `KeepaliveStatus::Infinite`). A client sending one byte every few seconds would hold a
//! connection forever. So the proxy service is wrapped in [`HeadDeadline`], which gives every
//! HTTP/1 request head a *total* deadline:
//!
//! - the first request of a connection: `CHAT_HEADER_TIMEOUT_SECS` from the moment the
//!   connection is handed to HTTP (after the TLS handshake);
//! - every later request on a kept-alive connection: `CHAT_KEEPALIVE_TIMEOUT_SECS` from the end
//!   of the previous response, idle time and head together.
//!
//! A connection whose head is not complete by then is closed without an answer. The head's
//! arrival is signalled through Pingora's per-connection user context: the wrapper puts a
//! [`HeadSignal`] in, and [`head_arrived`] (called from `ProxyHttp::on_connection_reuse`, which
//! Pingora runs right after reading a head) fires it.
//!
//! Request bodies are read with `CHAT_HEADER_TIMEOUT_SECS` per read ([`apply_to_request`]).

use crate::config::EdgeTimeouts;
use async_trait::async_trait;
use pingora::apps::{HttpServerApp, HttpServerOptions, ReusedHttpStream};
use pingora::protocols::http::ServerSession;
use pingora::proxy::Session;
use pingora::server::ShutdownWatch;
use std::any::Any;
use std::sync::Arc;
use tokio::sync::oneshot;

/// Put in the connection's user context before its next head is read; fired once it is.
pub struct HeadSignal(oneshot::Sender<()>);

/// What `ProxyHttp::persist_connection_context` leaves for the next request: tells
/// [`HeadDeadline`] that the connection is being reused.
pub struct KeptAlive;

/// Called with the previous connection context once a request head has been read.
pub fn head_arrived(prev: Box<dyn Any + Send + Sync>) {
    if let Ok(signal) = prev.downcast::<HeadSignal>() {
        let _ = signal.0.send(());
    }
}

/// Per request, before anything else: the body read timeout (every HTTP/1 request, upgrade
/// requests included: the main site's own WebSocket loses it only once the main site really
/// answered 101, and a chat WebSocket leaves Pingora altogether), and the keep-alive timeout of
/// requests that are not upgrades.
pub fn apply_to_request(session: &mut Session, timeouts: &EdgeTimeouts) {
    session.set_read_timeout(Some(timeouts.header));
    // `Some(n)` keeps the connection reusable; the next head's total deadline is enforced by
    // `HeadDeadline` (Pingora itself would only apply it per read).
    if !session.is_upgrade_req() && session.get_keepalive().is_some() {
        session.set_keepalive(Some(timeouts.keepalive.as_secs().max(1)));
    }
}

/// The proxy service's app with a total deadline on every HTTP/1 request head (see the module
/// documentation).
pub struct HeadDeadline<A> {
    inner: Arc<A>,
    timeouts: EdgeTimeouts,
}

impl<A> HeadDeadline<A> {
    /// Wraps `inner`.
    pub fn new(inner: A, timeouts: EdgeTimeouts) -> Self {
        Self {
            inner: Arc::new(inner),
            timeouts,
        }
    }
}

#[async_trait]
impl<A: HttpServerApp + Send + Sync + 'static> HttpServerApp for HeadDeadline<A> {
    async fn process_new_http(
        self: &Arc<Self>,
        mut session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        if !matches!(session, ServerSession::H1(_)) {
            // HTTP/2 streams arrive with their head; the connection has its idle timeout.
            return self.inner.process_new_http(session, shutdown).await;
        }
        let reused = session
            .take_connection_user_context()
            .is_some_and(|c| c.is::<KeptAlive>());
        let deadline = if reused {
            self.timeouts.keepalive
        } else {
            self.timeouts.header
        };
        if !reused {
            // Pingora's own per-read timeout for the first head (60 s) would never fire first.
            session.set_keepalive(Some(deadline.as_secs().max(1)));
        }
        let (tx, rx) = oneshot::channel();
        session.set_connection_user_context(Some(Box::new(HeadSignal(tx))));
        let inner = self.inner.clone();
        let request = inner.process_new_http(session, shutdown);
        tokio::pin!(request);
        tokio::select! {
            biased;
            done = &mut request => return done,
            head = tokio::time::timeout(deadline, rx) => {
                if head.is_err() {
                    tracing::debug!(?deadline, reused, "request head not complete in time; closing");
                    return None;
                }
            }
        }
        request.await
    }

    fn h2_options(&self) -> Option<pingora::protocols::http::v2::server::H2Options> {
        self.inner.h2_options()
    }

    fn server_options(&self) -> Option<&HttpServerOptions> {
        self.inner.server_options()
    }

    async fn http_cleanup(&self) {
        self.inner.http_cleanup().await
    }
}
