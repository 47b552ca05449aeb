//! The Pingora edge: one `ProxyHttp` service that answers chat paths in-process and
//! reverse-proxies everything else to the main site.
//!
//! Phases, in the order Pingora runs them:
//! - [`request_filter`](ChatEdge::request_filter): routes the request; chat routes are answered
//!   in-process and end the phase chain: health, whoami and the HTTP API here, the session
//!   endpoints in [`crate::endpoints`] (one file per transport), all admitted through
//!   [`crate::admission`].
//! - [`upstream_peer`](ChatEdge::upstream_peer): the main site (`CHAT_UPSTREAM`).
//! - [`upstream_request_filter`](ChatEdge::upstream_request_filter): forwarded headers.
//! - [`fail_to_proxy`](ChatEdge::fail_to_proxy): a clear 502 page when the main site is down.
//! - [`logging`](ChatEdge::logging): request metrics and the access log line
//!   ([`crate::access_log`]; an upgraded chat WebSocket gets its line when the session ends, a
//!   long-polling request parked outside Pingora ([`crate::parked`]) when it is answered).

use crate::admission::{Admission, Attempt};
use crate::http_util::{bearer, header, query_param, respond, respond_json};
use crate::metrics;
use crate::routes::{route, Route};
use crate::wire_error::{ErrorResponse, IntoErrorResponse};
use async_trait::async_trait;
use bytes::Bytes;
use chat_core::model::Role;
use chat_core::service::ChatService;
use chat_core::transport::TransportKind;
use chat_transport_polling::PollingSessions;
use chat_transport_websocket::WebSocketTransport;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorType, Result};
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;

/// Everything the edge needs to answer chat requests.
pub struct EdgeState {
    /// The chat service.
    pub chat: ChatService,
    /// The raw WebSocket transport.
    pub websocket: WebSocketTransport,
    /// HTTP long-polling sessions (both roles; each session knows its principal).
    pub polling: PollingSessions,
    /// The one admission path: limits, Origin, credentials, tenant scope, session.
    pub admission: Arc<Admission>,
    /// `CHAT_API_KEY` and `CHAT_API_KEYS`: accepted by the HTTP API in place of an agent JWT.
    pub api_keys: crate::api_keys::ApiKeys,
    /// Socket.IO engines, one per role.
    pub socketio: crate::socketio::SocketIoEndpoints,
    /// Per-agent send buckets of the HTTP API.
    pub api_sends: crate::api::ApiSendLimits,
    /// Attachment uploads (`CHAT_MAX_UPLOAD_BYTES`, `CHAT_MAX_CONCURRENT_UPLOADS`).
    pub uploads: crate::api::Uploads,
    /// The main site, resolved at start-up.
    pub upstream: Option<std::net::SocketAddr>,
    /// The main site's plain reads, forwarded by the gateway itself (`None` without a main
    /// site); every other request to it goes through Pingora's proxy.
    pub site: Option<crate::site_forward::SiteForwarder>,
    /// Proxies whose `X-Forwarded-For` is believed (`CHAT_TRUSTED_PROXIES`).
    pub trusted_proxies: crate::client_addr::TrustedProxies,
    /// Connection deadlines.
    pub timeouts: crate::config::EdgeTimeouts,
    /// The access log (`CHAT_ACCESS_LOG`).
    pub access_log: crate::access_log::AccessLog,
    /// Port 80's redirect to HTTPS and ACME challenges (`crate::https_redirect`).
    pub plain_http: crate::https_redirect::PlainHttp,
    /// `Strict-Transport-Security` for TLS responses; `None` when off.
    pub hsts: Option<&'static str>,
    /// Compression of the main site's responses.
    pub compression: crate::config::CompressionConfig,
}

/// The gateway's `ProxyHttp` service.
pub struct ChatEdge {
    pub(crate) state: Arc<EdgeState>,
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
    pub(crate) tls: bool,
    /// When the request head was read.
    pub(crate) started: Instant,
    /// The chat route's metric name; `None` for requests proxied to the main site.
    pub(crate) route: Option<&'static str>,
    /// The connection was parked outside Pingora (`crate::parked`): the task that answers the
    /// request counts it and writes its access log line.
    pub(crate) parked: bool,
    /// The main site's share of the request, for the access log.
    upstream_time: crate::access_log::UpstreamTimer,
}

impl Default for RequestCtx {
    fn default() -> Self {
        Self {
            tls: false,
            started: Instant::now(),
            route: None,
            parked: false,
            upstream_time: Default::default(),
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

    fn init_downstream_modules(&self, modules: &mut pingora::modules::http::HttpModules) {
        // Pingora's own (disabled) compression module stays, as its default does.
        modules
            .add_module(pingora::modules::http::compression::ResponseCompressionBuilder::enable(0));
        modules.add_module(Box::new(crate::edge_response::EdgeResponseBuilder));
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
        let method = session.req_header().method.clone();
        let route = route(session.req_header().uri.path());
        ctx.route = route.metric_name();
        self.configure_response(session, ctx.tls, &method, &route);
        if let Some(answered) = self
            .state
            .plain_http
            .answer(session, ctx.tls, &self.state.trusted_proxies)
            .await?
        {
            // Counted as the gateway's own answer, not as a request to the main site.
            ctx.route = Some(answered);
            return Ok(true);
        }
        if matches!(route, Route::Upstream) {
            return self.forward_to_site(session, ctx).await;
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
            Route::Live if read_only => respond_json(session, 200, &crate::health::live()).await,
            Route::WhoAmI if read_only => self.whoami(session).await,
            Route::ApiStats if read_only => self.api().stats(session).await,
            Route::ApiMessages(id) => self.api().messages(session, &id).await,
            Route::ApiUserMessages { site, user } => {
                self.api().user_messages(session, &site, &user).await
            }
            Route::ApiVisitor(id) if read_only => self.api().visitor(session, &id).await,
            Route::ApiCanned(id) => self.api().canned(session, id.as_deref()).await,
            Route::ApiSearch if read_only => self.api().search(session).await,
            Route::ApiAttachments(id) => {
                let client = crate::client_addr::client_ip(session, &self.state.trusted_proxies);
                self.api().attachments(session, id.as_deref(), client).await
            }
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
            Route::Socket(role) => self.accept_socket(session, role, ctx).await,
            Route::Poll(role) => self.serve_polling(session, role, ctx).await,
            Route::NotFound => {
                let message = format!("no chat endpoint at {}", session.req_header().uri.path());
                ErrorResponse::chat(chat_core::ErrorCode::NotFound, message)
                    .respond(session)
                    .await
            }
            _ => {
                ErrorResponse::method_not_allowed("use GET")
                    .respond(session)
                    .await
            }
        }
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        ctx.upstream_time.start();
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

    fn upstream_response_body_filter(
        &self,
        _session: &mut Session,
        _body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<std::time::Duration>> {
        if end_of_stream {
            ctx.upstream_time.finish();
        }
        Ok(None)
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        if ctx.parked {
            // Counted and logged by the task that answers it (`crate::parked`).
            return;
        }
        let status = session.response_written().map(|r| r.status.as_u16());
        match ctx.route {
            Some(route) => {
                // An upgraded connection left Pingora after its 101, which Pingora no longer
                // sees; every other chat answer went through the session.
                let upgraded = route.starts_with("socket_") && status.is_none();
                metrics::http_request(route, status.unwrap_or(if upgraded { 101 } else { 0 }));
                if upgraded {
                    // Its access log line is written when the session ends (`endpoints`).
                    return;
                }
            }
            None => metrics::upstream_request(status, ctx.started.elapsed()),
        }
        self.state.access_log.request(
            session,
            &self.state.trusted_proxies,
            status,
            ctx.started,
            ctx.upstream_time.elapsed(),
        );
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
        if session.response_written().is_some() {
            // The main site's answer had begun (its body broke off): a page cannot follow it.
            tracing::warn!(error = %e, "the main site's answer broke off");
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        }
        tracing::warn!(error = %e, "proxying to the main site failed");
        // The connection is not reused after a failure: the page says so (`Connection: close`),
        // so that a client does not send its next request into a closing socket.
        session.set_keepalive(None);
        let page = crate::site_forward::bad_gateway_page(self.state.upstream, e);
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

impl ChatEdge {
    /// Tells the response module what applies to this request: HSTS on TLS, compression for
    /// the main site's responses and the chat's static assets (not for chat answers that
    /// stream or are tiny).
    fn configure_response(
        &self,
        session: &mut Session,
        tls: bool,
        method: &http::Method,
        route: &Route,
    ) {
        let compression = self.state.compression;
        let compress = compression.enabled
            && method != http::Method::HEAD
            && matches!(route, Route::Upstream | Route::Asset(_));
        let encoding = compress
            .then(|| crate::compression::choose(header(session, "accept-encoding")))
            .flatten();
        let policy = crate::edge_response::ResponsePolicy {
            hsts: if tls { self.state.hsts } else { None },
            compress_min_bytes: compress.then_some(compression.min_bytes),
            encoding,
        };
        if let Some(module) = session
            .downstream_modules_ctx
            .get_mut::<crate::edge_response::EdgeResponse>()
        {
            module.configure(policy);
        }
    }

    fn api(&self) -> crate::api::Api<'_> {
        crate::api::Api {
            chat: &self.state.chat,
            admission: &self.state.admission,
            api_keys: &self.state.api_keys,
            sends: &self.state.api_sends,
            uploads: &self.state.uploads,
        }
    }

    /// A request to the main site: a plain read is forwarded here (`crate::site_forward`), and
    /// anything else is left to Pingora's proxy (`Ok(false)`).
    async fn forward_to_site(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let Some(site) = &self.state.site else {
            return Ok(false);
        };
        if !crate::site_forward::forwards(session) {
            return Ok(false);
        }
        let forwarding =
            crate::client_addr::Forwarding::of(session, &self.state.trusted_proxies, ctx.tls)?;
        site.forward(session, &forwarding, &mut ctx.upstream_time)
            .await?;
        Ok(true)
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
        let admission = &self.state.admission;
        let attempt = Attempt::of(
            session,
            &self.state.trusted_proxies,
            Role::Agent,
            TransportKind::WebSocket,
        );
        if let Err(refusal) =
            admission.check_origin(attempt.role, attempt.origin.as_deref(), &attempt.host)
        {
            return refusal.error_response().respond(session).await;
        }
        let token = bearer(header(session, "authorization"))
            .map(str::to_owned)
            .or_else(|| query_param(session.req_header().uri.query(), "token"));
        match admission.agent(token.as_deref()) {
            Ok(verified) => {
                let body = json!({
                    "agent": verified.agent,
                    "sites": verified.sites.to_claim(),
                    "expires_at": verified.expires_at,
                });
                respond_json(session, 200, &body).await
            }
            Err(refusal) => refusal.error_response().respond(session).await,
        }
    }
}
