//! Read receipts: each participant's last read `seq` per conversation (the visitor's, and each
//! agent's), what a session may write of it, and the unread counts agents see.
//!
//! A client says how far it has read with the `read` command; the store keeps the position
//! (never backwards, never past the conversation's last message) and the gateway announces it
//! to the other side with a `read` event (docs/protocol.md, "Read receipts"). A client cannot
//! turn `read` into a stream of database writes: each session's commands go through a
//! [`ReadCoalescer`], which refuses more than [`READ_RATE`] of them and answers a position the
//! session already stored without touching the store.
//!
//! ```
//! use chat_core::model::ConversationId;
//! use chat_core::read_receipts::{ReadCoalescer, ReadDecision};
//! use std::time::Instant;
//! let now = Instant::now();
//! let mut reads = ReadCoalescer::new(now);
//! let c = ConversationId::new_random();
//! assert_eq!(reads.decide(c, 3, now), ReadDecision::Write);
//! reads.stored(c, 3);
//! assert_eq!(reads.decide(c, 2, now), ReadDecision::Unchanged(3));
//! ```

use crate::model::{AgentId, Conversation, ConversationId, Role};
use crate::rate::{RateLimit, TokenBucket};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// `read` commands a session may send: 2 a second, with a burst of 10 (an agent clicking
/// through conversations, a widget catching up after a reconnect). Past it: `rate_limited`.
pub const READ_RATE: RateLimit = RateLimit {
    per_sec: 2.0,
    burst: 10,
};

/// Unread counts stop here: an agent's badge shows "99+" past 99, and counting stops reading
/// the conversation's messages at this many.
pub const UNREAD_CAP: u32 = 100;

/// Conversations whose stored position a session remembers (past this it forgets them all and
/// reads through to the store again: bounded, never wrong, since the store never goes back).
const MAX_TRACKED: usize = 256;

/// Who read: the conversation's visitor, or one agent.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reader {
    /// The visitor of the conversation.
    Visitor,
    /// The agent with this id.
    Agent(AgentId),
}

impl Reader {
    /// Visitor or agent.
    pub fn role(&self) -> Role {
        match self {
            Self::Visitor => Role::Visitor,
            Self::Agent(_) => Role::Agent,
        }
    }

    /// The reader's id as stored beside its role: the agent id, empty for the visitor (a
    /// conversation has one visitor, and a conversation handed to another visitor keeps it).
    pub fn stored_id(&self) -> &str {
        match self {
            Self::Visitor => "",
            Self::Agent(id) => id,
        }
    }
}

/// What [`Store::mark_read`](crate::store::Store::mark_read) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MarkedRead {
    /// The reader's stored position now.
    pub seq: i64,
    /// Whether this call moved it forward (only then is it announced).
    pub advanced: bool,
}

/// How far a conversation's participants have read, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadMarks {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// The visitor's last read `seq` (0: nothing read).
    pub visitor_seq: i64,
    /// The highest last read `seq` of any agent (0: no agent read anything).
    pub agent_seq: i64,
}

/// A conversation as one agent lists it: with that agent's unread count and read positions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentListing {
    /// The conversation.
    pub conversation: Conversation,
    /// The agent's read state of it.
    pub read: ConversationReadState,
}

/// One agent's read state of one conversation, as the `list_conversations` ack carries it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationReadState {
    /// Messages from the visitor after `read_seq`, at most [`UNREAD_CAP`]. Agents' messages
    /// (the asking agent's own and colleagues') never count.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub unread: u32,
    /// The asking agent's last read `seq`.
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub read_seq: i64,
    /// The visitor's last read `seq`.
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub visitor_read_seq: i64,
}

impl ConversationReadState {
    /// Whether every field is 0 (such entries are left out of answers).
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

fn is_zero_i64(n: &i64) -> bool {
    *n == 0
}

/// A stored read position, as fanned out to the conversation's participants (the `read` event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadReceipt {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// Who read.
    pub reader: Reader,
    /// Up to which `seq` (inclusive).
    pub seq: i64,
}

/// What a session does with one `read` command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadDecision {
    /// Over [`READ_RATE`]: refuse, retry after this long.
    Limited(Duration),
    /// The session already stored this far (or further): answer with the stored position,
    /// write nothing, announce nothing.
    Unchanged(i64),
    /// Write it through to the store (which clamps it and never moves it back).
    Write,
}

/// A session's gate in front of read writes: the [`READ_RATE`] bucket, and the positions the
/// session has stored, so that repeating one costs no store access.
#[derive(Debug, Clone)]
pub struct ReadCoalescer {
    bucket: TokenBucket,
    stored: HashMap<ConversationId, i64>,
}

impl ReadCoalescer {
    /// A full bucket, nothing remembered.
    pub fn new(now: Instant) -> Self {
        Self {
            bucket: TokenBucket::new(READ_RATE, now),
            stored: HashMap::new(),
        }
    }

    /// Decides a `read` of conversation `id` up to `seq`: every command takes a token (so a
    /// flood is refused whatever it says), then only a position past what the session stored
    /// goes to the store.
    pub fn decide(&mut self, id: ConversationId, seq: i64, now: Instant) -> ReadDecision {
        if let Err(wait) = self.bucket.try_take(now) {
            return ReadDecision::Limited(wait);
        }
        match self.stored.get(&id) {
            Some(&stored) if seq <= stored => ReadDecision::Unchanged(stored),
            _ => ReadDecision::Write,
        }
    }

    /// Remembers that the store now holds `seq` for conversation `id` (the answer of a write).
    pub fn stored(&mut self, id: ConversationId, seq: i64) {
        if self.stored.len() >= MAX_TRACKED && !self.stored.contains_key(&id) {
            self.stored.clear();
        }
        let entry = self.stored.entry(id).or_insert(seq);
        *entry = (*entry).max(seq);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_limited_to_the_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut reads = ReadCoalescer::new(t0);
        let c = ConversationId::new_random();
        let mut writes = 0;
        let mut limited = 0;
        for seq in 1..=100 {
            match reads.decide(c, seq, t0) {
                ReadDecision::Write => {
                    writes += 1;
                    reads.stored(c, seq);
                }
                ReadDecision::Limited(wait) => {
                    limited += 1;
                    assert!(wait <= Duration::from_millis(500), "{wait:?}");
                }
                ReadDecision::Unchanged(_) => panic!("every seq grows"),
            }
        }
        assert_eq!((writes, limited), (READ_RATE.burst, 100 - READ_RATE.burst));
        // One second later, two more (the sustained rate).
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(reads.decide(c, 200, t1), ReadDecision::Write);
        assert_eq!(reads.decide(c, 201, t1), ReadDecision::Write);
        assert!(matches!(reads.decide(c, 202, t1), ReadDecision::Limited(_)));
    }

    #[test]
    fn a_position_already_stored_is_answered_without_a_write() {
        let t0 = Instant::now();
        let mut reads = ReadCoalescer::new(t0);
        let (a, b) = (ConversationId::new_random(), ConversationId::new_random());
        assert_eq!(reads.decide(a, 5, t0), ReadDecision::Write);
        reads.stored(a, 5);
        for seq in [5, 4, 0] {
            assert_eq!(reads.decide(a, seq, t0), ReadDecision::Unchanged(5));
        }
        // Another conversation is its own.
        assert_eq!(reads.decide(b, 1, t0), ReadDecision::Write);
        // The store clamped a write to less than asked: that is what is remembered, and the
        // next read past it goes to the store again.
        reads.stored(b, 1);
        assert_eq!(reads.decide(b, 2, t0), ReadDecision::Write);
        // Never backwards, even if told so.
        reads.stored(a, 3);
        assert_eq!(reads.decide(a, 5, t0), ReadDecision::Unchanged(5));
    }

    #[test]
    fn repeats_still_take_tokens_so_a_flood_of_the_same_read_is_refused_too() {
        let t0 = Instant::now();
        let mut reads = ReadCoalescer::new(t0);
        let c = ConversationId::new_random();
        reads.stored(c, 9);
        let refused = (0..50)
            .filter(|_| matches!(reads.decide(c, 9, t0), ReadDecision::Limited(_)))
            .count();
        assert_eq!(refused, 50 - READ_RATE.burst as usize);
    }

    #[test]
    fn what_a_session_remembers_is_bounded() {
        let t0 = Instant::now();
        let mut reads = ReadCoalescer::new(t0);
        for _ in 0..(MAX_TRACKED * 3) {
            reads.stored(ConversationId::new_random(), 1);
        }
        assert!(reads.stored.len() <= MAX_TRACKED);
    }

    #[test]
    fn read_state_leaves_zeros_out() {
        let state = ConversationReadState {
            unread: 3,
            read_seq: 0,
            visitor_read_seq: 7,
        };
        assert_eq!(
            serde_json::to_string(&state).unwrap(),
            r#"{"unread":3,"visitor_read_seq":7}"#
        );
        assert!(ConversationReadState::default().is_empty());
        assert_eq!(Reader::Agent("alice".into()).stored_id(), "alice");
        assert_eq!(Reader::Visitor.role(), Role::Visitor);
    }
}
