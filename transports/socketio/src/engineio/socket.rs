//! [`Engine::new`]: an engine whose sessions are [`EngineSocket`]s, each with a queue of
//! messages, for servers that want each session in a task of their own (the examples, tests).
//! The gateway's Socket.IO uses the other shape, an [`EngineHandler`] called in the session's
//! own task (`session.rs`).

use super::engine::Engine;
use super::session::{
    CloseReason, EngineHandler, EngineMessage, EngineSender, Handling, SendError, SessionHandler,
    TransportType,
};
use super::EngineConfig;
use chat_core::mailbox::{mailbox, MailboxReceiver, MailboxSender};
use std::sync::Arc;
use tokio::sync::mpsc;

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
