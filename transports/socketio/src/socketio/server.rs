//! The namespace layer: one [`SocketIo::serve`] task per Engine.IO session.

use super::packet::{Decoder, Packet, PacketType};
use crate::engineio::{CloseReason, EngineMessage, EngineSender, EngineSocket, SendError};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use chat_core::mailbox::{mailbox, MailboxReceiver, MailboxSender};
use serde_json::Value;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Settings of the Socket.IO layer.
#[derive(Debug, Clone)]
pub struct SocketIoConfig {
    /// The namespaces clients may connect to (`/` and others); any other gets
    /// `CONNECT_ERROR {"message":"Invalid namespace"}`.
    pub namespaces: Vec<String>,
    /// A client that has not connected to any namespace this long after the Engine.IO
    /// handshake is closed.
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

/// Why a socket left its namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The client sent DISCONNECT.
    ClientDisconnect,
    /// The server called [`Emitter::disconnect`].
    ServerDisconnect,
    /// The Engine.IO session ended.
    TransportClosed(Option<CloseReason>),
    /// The client broke the Socket.IO protocol; the session was closed.
    ProtocolViolation(String),
}

/// Arguments of an ack, with their attachments.
#[derive(Debug, Clone, PartialEq)]
pub struct AckPayload {
    /// The JSON arguments (with placeholders where attachments go).
    pub args: Vec<Value>,
    /// The binary attachments, by placeholder number.
    pub attachments: Vec<Bytes>,
}

/// Why an emit failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmitError {
    /// The Engine.IO session could not take the packet.
    #[error(transparent)]
    Engine(#[from] SendError),
    /// The socket has left its namespace.
    #[error("socket disconnected")]
    Disconnected,
    /// Too many emits are waiting for acks.
    #[error("too many pending acks")]
    TooManyPendingAcks,
}

/// Something that happened on a socket.
#[derive(Debug)]
pub enum SocketEvent {
    /// The client emitted an event.
    Event {
        /// The event name.
        name: String,
        /// The arguments (with placeholders where attachments go).
        args: Vec<Value>,
        /// The binary attachments, by placeholder number.
        attachments: Vec<Bytes>,
        /// Present when the client wants an answer.
        ack: Option<AckResponder>,
    },
    /// The socket left its namespace; no more events follow.
    Disconnected(DisconnectReason),
}

/// Answers one client event that asked for an ack.
#[derive(Debug)]
pub struct AckResponder {
    emitter: Emitter,
    id: u64,
}

impl AckResponder {
    /// The ack id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Sends the ack (`ACK`, or `BINARY_ACK` with attachments).
    pub fn send(self, args: Vec<Value>, attachments: Vec<Bytes>) -> Result<(), EmitError> {
        self.emitter
            .send_packet(&Packet::ack(&self.emitter.nsp, self.id, args, attachments))
    }
}

struct NsEntry {
    socket_id: String,
    /// The socket's events: a [`chat_core::mailbox`], which costs nothing while empty (a tokio
    /// channel allocated ≈ 770 bytes, and with 32 inline `SocketEvent`s 4.4 KB, per idle socket:
    /// issue-12 heap profile); boxed, so that a queue that once held a few keeps a few pointers.
    events: MailboxSender<Box<SocketEvent>>,
}

struct Conn {
    engine: EngineSender,
    max_pending_acks: usize,
    next_ack: AtomicU64,
    acks: Mutex<HashMap<u64, oneshot::Sender<AckPayload>>>,
    nsps: Mutex<HashMap<String, NsEntry>>,
}

impl Conn {
    fn nsps(&self) -> MutexGuard<'_, HashMap<String, NsEntry>> {
        self.nsps.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn acks(&self) -> MutexGuard<'_, HashMap<u64, oneshot::Sender<AckPayload>>> {
        self.acks.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn send_packet(&self, p: &Packet) -> Result<(), SendError> {
        let (text, atts) = p.encode();
        self.engine.send(EngineMessage::Text(text))?;
        for a in atts {
            self.engine.send(EngineMessage::Binary(a))?;
        }
        Ok(())
    }

    /// Removes a namespace entry and tells its socket why.
    fn leave(&self, nsp: &str, reason: DisconnectReason) -> bool {
        let entry = self.nsps().remove(nsp);
        match entry {
            Some(e) => {
                let _ = e
                    .events
                    .try_send(Box::new(SocketEvent::Disconnected(reason)));
                true
            }
            None => false,
        }
    }
}

/// Sends to one socket (one namespace of one connection). Cheap to clone.
#[derive(Clone)]
pub struct Emitter {
    conn: Arc<Conn>,
    nsp: String,
    socket_id: String,
}

impl std::fmt::Debug for Emitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emitter")
            .field("nsp", &self.nsp)
            .field("socket_id", &self.socket_id)
            .finish()
    }
}

impl Emitter {
    fn connected(&self) -> bool {
        self.conn
            .nsps()
            .get(&self.nsp)
            .is_some_and(|e| e.socket_id == self.socket_id)
    }

    fn send_packet(&self, p: &Packet) -> Result<(), EmitError> {
        if !self.connected() {
            return Err(EmitError::Disconnected);
        }
        Ok(self.conn.send_packet(p)?)
    }

    /// Emits an event (BINARY_EVENT when `attachments` is not empty; put
    /// [`placeholder`](super::packet::placeholder)s in `args` for them).
    pub fn emit(
        &self,
        event: &str,
        args: Vec<Value>,
        attachments: Vec<Bytes>,
    ) -> Result<(), EmitError> {
        self.send_packet(&Packet::event(&self.nsp, event, args, None, attachments))
    }

    /// Emits an event and returns where its ack will arrive (the receiver fails if the
    /// connection ends first).
    pub fn emit_with_ack(
        &self,
        event: &str,
        args: Vec<Value>,
        attachments: Vec<Bytes>,
    ) -> Result<oneshot::Receiver<AckPayload>, EmitError> {
        let id = self.conn.next_ack.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut acks = self.conn.acks();
            acks.retain(|_, tx| !tx.is_closed());
            if acks.len() >= self.conn.max_pending_acks {
                return Err(EmitError::TooManyPendingAcks);
            }
            acks.insert(id, tx);
        }
        let sent = self.send_packet(&Packet::event(
            &self.nsp,
            event,
            args,
            Some(id),
            attachments,
        ));
        if let Err(e) = sent {
            self.conn.acks().remove(&id);
            return Err(e);
        }
        Ok(rx)
    }

    /// Disconnects the socket from its namespace (sends DISCONNECT; the Engine.IO session
    /// stays open for other namespaces).
    pub fn disconnect(&self) -> Result<(), EmitError> {
        if !self.connected() {
            return Err(EmitError::Disconnected);
        }
        self.conn
            .leave(&self.nsp, DisconnectReason::ServerDisconnect);
        Ok(self.conn.send_packet(&Packet::disconnect(&self.nsp))?)
    }

    /// The namespace.
    pub fn nsp(&self) -> &str {
        &self.nsp
    }

    /// The Socket.IO socket id.
    pub fn id(&self) -> &str {
        &self.socket_id
    }

    /// The underlying Engine.IO session.
    pub fn engine(&self) -> &EngineSender {
        &self.conn.engine
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

/// The Socket.IO server: serves Engine.IO sessions. Cheap to clone.
pub struct SocketIo<D, A> {
    config: Arc<SocketIoConfig>,
    authorizer: Arc<A>,
    sockets: mpsc::Sender<Socket<D>>,
    pid_of: PidOf<D>,
}

/// Computes the `pid` of an accepted socket, sent in the CONNECT answer (connection-state
/// recovery: a client that reconnects with the same `pid` learns `socket.recovered`).
type PidOf<D> = Arc<dyn Fn(&D) -> Option<String> + Send + Sync>;

impl<D, A> Clone for SocketIo<D, A> {
    fn clone(&self) -> Self {
        Self {
            config: self.config.clone(),
            authorizer: self.authorizer.clone(),
            sockets: self.sockets.clone(),
            pid_of: self.pid_of.clone(),
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
        (
            Self {
                config: Arc::new(config),
                authorizer: Arc::new(authorizer),
                sockets: tx,
                pid_of: Arc::new(pid_of),
            },
            Sockets { rx },
        )
    }

    /// Serves one Engine.IO session until it ends (spawn one task per session).
    /// Malformed packets close the session.
    pub async fn serve(&self, mut engine: EngineSocket) {
        let conn = Arc::new(Conn {
            engine: engine.sender(),
            max_pending_acks: self.config.max_pending_acks,
            next_ack: AtomicU64::new(0),
            acks: Mutex::new(HashMap::new()),
            nsps: Mutex::new(HashMap::new()),
        });
        let mut decoder = Decoder::new(self.config.max_attachments);
        let deadline = tokio::time::Instant::now() + self.config.connect_timeout;
        let mut ever_connected = false;
        let end = loop {
            let waiting = !ever_connected;
            let msg = tokio::select! {
                m = engine.recv() => m,
                _ = tokio::time::sleep_until(deadline), if waiting => {
                    tracing::debug!(sid = engine.sid(), "socket.io connect timeout");
                    engine.close();
                    break DisconnectReason::TransportClosed(engine.close_reason());
                }
            };
            let decoded = match msg {
                None => break DisconnectReason::TransportClosed(engine.close_reason()),
                Some(EngineMessage::Text(t)) => decoder.decode_text(&t),
                Some(EngineMessage::Binary(b)) => decoder.decode_binary(b),
            };
            let packet = match decoded {
                Ok(Some(p)) => p,
                Ok(None) => continue,
                Err(e) => {
                    tracing::debug!(sid = engine.sid(), error = %e, "malformed socket.io packet");
                    engine.close();
                    break DisconnectReason::ProtocolViolation(e.to_string());
                }
            };
            match self.on_packet(&conn, &engine, packet).await {
                Ok(connected) => ever_connected |= connected,
                Err(reason) => {
                    engine.close();
                    break reason;
                }
            }
        };
        let nsps: Vec<String> = conn.nsps().keys().cloned().collect();
        for nsp in nsps {
            conn.leave(&nsp, end.clone());
        }
        // Emits still waiting for an ack fail now rather than never.
        conn.acks().clear();
    }

    /// Handles one packet; `Ok(true)` when a namespace was joined.
    async fn on_packet(
        &self,
        conn: &Arc<Conn>,
        engine: &EngineSocket,
        p: Packet,
    ) -> Result<bool, DisconnectReason> {
        let violation = |m: &str| DisconnectReason::ProtocolViolation(m.to_string());
        match p.kind {
            PacketType::Connect => {
                if !self.config.namespaces.contains(&p.nsp) {
                    let _ = conn.send_packet(&Packet::connect_error(&p.nsp, "Invalid namespace"));
                    return Ok(false);
                }
                if conn.nsps().contains_key(&p.nsp) {
                    return Err(violation("CONNECT to a namespace already joined"));
                }
                let req = ConnectRequest {
                    nsp: p.nsp.clone(),
                    auth: p.data.clone(),
                    engine_sid: engine.sid().to_string(),
                };
                // Boxed: the authorizer's future (admission, store calls) would otherwise be
                // part of every idle connection's `serve` future.
                match Box::pin(self.authorizer.authorize(req)).await {
                    Err(message) => {
                        let _ = conn.send_packet(&Packet::connect_error(&p.nsp, &message));
                        Ok(false)
                    }
                    Ok(data) => Ok(self.join(conn, p, data)),
                }
            }
            PacketType::Disconnect => {
                conn.leave(&p.nsp, DisconnectReason::ClientDisconnect);
                Ok(false)
            }
            PacketType::Event | PacketType::BinaryEvent => {
                let events = conn.nsps().get(&p.nsp).map(|e| e.events.clone());
                let Some(events) = events else {
                    // Not connected to that namespace: ignored, as the reference server does.
                    return Ok(false);
                };
                let Some(Value::Array(mut arr)) = p.data else {
                    return Err(violation("event without arguments"));
                };
                if arr.is_empty() {
                    return Err(violation("event without a name"));
                }
                let name = match arr.remove(0) {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                let ack = p.id.map(|id| AckResponder {
                    emitter: Emitter {
                        conn: conn.clone(),
                        nsp: p.nsp.clone(),
                        socket_id: conn
                            .nsps()
                            .get(&p.nsp)
                            .map(|e| e.socket_id.clone())
                            .unwrap_or_default(),
                    },
                    id,
                });
                let _ = events
                    .send(Box::new(SocketEvent::Event {
                        name,
                        args: arr,
                        attachments: p.attachments,
                        ack,
                    }))
                    .await;
                Ok(false)
            }
            PacketType::Ack | PacketType::BinaryAck => {
                let waiting = p.id.and_then(|id| conn.acks().remove(&id));
                if let (Some(tx), Some(Value::Array(args))) = (waiting, p.data) {
                    let _ = tx.send(AckPayload {
                        args,
                        attachments: p.attachments,
                    });
                }
                Ok(false)
            }
            PacketType::ConnectError => Err(violation("CONNECT_ERROR from a client")),
        }
    }

    fn join(&self, conn: &Arc<Conn>, p: Packet, data: D) -> bool {
        let socket_id = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 15]>());
        let (tx, rx) = mailbox(self.config.event_queue);
        let emitter = Emitter {
            conn: conn.clone(),
            nsp: p.nsp.clone(),
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
        conn.nsps().insert(
            p.nsp.clone(),
            NsEntry {
                socket_id: socket_id.clone(),
                events: tx,
            },
        );
        // The CONNECT answer goes out before the application can emit on the socket.
        let mut answer_data = serde_json::json!({ "sid": socket_id });
        if let Some(pid) = pid {
            answer_data["pid"] = Value::String(pid);
        }
        let answer = Packet::connect(&p.nsp, Some(answer_data));
        if conn.send_packet(&answer).is_err() {
            conn.nsps().remove(&p.nsp);
            return false;
        }
        permit.send(socket);
        true
    }
}
