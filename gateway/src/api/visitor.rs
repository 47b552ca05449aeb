//! `GET /chat/api/conversations/{id}/visitor`: a conversation's visitor with their latest
//! context (page, language, time zone, attributes, client address, country), for agents and
//! the site's servers. Authorized like the `visitor` command
//! ([`chat_core::service::ChatService::visitor_of`]).

use super::Api;
use crate::http_util::respond_json;
use crate::wire_error::IntoErrorResponse;
use pingora::proxy::Session;
use pingora::Result;
use serde_json::json;

impl Api<'_> {
    /// Answers `{"visitor": {id, site_id, context, first_seen_at, updated_at}}`.
    pub async fn visitor(&self, session: &mut Session, id: &str) -> Result<bool> {
        let (caller, conversation_id) = match self.conversation_request(session, id).await? {
            Ok(request) => request,
            Err(answered) => return Ok(answered),
        };
        match self
            .chat
            .visitor_of(&caller.principal, conversation_id)
            .await
        {
            Ok(visitor) => respond_json(session, 200, &json!({ "visitor": visitor })).await,
            Err(e) => e.error_response().respond(session).await,
        }
    }
}
