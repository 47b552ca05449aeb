//! `/ws-visitor/poll` and `/ws-admin/poll`: the raw protocol over HTTP long-polling
//! (`docs/protocol.md`, "HTTP long-polling"). `POST` without `sid` opens a session through the
//! admission path (credentials as for the raw WebSocket; the core session holds the connection
//! slot until the polling session ends or expires), `GET ?sid&cursor` fetches events,
//! `POST ?sid` submits frames. A `sid` is only good on its own role's path (and, when the request
//! names a `site`, for its own site). Origin rules and CORS as for Socket.IO.

use crate::admission::{Attempt, Credentials};
use crate::edge::{ChatEdge, RequestCtx};
use crate::http_util::{bearer, cors_headers, header, query_param, read_body_limited};
use crate::metrics;
use crate::parked::{self, Answer};
use crate::run_session::run_session;
use crate::wire_error::{ErrorResponse, IntoErrorResponse};
use bytes::Bytes;
use chat_core::model::{Principal, Role};
use chat_core::transport::TransportKind;
use chat_core::ErrorCode;
use chat_transport_polling::PollResponse;
use pingora::proxy::Session;
use pingora::Result;

impl ChatEdge {
    /// Serves one long-polling request.
    pub(crate) async fn serve_polling(
        &self,
        session: &mut Session,
        role: Role,
        ctx: &mut RequestCtx,
    ) -> Result<bool> {
        let admission = &self.state.admission;
        let method = session.req_header().method.clone();
        let cors = cors_headers(session, method == http::Method::OPTIONS);
        let query = session.req_header().uri.query().unwrap_or("").to_owned();
        let has_sid = query_param(Some(&query), "sid").is_some();
        let polling = &self.state.polling;
        let attempt = Attempt::of(
            session,
            &self.state.trusted_proxies,
            role,
            TransportKind::Polling,
        );
        let opening = method == http::Method::POST && !has_sid;
        if !opening {
            if let Err(refusal) = admission.admit_request(&attempt) {
                return refusal.error_response().respond_with(session, &cors).await;
            }
        }
        let open = metrics::connection_opened(TransportKind::Polling, role);
        // A sid is only good on the path of its role and, when the request names a site, for
        // that site.
        let owner = has_sid.then(|| polling.principal_of(&query)).flatten();
        let wrong_role = owner.as_ref().is_some_and(|p| p.role() != role);
        let site = query_param(Some(&query), "site");
        let wrong_site = match (&owner, &site) {
            (Some(Principal::Visitor { site_id, .. }), Some(site)) => site_id != site,
            _ => false,
        };
        let response =
            match method {
                http::Method::OPTIONS => PollResponse {
                    status: 204,
                    headers: Vec::new(),
                    body: String::new(),
                },
                _ if wrong_role => {
                    ErrorResponse::chat(
                        ErrorCode::Forbidden,
                        format!(
                        "this polling session belongs to the other role's path; use /ws-{}/poll",
                        if role == Role::Visitor { "admin" } else { "visitor" }
                    ),
                    )
                    .into()
                }
                _ if wrong_site => ErrorResponse::chat(
                    ErrorCode::Forbidden,
                    "this polling session belongs to another site",
                )
                .into(),
                http::Method::GET if has_sid && parked::can_park(session) => {
                    // The poll is held outside Pingora.
                    let state = self.state.clone();
                    let (query, cors) = (query.clone(), cors.clone());
                    let held = async move {
                        let _open = open;
                        poll_answer(state.polling.poll(&query).await, &cors)
                    };
                    return self.park_answer(session, ctx, held).await;
                }
                http::Method::GET if has_sid => polling.poll(&query).await,
                http::Method::GET => ErrorResponse::chat(
                    ErrorCode::BadRequest,
                    "GET needs `sid` and `cursor`; open a session with POST first",
                )
                .into(),
                http::Method::POST if has_sid => {
                    let limit = polling.settings().max_body_bytes;
                    let (body, _) = read_body_limited(session, limit).await?;
                    polling.submit(&query, &body).await
                }
                http::Method::POST => {
                    // An opening POST carries no frames: drain (a bounded amount of) any body so
                    // the connection can be reused.
                    read_body_limited(session, polling.settings().max_body_bytes).await?;
                    let credentials = Credentials {
                        token: match role {
                            Role::Agent => query_param(Some(&query), "token").or_else(|| {
                                bearer(header(session, "authorization")).map(str::to_owned)
                            }),
                            Role::Visitor => query_param(Some(&query), "token"),
                        },
                        site: query_param(Some(&query), "site"),
                        user: Credentials::user_from_query(Some(&query)),
                    };
                    match admission.admit(&attempt, &credentials).await {
                        Ok(chat_session) => {
                            // The session outlives this request: its own line is written when
                            // it ends (each of its requests also has one).
                            let record = self.state.access_log.begin_session(
                                session,
                                &self.state.trusted_proxies,
                                TransportKind::Polling,
                                role,
                            );
                            let mut chat_session = chat_session;
                            match polling.open(&mut chat_session).await {
                                Ok((response, connection)) => {
                                    run_session(
                                        polling.transport().clone(),
                                        connection,
                                        chat_session,
                                        move |end| record.end(metrics::disconnect_reason(end)),
                                    );
                                    response
                                }
                                Err(response) => response,
                            }
                        }
                        Err(refusal) => refusal.error_response().into(),
                    }
                }
                _ => ErrorResponse::method_not_allowed("use GET or POST").into(),
            };
        self.answer_polling(session, ctx, poll_answer(response, &cors))
            .await
    }
}

/// The HTTP answer to a long-polling request: the transport's response with CORS.
fn poll_answer(response: PollResponse, cors: &[(&'static str, String)]) -> Answer {
    let mut headers = response.headers;
    headers.extend(cors.iter().cloned());
    headers.push(("X-Content-Type-Options", "nosniff".into()));
    Answer {
        status: response.status,
        headers,
        body: Bytes::from(response.body),
    }
}
