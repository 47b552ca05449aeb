//! The chat protocol over Socket.IO: every client command is an event of the same name whose
//! one argument is the command's fields, answered through the event's ack; every server event is
//! emitted under its `type` with the rest of the object as its argument. `docs/protocol.md` has
//! the table for both transports.
//!
//! Connection-state recovery rides on the core's per-conversation sequence numbers instead of a
//! server-side packet buffer: every emitted event carries, as its last argument, an offset of
//! at most 64 characters that stands for the positions the client has been sent ([`crate::offset`]),
//! and the `pid` identifies the principal (for a visitor it is their signed visitor token, so a
//! stock client that never stored the token still comes back as the same visitor; for an agent,
//! a digest of the agent id, the JWT being re-presented in `auth`). A reconnecting stock client
//! sends both back in its CONNECT; the gateway replays what was committed after those positions
//! from the store. When an offset cannot be honoured (a reference made by another process), the
//! CONNECT answer carries a `pid` the client did not send, so that `socket.recovered` is `false`
//! and the client knows to catch up itself.

use crate::offset::{OffsetTrack, OffsetTracks, Positions, Resolved};
use crate::socketio::{AckResponder, Emitter, Socket, SocketEvent};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chat_core::model::{ConversationId, Principal};
use chat_core::protocol::{
    decode_client_value, ClientCommand, ClientFrame, ErrorEvent, ServerEvent,
};
use chat_core::service::{ChatSession, Outbound};
use chat_core::transport::{SessionEnd, Transport, TransportKind};
use chat_core::ErrorCode;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What a successful CONNECT leaves on the socket: the opened chat session and what the
/// client's recovery request came to.
pub struct ChatConnection {
    /// The chat session the CONNECT opened (taken by [`SocketIoTransport::take_session`]).
    pub session: Option<ChatSession>,
    /// The `pid` to send in the CONNECT answer (see [`RecoveryRequest::answer_pid`]).
    pub pid: String,
    /// The principal's own `pid`, which owns the session's offset track.
    pub principal_pid: String,
    /// What the client asked to recover.
    pub recovery: RecoveryRequest,
    /// This process's offset tracks.
    pub tracks: Arc<OffsetTracks>,
}

/// What a CONNECT's `pid` and `offset` ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecoveryRequest {
    /// A first connection: nothing to recover.
    None,
    /// Recover from these positions; `pid` is the one the client sent (answered unchanged, so
    /// that `socket.recovered` is `true`).
    Recover {
        /// What the client has.
        from: Positions,
        /// The `pid` the client presented.
        pid: String,
    },
    /// The client asked to recover but its offset cannot be honoured here.
    Declined,
}

impl RecoveryRequest {
    /// The `pid` for the CONNECT answer: the client's own when recovering; a fresh variant of
    /// the principal's when declining, since stock clients set `recovered` from `pid` alone.
    pub fn answer_pid(&self, principal_pid: &str) -> String {
        match self {
            Self::None => principal_pid.to_owned(),
            Self::Recover { pid, .. } => pid.clone(),
            Self::Declined => format!(
                "{principal_pid}{PID_VARIANT}{}",
                URL_SAFE_NO_PAD.encode(rand::random::<[u8; 6]>())
            ),
        }
    }
}

/// Separates a principal's `pid` from the variant a declined recovery answers with (neither
/// visitor tokens nor agent digests contain it).
const PID_VARIANT: char = '~';

/// The principal's part of a `pid` a client presents (a visitor's is their token).
pub fn principal_pid(pid: &str) -> &str {
    pid.split_once(PID_VARIANT)
        .map_or(pid, |(principal, _)| principal)
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
        Principal::Agent { agent, .. } => format!("agent:{}", agent.id),
    };
    let digest = Sha256::digest(key.as_bytes());
    URL_SAFE_NO_PAD.encode(&digest[..18])
}

/// Reads `pid`/`offset` from a CONNECT auth payload: a request to recover, if the `pid` is the
/// principal's (`expected_pid`) and an offset came with it.
pub fn recovery_request(
    auth: Option<&Value>,
    expected_pid: &str,
    tracks: &OffsetTracks,
) -> RecoveryRequest {
    let Some(auth) = auth.and_then(Value::as_object) else {
        return RecoveryRequest::None;
    };
    let (Some(pid), Some(offset)) = (
        auth.get("pid").and_then(Value::as_str),
        auth.get("offset").and_then(Value::as_str),
    ) else {
        return RecoveryRequest::None;
    };
    if principal_pid(pid) != expected_pid {
        return RecoveryRequest::None;
    }
    let resolved = match legacy_offset(offset) {
        Some(from) => Resolved::Recover(from),
        None => tracks.resolve(offset, expected_pid),
    };
    match resolved {
        Resolved::Recover(from) => RecoveryRequest::Recover {
            from,
            pid: pid.to_owned(),
        },
        Resolved::Declined => RecoveryRequest::Declined,
    }
}

/// The offsets of gateways before constant-size offsets (`c2.`: base64 of JSON positions and
/// time), still honoured so that clients connected across an upgrade recover.
fn legacy_offset(offset: &str) -> Option<Positions> {
    #[derive(serde::Deserialize)]
    struct Legacy {
        p: BTreeMap<ConversationId, i64>,
        t: i64,
    }
    let encoded = offset.strip_prefix("c2.")?;
    if encoded.len() > 96 * 1024 {
        return None;
    }
    let legacy: Legacy = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(encoded).ok()?).ok()?;
    legacy.p.values().all(|seq| *seq >= 0).then_some(Positions {
        seqs: legacy.p,
        made_at_ms: legacy.t,
    })
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

/// The chat protocol over Socket.IO as a [`Transport`]: its connection is a Socket.IO socket
/// whose CONNECT was authorized (the CONNECT carries the credentials, so the chat session is
/// opened by the authorizer and taken out of [`ChatConnection::session`] by whoever starts the
/// transport; see [`SocketIoTransport::take_session`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct SocketIoTransport;

impl SocketIoTransport {
    /// The chat session a CONNECT opened, taken off the socket to be served with it; `None`
    /// once taken.
    pub fn take_session(socket: &mut Socket<ChatConnection>) -> Option<ChatSession> {
        socket.data.session.take()
    }
}

impl Transport for SocketIoTransport {
    type Connection = Socket<ChatConnection>;

    fn kind(&self) -> TransportKind {
        TransportKind::SocketIo
    }

    fn serve(
        &self,
        socket: Socket<ChatConnection>,
        session: ChatSession,
    ) -> impl std::future::Future<Output = SessionEnd> + Send {
        serve_socket(socket, session)
    }
}

/// Emits a server event with the recovery offset that follows it; `false` once the socket is
/// gone.
fn emit_event(emitter: &Emitter, offsets: &mut OffsetTrack, event: &ServerEvent) -> bool {
    if let ServerEvent::Message { message } = event {
        offsets.advance(message.conversation_id, message.seq);
    }
    let args = vec![event_argument(event), Value::String(offsets.offset())];
    emitter.emit(event.type_name(), args, Vec::new()).is_ok()
}

/// Drives one chat session over a connected Socket.IO socket until either side ends it.
///
/// What runs once (recovery) and what awaits the store (a command) run boxed, so that the
/// idle state of the loop (the `select!`) is all an idle connection's task holds
/// (docs/benchmarks.md, "The serve loop's idle size").
async fn serve_socket(mut socket: Socket<ChatConnection>, mut session: ChatSession) -> SessionEnd {
    let emitter = socket.emitter();
    let mut offsets = Box::pin(start(&mut socket, &mut session)).await;
    loop {
        let answered = {
            let (name, args, attachments, ack) = tokio::select! {
                event = socket.recv() => match event {
                    Some(SocketEvent::Event { name, args, attachments, ack }) => (name, args, attachments, ack),
                    Some(SocketEvent::Disconnected(_)) | None => return SessionEnd::ClientClosed,
                },
                outbound = session.next_event() => match outbound {
                    Outbound::Event(event) => {
                        // The events ready behind this one are emitted at once too, so that the
                        // engine writes them to the WebSocket in one batch (one flush).
                        if !emit_event(&emitter, &mut offsets, &event) {
                            return SessionEnd::ClientClosed;
                        }
                        for event in session.ready_events() {
                            if !emit_event(&emitter, &mut offsets, &event) {
                                return SessionEnd::ClientClosed;
                            }
                        }
                        continue;
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
            };
            let command = Command {
                name,
                args,
                attachments: !attachments.is_empty(),
                ack,
            };
            Box::pin(answer_command(
                &mut session,
                &emitter,
                &mut offsets,
                command,
            ))
        };
        if !answered.await {
            return SessionEnd::ClientClosed;
        }
    }
}

/// Takes what the CONNECT decided about recovery and replays what the client missed; the
/// offsets the session's events carry from then on.
async fn start(socket: &mut Socket<ChatConnection>, session: &mut ChatSession) -> OffsetTrack {
    let recovery = std::mem::replace(&mut socket.data.recovery, RecoveryRequest::None);
    let tracks = socket.data.tracks.clone();
    let pid = std::mem::take(&mut socket.data.principal_pid);
    // What only the CONNECT needed (the answer's pid, the auth payload with its token) is not
    // kept for the life of the connection.
    socket.data.pid = String::new();
    socket.auth = None;
    let (offsets, from) = match recovery {
        RecoveryRequest::Recover { from, .. } => {
            (OffsetTrack::new(tracks, pid, from.seqs.clone()), Some(from))
        }
        RecoveryRequest::None => {
            // Without an offset the client holds nothing a replay could be ordered against.
            session.end_resume_grace();
            (OffsetTrack::new(tracks, pid, BTreeMap::new()), None)
        }
        // A declined client was told (`recovered` is false) and may `resume` itself: the
        // session holds live events back for it as for any new one.
        RecoveryRequest::Declined => (OffsetTrack::unknown(tracks, pid), None),
    };
    if let Some(from) = from {
        // A margin for clocks of other processes and the database.
        let since = Some(from.made_at_ms - RECOVERY_MARGIN_MS);
        let answer = session.recover(from.seqs, since).await;
        if let ServerEvent::Error(e) = answer {
            // Recovery is best effort: the client still has `resume` and `history`.
            tracing::debug!(
                session = session.id(),
                code = e.code.as_str(),
                "recovery refused"
            );
        }
    }
    offsets
}

/// A client's event, as the serve loop hands it to [`answer_command`].
struct Command {
    name: String,
    args: Vec<Value>,
    /// Whether binary attachments came with it (the protocol has none).
    attachments: bool,
    ack: Option<AckResponder>,
}

/// Handles a client's event and answers it (its ack, or an `error` event when it asked for
/// none and failed); `false` once the socket is gone.
async fn answer_command(
    session: &mut ChatSession,
    emitter: &Emitter,
    offsets: &mut OffsetTrack,
    command: Command,
) -> bool {
    let Command {
        name,
        args,
        attachments,
        ack,
    } = command;
    let answer = match frame_from_event(&name, &args, attachments) {
        Ok(frame) => {
            // A client that catches up itself (after a declined recovery) has what its cursors
            // say: its next offset must say so too, or a later recovery would replay those
            // conversations from the start.
            let cursors = match &frame.command {
                ClientCommand::Resume { cursors, .. } => Some(cursors.clone()),
                _ => None,
            };
            let answer = session.handle(frame).await;
            if let (Some(cursors), ServerEvent::Ack(_)) = (cursors, &answer) {
                offsets.caught_up(&cursors);
            }
            answer
        }
        Err(error) => ServerEvent::Error(error),
    };
    match ack {
        Some(ack) => ack.send(vec![ack_argument(&answer)], Vec::new()).is_ok(),
        // No callback to answer: errors still reach the client as an event.
        None if matches!(answer, ServerEvent::Error(_)) => emitter
            .emit("error", vec![event_argument(&answer)], Vec::new())
            .is_ok(),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_core::model::{Agent, Sites, VisitorId};

    fn tracks() -> Arc<OffsetTracks> {
        OffsetTracks::new(crate::offset::TrackLimits::default())
    }

    #[test]
    fn offsets_of_older_gateways_still_recover() {
        let mut seqs = BTreeMap::new();
        seqs.insert(ConversationId::new_random(), 7);
        let legacy = format!(
            "c2.{}",
            URL_SAFE_NO_PAD.encode(json!({"p": seqs, "t": 1_800_000_000_000i64}).to_string())
        );
        let auth = json!({ "pid": "p", "offset": legacy });
        assert_eq!(
            recovery_request(Some(&auth), "p", &tracks()),
            RecoveryRequest::Recover {
                from: Positions {
                    seqs,
                    made_at_ms: 1_800_000_000_000
                },
                pid: "p".into()
            }
        );
        let negative = format!(
            "c2.{}",
            URL_SAFE_NO_PAD.encode(format!(
                r#"{{"p":{{"{}":-1}},"t":1}}"#,
                ConversationId::new_random()
            ))
        );
        let auth = json!({ "pid": "p", "offset": negative });
        assert_eq!(
            recovery_request(Some(&auth), "p", &tracks()),
            RecoveryRequest::Declined
        );
    }

    #[test]
    fn recovery_needs_the_pid_this_connection_was_given() {
        let alice = Principal::Agent {
            agent: Agent {
                id: "alice".into(),
                name: "Alice".into(),
            },
            sites: Sites::All,
        };
        let bob = Principal::Agent {
            agent: Agent {
                id: "bob".into(),
                name: "Bob".into(),
            },
            sites: Sites::All,
        };
        let tracks = tracks();
        let offset = OffsetTrack::new(tracks.clone(), agent_pid(&alice), BTreeMap::new()).offset();
        let auth = json!({ "token": "t", "pid": agent_pid(&alice), "offset": offset });
        assert!(matches!(
            recovery_request(Some(&auth), &agent_pid(&alice), &tracks),
            RecoveryRequest::Recover { .. }
        ));
        assert_eq!(
            recovery_request(Some(&auth), &agent_pid(&bob), &tracks),
            RecoveryRequest::None
        );
        let no_offset = json!({ "pid": agent_pid(&alice) });
        assert_eq!(
            recovery_request(Some(&no_offset), &agent_pid(&alice), &tracks),
            RecoveryRequest::None
        );
        let visitor = Principal::Visitor {
            visitor_id: VisitorId::new_random(),
            site_id: "default".into(),
        };
        assert_ne!(agent_pid(&visitor), agent_pid(&alice));
    }

    #[test]
    fn a_declined_recovery_answers_another_pid_that_still_names_the_principal() {
        let tracks = tracks();
        let garbled = json!({ "pid": "v1.abc.default.sig", "offset": "r3.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" });
        let request = recovery_request(Some(&garbled), "v1.abc.default.sig", &tracks);
        assert_eq!(request, RecoveryRequest::Declined);
        let answered = request.answer_pid("v1.abc.default.sig");
        assert_ne!(answered, "v1.abc.default.sig");
        assert_eq!(principal_pid(&answered), "v1.abc.default.sig");
        // The client comes back with the variant; it still recovers as the same principal.
        let offset =
            OffsetTrack::new(tracks.clone(), "v1.abc.default.sig".into(), BTreeMap::new()).offset();
        let back = json!({ "pid": answered, "offset": offset });
        let request = recovery_request(Some(&back), "v1.abc.default.sig", &tracks);
        assert!(matches!(request, RecoveryRequest::Recover { ref pid, .. } if *pid == answered));
        assert_eq!(request.answer_pid("v1.abc.default.sig"), answered);
        assert_eq!(RecoveryRequest::None.answer_pid("x"), "x");
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
