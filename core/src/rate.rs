//! A token bucket: the rate limit of visitor sends (`CHAT_SEND_RATE_PER_SEC`,
//! `CHAT_SEND_BURST`) and, in the gateway, of session opens per client address.
//!
//! ```
//! use chat_core::rate::{RateLimit, TokenBucket};
//! use std::time::{Duration, Instant};
//! let start = Instant::now();
//! let mut bucket = TokenBucket::new(RateLimit { per_sec: 1.0, burst: 2 }, start);
//! assert!(bucket.try_take(start).is_ok());
//! assert!(bucket.try_take(start).is_ok());
//! let wait = bucket.try_take(start).unwrap_err();
//! assert!(wait <= Duration::from_secs(1));
//! assert!(bucket.try_take(start + wait).is_ok());
//! ```

use std::time::{Duration, Instant};

/// A sustained rate with a burst allowance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Tokens added per second (the sustained rate).
    pub per_sec: f64,
    /// Most tokens held at once (the burst); a fresh bucket is full.
    pub burst: u32,
}

impl RateLimit {
    /// `per_minute` events a minute, all of them available at once.
    pub fn per_minute(per_minute: u32) -> Self {
        Self {
            per_sec: f64::from(per_minute) / 60.0,
            burst: per_minute,
        }
    }
}

/// One bucket. Not synchronized: owned by one session, or kept under the caller's lock.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    limit: RateLimit,
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(limit: RateLimit, now: Instant) -> Self {
        Self {
            limit,
            tokens: f64::from(limit.burst),
            updated: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.limit.per_sec).min(f64::from(self.limit.burst));
        self.updated = now;
    }

    /// Takes one token, or says how long until one is available.
    pub fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        if self.limit.per_sec <= 0.0 || self.limit.burst == 0 {
            return Err(Duration::from_secs(3600));
        }
        let wait = (1.0 - self.tokens) / self.limit.per_sec;
        // Round up to the millisecond so that retrying after the answer succeeds.
        Err(Duration::from_millis((wait * 1000.0).ceil() as u64))
    }

    /// Whether the bucket is full again at `now` (its history no longer matters: a fresh
    /// bucket would behave the same, so a table of buckets may forget it).
    pub fn is_full(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens + elapsed * self.limit.per_sec >= f64::from(self.limit.burst)
    }
}

/// One bucket per key (a visitor, an agent), all of one limit, behind one lock. Bounded: past
/// `max_keys`, full buckets (which a fresh one would replace exactly) are forgotten, and if every
/// tracked key is mid-burst, all of them (lenient for a moment, never unbounded).
#[derive(Debug)]
pub struct KeyedBuckets<K> {
    limit: Option<RateLimit>,
    max_keys: usize,
    buckets: std::sync::Mutex<std::collections::HashMap<K, TokenBucket>>,
}

impl<K: std::hash::Hash + Eq + Clone> KeyedBuckets<K> {
    /// Buckets of `limit` (`None`: nothing is limited), for at most `max_keys` keys at once.
    pub fn new(limit: Option<RateLimit>, max_keys: usize) -> Self {
        Self {
            limit,
            max_keys,
            buckets: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// Takes a token from `key`'s bucket, or says how long until one is available.
    pub fn take(&self, key: &K) -> Result<(), Duration> {
        let Some(limit) = self.limit else {
            return Ok(());
        };
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= self.max_keys && !buckets.contains_key(key) {
            buckets.retain(|_, bucket| !bucket.is_full(now));
            if buckets.len() >= self.max_keys {
                buckets.clear();
            }
        }
        buckets
            .entry(key.clone())
            .or_insert_with(|| TokenBucket::new(limit, now))
            .try_take(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_sustained_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(
            RateLimit {
                per_sec: 5.0,
                burst: 20,
            },
            t0,
        );
        for _ in 0..20 {
            b.try_take(t0).unwrap();
        }
        let wait = b.try_take(t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(200));
        assert!(b.try_take(t0 + Duration::from_millis(199)).is_err());
        assert!(b.try_take(t0 + Duration::from_millis(400)).is_ok());
        assert!(!b.is_full(t0 + Duration::from_secs(1)));
        assert!(b.is_full(t0 + Duration::from_secs(5)));
    }

    #[test]
    fn per_minute_is_a_full_minute_of_burst() {
        let l = RateLimit::per_minute(120);
        assert_eq!(l.burst, 120);
        assert!((l.per_sec - 2.0).abs() < 1e-9);
        let t0 = Instant::now();
        let mut b = TokenBucket::new(
            RateLimit {
                per_sec: 0.0,
                burst: 0,
            },
            t0,
        );
        assert!(b.try_take(t0).is_err());
    }

    #[test]
    fn keyed_buckets_are_per_key_and_bounded() {
        let buckets = KeyedBuckets::new(
            Some(RateLimit {
                per_sec: 0.001,
                burst: 1,
            }),
            2,
        );
        assert!(buckets.take(&"a").is_ok());
        assert!(buckets.take(&"a").is_err());
        assert!(buckets.take(&"b").is_ok());
        // A third key over the bound: the table forgets rather than grows.
        assert!(buckets.take(&"c").is_ok());
        assert!(buckets.buckets.lock().unwrap().len() <= 2);
        assert!(KeyedBuckets::<&str>::new(None, 1).take(&"x").is_ok());
    }
}
