//! The fan-out bus between gateway processes.
//!
//! The [`Hub`](crate::hub::Hub) delivers events to the sessions of one process. With several
//! gateway processes on one database, each process also publishes what it commits on a
//! [`Bus`], and every other process feeds what it receives into its own hub. The bus carries
//! only notifications: the store stays the source of truth, so an event the bus loses is
//! recovered by the receiving session's gap fill or by the client's resume, never lost.
//!
//! Implementations: Postgres LISTEN/NOTIFY in `chat-storage` (needs no extra service). A Redis
//! or NATS bus would implement the same trait.

use crate::hub::AgentPresence;
use crate::model::{Conversation, ConversationId, Message, MessageKind, SiteId, VisitorId};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// The bus boundary: a change crossing gateway processes, as JSON (processes of different
/// versions share it, hence the defaulted fields). The receiving process turns it into a
/// [`HubEvent`](crate::hub::HubEvent) for its own sessions (see there why the two are not one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BusEvent {
    /// A message was committed.
    Message {
        /// The visitor whose conversation it is (for routing to their sessions).
        visitor_id: VisitorId,
        /// The conversation's site (for routing to its agents). Empty from a process older
        /// than site scoping: only agents of every site get such a message live.
        #[serde(default)]
        site_id: SiteId,
        /// The committed message.
        message: Message,
    },
    /// A message was committed, too large to travel inline: receivers read it from the store.
    MessageRef {
        /// The visitor whose conversation it is.
        visitor_id: VisitorId,
        /// The conversation's site.
        #[serde(default)]
        site_id: SiteId,
        /// Its conversation.
        conversation_id: ConversationId,
        /// Its sequence number.
        seq: i64,
    },
    /// An internal note was committed (agents only). Its own kind, not a `message` with a
    /// kind field, so that a process older than notes, which would hand a `message` to the
    /// visitor's sessions, ignores it as an event it cannot read.
    Note {
        /// The visitor whose conversation it is (for routing).
        visitor_id: VisitorId,
        /// The conversation's site (for routing to its agents).
        site_id: SiteId,
        /// The committed note.
        message: Message,
    },
    /// An internal note too large to travel inline: receivers read it from the store.
    NoteRef {
        /// The visitor whose conversation it is.
        visitor_id: VisitorId,
        /// The conversation's site.
        site_id: SiteId,
        /// Its conversation.
        conversation_id: ConversationId,
        /// Its sequence number.
        seq: i64,
    },
    /// A conversation was created or changed.
    Conversation(Conversation),
    /// A participant stored a new read position in a conversation.
    Read {
        /// The visitor whose conversation it is (for routing to their sessions).
        visitor_id: VisitorId,
        /// The conversation's site (for routing to its agents).
        site_id: SiteId,
        /// The conversation.
        conversation_id: ConversationId,
        /// The agent who read; absent when the visitor did.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        agent_id: Option<crate::model::AgentId>,
        /// Read up to this `seq`.
        seq: i64,
    },
    /// How many agents are connected to the publishing process. Sent on every change and as a
    /// heartbeat; a process not heard from for a while counts as gone.
    Presence {
        /// The publishing process.
        node: String,
        /// Agent sessions connected to it.
        agents_online: u32,
        /// The same agents by site. Absent from a process older than site scoping: its
        /// agents then count for every site.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sites: Option<AgentPresence>,
    },
    /// Someone started or stopped typing (never stored; a lost one expires on its own).
    Typing {
        /// The visitor whose conversation it is (for routing an agent's typing to them).
        visitor_id: VisitorId,
        /// The conversation's site (for routing a visitor's typing to its agents).
        site_id: SiteId,
        /// The event.
        typing: crate::typing::Typing,
    },
    /// What the publishing process knows of one agent: their status, and whether they have a
    /// session there (`connected`). Sent on every change and with every presence heartbeat.
    AgentStatus {
        /// The publishing process.
        node: String,
        /// The agent.
        status: crate::agent_status::AgentStatusView,
    },
}

impl BusEvent {
    /// The event announcing committed `message`: [`BusEvent::Note`] for an internal note,
    /// [`BusEvent::Message`] otherwise.
    pub fn committed(visitor_id: VisitorId, site_id: SiteId, message: Message) -> Self {
        if message.kind == MessageKind::Note {
            Self::Note {
                visitor_id,
                site_id,
                message,
            }
        } else {
            Self::Message {
                visitor_id,
                site_id,
                message,
            }
        }
    }

    /// The same event in a form small enough for `limit` bytes of JSON: a message too large
    /// becomes a [`BusEvent::MessageRef`]. Returns the JSON.
    ///
    /// ```
    /// use chat_core::bus::BusEvent;
    /// let presence = BusEvent::Presence { node: "n1".into(), agents_online: 2, sites: None };
    /// let json = presence.to_json_within(8000);
    /// assert_eq!(serde_json::from_str::<BusEvent>(&json).unwrap(), presence);
    /// ```
    pub fn to_json_within(&self, limit: usize) -> String {
        let json = serde_json::to_string(self).unwrap_or_default();
        if json.len() <= limit {
            return json;
        }
        match self {
            Self::Message {
                visitor_id,
                site_id,
                message,
            } => serde_json::to_string(&Self::MessageRef {
                visitor_id: *visitor_id,
                site_id: site_id.clone(),
                conversation_id: message.conversation_id,
                seq: message.seq,
            })
            .unwrap_or_default(),
            Self::Note {
                visitor_id,
                site_id,
                message,
            } => serde_json::to_string(&Self::NoteRef {
                visitor_id: *visitor_id,
                site_id: site_id.clone(),
                conversation_id: message.conversation_id,
                seq: message.seq,
            })
            .unwrap_or_default(),
            Self::Presence {
                node,
                agents_online,
                sites: Some(presence),
            } => Self::presence_within(node, *agents_online, presence, limit),
            Self::AgentStatus { node, status } => Self::agent_status_within(node, status, limit),
            // Conversations and typing are small (ids, names, timestamps).
            _ => json,
        }
    }

    /// An agent status whose sites do not fit (a token may list up to 1000): the sites are cut
    /// until it fits, so colleagues of the sites left out on other processes miss this change
    /// (they see it on this agent's next one that fits, or never for those sites). A batch of
    /// notifications holding one over the limit would fail whole.
    fn agent_status_within(
        node: &str,
        status: &crate::agent_status::AgentStatusView,
        limit: usize,
    ) -> String {
        let mut trimmed = status.clone();
        loop {
            let json = serde_json::to_string(&Self::AgentStatus {
                node: node.to_owned(),
                status: trimmed.clone(),
            })
            .unwrap_or_default();
            if json.len() <= limit || trimmed.sites.is_empty() {
                return json;
            }
            // A site takes at most 67 bytes (64, quotes, comma): never more dropped than needed.
            let excess = json.len() - limit;
            let drop = (excess / 67 + 1).min(trimmed.sites.len());
            trimmed.sites.truncate(trimmed.sites.len() - drop);
        }
    }

    /// A presence event whose per-site counts do not fit: the sites with the fewest agents are
    /// left out until it fits (about 300 sites fit), so the others' counts stay exact; a left-out
    /// site's agents are then counted by their own process only. Logged once per process.
    fn presence_within(
        node: &str,
        agents_online: u32,
        presence: &AgentPresence,
        limit: usize,
    ) -> String {
        let mut by_count: Vec<(&String, &u32)> = presence.by_site.iter().collect();
        by_count.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
        let mut kept = by_count.len();
        loop {
            let trimmed = AgentPresence {
                by_site: by_count[..kept]
                    .iter()
                    .map(|(site, n)| ((*site).clone(), **n))
                    .collect(),
                ..presence.clone()
            };
            let json = serde_json::to_string(&Self::Presence {
                node: node.to_owned(),
                agents_online,
                sites: Some(trimmed),
            })
            .unwrap_or_default();
            if json.len() <= limit || kept == 0 {
                static WARNED: std::sync::atomic::AtomicBool =
                    std::sync::atomic::AtomicBool::new(false);
                if WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    return json;
                }
                tracing::warn!(
                    sites = by_count.len(),
                    sent = kept,
                    "agent presence lists more sites than a bus message holds; the sites with \
                     the fewest agents are counted by their own process only"
                );
                return json;
            }
            // Each site takes at least ~6 bytes; drop enough at once to converge quickly.
            let excess = json.len() - limit;
            kept = kept.saturating_sub((excess / 24).max(1));
        }
    }
}

/// The bus boundary, receiving side: a [`BusEvent`] from another process, or news that some
/// may have been lost.
///
/// Not folded into [`BusEvent`] as a variant: a gap is noticed by the receiver (its connection
/// broke), never published, so as a `BusEvent` it would be a value `publish` accepts and the
/// wire format carries that no process may send.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    /// An event published by another process.
    Event(BusEvent),
    /// The bus may have lost events (its connection broke and came back): every local session
    /// must resume from the store.
    Gap,
}

/// A fan-out bus between gateway processes.
///
/// ```
/// use chat_core::bus::{Bus, BusEvent, Inbound};
/// struct Nowhere;
/// impl Bus for Nowhere {
///     fn node_id(&self) -> &str { "solo" }
///     fn publish(&self, _event: BusEvent) {}
///     fn take_inbound(&self) -> Option<tokio::sync::mpsc::Receiver<Inbound>> { None }
/// }
/// ```
pub trait Bus: Send + Sync + 'static {
    /// This process's identity on the bus (unique per process start).
    fn node_id(&self) -> &str;

    /// Sends `event` to every other process. Never waits: the bus queues it (bounded) and a
    /// lost event is recovered from the store by the receivers.
    fn publish(&self, event: BusEvent);

    /// The stream of events from other processes; the chat service takes it once.
    fn take_inbound(&self) -> Option<mpsc::Receiver<Inbound>>;

    /// Whether the store sends [`BusEvent::Message`] for every message it commits itself, in
    /// the committing transaction: the chat service then publishes none for them (a duplicate
    /// it fans out again still goes through [`Bus::publish`]).
    fn store_publishes_messages(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Role, Sender};

    #[test]
    fn large_messages_travel_as_references() {
        let message = Message {
            attachment: None,
            conversation_id: ConversationId::new_random(),
            seq: 7,
            kind: MessageKind::Text,
            client_msg_id: Some("c".into()),
            sender: Sender {
                role: Role::Visitor,
                id: "v".into(),
                name: None,
            },
            body: "é".repeat(4000),
            created_at: chrono::Utc::now(),
        };
        let visitor_id = VisitorId::new_random();
        let event = BusEvent::Message {
            visitor_id,
            site_id: "shop".into(),
            message: message.clone(),
        };
        let small = event.to_json_within(100_000);
        assert_eq!(serde_json::from_str::<BusEvent>(&small).unwrap(), event);
        let json = event.to_json_within(7_900);
        assert!(json.len() < 7_900);
        assert_eq!(
            serde_json::from_str::<BusEvent>(&json).unwrap(),
            BusEvent::MessageRef {
                visitor_id,
                site_id: "shop".into(),
                conversation_id: message.conversation_id,
                seq: 7
            }
        );
    }

    #[test]
    fn notes_travel_as_their_own_kind_inline_or_by_reference() {
        let note = Message {
            attachment: None,
            conversation_id: ConversationId::new_random(),
            seq: 3,
            kind: MessageKind::Note,
            client_msg_id: None,
            sender: Sender {
                role: Role::Agent,
                id: "a".into(),
                name: Some("Alice".into()),
            },
            body: "é".repeat(4000),
            created_at: chrono::Utc::now(),
        };
        let visitor_id = VisitorId::new_random();
        let event = BusEvent::committed(visitor_id, "shop".into(), note.clone());
        assert!(matches!(event, BusEvent::Note { .. }));
        let json = event.to_json_within(100_000);
        assert!(json.starts_with(r#"{"kind":"note""#), "{json}");
        assert!(json.contains(r#""kind":"note""#));
        assert_eq!(serde_json::from_str::<BusEvent>(&json).unwrap(), event);
        let json = event.to_json_within(7_900);
        assert_eq!(
            serde_json::from_str::<BusEvent>(&json).unwrap(),
            BusEvent::NoteRef {
                visitor_id,
                site_id: "shop".into(),
                conversation_id: note.conversation_id,
                seq: 3
            }
        );
        // A process older than notes reads neither as a message it would give a visitor.
        #[derive(Deserialize)]
        #[serde(tag = "kind", rename_all = "snake_case")]
        #[allow(dead_code)]
        enum OldBusEvent {
            Message { message: serde_json::Value },
            MessageRef { seq: i64 },
            Conversation(serde_json::Value),
            Presence { node: String },
        }
        assert!(serde_json::from_str::<OldBusEvent>(&event.to_json_within(100_000)).is_err());
        assert!(serde_json::from_str::<OldBusEvent>(&json).is_err());
        let text = Message {
            kind: MessageKind::Text,
            ..note
        };
        assert!(matches!(
            BusEvent::committed(visitor_id, "shop".into(), text),
            BusEvent::Message { .. }
        ));
    }

    #[test]
    fn presence_of_too_many_sites_keeps_the_busiest_within_the_limit() {
        let mut presence = AgentPresence {
            sessions: 2000,
            all_sites: 1,
            ..AgentPresence::default()
        };
        for i in 0..1000u32 {
            presence
                .by_site
                .insert(format!("shop-number-{i:04}"), 1 + i % 3);
        }
        let event = BusEvent::Presence {
            node: "n1".into(),
            agents_online: 2000,
            sites: Some(presence.clone()),
        };
        let json = event.to_json_within(7_800);
        assert!(json.len() <= 7_800, "{}", json.len());
        let BusEvent::Presence {
            sites: Some(sent), ..
        } = serde_json::from_str(&json).unwrap()
        else {
            panic!("not presence: {json}");
        };
        assert!(sent.by_site.len() > 200, "{}", sent.by_site.len());
        assert_eq!((sent.sessions, sent.all_sites), (2000, 1));
        // The busiest sites are the ones kept, with their exact counts.
        let least_kept = *sent.by_site.values().min().unwrap();
        for (site, n) in &presence.by_site {
            match sent.by_site.get(site) {
                Some(kept) => assert_eq!(kept, n, "counts are exact"),
                None => assert!(
                    *n <= least_kept,
                    "{site} ({n}) dropped before a site of {least_kept}"
                ),
            }
        }
    }

    #[test]
    fn an_agent_status_of_many_sites_is_cut_to_fit() {
        let status = crate::agent_status::AgentStatusView {
            agent: crate::model::Agent {
                id: "alice".into(),
                name: "Alice".into(),
            },
            status: crate::agent_status::AgentStatus::Away,
            changed_at: chrono::Utc::now(),
            sites: (0..1000).map(|i| format!("shop-number-{i:04}")).collect(),
            connected: true,
        };
        let event = BusEvent::AgentStatus {
            node: "n1".into(),
            status: status.clone(),
        };
        let json = event.to_json_within(7_800);
        assert!(json.len() <= 7_800, "{}", json.len());
        let BusEvent::AgentStatus { status: sent, .. } = serde_json::from_str(&json).unwrap()
        else {
            panic!("not an agent status: {json}");
        };
        assert!(sent.sites.len() > 200, "{}", sent.sites.len());
        assert_eq!(sent.sites[..], status.sites[..sent.sites.len()]);
        assert_eq!(sent.status, status.status);
    }

    #[test]
    fn events_from_a_process_older_than_site_scoping_still_decode() {
        let old = r#"{"kind":"presence","node":"n1","agents_online":3}"#;
        assert_eq!(
            serde_json::from_str::<BusEvent>(old).unwrap(),
            BusEvent::Presence {
                node: "n1".into(),
                agents_online: 3,
                sites: None
            }
        );
        let old = format!(
            r#"{{"kind":"message_ref","visitor_id":"{}","conversation_id":"{}","seq":2}}"#,
            VisitorId::new_random(),
            ConversationId::new_random()
        );
        assert!(matches!(
            serde_json::from_str::<BusEvent>(&old).unwrap(),
            BusEvent::MessageRef { site_id, .. } if site_id.is_empty()
        ));
    }
}
