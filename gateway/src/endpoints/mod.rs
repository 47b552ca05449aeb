//! The chat endpoints, one file per transport: [`websocket`] (raw JSON over WebSocket),
//! [`socketio`] (Engine.IO/Socket.IO on the same paths, requests carrying `EIO=`) and
//! [`polling`] (raw JSON over HTTP long-polling). Each asks [`crate::admission`] for its
//! sessions and runs every one it opens through [`crate::run_session`], generic over core's
//! `Transport`; `edge.rs` only routes to them.
//!
//! Adding a transport is one crate implementing core's `Transport` and one file here that turns
//! its HTTP requests into that transport's `Connection` and admits the session.

pub mod polling;
pub mod socketio;
pub mod websocket;

use crate::edge::{ChatEdge, RequestCtx};
use crate::http_util::{header, header_has_token};
use crate::metrics;
use crate::parked::{self, Answer};
use chat_transport_upgraded::{Upgraded, UpgradedStream};
use futures_util::FutureExt;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::{Error, ErrorType, Result};
use std::future::Future;
use tokio::io::AsyncWriteExt;

pub(crate) fn is_websocket_upgrade(session: &Session) -> bool {
    session.req_header().method == http::Method::GET
        && header_has_token(header(session, "connection"), "upgrade")
        && header(session, "upgrade").is_some_and(|u| u.eq_ignore_ascii_case("websocket"))
}

pub(crate) fn websocket_key(session: &Session) -> Option<String> {
    header(session, "sec-websocket-key").map(str::to_owned)
}

/// Answers `101 Switching Protocols` and takes the connection away from Pingora.
pub(crate) async fn take_upgraded(session: &mut Session, key: &str) -> Result<Upgraded> {
    let mut resp = ResponseHeader::build(101, Some(3))?;
    resp.insert_header("Upgrade", "websocket")?;
    resp.insert_header("Connection", "Upgrade")?;
    resp.insert_header(
        "Sec-WebSocket-Accept",
        tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes()),
    )?;
    session.write_response_header(Box::new(resp), false).await?;

    // Bytes the client sent right behind the request head sit in Pingora's body reader.
    let mut read_ahead = Vec::new();
    while let Some(Ok(Some(bytes))) = session
        .as_downstream_mut()
        .read_request_body()
        .now_or_never()
    {
        read_ahead.extend_from_slice(&bytes);
    }
    // Take the connection away from Pingora: it now belongs to the transport.
    let mut stream = crate::parked::take_from_pingora(session)
        .await?
        .into_inner();
    stream
        .flush()
        .await
        .map_err(|e| Error::because(ErrorType::WriteError, "flushing 101", e))?;
    Ok(Upgraded {
        stream: bare_tcp(stream),
        read_ahead,
    })
}

/// The upgraded connection's stream with as little of ours as possible under it: a plain
/// connection (`crate::edge_stream`'s `PlainStream`) as its bare tokio `TcpStream`. Our TLS
/// stream already sits on a bare socket and stays as it is, as does anything else (a
/// connection left on Pingora's stream, one replaying bytes after a park).
fn bare_tcp(stream: pingora::protocols::Stream) -> UpgradedStream {
    use crate::edge_stream::PlainStream;
    if !stream.as_any().is::<PlainStream>() {
        return Box::new(stream);
    }
    match stream.into_any().downcast::<PlainStream>() {
        Ok(plain) => match (*plain).into_tcp() {
            Ok(tcp) => Box::new(tcp),
            Err(plain) => Box::new(plain),
        },
        // Checked above; a `Box<dyn Any>` cannot become a stream again.
        Err(_) => unreachable!("a PlainStream that is not one"),
    }
}

/// Writes `answer` as the request's response through Pingora.
pub(crate) async fn write_through_pingora(session: &mut Session, answer: Answer) -> Result<bool> {
    let mut resp = ResponseHeader::build(answer.status, Some(1 + answer.headers.len()))?;
    for (name, value) in &answer.headers {
        resp.insert_header(*name, value.as_str())?;
    }
    resp.insert_header("Content-Length", answer.body.len().to_string())?;
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(answer.body), true).await?;
    Ok(true)
}

impl ChatEdge {
    /// Answers a long-polling request (raw or Engine.IO) with `answer`: from outside Pingora
    /// when its connection can be parked, which then idles there until its next request
    /// (`crate::parked`); otherwise through Pingora.
    pub(crate) async fn answer_polling(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        answer: Answer,
    ) -> Result<bool> {
        if parked::can_park(session) {
            return self
                .park_answer(session, ctx, std::future::ready(answer))
                .await;
        }
        write_through_pingora(session, answer).await
    }

    /// Answers a long-polling request (raw or Engine.IO) with `answer` from outside Pingora,
    /// its connection parked (`crate::parked`; only when `parked::can_park` said so): a held
    /// poll then waits, and the connection idles until its next request, without Pingora's
    /// per-request state.
    pub(crate) async fn park_answer<F>(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        answer: F,
    ) -> Result<bool>
    where
        F: Future<Output = Answer> + Send + 'static,
    {
        let route = ctx.route.unwrap_or("unknown");
        let record =
            self.state
                .access_log
                .begin_request(session, &self.state.trusted_proxies, ctx.started);
        let hsts = if ctx.tls { self.state.hsts } else { None };
        ctx.parked = true;
        let answer = async move {
            let mut answer = answer.await;
            if let Some(hsts) = hsts {
                answer
                    .headers
                    .push(("Strict-Transport-Security", hsts.to_owned()));
            }
            answer
        };
        let answered = move |status, bytes_sent| {
            metrics::http_request(route, status);
            if let Some(record) = record {
                record.end(status, bytes_sent);
            }
        };
        parked::park(session, answer, answered).await
    }
}
