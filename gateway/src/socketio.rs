//! Socket.IO on the chat paths: a request to `/ws-visitor/` or `/ws-admin/` carrying `EIO=` is
//! served by one Engine.IO engine per role, whose sessions run the chat over Socket.IO.
//! Authentication travels in the CONNECT auth payload (`{token, site}`) and follows the same
//! rules as the raw transport; Origin rules and CORS are applied here, at the HTTP layer.

use chat_core::auth::Authenticator;
use chat_core::metrics::{self, HandshakeFailure, HandshakeFailure::Unauthorized};
use chat_core::model::{Principal, Role};
use chat_core::service::ChatService;
use chat_core::transport::TransportKind;
use chat_transport_socketio::chat::{agent_pid, recovery_request, serve_chat, ChatConnection};
use chat_transport_socketio::engineio::{Engine, EngineConfig, WsConnection, WsFrame};
use chat_transport_socketio::socketio::{ConnectRequest, SocketIo, SocketIoConfig};
use chat_transport_websocket::{finish_close, Upgraded, WebSocketSettings};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// The two engines, one per role.
pub struct SocketIoEndpoints {
    visitor: Engine,
    admin: Engine,
}

impl SocketIoEndpoints {
    /// Starts both engines; their sessions run as tasks on the current runtime.
    pub fn start(chat: ChatService, auth: Authenticator, config: EngineConfig) -> Self {
        Self {
            visitor: start_engine(Role::Visitor, chat.clone(), auth.clone(), config.clone()),
            admin: start_engine(Role::Agent, chat, auth, config),
        }
    }

    /// The engine serving `role`.
    pub fn engine(&self, role: Role) -> &Engine {
        match role {
            Role::Visitor => &self.visitor,
            Role::Agent => &self.admin,
        }
    }
}

fn start_engine(
    role: Role,
    chat: ChatService,
    auth: Authenticator,
    config: EngineConfig,
) -> Engine {
    let (engine, mut incoming) = Engine::new(config);
    let authorize = move |req: ConnectRequest| {
        let chat = chat.clone();
        let auth = auth.clone();
        async move { authorize(role, &chat, &auth, req).await }
    };
    let (io, mut sockets) = SocketIo::with_recovery(
        SocketIoConfig::default(),
        authorize,
        |connection: &ChatConnection| Some(connection.pid.clone()),
    );
    tokio::spawn(async move {
        while let Some(engine_socket) = incoming.accept().await {
            let io = io.clone();
            tokio::spawn(async move { io.serve(engine_socket).await });
        }
    });
    tokio::spawn(async move {
        while let Some(socket) = sockets.accept().await {
            tokio::spawn(async move {
                let end = serve_chat(socket).await;
                chat_core::metrics::session_ended(TransportKind::SocketIo, role, &end);
                tracing::debug!(?end, "socket.io chat session ended");
            });
        }
    });
    engine
}

async fn authorize(
    role: Role,
    chat: &ChatService,
    auth: &Authenticator,
    req: ConnectRequest,
) -> Result<ChatConnection, String> {
    let fields = req.auth.as_ref().and_then(Value::as_object);
    let field = |name: &str| fields.and_then(|f| f.get(name)).and_then(Value::as_str);
    let mut expires = None;
    let (principal, visitor_token, pid): (Principal, Option<String>, String) = match role {
        Role::Agent => {
            let (agent, exp) = auth
                .agent_tokens()
                .verify_with_expiry(field("token").unwrap_or(""))
                .map_err(|e| {
                    metrics::handshake_failed(TransportKind::SocketIo, role, Unauthorized);
                    Authenticator::describe_agent_refusal(&e)
                })?;
            expires = Some(exp);
            let principal = Principal::Agent(agent);
            let pid = agent_pid(&principal);
            (principal, None, pid)
        }
        Role::Visitor => {
            // A recovering stock client presents its pid, which for visitors is the visitor
            // token, even when the page never stored the token itself.
            let token = field("token").or_else(|| field("pid"));
            let (principal, token) = auth.visitor(token, field("site")).map_err(|e| {
                metrics::handshake_failed(TransportKind::SocketIo, role, Unauthorized);
                format!("visitor token rejected: {e}; connect without a token to start afresh")
            })?;
            (principal, Some(token.clone()), token)
        }
    };
    let recover_from = recovery_request(req.auth.as_ref(), &pid);
    let mut session = chat
        .open_session(principal, visitor_token, TransportKind::SocketIo)
        .await
        .map_err(|e| {
            let reason = match e {
                chat_core::ChatError::Store(_) => HandshakeFailure::Unavailable,
                _ => HandshakeFailure::Internal,
            };
            metrics::handshake_failed(TransportKind::SocketIo, role, reason);
            e.client_message()
        })?;
    if let Some(exp) = expires {
        session.expire_at(exp);
    }
    Ok(ChatConnection {
        session: Some(session),
        pid,
        recover_from,
    })
}

/// Carries an Engine.IO WebSocket over an upgraded connection until either side ends it.
pub async fn pump_websocket(
    upgraded: Upgraded,
    settings: &WebSocketSettings,
    conn_for_engine: impl FnOnce(WsConnection),
) {
    let mut ws = upgraded.into_websocket(settings.tungstenite_config()).await;
    let (to_engine, incoming) = mpsc::channel(64);
    let (outgoing, mut from_engine) = mpsc::channel(64);
    conn_for_engine(WsConnection { incoming, outgoing });
    loop {
        tokio::select! {
            frame = ws.next() => {
                let frame = match frame {
                    Some(Ok(WsMessage::Text(text))) => WsFrame::Text(text.as_str().to_owned()),
                    Some(Ok(WsMessage::Binary(bytes))) => WsFrame::Binary(bytes),
                    Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => continue,
                };
                if to_engine.send(frame).await.is_err() {
                    break;
                }
            }
            frame = from_engine.recv() => {
                let message = match frame {
                    Some(WsFrame::Text(text)) => WsMessage::Text(text.into()),
                    Some(WsFrame::Binary(bytes)) => WsMessage::Binary(bytes),
                    None => break,
                };
                let sent = tokio::time::timeout(settings.write_timeout, ws.send(message)).await;
                if !matches!(sent, Ok(Ok(()))) {
                    break;
                }
            }
        }
    }
    drop(to_engine);
    finish_close(&mut ws).await;
}
