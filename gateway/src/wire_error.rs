//! Every error and refusal the gateway answers, mapped in this one file onto each wire form,
//! and the one helper that builds every `{"error": code, "message": ...}` body ([`error_body`]).
//!
//! An error type owns its wire mapping the way an axum handler's error implements
//! `IntoResponse`: [`IntoErrorResponse::error_response`] turns it into an [`ErrorResponse`]
//! (status, code, message, `Retry-After`), which writes itself to Pingora
//! ([`ErrorResponse::respond`]) or becomes the polling transport's [`PollResponse`]. Call sites
//! name what went wrong, never a status.
//!
//! | error | HTTP status and `error` code | other wire forms | metric `reason` |
//! |---|---|---|---|
//! | [`ChatError`] / [`ErrorCode`] | [`http_status`]: 400 `malformed_json`, `unknown_type`, `invalid_frame`, `bad_request`; 401 `unauthorized`, `token_expired`; 403 `forbidden`; 404 `not_found`; 413 `too_large`; 429 `rate_limited`; 503 `unavailable`; 500 `internal` | an `error` event over WebSocket and long-polling; over Socket.IO the ack's `{"error": {code, message}}` (`chat_transport_socketio::chat`) | — |
//! | [`Refusal`] (admission) | [`Refusal::status`], [`Refusal::code`]: 503 `unavailable` (`TooManyConnections`, `Retry-After: 5`; `Unavailable`), 429 `too_many_connections` / `rate_limited`, 403 `forbidden`, 401 `unauthorized`, 400 `bad_request`, 426 `bad_request` (WebSocket version), 500 `internal` | Socket.IO `CONNECT_ERROR` ([`Refusal::socketio_message`]); Engine.IO `{"code": 3 or 4, ...}` ([`Refusal::engine_response`]) | `chat_handshake_failures_total` ([`Refusal::metric_reason`]); log line `warn` for the gateway's faults, `debug` for the client's ([`Refusal::record`]) |
//! | an Engine.IO engine's own refusal (bad `sid`, unsupported version…) | the engine's status and body | — | [`engine_refusal_reason`] |
//! | [`ConnectionRefusal`] (connection caps) | 503 `too_many_connections` / `too_many_from_address`, `Retry-After: 5`, written raw before any request is read ([`ConnectionRefusal::http1_answer`]); an HTTP/2 connection is closed | — | `chat_http_connections_refused_total` ([`ConnectionRefusal::as_str`]) |
//! | the gateway's own answers (unknown chat path, wrong method) | 404 `not_found`, 405 `method_not_allowed` ([`ErrorResponse::method_not_allowed`]) | — | — |
//!
//! A session that ends is not an error answer: its WebSocket close code is written by the
//! transport that holds the socket (`chat_transport_websocket`: 1001 shutting down, 1008 policy,
//! 1009 too big, 1013 too far behind, 4001 token expired; `docs/protocol.md` lists them).
//!
//! The one exception to "one body helper": `chat-transport-polling` cannot depend on the gateway
//! and keeps its own tiny `PollResponse::error` for the refusals it answers itself (unknown
//! `sid`, bad cursor, oversized POST); a test here checks both write the same bytes.

use crate::limits::LimitRefusal;
use crate::metrics::{self, HandshakeFailure};
use bytes::Bytes;
use chat_core::model::Role;
use chat_core::transport::TransportKind;
use chat_core::{ChatError, ErrorCode};
use chat_transport_polling::PollResponse;
use chat_transport_socketio::engineio::EngineResponse;
use pingora::proxy::Session as HttpSession;
use serde_json::json;
use std::time::Duration;

/// The one builder of the JSON error body every chat endpoint answers with:
/// `{"error": code, "message": ..., "retry_after_ms"?}`.
pub fn error_body(code: &str, message: &str, retry_after: Option<Duration>) -> serde_json::Value {
    let mut body = json!({ "error": code, "message": message });
    if let Some(after) = retry_after {
        body["retry_after_ms"] = json!(after.as_millis() as u64);
    }
    body
}

/// The HTTP status of a chat error code.
pub fn http_status(code: ErrorCode) -> u16 {
    match code {
        ErrorCode::MalformedJson
        | ErrorCode::UnknownType
        | ErrorCode::InvalidFrame
        | ErrorCode::BadRequest => 400,
        ErrorCode::Unauthorized | ErrorCode::TokenExpired => 401,
        ErrorCode::Forbidden => 403,
        ErrorCode::NotFound => 404,
        ErrorCode::TooLarge => 413,
        ErrorCode::Conflict => 409,
        ErrorCode::UnsupportedType => 415,
        ErrorCode::RateLimited => 429,
        ErrorCode::Unavailable => 503,
        ErrorCode::Internal => 500,
    }
}

/// An error as an HTTP answer: what [`IntoErrorResponse`] produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorResponse {
    status: u16,
    code: &'static str,
    message: String,
    retry_after: Option<Duration>,
    /// Headers the error itself needs besides `Retry-After` (`Sec-WebSocket-Version`).
    extra: Vec<(&'static str, String)>,
}

impl ErrorResponse {
    /// A chat error code with its status ([`http_status`]).
    pub fn chat(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status: http_status(code),
            code: code.as_str(),
            message: message.into(),
            retry_after: None,
            extra: Vec::new(),
        }
    }

    /// `405 method_not_allowed`; `message` says which methods are (`use GET or POST`).
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self {
            status: 405,
            code: "method_not_allowed",
            message: message.into(),
            retry_after: None,
            extra: Vec::new(),
        }
    }

    /// The status.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The JSON body ([`error_body`]).
    pub fn body(&self) -> serde_json::Value {
        error_body(self.code, &self.message, self.retry_after)
    }

    /// Headers besides the content type: `Retry-After` (whole seconds, rounded up) where a retry
    /// makes sense, then the error's own.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let retry = self.retry_after.map(|after| {
            (
                "Retry-After",
                after.as_secs_f64().ceil().max(1.0).to_string(),
            )
        });
        retry
            .into_iter()
            .chain(self.extra.iter().cloned())
            .collect()
    }

    /// Writes the answer; the connection stays reusable.
    pub async fn respond(self, session: &mut HttpSession) -> pingora::Result<bool> {
        self.respond_with(session, &[]).await
    }

    /// [`ErrorResponse::respond`] with more headers (CORS).
    pub async fn respond_with(
        self,
        session: &mut HttpSession,
        more: &[(&str, String)],
    ) -> pingora::Result<bool> {
        let headers = self.headers();
        let mut all: Vec<(&str, &str)> = vec![("Cache-Control", "no-store")];
        all.extend(headers.iter().map(|(k, v)| (*k, v.as_str())));
        all.extend(more.iter().map(|(k, v)| (*k, v.as_str())));
        crate::http_util::respond(
            session,
            self.status,
            "application/json",
            &all,
            Bytes::from(self.body().to_string()),
        )
        .await
    }
}

impl From<ErrorResponse> for PollResponse {
    fn from(error: ErrorResponse) -> Self {
        PollResponse {
            status: error.status,
            headers: [
                ("Content-Type", "application/json".to_string()),
                ("Cache-Control", "no-store".to_string()),
            ]
            .into_iter()
            .chain(error.headers())
            .collect(),
            body: error.body().to_string(),
        }
    }
}

/// An error that knows its HTTP answer, as axum's `IntoResponse`.
pub trait IntoErrorResponse {
    /// The answer.
    fn error_response(&self) -> ErrorResponse;
}

impl IntoErrorResponse for ChatError {
    /// The code's status, the client message (store internals not leaked), and for
    /// `rate_limited` the retry time.
    fn error_response(&self) -> ErrorResponse {
        ErrorResponse {
            retry_after: self.retry_after(),
            ..ErrorResponse::chat(self.code(), self.client_message())
        }
    }
}

/// Why a request does not get a session (or, for the HTTP API and `whoami`, an answer): every
/// step of [`crate::admission`] refuses with one of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// `CHAT_MAX_CONNECTIONS`: the gateway holds its most sessions.
    #[error(
        "the gateway holds its most chat sessions ({limit}, CHAT_MAX_CONNECTIONS); retry later"
    )]
    TooManyConnections {
        /// The limit.
        limit: usize,
    },
    /// `CHAT_MAX_CONNECTIONS_PER_IP`: this address holds its most sessions.
    #[error("too many chat sessions open from this address ({limit}, CHAT_MAX_CONNECTIONS_PER_IP); close one first")]
    TooManyFromAddress {
        /// The limit.
        limit: usize,
    },
    /// `CHAT_SESSION_OPENS_PER_IP_PER_MIN` (sessions) or `CHAT_SEND_RATE_PER_SEC` (HTTP API
    /// sends): too many in too little time.
    #[error("{what}; retry in {} ms", retry_after.as_millis())]
    RateLimited {
        /// What was limited.
        what: String,
        /// When a retry will be accepted.
        retry_after: Duration,
    },
    /// The `Origin` is not allowed for this role.
    #[error("origin {origin} is not allowed; add it to {variable}")]
    ForbiddenOrigin {
        /// The `Origin` header.
        origin: String,
        /// `CHAT_ALLOWED_ORIGINS` or `ADMIN_ALLOWED_ORIGINS`.
        variable: &'static str,
    },
    /// Missing, expired or invalid credentials, or a visitor token for another site.
    #[error("{0}")]
    Unauthorized(String),
    /// Not a usable request (no upgrade, HTTP/2, no `Sec-WebSocket-Key`…).
    #[error("{0}")]
    BadRequest(String),
    /// A WebSocket upgrade of a version other than 13: `426 Upgrade Required`.
    #[error("WebSocket version 13 required")]
    WebSocketVersion,
    /// The store could not open the session.
    #[error("{0}")]
    Unavailable(String),
    /// Anything else.
    #[error("{0}")]
    Internal(String),
}

impl Refusal {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            Self::TooManyConnections { .. } | Self::Unavailable(_) => 503,
            Self::TooManyFromAddress { .. } | Self::RateLimited { .. } => 429,
            Self::ForbiddenOrigin { .. } => 403,
            Self::Unauthorized(_) => 401,
            Self::BadRequest(_) => 400,
            Self::WebSocketVersion => 426,
            Self::Internal(_) => 500,
        }
    }

    /// The `error` code of the JSON body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooManyConnections { .. } | Self::Unavailable(_) => "unavailable",
            Self::TooManyFromAddress { .. } => "too_many_connections",
            Self::RateLimited { .. } => "rate_limited",
            Self::ForbiddenOrigin { .. } => "forbidden",
            Self::Unauthorized(_) => "unauthorized",
            Self::BadRequest(_) | Self::WebSocketVersion => "bad_request",
            Self::Internal(_) => "internal",
        }
    }

    /// The `reason` of `chat_handshake_failures_total`.
    pub fn metric_reason(&self) -> HandshakeFailure {
        match self {
            Self::TooManyConnections { .. } => HandshakeFailure::TooManyConnections,
            Self::TooManyFromAddress { .. } => HandshakeFailure::TooManyFromAddress,
            Self::RateLimited { .. } => HandshakeFailure::RateLimited,
            Self::ForbiddenOrigin { .. } => HandshakeFailure::ForbiddenOrigin,
            Self::Unauthorized(_) => HandshakeFailure::Unauthorized,
            Self::BadRequest(_) | Self::WebSocketVersion => HandshakeFailure::BadRequest,
            Self::Unavailable(_) => HandshakeFailure::Unavailable,
            Self::Internal(_) => HandshakeFailure::Internal,
        }
    }

    /// When a retry makes sense (`Retry-After`, `retry_after_ms`).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. } => Some(*retry_after),
            Self::TooManyConnections { .. } => Some(Duration::from_secs(5)),
            _ => None,
        }
    }

    /// The message of a Socket.IO `CONNECT_ERROR`.
    pub fn socketio_message(&self) -> String {
        self.to_string()
    }

    /// The refusal of an Engine.IO request, in the shape Engine.IO clients expect (`code` 4 for
    /// a forbidden origin, else 3, and the status's `message`), with the chat's `error` code
    /// and the reason besides.
    pub fn engine_response(&self) -> EngineResponse {
        let answer = self.error_response();
        let engine_code = if matches!(self, Self::ForbiddenOrigin { .. }) {
            4
        } else {
            3
        };
        let mut body = answer.body();
        body["code"] = json!(engine_code);
        body["message"] = json!(match answer.status {
            403 => "Forbidden",
            429 => "Too Many Requests",
            503 => "Service Unavailable",
            _ => "Bad request",
        });
        body["reason"] = json!(self.to_string());
        EngineResponse {
            status: answer.status,
            headers: std::iter::once(("Content-Type", "application/json".to_string()))
                .chain(answer.headers())
                .collect(),
            body: Bytes::from(body.to_string()),
        }
    }

    /// Counts the refusal of a session request on `transport` for `role` and logs it once:
    /// `warn` when the gateway failed, `debug` when the client did.
    pub fn record(&self, transport: TransportKind, role: Role) {
        metrics::handshake_failed(transport, role, self.metric_reason());
        match self {
            Self::Unavailable(_) | Self::Internal(_) => tracing::warn!(
                transport = transport.as_str(),
                role = role.as_str(),
                refusal = %self,
                "chat session refused"
            ),
            _ => tracing::debug!(
                transport = transport.as_str(),
                role = role.as_str(),
                reason = self.metric_reason().as_str(),
                refusal = %self,
                "chat session refused"
            ),
        }
    }

    /// A limit's refusal (connection or session-open limits).
    pub fn from_limit(refusal: LimitRefusal) -> Self {
        match refusal {
            LimitRefusal::TooManyConnections { limit } => Self::TooManyConnections { limit },
            LimitRefusal::TooManyFromAddress { limit } => Self::TooManyFromAddress { limit },
            LimitRefusal::RateLimited {
                retry_after,
                per_min,
            } => Self::RateLimited {
                what: format!(
                    "too many chat sessions opened from this address ({per_min} a minute, \
                     CHAT_SESSION_OPENS_PER_IP_PER_MIN)"
                ),
                retry_after,
            },
        }
    }

    /// The store's failure to open a session.
    pub fn from_open(error: &ChatError) -> Self {
        match error {
            ChatError::Store(_) => Self::Unavailable(error.client_message()),
            _ => Self::Internal(error.client_message()),
        }
    }
}

impl IntoErrorResponse for Refusal {
    fn error_response(&self) -> ErrorResponse {
        ErrorResponse {
            status: self.status(),
            code: self.code(),
            message: self.to_string(),
            retry_after: self.retry_after(),
            extra: match self {
                Self::WebSocketVersion => vec![("Sec-WebSocket-Version", "13".to_string())],
                _ => Vec::new(),
            },
        }
    }
}

/// The `reason` of `chat_handshake_failures_total` for an Engine.IO engine's own refusal of a
/// handshake, which only says its status.
pub fn engine_refusal_reason(status: u16) -> HandshakeFailure {
    match status {
        401 => HandshakeFailure::Unauthorized,
        403 => HandshakeFailure::ForbiddenOrigin,
        429 => HandshakeFailure::RateLimited,
        503 => HandshakeFailure::Unavailable,
        400..=499 => HandshakeFailure::BadRequest,
        _ => HandshakeFailure::Internal,
    }
}

/// Why a TCP connection was refused by the connection caps ([`crate::connections`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionRefusal {
    /// The edge holds `CHAT_MAX_HTTP_CONNECTIONS`.
    TooManyConnections,
    /// The address holds `CHAT_MAX_HTTP_CONNECTIONS_PER_IP`.
    TooManyFromAddress,
}

impl ConnectionRefusal {
    /// The `reason` of `chat_http_connections_refused_total`, which is also the `error` code.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TooManyConnections => "too_many_connections",
            Self::TooManyFromAddress => "too_many_from_address",
        }
    }

    /// What the client is told, with the cap (`total` or `per_ip`) it hit.
    pub fn message(self, total: usize, per_ip: usize) -> String {
        match self {
            Self::TooManyConnections => format!(
                "the gateway holds its most connections ({total}, CHAT_MAX_HTTP_CONNECTIONS); retry later"
            ),
            Self::TooManyFromAddress => format!(
                "too many connections from this address ({per_ip}, CHAT_MAX_HTTP_CONNECTIONS_PER_IP); \
                 close idle ones first"
            ),
        }
    }

    /// The whole HTTP/1.1 answer, written raw before Pingora reads the request: `503` with
    /// `Retry-After: 5`, and the connection closed.
    pub fn http1_answer(self, total: usize, per_ip: usize) -> String {
        let body = error_body(self.as_str(), &self.message(total, per_ip), None).to_string();
        format!(
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nRetry-After: 5\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    }
}

#[cfg(test)]
mod tests;
