//! `/chat/api/attachments`: upload an image or file (`POST`) and read one back
//! (`GET /chat/api/attachments/{id}`), with the credentials of the user who sends or reads it
//! — an agent JWT, the API key, or a visitor's token (docs/http-api.md#attachments). Who may
//! send and read what is decided in core (`chat_core::service::ChatService::upload`,
//! `download`); this file reads the request within its bounds and writes the answer.

use super::Api;
use crate::http_util::{bearer, cors_headers, header, query_param, read_body_limited, respond};
use crate::wire_error::{ErrorResponse, IntoErrorResponse, Refusal};
use bytes::Bytes;
use chat_core::model::{ConversationId, Principal, Role};
use chat_core::ErrorCode;
use pingora::proxy::Session;
use pingora::Result;
use std::path::PathBuf;

/// The attachment settings, as read from the environment.
#[derive(Debug, Clone)]
pub struct UploadConfig {
    /// `CHAT_MAX_UPLOAD_BYTES` and `CHAT_UPLOAD_TYPES`.
    pub policy: chat_core::attachment::UploadPolicy,
    /// `CHAT_UPLOAD_RATE_PER_MIN` and `CHAT_UPLOAD_BURST`; `None`: no limit.
    pub rate: Option<chat_core::rate::RateLimit>,
    /// `CHAT_UPLOAD_RATE_PER_IP_PER_MIN`; `None`: no limit.
    pub per_ip: Option<chat_core::rate::RateLimit>,
    /// `CHAT_MAX_CONCURRENT_UPLOADS`.
    pub max_concurrent: usize,
    /// `CHAT_MAX_CONCURRENT_DOWNLOADS`.
    pub max_concurrent_downloads: usize,
    /// `CHAT_UPLOAD_DIR`: where attachments' bytes go instead of the store.
    pub dir: Option<PathBuf>,
    /// `CHAT_UPLOAD_UNSENT_TTL_SECS`: an upload no message carried is deleted this long after.
    pub unsent_ttl: std::time::Duration,
}

/// How often uploads never sent are looked for (more often when `ttl` is shorter).
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(300);

/// Deletes, every [`SWEEP_EVERY`] (or every `ttl` when shorter), the uploads no message carried
/// within `ttl`, for the life of the process. Every process sweeps, which is harmless: a
/// deletion is one statement.
pub async fn sweep_unsent_attachments(
    chat: chat_core::service::ChatService,
    ttl: std::time::Duration,
) {
    let period = SWEEP_EVERY.min(ttl).max(std::time::Duration::from_secs(1));
    let mut every = tokio::time::interval(period);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if chat.is_shutting_down() {
            return;
        }
        match chat.sweep_unsent_attachments(ttl).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                deleted = n,
                "deleted uploads no message carried (CHAT_UPLOAD_UNSENT_TTL_SECS)"
            ),
            Err(e) => tracing::warn!(error = %e, "sweeping unsent uploads failed; retried later"),
        }
    }
}

/// Most client addresses whose upload buckets are kept; past it, full (idle) ones are forgotten.
const MAX_TRACKED_ADDRESSES: usize = 16 * 1024;

/// The uploads of this process: their size bound, the ones being read now, and the buckets of
/// client addresses.
pub struct Uploads {
    max_bytes: u64,
    in_flight: tokio::sync::Semaphore,
    max_concurrent: usize,
    per_ip: chat_core::rate::KeyedBuckets<std::net::IpAddr>,
    downloads: tokio::sync::Semaphore,
    max_concurrent_downloads: usize,
}

impl Uploads {
    /// Uploads bounded as `config` says.
    pub fn new(config: &UploadConfig) -> Self {
        Self {
            max_bytes: config.policy.max_bytes,
            in_flight: tokio::sync::Semaphore::new(config.max_concurrent),
            max_concurrent: config.max_concurrent,
            per_ip: chat_core::rate::KeyedBuckets::new(config.per_ip, MAX_TRACKED_ADDRESSES),
            downloads: tokio::sync::Semaphore::new(config.max_concurrent_downloads),
            max_concurrent_downloads: config.max_concurrent_downloads,
        }
    }
}

/// What `filename*=UTF-8''…` percent-encodes: everything but RFC 8187's `attr-char`.
const FILENAME_ENCODED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// The header a signed-in user's widget sends its `ChatWidgetConfig.user` in: the JSON object,
/// base64url-encoded (a header holds ASCII only).
const USER_HEADER: &str = "x-chat-user";

impl Api<'_> {
    /// Who is calling: an agent (JWT or API key) or a visitor (their token, and for a signed-in
    /// user the user claim with its hash, as when opening a session).
    fn participant(&self, session: &Session) -> std::result::Result<Principal, Refusal> {
        let presented = bearer(header(session, "authorization"));
        // A visitor token's shape (`v1.…`), unless it is one of the API keys, which are free-form
        // and checked first everywhere else.
        let looks_like_visitor =
            presented.is_some_and(|t| t.starts_with("v1.") && self.api_keys.sites_of(t).is_none());
        if !looks_like_visitor {
            return self.caller(session).map(|caller| caller.principal);
        }
        let token = presented.unwrap_or_default();
        // The token names its site: `v1.<visitor>.<site>.<signature>`.
        let site = token.split('.').nth(2).unwrap_or_default();
        let user = match header(session, USER_HEADER) {
            None => None,
            Some(encoded) => {
                use base64::Engine as _;
                let parsed = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(encoded.trim_end_matches('='))
                    .ok()
                    .and_then(|json| serde_json::from_slice::<serde_json::Value>(&json).ok());
                match crate::admission::Credentials::user_from_json(parsed.as_ref()) {
                    Some(user) => Some(user),
                    None => {
                        return Err(Refusal::Unauthorized(format!(
                            "{USER_HEADER} must be the base64url JSON of ChatWidgetConfig.user"
                        )))
                    }
                }
            }
        };
        self.admission
            .auth
            .visitor_as(Some(token), Some(site), user.as_ref())
            .map(|visitor| visitor.principal)
            .map_err(|e| Refusal::Unauthorized(format!("visitor token rejected: {e}")))
    }

    /// `/chat/api/attachments` (`POST`: upload) and `/chat/api/attachments/{id}` (`GET`);
    /// `client` is the client's address (for `CHAT_UPLOAD_RATE_PER_IP_PER_MIN`). Every answer
    /// to an allowed origin carries the CORS headers, refusals too: a widget on a customer's
    /// site reads the refusal's `message` to show it.
    pub async fn attachments(
        &self,
        session: &mut Session,
        id: Option<&str>,
        client: Option<std::net::IpAddr>,
    ) -> Result<bool> {
        let method = session.req_header().method.clone();
        let cors = match header(session, "origin") {
            None => Vec::new(),
            Some(origin) => {
                let host = header(session, "host").unwrap_or("").to_owned();
                let origin = origin.to_owned();
                if let Err(refusal) =
                    self.admission
                        .check_origin(Role::Visitor, Some(&origin), &host)
                {
                    return refusal.error_response().respond(session).await;
                }
                cors_headers(session, method == http::Method::OPTIONS)
            }
        };
        if method == http::Method::OPTIONS {
            let headers: Vec<(&str, &str)> = cors.iter().map(|(k, v)| (*k, v.as_str())).collect();
            return respond(session, 204, "text/plain", &headers, Bytes::new()).await;
        }
        let principal = match self.participant(session) {
            Ok(principal) => principal,
            Err(refusal) => return refusal.error_response().respond_with(session, &cors).await,
        };
        match (id, method) {
            (None, http::Method::POST) => {
                if let Some(Err(retry_after)) = client.map(|ip| self.uploads.per_ip.take(&ip)) {
                    chat_core::metrics::upload_refused("rate_limited");
                    session.set_keepalive(None);
                    let refusal = Refusal::RateLimited {
                        what: "too many uploads from this address \
                               (CHAT_UPLOAD_RATE_PER_IP_PER_MIN)"
                            .into(),
                        retry_after,
                    };
                    return refusal.error_response().respond_with(session, &cors).await;
                }
                self.upload(session, &principal, &cors).await
            }
            (Some(id), http::Method::GET | http::Method::HEAD) => {
                self.download(session, &principal, id, &cors).await
            }
            (None, _) => {
                ErrorResponse::method_not_allowed("use POST")
                    .respond_with(session, &cors)
                    .await
            }
            (Some(_), _) => {
                ErrorResponse::method_not_allowed("use GET")
                    .respond_with(session, &cors)
                    .await
            }
        }
    }

    async fn upload(
        &self,
        session: &mut Session,
        principal: &Principal,
        cors: &[(&'static str, String)],
    ) -> Result<bool> {
        let max = self.uploads.max_bytes;
        if max == 0 {
            return ErrorResponse::chat(
                ErrorCode::Forbidden,
                "uploads are off on this gateway (CHAT_MAX_UPLOAD_BYTES=0)",
            )
            .respond_with(session, cors)
            .await;
        }
        let query = session.req_header().uri.query().map(str::to_owned);
        let conversation_id = match query_param(query.as_deref(), "conversation_id") {
            None => None,
            Some(text) => match text.parse::<ConversationId>() {
                Ok(id) => Some(id),
                Err(_) => {
                    return ErrorResponse::chat(
                        ErrorCode::BadRequest,
                        "conversation_id is not a conversation's id",
                    )
                    .respond_with(session, cors)
                    .await
                }
            },
        };
        let name = query_param(query.as_deref(), "name").unwrap_or_else(|| "file".into());
        let content_type = header(session, "content-type").unwrap_or("").to_owned();
        let declared: Option<u64> = header(session, "content-length").and_then(|v| v.parse().ok());
        if let Some(declared) = declared.filter(|n| *n > max) {
            chat_core::metrics::upload_refused("too_large");
            session.set_keepalive(None);
            let why = format!(
                "the file has {declared} bytes; the limit is {max} (CHAT_MAX_UPLOAD_BYTES)"
            );
            return ErrorResponse::chat(ErrorCode::TooLarge, why)
                .respond_with(session, cors)
                .await;
        }
        if let Err(e) = self.chat.admit_upload(principal) {
            session.set_keepalive(None);
            return e.error_response().respond_with(session, cors).await;
        }
        // The bytes are held in memory until stored: at most CHAT_MAX_CONCURRENT_UPLOADS
        // uploads at once, each at most CHAT_MAX_UPLOAD_BYTES.
        let Ok(_permit) = self.uploads.in_flight.try_acquire() else {
            chat_core::metrics::upload_refused("busy");
            session.set_keepalive(None);
            let why = format!(
                "{} uploads are being read now (CHAT_MAX_CONCURRENT_UPLOADS); retry",
                self.uploads.max_concurrent
            );
            return ErrorResponse::chat(ErrorCode::Unavailable, why)
                .respond_with(session, cors)
                .await;
        };
        let limit = usize::try_from(max).unwrap_or(usize::MAX);
        let (bytes, over) = read_body_limited(session, limit).await?;
        if over {
            chat_core::metrics::upload_refused("too_large");
            let why = format!("the file is over {max} bytes (CHAT_MAX_UPLOAD_BYTES)");
            return ErrorResponse::chat(ErrorCode::TooLarge, why)
                .respond_with(session, cors)
                .await;
        }
        match self
            .chat
            .upload(principal, conversation_id, &name, &content_type, &bytes)
            .await
        {
            Ok(attachment) => {
                let body = serde_json::json!({ "attachment": attachment }).to_string();
                let mut headers: Vec<(&str, &str)> = vec![("Cache-Control", "no-store")];
                headers.extend(cors.iter().map(|(k, v)| (*k, v.as_str())));
                respond(
                    session,
                    201,
                    "application/json",
                    &headers,
                    Bytes::from(body),
                )
                .await
            }
            Err(e) => e.error_response().respond_with(session, cors).await,
        }
    }

    async fn download(
        &self,
        session: &mut Session,
        principal: &Principal,
        id: &str,
        cors: &[(&'static str, String)],
    ) -> Result<bool> {
        let Ok(id) = id.parse::<uuid::Uuid>() else {
            let why = format!(
                "attachment {} does not exist",
                id.chars().take(40).collect::<String>()
            );
            return ErrorResponse::chat(ErrorCode::NotFound, why)
                .respond_with(session, cors)
                .await;
        };
        // The bytes are held until written: at most CHAT_MAX_CONCURRENT_DOWNLOADS at once.
        let Ok(_permit) = self.uploads.downloads.try_acquire() else {
            let why = format!(
                "{} downloads are being served now (CHAT_MAX_CONCURRENT_DOWNLOADS); retry",
                self.uploads.max_concurrent_downloads
            );
            return ErrorResponse::chat(ErrorCode::Unavailable, why)
                .respond_with(session, cors)
                .await;
        };
        match self.chat.download(principal, id).await {
            Ok((attachment, bytes)) => {
                let disposition = format!(
                    "{}; filename*=UTF-8''{}",
                    if attachment.is_inline_image() {
                        "inline"
                    } else {
                        "attachment"
                    },
                    percent_encoding::utf8_percent_encode(&attachment.name, FILENAME_ENCODED)
                );
                let mut headers: Vec<(&str, &str)> = vec![
                    ("Content-Disposition", &disposition),
                    ("Content-Security-Policy", "default-src 'none'; sandbox"),
                    ("Cache-Control", "private, max-age=86400"),
                ];
                headers.extend(cors.iter().map(|(k, v)| (*k, v.as_str())));
                respond(
                    session,
                    200,
                    &attachment.content_type,
                    &headers,
                    Bytes::from(bytes),
                )
                .await
            }
            Err(e) => e.error_response().respond_with(session, cors).await,
        }
    }
}
