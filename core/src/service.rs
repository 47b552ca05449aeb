//! The chat service: authorizes commands, persists through the [`Store`](crate::store::Store),
//! then fans out through the [`Hub`](crate::hub::Hub). A [`ChatSession`] is the seam every
//! transport talks to.
//!
//! Its files, each importing only files listed before it:
//!
//! - `config.rs`: the limits, [`ServiceConfig`];
//! - `recorded_agents.rs`: what this process last wrote into the agent directory, so that an
//!   agent's every session open does not write the same record again;
//! - `shared.rs`: the state the service and its sessions share, and the fan-out of a change to
//!   this process's sessions;
//! - `cluster.rs`: the cluster plumbing: the bus to other gateway processes, agent presence;
//! - the command service, [`ChatService`] (one per process): `chat_service.rs` (construction,
//!   counts, `close`, `list`, `history`), `send.rs` (the three ways to send),
//!   `assignment.rs` (`assign`, transfer, unassign, the agent directory, `list_agents`),
//!   `context.rs` (a visitor's reported context), `read.rs` (read receipts: the `read`
//!   command, its fan-out, agents' unread counts), `canned.rs` (canned responses),
//!   `search.rs` (conversation search) and `offline.rs` (offline capture: the `waiting` mark
//!   and the visitor's `contact` email);
//! - the per-connection session state machine, [`ChatSession`]: `session.rs` (its state and
//!   end), `open_session.rs` ([`ChatService::open_session`]), `session_commands.rs`
//!   ([`ChatSessionState::handle`], `resume`, [`ChatSessionState::recover`]) and
//!   `session_events.rs` ([`ChatSessionState::next_event`] and what it yields, [`Outbound`]);
//! - `signals.rs`: what is never stored: typing, agent status (after `session.rs`).
//!
//! Only what transports and the gateway use is public, re-exported here.

mod assignment;
mod attachments;
mod canned;
mod chat_service;
mod cluster;
mod config;
mod context;
mod offline;
mod open_session;
mod read;
mod recorded_agents;
mod search;
mod send;
mod session;
mod session_commands;
mod session_events;
mod shared;
mod signals;

pub use assignment::{assignment_line, Assignee};
pub use chat_service::{ChatService, Delivery, HistoryPage, SessionCounts, VisitorIntro};
pub use config::ServiceConfig;
pub use offline::{validate_contact_email, MAX_CONTACT_EMAIL_BYTES};
pub use search::{SearchPage, SearchRequest, DEFAULT_SEARCH_LIMIT, MAX_SEARCH_LIMIT, SEARCH_RATE};
pub use send::Draft;
pub use session::{ChatSession, ChatSessionState};
pub use session_events::Outbound;
