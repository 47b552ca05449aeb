//! # chat-transport-polling
//!
//! The raw chat protocol over HTTP long-polling, as documented in `docs/protocol.md` ("HTTP
//! long-polling"). One polling session is one core [`ChatSession`], driven by a task that keeps the
//! events it yields in a bounded, numbered [`EventLog`](log::EventLog); clients fetch them with
//! `GET ?sid=S&cursor=N` and submit client frames with `POST ?sid=S`.
//!
//! The API is HTTP-framework-agnostic: the gateway authenticates, opens the core session and
//! calls [`PollingSessions::open`]; later requests go to [`PollingSessions::poll`] and
//! [`PollingSessions::submit`] with the plain query string and body, and the answer is a
//! [`PollResponse`] (status, headers, JSON body) for the gateway to write.
//!
//! Bounds: at most `event_log_capacity` unacknowledged events per session (more ends the session
//! as [`SessionEnd::Lagged`]); bodies over `max_body_bytes` are refused with 413; a session no
//! GET has reached for `ttl` expires, which drops the core session (presence, counts).

#![warn(missing_docs)]

pub mod log;

use chat_core::protocol::{decode_client_value, ClientFrame};
use chat_core::service::{ChatSession, Outbound};
use chat_core::transport::{SessionEnd, Transport, TransportKind};
use log::EventLog;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::Instant;

/// Limits and timers of the polling transport.
#[derive(Debug, Clone)]
pub struct PollingSettings {
    /// How long a GET with nothing to return is held before answering an empty batch
    /// (`CHAT_POLL_HOLD_SECS`).
    pub hold: Duration,
    /// A session no GET has reached for this long expires (`CHAT_POLL_SESSION_TTL_SECS`).
    pub ttl: Duration,
    /// Largest accepted POST body (`CHAT_WS_MAX_FRAME_BYTES`).
    pub max_body_bytes: usize,
    /// Unacknowledged events kept per session before it ends as lagged (`CHAT_SESSION_QUEUE`).
    pub event_log_capacity: usize,
    /// Bytes of unacknowledged events a session keeps; past it, events wait in the core
    /// session's own bounded queue until the client acknowledges.
    pub event_log_max_bytes: usize,
    /// Most client frames in one `POST ?sid` (`CHAT_POLL_MAX_FRAMES_PER_POST`); more: 413.
    pub max_frames_per_post: usize,
    /// Largest answer body, in bytes (`CHAT_WS_MAX_FRAME_BYTES`): a GET returns the events that
    /// fit (at least one), and the frames of a POST whose answers pass it are not run (each gets
    /// a `too_large` error to send again).
    pub max_answer_bytes: usize,
}

impl Default for PollingSettings {
    fn default() -> Self {
        Self {
            hold: Duration::from_secs(25),
            ttl: Duration::from_secs(60),
            max_body_bytes: 64 * 1024,
            event_log_capacity: 1024,
            event_log_max_bytes: 1024 * 1024,
            max_frames_per_post: 16,
            max_answer_bytes: 64 * 1024,
        }
    }
}

/// An HTTP answer for the gateway to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollResponse {
    /// Status code.
    pub status: u16,
    /// Headers besides `Content-Length`.
    pub headers: Vec<(&'static str, String)>,
    /// The JSON body.
    pub body: String,
}

impl PollResponse {
    fn json(status: u16, body: String) -> Self {
        Self {
            status,
            headers: vec![
                ("Content-Type", "application/json".into()),
                ("Cache-Control", "no-store".into()),
            ],
            body,
        }
    }

    /// The error shape every chat endpoint uses: `{"error": CODE, "message": ...}`.
    pub fn error(status: u16, code: &str, message: &str) -> Self {
        Self::json(
            status,
            serde_json::json!({ "error": code, "message": message }).to_string(),
        )
    }

    fn expired() -> Self {
        Self::error(
            410,
            "session_expired",
            "unknown or expired polling session; open a new one and send `resume`",
        )
    }

    fn batch(cursor: u64, events: &[&str]) -> Self {
        Self::json(
            200,
            format!("{{\"cursor\":{cursor},\"events\":[{}]}}", events.join(",")),
        )
    }
}

/// One batch of decoded client frames (or the error event JSON a bad one gets), answered in
/// order.
type Submission = (
    Vec<Result<ClientFrame, String>>,
    oneshot::Sender<Vec<String>>,
);

/// What a session's task and its HTTP requests share.
struct Shared {
    log: Mutex<EventLog>,
    /// Woken when events arrive, when the session ends, and when a newer GET supersedes.
    changed: Notify,
    /// Increased by every GET; a held GET whose number is no longer current answers at once.
    generation: AtomicU64,
    /// GETs being held now: the session does not expire under them.
    holding: AtomicUsize,
    last_get: Mutex<Instant>,
    closed: AtomicBool,
    submissions: mpsc::Sender<Submission>,
    /// The session's principal: a sid is only good on its own role's path and site.
    principal: chat_core::model::Principal,
}

impl Shared {
    fn log(&self) -> MutexGuard<'_, EventLog> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn touch(&self) {
        *self.last_get.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    fn expires_at(&self, ttl: Duration) -> Instant {
        *self.last_get.lock().unwrap_or_else(|p| p.into_inner()) + ttl
    }
}

/// Counts a held GET for as long as it lives.
struct Holding<'a>(&'a Shared);

impl<'a> Holding<'a> {
    fn new(shared: &'a Shared) -> Self {
        shared.holding.fetch_add(1, Ordering::AcqRel);
        shared.touch();
        Self(shared)
    }
}

impl Drop for Holding<'_> {
    fn drop(&mut self) {
        self.0.touch();
        self.0.holding.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What [`PollingTransport::serve`] drives a session over: the state its HTTP requests share
/// and the queue of submitted frames.
pub struct PollingConnection {
    shared: Arc<Shared>,
    submissions: mpsc::Receiver<Submission>,
    /// Takes the sid out of the registry when the session ends (dropped with the connection).
    _registration: Registration,
}

/// A sid's place in [`PollingSessions`]' table, given back on drop: once the session's task
/// has ended, its sid answers 410.
struct Registration {
    sessions: Sessions,
    sid: String,
}

impl Drop for Registration {
    fn drop(&mut self) {
        lock(&self.sessions).remove(&self.sid);
        tracing::debug!(sid = %self.sid, "polling session ended");
    }
}

type Sessions = Arc<Mutex<HashMap<String, Arc<Shared>>>>;

fn lock(sessions: &Sessions) -> MutexGuard<'_, HashMap<String, Arc<Shared>>> {
    sessions.lock().unwrap_or_else(|p| p.into_inner())
}

/// The polling transport: runs one session's task.
#[derive(Debug, Clone, Default)]
pub struct PollingTransport {
    settings: PollingSettings,
}

impl PollingTransport {
    /// A transport with these settings.
    pub fn new(settings: PollingSettings) -> Self {
        Self { settings }
    }

    /// The settings in force.
    pub fn settings(&self) -> &PollingSettings {
        &self.settings
    }
}

impl Transport for PollingTransport {
    type Connection = PollingConnection;

    fn kind(&self) -> TransportKind {
        TransportKind::Polling
    }

    async fn serve(&self, connection: PollingConnection, mut session: ChatSession) -> SessionEnd {
        let PollingConnection {
            shared,
            mut submissions,
            _registration,
        } = connection;
        let ttl = self.settings.ttl;
        let end = loop {
            let expires_at = shared.expires_at(ttl);
            // Events are taken from the session only while the log has room: a long replay
            // then flows as fast as the client acknowledges it instead of overflowing the log.
            // Live events wait in the session's own bounded queue meanwhile.
            let acknowledged = shared.changed.notified();
            tokio::pin!(acknowledged);
            acknowledged.as_mut().enable();
            let room = shared.log().has_room();
            tokio::select! {
                _ = &mut acknowledged, if !room => {}
                outbound = session.next_event(), if room => match outbound {
                    Outbound::Event(event) => {
                        let pushed = shared.log().push(event.to_json());
                        if pushed.is_err() {
                            break SessionEnd::Lagged;
                        }
                        shared.changed.notify_waiters();
                    }
                    Outbound::Lagged => break SessionEnd::Lagged,
                    Outbound::ShuttingDown => break SessionEnd::ShuttingDown,
                    // The `token_expired` error event is in the log for the client to read.
                    Outbound::CredentialsExpired => break SessionEnd::CredentialsExpired,
                },
                submission = submissions.recv() => {
                    let Some((frames, reply)) = submission else {
                        break SessionEnd::ClientClosed;
                    };
                    let mut answers = Vec::with_capacity(frames.len());
                    let mut answered_bytes = 0usize;
                    for frame in frames {
                        let answer = match frame {
                            // The answer is full: the rest is not run, so a retry is safe.
                            Ok(frame) if answered_bytes >= self.settings.max_answer_bytes => {
                                answer_budget_spent(frame.id, self.settings.max_answer_bytes)
                            }
                            // Boxed: the handling future (store calls) would otherwise sit in every idle
                            // session's task.
                            Ok(frame) => Box::pin(session.handle(frame)).await.to_json(),
                            Err(error) => error,
                        };
                        answered_bytes += answer.len() + 1;
                        answers.push(answer);
                    }
                    let _ = reply.send(answers);
                }
                _ = tokio::time::sleep_until(expires_at) => {
                    if shared.holding.load(Ordering::Acquire) > 0 {
                        // A GET held longer than the TTL keeps the session.
                        shared.touch();
                    } else if Instant::now() >= shared.expires_at(ttl) {
                        break SessionEnd::PeerTimeout;
                    }
                }
            }
        };
        shared.closed.store(true, Ordering::Release);
        shared.changed.notify_waiters();
        drop(session);
        end
    }
}

/// The registry of open polling sessions (sid → session), one per role or per process.
/// Cheap to clone.
#[derive(Clone, Default)]
pub struct PollingSessions {
    transport: PollingTransport,
    sessions: Sessions,
}

impl PollingSessions {
    /// An empty registry whose sessions run with these settings.
    pub fn new(settings: PollingSettings) -> Self {
        Self {
            transport: PollingTransport::new(settings),
            sessions: Arc::default(),
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> &PollingSettings {
        self.transport.settings()
    }

    /// The transport that serves this registry's sessions (see [`PollingSessions::open`]).
    pub fn transport(&self) -> &PollingTransport {
        &self.transport
    }

    /// Polling sessions open now.
    pub fn len(&self) -> usize {
        self.sessions().len()
    }

    /// Whether no polling session is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn sessions(&self) -> MutexGuard<'_, HashMap<String, Arc<Shared>>> {
        lock(&self.sessions)
    }

    fn find(&self, query: &str) -> Result<Arc<Shared>, PollResponse> {
        let Some(sid) = query_value(query, "sid") else {
            return Err(PollResponse::error(400, "bad_request", "`sid` is required"));
        };
        self.sessions()
            .get(sid)
            .cloned()
            .ok_or_else(PollResponse::expired)
    }

    /// The principal of the session a query's `sid` names, if it is open: the gateway refuses
    /// a sid used on the other role's path or with another site.
    pub fn principal_of(&self, query: &str) -> Option<chat_core::model::Principal> {
        let sid = query_value(query, "sid")?;
        self.sessions()
            .get(sid)
            .map(|shared| shared.principal.clone())
    }

    /// Registers an authenticated core `session` (opened with [`TransportKind::Polling`]) under
    /// a new sid and answers the opening request: `{"sid", "cursor": 1, "events": [welcome]}`.
    /// The caller then runs the session with [`PollingSessions::transport`]'s
    /// [`Transport::serve`] over the returned connection, on a task of its own; the sid is
    /// known until that ends. When the session cannot start, the error is the answer.
    pub async fn open(
        &self,
        session: &mut ChatSession,
    ) -> Result<(PollResponse, PollingConnection), PollResponse> {
        let settings = self.settings();
        let mut log = EventLog::new(settings.event_log_capacity, settings.event_log_max_bytes);
        // The welcome event is queued by `open_session`: this returns at once.
        let welcome = match session.next_event().await {
            Outbound::Event(event) => event.to_json(),
            Outbound::ShuttingDown => {
                return Err(PollResponse::error(
                    503,
                    "unavailable",
                    "gateway restarting; retry",
                ))
            }
            Outbound::Lagged | Outbound::CredentialsExpired => {
                return Err(PollResponse::error(
                    503,
                    "unavailable",
                    "session could not start",
                ))
            }
        };
        let _ = log.push(welcome.clone());
        let (tx, rx) = mpsc::channel(4);
        let shared = Arc::new(Shared {
            principal: session.principal().clone(),
            log: Mutex::new(log),
            changed: Notify::new(),
            generation: AtomicU64::new(0),
            holding: AtomicUsize::new(0),
            last_get: Mutex::new(Instant::now()),
            closed: AtomicBool::new(false),
            submissions: tx,
        });
        let sid = uuid::Uuid::new_v4().simple().to_string();
        self.sessions().insert(sid.clone(), shared.clone());
        tracing::debug!(sid = %sid, session = session.id(), "polling session opened");
        let response = PollResponse::json(
            200,
            format!(
                "{{\"sid\":{},\"cursor\":1,\"events\":[{welcome}]}}",
                serde_json::Value::String(sid.clone())
            ),
        );
        let connection = PollingConnection {
            shared,
            submissions: rx,
            _registration: Registration {
                sessions: self.sessions.clone(),
                sid,
            },
        };
        Ok((response, connection))
    }

    /// `GET ?sid=S&cursor=N`: acknowledges events up to `N` and answers every later one at once,
    /// or holds until one arrives, `hold` passes (an empty batch), or a newer GET for the same
    /// session supersedes this one (an empty batch at once).
    pub async fn poll(&self, query: &str) -> PollResponse {
        let shared = match self.find(query) {
            Ok(shared) => shared,
            Err(response) => return response,
        };
        let cursor = match query_value(query, "cursor").map(str::parse::<u64>) {
            None => 0,
            Some(Ok(cursor)) => cursor,
            Some(Err(_)) => {
                return PollResponse::error(
                    400,
                    "bad_request",
                    "`cursor` must be a non-negative integer",
                )
            }
        };
        let _holding = Holding::new(&shared);
        let generation = shared.generation.fetch_add(1, Ordering::AcqRel) + 1;
        // Answer the GET this one supersedes.
        shared.changed.notify_waiters();
        let deadline = Instant::now() + self.settings().hold;
        loop {
            let changed = shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if shared.closed.load(Ordering::Acquire) {
                return PollResponse::expired();
            }
            {
                let mut log = shared.log();
                if cursor > log.last() {
                    return PollResponse::error(
                        400,
                        "bad_request",
                        &format!("`cursor` {cursor} is past the last event {}", log.last()),
                    );
                }
                let freed = log.acknowledge(cursor) > 0;
                let (last, events) = log.after(cursor, self.settings().max_answer_bytes);
                if !events.is_empty() {
                    if freed {
                        shared.changed.notify_waiters();
                    }
                    return PollResponse::batch(last, &events);
                }
                if freed {
                    // The session may be waiting for room in the log (a long replay).
                    drop(log);
                    shared.changed.notify_waiters();
                    continue;
                }
            }
            if shared.generation.load(Ordering::Acquire) != generation {
                return PollResponse::batch(cursor, &[]);
            }
            tokio::select! {
                _ = &mut changed => {}
                _ = tokio::time::sleep_until(deadline) => return PollResponse::batch(cursor, &[]),
            }
        }
    }

    /// `POST ?sid=S` with one client frame (a JSON object) or an array of them: `{"answers":
    /// [...]}`, one `ack` or `error` per frame, in order.
    pub async fn submit(&self, query: &str, body: &[u8]) -> PollResponse {
        if body.len() > self.settings().max_body_bytes {
            return PollResponse::error(
                413,
                "too_large",
                &format!(
                    "body over {} bytes (CHAT_WS_MAX_FRAME_BYTES)",
                    self.settings().max_body_bytes
                ),
            );
        }
        let shared = match self.find(query) {
            Ok(shared) => shared,
            Err(response) => return response,
        };
        let frames = match parse_submission(body, self.settings().max_frames_per_post) {
            Ok(frames) => frames,
            Err(refusal) => return refusal,
        };
        let (reply, answers) = oneshot::channel();
        if shared.submissions.send((frames, reply)).await.is_err() {
            return PollResponse::expired();
        }
        match answers.await {
            Ok(answers) => {
                PollResponse::json(200, format!("{{\"answers\":[{}]}}", answers.join(",")))
            }
            Err(_) => PollResponse::expired(),
        }
    }
}

/// The frames of a `POST ?sid` body (one JSON object or an array of them), each decoded or
/// answered by the error event JSON it gets; the body as a whole refused with 400 (not JSON) or
/// 413 (more than `max_frames`). Fuzzed by `transports/polling/fuzz`.
pub fn parse_submission(
    body: &[u8],
    max_frames: usize,
) -> Result<Vec<Result<ClientFrame, String>>, PollResponse> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        PollResponse::error(
            400,
            "malformed_json",
            &format!("body is not valid JSON: {e}"),
        )
    })?;
    let values = match value {
        serde_json::Value::Array(values) => values,
        other => vec![other],
    };
    if values.len() > max_frames {
        return Err(PollResponse::error(
            413,
            "too_large",
            &format!(
                "{} frames in one POST; at most {max_frames} (CHAT_POLL_MAX_FRAMES_PER_POST): \
                 nothing was run, send them in smaller batches",
                values.len()
            ),
        ));
    }
    Ok(values
        .into_iter()
        .map(|v| decode_client_value(v).map_err(|e| e.to_event().to_json()))
        .collect())
}

/// The error answering a frame that was not run because its POST's answer was already full.
fn answer_budget_spent(id: Option<String>, budget: usize) -> String {
    chat_core::protocol::ServerEvent::Error(chat_core::protocol::ErrorEvent {
        id,
        code: chat_core::ErrorCode::TooLarge,
        retry_after_ms: None,
        message: format!(
            "not run: the answers to this POST already fill {budget} bytes \
             (CHAT_WS_MAX_FRAME_BYTES); send this frame again"
        ),
    })
    .to_json()
}

/// The raw value of a query parameter (sids and cursors need no percent-decoding).
pub fn query_value<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_query_values() {
        assert_eq!(query_value("sid=abc&cursor=3", "cursor"), Some("3"));
        assert_eq!(query_value("sid=abc&cursor=3", "sid"), Some("abc"));
        assert_eq!(query_value("sid&cursor=3", "sid"), Some(""));
        assert_eq!(query_value("", "sid"), None);
    }

    #[tokio::test]
    async fn unknown_sessions_answer_410_and_missing_sids_400() {
        let sessions = PollingSessions::default();
        assert_eq!(sessions.poll("sid=nope&cursor=0").await.status, 410);
        assert_eq!(sessions.submit("sid=nope", b"{}").await.status, 410);
        assert_eq!(sessions.poll("cursor=0").await.status, 400);
        assert!(sessions.is_empty());
    }
}
