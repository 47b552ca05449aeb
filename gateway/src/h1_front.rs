//! The gateway's own front for plain HTTP/1.1 connections: the main site's plain reads are
//! answered here, without Pingora's HTTP session; every other request is handed to Pingora.
//!
//! Why: with the main site's reads already forwarded by the gateway (`crate::site_forward`), a
//! proxied page still cost 1.6× Nginx's CPU, most of it in Pingora's downstream session (its
//! request header map, the proxy's phases and modules), where a hand-written tokio proxy costs
//! 0.75× (docs/benchmarks.md, "The main site's reads forwarded by the gateway").
//!
//! How, per connection ([`H1Front`], between the connection caps and Pingora):
//! 1. The request head is read here, within a *total* deadline: `CHAT_HEADER_TIMEOUT_SECS` for
//!    the first request, `CHAT_KEEPALIVE_TIMEOUT_SECS` after an answer (idle time included), as
//!    `crate::deadlines` gives Pingora's requests. While idle, the connection holds no buffer.
//! 2. A read of the main site ([`examine`]: `GET` or `HEAD` over HTTP/1.1 to a path the chat
//!    does not own, with one `Host`, no body, no `Expect`, no upgrade, and no encoding the client
//!    would have compressed) is forwarded by [`SiteForwarder`] and answered here, head and body
//!    gathered into one write; it gets the same access log line and metrics as through Pingora.
//!    Requests pipelined behind it are answered in order.
//! 3. Anything else (a chat request, a body, an upgrade, a head too large or malformed) is
//!    handed to Pingora with every byte read so far, as if Pingora had read them. When Pingora
//!    gives the kept-alive connection back, the next head is read here again.
//!
//! Off (every request through Pingora) when there is no main site (`CHAT_UPSTREAM`), or when
//! port 80 redirects to HTTPS (`CHAT_HTTPS_REDIRECT`). Connections over TLS are not served here.
//!
//! Limits: a head of at most [`MAX_REQUEST_HEAD`] bytes and [`MAX_REQUEST_HEADERS`] headers is
//! read here; a longer one goes to Pingora, whose own limits then apply.

use crate::access_log::{Entry, UpstreamTimer};
use crate::client_addr::{forwarded_for_entries, socket_peer_ip, Forwarding};
use crate::edge::EdgeState;
use crate::edge_stream::PlainStream;
use crate::routes::{route, Route};
use crate::site_forward::request_head;
mod answer;

use answer::Answer;
use async_trait::async_trait;
use bytes::BytesMut;
use http::HeaderValue;
use pingora::apps::{HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::{GetSocketDigest, Stream};
use pingora::server::ShutdownWatch;
use std::sync::Arc;
use std::time::{Instant, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Largest request head read here (Nginx's `large_client_header_buffers` is 8 KiB); a longer
/// one is handed to Pingora.
pub const MAX_REQUEST_HEAD: usize = 16 * 1024;
/// Most headers of a request read here; a request with more is handed to Pingora.
pub const MAX_REQUEST_HEADERS: usize = 64;
/// Bytes asked for per read of a head.
const READ_SIZE: usize = 4096;

/// The front of plain connections, in front of the edge's Pingora app `A` (see the module
/// documentation).
pub struct H1Front<A> {
    inner: Arc<A>,
    state: Arc<EdgeState>,
    /// A main site is configured and port 80 does not redirect to HTTPS.
    on: bool,
}

impl<A> H1Front<A> {
    /// The front of `inner`, answering the main site's reads for `state`.
    pub fn new(inner: A, state: Arc<EdgeState>) -> Self {
        let on = state.site.is_some() && state.plain_http.redirect_to_port.is_none();
        Self {
            inner: Arc::new(inner),
            state,
            on,
        }
    }
}

#[async_trait]
impl<A: HttpServerApp + Send + Sync + 'static> ServerApp for H1Front<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        // TLS connections, and plain ones coming back from a park (replaying a byte) or left
        // on Pingora's stream, are Pingora's.
        if !self.on || !stream.as_any().is::<PlainStream>() {
            return ServerApp::process_new(&self.inner, stream, shutdown).await;
        }
        let conn = stream.into_any().downcast::<PlainStream>().ok()?;
        self.serve(conn, shutdown).await;
        None
    }

    async fn cleanup(&self) {
        self.inner.http_cleanup().await
    }
}

/// What a complete (or too long) request head asks for.
enum Examined {
    /// Not complete yet.
    Partial,
    /// A read of the main site, answered here.
    SiteRead(Box<SiteRead>),
    /// Pingora's.
    Pingora,
}

/// A read of the main site, ready to be forwarded.
struct SiteRead {
    /// Length of the client's head in the buffer.
    len: usize,
    /// The head sent to the main site.
    upstream_head: Vec<u8>,
    head_only: bool,
    /// The client asked for `Connection: close`.
    close: bool,
    /// The access log's line, filled in once answered; `None` when the log is off.
    line: Option<Entry>,
}

impl<A: HttpServerApp + Send + Sync + 'static> H1Front<A> {
    /// Serves `conn` until it closes or leaves for good (upgraded, parked, not reusable).
    async fn serve(&self, mut conn: Box<PlainStream>, shutdown: &ShutdownWatch) {
        let timeouts = self.state.timeouts;
        let mut deadline = tokio::time::Instant::now() + timeouts.header;
        let mut buf = conn.take_unread();
        loop {
            let examined = loop {
                match self.examine(&buf, &conn) {
                    Examined::Partial => {}
                    examined => break examined,
                }
                if !read_more(&mut conn, &mut buf, deadline, shutdown).await {
                    return;
                }
            };
            match examined {
                Examined::SiteRead(read) => {
                    let rest = buf.split_off(read.len);
                    // Nothing of this request is needed any more; an idle connection holds no
                    // buffer.
                    buf = if rest.is_empty() {
                        BytesMut::new()
                    } else {
                        rest
                    };
                    let keepalive = !read.close && !*shutdown.borrow();
                    if !self.answer(&mut conn, *read, keepalive).await || !keepalive {
                        let _ = tokio::time::timeout(timeouts.header, conn.shutdown()).await;
                        return;
                    }
                }
                Examined::Pingora | Examined::Partial => {
                    conn.put_back(std::mem::take(&mut buf));
                    conn = match self.to_pingora(conn, shutdown).await {
                        Some(conn) => conn,
                        None => return,
                    };
                    buf = conn.take_unread();
                }
            }
            deadline = tokio::time::Instant::now() + timeouts.keepalive;
        }
    }

    /// Serves one request in Pingora, the bytes read so far put back in front of the stream;
    /// the connection back when Pingora keeps it alive.
    async fn to_pingora(
        &self,
        conn: Box<PlainStream>,
        shutdown: &ShutdownWatch,
    ) -> Option<Box<PlainStream>> {
        let mut session = ServerSession::new_http1(conn);
        // As Pingora's own connection loop does; the edge sets its keep-alive per request.
        session.set_keepalive(if *shutdown.borrow() { None } else { Some(60) });
        let reused = self.inner.process_new_http(session, shutdown).await?;
        let (stream, _settings) = reused.consume();
        stream.into_any().downcast::<PlainStream>().ok()
    }

    /// Whether the head at the start of `buf` is a read of the main site (see the module
    /// documentation).
    fn examine(&self, buf: &[u8], conn: &PlainStream) -> Examined {
        if buf.is_empty() {
            return Examined::Partial;
        }
        // Uninitialized: nothing is written per request beyond the headers found.
        let mut headers = [const { std::mem::MaybeUninit::uninit() }; MAX_REQUEST_HEADERS];
        let mut req = httparse::Request::new(&mut []);
        let len = match req.parse_with_uninit_headers(buf, &mut headers) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if buf.len() < MAX_REQUEST_HEAD => {
                return Examined::Partial
            }
            // Too long, too many headers or malformed: Pingora answers (or refuses) it.
            _ => return Examined::Pingora,
        };
        let state = &self.state;
        let (Some(method), Some(target), Some(1)) = (req.method, req.path, req.version) else {
            return Examined::Pingora;
        };
        let head_only = match method {
            "GET" => false,
            "HEAD" => true,
            _ => return Examined::Pingora,
        };
        // Origin-form, visible ASCII only (what Pingora's URI parser takes without question).
        if !target.starts_with('/') || !target.bytes().all(|b| b.is_ascii_graphic()) {
            return Examined::Pingora;
        }
        let path = target.split('?').next().unwrap_or(target);
        if !matches!(route(path), Route::Upstream) {
            return Examined::Pingora;
        }
        if state.plain_http.acme_dir.is_some()
            && path.starts_with(crate::https_redirect::ACME_PREFIX)
        {
            return Examined::Pingora;
        }
        let mut host = None;
        let mut close = false;
        let mut hosts = 0;
        for h in req.headers.iter() {
            let name = h.name;
            if name.eq_ignore_ascii_case("host") {
                hosts += 1;
                host = Some(h.value);
            } else if ["content-length", "transfer-encoding", "expect", "upgrade"]
                .iter()
                .any(|n| name.eq_ignore_ascii_case(n))
            {
                return Examined::Pingora;
            } else if name.eq_ignore_ascii_case("connection") {
                for token in crate::http_util::list_tokens(std::iter::once(h.value)) {
                    if token.eq_ignore_ascii_case(b"close") {
                        close = true;
                    } else if token.eq_ignore_ascii_case(b"upgrade") {
                        return Examined::Pingora;
                    }
                }
            } else if name.eq_ignore_ascii_case("accept-encoding") && state.compression.enabled {
                // Compressed answers are Pingora's (`crate::edge_response`).
                let accepted = std::str::from_utf8(h.value).ok();
                if crate::compression::choose(accepted).is_some() {
                    return Examined::Pingora;
                }
            }
        }
        let host = match (hosts, host.map(HeaderValue::from_bytes)) {
            (1, Some(Ok(host))) if host.to_str().is_ok() => host,
            _ => return Examined::Pingora,
        };
        let peer = conn.get_socket_digest().and_then(|d| socket_peer_ip(&d));
        let header = |name: &str| {
            req.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| h.value)
        };
        let forwarded_for = || {
            let values = req
                .headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case("x-forwarded-for"));
            forwarded_for_entries(values.map(|h| h.value))
        };
        let Ok((forwarding, client)) = Forwarding::for_peer(
            peer,
            forwarded_for,
            Some(host),
            &state.trusted_proxies,
            false,
        ) else {
            return Examined::Pingora;
        };
        let mut upstream_head = Vec::with_capacity(len + 128);
        let headers = || req.headers.iter().map(|h| (h.name, h.value));
        request_head(
            method,
            target.as_bytes(),
            headers,
            &forwarding,
            &mut upstream_head,
        );
        let line = state.access_log.enabled().then(|| Entry {
            // Set when the answer was written.
            time: SystemTime::UNIX_EPOCH,
            client,
            method: method.to_owned(),
            path: path.to_owned(),
            protocol: "HTTP/1.1",
            status: 499,
            bytes_sent: Some(0),
            bytes_received: None,
            duration: Default::default(),
            upstream: None,
            referer: header("referer").map(crate::access_log::referer_of),
            user_agent: header("user-agent").map(|v| String::from_utf8_lossy(v).into_owned()),
            session: None,
        });
        Examined::SiteRead(Box::new(SiteRead {
            len,
            upstream_head,
            head_only,
            close,
            line,
        }))
    }

    /// Forwards `read` and answers it on `conn`; `false` when the connection cannot carry
    /// another request (the answer broke off, or the client went away).
    async fn answer(&self, conn: &mut PlainStream, read: SiteRead, keepalive: bool) -> bool {
        let Some(site) = &self.state.site else {
            return false;
        };
        let started = Instant::now();
        let compression = self.state.compression;
        let vary_from = (compression.enabled && !read.head_only).then_some(compression.min_bytes);
        let mut answer = Answer::new(conn, keepalive, vary_from);
        let mut timer = UpstreamTimer::default();
        let result = site
            .relay(&read.upstream_head, read.head_only, &mut answer, &mut timer)
            .await;
        let reusable = match result {
            Ok(()) => answer.keepalive,
            Err(e) if e.esource() == &pingora::ErrorSource::Downstream => {
                tracing::debug!(error = %e, "the client went away during a read of the main site");
                false
            }
            Err(e) if answer.status.is_some() => {
                // The main site's answer had begun (its body broke off): a page cannot follow.
                let request = summary(&read.upstream_head);
                tracing::warn!(error = %e, %request, "the main site's answer broke off");
                false
            }
            Err(e) => {
                let request = summary(&read.upstream_head);
                tracing::warn!(error = %e, %request, "proxying to the main site failed");
                let page = crate::site_forward::bad_gateway_page(self.state.upstream, &e);
                answer.bad_gateway(page, read.head_only).await;
                false
            }
        };
        crate::metrics::upstream_request(answer.status, started.elapsed());
        if let Some(mut line) = read.line {
            line.time = SystemTime::now();
            line.status = answer.status.unwrap_or(499);
            line.bytes_sent = Some(answer.sent);
            line.duration = started.elapsed();
            line.upstream = timer.elapsed();
            self.state.access_log.record(line);
        }
        reusable
    }
}

/// A request for the error log, from the first line of its head: method and target, the query
/// redacted (`crate::redact`), as Pingora's request summary.
fn summary(head: &[u8]) -> String {
    let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut words = line.split(' ');
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };
    let target = crate::redact::redact_path_and_query(path, query, false);
    format!("{method} {target}")
}

/// Reads more of a head into `buf`, by `deadline`; `false` when the connection is done: closed,
/// failed, too slow, or idle while the server shuts down.
async fn read_more(
    conn: &mut PlainStream,
    buf: &mut BytesMut,
    deadline: tokio::time::Instant,
    shutdown: &ShutdownWatch,
) -> bool {
    let idle = buf.is_empty();
    if idle && *shutdown.borrow() {
        return false;
    }
    let read = async {
        conn.readable().await?;
        buf.reserve(READ_SIZE);
        conn.read_buf(buf).await
    };
    let mut shutdown = shutdown.clone();
    tokio::select! {
        read = tokio::time::timeout_at(deadline, read) => match read {
            Ok(Ok(n)) => n > 0,
            Ok(Err(_)) => false,
            Err(_) => {
                tracing::debug!(idle, "request head not complete in time; closing");
                false
            }
        },
        _ = shutdown.changed(), if idle => false,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_logged_summary_hides_secrets_of_the_query() {
        let head =
            b"GET /account?plan=pro&access_token=t0k&password=pw HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(
            super::summary(head),
            "GET /account?plan=pro&access_token=REDACTED&password=REDACTED"
        );
    }
}
