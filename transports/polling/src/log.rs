//! The per-session event log: server events numbered 1, 2, 3… that a polling client fetches by
//! cursor and acknowledges by asking for what follows.

use std::collections::VecDeque;

/// The log is full: the client has not acknowledged events fast enough.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overflow;

/// A bounded log of serialized server events, numbered from 1.
///
/// Events stay until the client acknowledges them (a poll with `cursor >= index`); at most
/// `capacity` unacknowledged events are kept, and new events are taken only while the kept ones
/// take less than `max_bytes` (so the log holds at most `max_bytes` plus one event).
#[derive(Debug)]
pub struct EventLog {
    /// `(index, event JSON)`, indexes consecutive and increasing.
    events: VecDeque<(u64, String)>,
    /// Index of the last event pushed (0 before the first).
    last: u64,
    capacity: usize,
    /// Bytes of the events kept.
    bytes: usize,
    max_bytes: usize,
}

impl EventLog {
    /// An empty log holding at most `capacity` unacknowledged events (at least 1) and taking
    /// new ones while they hold less than `max_bytes`.
    pub fn new(capacity: usize, max_bytes: usize) -> Self {
        Self {
            events: VecDeque::new(),
            last: 0,
            capacity: capacity.max(1),
            bytes: 0,
            max_bytes,
        }
    }

    /// Appends an event and returns its index, or [`Overflow`] when the log is full.
    pub fn push(&mut self, event: String) -> Result<u64, Overflow> {
        if !self.has_room() {
            return Err(Overflow);
        }
        self.last += 1;
        self.bytes += event.len();
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
        self.events.len() < self.capacity && (self.events.is_empty() || self.bytes < self.max_bytes)
    }

    /// Whether no event is kept.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Discards every event with an index up to `cursor`; returns how many were discarded.
    pub fn acknowledge(&mut self, cursor: u64) -> usize {
        let mut discarded = 0;
        while self.events.front().is_some_and(|(i, _)| *i <= cursor) {
            if let Some((_, event)) = self.events.pop_front() {
                self.bytes -= event.len();
            }
            discarded += 1;
        }
        discarded
    }

    /// The events after `cursor` that are still kept, in order, as many as fit in `max_bytes`
    /// (at least one), with the index of the last one returned (`cursor` itself when there are
    /// none): the client's next poll asks from there.
    pub fn after(&self, cursor: u64, max_bytes: usize) -> (u64, Vec<&str>) {
        let mut last = cursor;
        let mut size = 0usize;
        let mut events = Vec::new();
        for (index, event) in self.events.iter().filter(|(i, _)| *i > cursor) {
            if !events.is_empty() && size + event.len() + 1 > max_bytes {
                break;
            }
            size += event.len() + 1;
            last = *index;
            events.push(event.as_str());
        }
        (last, events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_events_from_one_and_returns_what_follows_a_cursor() {
        let mut log = EventLog::new(8, usize::MAX);
        assert_eq!(log.last(), 0);
        assert_eq!(log.push("a".into()), Ok(1));
        assert_eq!(log.push("b".into()), Ok(2));
        assert_eq!(log.push("c".into()), Ok(3));
        assert_eq!(log.after(0, usize::MAX), (3, vec!["a", "b", "c"]));
        assert_eq!(log.after(1, usize::MAX), (3, vec!["b", "c"]));
        assert_eq!(log.after(3, usize::MAX), (3, vec![]));
        assert_eq!(log.last(), 3);
    }

    #[test]
    fn acknowledged_events_are_discarded_and_numbering_continues() {
        let mut log = EventLog::new(8, usize::MAX);
        for e in ["a", "b", "c"] {
            log.push(e.into()).unwrap();
        }
        log.acknowledge(2);
        assert_eq!(log.len(), 1);
        assert_eq!(log.after(0, usize::MAX), (3, vec!["c"]));
        log.acknowledge(2); // again: nothing changes
        assert_eq!(log.len(), 1);
        assert_eq!(log.push("d".into()), Ok(4));
        log.acknowledge(4);
        assert!(log.is_empty());
        assert_eq!(log.after(4, usize::MAX), (4, vec![]));
        assert_eq!(log.push("e".into()), Ok(5));
        assert_eq!(log.after(4, usize::MAX), (5, vec!["e"]));
    }

    #[test]
    fn overflows_at_capacity_until_the_client_acknowledges() {
        let mut log = EventLog::new(2, usize::MAX);
        log.push("a".into()).unwrap();
        log.push("b".into()).unwrap();
        assert_eq!(log.push("c".into()), Err(Overflow));
        assert_eq!(log.last(), 2, "a refused event takes no number");
        // Fetched but not acknowledged events still count.
        assert_eq!(log.after(0, usize::MAX).1.len(), 2);
        assert_eq!(log.push("c".into()), Err(Overflow));
        log.acknowledge(1);
        assert_eq!(log.push("c".into()), Ok(3));
    }

    #[test]
    fn answers_and_holdings_are_bounded_in_bytes() {
        let mut log = EventLog::new(100, 10);
        log.push("aaaa".into()).unwrap();
        log.push("bbbb".into()).unwrap();
        log.push("cccc".into()).unwrap();
        assert!(!log.has_room(), "12 bytes kept, over the 10-byte bound");
        assert_eq!(log.push("d".into()), Err(Overflow));
        // An answer holds what fits, at least one event; the cursor says where it stopped.
        assert_eq!(log.after(0, 10), (2, vec!["aaaa", "bbbb"]));
        assert_eq!(log.after(0, 1), (1, vec!["aaaa"]));
        assert_eq!(log.after(2, 10), (3, vec!["cccc"]));
        log.acknowledge(2);
        assert!(log.has_room());
        // A single event larger than the bound is still taken when the log is empty.
        log.acknowledge(3);
        assert_eq!(log.push("x".repeat(50)), Ok(4));
        assert!(!log.has_room());
    }
}
