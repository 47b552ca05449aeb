//! Connections parked outside Pingora while they wait: a held long-poll `GET`, and the idle
//! keep-alive connection after a long-polling answer (the one a client's `POST`s use while its
//! `GET` is held).
//!
//! Inside Pingora, a waiting HTTP/1.1 connection costs its connection task (whose future has
//! room for the TLS handshake it may have run), the proxy's boxed request futures and the
//! HTTP/1 session: ≈ 33 KB each, twice for a Socket.IO client on long-polling
//! (docs/benchmarks.md, "Long-polling parked outside Pingora"). Parked, it costs the stream and
//! one small task of ours.
//!
//! How, in the order it runs:
//! 1. [`crate::connections::ConnectionCapped`] serves every connection through [`serve`], which
//!    puts the connection's [`Parking`] (its place under the connection caps, and the way back
//!    into Pingora) in a task-local for the request handlers of that connection.
//! 2. A long-polling handler calls [`park`]: the connection is taken from Pingora as for a
//!    WebSocket upgrade (Pingora finishes the request against an in-memory placeholder with
//!    keep-alive off, so its connection task ends), and a task of ours takes over.
//! 3. That task writes the answer when it is ready (a held poll's, when an event arrives or the
//!    hold ends), in one write, then waits for the next request's first byte, at most
//!    `CHAT_KEEPALIVE_TIMEOUT_SECS` (the idle connection is closed then, as Pingora would).
//! 4. When a byte arrives, it hands the connection back to Pingora with that byte in front of
//!    the stream ([`Replay`]), through [`serve`] again, in the same task. The next request may
//!    be anything (a page of the main site, another poll) and may park again.
//!
//! Only HTTP/1.1 connections that will be kept alive are parked, with their request body read;
//! anything else (HTTP/2, `Connection: close`, a request served outside a connection task)
//! answers through Pingora as before.

use crate::limits::Slot;
use crate::metrics;
use bytes::{Bytes, BytesMut};
use pingora::protocols::http::ServerSession as HttpSession;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use pingora::proxy::Session;
use pingora::server::ShutdownWatch;
use pingora::{Error, ErrorType, Result};
use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

tokio::task_local! {
    /// The current connection, while Pingora serves it in this task.
    static CONNECTION: RefCell<Held>;
}

/// What the task-local holds for the connection being served.
enum Held {
    /// Served by Pingora; a handler may park it.
    Serving(Parking),
    /// A handler parked it: taken over once Pingora is done with the request.
    Parked(Box<Parked>),
    /// Between the two.
    Empty,
}

/// What a connection needs to leave Pingora and come back: its place under the connection caps
/// (kept while parked) and the app that serves it again.
pub struct Parking {
    /// Held, never read: the connection's place under the caps lasts as long as this.
    _slot: Slot,
    app: Arc<dyn Reenter>,
    shutdown: ShutdownWatch,
    keepalive: Duration,
}

impl Parking {
    /// A connection's parking: `slot` is its place under the caps, `app` serves it again after
    /// a park, `keepalive` bounds the idle wait between requests.
    pub fn new(
        slot: Slot,
        app: Arc<dyn Reenter>,
        shutdown: ShutdownWatch,
        keepalive: Duration,
    ) -> Self {
        Self {
            _slot: slot,
            app,
            shutdown,
            keepalive,
        }
    }
}

/// Serves a connection in Pingora: the edge's app below the connection caps.
pub trait Reenter: Send + Sync + 'static {
    /// Serves `stream` until it closes or a request handler parks it.
    fn serve(
        &self,
        stream: Stream,
        shutdown: ShutdownWatch,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>>;

    /// A connection that had been parked closed, its place given back.
    fn closed(&self);
}

/// A parked connection: its stream, the answer it waits for, and how it goes back.
struct Parked {
    stream: Stream,
    /// Bytes of the next request the client sent behind this one.
    pipelined: Option<BytesMut>,
    answer: Pin<Box<dyn Future<Output = Answer> + Send>>,
    answered: Box<dyn FnOnce(u16, u64) + Send>,
    parking: Parking,
}

/// Serves `stream` with `app` (in Pingora's connection task), the connection's `parking`
/// available to its request handlers. When a handler parked the connection, a task of ours
/// takes it over once `app` is done with it, and this task ends; otherwise the parking (the
/// connection's place) is dropped with the connection.
pub async fn serve<A: pingora::apps::ServerApp + Send + Sync + 'static>(
    app: &Arc<A>,
    stream: Stream,
    parking: Parking,
) -> Option<Stream> {
    let shutdown = parking.shutdown.clone();
    let (reuse, held) = CONNECTION
        .scope(RefCell::new(Held::Serving(parking)), async {
            let reuse = app.process_new(stream, &shutdown).await;
            (reuse, CONNECTION.with(|held| held.replace(Held::Empty)))
        })
        .await;
    if let Held::Parked(parked) = held {
        tokio::spawn(keep(*parked));
    }
    reuse
}

/// Runs a parked connection for the rest of its life, in one task: answers, waits for the next
/// request, serves it in Pingora (here, not in a connection task of Pingora's), and again when
/// that request parks it.
async fn keep(mut parked: Parked) {
    loop {
        let app = parked.parking.app.clone();
        let Some((stream, parking)) = answer_and_wait(parked).await else {
            app.closed();
            return;
        };
        let shutdown = parking.shutdown.clone();
        let held = CONNECTION
            .scope(RefCell::new(Held::Serving(parking)), async {
                app.serve(stream, shutdown).await;
                CONNECTION.with(|held| held.replace(Held::Empty))
            })
            .await;
        match held {
            Held::Parked(next) => parked = *next,
            _ => {
                drop(held);
                app.closed();
                return;
            }
        }
    }
}

/// Writes the answer when it is ready, then waits for the next request's first byte: the
/// stream with that byte put back, or `None` when the connection is done.
async fn answer_and_wait(parked: Parked) -> Option<(Stream, Parking)> {
    let _counted = metrics::connection_parked();
    let Parked {
        mut stream,
        pipelined,
        answer,
        answered,
        parking,
    } = parked;
    let answer = answer.await;
    let written = write_answer(&mut stream, &answer);
    match tokio::time::timeout(parking.keepalive, written).await {
        Ok(Ok(())) => answered(answer.status, answer.body.len() as u64),
        _ => return None,
    }
    drop(answer);
    let prefix = match pipelined {
        Some(prefix) => prefix,
        None => next_request(&mut stream, &parking).await?,
    };
    Some((Replay::wrap(stream, prefix), parking))
}

/// One answer of a parked request.
#[derive(Debug)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// Headers besides `Content-Length`, `Date` and `Connection`.
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: Bytes,
}

/// Whether [`park`] can take this request's connection: HTTP/1.1 that Pingora would keep
/// alive, the request body read, served in a task that has the connection's parking.
pub fn can_park(session: &mut Session) -> bool {
    let HttpSession::H1(h1) = session.as_downstream_mut() else {
        return false;
    };
    h1.req_header().version == http::Version::HTTP_11
        && h1.will_keepalive()
        && h1.is_body_done()
        && CONNECTION
            .try_with(|held| matches!(*held.borrow(), Held::Serving(_)))
            .unwrap_or(false)
}

/// Takes the connection away from Pingora, which finishes this request against an in-memory
/// copy of its head (its logging phase reads the header) with keep-alive off, so it never
/// touches the socket again.
pub async fn take_from_pingora(
    session: &mut Session,
) -> Result<pingora::protocols::http::v1::server::HttpSession> {
    let raw_head = session.as_downstream().to_h1_raw();
    let mut placeholder = HttpSession::new_http1(Box::new(std::io::Cursor::new(raw_head.to_vec())));
    placeholder.read_request().await?;
    placeholder.set_keepalive(None);
    match std::mem::replace(session.as_downstream_mut(), placeholder) {
        HttpSession::H1(h1) => Ok(h1),
        _ => Error::e_explain(ErrorType::InternalError, "taking a non-HTTP/1 session"),
    }
}

/// Parks this request's connection (see the module documentation): once Pingora is done with
/// the request, `answer` is awaited and written by a task of ours, `answered(status, body
/// bytes)` is called once it was written, and the connection then waits for its next request
/// outside Pingora. Call only when [`can_park`] said so; returns `Ok(true)`, the request being
/// answered, as a handler does.
pub async fn park<F, D>(session: &mut Session, answer: F, answered: D) -> Result<bool>
where
    F: Future<Output = Answer> + Send + 'static,
    D: FnOnce(u16, u64) + Send + 'static,
{
    let parking = CONNECTION
        .try_with(|held| match held.replace(Held::Empty) {
            Held::Serving(parking) => Some(parking),
            other => {
                held.replace(other);
                None
            }
        })
        .ok()
        .flatten();
    let Some(parking) = parking else {
        return Error::e_explain(ErrorType::InternalError, "no parking for this connection");
    };
    let taken = async {
        let mut h1 = take_from_pingora(session).await?;
        // Bytes the client sent behind this request (pipelining) are kept for the next one.
        h1.set_pipelining_enabled(true);
        match h1.reuse().await? {
            Some(reusable) => Ok(reusable.into_parts()),
            None => Error::e_explain(ErrorType::InternalError, "parked connection not reusable"),
        }
    };
    // On an error the connection is lost with its session, and its place with `parking`.
    let (stream, pipelined) = taken.await?;
    let parked = Parked {
        stream: Replay::unwrap_spent(stream),
        pipelined,
        answer: Box::pin(answer),
        answered: Box::new(answered),
        parking,
    };
    CONNECTION.with(|held| held.replace(Held::Parked(Box::new(parked))));
    Ok(true)
}

/// Writes `answer` as an HTTP/1.1 response, head and body in one write.
async fn write_answer(stream: &mut Stream, answer: &Answer) -> std::io::Result<()> {
    let status = http::StatusCode::from_u16(answer.status)
        .map_err(|_| std::io::Error::other("status code out of range"))?;
    let mut out = Vec::with_capacity(256 + answer.body.len());
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let date = pingora::protocols::http::date::get_cached_date();
    let length = answer.body.len().to_string();
    let fixed = [
        ("Date", date.as_bytes()),
        ("Connection", b"keep-alive".as_slice()),
        ("Content-Length", length.as_bytes()),
    ];
    let ours = answer.headers.iter().map(|(n, v)| (*n, v.as_bytes()));
    for (name, value) in ours.chain(fixed) {
        // Values carry what the client sent (its Origin, for CORS): never a line break.
        if value.iter().any(|b| *b == b'\r' || *b == b'\n') {
            continue;
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&answer.body);
    stream.write_all(&out).await?;
    stream.flush().await
}

/// Waits for the first byte of the connection's next request: `None` when the client closed,
/// the keep-alive time passed or the server is shutting down.
async fn next_request(stream: &mut Stream, parking: &Parking) -> Option<BytesMut> {
    let mut shutdown = parking.shutdown.clone();
    if *shutdown.borrow() {
        return None;
    }
    let mut first = [0u8; 1];
    tokio::select! {
        read = tokio::time::timeout(parking.keepalive, stream.read(&mut first)) => match read {
            Ok(Ok(1)) => Some(BytesMut::from(&first[..])),
            _ => None,
        },
        _ = shutdown.changed() => None,
    }
}

/// A stream with bytes already read from it put back in front.
#[derive(Debug)]
pub struct Replay {
    prefix: BytesMut,
    inner: Stream,
}

impl Replay {
    fn wrap(inner: Stream, prefix: BytesMut) -> Stream {
        Box::new(Self { prefix, inner })
    }

    /// The stream itself when it is a `Replay` whose bytes were all read: a connection parked
    /// many times is not wrapped once per park.
    fn unwrap_spent(stream: Stream) -> Stream {
        let spent = stream
            .as_any()
            .downcast_ref::<Self>()
            .is_some_and(|replay| replay.prefix.is_empty());
        if !spent {
            return stream;
        }
        match stream.into_any().downcast::<Self>() {
            Ok(replay) => replay.inner,
            // Checked above; a `Box<dyn Any>` cannot become a stream again.
            Err(_) => unreachable!("a Replay that is not one"),
        }
    }
}

impl AsyncRead for Replay {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            let bytes = self.prefix.split_to(n);
            buf.put_slice(&bytes);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Replay {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[async_trait::async_trait]
impl Shutdown for Replay {
    async fn shutdown(&mut self) {
        Shutdown::shutdown(&mut *self.inner).await
    }
}

impl UniqueID for Replay {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for Replay {
    fn get_ssl(&self) -> Option<&pingora::protocols::tls::TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<pingora::protocols::tls::SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for Replay {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for Replay {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for Replay {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait::async_trait]
impl Peek for Replay {
    // Peeking is for a connection's first bytes (TLS, h2c); a replayed stream is past them.
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn replay_reads_its_prefix_first_then_the_stream() {
        let (mut client, server) = tokio::io::duplex(64);
        client.write_all(b"ET / HTTP/1.1\r\n").await.unwrap();
        drop(client);
        let mut stream = Replay::wrap(Box::new(server), BytesMut::from(&b"G"[..]));
        let mut text = String::new();
        stream.read_to_string(&mut text).await.unwrap();
        assert_eq!(text, "GET / HTTP/1.1\r\n");
        // Spent: the next park unwraps it.
        let unwrapped = Replay::unwrap_spent(stream);
        assert!(!unwrapped.as_any().is::<Replay>());
    }

    #[tokio::test]
    async fn a_replay_with_bytes_left_stays_wrapped() {
        let (_client, server) = tokio::io::duplex(64);
        let stream = Replay::wrap(Box::new(server), BytesMut::from(&b"GET"[..]));
        assert!(Replay::unwrap_spent(stream).as_any().is::<Replay>());
    }

    #[tokio::test]
    async fn an_answer_is_one_http_1_1_response() {
        let mut expected = Vec::new();
        expected.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n");
        let answer = Answer {
            status: 200,
            headers: vec![
                ("Content-Type", "application/json".into()),
                (
                    "Access-Control-Allow-Origin",
                    "https://a.example\r\nX-Evil: 1".into(),
                ),
            ],
            body: Bytes::from_static(b"{}"),
        };
        let (client, server) = tokio::io::duplex(4096);
        let mut server: Stream = Box::new(server);
        write_answer(&mut server, &answer).await.unwrap();
        drop(server);
        let mut client = client;
        let mut text = String::new();
        client.read_to_string(&mut text).await.unwrap();
        assert!(
            text.starts_with(std::str::from_utf8(&expected).unwrap()),
            "{text}"
        );
        assert!(text.contains("\r\nConnection: keep-alive\r\n"), "{text}");
        assert!(text.contains("\r\nContent-Length: 2\r\n"), "{text}");
        assert!(text.contains("\r\nDate: "), "{text}");
        assert!(
            !text.contains("X-Evil"),
            "a header value with a line break is dropped: {text}"
        );
        assert!(text.ends_with("\r\n\r\n{}"), "{text}");
    }
}
