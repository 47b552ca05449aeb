//! The chat protocol over Socket.IO: every client command is an event of the same name whose
//! one argument is the command's fields, answered through the event's ack; every server event is
//! emitted under its `type` with the rest of the object as its argument. `docs/protocol.md` has
//! the table for both transports.
//!
//! Connection-state recovery rides on the core's per-conversation sequence numbers instead of a
//! server-side packet buffer: every emitted event carries, as its last argument, an offset that
//! encodes the positions the client has been sent, and the `pid` identifies the principal (for a
//! visitor it is their signed visitor token, so a stock client that never stored the token still
//! comes back as the same visitor; for an agent, a digest of the agent id, the JWT being
//! re-presented in `auth`). A reconnecting stock client sends both back in its CONNECT; the
//! gateway replays what was committed after those positions from the store, so recovery
//! survives a gateway restart.

use crate::socketio::{Socket, SocketEvent};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chat_core::model::{ConversationId, Principal};
use chat_core::protocol::{decode_client_value, ClientFrame, ErrorEvent, ServerEvent};
use chat_core::service::{Outbound, Session};
use chat_core::transport::SessionEnd;
use chat_core::ErrorCode;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// What a successful CONNECT leaves on the socket: the opened chat session and, when the client
/// asked to recover a previous one, the positions to replay from.
pub struct ChatConnection {
    /// The chat session (taken by [`serve_chat`]).
    pub session: Option<Session>,
    /// The `pid` to send in the CONNECT answer.
    pub pid: String,
    /// What the client's `offset` says it has, when its `pid` matched.
    pub recover_from: Option<Recovery>,
}

/// What a recovering client has, decoded from its `offset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Per conversation, the last `seq` the client was sent.
    pub positions: BTreeMap<ConversationId, i64>,
    /// When the offset was made (Unix milliseconds); `None` for offsets of older gateways.
    pub made_at_ms: Option<i64>,
}

/// The Socket.IO `pid` for an agent: stable across reconnects and gateway restarts, and
/// meaningless without the JWT that the CONNECT re-presents. (A visitor's `pid` is their
/// visitor token.)
pub fn agent_pid(principal: &Principal) -> String {
    let key = match principal {
        Principal::Visitor {
            visitor_id,
            site_id,
        } => format!("visitor:{site_id}:{visitor_id}"),
        Principal::Agent(agent) => format!("agent:{}", agent.id),
    };
    let digest = Sha256::digest(key.as_bytes());
    URL_SAFE_NO_PAD.encode(&digest[..18])
}

/// Encodes per-conversation positions, and the time now, as an opaque offset string. The time
/// lets a recovering agent be sent the conversations that changed since, including ones it had
/// never seen.
pub fn encode_offset(positions: &BTreeMap<ConversationId, i64>) -> String {
    let map: Map<String, Value> = positions
        .iter()
        .map(|(id, seq)| (id.to_string(), json!(seq)))
        .collect();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    format!(
        "c2.{}",
        URL_SAFE_NO_PAD.encode(json!({ "p": map, "t": now_ms }).to_string())
    )
}

/// Decodes an offset made by [`encode_offset`] (or the older `c1.` form, without a time);
/// `None` for anything else.
pub fn decode_offset(offset: &str) -> Option<Recovery> {
    let (with_time, encoded) = match offset.split_at_checked(3)? {
        ("c2.", rest) => (true, rest),
        ("c1.", rest) => (false, rest),
        _ => return None,
    };
    let bytes = URL_SAFE_NO_PAD.decode(encoded).ok()?;
    if bytes.len() > 64 * 1024 {
        return None;
    }
    let (positions, made_at_ms) = if with_time {
        #[derive(serde::Deserialize)]
        struct Offset {
            p: BTreeMap<ConversationId, i64>,
            t: i64,
        }
        let o: Offset = serde_json::from_slice(&bytes).ok()?;
        (o.p, Some(o.t))
    } else {
        (serde_json::from_slice(&bytes).ok()?, None)
    };
    positions.values().all(|seq| *seq >= 0).then_some(Recovery {
        positions,
        made_at_ms,
    })
}

/// Reads `pid`/`offset` from a CONNECT auth payload and returns the positions to recover from,
/// if the `pid` is the one this connection was given.
pub fn recovery_request(auth: Option<&Value>, expected_pid: &str) -> Option<Recovery> {
    let auth = auth?.as_object()?;
    let pid = auth.get("pid")?.as_str()?;
    if pid != expected_pid {
        return None;
    }
    decode_offset(auth.get("offset")?.as_str()?)
}

/// The command an event stands for: `name` is the command `type`, the first argument its fields.
pub fn frame_from_event(
    name: &str,
    args: &[Value],
    binary: bool,
) -> Result<ClientFrame, ErrorEvent> {
    let invalid = |message: String| ErrorEvent {
        id: None,
        code: ErrorCode::InvalidFrame,
        message,
        retry_after_ms: None,
    };
    if binary {
        return Err(invalid(
            "binary arguments are not part of the chat protocol".into(),
        ));
    }
    let mut fields = match args.first() {
        None => Map::new(),
        Some(Value::Object(map)) => map.clone(),
        Some(_) => {
            return Err(invalid(format!(
                "the argument of `{name}` must be an object"
            )))
        }
    };
    fields.remove("id");
    fields.insert("type".into(), Value::String(name.to_owned()));
    decode_client_value(Value::Object(fields)).map_err(|e| ErrorEvent {
        id: None,
        code: e.code,
        message: e.message,
        retry_after_ms: None,
    })
}

/// The argument an ack carries: the `ack` event's fields, or `{"error": {code, message}}`.
pub fn ack_argument(answer: &ServerEvent) -> Value {
    match answer {
        ServerEvent::Error(e) => json!({ "error": { "code": e.code, "message": e.message } }),
        other => event_argument(other),
    }
}

/// The argument an emitted event carries: the event object without `type` (and `id`).
pub fn event_argument(event: &ServerEvent) -> Value {
    let mut value = serde_json::to_value(event).unwrap_or(Value::Null);
    if let Some(map) = value.as_object_mut() {
        map.remove("type");
        map.remove("id");
    }
    value
}

/// How far before an offset's time a recovering agent's "changed since" starts.
const RECOVERY_MARGIN_MS: i64 = 30_000;

/// Drives one chat session over a connected Socket.IO socket until either side ends it.
pub async fn serve_chat(mut socket: Socket<ChatConnection>) -> SessionEnd {
    let Some(mut session) = socket.data.session.take() else {
        return SessionEnd::ConnectionError("socket without a chat session".into());
    };
    let emitter = socket.emitter();
    let mut positions: BTreeMap<ConversationId, i64> = BTreeMap::new();
    if let Some(from) = socket.data.recover_from.take() {
        positions = from.positions.clone();
        // A margin for clocks of other processes and the database.
        let since = from.made_at_ms.map(|t| t - RECOVERY_MARGIN_MS);
        let answer = session.recover(from.positions, since).await;
        if let ServerEvent::Error(e) = answer {
            // Recovery is best effort: the client still has `resume` and `history`.
            tracing::debug!(
                session = session.id(),
                code = e.code.as_str(),
                "recovery refused"
            );
        }
    } else {
        // Without an offset the client holds nothing a replay could be ordered against.
        session.end_resume_grace();
    }
    loop {
        tokio::select! {
            event = socket.recv() => match event {
                Some(SocketEvent::Event { name, args, attachments, ack }) => {
                    let answer = match frame_from_event(&name, &args, !attachments.is_empty()) {
                        Ok(frame) => session.handle(frame).await,
                        Err(error) => ServerEvent::Error(error),
                    };
                    let delivered = match ack {
                        Some(ack) => ack.send(vec![ack_argument(&answer)], Vec::new()).is_ok(),
                        // No callback to answer: errors still reach the client as an event.
                        None if matches!(answer, ServerEvent::Error(_)) => emitter
                            .emit("error", vec![event_argument(&answer)], Vec::new())
                            .is_ok(),
                        None => true,
                    };
                    if !delivered {
                        return SessionEnd::ClientClosed;
                    }
                }
                Some(SocketEvent::Disconnected(_)) | None => return SessionEnd::ClientClosed,
            },
            outbound = session.next_event() => match outbound {
                Outbound::Event(event) => {
                    if let ServerEvent::Message { message } = &event {
                        let seen = positions.entry(message.conversation_id).or_insert(0);
                        *seen = (*seen).max(message.seq);
                    }
                    let args = vec![event_argument(&event), Value::String(encode_offset(&positions))];
                    if emitter.emit(event.type_name(), args, Vec::new()).is_err() {
                        return SessionEnd::ClientClosed;
                    }
                }
                Outbound::Lagged => {
                    // Closing the Engine.IO session (not a Socket.IO DISCONNECT) makes stock
                    // clients reconnect, and recover.
                    emitter.engine().close();
                    return SessionEnd::Lagged;
                }
                Outbound::ShuttingDown => {
                    emitter.engine().close();
                    return SessionEnd::ShuttingDown;
                }
                Outbound::CredentialsExpired => {
                    // A server-side DISCONNECT: stock clients do not reconnect on their own
                    // (the old token would be refused); the page connects with a fresh one.
                    let _ = emitter.disconnect();
                    return SessionEnd::CredentialsExpired;
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_core::model::{Agent, VisitorId};
    use chat_core::protocol::ClientCommand;

    #[test]
    fn offsets_round_trip_and_garbage_is_refused() {
        let mut positions = BTreeMap::new();
        positions.insert(ConversationId::new_random(), 7);
        positions.insert(ConversationId::new_random(), 0);
        let decoded = decode_offset(&encode_offset(&positions)).unwrap();
        assert_eq!(decoded.positions, positions);
        assert!(decoded.made_at_ms.is_some_and(|t| t > 1_700_000_000_000));
        // Offsets of the previous format still recover (without a time).
        let old = format!(
            "c1.{}",
            URL_SAFE_NO_PAD.encode(serde_json::to_string(&positions).unwrap())
        );
        assert_eq!(
            decode_offset(&old),
            Some(Recovery {
                positions,
                made_at_ms: None
            })
        );
        assert_eq!(decode_offset("c1.!!!"), None);
        assert_eq!(decode_offset("42"), None);
        let negative = format!(
            "c1.{}",
            URL_SAFE_NO_PAD.encode(format!(r#"{{"{}":-1}}"#, ConversationId::new_random()))
        );
        assert_eq!(decode_offset(&negative), None);
    }

    #[test]
    fn recovery_needs_the_pid_this_connection_was_given() {
        let alice = Principal::Agent(Agent {
            id: "alice".into(),
            name: "Alice".into(),
        });
        let bob = Principal::Agent(Agent {
            id: "bob".into(),
            name: "Bob".into(),
        });
        let offset = encode_offset(&BTreeMap::new());
        let auth = json!({ "token": "t", "pid": agent_pid(&alice), "offset": offset });
        assert!(recovery_request(Some(&auth), &agent_pid(&alice)).is_some());
        assert!(recovery_request(Some(&auth), &agent_pid(&bob)).is_none());
        let no_offset = json!({ "pid": agent_pid(&alice) });
        assert!(recovery_request(Some(&no_offset), &agent_pid(&alice)).is_none());
        let visitor = Principal::Visitor {
            visitor_id: VisitorId::new_random(),
            site_id: "default".into(),
        };
        assert_ne!(agent_pid(&visitor), agent_pid(&alice));
    }

    #[test]
    fn events_map_onto_commands() {
        let frame = frame_from_event(
            "send",
            &[json!({"body": "hi", "client_msg_id": "c1"})],
            false,
        )
        .unwrap();
        assert!(matches!(frame.command, ClientCommand::Send { ref body, .. } if body == "hi"));
        let frame = frame_from_event("list_conversations", &[], false).unwrap();
        assert!(matches!(
            frame.command,
            ClientCommand::ListConversations { .. }
        ));
        assert_eq!(
            frame_from_event("dance", &[json!({})], false)
                .unwrap_err()
                .code,
            ErrorCode::UnknownType
        );
        assert_eq!(
            frame_from_event("send", &[json!("hi")], false)
                .unwrap_err()
                .code,
            ErrorCode::InvalidFrame
        );
        assert_eq!(
            frame_from_event("send", &[json!({"body": "x"})], true)
                .unwrap_err()
                .code,
            ErrorCode::InvalidFrame
        );
    }

    #[test]
    fn acks_carry_results_or_an_error_object() {
        let err = ServerEvent::Error(ErrorEvent {
            id: Some("1".into()),
            code: ErrorCode::NotFound,
            message: "nope".into(),
            retry_after_ms: None,
        });
        assert_eq!(
            ack_argument(&err),
            json!({"error": {"code": "not_found", "message": "nope"}})
        );
        let presence = ServerEvent::Presence { agents_online: 2 };
        assert_eq!(event_argument(&presence), json!({"agents_online": 2}));
    }
}
