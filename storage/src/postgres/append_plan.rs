//! The Rust half of a batch's transaction ([`super::append`]), between its two round trips:
//! from the conversations the first round trip locked and the client message ids it found
//! stored, number the batch's new messages per conversation and pick out its duplicates.
//! Nothing here touches Postgres, so it is tested without a server.

use std::collections::HashMap;

use chat_core::model::{Message, MessageKind, NewMessage};
use chat_core::store::Appended;
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// A locked conversation: its visitor and its `last_seq` as the batch leaves it.
pub(super) struct Locked {
    pub(super) visitor_id: Uuid,
    /// Its site, for the bus notification (a shared copy per conversation, not per message).
    pub(super) site_id: std::sync::Arc<str>,
    pub(super) last_seq: i64,
    /// The newest `seq` visitors see while notes follow it (`None`: `last_seq`).
    pub(super) visitor_last_seq: Option<i64>,
    pub(super) bumped: bool,
}

/// What a batch writes, worked out from what round trip 1 read.
pub(super) struct Plan {
    /// One per message of the batch, in the batch's order; `None`: no such conversation.
    pub(super) results: Vec<Option<Appended>>,
    /// The new messages, in commit order (by conversation, then `seq`).
    pub(super) inserts: Vec<Message>,
    /// The visitor of each new message's conversation (for the bus), as `inserts`.
    pub(super) visitors: Vec<(Uuid, std::sync::Arc<str>)>,
    /// The conversations' new `last_seq` and `visitor_last_seq`.
    pub(super) bumps: Vec<(Uuid, i64, Option<i64>)>,
}

/// Numbers the batch's new messages (`order`: the batch's indexes sorted by conversation,
/// stably, so each conversation's messages keep their arrival order) and finds its duplicates,
/// those already stored and those repeated within the batch.
pub(super) fn plan(
    batch: &[NewMessage],
    order: &[usize],
    mut locked: HashMap<Uuid, Locked>,
    mut present: HashMap<(Uuid, String), Message>,
    now: DateTime<Utc>,
) -> Plan {
    let mut results: Vec<Option<Appended>> = vec![None; batch.len()];
    let mut inserts = Vec::with_capacity(batch.len());
    let mut visitors = Vec::with_capacity(batch.len());
    for &i in order {
        let m = &batch[i];
        let conversation = m.conversation_id.0;
        let Some(state) = locked.get_mut(&conversation) else {
            continue;
        };
        if let Some(key) = &m.client_msg_id {
            if let Some(original) = present.get(&(conversation, key.clone())) {
                results[i] = Some(Appended::Duplicate(original.clone()));
                continue;
            }
        }
        state.visitor_last_seq = match m.kind {
            MessageKind::Note => Some(state.visitor_last_seq.unwrap_or(state.last_seq)),
            MessageKind::Text | MessageKind::System => None,
        };
        state.last_seq += 1;
        state.bumped = true;
        let message = Message {
            attachment: m.attachment.clone(),
            conversation_id: m.conversation_id,
            seq: state.last_seq,
            kind: m.kind,
            client_msg_id: m.client_msg_id.clone(),
            sender: m.sender.clone(),
            body: m.body.clone(),
            created_at: now,
        };
        if let Some(key) = &m.client_msg_id {
            present.insert((conversation, key.clone()), message.clone());
        }
        visitors.push((state.visitor_id, state.site_id.clone()));
        inserts.push(message.clone());
        results[i] = Some(Appended::Inserted(message));
    }
    let mut bumps: Vec<(Uuid, i64, Option<i64>)> = locked
        .drain()
        .filter(|(_, s)| s.bumped)
        .map(|(id, s)| (id, s.last_seq, s.visitor_last_seq))
        .collect();
    bumps.sort_unstable();
    Plan {
        results,
        inserts,
        visitors,
        bumps,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_message(conversation: Uuid, key: Option<&str>) -> NewMessage {
        crate::unit_fixtures::visitor_message(conversation, key, MessageKind::Text)
    }

    /// A conversation locked at `last_seq`, no note after it.
    fn locked_at(last_seq: i64) -> Locked {
        Locked {
            visitor_id: Uuid::nil(),
            site_id: "s".into(),
            last_seq,
            visitor_last_seq: None,
            bumped: false,
        }
    }

    fn sorted(batch: &[NewMessage]) -> Vec<usize> {
        let mut order: Vec<usize> = (0..batch.len()).collect();
        order.sort_by_key(|&i| batch[i].conversation_id.0);
        order
    }

    #[test]
    fn numbers_per_conversation_in_arrival_order_and_finds_duplicates() {
        let (a, b, missing) = (Uuid::from_u128(2), Uuid::from_u128(1), Uuid::from_u128(3));
        let batch = vec![
            new_message(a, Some("a1")),
            new_message(b, Some("b1")),
            new_message(a, Some("a2")),
            new_message(a, Some("a1")),  // repeated within the batch
            new_message(b, Some("old")), // already stored
            new_message(missing, Some("x")),
            new_message(a, None),
        ];
        let now = Utc::now();
        let stored = stored_message(b, "old", 4, now);
        let locked = HashMap::from([(a, locked_at(10)), (b, locked_at(4))]);
        let present = HashMap::from([((b, "old".to_string()), stored.clone())]);
        let plan = plan(&batch, &sorted(&batch), locked, present, now);
        let seq = |i: usize| match &plan.results[i] {
            Some(Appended::Inserted(m)) => (true, m.seq),
            Some(Appended::Duplicate(m)) => (false, m.seq),
            None => (false, -1),
        };
        assert_eq!(seq(0), (true, 11));
        assert_eq!(seq(2), (true, 12));
        assert_eq!(seq(3), (false, 11));
        assert_eq!(seq(6), (true, 13));
        assert_eq!(seq(1), (true, 5));
        assert_eq!(seq(4), (false, 4));
        assert!(plan.results[5].is_none());
        assert_eq!(plan.bumps, vec![(b, 5, None), (a, 13, None)]);
        let order: Vec<(Uuid, i64)> = plan
            .inserts
            .iter()
            .map(|m| (m.conversation_id.0, m.seq))
            .collect();
        assert_eq!(order, vec![(b, 5), (a, 11), (a, 12), (a, 13)]);
    }

    #[test]
    fn notes_keep_what_visitors_see_and_any_other_message_clears_it() {
        let a = Uuid::from_u128(7);
        let note = |key: &str| NewMessage {
            kind: MessageKind::Note,
            ..new_message(a, Some(key))
        };
        // The conversation's new `last_seq` and `visitor_last_seq` after `batch`, from 3.
        let bumps = |batch: Vec<NewMessage>| {
            let locked = HashMap::from([(a, locked_at(3))]);
            plan(&batch, &sorted(&batch), locked, HashMap::new(), Utc::now()).bumps
        };
        assert_eq!(bumps(vec![note("n1"), note("n2")]), vec![(a, 5, Some(3))]);
        assert_eq!(
            bumps(vec![note("n1"), new_message(a, Some("t")), note("n2")]),
            vec![(a, 6, Some(5))]
        );
        assert_eq!(
            bumps(vec![note("n1"), new_message(a, Some("t"))]),
            vec![(a, 5, None)]
        );
    }

    /// `new_message(conversation, Some(key))` as stored at `seq`.
    fn stored_message(conversation: Uuid, key: &str, seq: i64, at: DateTime<Utc>) -> Message {
        let m = new_message(conversation, Some(key));
        Message {
            attachment: None,
            conversation_id: m.conversation_id,
            seq,
            kind: m.kind,
            client_msg_id: m.client_msg_id,
            sender: m.sender,
            body: m.body,
            created_at: at,
        }
    }
}
