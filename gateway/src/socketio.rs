//! Socket.IO on the chat paths: a request to `/ws-visitor/` or `/ws-admin/` carrying `EIO=` is
//! served by one Engine.IO engine per role, whose sessions run the chat over Socket.IO.
//! Credentials travel in the CONNECT auth payload (`{token, site}`) and pass the same
//! admission as the raw transport ([`crate::admission::Admission::connect`]); limits, Origin
//! rules and CORS are applied at the HTTP layer (`endpoints/socketio.rs`).

use crate::admission::{Admission, Credentials};
use crate::limits::Slot;
use crate::run_session::run_session;
use chat_core::model::Role;
use chat_core::transport::TransportKind;
use chat_transport_socketio::chat::{
    agent_pid, principal_pid, recovery_request, ChatConnection, SocketIoTransport,
};
use chat_transport_socketio::engineio::{Engine, EngineConfig, WsFrame, WsLink};
use chat_transport_socketio::offset::{OffsetTracks, TrackLimits};
use chat_transport_socketio::socketio::{ConnectRequest, SocketIo, SocketIoConfig};
use chat_transport_upgraded::{finish_close, Upgraded, UpgradedStream};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::WebSocketStream;

/// How often connection slots of ended Engine.IO polling sessions are given back.
const SLOT_SWEEP_EVERY: Duration = Duration::from_secs(5);

/// The two engines, one per role.
pub struct SocketIoEndpoints {
    visitor: Engine,
    admin: Engine,
    /// Connection slots of Engine.IO sessions opened by a polling handshake, by role and sid:
    /// held while the engine has the session.
    slots: Arc<Mutex<HashMap<(Role, String), Slot>>>,
    /// The client address admitted for each Engine.IO session, by role and sid, for the chat
    /// session its CONNECT opens (visitor context); forgotten with the session.
    clients: Clients,
    /// How an Engine.IO session's WebSocket is read and written.
    link: LinkSettings,
}

/// How an Engine.IO session's WebSocket is read and written ([`UpgradedLink`]): the same
/// frame bound, write buffer and write timeout as the raw WebSocket's, built by the
/// configuration (`Config::socketio_link_settings`).
#[derive(Debug, Clone)]
pub struct LinkSettings {
    /// Frame and message bound, read and write buffers.
    pub websocket: WebSocketConfig,
    /// A write that cannot complete within this time ends the connection.
    pub write_timeout: Duration,
}

type Clients = Arc<Mutex<HashMap<(Role, String), IpAddr>>>;

impl SocketIoEndpoints {
    /// Starts both engines; their sessions run as tasks on the current runtime.
    pub fn start(admission: Arc<Admission>, config: EngineConfig, link: LinkSettings) -> Self {
        // Both roles share one table of recovery offset tracks (`docs/protocol.md`).
        let tracks = OffsetTracks::new(TrackLimits::default());
        let clients = Clients::default();
        let endpoints = Self {
            visitor: start_engine(
                Role::Visitor,
                admission.clone(),
                config.clone(),
                tracks.clone(),
                clients.clone(),
            ),
            admin: start_engine(Role::Agent, admission, config, tracks, clients.clone()),
            slots: Arc::default(),
            clients,
            link,
        };
        let slots = Arc::downgrade(&endpoints.slots);
        let clients = Arc::downgrade(&endpoints.clients);
        let (visitor, admin) = (endpoints.visitor.clone(), endpoints.admin.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(SLOT_SWEEP_EVERY).await;
                let Some(slots) = slots.upgrade() else { return };
                let live = |(role, sid): &(Role, String)| match role {
                    Role::Visitor => visitor.has_session(sid),
                    Role::Agent => admin.has_session(sid),
                };
                slots
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .retain(|key, _| live(key));
                if let Some(clients) = clients.upgrade() {
                    clients
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .retain(|key, _| live(key));
                }
            }
        });
        endpoints
    }

    /// How an Engine.IO session's WebSocket is read and written.
    pub fn link_settings(&self) -> &LinkSettings {
        &self.link
    }

    /// The engine serving `role`.
    pub fn engine(&self, role: Role) -> &Engine {
        match role {
            Role::Visitor => &self.visitor,
            Role::Agent => &self.admin,
        }
    }

    /// Remembers the client address of the Engine.IO session `sid` of `role` until the session
    /// ends, for the chat session its CONNECT opens.
    pub fn remember_client(&self, role: Role, sid: &str, client: Option<IpAddr>) {
        remember(&self.clients, role, sid, client);
    }

    /// What [`SocketIoEndpoints::remember_client`] does, for a callback that outlives `&self`.
    pub fn client_recorder(&self, role: Role, client: Option<IpAddr>) -> impl FnOnce(&str) {
        let clients = self.clients.clone();
        move |sid| remember(&clients, role, sid, client)
    }

    /// Keeps `slot` for as long as the engine of `role` has the session `sid`.
    pub fn hold_slot(&self, role: Role, sid: String, slot: Slot) {
        self.slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((role, sid), slot);
    }
}

fn remember(clients: &Clients, role: Role, sid: &str, client: Option<IpAddr>) {
    if let Some(ip) = client {
        clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((role, sid.to_owned()), ip);
    }
}

fn start_engine(
    role: Role,
    admission: Arc<Admission>,
    config: EngineConfig,
    tracks: Arc<OffsetTracks>,
    clients: Clients,
) -> Engine {
    let authorize = move |req: ConnectRequest| {
        let admission = admission.clone();
        let tracks = tracks.clone();
        let client = clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(role, req.engine_sid.clone()))
            .copied();
        async move { authorize(role, &admission, req, tracks, client).await }
    };
    let (io, mut sockets) = SocketIo::with_recovery(
        SocketIoConfig::default(),
        authorize,
        |connection: &ChatConnection| Some(connection.pid.clone()),
    );
    // Socket.IO decodes each session's packets in the task that carries the session (the
    // WebSocket's, or a polling request's): no task per session besides the chat session's own.
    let engine = Engine::with_handler(config, Arc::new(io));
    tokio::spawn(async move {
        while let Some(socket) = sockets.accept().await {
            let mut socket = socket;
            if let Some(session) = SocketIoTransport::take_session(&mut socket) {
                run_session(SocketIoTransport, socket, session, |_| {});
            }
        }
    });
    engine
}

/// A Socket.IO CONNECT: credentials, tenant scope and the session, through the admission path;
/// a refusal becomes the CONNECT_ERROR message.
async fn authorize(
    role: Role,
    admission: &Admission,
    req: ConnectRequest,
    tracks: Arc<OffsetTracks>,
    client: Option<IpAddr>,
) -> Result<ChatConnection, String> {
    let fields = req.auth.as_ref().and_then(Value::as_object);
    let field = |name: &str| fields.and_then(|f| f.get(name)).and_then(Value::as_str);
    let credentials = Credentials {
        token: match role {
            Role::Agent => field("token"),
            // A recovering stock client presents its pid, which for visitors is the visitor
            // token, even when the page never stored the token itself.
            Role::Visitor => field("token").or_else(|| field("pid").map(principal_pid)),
        }
        .map(str::to_owned),
        site: field("site").map(str::to_owned),
        user: Credentials::user_from_json(fields.and_then(|f| f.get("user"))),
    };
    let (session, admitted) = admission
        .connect(role, TransportKind::SocketIo, &credentials, client)
        .await
        .map_err(|refusal| refusal.socketio_message())?;
    let principal_pid = match admitted.visitor_token {
        Some(token) => token,
        None => agent_pid(&admitted.principal),
    };
    let recovery = recovery_request(req.auth.as_ref(), &principal_pid, &tracks);
    Ok(ChatConnection {
        session: Some(session),
        pid: recovery.answer_pid(&principal_pid),
        principal_pid,
        recovery,
        tracks,
    })
}
/// An upgraded connection as the engine's [`WsLink`]: the Engine.IO session reads and writes
/// it from its own task (no pump task, no channels), and the link remembers which side ended
/// it, for the access log.
pub struct UpgradedLink {
    ws: WebSocketStream<UpgradedStream>,
    write_timeout: Duration,
    ended: Option<&'static str>,
}

impl UpgradedLink {
    /// The server side of the WebSocket on `upgraded`.
    pub async fn open(upgraded: Upgraded, settings: &LinkSettings) -> Self {
        Self {
            ws: upgraded.into_websocket(settings.websocket).await,
            write_timeout: settings.write_timeout,
            ended: None,
        }
    }

    /// Completes the closing handshake and says which side ended the connection:
    /// `client_closed` (a close frame or the end of the stream), `connection_error` (a read
    /// error or a write that failed or timed out), or `server_closed` (the Engine.IO session
    /// ended: ping timeout, shutdown, a protocol violation; `chat_disconnects_total` has the
    /// chat session's own reason).
    pub async fn finish(mut self) -> &'static str {
        finish_close(&mut self.ws).await;
        self.ended.unwrap_or("server_closed")
    }
}

impl WsLink for UpgradedLink {
    async fn recv(&mut self) -> Option<WsFrame> {
        if self.ended.is_some() {
            return None;
        }
        loop {
            // Cancel-safe: `next` keeps a partly read frame in the stream.
            let (frame, ended) = match self.ws.next().await {
                Some(Ok(WsMessage::Text(text))) => {
                    (Some(WsFrame::Text(text.as_str().to_owned())), None)
                }
                Some(Ok(WsMessage::Binary(bytes))) => (Some(WsFrame::Binary(bytes)), None),
                Some(Ok(WsMessage::Close(_))) | None => (None, Some("client_closed")),
                Some(Err(_)) => (None, Some("connection_error")),
                Some(Ok(_)) => continue,
            };
            self.ended = ended;
            return frame;
        }
    }

    async fn send(&mut self, frame: WsFrame) -> bool {
        self.send_all(vec![frame]).await
    }

    /// Every frame into tungstenite's write buffer, then one flush: a burst of events in one
    /// system call (docs/benchmarks.md, "Events written in batches").
    async fn send_all(&mut self, frames: Vec<WsFrame>) -> bool {
        if self.ended.is_some() {
            return false;
        }
        let ws = &mut self.ws;
        let batch = async move {
            for frame in frames {
                let message = match frame {
                    WsFrame::Text(text) => WsMessage::Text(text.into()),
                    WsFrame::Binary(bytes) => WsMessage::Binary(bytes),
                };
                ws.feed(message).await?;
            }
            ws.flush().await
        };
        let sent = tokio::time::timeout(self.write_timeout, batch).await;
        if !matches!(sent, Ok(Ok(()))) {
            self.ended = Some("connection_error");
        }
        self.ended.is_none()
    }
}
