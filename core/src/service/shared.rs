//! What every part of the service shares: [`Inner`], the process-wide state behind a
//! [`ChatService`](crate::service::ChatService), and the fan-out of changes to this process's sessions
//! through the [`Hub`] (the bus to other processes is in `cluster.rs`).

use crate::auth::AgentTokens;
use crate::bus::Bus;
use crate::hub::{AgentPresence, Hub, HubEvent, Topic};
use crate::model::{Conversation, ConversationId, Message, Principal, Role, SiteId, VisitorId};
use crate::session_end::TransportKind;
use crate::store::Store;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

use super::config::ServiceConfig;

/// The state a [`ChatService`](crate::service::ChatService) and its sessions share.
pub(super) struct Inner {
    pub(super) store: Arc<dyn Store>,
    pub(super) hub: Hub,
    pub(super) config: ServiceConfig,
    pub(super) shutdown: watch::Sender<bool>,
    pub(super) open_sessions: std::sync::Mutex<HashMap<(TransportKind, Role), u32>>,
    /// Visitor sessions open on this process, by site (no zero entries).
    pub(super) visitor_sessions_by_site: std::sync::Mutex<HashMap<SiteId, u32>>,
    pub(super) bus: Option<Arc<dyn Bus>>,
    /// Agents connected to other processes, by process, with when each was last heard from.
    pub(super) remote_agents: std::sync::Mutex<HashMap<String, (AgentPresence, Instant)>>,
    /// What verifies the fresh token of an `auth` command (set once at start-up).
    pub(super) agent_tokens: std::sync::OnceLock<AgentTokens>,
    /// Send buckets by visitor (`ServiceConfig::visitor_send_rate`), shared by all of a
    /// visitor's sessions on this process, so reconnecting does not refill one.
    pub(super) visitor_sends: crate::rate::KeyedBuckets<VisitorId>,
    /// Search buckets by agent id ([`super::SEARCH_RATE`]).
    pub(super) searches: crate::rate::KeyedBuckets<crate::model::AgentId>,
    /// The rollout in force: `config.rollout` at start, replaced on reload.
    pub(super) rollout: std::sync::RwLock<Arc<crate::rollout::Rollout>>,
    /// Conversation changes seen by this process (its own and other processes'), counted by
    /// a hash of the conversation id: a session's remembered conversation is current while its
    /// count has not moved.
    pub(super) conversation_epochs: Box<[AtomicU64]>,
    /// All conversation changes seen by this process.
    pub(super) conversation_changes: AtomicU64,
    /// The agents this process knows of, with their statuses (`signals.rs`).
    pub(super) roster: crate::roster::AgentRoster,
    /// Upload buckets by uploader (`ServiceConfig::upload_rate`).
    pub(super) uploads: crate::rate::KeyedBuckets<(crate::model::Role, String)>,
    /// Where new attachments' bytes go when not in the store (`CHAT_UPLOAD_DIR`).
    pub(super) attachment_files: std::sync::OnceLock<Arc<dyn crate::attachment::AttachmentFiles>>,
    /// What this process last wrote into the agent directory, per agent.
    pub(super) recorded_agents: super::recorded_agents::RecordedAgents,
}

/// Counters of conversation changes, by hash of the conversation id.
pub(super) const CONVERSATION_EPOCHS: usize = 256;

impl Inner {
    /// Takes a send from the visitor's bucket, or says when one will be available. Agents, and
    /// every sender when no rate is configured, are not limited.
    pub(super) fn take_visitor_send(&self, principal: &Principal) -> Result<(), Duration> {
        match principal {
            Principal::Visitor { visitor_id, .. } => self.visitor_sends.take(visitor_id),
            Principal::Agent { .. } => Ok(()),
        }
    }

    /// `site` is empty for a message from a process older than site scoping: then only
    /// agents of every site get it live (the others see it on their next list or resume).
    pub(super) fn publish_message_locally(
        &self,
        message: Message,
        visitor_id: VisitorId,
        site: &str,
    ) {
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
    pub(super) fn epoch(&self, id: ConversationId) -> u64 {
        self.conversation_epochs[epoch_slot(id)].load(Ordering::SeqCst)
    }

    pub(super) fn publish_conversation_locally(&self, conversation: Conversation) {
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
}

/// Which counter of [`Inner::conversation_epochs`] counts conversation `id`'s changes.
fn epoch_slot(id: ConversationId) -> usize {
    (id.0.as_u128() % CONVERSATION_EPOCHS as u128) as usize
}

/// A session's signalling state (`signals.rs`), made on its first `typing` or `set_status`
/// (most sessions never send one, and every idle session's state counts: docs/benchmarks.md).
/// Kept here, with the other state the service's files share, so that the session holds it
/// without importing the file that acts on it.
#[derive(Debug, Default)]
pub(super) struct SignalState {
    /// The `typing` rate limit and what the session last said it typed in.
    pub(super) typing: crate::typing::TypingState,
    /// The `set_status` rate limit, made on the first one.
    pub(super) status: Option<crate::rate::TokenBucket>,
}
