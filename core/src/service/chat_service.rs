//! The command service, [`ChatService`]: built once per process, it authorizes commands,
//! persists through the [`Store`], then fans out (`shared.rs`, `cluster.rs`). Sending is in
//! `send.rs`, opening a session in `open_session.rs`.

use crate::auth::AgentTokens;
use crate::bus::Bus;
use crate::error::{ChatError, StoreError};
use crate::hub::{AgentPresence, Hub, Topic};
use crate::model::{
    Conversation, ConversationId, ConversationStatus, Message, Principal, Role, SiteId, VisitorId,
    VisitorProfile,
};
use crate::session_end::TransportKind;
use crate::store::{ConversationFilter, Store};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use tokio::sync::watch;

use super::cluster::{run_inbound, run_presence_heartbeat};
use super::config::ServiceConfig;
use super::shared::{Inner, CONVERSATION_EPOCHS};

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
    pub(super) inner: Arc<Inner>,
}

/// Visitors whose send bucket is kept at most; past it, full buckets (which a fresh one would
/// replace exactly) are forgotten.
const MAX_VISITOR_SEND_BUCKETS: usize = 65_536;

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
                searches: crate::rate::KeyedBuckets::new(
                    Some(super::SEARCH_RATE),
                    MAX_VISITOR_SEND_BUCKETS,
                ),
                rollout: std::sync::RwLock::new(Arc::new(config.rollout.clone())),
                conversation_epochs: (0..CONVERSATION_EPOCHS)
                    .map(|_| AtomicU64::new(0))
                    .collect(),
                conversation_changes: AtomicU64::new(0),
                roster: Default::default(),
                uploads: crate::rate::KeyedBuckets::new(
                    config.upload_rate,
                    MAX_VISITOR_SEND_BUCKETS,
                ),
                attachment_files: std::sync::OnceLock::new(),
                recorded_agents: Default::default(),
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

    pub(super) fn count_session(
        &self,
        transport: TransportKind,
        principal: &Principal,
        delta: i32,
    ) {
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
        self.inner.publish_conversation(&conversation);
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
        self.history_seen_by(principal, principal.role(), id, after_seq, limit)
            .await
    }

    /// [`ChatService::history`] as `audience` sees it: an agent (or a server with the API key)
    /// may read what the conversation's visitor sees, notes left out ([`crate::visibility`]);
    /// a visitor reads as a visitor whatever it asks.
    pub async fn history_seen_by(
        &self,
        principal: &Principal,
        audience: Role,
        id: ConversationId,
        after_seq: i64,
        limit: Option<u32>,
    ) -> Result<HistoryPage, ChatError> {
        self.authorized_conversation(principal, id).await?;
        let audience = match principal.role() {
            Role::Visitor => Role::Visitor,
            Role::Agent => audience,
        };
        let limit = page_limit(limit);
        // One more than asked tells whether the page is the last.
        let mut messages = self
            .messages_for(audience, id, after_seq.max(0), limit + 1)
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

impl ChatService {
    /// Messages of conversation `id` after `after_seq` that `role` may see, at most `limit`,
    /// in order: for a visitor, the store's visitor read, checked again by
    /// [`crate::visibility::visible_to`]. Every read of messages for a client goes through
    /// here (`history`, a session's replay and gap fill).
    pub(super) async fn messages_for(
        &self,
        role: Role,
        id: ConversationId,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<Message>, StoreError> {
        let store = &self.inner.store;
        Ok(match role {
            Role::Agent => store.messages_after(id, after_seq, limit).await?,
            Role::Visitor => {
                let mut page = store.visitor_messages_after(id, after_seq, limit).await?;
                page.retain(|m| crate::visibility::visible_to(role, m));
                page
            }
        })
    }
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

pub(super) fn not_found(id: ConversationId) -> impl Fn(StoreError) -> ChatError {
    move |e| match e {
        StoreError::NotFound(_) => ChatError::NotFound(format!("conversation {id} does not exist")),
        other => ChatError::Store(other),
    }
}

pub(super) fn page_limit(limit: Option<u32>) -> u32 {
    limit.unwrap_or(100).clamp(1, 500)
}
