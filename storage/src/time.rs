//! Timestamps at the stores' precision (microseconds), so they round-trip exactly.

use chrono::{DateTime, Utc};

/// `t` truncated to whole microseconds.
pub(crate) fn truncate_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

/// Now, truncated to whole microseconds.
pub(crate) fn now_micros() -> DateTime<Utc> {
    truncate_micros(Utc::now())
}

/// The timestamp `micros` microseconds after the Unix epoch, if representable.
pub(crate) fn from_micros(micros: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_micros(micros)
}
