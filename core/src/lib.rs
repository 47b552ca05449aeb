//! # chat-core
//!
//! The chat itself, independent of wire protocols and databases: the [model], the
//! transport-neutral [protocol], the [`Store`](store::Store) and [`Transport`](transport::Transport)
//! traits, the [chat service](service) with its sessions, the live [hub], and [auth].
//!
//! Nothing here knows Pingora, SQL or sockets: a transport turns frames into
//! [`ClientCommand`](protocol::ClientCommand)s for a [`ChatSession`](service::ChatSession) and writes the
//! [`ServerEvent`](protocol::ServerEvent)s it yields; a store persists what the service asks.
#![warn(missing_docs)]

pub mod agent_status;
pub mod agents;
pub mod attachment;
pub mod auth;
pub mod bus;
pub mod canned;
pub mod error;
pub mod hub;
pub mod identity;
pub mod mailbox;
pub mod metrics;
pub mod model;
pub mod protocol;
pub mod rate;
pub mod read_receipts;
pub mod rollout;
pub mod roster;
pub mod search;
pub mod service;
pub mod session_end;
pub mod store;
pub mod transport;
pub mod typing;
pub mod visibility;
pub mod visitor_context;
pub mod webhook;

pub use error::{ChatError, ErrorCode, StoreError};
