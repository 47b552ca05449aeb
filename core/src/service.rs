//! The chat service: authorizes commands, persists through the [`Store`](crate::store::Store),
//! then fans out through the [`Hub`](crate::hub::Hub). A [`ChatSession`] is the seam every
//! transport talks to.
//!
//! Its files, each importing only files listed before it:
//!
//! - `config.rs`: the limits, [`ServiceConfig`];
//! - `shared.rs`: the state the service and its sessions share, and the fan-out of a change to
//!   this process's sessions;
//! - `cluster.rs`: the cluster plumbing: the bus to other gateway processes, agent presence;
//! - the command service, [`ChatService`] (one per process): `chat_service.rs` (construction,
//!   counts, `assign`, `close`, `list`, `history`), `send.rs` (the three ways to send) and
//!   `context.rs` (a visitor's reported context), `offline.rs` (offline capture: the
//!   `waiting` mark and the visitor's `contact` email);
//! - the per-connection session state machine, [`ChatSession`]: `session.rs` (its state and
//!   end), `open_session.rs` ([`ChatService::open_session`]), `session_commands.rs`
//!   ([`ChatSessionState::handle`], `resume`, [`ChatSessionState::recover`]) and
//!   `session_events.rs` ([`ChatSessionState::next_event`] and what it yields, [`Outbound`]).
//!
//! Only what transports and the gateway use is public, re-exported here.

mod chat_service;
mod cluster;
mod config;
mod context;
mod offline;
mod open_session;
mod send;
mod session;
mod session_commands;
mod session_events;
mod shared;

pub use chat_service::{ChatService, Delivery, HistoryPage, SessionCounts, VisitorIntro};
pub use config::ServiceConfig;
pub use offline::{validate_contact_email, MAX_CONTACT_EMAIL_BYTES};
pub use session::{ChatSession, ChatSessionState};
pub use session_events::Outbound;
