//! The HTTP API for servers and older integrations: send an agent reply, read a conversation's
//! messages, and online statistics. Authenticated with an agent JWT or the gateway's API key
//! (`CHAT_API_KEY`). `docs/http-api.md` is the reference, with curl examples.

use crate::admission::Admission;
use crate::api_keys::ApiKeys;
use crate::http_util::{bearer, header, query_param, read_body_limited, respond_json};
use crate::wire_error::{ErrorResponse, IntoErrorResponse, Refusal};
use bytes::Bytes;
use chat_core::model::{Agent, ConversationId, Principal, Role};
use chat_core::rate::{KeyedBuckets, RateLimit};
use chat_core::service::{ChatService, Delivery, Draft};

pub use attachments::{sweep_unsent_attachments, UploadConfig, Uploads};
use chat_core::store::Appended;
use chat_core::ErrorCode;
use pingora::proxy::Session;
use pingora::Result;
use serde_json::{json, Value};

mod attachments;
mod canned;
mod search;
mod visitor;

/// Most agents whose API send buckets are kept; past it, full (idle) buckets are forgotten.
const MAX_TRACKED_SENDERS: usize = 4096;

/// Send rate of agents posting through the HTTP API with a JWT, per agent: the visitors' send
/// rate (`CHAT_SEND_RATE_PER_SEC`, `CHAT_SEND_BURST`). Callers with `CHAT_API_KEY` (the site's
/// own servers) are not limited.
pub struct ApiSendLimits(KeyedBuckets<String>);

impl ApiSendLimits {
    /// Buckets of `limit` (`None`: no limit).
    pub fn new(limit: Option<RateLimit>) -> Self {
        Self(KeyedBuckets::new(limit, MAX_TRACKED_SENDERS))
    }

    fn take(&self, agent_id: &str) -> Result<(), std::time::Duration> {
        self.0.take(&agent_id.to_owned())
    }
}

/// Largest request body the API reads.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// What the API needs from the gateway.
pub struct Api<'a> {
    /// The chat service.
    pub chat: &'a ChatService,
    /// The admission path (agent JWTs).
    pub admission: &'a Admission,
    /// `CHAT_API_KEY` and `CHAT_API_KEYS`, with their sites.
    pub api_keys: &'a ApiKeys,
    /// Send buckets of agents posting with a JWT.
    pub sends: &'a ApiSendLimits,
    /// Attachment uploads: their limits and the uploads in flight.
    pub uploads: &'a Uploads,
}

/// An authenticated caller of the API.
pub(crate) struct Caller {
    /// Who.
    pub(crate) principal: Principal,
    /// Authenticated with an API key (the site's own servers, not rate limited), not a JWT.
    pub(crate) by_key: bool,
}

impl Api<'_> {
    /// The caller, or the reason it is refused.
    fn caller(&self, session: &Session) -> std::result::Result<Caller, Refusal> {
        let presented =
            header(session, "x-api-key").or_else(|| bearer(header(session, "authorization")));
        let Some(presented) = presented else {
            return Err(Refusal::Unauthorized(
                "send Authorization: Bearer <agent JWT or API key>, or X-API-Key".into(),
            ));
        };
        if let Some(sites) = self.api_keys.sites_of(presented) {
            return Ok(Caller {
                principal: Principal::Agent {
                    agent: Agent {
                        id: "api".into(),
                        name: "Support".into(),
                    },
                    sites: sites.clone(),
                },
                by_key: true,
            });
        }
        self.admission
            .agent(Some(presented))
            .map(|verified| Caller {
                principal: Principal::Agent {
                    agent: verified.agent,
                    sites: verified.sites,
                },
                by_key: false,
            })
    }

    /// Whether the request carries an agent JWT or the API key.
    pub fn authorized(&self, session: &Session) -> bool {
        self.caller(session).is_ok()
    }

    /// `GET /chat/api/stats[?site=…]`: per-site figures for the caller's sites (agents online
    /// across processes, visitor sessions on this process); a caller of every site also gets
    /// this process's sessions by transport and role. Per-site figures live here rather than
    /// in metric labels, whose values must stay bounded.
    pub async fn stats(&self, session: &mut Session) -> Result<bool> {
        let principal = match self.caller(session) {
            Ok(caller) => caller.principal,
            Err(refusal) => return refusal.error_response().respond(session).await,
        };
        let Principal::Agent { sites, .. } = &principal else {
            return ErrorResponse::chat(ErrorCode::Forbidden, "agents only")
                .respond(session)
                .await;
        };
        let query = session.req_header().uri.query().map(str::to_owned);
        let asked = query_param(query.as_deref(), "site");
        if let Some(site) = &asked {
            if !sites.contains(site) {
                let why = format!(
                    "you are not an agent of site `{}`",
                    site.chars().take(70).collect::<String>()
                );
                return ErrorResponse::chat(ErrorCode::Forbidden, why)
                    .respond(session)
                    .await;
            }
        }
        let presence = self.chat.agents_online();
        let visitors = self.chat.visitor_sessions_by_site();
        // The sites to report: the one asked for, else the caller's list, else every site
        // this process knows of (with agents or visitors now).
        let names: Vec<String> = match (&asked, sites.list()) {
            (Some(site), _) => vec![site.clone()],
            (None, Some(list)) => list.to_vec(),
            (None, None) => {
                let mut known: std::collections::BTreeSet<String> =
                    visitors.keys().cloned().collect();
                known.extend(presence.by_site.keys().cloned());
                known.into_iter().collect()
            }
        };
        let per_site: serde_json::Map<String, Value> = names
            .into_iter()
            .map(|site| {
                let figures = json!({
                    "agents_online": presence.online(&site),
                    "visitors_online": visitors.get(&site).copied().unwrap_or(0),
                });
                (site, figures)
            })
            .collect();
        let mut body = json!({ "sites": per_site });
        if asked.is_none() && sites.list().is_none() {
            let counts = self.chat.session_counts();
            let mut connections = serde_json::Map::new();
            for (transport, role, n) in &counts.by_transport_and_role {
                let entry = connections
                    .entry(transport.as_str().to_string())
                    .or_insert_with(|| json!({"visitor": 0, "agent": 0}));
                entry[role.as_str()] = json!(n);
            }
            body["connections"] = Value::Object(connections);
            body["visitors_online"] = json!(counts.role_total(Role::Visitor));
            body["agents_online"] = json!(presence.sessions);
        }
        respond_json(session, 200, &body).await
    }

    /// The caller and the conversation of a `/chat/api/conversations/{id}/…` request, or
    /// `Err` with the refusal already answered (what the handler returns).
    pub(crate) async fn conversation_request(
        &self,
        session: &mut Session,
        id: &str,
    ) -> Result<std::result::Result<(Caller, ConversationId), bool>> {
        let caller = match self.caller(session) {
            Ok(caller) => caller,
            Err(refusal) => return refusal.error_response().respond(session).await.map(Err),
        };
        match id.parse::<ConversationId>() {
            Ok(conversation_id) => Ok(Ok((caller, conversation_id))),
            Err(_) => {
                let why = format!("conversation {id} does not exist");
                ErrorResponse::chat(ErrorCode::NotFound, why)
                    .respond(session)
                    .await
                    .map(Err)
            }
        }
    }

    /// `/chat/api/conversations/{id}/messages`: `GET` reads, `POST` sends an agent reply.
    pub async fn messages(&self, session: &mut Session, id: &str) -> Result<bool> {
        let (caller, conversation_id) = match self.conversation_request(session, id).await? {
            Ok(request) => request,
            Err(answered) => return Ok(answered),
        };
        let principal = &caller.principal;
        let method = session.req_header().method.clone();
        if method == http::Method::GET {
            let query = session.req_header().uri.query().map(str::to_owned);
            let after_seq =
                match query_param(query.as_deref(), "after_seq").map(|v| v.parse::<i64>()) {
                    None => 0,
                    Some(Ok(n)) if n >= 0 => n,
                    Some(_) => {
                        return ErrorResponse::chat(
                            ErrorCode::BadRequest,
                            "after_seq must be an integer >= 0",
                        )
                        .respond(session)
                        .await
                    }
                };
            let limit = match query_param(query.as_deref(), "limit").map(|v| v.parse::<u32>()) {
                None => None,
                Some(Ok(n)) => Some(n),
                Some(Err(_)) => {
                    return ErrorResponse::chat(
                        ErrorCode::BadRequest,
                        "limit must be an integer 1..=500",
                    )
                    .respond(session)
                    .await
                }
            };
            let audience = match query_param(query.as_deref(), "audience").as_deref() {
                None | Some("agent") => Role::Agent,
                Some("visitor") => Role::Visitor,
                Some(_) => {
                    return ErrorResponse::chat(
                        ErrorCode::BadRequest,
                        "audience must be `agent` or `visitor`",
                    )
                    .respond(session)
                    .await
                }
            };
            return match self
                .chat
                .history_seen_by(principal, audience, conversation_id, after_seq, limit)
                .await
            {
                Ok(page) => {
                    let body = json!({ "messages": page.messages, "more": page.more });
                    respond_json(session, 200, &body).await
                }
                Err(e) => e.error_response().respond(session).await,
            };
        }
        if method != http::Method::POST {
            return ErrorResponse::method_not_allowed("use GET or POST")
                .respond(session)
                .await;
        }
        self.reply(session, &caller, Target::Conversation(conversation_id))
            .await
    }

    /// `POST /chat/api/sites/{site}/users/{user_id}/messages`: an agent reply to the known
    /// user `user_id` of `site` (their open conversation, or a new one), with the same answer
    /// and idempotency as the conversation endpoint.
    pub async fn user_messages(
        &self,
        session: &mut Session,
        site: &str,
        user: &str,
    ) -> Result<bool> {
        let caller = match self.caller(session) {
            Ok(caller) => caller,
            Err(refusal) => return refusal.error_response().respond(session).await,
        };
        if session.req_header().method != http::Method::POST {
            return ErrorResponse::method_not_allowed("use POST")
                .respond(session)
                .await;
        }
        let decode = |part: &str| {
            percent_encoding::percent_decode_str(part)
                .decode_utf8()
                .map(|s| s.into_owned())
        };
        let (Ok(site), Ok(user)) = (decode(site), decode(user)) else {
            return ErrorResponse::chat(ErrorCode::BadRequest, "the path is not UTF-8")
                .respond(session)
                .await;
        };
        self.reply(session, &caller, Target::User { site, user })
            .await
    }

    /// Reads a reply `{body, client_msg_id?}`, sends it to `target`, answers
    /// `{message, duplicate, delivery}`.
    async fn reply(&self, session: &mut Session, caller: &Caller, target: Target) -> Result<bool> {
        let body = match read_body(session).await? {
            Some(body) => body,
            None => {
                return ErrorResponse::chat(
                    ErrorCode::TooLarge,
                    format!("request body over {MAX_BODY_BYTES} bytes"),
                )
                .respond(session)
                .await
            }
        };
        let parsed: Value = match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => {
                return ErrorResponse::chat(
                    ErrorCode::MalformedJson,
                    format!("body is not valid JSON: {e}"),
                )
                .respond(session)
                .await
            }
        };
        let Some(text) = parsed.get("body").and_then(Value::as_str) else {
            return ErrorResponse::chat(
                ErrorCode::InvalidFrame,
                "body must be a JSON object with a string `body`",
            )
            .respond(session)
            .await;
        };
        let principal = &caller.principal;
        if let (false, Principal::Agent { agent, .. }) = (caller.by_key, principal) {
            if let Err(retry_after) = self.sends.take(&agent.id) {
                chat_core::metrics::api_send_rate_limited();
                let refusal = Refusal::RateLimited {
                    what: "this agent is sending too fast (CHAT_SEND_RATE_PER_SEC)".into(),
                    retry_after,
                };
                tracing::debug!(%refusal, "HTTP API send refused");
                return refusal.error_response().respond(session).await;
            }
        }
        let client_msg_id = match parsed.get("client_msg_id") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                return ErrorResponse::chat(
                    ErrorCode::InvalidFrame,
                    "client_msg_id must be a string",
                )
                .respond(session)
                .await
            }
        };
        let attachment_id = match parsed.get("attachment_id") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => match s.parse::<uuid::Uuid>() {
                Ok(id) => Some(id),
                Err(_) => {
                    return ErrorResponse::chat(
                        ErrorCode::InvalidFrame,
                        "attachment_id must be an attachment's id",
                    )
                    .respond(session)
                    .await
                }
            },
            Some(_) => {
                return ErrorResponse::chat(
                    ErrorCode::InvalidFrame,
                    "attachment_id must be a string",
                )
                .respond(session)
                .await
            }
        };
        let draft = Draft {
            attachment_id,
            ..Draft::text(client_msg_id, text.to_owned())
        };
        let sent = match target {
            Target::Conversation(id) => {
                self.chat
                    .send_reporting_delivery(principal, Some(id), draft)
                    .await
            }
            Target::User { site, user } => {
                self.chat.send_to_user(principal, &site, &user, draft).await
            }
        };
        match sent {
            Ok((appended, delivery)) => {
                let (status, duplicate, message) = match appended {
                    Appended::Inserted(m) => {
                        chat_core::metrics::message_committed(principal.role(), "http_api");
                        (201, false, m)
                    }
                    Appended::Duplicate(m) => (200, true, m),
                };
                let body = json!({
                    "message": message,
                    "duplicate": duplicate,
                    "delivery": delivery.map(Delivery::as_str),
                });
                respond_json(session, status, &body).await
            }
            Err(e) => e.error_response().respond(session).await,
        }
    }
}

/// Where an HTTP API reply goes.
enum Target {
    /// A conversation by id.
    Conversation(ConversationId),
    /// The open conversation of a known user of a site (created when there is none).
    User {
        /// The site.
        site: String,
        /// The main site's own user id.
        user: String,
    },
}

/// Reads the request body; `None` when it is over [`MAX_BODY_BYTES`].
async fn read_body(session: &mut Session) -> Result<Option<Bytes>> {
    let (body, over) = read_body_limited(session, MAX_BODY_BYTES).await?;
    Ok((!over).then_some(body))
}
