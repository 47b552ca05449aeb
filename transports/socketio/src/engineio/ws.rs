//! The WebSocket side, over channels of [`WsFrame`]s: a direct WebSocket session, or the
//! upgrade of a polling session (`2probe` / `3probe`, pending poll answered with `noop`, `5`,
//! buffered packets flushed over the WebSocket, polls rejected afterwards).

use super::engine::{parse_query, Engine, EngineError, EngineResponse};
use super::packet::{Packet, WsFrame};
use super::session::{CloseReason, Session, TransportType, UpgradeState};
use std::sync::Arc;
use tokio::sync::mpsc;

/// A WebSocket as two channels: the gateway pumps decoded frames from the socket into
/// `incoming` and writes what arrives on `outgoing` (closing the socket when it ends).
#[derive(Debug)]
pub struct WsConnection {
    /// Frames from the client; the channel closing means the socket is gone.
    pub incoming: mpsc::Receiver<WsFrame>,
    /// Frames for the client; dropped by the engine when the session is over.
    pub outgoing: mpsc::Sender<WsFrame>,
}

enum Target {
    New,
    Upgrade(Arc<Session>),
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
        if st.transport != TransportType::Polling || st.upgrade != UpgradeState::None {
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
    pub async fn serve(self, mut conn: WsConnection) {
        let session = match self.target {
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
                if conn
                    .outgoing
                    .send(Packet::Open(hs).to_ws_frame())
                    .await
                    .is_err()
                {
                    session.close(CloseReason::TransportClosed);
                    return;
                }
                session
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
                    r = tokio::time::timeout(timeout, probe(&session, &mut conn)) => r.unwrap_or(false),
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
                session
            }
        };
        run(&session, conn).await;
    }
}

/// The upgrade handshake; true once the client sent `5`.
async fn probe(session: &Session, conn: &mut WsConnection) -> bool {
    while let Some(frame) = conn.incoming.recv().await {
        match Packet::from_ws_frame(frame) {
            Ok(Packet::PingProbe) => {
                if conn
                    .outgoing
                    .send(Packet::PongProbe.to_ws_frame())
                    .await
                    .is_err()
                {
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

/// The WebSocket loop: flushes the outbound queue, reads frames, ends with the session.
async fn run(session: &Session, mut conn: WsConnection) {
    let max = session.config.max_payload;
    loop {
        let mut rx = session.subscribe();
        let (packets, closed) = {
            let mut st = session.lock();
            (st.outbound.drain(..).collect::<Vec<_>>(), st.closed.clone())
        };
        for p in packets {
            if conn.outgoing.send(p.to_ws_frame()).await.is_err() {
                session.close(CloseReason::TransportClosed);
                return;
            }
        }
        if let Some(reason) = closed {
            if reason != CloseReason::TransportClosed {
                let _ = conn.outgoing.send(Packet::Close.to_ws_frame()).await;
            }
            return;
        }
        tokio::select! {
            frame = conn.incoming.recv() => match frame {
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
            _ = rx.changed() => {}
        }
    }
}
