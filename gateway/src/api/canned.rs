//! `/chat/api/canned-responses[/{id}]`: a site's canned responses, listed (`GET ?site=`),
//! created (`POST`), replaced (`PUT /{id}`) and deleted (`DELETE /{id}`) by its agents and its
//! API keys, through [`ChatService`](chat_core::service::ChatService)'s canned-response methods
//! (bounds, site scoping and the per-site limit live there).

use super::{read_body, Api, MAX_BODY_BYTES};
use crate::http_util::{query_param, respond, respond_json};
use crate::wire_error::{ErrorResponse, IntoErrorResponse};
use bytes::Bytes;
use chat_core::canned::CannedFields;
use chat_core::ErrorCode;
use pingora::proxy::Session;
use pingora::Result;
use serde::Deserialize;
use serde_json::json;

/// The JSON body of a create (with `site`) or a replace (without).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CannedBody {
    #[serde(default)]
    site: Option<String>,
    shortcut: String,
    title: String,
    body: String,
}

impl CannedBody {
    fn fields(self) -> CannedFields {
        CannedFields {
            shortcut: self.shortcut,
            title: self.title,
            body: self.body,
        }
    }
}

impl Api<'_> {
    /// Answers one canned-response request; `id` is the path's last part, if any.
    pub async fn canned(&self, session: &mut Session, id: Option<&str>) -> Result<bool> {
        let caller = match self.caller(session) {
            Ok(caller) => caller,
            Err(refusal) => return refusal.error_response().respond(session).await,
        };
        let principal = &caller.principal;
        let method = session.req_header().method.clone();
        let Some(id) = id else {
            if method == http::Method::GET {
                let query = session.req_header().uri.query().map(str::to_owned);
                let Some(site) = query_param(query.as_deref(), "site") else {
                    return ErrorResponse::chat(ErrorCode::BadRequest, "name the site: ?site=…")
                        .respond(session)
                        .await;
                };
                return match self.chat.canned_responses(principal, &site).await {
                    Ok(list) => {
                        respond_json(session, 200, &json!({ "canned_responses": list })).await
                    }
                    Err(e) => e.error_response().respond(session).await,
                };
            }
            if method != http::Method::POST {
                return ErrorResponse::method_not_allowed("use GET or POST")
                    .respond(session)
                    .await;
            }
            let body = match read_canned_body(session).await? {
                Ok(body) => body,
                Err(answered) => return Ok(answered),
            };
            let Some(site) = body.site.clone() else {
                return ErrorResponse::chat(ErrorCode::InvalidFrame, "`site` is missing")
                    .respond(session)
                    .await;
            };
            return match self
                .chat
                .create_canned_response(principal, &site, body.fields())
                .await
            {
                Ok(canned) => {
                    respond_json(session, 201, &json!({ "canned_response": canned })).await
                }
                Err(e) => e.error_response().respond(session).await,
            };
        };
        let Ok(id) = id.parse::<uuid::Uuid>() else {
            let why = format!(
                "canned response {} does not exist",
                id.chars().take(40).collect::<String>()
            );
            return ErrorResponse::chat(ErrorCode::NotFound, why)
                .respond(session)
                .await;
        };
        if method == http::Method::DELETE {
            return match self.chat.delete_canned_response(principal, id).await {
                Ok(()) => respond(session, 204, "text/plain", &[], Bytes::new()).await,
                Err(e) => e.error_response().respond(session).await,
            };
        }
        if method != http::Method::PUT {
            return ErrorResponse::method_not_allowed("use PUT or DELETE")
                .respond(session)
                .await;
        }
        let body = match read_canned_body(session).await? {
            Ok(body) => body,
            Err(answered) => return Ok(answered),
        };
        if body.site.is_some() {
            return ErrorResponse::chat(
                ErrorCode::InvalidFrame,
                "a canned response keeps its site; leave `site` out",
            )
            .respond(session)
            .await;
        }
        match self
            .chat
            .update_canned_response(principal, id, body.fields())
            .await
        {
            Ok(canned) => respond_json(session, 200, &json!({ "canned_response": canned })).await,
            Err(e) => e.error_response().respond(session).await,
        }
    }
}

/// The request's JSON body, or `Err` with the refusal already answered.
async fn read_canned_body(session: &mut Session) -> Result<std::result::Result<CannedBody, bool>> {
    let Some(body) = read_body(session).await? else {
        return ErrorResponse::chat(
            ErrorCode::TooLarge,
            format!("request body over {MAX_BODY_BYTES} bytes"),
        )
        .respond(session)
        .await
        .map(Err);
    };
    match serde_json::from_slice::<CannedBody>(&body) {
        Ok(parsed) => Ok(Ok(parsed)),
        Err(e) if e.is_syntax() || e.is_eof() => ErrorResponse::chat(
            ErrorCode::MalformedJson,
            format!("body is not valid JSON: {e}"),
        )
        .respond(session)
        .await
        .map(Err),
        Err(e) => ErrorResponse::chat(
            ErrorCode::InvalidFrame,
            format!("body must be {{site, shortcut, title, body}} (strings): {e}"),
        )
        .respond(session)
        .await
        .map(Err),
    }
}
