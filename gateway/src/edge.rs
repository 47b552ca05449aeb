//! The Pingora edge: one `ProxyHttp` service that answers chat paths in-process and
//! reverse-proxies everything else to the main site.
//!
//! Phases, in the order Pingora runs them:
//! - [`request_filter`](ChatEdge::request_filter): routes the request; chat routes are answered
//!   here (HTTP, or a WebSocket upgrade handed to the transport) and end the phase chain.
//! - [`upstream_peer`](ChatEdge::upstream_peer): the main site (`CHAT_UPSTREAM`).
//! - [`upstream_request_filter`](ChatEdge::upstream_request_filter): forwarded headers.
//! - [`fail_to_proxy`](ChatEdge::fail_to_proxy): a clear 502 page when the main site is down.

use crate::http_util::{
    bearer, cors_headers, header, header_has_token, query_param, read_body_limited, respond,
    respond_error, respond_json,
};
use crate::routes::{route, Route};
use async_trait::async_trait;
use bytes::Bytes;
use chat_core::auth::{Authenticator, OriginPolicy};
use chat_core::metrics::{self, HandshakeFailure};
use chat_core::model::{Principal, Role};
use chat_core::service::ChatService;
use chat_core::transport::{Transport, TransportKind};
use chat_core::ChatError;
use chat_transport_polling::{PollResponse, PollingSessions};
use chat_transport_socketio::engineio::{EngineRequest, EngineResponse, Method as EngineMethod};
use chat_transport_websocket::{Upgraded, WebSocketTransport};
use futures_util::FutureExt;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::protocols::http::ServerSession as HttpSession;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorType, Result};
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;
use tokio::io::AsyncWriteExt;

/// Everything the edge needs to answer chat requests.
pub struct EdgeState {
    /// The chat service.
    pub chat: ChatService,
    /// The raw WebSocket transport.
    pub websocket: WebSocketTransport,
    /// HTTP long-polling sessions (both roles; each session knows its principal).
    pub polling: PollingSessions,
    /// Agent and visitor credentials.
    pub auth: Authenticator,
    /// Who may open visitor sessions.
    pub visitor_origins: OriginPolicy,
    /// `CHAT_API_KEY`: accepted by the HTTP API in place of an agent JWT.
    pub api_key: Option<String>,
    /// Socket.IO engines, one per role.
    pub socketio: crate::socketio::SocketIoEndpoints,
    /// Who may open agent sessions.
    pub admin_origins: OriginPolicy,
    /// The main site, resolved at start-up.
    pub upstream: Option<std::net::SocketAddr>,
    /// Proxies whose `X-Forwarded-For` is believed (`CHAT_TRUSTED_PROXIES`).
    pub trusted_proxies: crate::client_addr::TrustedProxies,
    /// Connection deadlines.
    pub timeouts: crate::config::EdgeTimeouts,
}

/// The gateway's `ProxyHttp` service.
pub struct ChatEdge {
    state: Arc<EdgeState>,
}

impl ChatEdge {
    /// An edge over `state`.
    pub fn new(state: Arc<EdgeState>) -> Self {
        Self { state }
    }
}

/// Per-request state.
pub struct RequestCtx {
    /// The request arrived over TLS.
    tls: bool,
    /// When the request head was read.
    started: Instant,
    /// The chat route's metric name; `None` for requests proxied to the main site.
    route: Option<&'static str>,
}

impl Default for RequestCtx {
    fn default() -> Self {
        Self {
            tls: false,
            started: Instant::now(),
            route: None,
        }
    }
}

fn is_tls(session: &Session) -> bool {
    session
        .as_downstream()
        .digest()
        .is_some_and(|d| d.ssl_digest.is_some())
}

#[async_trait]
impl ProxyHttp for ChatEdge {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::default()
    }

    async fn early_request_filter(
        &self,
        session: &mut Session,
        _ctx: &mut RequestCtx,
    ) -> Result<()> {
        crate::deadlines::apply_to_request(session, &self.state.timeouts);
        Ok(())
    }

    fn persist_connection_context(
        &self,
        _session: &Session,
        _ctx: &RequestCtx,
    ) -> Option<Box<dyn std::any::Any + Send + Sync>> {
        Some(Box::new(crate::deadlines::KeptAlive))
    }

    fn on_connection_reuse(
        &self,
        _session: &mut Session,
        _ctx: &mut RequestCtx,
        prev: Box<dyn std::any::Any + Send + Sync>,
    ) {
        crate::deadlines::head_arrived(prev);
    }

    fn request_summary(&self, session: &Session, _ctx: &RequestCtx) -> String {
        crate::redact::request_summary(session)
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        ctx.tls = is_tls(session);
        ctx.started = Instant::now();
        let path = session.req_header().uri.path().to_owned();
        let method = session.req_header().method.clone();
        let route = route(&path);
        ctx.route = route.metric_name();
        if matches!(route, Route::Upstream) {
            return Ok(false);
        }
        let read_only = method == http::Method::GET || method == http::Method::HEAD;
        match route {
            Route::Upstream => Ok(false),
            Route::Redirect(to) => {
                respond(
                    session,
                    302,
                    "text/plain",
                    &[("Location", to)],
                    Bytes::new(),
                )
                .await
            }
            Route::Health if read_only => self.health(session).await,
            Route::WhoAmI if read_only => self.whoami(session).await,
            Route::ApiStats if read_only => self.api().stats(session).await,
            Route::ApiMessages(id) => self.api().messages(session, &id).await,
            Route::Asset(asset) if read_only => {
                let mut headers = vec![("Cache-Control", "no-cache")];
                headers.extend_from_slice(asset.headers);
                respond(
                    session,
                    200,
                    asset.content_type,
                    &headers,
                    Bytes::from_static(asset.body.as_bytes()),
                )
                .await
            }
            Route::Socket(role) => self.accept_socket(session, role).await,
            Route::Poll(role) => self.serve_polling(session, role).await,
            Route::NotFound => {
                respond_error(
                    session,
                    404,
                    "not_found",
                    &format!("no chat endpoint at {path}"),
                )
                .await
            }
            _ => respond_error(session, 405, "method_not_allowed", "use GET").await,
        }
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        _ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        match &self.state.upstream {
            Some(addr) => {
                let t = &self.state.timeouts;
                let mut peer = HttpPeer::new(*addr, false, String::new());
                peer.options.connection_timeout = Some(t.upstream_connect);
                peer.options.total_connection_timeout = Some(t.upstream_connect * 2);
                // Pingora fixes the upstream read timeout when it connects and offers no way to
                // lift it after a 101: an upgrade request has none (its downstream side keeps
                // one until the main site answered 101, see `response_filter`).
                peer.options.read_timeout = (!session.is_upgrade_req()).then_some(t.upstream_read);
                Ok(Box::new(peer))
            }
            None => Error::e_explain(ErrorType::ConnectNoRoute, "CHAT_UPSTREAM is not set"),
        }
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        crate::client_addr::set_forwarding_headers(
            session,
            upstream_request,
            &self.state.trusted_proxies,
            ctx.tls,
        )
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if ctx.route.is_none() && upstream_response.status == http::StatusCode::SWITCHING_PROTOCOLS
        {
            // The main site's own WebSocket really was upgraded: the body read timeout would
            // otherwise cut it after `CHAT_HEADER_TIMEOUT_SECS` of client silence.
            session.set_read_timeout(None);
        }
        Ok(())
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        let status = session.response_written().map(|r| r.status.as_u16());
        match ctx.route {
            Some(route) => {
                // An upgraded connection left Pingora after its 101, which Pingora no longer
                // sees; every other chat answer went through the session.
                let upgraded = route.starts_with("socket_") && status.is_none();
                metrics::http_request(route, status.unwrap_or(if upgraded { 101 } else { 0 }));
            }
            None => metrics::upstream_request(status, ctx.started.elapsed()),
        }
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy
    where
        Self::CTX: Send + Sync,
    {
        if let Some(route) = ctx.route {
            // A chat route failed while answering (typically the client went away mid-write):
            // nothing was proxied, and a 502 page cannot follow a response already started.
            let client_gone = matches!(
                e.etype(),
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed
            );
            if client_gone {
                tracing::debug!(route, error = %e, "the client went away during a chat request");
            } else {
                tracing::warn!(route, error = %e, "a chat request failed");
            }
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        }
        let reason = match (&self.state.upstream, e.etype()) {
            (None, _) => {
                "No main site is configured behind this gateway (CHAT_UPSTREAM is not set)."
                    .to_string()
            }
            (Some(addr), _) => format!(
                "The main site at {addr} is unreachable or failed to answer ({}).",
                e.etype().as_str()
            ),
        };
        let downstream_dead = matches!(
            e.etype(),
            ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed
        ) && matches!(e.esource(), pingora::ErrorSource::Downstream);
        if downstream_dead {
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        }
        tracing::warn!(error = %e, "proxying to the main site failed");
        let page = format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>502 Bad Gateway</title></head>\
             <body style=\"font-family:sans-serif;max-width:40em;margin:4em auto\"><h1>502 Bad Gateway</h1>\
             <p>{}</p><p>Live chat is still served at <a href=\"/chat/demo/\">/chat/</a>.</p></body></html>",
            html_escape(&reason)
        );
        let written = respond(
            session,
            502,
            "text/html; charset=utf-8",
            &[("Cache-Control", "no-store")],
            Bytes::from(page),
        )
        .await;
        FailToProxy {
            error_code: if written.is_ok() { 502 } else { 0 },
            can_reuse_downstream: false,
        }
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl ChatEdge {
    fn api(&self) -> crate::api::Api<'_> {
        crate::api::Api {
            chat: &self.state.chat,
            auth: &self.state.auth,
            api_key: self.state.api_key.as_deref(),
        }
    }

    /// `GET /chat/health`: the status word; the details only for an authorized caller
    /// (`crate::health`).
    async fn health(&self, session: &mut Session) -> Result<bool> {
        let (status, details) = crate::health::check(&self.state.chat).await;
        let body = if header(session, "authorization").is_some() && self.api().authorized(session) {
            details
        } else {
            crate::health::public(status)
        };
        respond_json(session, status, &body).await
    }

    /// `GET /chat/api/whoami`: which agent a token names, or why it is refused. Lets the
    /// console explain a failed WebSocket upgrade, whose status browsers hide.
    async fn whoami(&self, session: &mut Session) -> Result<bool> {
        if let Some(refusal) = self.origin_refusal(session, Role::Agent) {
            return respond_error(session, 403, "forbidden", &refusal).await;
        }
        let token = bearer(header(session, "authorization"))
            .map(str::to_owned)
            .or_else(|| query_param(session.req_header().uri.query(), "token"));
        match self.verify_agent(token.as_deref()) {
            Ok((agent, _)) => respond_json(session, 200, &json!({ "agent": agent })).await,
            Err(message) => respond_error(session, 401, "unauthorized", &message).await,
        }
    }

    /// The agent a token names and when it expires (Unix seconds), or why it is refused.
    fn verify_agent(
        &self,
        token: Option<&str>,
    ) -> std::result::Result<(chat_core::model::Agent, u64), String> {
        self.state
            .auth
            .agent_tokens()
            .verify_with_expiry(token.unwrap_or(""))
            .map_err(|e| Authenticator::describe_agent_refusal(&e))
    }

    fn origin_refusal(&self, session: &Session, role: Role) -> Option<String> {
        let origin = header(session, "origin");
        let host = header(session, "host").unwrap_or("");
        let (policy, variable) = match role {
            Role::Visitor => (&self.state.visitor_origins, "CHAT_ALLOWED_ORIGINS"),
            Role::Agent => (&self.state.admin_origins, "ADMIN_ALLOWED_ORIGINS"),
        };
        if policy.allows(origin, host) {
            None
        } else {
            Some(format!(
                "origin {} is not allowed; add it to {variable}",
                origin.unwrap_or("")
            ))
        }
    }

    /// Socket.IO (Engine.IO v4) on a chat path: CORS and Origin rules here, the protocol in the
    /// engine. Credentials travel in the Socket.IO CONNECT, not in this request.
    async fn serve_socketio(&self, session: &mut Session, role: Role, query: &str) -> Result<bool> {
        if let Some(refusal) = self.origin_refusal(session, role) {
            tracing::debug!(%refusal, "socket.io request refused");
            metrics::handshake_failed(
                TransportKind::SocketIo,
                role,
                HandshakeFailure::ForbiddenOrigin,
            );
            let body = json!({"code": 4, "message": "Forbidden", "reason": refusal}).to_string();
            return respond(session, 403, "application/json", &[], Bytes::from(body)).await;
        }
        let method = session.req_header().method.clone();
        let cors = cors_headers(session, method == http::Method::OPTIONS);
        if method == http::Method::OPTIONS {
            let headers: Vec<(&str, &str)> = cors.iter().map(|(k, v)| (*k, v.as_str())).collect();
            return respond(session, 204, "text/plain", &headers, Bytes::new()).await;
        }
        let engine = self.state.socketio.engine(role);
        if is_websocket_upgrade(session) {
            let Some(key) = websocket_key(session) else {
                metrics::handshake_failed(
                    TransportKind::SocketIo,
                    role,
                    HandshakeFailure::BadRequest,
                );
                return respond_error(session, 400, "bad_request", "missing Sec-WebSocket-Key")
                    .await;
            };
            let accept = match engine.websocket_request(query) {
                Ok(accept) => accept,
                Err(refusal) => {
                    let reason = HandshakeFailure::from_status(refusal.status);
                    metrics::handshake_failed(TransportKind::SocketIo, role, reason);
                    return self.write_engine_response(session, refusal, &cors).await;
                }
            };
            let upgraded = take_upgraded(session, &key).await?;
            let settings = self.state.websocket.settings().clone();
            tokio::spawn(async move {
                let _open = metrics::connection_opened(TransportKind::SocketIo, role);
                let (conn_tx, conn_rx) = tokio::sync::oneshot::channel();
                let engine_side = tokio::spawn(async move {
                    if let Ok(conn) = conn_rx.await {
                        accept.serve(conn).await;
                    }
                });
                crate::socketio::pump_websocket(upgraded, &settings, |conn| {
                    let _ = conn_tx.send(conn);
                })
                .await;
                let _ = engine_side.await;
            });
            return Ok(true);
        }
        let engine_method = match method {
            http::Method::GET => EngineMethod::Get,
            http::Method::POST => EngineMethod::Post,
            _ => EngineMethod::Other,
        };
        // One byte over maxPayload is enough for the engine to answer 413.
        let body = if engine_method == EngineMethod::Post {
            read_body_limited(session, engine.config().max_payload)
                .await?
                .0
        } else {
            Bytes::new()
        };
        let opening = query_param(Some(query), "sid").is_none();
        let _open = metrics::connection_opened(TransportKind::SocketIo, role);
        let response = engine
            .handle_polling(EngineRequest {
                method: engine_method,
                query: query.to_owned(),
                body,
            })
            .await;
        if opening && response.status >= 400 {
            let reason = HandshakeFailure::from_status(response.status);
            metrics::handshake_failed(TransportKind::SocketIo, role, reason);
        }
        self.write_engine_response(session, response, &cors).await
    }

    async fn write_engine_response(
        &self,
        session: &mut Session,
        response: EngineResponse,
        cors: &[(&str, String)],
    ) -> Result<bool> {
        let mut resp = ResponseHeader::build(
            response.status,
            Some(4 + response.headers.len() + cors.len()),
        )?;
        for (name, value) in response
            .headers
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .chain(cors.iter().map(|(k, v)| (*k, v.as_str())))
        {
            resp.insert_header(name.to_owned(), value)?;
        }
        resp.insert_header("Content-Length", response.body.len().to_string())?;
        resp.insert_header("Cache-Control", "no-store")?;
        session.write_response_header(Box::new(resp), false).await?;
        session
            .write_response_body(Some(response.body), true)
            .await?;
        Ok(true)
    }

    /// Authenticates, upgrades to WebSocket, and hands the connection to the transport.
    async fn accept_socket(&self, session: &mut Session, role: Role) -> Result<bool> {
        let query = session.req_header().uri.query().map(str::to_owned);
        let query = query.as_deref();
        if query_param(query, "EIO").is_some() {
            let query = query.unwrap_or("").to_owned();
            return self.serve_socketio(session, role, &query).await;
        }
        let (true, Some(key)) = (is_websocket_upgrade(session), websocket_key(session)) else {
            metrics::handshake_failed(TransportKind::WebSocket, role, HandshakeFailure::BadRequest);
            return respond_error(
                session,
                400,
                "bad_request",
                "this endpoint speaks WebSocket: send a GET with Upgrade: websocket",
            )
            .await;
        };
        if header(session, "sec-websocket-version") != Some("13") {
            metrics::handshake_failed(TransportKind::WebSocket, role, HandshakeFailure::BadRequest);
            return respond(
                session,
                426,
                "application/json",
                &[("Sec-WebSocket-Version", "13")],
                Bytes::from(
                    json!({"error":"bad_request","message":"WebSocket version 13 required"})
                        .to_string(),
                ),
            )
            .await;
        }
        if !matches!(session.as_downstream(), HttpSession::H1(_)) {
            metrics::handshake_failed(TransportKind::WebSocket, role, HandshakeFailure::BadRequest);
            return respond_error(session, 400, "bad_request", "WebSocket needs HTTP/1.1").await;
        }
        if let Some(refusal) = self.origin_refusal(session, role) {
            tracing::debug!(%refusal, "socket refused");
            metrics::handshake_failed(
                TransportKind::WebSocket,
                role,
                HandshakeFailure::ForbiddenOrigin,
            );
            return respond_error(session, 403, "forbidden", &refusal).await;
        }
        let chat_session = match self
            .authenticate_and_open(session, role, query, self.state.websocket.kind())
            .await
        {
            Ok(s) => s,
            Err((status, code, message)) => {
                let reason = HandshakeFailure::from_status(status);
                metrics::handshake_failed(TransportKind::WebSocket, role, reason);
                return respond_error(session, status, code, &message).await;
            }
        };

        let upgraded = take_upgraded(session, &key).await?;
        let transport = self.state.websocket.clone();
        let session_id = chat_session.id().to_owned();
        tracing::debug!(session = %session_id, role = role.as_str(), "websocket session opened");
        tokio::spawn(async move {
            let _open = metrics::connection_opened(TransportKind::WebSocket, role);
            let end = transport.serve(upgraded, chat_session).await;
            metrics::session_ended(TransportKind::WebSocket, role, &end);
            tracing::debug!(session = %session_id, ?end, "websocket session ended");
        });
        Ok(true)
    }
}

/// Why a session could not be opened: status, error code, message.
type Refusal = (u16, &'static str, String);

impl ChatEdge {
    /// Checks the credentials of a raw-protocol session request (the same for WebSocket and
    /// long-polling) and opens the chat session.
    async fn authenticate_and_open(
        &self,
        session: &Session,
        role: Role,
        query: Option<&str>,
        transport: TransportKind,
    ) -> std::result::Result<chat_core::service::Session, Refusal> {
        let (principal, visitor_token, expires) = match role {
            Role::Agent => {
                let token = query_param(query, "token")
                    .or_else(|| bearer(header(session, "authorization")).map(str::to_owned));
                match self.verify_agent(token.as_deref()) {
                    Ok((agent, exp)) => (Principal::Agent(agent), None, Some(exp)),
                    Err(message) => return Err((401, "unauthorized", message)),
                }
            }
            Role::Visitor => {
                let token = query_param(query, "token");
                let site = query_param(query, "site");
                match self.state.auth.visitor(token.as_deref(), site.as_deref()) {
                    Ok((principal, token)) => (principal, Some(token), None),
                    Err(e) => {
                        let message = format!(
                            "visitor token rejected: {e}; connect without a token to start afresh"
                        );
                        return Err((401, "unauthorized", message));
                    }
                }
            }
        };
        let mut chat_session = self
            .state
            .chat
            .open_session(principal, visitor_token, transport)
            .await
            .map_err(|e| {
                let status = match e {
                    ChatError::Store(_) => 503,
                    _ => 500,
                };
                tracing::warn!(error = %e, "could not open session");
                (status, e.code().as_str(), e.client_message())
            })?;
        if let Some(exp) = expires {
            chat_session.expire_at(exp);
        }
        Ok(chat_session)
    }

    /// HTTP long-polling (`docs/protocol.md`, "HTTP long-polling"): `POST` without `sid` opens
    /// a session (credentials as for the raw WebSocket), `GET ?sid&cursor` fetches events,
    /// `POST ?sid` submits frames. Origin rules and CORS as for Socket.IO.
    async fn serve_polling(&self, session: &mut Session, role: Role) -> Result<bool> {
        if let Some(refusal) = self.origin_refusal(session, role) {
            tracing::debug!(%refusal, "polling request refused");
            metrics::handshake_failed(
                TransportKind::Polling,
                role,
                HandshakeFailure::ForbiddenOrigin,
            );
            return respond_error(session, 403, "forbidden", &refusal).await;
        }
        let method = session.req_header().method.clone();
        let cors = cors_headers(session, method == http::Method::OPTIONS);
        let query = session.req_header().uri.query().unwrap_or("").to_owned();
        let has_sid = query_param(Some(&query), "sid").is_some();
        let polling = &self.state.polling;
        let _open = metrics::connection_opened(TransportKind::Polling, role);
        let response = match method {
            http::Method::OPTIONS => PollResponse {
                status: 204,
                headers: Vec::new(),
                body: String::new(),
            },
            http::Method::GET if has_sid => polling.poll(&query).await,
            http::Method::GET => PollResponse::error(
                400,
                "bad_request",
                "GET needs `sid` and `cursor`; open a session with POST first",
            ),
            http::Method::POST if has_sid => {
                let limit = polling.settings().max_body_bytes;
                let (body, _) = read_body_limited(session, limit).await?;
                polling.submit(&query, &body).await
            }
            http::Method::POST => {
                // An opening POST carries no frames: drain (a bounded amount of) any body so
                // the connection can be reused.
                read_body_limited(session, polling.settings().max_body_bytes).await?;
                match self
                    .authenticate_and_open(session, role, Some(&query), TransportKind::Polling)
                    .await
                {
                    Ok(chat_session) => polling.open(chat_session).await,
                    Err((status, code, message)) => {
                        let reason = HandshakeFailure::from_status(status);
                        metrics::handshake_failed(TransportKind::Polling, role, reason);
                        PollResponse::error(status, code, &message)
                    }
                }
            }
            _ => PollResponse::error(405, "method_not_allowed", "use GET or POST"),
        };
        let mut resp = ResponseHeader::build(
            response.status,
            Some(2 + response.headers.len() + cors.len()),
        )?;
        for (name, value) in response.headers.iter().chain(cors.iter()) {
            resp.insert_header(*name, value.as_str())?;
        }
        resp.insert_header("Content-Length", response.body.len().to_string())?;
        resp.insert_header("X-Content-Type-Options", "nosniff")?;
        session.write_response_header(Box::new(resp), false).await?;
        session
            .write_response_body(Some(Bytes::from(response.body)), true)
            .await?;
        Ok(true)
    }
}

fn is_websocket_upgrade(session: &Session) -> bool {
    session.req_header().method == http::Method::GET
        && header_has_token(header(session, "connection"), "upgrade")
        && header(session, "upgrade").is_some_and(|u| u.eq_ignore_ascii_case("websocket"))
}

fn websocket_key(session: &Session) -> Option<String> {
    header(session, "sec-websocket-key").map(str::to_owned)
}

/// Answers `101 Switching Protocols` and takes the connection away from Pingora.
async fn take_upgraded(session: &mut Session, key: &str) -> Result<Upgraded> {
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
