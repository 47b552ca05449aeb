//! One Engine.IO session's Socket.IO side, [`Conn`]: the engine's
//! [`SessionHandler`](crate::engineio::SessionHandler) for the session, called with each message
//! in the task that carries the session (the WebSocket's, or a polling POST's). It decodes
//! packets, answers CONNECTs through the server's authorizer and hands events to the sockets;
//! it has no task and no queue of its own, which is what keeps an idle Socket.IO connection over
//! WebSocket at one task (docs/benchmarks.md, "Idle memory per connection", third pass).
//!
//! What a socket's owner holds of its connection lives here too ([`Emitter`], [`AckResponder`],
//! [`SocketEvent`]): they act on the `Conn`, and the `Conn` makes them, so one file keeps the
//! pair without an import circle (the server only builds on both).

use super::packet::{Decoder, Packet, PacketType};
use crate::engineio::{
    CloseReason, EngineMessage, EngineSender, Handling, SendError, SessionHandler,
};
use bytes::Bytes;
use chat_core::mailbox::MailboxSender;
use serde_json::Value;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::oneshot;

/// What a connection needs of its server, whatever the type of the authorizer's data: the
/// namespaces and limits, and the CONNECT.
pub(super) trait Connector: Send + Sync + 'static {
    /// The namespaces clients may join.
    fn namespaces(&self) -> &[String];

    /// The most server-to-client emits awaiting an ack, per connection.
    fn max_pending_acks(&self) -> usize;

    /// Authorizes a CONNECT to a namespace this connection has not joined and, if accepted,
    /// joins it ([`Conn::join`]) and hands the socket to the application; true when joined.
    fn connect(
        &self,
        conn: Arc<Conn>,
        packet: Packet,
    ) -> Pin<Box<dyn Future<Output = bool> + Send + '_>>;
}

/// A joined namespace: its name, its socket's id (both shared with the socket's [`Emitter`]s)
/// and where its events go.
pub(super) struct NsEntry {
    pub(super) nsp: Arc<str>,
    pub(super) socket_id: Arc<str>,
    /// The socket's events: a [`chat_core::mailbox`], which costs nothing while empty (a tokio
    /// channel allocated ≈ 770 bytes, and with 32 inline `SocketEvent`s 4.4 KB, per idle socket:
    /// issue-12 heap profile); boxed, so that a queue that once held a few keeps a few pointers.
    pub(super) events: MailboxSender<Box<SocketEvent>>,
}

struct Nsps {
    /// A list, not a map: a connection joins one namespace or a few, and an empty-keyed
    /// `HashMap` with one entry was a 4-slot table (≈ 240 bytes) in every idle connection.
    joined: Vec<NsEntry>,
    /// The connection is over: no namespace can be joined any more.
    ended: bool,
}

/// One Engine.IO session's Socket.IO state, shared by the engine (which calls it with each
/// message) and every [`Emitter`] of its sockets.
pub(super) struct Conn {
    pub(super) engine: EngineSender,
    server: Arc<dyn Connector>,
    /// Locked only while a message is decoded (the engine hands over one message at a time
    /// per transport; a lock, because a polling POST and the WebSocket it upgrades to are two
    /// tasks).
    decoder: Mutex<Decoder>,
    pub(super) next_ack: AtomicU64,
    acks: Mutex<HashMap<u64, oneshot::Sender<AckPayload>>>,
    nsps: Mutex<Nsps>,
}

impl Conn {
    pub(super) fn new(
        engine: EngineSender,
        server: Arc<dyn Connector>,
        max_attachments: usize,
    ) -> Arc<Conn> {
        Arc::new(Conn {
            engine,
            server,
            decoder: Mutex::new(Decoder::new(max_attachments)),
            next_ack: AtomicU64::new(0),
            acks: Mutex::new(HashMap::new()),
            nsps: Mutex::new(Nsps {
                joined: Vec::new(),
                ended: false,
            }),
        })
    }

    fn nsps(&self) -> MutexGuard<'_, Nsps> {
        self.nsps.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The entry of `nsp`, if joined.
    fn joined<R>(&self, nsp: &str, f: impl FnOnce(&NsEntry) -> R) -> Option<R> {
        self.nsps().joined.iter().find(|e| &*e.nsp == nsp).map(f)
    }

    pub(super) fn acks(&self) -> MutexGuard<'_, HashMap<u64, oneshot::Sender<AckPayload>>> {
        self.acks.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn max_pending_acks(&self) -> usize {
        self.server.max_pending_acks()
    }

    /// Whether `socket_id` is still the socket joined to `nsp`.
    pub(super) fn is_joined(&self, nsp: &str, socket_id: &str) -> bool {
        self.joined(nsp, |e| &*e.socket_id == socket_id)
            .unwrap_or(false)
    }

    pub(super) fn send_packet(&self, p: &Packet) -> Result<(), SendError> {
        let (text, atts) = p.encode();
        self.engine.send(EngineMessage::Text(text))?;
        for a in atts {
            self.engine.send(EngineMessage::Binary(a))?;
        }
        Ok(())
    }

    /// Records the entry's namespace as joined (in place of an earlier socket of it); gives
    /// the entry back when the connection has ended meanwhile (its CONNECT was being
    /// authorized when the session closed).
    pub(super) fn join(&self, entry: NsEntry) -> Result<(), NsEntry> {
        let mut nsps = self.nsps();
        if nsps.ended {
            return Err(entry);
        }
        nsps.joined.retain(|e| e.nsp != entry.nsp);
        // One slot at a time: a first push would make room for four.
        nsps.joined.reserve_exact(1);
        nsps.joined.push(entry);
        Ok(())
    }

    /// Removes a namespace entry and tells its socket why.
    pub(super) fn leave(&self, nsp: &str, reason: DisconnectReason) -> bool {
        let entry = {
            let mut nsps = self.nsps();
            let at = nsps.joined.iter().position(|e| &*e.nsp == nsp);
            at.map(|at| nsps.joined.swap_remove(at))
        };
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

    /// Ends the connection (the first call counts): every socket is told `reason`, and emits
    /// still waiting for an ack fail now rather than never.
    fn end(&self, reason: DisconnectReason) {
        let joined = {
            let mut nsps = self.nsps();
            if nsps.ended {
                return;
            }
            nsps.ended = true;
            std::mem::take(&mut nsps.joined)
        };
        for entry in joined {
            let _ = entry
                .events
                .try_send(Box::new(SocketEvent::Disconnected(reason.clone())));
        }
        self.acks().clear();
    }

    /// Ends the connection for `reason` and closes its Engine.IO session.
    fn close(&self, reason: DisconnectReason) {
        self.end(reason);
        self.engine.close();
    }

    /// Decodes one Engine.IO message and acts on the packet it completes. Malformed packets
    /// close the session.
    async fn handle(self: Arc<Self>, message: EngineMessage) {
        let decoded = {
            let mut decoder = self.decoder.lock().unwrap_or_else(|e| e.into_inner());
            match message {
                EngineMessage::Text(t) => decoder.decode_text(&t),
                EngineMessage::Binary(b) => decoder.decode_binary(b),
            }
        };
        let packet = match decoded {
            Ok(Some(p)) => p,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(sid = self.engine.sid(), error = %e, "malformed socket.io packet");
                self.close(DisconnectReason::ProtocolViolation(e.to_string()));
                return;
            }
        };
        if let Err(reason) = self.on_packet(packet).await {
            self.close(reason);
        }
    }

    /// Acts on one packet.
    async fn on_packet(self: &Arc<Self>, p: Packet) -> Result<(), DisconnectReason> {
        let violation = |m: &str| DisconnectReason::ProtocolViolation(m.to_string());
        match p.kind {
            PacketType::Connect => {
                if !self.server.namespaces().contains(&p.nsp) {
                    let _ = self.send_packet(&Packet::connect_error(&p.nsp, "Invalid namespace"));
                    return Ok(());
                }
                if self.joined(&p.nsp, |_| ()).is_some() {
                    return Err(violation("CONNECT to a namespace already joined"));
                }
                // The authorizer runs in this task (it is boxed: only while a CONNECT is
                // handled does it take memory); the next message waits for it.
                let server = self.server.clone();
                if server.connect(self.clone(), p).await {
                    // Joined: the connect timeout of `SocketIo::on_open` no longer applies.
                    self.engine.close_at(None);
                }
                Ok(())
            }
            PacketType::Disconnect => {
                self.leave(&p.nsp, DisconnectReason::ClientDisconnect);
                Ok(())
            }
            PacketType::Event | PacketType::BinaryEvent => {
                let joined = self.joined(&p.nsp, |e| {
                    (e.events.clone(), e.nsp.clone(), e.socket_id.clone())
                });
                let Some((events, nsp, socket_id)) = joined else {
                    // Not connected to that namespace: ignored, as the reference server does.
                    return Ok(());
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
                        conn: self.clone(),
                        nsp,
                        socket_id,
                    },
                    id,
                });
                // Waits while the socket's queue is full: back-pressure on this transport.
                let _ = events
                    .send(Box::new(SocketEvent::Event {
                        name,
                        args: arr,
                        attachments: p.attachments,
                        ack,
                    }))
                    .await;
                Ok(())
            }
            PacketType::Ack | PacketType::BinaryAck => {
                let waiting = p.id.and_then(|id| self.acks().remove(&id));
                if let (Some(tx), Some(Value::Array(args))) = (waiting, p.data) {
                    let _ = tx.send(AckPayload {
                        args,
                        attachments: p.attachments,
                    });
                }
                Ok(())
            }
            PacketType::ConnectError => Err(violation("CONNECT_ERROR from a client")),
        }
    }
}

impl SessionHandler for Conn {
    fn on_message(self: Arc<Self>, message: EngineMessage) -> Handling {
        Box::pin(self.handle(message))
    }

    fn on_close(&self, reason: &CloseReason) {
        self.end(DisconnectReason::TransportClosed(Some(reason.clone())));
    }
}

// What a socket's owner holds of its connection: its events, acks and emitter.

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
    pub(super) emitter: Emitter,
    pub(super) id: u64,
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

/// Sends to one socket (one namespace of one connection). Cheap to clone.
#[derive(Clone)]
pub struct Emitter {
    pub(super) conn: Arc<Conn>,
    /// Shared with the connection's entry for the namespace: cloning an emitter allocates
    /// nothing.
    pub(super) nsp: Arc<str>,
    pub(super) socket_id: Arc<str>,
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
        self.conn.is_joined(&self.nsp, &self.socket_id)
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
            if acks.len() >= self.conn.max_pending_acks() {
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
