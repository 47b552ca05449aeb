//! What this process last wrote into the agent directory, per agent. An agent opens sessions
//! often (every console tab, every reconnect) and the directory's record rarely changes between
//! them: writing it again would only move its `last_seen`, a store transaction per open for a
//! time that `list_agents` shows to the minute at best. So an open writes when the name or the
//! sites differ from what this process last wrote for the agent, or when that was
//! [`RECORD_AGAIN_AFTER`] ago or more.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::model::{AgentId, Sites};

/// How long a record this process wrote stands for the agent's later opens with the same name
/// and sites: the directory's `last_seen` is at most this much behind their latest open.
pub(super) const RECORD_AGAIN_AFTER: Duration = Duration::from_secs(300);

/// Agents remembered at most. Past it, records older than [`RECORD_AGAIN_AFTER`] are forgotten,
/// and if every one is younger, all of them (a few writes more, never unbounded).
pub(super) const MAX_REMEMBERED_AGENTS: usize = 1024;

/// A record this process wrote (or is writing).
#[derive(Debug)]
struct Written {
    name: String,
    sites: Sites,
    at: Instant,
}

/// The records this process wrote into the agent directory lately, by agent id.
#[derive(Debug, Default)]
pub(super) struct RecordedAgents {
    written: Mutex<HashMap<AgentId, Written>>,
}

impl RecordedAgents {
    /// Whether an open at `now` must write the agent's record. When it must, the record counts
    /// as written from `now` (so concurrent opens write once); [`RecordedAgents::forget`] undoes
    /// that when the write fails.
    pub(super) fn claim(&self, id: &str, name: &str, sites: &Sites, now: Instant) -> bool {
        let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(last) = written.get(id) {
            if last.name == name
                && &last.sites == sites
                && now.saturating_duration_since(last.at) < RECORD_AGAIN_AFTER
            {
                return false;
            }
        } else if written.len() >= MAX_REMEMBERED_AGENTS {
            written.retain(|_, last| now.saturating_duration_since(last.at) < RECORD_AGAIN_AFTER);
            if written.len() >= MAX_REMEMBERED_AGENTS {
                written.clear();
            }
        }
        written.insert(
            id.to_owned(),
            Written {
                name: name.to_owned(),
                sites: sites.clone(),
                at: now,
            },
        );
        true
    }

    /// Forgets what was claimed for agent `id`: its next open writes.
    pub(super) fn forget(&self, id: &str) {
        self.written
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.written.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sites(list: &[&str]) -> Sites {
        Sites::only(list.iter().map(|s| s.to_string())).expect("sites")
    }

    #[test]
    fn two_opens_write_once_and_a_changed_name_or_sites_writes_again() {
        let recorded = RecordedAgents::default();
        let now = Instant::now();
        let later = now + Duration::from_secs(1);
        assert!(recorded.claim("a", "Alice", &Sites::All, now));
        assert!(!recorded.claim("a", "Alice", &Sites::All, later));
        assert!(recorded.claim("a", "Alice B.", &Sites::All, later));
        assert!(!recorded.claim("a", "Alice B.", &Sites::All, later));
        assert!(recorded.claim("a", "Alice B.", &sites(&["shop"]), later));
        assert!(!recorded.claim("a", "Alice B.", &sites(&["shop"]), later));
        // Another agent of the same name is another record.
        assert!(recorded.claim("b", "Alice B.", &sites(&["shop"]), later));
    }

    #[test]
    fn the_same_record_is_written_again_once_it_is_old() {
        let recorded = RecordedAgents::default();
        let now = Instant::now();
        assert!(recorded.claim("a", "Alice", &Sites::All, now));
        let almost = now + RECORD_AGAIN_AFTER - Duration::from_millis(1);
        assert!(!recorded.claim("a", "Alice", &Sites::All, almost));
        assert!(recorded.claim("a", "Alice", &Sites::All, now + RECORD_AGAIN_AFTER));
    }

    #[test]
    fn a_forgotten_claim_writes_again() {
        let recorded = RecordedAgents::default();
        let now = Instant::now();
        assert!(recorded.claim("a", "Alice", &Sites::All, now));
        recorded.forget("a");
        assert!(recorded.claim("a", "Alice", &Sites::All, now));
    }

    #[test]
    fn it_remembers_a_bounded_number_of_agents() {
        let recorded = RecordedAgents::default();
        let now = Instant::now();
        for n in 0..MAX_REMEMBERED_AGENTS {
            assert!(recorded.claim(&format!("agent-{n}"), "A", &Sites::All, now));
        }
        assert_eq!(recorded.len(), MAX_REMEMBERED_AGENTS);
        // Every record is young: all are forgotten to make room.
        assert!(recorded.claim("one more", "A", &Sites::All, now));
        assert_eq!(recorded.len(), 1);
        assert!(recorded.claim("agent-0", "A", &Sites::All, now));
        // Old records make room first; young ones stay remembered.
        let later = now + RECORD_AGAIN_AFTER;
        for n in 2..MAX_REMEMBERED_AGENTS {
            assert!(recorded.claim(&format!("young-{n}"), "A", &Sites::All, later));
        }
        assert_eq!(recorded.len(), MAX_REMEMBERED_AGENTS);
        assert!(recorded.claim("newcomer", "A", &Sites::All, later));
        assert_eq!(recorded.len(), MAX_REMEMBERED_AGENTS - 1);
        assert!(!recorded.claim("young-2", "A", &Sites::All, later));
    }
}
