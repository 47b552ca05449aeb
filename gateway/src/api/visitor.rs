//! `GET /chat/api/conversations/{id}/visitor`: a conversation's visitor with their latest
//! context (page, language, time zone, attributes, client address, country), for agents and
//! the site's servers. Authorized like the `visitor` command
//! ([`chat_core::service::ChatService::visitor_of`]).

use super::{respond_chat_error, Api};
use crate::http_util::{respond_error, respond_json};
use chat_core::model::ConversationId;
use pingora::proxy::Session;
use pingora::Result;
use serde_json::json;

impl Api<'_> {
    /// Answers `{"visitor": {id, site_id, context, first_seen_at, updated_at}}`.
    pub async fn visitor(&self, session: &mut Session, id: &str) -> Result<bool> {
        let principal = match self.caller(session) {
            Ok(p) => p,
            Err(why) => return respond_error(session, 401, "unauthorized", &why).await,
        };
        let Ok(conversation_id) = id.parse::<ConversationId>() else {
            return respond_error(
                session,
                404,
                "not_found",
                &format!("conversation {id} does not exist"),
            )
            .await;
        };
        match self.chat.visitor_of(&principal, conversation_id).await {
            Ok(visitor) => respond_json(session, 200, &json!({ "visitor": visitor })).await,
            Err(e) => respond_chat_error(session, &e).await,
        }
    }
}
