//! Socket.IO v5 packets: `<type>[<attachments>-][<namespace>,][<ack id>][<JSON>]`, followed,
//! for BINARY_EVENT and BINARY_ACK, by one Engine.IO binary message per attachment; in the
//! JSON each attachment is a placeholder `{"_placeholder":true,"num":N}`.

use bytes::Bytes;
use serde_json::Value;

/// Event names a client may not emit (they mean something to Socket.IO itself).
pub const RESERVED_EVENTS: [&str; 6] = [
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
];

/// The packet type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketType {
    /// `0`: connect to a namespace (client: auth payload; server: `{"sid":...}`).
    Connect,
    /// `1`: leave a namespace.
    Disconnect,
    /// `2`: an event, `["name", args...]`.
    Event,
    /// `3`: the answer to an event carrying an ack id, `[args...]`.
    Ack,
    /// `4`: the server refuses a CONNECT, `{"message":...}`.
    ConnectError,
    /// `5`: an event with binary attachments.
    BinaryEvent,
    /// `6`: an ack with binary attachments.
    BinaryAck,
}

impl PacketType {
    fn digit(self) -> char {
        match self {
            Self::Connect => '0',
            Self::Disconnect => '1',
            Self::Event => '2',
            Self::Ack => '3',
            Self::ConnectError => '4',
            Self::BinaryEvent => '5',
            Self::BinaryAck => '6',
        }
    }

    fn from_digit(c: char) -> Option<Self> {
        Some(match c {
            '0' => Self::Connect,
            '1' => Self::Disconnect,
            '2' => Self::Event,
            '3' => Self::Ack,
            '4' => Self::ConnectError,
            '5' => Self::BinaryEvent,
            '6' => Self::BinaryAck,
            _ => return None,
        })
    }

    /// Whether the packet carries binary attachments.
    pub fn is_binary(self) -> bool {
        matches!(self, Self::BinaryEvent | Self::BinaryAck)
    }
}

/// Why a Socket.IO packet could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// An empty packet.
    #[error("empty packet")]
    Empty,
    /// The first character is not a packet type.
    #[error("unknown packet type {0:?}")]
    UnknownType(char),
    /// The attachment count of a binary packet is missing or not a number.
    #[error("illegal attachment count")]
    IllegalAttachments,
    /// More attachments than allowed.
    #[error("{count} attachments, at most {max} allowed")]
    TooManyAttachments {
        /// The count the packet announced.
        count: usize,
        /// The configured limit.
        max: usize,
    },
    /// The namespace does not start with `/` or is unterminated garbage.
    #[error("invalid namespace")]
    InvalidNamespace,
    /// The ack id is not a number that fits.
    #[error("invalid ack id")]
    InvalidId,
    /// The data is not JSON.
    #[error("invalid JSON payload: {0}")]
    InvalidJson(String),
    /// The data has the wrong shape for the packet type.
    #[error("invalid payload for {0:?}")]
    InvalidPayload(PacketType),
    /// An event name reserved by Socket.IO.
    #[error("reserved event name {0:?}")]
    ReservedEvent(String),
    /// An ACK without an id.
    #[error("ack without id")]
    MissingAckId,
    /// A binary message arrived while no binary packet was waiting for attachments.
    #[error("unexpected binary attachment")]
    UnexpectedBinary,
    /// A text packet arrived while a binary packet still waited for attachments.
    #[error("text packet while attachments are pending")]
    UnexpectedText,
    /// A placeholder refers to an attachment that does not exist.
    #[error("placeholder refers to missing attachment {0}")]
    BadPlaceholder(u64),
}

/// One Socket.IO packet.
#[derive(Debug, Clone, PartialEq)]
pub struct Packet {
    /// The type.
    pub kind: PacketType,
    /// The namespace (`/` by default).
    pub nsp: String,
    /// The ack id, if the sender wants an answer (EVENT) or answers (ACK).
    pub id: Option<u64>,
    /// The JSON payload, with placeholders where attachments go.
    pub data: Option<Value>,
    /// The binary attachments, in `num` order (binary types only).
    pub attachments: Vec<Bytes>,
}

/// The JSON placeholder for attachment `num`: `{"_placeholder":true,"num":num}`.
pub fn placeholder(num: usize) -> Value {
    serde_json::json!({ "_placeholder": true, "num": num })
}

/// If `v` is an attachment placeholder, its number.
pub fn placeholder_num(v: &Value) -> Option<u64> {
    let o = v.as_object()?;
    if o.get("_placeholder")?.as_bool()? {
        o.get("num")?.as_u64()
    } else {
        None
    }
}

fn check_placeholders(v: &Value, count: usize) -> Result<(), PacketError> {
    if let Some(o) = v.as_object() {
        if o.get("_placeholder").and_then(Value::as_bool) == Some(true) {
            return match o.get("num").and_then(Value::as_u64) {
                Some(n) if usize::try_from(n).is_ok_and(|n| n < count) => Ok(()),
                Some(n) => Err(PacketError::BadPlaceholder(n)),
                None => Err(PacketError::BadPlaceholder(u64::MAX)),
            };
        }
        return o.values().try_for_each(|v| check_placeholders(v, count));
    }
    if let Some(a) = v.as_array() {
        return a.iter().try_for_each(|v| check_placeholders(v, count));
    }
    Ok(())
}

impl Packet {
    fn new(kind: PacketType, nsp: &str, id: Option<u64>, data: Option<Value>) -> Self {
        Self {
            kind,
            nsp: nsp.to_string(),
            id,
            data,
            attachments: vec![],
        }
    }

    /// CONNECT; from a client `data` is the auth payload, from the server `{"sid":...}`.
    pub fn connect(nsp: &str, data: Option<Value>) -> Self {
        Self::new(PacketType::Connect, nsp, None, data)
    }

    /// DISCONNECT.
    pub fn disconnect(nsp: &str) -> Self {
        Self::new(PacketType::Disconnect, nsp, None, None)
    }

    /// CONNECT_ERROR with `{"message": message}`.
    pub fn connect_error(nsp: &str, message: &str) -> Self {
        Self::new(
            PacketType::ConnectError,
            nsp,
            None,
            Some(serde_json::json!({ "message": message })),
        )
    }

    /// EVENT (or BINARY_EVENT when `attachments` is not empty): `[event, args...]`.
    pub fn event(
        nsp: &str,
        event: &str,
        args: Vec<Value>,
        id: Option<u64>,
        attachments: Vec<Bytes>,
    ) -> Self {
        let mut arr = Vec::with_capacity(args.len() + 1);
        arr.push(Value::String(event.to_string()));
        arr.extend(args);
        let kind = if attachments.is_empty() {
            PacketType::Event
        } else {
            PacketType::BinaryEvent
        };
        let mut p = Self::new(kind, nsp, id, Some(Value::Array(arr)));
        p.attachments = attachments;
        p
    }

    /// ACK (or BINARY_ACK when `attachments` is not empty): `[args...]`.
    pub fn ack(nsp: &str, id: u64, args: Vec<Value>, attachments: Vec<Bytes>) -> Self {
        let kind = if attachments.is_empty() {
            PacketType::Ack
        } else {
            PacketType::BinaryAck
        };
        let mut p = Self::new(kind, nsp, Some(id), Some(Value::Array(args)));
        p.attachments = attachments;
        p
    }

    /// For an event: its name and arguments.
    pub fn event_parts(&self) -> Option<(&str, &[Value])> {
        let arr = self.data.as_ref()?.as_array()?;
        let (first, rest) = arr.split_first()?;
        Some((first.as_str()?, rest))
    }

    /// The text part, and the attachments to send after it as binary messages.
    pub fn encode(&self) -> (String, Vec<Bytes>) {
        let mut s = String::new();
        s.push(self.kind.digit());
        if self.kind.is_binary() {
            s.push_str(&self.attachments.len().to_string());
            s.push('-');
        }
        if self.nsp != "/" {
            s.push_str(&self.nsp);
            s.push(',');
        }
        if let Some(id) = self.id {
            s.push_str(&id.to_string());
        }
        if let Some(d) = &self.data {
            s.push_str(&d.to_string());
        }
        let atts = if self.kind.is_binary() {
            self.attachments.clone()
        } else {
            vec![]
        };
        (s, atts)
    }
}

/// Parses the text part of a packet; returns the packet and how many attachments must follow.
pub fn decode_text(s: &str, max_attachments: usize) -> Result<(Packet, usize), PacketError> {
    let mut chars = s.chars();
    let first = chars.next().ok_or(PacketError::Empty)?;
    let kind = PacketType::from_digit(first).ok_or(PacketError::UnknownType(first))?;
    let mut rest = chars.as_str();

    let mut count = 0usize;
    if kind.is_binary() {
        let (n, r) = rest
            .split_once('-')
            .ok_or(PacketError::IllegalAttachments)?;
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
            return Err(PacketError::IllegalAttachments);
        }
        count = n
            .parse::<usize>()
            .map_err(|_| PacketError::IllegalAttachments)?;
        if count > max_attachments {
            return Err(PacketError::TooManyAttachments {
                count,
                max: max_attachments,
            });
        }
        rest = r;
    }

    let mut nsp = "/";
    if rest.starts_with('/') {
        match rest.find(',') {
            Some(i) => {
                nsp = &rest[..i];
                rest = &rest[i + 1..];
            }
            None => {
                nsp = rest;
                rest = "";
            }
        }
        if nsp.chars().any(|c| c.is_control()) {
            return Err(PacketError::InvalidNamespace);
        }
    }

    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let id = if digits > 0 {
        let id = rest[..digits]
            .parse::<u64>()
            .map_err(|_| PacketError::InvalidId)?;
        rest = &rest[digits..];
        Some(id)
    } else {
        None
    };

    let data = if rest.is_empty() {
        None
    } else {
        Some(
            serde_json::from_str::<Value>(rest)
                .map_err(|e| PacketError::InvalidJson(e.to_string()))?,
        )
    };

    let invalid = || PacketError::InvalidPayload(kind);
    match kind {
        PacketType::Connect => {
            if !matches!(data, None | Some(Value::Object(_))) {
                return Err(invalid());
            }
        }
        PacketType::Disconnect => {
            if data.is_some() {
                return Err(invalid());
            }
        }
        PacketType::ConnectError => {
            if !matches!(data, Some(Value::Object(_)) | Some(Value::String(_))) {
                return Err(invalid());
            }
        }
        PacketType::Event | PacketType::BinaryEvent => {
            let arr = data
                .as_ref()
                .and_then(Value::as_array)
                .ok_or_else(invalid)?;
            match arr.first() {
                Some(Value::String(name)) if RESERVED_EVENTS.contains(&name.as_str()) => {
                    return Err(PacketError::ReservedEvent(name.clone()))
                }
                Some(Value::String(_)) | Some(Value::Number(_)) => {}
                _ => return Err(invalid()),
            }
        }
        PacketType::Ack | PacketType::BinaryAck => {
            if !matches!(data, Some(Value::Array(_))) {
                return Err(invalid());
            }
            if id.is_none() {
                return Err(PacketError::MissingAckId);
            }
        }
    }
    if let Some(d) = &data {
        check_placeholders(d, if kind.is_binary() { count } else { 0 })?;
    }
    Ok((
        Packet {
            kind,
            nsp: nsp.to_string(),
            id,
            data,
            attachments: Vec::with_capacity(count),
        },
        count,
    ))
}

/// A stateful decoder: text packets, and binary packets reassembled from the attachments that
/// follow them.
#[derive(Debug)]
pub struct Decoder {
    max_attachments: usize,
    /// Boxed: a connection keeps its decoder for its life, and this is rarely there.
    pending: Option<Box<(Packet, usize)>>,
}

impl Decoder {
    /// A decoder accepting at most `max_attachments` attachments per packet.
    pub fn new(max_attachments: usize) -> Self {
        Self {
            max_attachments,
            pending: None,
        }
    }

    /// Whether a binary packet is waiting for attachments.
    pub fn is_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Feeds a text message; returns a packet once complete (a binary packet with attachments
    /// completes through [`Decoder::decode_binary`]).
    pub fn decode_text(&mut self, s: &str) -> Result<Option<Packet>, PacketError> {
        if self.pending.is_some() {
            return Err(PacketError::UnexpectedText);
        }
        let (packet, count) = decode_text(s, self.max_attachments)?;
        if count == 0 {
            Ok(Some(packet))
        } else {
            self.pending = Some(Box::new((packet, count)));
            Ok(None)
        }
    }

    /// Feeds a binary message (the next attachment of the pending packet).
    pub fn decode_binary(&mut self, b: Bytes) -> Result<Option<Packet>, PacketError> {
        let Some(pending) = self.pending.take() else {
            return Err(PacketError::UnexpectedBinary);
        };
        let (mut packet, count) = *pending;
        packet.attachments.push(b);
        if packet.attachments.len() == count {
            Ok(Some(packet))
        } else {
            self.pending = Some(Box::new((packet, count)));
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dec(s: &str) -> Result<Packet, PacketError> {
        decode_text(s, 10).map(|(p, _)| p)
    }

    fn round_trip(s: &str) -> Packet {
        let p = dec(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(p.encode().0, s, "re-encoding {s}");
        p
    }

    // Examples from the socket.io-protocol v5 specification, "Packet encoding" and
    // "Exchange protocol" sections (shown there with the Engine.IO `4` prefix stripped).

    #[test]
    fn spec_connect_examples() {
        // "Connection to a namespace": `0` (main namespace) …
        let p = round_trip("0");
        assert_eq!(
            (p.kind, p.nsp.as_str(), p.data),
            (PacketType::Connect, "/", None)
        );
        // … `0/admin,` (custom namespace, no auth) …
        let p = round_trip("0/admin,");
        assert_eq!(p.nsp, "/admin");
        // … with auth: `0/admin,{"token":"123"}` …
        let p = round_trip(r#"0/admin,{"token":"123"}"#);
        assert_eq!(p.data, Some(json!({"token":"123"})));
        // … and the server's answer `0{"sid":"oSO0OpakMV_3jnilAAAA"}`.
        let p = round_trip(r#"0{"sid":"oSO0OpakMV_3jnilAAAA"}"#);
        assert_eq!(p.data, Some(json!({"sid":"oSO0OpakMV_3jnilAAAA"})));
    }

    #[test]
    fn spec_connect_error_example() {
        // `4{"message":"Not authorized"}`
        let p = round_trip(r#"4{"message":"Not authorized"}"#);
        assert_eq!(p.kind, PacketType::ConnectError);
        assert_eq!(
            Packet::connect_error("/", "Not authorized").encode().0,
            r#"4{"message":"Not authorized"}"#
        );
        assert_eq!(
            Packet::connect_error("/admin", "Invalid namespace")
                .encode()
                .0,
            r#"4/admin,{"message":"Invalid namespace"}"#
        );
    }

    #[test]
    fn spec_event_examples() {
        // `2["foo"]`, `2/admin,["bar"]`, `2["hello","world"]`
        let p = round_trip(r#"2["foo"]"#);
        assert_eq!(p.event_parts(), Some(("foo", &[][..])));
        let p = round_trip(r#"2/admin,["bar"]"#);
        assert_eq!(p.nsp, "/admin");
        let p = round_trip(r#"2["hello","world"]"#);
        assert_eq!(p.event_parts(), Some(("hello", &[json!("world")][..])));
        assert_eq!(
            Packet::event("/", "hello", vec![json!("world")], None, vec![])
                .encode()
                .0,
            r#"2["hello","world"]"#
        );
    }

    #[test]
    fn spec_ack_examples() {
        // `2/admin,456["project:delete",123]` answered by `3/admin,456[]`.
        let p = round_trip(r#"2/admin,456["project:delete",123]"#);
        assert_eq!((p.nsp.as_str(), p.id), ("/admin", Some(456)));
        assert_eq!(p.event_parts(), Some(("project:delete", &[json!(123)][..])));
        let p = round_trip("3/admin,456[]");
        assert_eq!((p.kind, p.id), (PacketType::Ack, Some(456)));
        assert_eq!(
            Packet::ack("/admin", 456, vec![], vec![]).encode().0,
            "3/admin,456[]"
        );
        // `212["foo"]`: an event on `/` with ack id 12.
        let p = round_trip(r#"212["foo"]"#);
        assert_eq!(p.id, Some(12));
    }

    #[test]
    fn spec_disconnect_example() {
        // `1/admin,`
        let p = round_trip("1/admin,");
        assert_eq!((p.kind, p.nsp.as_str()), (PacketType::Disconnect, "/admin"));
        round_trip("1");
    }

    #[test]
    fn spec_binary_examples() {
        // `51-["baz",{"_placeholder":true,"num":0}]` + <Buffer 01 02 03>
        let mut d = Decoder::new(10);
        let text = r#"51-["baz",{"_placeholder":true,"num":0}]"#;
        assert_eq!(d.decode_text(text), Ok(None));
        assert!(d.is_pending());
        let p = d
            .decode_binary(Bytes::from_static(&[1, 2, 3]))
            .unwrap()
            .unwrap();
        assert_eq!(p.kind, PacketType::BinaryEvent);
        assert_eq!(p.attachments, vec![Bytes::from_static(&[1, 2, 3])]);
        let (_, args) = p.event_parts().unwrap();
        assert_eq!(placeholder_num(&args[0]), Some(0));
        let (enc, atts) = p.encode();
        assert_eq!(enc, text);
        assert_eq!(atts.len(), 1);
        // `61-/admin,456[{"_placeholder":true,"num":0}]` + <Buffer 03 02 01>
        let text = r#"61-/admin,456[{"_placeholder":true,"num":0}]"#;
        assert_eq!(d.decode_text(text), Ok(None));
        let p = d
            .decode_binary(Bytes::from_static(&[3, 2, 1]))
            .unwrap()
            .unwrap();
        assert_eq!(
            (p.kind, p.nsp.as_str(), p.id),
            (PacketType::BinaryAck, "/admin", Some(456))
        );
        assert_eq!(p.encode().0, text);
        assert!(!d.is_pending());
    }

    #[test]
    fn multiple_attachments_reassemble_in_order() {
        let p = Packet::event(
            "/",
            "files",
            vec![placeholder(0), json!({"nested": [placeholder(1)]})],
            Some(7),
            vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")],
        );
        let (text, atts) = p.encode();
        assert!(text.starts_with("52-7[\"files\""));
        let mut d = Decoder::new(2);
        assert_eq!(d.decode_text(&text), Ok(None));
        assert_eq!(d.decode_binary(atts[0].clone()), Ok(None));
        assert_eq!(d.decode_binary(atts[1].clone()), Ok(Some(p)));
    }

    #[test]
    fn attachment_limit() {
        let text = r#"53-["x",{"_placeholder":true,"num":0}]"#;
        assert_eq!(
            decode_text(text, 2).map(|_| ()),
            Err(PacketError::TooManyAttachments { count: 3, max: 2 })
        );
        assert_eq!(
            decode_text("599999999999999999999999-[\"x\"]", 2).map(|_| ()),
            Err(PacketError::IllegalAttachments)
        );
    }

    #[test]
    fn malformed_packets_are_errors() {
        let cases: &[(&str, PacketError)] = &[
            ("", PacketError::Empty),
            ("7", PacketError::UnknownType('7')),
            ("a", PacketError::UnknownType('a')),
            ("5", PacketError::IllegalAttachments),
            ("5-[\"x\"]", PacketError::IllegalAttachments),
            ("5a-[\"x\"]", PacketError::IllegalAttachments),
            ("51[\"x\"]", PacketError::IllegalAttachments),
            ("2", PacketError::InvalidPayload(PacketType::Event)),
            ("2[]", PacketError::InvalidPayload(PacketType::Event)),
            ("2{}", PacketError::InvalidPayload(PacketType::Event)),
            ("2[{}]", PacketError::InvalidPayload(PacketType::Event)),
            ("2\"x\"", PacketError::InvalidPayload(PacketType::Event)),
            ("0[]", PacketError::InvalidPayload(PacketType::Connect)),
            ("0\"tok\"", PacketError::InvalidPayload(PacketType::Connect)),
            ("1{}", PacketError::InvalidPayload(PacketType::Disconnect)),
            ("4", PacketError::InvalidPayload(PacketType::ConnectError)),
            ("3[]", PacketError::MissingAckId),
            ("31", PacketError::InvalidPayload(PacketType::Ack)),
            ("31{}", PacketError::InvalidPayload(PacketType::Ack)),
            ("299999999999999999999999[\"x\"]", PacketError::InvalidId),
            (
                r#"2["disconnect"]"#,
                PacketError::ReservedEvent("disconnect".into()),
            ),
            (
                r#"2["x",{"_placeholder":true,"num":0}]"#,
                PacketError::BadPlaceholder(0),
            ),
            (
                r#"51-["x",{"_placeholder":true,"num":1}]"#,
                PacketError::BadPlaceholder(1),
            ),
            (
                r#"51-["x",{"_placeholder":true,"num":"0"}]"#,
                PacketError::BadPlaceholder(u64::MAX),
            ),
        ];
        for (s, e) in cases {
            assert_eq!(dec(s).as_ref(), Err(e), "{s:?}");
        }
        assert!(matches!(dec("2[\"x\""), Err(PacketError::InvalidJson(_))));
        assert!(matches!(
            dec("2/admin,[oops]"),
            Err(PacketError::InvalidJson(_))
        ));
        assert!(matches!(
            dec("0/ad\u{0}min,"),
            Err(PacketError::InvalidNamespace)
        ));
    }

    #[test]
    fn decoder_sequencing_errors() {
        let mut d = Decoder::new(4);
        assert_eq!(
            d.decode_binary(Bytes::from_static(b"x")),
            Err(PacketError::UnexpectedBinary)
        );
        assert_eq!(
            d.decode_text(r#"51-["x",{"_placeholder":true,"num":0}]"#),
            Ok(None)
        );
        assert_eq!(d.decode_text(r#"2["x"]"#), Err(PacketError::UnexpectedText));
    }

    #[test]
    fn numeric_event_names_and_namespace_without_comma() {
        // socket.io-parser accepts numbers as event names.
        assert!(dec("2[1,2]").is_ok());
        // A namespace running to the end of the packet.
        assert_eq!(dec("0/admin").map(|p| p.nsp), Ok("/admin".to_string()));
    }

    #[test]
    fn arbitrary_prefixes_never_panic() {
        let seeds = [
            "0", "1", "2", "3", "4", "5", "6", "5-", "51-", "/", "/,", "9",
        ];
        for s in seeds {
            for tail in ["", "/", ",", "1", "[", "{", "-", "\u{1e}", "é", "[\"a\"]"] {
                let _ = decode_text(&format!("{s}{tail}"), 3);
            }
        }
    }
}
