//! The directory of agents (issue 15): every agent who opened a session, with the name and
//! sites their token gave, so that a conversation can be assigned to an agent who is not the
//! caller (their display name comes from here) and the console can list a site's agents.

use crate::model::{AgentId, Sites};
use chrono::{DateTime, Utc};

/// Most agents a `list_agents` answer holds.
pub const MAX_LISTED_AGENTS: u32 = 200;

/// Longest agent id or name kept in the directory, in bytes (tokens are bounded already; this
/// bounds what the directory answers).
pub const MAX_AGENT_FIELD_BYTES: usize = 256;

/// An agent as the directory keeps them: as their last session's token said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRecord {
    /// The `sub` claim.
    pub id: AgentId,
    /// The `name` claim.
    pub name: String,
    /// The sites the token named.
    pub sites: Sites,
    /// When they last opened a session.
    pub last_seen: DateTime<Utc>,
}

/// Whether an agent id and name fit the directory.
pub fn fits_directory(id: &str, name: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_AGENT_FIELD_BYTES && name.len() <= MAX_AGENT_FIELD_BYTES
}
