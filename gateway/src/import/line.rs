//! One line of an import file: the JSON-lines format of `docs/import.md`, how its old ids map
//! to ours, and a line reader that never holds more than one bounded line.

use std::io::BufRead;

use chat_core::model::{ConversationId, ConversationStatus, Role, Sender, VisitorId};
use chat_core::store::ImportedMessage;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

/// Longest line accepted, in bytes: a message of the longest configurable body fully escaped
/// (`\uXXXX` per character) fits many times over, and a broken file cannot fill memory.
pub const MAX_LINE_BYTES: usize = 256 * 1024;

/// Longest old id (conversation, visitor, message, agent) or name accepted, in bytes.
const MAX_ID_BYTES: usize = 256;

/// The UUIDv5 namespace of imported ids (itself the v5 of `chat-gateway import` in the URL
/// namespace), so every run and every gateway maps an old id to the same UUID.
pub fn namespace() -> Uuid {
    Uuid::new_v5(&Uuid::NAMESPACE_URL, b"chat-gateway import")
}

/// Our conversation id for the old system's conversation `old_id` on `site`.
pub fn conversation_id(site: &str, old_id: &str) -> ConversationId {
    ConversationId(Uuid::new_v5(
        &namespace(),
        format!("conversation\n{site}\n{old_id}").as_bytes(),
    ))
}

/// Our visitor id for the old system's user or visitor `old_id` on `site`.
pub fn visitor_id(site: &str, old_id: &str) -> VisitorId {
    VisitorId(Uuid::new_v5(
        &namespace(),
        format!("visitor\n{site}\n{old_id}").as_bytes(),
    ))
}

/// Our `client_msg_id` for the old system's message `old_id`: what makes a second run find it.
pub fn client_msg_id(old_id: &str) -> String {
    format!("import:{old_id}")
}

/// An old id: Prisma's are strings (cuid, uuid) or integers (`autoincrement()`), and an export
/// that does not cast them to text writes them as JSON numbers.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OldId {
    Text(String),
    Number(i64),
}

impl OldId {
    fn into_string(self) -> String {
        match self {
            Self::Text(text) => text,
            Self::Number(n) => n.to_string(),
        }
    }
}

/// One line as written by the export (unknown fields are ignored).
#[derive(Debug, Deserialize)]
struct Line {
    conversation_id: OldId,
    #[serde(default = "default_site")]
    site: String,
    /// Missing or null (a conversation without a user): the conversation is its own anonymous
    /// visitor, `anonymous-<conversation_id>`.
    #[serde(default)]
    visitor_id: Option<OldId>,
    /// Accepted and not stored: visitors are anonymous here.
    #[serde(default)]
    #[allow(dead_code)]
    visitor_name: Option<String>,
    sender: Role,
    #[serde(default)]
    agent_id: Option<OldId>,
    #[serde(default)]
    agent_name: Option<String>,
    message_id: OldId,
    body: String,
    created_at: String,
    #[serde(default = "default_status")]
    status: ConversationStatus,
}

fn default_site() -> String {
    "default".into()
}

fn default_status() -> ConversationStatus {
    ConversationStatus::Closed
}

/// The agent id written for agent messages that name none.
pub const DEFAULT_AGENT_ID: &str = "imported";

/// Parses and checks one line; the error says what is wrong with it.
pub fn parse(text: &str, max_body_chars: usize) -> Result<ImportedMessage, String> {
    let line: Line = serde_json::from_str(text).map_err(|e| {
        // serde's "at line 1 column N" would be mistaken for the file's line number.
        let full = e.to_string();
        let what = full
            .rsplit_once(" at line ")
            .map_or(full.as_str(), |(what, _)| what);
        format!("not a valid line: {what} (column {})", e.column())
    })?;
    let old_conversation = line.conversation_id.into_string();
    let old_visitor = line
        .visitor_id
        .map(OldId::into_string)
        .unwrap_or_else(|| format!("anonymous-{old_conversation}"));
    let old_message = line.message_id.into_string();
    for (field, value) in [
        ("conversation_id", &old_conversation),
        ("visitor_id", &old_visitor),
        ("message_id", &old_message),
    ] {
        if value.trim().is_empty() || value.len() > MAX_ID_BYTES {
            return Err(format!("{field} must be 1 to {MAX_ID_BYTES} bytes"));
        }
    }
    if line.site.is_empty()
        || line.site.len() > 64
        || !line
            .site
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
    {
        return Err("site must be 1 to 64 of A-Z a-z 0-9 - _".into());
    }
    if line.body.trim().is_empty() {
        return Err("body is empty".into());
    }
    let chars = line.body.chars().count();
    if chars > max_body_chars {
        return Err(format!(
            "body has {chars} characters, over CHAT_MAX_MESSAGE_CHARS ({max_body_chars})"
        ));
    }
    let created_at = DateTime::parse_from_rfc3339(&line.created_at)
        .map_err(|e| format!("created_at is not an RFC 3339 time: {e}"))?
        .with_timezone(&Utc);
    let visitor = visitor_id(&line.site, &old_visitor);
    let sender = match line.sender {
        Role::Visitor => Sender {
            role: Role::Visitor,
            id: visitor.to_string(),
            name: None,
        },
        Role::Agent => {
            let id = line
                .agent_id
                .map(OldId::into_string)
                .filter(|id| !id.trim().is_empty())
                .unwrap_or_else(|| DEFAULT_AGENT_ID.into());
            let name = line
                .agent_name
                .filter(|name| !name.trim().is_empty())
                .unwrap_or_else(|| id.clone());
            if id.len() > MAX_ID_BYTES || name.len() > MAX_ID_BYTES {
                return Err(format!(
                    "agent_id and agent_name must be at most {MAX_ID_BYTES} bytes"
                ));
            }
            Sender {
                role: Role::Agent,
                id,
                name: Some(name),
            }
        }
    };
    Ok(ImportedMessage {
        conversation_id: conversation_id(&line.site, &old_conversation),
        site_id: line.site,
        visitor_id: visitor,
        status: line.status,
        client_msg_id: client_msg_id(&old_message),
        sender,
        body: line.body,
        created_at,
    })
}

/// What [`read_line`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    /// A line (without its `\n`) is in the buffer.
    Line,
    /// The line was longer than the limit; it was read past and dropped.
    TooLong,
    /// The end of the input.
    End,
}

/// Reads the next line into `buf` (cleared first), keeping at most `max` bytes of it.
pub fn read_line(
    reader: &mut impl BufRead,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Read> {
    buf.clear();
    let mut too_long = false;
    let mut any = false;
    loop {
        let available = match reader.fill_buf() {
            Ok(available) => available,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(match (any, too_long) {
                (false, _) => Read::End,
                (true, true) => Read::TooLong,
                (true, false) => Read::Line,
            });
        }
        any = true;
        let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..i], Some(i + 1)),
            None => (available, None),
        };
        if !too_long {
            if buf.len() + chunk.len() > max {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(chunk);
            }
        }
        let consumed = done.unwrap_or(available.len());
        reader.consume(consumed);
        if done.is_some() {
            return Ok(if too_long { Read::TooLong } else { Read::Line });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_scoped_by_site() {
        assert_eq!(
            conversation_id("default", "c1"),
            conversation_id("default", "c1")
        );
        assert_ne!(
            conversation_id("default", "c1"),
            conversation_id("shop", "c1")
        );
        assert_ne!(
            conversation_id("default", "c1").0,
            visitor_id("default", "c1").0
        );
        // A fixed value: changing the mapping would duplicate every re-imported history.
        assert_eq!(
            conversation_id("default", "c1").to_string(),
            Uuid::new_v5(&namespace(), b"conversation\ndefault\nc1").to_string()
        );
        assert_eq!(namespace().get_version_num(), 5);
    }

    #[test]
    fn parses_a_line_and_refuses_bad_ones() {
        let good = r#"{"conversation_id":"c1","visitor_id":"u1","sender":"agent","agent_name":"Bob","message_id":"m1","body":"Hi","created_at":"2024-05-01T10:00:00.5+02:00","status":"open","extra":1}"#;
        let m = parse(good, 4000).unwrap();
        assert_eq!(m.site_id, "default");
        assert_eq!(m.sender.id, DEFAULT_AGENT_ID);
        assert_eq!(m.sender.name.as_deref(), Some("Bob"));
        assert_eq!(m.created_at.to_rfc3339(), "2024-05-01T08:00:00.500+00:00");
        assert_eq!(m.client_msg_id, "import:m1");
        assert_eq!(m.status, ConversationStatus::Open);
        // Integer ids (Prisma's autoincrement) and a conversation without a user.
        let numeric = r#"{"conversation_id":12,"visitor_id":null,"sender":"agent","agent_id":3,"message_id":99,"body":"Hi","created_at":"2024-05-01T10:00:00Z"}"#;
        let m = parse(numeric, 4000).unwrap();
        assert_eq!(m.conversation_id, conversation_id("default", "12"));
        assert_eq!(m.visitor_id, visitor_id("default", "anonymous-12"));
        assert_eq!(m.client_msg_id, "import:99");
        assert_eq!(m.sender.id, "3");
        assert_eq!(m.status, ConversationStatus::Closed);
        for (bad, why) in [
            ("not json", "not a valid line"),
            (&good.replace("\"agent\"", "\"admin\""), "not a valid line"),
            (
                &good.replace("2024-05-01T10:00:00.5+02:00", "yesterday"),
                "RFC 3339",
            ),
            (&good.replace("\"Hi\"", "\"   \""), "empty"),
            (
                &good.replace("\"Hi\"", "\"Hello\""),
                "over CHAT_MAX_MESSAGE_CHARS",
            ),
            (&good.replace("\"m1\"", "\"\""), "message_id"),
            (
                &good.replace(
                    r#""conversation_id":"c1","#,
                    r#""site":"a b","conversation_id":"c1","#,
                ),
                "site",
            ),
        ] {
            let error = parse(bad, 4).unwrap_err();
            assert!(error.contains(why), "{bad}: {error}");
        }
    }

    #[test]
    fn reads_bounded_lines() {
        let input = b"short\r\nthis one is far too long\n\nlast";
        let mut reader = std::io::BufReader::with_capacity(4, &input[..]);
        let mut buf = Vec::new();
        let mut seen = Vec::new();
        loop {
            match read_line(&mut reader, &mut buf, 10).unwrap() {
                Read::End => break,
                Read::TooLong => seen.push("<too long>".to_string()),
                Read::Line => seen.push(String::from_utf8(buf.clone()).unwrap()),
            }
        }
        assert_eq!(seen, ["short\r", "<too long>", "", "last"]);
    }
}
