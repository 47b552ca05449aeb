//! How the layer above hears from the engine: an [`EngineHandler`] is told of every session the
//! engine opens and gives back the session's [`SessionHandler`], which the engine calls with
//! each message and at the end, from whatever task carries the session at that moment (the
//! WebSocket's, or the HTTP request of a polling POST). As in socketioxide, the layer above then
//! needs no task and no queue of its own per session: an idle Socket.IO connection over
//! WebSocket is one task (docs/benchmarks.md, "Idle memory per connection", third pass).
//!
//! [`Engine::new`] keeps the other shape, a session as an [`EngineSocket`] with a queue of
//! messages, for servers that want each session in a task of their own (the examples, tests).

use super::engine::Engine;
use super::session::{CloseReason, EngineMessage, EngineSender, SendError, TransportType};
use super::EngineConfig;
use chat_core::mailbox::{mailbox, MailboxReceiver, MailboxSender};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::mpsc;

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

/// New sessions, in handshake order, of an engine made with [`Engine::new`]; take each with
/// [`Incoming::accept`].
pub struct Incoming {
    rx: mpsc::Receiver<EngineSocket>,
}

impl Incoming {
    /// The next new session; `None` once every [`Engine`] clone is dropped.
    pub async fn accept(&mut self) -> Option<EngineSocket> {
        self.rx.recv().await
    }
}

impl Engine {
    /// A new engine whose sessions come out of [`Incoming`] as [`EngineSocket`]s, each with a
    /// queue of [`EngineConfig::inbound_queue`] messages (a session's transport waits while it
    /// is full). Over [`EngineConfig::accept_queue`] sessions not yet taken, handshakes get 503.
    pub fn new(config: EngineConfig) -> (Engine, Incoming) {
        let (accept, rx) = mpsc::channel(config.accept_queue.max(1));
        let queue = config.inbound_queue;
        let engine = Engine::with_handler(config, Arc::new(Accept { accept, queue }));
        (engine, Incoming { rx })
    }
}

/// [`Engine::new`]'s handler: a queue per session, handed out through [`Incoming`].
struct Accept {
    accept: mpsc::Sender<EngineSocket>,
    queue: usize,
}

impl EngineHandler for Accept {
    fn on_open(&self, session: EngineSender) -> Option<Arc<dyn SessionHandler>> {
        let (tx, rx) = mailbox(self.queue);
        let socket = EngineSocket {
            session: session.clone(),
            rx,
        };
        // A refused socket is dropped, which closes its session (the engine would anyway).
        self.accept
            .try_send(socket)
            .ok()
            .map(|()| Arc::new(Queue(tx)) as Arc<dyn SessionHandler>)
    }
}

/// One session's queue: boxed messages, so that a queue that once held a few keeps a few
/// pointers.
struct Queue(MailboxSender<Box<EngineMessage>>);

impl SessionHandler for Queue {
    fn on_message(self: Arc<Self>, message: EngineMessage) -> Handling {
        Box::pin(async move {
            let _ = self.0.send(Box::new(message)).await;
        })
    }

    fn on_close(&self, _reason: &CloseReason) {}
}

/// One session of an engine made with [`Engine::new`]: incoming messages, and a way to send.
///
/// Dropping it closes the session.
pub struct EngineSocket {
    session: EngineSender,
    rx: MailboxReceiver<Box<EngineMessage>>,
}

impl EngineSocket {
    /// The session id.
    pub fn sid(&self) -> &str {
        self.session.sid()
    }

    /// The transport carrying the session now.
    pub fn transport(&self) -> TransportType {
        self.session.transport()
    }

    /// The next message from the client; `None` once the session is closed.
    pub async fn recv(&mut self) -> Option<EngineMessage> {
        self.rx.recv().await.map(|msg| *msg)
    }

    /// A cloneable handle to send to this client.
    pub fn sender(&self) -> EngineSender {
        self.session.clone()
    }

    /// Queues a message for the client.
    pub fn send(&self, msg: EngineMessage) -> Result<(), SendError> {
        self.session.send(msg)
    }

    /// Closes the session.
    pub fn close(&self) {
        self.session.close();
    }

    /// Why the session ended, once it has.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.session.close_reason()
    }
}

impl Drop for EngineSocket {
    fn drop(&mut self) {
        self.session.close();
    }
}
