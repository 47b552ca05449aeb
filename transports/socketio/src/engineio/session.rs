//! One Engine.IO session: its state (transport, upgrade, bounded outbound queue, heartbeat,
//! the layer above's [`SessionHandler`]) and the handle the layer above sends with
//! ([`EngineSender`]).

use super::config::EngineConfig;
use super::packet::Packet;
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use tokio::sync::futures::Notified;
use tokio::sync::Notify;
use tokio::time::Instant;

/// The registry of live sessions, by sid.
pub(crate) type Registry = Mutex<HashMap<String, Arc<EngineSession>>>;

/// Which transport currently carries a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportType {
    /// HTTP long-polling.
    Polling,
    /// WebSocket (direct, or after an upgrade from polling).
    WebSocket,
}

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The client sent a `close` packet.
    ClientClosed,
    /// The client did not answer a ping within `pingTimeout`.
    PingTimeout,
    /// The WebSocket carrying the session went away.
    TransportClosed,
    /// The client broke the protocol (malformed packet, overlapping polls…).
    ProtocolViolation(String),
    /// The outbound queue overflowed: the client is too slow.
    Lagged,
    /// The server closed the session.
    ServerClosed,
}

/// A message carried by the engine, in either direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineMessage {
    /// A text message (`4...`).
    Text(String),
    /// A binary message.
    Binary(Bytes),
}

/// Why a message could not be queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The session is closed.
    #[error("session closed")]
    Closed,
    /// The outbound queue was full; the session has been closed.
    #[error("outbound queue full, session closed")]
    Lagged,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UpgradeState {
    None,
    /// A WebSocket was opened for this session; no probe yet.
    Requested,
    /// The probe was answered; polls get `noop` until the upgrade completes.
    Probing,
}

pub(crate) struct State {
    pub(crate) transport: TransportType,
    pub(crate) upgrade: UpgradeState,
    pub(crate) outbound: VecDeque<Packet>,
    pub(crate) poll_active: bool,
    pub(crate) post_active: bool,
    /// The layer above, told each message in the task that reads it (no queue, no task of
    /// its own); taken at the close, which breaks the cycle of a handler that holds the
    /// session's [`EngineSender`].
    pub(crate) handler: Option<Arc<dyn SessionHandler>>,
    /// The layer above's deadline ([`EngineSender::close_at`]): the session closes then.
    pub(crate) deadline: Option<Instant>,
    pub(crate) pong_received: bool,
    pub(crate) closed: Option<CloseReason>,
}

pub(crate) struct EngineSession {
    pub(crate) sid: String,
    pub(crate) config: Arc<EngineConfig>,
    state: Mutex<State>,
    /// Wakes whoever waits on the session. A `Notify` (a few words inline) rather than a
    /// `watch` channel, whose shared state (eight `Notify`s for its receivers, the value's
    /// lock) was one more allocation of ≈ 350 bytes per session (issue 12, idle memory).
    changed: Notify,
    registry: Weak<Registry>,
}

impl EngineSession {
    pub(crate) fn new(
        sid: String,
        config: Arc<EngineConfig>,
        transport: TransportType,
        registry: Weak<Registry>,
    ) -> Arc<EngineSession> {
        Arc::new(EngineSession {
            sid,
            config,
            state: Mutex::new(State {
                transport,
                upgrade: UpgradeState::None,
                outbound: VecDeque::new(),
                poll_active: false,
                post_active: false,
                handler: None,
                deadline: None,
                pong_received: true,
                closed: None,
            }),
            changed: Notify::new(),
            registry,
        })
    }

    /// Hands the session to the layer above; a session closed meanwhile tells it at once.
    pub(crate) fn attach(&self, handler: Arc<dyn SessionHandler>) {
        let closed = {
            let mut st = self.lock();
            match &st.closed {
                Some(reason) => Some(reason.clone()),
                None => {
                    st.handler = Some(handler.clone());
                    None
                }
            }
        };
        if let Some(reason) = closed {
            handler.on_close(&reason);
        }
    }

    /// Locks the state; a poisoned lock (a panic elsewhere) is recovered, the state stays valid.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes every waiter (pending poll, WebSocket loop, heartbeat).
    pub(crate) fn notify(&self) {
        self.changed.notify_waiters();
    }

    /// Completes at the first [`EngineSession::notify`] after this call, even one that comes
    /// before it is first polled: take it, then look at the state, then await it.
    pub(crate) fn changed(&self) -> Notified<'_> {
        self.changed.notified()
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed.is_some()
    }

    /// Resolves once the session is closed.
    pub(crate) async fn closed(&self) {
        loop {
            let changed = self.changed();
            if self.is_closed() {
                return;
            }
            changed.await;
        }
    }

    /// Closes the session (first reason wins): stops delivery, unregisters, wakes waiters,
    /// tells the layer above.
    pub(crate) fn close(&self, reason: CloseReason) {
        let handler = {
            let mut st = self.lock();
            if st.closed.is_some() {
                return;
            }
            tracing::debug!(sid = %self.sid, ?reason, "engine.io session closed");
            st.closed = Some(reason.clone());
            st.handler.take()
        };
        if let Some(reg) = self.registry.upgrade() {
            reg.lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&self.sid);
        }
        self.notify();
        if let Some(handler) = handler {
            handler.on_close(&reason);
        }
    }

    /// Queues a packet for the client; a full queue closes the session.
    pub(crate) fn push(&self, packet: Packet) -> Result<(), SendError> {
        {
            let mut st = self.lock();
            if st.closed.is_some() {
                return Err(SendError::Closed);
            }
            let queued_bytes: usize = st.outbound.iter().map(Packet::queued_len).sum();
            if st.outbound.len() >= self.config.max_buffered_packets
                || (!st.outbound.is_empty()
                    && queued_bytes + packet.queued_len() > self.config.max_buffered_bytes)
            {
                drop(st);
                self.close(CloseReason::Lagged);
                return Err(SendError::Lagged);
            }
            st.outbound.push_back(packet);
        }
        self.notify();
        Ok(())
    }

    /// Hands a message to the layer above, in this task, and waits until it has handled it.
    async fn deliver(&self, msg: EngineMessage) {
        let handler = self.lock().handler.clone();
        if let Some(handler) = handler {
            handler.on_message(msg).await;
        }
    }

    /// Acts on one packet from the client, whatever the transport.
    pub(crate) async fn on_packet(&self, packet: Packet) {
        match packet {
            Packet::Message(m) => self.deliver(EngineMessage::Text(m)).await,
            Packet::Binary(b) => self.deliver(EngineMessage::Binary(b)).await,
            Packet::Pong => {
                self.lock().pong_received = true;
                self.notify();
            }
            Packet::Close => self.close(CloseReason::ClientClosed),
            Packet::Noop | Packet::Ping => {}
            other => self.close(CloseReason::ProtocolViolation(format!(
                "unexpected packet {other:?}"
            ))),
        }
    }

    /// A polling session's heartbeat task (a WebSocket session's loop runs the same
    /// [`Heartbeat`] itself): ends when the session does.
    pub(crate) async fn heartbeat(self: Arc<Self>) {
        let mut beat = Heartbeat::start(&self.config);
        loop {
            let changed = self.changed();
            let wake = {
                let st = self.lock();
                if st.closed.is_some() {
                    return;
                }
                beat.observe(&st, &self.config)
            };
            tokio::select! {
                _ = changed => {}
                _ = tokio::time::sleep_until(wake) => beat.fire(&self),
            }
        }
    }
}

/// A session's ping schedule: a ping every `pingInterval` after the last pong, and the session
/// closed ([`CloseReason::PingTimeout`]) when a ping is not answered within `pingTimeout`; also
/// the layer above's deadline ([`EngineSender::close_at`]), so that it needs no timer task.
/// Driven by whoever waits on the session: its heartbeat task (polling) or its WebSocket loop.
pub(crate) enum Heartbeat {
    /// The next ping goes out then.
    PingAt(tokio::time::Instant),
    /// A ping went out: a pong must come before then.
    PongBy(tokio::time::Instant),
}

impl Heartbeat {
    /// The first ping, `pingInterval` from now.
    pub(crate) fn start(config: &EngineConfig) -> Self {
        Heartbeat::PingAt(tokio::time::Instant::now() + config.ping_interval)
    }

    /// When the next ping or pong check is due.
    fn due_at(&self) -> tokio::time::Instant {
        match self {
            Heartbeat::PingAt(at) | Heartbeat::PongBy(at) => *at,
        }
    }

    /// After any change of the session's state: a pong that came schedules the next ping.
    /// Returns when [`Heartbeat::fire`] is due (the next ping or pong check, or the deadline).
    pub(crate) fn observe(&mut self, st: &State, config: &EngineConfig) -> Instant {
        if let (Heartbeat::PongBy(_), true) = (&*self, st.pong_received) {
            *self = Heartbeat::PingAt(tokio::time::Instant::now() + config.ping_interval);
        }
        match st.deadline {
            Some(deadline) => deadline.min(self.due_at()),
            None => self.due_at(),
        }
    }

    /// At the time [`Heartbeat::observe`] gave: closes the session past its deadline, queues a
    /// ping (it always goes out, even over a full queue: it is one small packet), or closes the
    /// session when the last one was not answered.
    pub(crate) fn fire(&mut self, session: &EngineSession) {
        let now = Instant::now();
        let expired = session.lock().deadline.is_some_and(|at| at <= now);
        if expired {
            session.close(CloseReason::ServerClosed);
            return;
        }
        if self.due_at() > now {
            // Woken for a deadline that has since been lifted or moved.
            return;
        }
        match self {
            Heartbeat::PingAt(_) => {
                {
                    let mut st = session.lock();
                    st.pong_received = false;
                    st.outbound.push_back(Packet::Ping);
                }
                session.notify();
                *self =
                    Heartbeat::PongBy(tokio::time::Instant::now() + session.config.ping_timeout);
            }
            Heartbeat::PongBy(_) => {
                let st = session.lock();
                if st.pong_received {
                    self.observe(&st, &session.config);
                } else {
                    drop(st);
                    session.close(CloseReason::PingTimeout);
                }
            }
        }
    }
}

/// Drains queued packets for one poll: at least one, then as many as fit in `max_payload`.
pub(crate) fn drain_for_poll(st: &mut State, max_payload: usize) -> Vec<Packet> {
    let mut out = Vec::new();
    let mut size = 0usize;
    while let Some(p) = st.outbound.front() {
        let len = p.encode_text().len() + usize::from(!out.is_empty());
        if !out.is_empty() && size + len > max_payload {
            break;
        }
        size += len;
        if let Some(p) = st.outbound.pop_front() {
            out.push(p);
        }
    }
    if st.outbound.is_empty() {
        // The queue's buffer is not kept by an idle session (72 bytes a slot).
        st.outbound = VecDeque::new();
    }
    out
}

/// A cloneable handle that queues messages for one client.
#[derive(Clone)]
pub struct EngineSender {
    pub(crate) session: Arc<EngineSession>,
}

impl EngineSender {
    /// Queues a message; fails if the session is closed or its queue is full (which closes it).
    pub fn send(&self, msg: EngineMessage) -> Result<(), SendError> {
        self.session.push(match msg {
            EngineMessage::Text(t) => Packet::Message(t),
            EngineMessage::Binary(b) => Packet::Binary(b),
        })
    }

    /// The session id.
    pub fn sid(&self) -> &str {
        &self.session.sid
    }

    /// The transport carrying the session now.
    pub fn transport(&self) -> TransportType {
        self.session.lock().transport
    }

    /// Closes the session.
    pub fn close(&self) {
        self.session.close(CloseReason::ServerClosed);
    }

    /// Closes the session (as [`EngineSender::close`]) at `at`, unless called again with
    /// `None` or a later time before then: the layer above's timeout without a timer of its
    /// own (the session's heartbeat, or its WebSocket loop, keeps it).
    pub fn close_at(&self, at: Option<Instant>) {
        self.session.lock().deadline = at;
        self.session.notify();
    }

    /// Why the session ended, once it has.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.session.lock().closed.clone()
    }

    /// Whether the session is closed.
    pub fn is_closed(&self) -> bool {
        self.session.is_closed()
    }

    /// Resolves once the session is closed.
    pub async fn closed(&self) {
        self.session.closed().await
    }
}

impl std::fmt::Debug for EngineSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineSender")
            .field("sid", &self.session.sid)
            .finish()
    }
}

/// How the layer above hears from the engine (as in socketioxide): an [`EngineHandler`] is told
/// of every session the engine opens and gives back the session's [`SessionHandler`], which the
/// engine calls with each message and at the end, from whatever task carries the session at that
/// moment (the WebSocket's, or the HTTP request of a polling POST). The layer above then needs no
/// task and no queue of its own per session: an idle Socket.IO connection over WebSocket is one
/// task (docs/benchmarks.md, "Idle memory per connection", third pass).
/// What [`SessionHandler::on_message`] returns: the handling of one message, which the engine
/// awaits before it reads the next one from the same transport (back-pressure). Boxed: it takes
/// memory only while a message is handled, not in every idle connection's task.
pub type Handling = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The layer above the engine: told of each session the engine opens.
pub trait EngineHandler: Send + Sync + 'static {
    /// A session opened (before its `open` packet is sent): what will hear its messages, or
    /// `None` to refuse it (a polling handshake then gets 503, a WebSocket is closed).
    fn on_open(&self, session: EngineSender) -> Option<Arc<dyn SessionHandler>>;
}

/// The layer above's side of one session.
///
/// The engine calls [`SessionHandler::on_message`] for one message at a time per transport and
/// awaits it; [`SessionHandler::on_close`] exactly once, with the first reason, after which the
/// engine drops its reference (a handler may hold the session's [`EngineSender`]: the engine
/// holding the handler until the end is what keeps such a pair alive, and the end is what
/// breaks the cycle).
pub trait SessionHandler: Send + Sync + 'static {
    /// One message from the client.
    fn on_message(self: Arc<Self>, message: EngineMessage) -> Handling;

    /// The session ended; no message follows. Called without any engine lock held.
    fn on_close(&self, reason: &CloseReason);
}
