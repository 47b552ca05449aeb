//! The per-session event log: server events numbered 1, 2, 3… that a polling client fetches by
//! cursor and acknowledges by asking for what follows.

use std::collections::VecDeque;

/// The log is full: the client has not acknowledged events fast enough.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overflow;

/// A bounded log of serialized server events, numbered from 1.
///
/// Events stay until the client acknowledges them (a poll with `cursor >= index`); at most
/// `capacity` unacknowledged events are kept.
#[derive(Debug)]
pub struct EventLog {
    /// `(index, event JSON)`, indexes consecutive and increasing.
    events: VecDeque<(u64, String)>,
    /// Index of the last event pushed (0 before the first).
    last: u64,
    capacity: usize,
}

impl EventLog {
    /// An empty log holding at most `capacity` unacknowledged events (at least 1).
    pub fn new(capacity: usize) -> Self {
        Self {
            events: VecDeque::new(),
            last: 0,
            capacity: capacity.max(1),
        }
    }

    /// Appends an event and returns its index, or [`Overflow`] when the log is full.
    pub fn push(&mut self, event: String) -> Result<u64, Overflow> {
        if self.events.len() >= self.capacity {
            return Err(Overflow);
        }
        self.last += 1;
        self.events.push_back((self.last, event));
        Ok(self.last)
    }

    /// Index of the last event pushed (0 when none was).
    pub fn last(&self) -> u64 {
        self.last
    }

    /// Events kept (not yet acknowledged).
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether another event fits.
    pub fn has_room(&self) -> bool {
        self.events.len() < self.capacity
    }

    /// Whether no event is kept.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Discards every event with an index up to `cursor`; returns how many were discarded.
    pub fn acknowledge(&mut self, cursor: u64) -> usize {
        let mut discarded = 0;
        while self.events.front().is_some_and(|(i, _)| *i <= cursor) {
            self.events.pop_front();
            discarded += 1;
        }
        discarded
    }

    /// The events after `cursor` that are still kept, in order, with the index of the last one
    /// (`cursor` itself when there are none).
    pub fn after(&self, cursor: u64) -> (u64, Vec<&str>) {
        let events: Vec<&str> = self
            .events
            .iter()
            .filter(|(i, _)| *i > cursor)
            .map(|(_, e)| e.as_str())
            .collect();
        let last = if events.is_empty() { cursor } else { self.last };
        (last, events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_events_from_one_and_returns_what_follows_a_cursor() {
        let mut log = EventLog::new(8);
        assert_eq!(log.last(), 0);
        assert_eq!(log.push("a".into()), Ok(1));
        assert_eq!(log.push("b".into()), Ok(2));
        assert_eq!(log.push("c".into()), Ok(3));
        assert_eq!(log.after(0), (3, vec!["a", "b", "c"]));
        assert_eq!(log.after(1), (3, vec!["b", "c"]));
        assert_eq!(log.after(3), (3, vec![]));
        assert_eq!(log.last(), 3);
    }

    #[test]
    fn acknowledged_events_are_discarded_and_numbering_continues() {
        let mut log = EventLog::new(8);
        for e in ["a", "b", "c"] {
            log.push(e.into()).unwrap();
        }
        log.acknowledge(2);
        assert_eq!(log.len(), 1);
        assert_eq!(log.after(0), (3, vec!["c"]));
        log.acknowledge(2); // again: nothing changes
        assert_eq!(log.len(), 1);
        assert_eq!(log.push("d".into()), Ok(4));
        log.acknowledge(4);
        assert!(log.is_empty());
        assert_eq!(log.after(4), (4, vec![]));
        assert_eq!(log.push("e".into()), Ok(5));
        assert_eq!(log.after(4), (5, vec!["e"]));
    }

    #[test]
    fn overflows_at_capacity_until_the_client_acknowledges() {
        let mut log = EventLog::new(2);
        log.push("a".into()).unwrap();
        log.push("b".into()).unwrap();
        assert_eq!(log.push("c".into()), Err(Overflow));
        assert_eq!(log.last(), 2, "a refused event takes no number");
        // Fetched but not acknowledged events still count.
        assert_eq!(log.after(0).1.len(), 2);
        assert_eq!(log.push("c".into()), Err(Overflow));
        log.acknowledge(1);
        assert_eq!(log.push("c".into()), Ok(3));
    }
}
