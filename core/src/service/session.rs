//! The per-connection chat session, [`ChatSession`]: its state, what it remembers of the
//! conversations it sent to, and its end. What it does with a client's command is in
//! `session_commands.rs`, what it tells the client in `session_events.rs`; it is opened by
//! [`ChatService::open_session`](crate::service::ChatService::open_session) (`open_session.rs`).

use crate::hub::HubEvent;
use crate::model::{
    Conversation, ConversationId, ConversationStatus, Principal, Role, VisitorProfile,
};
use crate::protocol::ServerEvent;
use crate::session_end::TransportKind;
use crate::visitor_context::ClientInfo;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

use super::chat_service::ChatService;
use super::context::ContextState;

/// How long a new session holds live messages back waiting for the client's `resume`: long
/// enough for a client that lists before it resumes, on a gateway busy with a reconnect storm.
///
/// Holding never ends a session. Up to `session_queue` messages are held as they are; when one
/// more arrives, the held messages are let go and the session keeps only, per conversation, the
/// range of sequence numbers it let go ([`HeldRange`]): every one of those messages is committed
/// (it was published), so when the grace ends (a `resume`, a `send`, or the deadline) each range
/// is replayed from the store like a `resume` replay, a page at a time, and live delivery goes on
/// after its end. A conversation the client names in `resume` needs no range: the resume replays
/// it up to its last message, which is past every message let go. So what a held session keeps is
/// bounded (`session_queue` messages, then `session_queue` conversations; past that the grace
/// ends early and the ranges are replayed at once), nothing it held is missed or sent twice, and
/// a held session is never closed as a slow consumer. That rule stays for a session whose hub
/// queue fills because its client does not read what is written to it ([`Outbound::Lagged`]).
pub(super) const RESUME_GRACE: Duration = Duration::from_secs(3);

/// Conversations a session remembers to send without reading the store (an agent's beyond
/// this are read again).
const MAX_KNOWN_CONVERSATIONS: usize = 256;

/// What is left of a `resume` replay for one conversation: messages after `after` up to and
/// including `upto`, except those in `skip` (already handed to the client by this session).
#[derive(Debug, Clone)]
pub(super) struct ReplayRange {
    pub(super) conversation: ConversationId,
    pub(super) after: i64,
    pub(super) upto: i64,
    pub(super) skip: Option<std::ops::RangeInclusive<i64>>,
}

/// Messages of one conversation a session let go while holding (see [`RESUME_GRACE`]): every
/// `seq` in `after + 1 ..= upto` is in the store and none was handed to the client.
#[derive(Debug, Clone, Copy)]
pub(super) struct HeldRange {
    pub(super) after: i64,
    pub(super) upto: i64,
}

impl HeldRange {
    pub(super) fn of(seq: i64) -> Self {
        Self {
            after: seq - 1,
            upto: seq,
        }
    }

    pub(super) fn widen(&mut self, seq: i64) {
        self.after = self.after.min(seq - 1);
        self.upto = self.upto.max(seq);
    }
}

/// One client's session: the seam between a transport and the chat.
///
/// A transport feeds decoded frames to [`ChatSessionState::handle`] and writes what
/// [`ChatSessionState::next_event`] yields. Both take `&mut self`, so a transport drives them from
/// one task (typically a `select!` loop); `next_event` is cancel-safe.
///
/// A `ChatSession` is one pointer: its state (about 1 KB) lives in one allocation, so that the
/// futures that take a session by value and keep it across every `await` (a transport's
/// `serve`, the Socket.IO handler) do not each hold a copy of it inline, in every idle
/// connection's task (docs/benchmarks.md, "Idle memory per connection").
pub struct ChatSession(pub(super) Box<ChatSessionState>);

impl std::ops::Deref for ChatSession {
    type Target = ChatSessionState;

    fn deref(&self) -> &ChatSessionState {
        &self.0
    }
}

impl std::ops::DerefMut for ChatSession {
    fn deref_mut(&mut self) -> &mut ChatSessionState {
        &mut self.0
    }
}

/// The state of a [`ChatSession`], whose methods a transport calls through it.
pub struct ChatSessionState {
    pub(super) id: String,
    pub(super) principal: Principal,
    pub(super) transport: TransportKind,
    pub(super) service: ChatService,
    pub(super) subscriber: u64,
    pub(super) rx: crate::mailbox::MailboxReceiver<Arc<HubEvent>>,
    pub(super) lagged: Arc<AtomicBool>,
    pub(super) shutdown: watch::Receiver<bool>,
    /// Per conversation, the highest `seq` handed to the transport: the resume boundary.
    pub(super) delivered: HashMap<ConversationId, i64>,
    /// Per conversation first delivered live (no cursor known then), the first `seq` delivered:
    /// from it up to `delivered`, the client has every message (gaps are filled).
    pub(super) live_from: HashMap<ConversationId, i64>,
    /// Until this instant, or until the client's first `resume` or `send`, live events wait in
    /// the queue: a client that reconnects sends `resume` right after `welcome`, and a message
    /// delivered live before it would arrive ahead of the older ones the replay brings.
    pub(super) resume_grace: Option<tokio::time::Instant>,
    /// Messages that arrived during `resume_grace`, in order (at most `session_queue`).
    pub(super) held: VecDeque<Arc<HubEvent>>,
    /// Once `held` overflowed: per conversation, the messages let go during `resume_grace`, to
    /// replay from the store when it ends (at most `session_queue` conversations). While this is
    /// non-empty `held` stays empty.
    pub(super) held_ranges: HashMap<ConversationId, HeldRange>,
    pub(super) pending: VecDeque<ServerEvent>,
    /// A hub event taken off the queue whose processing was interrupted (cancellation).
    pub(super) stash: Option<Arc<HubEvent>>,
    /// Replays still to stream from the store, in order, one page at a time.
    pub(super) replay: VecDeque<ReplayRange>,
    /// The expiry notice was handed out: the next call reports [`Outbound::CredentialsExpired`].
    pub(super) credentials_expired: bool,
    /// When the credentials the session was opened (or last renewed) with expire.
    pub(super) expires: Option<tokio::time::Instant>,
    pub(super) counted_as_agent: bool,
    /// Whether this session is in [`ChatService::session_counts`].
    pub(super) counted: bool,
    /// Whatever the gateway's admission holds for the life of the session (its connection
    /// slot), released when the session is dropped.
    pub(super) admission: Option<Box<dyn std::any::Any + Send + Sync>>,
    /// Conversations this session sent to, as last seen (updated by conversation events), so
    /// that a send needs no read of the store (at most [`MAX_KNOWN_CONVERSATIONS`]).
    pub(super) known: HashMap<ConversationId, (Conversation, u64)>,
    /// A visitor's open conversation: where a send naming none goes.
    pub(super) open_conversation: Option<ConversationId>,
    /// A visitor's agents-online count as last told, so a change on another site is not
    /// told again.
    pub(super) presence_told: Option<u32>,
    /// What the main site said about the visitor, stored with their first conversation.
    pub(super) profile: Option<VisitorProfile>,
    /// The `context` reports of a visitor (see `service/context.rs`).
    pub(super) context: ContextState,
    /// The gate of the `read` command (see `service/read.rs`).
    pub(super) reads: crate::read_receipts::ReadCoalescer,
    /// Typing and status signalling (see `service/signals.rs`), once the client sends one.
    pub(super) signals: Option<Box<super::shared::SignalState>>,
    /// A visitor's `contact` commands allowed (`service/offline.rs`), made on the first one.
    pub(super) contact_bucket: Option<crate::rate::TokenBucket>,
}

impl ChatSessionState {
    /// Keeps `conversation` as this session last saw it; for a visitor, it is now the open
    /// conversation a send naming none goes to (the store's "most recently updated open one").
    ///
    /// `changes` is the process's count of conversation changes taken before `conversation` was
    /// read: when a change was seen since, the copy may be stale and is not kept. A kept copy
    /// is used while its conversation's change count has not moved (see [`Inner::epoch`]).
    pub(super) fn remember_if_unchanged(&mut self, conversation: Conversation, changes: u64) {
        let inner = &self.service.inner;
        if self.principal.role() == Role::Visitor && conversation.status == ConversationStatus::Open
        {
            self.open_conversation = Some(conversation.id);
        }
        let epoch = inner.epoch(conversation.id);
        if inner.conversation_changes.load(Ordering::SeqCst) != changes {
            self.known.remove(&conversation.id);
            return;
        }
        self.remember(conversation, epoch);
    }

    pub(super) fn remember(&mut self, conversation: Conversation, epoch: u64) {
        if self.known.len() >= MAX_KNOWN_CONVERSATIONS && !self.known.contains_key(&conversation.id)
        {
            self.known.clear();
        }
        self.known.insert(conversation.id, (conversation, epoch));
    }

    /// The remembered copy of conversation `id` with its change count, while it is current.
    pub(super) fn known_conversation(&self, id: ConversationId) -> Option<(Conversation, u64)> {
        let (conversation, epoch) = self.known.get(&id)?;
        (self.service.inner.epoch(id) == *epoch).then(|| (conversation.clone(), *epoch))
    }

    /// Identifies the session in logs.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Who is connected.
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// The transport carrying the session.
    pub fn transport(&self) -> TransportKind {
        self.transport
    }

    /// Tells the session what the gateway knows of its client (the address admission used, its
    /// country), stored with every context the visitor reports.
    pub fn set_client(&mut self, client: ClientInfo) {
        self.context.set_client(client);
    }

    /// Ends the session when its credentials expire at `exp` (Unix seconds) unless the client
    /// renews them first with `auth`. For agent sessions, opened with a JWT.
    pub fn expire_at(&mut self, exp: u64) {
        self.expires = Some(instant_of_unix(exp));
    }

    /// Keeps `guard` (e.g. a connection slot) until the session is dropped, whichever task
    /// ends up owning it.
    pub fn hold(&mut self, guard: impl std::any::Any + Send + Sync) {
        self.admission = Some(Box::new(guard));
    }

    /// Lets live messages through at once, for a transport whose client cannot have missed
    /// anything (a first connection) or has already resumed another way.
    pub fn end_resume_grace(&mut self) {
        self.resume_grace = None;
    }
}

impl Drop for ChatSessionState {
    fn drop(&mut self) {
        self.stop_typing_on_end();
        if self.counted {
            self.service
                .count_session(self.transport, &self.principal, -1);
        }
        let hub = &self.service.inner.hub;
        hub.remove(self.subscriber);
        if let (true, Principal::Agent { agent, sites }) = (self.counted_as_agent, &self.principal)
        {
            let inner = &self.service.inner;
            inner.apply_roster_change(inner.roster.leave(hub, &agent.id, sites));
        }
    }
}

/// The Tokio instant of a Unix time in seconds (now, when it is already past).
pub(super) fn instant_of_unix(unix_secs: u64) -> tokio::time::Instant {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let left = Duration::from_secs(unix_secs).saturating_sub(now);
    tokio::time::Instant::now() + left
}
