//! Agent status: *online*, *away* or *offline*, set by the agent in the console (`set_status`),
//! per agent (every session of one agent shares it) and across gateway processes (the bus).
//!
//! Only *online* agents count in the `presence` a visitor's widget shows: an agent who is away
//! or offline stays connected (they still read and answer conversations) but counts nowhere,
//! so the widget's *Online* means "some agent of this site is online and not away".
//!
//! This file holds the status and how colleagues see it; [`crate::roster`] holds what a process
//! remembers of its agents' statuses and how they cross processes.

use crate::model::{Agent, SiteId, Sites};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Whether an agent takes conversations now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentStatus {
    /// Available: counts in the visitors' `presence` (the default on sign-in).
    #[default]
    Online,
    /// Connected but away for a moment: counts nowhere.
    Away,
    /// Connected but not taking chats: counts nowhere.
    Offline,
}

impl AgentStatus {
    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Online => "online",
            Self::Away => "away",
            Self::Offline => "offline",
        }
    }

    /// Whether an agent of this status counts as online for visitors.
    pub fn counts(self) -> bool {
        self == Self::Online
    }
}

/// An agent's status as colleagues see it: the `agent_status` event and the entries of a
/// `list_agents` answer; also what processes tell each other on the bus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentStatusView {
    /// Who.
    pub agent: Agent,
    /// Their status.
    pub status: AgentStatus,
    /// When they set it (or first signed in).
    pub changed_at: DateTime<Utc>,
    /// The sites they work for (`["*"]`: every site).
    pub sites: Vec<SiteId>,
    /// Whether they have a session open (on the bus: on the publishing process).
    pub connected: bool,
}

/// Whether two agents' sites have a site in common (every site meets every site).
pub fn sites_overlap(a: &Sites, b: &Sites) -> bool {
    match (a.list(), b.list()) {
        (None, _) | (_, None) => true,
        (Some(a), Some(b)) => a.iter().any(|site| b.contains(site)),
    }
}
