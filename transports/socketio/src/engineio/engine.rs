//! The engine: session registry, handshake, HTTP long-polling and the protocol's error answers.

pub use super::config::EngineConfig;
use super::packet::{decode_payload, encode_payload, Handshake, Packet};
use super::session::{
    drain_for_poll, CloseReason, EngineHandler, EngineSender, EngineSession, Registry,
    TransportType, UpgradeState,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The HTTP method of a request, as far as the engine cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET`: handshake or long-poll.
    Get,
    /// `POST`: packets from the client.
    Post,
    /// `OPTIONS`: a CORS preflight (the gateway adds the CORS headers).
    Options,
    /// Anything else.
    Other,
}

/// The parts of an HTTP request the engine needs.
#[derive(Debug, Clone)]
pub struct EngineRequest {
    /// The method.
    pub method: Method,
    /// The raw query string, without `?` (`EIO=4&transport=polling&sid=...`).
    pub query: String,
    /// The body (POST only). The gateway should stop reading past `max_payload + 1` bytes.
    pub body: Bytes,
}

/// A plain HTTP response for the gateway to write (CORS headers are the gateway's to add).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineResponse {
    /// The status code.
    pub status: u16,
    /// Headers to set.
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: Bytes,
}

impl EngineResponse {
    fn text(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            headers: vec![("Content-Type", "text/plain; charset=UTF-8".into())],
            body: Bytes::from(body.into()),
        }
    }

    /// The body as text (lossy), handy in logs and tests.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// The protocol's error answers: HTTP 400 with `{"code":N,"message":"..."}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// 0: the `transport` query parameter is missing or unknown.
    #[error("Transport unknown")]
    TransportUnknown,
    /// 1: the `sid` is not a live session.
    #[error("Session ID unknown")]
    SessionIdUnknown,
    /// 2: a handshake with another method than GET.
    #[error("Bad handshake method")]
    BadHandshakeMethod,
    /// 3: anything else the protocol forbids.
    #[error("Bad request")]
    BadRequest,
    /// 4: refused by policy.
    #[error("Forbidden")]
    Forbidden,
    /// 5: `EIO` missing or other than 4 (EIO=3 is refused).
    #[error("Unsupported protocol version")]
    UnsupportedProtocolVersion,
}

impl EngineError {
    /// The protocol's numeric code.
    pub fn code(self) -> u8 {
        match self {
            Self::TransportUnknown => 0,
            Self::SessionIdUnknown => 1,
            Self::BadHandshakeMethod => 2,
            Self::BadRequest => 3,
            Self::Forbidden => 4,
            Self::UnsupportedProtocolVersion => 5,
        }
    }

    /// The HTTP answer: status 400 (403 for `Forbidden`) with the JSON body.
    pub fn response(self) -> EngineResponse {
        let body = serde_json::json!({ "code": self.code(), "message": self.to_string() });
        EngineResponse {
            status: if self == Self::Forbidden { 403 } else { 400 },
            headers: vec![("Content-Type", "application/json".into())],
            body: Bytes::from(body.to_string()),
        }
    }
}

pub(crate) struct Query<'a> {
    pub(crate) transport: &'a str,
    pub(crate) sid: Option<&'a str>,
}

/// Validates `EIO` and `transport` and extracts `sid`.
pub(crate) fn parse_query(query: &str) -> Result<Query<'_>, EngineError> {
    let mut eio = None;
    let mut transport = None;
    let mut sid = None;
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "EIO" => eio = Some(v),
            "transport" => transport = Some(v),
            "sid" => sid = Some(v),
            _ => {}
        }
    }
    if eio != Some("4") {
        return Err(EngineError::UnsupportedProtocolVersion);
    }
    let transport = match transport {
        Some(t @ ("polling" | "websocket")) => t,
        _ => return Err(EngineError::TransportUnknown),
    };
    Ok(Query {
        transport,
        sid: sid.filter(|s| !s.is_empty()),
    })
}

pub(crate) struct Inner {
    pub(crate) config: Arc<EngineConfig>,
    pub(crate) sessions: Arc<Registry>,
    handler: Arc<dyn EngineHandler>,
}

/// The Engine.IO server: cheap to clone, shared by every request.
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<Inner>,
}

impl Engine {
    /// A new engine that tells `handler` of every session it opens (see [`EngineHandler`];
    /// [`Engine::new`] hands sessions out as sockets instead).
    pub fn with_handler(config: EngineConfig, handler: Arc<dyn EngineHandler>) -> Engine {
        let inner = Inner {
            config: Arc::new(config),
            sessions: Arc::new(Mutex::new(HashMap::new())),
            handler,
        };
        Engine {
            inner: Arc::new(inner),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// How many sessions are open.
    pub fn session_count(&self) -> usize {
        self.registry().len()
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<EngineSession>>> {
        self.inner
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the session `sid` is open (the gateway releases what it holds for a session
    /// once it is gone).
    pub fn has_session(&self, sid: &str) -> bool {
        self.registry().contains_key(sid)
    }

    pub(crate) fn session(&self, sid: &str) -> Option<Arc<EngineSession>> {
        self.registry().get(sid).cloned()
    }

    /// The handshake data for a session on `transport`.
    pub(crate) fn handshake(&self, sid: &str, transport: TransportType) -> Handshake {
        let c = &self.inner.config;
        let upgrades = if transport == TransportType::Polling && c.allow_websocket {
            vec!["websocket".to_string()]
        } else {
            vec![]
        };
        Handshake {
            sid: sid.to_string(),
            upgrades,
            ping_interval: c.ping_interval.as_millis() as u64,
            ping_timeout: c.ping_timeout.as_millis() as u64,
            max_payload: c.max_payload as u64,
        }
    }

    /// Opens a session: registers it, hands it to the [`EngineHandler`] and, for a polling
    /// session, starts its heartbeat task (a WebSocket session's loop pings itself).
    /// `None` when the handler refuses it.
    pub(crate) fn open_session(&self, transport: TransportType) -> Option<Arc<EngineSession>> {
        let sid = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 15]>());
        let session = EngineSession::new(
            sid.clone(),
            self.inner.config.clone(),
            transport,
            Arc::downgrade(&self.inner.sessions),
        );
        self.registry().insert(sid, session.clone());
        let sender = EngineSender {
            session: session.clone(),
        };
        let Some(handler) = self.inner.handler.on_open(sender) else {
            session.close(CloseReason::ServerClosed);
            return None;
        };
        session.attach(handler);
        if transport == TransportType::Polling {
            tokio::spawn(session.clone().heartbeat());
        }
        Some(session)
    }

    /// Answers an HTTP long-polling request (handshake, GET poll, POST, preflight).
    ///
    /// A poll GET waits until there is something to send, for at most
    /// `pingInterval + pingTimeout` (then answers `noop`).
    pub async fn handle_polling(&self, req: EngineRequest) -> EngineResponse {
        match self.polling(req).await {
            Ok(r) => r,
            Err(e) => e.response(),
        }
    }

    async fn polling(&self, req: EngineRequest) -> Result<EngineResponse, EngineError> {
        let q = parse_query(&req.query)?;
        if req.method == Method::Options {
            return Ok(EngineResponse {
                status: 204,
                headers: vec![],
                body: Bytes::new(),
            });
        }
        if q.transport != "polling" {
            // A WebSocket must come through `websocket_request` with an upgrade.
            return Err(EngineError::BadRequest);
        }
        let Some(sid) = q.sid else {
            if req.method != Method::Get {
                return Err(EngineError::BadHandshakeMethod);
            }
            let Some(session) = self.open_session(TransportType::Polling) else {
                return Ok(EngineResponse::text(503, "Service Unavailable"));
            };
            let hs = self.handshake(&session.sid, TransportType::Polling);
            return Ok(EngineResponse::text(200, Packet::Open(hs).encode_text()));
        };
        let session = self.session(sid).ok_or(EngineError::SessionIdUnknown)?;
        match req.method {
            Method::Get => poll(&session).await,
            Method::Post => post(&session, &req.body).await,
            _ => Err(EngineError::BadRequest),
        }
    }
}

/// Resets a flag of the session state when a request ends (or is dropped).
struct FlagGuard<'a> {
    session: &'a EngineSession,
    post: bool,
}

impl Drop for FlagGuard<'_> {
    fn drop(&mut self) {
        let mut st = self.session.lock();
        if self.post {
            st.post_active = false;
        } else {
            st.poll_active = false;
        }
    }
}

async fn poll(session: &Arc<EngineSession>) -> Result<EngineResponse, EngineError> {
    {
        let mut st = session.lock();
        if st.closed.is_some() {
            return Err(EngineError::SessionIdUnknown);
        }
        if st.transport != TransportType::Polling {
            return Err(EngineError::BadRequest);
        }
        if st.poll_active {
            drop(st);
            session.close(CloseReason::ProtocolViolation("overlapping polls".into()));
            return Err(EngineError::BadRequest);
        }
        st.poll_active = true;
    }
    let _guard = FlagGuard {
        session,
        post: false,
    };
    let config = &session.config;
    let deadline = tokio::time::Instant::now() + config.ping_interval + config.ping_timeout;
    loop {
        let changed = session.changed();
        {
            let mut st = session.lock();
            if st.closed == Some(CloseReason::ClientClosed) {
                // The client sent `close` (on a POST) while this GET was pending: the protocol
                // ends the pending GET with a noop; its next GET finds no session (400).
                return Ok(EngineResponse::text(200, Packet::Noop.encode_text()));
            }
            if st.closed.is_some() {
                let mut packets = drain_for_poll(&mut st, config.max_payload);
                packets.push(Packet::Close);
                return Ok(EngineResponse::text(200, encode_payload(&packets)));
            }
            if st.upgrade == UpgradeState::Probing || st.transport != TransportType::Polling {
                return Ok(EngineResponse::text(200, Packet::Noop.encode_text()));
            }
            if !st.outbound.is_empty() {
                let packets = drain_for_poll(&mut st, config.max_payload);
                return Ok(EngineResponse::text(200, encode_payload(&packets)));
            }
        }
        tokio::select! {
            _ = changed => {}
            _ = tokio::time::sleep_until(deadline) => {
                return Ok(EngineResponse::text(200, Packet::Noop.encode_text()));
            }
        }
    }
}

async fn post(session: &Arc<EngineSession>, body: &[u8]) -> Result<EngineResponse, EngineError> {
    let config = &session.config;
    if body.len() > config.max_payload {
        return Ok(EngineResponse::text(413, "Payload Too Large"));
    }
    {
        let mut st = session.lock();
        if st.closed.is_some() {
            return Err(EngineError::SessionIdUnknown);
        }
        if st.transport != TransportType::Polling {
            return Err(EngineError::BadRequest);
        }
        if st.post_active {
            drop(st);
            session.close(CloseReason::ProtocolViolation("overlapping posts".into()));
            return Err(EngineError::BadRequest);
        }
        st.post_active = true;
    }
    let _guard = FlagGuard {
        session,
        post: true,
    };
    let packets = match decode_payload(body, config.max_packets_per_payload) {
        Ok(p) => p,
        Err(e) => {
            session.close(CloseReason::ProtocolViolation(e.to_string()));
            return Err(EngineError::BadRequest);
        }
    };
    for p in packets {
        session.on_packet(p).await;
    }
    Ok(EngineResponse {
        status: 200,
        headers: vec![("Content-Type", "text/html".into())],
        body: Bytes::from_static(b"ok"),
    })
}
