//! The live hub: which sessions follow which topics on this process, and fan-out of committed
//! events to them. Each session has one bounded queue; a session whose queue is full is marked
//! lagged and dropped from every topic instead of being buffered without bound (docs/promises.md,
//! promise 4: bounded), and resumes from the store when it reconnects (promise 3: nothing missed).

use crate::mailbox::{mailbox, MailboxReceiver, MailboxSender, TrySendError};
use crate::model::{Conversation, Message, SiteId, Sites, VisitorId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// What a session can follow.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Topic {
    /// Everything about one visitor's conversations.
    Visitor(VisitorId),
    /// Everything agents of every site see: all messages and conversation changes.
    Agents,
    /// What agents of one site see: that site's messages and conversation changes.
    Site(SiteId),
    /// Presence changes, for every visitor.
    Visitors,
    /// Colleagues' statuses, for every agent (each session keeps those sharing a site).
    Staff,
}

/// The hub boundary: a change as fanned out to this process's sessions, one [`Arc`] shared by
/// every subscriber, not copied. Each session turns it into the [`ServerEvent`]s its client sees
/// (a presence change into its own site's count, a message after a gap fill).
///
/// Not merged with [`BusEvent`](crate::bus::BusEvent), which says the same facts between
/// processes: that one carries routing (visitor, site, publishing process), may carry a message
/// by reference only, and is a JSON format that processes of different versions share. Routing
/// is spent by the time an event reaches the hub (it chose the topics), and every message passes
/// through here: carrying it on would make every fanned-out event larger for nothing.
///
/// [`Arc`]: std::sync::Arc
/// [`ServerEvent`]: crate::protocol::ServerEvent
#[derive(Debug, Clone, PartialEq)]
pub enum HubEvent {
    /// A message was committed.
    Message(Message),
    /// A conversation was created or changed.
    Conversation(Conversation),
    /// The online agents changed (each visitor session reads its own site's count).
    Presence(AgentPresence),
    /// A participant stored a new read position (each session tells its client in its own
    /// way: visitors are not told which agent read).
    Read(crate::read_receipts::ReadReceipt),
    /// Someone started or stopped typing (never stored).
    Typing(crate::typing::Typing),
    /// An agent's status or connectedness changed (each agent session keeps its colleagues').
    AgentStatus(crate::agent_status::AgentStatusView),
}

/// Agents online, by the sites they work for: an agent of every site counts for each site.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentPresence {
    /// Agent sessions, whatever their sites.
    pub sessions: u32,
    /// Sessions of agents working for every site.
    pub all_sites: u32,
    /// Sessions of agents working for listed sites, per site (no zero entries).
    pub by_site: BTreeMap<SiteId, u32>,
}

impl AgentPresence {
    /// Agents online for `site`.
    pub fn online(&self, site: &str) -> u32 {
        self.all_sites + self.by_site.get(site).copied().unwrap_or(0)
    }

    /// Counts one agent session of `sites` in (`delta` 1) or out (-1).
    pub fn count(&mut self, sites: &Sites, delta: i32) {
        self.sessions = self.sessions.saturating_add_signed(delta);
        match sites.list() {
            None => self.all_sites = self.all_sites.saturating_add_signed(delta),
            Some(list) => {
                for site in list {
                    let n = self.by_site.entry(site.clone()).or_default();
                    *n = n.saturating_add_signed(delta);
                    if *n == 0 {
                        self.by_site.remove(site);
                    }
                }
            }
        }
    }

    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &AgentPresence) {
        self.sessions += other.sessions;
        self.all_sites += other.all_sites;
        for (site, n) in &other.by_site {
            *self.by_site.entry(site.clone()).or_default() += n;
        }
    }
}

/// Identifies one subscriber (one session) in the hub.
pub type SubscriberId = u64;

struct Subscriber {
    tx: MailboxSender<Arc<HubEvent>>,
    lagged: Arc<AtomicBool>,
    topics: HashSet<Topic>,
}

#[derive(Default)]
struct HubState {
    subscribers: HashMap<SubscriberId, Subscriber>,
    topics: HashMap<Topic, HashSet<SubscriberId>>,
    agents: AgentPresence,
}

/// The receiving end a session owns.
pub struct Subscription {
    /// The subscriber's id, for [`Hub::subscribe`] and [`Hub::remove`].
    pub id: SubscriberId,
    /// Events for this session, in publish order.
    pub rx: MailboxReceiver<Arc<HubEvent>>,
    /// Set when the queue overflowed and the hub dropped this session.
    pub lagged: Arc<AtomicBool>,
}

/// In-process fan-out. Cheap to clone.
///
/// ```
/// # tokio_test_shim::block_on(async {
/// use chat_core::hub::{Hub, HubEvent, Topic};
/// let hub = Hub::default();
/// let mut sub = hub.register(8);
/// hub.subscribe(sub.id, Topic::Site("shop".into()));
/// hub.publish(&[Topic::Site("shop".into())], HubEvent::Presence(Default::default()));
/// assert!(matches!(*sub.rx.recv().await.unwrap(), HubEvent::Presence(_)));
/// # });
/// # mod tokio_test_shim { pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
/// #   tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f) } }
/// ```
#[derive(Clone, Default)]
pub struct Hub {
    state: Arc<Mutex<HubState>>,
    next_id: Arc<AtomicU64>,
}

impl Hub {
    fn state(&self) -> MutexGuard<'_, HubState> {
        // A panic while holding this lock leaves plain maps behind; they stay usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A new subscriber with a queue of `capacity` events, following nothing yet.
    pub fn register(&self, capacity: usize) -> Subscription {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = mailbox(capacity);
        let lagged = Arc::new(AtomicBool::new(false));
        self.state().subscribers.insert(
            id,
            Subscriber {
                tx,
                lagged: lagged.clone(),
                topics: HashSet::new(),
            },
        );
        Subscription { id, rx, lagged }
    }

    /// Makes `id` follow `topic`.
    pub fn subscribe(&self, id: SubscriberId, topic: Topic) {
        let mut state = self.state();
        let Some(sub) = state.subscribers.get_mut(&id) else {
            return;
        };
        sub.topics.insert(topic.clone());
        state.topics.entry(topic).or_default().insert(id);
    }

    /// Forgets `id` entirely; its receiver then sees the end of the stream.
    pub fn remove(&self, id: SubscriberId) {
        Self::remove_locked(&mut self.state(), id);
    }

    fn remove_locked(state: &mut HubState, id: SubscriberId) {
        if let Some(sub) = state.subscribers.remove(&id) {
            for topic in sub.topics {
                if let Some(set) = state.topics.get_mut(&topic) {
                    set.remove(&id);
                    if set.is_empty() {
                        state.topics.remove(&topic);
                    }
                }
            }
        }
    }

    /// Delivers `event` once to every subscriber of any of `topics`. Never waits: a subscriber
    /// whose queue is full is marked lagged and removed. Returns how many received it.
    pub fn publish(&self, topics: &[Topic], event: HubEvent) -> usize {
        let event = Arc::new(event);
        let mut state = self.state();
        let mut targets: HashSet<SubscriberId> = HashSet::new();
        for topic in topics {
            if let Some(set) = state.topics.get(topic) {
                targets.extend(set.iter().copied());
            }
        }
        let mut delivered = 0;
        let mut overflowed = Vec::new();
        for id in targets {
            if let Some(sub) = state.subscribers.get(&id) {
                match sub.tx.try_send(event.clone()) {
                    Ok(()) => delivered += 1,
                    Err(TrySendError::Full(_)) => {
                        sub.lagged.store(true, Ordering::Release);
                        overflowed.push(id);
                    }
                    Err(TrySendError::Closed(_)) => overflowed.push(id),
                }
            }
        }
        for id in overflowed {
            Self::remove_locked(&mut state, id);
        }
        delivered
    }

    /// Drops every subscriber as lagged (each session then ends with "reconnect and resume").
    /// Returns how many there were.
    pub fn evict_all(&self) -> usize {
        let mut state = self.state();
        let ids: Vec<SubscriberId> = state.subscribers.keys().copied().collect();
        for id in &ids {
            if let Some(sub) = state.subscribers.get(id) {
                sub.lagged.store(true, Ordering::Release);
            }
            Self::remove_locked(&mut state, *id);
        }
        ids.len()
    }

    /// Counts an agent session of `sites` in (`delta` 1) or out (-1); returns the agents
    /// connected to this process now.
    pub fn agent_presence(&self, sites: &Sites, delta: i32) -> AgentPresence {
        let mut state = self.state();
        state.agents.count(sites, delta);
        state.agents.clone()
    }

    /// Agents connected to this process now.
    pub fn agents_online(&self) -> AgentPresence {
        self.state().agents.clone()
    }

    /// Sessions registered now.
    pub fn subscriber_count(&self) -> usize {
        self.state().subscribers.len()
    }

    /// How many sessions follow `topic` right now.
    pub fn followers(&self, topic: &Topic) -> usize {
        self.state().topics.get(topic).map_or(0, HashSet::len)
    }

    /// Distinct visitors with at least one session now.
    pub fn visitors_online(&self) -> usize {
        let state = self.state();
        state
            .topics
            .keys()
            .filter(|topic| matches!(topic, Topic::Visitor(_)))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fans_out_once_per_subscriber_even_with_overlapping_topics() {
        let hub = Hub::default();
        let mut a = hub.register(4);
        let v = VisitorId::new_random();
        hub.subscribe(a.id, Topic::Agents);
        hub.subscribe(a.id, Topic::Visitor(v));
        let n = hub.publish(
            &[Topic::Agents, Topic::Visitor(v)],
            HubEvent::Presence(AgentPresence::default()),
        );
        assert_eq!(n, 1);
        assert!(a.rx.try_recv().is_some());
        assert!(a.rx.try_recv().is_none());
    }

    #[tokio::test]
    async fn a_full_queue_marks_the_subscriber_lagged_and_spares_the_others() {
        let hub = Hub::default();
        let slow = hub.register(2);
        let mut fast = hub.register(16);
        hub.subscribe(slow.id, Topic::Visitors);
        hub.subscribe(fast.id, Topic::Visitors);
        for i in 0..5 {
            let presence = AgentPresence {
                sessions: i,
                ..AgentPresence::default()
            };
            hub.publish(&[Topic::Visitors], HubEvent::Presence(presence));
            assert!(fast.rx.try_recv().is_some());
        }
        assert!(slow.lagged.load(Ordering::Acquire));
        assert_eq!(hub.subscriber_count(), 1);
    }

    #[test]
    fn presence_counts_agents_of_every_site_for_each_site() {
        let hub = Hub::default();
        let every = Sites::All;
        let two = Sites::parse("a,b").unwrap();
        hub.agent_presence(&every, 1);
        let p = hub.agent_presence(&two, 1);
        assert_eq!((p.online("a"), p.online("b"), p.online("c")), (2, 2, 1));
        assert_eq!(p.sessions, 2);
        let p = hub.agent_presence(&every, -1);
        assert_eq!((p.online("a"), p.online("c")), (1, 0));
        let p = hub.agent_presence(&two, -1);
        assert_eq!(p, AgentPresence::default(), "no zero entries left behind");
        let mut sum = AgentPresence::default();
        sum.add(&hub.agent_presence(&two, 1));
        sum.add(&hub.agents_online());
        assert_eq!(sum.online("b"), 2);
    }
}
