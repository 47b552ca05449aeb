//! Socket.IO (Engine.IO v4) on the chat paths: a request carrying `EIO=`. The Engine.IO
//! handshake (a request without `sid`) passes the first admission steps — limits and Origin —
//! and takes the connection slot the Engine.IO session holds for its life; credentials come in
//! the Socket.IO CONNECT ([`crate::socketio`]), which opens the chat session. Later requests
//! (with `sid`) pass the Origin rules only. CORS is answered here.

use super::{is_websocket_upgrade, take_upgraded, websocket_key, write_through_pingora};
use crate::admission::Attempt;
use crate::edge::{ChatEdge, RequestCtx};
use crate::http_util::{cors_headers, query_param, read_body_limited, respond};
use crate::metrics;
use crate::parked::{self, Answer};
use crate::wire_error::{engine_refusal_reason, IntoErrorResponse, Refusal};
use bytes::Bytes;
use chat_core::model::Role;
use chat_core::transport::TransportKind;
use chat_transport_socketio::engineio::{EngineRequest, EngineResponse, Method as EngineMethod};
use pingora::proxy::Session;
use pingora::Result;

impl ChatEdge {
    /// Serves one Engine.IO request (polling, or a WebSocket upgrade).
    pub(crate) async fn serve_socketio(
        &self,
        session: &mut Session,
        role: Role,
        query: &str,
        ctx: &mut RequestCtx,
    ) -> Result<bool> {
        let admission = &self.state.admission;
        let method = session.req_header().method.clone();
        let opening = query_param(Some(query), "sid").is_none();
        let attempt = Attempt::of(
            session,
            &self.state.trusted_proxies,
            role,
            TransportKind::SocketIo,
        );
        // A preflight or a request of an existing Engine.IO session: Origin only. A handshake
        // also takes a connection slot.
        let slot = if opening && method != http::Method::OPTIONS {
            admission.admit_connection(&attempt).map(Some)
        } else {
            admission.admit_request(&attempt).map(|()| None)
        };
        let slot = match slot {
            Ok(slot) => slot,
            Err(refusal) => {
                return self
                    .write_engine_response(session, refusal.engine_response(), &[])
                    .await
            }
        };
        let cors = cors_headers(session, method == http::Method::OPTIONS);
        if method == http::Method::OPTIONS {
            let headers: Vec<(&str, &str)> = cors.iter().map(|(k, v)| (*k, v.as_str())).collect();
            return respond(session, 204, "text/plain", &headers, Bytes::new()).await;
        }
        let engine = self.state.socketio.engine(role);
        if is_websocket_upgrade(session) {
            let Some(key) = websocket_key(session) else {
                let refusal = Refusal::BadRequest("missing Sec-WebSocket-Key".into());
                refusal.record(TransportKind::SocketIo, role);
                return refusal.error_response().respond(session).await;
            };
            let accept = match engine.websocket_request(query) {
                Ok(accept) => {
                    accept.on_new_session(self.state.socketio.client_recorder(role, attempt.client))
                }
                Err(refusal) => {
                    let reason = engine_refusal_reason(refusal.status);
                    metrics::handshake_failed(TransportKind::SocketIo, role, reason);
                    return self.write_engine_response(session, refusal, &cors).await;
                }
            };
            let mut record = self.state.access_log.begin_session(
                session,
                &self.state.trusted_proxies,
                TransportKind::SocketIo,
                role,
            );
            let upgraded = record.count(take_upgraded(session, &key).await?);
            let settings = self.state.socketio.link_settings().clone();
            tokio::spawn(async move {
                // A WebSocket-only Engine.IO session lives as long as this task: it holds the
                // slot. (An upgrade of a polling session holds none: its handshake's does.)
                let _slot = slot;
                let _open = metrics::connection_opened(TransportKind::SocketIo, role);
                let mut link = crate::socketio::UpgradedLink::open(upgraded, &settings).await;
                accept.serve(&mut link).await;
                let reason = link.finish().await;
                record.end(reason);
            });
            return Ok(true);
        }
        let engine_method = match method {
            http::Method::GET => EngineMethod::Get,
            http::Method::POST => EngineMethod::Post,
            _ => EngineMethod::Other,
        };
        // One byte over maxPayload is enough for the engine to answer 413.
        let body = if engine_method == EngineMethod::Post {
            read_body_limited(session, engine.config().max_payload)
                .await?
                .0
        } else {
            Bytes::new()
        };
        let open = metrics::connection_opened(TransportKind::SocketIo, role);
        let request = EngineRequest {
            method: engine_method,
            query: query.to_owned(),
            body,
        };
        if !opening && engine_method == EngineMethod::Get && parked::can_park(session) {
            // A held poll of an Engine.IO session waits outside Pingora.
            let state = self.state.clone();
            let held = async move {
                let _open = open;
                let response = state.socketio.engine(role).handle_polling(request).await;
                engine_answer(response, &cors)
            };
            return self.park_answer(session, ctx, held).await;
        }
        let response = engine.handle_polling(request).await;
        if opening && response.status >= 400 {
            let reason = engine_refusal_reason(response.status);
            metrics::handshake_failed(TransportKind::SocketIo, role, reason);
        }
        if let Some(slot) = slot {
            // A polling handshake: the Engine.IO session it opened holds the slot.
            if let Some(sid) = handshake_sid(&response) {
                self.state
                    .socketio
                    .remember_client(role, &sid, attempt.client);
                self.state.socketio.hold_slot(role, sid, slot);
            }
        }
        drop(open);
        self.answer_polling(session, ctx, engine_answer(response, &cors))
            .await
    }

    /// Writes an answer of the engine (or a refusal before it) through Pingora.
    pub(crate) async fn write_engine_response(
        &self,
        session: &mut Session,
        response: EngineResponse,
        cors: &[(&'static str, String)],
    ) -> Result<bool> {
        write_through_pingora(session, engine_answer(response, cors)).await
    }
}

/// The HTTP answer to an Engine.IO request: the engine's response with CORS.
fn engine_answer(response: EngineResponse, cors: &[(&'static str, String)]) -> Answer {
    let mut headers = response.headers;
    headers.extend(cors.iter().cloned());
    headers.push(("Cache-Control", "no-store".into()));
    Answer {
        status: response.status,
        headers,
        body: response.body,
    }
}

/// The session id of a successful Engine.IO polling handshake (`0{"sid":...}`).
fn handshake_sid(response: &EngineResponse) -> Option<String> {
    if response.status != 200 {
        return None;
    }
    let text = std::str::from_utf8(&response.body).ok()?;
    let open: serde_json::Value = serde_json::from_str(text.strip_prefix('0')?).ok()?;
    open.get("sid")?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_sid_of_a_handshake() {
        let response = EngineResponse {
            status: 200,
            headers: vec![],
            body: Bytes::from_static(br#"0{"sid":"abc","upgrades":["websocket"]}"#),
        };
        assert_eq!(handshake_sid(&response).as_deref(), Some("abc"));
        let refused = EngineResponse {
            status: 400,
            ..response
        };
        assert_eq!(handshake_sid(&refused), None);
    }
}
