//! The main site's plain reads, forwarded by the gateway itself.
//!
//! Pingora's proxy path costs about twice Nginx's CPU per proxied request over HTTP/1.1, and
//! most of that is Pingora's, not ours: a bare Pingora proxy alone is at 1.8–2.1× Nginx
//! (docs/benchmarks.md, "Reverse proxy vs Nginx"). Per request it clones the request head,
//! runs the upstream and downstream halves as two futures joined by two channels, and looks up
//! its connection pool with a `getpeername`. A read of the main site, the bulk of its traffic,
//! needs none of that: a `GET` or `HEAD` without a body goes out as one write on a kept-alive
//! upstream connection, and its answer comes back through the same downstream session, so the
//! response modules (HSTS, compression), the access log and the metrics see it as before.
//!
//! What is forwarded here ([`forwards`]): HTTP/1.1 and HTTP/2 requests with method `GET` or
//! `HEAD`, no body, no `Expect` and no upgrade. Everything else (bodies, WebSocket upgrades of
//! the main site) goes through Pingora's proxy as before. Plain HTTP/1.1 connections mostly do
//! not get here: their reads are answered before Pingora (`crate::h1_front`).
//!
//! Limits: an upstream response head of at most [`MAX_HEAD`] bytes and [`MAX_HEADERS`] headers
//! (else 502), the body relayed in reads of at most [`READ_CHUNK`] bytes (so memory per request
//! is bounded whatever the body's size), at most [`MAX_IDLE`] idle upstream connections kept,
//! each for at most [`IDLE_FOR`]. Timeouts: `CHAT_UPSTREAM_CONNECT_TIMEOUT_SECS` to connect,
//! `CHAT_UPSTREAM_READ_TIMEOUT_SECS` for each read of the answer.

mod answer_head;

pub(crate) use answer_head::AnswerHead;

use crate::access_log::UpstreamTimer;
use crate::client_addr::{Forwarding, FORWARDING_HEADERS};
use crate::http_util::list_tokens;
use answer_head::{parse_head, Framing, Head};
use bytes::{Buf, Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, EXPECT, HOST, TRANSFER_ENCODING};
use http::{Method, Version};
use pingora::proxy::Session;
use pingora::{Error, ErrorType, OrErr, Result};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response head of the main site (Pingora's own limit for a head is 1 MiB; Nginx's
/// `proxy_buffer_size` is 4–8 KiB).
pub const MAX_HEAD: usize = 64 * 1024;
/// Most headers in a response head of the main site.
pub const MAX_HEADERS: usize = 128;
/// Largest read of a body: what one request holds at most while it relays a body.
pub const READ_CHUNK: usize = 16 * 1024;
/// Most idle upstream connections kept (Pingora's pool keeps 128 as well).
pub const MAX_IDLE: usize = 128;
/// Largest read buffer kept with an idle upstream connection.
pub const KEPT_BUFFER: usize = 2 * READ_CHUNK;
/// How long an idle upstream connection is kept (Nginx's `keepalive_timeout` for upstreams).
pub const IDLE_FOR: Duration = Duration::from_secs(60);

/// Headers of one hop (RFC 9110 §7.6.1), never forwarded; a response's `Transfer-Encoding` is
/// set again for the client's hop.
pub(crate) const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Whether the gateway forwards this request itself (see the module documentation); if not,
/// Pingora's proxy does.
pub fn forwards(session: &mut Session) -> bool {
    let req = session.req_header();
    let read = matches!(req.method, Method::GET | Method::HEAD)
        && req.raw_path().first() == Some(&b'/')
        && !req.headers.contains_key(CONTENT_LENGTH)
        && !req.headers.contains_key(TRANSFER_ENCODING)
        && !req.headers.contains_key(EXPECT);
    match req.version {
        Version::HTTP_11 => read && req.headers.contains_key(HOST) && !session.is_upgrade_req(),
        // A stream whose `HEADERS` ended it (no `DATA` follows), with an authority.
        Version::HTTP_2 => {
            read && (req.headers.contains_key(HOST) || req.uri.authority().is_some())
                && session.as_downstream_mut().is_body_empty()
        }
        _ => false,
    }
}

/// Forwards the main site's reads over kept-alive connections of its own.
pub struct SiteForwarder {
    upstream: SocketAddr,
    connect_timeout: Duration,
    read_timeout: Duration,
    /// Idle connections to the main site, oldest first.
    /// Each with its read buffer, emptied: a request on it allocates none.
    idle: Mutex<Vec<(TcpStream, BytesMut, Instant)>>,
}

/// Where the main site's answer goes: the client's Pingora session, or a connection of the
/// gateway's own HTTP/1.1 front (`crate::h1_front`). An error from either is the client's
/// (`into_down`).
pub(crate) trait Reply: Send {
    /// Writes the answer's head; `end` when it has no body.
    async fn head(&mut self, head: &AnswerHead, end: bool) -> Result<()>;
    /// Writes a piece of the body (`None`: none); `end` with the last.
    async fn body(&mut self, piece: Option<Bytes>, end: bool) -> Result<()>;
}

impl Reply for Session {
    async fn head(&mut self, head: &AnswerHead, end: bool) -> Result<()> {
        self.write_response_header(Box::new(head.to_response_header()?), end)
            .await
            .map_err(|e| e.into_down())
    }

    async fn body(&mut self, piece: Option<Bytes>, end: bool) -> Result<()> {
        self.write_response_body(piece, end)
            .await
            .map_err(|e| e.into_down())
    }
}

impl SiteForwarder {
    /// A forwarder to the main site at `upstream`, with its connect and read timeouts.
    pub fn new(upstream: SocketAddr, connect_timeout: Duration, read_timeout: Duration) -> Self {
        Self {
            upstream,
            connect_timeout,
            read_timeout,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Forwards the request of `session` and relays the answer to it. An error before the
    /// answer's head was written leaves the response to `fail_to_proxy` (a 502 page).
    pub async fn forward(
        &self,
        session: &mut Session,
        forwarding: &Forwarding,
        timer: &mut UpstreamTimer,
    ) -> Result<()> {
        let mut head = Vec::with_capacity(1024);
        let req = session.req_header();
        // HTTP/2 carries the host as the `:authority`; the main site gets it as `Host`.
        let authority = match req.headers.contains_key(HOST) {
            true => None,
            false => req.uri.authority().map(|a| ("host", a.as_str().as_bytes())),
        };
        let headers = || {
            let fields = req.headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes()));
            authority.into_iter().chain(fields)
        };
        request_head(
            req.method.as_str(),
            req.raw_path(),
            headers,
            forwarding,
            &mut head,
        );
        let head_only = req.method == Method::HEAD;
        self.relay(&head, head_only, session, timer).await
    }

    /// Sends the request `head` (built by [`request_head`]) to the main site and relays its
    /// answer to `reply`.
    pub(crate) async fn relay<R: Reply>(
        &self,
        head: &[u8],
        head_only: bool,
        reply: &mut R,
        timer: &mut UpstreamTimer,
    ) -> Result<()> {
        timer.start();
        let (mut conn, mut buf, answer) = self.exchange(head, head_only).await?;
        let Head {
            answer,
            framing,
            reusable,
        } = answer;
        // A body of length 0 still ends through `relay_length`, which finishes the client's body.
        reply.head(&answer, framing == Framing::Empty).await?;
        let clean = match framing {
            Framing::Empty => buf.is_empty(),
            Framing::Length(n) => self.relay_length(&mut conn, &mut buf, n, reply).await?,
            Framing::Chunked => self.relay_chunked(&mut conn, &mut buf, reply).await?,
            Framing::UntilClose => self.relay_until_close(&mut conn, &mut buf, reply).await?,
        };
        timer.finish();
        // A body up to the close is never `clean`.
        if reusable && clean {
            self.keep(conn, buf);
        }
        Ok(())
    }

    /// Sends `head` and reads the answer's head: on an idle connection first, and when that one
    /// turns out closed before any byte of an answer (the main site may close an idle
    /// connection at any time), once more on a new one, as Nginx does for `GET` and `HEAD`.
    async fn exchange(&self, head: &[u8], head_only: bool) -> Result<(TcpStream, BytesMut, Head)> {
        let mut idle = self.take_idle();
        loop {
            let reused = idle.is_some();
            let (mut conn, mut buf) = match idle.take() {
                Some(idle) => idle,
                None => (self.connect().await?, BytesMut::new()),
            };
            match self.ask(&mut conn, head, &mut buf, head_only).await {
                Ok(answer) => return Ok((conn, buf, answer)),
                // A timeout is the main site being slow, not a closed idle connection.
                Err(e) if reused && buf.is_empty() && *e.etype() != ErrorType::ReadTimedout => {}
                Err(e) => return Err(e),
            }
        }
    }

    async fn ask(
        &self,
        conn: &mut TcpStream,
        head: &[u8],
        buf: &mut BytesMut,
        head_only: bool,
    ) -> Result<Head> {
        conn.write_all(head)
            .await
            .or_err(
                ErrorType::WriteError,
                "sending the request to the main site",
            )
            .map_err(|e| e.into_up())?;
        loop {
            if !buf.is_empty() {
                if let Some(answer) = parse_head(buf, head_only)? {
                    return Ok(answer);
                }
                if buf.len() >= MAX_HEAD {
                    return upstream_error(
                        ErrorType::InvalidHTTPHeader,
                        "the main site's response head is too large",
                    );
                }
            }
            if self.read(conn, buf).await? == 0 {
                return upstream_error(
                    ErrorType::ConnectionClosed,
                    "the main site closed the connection before answering",
                );
            }
        }
    }

    async fn connect(&self) -> Result<TcpStream> {
        let conn = tokio::time::timeout(self.connect_timeout, TcpStream::connect(self.upstream))
            .await
            .or_err(ErrorType::ConnectTimedout, "connecting to the main site")
            .map_err(|e| e.into_up())?
            .or_err(ErrorType::ConnectRefused, "connecting to the main site")
            .map_err(|e| e.into_up())?;
        // Heads and small bodies are single writes: nothing to gain from Nagle's delay.
        conn.set_nodelay(true)
            .or_err(ErrorType::SocketError, "TCP_NODELAY")?;
        Ok(conn)
    }

    /// One read of at most [`READ_CHUNK`] bytes, within the read timeout.
    async fn read(&self, conn: &mut TcpStream, buf: &mut BytesMut) -> Result<usize> {
        buf.reserve(READ_CHUNK);
        tokio::time::timeout(self.read_timeout, conn.read_buf(buf))
            .await
            .or_err(ErrorType::ReadTimedout, "reading the main site's answer")
            .map_err(|e| e.into_up())?
            .or_err(ErrorType::ReadError, "reading the main site's answer")
            .map_err(|e| e.into_up())
    }

    /// Relays a body of `n` bytes; `true` when the connection holds nothing more.
    async fn relay_length(
        &self,
        conn: &mut TcpStream,
        buf: &mut BytesMut,
        n: u64,
        reply: &mut impl Reply,
    ) -> Result<bool> {
        let mut left = n;
        loop {
            let take = (buf.len() as u64).min(left) as usize;
            left -= take as u64;
            let clean = left > 0 || buf.len() == take;
            if take > 0 || left == 0 {
                let piece = buf.split_to(take).freeze();
                reply.body(Some(piece), left == 0).await?;
            }
            if left == 0 {
                return Ok(clean);
            }
            if self.read(conn, buf).await? == 0 {
                return upstream_error(
                    ErrorType::ConnectionClosed,
                    "the main site closed the connection before the end of the body",
                );
            }
        }
    }

    /// Relays a chunked body, decoded (the client's hop is chunked again by the session); `true`
    /// when the connection holds nothing more.
    async fn relay_chunked(
        &self,
        conn: &mut TcpStream,
        buf: &mut BytesMut,
        reply: &mut impl Reply,
    ) -> Result<bool> {
        loop {
            let size = loop {
                match httparse::parse_chunk_size(buf) {
                    Ok(httparse::Status::Complete((consumed, size))) => {
                        buf.advance(consumed);
                        break size;
                    }
                    Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {
                        self.read_more(conn, buf).await?;
                    }
                    _ => return bad_chunk("a chunk size line"),
                }
            };
            if size == 0 {
                // Trailers, if any, end with an empty line; they are not forwarded.
                loop {
                    if buf.starts_with(b"\r\n") {
                        buf.advance(2);
                        break;
                    }
                    if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.advance(at + 4);
                        break;
                    }
                    if buf.len() >= MAX_HEAD {
                        return bad_chunk("the trailers");
                    }
                    self.read_more(conn, buf).await?;
                }
                reply.body(None, true).await?;
                return Ok(buf.is_empty());
            }
            let mut left = size;
            while left > 0 {
                if buf.is_empty() {
                    self.read_more(conn, buf).await?;
                }
                let take = (buf.len() as u64).min(left) as usize;
                left -= take as u64;
                let piece = buf.split_to(take).freeze();
                reply.body(Some(piece), false).await?;
            }
            while buf.len() < 2 {
                self.read_more(conn, buf).await?;
            }
            if &buf[..2] != b"\r\n" {
                return bad_chunk("the end of a chunk");
            }
            buf.advance(2);
        }
    }

    /// Relays a body that ends with the connection.
    async fn relay_until_close(
        &self,
        conn: &mut TcpStream,
        buf: &mut BytesMut,
        reply: &mut impl Reply,
    ) -> Result<bool> {
        loop {
            if !buf.is_empty() {
                let piece = buf.split().freeze();
                reply.body(Some(piece), false).await?;
            }
            if self.read(conn, buf).await? == 0 {
                reply.body(None, true).await?;
                return Ok(false);
            }
        }
    }

    /// A read that must bring something: the body is not over.
    async fn read_more(&self, conn: &mut TcpStream, buf: &mut BytesMut) -> Result<()> {
        if self.read(conn, buf).await? == 0 {
            return upstream_error(
                ErrorType::ConnectionClosed,
                "the main site closed the connection in the middle of a chunked body",
            );
        }
        Ok(())
    }

    /// The newest idle connection that is not too old (older ones are dropped with it).
    fn take_idle(&self) -> Option<(TcpStream, BytesMut)> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let (conn, buf, since) = idle.pop()?;
        if since.elapsed() < IDLE_FOR {
            return Some((conn, buf));
        }
        // Everything below it is older still.
        idle.clear();
        None
    }

    fn keep(&self, conn: TcpStream, mut buf: BytesMut) {
        // Back to its whole capacity once the pieces of the body sent from it are dropped; one
        // grown by a large head is not kept.
        buf.clear();
        if buf.capacity() > KEPT_BUFFER {
            buf = BytesMut::new();
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() >= MAX_IDLE {
            idle.remove(0);
        }
        idle.push((conn, buf, Instant::now()));
    }
}

/// The page of a `502 Bad Gateway`: why the main site (at `upstream`) did not answer, and that
/// the chat still works.
pub fn bad_gateway_page(upstream: Option<SocketAddr>, e: &Error) -> String {
    let reason = match upstream {
        None => {
            "No main site is configured behind this gateway (CHAT_UPSTREAM is not set).".to_string()
        }
        Some(addr) => format!(
            "The main site at {addr} is unreachable or failed to answer ({}).",
            e.etype().as_str()
        ),
    };
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>502 Bad Gateway</title></head>\
         <body style=\"font-family:sans-serif;max-width:40em;margin:4em auto\"><h1>502 Bad Gateway</h1>\
         <p>{}</p><p>Live chat is still served at <a href=\"/chat/demo/\">/chat/</a>.</p></body></html>",
        html_escape(&reason)
    )
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// An error of the main site's answer (502 before its head was written).
fn upstream_error<T>(etype: ErrorType, context: &'static str) -> Result<T> {
    Error::e_explain(etype, context).map_err(|e| e.into_up())
}

fn bad_chunk<T>(what: &str) -> Result<T> {
    Error::e_explain(
        ErrorType::InvalidHTTPHeader,
        format!("the main site sent an invalid chunked body ({what})"),
    )
    .map_err(|e| e.into_up())
}

/// The request head for the main site: the client's (`method`, `target` and `headers`),
/// without the headers of its hop and with the gateway's forwarding headers.
pub(crate) fn request_head<'a, I: Iterator<Item = (&'a str, &'a [u8])>>(
    method: &str,
    target: &[u8],
    headers: impl Fn() -> I,
    forwarding: &Forwarding,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(target);
    out.extend_from_slice(b" HTTP/1.1\r\n");
    // Headers named in `Connection` belong to the client's hop too.
    let connection = headers().filter(|(name, _)| name.eq_ignore_ascii_case("connection"));
    let named: Vec<&[u8]> = list_tokens(connection.map(|(_, value)| value)).collect();
    let mut cookies: Vec<&[u8]> = Vec::new();
    for (name, value) in headers() {
        // The gateway writes the forwarding headers itself (`crate::client_addr`).
        let own = HOP_BY_HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
            || FORWARDING_HEADERS
                .iter()
                .any(|h| h.eq_ignore_ascii_case(name));
        if own
            || named
                .iter()
                .any(|n| n.eq_ignore_ascii_case(name.as_bytes()))
        {
            continue;
        }
        if name.eq_ignore_ascii_case("cookie") {
            cookies.push(value);
            continue;
        }
        push_header(out, name.as_bytes(), value);
    }
    // HTTP/2 sends cookies as several fields; HTTP/1.1 takes one `Cookie` (RFC 9113 §8.2.3).
    if !cookies.is_empty() {
        push_header(out, b"Cookie", &cookies.join(b"; ".as_slice()));
    }
    for (name, value) in forwarding.headers() {
        push_header(out, name.as_bytes(), value.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

fn push_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}
