//! The roster: the agents a process knows of with their statuses ([`crate::agent_status`]), the
//! sessions each has here and which other processes have theirs, and what the visitors'
//! presence counts from it (only *online* agents).
//!
//! Ephemeral on purpose (no table): a status is about the people connected right now. Each
//! process remembers it per agent id in an [`AgentRoster`] while the agent has a session on any
//! process and for [`REMEMBER_FOR`] after their last session there ended, so a reconnect (a
//! reload, a network change, a gateway restart elsewhere) keeps it. A gateway restart forgets
//! the statuses of its own agents; they start *online* again, as a first sign-in does.
//!
//! Across processes, each process publishes an agent's status on the bus when it changes, when
//! the agent's first session on the process opens and when its last one ends, and again for
//! every agent with a session on it with each presence heartbeat (so a process that starts
//! later learns the statuses of agents already connected within one heartbeat). A status
//! carries the time it was set: the newest wins, whichever order the bus delivers them in.

use crate::agent_status::{sites_overlap, AgentStatus, AgentStatusView};
use crate::hub::{AgentPresence, Hub};
use crate::model::{Agent, AgentId, Sites};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long a process remembers the status of an agent with no session on any process.
pub const REMEMBER_FOR: Duration = Duration::from_secs(3600);

/// Agents a process remembers at most; past it, those without a session are forgotten first.
const MAX_AGENTS: usize = 10_000;

/// What a change to the roster means for the rest of the process.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RosterChange {
    /// This process's counted agents changed to this: tell visitors and other processes.
    pub presence: Option<AgentPresence>,
    /// The agent's status or connectedness as colleagues see it changed: tell them.
    pub view: Option<AgentStatusView>,
    /// What to tell other processes about the agent (its status and whether it has a session
    /// here), when that changed.
    pub publish: Option<AgentStatusView>,
}

struct Entry {
    agent: Agent,
    sites: Sites,
    status: AgentStatus,
    changed_at: DateTime<Utc>,
    /// The sites of each of the agent's sessions open on this process.
    local: Vec<Sites>,
    /// Other processes where the agent has a session, with when each last said so.
    remote: HashMap<String, Instant>,
    /// When the agent last had no session anywhere that this process knows of.
    idle_since: Option<Instant>,
}

impl Entry {
    fn connected(&self) -> bool {
        !self.local.is_empty() || !self.remote.is_empty()
    }

    fn view(&self, connected: bool) -> AgentStatusView {
        AgentStatusView {
            agent: self.agent.clone(),
            status: self.status,
            changed_at: self.changed_at,
            sites: self.sites.to_claim(),
            connected,
        }
    }

    /// Counts every local session of the agent in (`delta` 1) or out (-1) of `hub`'s presence.
    fn count_local(&self, hub: &Hub, delta: i32) -> Option<AgentPresence> {
        let mut presence = None;
        for sites in &self.local {
            presence = Some(hub.agent_presence(sites, delta));
        }
        presence
    }
}

/// The agents one process knows of, with their statuses, and the accounting of which of its
/// agent sessions count in the hub's presence (those of *online* agents). Changes to the hub's
/// counts are made under the roster's lock, so a status change and a session's end cannot
/// count one session twice.
#[derive(Default)]
pub struct AgentRoster {
    agents: Mutex<HashMap<AgentId, Entry>>,
}

impl AgentRoster {
    fn lock(&self) -> MutexGuard<'_, HashMap<AgentId, Entry>> {
        // Plain maps: usable after a panic elsewhere.
        self.agents
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// An agent session of `sites` opened on this process: counted in `hub` when the agent is
    /// online. Returns the agent's status and what changed.
    pub fn join(&self, hub: &Hub, agent: &Agent, sites: &Sites) -> (AgentStatus, RosterChange) {
        let mut agents = self.lock();
        if agents.len() >= MAX_AGENTS && !agents.contains_key(&agent.id) {
            forget_idle(&mut agents, Duration::ZERO);
        }
        let entry = agents.entry(agent.id.clone()).or_insert_with(|| Entry {
            agent: agent.clone(),
            sites: sites.clone(),
            status: AgentStatus::Online,
            changed_at: Utc::now(),
            local: Vec::new(),
            remote: HashMap::new(),
            idle_since: None,
        });
        let was_connected = entry.connected();
        let first_here = entry.local.is_empty();
        entry.agent = agent.clone();
        entry.sites = sites.clone();
        entry.idle_since = None;
        entry.local.push(sites.clone());
        let mut change = RosterChange::default();
        if entry.status.counts() {
            change.presence = Some(hub.agent_presence(sites, 1));
        }
        if !was_connected {
            change.view = Some(entry.view(true));
        }
        if first_here {
            change.publish = Some(entry.view(true));
        }
        (entry.status, change)
    }

    /// An agent session of `sites` ended on this process.
    pub fn leave(&self, hub: &Hub, agent_id: &str, sites: &Sites) -> RosterChange {
        let mut agents = self.lock();
        let mut change = RosterChange::default();
        let Some(entry) = agents.get_mut(agent_id) else {
            return change;
        };
        let Some(at) = entry.local.iter().position(|s| s == sites) else {
            return change;
        };
        entry.local.swap_remove(at);
        if entry.status.counts() {
            change.presence = Some(hub.agent_presence(sites, -1));
        }
        if entry.local.is_empty() {
            change.publish = Some(entry.view(false));
            if !entry.connected() {
                entry.idle_since = Some(Instant::now());
                change.view = Some(entry.view(false));
            }
        }
        change
    }

    /// The agent set `status` at `changed_at` (here, or on another process): a status older
    /// than the one known is ignored. The agent's sessions here are counted in or out.
    pub fn set(
        &self,
        hub: &Hub,
        agent: &Agent,
        sites: &Sites,
        status: AgentStatus,
        changed_at: DateTime<Utc>,
    ) -> RosterChange {
        let mut agents = self.lock();
        let local = agents.get(&agent.id).is_some_and(|e| !e.local.is_empty());
        if agents.len() >= MAX_AGENTS && !agents.contains_key(&agent.id) {
            forget_idle(&mut agents, Duration::ZERO);
        }
        let entry = agents.entry(agent.id.clone()).or_insert_with(|| Entry {
            agent: agent.clone(),
            sites: sites.clone(),
            status,
            changed_at,
            local: Vec::new(),
            remote: HashMap::new(),
            idle_since: Some(Instant::now()),
        });
        let mut change = RosterChange::default();
        if changed_at < entry.changed_at
            || (entry.status == status && entry.changed_at == changed_at)
        {
            return change;
        }
        let before = entry.status;
        entry.status = status;
        entry.changed_at = changed_at;
        if !local {
            // Another process's agent: its sites are the ones it says.
            entry.sites = sites.clone();
        }
        if before.counts() != status.counts() {
            change.presence = entry.count_local(hub, if status.counts() { 1 } else { -1 });
        }
        if before != status {
            change.view = Some(entry.view(entry.connected()));
        }
        if local {
            change.publish = Some(entry.view(true));
        }
        change
    }

    /// Another process, `node`, said what it knows of an agent: their status (applied as by
    /// [`set`](Self::set)) and whether they have a session there.
    pub fn heard(&self, hub: &Hub, node: &str, view: &AgentStatusView) -> RosterChange {
        let Ok(sites) = Sites::parse(&view.sites.join(",")) else {
            return RosterChange::default();
        };
        let mut change = self.set(hub, &view.agent, &sites, view.status, view.changed_at);
        change.publish = None;
        let mut agents = self.lock();
        let Some(entry) = agents.get_mut(&view.agent.id) else {
            return change;
        };
        let was_connected = entry.connected();
        if view.connected {
            entry.remote.insert(node.to_owned(), Instant::now());
            entry.idle_since = None;
        } else {
            entry.remote.remove(node);
        }
        if was_connected != entry.connected() {
            if !entry.connected() {
                entry.idle_since = Some(Instant::now());
            }
            change.view = Some(entry.view(entry.connected()));
        }
        change
    }

    /// Forgets the processes not heard from within `silence` (their agents' sessions are gone
    /// with them) and the agents idle longer than [`REMEMBER_FOR`]. Returns the views of agents
    /// no longer connected anywhere.
    pub fn expire(&self, silence: Duration) -> Vec<AgentStatusView> {
        let mut agents = self.lock();
        let mut gone = Vec::new();
        for entry in agents.values_mut() {
            let was_connected = entry.connected();
            entry.remote.retain(|_, heard| heard.elapsed() < silence);
            if was_connected && !entry.connected() {
                entry.idle_since = Some(Instant::now());
                gone.push(entry.view(false));
            }
        }
        forget_idle(&mut agents, REMEMBER_FOR);
        gone
    }

    /// The agents with a session on this process (at most `limit`), as this process tells the
    /// others with its heartbeat.
    pub fn local_views(&self, limit: usize) -> Vec<AgentStatusView> {
        self.lock()
            .values()
            .filter(|e| !e.local.is_empty())
            .take(limit)
            .map(|e| e.view(true))
            .collect()
    }

    /// The connected agents who share a site with `viewer` (of `site` only, when given), by
    /// name, at most [`MAX_LISTED_AGENTS`](crate::agents::MAX_LISTED_AGENTS).
    pub fn list(&self, viewer: &Sites, site: Option<&str>) -> Vec<AgentStatusView> {
        let mut list: Vec<AgentStatusView> = self
            .lock()
            .values()
            .filter(|e| e.connected() && sites_overlap(viewer, &e.sites))
            .filter(|e| site.is_none_or(|site| e.sites.contains(site)))
            .map(|e| e.view(true))
            .collect();
        list.sort_by(|a, b| {
            a.agent
                .name
                .cmp(&b.agent.name)
                .then_with(|| a.agent.id.cmp(&b.agent.id))
        });
        list.truncate(crate::agents::MAX_LISTED_AGENTS as usize);
        list
    }

    /// An agent's status as this process knows it.
    pub fn status_of(&self, agent_id: &str) -> Option<AgentStatus> {
        self.lock().get(agent_id).map(|e| e.status)
    }

    /// An agent as colleagues see them now.
    pub fn view_of(&self, agent_id: &str) -> Option<AgentStatusView> {
        self.lock().get(agent_id).map(|e| e.view(e.connected()))
    }
}

/// Forgets the agents with no session anywhere for longer than `idle`.
fn forget_idle(agents: &mut HashMap<AgentId, Entry>, idle: Duration) {
    agents.retain(|_, e| e.connected() || e.idle_since.is_none_or(|since| since.elapsed() < idle));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(id: &str) -> Agent {
        Agent {
            id: id.into(),
            name: id.to_uppercase(),
        }
    }

    #[test]
    fn away_and_offline_agents_count_nowhere_and_every_session_follows_its_agent() {
        let hub = Hub::default();
        let roster = AgentRoster::default();
        let shop = Sites::parse("shop").unwrap();
        let (status, change) = roster.join(&hub, &agent("alice"), &shop);
        assert_eq!(status, AgentStatus::Online);
        assert_eq!(change.presence.unwrap().online("shop"), 1);
        assert!(
            change.view.is_some() && change.publish.is_some(),
            "first session is news"
        );
        // A second session of the same agent counts as a session, and is no news.
        let (_, change) = roster.join(&hub, &agent("alice"), &shop);
        assert_eq!(change.presence.unwrap().online("shop"), 2);
        assert!(change.view.is_none() && change.publish.is_none());
        roster.join(&hub, &agent("bob"), &Sites::All);
        assert_eq!(hub.agents_online().online("shop"), 3);

        // Away: both of alice's sessions go out at once; bob (every site) still counts.
        let change = roster.set(&hub, &agent("alice"), &shop, AgentStatus::Away, Utc::now());
        assert_eq!(change.presence.unwrap().online("shop"), 1);
        assert_eq!(change.view.unwrap().status, AgentStatus::Away);
        // Away to offline: no count changes, colleagues hear of it.
        let change = roster.set(
            &hub,
            &agent("alice"),
            &shop,
            AgentStatus::Offline,
            Utc::now(),
        );
        assert!(change.presence.is_none());
        assert!(change.view.is_some());
        roster.set(
            &hub,
            &agent("bob"),
            &Sites::All,
            AgentStatus::Away,
            Utc::now(),
        );
        assert_eq!(hub.agents_online().online("shop"), 0);
        assert_eq!(hub.agents_online().sessions, 0);

        // A session of an offline agent ending changes no count; back online, the one left counts.
        assert!(roster.leave(&hub, "alice", &shop).presence.is_none());
        let change = roster.set(
            &hub,
            &agent("alice"),
            &shop,
            AgentStatus::Online,
            Utc::now(),
        );
        assert_eq!(change.presence.unwrap().online("shop"), 1);
        let change = roster.leave(&hub, "alice", &shop);
        assert_eq!(change.presence.unwrap().online("shop"), 0);
        assert!(
            !change.view.unwrap().connected,
            "last session gone: colleagues hear it"
        );
        assert_eq!(hub.agents_online().by_site.len(), 0, "no zero entries");
    }

    #[test]
    fn a_status_survives_a_reconnect_and_an_older_one_loses() {
        let hub = Hub::default();
        let roster = AgentRoster::default();
        let shop = Sites::parse("shop").unwrap();
        roster.join(&hub, &agent("alice"), &shop);
        let set_at = Utc::now();
        roster.set(&hub, &agent("alice"), &shop, AgentStatus::Away, set_at);
        roster.leave(&hub, "alice", &shop);
        let (status, change) = roster.join(&hub, &agent("alice"), &shop);
        assert_eq!(status, AgentStatus::Away);
        assert!(
            change.presence.is_none(),
            "an away agent's new session is not counted"
        );
        // A status set earlier (delivered late by the bus) does not win.
        let stale = set_at - chrono::Duration::seconds(1);
        let change = roster.set(&hub, &agent("alice"), &shop, AgentStatus::Online, stale);
        assert_eq!(change, RosterChange::default());
        assert_eq!(roster.status_of("alice"), Some(AgentStatus::Away));
        assert_eq!(hub.agents_online().online("shop"), 0);
    }

    #[test]
    fn another_processes_agents_are_known_until_it_falls_silent() {
        let hub = Hub::default();
        let roster = AgentRoster::default();
        let shop = Sites::parse("shop").unwrap();
        let view = AgentStatusView {
            agent: agent("carol"),
            status: AgentStatus::Online,
            changed_at: Utc::now(),
            sites: vec!["shop".into()],
            connected: true,
        };
        let change = roster.heard(&hub, "n2", &view);
        assert!(change.view.unwrap().connected);
        assert!(
            change.presence.is_none(),
            "remote sessions are counted by their process"
        );
        assert!(
            change.publish.is_none(),
            "what was heard is not published again"
        );
        assert_eq!(roster.list(&shop, None).len(), 1);
        assert!(
            roster
                .list(&Sites::parse("other").unwrap(), None)
                .is_empty(),
            "site scoped"
        );
        assert!(roster.list(&Sites::All, Some("other")).is_empty());
        // Heard again: nothing new.
        assert_eq!(roster.heard(&hub, "n2", &view).view, None);
        let gone = roster.expire(Duration::ZERO);
        assert_eq!(gone.len(), 1);
        assert!(!gone[0].connected);
        assert!(roster.list(&shop, None).is_empty());
    }

    #[test]
    fn sites_overlap_when_one_site_is_shared_or_either_works_for_every_site() {
        let ab = Sites::parse("a,b").unwrap();
        assert!(sites_overlap(&ab, &Sites::parse("b,c").unwrap()));
        assert!(!sites_overlap(&ab, &Sites::parse("c").unwrap()));
        assert!(sites_overlap(&ab, &Sites::All));
        assert!(sites_overlap(&Sites::All, &Sites::All));
    }
}
