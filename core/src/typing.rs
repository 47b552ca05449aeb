//! Typing indicators: ephemeral signals that travel through the hub and the bus like messages
//! do, but are never stored, never replayed (on `resume`, on a Socket.IO recovery, in
//! `history`) and expire on their own.
//!
//! A client sends `typing` with `typing: true` at most every few seconds while its user types
//! and `typing: false` when they stop (send, blur, idle); the other side shows the indicator and
//! clears it on `false`, on a message from the same sender, or [`TYPING_EXPIRY`] after the
//! last `true`, whichever comes first, so a lost `false` (a closed tab, a lost connection)
//! cannot leave it on. A session that ends while its user was typing sends the `false` itself.
//!
//! Each session may send [`TYPING_RATE`]: the excess is answered `rate_limited` and reaches
//! nobody, so a client flooding `typing` costs its recipients at most that many events.

use crate::model::{ConversationId, Sender, SiteId, VisitorId};
use crate::rate::{RateLimit, TokenBucket};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// `typing` commands a session may send: 2 a second, 5 at once (clients send one every 2–3 s
/// while their user types, and one `false`).
pub const TYPING_RATE: RateLimit = RateLimit {
    per_sec: 2.0,
    burst: 5,
};

/// How long a receiver shows a `typing: true` with no news (the event's `expires_in_ms`).
pub const TYPING_EXPIRY: Duration = Duration::from_secs(6);

/// The `typing` event: someone is (or stopped) typing in a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Typing {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// Who types: `role`, `id`, `name` (agents' display name; visitors have none), as on
    /// messages.
    pub sender: Sender,
    /// Typing now, or stopped.
    pub typing: bool,
    /// For `typing: true`: clear the indicator after this many milliseconds without news.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_ms: Option<u64>,
}

impl Typing {
    /// `sender` typing (or not) in `conversation_id`.
    pub fn new(conversation_id: ConversationId, sender: Sender, typing: bool) -> Self {
        Self {
            conversation_id,
            sender,
            typing,
            expires_in_ms: typing.then(|| TYPING_EXPIRY.as_millis() as u64),
        }
    }
}

/// Where a session's user was last said to be typing, so its end can say they stopped.
#[derive(Debug, Clone)]
pub(crate) struct TypingIn {
    pub(crate) conversation_id: ConversationId,
    pub(crate) visitor_id: VisitorId,
    pub(crate) site_id: SiteId,
    /// When receivers clear it on their own anyway.
    pub(crate) until: Instant,
}

/// A session's typing: its rate limit and where its user types.
#[derive(Debug, Default)]
pub(crate) struct TypingState {
    /// Made on the first `typing` (most sessions never send one).
    bucket: Option<TokenBucket>,
    pub(crate) typing_in: Option<TypingIn>,
}

impl TypingState {
    /// Takes one `typing` from the session's allowance, or says when one is available.
    pub(crate) fn take(&mut self, now: Instant) -> Result<(), Duration> {
        self.bucket
            .get_or_insert_with(|| TokenBucket::new(TYPING_RATE, now))
            .try_take(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Role;

    #[test]
    fn a_flood_gets_the_burst_then_the_sustained_rate() {
        let t0 = Instant::now();
        let mut state = TypingState::default();
        let allowed = (0..100).filter(|_| state.take(t0).is_ok()).count();
        assert_eq!(allowed, TYPING_RATE.burst as usize);
        let wait = state.take(t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        // One second later: two more, not a new burst.
        let t1 = t0 + Duration::from_secs(1);
        let allowed = (0..100).filter(|_| state.take(t1).is_ok()).count();
        assert_eq!(allowed, 2);
    }

    #[test]
    fn only_typing_true_expires() {
        let sender = Sender {
            role: Role::Agent,
            id: "alice".into(),
            name: Some("Alice".into()),
        };
        let on = Typing::new(ConversationId::new_random(), sender.clone(), true);
        assert_eq!(on.expires_in_ms, Some(6000));
        let json = serde_json::to_string(&Typing::new(on.conversation_id, sender, false)).unwrap();
        assert!(!json.contains("expires_in_ms"), "{json}");
    }
}
