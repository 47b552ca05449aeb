//! Live signals on a [`ChatSession`](crate::service::ChatSession), never stored: `typing`
//! ([`crate::typing`]) and the agent status command `set_status` ([`crate::agent_status`];
//! `list_agents` is `assignment.rs`'s, reading the roster kept here); and their fan-out to this process's sessions (the hub) and to the
//! other processes (the bus).

use crate::agent_status::AgentStatus;
use crate::bus::BusEvent;
use crate::error::ChatError;
use crate::hub::{HubEvent, Topic};
use crate::model::{ConversationId, Principal, Role, VisitorId};
use crate::protocol::Ack;
use crate::rate::{RateLimit, TokenBucket};
use crate::roster::{AgentRoster, RosterChange};
use crate::typing::{Typing, TypingIn, TYPING_EXPIRY};
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::session::ChatSessionState;
use super::shared::{Inner, SignalState};

/// `set_status` commands a session may send: one a second, 5 at once.
const STATUS_RATE: RateLimit = RateLimit {
    per_sec: 1.0,
    burst: 5,
};

impl Inner {
    /// The agents this process knows of and their statuses.
    pub(super) fn roster(&self) -> &AgentRoster {
        &self.roster
    }

    /// Fans a typing signal out here and to the other processes.
    pub(super) fn publish_typing(&self, visitor_id: VisitorId, site_id: &str, typing: Typing) {
        if let Some(bus) = &self.bus {
            bus.publish(BusEvent::Typing {
                visitor_id,
                site_id: site_id.to_owned(),
                typing: typing.clone(),
            });
        }
        self.publish_typing_locally(visitor_id, site_id, typing);
    }

    /// A visitor's typing goes to the agents of the conversation's site; an agent's to the
    /// visitor and to the colleagues of that site (who may be about to answer too).
    pub(super) fn publish_typing_locally(
        &self,
        visitor_id: VisitorId,
        site_id: &str,
        typing: Typing,
    ) {
        let agents = [Topic::Agents, Topic::Site(site_id.to_owned())];
        match typing.sender.role {
            Role::Visitor => self.hub.publish(&agents, HubEvent::Typing(typing)),
            Role::Agent => {
                let [every, site] = agents;
                self.hub.publish(
                    &[Topic::Visitor(visitor_id), every, site],
                    HubEvent::Typing(typing),
                )
            }
        };
    }

    /// Tells whom it concerns what a change to the roster means: visitors and other processes
    /// the new counts, colleagues the agent's status, other processes the agent.
    pub(super) fn apply_roster_change(&self, change: RosterChange) {
        if let Some(presence) = change.presence {
            self.local_agents_changed(presence);
        }
        if let Some(view) = change.view {
            self.hub
                .publish(&[Topic::Staff], HubEvent::AgentStatus(view));
        }
        if let (Some(view), Some(bus)) = (change.publish, &self.bus) {
            bus.publish(BusEvent::AgentStatus {
                node: bus.node_id().to_owned(),
                status: view,
            });
        }
    }
}

impl ChatSessionState {
    fn signals(&mut self) -> &mut SignalState {
        self.signals.get_or_insert_with(Default::default)
    }

    /// `typing`: tells the other side of the conversation that the user types (or stopped).
    pub(super) async fn typing(
        &mut self,
        conversation_id: Option<ConversationId>,
        typing: bool,
    ) -> Result<Ack, ChatError> {
        let now = Instant::now();
        // Before anything is read: a flood costs neither the store nor the recipients.
        if let Err(retry_after) = self.signals().typing.take(now) {
            return Err(ChatError::RateLimited {
                what: "typing sent too often (at most 2 a second, 5 at once)".into(),
                retry_after,
            });
        }
        let id = match (&self.principal, conversation_id) {
            (_, Some(id)) => id,
            (Principal::Visitor { .. }, None) => self.open_conversation.ok_or_else(|| {
                ChatError::BadRequest("no conversation to type in yet: send a message first".into())
            })?,
            (Principal::Agent { .. }, None) => {
                return Err(ChatError::BadRequest(
                    "agents name the conversation: `conversation_id`".into(),
                ))
            }
        };
        let conversation = match self.known_conversation(id) {
            Some((conversation, _)) => conversation,
            None => {
                let service = self.service.clone();
                let changes = service.inner.conversation_changes.load(Ordering::SeqCst);
                let conversation = service.authorized_conversation(&self.principal, id).await?;
                self.remember_if_unchanged(conversation.clone(), changes);
                conversation
            }
        };
        let signal = Typing::new(conversation.id, self.principal.as_sender(), typing);
        self.service
            .inner
            .publish_typing(conversation.visitor_id, &conversation.site_id, signal);
        self.signals().typing.typing_in = typing.then(|| TypingIn {
            conversation_id: conversation.id,
            visitor_id: conversation.visitor_id,
            site_id: conversation.site_id,
            until: now + TYPING_EXPIRY,
        });
        Ok(Ack::default())
    }

    /// The user sent a message in `conversation`: receivers clear the indicator on it, so
    /// there is nothing left to stop when the session ends.
    pub(super) fn typing_ended_by_message(&mut self, conversation: ConversationId) {
        if let Some(signals) = &mut self.signals {
            if signals
                .typing
                .typing_in
                .as_ref()
                .is_some_and(|t| t.conversation_id == conversation)
            {
                signals.typing.typing_in = None;
            }
        }
    }

    /// The session ends: if its user was typing (and receivers still show it), they stopped.
    pub(super) fn stop_typing_on_end(&mut self) {
        let Some(typing_in) = self
            .signals
            .as_mut()
            .and_then(|s| s.typing.typing_in.take())
        else {
            return;
        };
        if typing_in.until <= Instant::now() {
            return;
        }
        let signal = Typing::new(typing_in.conversation_id, self.principal.as_sender(), false);
        self.service
            .inner
            .publish_typing(typing_in.visitor_id, &typing_in.site_id, signal);
    }

    /// `set_status`: the agent's status, for every session of theirs on every process.
    pub(super) fn set_status(&mut self, status: AgentStatus) -> Result<Ack, ChatError> {
        let Principal::Agent { agent, sites } = &self.principal else {
            return Err(ChatError::Forbidden("only agents have a status".into()));
        };
        let (agent, sites) = (agent.clone(), sites.clone());
        let now = Instant::now();
        let bucket = self
            .signals()
            .status
            .get_or_insert_with(|| TokenBucket::new(STATUS_RATE, now));
        if let Err(retry_after) = bucket.try_take(now) {
            return Err(ChatError::RateLimited {
                what: "status set too often (at most once a second, 5 at once)".into(),
                retry_after,
            });
        }
        let inner = &self.service.inner;
        let change = inner
            .roster()
            .set(&inner.hub, &agent, &sites, status, chrono::Utc::now());
        inner.apply_roster_change(change);
        let view = inner.roster().view_of(&agent.id);
        Ok(Ack {
            agent_status: view.map(Box::new),
            ..Ack::default()
        })
    }
}
