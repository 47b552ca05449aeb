//! `/ws-visitor/` and `/ws-admin/` over raw WebSocket: the handshake is checked, the session is
//! admitted ([`crate::admission`]) before the `101`, then the connection goes to the transport.
//! A request carrying `EIO=` is Socket.IO's ([`super::socketio`]).

use super::{is_websocket_upgrade, take_upgraded, websocket_key};
use crate::admission::{Attempt, Credentials};
use crate::edge::ChatEdge;
use crate::http_util::{bearer, header, query_param};
use crate::metrics;
use crate::run_session::run_session;
use crate::wire_error::{IntoErrorResponse, Refusal};
use chat_core::model::Role;
use chat_core::transport::{Transport, TransportKind};
use pingora::protocols::http::ServerSession as HttpSession;
use pingora::proxy::Session;
use pingora::Result;

impl ChatEdge {
    /// Admits, upgrades to WebSocket, and hands the connection to the transport.
    pub(crate) async fn accept_socket(
        &self,
        session: &mut Session,
        role: Role,
        ctx: &mut crate::edge::RequestCtx,
    ) -> Result<bool> {
        let query = session.req_header().uri.query().map(str::to_owned);
        let query = query.as_deref();
        if query_param(query, "EIO").is_some() {
            let query = query.unwrap_or("").to_owned();
            return self.serve_socketio(session, role, &query, ctx).await;
        }
        let transport = self.state.websocket.kind();
        let (true, Some(key)) = (is_websocket_upgrade(session), websocket_key(session)) else {
            let refusal = Refusal::BadRequest(
                "this endpoint speaks WebSocket: send a GET with Upgrade: websocket".into(),
            );
            refusal.record(transport, role);
            return refusal.error_response().respond(session).await;
        };
        if header(session, "sec-websocket-version") != Some("13") {
            let refusal = Refusal::WebSocketVersion;
            refusal.record(transport, role);
            return refusal.error_response().respond(session).await;
        }
        if !matches!(session.as_downstream(), HttpSession::H1(_)) {
            let refusal = Refusal::BadRequest("WebSocket needs HTTP/1.1".into());
            refusal.record(transport, role);
            return refusal.error_response().respond(session).await;
        }
        let credentials = Credentials {
            token: match role {
                Role::Agent => query_param(query, "token")
                    .or_else(|| bearer(header(session, "authorization")).map(str::to_owned)),
                Role::Visitor => query_param(query, "token"),
            },
            site: query_param(query, "site"),
            user: Credentials::user_from_query(query),
        };
        let attempt = Attempt::of(session, &self.state.trusted_proxies, role, transport);
        let chat_session = match self.state.admission.admit(&attempt, &credentials).await {
            Ok(chat_session) => chat_session,
            Err(refusal) => return refusal.error_response().respond(session).await,
        };

        let mut record = self.state.access_log.begin_session(
            session,
            &self.state.trusted_proxies,
            TransportKind::WebSocket,
            role,
        );
        let upgraded = record.count(take_upgraded(session, &key).await?);
        tracing::debug!(
            session = chat_session.id(),
            role = role.as_str(),
            "websocket session opened"
        );
        let open = metrics::connection_opened(TransportKind::WebSocket, role);
        run_session(
            self.state.websocket.clone(),
            upgraded,
            chat_session,
            move |end| {
                drop(open);
                record.end(metrics::disconnect_reason(end));
            },
        );
        Ok(true)
    }
}
