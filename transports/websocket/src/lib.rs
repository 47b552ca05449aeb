//! # chat-transport-websocket
//!
//! The raw chat protocol over WebSocket: one JSON object per text frame, as documented in
//! `docs/protocol.md`. The gateway performs the HTTP upgrade (and authentication before it),
//! then hands the raw stream and an opened [`ChatSession`] to [`WebSocketTransport::serve`].
//!
//! Liveness and bounds: the server pings every `ping_interval` and closes a peer silent for
//! `idle_timeout` (1008); the read buffer is small and the write buffer bounded; a frame or
//! message over `max_message_bytes` closes with 1009; a session that falls behind closes with
//! 1013; shutdown closes with 1001.

#![warn(missing_docs)]

use chat_core::protocol::decode_client_frame;
use chat_core::protocol::ServerEvent;
use chat_core::service::{ChatSession, Outbound};
use chat_core::transport::{SessionEnd, Transport, TransportKind};
use futures_util::{SinkExt, StreamExt};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tokio::time::{timeout, Instant};
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message as WsMessage, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

/// Close code of a session whose agent token expired without a fresh one (`auth`): reconnect
/// with a new token and resume.
pub const CLOSE_TOKEN_EXPIRED: u16 = 4001;

/// Limits and timers of the WebSocket transport.
#[derive(Debug, Clone)]
pub struct WebSocketSettings {
    /// How often the server pings (`CHAT_WS_PING_INTERVAL_SECS`).
    pub ping_interval: Duration,
    /// A peer that sent nothing (pong included) for this long is closed with 1008
    /// (`CHAT_WS_IDLE_TIMEOUT_SECS`).
    pub idle_timeout: Duration,
    /// Largest accepted frame and message (`CHAT_WS_MAX_FRAME_BYTES`).
    pub max_message_bytes: usize,
    /// A write that cannot complete within this time ends the session.
    pub write_timeout: Duration,
    /// The largest single event the gateway writes besides an answer, in bytes (one message
    /// at `CHAT_MAX_MESSAGE_CHARS` with every character JSON-escaped): the write buffer holds an
    /// answer of `max_message_bytes` plus one such event, twice, so no frame the gateway
    /// produces can overflow it.
    pub max_event_bytes: usize,
}

impl Default for WebSocketSettings {
    fn default() -> Self {
        Self {
            ping_interval: Duration::from_secs(25),
            idle_timeout: Duration::from_secs(60),
            max_message_bytes: 64 * 1024,
            write_timeout: Duration::from_secs(10),
            max_event_bytes: 4000 * 6 + 1024,
        }
    }
}

impl WebSocketSettings {
    /// Bytes the write buffer may hold: two of the largest frames the gateway writes (an answer
    /// cut at `max_message_bytes` plus the one message it always carries) and 64 KiB.
    pub fn write_buffer_limit(&self) -> usize {
        (self.max_message_bytes + self.max_event_bytes) * 2 + 64 * 1024
    }

    /// The tungstenite configuration ([`chat_transport_upgraded::websocket_config`]): frames and
    /// messages up to `max_message_bytes`, writes buffered up to
    /// [`write_buffer_limit`](Self::write_buffer_limit).
    pub fn tungstenite_config(&self) -> WebSocketConfig {
        chat_transport_upgraded::websocket_config(self.max_message_bytes, self.write_buffer_limit())
    }
}

// The connection this transport serves, shared with the gateway's Socket.IO link.
pub use chat_transport_upgraded::{finish_close, RawStream, Upgraded, UpgradedStream};

/// The raw WebSocket transport.
///
/// ```no_run
/// # async fn demo(stream: chat_transport_websocket::UpgradedStream, session: chat_core::service::ChatSession) {
/// use chat_core::transport::Transport;
/// use chat_transport_websocket::{Upgraded, WebSocketSettings, WebSocketTransport};
/// let transport = WebSocketTransport::new(WebSocketSettings::default());
/// let end = transport.serve(Upgraded::new(stream), session).await;
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct WebSocketTransport {
    settings: WebSocketSettings,
}

impl WebSocketTransport {
    /// A transport with these settings.
    pub fn new(settings: WebSocketSettings) -> Self {
        Self { settings }
    }

    /// The settings in force.
    pub fn settings(&self) -> &WebSocketSettings {
        &self.settings
    }
}

/// How the server ends a connection, and what it tells the peer.
struct Closing {
    code: CloseCode,
    reason: &'static str,
    end: SessionEnd,
}

/// What one turn of the serve loop writes.
enum Step {
    /// The answer to a client's command (the command is handled first).
    Answer(Utf8Bytes),
    /// An event from the session, with every event ready behind it.
    Deliver(ServerEvent),
    /// The liveness ping.
    Ping,
}

/// A write of the serve loop, boxed (see [`Step::write`]).
type Write<'a> = Pin<Box<dyn Future<Output = Result<(), SessionEnd>> + Send + 'a>>;

impl Step {
    /// The write this step makes, boxed: handling a command (its store calls) and writing (its
    /// timer, the event being encoded) are the largest states of the serve loop, and inline
    /// they would sit in every idle connection's task (docs/benchmarks.md, "The serve loop's
    /// idle size").
    fn write<'a>(
        self,
        ws: &'a mut WebSocketStream<UpgradedStream>,
        session: &'a mut ChatSession,
        write_timeout: Duration,
    ) -> Write<'a> {
        match self {
            Step::Answer(text) => Box::pin(async move {
                let answer = match decode_client_frame(text.as_str()) {
                    Ok(frame) => session.handle(frame).await,
                    Err(bad) => bad.to_event(),
                };
                write_batch(ws, session, answer, write_timeout).await
            }),
            Step::Deliver(event) => Box::pin(write_batch(ws, session, event, write_timeout)),
            Step::Ping => Box::pin(send_message(
                ws,
                WsMessage::Ping(Default::default()),
                write_timeout,
            )),
        }
    }
}

/// The text of a frame the client sent: `Ok(None)` for a frame that only shows liveness (ping,
/// pong), `Err` for one that ends the session (with a close frame to send, or without).
fn incoming_text(
    incoming: Option<Result<WsMessage, WsError>>,
    session: &ChatSession,
) -> Result<Option<Utf8Bytes>, Result<Closing, SessionEnd>> {
    match incoming {
        None => Err(Err(SessionEnd::ClientClosed)),
        Some(Ok(WsMessage::Text(text))) => Ok(Some(text)),
        Some(Ok(WsMessage::Binary(_))) => Err(Ok(Closing {
            code: CloseCode::Policy,
            reason: "binary frames are not part of the protocol; send JSON text",
            end: SessionEnd::ProtocolViolation("binary frame".into()),
        })),
        Some(Ok(WsMessage::Close(_))) => Err(Err(SessionEnd::ClientClosed)),
        Some(Ok(_)) => Ok(None),
        Some(Err(WsError::Capacity(CapacityError::MessageTooLong { size, max_size }))) => {
            tracing::debug!(session = session.id(), size, max_size, "message too big");
            Err(Ok(Closing {
                code: CloseCode::Size,
                reason: "message too big",
                end: SessionEnd::ProtocolViolation(format!(
                    "message of {size} bytes over {max_size}"
                )),
            }))
        }
        Some(Err(WsError::Capacity(_))) => Err(Ok(Closing {
            code: CloseCode::Size,
            reason: "frame too big",
            end: SessionEnd::ProtocolViolation("frame too big".into()),
        })),
        Some(Err(WsError::Protocol(e))) => Err(Err(SessionEnd::ProtocolViolation(e.to_string()))),
        Some(Err(e)) => Err(Err(SessionEnd::ConnectionError(e.to_string()))),
    }
}

impl Transport for WebSocketTransport {
    type Connection = Upgraded;

    fn kind(&self) -> TransportKind {
        TransportKind::WebSocket
    }

    async fn serve(&self, connection: Upgraded, mut session: ChatSession) -> SessionEnd {
        let settings = &self.settings;
        let mut ws = connection
            .into_websocket(settings.tungstenite_config())
            .await;
        let mut ping = tokio::time::interval_at(
            Instant::now() + settings.ping_interval,
            settings.ping_interval,
        );
        let mut last_heard = Instant::now();
        let closing = loop {
            // What to write is decided in this block, and the write runs boxed after it: only
            // the box lives across the write's awaits, so the idle state of this loop (the
            // `select!`) is not as large as a write plus everything live beside it.
            let write = {
                let step = tokio::select! {
                    incoming = ws.next() => {
                        last_heard = Instant::now();
                        match incoming_text(incoming, &session) {
                            Ok(Some(text)) => Step::Answer(text),
                            Ok(None) => continue,
                            Err(closing) => break closing,
                        }
                    }
                    outbound = session.next_event() => match outbound {
                        Outbound::Event(event) => Step::Deliver(event),
                        Outbound::Lagged => break Ok(Closing {
                            code: CloseCode::Again,
                            reason: "too far behind; reconnect and resume",
                            end: SessionEnd::Lagged,
                        }),
                        Outbound::ShuttingDown => break Ok(Closing {
                            code: CloseCode::Away,
                            reason: "gateway restarting; reconnect and resume",
                            end: SessionEnd::ShuttingDown,
                        }),
                        Outbound::CredentialsExpired => break Ok(Closing {
                            code: CloseCode::Library(CLOSE_TOKEN_EXPIRED),
                            reason: "token_expired",
                            end: SessionEnd::CredentialsExpired,
                        }),
                    },
                    _ = ping.tick() => {
                        if last_heard.elapsed() >= settings.idle_timeout {
                            break Ok(Closing {
                                code: CloseCode::Policy,
                                reason: "no pong within the idle timeout",
                                end: SessionEnd::PeerTimeout,
                            });
                        }
                        Step::Ping
                    }
                };
                step.write(&mut ws, &mut session, settings.write_timeout)
            };
            if let Err(end) = write.await {
                break Err(end);
            }
        };
        // Boxed for the same reason as a write: what the close keeps (the reason, the end)
        // would otherwise take room beside the idle loop's state.
        Box::pin(close(ws, closing, settings.write_timeout)).await
    }
}

/// Ends the connection: the close frame when the server ends it (best effort: the peer may
/// already be gone), then the closing handshake.
async fn close(
    mut ws: WebSocketStream<UpgradedStream>,
    closing: Result<Closing, SessionEnd>,
    write_timeout: Duration,
) -> SessionEnd {
    let end = match closing {
        Ok(Closing { code, reason, end }) => {
            let frame = CloseFrame {
                code,
                reason: reason.into(),
            };
            let _ = timeout(write_timeout, ws.send(WsMessage::Close(Some(frame)))).await;
            end
        }
        Err(end) => end,
    };
    finish_close(&mut ws).await;
    end
}

/// Writes `first`, then every event the session has ready ([`ChatSession::ready_events`]), and
/// flushes once (an agent of a busy site gets its messages in bursts: a group commit publishes
/// many at once, and a `sendto` per event was the largest share of the gateway's CPU at high
/// rates, docs/benchmarks.md). An answer goes first this way too: the events a command caused (a visitor's
/// own message, a replay's first page) usually follow it in the same write.
async fn write_batch(
    ws: &mut WebSocketStream<UpgradedStream>,
    session: &mut ChatSession,
    first: ServerEvent,
    write_timeout: Duration,
) -> Result<(), SessionEnd> {
    let batch = async {
        ws.feed(WsMessage::Text(first.to_json().into())).await?;
        for event in session.ready_events() {
            ws.feed(WsMessage::Text(event.to_json().into())).await?;
        }
        ws.flush().await
    };
    within(write_timeout, batch).await
}

async fn send_message(
    ws: &mut WebSocketStream<UpgradedStream>,
    message: WsMessage,
    write_timeout: Duration,
) -> Result<(), SessionEnd> {
    within(write_timeout, ws.send(message)).await
}

/// A write that must finish within `write_timeout`; a failed or late one ends the session.
async fn within(
    write_timeout: Duration,
    write: impl std::future::Future<Output = Result<(), WsError>>,
) -> Result<(), SessionEnd> {
    match timeout(write_timeout, write).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(SessionEnd::ConnectionError(e.to_string())),
        Err(_) => Err(SessionEnd::ConnectionError("write timed out".into())),
    }
}
