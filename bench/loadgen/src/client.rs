//! One chat client over WebSocket, speaking either the gateway's raw JSON frames or Engine.IO v4 /
//! Socket.IO v5 directly (no client library, so every system gets the same cheap client): the
//! handshake up to the `welcome` event, the `send` frame, and a cheap classification of what the
//! server sends, reading the embedded send timestamp out of delivered messages.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::BenchError;

pub type Ws = WebSocketStream<TcpStream>;

/// How long one connection may take from TCP connect to `welcome`.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    RawWs,
    SocketIo,
}

/// Where and how a system is reached.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub proto: Proto,
    /// Path and query of a visitor's WebSocket.
    pub visitor_path: String,
    /// Path and query of an agent's WebSocket, without credentials.
    pub agent_path: String,
}

#[derive(Clone, Debug)]
pub enum Role {
    Visitor,
    Agent { token: String },
}

/// What a server frame is, as far as the load generator cares.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    /// Engine.IO ping: answer with a pong.
    Ping,
    /// The answer to a `send`; `error` when it carries one.
    Ack {
        error: bool,
    },
    /// A delivered chat message with the benchmark's message number and send timestamp (ns since
    /// the run's start) when its body is one of ours.
    Message(Option<(u64, u64)>),
    /// The server ended the session.
    Closed,
    Other,
}

/// Opens a client from `source` and waits for its `welcome`; agents on the raw protocol then
/// send `resume` (nothing seen yet) so that live messages are not held for the resume grace.
pub async fn connect(endpoint: &Endpoint, role: &Role, source: IpAddr) -> Result<Ws, BenchError> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, connect_inner(endpoint, role, source))
        .await
        .map_err(|_| BenchError::Client(format!("no welcome within {HANDSHAKE_TIMEOUT:?}")))?
}

async fn connect_inner(endpoint: &Endpoint, role: &Role, source: IpAddr) -> Result<Ws, BenchError> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    let stream = socket.connect(endpoint.addr).await?;
    stream.set_nodelay(true)?;
    let path = match (role, endpoint.proto) {
        (Role::Visitor, _) => endpoint.visitor_path.clone(),
        (Role::Agent { token }, Proto::RawWs) => format!("{}&token={token}", endpoint.agent_path),
        (Role::Agent { .. }, Proto::SocketIo) => endpoint.agent_path.clone(),
    };
    let request = format!("ws://{}{}", endpoint.addr, path)
        .into_client_request()
        .map_err(|e| BenchError::Client(format!("request: {e}")))?;
    let (mut ws, _) = tokio_tungstenite::client_async(request, stream)
        .await
        .map_err(|e| BenchError::Client(format!("upgrade: {e}")))?;
    if endpoint.proto == Proto::SocketIo {
        let open = next_text(&mut ws).await?;
        if !open.starts_with('0') {
            return Err(BenchError::Client(format!(
                "expected Engine.IO open, got {open:.80}"
            )));
        }
        let connect = match role {
            Role::Visitor => "40".to_string(),
            Role::Agent { token } => format!(r#"40{{"token":"{token}"}}"#),
        };
        send_text(&mut ws, connect).await?;
    }
    loop {
        let text = next_text(&mut ws).await?;
        match endpoint.proto {
            Proto::RawWs if text.starts_with(r#"{"type":"welcome""#) => break,
            Proto::SocketIo if text.starts_with(r#"42["welcome""#) => break,
            Proto::SocketIo if text == "2" => send_text(&mut ws, "3".to_string()).await?,
            Proto::SocketIo if text.starts_with("44") => {
                return Err(BenchError::Client(format!("CONNECT refused: {text:.200}")))
            }
            _ => {}
        }
    }
    if let (Role::Agent { .. }, Proto::RawWs) = (role, endpoint.proto) {
        send_text(
            &mut ws,
            r#"{"type":"resume","id":"resume","cursors":{}}"#.to_string(),
        )
        .await?;
    }
    Ok(ws)
}

async fn next_text(ws: &mut Ws) -> Result<String, BenchError> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return Ok(t.as_str().to_owned()),
            Some(Ok(Message::Close(c))) => {
                return Err(BenchError::Client(format!(
                    "closed during handshake: {c:?}"
                )))
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(BenchError::Client(format!("read: {e}"))),
            None => return Err(BenchError::Client("closed during handshake".into())),
        }
    }
}

async fn send_text(ws: &mut Ws, text: String) -> Result<(), BenchError> {
    ws.send(Message::text(text))
        .await
        .map_err(|e| BenchError::Client(format!("write: {e}")))
}

/// A message body of exactly `len` bytes (at least the header's) carrying the message number
/// and its scheduled send time.
pub fn body(number: u64, sent_ns: u64, len: usize) -> String {
    let mut body = format!("bench:{number}:{sent_ns}:");
    while body.len() < len {
        body.push('x');
    }
    body
}

/// The frame of a visitor's `send` command; the request id is the message number.
pub fn send_frame(proto: Proto, number: u64, body: &str) -> String {
    match proto {
        Proto::RawWs => format!(
            r#"{{"type":"send","id":"{number}","client_msg_id":"b{number}","body":"{body}"}}"#
        ),
        Proto::SocketIo => {
            format!(r#"42{number}["send",{{"body":"{body}","client_msg_id":"b{number}"}}]"#)
        }
    }
}

/// Classifies a server text frame without parsing all of it: the tag (raw) or packet prefix
/// (Socket.IO) says what it is; a message's body is found by its `bench:` header.
pub fn classify(proto: Proto, text: &str) -> Incoming {
    match proto {
        Proto::RawWs => {
            let Some(kind) = raw_type(text) else {
                return Incoming::Other;
            };
            match kind {
                "message" => Incoming::Message(bench_stamp(text)),
                "ack" => Incoming::Ack { error: false },
                "error" => Incoming::Ack { error: true },
                _ => Incoming::Other,
            }
        }
        Proto::SocketIo => {
            if text == "2" {
                Incoming::Ping
            } else if text.starts_with(r#"42["message""#) {
                Incoming::Message(bench_stamp(text))
            } else if let Some(rest) = text.strip_prefix("43") {
                let args = rest.trim_start_matches(|c: char| c.is_ascii_digit());
                Incoming::Ack {
                    error: args.starts_with(r#"[{"error""#),
                }
            } else if text.starts_with("41") || text == "1" {
                Incoming::Closed
            } else {
                Incoming::Other
            }
        }
    }
}

fn raw_type(text: &str) -> Option<&str> {
    let start = text.find(r#""type":""#)? + 8;
    let len = text[start..].find('"')?;
    Some(&text[start..start + len])
}

fn bench_stamp(text: &str) -> Option<(u64, u64)> {
    let start = text.find("bench:")? + 6;
    let mut parts = text[start..].splitn(3, ':');
    let number = parts.next()?.parse().ok()?;
    let sent_ns = parts.next()?.parse().ok()?;
    Some((number, sent_ns))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_the_requested_length_and_round_trips() {
        let b = body(42, 123_456_789, 100);
        assert_eq!(b.len(), 100);
        let frame = format!(r#"42["message",{{"message":{{"seq":1,"body":"{b}"}}}},"off"]"#);
        assert_eq!(
            classify(Proto::SocketIo, &frame),
            Incoming::Message(Some((42, 123_456_789)))
        );
        let raw = format!(r#"{{"type":"message","message":{{"body":"{b}"}}}}"#);
        assert_eq!(
            classify(Proto::RawWs, &raw),
            Incoming::Message(Some((42, 123_456_789)))
        );
    }

    #[test]
    fn classifies_acks_pings_and_errors() {
        assert_eq!(classify(Proto::SocketIo, "2"), Incoming::Ping);
        assert_eq!(
            classify(Proto::SocketIo, r#"4317[{"message":{}}]"#),
            Incoming::Ack { error: false }
        );
        assert_eq!(
            classify(Proto::SocketIo, r#"4317[{"error":{"code":"x"}}]"#),
            Incoming::Ack { error: true }
        );
        assert_eq!(
            classify(Proto::RawWs, r#"{"type":"ack","id":"1"}"#),
            Incoming::Ack { error: false }
        );
        assert_eq!(
            classify(Proto::RawWs, r#"{"type":"error","id":"1"}"#),
            Incoming::Ack { error: true }
        );
        assert_eq!(
            classify(Proto::RawWs, r#"{"type":"presence"}"#),
            Incoming::Other
        );
    }

    #[test]
    fn send_frames_are_json() {
        let raw = send_frame(Proto::RawWs, 7, "hi");
        assert!(serde_json::from_str::<serde_json::Value>(&raw).is_ok());
        let sio = send_frame(Proto::SocketIo, 7, "hi");
        assert!(serde_json::from_str::<serde_json::Value>(&sio[3..]).is_ok());
    }
}
