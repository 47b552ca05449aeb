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

use crate::http_util::{header, header_has_token};
use chat_transport_upgraded::Upgraded;
use futures_util::FutureExt;
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession as HttpSession;
use pingora::proxy::Session;
use pingora::{Error, ErrorType, Result};
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
    // Take the connection away from Pingora: it now belongs to the transport. Pingora
    // finishes the request against an in-memory copy of the request head (its logging
    // phase reads the header) with keep-alive off, so it never touches the socket again.
    let raw_head = session.as_downstream().to_h1_raw();
    let mut placeholder = HttpSession::new_http1(Box::new(std::io::Cursor::new(raw_head.to_vec())));
    placeholder.read_request().await?;
    placeholder.set_keepalive(None);
    let taken = std::mem::replace(session.as_downstream_mut(), placeholder);
    let HttpSession::H1(h1) = taken else {
        return Error::e_explain(ErrorType::InternalError, "upgrade on a non-HTTP/1 session");
    };
    let mut stream = h1.into_inner();
    stream
        .flush()
        .await
        .map_err(|e| Error::because(ErrorType::WriteError, "flushing 101", e))?;
    Ok(Upgraded {
        stream: Box::new(stream),
        read_ahead,
    })
}
