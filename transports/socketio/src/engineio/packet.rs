//! Engine.IO v4 packets: the text encoding (`<type digit><data>`), binary packets (raw bytes in
//! a WebSocket binary frame, `b<base64>` over HTTP long-polling), the polling payload (packets
//! joined by the record separator `\x1e`) and the handshake (`open`) JSON.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// The record separator joining packets in a polling payload.
pub const SEPARATOR: u8 = 0x1e;

/// Why bytes could not be decoded as Engine.IO packets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// An empty packet (no type digit).
    #[error("empty packet")]
    Empty,
    /// The first character is not a known packet type.
    #[error("unknown packet type {0:?}")]
    UnknownType(char),
    /// A polling payload or text frame that is not UTF-8.
    #[error("payload is not valid UTF-8")]
    InvalidUtf8,
    /// A `b`-prefixed packet whose data is not valid base64.
    #[error("invalid base64 in binary packet")]
    InvalidBase64,
    /// An `open` packet whose JSON is not a handshake.
    #[error("invalid handshake: {0}")]
    InvalidHandshake(String),
    /// A packet type that never carries data was sent with some.
    #[error("unexpected data in packet type {0}")]
    UnexpectedData(char),
    /// A polling payload holding more packets than allowed.
    #[error("too many packets in payload (limit {0})")]
    TooManyPackets(usize),
}

/// The handshake data the server sends in the `open` packet.
///
/// Serialized exactly as the protocol shows it:
/// `{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Handshake {
    /// The session id.
    pub sid: String,
    /// Transports the client may upgrade to (`["websocket"]` over polling, `[]` over WebSocket).
    pub upgrades: Vec<String>,
    /// Milliseconds between server pings.
    pub ping_interval: u64,
    /// Milliseconds the client has to answer a ping.
    pub ping_timeout: u64,
    /// The largest polling body (bytes) the server accepts.
    pub max_payload: u64,
}

/// One Engine.IO packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// `0`: the handshake.
    Open(Handshake),
    /// `1`: the transport is closing.
    Close,
    /// `2`: a heartbeat ping (server to client). Data other than `probe` is ignored.
    Ping,
    /// `3`: the answer to [`Packet::Ping`].
    Pong,
    /// `2probe`: the client probes a WebSocket during an upgrade.
    PingProbe,
    /// `3probe`: the server answers the probe.
    PongProbe,
    /// `4`: a text message.
    Message(String),
    /// A binary message (raw over WebSocket, `b<base64>` over polling).
    Binary(Bytes),
    /// `5`: the upgrade completes.
    Upgrade,
    /// `6`: no-op, used to end a pending poll during an upgrade.
    Noop,
}

impl Packet {
    /// Roughly the bytes the packet takes queued: its data, or a few bytes for a control packet.
    pub fn queued_len(&self) -> usize {
        match self {
            Self::Message(text) => text.len() + 1,
            Self::Binary(bytes) => bytes.len() + 1,
            _ => 8,
        }
    }
}

/// One WebSocket data frame as the engine sees it, so the WebSocket side can be driven without
/// a socket (the gateway pumps a real WebSocket into and out of channels of these).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsFrame {
    /// A text frame.
    Text(String),
    /// A binary frame.
    Binary(Bytes),
}

impl Packet {
    /// The text form of a packet; binary packets use the polling form `b<base64>`.
    pub fn encode_text(&self) -> String {
        match self {
            Packet::Open(h) => {
                // Serializing a struct of strings and integers cannot fail.
                let json = serde_json::to_string(h).unwrap_or_default();
                format!("0{json}")
            }
            Packet::Close => "1".into(),
            Packet::Ping => "2".into(),
            Packet::Pong => "3".into(),
            Packet::PingProbe => "2probe".into(),
            Packet::PongProbe => "3probe".into(),
            Packet::Message(m) => format!("4{m}"),
            Packet::Binary(b) => format!("b{}", BASE64.encode(b)),
            Packet::Upgrade => "5".into(),
            Packet::Noop => "6".into(),
        }
    }

    /// The WebSocket frame for this packet: binary packets travel as raw binary frames.
    pub fn to_ws_frame(&self) -> WsFrame {
        match self {
            Packet::Binary(b) => WsFrame::Binary(b.clone()),
            other => WsFrame::Text(other.encode_text()),
        }
    }

    /// Decodes a WebSocket frame (a binary frame is always a binary message).
    pub fn from_ws_frame(frame: WsFrame) -> Result<Packet, PacketError> {
        match frame {
            WsFrame::Binary(b) => Ok(Packet::Binary(b)),
            WsFrame::Text(t) => Packet::decode_text(&t),
        }
    }

    /// Decodes one packet in text form (including the polling `b<base64>` form).
    pub fn decode_text(s: &str) -> Result<Packet, PacketError> {
        let mut chars = s.chars();
        let kind = chars.next().ok_or(PacketError::Empty)?;
        let data = chars.as_str();
        let no_data = |p: Packet| {
            if data.is_empty() {
                Ok(p)
            } else {
                Err(PacketError::UnexpectedData(kind))
            }
        };
        match kind {
            '0' => serde_json::from_str(data)
                .map(Packet::Open)
                .map_err(|e| PacketError::InvalidHandshake(e.to_string())),
            '1' => no_data(Packet::Close),
            '2' if data == "probe" => Ok(Packet::PingProbe),
            '2' => Ok(Packet::Ping),
            '3' if data == "probe" => Ok(Packet::PongProbe),
            '3' => Ok(Packet::Pong),
            '4' => Ok(Packet::Message(data.to_owned())),
            '5' => no_data(Packet::Upgrade),
            '6' => no_data(Packet::Noop),
            'b' => BASE64
                .decode(data)
                .map(|v| Packet::Binary(Bytes::from(v)))
                .map_err(|_| PacketError::InvalidBase64),
            other => Err(PacketError::UnknownType(other)),
        }
    }
}

/// Joins packets into one polling payload (text form, separated by `\x1e`).
pub fn encode_payload(packets: &[Packet]) -> String {
    let mut out = String::new();
    for (i, p) in packets.iter().enumerate() {
        if i > 0 {
            out.push(SEPARATOR as char);
        }
        out.push_str(&p.encode_text());
    }
    out
}

/// Splits a polling payload into packets; at most `max_packets` packets are accepted.
pub fn decode_payload(body: &[u8], max_packets: usize) -> Result<Vec<Packet>, PacketError> {
    let text = std::str::from_utf8(body).map_err(|_| PacketError::InvalidUtf8)?;
    let mut out = Vec::new();
    for part in text.split(SEPARATOR as char) {
        if out.len() >= max_packets {
            return Err(PacketError::TooManyPackets(max_packets));
        }
        out.push(Packet::decode_text(part)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hs() -> Handshake {
        Handshake {
            sid: "lv_VI97HAXpY6yYWAAAC".into(),
            upgrades: vec!["websocket".into()],
            ping_interval: 25000,
            ping_timeout: 20000,
            max_payload: 1_000_000,
        }
    }

    #[test]
    fn handshake_json_shape_matches_the_spec_example() {
        // engine.io-protocol v4, "Handshake":
        // 0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}
        let spec = r#"0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;
        assert_eq!(Packet::Open(hs()).encode_text(), spec);
        assert_eq!(Packet::decode_text(spec), Ok(Packet::Open(hs())));
        let v: serde_json::Value = serde_json::from_str(&spec[1..]).unwrap();
        let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        for k in [
            "sid",
            "upgrades",
            "pingInterval",
            "pingTimeout",
            "maxPayload",
        ] {
            assert!(keys.contains(&k.to_string()), "{k}");
        }
    }

    #[test]
    fn every_packet_type_round_trips() {
        let all = [
            (Packet::Close, "1"),
            (Packet::Ping, "2"),
            (Packet::Pong, "3"),
            (Packet::PingProbe, "2probe"),
            (Packet::PongProbe, "3probe"),
            (Packet::Message("hello".into()), "4hello"),
            (Packet::Message(String::new()), "4"),
            (Packet::Upgrade, "5"),
            (Packet::Noop, "6"),
            (
                Packet::Binary(Bytes::from_static(&[1, 2, 3, 4])),
                "bAQIDBA==",
            ),
        ];
        for (p, s) in all {
            assert_eq!(p.encode_text(), s);
            assert_eq!(Packet::decode_text(s), Ok(p));
        }
    }

    #[test]
    fn spec_message_examples() {
        // engine.io-protocol v4, "Packet encoding": message with "hello" → 4hello,
        // and the UTF-8 example 4€.
        assert_eq!(
            Packet::decode_text("4hello"),
            Ok(Packet::Message("hello".into()))
        );
        assert_eq!(Packet::decode_text("4€"), Ok(Packet::Message("€".into())));
    }

    #[test]
    fn websocket_frames() {
        // Over WebSocket a binary message is the raw bytes: <Buffer 01 02 03 04>.
        let b = Packet::Binary(Bytes::from_static(&[1, 2, 3, 4]));
        assert_eq!(
            b.to_ws_frame(),
            WsFrame::Binary(Bytes::from_static(&[1, 2, 3, 4]))
        );
        assert_eq!(Packet::from_ws_frame(b.to_ws_frame()), Ok(b));
        assert_eq!(
            Packet::Message("hi".into()).to_ws_frame(),
            WsFrame::Text("4hi".into())
        );
        assert_eq!(
            Packet::from_ws_frame(WsFrame::Text("2probe".into())),
            Ok(Packet::PingProbe)
        );
    }

    #[test]
    fn spec_payload_example_round_trips() {
        // engine.io-protocol v4, "HTTP long-polling / Sending and receiving data":
        // 4hello\x1e4€\x1ebAQIDBA==
        let spec = "4hello\x1e4€\x1ebAQIDBA==";
        let packets = vec![
            Packet::Message("hello".into()),
            Packet::Message("€".into()),
            Packet::Binary(Bytes::from_static(&[1, 2, 3, 4])),
        ];
        assert_eq!(encode_payload(&packets), spec);
        assert_eq!(decode_payload(spec.as_bytes(), 16), Ok(packets));
        // engine.io-parser v4 changelog: "4hello\x1ebAQID".
        assert_eq!(
            decode_payload(b"4hello\x1ebAQID", 16),
            Ok(vec![
                Packet::Message("hello".into()),
                Packet::Binary(Bytes::from_static(&[1, 2, 3]))
            ])
        );
    }

    #[test]
    fn single_packet_payload() {
        assert_eq!(decode_payload(b"3", 16), Ok(vec![Packet::Pong]));
        assert_eq!(encode_payload(&[Packet::Noop]), "6");
        assert_eq!(encode_payload(&[]), "");
    }

    #[test]
    fn malformed_inputs_are_errors() {
        assert_eq!(Packet::decode_text(""), Err(PacketError::Empty));
        assert_eq!(Packet::decode_text("7"), Err(PacketError::UnknownType('7')));
        assert_eq!(
            Packet::decode_text("x4"),
            Err(PacketError::UnknownType('x'))
        );
        assert_eq!(Packet::decode_text("€"), Err(PacketError::UnknownType('€')));
        assert_eq!(Packet::decode_text("b!!!"), Err(PacketError::InvalidBase64));
        assert_eq!(
            Packet::decode_text("1x"),
            Err(PacketError::UnexpectedData('1'))
        );
        assert_eq!(
            Packet::decode_text("5x"),
            Err(PacketError::UnexpectedData('5'))
        );
        assert_eq!(
            Packet::decode_text("6x"),
            Err(PacketError::UnexpectedData('6'))
        );
        assert!(matches!(
            Packet::decode_text("0{"),
            Err(PacketError::InvalidHandshake(_))
        ));
        assert!(matches!(
            Packet::decode_text(r#"0{"sid":1}"#),
            Err(PacketError::InvalidHandshake(_))
        ));
        assert_eq!(decode_payload(b"", 16), Err(PacketError::Empty));
        assert_eq!(decode_payload(b"4a\x1e", 16), Err(PacketError::Empty));
        assert_eq!(decode_payload(b"\x1e4a", 16), Err(PacketError::Empty));
        assert_eq!(
            decode_payload(b"4\xff\xfe", 16),
            Err(PacketError::InvalidUtf8)
        );
        assert_eq!(
            decode_payload(b"4a\x1e4b\x1e4c", 2),
            Err(PacketError::TooManyPackets(2))
        );
    }

    #[test]
    fn every_byte_prefix_is_handled_without_panic() {
        for b in 0u8..=255 {
            let s = [b, b'x'];
            let _ = decode_payload(&s, 4);
            let _ = Packet::decode_text(&String::from_utf8_lossy(&s));
        }
    }
}
