//! The chat service: authorizes commands, persists through the [`Store`], then fans out through
//! the [`Hub`]. A [`ChatSession`] is the seam every transport talks to.

use crate::auth::AgentTokens;
use crate::bus::{Bus, BusEvent, Inbound};
use crate::error::{ChatError, ErrorCode, StoreError};
use crate::hub::{AgentPresence, Hub, HubEvent, Topic};
use crate::model::{
    Conversation, ConversationId, ConversationStatus, Message, NewMessage, Principal, Role, SiteId,
    Visitor, VisitorId, VisitorProfile,
};
use crate::protocol::{Ack, ClientCommand, ClientFrame, ErrorEvent, ServerEvent, Welcome};
use crate::session_end::TransportKind;
use crate::store::{Appended, ConversationFilter, Store};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

mod context;

/// Limits of the chat service.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Longest accepted message body, in characters (`CHAT_MAX_MESSAGE_CHARS`).
    pub max_message_chars: usize,
    /// Events a session may have queued before it counts as too slow (`CHAT_SESSION_QUEUE`).
    pub session_queue: usize,
    /// Largest answer a command gets, in bytes of JSON (`CHAT_WS_MAX_FRAME_BYTES`): a `history`
    /// page is cut to fit (at least one message), so no answer is larger than what a transport
    /// writes. `resume` replays stream from the store one page at a time instead.
    pub max_answer_bytes: usize,
    /// Which visitors are sent to WebSocket (`CHAT_WS_ROLLOUT_PERCENT`), at start; replaced
    /// while running with [`ChatService::set_rollout`].
    pub rollout: crate::rollout::Rollout,
    /// Sends per visitor, over all their sessions on this process (`CHAT_SEND_RATE_PER_SEC`,
    /// `CHAT_SEND_BURST`); `None`: no limit. Agents are authenticated staff and are not limited.
    pub visitor_send_rate: Option<crate::rate::RateLimit>,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            max_message_chars: 4000,
            session_queue: 256,
            max_answer_bytes: 64 * 1024,
            rollout: crate::rollout::Rollout::default(),
            visitor_send_rate: None,
        }
    }
}

/// The chat service. Cheap to clone; one per process.
///
/// ```no_run
/// # async fn demo(store: std::sync::Arc<dyn chat_core::store::Store>) -> Result<(), chat_core::ChatError> {
/// use chat_core::service::{ChatService, ServiceConfig};
/// use chat_core::model::{Principal, VisitorId};
/// use chat_core::transport::TransportKind;
/// let service = ChatService::new(store, ServiceConfig::default());
/// let principal = Principal::Visitor { visitor_id: VisitorId::new_random(), site_id: "default".into() };
/// let mut session = service.open_session(principal, Some("token".into()), TransportKind::WebSocket).await?;
/// let welcome = session.next_event().await; // always the `welcome` event first
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ChatService {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    hub: Hub,
    config: ServiceConfig,
    shutdown: watch::Sender<bool>,
    open_sessions: std::sync::Mutex<HashMap<(TransportKind, Role), u32>>,
    /// Visitor sessions open on this process, by site (no zero entries).
    visitor_sessions_by_site: std::sync::Mutex<HashMap<SiteId, u32>>,
    bus: Option<Arc<dyn Bus>>,
    /// Agents connected to other processes, by process, with when each was last heard from.
    remote_agents: std::sync::Mutex<HashMap<String, (AgentPresence, Instant)>>,
    /// What verifies the fresh token of an `auth` command (set once at start-up).
    agent_tokens: std::sync::OnceLock<AgentTokens>,
    /// Send buckets by visitor (`ServiceConfig::visitor_send_rate`), shared by all of a
    /// visitor's sessions on this process, so reconnecting does not refill one.
    visitor_sends: crate::rate::KeyedBuckets<VisitorId>,
    /// The rollout in force: `config.rollout` at start, replaced on reload.
    rollout: std::sync::RwLock<Arc<crate::rollout::Rollout>>,
    /// Conversation changes seen by this process (its own and other processes'), counted by
    /// a hash of the conversation id: a session's remembered conversation is current while its
    /// count has not moved.
    conversation_epochs: Box<[AtomicU64]>,
    /// All conversation changes seen by this process.
    conversation_changes: AtomicU64,
}

/// Visitors whose send bucket is kept at most; past it, full buckets (which a fresh one would
/// replace exactly) are forgotten.
const MAX_VISITOR_SEND_BUCKETS: usize = 65_536;

/// Messages read from the store at a time while a `resume` replay streams: what a session holds
/// in memory for its replay is one page, whatever the replay's length.
const REPLAY_PAGE: u32 = 50;

/// A live message whose predecessors this session has not seen is delivered after them, read
/// from the store; a hole larger than this ends the session instead (the client resumes, which
/// streams in pages).
const MAX_GAP_FILL: i64 = 200;

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
const RESUME_GRACE: Duration = Duration::from_secs(3);

/// A retried send younger than this is fanned out again (see `send_to_visitor`).
const REPUBLISH_DUPLICATES_WITHIN: chrono::TimeDelta = chrono::TimeDelta::minutes(2);

/// Conversations a session remembers to send without reading the store (an agent's beyond
/// this are read again).
const MAX_KNOWN_CONVERSATIONS: usize = 256;
/// Counters of conversation changes, by hash of the conversation id.
const CONVERSATION_EPOCHS: usize = 256;
/// How often a process tells the others how many agents it has (its heartbeat).
const PRESENCE_HEARTBEAT: Duration = Duration::from_secs(5);
/// A process not heard from for this long counts as gone, with its agents.
const PRESENCE_EXPIRY: Duration = Duration::from_secs(15);

/// Sessions open on this process, by transport and role.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionCounts {
    /// `(transport, role, sessions)`, for every pair with at least one session.
    pub by_transport_and_role: Vec<(TransportKind, Role, u32)>,
}

impl SessionCounts {
    /// Sessions of `role` on any transport.
    pub fn role_total(&self, role: Role) -> u32 {
        self.by_transport_and_role
            .iter()
            .filter(|(_, r, _)| *r == role)
            .map(|(_, _, n)| n)
            .sum()
    }
}

/// Where [`ChatService::send`] delivered a message besides the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// At least one of the visitor's sessions was connected and got it.
    Live,
    /// No visitor session was connected: it waits in the store for their next resume.
    Stored,
}

impl Delivery {
    /// `live` or `stored`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::Stored => "stored",
        }
    }
}

impl ChatService {
    /// A service over `store` with a fresh hub, alone: events reach this process's sessions.
    pub fn new(store: Arc<dyn Store>, config: ServiceConfig) -> Self {
        Self::build(store, config, None)
    }

    /// A service that also shares events and agent presence with other gateway processes over
    /// `bus`. Spawns its bus tasks on the current Tokio runtime.
    pub fn with_bus(store: Arc<dyn Store>, config: ServiceConfig, bus: Arc<dyn Bus>) -> Self {
        let inbound = bus.take_inbound();
        let service = Self::build(store, config, Some(bus));
        if let Some(inbound) = inbound {
            tokio::spawn(run_inbound(Arc::downgrade(&service.inner), inbound));
        }
        tokio::spawn(run_presence_heartbeat(Arc::downgrade(&service.inner)));
        service
    }

    fn build(store: Arc<dyn Store>, config: ServiceConfig, bus: Option<Arc<dyn Bus>>) -> Self {
        let visitor_sends =
            crate::rate::KeyedBuckets::new(config.visitor_send_rate, MAX_VISITOR_SEND_BUCKETS);
        let (shutdown, _) = watch::channel(false);
        Self {
            inner: Arc::new(Inner {
                store,
                hub: Hub::default(),
                shutdown,
                open_sessions: std::sync::Mutex::new(HashMap::new()),
                visitor_sessions_by_site: std::sync::Mutex::new(HashMap::new()),
                bus,
                remote_agents: std::sync::Mutex::new(HashMap::new()),
                agent_tokens: std::sync::OnceLock::new(),
                visitor_sends,
                rollout: std::sync::RwLock::new(Arc::new(config.rollout.clone())),
                conversation_epochs: (0..CONVERSATION_EPOCHS)
                    .map(|_| AtomicU64::new(0))
                    .collect(),
                conversation_changes: AtomicU64::new(0),
                config,
            }),
        }
    }

    /// Lets agent sessions renew their credentials with the `auth` command, verified by
    /// `tokens` (the same that admitted them). Without it, `auth` is refused.
    pub fn verify_agent_tokens_with(&self, tokens: AgentTokens) {
        let _ = self.inner.agent_tokens.set(tokens);
    }

    /// Agents connected now, on this process and (with a bus) on every live process.
    pub fn agents_online(&self) -> AgentPresence {
        self.inner.agents_online()
    }

    /// The store behind the service.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The live hub.
    pub fn hub(&self) -> &Hub {
        &self.inner.hub
    }

    /// The share of visitors sent to WebSocket now.
    pub fn rollout(&self) -> Arc<crate::rollout::Rollout> {
        self.inner
            .rollout
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Replaces the rollout (a reload of `CHAT_WS_ROLLOUT_PERCENT`): sessions opened from now
    /// on are told the new transport; open sessions keep theirs until they reconnect.
    pub fn set_rollout(&self, rollout: crate::rollout::Rollout) {
        *self
            .inner
            .rollout
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(rollout);
    }

    /// The limits in force (`rollout` as at start: see [`rollout`](Self::rollout)).
    pub fn config(&self) -> &ServiceConfig {
        &self.inner.config
    }

    /// Sessions open on this process now, by transport and role.
    pub fn session_counts(&self) -> SessionCounts {
        let counts = self
            .inner
            .open_sessions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut by_transport_and_role: Vec<(TransportKind, Role, u32)> = counts
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|((t, r), n)| (*t, *r, *n))
            .collect();
        by_transport_and_role.sort_by_key(|(t, r, _)| (t.as_str(), r.as_str()));
        SessionCounts {
            by_transport_and_role,
        }
    }

    /// Visitor sessions open on this process for each site with at least one.
    pub fn visitor_sessions_by_site(&self) -> BTreeMap<SiteId, u32> {
        let counts = self
            .inner
            .visitor_sessions_by_site
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        counts.iter().map(|(s, n)| (s.clone(), *n)).collect()
    }

    fn count_session(&self, transport: TransportKind, principal: &Principal, delta: i32) {
        let role = principal.role();
        {
            let mut counts = self
                .inner
                .open_sessions
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let n = counts.entry((transport, role)).or_insert(0);
            *n = n.saturating_add_signed(delta);
        }
        if let Principal::Visitor { site_id, .. } = principal {
            let mut by_site = self
                .inner
                .visitor_sessions_by_site
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let n = by_site.entry(site_id.clone()).or_insert(0);
            *n = n.saturating_add_signed(delta);
            if *n == 0 {
                by_site.remove(site_id);
            }
        }
        crate::metrics::count_session(transport, role, delta);
    }

    /// Whether the visitor has a session connected to this process now.
    pub fn visitor_connected(&self, visitor_id: VisitorId) -> bool {
        self.inner.hub.followers(&Topic::Visitor(visitor_id)) > 0
    }

    /// Tells every session to end with "going away" so that clients reconnect elsewhere.
    pub fn begin_shutdown(&self) {
        self.inner.shutdown.send_replace(true);
    }

    /// Whether [`ChatService::begin_shutdown`] was called: the process is going away, so a
    /// readiness probe should send new clients elsewhere.
    pub fn is_shutting_down(&self) -> bool {
        *self.inner.shutdown.borrow()
    }

    /// Opens a session for an authenticated principal. For visitors, `visitor_token` is the token
    /// the client will be told to keep (minted or presented). The first event is `welcome`.
    pub async fn open_session(
        &self,
        principal: Principal,
        visitor_token: Option<String>,
        transport: TransportKind,
    ) -> Result<ChatSession, ChatError> {
        self.open_session_with(principal, visitor_token, transport, VisitorIntro::default())
            .await
    }

    /// [`ChatService::open_session`] for a visitor the main site said something about
    /// ([`VisitorIntro`]): a verified user's profile is stored at once, an unverified one once
    /// the visitor has a conversation; an anonymous visitor who logged in hands their open
    /// conversation to the user when the user has none.
    pub async fn open_session_with(
        &self,
        principal: Principal,
        visitor_token: Option<String>,
        transport: TransportKind,
        intro: VisitorIntro,
    ) -> Result<ChatSession, ChatError> {
        if let Principal::Visitor {
            visitor_id,
            site_id,
        } = &principal
        {
            self.introduce(*visitor_id, site_id, &intro).await?;
        }
        let hub = &self.inner.hub;
        // No visitor row yet: it is written with the visitor's first conversation (see
        // `send_to_visitor`), so connecting alone leaves nothing in the store.
        // Subscribe before reading state, so nothing committed in between is missed.
        let sub = hub.register(self.inner.config.session_queue);
        let session_id = format!(
            "s-{:x}-{}",
            sub.id,
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let mut session = ChatSession(Box::new(ChatSessionState {
            id: session_id.clone(),
            principal: principal.clone(),
            transport,
            service: self.clone(),
            subscriber: sub.id,
            rx: sub.rx,
            lagged: sub.lagged,
            shutdown: self.inner.shutdown.subscribe(),
            delivered: HashMap::new(),
            live_from: HashMap::new(),
            resume_grace: Some(tokio::time::Instant::now() + RESUME_GRACE),
            held: VecDeque::new(),
            held_ranges: HashMap::new(),
            pending: VecDeque::new(),
            stash: None,
            replay: VecDeque::new(),
            credentials_expired: false,
            expires: None,
            counted_as_agent: false,
            counted: false,
            admission: None,
            known: HashMap::new(),
            open_conversation: None,
            presence_told: None,
            profile: intro.profile,
            context: context::ContextState::new(false),
        }));
        let welcome = match &principal {
            Principal::Visitor {
                visitor_id,
                site_id,
            } => {
                hub.subscribe(sub.id, Topic::Visitor(*visitor_id));
                hub.subscribe(sub.id, Topic::Visitors);
                let changes = self.inner.conversation_changes.load(Ordering::SeqCst);
                let conversation = self
                    .inner
                    .store
                    .open_conversation_of(site_id, *visitor_id)
                    .await?;
                if let Some(c) = &conversation {
                    session.remember_if_unchanged(c.clone(), changes);
                    session.context = context::ContextState::new(true);
                }
                let agents_online = self.inner.agents_online().online(site_id);
                session.presence_told = Some(agents_online);
                Welcome {
                    role: Role::Visitor,
                    session_id,
                    visitor_id: Some(*visitor_id),
                    visitor_token,
                    agent: None,
                    sites: None,
                    conversation,
                    agents_online,
                    preferred_transport: Some(self.rollout().transport_for(site_id, *visitor_id)),
                }
            }
            Principal::Agent { agent, sites } => {
                match sites.list() {
                    None => hub.subscribe(sub.id, Topic::Agents),
                    Some(list) => {
                        for site in list {
                            hub.subscribe(sub.id, Topic::Site(site.clone()));
                        }
                    }
                }
                session.counted_as_agent = true;
                let online = self
                    .inner
                    .local_agents_changed(hub.agent_presence(sites, 1));
                Welcome {
                    role: Role::Agent,
                    session_id,
                    visitor_id: None,
                    visitor_token: None,
                    agent: Some(agent.clone()),
                    sites: Some(sites.to_claim()),
                    conversation: None,
                    agents_online: online.sessions,
                    preferred_transport: None,
                }
            }
        };
        session
            .pending
            .push_back(ServerEvent::Welcome(Box::new(welcome)));
        self.count_session(transport, &session.principal, 1);
        session.counted = true;
        Ok(session)
    }

    /// Stores what the main site said about a visitor and carries out a login merge.
    async fn introduce(
        &self,
        visitor_id: VisitorId,
        site_id: &str,
        intro: &VisitorIntro,
    ) -> Result<(), ChatError> {
        let store = &self.inner.store;
        let Some(profile) = &intro.profile else {
            return Ok(());
        };
        let visitor = Visitor {
            id: visitor_id,
            site_id: site_id.to_owned(),
            created_at: chrono::Utc::now(),
            profile: Some(profile.clone()),
        };
        // A verified user is written on connect (the main site vouched for them); anyone can
        // claim unverified fields, so those are written only for a visitor already stored.
        let write = profile.verified
            || store
                .visitor(visitor_id)
                .await?
                .is_some_and(|stored| stored.profile.as_ref() != Some(profile));
        if write {
            store.ensure_visitor(&visitor).await?;
        }
        let Some(anonymous) = intro.merge_from else {
            return Ok(());
        };
        if store
            .open_conversation_of(site_id, visitor_id)
            .await?
            .is_some()
        {
            return Ok(());
        }
        if let Some(open) = store.open_conversation_of(site_id, anonymous).await? {
            let moved = store.move_conversation(open.id, visitor_id).await?;
            tracing::debug!(conversation = %moved.id, "anonymous visitor logged in: conversation moved to the user");
            // The anonymous visitor's sessions hear of it too (the event goes to both topics).
            self.inner.hub.publish(
                &[Topic::Visitor(anonymous)],
                HubEvent::Conversation(moved.clone()),
            );
            self.publish_conversation(&moved);
        }
        Ok(())
    }

    /// Fans `message` out here and, unless the store already notified the other processes in
    /// the message's commit (`committed`), on the bus.
    fn publish_message(&self, message: &Message, conversation: &Conversation, committed: bool) {
        let visitor_id = conversation.visitor_id;
        self.inner
            .publish_message_locally(message.clone(), visitor_id, &conversation.site_id);
        if let Some(bus) = &self.inner.bus {
            if committed && bus.store_publishes_messages() {
                return;
            }
            bus.publish(BusEvent::Message {
                visitor_id,
                site_id: conversation.site_id.clone(),
                message: message.clone(),
            });
        }
    }

    fn publish_conversation(&self, conversation: &Conversation) {
        self.inner
            .publish_conversation_locally(conversation.clone());
        if let Some(bus) = &self.inner.bus {
            bus.publish(BusEvent::Conversation(conversation.clone()));
        }
    }

    /// Reads a conversation the principal may see: visitors only their own, agents only their
    /// sites'.
    pub async fn authorized_conversation(
        &self,
        principal: &Principal,
        id: ConversationId,
    ) -> Result<Conversation, ChatError> {
        let conversation = self
            .inner
            .store
            .conversation(id)
            .await?
            .ok_or_else(|| ChatError::NotFound(format!("conversation {id} does not exist")))?;
        match principal {
            Principal::Visitor { visitor_id, .. } if conversation.visitor_id != *visitor_id => {
                // Same answer as for a missing one would leak less, but a clear reason helps
                // integrators; ids are random UUIDs, so existence is not guessable anyway.
                Err(ChatError::Forbidden(
                    "this conversation belongs to another visitor".into(),
                ))
            }
            Principal::Agent { sites, .. } if !sites.contains(&conversation.site_id) => {
                Err(ChatError::Forbidden(format!(
                    "this conversation belongs to site `{}`, which you are not an agent of",
                    conversation.site_id
                )))
            }
            _ => Ok(conversation),
        }
    }

    /// Sends a message as `principal`: validates, commits, then fans out. Used by sessions and
    /// by HTTP APIs alike.
    pub async fn send(
        &self,
        principal: &Principal,
        conversation_id: Option<ConversationId>,
        client_msg_id: Option<String>,
        body: String,
    ) -> Result<Appended, ChatError> {
        self.send_to_visitor(principal, conversation_id, client_msg_id, body, None, None)
            .await
            .map(|(appended, _)| appended)
    }

    /// [`ChatService::send`], also returning the conversation written to (as it is after the
    /// send: a visitor's send reopens a closed one).
    ///
    /// `known` is the conversation as the calling session last saw it, which spares a read of
    /// the store on every send (issue 12): it is used when it is the one named, or, for a
    /// visitor naming none, when it is the visitor's and still open. Its visitor never changes;
    /// its status is kept current by the conversation events the session receives.
    async fn send_to_visitor(
        &self,
        principal: &Principal,
        conversation_id: Option<ConversationId>,
        client_msg_id: Option<String>,
        body: String,
        known: Option<Conversation>,
        profile: Option<&VisitorProfile>,
    ) -> Result<(Appended, Conversation), ChatError> {
        let max = self.inner.config.max_message_chars;
        if body.trim().is_empty() {
            return Err(ChatError::BadRequest("message body is empty".into()));
        }
        let chars = body.chars().count();
        if chars > max {
            return Err(ChatError::TooLarge(format!(
                "message body has {chars} characters; the limit is {max}"
            )));
        }
        if let Some(id) = &client_msg_id {
            if id.is_empty() || id.len() > 128 {
                return Err(ChatError::BadRequest(
                    "client_msg_id must be 1..=128 bytes".into(),
                ));
            }
        }
        let store = &self.inner.store;
        let known = known.filter(|k| match principal {
            Principal::Visitor { visitor_id, .. } => {
                k.visitor_id == *visitor_id
                    && match conversation_id {
                        Some(id) => k.id == id,
                        None => k.status == ConversationStatus::Open,
                    }
            }
            Principal::Agent { sites, .. } => {
                conversation_id == Some(k.id) && sites.contains(&k.site_id)
            }
        });
        let conversation = match (principal, conversation_id, known) {
            (Principal::Agent { .. }, None, _) => {
                return Err(ChatError::BadRequest(
                    "agents must name the conversation_id to send to".into(),
                ))
            }
            (_, _, Some(known)) => known,
            (_, Some(id), None) => self.authorized_conversation(principal, id).await?,
            (
                Principal::Visitor {
                    visitor_id,
                    site_id,
                },
                None,
                None,
            ) => match store.open_conversation_of(site_id, *visitor_id).await? {
                Some(c) => c,
                // The visitor's first conversation: the visitor row is written now, not on
                // connect.
                None => {
                    self.start_conversation(site_id, *visitor_id, profile.cloned())
                        .await?
                }
            },
        };
        let mut conversation = conversation;
        if principal.role() == Role::Visitor && conversation.status == ConversationStatus::Closed {
            let reopened = store
                .set_status(conversation.id, ConversationStatus::Open)
                .await?;
            self.publish_conversation(&reopened);
            conversation = reopened;
        }
        let appended = store
            .append_message(NewMessage {
                conversation_id: conversation.id,
                client_msg_id,
                sender: principal.as_sender(),
                body,
            })
            .await?;
        match &appended {
            Appended::Inserted(message) => self.publish_message(message, &conversation, true),
            // A recent duplicate is fanned out again: its first attempt may have committed and
            // then lost its fan-out (the process died, or the commit's answer never arrived).
            // Sessions that already have it drop it by its seq.
            Appended::Duplicate(message)
                if chrono::Utc::now() - message.created_at < REPUBLISH_DUPLICATES_WITHIN =>
            {
                self.publish_message(message, &conversation, false)
            }
            Appended::Duplicate(_) => {}
        }
        Ok((appended, conversation))
    }

    /// Like [`ChatService::send`], and says whether a session of the conversation's visitor was
    /// connected to this process to get the message live (`None` for a duplicate, which was
    /// delivered when it was first sent).
    pub async fn send_reporting_delivery(
        &self,
        principal: &Principal,
        conversation_id: Option<ConversationId>,
        client_msg_id: Option<String>,
        body: String,
    ) -> Result<(Appended, Option<Delivery>), ChatError> {
        let (appended, conversation) = self
            .send_to_visitor(principal, conversation_id, client_msg_id, body, None, None)
            .await?;
        let visitor_id = conversation.visitor_id;
        let delivery = match appended {
            Appended::Duplicate(_) => None,
            Appended::Inserted(_) if self.visitor_connected(visitor_id) => Some(Delivery::Live),
            Appended::Inserted(_) => Some(Delivery::Stored),
        };
        Ok((appended, delivery))
    }

    /// An agent's message to the known user `user_id` of `site` (the website's own user id,
    /// issue 13): to the user's open conversation, or a new one when there is none (the user's
    /// visitor row is created then, as a verified user). Says whether a session of the user
    /// was connected here to get it live, as [`ChatService::send_reporting_delivery`].
    pub async fn send_to_user(
        &self,
        principal: &Principal,
        site: &str,
        user_id: &str,
        client_msg_id: Option<String>,
        body: String,
    ) -> Result<(Appended, Option<Delivery>), ChatError> {
        let Principal::Agent { sites, .. } = principal else {
            return Err(ChatError::Forbidden("only agents reply to users".into()));
        };
        if !crate::model::is_valid_site_id(site) {
            return Err(ChatError::BadRequest(
                "site must be 1..=64 of [A-Za-z0-9_-]".into(),
            ));
        }
        if !sites.contains(site) {
            return Err(ChatError::Forbidden(format!(
                "you are not an agent of site `{site}`"
            )));
        }
        let claim = crate::identity::UserClaim {
            id: user_id.to_owned(),
            ..Default::default()
        };
        claim.validate().map_err(ChatError::BadRequest)?;
        let visitor_id = crate::identity::user_visitor_id(site, user_id);
        let store = &self.inner.store;
        let conversation = match store.open_conversation_of(site, visitor_id).await? {
            Some(open) => open,
            None => {
                // A stored profile (name, email from the widget) is kept as it is.
                let profile = match store.visitor(visitor_id).await? {
                    Some(_) => None,
                    None => Some(claim.profile(true)),
                };
                self.start_conversation(site, visitor_id, profile).await?
            }
        };
        self.send_reporting_delivery(principal, Some(conversation.id), client_msg_id, body)
            .await
    }

    /// A new open conversation of `visitor_id`, announced. The visitor row is written first
    /// (`ensure_visitor` is idempotent), with `profile` when given.
    async fn start_conversation(
        &self,
        site: &str,
        visitor_id: VisitorId,
        profile: Option<VisitorProfile>,
    ) -> Result<Conversation, ChatError> {
        let store = &self.inner.store;
        store
            .ensure_visitor(&Visitor {
                id: visitor_id,
                site_id: site.to_owned(),
                created_at: chrono::Utc::now(),
                profile,
            })
            .await?;
        let created = store.create_conversation(site, visitor_id).await?;
        self.publish_conversation(&created);
        Ok(created)
    }

    /// Assigns a conversation to the calling agent.
    pub async fn assign(
        &self,
        principal: &Principal,
        id: ConversationId,
    ) -> Result<Conversation, ChatError> {
        let Principal::Agent { agent, .. } = principal else {
            return Err(ChatError::Forbidden(
                "only agents can assign conversations".into(),
            ));
        };
        self.authorized_conversation(principal, id).await?;
        let conversation = self
            .inner
            .store
            .assign(id, Some(agent))
            .await
            .map_err(not_found(id))?;
        self.publish_conversation(&conversation);
        Ok(conversation)
    }

    /// Closes a conversation (agents: any; visitors: their own).
    pub async fn close(
        &self,
        principal: &Principal,
        id: ConversationId,
    ) -> Result<Conversation, ChatError> {
        self.authorized_conversation(principal, id).await?;
        let conversation = self
            .inner
            .store
            .set_status(id, ConversationStatus::Closed)
            .await
            .map_err(not_found(id))?;
        self.publish_conversation(&conversation);
        Ok(conversation)
    }

    /// Lists conversations for agents: of `site`, or of every site the agent works for.
    pub async fn list(
        &self,
        principal: &Principal,
        site: Option<SiteId>,
        status: Option<ConversationStatus>,
        limit: Option<u32>,
    ) -> Result<Vec<Conversation>, ChatError> {
        let Principal::Agent { sites, .. } = principal else {
            return Err(ChatError::Forbidden(
                "only agents can list conversations".into(),
            ));
        };
        let sites = match site {
            Some(site) if sites.contains(&site) => Some(vec![site]),
            Some(site) => {
                return Err(ChatError::Forbidden(format!(
                    "you are not an agent of site `{}`",
                    site.chars().take(70).collect::<String>()
                )))
            }
            None => sites.list().map(<[SiteId]>::to_vec),
        };
        Ok(self
            .inner
            .store
            .list_conversations(&ConversationFilter {
                sites,
                status,
                limit: page_limit(limit),
            })
            .await?)
    }

    /// A page of a conversation's messages after `after_seq`: at most `limit` (default 100, at
    /// most 500) and at most [`ServiceConfig::max_answer_bytes`] of JSON, but never empty while
    /// messages follow.
    pub async fn history(
        &self,
        principal: &Principal,
        id: ConversationId,
        after_seq: i64,
        limit: Option<u32>,
    ) -> Result<HistoryPage, ChatError> {
        self.authorized_conversation(principal, id).await?;
        let limit = page_limit(limit);
        // One more than asked tells whether the page is the last.
        let mut messages = self
            .inner
            .store
            .messages_after(id, after_seq.max(0), limit + 1)
            .await?;
        let mut more = messages.len() > limit as usize;
        let mut budget = self.inner.config.max_answer_bytes;
        let mut fits = 0;
        for message in messages.iter().take(limit as usize) {
            let size = message_json_len(message);
            if fits > 0 && size > budget {
                break;
            }
            budget = budget.saturating_sub(size);
            fits += 1;
        }
        if fits < messages.len() {
            more = true;
            messages.truncate(fits);
        }
        Ok(HistoryPage { messages, more })
    }
}

/// What a resume does with a conversation the session may not see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unauthorized {
    /// Refuse the whole resume (`forbidden`): the client asked for it by name.
    Refuse,
    /// Leave it out: a recovery's remembered positions.
    Skip,
}

/// What the main site said about a visitor opening a session (`ChatWidgetConfig.user`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VisitorIntro {
    /// The user fields, verified or not.
    pub profile: Option<VisitorProfile>,
    /// The anonymous visitor the same browser was before logging in.
    pub merge_from: Option<VisitorId>,
}

/// A page of messages and whether more follow it.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryPage {
    /// The messages, oldest first.
    pub messages: Vec<Message>,
    /// More messages follow the last one: ask again from its `seq`.
    pub more: bool,
}

/// The bytes `message` takes in an answer (its JSON plus a separator).
fn message_json_len(message: &Message) -> usize {
    serde_json::to_vec(message).map_or(0, |json| json.len()) + 1
}

fn not_found(id: ConversationId) -> impl Fn(StoreError) -> ChatError {
    move |e| match e {
        StoreError::NotFound(_) => ChatError::NotFound(format!("conversation {id} does not exist")),
        other => ChatError::Store(other),
    }
}

fn page_limit(limit: Option<u32>) -> u32 {
    limit.unwrap_or(100).clamp(1, 500)
}

/// What [`ChatSession::next_event`] yields.
// Events are moved straight to the transport and written; boxing them would add an allocation
// per event to save stack space in a value that never sits in a collection.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Outbound {
    /// Write this event to the client.
    Event(ServerEvent),
    /// The session fell too far behind and was dropped from fan-out: close it with a code that
    /// tells the client to reconnect and resume.
    Lagged,
    /// The gateway is shutting down: close with "going away".
    ShuttingDown,
    /// The agent's token expired and no fresh one came (`auth`): close with 4001
    /// `token_expired`; the client reconnects with a new token and resumes.
    CredentialsExpired,
}

/// What is left of a `resume` replay for one conversation: messages after `after` up to and
/// including `upto`, except those in `skip` (already handed to the client by this session).
#[derive(Debug, Clone)]
struct ReplayRange {
    conversation: ConversationId,
    after: i64,
    upto: i64,
    skip: Option<std::ops::RangeInclusive<i64>>,
}

/// Messages of one conversation a session let go while holding (see [`RESUME_GRACE`]): every
/// `seq` in `after + 1 ..= upto` is in the store and none was handed to the client.
#[derive(Debug, Clone, Copy)]
struct HeldRange {
    after: i64,
    upto: i64,
}

impl HeldRange {
    fn of(seq: i64) -> Self {
        Self {
            after: seq - 1,
            upto: seq,
        }
    }

    fn widen(&mut self, seq: i64) {
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
pub struct ChatSession(Box<ChatSessionState>);

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
    id: String,
    principal: Principal,
    transport: TransportKind,
    service: ChatService,
    subscriber: u64,
    rx: crate::mailbox::MailboxReceiver<Arc<HubEvent>>,
    lagged: Arc<AtomicBool>,
    shutdown: watch::Receiver<bool>,
    /// Per conversation, the highest `seq` handed to the transport: the resume boundary.
    delivered: HashMap<ConversationId, i64>,
    /// Per conversation first delivered live (no cursor known then), the first `seq` delivered:
    /// from it up to `delivered`, the client has every message (gaps are filled).
    live_from: HashMap<ConversationId, i64>,
    /// Until this instant, or until the client's first `resume` or `send`, live events wait in
    /// the queue: a client that reconnects sends `resume` right after `welcome`, and a message
    /// delivered live before it would arrive ahead of the older ones the replay brings.
    resume_grace: Option<tokio::time::Instant>,
    /// Messages that arrived during `resume_grace`, in order (at most `session_queue`).
    held: VecDeque<Arc<HubEvent>>,
    /// Once `held` overflowed: per conversation, the messages let go during `resume_grace`, to
    /// replay from the store when it ends (at most `session_queue` conversations). While this is
    /// non-empty `held` stays empty.
    held_ranges: HashMap<ConversationId, HeldRange>,
    pending: VecDeque<ServerEvent>,
    /// A hub event taken off the queue whose processing was interrupted (cancellation).
    stash: Option<Arc<HubEvent>>,
    /// Replays still to stream from the store, in order, one page at a time.
    replay: VecDeque<ReplayRange>,
    /// The expiry notice was handed out: the next call reports [`Outbound::CredentialsExpired`].
    credentials_expired: bool,
    /// When the credentials the session was opened (or last renewed) with expire.
    expires: Option<tokio::time::Instant>,
    counted_as_agent: bool,
    /// Whether this session is in [`ChatService::session_counts`].
    counted: bool,
    /// Whatever the gateway's admission holds for the life of the session (its connection
    /// slot), released when the session is dropped.
    admission: Option<Box<dyn std::any::Any + Send + Sync>>,
    /// Conversations this session sent to, as last seen (updated by conversation events), so
    /// that a send needs no read of the store (at most [`MAX_KNOWN_CONVERSATIONS`]).
    known: HashMap<ConversationId, (Conversation, u64)>,
    /// A visitor's open conversation: where a send naming none goes.
    open_conversation: Option<ConversationId>,
    /// A visitor's agents-online count as last told, so a change on another site is not
    /// told again.
    presence_told: Option<u32>,
    /// What the main site said about the visitor, stored with their first conversation.
    profile: Option<VisitorProfile>,
    /// The `context` reports of a visitor (see `service/context.rs`).
    context: context::ContextState,
}

impl ChatSessionState {
    /// Keeps `conversation` as this session last saw it; for a visitor, it is now the open
    /// conversation a send naming none goes to (the store's "most recently updated open one").
    ///
    /// `changes` is the process's count of conversation changes taken before `conversation` was
    /// read: when a change was seen since, the copy may be stale and is not kept. A kept copy
    /// is used while its conversation's change count has not moved (see [`Inner::epoch`]).
    fn remember_if_unchanged(&mut self, conversation: Conversation, changes: u64) {
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

    fn remember(&mut self, conversation: Conversation, epoch: u64) {
        if self.known.len() >= MAX_KNOWN_CONVERSATIONS && !self.known.contains_key(&conversation.id)
        {
            self.known.clear();
        }
        self.known.insert(conversation.id, (conversation, epoch));
    }

    /// The remembered copy of conversation `id` with its change count, while it is current.
    fn known_conversation(&self, id: ConversationId) -> Option<(Conversation, u64)> {
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

    /// Recovers a client that says it has `cursors` and was last sent something at
    /// `since_unix_ms`: like `resume`, and for an agent also every conversation changed since
    /// then, its messages replayed from the start when the client had none of them (a
    /// conversation created while it was away). Answers like [`ChatSession::handle`].
    pub async fn recover(
        &mut self,
        mut cursors: BTreeMap<ConversationId, i64>,
        since_unix_ms: Option<i64>,
    ) -> ServerEvent {
        self.resume_grace = None;
        let since = since_unix_ms
            .and_then(chrono::DateTime::from_timestamp_millis)
            .filter(|_| self.principal.role() == Role::Agent);
        let mut result = Ok(());
        if let Some(since) = since {
            result = self
                .replay_conversation_changes(None, since, Some(&mut cursors))
                .await;
        }
        let result = match result {
            // A recovering client's positions may name conversations its new credentials no
            // longer cover (an agent whose token now lists fewer sites): those are left out
            // rather than failing the whole recovery.
            Ok(()) => self.resume(cursors, Unauthorized::Skip).await,
            Err(error) => Err(error),
        };
        self.answer(
            None,
            result.map(|replayed| Ack {
                replayed: Some(replayed),
                ..Ack::default()
            }),
        )
    }

    /// Lets live messages through at once, for a transport whose client cannot have missed
    /// anything (a first connection) or has already resumed another way.
    pub fn end_resume_grace(&mut self) {
        self.resume_grace = None;
    }

    /// Answers one decoded client frame with exactly one `ack` or `error` event. Events that the
    /// command causes (replayed messages) follow through [`ChatSession::next_event`].
    pub async fn handle(&mut self, frame: ClientFrame) -> ServerEvent {
        let id = frame.id;
        if matches!(
            frame.command,
            ClientCommand::Resume { .. } | ClientCommand::Send { .. }
        ) {
            self.resume_grace = None;
        }
        let result = self.execute(frame.command).await;
        self.answer(id, result)
    }

    /// The `ack` or `error` event answering command `id`.
    fn answer(&self, id: Option<String>, result: Result<Ack, ChatError>) -> ServerEvent {
        match result {
            Ok(mut ack) => {
                ack.id = id;
                ServerEvent::Ack(Box::new(ack))
            }
            Err(error) => {
                if matches!(error.code(), ErrorCode::Internal | ErrorCode::Unavailable) {
                    tracing::warn!(session = %self.id, %error, "command failed");
                }
                ServerEvent::Error(ErrorEvent {
                    id,
                    code: error.code(),
                    message: error.client_message(),
                    retry_after_ms: error.retry_after().map(|d| d.as_millis() as u64),
                })
            }
        }
    }

    async fn execute(&mut self, command: ClientCommand) -> Result<Ack, ChatError> {
        let service = self.service.clone();
        let principal = &self.principal;
        match command {
            ClientCommand::Send {
                conversation_id,
                client_msg_id,
                body,
            } => {
                if let Err(retry_after) = service.inner.take_visitor_send(principal) {
                    crate::metrics::send_rate_limited(self.transport);
                    return Err(ChatError::RateLimited {
                        what: "sending too fast".into(),
                        retry_after,
                    });
                }
                let known = conversation_id
                    .or(self.open_conversation)
                    .and_then(|id| self.known_conversation(id));
                let known_epoch = known.as_ref().map(|(c, epoch)| (c.id, *epoch));
                let changes = service.inner.conversation_changes.load(Ordering::SeqCst);
                let (appended, conversation) = service
                    .send_to_visitor(
                        principal,
                        conversation_id,
                        client_msg_id,
                        body,
                        known.map(|(c, _)| c),
                        self.profile.as_ref(),
                    )
                    .await?;
                match known_epoch {
                    // Written to the remembered copy, which was current: it still is as far
                    // as this send goes (a reopen it made counts as a change).
                    Some((id, epoch)) if id == conversation.id => {
                        if conversation.status == ConversationStatus::Open
                            && self.principal.role() == Role::Visitor
                        {
                            self.open_conversation = Some(id);
                        }
                        self.remember(conversation, epoch)
                    }
                    _ => self.remember_if_unchanged(conversation, changes),
                }
                let principal = &self.principal;
                let duplicate = matches!(appended, Appended::Duplicate(_));
                if !duplicate {
                    crate::metrics::message_committed(principal.role(), self.transport.as_str());
                }
                let message = match appended {
                    Appended::Inserted(m) | Appended::Duplicate(m) => m,
                };
                self.store_pending_context().await;
                Ok(Ack {
                    message: Some(message),
                    duplicate: Some(duplicate),
                    ..Ack::default()
                })
            }
            ClientCommand::Resume {
                cursors,
                conversations_since,
                site,
            } => {
                if let Some(since) = conversations_since {
                    self.replay_conversation_changes(site, since, None).await?;
                }
                let replayed = self.resume(cursors, Unauthorized::Refuse).await?;
                Ok(Ack {
                    replayed: Some(replayed),
                    ..Ack::default()
                })
            }
            ClientCommand::History {
                conversation_id,
                after_seq,
                limit,
            } => {
                let page = service
                    .history(principal, conversation_id, after_seq, limit)
                    .await?;
                Ok(Ack {
                    messages: Some(page.messages),
                    more: Some(page.more),
                    ..Ack::default()
                })
            }
            ClientCommand::ListConversations {
                site,
                status,
                limit,
            } => Ok(Ack {
                conversations: Some(service.list(principal, site, status, limit).await?),
                ..Ack::default()
            }),
            ClientCommand::Assign { conversation_id } => Ok(Ack {
                conversation: Some(service.assign(principal, conversation_id).await?),
                ..Ack::default()
            }),
            ClientCommand::Close { conversation_id } => Ok(Ack {
                conversation: Some(service.close(principal, conversation_id).await?),
                ..Ack::default()
            }),
            ClientCommand::Auth { token } => {
                let exp = self.renew(&token)?;
                Ok(Ack {
                    expires_at: Some(exp),
                    ..Ack::default()
                })
            }
            ClientCommand::Context { context } => self.report_context(context).await,
            ClientCommand::Visitor { conversation_id } => Ok(Ack {
                visitor: Some(Box::new(
                    service.visitor_of(principal, conversation_id).await?,
                )),
                ..Ack::default()
            }),
        }
    }

    /// Checks a fresh agent token for this session and moves its expiry to the token's.
    fn renew(&mut self, token: &str) -> Result<u64, ChatError> {
        let Principal::Agent { agent, sites } = &self.principal else {
            return Err(ChatError::Forbidden(
                "only agent sessions renew credentials; visitor tokens do not expire".into(),
            ));
        };
        let Some(tokens) = self.service.inner.agent_tokens.get() else {
            return Err(ChatError::BadRequest(
                "this gateway does not renew credentials".into(),
            ));
        };
        let verified = tokens.verify_with_expiry(token).map_err(|e| {
            ChatError::Unauthorized(crate::auth::Authenticator::describe_agent_refusal(&e))
        })?;
        let (renewed, exp) = (verified.agent, verified.expires_at);
        if renewed.id != agent.id {
            return Err(ChatError::Forbidden(format!(
                "the token names agent {}, this session is agent {}",
                renewed.id, agent.id
            )));
        }
        // The session's subscriptions follow its sites: a token for other sites needs a new
        // session.
        if verified.sites != *sites {
            return Err(ChatError::Forbidden(format!(
                "the token is for sites `{}`, this session for `{sites}`: reconnect with it",
                verified.sites
            )));
        }
        self.expires = Some(instant_of_unix(exp));
        Ok(exp)
    }

    /// Queues a `conversation` event for each conversation of `site` (default: every site of
    /// the agent) changed after `since`,
    /// oldest first: the list changes an agent missed while disconnected.
    /// With `unseen`, each changed conversation missing from those cursors is added at 0, so
    /// that its messages are replayed too (a recovering client that never saw it).
    async fn replay_conversation_changes(
        &mut self,
        site: Option<SiteId>,
        since: chrono::DateTime<chrono::Utc>,
        unseen: Option<&mut BTreeMap<ConversationId, i64>>,
    ) -> Result<(), ChatError> {
        let mut changed: Vec<Conversation> = self
            .service
            .list(&self.principal, site, None, Some(500))
            .await?
            .into_iter()
            .filter(|c| c.updated_at > since)
            .collect();
        changed.reverse();
        if let Some(cursors) = unseen {
            for c in &changed {
                cursors.entry(c.id).or_insert(0);
            }
        }
        self.pending.extend(
            changed
                .into_iter()
                .map(|conversation| ServerEvent::Conversation { conversation }),
        );
        Ok(())
    }

    /// Replays what the client missed, then lets live events through with no gap and no
    /// duplicate: the session is already subscribed, so anything committed after the reads
    /// below arrives live, and live events at or below the replayed position are dropped.
    ///
    /// The replay streams: each conversation's end is fixed now (its `last_seq`), and
    /// [`ChatSession::next_event`] reads the messages from the store one page at a time as the
    /// client takes them, before any live event. Returns how many messages will be replayed.
    async fn resume(
        &mut self,
        cursors: BTreeMap<ConversationId, i64>,
        unauthorized: Unauthorized,
    ) -> Result<u64, ChatError> {
        if cursors.len() > 500 {
            return Err(ChatError::BadRequest(
                "resume at most 500 conversations at once".into(),
            ));
        }
        let mut ranges = Vec::with_capacity(cursors.len());
        let mut count = 0u64;
        for (conversation_id, cursor) in cursors {
            if cursor < 0 {
                return Err(ChatError::BadRequest("cursors must be >= 0".into()));
            }
            let conversation = match self
                .service
                .authorized_conversation(&self.principal, conversation_id)
                .await
            {
                Ok(conversation) => conversation,
                Err(ChatError::Forbidden(_)) if unauthorized == Unauthorized::Skip => continue,
                Err(error) => return Err(error),
            };
            // What this session already handed over for the conversation is not sent again:
            // everything up to `delivered` when an earlier resume set it, or from `live_from`
            // up to `delivered` when it was first delivered live.
            let skip = self.delivered.get(&conversation_id).map(|&upto| {
                let from = self.live_from.get(&conversation_id).copied().unwrap_or(1);
                from..=upto
            });
            // Sequence numbers have no holes, so the count is known without reading.
            let upto = conversation.last_seq;
            let mut missing = (upto - cursor).max(0);
            if let Some(skip) = &skip {
                let overlap = (*skip.end()).min(upto) - (*skip.start()).max(cursor + 1) + 1;
                missing -= overlap.max(0);
            }
            count += missing as u64;
            ranges.push(ReplayRange {
                conversation: conversation_id,
                after: cursor,
                upto,
                skip,
            });
        }
        // Only now, with every read done, change state: a failed resume leaves nothing half-done.
        crate::metrics::replayed(self.transport, count);
        for range in ranges {
            let handed = self
                .delivered
                .get(&range.conversation)
                .copied()
                .unwrap_or(0);
            self.delivered
                .insert(range.conversation, range.upto.max(handed));
            self.live_from.remove(&range.conversation);
            // Every message let go while holding was committed before this resume read the
            // conversation's end, so this replay covers it.
            self.held_ranges.remove(&range.conversation);
            if range.after < range.upto {
                self.replay.push_back(range);
            }
        }
        Ok(count)
    }

    /// Reads the next page of the replay into `pending`. Cancel-safe: state changes only once
    /// the page has been read.
    async fn stream_replay(&mut self) {
        let Some(range) = self.replay.front() else {
            return;
        };
        let want = REPLAY_PAGE.min((range.upto - range.after).clamp(0, i64::from(u32::MAX)) as u32);
        let read = self
            .service
            .inner
            .store
            .messages_after(range.conversation, range.after, want)
            .await;
        let page = match read {
            Ok(page) => page,
            Err(error) => {
                // A replay cut short would leave a hole: end the session, and the client
                // resumes from what it got.
                tracing::warn!(session = %self.id, %error, "replay read failed; telling the client to resume");
                self.replay.clear();
                self.lagged.store(true, Ordering::Release);
                return;
            }
        };
        let Some(range) = self.replay.front_mut() else {
            return;
        };
        let upto = range.upto;
        let last = page.last().map_or(upto, |m| m.seq);
        for message in page {
            if message.seq > upto
                || range
                    .skip
                    .as_ref()
                    .is_some_and(|s| s.contains(&message.seq))
            {
                continue;
            }
            self.pending.push_back(ServerEvent::Message { message });
        }
        range.after = last;
        if last >= upto {
            self.replay.pop_front();
        }
    }

    /// The next thing to tell the client. Cancel-safe: an event taken from the queue is kept
    /// until it has been fully processed.
    pub async fn next_event(&mut self) -> Outbound {
        loop {
            if self
                .expires
                .is_some_and(|at| tokio::time::Instant::now() >= at)
            {
                self.expires = None;
                self.pending.clear();
                self.replay.clear();
                self.credentials_expired = true;
                return Outbound::Event(ServerEvent::Error(ErrorEvent {
                    id: None,
                    code: ErrorCode::TokenExpired,
                    retry_after_ms: None,
                    message: "agent token expired: reconnect with a fresh token, or send `auth` \
                              with one before the old token expires"
                        .into(),
                }));
            }
            if self.credentials_expired {
                return Outbound::CredentialsExpired;
            }
            if let Some(event) = self.pending.pop_front() {
                return Outbound::Event(event);
            }
            if !self.replay.is_empty() {
                // Boxed here and for `absorb` below: both read the store, and inline their
                // futures would make every idle session's task (which holds this one) as large
                // as the largest store call (issue-12 heap profile).
                Box::pin(self.stream_replay()).await;
                continue;
            }
            if *self.shutdown.borrow() {
                return Outbound::ShuttingDown;
            }
            if self.lagged.load(Ordering::Acquire) {
                return Outbound::Lagged;
            }
            let now = tokio::time::Instant::now();
            let grace_until = self.resume_grace.filter(|until| now < *until);
            if grace_until.is_none() {
                self.resume_grace = None;
            }
            if grace_until.is_none() && !self.held_ranges.is_empty() {
                self.release_held_ranges();
                continue;
            }
            let event = match self.stash.take() {
                Some(event) => event,
                None if grace_until.is_none() && !self.held.is_empty() => {
                    match self.held.pop_front() {
                        Some(event) => event,
                        None => continue,
                    }
                }
                None => {
                    tokio::select! {
                        event = self.rx.recv() => match event {
                            Some(event) => event,
                            None => return Outbound::Lagged,
                        },
                        _ = self.shutdown.changed() => continue,
                        _ = tokio::time::sleep_until(self.expires.unwrap_or(now)), if self.expires.is_some() => continue,
                        _ = tokio::time::sleep_until(grace_until.unwrap_or(now)), if grace_until.is_some() => {
                            self.resume_grace = None;
                            continue;
                        }
                    }
                }
            };
            if let (Some(_), HubEvent::Message(message)) = (grace_until, &*event) {
                // Conversation and presence changes go through at once; messages wait for the
                // resume that decides where the client's replay ends.
                self.hold_message(message, event.clone());
                continue;
            }
            self.stash = Some(event.clone());
            let events = Box::pin(self.absorb(&event)).await;
            self.stash = None;
            self.pending.extend(events);
        }
    }

    /// Holds `message` (the hub's `event`) back during the resume grace, in memory while fewer
    /// than `session_queue` are held, as a range to replay from the store after that (see
    /// [`RESUME_GRACE`]). Never ends the session.
    fn hold_message(&mut self, message: &Message, event: Arc<HubEvent>) {
        let limit = self.service.inner.config.session_queue.max(1);
        if self.held_ranges.is_empty() && self.held.len() < limit {
            self.held.push_back(event);
            return;
        }
        if !self.held.is_empty() {
            crate::metrics::held_spilled(self.transport);
            tracing::debug!(session = %self.id, held = self.held.len(), "held messages let go; they will be replayed from the store");
        }
        for held in std::mem::take(&mut self.held) {
            if let HubEvent::Message(m) = &*held {
                self.held_ranges
                    .entry(m.conversation_id)
                    .and_modify(|r| r.widen(m.seq))
                    .or_insert_with(|| HeldRange::of(m.seq));
            }
        }
        self.held_ranges
            .entry(message.conversation_id)
            .and_modify(|r| r.widen(message.seq))
            .or_insert_with(|| HeldRange::of(message.seq));
        if self.held_ranges.len() >= limit {
            // As many conversations as a session may queue events: stop holding rather than
            // grow; the ranges are replayed now and what follows is live.
            self.resume_grace = None;
        }
    }

    /// The grace is over: queues the replay of every range let go while holding, after any
    /// replay a `resume` queued, and counts those messages as handed over so that their live
    /// copies (and anything older) are dropped.
    fn release_held_ranges(&mut self) {
        let mut ranges: Vec<_> = self.held_ranges.drain().collect();
        ranges.sort_by_key(|(conversation, _)| *conversation);
        for (conversation, held) in ranges {
            let handed = self.delivered.get(&conversation).copied();
            let after = handed.map_or(held.after, |h| h.max(held.after));
            if after >= held.upto {
                continue;
            }
            if handed.is_none() {
                self.live_from.insert(conversation, after + 1);
            }
            self.delivered.insert(conversation, held.upto);
            crate::metrics::replayed(self.transport, (held.upto - after) as u64);
            self.replay.push_back(ReplayRange {
                conversation,
                after,
                upto: held.upto,
                skip: None,
            });
        }
    }

    /// Turns a hub event into what this client should see, filling a gap from the store if
    /// messages arrived out of order and dropping what was already delivered.
    async fn absorb(&mut self, event: &HubEvent) -> Vec<ServerEvent> {
        match event {
            HubEvent::Message(message) => {
                let conversation = message.conversation_id;
                let seen = self.delivered.get(&conversation).copied();
                let mut out = Vec::new();
                match seen {
                    Some(seen) if message.seq <= seen => return out,
                    Some(seen) if message.seq > seen + 1 + MAX_GAP_FILL => {
                        tracing::debug!(session = %self.id, seen, seq = message.seq, "gap too large to fill live; telling the client to resume");
                        self.lagged.store(true, Ordering::Release);
                        return out;
                    }
                    Some(seen) if message.seq > seen + 1 => {
                        match self
                            .service
                            .inner
                            .store
                            .messages_after(conversation, seen, (message.seq - seen - 1) as u32)
                            .await
                        {
                            Ok(missing) => out.extend(
                                missing
                                    .into_iter()
                                    .filter(|m| m.seq < message.seq)
                                    .map(|message| ServerEvent::Message { message }),
                            ),
                            Err(error) => {
                                // Delivering past a hole would break "no gap": end the session
                                // instead, and the client resumes from its cursor.
                                tracing::warn!(session = %self.id, %error, "gap fill failed; telling the client to resume");
                                self.lagged.store(true, Ordering::Release);
                                return out;
                            }
                        }
                    }
                    _ => {}
                }
                if seen.is_none() {
                    self.live_from.insert(conversation, message.seq);
                }
                self.delivered.insert(conversation, message.seq);
                crate::metrics::observe_delivery(message, self.principal.role(), self.transport);
                out.push(ServerEvent::Message {
                    message: message.clone(),
                });
                out
            }
            HubEvent::Conversation(conversation) => {
                vec![ServerEvent::Conversation {
                    conversation: conversation.clone(),
                }]
            }
            HubEvent::Presence(presence) => match &self.principal {
                Principal::Visitor { site_id, .. } => {
                    let online = presence.online(site_id);
                    if self.presence_told == Some(online) {
                        return Vec::new();
                    }
                    self.presence_told = Some(online);
                    vec![ServerEvent::Presence {
                        agents_online: online,
                    }]
                }
                Principal::Agent { .. } => Vec::new(),
            },
        }
    }
}

impl Drop for ChatSessionState {
    fn drop(&mut self) {
        if self.counted {
            self.service
                .count_session(self.transport, &self.principal, -1);
        }
        let hub = &self.service.inner.hub;
        hub.remove(self.subscriber);
        if let (true, Principal::Agent { sites, .. }) = (self.counted_as_agent, &self.principal) {
            self.service
                .inner
                .local_agents_changed(hub.agent_presence(sites, -1));
        }
    }
}

impl Inner {
    /// Takes a send from the visitor's bucket, or says when one will be available. Agents, and
    /// every sender when no rate is configured, are not limited.
    fn take_visitor_send(&self, principal: &Principal) -> Result<(), Duration> {
        match principal {
            Principal::Visitor { visitor_id, .. } => self.visitor_sends.take(visitor_id),
            Principal::Agent { .. } => Ok(()),
        }
    }

    /// `site` is empty for a message from a process older than site scoping: then only
    /// agents of every site get it live (the others see it on their next list or resume).
    fn publish_message_locally(&self, message: Message, visitor_id: VisitorId, site: &str) {
        self.hub.publish(
            &[
                Topic::Visitor(visitor_id),
                Topic::Agents,
                Topic::Site(site.to_owned()),
            ],
            HubEvent::Message(message),
        );
    }

    /// Changes to conversation `id` (and to those sharing its counter) seen so far.
    fn epoch(&self, id: ConversationId) -> u64 {
        self.conversation_epochs[epoch_slot(id)].load(Ordering::SeqCst)
    }

    fn publish_conversation_locally(&self, conversation: Conversation) {
        // Counted before sessions hear of it: a session's copy read before this is stale. The
        // total first: a session that reads the conversation's count and then finds the total
        // unchanged (`remember_if_unchanged`) has read the count from before this change.
        self.conversation_changes.fetch_add(1, Ordering::SeqCst);
        self.conversation_epochs[epoch_slot(conversation.id)].fetch_add(1, Ordering::SeqCst);
        self.hub.publish(
            &[
                Topic::Visitor(conversation.visitor_id),
                Topic::Agents,
                Topic::Site(conversation.site_id.clone()),
            ],
            HubEvent::Conversation(conversation),
        );
    }

    /// Agents here and on other live processes; forgets processes not heard from in time.
    fn agents_online(&self) -> AgentPresence {
        let mut online = self.hub.agents_online();
        let mut remote = self
            .remote_agents
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        remote.retain(|_, (_, heard)| heard.elapsed() < PRESENCE_EXPIRY);
        for (presence, _) in remote.values() {
            online.add(presence);
        }
        online
    }

    fn announce_presence(&self) -> AgentPresence {
        let online = self.agents_online();
        self.hub
            .publish(&[Topic::Visitors], HubEvent::Presence(online.clone()));
        online
    }

    /// Tells other processes this process's agents now.
    fn publish_local_presence(&self, local: AgentPresence) {
        if let Some(bus) = &self.bus {
            bus.publish(BusEvent::Presence {
                node: bus.node_id().to_string(),
                agents_online: local.sessions,
                sites: Some(local),
            });
        }
    }

    /// This process's agents changed to `local`: tells local visitors the new counts and
    /// other processes the new local ones. Returns the totals.
    fn local_agents_changed(&self, local: AgentPresence) -> AgentPresence {
        self.publish_local_presence(local);
        self.announce_presence()
    }
}

/// Feeds events from other processes into this process's hub.
async fn run_inbound(inner: Weak<Inner>, mut inbound: mpsc::Receiver<Inbound>) {
    while let Some(item) = inbound.recv().await {
        let Some(inner) = inner.upgrade() else { return };
        match item {
            Inbound::Event(BusEvent::Message {
                visitor_id,
                site_id,
                message,
            }) => inner.publish_message_locally(message, visitor_id, &site_id),
            Inbound::Event(BusEvent::MessageRef {
                visitor_id,
                site_id,
                conversation_id,
                seq,
            }) => match inner
                .store
                .messages_after(conversation_id, seq - 1, 1)
                .await
            {
                Ok(mut found) if !found.is_empty() => {
                    inner.publish_message_locally(found.remove(0), visitor_id, &site_id)
                }
                // Sessions following the conversation recover it by gap fill or resume.
                Ok(_) => {
                    tracing::warn!(%conversation_id, seq, "bus message reference not in the store")
                }
                Err(error) => {
                    tracing::warn!(%conversation_id, seq, %error, "cannot read a bus message reference")
                }
            },
            Inbound::Event(BusEvent::Conversation(conversation)) => {
                inner.publish_conversation_locally(conversation)
            }
            Inbound::Event(BusEvent::Presence {
                node,
                agents_online,
                sites,
            }) => {
                let before = inner.agents_online();
                // A process older than site scoping: its agents work for every site.
                let presence = sites.unwrap_or(AgentPresence {
                    sessions: agents_online,
                    all_sites: agents_online,
                    by_site: Default::default(),
                });
                inner
                    .remote_agents
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .insert(node, (presence, Instant::now()));
                if inner.agents_online() != before {
                    inner.announce_presence();
                }
            }
            Inbound::Gap => {
                let evicted = inner.hub.evict_all();
                tracing::warn!(
                    evicted,
                    "the bus between gateway processes may have lost events; sessions were told to resume"
                );
            }
        }
    }
}

/// Tells other processes this process's agent count now and then, and notices processes that
/// went silent (their agents are no longer online).
async fn run_presence_heartbeat(inner: Weak<Inner>) {
    let mut last_total = None;
    loop {
        tokio::time::sleep(PRESENCE_HEARTBEAT).await;
        let Some(inner) = inner.upgrade() else { return };
        inner.publish_local_presence(inner.hub.agents_online());
        let total = inner.agents_online();
        if last_total.as_ref().is_some_and(|last| *last != total) {
            inner.announce_presence();
        }
        last_total = Some(total);
    }
}

/// Which counter of [`Inner::conversation_epochs`] counts conversation `id`'s changes.
fn epoch_slot(id: ConversationId) -> usize {
    (id.0.as_u128() % CONVERSATION_EPOCHS as u128) as usize
}

/// The Tokio instant of a Unix time in seconds (now, when it is already past).
fn instant_of_unix(unix_secs: u64) -> tokio::time::Instant {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let left = Duration::from_secs(unix_secs).saturating_sub(now);
    tokio::time::Instant::now() + left
}
