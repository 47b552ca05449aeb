//! The WebSocket side, over any [`WsLink`]: a direct WebSocket session, or the upgrade of a
//! polling session (`2probe` / `3probe`, pending poll answered with `noop`, `5`, buffered
//! packets flushed over the WebSocket, polls rejected afterwards).
//!
//! The session runs in the task that owns the socket: the engine reads and writes the
//! [`WsLink`] itself, hands each message to the layer above's
//! [`SessionHandler`](super::SessionHandler) from this loop, and a direct WebSocket session's
//! heartbeat is driven by the same loop (a polling session keeps its heartbeat task across an
//! upgrade). One task and no channels per connection is what keeps an idle Socket.IO connection
//! small (docs/benchmarks.md, "Idle memory per connection").

use super::engine::{parse_query, Engine, EngineError, EngineResponse};
use super::packet::{Packet, WsFrame};
use super::session::{CloseReason, EngineSession, Heartbeat, TransportType, UpgradeState};
use std::future::Future;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// A WebSocket the engine carries a session on, decoded into [`WsFrame`]s: the gateway's
/// upgraded connection, or a [`WsConnection`] (two channels, for servers that keep the socket
/// in a task of their own, and for tests).
pub trait WsLink: Send {
    /// The next data frame from the client; `None` once the socket is closed or broken. Must be
    /// cancel-safe: the engine drops it when something else is ready first.
    fn recv(&mut self) -> impl Future<Output = Option<WsFrame>> + Send;

    /// Writes one frame; `false` when the socket can no longer take it (the session then ends
    /// with [`CloseReason::TransportClosed`]).
    fn send(&mut self, frame: WsFrame) -> impl Future<Output = bool> + Send;

    /// Writes `frames` in order; `false` as for [`send`](Self::send). The engine hands over
    /// everything queued since its last write at once, so a link that buffers writes can send
    /// them with one flush (one system call) instead of one each.
    fn send_all(&mut self, frames: Vec<WsFrame>) -> impl Future<Output = bool> + Send {
        async move {
            for frame in frames {
                if !self.send(frame).await {
                    return false;
                }
            }
            true
        }
    }
}

impl<L: WsLink> WsLink for &mut L {
    fn recv(&mut self) -> impl Future<Output = Option<WsFrame>> + Send {
        (**self).recv()
    }

    fn send(&mut self, frame: WsFrame) -> impl Future<Output = bool> + Send {
        (**self).send(frame)
    }

    fn send_all(&mut self, frames: Vec<WsFrame>) -> impl Future<Output = bool> + Send {
        (**self).send_all(frames)
    }
}

/// A WebSocket as two channels: the server pumps decoded frames from the socket into
/// `incoming` and writes what arrives on `outgoing` (closing the socket when it ends).
#[derive(Debug)]
pub struct WsConnection {
    /// Frames from the client; the channel closing means the socket is gone.
    pub incoming: mpsc::Receiver<WsFrame>,
    /// Frames for the client; dropped by the engine when the session is over.
    pub outgoing: mpsc::Sender<WsFrame>,
}

impl WsLink for WsConnection {
    fn recv(&mut self) -> impl Future<Output = Option<WsFrame>> + Send {
        self.incoming.recv()
    }

    async fn send(&mut self, frame: WsFrame) -> bool {
        self.outgoing.send(frame).await.is_ok()
    }
}

enum Target {
    New,
    Upgrade(Arc<EngineSession>),
    /// A WebSocket for a session that already upgraded to one: a client must not open two per
    /// session, and the protocol says to close the second one (after its handshake), leaving the
    /// first as it is.
    Duplicate,
}

/// A validated WebSocket request: the gateway answers `101` and calls [`WsAccept::serve`].
pub struct WsAccept {
    engine: Engine,
    target: Target,
    /// Told the id of the session a direct WebSocket opens, before its `open` packet is sent.
    on_new_session: Option<NewSessionHook>,
}

/// See [`WsAccept::on_new_session`].
type NewSessionHook = Box<dyn FnOnce(&str) + Send>;

impl Engine {
    /// Validates a WebSocket request (`EIO=4&transport=websocket[&sid=...]`) before the
    /// gateway answers `101`; on error, the gateway writes the returned response instead.
    pub fn websocket_request(&self, query: &str) -> Result<WsAccept, EngineResponse> {
        self.ws_target(query)
            .map(|target| WsAccept {
                engine: self.clone(),
                target,
                on_new_session: None,
            })
            .map_err(EngineError::response)
    }

    fn ws_target(&self, query: &str) -> Result<Target, EngineError> {
        let q = parse_query(query)?;
        if q.transport != "websocket" || !self.config().allow_websocket {
            return Err(EngineError::BadRequest);
        }
        let Some(sid) = q.sid else {
            return Ok(Target::New);
        };
        let session = self.session(sid).ok_or(EngineError::SessionIdUnknown)?;
        let st = session.lock();
        if st.transport == TransportType::WebSocket {
            return Ok(Target::Duplicate);
        }
        if st.upgrade != UpgradeState::None {
            // An upgrade is under way on another WebSocket.
            return Err(EngineError::BadRequest);
        }
        drop(st);
        Ok(Target::Upgrade(session))
    }
}

impl WsAccept {
    /// Calls `f` with the session id when this WebSocket opens a new session (not for the
    /// upgrade of a polling session, whose id the handshake already gave), before the client
    /// can send anything: the gateway keeps what it knows of the connection under that id.
    pub fn on_new_session(mut self, f: impl FnOnce(&str) + Send + 'static) -> Self {
        self.on_new_session = Some(Box::new(f));
        self
    }

    /// Runs the WebSocket until it or the session ends. A failed upgrade leaves the polling
    /// session as it was.
    pub async fn serve(self, mut link: impl WsLink) {
        let (session, heartbeat) = match self.target {
            Target::New => {
                let Some(session) = self.engine.open_session(TransportType::WebSocket) else {
                    return;
                };
                if let Some(f) = self.on_new_session {
                    f(&session.sid);
                }
                let hs = self
                    .engine
                    .handshake(&session.sid, TransportType::WebSocket);
                if !link.send(Packet::Open(hs).to_ws_frame()).await {
                    session.close(CloseReason::TransportClosed);
                    return;
                }
                // A direct WebSocket session has no heartbeat task: `run` pings.
                (session, true)
            }
            Target::Upgrade(session) => {
                {
                    let mut st = session.lock();
                    if st.closed.is_some()
                        || st.transport != TransportType::Polling
                        || st.upgrade != UpgradeState::None
                    {
                        return;
                    }
                    st.upgrade = UpgradeState::Requested;
                }
                let timeout = session.config.upgrade_timeout;
                let probed = tokio::select! {
                    r = tokio::time::timeout(timeout, probe(&session, &mut link)) => r.unwrap_or(false),
                    _ = session.closed() => false,
                };
                {
                    let mut st = session.lock();
                    st.upgrade = UpgradeState::None;
                    if probed {
                        st.transport = TransportType::WebSocket;
                    }
                }
                session.notify();
                if !probed {
                    tracing::debug!(sid = %session.sid, "engine.io upgrade failed");
                    return;
                }
                // The heartbeat task the polling handshake started goes on.
                (session, false)
            }
            Target::Duplicate => {
                tracing::debug!("second websocket for an upgraded engine.io session; closing it");
                return;
            }
        };
        run(&session, link, heartbeat).await;
    }
}

/// The upgrade handshake; true once the client sent `5`.
async fn probe(session: &EngineSession, link: &mut impl WsLink) -> bool {
    while let Some(frame) = link.recv().await {
        match Packet::from_ws_frame(frame) {
            Ok(Packet::PingProbe) => {
                if !link.send(Packet::PongProbe.to_ws_frame()).await {
                    return false;
                }
                // A pending poll now gets `noop` so the client can pause polling.
                session.lock().upgrade = UpgradeState::Probing;
                session.notify();
            }
            Ok(Packet::Upgrade) => return session.lock().upgrade == UpgradeState::Probing,
            _ => return false,
        }
    }
    false
}

/// The WebSocket loop: flushes the outbound queue, reads frames, runs the session's
/// [`Heartbeat`] when `heartbeat` is its job (a direct WebSocket session; an upgraded one keeps
/// its polling heartbeat task), ends with the session.
async fn run(session: &EngineSession, mut link: impl WsLink, heartbeat: bool) {
    let max = session.config.max_payload;
    let mut beat = heartbeat.then(|| Heartbeat::start(&session.config));
    loop {
        let changed = session.changed();
        let (packets, closed, wake) = {
            let mut st = session.lock();
            let wake = beat.as_mut().map(|beat| beat.observe(&st, &session.config));
            // Taken whole: the queue's buffer goes with what it held, instead of staying
            // allocated (72 bytes a slot) in every idle session.
            let packets = std::mem::take(&mut st.outbound);
            (packets, st.closed.clone(), wake)
        };
        if !packets.is_empty() {
            let frames = packets.into_iter().map(|p| p.to_ws_frame()).collect();
            if !link.send_all(frames).await {
                session.close(CloseReason::TransportClosed);
                return;
            }
        }
        if let Some(reason) = closed {
            if reason != CloseReason::TransportClosed {
                let _ = link.send(Packet::Close.to_ws_frame()).await;
            }
            return;
        }
        tokio::select! {
            frame = link.recv() => match frame {
                None => session.close(CloseReason::TransportClosed),
                Some(frame) => {
                    let len = match &frame {
                        WsFrame::Text(t) => t.len(),
                        WsFrame::Binary(b) => b.len(),
                    };
                    if len > max {
                        session.close(CloseReason::ProtocolViolation("frame over maxPayload".into()));
                        continue;
                    }
                    match Packet::from_ws_frame(frame) {
                        Ok(p) => session.on_packet(p).await,
                        Err(e) => session.close(CloseReason::ProtocolViolation(e.to_string())),
                    }
                }
            },
            _ = changed => {}
            _ = tokio::time::sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => {
                if let Some(beat) = &mut beat {
                    beat.fire(session);
                }
            }
        }
    }
}
