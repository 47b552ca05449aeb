//! The core's error type and the machine-readable codes clients see.

use serde::{Deserialize, Serialize};

/// Machine-readable reason carried by `error` events (and by HTTP error bodies).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame is not JSON.
    MalformedJson,
    /// The frame's `type` is not one the protocol knows.
    UnknownType,
    /// The frame is JSON with a known type but wrong or missing fields.
    InvalidFrame,
    /// The command is well-formed but not acceptable (empty body, bad cursor…).
    BadRequest,
    /// Credentials are missing, expired or invalid.
    Unauthorized,
    /// The agent token the session was opened with has expired (the session then closes with
    /// 4001); reconnect with a fresh token, or renew it in time with `auth`.
    TokenExpired,
    /// The principal may not do this (another visitor's conversation, agent-only command…).
    Forbidden,
    /// The conversation does not exist.
    NotFound,
    /// The message body is over the configured limit.
    TooLarge,
    /// An upload's content type is not accepted, or its bytes are not of that type.
    UnsupportedType,
    /// The request contradicts what is stored (a canned response's shortcut already taken, a
    /// site's canned responses at their limit).
    Conflict,
    /// The store is unreachable; retry with the same `client_msg_id`.
    Unavailable,
    /// Too many requests (sends, session opens): retry after `retry_after_ms`.
    RateLimited,
    /// A bug or an unexpected failure; logged on the gateway.
    Internal,
}

impl ErrorCode {
    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MalformedJson => "malformed_json",
            Self::UnknownType => "unknown_type",
            Self::InvalidFrame => "invalid_frame",
            Self::BadRequest => "bad_request",
            Self::Unauthorized => "unauthorized",
            Self::TokenExpired => "token_expired",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::TooLarge => "too_large",
            Self::UnsupportedType => "unsupported_type",
            Self::Conflict => "conflict",
            Self::Unavailable => "unavailable",
            Self::RateLimited => "rate_limited",
            Self::Internal => "internal",
        }
    }
}

/// Errors from stores (implementations map their driver errors onto these).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The referenced row does not exist.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The store cannot be reached (connection refused, pool timeout, database shut down).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The database has not been migrated to the version this binary needs.
    #[error("database schema is at version {found}, this gateway needs {expected}: run `chat-gateway migrate`")]
    NotMigrated {
        /// Version found in the database (0 when never migrated).
        found: i64,
        /// Version this binary needs.
        expected: i64,
    },
    /// Any other failure of the store.
    #[error("store error: {0}")]
    Other(String),
}

/// Errors from the chat service, each mapped onto an [`ErrorCode`].
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// See [`ErrorCode::BadRequest`].
    #[error("{0}")]
    BadRequest(String),
    /// See [`ErrorCode::Unauthorized`].
    #[error("{0}")]
    Unauthorized(String),
    /// See [`ErrorCode::Forbidden`].
    #[error("{0}")]
    Forbidden(String),
    /// See [`ErrorCode::NotFound`].
    #[error("{0}")]
    NotFound(String),
    /// See [`ErrorCode::TooLarge`].
    #[error("{0}")]
    TooLarge(String),
    /// See [`ErrorCode::Conflict`].
    #[error("{0}")]
    Conflict(String),
    /// See [`ErrorCode::UnsupportedType`].
    #[error("{0}")]
    UnsupportedType(String),
    /// See [`ErrorCode::RateLimited`]: the command was not executed; retry it (with the same
    /// `client_msg_id`) after `retry_after`.
    #[error("{what}; retry in {} ms", retry_after.as_millis())]
    RateLimited {
        /// What was limited, for the message.
        what: String,
        /// When a retry will be accepted.
        retry_after: std::time::Duration,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ChatError {
    /// The code a client sees.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::BadRequest(_) => ErrorCode::BadRequest,
            Self::Unauthorized(_) => ErrorCode::Unauthorized,
            Self::Forbidden(_) => ErrorCode::Forbidden,
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::TooLarge(_) => ErrorCode::TooLarge,
            Self::Conflict(_) => ErrorCode::Conflict,
            Self::UnsupportedType(_) => ErrorCode::UnsupportedType,
            Self::RateLimited { .. } => ErrorCode::RateLimited,
            Self::Store(StoreError::NotFound(what)) => {
                let _ = what;
                ErrorCode::NotFound
            }
            Self::Store(StoreError::Unavailable(_)) => ErrorCode::Unavailable,
            Self::Store(_) => ErrorCode::Internal,
        }
    }

    /// For [`ChatError::RateLimited`], when a retry will be accepted.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Self::RateLimited { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// The message a client sees. Store internals are not leaked.
    pub fn client_message(&self) -> String {
        match self {
            Self::Store(StoreError::NotFound(what)) => format!("{what} not found"),
            Self::Store(StoreError::Unavailable(_)) => {
                "the message store is unavailable; retry with the same client_msg_id".into()
            }
            Self::Store(_) => "internal error".into(),
            other => other.to_string(),
        }
    }
}
