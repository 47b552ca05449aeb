//! # chat-transport-upgraded
//!
//! An HTTP/1.1 connection after the gateway wrote `101 Switching Protocols`, as the server side
//! of a WebSocket. Both WebSocket carriers use it: the raw chat transport
//! (`chat-transport-websocket`) and the gateway's Engine.IO link (Socket.IO over WebSocket), so
//! neither borrows the other's types. It knows no chat and no protocol on top of WebSocket: the
//! stream, the bytes the HTTP layer read past the request head, a small-buffer tungstenite
//! configuration, and the closing handshake.

#![warn(missing_docs)]

use futures_util::SinkExt;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;

/// Any byte stream an upgraded HTTP/1.1 connection can be (plain TCP, TLS).
pub trait RawStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> RawStream for T {}

/// The boxed byte stream of an upgraded connection.
pub type UpgradedStream = Box<dyn RawStream>;

/// The raw stream right after the `101` was written, and any bytes the HTTP layer had already
/// read past the request head (a client may send its first frame in the same write as the
/// handshake).
pub struct Upgraded {
    /// The stream.
    pub stream: UpgradedStream,
    /// Bytes already read from `stream` that belong to the WebSocket.
    pub read_ahead: Vec<u8>,
}

impl Upgraded {
    /// A connection with nothing read ahead.
    pub fn new(stream: UpgradedStream) -> Self {
        Self {
            stream,
            read_ahead: Vec::new(),
        }
    }

    /// The server side of the WebSocket on this connection.
    pub async fn into_websocket(self, config: WebSocketConfig) -> WebSocketStream<UpgradedStream> {
        if self.read_ahead.is_empty() {
            WebSocketStream::from_raw_socket(self.stream, Role::Server, Some(config)).await
        } else {
            WebSocketStream::from_partially_read(
                self.stream,
                self.read_ahead,
                Role::Server,
                Some(config),
            )
            .await
        }
    }
}

/// Bytes of frames tungstenite gathers before it writes on its own: a batch of small events
/// goes out in one write, a large batch in pieces of about this size. Only bursts fill it; an
/// idle connection's buffer holds its last frame, as with no batching (docs/benchmarks.md,
/// "Events written in batches").
pub const BATCH_WRITE_BYTES: usize = 16 * 1024;

/// The tungstenite configuration of a server WebSocket that accepts frames and messages of at
/// most `max_message_bytes` and buffers at most `write_buffer_limit` bytes of writes: a
/// 512-byte read buffer and a bounded write buffer instead of the 128 KiB / unbounded
/// defaults, which would cost ~135 KiB per idle connection. The read buffer is what every idle
/// connection keeps (a client's command is one to a few hundred bytes); a larger frame grows it
/// to the frame's size while it is read, up to `max_message_bytes`, in a few more reads.
///
/// Writes gather up to [`BATCH_WRITE_BYTES`] before tungstenite writes on its own: a transport
/// writes a batch of events (`feed`) and flushes once, so a burst goes out in one system call
/// instead of one per event. Every write of ours ends with a flush (`send` or an explicit one).
pub fn websocket_config(max_message_bytes: usize, write_buffer_limit: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(512)
        .write_buffer_size(BATCH_WRITE_BYTES)
        .max_write_buffer_size(write_buffer_limit)
        .max_message_size(Some(max_message_bytes))
        .max_frame_size(Some(max_message_bytes))
}

/// Completes the closing handshake and flushes it: `SinkExt::close` also answers a close the
/// peer started (tungstenite queues the reply), and the explicit flush matters because
/// tungstenite does not flush that reply while the edge's stream buffers writes.
pub async fn finish_close(ws: &mut WebSocketStream<UpgradedStream>) {
    let _ = timeout(Duration::from_secs(2), SinkExt::close(ws)).await;
    let _ = timeout(Duration::from_secs(1), ws.get_mut().flush()).await;
    let _ = timeout(Duration::from_secs(1), ws.get_mut().shutdown()).await;
}
