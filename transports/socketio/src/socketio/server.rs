//! The namespace layer: [`SocketIo`] is the engine's [`EngineHandler`]; each Engine.IO session
//! gets a connection ([`super::conn`]) the engine calls with its messages, and each joined
//! namespace a [`Socket`] for the application.

use super::conn::{Conn, Connector, DisconnectReason, Emitter, NsEntry, SocketEvent};
use super::packet::Packet;
use crate::engineio::{EngineHandler, EngineSender, SessionHandler};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chat_core::mailbox::{mailbox, MailboxReceiver};
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Settings of the Socket.IO layer.
#[derive(Debug, Clone)]
pub struct SocketIoConfig {
    /// The namespaces clients may connect to (`/` and others); any other gets
    /// `CONNECT_ERROR {"message":"Invalid namespace"}`.
    pub namespaces: Vec<String>,
    /// A client that has not connected to any namespace this long after the Engine.IO
    /// handshake is closed (by the engine's own timer: [`EngineSender::close_at`]).
    pub connect_timeout: Duration,
    /// The most binary attachments in one packet; more closes the session.
    pub max_attachments: usize,
    /// Events queued per socket before the connection stops reading.
    pub event_queue: usize,
    /// Server-to-client emits awaiting an ack, per connection.
    pub max_pending_acks: usize,
    /// Connected sockets not yet taken from [`Sockets`]; over it, CONNECT is refused.
    pub accept_queue: usize,
}

impl Default for SocketIoConfig {
    fn default() -> Self {
        Self {
            namespaces: vec!["/".into()],
            connect_timeout: Duration::from_secs(45),
            max_attachments: 10,
            event_queue: 64,
            max_pending_acks: 256,
            accept_queue: 1024,
        }
    }
}

/// What a client asks for when it connects to a namespace.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectRequest {
    /// The namespace.
    pub nsp: String,
    /// The auth payload of the CONNECT packet (`socket.auth` on the client).
    pub auth: Option<Value>,
    /// The Engine.IO session id.
    pub engine_sid: String,
}

/// Decides whether a CONNECT is accepted: `Ok(data)` (kept on the [`Socket`]) or
/// `Err(message)`, sent to the client as `CONNECT_ERROR {"message": message}`.
///
/// Any `Fn(ConnectRequest) -> impl Future<Output = Result<D, String>>` is one.
pub trait Authorizer<D>: Send + Sync + 'static {
    /// Checks one CONNECT.
    fn authorize(&self, req: ConnectRequest) -> impl Future<Output = Result<D, String>> + Send;
}

impl<D, F, Fut> Authorizer<D> for F
where
    F: Fn(ConnectRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<D, String>> + Send,
{
    fn authorize(&self, req: ConnectRequest) -> impl Future<Output = Result<D, String>> + Send {
        self(req)
    }
}

/// A client connected to a namespace.
#[derive(Debug)]
pub struct Socket<D> {
    /// What the authorizer returned.
    pub data: D,
    /// The CONNECT's auth payload.
    pub auth: Option<Value>,
    events: MailboxReceiver<Box<SocketEvent>>,
    emitter: Emitter,
}

impl<D> Socket<D> {
    /// The Socket.IO socket id (sent to the client in the CONNECT answer).
    pub fn id(&self) -> &str {
        &self.emitter.socket_id
    }

    /// The namespace.
    pub fn nsp(&self) -> &str {
        &self.emitter.nsp
    }

    /// The next event; `None` after [`SocketEvent::Disconnected`].
    pub async fn recv(&mut self) -> Option<SocketEvent> {
        self.events.recv().await.map(|event| *event)
    }

    /// A handle to emit to this socket.
    pub fn emitter(&self) -> Emitter {
        self.emitter.clone()
    }
}

/// Connected sockets, in connect order.
pub struct Sockets<D> {
    rx: mpsc::Receiver<Socket<D>>,
}

impl<D> Sockets<D> {
    /// The next connected socket; `None` once every [`SocketIo`] clone is dropped.
    pub async fn accept(&mut self) -> Option<Socket<D>> {
        self.rx.recv().await
    }
}

/// The Socket.IO server: the [`EngineHandler`] of an engine (give it to
/// [`Engine::with_handler`](crate::engineio::Engine::with_handler)). Cheap to clone.
pub struct SocketIo<D, A> {
    server: Arc<Server<D, A>>,
}

struct Server<D, A> {
    config: SocketIoConfig,
    authorizer: A,
    sockets: mpsc::Sender<Socket<D>>,
    pid_of: PidOf<D>,
}

/// Computes the `pid` of an accepted socket, sent in the CONNECT answer (connection-state
/// recovery: a client that reconnects with the same `pid` learns `socket.recovered`).
type PidOf<D> = Box<dyn Fn(&D) -> Option<String> + Send + Sync>;

impl<D, A> Clone for SocketIo<D, A> {
    fn clone(&self) -> Self {
        Self {
            server: self.server.clone(),
        }
    }
}

impl<D: Send + 'static, A: Authorizer<D>> SocketIo<D, A> {
    /// A server and the stream of sockets it connects.
    pub fn new(config: SocketIoConfig, authorizer: A) -> (Self, Sockets<D>) {
        Self::with_recovery(config, authorizer, |_: &D| None)
    }

    /// Like [`SocketIo::new`], and the CONNECT answer carries the `pid` that `pid_of` gives for
    /// the authorizer's data, for clients using connection-state recovery.
    pub fn with_recovery(
        config: SocketIoConfig,
        authorizer: A,
        pid_of: impl Fn(&D) -> Option<String> + Send + Sync + 'static,
    ) -> (Self, Sockets<D>) {
        let (tx, rx) = mpsc::channel(config.accept_queue.max(1));
        let server = Server {
            config,
            authorizer,
            sockets: tx,
            pid_of: Box::new(pid_of),
        };
        (
            Self {
                server: Arc::new(server),
            },
            Sockets { rx },
        )
    }
}

impl<D: Send + 'static, A: Authorizer<D>> EngineHandler for SocketIo<D, A> {
    /// A new Engine.IO session: its connection, and the connect timeout, which the engine keeps
    /// (closing the session unless a namespace is joined by then).
    fn on_open(&self, engine: EngineSender) -> Option<Arc<dyn SessionHandler>> {
        let config = &self.server.config;
        engine.close_at(Some(tokio::time::Instant::now() + config.connect_timeout));
        let max_attachments = config.max_attachments;
        Some(Conn::new(engine, self.server.clone(), max_attachments))
    }
}

impl<D: Send + 'static, A: Authorizer<D>> Connector for Server<D, A> {
    fn namespaces(&self) -> &[String] {
        &self.config.namespaces
    }

    fn max_pending_acks(&self) -> usize {
        self.config.max_pending_acks
    }

    fn connect(
        &self,
        conn: Arc<Conn>,
        p: Packet,
    ) -> Pin<Box<dyn Future<Output = bool> + Send + '_>> {
        // Boxed (by the signature): the authorizer's future (admission, store calls) takes
        // memory only while a CONNECT is handled.
        Box::pin(async move {
            let req = ConnectRequest {
                nsp: p.nsp.clone(),
                auth: p.data.clone(),
                engine_sid: conn.engine.sid().to_string(),
            };
            match self.authorizer.authorize(req).await {
                Err(message) => {
                    let _ = conn.send_packet(&Packet::connect_error(&p.nsp, &message));
                    false
                }
                Ok(data) => self.join(&conn, p, data),
            }
        })
    }
}

impl<D: Send + 'static, A> Server<D, A> {
    /// Joins an authorized CONNECT's namespace and hands its socket to the application (even
    /// when the session ended meanwhile: the socket then starts disconnected, so that the
    /// application sees the end of every socket it was given an authorization for).
    fn join(&self, conn: &Arc<Conn>, p: Packet, data: D) -> bool {
        let socket_id: Arc<str> = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 15]>()).into();
        let nsp: Arc<str> = p.nsp.as_str().into();
        let (tx, rx) = mailbox(self.config.event_queue);
        let emitter = Emitter {
            conn: conn.clone(),
            nsp: nsp.clone(),
            socket_id: socket_id.clone(),
        };
        let pid = (self.pid_of)(&data);
        let socket = Socket {
            data,
            auth: p.data,
            events: rx,
            emitter,
        };
        let Ok(permit) = self.sockets.try_reserve() else {
            let _ = conn.send_packet(&Packet::connect_error(&p.nsp, "Server busy"));
            return false;
        };
        let entry = NsEntry {
            nsp,
            socket_id: socket_id.clone(),
            events: tx,
        };
        if let Err(entry) = conn.join(entry) {
            let reason = DisconnectReason::TransportClosed(conn.engine.close_reason());
            let _ = entry
                .events
                .try_send(Box::new(SocketEvent::Disconnected(reason)));
            permit.send(socket);
            return false;
        }
        // The CONNECT answer goes out before the application can emit on the socket.
        let mut answer_data = serde_json::json!({ "sid": &*socket_id });
        if let Some(pid) = pid {
            answer_data["pid"] = Value::String(pid);
        }
        let answer = Packet::connect(&p.nsp, Some(answer_data));
        if conn.send_packet(&answer).is_err() {
            // The session is closing: the socket is told so (unless its end did already).
            let reason = DisconnectReason::TransportClosed(conn.engine.close_reason());
            conn.leave(&p.nsp, reason);
            permit.send(socket);
            return false;
        }
        permit.send(socket);
        true
    }
}
