//! The cluster plumbing: what this process tells other gateway processes over the
//! [bus](crate::bus) (messages, conversation changes, its agents' presence), what it hears from them, and the
//! agents-online counts that add both up.

use crate::bus::{BusEvent, Inbound};
use crate::hub::{AgentPresence, HubEvent, Topic};
use crate::model::{Conversation, Message};
use std::sync::Weak;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

use super::shared::Inner;

/// How often a process tells the others how many agents it has (its heartbeat).
const PRESENCE_HEARTBEAT: Duration = Duration::from_secs(5);
/// A process not heard from for this long counts as gone, with its agents.
const PRESENCE_EXPIRY: Duration = Duration::from_secs(15);

impl Inner {
    /// Fans `message` out here and, unless the store already notified the other processes in
    /// the message's commit (`committed`), on the bus.
    pub(super) fn publish_message(
        &self,
        message: &Message,
        conversation: &Conversation,
        committed: bool,
    ) {
        let visitor_id = conversation.visitor_id;
        self.publish_message_locally(message.clone(), visitor_id, &conversation.site_id);
        if let Some(bus) = &self.bus {
            if committed && bus.store_publishes_messages() {
                return;
            }
            bus.publish(BusEvent::committed(
                visitor_id,
                conversation.site_id.clone(),
                message.clone(),
            ));
        }
    }

    pub(super) fn publish_conversation(&self, conversation: &Conversation) {
        self.publish_conversation_locally(conversation.clone());
        if let Some(bus) = &self.bus {
            bus.publish(BusEvent::Conversation(conversation.clone()));
        }
    }

    /// Agents here and on other live processes; forgets processes not heard from in time.
    pub(super) fn agents_online(&self) -> AgentPresence {
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

    pub(super) fn announce_presence(&self) -> AgentPresence {
        let online = self.agents_online();
        self.hub
            .publish(&[Topic::Visitors], HubEvent::Presence(online.clone()));
        online
    }

    /// Tells other processes this process's agents now.
    pub(super) fn publish_local_presence(&self, local: AgentPresence) {
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
    pub(super) fn local_agents_changed(&self, local: AgentPresence) -> AgentPresence {
        self.publish_local_presence(local);
        self.announce_presence()
    }
}

/// Agents whose status a heartbeat repeats at most (a few hundred bytes each, in one batch).
const ROSTER_HEARTBEAT_AGENTS: usize = 500;

impl Inner {
    /// With the heartbeat: tells other processes each agent with a session here (so that a
    /// process started later learns their statuses), and forgets the agents of processes that
    /// went silent, telling colleagues here.
    fn publish_roster(&self) {
        if let Some(bus) = &self.bus {
            for status in self.roster.local_views(ROSTER_HEARTBEAT_AGENTS) {
                bus.publish(BusEvent::AgentStatus {
                    node: bus.node_id().to_owned(),
                    status,
                });
            }
        }
        for view in self.roster.expire(PRESENCE_EXPIRY) {
            self.hub
                .publish(&[Topic::Staff], HubEvent::AgentStatus(view));
        }
    }
}

/// Feeds events from other processes into this process's hub.
pub(super) async fn run_inbound(inner: Weak<Inner>, mut inbound: mpsc::Receiver<Inbound>) {
    while let Some(item) = inbound.recv().await {
        let Some(inner) = inner.upgrade() else { return };
        match item {
            // A note goes to the same topics: the visitor's sessions drop it
            // (`crate::visibility`), counting it as delivered.
            Inbound::Event(
                BusEvent::Message {
                    visitor_id,
                    site_id,
                    message,
                }
                | BusEvent::Note {
                    visitor_id,
                    site_id,
                    message,
                },
            ) => inner.publish_message_locally(message, visitor_id, &site_id),
            Inbound::Event(
                BusEvent::MessageRef {
                    visitor_id,
                    site_id,
                    conversation_id,
                    seq,
                }
                | BusEvent::NoteRef {
                    visitor_id,
                    site_id,
                    conversation_id,
                    seq,
                },
            ) => match inner
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
            Inbound::Event(BusEvent::Read {
                visitor_id,
                site_id,
                conversation_id,
                agent_id,
                seq,
            }) => inner.publish_read_locally(
                crate::read_receipts::ReadReceipt {
                    conversation_id,
                    reader: agent_id.map_or(
                        crate::read_receipts::Reader::Visitor,
                        crate::read_receipts::Reader::Agent,
                    ),
                    seq,
                },
                visitor_id,
                &site_id,
            ),
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
            Inbound::Event(BusEvent::Typing {
                visitor_id,
                site_id,
                typing,
            }) => inner.publish_typing_locally(visitor_id, &site_id, typing),
            Inbound::Event(BusEvent::AgentStatus { node, status }) => {
                let change = inner.roster.heard(&inner.hub, &node, &status);
                inner.apply_roster_change(change);
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
pub(super) async fn run_presence_heartbeat(inner: Weak<Inner>) {
    let mut last_total = None;
    loop {
        tokio::time::sleep(PRESENCE_HEARTBEAT).await;
        let Some(inner) = inner.upgrade() else { return };
        inner.publish_local_presence(inner.hub.agents_online());
        inner.publish_roster();
        let total = inner.agents_online();
        if last_total.as_ref().is_some_and(|last| *last != total) {
            inner.announce_presence();
        }
        last_total = Some(total);
    }
}
