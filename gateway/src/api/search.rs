//! `GET /chat/api/conversations/search?q=…[&site=…][&status=…][&cursor=…][&limit=…]`: the
//! `search_conversations` command over HTTP, through the same
//! [`ChatService::search`](chat_core::service::ChatService::search) (site scoping, bounds and
//! the per-agent rate limit live there).

use super::Api;
use crate::http_util::{query_param, respond_json};
use crate::wire_error::{ErrorResponse, IntoErrorResponse};
use chat_core::model::ConversationStatus;
use chat_core::service::SearchRequest;
use chat_core::ErrorCode;
use pingora::proxy::Session;
use pingora::Result;

impl Api<'_> {
    /// Answers `{results, next_cursor?}` as the command's `ack` carries them.
    pub async fn search(&self, session: &mut Session) -> Result<bool> {
        let caller = match self.caller(session) {
            Ok(caller) => caller,
            Err(refusal) => return refusal.error_response().respond(session).await,
        };
        let query = session.req_header().uri.query().map(str::to_owned);
        let param = |name| query_param(query.as_deref(), name);
        let status = match param("status").as_deref() {
            None | Some("") => None,
            Some(s) => match ConversationStatus::parse(s) {
                Some(status) => Some(status),
                None => {
                    return ErrorResponse::chat(
                        ErrorCode::BadRequest,
                        "status must be `open` or `closed`",
                    )
                    .respond(session)
                    .await
                }
            },
        };
        let limit = match param("limit").map(|v| v.parse::<u32>()) {
            None => None,
            Some(Ok(n)) => Some(n),
            Some(Err(_)) => {
                return ErrorResponse::chat(
                    ErrorCode::BadRequest,
                    "limit must be an integer 1..=50",
                )
                .respond(session)
                .await
            }
        };
        let request = SearchRequest {
            query: param("q").unwrap_or_default(),
            site: param("site").filter(|s| !s.is_empty()),
            status,
            cursor: param("cursor"),
            limit,
        };
        match self.chat.search(&caller.principal, request).await {
            Ok(page) => respond_json(session, 200, &serde_json::json!(page)).await,
            Err(e) => e.error_response().respond(session).await,
        }
    }
}
